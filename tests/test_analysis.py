"""The 1-D Gaussian closed forms: the SA optimum against training through the real loss, and the exact
sampler variance against Monte-Carlo runs of the real sampler."""
import itertools
import math

import pytest
import torch
from einops import repeat
from torch import nn

from seqdiff_kit import Schedule, sample
from seqdiff_kit.analysis import (gaussian_quadratics, gaussian_sa_objective, gaussian_sa_optimum,
                                  linear_sampler_std_ratio, linear_sampler_variances)
from seqdiff_kit.losses import Loss, sequence_aware_loss

T = 20
VAR = 0.5


@pytest.fixture(scope="module")
def sched():
    # a short schedule that still reaches alpha_bar ~ 0.03 at t = T-1
    return Schedule.linear(T, beta_start=1e-3, beta_end=0.3)


class LinearDenoiser(nn.Module):
    """``eps_theta(x, t) = a_t x`` with one learnable coefficient per timestep."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.as_tensor(a, dtype=torch.float64).clone())

    def forward(self, x, t):
        return self.a[t].to(x.dtype).reshape(-1, *([1] * (x.ndim - 1))) * x


def exact_batch(K, var, T_):
    """A batch on which the *empirical* SA loss equals its population value for every linear denoiser:
    every t once, times every sign pattern of (x0/sqrt(var), eps_0..eps_{K-1}) in {-1, 1}^(K+1).
    The loss is a quadratic polynomial in these K+1 variables, and Rademacher signs share the Gaussian's
    moments up to order 3, so the mean over this batch is the exact expectation (and so is its gradient)."""
    S = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=K + 1)), dtype=torch.float64)
    M = S.shape[0]
    t = repeat(torch.arange(T_), "t -> (t m)", m=M)
    x0 = repeat(math.sqrt(var) * S[:, 0], "m -> (t m) 1", t=T_)
    noise = repeat(S[:, 1:], "m k -> k (t m) 1", t=T_)
    return x0, t, noise


def test_lambda_zero_is_the_per_t_optimum(sched):
    for var in (0.1, 1.0, 3.0):
        ab = sched.alpha_bars
        ideal = (1 - ab).sqrt() / (ab * var + 1 - ab)
        for K in (1, 3):
            torch.testing.assert_close(gaussian_sa_optimum(var, K, 0.0, sched), ideal, rtol=1e-12, atol=1e-14)
    # the same for a long schedule (a 1000 x 1000 solve)
    long = Schedule.linear(1000)
    ab = long.alpha_bars
    torch.testing.assert_close(gaussian_sa_optimum(1.0, 2, 0.0, long), (1 - ab).sqrt() / (ab + 1 - ab))


@pytest.mark.parametrize("K, lam", [(1, 0.7), (2, 0.5), (3, 1.0), (4, 2.0)])
def test_objective_equals_the_real_loss_in_expectation(sched, K, lam):
    """The closed-form quadratic against ``sequence_aware_loss`` evaluated on the exact-expectation batch."""
    x0, t, noise = exact_batch(K, VAR, T)
    g = torch.Generator().manual_seed(K)
    for _ in range(3):
        a = 0.3 + torch.rand(T, generator=g, dtype=torch.float64)
        real = sequence_aware_loss(LinearDenoiser(a), x0, sched, K=K, lam=lam, t=t, noise=noise)
        closed = gaussian_sa_objective(a, VAR, K, lam, sched)
        for name in ("total", "simple", "sa"):
            torch.testing.assert_close(getattr(real, name).detach(), getattr(closed, name), rtol=1e-12, atol=1e-12)


def test_objective_matches_gaussian_monte_carlo(sched):
    """An independent check with real Gaussian draws (3 standard errors of the per-sample SA terms)."""
    K, lam, n = 3, 1.0, 20000
    a = gaussian_sa_optimum(VAR, K, lam, sched)
    g = torch.Generator().manual_seed(0)
    x0 = math.sqrt(VAR) * torch.randn(n, 1, generator=g, dtype=torch.float64)
    t = sched.sample_t(n, generator=g)
    noise = torch.randn(K, n, 1, generator=g, dtype=torch.float64)
    per_sample = torch.stack([sequence_aware_loss(LinearDenoiser(a), x0[i::100], sched, K=K, lam=lam,
                                                  t=t[i::100], noise=noise[:, i::100]).sa.detach()
                              for i in range(100)])  # 100 interleaved blocks of 200
    se = per_sample.std() / math.sqrt(per_sample.numel())
    closed = gaussian_sa_objective(a, VAR, K, lam, sched).sa
    assert abs(float(per_sample.mean() - closed)) < 3 * float(se)


def test_quadratic_is_banded_and_symmetric(sched):
    (A1, _, _), (A2, _, c2) = gaussian_quadratics(VAR, 3, sched)
    torch.testing.assert_close(A2, A2.T)
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    assert float(A2[(i - j).abs() >= 3].abs().max()) == 0.0 and float(A2[(i - j).abs() == 2].abs().min()) > 0
    assert torch.equal(A1, torch.diag(torch.diagonal(A1)))
    assert bool((torch.linalg.eigvalsh(A2) > 0).all())
    # constant term: (1/(K^2 T)) sum_t min(K, t + 1) = (1 + 2 + 3 (T - 2)) / (9 T)
    assert c2 == pytest.approx((1 + 2 + 3 * (T - 2)) / (9 * T), rel=1e-14)


@pytest.mark.parametrize("K, lam", [(2, 0.5), (3, 1.0)])
def test_gradient_descent_on_the_real_loss_converges_to_the_optimum(sched, K, lam):
    """The issue's key test. Exact expected gradients: L-BFGS on the real SA loss over the exact-expectation
    batch (autograd through ``sequence_aware_loss``) lands on the closed form to ~1e-8."""
    target = gaussian_sa_optimum(VAR, K, lam, sched)
    simple_opt = gaussian_sa_optimum(VAR, 1, 0.0, sched)
    assert float((target - simple_opt).norm() / target.norm()) > 0.05  # the SA optimum really differs
    x0, t, noise = exact_batch(K, VAR, T)
    model = LinearDenoiser(torch.zeros(T))
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=200, tolerance_grad=1e-13,
                            tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = sequence_aware_loss(model, x0, sched, K=K, lam=lam, t=t, noise=noise).total
        loss.backward()
        return loss

    opt.step(closure)
    torch.testing.assert_close(model.a.detach(), target, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("K, lam", [(2, 0.5), (3, 1.0)])
def test_stochastic_training_converges_to_the_optimum(sched, K, lam):
    """Plain minibatch training (fresh Gaussian data, ``Loss`` draws t and eps) gets within a few percent,
    far closer to the SA optimum than to the simple one. (a_0 is barely identifiable: x_0 is almost x0, so
    it is judged in the L2 norm over all t.)"""
    target = gaussian_sa_optimum(VAR, K, lam, sched)
    simple_opt = gaussian_sa_optimum(VAR, 1, 0.0, sched)
    model = LinearDenoiser(torch.zeros(T))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    loss = Loss("sa", K=K, lam=lam, antithetic=True)
    g = torch.Generator().manual_seed(0)
    steps, avg = 400, torch.zeros(T, dtype=torch.float64)
    for i in range(steps):
        if i == steps // 2:  # then average the iterates at a small step size (Polyak-Ruppert)
            for group in opt.param_groups:
                group["lr"] = 0.005
        x0 = math.sqrt(VAR) * torch.randn(2048, 1, generator=g, dtype=torch.float64)
        opt.zero_grad()
        loss(model, x0, sched, g).total.backward()
        opt.step()
        if i >= steps // 2:
            avg += model.a.detach()
    avg /= steps - steps // 2
    err = float((avg - target).norm() / target.norm())
    assert err < 0.02
    assert float((avg - simple_opt).norm() / target.norm()) > 3 * err


class _Tiny(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.register_buffer("a", torch.as_tensor(a, dtype=torch.float32))

    def forward(self, x, t):
        return self.a[t][:, None] * x


@pytest.mark.parametrize("steps, eta, spacing, variance", [
    (10, 0.0, "trailing", "small"), (7, 1.0, "linspace", "small"), (5, 0.5, "trailing", "small"),
    (20, 1.0, "trailing", "large")])
def test_std_ratio_matches_the_real_sampler(sched, steps, eta, spacing, variance):
    a = gaussian_sa_optimum(VAR, 3, 1.0, sched)
    n = 4000
    g = torch.Generator().manual_seed(steps)
    x_T = torch.randn(n, 1, generator=g)
    traj = sample(_Tiny(a), x_T, sched, steps, eta=eta, spacing=spacing, variance=variance, generator=g)
    V = linear_sampler_variances(a, VAR, sched, steps, eta=eta, spacing=spacing, variance=variance)
    # the final sample is Gaussian: its sample variance has standard error V sqrt(2 / (n - 1))
    mc = traj.x.double().var(dim=1).squeeze(-1)      # [steps + 1]
    se = V * math.sqrt(2 / (n - 1))
    assert bool(((mc - V).abs() < 3 * se + 1e-6).all()), (mc, V)
    ratio = linear_sampler_std_ratio(a, VAR, sched, steps, eta=eta, spacing=spacing, variance=variance)
    assert ratio == pytest.approx(math.sqrt(float(V[-1]) / VAR), rel=1e-12)


def test_deterministic_ratio_is_exact_per_sample(sched):
    """With eta = 0 the sampler is x_final = prod(m) x_T: check the propagated std on fixed points."""
    a = gaussian_sa_optimum(VAR, 2, 0.5, sched)
    x_T = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    final = sample(LinearDenoiser(a), x_T, sched, 6).final
    gain = math.sqrt(float(linear_sampler_variances(a, VAR, sched, 6)[-1]))
    torch.testing.assert_close(final.abs(), gain * x_T.abs(), rtol=1e-10, atol=1e-12)


def test_ideal_coefficients_with_1000_ddpm_steps_recover_the_variance():
    long = Schedule.linear(1000)
    for var in (1.0, 0.25):
        a = gaussian_sa_optimum(var, 1, 0.0, long)
        assert abs(linear_sampler_std_ratio(a, var, long, 1000, eta=1.0) - 1) < 0.01
        assert abs(linear_sampler_std_ratio(a, var, long, 1000, eta=0.0) - 1) < 0.005


def test_sa_optimum_inflates_the_sampled_spread():
    """What the SA loss does at the population optimum (docs/sa_results.md, "The 1-D closed form"): it counters
    few-step shrinkage and over-disperses at many deterministic steps."""
    long = Schedule.linear(1000)
    ideal = gaussian_sa_optimum(1.0, 1, 0.0, long)
    sa = gaussian_sa_optimum(1.0, 3, 1.0, long)
    for steps in (5, 10, 100, 1000):
        r_ideal = linear_sampler_std_ratio(ideal, 1.0, long, steps)
        r_sa = linear_sampler_std_ratio(sa, 1.0, long, steps)
        assert r_sa > r_ideal
    assert linear_sampler_std_ratio(ideal, 1.0, long, 5) < 0.75     # few-step DDIM shrinks
    assert abs(linear_sampler_std_ratio(sa, 1.0, long, 10) - 1) < abs(linear_sampler_std_ratio(ideal, 1.0, long, 10) - 1)
    assert linear_sampler_std_ratio(sa, 1.0, long, 1000) > 1.1       # many steps over-disperse


def test_bad_arguments(sched):
    with pytest.raises(ValueError, match=r"var must be in \(0.0"):
        gaussian_sa_optimum(0.0, 2, 0.5, sched)
    with pytest.raises(ValueError, match=r"K must be in \[1, 20\], got 21"):
        gaussian_sa_optimum(1.0, 21, 0.5, sched)
    with pytest.raises(ValueError, match="lam must be in"):
        gaussian_sa_optimum(1.0, 2, -0.5, sched)
    with pytest.raises(TypeError, match="schedule must be a Schedule"):
        gaussian_sa_optimum(1.0, 2, 0.5, "linear")
    a = torch.zeros(T)
    with pytest.raises(ValueError, match=r"a must hold one coefficient per timestep, shape \[T\] = \[20\]"):
        linear_sampler_std_ratio(torch.zeros(T + 1), 1.0, sched, 5)
    with pytest.raises(ValueError, match="a must be finite"):
        linear_sampler_std_ratio(torch.full((T,), float("nan")), 1.0, sched, 5)
    with pytest.raises(ValueError, match=r"eta must be in \[0.0, 1.0\], got 1.5"):
        linear_sampler_std_ratio(a, 1.0, sched, 5, eta=1.5)
    with pytest.raises(ValueError, match=r"steps must be in \[1, 20\], got 30"):
        linear_sampler_std_ratio(a, 1.0, sched, 30)
    with pytest.raises(ValueError, match="spacing must be one of"):
        linear_sampler_std_ratio(a, 1.0, sched, 5, spacing="log")
    with pytest.raises(ValueError, match="variance='large' needs eta=1.0"):
        linear_sampler_std_ratio(a, 1.0, sched, 5, variance="large")


def test_results_beyond_float64_raise_instead_of_inf(sched):
    """a = 1e300 gave an inf objective without a word and an OverflowError from the variance recursion."""
    huge = torch.full((T,), 1e300, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"a, var and lam give a loss beyond float64's range \(max \|a\| = 1e\+300"):
        gaussian_sa_objective(huge, VAR, 2, 1.0, sched)
    with pytest.raises(ValueError, match=r"a makes the sampler's variance exceed float64's range"):
        linear_sampler_std_ratio(huge, VAR, sched, 5)
    with pytest.raises(TypeError, match="a must be a real-valued tensor .*complex64"):
        linear_sampler_std_ratio(torch.zeros(T, dtype=torch.complex64), VAR, sched, 5)
