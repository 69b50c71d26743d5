"""Where the SA loss moves the optimum, and how fast the estimation gap forgets, checked against exact forms:
the scaled ideal denoiser's losses as quadratics (direct evaluation, and the 1-D Gaussian's exact quadratics),
the 1-D optimum's ratio to eps*, and the running product of gamma against the unrolled recursion."""
import math

import pytest
import torch

from seqdiff_kit import GaussianMixture, IdealDenoiser, Schedule, ring8
from seqdiff_kit.analysis import (gaussian_quadratics, gaussian_sa_optimum, optimum_ratio, scaled_ideal_losses)
from seqdiff_kit.drift import gap_coefficients, gap_survival
from seqdiff_kit.losses import sequence_aware_loss


@pytest.fixture(scope="module")
def schedule():
    return Schedule.linear(1000)


def test_the_quadratic_coefficients_reproduce_a_direct_evaluation(schedule):
    mixture = ring8()
    res = scaled_ideal_losses(mixture, schedule, K=2, lam=0.5, n=512, batches=2,
                              generator=torch.Generator().manual_seed(3))
    # the same draws, in the same order, for batch 0; the loss of 0.9 eps* evaluated directly
    g = torch.Generator().manual_seed(3)
    x0 = mixture.sample(512, generator=g, dtype=torch.float64)
    t = schedule.sample_t(512, generator=g)
    noise = torch.randn((2, 512, 2), generator=g, dtype=torch.float64)
    ideal = IdealDenoiser(mixture, schedule)
    out = sequence_aware_loss(lambda x, s: 0.9 * ideal(x, s), x0, schedule, 2, 0.5, t=t, noise=noise)
    assert float(res.per_batch([0.9], "simple")[0, 0]) == pytest.approx(float(out.simple), rel=1e-10)
    assert float(res.per_batch([0.9], "sa")[0, 0]) == pytest.approx(float(out.sa), rel=1e-10)
    assert float(res.per_batch([0.9])[0, 0]) == pytest.approx(float(out.total), rel=1e-10)


def test_monte_carlo_losses_agree_with_the_exact_1d_quadratics(schedule):
    """1-D N(0, v): along a = c a* the exact losses are c^2 a*^T A a* - 2 c b^T a* + const."""
    var = 0.25
    gauss = GaussianMixture([1.0], [[0.0]], [[var]])
    res = scaled_ideal_losses(gauss, schedule, K=2, lam=1.0, n=8192, batches=16,
                              generator=torch.Generator().manual_seed(4))
    a_star = gaussian_sa_optimum(var, 1, 0.0, schedule)
    for (A, b, c0), part in zip(gaussian_quadratics(var, 2, schedule), ("simple", "sa")):
        exact = torch.tensor([float(a_star @ A @ a_star), float(b @ a_star), c0], dtype=torch.float64)
        coef = res._coef(part)
        se = coef.std(dim=1) / math.sqrt(coef.shape[1])
        assert bool(((coef.mean(dim=1) - exact).abs() < 4 * se).all()), (part, coef.mean(dim=1), exact, se)


def test_the_simple_loss_is_minimised_by_eps_star_and_the_sa_loss_is_not(schedule):
    res = scaled_ideal_losses(ring8(), schedule, K=2, lam=1.0, n=4096, batches=8,
                              generator=torch.Generator().manual_seed(0))
    assert abs(res.argmin("simple") - 1) < 4 * res.argmin_se("simple")
    assert res.argmin("sa") < 1 - 4 * res.argmin_se("sa")
    assert res.argmin("total") < 1 - 4 * res.argmin_se("total")
    # 0.98 eps* scores lower than eps* itself on the SA total: the difference is 4 standard errors below 0
    d, se = res.difference(0.98, 1.0)
    assert d + 4 * se < 0
    assert res.loss([0.98, 1.0]).tolist() == pytest.approx(res.loss(torch.tensor([0.98, 1.0])).tolist())


def test_the_1d_optimum_predicts_a_smaller_noise_than_eps_star(schedule):
    assert torch.equal(optimum_ratio(0.25, 1, 0.0, schedule), torch.ones(schedule.T, dtype=torch.float64))
    for K in (2, 3):
        r = optimum_ratio(0.25, K, 1.0, schedule)
        assert bool((r < 1).all()) and float(r.min()) < optimum_ratio(0.25, K - 1, 1.0 if K > 2 else 0.0,
                                                                      schedule).min()
        # the largest shrinkage sits near the data end (t < K), where the SA window is cut by 1[t >= k]
        assert int(r.argmin()) < 10


def test_gap_survival_unrolls_the_recursion(schedule):
    gamma, c = gap_coefficients(schedule)
    delta = torch.randn(schedule.T, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for to in (0, 99, 500):
        e = torch.zeros((), dtype=torch.float64)
        for t in range(schedule.T - 1, to, -1):   # e_{t-1} = gamma_t e_t + c_t delta_t, down to e_to
            e = gamma[t] * e + c[t] * delta[t]
        w = gap_survival(schedule, to)
        assert float((w * c * delta).sum()) == pytest.approx(float(e), rel=1e-12, abs=1e-15)
        assert float(w[to + 1]) == 1.0 and bool((w[:to + 1] == 0).all())
        assert bool((w[to + 2:] <= w[to + 1:-1]).all())  # every gamma is below 1: older errors weigh less
    assert float(gap_survival(schedule, 99)[999]) == pytest.approx(math.prod(gamma[100:999].tolist()), rel=1e-12)


def test_bad_input(schedule):
    with pytest.raises(ValueError, match="to must be in"):
        gap_survival(schedule, 1000)
    with pytest.raises(TypeError, match="mixture"):
        scaled_ideal_losses("ring8", schedule)
    with pytest.raises(ValueError, match="batches must be in"):
        scaled_ideal_losses(ring8(), schedule, batches=1)
    res = scaled_ideal_losses(ring8(), schedule, n=16, batches=2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="part must be one of"):
        res.loss(1.0, "both")
