"""Run All of each lesson notebook on its fast path (``SEQDIFF_FAST=1``), kernel start excluded: wall seconds,
the kernel's own CPU seconds (user + system of the kernel process and its children), its peak resident memory,
and the costliest cells, with the machine load beside every figure.

On a loaded machine wall time mostly measures the other processes; the kernel's CPU time is the figure to
compare between runs (``--threads 1`` makes it independent of how many cores are free).

    .venv/bin/python benchmarks/bench_notebooks.py [--only 07 02] [--top 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import time

import nbformat
import psutil
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load() -> str:
    """The 1-minute load average and the core count, as ``uptime`` reports them."""
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def _kernel_cpu(proc: psutil.Process) -> float:
    """User + system CPU seconds of the kernel process, its reaped children included."""
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def _peak_rss_mb(proc: psutil.Process) -> float:
    """The kernel's high-water resident memory (VmHWM) in MB."""
    for line in pathlib.Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_notebook(path: pathlib.Path, threads: int | None) -> dict:
    """Execute every cell of ``path`` in a fresh kernel; per-cell (wall, CPU) seconds and the totals."""
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "SEQDIFF_FAST": "1", "PYTHONPATH": str(ROOT)}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), SEQDIFF_THREADS=str(threads))
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    cells = []
    with client.setup_kernel(env=env):
        proc = psutil.Process(client.km.provisioner.process.pid)
        cpu0, wall0 = _kernel_cpu(proc), time.perf_counter()
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            c0, w0 = _kernel_cpu(proc), time.perf_counter()
            client.execute_cell(cell, index)
            cells.append((index, time.perf_counter() - w0, _kernel_cpu(proc) - c0, cell.source.splitlines()[:1]))
        result = {"wall": time.perf_counter() - wall0, "cpu": _kernel_cpu(proc) - cpu0,
                  "peak_mb": _peak_rss_mb(proc), "cells": cells}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=[], help="notebook number prefixes, e.g. 07 02")
    parser.add_argument("--top", type=int, default=5, help="costliest cells listed per notebook")
    parser.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads in the kernel")
    args = parser.parse_args(argv)
    paths = sorted((ROOT / "notebooks").glob("0*.ipynb"))
    if args.only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in args.only)]
    print(f"fast path, kernel start excluded, threads={args.threads or 'default'}; {load()}")
    for path in paths:
        r = run_notebook(path, args.threads)
        print(f"{path.name:40s} wall {r['wall']:6.1f} s  kernel CPU {r['cpu']:6.1f} s  "
              f"peak {r['peak_mb']:6.0f} MB  ({load()})")
        for index, wall, cpu, first in sorted(r["cells"], key=lambda c: -c[2])[:args.top]:
            print(f"    cell {index:3d}  CPU {cpu:5.1f} s  wall {wall:5.1f} s  {(first or [''])[0][:70]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
