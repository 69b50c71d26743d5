"""The statistics of every comparison table (``stats``): the Student-t interval against scipy's, its coverage,
the pairing of two results by key or position, and the verdict of an interval on a difference of distances."""
import math
import random

import pytest
import torch
from scipy import stats

from seqdiff_kit import stats as st


# ---------------------------------------------------------------------- Student-t
def test_mean_ci_matches_scipy_interval():
    rng = random.Random(0)
    for n in (2, 3, 5, 12):
        vals = [rng.gauss(1.0, 2.0) for _ in range(n)]
        ci = st.mean_ci(vals, 0.95)
        sem = stats.sem(vals)
        low, high = stats.t.interval(0.95, n - 1, loc=sum(vals) / n, scale=sem)
        assert ci["n"] == n and ci["sem"] == pytest.approx(sem, rel=1e-12)
        assert (ci["low"], ci["high"]) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))
    # non-finite entries are dropped (a diverged run), a single value has no interval
    ci = st.mean_ci([1.0, math.nan, 3.0, math.inf])
    assert ci["n"] == 2 and ci["mean"] == 2.0
    assert math.isnan(st.mean_ci([4.0])["low"]) and st.mean_ci([4.0])["mean"] == 4.0


def test_t_interval_covers_95_percent_with_three_seeds():
    """Monte Carlo: 3 normal draws per experiment, 4000 experiments; coverage 0.95 +- 3 binomial sd."""
    g = torch.Generator().manual_seed(1)
    x = 0.7 + 1.3 * torch.randn(4000, 3, generator=g, dtype=torch.float64)
    hits = 0
    for row in x.tolist():
        ci = st.mean_ci(row)
        hits += ci["low"] <= 0.7 <= ci["high"]
    assert abs(hits / 4000 - 0.95) < 3 * math.sqrt(0.95 * 0.05 / 4000)


def test_mean_band_is_where_a_mean_of_n_new_draws_falls():
    """The prediction interval of a mean of n new draws: its formula (scipy's t quantile), about sqrt(n) narrower
    than a single draw's, and its coverage (Monte Carlo: 30 old draws, the mean of 3 new ones, 4000 times)."""
    rng = random.Random(1)
    vals = [rng.gauss(0.0, 1.0) for _ in range(30)]
    m, s = sum(vals) / 30, stats.tstd(vals)
    for n in (1, 3, 10):
        band = st.mean_band(vals, n)
        half = stats.t.ppf(0.975, 29) * s * math.sqrt(1 / n + 1 / 30)
        assert band["n"] == n and band["m"] == 30 and band["mean"] == pytest.approx(m, rel=1e-12)
        assert (band["low"], band["high"]) == (pytest.approx(m - half, rel=1e-10), pytest.approx(m + half, rel=1e-10))
    assert 1.6 < st.mean_band(vals, 1)["half_width"] / st.mean_band(vals, 3)["half_width"] < math.sqrt(3)
    hits, trials = 0, 4000
    for _ in range(trials):
        old = [rng.gauss(0.0, 1.0) for _ in range(30)]
        band = st.mean_band(old, 3)
        hits += band["low"] <= sum(rng.gauss(0.0, 1.0) for _ in range(3)) / 3 <= band["high"]
    assert abs(hits / trials - 0.95) < 3 * math.sqrt(0.95 * 0.05 / trials)
    assert math.isnan(st.mean_band([2.0], 3)["low"])
    with pytest.raises(ValueError, match="n must be"):
        st.mean_band(vals, 0)


def test_level_is_checked():
    with pytest.raises(ValueError, match="level must be in"):
        st.mean_ci([1.0, 2.0], level=1.0)


def test_paired_by_key_and_by_position():
    a, b = {0: 1.0, 1: 5.0, 2: 2.0, 7: 9.0}, {2: 1.5, 0: 0.5, 1: 4.0}
    d = st.paired(a, b)
    assert d["keys"] == [0, 1, 2] and d["n"] == 3
    ci = st.mean_ci([0.5, 1.0, 0.5])
    assert (d["mean"], d["low"], d["high"]) == (ci["mean"], ci["low"], ci["high"])
    assert st.paired([1.0, 5.0, 2.0], [0.5, 4.0, 1.5])["mean"] == pytest.approx(ci["mean"])
    with pytest.raises(ValueError, match="a and b must be equally long to be paired by position, got 2 and 3"):
        st.paired([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="a and b must both be dicts"):
        st.paired({0: 1.0}, [1.0])


def test_distance_difference_judges_by_the_distance_to_the_target():
    # std ratios 0.8 (A) against 1.3 (B): A is closer to 1 although it is smaller
    a, b = [0.80, 0.82, 0.79], [1.30, 1.28, 1.33]
    d = st.distance_difference("std_ratio", a, b)
    assert d["mean"] == pytest.approx(sum(abs(x - 1) - abs(y - 1) for x, y in zip(a, b)) / 3)
    assert d["verdict"] == "better" and st.distance_difference("std_ratio", b, a)["verdict"] == "worse"
    raw = st.raw_difference(a, b)
    assert raw["verdict"] == "smaller" and st.raw_difference(b, a)["verdict"] == "larger"
    assert st.distance_difference("mmd", [0.1], [0.2])["verdict"] == "undetermined"  # one pair: no interval
