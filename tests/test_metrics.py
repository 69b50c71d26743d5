import math

import numpy as np
import pytest
import torch
from scipy import linalg as sla
from scipy import stats

from seqdiff_kit.data import ring8, two_moons
from seqdiff_kit.metrics import (KERNEL_BLOCK_ROWS, MEDIAN_MULTIPLIERS, ReferenceMMD, ReferenceSlicedWasserstein,
                                 frechet_distance, gaussian_frechet_distance, mean_log_likelihood, median_bandwidth,
                                 mmd, sliced_wasserstein)


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------- MMD
def mmd_brute(x, y, hs):
    """Direct double loop over pairs (small N only)."""
    x, y = x.double().reshape(len(x), -1), y.double().reshape(len(y), -1)

    def k(a, b):
        return sum(math.exp(-float(((a - b) ** 2).sum()) / (2 * h * h)) for h in hs)

    n, m = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return sxx + syy - 2 * sxy


def test_mmd_matches_brute_force_and_flattens_images():
    g = gen(0)
    x, y = torch.randn(9, 1, 2, 3, generator=g), torch.randn(7, 1, 2, 3, generator=g) + 0.3
    hs = [0.5, 1.0, 3.0]
    assert mmd(x, y, hs) == pytest.approx(mmd_brute(x, y, hs), rel=1e-10, abs=1e-12)
    # flattening: the image layout must not matter
    assert mmd(x, y, hs) == pytest.approx(mmd(x.reshape(9, 6), y.reshape(7, 6), hs), rel=1e-12)


def mmd_one_exp_per_bandwidth(x, y, hs):
    """The estimator with one ``exp`` per bandwidth (no squaring), vectorised, float64."""
    x, y = x.double(), y.double()

    def ksum(a, b):
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in hs)

    n, m = len(x), len(y)
    kxx, kyy = ksum(x, x), ksum(y, y)
    return float((kxx.sum() - kxx.trace()) / (n * (n - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1))
                 - 2 * ksum(x, y).mean())


@pytest.mark.parametrize("hs", [[m * 0.9 for m in MEDIAN_MULTIPLIERS],  # one chain of halvings: one exp
                                [0.05, 0.1, 0.2, 0.5, 1.0],              # two chains
                                [0.3, 0.7, 1.3]])                        # no halving: an exp each
def test_mmd_squaring_and_reference_reuse_keep_the_numbers(hs):
    """Squaring the wider kernel for a halved bandwidth and reusing the reference's part change only float64
    rounding: each squaring doubles a relative error of ~1e-16, eight of them stay below 1e-13."""
    g = gen(3)
    ref = ring8().sample(300, generator=g)
    score = ReferenceMMD(ref, hs)
    for shift in (0.0, 0.05, 0.5):
        x = ring8().sample(250, generator=g) + shift
        want = mmd_one_exp_per_bandwidth(x, ref, hs)
        assert mmd(x, ref, hs) == pytest.approx(want, rel=1e-12, abs=1e-15)
        assert score(x) == mmd(x, ref, hs)  # the same computation, reference part computed once


@pytest.mark.parametrize("n", [2, KERNEL_BLOCK_ROWS - 1, KERNEL_BLOCK_ROWS, KERNEL_BLOCK_ROWS + 1,
                               2 * KERNEL_BLOCK_ROWS + 7])
def test_mmd_in_blocks_of_rows_is_the_whole_matrix_estimate(n):
    """The kernel sums run over blocks of rows, each pair of a sample with itself computed once (the kernel is
    symmetric): the estimate of the whole matrices, to float64 rounding, at every size around a block's."""
    g = gen(5)
    hs = [m * 0.9 for m in MEDIAN_MULTIPLIERS]
    x, y = ring8().sample(n, generator=g), ring8().sample(n + 3, generator=g) + 0.1
    assert mmd(x, y, hs) == pytest.approx(mmd_one_exp_per_bandwidth(x, y, hs), rel=1e-12, abs=1e-15)
    assert mmd(y, x, hs) == pytest.approx(mmd_one_exp_per_bandwidth(y, x, hs), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("p", [1, 2])
def test_reference_sliced_wasserstein_is_sliced_wasserstein(p):
    """Directions and the reference's sorted projections computed once: the same numbers, bit for bit (the
    reference's projections are rescaled by a power of two, which is exact)."""
    g = gen(4)
    ref = ring8().sample(300, generator=g)
    score = ReferenceSlicedWasserstein(ref, n_projections=64, seed=7, p=p)
    for n, scale in ((300, 1.0), (211, 1.0), (300, 40.0), (50, 1e-3)):
        x = ring8().sample(n, generator=g) * scale  # scales that change the power-of-two scaling of the pair
        assert score(x) == sliced_wasserstein(x, ref, n_projections=64, generator=gen(7), p=p)


def test_reference_mmd_needs_fixed_bandwidths():
    with pytest.raises(ValueError, match="bandwidths must be given"):
        ReferenceMMD(torch.randn(10, 2), None)
    with pytest.raises(ValueError, match="features"):
        ReferenceMMD(torch.randn(10, 2), 1.0)(torch.randn(10, 3))


def gaussian_mmd2(shift, s1, s2, h, D):
    """Closed-form population MMD^2 between N(0, s1^2 I) and N(shift, s2^2 I) for one RBF kernel:
    E exp(-||u||^2/(2h^2)) with u ~ N(m, v I) is (h^2/(h^2+v))^(D/2) exp(-||m||^2/(2(h^2+v)))."""
    def e(m2, v):
        return (h * h / (h * h + v)) ** (D / 2) * math.exp(-m2 / (2 * (h * h + v)))
    return e(0, 2 * s1**2) + e(0, 2 * s2**2) - 2 * e(shift**2, s1**2 + s2**2)


def test_mmd_is_unbiased_for_the_gaussian_closed_form():
    # the unbiased estimator's expectation is the population MMD^2: average independent replicates
    D, h, shift = 2, 1.0, 0.8
    g = gen(1)
    vals = []
    for _ in range(40):
        x = torch.randn(150, D, generator=g, dtype=torch.float64)
        y = 1.3 * torch.randn(150, D, generator=g, dtype=torch.float64)
        y[:, 0] += shift
        vals.append(mmd(x, y, h))
    exact = gaussian_mmd2(shift, 1.0, 1.3, h, D)
    se = np.std(vals) / math.sqrt(len(vals))
    assert abs(np.mean(vals) - exact) < 4 * se + 1e-4, (np.mean(vals), exact, se)


def test_mmd_near_zero_for_same_distribution_and_grows_with_shift():
    g = gen(2)
    x = torch.randn(400, 2, generator=g)
    same = mmd(x, torch.randn(400, 2, generator=g))
    shifts = [0.25, 0.5, 1.0, 2.0]
    values = [mmd(x, torch.randn(400, 2, generator=g) + torch.tensor([s, 0.0])) for s in shifts]
    assert abs(same) < 0.01
    assert all(b > a for a, b in zip(values, values[1:]))
    assert values[0] > abs(same)


def test_median_bandwidth():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    y = torch.tensor([[6.0]])
    # pooled pairwise distances: 1, 3, 6, 2, 5, 3 -> median (lower) 3
    assert median_bandwidth(x, y) == pytest.approx(3.0)


def test_mmd_bad_input():
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match="same number of features"):
        mmd(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="bandwidths"):
        mmd(x, x, [1.0, -1.0])
    with pytest.raises(TypeError, match="bandwidths"):
        mmd(x, x, "wide")
    with pytest.raises(ValueError, match="at least 2 samples"):
        mmd(x[:1], x)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        mmd(x.numpy(), x)
    with pytest.raises(ValueError, match="finite"):
        mmd(torch.full((3, 2), float("nan")), x)


# ---------------------------------------------------------------------- sliced Wasserstein
def mean_abs_projection(D):
    """E|theta_1| for theta uniform on the unit sphere in R^D: Gamma(D/2) / (sqrt(pi) Gamma((D+1)/2))."""
    return math.exp(math.lgamma(D / 2) - math.lgamma((D + 1) / 2)) / math.sqrt(math.pi)


@pytest.mark.parametrize("D", [2, 5])
def test_sliced_wasserstein_of_a_pure_shift(D):
    # y = x + d: every projection's W1 is exactly |theta . d|, so SW1 -> ||d|| E|theta_1|
    g = gen(3)
    x = torch.randn(300, D, generator=g)
    d = torch.zeros(D)
    d[0] = 1.5
    sw = sliced_wasserstein(x, x + d, n_projections=20000, generator=gen(4))
    assert sw == pytest.approx(1.5 * mean_abs_projection(D), rel=0.02)


def test_sliced_wasserstein_of_shifted_gaussians_approaches_closed_form():
    g = gen(5)
    x = torch.randn(4000, 2, generator=g)
    y = torch.randn(4000, 2, generator=g) + torch.tensor([2.0, 0.0])
    sw = sliced_wasserstein(x, y, n_projections=2000, generator=gen(6))
    assert sw == pytest.approx(2.0 * 2 / math.pi, rel=0.04)
    # same distribution: only the sampling error remains
    assert sliced_wasserstein(x, torch.randn(4000, 2, generator=g)) < 0.06


def test_sliced_wasserstein_1d_equals_scipy_with_unequal_sizes():
    g = gen(7)
    x, y = torch.randn(37, generator=g), 0.5 + 2 * torch.randn(53, generator=g)
    # in 1-D every direction is +-1, so SW1 is the exact W1
    expected = stats.wasserstein_distance(x.numpy(), y.numpy())
    assert sliced_wasserstein(x, y, n_projections=3) == pytest.approx(expected, rel=1e-9)
    # p = 2 against a brute force of the quantile integral on a fine grid
    u = (np.arange(200000) + 0.5) / 200000
    w2 = math.sqrt(np.mean((np.quantile(x.double().numpy(), u, method="inverted_cdf")
                            - np.quantile(y.double().numpy(), u, method="inverted_cdf")) ** 2))
    assert sliced_wasserstein(x, y, n_projections=2, p=2) == pytest.approx(w2, rel=1e-3)


def test_sliced_wasserstein_reproducible_and_validated():
    g = gen(8)
    x, y = torch.randn(50, 2, generator=g), torch.randn(60, 2, generator=g)
    assert sliced_wasserstein(x, y) == sliced_wasserstein(x, y)
    assert sliced_wasserstein(x, y, generator=gen(1)) == sliced_wasserstein(x, y, generator=gen(1))
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(x, y, n_projections=0)
    with pytest.raises(TypeError, match="n_projections"):
        sliced_wasserstein(x, y, n_projections=2.5)
    with pytest.raises(ValueError, match="same number of features"):
        sliced_wasserstein(x, torch.randn(5, 3))


# ---------------------------------------------------------------------- log-likelihood
@pytest.mark.parametrize("mixture", [ring8(), two_moons()], ids=["ring8", "two_moons"])
def test_mean_log_likelihood_matches_scipy(mixture):
    x = mixture.sample(64, generator=gen(9)) + 0.05 * torch.randn(64, 2, generator=gen(10))
    dens = sum(float(w) * stats.multivariate_normal(m.numpy(), c.numpy()).pdf(x.double().numpy())
               for w, m, c in zip(mixture.weights, mixture.means, mixture.covariances))
    assert mean_log_likelihood(x, mixture) == pytest.approx(float(np.mean(np.log(dens))), rel=1e-9)


def test_mean_log_likelihood_bad_input():
    with pytest.raises(ValueError, match="2 features"):
        mean_log_likelihood(torch.randn(4, 3), ring8())
    with pytest.raises(TypeError, match="mixture"):
        mean_log_likelihood(torch.randn(4, 2), "ring8")


# ---------------------------------------------------------------------- Frechet distance
def samples_with_moments(mu, cov, n, g):
    """n points whose sample mean is exactly mu and unbiased sample covariance exactly cov."""
    z = torch.randn(n, len(mu), generator=g, dtype=torch.float64)
    z = z - z.mean(0)
    L_z = torch.linalg.cholesky(z.T @ z / (n - 1))
    z = torch.linalg.solve_triangular(L_z, z.T, upper=False).T  # sample covariance I
    return mu + z @ torch.linalg.cholesky(cov).T


def random_spd(F, g):
    a = torch.randn(F, F, generator=g, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(F, dtype=torch.float64)


def test_frechet_distance_equals_closed_form():
    g = gen(11)
    F = 6
    mu1, mu2 = torch.randn(F, generator=g, dtype=torch.float64), torch.randn(F, generator=g, dtype=torch.float64)
    c1, c2 = random_spd(F, g), random_spd(F, g)
    x, y = samples_with_moments(mu1, c1, 50, g), samples_with_moments(mu2, c2, 80, g)
    # reference: scipy's general (Schur-based) matrix square root of S1 S2
    ref = float(((mu1 - mu2) ** 2).sum() + torch.trace(c1) + torch.trace(c2)
                - 2 * np.trace(sla.sqrtm(c1.numpy() @ c2.numpy())).real)
    assert frechet_distance(x, y) == pytest.approx(ref, rel=1e-8)
    assert gaussian_frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-8)


def test_frechet_distance_diagonal_and_identity_cases():
    # commuting (diagonal) covariances: ||mu1 - mu2||^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    expected = 1 + 4 + ((a.sqrt() - b.sqrt()) ** 2).sum().item()
    assert gaussian_frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, rel=1e-12)
    x = torch.randn(30, 4, generator=gen(12), dtype=torch.float64)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-7)
    assert frechet_distance(x, x + 2.0) == pytest.approx(16.0, rel=1e-8)  # a pure shift of 2 in 4 features


def test_frechet_distance_bad_input():
    with pytest.raises(ValueError, match="same number of features"):
        frechet_distance(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(torch.randn(1, 3), torch.randn(5, 3))


# ---------------------------------------------------------------------- float range (issue 16)
def test_mmd_is_finite_for_tiny_bandwidths_and_huge_inputs():
    """mmd returned NaN for bandwidths below ~1e-154 (exp(-inf * 0) on the diagonal) and for inputs whose squared
    distances overflow float64."""
    g = gen(0)
    x, y = torch.randn(20, 2, generator=g, dtype=torch.float64), torch.randn(30, 2, generator=g, dtype=torch.float64)
    # at a vanishing bandwidth k(a, b) = 1[a = b]: every cross term is 0 and the diagonals are dropped
    assert mmd(x, y, 1e-300) == 0.0
    assert mmd(x, x + 1.0, [1e-300]) == 0.0
    # MMD depends on the data only through ||a - b|| / h: scaling both changes nothing (powers of two: exactly)
    for scale in (2.0**500, 2.0**-500):
        assert mmd(x * scale, y * scale, [0.5 * scale, 2 * scale]) == mmd(x, y, [0.5, 2.0])
        assert mmd(x * scale, y * scale) == mmd(x, y)
        assert median_bandwidth(x * scale, y * scale) == median_bandwidth(x, y) * scale
    assert math.isfinite(mmd(x * 1e300, y * 1e300))
    # a median bandwidth past float64's range once the points are scaled: a kernel of gamma 0 (k = 1 everywhere)
    far = torch.cat([torch.full((10, 2), 1e300, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)])
    assert math.isfinite(mmd(far[:10], far[10:]))


def test_sliced_wasserstein_is_finite_for_large_p_and_tends_to_the_largest_gap():
    """sliced_wasserstein(p=2000) returned inf (|gap|^2000 overflows): the powers are now of gap / max gap."""
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    y = x + torch.tensor([[3.0], [0.0]], dtype=torch.float64)  # 1-D gaps: 1 and 2 after sorting both
    # W_p^p = (1^p + 2^p) / 2 exactly, so SW_p = ((1 + 2^p) / 2)^(1/p) (one direction in 1-D, up to the sign)
    for p in (1, 2, 7, 2000, 10**6):
        expected = 2.0 * ((2.0**-p + 1.0) / 2.0) ** (1.0 / p)
        assert sliced_wasserstein(x, y, n_projections=3, p=p) == pytest.approx(expected, rel=1e-12)
    big = torch.randn(50, 3, generator=gen(1), dtype=torch.float64)
    assert math.isfinite(sliced_wasserstein(big * 1e300, -big * 1e300, 8, p=3))
    assert sliced_wasserstein(big * 2.0**600, (big + 1) * 2.0**600, 8, p=2) == pytest.approx(
        sliced_wasserstein(big, big + 1, 8, p=2) * 2.0**600, rel=1e-12)


def test_frechet_distances_scale_and_refuse_what_float64_cannot_hold():
    g = gen(2)
    x, y = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(40, 3, generator=g, dtype=torch.float64)
    s = 2.0**300
    assert frechet_distance(x * s, y * s) == pytest.approx(frechet_distance(x, y) * s * s, rel=1e-12)
    with pytest.raises(ValueError, match="feat_x and feat_y .* give a Frechet distance beyond float64's range"):
        frechet_distance(x * 1e300, y * 1e300)
    with pytest.raises(ValueError, match="mu1 must be finite"):
        gaussian_frechet_distance([math.nan, 0.0], torch.eye(2), [0.0, 0.0], torch.eye(2))
    with pytest.raises(ValueError, match=r"mu1 and mu2 must both have F >= 1 entries"):
        gaussian_frechet_distance([], [], [], [])


def test_metrics_name_the_dtypes_they_refuse():
    x = torch.randn(5, 2)
    with pytest.raises(TypeError, match="x must be a real-valued tensor .*got dtype bool"):
        mmd(x > 0, x)
    with pytest.raises(TypeError, match="y must hold values on a real device"):
        sliced_wasserstein(x, x.to("meta"))
    with pytest.raises(TypeError, match="bandwidths must be a number, a sequence of numbers or a real tensor"):
        mmd(x, x, ["1"])  # found by hypothesis: "too many dimensions 'str'"
    assert math.isfinite(mmd(x.long(), x.long() + 1))  # integer data are counts: allowed


def test_the_lessons_helpers_name_bad_values():
    """Found by hypothesis: coverage_noise(weights=2.0) returned NaN; target_distance/verdict(None) raised
    "float() argument must be ..." naming no argument; reading(NaN) answered "too diffuse"; zero features
    warned from var() instead of an error."""
    from seqdiff_kit.metrics import coverage_noise, reading, std_ratio, target_distance
    from seqdiff_kit.stats import verdict

    with pytest.raises(ValueError, match=r"weights must be in \[0.0, 1.0\], got values from 2 to 2"):
        coverage_noise(2.0, 1)
    with pytest.raises(TypeError, match="value must be a real number, got None"):
        target_distance("mmd", None)
    assert math.isnan(target_distance("mmd", math.nan))  # a missing value: verdict says "undetermined"
    with pytest.raises(TypeError, match="diff_low must be a real number"):
        verdict(None, 1.0)
    with pytest.raises(ValueError, match="value must be finite, got nan"):
        reading("std_ratio", math.nan)
    with pytest.raises(ValueError, match=r"x must have at least one feature per sample, got shape \(3, 0\)"):
        std_ratio(torch.zeros(3, 0), torch.zeros(3, 0))
