"""The shared argument checks: check_type's message, check_float's open bounds, the one timestep check."""
import pytest
import torch

from seqdiff_kit._validate import check_float, check_timesteps, check_type


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


def test_check_timesteps_broadcasts_and_bounds():
    t = check_timesteps("t", 3, 10, batch=4)
    assert t.dtype == torch.long and t.tolist() == [3, 3, 3, 3]
    assert check_timesteps("t", torch.tensor([[-1, 9]]), 10, allow_clean=True).shape == (1, 2)  # any shape
    with pytest.raises(ValueError, match=r"^t must be in \[0, 9\], got values from -1 to 9$"):
        check_timesteps("t", torch.tensor([-1, 9]), 10)
    with pytest.raises(ValueError, match=r"^s must be in \[-1, 9\] \(-1 is the clean data\), got values from 0 to 10$"):
        check_timesteps("s", torch.tensor([0, 10]), 10, allow_clean=True)
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \[B\] = \[3\], got shape \(2,\)"):
        check_timesteps("t", torch.tensor([0, 1]), 10, batch=3)
    for bad in (torch.tensor([0.5]), torch.tensor([True])):
        with pytest.raises(TypeError, match=f"t must be a LongTensor of integer timesteps, got dtype {bad.dtype}"):
            check_timesteps("t", bad, 10)
