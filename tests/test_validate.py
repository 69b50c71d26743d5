"""The shared argument checks: messages, open bounds, dtypes, devices and timesteps."""
import math

import pytest
import torch

from seqdiff_kit._validate import (check_dtype_arg, check_float, check_tensor, check_timesteps, check_type,
                                   check_values, same_device)


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


# ---------------------------------------------------------------------- dtypes, devices, timesteps (issue 16)
def test_check_tensor_refuses_meta_tensors_whatever_else_is_asked():
    with pytest.raises(TypeError, match=r"^x must hold values on a real device \(cpu or cuda\), got a tensor on "
                                        r"device meta"):
        check_tensor("x", torch.zeros(2, device="meta"))


@pytest.mark.parametrize("dtype, group, ok", [
    (torch.float16, "floating", True), (torch.bfloat16, "floating", True), (torch.int64, "floating", False),
    (torch.bool, "real", False), (torch.int32, "real", True), (torch.complex64, "real", False),
    (torch.float64, (torch.float32,), False)])
def test_check_tensor_dtypes(dtype, group, ok):
    x = torch.zeros(2, dtype=dtype)
    if ok:
        assert check_tensor("x", x, dtypes=group) is x
        return
    with pytest.raises(TypeError, match=rf"^x must (be a .*tensor \(|have dtype ).*got dtype "
                                        rf"{str(dtype)[6:]}"):
        check_tensor("x", x, dtypes=group)


def test_check_tensor_device_and_hint():
    assert same_device("cpu", torch.device("cpu")) and not same_device("cpu", "meta")
    with pytest.raises(TypeError, match=r"^x must have dtype float32, got dtype float64 \(convert it\)$"):
        check_tensor("x", torch.zeros(1, dtype=torch.float64), dtypes=(torch.float32,), hint=" (convert it)")


def test_check_tensor_finite_covers_complex():
    with pytest.raises(ValueError, match="x must be finite, got 1 non-finite"):
        check_tensor("x", torch.tensor([1 + 1j, complex(math.inf, 0)]), finite=True)


def test_check_values_and_check_dtype_arg():
    assert check_values("v", [1, 2]).dtype == torch.float64
    assert check_values("v", math.inf).item() == math.inf
    with pytest.raises(ValueError, match="v must not be NaN, got 1 NaN value"):
        check_values("v", [1.0, math.nan])
    with pytest.raises(ValueError, match="v must be finite"):
        check_values("v", [math.inf], finite=True)
    with pytest.raises(ValueError, match=r"v must be in \[0.0, 1.0\], got values from -1 to 2"):
        check_values("v", [-1.0, 2.0], low=0.0, high=1.0)
    for bad in ("1", True, None, ["a"], torch.tensor([1j])):
        with pytest.raises(TypeError, match="^v must be"):
            check_values("v", bad)
    assert check_dtype_arg("dtype", torch.float16) is torch.float16
    with pytest.raises(TypeError, match="dtype must be one of the dtypes float16, bfloat16, float32 or float64, "
                                        "got int64"):
        check_dtype_arg("dtype", torch.int64)

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
        name = str(bad.dtype).removeprefix("torch.")
        with pytest.raises(TypeError, match=f"t must be a LongTensor of integer timesteps, got dtype {name}"):
            check_timesteps("t", bad, 10)
    # what issue 16 added: lists, meta tensors, complex and bool refused by name
    assert check_timesteps("t", [4, 0], 10).dtype == torch.long
    assert check_timesteps("t", torch.tensor([-1], dtype=torch.int32), 10, allow_clean=True).dtype == torch.long
    for bad, exc, msg in [
            (torch.tensor([1j]), TypeError, r"t must be a LongTensor of integer timesteps, got dtype complex64"),
            (True, TypeError, r"t must be a LongTensor of integer timesteps \(or an int, .*\), got bool"),
            ([1.5], TypeError, r"t must be a LongTensor of integer timesteps \(or an int, .*\), got list"),
            (torch.zeros(2, dtype=torch.long, device="meta"), TypeError, "t must hold values on a real device")]:
        with pytest.raises(exc, match=msg):
            check_timesteps("t", bad, 10, batch=2)


# ---------------------------------------------------------------------- sizes the constructors refuse (issue 25)
def test_network_and_schedule_sizes_are_bounded_as_a_checkpoint_s_are():
    """``MLPDenoiser(depth=2**40)`` and ``Schedule.from_config({"name": "linear", "T": 10**9})`` once ran until
    stopped: the constructors now take the checkpoint loader's bounds, one check for both."""
    from seqdiff_kit import checkpoint
    from seqdiff_kit.denoisers import ARG_LIMITS, MLPDenoiser, TinyUNet
    from seqdiff_kit.schedule import MAX_T, Schedule

    assert checkpoint.MODEL_ARG_LIMITS is ARG_LIMITS and checkpoint.MAX_T == MAX_T == ARG_LIMITS["T"]
    with pytest.raises(ValueError, match=r"^depth must be in \[1, 256\], got 257$"):
        MLPDenoiser(depth=257)
    with pytest.raises(ValueError, match=r"^T must be in \[1, 1000000\], got 1000001$"):
        Schedule.linear(MAX_T + 1)
    with pytest.raises(ValueError, match=r"^T \(the number of betas\) must be in \[1, 1000000\], got 1000001$"):
        Schedule(torch.full((MAX_T + 1,), 0.01, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^depth must be in \[1, 256\], got 1099511627776$"):
        MLPDenoiser(depth=2**40)
    with pytest.raises(ValueError, match=r"^T must be in \[1, 1000000\], got 1000000000$"):
        Schedule.from_config({"name": "linear", "T": 10**9})
    with pytest.raises(ValueError, match=r"^channels must be in \[2, 4096\], got 4098$"):
        TinyUNet(channels=4098)
    assert MLPDenoiser(depth=256, width=2).config["depth"] == 256 and Schedule.linear(MAX_T).T == MAX_T


@pytest.mark.parametrize("cls, args", [("MLPDenoiser", dict(dim=3, width=16, depth=2, time_dim=8)),
                                       ("TinyUNet", dict(channels=8, time_dim=8))])
def test_a_network_that_cannot_fit_in_memory_is_refused_before_it_is_allocated(monkeypatch, cls, args):
    """The parameter count is known from the arguments: the MLP's exactly, the U-Net's within 10% above."""
    import seqdiff_kit._limits as limits
    from seqdiff_kit import denoisers

    build = getattr(denoisers, cls)
    n = sum(p.numel() for p in build(**args).parameters())
    if cls == "MLPDenoiser":  # counted exactly: one byte short is refused
        monkeypatch.setattr(limits, "available_memory", lambda: 4 * n - 1)
        with pytest.raises(ValueError, match=rf"^MLPDenoiser size \(dim=3, width=16, depth=2, time_dim=8, T=1000\) "
                                             rf"needs about .* of memory \({n} float32 parameters\), more than"):
            build(**args)
    monkeypatch.setattr(limits, "available_memory", lambda: int(4 * n * 1.1))
    assert sum(p.numel() for p in build(**args).parameters()) == n
    monkeypatch.setattr(limits, "available_memory", lambda: 4 * n // 2)
    with pytest.raises(ValueError, match=rf"^{cls} size \(.*\) needs about .* more than the .* available; use a "
                                         rf"smaller {cls} size$"):
        build(**args)
