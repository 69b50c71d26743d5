"""Schedules: constructors, conversions, the forward process and the sampling timesteps."""
import math

import pytest
import torch

from seqdiff_kit import Schedule
from seqdiff_kit.schedule import SPACINGS


def test_linear_defaults_match_ddpm():
    s = Schedule.linear()
    assert s.T == 1000
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    # alpha_bar is the running product of 1 - beta
    assert torch.allclose(s.alpha_bars, torch.cumprod(1 - s.betas, 0))
    assert s.alpha_bars[-1].item() == pytest.approx(math.exp(torch.log1p(-s.betas).sum().item()))


@pytest.mark.parametrize("name", ["linear", "cosine", "quadratic", "sigmoid"])
def test_every_schedule_is_monotone_and_valid(name):
    s = Schedule.from_name(name, 1000)
    assert bool(((s.betas > 0) & (s.betas < 1)).all())
    assert bool((s.alpha_bars[1:] < s.alpha_bars[:-1]).all())
    assert s.alpha_bars[-1] < 0.01 and s.alpha_bars[0] > 0.99
    assert Schedule.from_config(s.config()).betas.equal(s.betas)


def test_cosine_matches_its_closed_form_alpha_bar():
    T, s_off = 1000, 0.008
    s = Schedule.cosine(T)
    f = lambda u: math.cos((u + s_off) / (1 + s_off) * math.pi / 2) ** 2  # noqa: E731
    for t in [0, 10, 500, 900]:  # away from the max_beta clamp at the very end
        assert s.alpha_bars[t].item() == pytest.approx(f((t + 1) / T) / f(0), rel=1e-9)


def test_alpha_bar_of_minus_one_is_one_and_conversions_round_trip():
    s = Schedule.linear()
    assert s.alpha_bar(-1).item() == 1.0
    t = torch.tensor([0, 1, 17, 500, 999])
    a = s.alpha_bar(t)
    assert torch.allclose(Schedule.alpha_bar_from_sigma(s.sigma(t)), a, rtol=1e-12)
    assert torch.allclose(Schedule.alpha_bar_from_log_snr(s.log_snr(t)), a, rtol=1e-12)
    assert torch.allclose(s.t_from_alpha_bar(a), t.double(), atol=1e-6)
    assert torch.allclose(s.t_from_sigma(s.sigma(t)), t.double(), atol=1e-6)
    assert torch.allclose(s.t_from_log_snr(s.log_snr(t)), t.double(), atol=1e-6)
    # between two grid points the interpolated t lies between them
    mid = 0.5 * (s.log_snr(torch.tensor(10)) + s.log_snr(torch.tensor(11)))
    assert 10 < s.t_from_log_snr(mid).item() < 11


def test_add_noise_is_the_forward_equation():
    s = Schedule.linear()
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    t = torch.tensor([0, 10, 100, 500, 999])
    a = s.alpha_bars[t].float()[:, None]
    assert torch.allclose(s.add_noise(x0, t, eps), a.sqrt() * x0 + (1 - a).sqrt() * eps)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_timesteps_exact_count_distinct_descending_for_every_step_count(spacing):
    s = Schedule.linear(1000)
    for steps in range(1, 1001):
        ts = s.timesteps(steps, spacing)
        assert ts.numel() == steps, (spacing, steps)
        assert int(ts.min()) >= 0 and int(ts.max()) <= 999, (spacing, steps)
        assert bool((ts[1:] < ts[:-1]).all()), (spacing, steps)


def test_timesteps_known_values_and_range_pitfall():
    s = Schedule.linear(1000)
    # range(0, T, T // N) would give 8 values for N = 7 and 1000 for N = 999
    assert len(range(0, 1000, 1000 // 7)) == 8
    assert s.timesteps(7, "leading").tolist() == [852, 710, 568, 426, 284, 142, 0]
    assert s.timesteps(10, "trailing").tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert s.timesteps(5, "linspace").tolist() == [999, 749, 500, 250, 0]
    assert s.timesteps(1, "trailing").tolist() == [999]
    assert s.timesteps(1000, "quad").tolist() == list(range(999, -1, -1))


def test_karras_timesteps_are_the_nearest_to_karras_sigmas():
    """rho = 7 between sigma(T-1) and sigma(0); where nothing collides, each timestep is the rounded continuous t
    of its sigma (log-SNR interpolation), so its log-SNR is within half a timestep of the target."""
    s = Schedule.linear(1000)
    sig = s.karras_sigmas(10)
    assert float(sig[0]) == pytest.approx(float(s.sigma(999))) and float(sig[-1]) == pytest.approx(float(s.sigma(0)))
    root = sig ** (1 / 7)
    assert torch.allclose(root[1:] - root[:-1], (root[-1] - root[0]) / 9 * torch.ones(9, dtype=torch.float64))
    for steps in (5, 10, 20):
        ts = s.timesteps(steps, "karras")
        cont = s.t_from_sigma(s.karras_sigmas(steps))
        assert ts[0] == 999 and ts[-1] == 0
        assert bool(((ts.double() - cont).abs() <= 0.5 + 1e-9).all()), steps
    # many steps crowd near t = 0: they are nudged apart, still exactly `steps` distinct values
    assert s.timesteps(1000, "karras").tolist() == list(range(999, -1, -1))


@pytest.mark.parametrize("call, match", [
    (lambda s: s.timesteps(0), "steps"),
    (lambda s: s.timesteps(1001), "steps"),
    (lambda s: s.timesteps(10, "cosmic"), "spacing"),
    (lambda s: Schedule.linear(0), "T"),
    (lambda s: Schedule.linear(10, beta_start=-1), "beta_start"),
    (lambda s: s.alpha_bar(torch.tensor([1000])), "t must be in"),
    (lambda s: s.add_noise(torch.zeros(2, 2), torch.tensor([0, 1]), torch.zeros(3, 2)), "noise"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(Schedule.linear())


def test_t_must_be_integer():
    with pytest.raises(TypeError, match="t must be a LongTensor of integer timesteps"):
        Schedule.linear().alpha_bar(torch.tensor([0.5]))


# ---------------------------------------------------------------------- bad input (issue 16)
def test_add_noise_in_float16_keeps_the_noise_near_the_data():
    """alpha_bar_0 = 0.9999 rounds to 1 in float16: 1 - alpha_bar must be taken in float64, then cast."""
    s = Schedule.linear()
    x0, noise = torch.zeros(4, 2, dtype=torch.float16), torch.ones(4, 2, dtype=torch.float16)
    x_t = s.add_noise(x0, 0, noise)
    assert x_t.dtype == torch.float16
    assert torch.allclose(x_t.double(), torch.full((4, 2), math.sqrt(1e-4), dtype=torch.float64), rtol=1e-3)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"x0": torch.zeros(2, 2, dtype=torch.long)}, TypeError, "x0 must be a floating-point tensor .*int64"),
    ({"x0": torch.zeros(2, 2, device="meta")}, TypeError, "x0 must hold values on a real device"),
    ({"x0": torch.full((2, 2), math.nan)}, ValueError, "x0 must be finite"),
    ({"noise": torch.zeros(2, 2, dtype=torch.float64)}, TypeError,
     r"noise must have dtype float32, got dtype float64 \(the dtype of x0\)"),
    ({"t": torch.tensor([1.0, 2.0])}, TypeError, "t must be a LongTensor of integer timesteps"),
    ({"t": torch.tensor([0, 1], device="meta")}, TypeError, "t must hold values on a real device"),
])
def test_add_noise_checks(kwargs, exc, match):
    args = {"x0": torch.zeros(2, 2), "t": torch.tensor([0, 1]), "noise": torch.zeros(2, 2), **kwargs}
    with pytest.raises(exc, match=match):
        Schedule.linear(10).add_noise(**args)


def test_schedules_whose_alpha_bar_rounds_to_one_or_underflows_are_refused():
    with pytest.raises(ValueError, match=r"betas\[0\] must be large enough that alpha_bar_0 = 1 - beta_0 < 1"):
        Schedule([1e-20, 0.1])
    with pytest.raises(ValueError, match="betas make alpha_bar_t underflow to 0 in float64 from t = "):
        Schedule(torch.full((1000,), 0.9))
    # found by hypothesis: the constructors' own arguments are named, not the betas they build
    with pytest.raises(ValueError, match=r"beta_start must be in \[2.22"):
        Schedule.linear(1, 1e-262, 0.5)
    with pytest.raises(ValueError, match=r"T = 400 and beta_end = 0.99 give an unusable linear schedule"):
        Schedule.linear(400, 0.9, 0.99)


@pytest.mark.parametrize("name, value, match", [
    ("alpha_bar_from_sigma", -1.0, r"sigma must be in \[0.0, inf\]"),
    ("t_from_sigma", math.nan, "sigma must not be NaN"),
    ("t_from_alpha_bar", 2.0, r"alpha_bar must be in \[0.0, 1.0\]"),
    ("t_from_log_snr", [math.nan], "log_snr must not be NaN"),
    ("alpha_bar_from_log_snr", "1", "log_snr must be a number"),
])
def test_conversions_refuse_nan_and_out_of_range_values(name, value, match):
    with pytest.raises((ValueError, TypeError), match=match):
        getattr(Schedule.linear(10), name)(value)


def test_conversions_take_the_infinite_ends():
    s = Schedule.linear(10)
    assert s.t_from_log_snr(math.inf).item() == 0 and s.t_from_sigma(math.inf).item() == 9
    assert s.alpha_bar_from_sigma(math.inf).item() == 0.0
