"""The generalized DDIM/DDPM sampler: analytic steps, recovery of the data, determinism and recording."""
import math

import pytest
import torch

from seqdiff_kit import GaussianMixture, IdealDenoiser, Schedule, generalized_step, make_noise, ring8, sample
from seqdiff_kit.solvers import sample_iter


@pytest.fixture(scope="module")
def sched():
    return Schedule.linear()


def test_eta_one_is_the_ddpm_posterior(sched):
    """For consecutive steps, eta = 1 gives mu_tilde(x_t, x0) plus sqrt(beta_tilde) z (DDPM eq. 6-7)."""
    g = torch.Generator().manual_seed(0)
    x, eps, z = (torch.randn(16, 2, generator=g, dtype=torch.float64) for _ in range(3))
    for t in [1, 10, 500, 999]:
        ab_t, ab_s = sched.alpha_bars[t], sched.alpha_bars[t - 1]
        beta, alpha = sched.betas[t], sched.alphas[t]
        x0 = (x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
        mu = ab_s.sqrt() * beta / (1 - ab_t) * x0 + alpha.sqrt() * (1 - ab_s) / (1 - ab_t) * x
        var = (1 - ab_s) / (1 - ab_t) * beta
        prev, x0_pred = generalized_step(x, eps, t, t - 1, sched, eta=1.0, noise=z)
        assert torch.allclose(x0_pred, x0)
        assert torch.allclose(prev, mu + var.sqrt() * z, atol=1e-10), t
        large, _ = generalized_step(x, eps, t, t - 1, sched, eta=1.0, variance="large", noise=z)
        assert torch.allclose(large, mu + beta.sqrt() * z, atol=1e-10), t


def test_last_step_returns_x0_pred_without_noise(sched):
    x, eps = torch.randn(8, 2), torch.randn(8, 2)
    for variance in ["small", "large"]:
        prev, x0 = generalized_step(x, eps, 5, -1, sched, eta=1.0, variance=variance, noise=torch.full((8, 2), 1e6))
        assert torch.allclose(prev, x0)


def test_per_sample_timesteps_match_scalar_steps(sched):
    x, eps, z = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    t, s = torch.tensor([10, 500, 3]), torch.tensor([9, 400, -1])
    batched, _ = generalized_step(x, eps, t, s, sched, eta=0.5, noise=z)
    for i in range(3):
        one, _ = generalized_step(x[i:i + 1], eps[i:i + 1], int(t[i]), int(s[i]), sched, eta=0.5, noise=z[i:i + 1])
        assert torch.allclose(batched[i], one[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("options", [dict(eta=0.0), dict(eta=0.6), dict(eta=1.0, variance="large"),
                                     dict(eta=0.3, clip_x0=1.0)])
def test_a_run_is_its_steps_one_by_one_bit_for_bit(sched, dtype, options):
    """The sampler computes every step's coefficients at once (``step_coefficients`` over the run): the path is
    the one of ``generalized_step`` taken step by step, bit for bit, in every dtype."""
    g = torch.Generator().manual_seed(5)
    model = IdealDenoiser(ring8(), sched)
    x_T = torch.randn(64, 2, generator=g).to(dtype)
    noise = make_noise(7, x_T.shape, g, dtype=dtype)
    tr = sample(model, x_T, sched, 7, noise=noise, **options)
    x = x_T
    for i, (t, s) in enumerate(zip(tr.timesteps.tolist(), tr.timesteps.tolist()[1:] + [-1])):
        eps = model(x, torch.full((64,), t))
        x, x0 = generalized_step(x, eps, t, s, sched, noise=noise[i], **options)
        assert torch.equal(tr.x0_pred[i], x0) and torch.equal(tr.x[i + 1], x), (i, t)


def test_ddim_with_the_ideal_denoiser_of_a_gaussian_recovers_its_variance(sched):
    """For N(0, v) the probability-flow ODE is linear; 1000 DDIM steps give std within 1% of sqrt(v)."""
    v = 0.09
    mix = GaussianMixture([1.0], [[0.0]], [[v]])
    x_T = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = sample(IdealDenoiser(mix, sched), x_T, sched, 1000, eta=0.0, record_every=1000).final
    assert out.std().item() == pytest.approx(math.sqrt(v), rel=0.01)


@pytest.mark.slow
def test_ddpm_1000_steps_with_ideal_denoiser_recovers_ring8(sched):
    mix, n = ring8(), 4000
    g = torch.Generator().manual_seed(2)
    traj = sample(IdealDenoiser(mix, sched), torch.randn(n, 2, generator=g), sched, 1000, eta=1.0,
                  generator=g, record_every=100)
    x = traj.final
    data_ll = mix.log_prob(mix.sample(200_000, torch.Generator().manual_seed(3))).mean().item()
    ll = mix.log_prob(x).mean().item()
    print(f"ring8, 1000 DDPM steps, ideal denoiser: mean log-lik {ll:.4f} vs data {data_ll:.4f}")
    assert abs(ll - data_ll) < 0.1
    nearest = torch.cdist(x.double(), mix.means).argmin(1)
    share = torch.bincount(nearest, minlength=8).double() / n
    se = math.sqrt(1 / 8 * 7 / 8 / n)
    assert bool(((share - 1 / 8).abs() < 3 * se).all()), share


def test_eta_zero_is_deterministic_and_seeds_reproduce(sched):
    den = IdealDenoiser(ring8(), sched)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    a = sample(den, x_T, sched, 20, eta=0.0)
    b = sample(den, x_T, sched, 20, eta=0.0)
    assert torch.equal(a.x, b.x) and torch.equal(a.eps_pred, b.eps_pred)
    c = sample(den, x_T, sched, 20, eta=1.0, generator=torch.Generator().manual_seed(5))
    d = sample(den, x_T, sched, 20, eta=1.0, generator=torch.Generator().manual_seed(5))
    e = sample(den, x_T, sched, 20, eta=1.0, generator=torch.Generator().manual_seed(6))
    assert torch.equal(c.x, d.x)
    assert not torch.equal(c.final, e.final)


def test_two_models_with_the_same_given_noise_follow_the_same_path(sched):
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    noise = make_noise(25, x_T.shape, torch.Generator().manual_seed(1))
    a = sample(IdealDenoiser(ring8(), sched), x_T, sched, 25, eta=1.0, noise=noise)
    b = sample(IdealDenoiser(ring8(), sched), x_T, sched, 25, eta=1.0, noise=noise,
               generator=torch.Generator().manual_seed(99))  # the given noise wins over the generator
    assert torch.equal(a.x, b.x)
    # with the same noise, a different model gives a different path
    other = sample(IdealDenoiser(ring8(radius=1.0), sched), x_T, sched, 25, eta=1.0, noise=noise)
    assert not torch.equal(a.final, other.final)


def test_trajectory_records_every_step_and_a_stride(sched):
    den = IdealDenoiser(ring8(), sched)
    x_T = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    full = sample(den, x_T, sched, 50)
    assert full.x.shape == (51, 10, 2) and full.x0_pred.shape == (50, 10, 2) and full.eps_pred.shape == (50, 10, 2)
    assert torch.equal(full.x[0], x_T)
    assert full.timesteps.tolist() == sched.timesteps(50, "trailing").tolist()
    assert full.t[-1].item() == -1
    strided = sample(den, x_T, sched, 50, record_every=7)
    assert strided.recorded.tolist() == [0, 7, 14, 21, 28, 35, 42, 49]
    assert torch.equal(strided.x[:-1], full.x[strided.recorded])
    assert torch.equal(strided.final, full.final)
    assert torch.equal(strided.eps_pred, full.eps_pred[strided.recorded])
    assert strided.nbytes() < full.nbytes()


def test_callback_and_generator_see_every_step(sched):
    den = IdealDenoiser(ring8(), sched)
    x_T = torch.randn(4, 2)
    seen = []
    traj = sample(den, x_T, sched, 12, spacing="quad", callback=lambda d: seen.append((d["i"], d["t"], d["s"])))
    ts = sched.timesteps(12, "quad").tolist()
    assert seen == [(i, ts[i], ts[i + 1] if i < 11 else -1) for i in range(12)]
    outs = list(sample_iter(den, x_T, sched, 12, spacing="quad"))
    assert torch.equal(outs[-1].x_s, traj.final)
    assert torch.equal(outs[3].x_s, outs[4].x_t)


def test_no_clipping_unless_asked(sched):
    wide = GaussianMixture([0.5, 0.5], [[-4.0, 0.0], [4.0, 0.0]], [[0.01, 0.01], [0.01, 0.01]])
    den = IdealDenoiser(wide, sched)
    x_T = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    free = sample(den, x_T, sched, 20)
    assert free.final.abs().max().item() > 3.5
    clipped = sample(den, x_T, sched, 20, clip_x0=1.0)
    assert clipped.x0_pred.abs().max().item() <= 1.0 + 1e-6


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "steps"), (dict(steps=1001), "steps"), (dict(eta=-0.1), "eta"), (dict(eta=1.5), "eta"),
    (dict(eta=0.0, variance="large"), "needs eta=1.0"), (dict(variance="huge"), "variance"),
    (dict(spacing="nope"), "spacing"), (dict(noise=torch.zeros(3, 4, 2)), "noise must have shape"),
    (dict(record_every=0), "record_every"),
])
def test_bad_arguments(sched, kwargs, match):
    den = IdealDenoiser(ring8(), sched)
    kw = dict(steps=10)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sample(den, torch.randn(4, 2), sched, **kw)


def test_non_finite_or_misshaped_model_output_names_the_step(sched):
    def bad(x, t):
        return torch.full_like(x, math.nan) if int(t[0]) < 500 else torch.zeros_like(x)

    with pytest.raises(ValueError, match=r"not finite .* at step 5 \(t=499\)"):
        sample(bad, torch.randn(4, 2), sched, 10)
    with pytest.raises(ValueError, match="model output must have the shape"):
        sample(lambda x, t: x[:, :1], torch.randn(4, 2), sched, 10)


def test_networks_follow_the_input_dtype():
    from seqdiff_kit import MLPDenoiser, TinyUNet

    t = torch.tensor([0, 5, 999])
    assert MLPDenoiser().double()(torch.zeros(3, 2, dtype=torch.float64), t).dtype == torch.float64
    assert TinyUNet().double()(torch.zeros(3, 1, 8, 8, dtype=torch.float64), t).dtype == torch.float64


# ---------------------------------------------------------------------- dtypes and devices (issue 16)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("spacing, steps", [("leading", 5), ("trailing", 5), ("leading", 20)])
def test_low_precision_sampling_is_finite_and_close_to_float64(sched, dtype, spacing, steps, rounding_bound):
    """float16 rounded alpha_bar_0 to 1 and returned all-NaN samples (sigma = 0/0): the step's coefficients are
    now float64, cast. The run stays within the rounding bound (conftest) of the float64 run."""
    m = IdealDenoiser(ring8(), sched)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = sample(m, x_T, sched, steps, spacing=spacing)
    low = sample(m, x_T.to(dtype), sched, steps, spacing=spacing).final
    assert low.dtype == dtype and bool(torch.isfinite(low).all())
    assert float((low.double() - ref.final).abs().max()) <= rounding_bound(ref, sched, dtype)


def test_low_precision_stochastic_sampling_is_finite(sched, rounding_bound):
    m = IdealDenoiser(ring8(), sched)
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    noise = make_noise(10, x_T.shape, torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = sample(m, x_T.double(), sched, 10, eta=1.0, noise=noise, spacing="leading")
    low = sample(m, x_T.half(), sched, 10, eta=1.0, noise=noise.half(), spacing="leading").final
    assert bool(torch.isfinite(low).all())
    # the noise enters rounded too: the bound's x_s term covers it
    assert float((low.double() - ref.final).abs().max()) <= rounding_bound(ref, sched, torch.float16)


def test_float16_refuses_a_schedule_whose_coefficients_it_cannot_hold():
    """cosine(1000) ends at sqrt(alpha_bar_999) ~ 4.9e-5, below float16's smallest normal number."""
    s = Schedule.cosine(1000)
    with pytest.raises(TypeError, match=r"x_T has dtype float16.*sqrt\(alpha_bar_t\).*use float32"):
        sample(IdealDenoiser(ring8(), s), torch.zeros(4, 2, dtype=torch.float16), s, 5)
    assert bool(torch.isfinite(sample(IdealDenoiser(ring8(), s), torch.zeros(4, 2, dtype=torch.bfloat16), s, 5)
                                .final).all())


@pytest.mark.parametrize("x_T, message", [
    (torch.zeros(4, 2, dtype=torch.long), r"x_T must be a floating-point tensor .*got dtype int64"),
    (torch.zeros(4, 2, dtype=torch.bool), r"x_T must be a floating-point tensor .*got dtype bool"),
    (torch.zeros(4, 2, dtype=torch.complex64), r"x_T must be a floating-point tensor .*got dtype complex64"),
    (torch.zeros(4, 2, device="meta"), r"x_T must hold values on a real device .*meta"),
])
def test_sampler_refuses_non_float_and_meta_x_T(sched, x_T, message):
    """Integer x_T with eta > 0 raised NotImplementedError from the normal kernel; meta failed in .item()."""
    for eta in (0.0, 1.0):
        with pytest.raises(TypeError, match=message):
            sample(IdealDenoiser(ring8(), sched), x_T, sched, 5, eta=eta)


def test_sampler_checks_noise_values_dtype_and_device(sched):
    m, x_T = IdealDenoiser(ring8(), sched), torch.zeros(4, 2)
    bad = torch.zeros(5, 4, 2)
    bad[2, 1, 0] = math.nan
    with pytest.raises(ValueError, match="noise must be finite"):
        sample(m, x_T, sched, 5, eta=1.0, noise=bad)
    with pytest.raises(TypeError, match="noise must be a floating-point tensor .*int64"):
        sample(m, x_T, sched, 5, eta=1.0, noise=torch.zeros(5, 4, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="noise must hold values on a real device"):
        sample(m, x_T, sched, 5, eta=1.0, noise=torch.zeros(5, 4, 2, device="meta"))


def test_timesteps_must_be_integers(sched):
    m, x_T = IdealDenoiser(ring8(), sched), torch.zeros(4, 2)
    with pytest.raises(TypeError, match="timesteps must be a LongTensor of integer timesteps, got dtype float32"):
        sample(m, x_T, sched, timesteps=torch.tensor([9.5, 3.0]))
    with pytest.raises(ValueError, match=r"timesteps must be in \[0, 999\], got values from 3 to 1000"):
        sample(m, x_T, sched, timesteps=[1000, 3])
    assert sample(m, x_T, sched, timesteps=[9, 3]).timesteps.tolist() == [9, 3]


def test_a_state_that_overflows_its_dtype_is_an_error_not_inf(sched):
    """A model whose eps is finite but makes x0_pred overflow float16 (x0 = (x - sqrt(1 - a) eps) / sqrt(a))."""
    def model(x, t):
        return torch.full_like(x, -6e4)

    with pytest.raises(ValueError, match=r"sampler's state is not finite .*step 0 \(t=999\).*float16"):
        sample(model, torch.zeros(4, 2, dtype=torch.float16), sched, 5)


def test_a_model_output_in_another_dtype_is_an_error(sched):
    with pytest.raises(ValueError, match="model output must have the dtype of x float16, got float32"):
        sample(lambda x, t: torch.zeros(x.shape), torch.zeros(4, 2, dtype=torch.float16), sched, 5)
