"""Sizes that cannot fit: the memory this process may still use, and a check that names the culprit.

The estimates the callers pass are deliberately rough (a few arrays of the stated size); the point is to refuse
a request that is hopeless, a billion samples or a 60000-wide network, with one line before anything is
allocated, not to predict the peak to the byte."""
from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

_UNITS = ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _proc_bytes(path: str, key: str) -> int | None:
    """``key``'s value in a /proc file of ``key: N kB`` lines, in bytes."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory() -> int:
    """Bytes this process can still allocate: the system's available memory, less where a container's cgroup
    limit or this process's address-space limit (``ulimit -v``) is tighter."""
    avail = _proc_bytes("/proc/meminfo", "MemAvailable")
    for key in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):  # no /proc (macOS)
        if avail is None:
            with suppress(ValueError, OSError, AttributeError):
                avail = os.sysconf(key) * os.sysconf("SC_PAGE_SIZE")
    candidates = [avail] if avail else []
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit = _read_int(limit_file)
        if limit is not None and limit < 2**60:  # cgroup v1 writes a huge number for "no limit"
            candidates.append(max(0, limit - (_read_int(usage_file) or 0)))
            break
    if resource is not None:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            candidates.append(max(0, soft - (_proc_bytes("/proc/self/status", "VmSize") or 0)))
    return min(candidates) if candidates else 8 * 2**30


def format_bytes(n: float) -> str:
    for size, unit in _UNITS:
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def check_memory(name: str, value, nbytes: float, what: str = "") -> None:
    """Raise ValueError naming ``name`` and its ``value`` when ``nbytes`` exceed the memory available."""
    avail = available_memory()
    if nbytes > avail:
        what = f" ({what})" if what else ""
        raise ValueError(f"{name} {value} needs about {format_bytes(nbytes)} of memory{what}, more than the "
                         f"{format_bytes(avail)} available; use a smaller {name}")
