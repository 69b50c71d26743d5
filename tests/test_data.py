"""Gaussian mixtures: the exact noised marginal, posterior mean and eps* against independent references."""
import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from seqdiff_kit import GaussianMixture, IdealDenoiser, Schedule, digits, grid25, ring8, two_moons


def brute_log_prob(mix: GaussianMixture, x: torch.Tensor, a: float) -> torch.Tensor:
    """log p_t(x) from torch.distributions, one component at a time (an independent reference)."""
    eye = torch.eye(mix.dim, dtype=torch.float64)
    logs = [MultivariateNormal(math.sqrt(a) * mix.means[i], a * mix.covariances[i] + (1 - a) * eye).log_prob(x)
            + mix.weights[i].log() for i in range(mix.n_components)]
    return torch.logsumexp(torch.stack(logs, 1), 1)


def random_full_mixture(dim=3, m=4, seed=0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(m, generator=g, dtype=torch.float64) + 0.1
    A = torch.randn(m, dim, dim, generator=g, dtype=torch.float64) * 0.5
    cov = A @ A.transpose(1, 2) + 0.05 * torch.eye(dim, dtype=torch.float64)
    return GaussianMixture(w / w.sum(), 2 * torch.randn(m, dim, generator=g, dtype=torch.float64), cov)


MIXTURES = {"ring8": ring8(), "grid25": grid25(), "two_moons": two_moons(), "full3d": random_full_mixture()}
T_VALUES = [0, 1, 250, 999]


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_a_mixtures_densities_are_the_plain_reductions_bit_for_bit(dim, monkeypatch):
    """log N adds its per-feature terms directly for one or two features (a reduction over so short a dimension
    costs far more): the numbers and the layout of the plain ``sum(-1)``, so every density, eps* and posterior
    mean keeps its bits (the reductions after it add in the same order), on a grid (x built from a meshgrid,
    strided) and on points."""
    import seqdiff_kit.data as data_mod

    mix = random_full_mixture(dim=dim, m=5, seed=dim)
    g = torch.Generator().manual_seed(dim)
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-3, 3, 7, dtype=torch.float64)] * dim, indexing="xy"), -1)
    xs = (grid.reshape(-1, dim), torch.randn(300, dim, generator=g, dtype=torch.float64))
    alpha_bars = (1.0, 0.3, torch.rand(300, generator=g, dtype=torch.float64))

    def quantities():
        return [f(x, a) for x in xs for a in alpha_bars if not (torch.is_tensor(a) and a.numel() != x.shape[0])
                for f in (mix.log_prob, mix.ideal_eps, mix.posterior_mean)]

    fast = quantities()
    monkeypatch.setattr(data_mod, "_feature_sum", lambda v: v.sum(-1))
    assert all(torch.equal(a, b) for a, b in zip(fast, quantities()))


@pytest.mark.parametrize("name", MIXTURES)
def test_log_prob_matches_torch_distributions(name):
    mix = MIXTURES[name]
    x = torch.randn(64, mix.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    for a in [1.0, 0.7, 0.01]:
        assert torch.allclose(mix.log_prob(x, a), brute_log_prob(mix, x, a), atol=1e-9)


@pytest.mark.parametrize("name", MIXTURES)
def test_ideal_eps_is_minus_sqrt_one_minus_abar_times_autograd_score(name):
    mix, sched = MIXTURES[name], Schedule.linear()
    g = torch.Generator().manual_seed(2)
    for t in T_VALUES:
        a = sched.alpha_bar(t).item()
        x = (torch.randn(32, mix.dim, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
        (grad,) = torch.autograd.grad(brute_log_prob(mix, x, a).sum(), x)
        expected = -math.sqrt(1 - a) * grad
        got = mix.ideal_eps(x.detach(), a)
        assert torch.allclose(got, expected, atol=1e-4, rtol=1e-6), (name, t)
        # the denoiser wraps the same quantity, indexed by t
        den = IdealDenoiser(mix, sched)(x.detach(), torch.full((32,), t))
        assert torch.allclose(den, got)


@pytest.mark.parametrize("name", MIXTURES)
def test_posterior_mean_agrees_with_tweedie(name):
    mix = MIXTURES[name]
    x = torch.randn(32, mix.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for a in [0.9, 0.3, 0.02]:
        tweedie = (x - math.sqrt(1 - a) * mix.ideal_eps(x, a)) / math.sqrt(a)
        assert torch.allclose(mix.posterior_mean(x, a), tweedie, atol=1e-8)


def test_posterior_mean_monte_carlo():
    """E[x0 | x_t in a small ball] estimated by rejection from joint samples matches posterior_mean."""
    mix, a = ring8(), 0.5
    g = torch.Generator().manual_seed(4)
    x0 = mix.sample(400_000, g, dtype=torch.float64)
    xt = math.sqrt(a) * x0 + math.sqrt(1 - a) * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    point = torch.tensor([[0.6, 0.2]], dtype=torch.float64)
    near = (xt - point).norm(dim=1) < 0.05
    est = x0[near].mean(0)
    se = x0[near].std(0) / math.sqrt(int(near.sum()))
    assert int(near.sum()) > 200
    assert bool(((est - mix.posterior_mean(point, a)[0]).abs() < 4 * se + 0.01).all())


def test_posterior_covariance_of_one_gaussian_is_the_conditional_formula():
    """One component N(mu, S): Cov[x0 | x_t] = S - a S (a S + (1 - a) I)^{-1} S for every x_t (a linear solve here,
    independent of the eigendecomposition the mixture uses)."""
    mix = random_full_mixture(dim=3, m=1, seed=7)
    S, eye = mix.covariances[0], torch.eye(3, dtype=torch.float64)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    for a in [0.999, 0.6, 0.05, 1e-4]:
        want = S - a * S @ torch.linalg.solve(a * S + (1 - a) * eye, S)
        got = mix.posterior_covariance(x, a)
        assert torch.allclose(got, want.expand(5, 3, 3), atol=1e-10), a


@pytest.mark.parametrize("name", ["ring8", "full3d"])
def test_posterior_covariance_matches_importance_weighted_monte_carlo(name):
    """q(x0 | x_t) is proportional to p(x0) N(x_t; sqrt(a) x0, (1 - a) I): weight prior draws by the likelihood.
    Every entry within 5 standard errors, sqrt((C_ii C_jj + C_ij^2) / ESS) with ESS = (sum w)^2 / sum w^2."""
    mix = MIXTURES[name]
    g = torch.Generator().manual_seed(9)
    x0 = mix.sample(400_000, g, dtype=torch.float64)
    points = torch.randn(3, mix.dim, generator=g, dtype=torch.float64)
    for a in [0.5, 0.1]:
        want = mix.posterior_covariance(points, a)
        for k, point in enumerate(points):
            logw = -((point - math.sqrt(a) * x0) ** 2).sum(1) / (2 * (1 - a))
            w = torch.softmax(logw, 0)
            ess = 1.0 / float((w**2).sum())
            assert ess > 500, (name, a, ess)
            m = w @ x0
            cov = ((x0 - m) * w[:, None]).T @ (x0 - m)
            d = want[k].diagonal()
            se = ((d[:, None] * d[None, :] + want[k] ** 2) / ess).sqrt()
            assert bool(((cov - want[k]).abs() < 5 * se).all()), (name, a, cov, want[k])
            assert torch.allclose(m, mix.posterior_mean(point[None], a)[0], atol=float(5 * d.sqrt().max()) / ess**0.5)


def test_law_of_total_covariance():
    """E_{x_t}[Cov[x0 | x_t]] + Cov[E[x0 | x_t]] = Cov[x0] over the exact marginal of x_t (Monte Carlo)."""
    mix, a, n = two_moons(), 0.3, 40_000
    xt = mix.noised(a).sample(n, torch.Generator().manual_seed(10), dtype=torch.float64)
    within = mix.posterior_covariance(xt, a)
    dev = mix.posterior_mean(xt, a) - mix.posterior_mean(xt, a).mean(0)
    between = dev[:, :, None] * dev[:, None, :]
    total = within.mean(0) + between.sum(0) / (n - 1)
    se = (within.std(0) + between.std(0)) / math.sqrt(n)
    assert bool(((total - mix.covariance()).abs() < 5 * se).all()), (total, mix.covariance())


def test_noised_marginal_moments_match_monte_carlo_add_noise():
    mix, sched = two_moons(), Schedule.linear()
    g = torch.Generator().manual_seed(5)
    n = 200_000
    for t in [0, 100, 600]:
        x0 = mix.sample(n, g, dtype=torch.float64)
        xt = sched.add_noise(x0, torch.full((n,), t), torch.randn(x0.shape, generator=g, dtype=torch.float64))
        noised = mix.noised(sched.alpha_bar(t).item())
        mean_se = (noised.covariance().diagonal().sqrt() / math.sqrt(n))
        assert bool(((xt.mean(0) - noised.mean()).abs() < 4 * mean_se).all()), t
        assert torch.allclose(torch.cov(xt.T), noised.covariance(), atol=0.01), t


def test_stable_at_the_ends_and_far_from_every_mode():
    mix, sched = grid25(), Schedule.linear()
    den = IdealDenoiser(mix, sched)
    far = torch.tensor([[1e4, -1e4], [300.0, 0.0], [0.0, 0.0], [-50.0, 49.0]])
    for t in [0, 999]:
        tt = torch.full((4,), t)
        eps = den(far, tt)
        assert bool(torch.isfinite(eps).all()), t
        assert bool(torch.isfinite(den.x0(far, tt)).all()), t
        assert bool(torch.isfinite(mix.log_prob(far.double(), sched.alpha_bar(t).item())).all())
    # cosine ends with alpha_bar ~ 0: the posterior mean is the mixture mean, no division by sqrt(alpha_bar)
    cos = Schedule.cosine()
    near = torch.tensor([[1.0, -2.0], [0.3, 0.0]])
    x0 = IdealDenoiser(mix, cos).x0(near, torch.full((2,), 999))
    assert cos.alpha_bars[-1] < 1e-6
    assert torch.allclose(x0, mix.mean().float().expand(2, 2), atol=1e-2)


def test_sampling_matches_the_mixture_weights_and_moments():
    mix = random_full_mixture(dim=2, m=3, seed=7)
    x, labels = mix.sample(100_000, torch.Generator().manual_seed(0), return_labels=True, dtype=torch.float64)
    share = torch.bincount(labels, minlength=3).double() / 100_000
    assert torch.allclose(share, mix.weights, atol=4 * math.sqrt(0.25 / 100_000))
    assert torch.allclose(x.mean(0), mix.mean(), atol=0.03)
    assert torch.allclose(torch.cov(x.T), mix.covariance(), atol=0.05)
    # same generator seed, same draws
    again = mix.sample(100_000, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(x, again)


@pytest.mark.parametrize("kwargs, match", [
    (dict(weights=[0.5, 0.6], means=[[0.0], [1.0]], covariances=[[1.0], [1.0]]), "weights must sum to 1"),
    (dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], covariances=[[1.0], [-1.0]]), "positive definite"),
    (dict(weights=[1.0], means=[[0.0, 0.0]], covariances=[[[1.0, 2.0], [2.0, 1.0]]]), "positive definite"),
    (dict(weights=[1.0], means=[[0.0, 0.0]], covariances=[[1.0, 1.0, 1.0]]), "covariances must have shape"),
    (dict(weights=[-0.5, 1.5], means=[[0.0], [1.0]], covariances=[[1.0], [1.0]]), "non-negative"),
])
def test_bad_mixture_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


def test_x_of_the_wrong_dimension_is_refused():
    with pytest.raises(ValueError, match=r"x must have shape \[B, 2\]"):
        ring8().log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"x must have shape \[B, 2\]"):
        IdealDenoiser(ring8(), Schedule.linear())(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))


def test_digits_are_scaled_and_labelled():
    x, y = digits()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert sorted(y.unique().tolist()) == list(range(10))
    assert torch.bincount(y).min().item() >= 170


@pytest.mark.parametrize("arrays, match", [
    (dict(labels=np.arange(3)), r"lacks \['images'\] \(it holds \['labels'\]\); it must hold images"),
    (dict(images=np.zeros((3, 8, 8))), r"lacks \['labels'\]"),
    (dict(images=np.zeros((3, 8, 8)), labels=np.arange(4)), r"'labels' must be integers \[3\] .*got int64 \[4\]"),
    (dict(images=np.zeros((3, 64)), labels=np.arange(3)), r"'images' must be finite numbers \[N, H, W\]"),
    (dict(images=np.full((3, 8, 8), np.nan), labels=np.arange(3)), r"'images' must be finite numbers"),
    (dict(images=np.array([{}], dtype=object), labels=np.arange(1)), r"Object arrays cannot be loaded"),
    (np.zeros(3), r"holds one array, not an .npz archive"),
    (b"junk", r"is not a NumPy .npz archive"),
])
def test_a_digits_file_that_is_not_one_is_a_value_error_naming_it(tmp_path, arrays, match):
    """An .npz without 'images' once escaped as a KeyError."""
    path = tmp_path / "d.npz"
    if isinstance(arrays, bytes):
        path.write_bytes(arrays)
    elif isinstance(arrays, dict):
        np.savez(path, **arrays)
    else:
        with open(path, "wb") as f:
            np.save(f, arrays)
    with pytest.raises(ValueError, match=rf"^digits file '.*d.npz'.*{match}"):
        digits(path)


# ---------------------------------------------------------------------- bad input (issue 16)
@pytest.mark.parametrize("which, value, match", [
    ("means", math.inf, r"means must be in \[-1e\+100, 1e\+100\]"),
    ("means", math.nan, "means must not be NaN"),
    ("means", 1e200, r"means must be in \[-1e\+100, 1e\+100\]"),
    ("covariances", math.nan, "covariances must not be NaN"),
    ("covariances", math.inf, r"covariances must be in \[-1e\+100, 1e\+100\]"),
    ("weights", math.nan, "weights must not be NaN"),
])
def test_mixture_refuses_non_finite_and_huge_parameters(which, value, match):
    """GaussianMixture accepted inf/NaN means: every sample and density came out NaN."""
    args = {"weights": [0.5, 0.5], "means": [[0.0, 0.0], [1.0, 1.0]], "covariances": [[1.0, 1.0], [1.0, 1.0]]}
    args[which] = torch.full(torch.as_tensor(args[which]).shape, value, dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**args)


def test_mixture_refuses_tensors_it_cannot_compute_with():
    mix = ring8()
    with pytest.raises(TypeError, match="x must be a real-valued tensor .*got dtype complex64"):
        mix.log_prob(torch.zeros(2, 2, dtype=torch.complex64))
    with pytest.raises(TypeError, match="x must hold values on a real device"):
        mix.ideal_eps(torch.zeros(2, 2, device="meta"), 0.5)
    with pytest.raises(TypeError, match="dtype must be one of the dtypes float16, bfloat16, float32 or float64"):
        mix.sample(3, dtype=torch.int64)
    with pytest.raises(ValueError, match="alpha_bar must not be NaN"):
        mix.ideal_eps(torch.zeros(2, 2), math.nan)


def test_x_without_a_finite_density_is_an_error_not_nan():
    """Far beyond float64's range of squared distances (or NaN), no responsibility is defined."""
    mix = ring8()
    for x in (torch.tensor([[1e300, 0.0]], dtype=torch.float64), torch.tensor([[math.nan, 0.0]])):
        for name in ("log_prob", "ideal_eps", "posterior_mean", "responsibilities"):
            with pytest.raises(ValueError, match=r"x must be finite and near enough .*x\[0\]"):
                getattr(mix, name)(x, 0.5)
    assert bool(torch.isfinite(mix.ideal_eps(torch.tensor([[1e30, 0.0]], dtype=torch.float64), 0.5)).all())


def test_ideal_denoiser_refuses_integer_x_and_reports_an_eps_beyond_float16():
    s = Schedule.linear()
    m = IdealDenoiser(ring8(), s)
    with pytest.raises(TypeError, match="x must be a floating-point tensor .*int64"):
        m(torch.zeros(2, 2, dtype=torch.long), torch.tensor([0, 1]))
    # a tight mode: at t = 0, eps* = sqrt(1 - a) (x - sqrt(a) mu) / (a std^2 + 1 - a) is about 100 x
    tight = IdealDenoiser(GaussianMixture([1.0], [[0.0, 0.0]], [[1e-6, 1e-6]]), s)
    assert bool(torch.isfinite(tight(torch.full((2, 2), 100.0, dtype=torch.float16), torch.tensor([0, 0]))).all())
    with pytest.raises(ValueError, match=r"eps\*\(x, t\) does not fit in x's dtype float16: its largest magnitude"):
        tight(torch.full((2, 2), 1000.0, dtype=torch.float16), torch.tensor([0, 0]))
