"""Metrics that tell a mixture sampler's failure modes apart: mode coverage, within-mode spread, the signed
log-likelihood gap, the std ratio, and the one two-sided rule that judges them (``metrics.TARGETS``).

Analytic cases: exact samples of the mixture (coverage TV and spread ratios within Monte-Carlo error of 0 and 1),
every covariance scaled by 0.25 (spread ratio 0.5), one mode only (TV = 1 - w), data against data (gap 0 within
its standard error). Tolerances are multiples of the standard errors the functions report, checked against the
spread of replicates."""
import math

import pytest
import torch

from seqdiff_kit.data import GaussianMixture, grid25, ring8
from seqdiff_kit.metrics import (MAD_SE, TARGETS, coverage_noise, loglik_gap, mode_coverage, reading,
                                 robust_mode_spread, std_ratio, target_distance, within_mode_spread)
from seqdiff_kit.stats import verdict


def gen(seed):
    return torch.Generator().manual_seed(seed)


def lopsided():
    """Three well-separated components with unequal weights and full, anisotropic covariances."""
    c = torch.tensor([[[0.04, 0.03], [0.03, 0.09]], [[0.16, 0.0], [0.0, 0.01]], [[0.05, -0.02], [-0.02, 0.05]]],
                     dtype=torch.float64)
    return GaussianMixture([0.5, 0.3, 0.2], [[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]], c, name="lopsided")


def scaled(mixture, factor):
    return GaussianMixture(mixture.weights, mixture.means, factor * mixture.covariances)


MIXTURES = {"ring8": ring8, "grid25": grid25, "lopsided": lopsided}


# ---------------------------------------------------------------------- mode coverage
@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_exact_samples_cover_the_modes_within_monte_carlo_error(name):
    mixture, n, reps = MIXTURES[name](), 4000, 20
    tvs = torch.tensor([mode_coverage(mixture.sample(n, generator=gen(s)), mixture).tv for s in range(reps)],
                       dtype=torch.float64)
    expected = coverage_noise(mixture.weights, n)
    # the mean of the replicates estimates E[TV]; its own standard error sets the tolerance
    assert abs(float(tvs.mean()) - expected) < 4 * float(tvs.std()) / math.sqrt(reps)
    cov = mode_coverage(mixture.sample(n, generator=gen(99)), mixture)
    assert int(cov.counts.sum()) == n == cov.n and cov.empty_modes == 0
    torch.testing.assert_close(cov.shares, cov.counts.double() / n)
    assert cov.tv == pytest.approx(0.5 * float((cov.shares - mixture.weights).abs().sum()), rel=1e-12)


def test_coverage_noise_is_the_normal_approximation_of_the_binomial_counts():
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    n = 1000
    assert coverage_noise(w, n) == pytest.approx(0.5 * sum(math.sqrt(2 * p * (1 - p) / (math.pi * n))
                                                            for p in w.tolist()), rel=1e-12)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_samples_from_one_mode_only_give_tv_one_minus_its_weight(mode):
    mixture = lopsided()
    one = GaussianMixture([1.0], mixture.means[mode:mode + 1], mixture.covariances[mode:mode + 1])
    cov = mode_coverage(one.sample(500, generator=gen(mode)), mixture)
    assert cov.tv == pytest.approx(1 - float(mixture.weights[mode]), abs=1e-12)
    assert cov.empty_modes == 2 and int(cov.counts[mode]) == 500


# ---------------------------------------------------------------------- within-mode spread
@pytest.mark.parametrize("name,axes", [("ring8", "radial"), ("ring8", "principal"), ("grid25", "principal"),
                                       ("lopsided", "principal")])
def test_exact_samples_have_spread_ratio_one_within_its_standard_error(name, axes):
    mixture = MIXTURES[name]()
    sp = within_mode_spread(mixture.sample(20000, generator=gen(1)), mixture, axes)
    assert sp.ratio.shape == sp.se.shape == sp.offset.shape == (mixture.n_components, mixture.dim)
    assert bool(((sp.ratio - 1).abs() < 4 * sp.se).all()), (sp.ratio, sp.se)
    assert bool(((sp.pooled - 1).abs() < 4 * sp.pooled_se).all()), (sp.pooled, sp.pooled_se)
    # the offsets: a mean of n_eff points with sd sqrt(u^T S u) each
    sd = torch.einsum("mda,mde,mea->ma", sp.axes, mixture.covariances, sp.axes).sqrt()
    n_i = sp.mass[:, None]
    assert bool((sp.offset.abs() < 4 * sd / n_i.sqrt()).all())


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_covariances_scaled_by_a_quarter_give_spread_ratio_one_half(name):
    mixture = MIXTURES[name]()
    sp = within_mode_spread(scaled(mixture, 0.25).sample(20000, generator=gen(2)), mixture)
    assert bool(((sp.ratio - 0.5).abs() < 4 * sp.se).all()), sp.ratio
    assert bool(((sp.pooled - 0.5).abs() < 4 * sp.pooled_se).all()), sp.pooled


def test_the_standard_error_matches_the_spread_of_replicates():
    mixture, reps = ring8(), 30
    runs = [within_mode_spread(mixture.sample(2000, generator=gen(100 + s)), mixture, "radial") for s in range(reps)]
    pooled = torch.stack([r.pooled for r in runs])                  # [reps, 2]
    se = torch.stack([r.pooled_se for r in runs]).mean(0)
    # the sd of 30 replicates estimates the true sd within about 13% (1/sqrt(2 * 29)); allow 3 of those
    assert bool(((pooled.std(0) / se - 1).abs() < 3 / math.sqrt(2 * (reps - 1))).all()), (pooled.std(0), se)


def test_radial_axes_of_the_ring_separate_radial_from_tangential_spread():
    mixture = ring8()
    sp0 = within_mode_spread(mixture.sample(10, generator=gen(0)), mixture, "radial")
    radial = mixture.means / torch.linalg.vector_norm(mixture.means, dim=1, keepdim=True)
    torch.testing.assert_close(sp0.axes[:, :, 0], radial)
    assert sp0.axis_names == ("radial", "tangential")
    # stretch each mode radially by 2 and pull it inwards by 0.3: radial ratio 2, tangential 1, offset -0.3
    x, labels = mixture.sample(20000, generator=gen(3), return_labels=True, dtype=torch.float64)
    u = radial[labels]
    along = ((x - mixture.means[labels]) * u).sum(1, keepdim=True)
    x = x + along * u - 0.3 * u
    sp = within_mode_spread(x, mixture, "radial")
    assert abs(float(sp.pooled[0]) - 2) < 4 * float(sp.pooled_se[0])
    assert abs(float(sp.pooled[1]) - 1) < 4 * float(sp.pooled_se[1])
    assert abs(float(sp.pooled_offset[0]) + 0.3) < 4 * 0.2 / math.sqrt(20000)
    assert sp.as_dict()["radial"]["ratio"] == pytest.approx(float(sp.pooled[0]))


def test_a_mode_without_samples_is_nan_and_left_out_of_the_pool():
    mixture = lopsided()
    two = GaussianMixture([0.5, 0.5], mixture.means[:2], mixture.covariances[:2])
    sp = within_mode_spread(two.sample(5000, generator=gen(4)), mixture)
    assert bool(torch.isnan(sp.ratio[2]).all()) and bool(torch.isfinite(sp.ratio[:2]).all())
    assert bool(torch.isfinite(sp.pooled).all()) and bool(((sp.pooled - 1).abs() < 4 * sp.pooled_se).all())


# ---------------------------------------------------------------------- robust within-mode spread
@pytest.mark.parametrize("name,axes", [("ring8", "radial"), ("grid25", "principal"), ("lopsided", "principal")])
def test_exact_samples_have_robust_spread_one_and_the_expected_off_mode_share(name, axes):
    mixture, n = MIXTURES[name](), 20000
    rs = robust_mode_spread(mixture.sample(n, generator=gen(5)), mixture, axes)
    assert rs.ratio.shape == (mixture.n_components, mixture.dim) and int(rs.n.sum()) <= n
    assert bool(((rs.pooled - 1).abs() < 4 * rs.pooled_se).all()), (rs.pooled, rs.pooled_se)
    per_mode_se = MAD_SE * rs.ratio / rs.n[:, None].double().sqrt()
    assert bool(((rs.ratio - 1).abs() < 4 * per_mode_se).all()), rs.ratio
    # off every mode: P(chi^2_D > k^2), exp(-k^2 / 2) for D = 2; a binomial share of n draws
    assert rs.off_expected == pytest.approx(math.exp(-8.0), rel=1e-12)
    assert abs(rs.off_share - rs.off_expected) < 4 * math.sqrt(rs.off_expected / n) + 1 / n
    assert rs.as_dict()[rs.axis_names[0]]["ratio"] == pytest.approx(float(rs.pooled[0]))


def test_robust_spread_of_a_quarter_scaled_mixture_is_one_half_and_its_se_is_the_replicates_spread():
    mixture = lopsided()
    rs = robust_mode_spread(scaled(mixture, 0.25).sample(20000, generator=gen(6)), mixture)
    assert bool(((rs.pooled - 0.5).abs() < 4 * rs.pooled_se).all()), rs.pooled
    reps = 30
    runs = [robust_mode_spread(ring8().sample(2000, generator=gen(200 + s)), ring8(), "radial") for s in range(reps)]
    pooled = torch.stack([r.pooled for r in runs])
    se = torch.stack([r.pooled_se for r in runs]).mean(0)
    assert bool(((pooled.std(0) / se - 1).abs() < 3 / math.sqrt(2 * (reps - 1))).all()), (pooled.std(0), se)


def test_five_percent_uniform_outliers_barely_move_the_robust_spread_but_move_the_std():
    """A 5% share of points uniform over the ring's box: the MAD of the cores moves by less than 0.05, the
    responsibility-weighted std by more; the off-mode share rises by most of the 5%."""
    mixture, n = ring8(), 20000
    clean = mixture.sample(n, generator=gen(7), dtype=torch.float64)
    dirty = clean.clone()
    m = n // 20
    dirty[:m] = (torch.rand(m, 2, generator=gen(8), dtype=torch.float64) - 0.5) * 5.0  # the box [-2.5, 2.5]^2
    r0, r1 = robust_mode_spread(clean, mixture, "radial"), robust_mode_spread(dirty, mixture, "radial")
    s0, s1 = within_mode_spread(clean, mixture, "radial"), within_mode_spread(dirty, mixture, "radial")
    assert bool(((r1.pooled - r0.pooled).abs() < 0.05).all()), (r0.pooled, r1.pooled)
    assert bool(((s1.pooled - s0.pooled).abs() > 0.05).all()), (s0.pooled, s1.pooled)
    assert 0.03 < r1.off_share - r0.off_share <= 0.05


def test_robust_spread_leaves_an_empty_mode_out_and_checks_k():
    mixture = lopsided()
    two = GaussianMixture([0.5, 0.5], mixture.means[:2], mixture.covariances[:2])
    rs = robust_mode_spread(two.sample(5000, generator=gen(9)), mixture)
    assert bool(torch.isnan(rs.ratio[2]).all()) and int(rs.n[2]) == 0 and bool(torch.isfinite(rs.pooled).all())
    with pytest.raises(ValueError, match=r"k must be in \(0.0"):
        robust_mode_spread(two.sample(50, generator=gen(9)), mixture, k=0)


# ---------------------------------------------------------------------- log-likelihood gap and std ratio
@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_data_against_data_gives_a_gap_within_its_standard_error(name):
    mixture = MIXTURES[name]()
    gaps = [loglik_gap(mixture.sample(2000, generator=gen(2 * s)), mixture.sample(3000, generator=gen(2 * s + 1)),
                       mixture) for s in range(20)]
    z = torch.tensor([g.gap / g.se for g in gaps])
    assert bool((z.abs() < 4).all()), z
    # the reported se is the gap's real spread: the sd of 20 z-scores is 1 within sampling error
    assert abs(float(z.std()) - 1) < 3 / math.sqrt(2 * 19)


def test_the_gap_says_too_tight_or_too_diffuse():
    mixture = ring8()
    data = mixture.sample(2000, generator=gen(5))
    tight = loglik_gap(scaled(mixture, 0.25).sample(2000, generator=gen(6)), data, mixture)
    wide = loglik_gap(scaled(mixture, 4.0).sample(2000, generator=gen(7)), data, mixture)
    assert tight.gap > 4 * tight.se and tight.reading() == "too tight"
    assert wide.gap < -4 * wide.se and wide.reading() == "too diffuse"
    # a too-tight sampler beats the data's own log-likelihood: "higher is better" would reward it
    assert tight.samples > tight.data


def test_std_ratio_against_samples_and_against_the_exact_mixture():
    x = torch.randn(500, 3, generator=gen(8), dtype=torch.float64)
    assert std_ratio(2 * x, x) == pytest.approx(2.0, rel=1e-12)
    assert std_ratio(x.reshape(500, 1, 3), x) == pytest.approx(1.0, rel=1e-12)
    mixture = ring8()
    s = mixture.sample(40000, generator=gen(9))
    tr = float(torch.trace(mixture.covariance()))
    # the sample trace of N points: relative se about sqrt(2 / N) for this nearly-isotropic ring
    assert abs(std_ratio(s, mixture) - 1) < 4 * math.sqrt(2 / 40000)
    assert std_ratio(s, mixture) == pytest.approx(math.sqrt(float(s.double().var(0).sum()) / tr), rel=1e-12)


# ---------------------------------------------------------------------- the two-sided rule
def test_target_distance_is_two_sided_and_loglik_has_no_target():
    assert TARGETS["std_ratio"] == 1.0 and TARGETS["loglik_gap"] == 0.0
    assert target_distance("std_ratio", 0.8) == pytest.approx(target_distance("std_ratio", 1.2))
    assert target_distance("loglik_gap", 0.3) == pytest.approx(target_distance("loglik_gap", -0.3))
    assert target_distance("mmd", 0.01) == 0.01
    with pytest.raises(ValueError, match="loglik_gap"):
        target_distance("loglik", -0.3)
    with pytest.raises(ValueError, match="metric must be one of"):
        target_distance("accuracy", 1.0)


def test_verdict_of_an_interval_on_the_difference_of_distances():
    assert verdict(-0.3, -0.1) == "better"
    assert verdict(0.1, 0.3) == "worse"
    assert verdict(-0.1, 0.1) == "no clear difference"
    assert verdict(math.nan, math.nan) == "undetermined"


def test_reading_names_the_direction():
    assert reading("std_ratio", 0.8) == "too tight" and reading("std_ratio", 1.2) == "too diffuse"
    assert reading("spread_radial", 2.4) == "too diffuse"
    assert reading("loglik_gap", 0.25) == "too tight" and reading("loglik_gap", -2.0) == "too diffuse"
    assert reading("std_ratio", 1.01, tolerance=0.02) == "on target"
    with pytest.raises(ValueError, match="reading"):
        reading("mmd", 0.1)


def test_bad_input():
    mixture = ring8()
    with pytest.raises(ValueError, match="axes must be one of"):
        within_mode_spread(torch.randn(10, 2), mixture, "polar")
    three = GaussianMixture([1.0], [[1.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="2-D mixture"):
        within_mode_spread(torch.randn(10, 3), three, "radial")
    centred = GaussianMixture([1.0], [[0.0, 0.0]], [[1.0, 1.0]])
    with pytest.raises(ValueError, match="centre"):
        within_mode_spread(torch.randn(10, 2), centred, "radial")
    with pytest.raises(ValueError, match="2 features"):
        mode_coverage(torch.randn(10, 3), mixture)
    with pytest.raises(TypeError, match="mixture"):
        mode_coverage(torch.randn(10, 2), "ring8")
    with pytest.raises(ValueError, match="reference must have 2 features"):
        loglik_gap(torch.randn(10, 2), torch.randn(10, 3), mixture)
    with pytest.raises(ValueError, match="same number of features"):
        std_ratio(torch.randn(10, 2), torch.randn(10, 3))
    with pytest.raises(ValueError, match="at least 2 samples"):
        std_ratio(torch.randn(1, 2), torch.randn(10, 2))
