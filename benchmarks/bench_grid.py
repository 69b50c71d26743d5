"""Experiment grid throughput: the same preset run from scratch with 1 local worker (in this process), 2 local
worker processes and 2 workers of a Dask cluster on 127.0.0.1 (a `dask scheduler` and two single-threaded
`dask worker` processes started here, stopped by pid at the end), one run each.

Printed per executor: jobs, the wall time of ``run_experiment`` (for Dask: connecting, the workers' first import
of seqdiff_kit and the jobs; the cluster itself was started before), the time of its job loop alone, jobs per
minute of wall time, and the machine load. The rows of the three runs are checked to be identical.

Usage: python benchmarks/bench_grid.py [--preset fast]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seqdiff_kit.experiments import connect_scheduler, run_experiment

ROOT = Path(__file__).resolve().parent.parent


def start_cluster(n: int, logs: Path) -> tuple[str, list]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SEQDIFF_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, cwd=logs, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    for i in range(n):
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
                                       "--nworkers", "1", "--no-nanny", "--no-dashboard", "--memory-limit", "0",
                                       "--local-directory", str(logs / f"w{i}")], env=env, cwd=logs,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    client = connect_scheduler(address, timeout=120)
    client.wait_for_workers(n, timeout=120)
    client.close()
    return address, procs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="fast")
    args = p.parse_args()
    print(f"preset {args.preset}, {os.cpu_count()} CPUs")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        procs = []
        try:
            for label, kw in (("1 local worker", dict(workers=1)), ("2 local workers", dict(workers=2)),
                              ("2 Dask workers", None)):
                if kw is None:
                    address, procs = start_cluster(2, tmp)
                    kw = dict(scheduler=address)
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                res = run_experiment(args.preset, tmp / label.replace(" ", "_"), progress=False, report=False, **kw)
                wall = time.perf_counter() - t0
                results[label] = res.rows
                jobs = res.stats["jobs"]
                print(f"{label}: {jobs} jobs in {wall:.1f} s wall (job loop {res.stats['seconds']:.1f} s): "
                      f"{60 * jobs / wall:.1f} jobs/min; load {load:.2f} before, {os.getloadavg()[0]:.2f} after",
                      flush=True)
        finally:
            for proc in procs[1:]:
                proc.kill()
            if procs:
                procs[0].terminate()
            for proc in procs:
                proc.wait(timeout=30)
    rows = list(results.values())
    print("rows identical across the three runs:", all(r == rows[0] for r in rows))


if __name__ == "__main__":
    main()
