"""The one number formatter of the package's tables: printed tables, HTML reports and Markdown results."""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import torch


def format_number(value: Any, float_format: str = "{:.4g}", nonfinite: str | None = None) -> str:
    """A table cell as text: floats (and 0-d tensors) through ``float_format``, integers as they are, anything
    else through ``str``. NaN and infinities print as ``nonfinite`` (default: Python's ``nan``/``inf``)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        v = float(value)
        if not math.isfinite(v):
            return str(v) if nonfinite is None else nonfinite
        return float_format.format(v)
    return str(value)
