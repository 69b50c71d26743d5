"""The statistics of every comparison table (the experiment grid, the seed study, the few-step grid): the
Student-t interval of a mean (``mean_ci``), of a paired difference (``paired``), where a mean of new draws falls
(``mean_band``), and the verdict rule on the difference of two results' distances to the metric's target
(``verdict``, ``distance_difference``; ``compare`` also for a quantity without a target).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from ._validate import check_float, check_int, check_real
from .metrics import TARGETS, target_distance

LEVEL = 0.95
VERDICTS = ("better", "worse", "no clear difference", "undetermined")


def mean_ci(values: Sequence[float], level: float = LEVEL) -> dict:
    """Mean and two-sided ``level`` t-interval ``mean +- t_{(1+level)/2, n-1} s / sqrt(n)`` of the finite entries
    of ``values`` (``s`` the sample standard deviation; Student's t quantile from ``scipy.special.stdtrit``).
    Returns ``n, mean, sd, sem, t, half_width, low, high`` (interval entries NaN when n < 2)."""
    level = check_float("level", level, 0.0, 1.0, low_open=True, high_open=True)
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    n, nan = len(v), math.nan
    if n == 0:
        return dict(n=0, mean=nan, sd=nan, sem=nan, t=nan, half_width=nan, low=nan, high=nan)
    mean = sum(v) / n
    if n < 2:
        return dict(n=1, mean=mean, sd=nan, sem=nan, t=nan, half_width=nan, low=nan, high=nan)
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    sem = sd / math.sqrt(n)
    from scipy.special import stdtrit  # here, not at the top: importing the lessons' modules stays quick

    t = float(stdtrit(n - 1, 0.5 + level / 2))
    return dict(n=n, mean=mean, sd=sd, sem=sem, t=t, half_width=t * sem, low=mean - t * sem, high=mean + t * sem)


def mean_band(values: Sequence[float], n: int, level: float = LEVEL) -> dict:
    """The ``level`` prediction interval of the mean of ``n`` new draws like the ``m`` finite ``values``:
    ``mean +- t_{(1+level)/2, m-1} s sqrt(1/n + 1/m)``; a mean over ``n`` seeds is judged against it, not against
    the spread of single draws (about ``sqrt(n)`` wider). Returns ``n, m, mean, sd, half_width, low, high``."""
    n = check_int("n", n, 1)
    ci = mean_ci(values, level)
    half = ci["t"] * ci["sd"] * math.sqrt(1 / n + 1 / ci["n"]) if ci["n"] >= 2 else math.nan
    return dict(n=n, m=ci["n"], mean=ci["mean"], sd=ci["sd"], half_width=half, low=ci["mean"] - half,
                high=ci["mean"] + half)


def pairs(a, b) -> list[tuple]:
    """``(key, a_k, b_k)`` for every pair: the keys two dicts share (in ``a``'s sorted key order), or the
    positions of two sequences of one length."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return [(k, a[k], b[k]) for k in sorted(a) if k in b]
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        raise TypeError(f"a and b must both be dicts (paired by key) or both sequences, got {type(a).__name__} "
                        f"and {type(b).__name__}")
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"a and b must be equally long to be paired by position, got {len(a)} and {len(b)}")
    return list(zip(range(len(a)), a, b))


def paired(a, b, level: float = LEVEL) -> dict:
    """``mean_ci`` of the differences ``a_k - b_k`` over ``pairs(a, b)``, plus ``keys``: the paired keys."""
    p = pairs(a, b)
    return {**mean_ci([x - y for _, x, y in p], level), "keys": [k for k, _, _ in p]}


def verdict(diff_low: float, diff_high: float) -> str:
    """The verdict of an interval ``[diff_low, diff_high]`` on ``target_distance(A) - target_distance(B)``:
    ``"better"`` (A closer to the target: the interval lies below 0), ``"worse"`` (above 0),
    ``"no clear difference"`` (it holds 0) or ``"undetermined"`` (no interval, e.g. a single seed)."""
    lo, hi = check_real("diff_low", diff_low), check_real("diff_high", diff_high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "undetermined"
    if hi < 0:
        return "better"
    if lo > 0:
        return "worse"
    return "no clear difference"


def distance_difference(metric: str, a, b, level: float = LEVEL) -> dict:
    """A against B on ``metric``, paired (``pairs``): the interval of ``target_distance(metric, a_k) -
    target_distance(metric, b_k)`` (``paired``; negative: A is closer to the target) and its ``verdict``."""
    p = pairs(a, b)
    ci = paired({k: target_distance(metric, x) for k, x, _ in p}, {k: target_distance(metric, y) for k, _, y in p},
                level)
    return {**ci, "verdict": verdict(ci["low"], ci["high"])}


def raw_difference(a, b, level: float = LEVEL) -> dict:
    """A against B on a quantity without a target, paired: the interval of ``a_k - b_k`` (``paired``) and a
    verdict in words of size: ``"smaller"`` (below 0), ``"larger"`` (above 0), ``"no clear difference"``."""
    ci = paired(a, b, level)
    word = verdict(ci["low"], ci["high"])
    return {**ci, "verdict": {"better": "smaller", "worse": "larger"}.get(word, word)}


def compare(metric: str, a, b, level: float = LEVEL) -> dict:
    """``distance_difference`` for a quantity with a target (``metrics.TARGETS``), else ``raw_difference``."""
    return distance_difference(metric, a, b, level) if metric in TARGETS else raw_difference(a, b, level)
