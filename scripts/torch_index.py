"""Where `make` installs PyTorch from: PyTorch's own CPU wheel index where this machine reaches it, else the
package index pip is configured with (the plain pin).

The public package index's torch wheel for Linux is the CUDA build, which brings several GB of NVIDIA packages;
https://download.pytorch.org/whl/cpu serves the CPU build of the same version. A machine that cannot reach it
(offline, behind a proxy, a mirror configured instead) must not wait on it: the probe gives up after
``--timeout`` seconds, name resolution included, and the install goes on with the plain pin.

    python scripts/torch_index.py [auto | none | URL] [--timeout S] [--cpu-index URL]

prints the arguments for ``pip install torch==...``: ``--index-url URL`` or nothing, and says on stderr which it
chose. ``auto`` (the default) probes the CPU index; ``none`` takes the plain pin; a URL is used as given.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
import urllib.error
import urllib.request

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_S = 3.0


def reachable(url: str, timeout: float = PROBE_S) -> bool:
    """Whether ``url``'s torch page answers (2xx or 3xx) within ``timeout`` seconds, all steps together."""
    result = []

    def probe() -> None:
        request = urllib.request.Request(url.rstrip("/") + "/torch/", method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                result.append(response.status < 400)
        except (urllib.error.URLError, OSError, ValueError):
            result.append(False)

    # a thread, so that a slow name lookup (which no socket timeout covers) cannot hold the install either
    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def pip_args(choice: str = "auto", timeout: float = PROBE_S, cpu_index: str = CPU_INDEX) -> tuple[list[str], str]:
    """The pip arguments for ``choice`` and a sentence saying where torch comes from."""
    if choice == "none":
        return [], "torch: the plain pin from the configured package index (TORCH_INDEX=none)"
    if choice != "auto":
        if not choice.startswith(("https://", "http://", "file:")):
            raise ValueError(f"TORCH_INDEX must be auto, none or an index URL, got {choice!r}")
        return ["--index-url", choice], f"torch: from {choice} (TORCH_INDEX)"
    t0 = time.monotonic()
    if reachable(cpu_index, timeout):
        return ["--index-url", cpu_index], f"torch: the CPU build from PyTorch's index {cpu_index}"
    return [], (f"torch: {cpu_index} not reached ({time.monotonic() - t0:.1f} s): the plain pin from the configured "
                "package index (on Linux that may be the CUDA build, several GB; TORCH_INDEX=URL picks an index)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("choice", nargs="?", default="auto", help="auto (default), none, or an index URL")
    parser.add_argument("--timeout", type=float, default=PROBE_S, help="seconds the probe may take (default 3)")
    parser.add_argument("--cpu-index", default=CPU_INDEX, help=f"the CPU index that auto tries (default {CPU_INDEX})")
    args = parser.parse_args(argv)
    try:
        words, note = pip_args(args.choice.strip(), args.timeout, args.cpu_index)
    except ValueError as err:
        print(f"torch_index: error: {err}", file=sys.stderr)
        return 2
    print(note, file=sys.stderr)
    print(" ".join(words))
    return 0


if __name__ == "__main__":
    sys.exit(main())
