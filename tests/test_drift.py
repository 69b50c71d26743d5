import math

import pytest
import torch
from torch import nn

from seqdiff_kit.data import GaussianMixture, ring8
from seqdiff_kit.denoisers import IdealDenoiser, MLPDenoiser
from seqdiff_kit.drift import (distribution_drift, estimation_gap, gap_coefficients, paired_trajectories, paths_drift,
                               step_drift, total_std, variance_ratio)
from seqdiff_kit.metrics import mmd, std_ratio
from seqdiff_kit.samplers import sigmas
from seqdiff_kit.schedule import Schedule

SCHED = Schedule.linear(200)


def gen(seed):
    return torch.Generator().manual_seed(seed)


class Biased(nn.Module):
    """``eps(x, t) = base(x, t) + bias`` (bias broadcast over the batch)."""

    def __init__(self, base, bias):
        super().__init__()
        self.base, self.bias = base, bias

    def forward(self, x, t):
        return self.base(x, t) + self.bias.to(x.dtype)


class ScaledLinear(nn.Module):
    """A stand-in denoiser for any sample shape: ``eps(x, t) = scale * w_t x`` with w_t the ideal coefficient
    for data N(0, s^2 I): ``sqrt(1 - a_t) / (a_t s^2 + 1 - a_t)``."""

    def __init__(self, schedule, s2=0.25, scale=1.0):
        super().__init__()
        a = schedule.alpha_bars
        self.w = scale * (1 - a).sqrt() / (a * s2 + 1 - a)

    def forward(self, x, t):
        w = self.w[t.cpu()].to(x.dtype)
        return w.reshape(-1, *([1] * (x.ndim - 1))) * x


class TinyNet(nn.Module):
    """A small random float64 network eps(x, t) for 2-D points (nonlinear in x and t)."""

    def __init__(self, T, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.T = T
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2)).double()

    def forward(self, x, t):
        return self.net(torch.cat([x, (t.to(x.dtype) / self.T)[:, None]], dim=1))


def step_coeffs(schedule, t, s, eta):
    """x_s = p x_t + q eps + sigma z for the generalized step."""
    a_t, a_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
    sig = float(sigmas(schedule.alpha_bar(t), schedule.alpha_bar(s), eta)[0])
    p = math.sqrt(a_s / a_t)
    q = math.sqrt(max(1 - a_s - sig**2, 0.0)) - math.sqrt(a_s) * math.sqrt(1 - a_t) / math.sqrt(a_t)
    return p, q, sig


# ---------------------------------------------------------------------- paired trajectories / step drift
def test_paired_trajectories_share_start_and_noise():
    ideal = IdealDenoiser(ring8(), SCHED)
    x_T = torch.randn(16, 2, generator=gen(0), dtype=torch.float64)
    pair = paired_trajectories(ideal, Biased(ideal, torch.tensor([0.1, 0.0])), x_T, SCHED, 12, eta=1.0,
                               spacing="linspace", generator=gen(1))
    assert pair.noise.shape == (12, 16, 2)
    assert torch.equal(pair.model.x[0], x_T) and torch.equal(pair.reference.x[0], x_T)
    assert torch.equal(pair.model.timesteps, SCHED.timesteps(12, "linspace"))
    assert pair.model.x.shape == pair.reference.x.shape == (13, 16, 2)
    # reproducible, and deterministic runs need no noise
    again = paired_trajectories(ideal, Biased(ideal, torch.tensor([0.1, 0.0])), x_T, SCHED, 12, eta=1.0,
                                spacing="linspace", generator=gen(1))
    assert torch.equal(again.model.x, pair.model.x)
    assert paired_trajectories(ideal, ideal, x_T, SCHED, 5).noise is None


@pytest.mark.parametrize("eta,spacing", [(0.0, "trailing"), (1.0, "linspace"), (0.5, "quad")])
def test_ideal_vs_ideal_has_zero_drift(eta, spacing):
    ideal = IdealDenoiser(ring8(), SCHED)
    x_T = torch.randn(32, 2, generator=gen(2), dtype=torch.float64)
    d = step_drift(ideal, ideal, x_T, SCHED, 10, eta=eta, spacing=spacing, generator=gen(3))
    for name in d.TABLES:
        assert getattr(d, name).shape == (10, 32)
        assert float(getattr(d, name).abs().max()) == 0.0, name


@pytest.mark.parametrize("eta,variance", [(0.0, "small"), (1.0, "small"), (0.3, "small"), (1.0, "large")])
def test_local_error_of_a_constant_bias_matches_closed_form(eta, variance):
    # one DDIM-type step with eps_m = eps* + b from the same state differs by
    # (sqrt(1 - a_s - sigma^2) - sqrt(a_s) sqrt(1 - a_t) / sqrt(a_t)) b, whatever the (nonlinear) eps*
    ideal = IdealDenoiser(ring8(), SCHED)
    b = torch.tensor([0.3, -0.4], dtype=torch.float64)  # ||b|| = 0.5
    x_T = torch.randn(20, 2, generator=gen(4), dtype=torch.float64)
    d = step_drift(Biased(ideal, b), ideal, x_T, SCHED, 8, eta=eta, variance=variance, generator=gen(5))
    for i in range(8):
        t, s = int(d.timesteps[i]), int(d.next_timesteps[i])
        _, q, _ = step_coeffs(SCHED, t, s, eta)
        torch.testing.assert_close(d.local[i], torch.full((20,), abs(q) * 0.5, dtype=torch.float64),
                                   rtol=1e-9, atol=1e-12)
        a_t = float(SCHED.alpha_bar(t))
        # x0_pred = (x - sqrt(1 - a_t) eps)/sqrt(a_t): a bias b moves it by sqrt(1 - a_t)/sqrt(a_t) b
        torch.testing.assert_close(d.x0_local_error[i], torch.full((20,), math.sqrt((1 - a_t) / a_t) * 0.5,
                                                                   dtype=torch.float64), rtol=1e-9, atol=1e-12)
    assert d.next_timesteps[-1] == -1


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_drift_of_a_biased_linear_denoiser_follows_the_recursion(eta):
    # single full-covariance Gaussian: eps*(x, t) = W_t (x - sqrt(a) mu), W_t = sqrt(1-a) (a S + (1-a) I)^-1,
    # so the path difference obeys d_{i+1} = (p I + q W_t) d_i + q b exactly (the same for every point)
    S = torch.tensor([[0.3, 0.1], [0.1, 0.2]], dtype=torch.float64)
    mix = GaussianMixture([1.0], [[0.5, -0.2]], S[None])
    ideal = IdealDenoiser(mix, SCHED)
    b = torch.tensor([0.2, 0.1], dtype=torch.float64)
    x_T = torch.randn(10, 2, generator=gen(6), dtype=torch.float64)
    d = step_drift(Biased(ideal, b), ideal, x_T, SCHED, 15, eta=eta, generator=gen(7))
    diff = torch.zeros(2, dtype=torch.float64)
    for i in range(15):
        t, s = int(d.timesteps[i]), int(d.next_timesteps[i])
        p, q, _ = step_coeffs(SCHED, t, s, eta)
        a = float(SCHED.alpha_bar(t))
        W = math.sqrt(1 - a) * torch.linalg.inv(a * S + (1 - a) * torch.eye(2, dtype=torch.float64))
        diff = (p * torch.eye(2, dtype=torch.float64) + q * W) @ diff + q * b
        torch.testing.assert_close(d.drift[i], torch.full((10,), float(diff.norm()), dtype=torch.float64),
                                   rtol=1e-8, atol=1e-10)
    # the final drift is also visible directly in the final samples
    torch.testing.assert_close(d.paths.model.final - d.paths.reference.final, diff.expand(10, 2),
                               rtol=1e-8, atol=1e-10)


def test_drift_triangle_inequality_and_summaries():
    net = TinyNet(SCHED.T, seed=0)
    ideal = IdealDenoiser(ring8(), SCHED)
    x_T = torch.randn(40, 2, generator=gen(8), dtype=torch.float64)
    d = step_drift(net, ideal, x_T, SCHED, 6, eta=1.0, generator=gen(9), quantiles=(0.0, 0.5, 1.0))
    assert bool((d.drift <= d.propagated + d.local + 1e-10).all())
    assert float(d.drift.max()) > 0  # a random network does drift
    # the first step starts from the shared x_T: no propagated error yet, drift is purely local
    torch.testing.assert_close(d.drift[0], d.local[0])
    assert float(d.propagated[0].abs().max()) < 1e-12
    torch.testing.assert_close(d.mean("drift"), d.drift.mean(1))
    qs = d.quantile("local")
    assert qs.shape == (6, 3)
    torch.testing.assert_close(qs[:, 0], d.local.min(1).values)
    torch.testing.assert_close(qs[:, 2], d.local.max(1).values)
    curves = d.curves()
    assert curves["t"] == d.timesteps.tolist() and len(curves["x0_error"]["mean"]) == 6


def test_step_drift_with_the_library_mlp_in_float32():
    torch.manual_seed(0)
    net = MLPDenoiser(dim=2, width=16, depth=1, T=SCHED.T)
    x_T = torch.randn(30, 2, generator=gen(30))
    d = step_drift(net, IdealDenoiser(ring8(), SCHED), x_T, SCHED, 5, eta=1.0, generator=gen(31))
    assert d.drift.dtype == torch.float32 and bool(torch.isfinite(d.drift).all())
    assert bool((d.drift <= d.propagated + d.local + 1e-4).all())
    g = estimation_gap(net, ring8().sample(30, gen(32)), SCHED, torch.randint(0, 40, (30,), generator=gen(33)),
                       generator=gen(34))
    torch.testing.assert_close(g.e, g.e_direct, rtol=1e-3, atol=1e-4, equal_nan=True)


def test_step_drift_on_images_with_a_linear_stand_in():
    # ScaledLinear has scalar coefficients, so the path difference stays along b: ||d_i|| = |k_i| ||b||
    # with k_{i+1} = (p + q w_t) k_i + q
    base = ScaledLinear(SCHED)
    b = 0.05 * torch.randn(1, 8, 8, generator=gen(10), dtype=torch.float64)
    x_T = torch.randn(6, 1, 8, 8, generator=gen(11), dtype=torch.float64)
    d = step_drift(Biased(base, b), base, x_T, SCHED, 7, eta=0.5, generator=gen(12))
    assert d.paths.model.x.shape == (8, 6, 1, 8, 8)
    assert d.drift.shape == d.local.shape == (7, 6)
    k = 0.0
    for i in range(7):
        t, s = int(d.timesteps[i]), int(d.next_timesteps[i])
        p, q, _ = step_coeffs(SCHED, t, s, 0.5)
        k = (p + q * float(base.w[t])) * k + q
        torch.testing.assert_close(d.drift[i], torch.full((6,), abs(k) * float(b.norm()), dtype=torch.float64),
                                   rtol=1e-8, atol=1e-12)


def test_step_drift_same_seed_same_curves():
    ideal = IdealDenoiser(ring8(), SCHED)
    x_T = torch.randn(8, 2, generator=gen(13), dtype=torch.float64)
    model = Biased(ideal, torch.tensor([0.1, 0.1]))
    d1 = step_drift(model, ideal, x_T, SCHED, 5, eta=1.0, generator=gen(14))
    d2 = step_drift(model, ideal, x_T, SCHED, 5, eta=1.0, generator=gen(14))
    d3 = step_drift(model, ideal, x_T, SCHED, 5, eta=1.0, generator=gen(15))
    assert torch.equal(d1.drift, d2.drift) and torch.equal(d1.local, d2.local)
    assert not torch.equal(d1.drift, d3.drift)


def test_drift_bad_input():
    ideal = IdealDenoiser(ring8(), SCHED)
    x_T = torch.randn(4, 2)

    def wrong_shape(x, t):
        return torch.zeros(x.shape[0], 3)

    def nan_late(x, t):
        return torch.full_like(x, math.nan) if int(t[0]) < 100 else torch.zeros_like(x)

    with pytest.raises(ValueError, match="reference: .*shape"):
        paired_trajectories(ideal, wrong_shape, x_T, SCHED, 5)
    with pytest.raises(ValueError, match=r"model: .*not finite.*step \d+ \(t=\d+\)"):
        step_drift(nan_late, ideal, x_T, SCHED, 5)
    with pytest.raises(ValueError, match="eta"):
        step_drift(ideal, ideal, x_T, SCHED, 5, eta=2.0)
    with pytest.raises(ValueError, match="noise must have shape"):
        paired_trajectories(ideal, ideal, x_T, SCHED, 5, eta=1.0, noise=torch.randn(5, 4, 3))
    with pytest.raises(ValueError, match="quantiles"):
        step_drift(ideal, ideal, x_T, SCHED, 5, quantiles=(0.5, 1.5))
    with pytest.raises(TypeError, match="schedule"):
        step_drift(ideal, ideal, x_T, "linear", 5)


# ---------------------------------------------------------------------- estimation gap
class Oracle(nn.Module):
    """The ideal denoiser of the point mass at x0_point: eps(x, t) = (x - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""

    def __init__(self, schedule, x0_point):
        super().__init__()
        self.schedule, self.x0_point = schedule, x0_point

    def forward(self, x, t):
        a = self.schedule.alpha_bar(t).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return (x - a.sqrt() * self.x0_point) / (1 - a).sqrt()


def test_gap_coefficients_are_the_partial_derivatives_of_the_step():
    # e_{t-1} = x_hat_{t-1} - x_{t-1} as a function of (e_t, delta_t), built from the posterior-mean formula:
    # it is linear with d/de_t = gamma_t and d/ddelta_t = c_t (autograd, float64)
    gamma, c = gap_coefficients(SCHED)
    x0, x_t = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-0.3, dtype=torch.float64)
    for t in [0, 1, 2, 57, SCHED.T - 1]:
        ab, ab_prev = SCHED.alpha_bar(t), SCHED.alpha_bar(t - 1)
        beta = SCHED.betas[t]

        def mu_tilde(x, y):
            return ab_prev.sqrt() * beta / (1 - ab) * y + (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab) * x

        e_t = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
        delta = torch.tensor(-0.1, dtype=torch.float64, requires_grad=True)
        x_hat = x_t + e_t
        eps_hat = (x_hat - ab.sqrt() * x0) / (1 - ab).sqrt()
        eps_theta = eps_hat - delta
        x0_pred = (x_hat - (1 - ab).sqrt() * eps_theta) / ab.sqrt()
        e_next = mu_tilde(x_hat, x0_pred) - mu_tilde(x_t, x0)
        g_e, g_d = torch.autograd.grad(e_next, (e_t, delta))
        assert float(g_e) == pytest.approx(float(gamma[t]), rel=1e-12, abs=1e-15)
        assert float(g_d) == pytest.approx(float(c[t]), rel=1e-12)
    assert float(gamma[0]) == 0.0  # abar_{-1} = 1: the last step forgets e


def test_oracle_has_zero_gap_even_with_heterogeneous_starts():
    x0_point = torch.tensor([0.4, -1.1], dtype=torch.float64)
    x0 = x0_point.expand(7, 2).clone()
    start = torch.tensor([0, 3, 10, 10, 25, 199, 60])
    g = estimation_gap(Oracle(SCHED, x0_point), x0, SCHED, start, generator=gen(16))
    assert g.delta.shape == g.e.shape == (200, 7)
    assert torch.equal(g.active, ~torch.isnan(g.e))
    assert g.active.sum(0).tolist() == (start + 1).tolist()
    assert float(torch.nan_to_num(g.delta).abs().max()) < 1e-9
    assert float(torch.nan_to_num(g.e).abs().max()) < 1e-9
    assert float(torch.nan_to_num(g.e_direct).abs().max()) < 1e-9
    torch.testing.assert_close(g.x_pred, x0)


def test_gap_of_a_constant_bias_is_exact():
    # eps_theta = oracle + b gives delta_t = -b at every step, so e = -k b with k_{t-1} = gamma_t k_t + c_t
    x0_point = torch.tensor([0.4, -1.1], dtype=torch.float64)
    b = torch.tensor([0.03, 0.04], dtype=torch.float64)  # ||b|| = 0.05
    start = torch.tensor([199, 50, 5, 0])
    g = estimation_gap(Biased(Oracle(SCHED, x0_point), b), x0_point.expand(4, 2).clone(), SCHED, start,
                       generator=gen(17))
    gamma, c = gap_coefficients(SCHED)
    for col, t0 in enumerate(start.tolist()):
        k = 0.0
        for t in range(t0, -1, -1):
            k = float(gamma[t]) * k + float(c[t])
            j = 199 - t
            assert float(g.delta[j, col]) == pytest.approx(0.05, rel=1e-9)
            assert float(g.e[j, col]) == pytest.approx(k * 0.05, rel=1e-9)
            assert float(g.e_direct[j, col]) == pytest.approx(k * 0.05, rel=1e-7)
        torch.testing.assert_close(g.e_final[col], -k * b)


def test_gap_recursion_matches_brute_force_chains():
    # an independent brute force: each point's two chains run separately with the posterior formula
    sched = Schedule.cosine(60)
    net = TinyNet(sched.T, seed=1)
    mix = ring8()
    x0 = mix.sample(5, generator=gen(18), dtype=torch.float64)
    start = torch.tensor([59, 30, 7, 0, 45])
    eps = torch.randn(5, 2, generator=gen(19), dtype=torch.float64)
    noise = torch.randn(60, 5, 2, generator=gen(20), dtype=torch.float64)
    g = estimation_gap(net, x0, sched, start, eps=eps, noise=noise)
    for bi in range(5):
        t0 = int(start[bi])
        ab = lambda t: float(sched.alpha_bar(t))  # noqa: E731
        x = math.sqrt(ab(t0)) * x0[bi] + math.sqrt(1 - ab(t0)) * eps[bi]
        x_hat = x.clone()
        for t in range(t0, -1, -1):
            beta = float(sched.betas[t])
            c_x0 = math.sqrt(ab(t - 1)) * beta / (1 - ab(t))
            c_xt = math.sqrt(1 - beta) * (1 - ab(t - 1)) / (1 - ab(t))
            sig = math.sqrt((1 - ab(t - 1)) / (1 - ab(t)) * beta)
            with torch.no_grad():
                eps_theta = net(x_hat[None], torch.tensor([t]))[0]
            x0_pred = (x_hat - math.sqrt(1 - ab(t)) * eps_theta) / math.sqrt(ab(t))
            delta = (x_hat - math.sqrt(ab(t)) * x0[bi]) / math.sqrt(1 - ab(t)) - eps_theta
            z = noise[59 - t, bi]
            x_hat = c_x0 * x0_pred + c_xt * x_hat + sig * z
            x = c_x0 * x0[bi] + c_xt * x + sig * z
            j = 59 - t
            assert float(g.delta[j, bi]) == pytest.approx(float(delta.norm()), rel=1e-10)
            assert float(g.e[j, bi]) == pytest.approx(float((x_hat - x).norm()), rel=1e-8, abs=1e-12)
        torch.testing.assert_close(x, x0[bi])  # the actual chain ends exactly at x0
        torch.testing.assert_close(g.x_pred[bi], x_hat, rtol=1e-10, atol=1e-12)
    for j in range(60):
        assert not math.isnan(float(g.mean("e")[j]))  # row 0 (t=59) has the first point active
    torch.testing.assert_close(g.e, g.e_direct, rtol=1e-7, atol=1e-12, equal_nan=True)


def test_gap_on_images_shapes_and_seed():
    base = ScaledLinear(SCHED, scale=0.8)
    x0 = 0.5 * torch.randn(3, 1, 8, 8, generator=gen(21))
    g1 = estimation_gap(base, x0, SCHED, 40, generator=gen(22))
    g2 = estimation_gap(base, x0, SCHED, 40, generator=gen(22))
    assert g1.e.shape == (41, 3) and g1.x_pred.shape == x0.shape and g1.e_final.shape == x0.shape
    assert torch.equal(g1.timesteps, torch.arange(40, -1, -1)) and torch.equal(g1.levels, torch.arange(39, -2, -1))
    assert torch.equal(g1.e, g2.e) and torch.equal(g1.delta, g2.delta)
    assert float(g1.e[-1].min()) > 0
    assert g1.quantile("delta").shape == (41, 3)


def test_gap_bad_input():
    ideal = IdealDenoiser(ring8(), SCHED)
    x0 = torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"start_t must be in \[0, 199\].*200"):
        estimation_gap(ideal, x0, SCHED, torch.tensor([5, 200, 3]))
    with pytest.raises(ValueError, match="start_t must be in"):
        estimation_gap(ideal, x0, SCHED, -1)
    with pytest.raises(TypeError, match="start_t"):
        estimation_gap(ideal, x0, SCHED, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"start_t must be a scalar or have shape \[B\]"):
        estimation_gap(ideal, x0, SCHED, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="shape of x"):
        estimation_gap(lambda x, t: x[:, :1], x0, SCHED, 5)
    with pytest.raises(ValueError, match=r"not finite.*\(t=3\)"):
        estimation_gap(lambda x, t: x / (t[:, None] - 3), x0, SCHED, 10)
    with pytest.raises(ValueError, match="noise must have shape"):
        estimation_gap(ideal, x0, SCHED, 10, noise=torch.randn(5, 3, 2))


# ---------------------------------------------------------------------- distribution drift
def predicted_std(schedule, ts, w, eta, s2):
    """Exact std of the linear sampler x_s = (p + q w_t) x_t + sigma z from x_T ~ N(0, I) (per feature), and of
    q(x_t) for data N(0, s2 I); listed for every state incl. the end."""
    v, model, data = 1.0, [], []
    ts = ts.tolist() + [-1]
    for i, t in enumerate(ts):
        a = float(schedule.alpha_bar(t))
        model.append(math.sqrt(v))
        data.append(math.sqrt(a * s2 + 1 - a))
        if t >= 0:
            p, q, sig = step_coeffs(schedule, t, ts[i + 1], eta)
            v = (p + q * float(w[t])) ** 2 * v + sig**2
    return torch.tensor(model, dtype=torch.float64), torch.tensor(data, dtype=torch.float64)


def test_variance_ratio_curve_for_2d_mixture_matches_exact_linear_sampler():
    s2 = 0.25
    mix = GaussianMixture([1.0], [[0.0, 0.0]], [[s2, s2]])
    model = ScaledLinear(SCHED, s2=s2, scale=0.9)  # a deliberately wrong denoiser: the spread drifts
    dd = distribution_drift(model, mix, SCHED, 10, n_samples=3000, eta=1.0, generator=gen(23), with_mmd=False)
    std_m, std_d = predicted_std(SCHED, SCHED.timesteps(10), model.w, 1.0, s2)
    assert dd.t.tolist() == SCHED.timesteps(10).tolist() + [-1]
    torch.testing.assert_close(dd.std_data, std_d, rtol=1e-12, atol=0)  # exact for a mixture
    torch.testing.assert_close(dd.std_ratio, std_m / std_d, rtol=0.04, atol=0)  # Monte Carlo
    assert abs(float(dd.std_ratio[-1]) - 1) > 0.05  # the wrong model really is off
    assert torch.isnan(dd.mmd).all()


def test_distribution_drift_on_images_from_data():
    s2 = 0.25
    data = math.sqrt(s2) * torch.randn(1500, 1, 8, 8, generator=gen(24))
    model = ScaledLinear(SCHED, s2=s2, scale=1.1)
    dd = distribution_drift(model, data, SCHED, 6, n_samples=400, eta=0.0, generator=gen(25), n_reference=400,
                            record_every=2)
    assert dd.trajectory.x.shape[1:] == (400, 1, 8, 8)
    assert dd.mmd.shape == dd.std_ratio.shape == dd.t.shape == (dd.trajectory.x.shape[0],)
    # std_data is exact for the empirical data: sqrt(abar var(x0) + 1 - abar), per-feature population variance
    var0 = float(data.double().reshape(1500, -1).var(0, unbiased=False).mean())
    for j, t in enumerate(dd.t.tolist()):
        a = float(SCHED.alpha_bar(t))
        assert float(dd.std_data[j]) == pytest.approx(math.sqrt(a * var0 + 1 - a), rel=1e-9)
        assert float(dd.std_model[j]) == pytest.approx(total_std(dd.trajectory.x[j]), rel=1e-12)
    std_m, _ = predicted_std(SCHED, SCHED.timesteps(6), model.w, 0.0, s2)
    kept = torch.cat([dd.trajectory.recorded, torch.tensor([6])])
    torch.testing.assert_close(dd.std_model, std_m[kept], rtol=0.03, atol=0)


def test_distribution_drift_mmd_detects_a_biased_model_and_is_reproducible():
    s2 = 0.25
    mix = GaussianMixture([1.0], [[0.0, 0.0]], [[s2, s2]])
    good = IdealDenoiser(mix, SCHED)
    bad = Biased(good, torch.tensor([0.3, 0.0]))
    # 40 ancestral steps of the ideal denoiser track q(x_t) closely (few steps would visibly shrink the spread)
    kw = dict(n_samples=400, eta=1.0, bandwidths=[0.5, 1.0, 2.0], record_every=5)
    d_good = distribution_drift(good, mix, SCHED, 40, generator=gen(26), **kw)
    d_bad = distribution_drift(bad, mix, SCHED, 40, generator=gen(26), **kw)
    ts = SCHED.timesteps(40)
    assert d_good.t.tolist() == ts[::5].tolist() + [int(ts[-1]), -1]  # the last step is always kept
    assert float(d_good.mmd.abs().max()) < 0.03
    assert float(d_bad.mmd[-1]) > 0.1
    again = distribution_drift(bad, mix, SCHED, 40, generator=gen(26), **kw)
    assert torch.equal(again.mmd, d_bad.mmd) and torch.equal(again.std_ratio, d_bad.std_ratio)
    # brute-force recomputation with the documented order of randomness: x_T, the sampler noise, then one
    # reference draw from the exact noised mixture per recorded state
    g = gen(26)
    x_T = torch.randn(400, 2, generator=g)
    torch.randn(40, 400, 2, generator=g)
    assert torch.equal(d_bad.trajectory.x[0], x_T)
    for j, t in enumerate(d_bad.t.tolist()):
        ref = mix.noised(float(SCHED.alpha_bar(t))).sample(400, generator=g)
        assert float(d_bad.mmd[j]) == pytest.approx(mmd(d_bad.trajectory.x[j], ref, [0.5, 1.0, 2.0]), rel=1e-12)


def test_variance_ratio_is_a_deprecated_alias_of_std_ratio_and_bad_input():
    x = torch.randn(500, 3, generator=gen(27))
    with pytest.warns(DeprecationWarning, match="std_ratio"):
        assert variance_ratio(2 * x, x) == pytest.approx(2.0, rel=1e-12)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="same number of features"):
        variance_ratio(x, torch.randn(5, 2))
    ideal = IdealDenoiser(ring8(), SCHED)
    with pytest.raises(ValueError, match="x_T must have the sample shape"):
        distribution_drift(ideal, ring8(), SCHED, 4, x_T=torch.randn(5, 3))
    with pytest.raises(TypeError, match="data must be"):
        distribution_drift(ideal, [1, 2], SCHED, 4)
    with pytest.raises(ValueError, match="n_samples"):
        distribution_drift(ideal, ring8(), SCHED, 4, n_samples=1)


# ---------------------------------------------------------------------- bad input (issue 16)
def test_std_ratio_and_total_std_refuse_what_has_no_spread_or_no_value():
    x = torch.randn(10, 2, generator=gen(0))
    with pytest.raises(ValueError, match="reference must have a positive spread"):  # was ZeroDivisionError
        std_ratio(x, torch.ones(10, 2))
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):  # was IndexError
        std_ratio([], x)
    with pytest.raises(ValueError, match="x must be finite"):  # was NaN
        total_std(torch.tensor([[1.0], [math.inf]]))
    with pytest.raises(ValueError, match=r"x must hold at least 2 samples of at least one feature, got shape \(2, 0\)"):
        total_std(torch.zeros(2, 0))  # found by hypothesis: NaN
    # huge values: the spread is computed on x / 2^k, exactly
    assert total_std(x.double() * 2.0**600) == total_std(x.double()) * 2.0**600
    assert std_ratio(x.double() * 2.0**600, x.double()) == std_ratio(x.double(), x.double()) * 2.0**600
    assert math.isfinite(std_ratio(x.double() * 1e300, x.double()))


def test_drift_entries_check_their_own_arguments():
    ideal = IdealDenoiser(ring8(), SCHED)
    with pytest.raises(TypeError, match="paths must be a PairedTrajectories, got str"):  # was AttributeError
        paths_drift(ideal, "paths", SCHED)
    with pytest.raises(TypeError, match="start_t must hold values on a real device"):
        estimation_gap(ideal, torch.zeros(2, 2), SCHED, torch.zeros(2, dtype=torch.long, device="meta"))
    with pytest.raises(TypeError, match="start_t must be a LongTensor of integer timesteps"):
        estimation_gap(ideal, torch.zeros(2, 2), SCHED, torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(TypeError, match="data must be a floating-point tensor .*int64"):  # was NotImplementedError
        distribution_drift(ideal, torch.zeros(6, 2, dtype=torch.long), SCHED, 2, n_samples=4)
    with pytest.raises(ValueError, match="data must vary"):  # was a NaN variance ratio at t = -1
        distribution_drift(ideal, torch.ones(6, 2), SCHED, 2, n_samples=4)
    with pytest.raises(TypeError, match="x_T must be a floating-point tensor"):
        step_drift(ideal, ideal, torch.zeros(3, 2, dtype=torch.long), SCHED, 2)


def test_step_drift_norms_of_float32_values_beyond_1e19_stay_finite():
    """The squares of float32 values beyond ~1.8e19 overflow: the norms are summed in float64."""
    def far(x, t):
        return torch.full_like(x, 1e20)

    d = step_drift(far, lambda x, t: torch.zeros_like(x), torch.zeros(3, 2), SCHED, 2)
    assert d.drift.dtype == torch.float32 and bool(torch.isfinite(d.drift).all())


# ---------------------------------------------------------------------- the exact flow and the two references
def _gauss_flow_scale(v: float, t: int, schedule: Schedule) -> float:
    """The probability-flow ODE of N(0, v) maps x_{T-1} to x_t = x_{T-1} sqrt(q_t / q_{T-1}), q = a v + 1 - a
    (quantiles to quantiles of the Gaussian marginals; the closed form of tests/test_solvers.py)."""
    q = lambda s: float(schedule.alpha_bar(s)) * v + 1 - float(schedule.alpha_bar(s))  # noqa: E731
    return math.sqrt(q(t) / q(schedule.T - 1))


def test_the_exact_flow_of_a_gaussian_is_the_closed_form_and_the_total_error_reference():
    """On N(0, v) the exact flow is the closed form to 1e-6 at every timestep and at the end, so the total error
    of any run is its distance to the closed-form endpoint; the estimation error is the distance to the ideal run
    with the same steps, their gap the ideal run's own error, and total^2 = estimation^2 + disc^2 + 2 cross."""
    from seqdiff_kit.data import gauss1d
    from seqdiff_kit.drift import exact_flow, two_references
    sched, v = Schedule.linear(), 0.25
    mix = gauss1d(v)
    x_T = torch.tensor([[1.0], [-2.0], [0.3], [3.5]], dtype=torch.float64)
    flow = exact_flow(mix, sched, x_T)
    assert flow.t.tolist() == list(range(999, -2, -1)) and torch.equal(flow.x[0], x_T)
    closed = torch.stack([x_T * _gauss_flow_scale(v, t, sched) for t in flow.t.tolist()])
    assert float((flow.x - closed).abs().max()) < 1e-6
    ideal = IdealDenoiser(mix, sched)
    for steps in (5, 20):
        r = two_references(lambda x, t: 0.9 * ideal(x, t), mix, sched, x_T, steps, flow=flow)
        end = x_T * _gauss_flow_scale(v, -1, sched)
        assert float((r.final("total") - (r.model.final - end).abs()[:, 0]).abs().max()) < 1e-6
        assert float((r.final("discretisation") - (r.ideal.final - end).abs()[:, 0]).abs().max()) < 1e-6
        assert torch.equal(r.final("estimation"), (r.model.final - r.ideal.final).abs()[:, 0])
        torch.testing.assert_close(r.total**2, r.estimation**2 + r.discretisation**2 + 2 * r.cross,
                                   atol=1e-12, rtol=1e-12)
        assert r.mean("total").shape == (steps + 1,) and float(r.total[0].abs().max()) == 0.0
    # the flow is computed when not given; a flow from another x_T and a stochastic solver are refused
    # without a flow it solves one at the run's own timesteps only, as exact
    own = two_references(ideal, mix, sched, x_T, 3)
    assert torch.equal(own.final("estimation"), torch.zeros(4, dtype=torch.float64))
    end = x_T * _gauss_flow_scale(v, -1, sched)
    assert float((own.final("total") - (own.model.final - end).abs()[:, 0]).abs().max()) < 1e-6
    sparse = exact_flow(mix, sched, x_T, timesteps=[999, 500, 3])
    assert sparse.t.tolist() == [999, 500, 3, -1]
    closed = torch.stack([x_T * _gauss_flow_scale(v, t, sched) for t in sparse.t.tolist()])
    assert float((sparse.x - closed).abs().max()) < 1e-6
    with pytest.raises(ValueError, match="timesteps must start at T-1 = 999"):
        exact_flow(mix, sched, x_T, timesteps=[500, 3])
    with pytest.raises(ValueError, match="timesteps belongs to solver='rk4'"):
        exact_flow(mix, sched, x_T, "heun", timesteps=[999, 3])
    with pytest.raises(ValueError, match="reference must record every timestep"):
        two_references(ideal, mix, sched, x_T, 4, flow=sparse)
    with pytest.raises(ValueError, match="flow must start from this x_T"):
        two_references(ideal, mix, sched, x_T + 1, 3, flow=flow)
    with pytest.raises(ValueError, match="deterministic solver"):
        two_references(ideal, mix, sched, x_T, 3, solver="ddpm", flow=flow)
    with pytest.raises(ValueError, match="deterministic solver"):
        two_references(ideal, mix, sched, x_T, 3, eta=0.5, flow=flow)


@pytest.mark.slow  # the exact flow of 4000 points
def test_on_the_shipped_ring8_networks_sa_is_farther_from_the_ideal_path_but_closer_to_the_exact_flow():
    """5 DDIM steps, 1000 points from each x_T seed 0-3. Against the ideal denoiser's 5-step path (estimation
    error) SA ends farther than simple; against the exact probability-flow endpoint (total error) it ends closer,
    even closer than the ideal denoiser's own 5-step run, because its error points against the sampler's
    discretisation error (negative cross term). Each direction is asserted beyond 4 standard errors of the
    paired per-point differences, and holds for every seed."""
    from seqdiff_kit.drift import exact_flow, two_references
    from seqdiff_kit.recipes import load_shipped
    sched, mix = Schedule.linear(), ring8()
    x_T = torch.cat([torch.randn(1000, 2, generator=gen(s)) for s in range(4)])
    flow = exact_flow(mix, sched, x_T, timesteps=sched.timesteps(5))  # the states the 5-step runs visit
    r = {k: two_references(load_shipped(f"ring8_{k}").model, mix, sched, x_T, 5, flow=flow) for k in ("simple", "sa")}

    def paired(d):
        se = float(d.std()) / math.sqrt(d.numel())
        return float(d.mean()), se, [float(c.mean()) for c in d.chunk(4)]

    est, se_est, per_est = paired(r["sa"].final("estimation") - r["simple"].final("estimation"))
    tot, se_tot, per_tot = paired(r["sa"].final("total") - r["simple"].final("total"))
    assert est > 4 * se_est and all(v > 0 for v in per_est), (est, se_est, per_est)
    assert tot < -4 * se_tot and all(v < 0 for v in per_tot), (tot, se_tot, per_tot)
    vs_ideal, se_vi, _ = paired(r["sa"].final("total") - r["sa"].final("discretisation"))
    assert vs_ideal < -4 * se_vi, (vs_ideal, se_vi)
    cross, se_cross, _ = paired(r["sa"].final("cross"))
    assert cross < -4 * se_cross, (cross, se_cross)


def test_fit_eps_scale_walk_finds_the_full_scans_minimum_on_the_shipped_network():
    """The walk from the largest factor down stops past the valley and picks what scanning every c picks."""
    from seqdiff_kit.drift import exact_flow, fit_eps_scale
    from seqdiff_kit.recipes import load_shipped
    from seqdiff_kit.solvers import sample

    mixture, schedule = ring8(), Schedule.linear(1000)
    model = load_shipped("ring8_simple").model
    x_T = torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    end = exact_flow(mixture, schedule, x_T, timesteps=[schedule.T - 1]).final
    cs = tuple(round(0.90 + 0.01 * i, 2) for i in range(11))
    with torch.no_grad():
        for steps in (5, 20):
            fit = fit_eps_scale(model, x_T, end, schedule, steps, cs)
            full = [float((sample(model, x_T, schedule, steps, eps_scale=c).final - end).double().norm(dim=1).mean())
                    for c in cs]
            assert fit.c == cs[full.index(min(full))] < 1.0, steps
            ran = ~torch.isnan(fit.mean_error)
            assert torch.allclose(fit.mean_error[ran], torch.tensor(full, dtype=torch.float64)[ran], rtol=1e-12)
            assert not bool(ran.all()), steps  # it stopped before the smallest factors


def test_fit_eps_scale_finds_the_planted_factor():
    """A model that is the ideal denoiser divided by 0.8 is fitted back to c = 0.8 against the ideal's own run."""
    from seqdiff_kit.drift import fit_eps_scale
    from seqdiff_kit.solvers import sample

    mixture, schedule = ring8(), Schedule.linear(1000)
    ideal = IdealDenoiser(mixture, schedule)
    x_T = torch.randn(50, 2, generator=torch.Generator().manual_seed(2))
    target = sample(ideal, x_T, schedule, 10).final
    fit = fit_eps_scale(lambda x, t: ideal(x, t) / 0.8, x_T, target, schedule, 10, (0.7, 0.75, 0.8, 0.85, 1.0))
    assert fit.c == 0.8 and float(fit.mean_error[2]) < 1e-5


@pytest.mark.parametrize("kwargs, message", [
    (dict(cs=()), "cs must hold"), (dict(cs=(1.0, -0.5)), "cs\\[1\\]"),
    (dict(target=torch.zeros(3, 2)), "target must have x_T's shape"),
])
def test_fit_eps_scale_refuses_bad_input(kwargs, message):
    from seqdiff_kit.drift import fit_eps_scale

    schedule = Schedule.linear(1000)
    args = dict(model=lambda x, t: x, x_T=torch.zeros(4, 2), target=torch.zeros(4, 2), schedule=schedule, steps=5,
                cs=(1.0,))
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        fit_eps_scale(**args)
