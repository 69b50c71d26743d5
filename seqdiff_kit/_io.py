"""Atomic file writes shared by checkpoints, reports, samples and tables: nothing is lost on failure."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(target, data: bytes | str, mode: int = 0o644) -> Path:
    """Write ``data`` to ``target`` so that readers see the old file or the new one, never a torn one.

    A temporary file in the same folder (same filesystem, so ``os.replace`` is atomic), fsync, chmod
    (``mkstemp`` makes owner-only files; what we write is meant to be shared), replace, then fsync the folder."""
    target = Path(target)
    if isinstance(data, str):
        data = data.encode("utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not every platform can open a folder
        dfd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return target
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
    return target
