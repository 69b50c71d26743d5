"""The shared argument checks: check_type's message and check_float's open bounds."""
import pytest

from seqdiff_kit._validate import check_float, check_type


def test_check_type_names_the_allowed_types():
    assert check_type("x", 3, int) == 3
    with pytest.raises(TypeError, match=r"^x must be a str, got int$"):
        check_type("x", 3, str)
    with pytest.raises(TypeError, match=r"^x must be a str or float, got list$"):
        check_type("x", [], (str, float))


@pytest.mark.parametrize("value, ok", [(0.0, False), (0.5, True), (1.0, False), (1.5, False)])
def test_check_float_open_bounds(value, ok):
    if ok:
        assert check_float("b", value, 0.0, 1.0, low_open=True, high_open=True) == value
    else:
        with pytest.raises(ValueError, match=rf"^b must be in \(0.0, 1.0\), got {value}$"):
            check_float("b", value, 0.0, 1.0, low_open=True, high_open=True)


def test_check_float_closed_bounds_admit_the_ends():
    assert check_float("b", 1.0, 0.0, 1.0) == 1.0
    with pytest.raises(ValueError, match=r"^b must be in \[0.0, 1.0\], got 1.5$"):
        check_float("b", 1.5, 0.0, 1.0)
