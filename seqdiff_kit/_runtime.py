"""Process-wide settings every layer may read: the library's version and torch's thread count.

It imports nothing from the package, so that modules below the package root never import the root itself."""
from __future__ import annotations

import os

__version__ = "0.1.0"


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count deliberately (default: ``SEQDIFF_THREADS``, else 1); returns it.

    The models here are tiny, so a second thread gains little while oversubscribing a busy machine costs a
    lot (docs/performance.md)."""
    import torch  # here, not at the top: `seqdiff --help` and the version need no torch (seconds to import)

    if n is None:
        n = int(os.environ.get("SEQDIFF_THREADS", 1))
    torch.set_num_threads(max(1, int(n)))
    return torch.get_num_threads()
