"""Argument checks shared by the library: every message names the argument, its value and what is allowed."""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int, or raise if it is not an integer in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low if low is not None else '-inf'}, "
                         f"{high if high is not None else 'inf'}], got {value}")
    return value


def check_float(name: str, value, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a finite float inside the given bounds, or raise naming the argument.

    ``low_open`` / ``high_open`` exclude the bound itself."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    below = low is not None and (value < low or (low_open and value == low))
    above = high is not None and (value > high or (high_open and value == high))
    if below or above:
        raise ValueError(f"{name} must be in {'(' if low_open else '['}{low if low is not None else '-inf'}, "
                         f"{high if high is not None else 'inf'}{')' if high_open else ']'}, got {value}")
    return value


def check_real(name: str, value) -> float:
    """``value`` (a real number or a one-element real tensor) as a float, NaN and inf allowed; else a TypeError
    naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (Real, torch.Tensor)) or (
            isinstance(value, torch.Tensor) and (value.numel() != 1 or value.is_complex())):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    return float(value)


def check_type(name: str, value, cls):
    """Return ``value``, or raise TypeError unless it is an instance of ``cls`` (a class or a tuple of them)."""
    if not isinstance(value, cls):
        allowed = " or ".join(c.__name__ for c in cls) if isinstance(cls, tuple) else cls.__name__
        raise TypeError(f"{name} must be a {allowed}, got {type(value).__name__}")
    return value


def check_choice(name: str, value, choices) -> str:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


# The dtypes the library computes with: real floating point (float16 and bfloat16 work as storage; the library
# takes its coefficients in float64 and casts them). "real" adds the integer types, for data that are counts.
FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INTEGER = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
# each group's dtypes and how a message names a tensor of them
DTYPE_GROUPS = {"floating": (FLOATING, "a floating-point tensor"), "real": (FLOATING + INTEGER, "a real-valued tensor"),
                "integer": (INTEGER, "an integer tensor")}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32 -> "float32"``: the name a message shows."""
    return str(dtype).removeprefix("torch.")


def _names(dtypes) -> str:
    names = [dtype_name(d) for d in dtypes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def same_device(a, b) -> bool:
    """Whether two devices are the same (``"cuda"`` matches ``"cuda:0"``: an absent index matches any)."""
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def check_device(name: str, value: torch.Tensor, device=None, hint: str = "") -> torch.Tensor:
    """Raise TypeError for a meta tensor (it has a shape but no values to compute with) or, when ``device`` is
    given, for a tensor on another device."""
    if value.device.type == "meta":
        raise TypeError(f"{name} must hold values on a real device (cpu or cuda), got a tensor on device meta "
                        f"(meta tensors have shapes but no values)")
    if device is not None and not same_device(value.device, device):
        raise TypeError(f"{name} must be on device {torch.device(device)}, got device {value.device}{hint}")
    return value


def check_dtype(name: str, value: torch.Tensor, dtypes, hint: str = "") -> torch.Tensor:
    """Raise TypeError unless ``value.dtype`` is allowed: ``dtypes`` is a tuple of dtypes or a group name,
    ``"floating"`` (float16, bfloat16, float32, float64), ``"real"`` (those and the integer types; never bool or
    complex) or ``"integer"``."""
    allowed, what = DTYPE_GROUPS[dtypes] if isinstance(dtypes, str) else (tuple(dtypes), None)
    if value.dtype not in allowed:
        what = f"be {what} ({_names(allowed)})" if what else f"have dtype {_names(allowed)}"
        raise TypeError(f"{name} must {what}, got dtype {dtype_name(value.dtype)}{hint}")
    return value


def check_dtype_arg(name: str, dtype, dtypes="floating") -> torch.dtype:
    """Raise TypeError unless ``dtype`` is a ``torch.dtype`` allowed by ``dtypes`` (see ``check_dtype``)."""
    allowed = DTYPE_GROUPS[dtypes][0] if isinstance(dtypes, str) else tuple(dtypes)
    if not isinstance(dtype, torch.dtype) or dtype not in allowed:
        got = dtype_name(dtype) if isinstance(dtype, torch.dtype) else repr(dtype)
        raise TypeError(f"{name} must be one of the dtypes {_names(allowed)}, got {got}")
    return dtype


def check_tensor(name: str, value, *, ndim: int | None = None, min_ndim: int | None = None,
                 finite: bool = False, nonempty: bool = False, dtypes=None, device=None,
                 hint: str = "") -> torch.Tensor:
    """Raise unless ``value`` is a tensor with values (never a meta tensor) of the expected rank, finite /
    non-empty when asked, with an allowed dtype (``dtypes``: see ``check_dtype``) and on ``device`` when given.
    ``hint`` is appended to a dtype or device message (say how to convert)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    check_device(name, value, device, hint)
    if dtypes is not None:
        check_dtype(name, value, dtypes, hint)
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if min_ndim is not None and value.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(value.shape)}")
    if nonempty and value.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sample, got an empty batch of shape {tuple(value.shape)}")
    if finite and (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name} must be finite, got {bad} non-finite value(s) (NaN or inf)")
    return value


def check_timesteps(name: str, t, T: int, *, batch: int | None = None, allow_clean: bool = False) -> torch.Tensor:
    """``t`` as a LongTensor of integer timesteps in ``[0, T-1]`` (``[-1, T-1]`` with ``allow_clean``: ``-1``
    is the clean data), or raise naming the argument. ``t`` is an int, a list or tuple of ints or an integer
    tensor on a real device (its device is kept).

    With ``batch``, a scalar is broadcast to ``[batch]`` and any other shape than ``[batch]`` is refused; without
    it any shape passes."""
    if isinstance(t, (list, tuple)) and all(isinstance(v, Integral) and not isinstance(v, bool) for v in t):
        t = torch.tensor(t, dtype=torch.long)
    if isinstance(t, bool) or not isinstance(t, (Integral, torch.Tensor)):
        raise TypeError(f"{name} must be a LongTensor of integer timesteps (or an int, or a list of ints), "
                        f"got {type(t).__name__}")
    t = torch.as_tensor(t)
    check_device(name, t)
    if t.dtype not in INTEGER:
        raise TypeError(f"{name} must be a LongTensor of integer timesteps, got dtype {dtype_name(t.dtype)}")
    if batch is not None:
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"{name} must be a scalar or have shape [B] = [{batch}], got shape {tuple(t.shape)}")
    low = -1 if allow_clean else 0
    if t.numel() and (int(t.min()) < low or int(t.max()) > T - 1):
        clean = " (-1 is the clean data)" if allow_clean else ""
        raise ValueError(f"{name} must be in [{low}, {T - 1}]{clean}, got values from {int(t.min())} to "
                         f"{int(t.max())}")
    return t.long()


def check_values(name: str, value, *, low: float | None = None, high: float | None = None,
                 finite: bool = False) -> torch.Tensor:
    """``value`` (a number, a sequence of numbers or a real tensor) as a float64 tensor without NaN (and without
    inf when ``finite``), every entry in ``[low, high]``; raise naming the argument otherwise."""
    if not isinstance(value, torch.Tensor):
        if isinstance(value, (str, bytes, bool)):
            raise TypeError(f"{name} must be a number, a sequence of numbers or a real tensor, got {value!r}")
        try:
            value = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a number, a sequence of numbers or a real tensor, "
                            f"got {type(value).__name__}") from None
    v = check_tensor(name, value, dtypes="real", finite=finite).detach().to(torch.float64)
    if bool(torch.isnan(v).any()):
        raise ValueError(f"{name} must not be NaN, got {int(torch.isnan(v).sum())} NaN value(s)")
    if v.numel() and ((low is not None and float(v.min()) < low) or (high is not None and float(v.max()) > high)):
        raise ValueError(f"{name} must be in [{low if low is not None else '-inf'}, "
                         f"{high if high is not None else 'inf'}], got values from {float(v.min()):.6g} "
                         f"to {float(v.max()):.6g}")
    return v


def check_device_arg(name: str, device) -> torch.device:
    """``device`` (a string such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or a ``torch.device``) as a
    ``torch.device`` this machine has, or raise ValueError naming the argument: a CUDA request without a CUDA
    device (a CPU build of torch, or no GPU) is refused here, not deep inside a first ``.to()``."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a device name such as 'cpu' or 'cuda', got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name} must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"{name} {str(device)!r} is not available: this torch ({torch.__version__}) sees no CUDA "
                             f"device; use 'cpu'")
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"{name} {str(device)!r} is not available: CUDA devices are cuda:0 to cuda:{n - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{name} 'mps' is not available on this machine; use 'cpu'")
    elif dev.type != "cpu":
        raise ValueError(f"{name} must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {str(device)!r}")
    return dev
