"""Digit class coverage (the image counterpart of mode coverage) and the digit FD floor over random halvings."""
import math

import pytest
import torch

from seqdiff_kit import digits
from seqdiff_kit.classifier import get_classifier
from seqdiff_kit.evaluate import frechet_floor, frechet_floor_spread
from seqdiff_kit.classifier import digit_class_coverage


def test_class_coverage_of_real_digits_is_bounded_by_the_classifier_error():
    x, labels = digits()
    cov = digit_class_coverage(x)
    wrong = float((get_classifier().predict(x) != labels).double().mean())
    # each misclassified image moves one count: the shares differ from the labels' by at most the error rate
    assert cov.tv <= wrong + 1e-12
    torch.testing.assert_close(cov.weights, torch.bincount(labels, minlength=10).double() / len(labels))
    assert cov.n == len(labels) and int(cov.counts.sum()) == len(labels)


def test_class_coverage_of_one_digit_only_is_one_minus_its_share():
    x, labels = digits()
    threes = x[get_classifier().predict(x) == 3]
    cov = digit_class_coverage(threes)
    assert cov.tv == pytest.approx(1 - float((labels == 3).double().mean()), abs=1e-12)
    assert cov.empty_modes == 9


def test_floor_spread_recomputes_each_halving_and_summarises_it():
    spread = frechet_floor_spread(seeds=(0, 1, 2, 3, 4))
    for seed, v in zip(spread.seeds, spread.values):
        assert v == pytest.approx(frechet_floor(seed), rel=1e-6)
    v = torch.tensor(spread.values, dtype=torch.float64)
    assert spread.mean == pytest.approx(float(v.mean())) and spread.sd == pytest.approx(float(v.std()))
    assert spread.low == min(spread.values) and spread.high == max(spread.values)
    assert math.isfinite(spread.sd) and spread.sd > 0


def test_floor_spread_needs_five_seeds():
    with pytest.raises(ValueError, match="at least 5"):
        frechet_floor_spread(seeds=(0, 1, 2, 3, 3))
