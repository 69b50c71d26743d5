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


def check_tensor(name: str, value, *, ndim: int | None = None, min_ndim: int | None = None,
                 finite: bool = False, nonempty: bool = False) -> torch.Tensor:
    """Raise unless ``value`` is a tensor of the expected rank (and finite / non-empty when asked)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if min_ndim is not None and value.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(value.shape)}")
    if nonempty and value.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sample, got an empty batch of shape {tuple(value.shape)}")
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name} must be finite, got {bad} non-finite value(s) (NaN or inf)")
    return value


def check_timesteps(name: str, t, T: int, *, batch: int | None = None, allow_clean: bool = False) -> torch.Tensor:
    """``t`` as a LongTensor of integer timesteps in ``[0, T-1]`` (``[-1, T-1]`` with ``allow_clean``: ``-1``
    is the clean data), or raise naming the argument.

    With ``batch``, a scalar is broadcast to ``[batch]`` and any other shape than ``[batch]`` is refused; without
    it any shape passes. The one check of "t is an integer tensor [B] in range" for schedules, losses and
    networks."""
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be a LongTensor of integer timesteps, got dtype {t.dtype}")
    if batch is not None:
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"{name} must be a scalar or have shape [B] = [{batch}], got shape {tuple(t.shape)}")
    low = -1 if allow_clean else 0
    if t.numel() and (int(t.min()) < low or int(t.max()) > T - 1):
        clean = " (-1 is the clean data)" if allow_clean else ""
        raise ValueError(f"{name} must be in [{low}, {T - 1}]{clean}, got values from {int(t.min())} to {int(t.max())}")
    return t.long()
