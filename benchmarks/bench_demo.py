"""`seqdiff demo` and `seqdiff --help` wall times, this checkout against another one, side by side.

Each run is a fresh process (`python -m seqdiff_kit.cli ...`, one torch thread, as `make demo` runs it) with
``PYTHONPATH`` set to the checkout, alternating between the two so that drifting load hits both alike. Prints
the medians of the process's wall time and of the demo's own work (the "in X s" it reports: models,
evaluation, report), their ratios, and whether the two checkouts' ``metrics.json`` hold the same numbers.

``--phases`` also runs ``demo.run_demo`` in fresh processes with its parts timed (wall time, each part wrapped
where the demo calls it): loading the models, sampling (every model and step count), scoring the rows (the MMD
and the sliced Wasserstein distance within it), the drift from the ideal path, the spread per step, the report,
and prints the medians per checkout.

Usage: python benchmarks/bench_demo.py [--baseline PATH_TO_OTHER_CHECKOUT] [--repeats 5] [--phases]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def run(tree: Path, args: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "SEQDIFF_THREADS": "1"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "seqdiff_kit.cli", *args], cwd=tree, env=env, capture_output=True,
                         text=True, check=True).stdout
    return time.perf_counter() - t0, out


# run in a fresh process with PYTHONPATH at a checkout: run_demo with its parts timed; prints one JSON line
PHASES = """
import collections, functools, json, sys, time
import seqdiff_kit.demo as demo, seqdiff_kit.evaluate as ev, seqdiff_kit.metrics as me
seconds = collections.defaultdict(float)
def timed(f, key):
    @functools.wraps(f)
    def g(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            seconds[key] += time.perf_counter() - t
    return g
for mod, name, key in ((demo, "load_shipped", "models"), (ev, "sample", "sampling"), (ev, "score", "scoring"),
                       (ev, "ReferenceMMD", "scoring"), (ev, "ReferenceSlicedWasserstein", "scoring"),
                       (ev, "paths_drift", "drift"), (ev, "trajectory_drift", "spread"),
                       (demo, "build_report", "report"), (demo, "write_metrics_json", "metrics.json")):
    setattr(mod, name, timed(getattr(mod, name), key))
me.ReferenceMMD.__call__ = timed(me.ReferenceMMD.__call__, "scoring: MMD")
me.ReferenceSlicedWasserstein.__call__ = timed(me.ReferenceSlicedWasserstein.__call__, "scoring: sliced W")
res = demo.run_demo(sys.argv[1], echo=None, progress=False)
print(json.dumps({**seconds, "own work": res.seconds}))
"""
PHASE_ORDER = ("models", "sampling", "scoring", "scoring: MMD", "scoring: sliced W", "drift", "spread", "report",
               "metrics.json", "own work")


def run_phases(tree: Path, out: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "SEQDIFF_THREADS": "1"}
    text = subprocess.run([sys.executable, "-c", PHASES, out], cwd=tree, env=env, capture_output=True, text=True,
                          check=True).stdout
    return json.loads(text.strip().splitlines()[-1])


def max_rel_diff(a, b) -> float:
    """The largest relative difference between the numbers of two JSON trees of the same shape."""
    if isinstance(a, dict):
        return max((max_rel_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list):
        return max((max_rel_diff(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, float) and a != b:
        return abs(a - b) / max(abs(a), abs(b))
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", type=Path, default=None, help="another checkout of the repository")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--phases", action="store_true", help="also time the parts of the demo's own work")
    args = ap.parse_args()
    trees = {"this": HERE} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    print(f"load average before: {os.getloadavg()}  (cores: {os.cpu_count()}, torch threads: 1)")
    wall = {k: [] for k in trees}
    work = {k: [] for k in trees}
    helps = {k: [] for k in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, tree in trees.items():
                dt, out = run(tree, ["demo", "--out", f"{tmp}/{name}", "--quiet"])
                wall[name].append(dt)
                work[name].append(float(re.search(r" in ([0-9.]+) s", out).group(1)))
                helps[name].append(run(tree, ["--help"])[0])
        metrics = {k: json.loads(Path(f"{tmp}/{k}/metrics.json").read_text())["rows"] for k in trees}
    print(f"{'checkout':<10} {'demo wall s':>12} {'demo work s':>12} {'--help s':>9}   (medians of {args.repeats})")
    for name in trees:
        print(f"{name:<10} {statistics.median(wall[name]):12.2f} {statistics.median(work[name]):12.2f} "
              f"{statistics.median(helps[name]):9.2f}")
    if args.baseline:
        r = {k: statistics.median(v["baseline"]) / statistics.median(v["this"])
             for k, v in (("wall", wall), ("work", work), ("help", helps))}
        print(f"speed-up (baseline / this): demo wall {r['wall']:.2f}x, demo work {r['work']:.2f}x, "
              f"--help {r['help']:.2f}x")
        same = metrics["this"] == metrics["baseline"]
        print("metrics.json rows: " + ("identical" if same else
                                       f"largest relative difference {max_rel_diff(metrics['this'], metrics['baseline']):.1e}"))
    print(f"load average after: {os.getloadavg()}")
    if args.phases:
        print(f"\nthe demo's parts (wall s, medians of {args.repeats} fresh processes); load before: {os.getloadavg()}")
        parts = {k: [] for k in trees}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeats):
                for name, tree in trees.items():
                    parts[name].append(run_phases(tree, f"{tmp}/{name}"))
        print(f"{'part':<18}" + "".join(f"{name:>10}" for name in trees))
        for key in PHASE_ORDER:
            print(f"{key:<18}" + "".join(f"{statistics.median(p.get(key, 0.0) for p in parts[name]):10.2f}"
                                         for name in trees))
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
