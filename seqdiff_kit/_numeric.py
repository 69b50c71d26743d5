"""Float-range helpers shared by the metrics and the drift analysis.

Dividing by a power of two is exact in binary floating point (barring underflow), so a computation run on
``x / s`` and scaled back gives the same bits as on ``x`` for ordinary inputs, and stays finite for huge ones.
"""
from __future__ import annotations

import math

import torch


def pow2_scale(*tensors: torch.Tensor) -> float:
    """The power of two ``s`` with ``max |x| / s`` in [0.5, 1) over all ``tensors`` (1.0 when all are zero)."""
    m = max((float(t.abs().max()) for t in tensors if t.numel()), default=0.0)
    if m == 0.0 or not math.isfinite(m):
        return 1.0
    return math.ldexp(1.0, math.frexp(m)[1])
