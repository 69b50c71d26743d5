"""MMD speed: one exp per chain of halving bandwidths (the narrower kernels by squaring) and a fixed reference's
kernel sum computed once (``metrics.ReferenceMMD``), against one exp per bandwidth and every kernel sum per call.

"before" is the estimator written out with one ``exp`` per bandwidth (as ``metrics.mmd`` computed it before),
"mmd" the library's ``mmd`` (squaring, reference part recomputed per call), "reference" a ``ReferenceMMD`` built
once and called per sample set (the demo's 16 rows, a benchmark's snapshots). Bandwidths: the demo's
(0.25..4 x the median distance). All three run interleaved in one process; medians over repeats; one thread.
Also prints the largest relative difference between the three (float64 rounding).

Usage: python benchmarks/bench_mmd.py [--repeats 5] [--calls 16] [--points 1000 4000]
"""
import argparse
import os
import statistics
import time

import torch

import seqdiff_kit as sk
from seqdiff_kit.metrics import MEDIAN_MULTIPLIERS, ReferenceMMD, median_bandwidth, mmd


def mmd_one_exp_per_bandwidth(x, y, hs):
    x, y = x.double(), y.double()

    def ksum(a, b):
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.where(d2 > 0, torch.exp(-d2 / (2 * h * h)), 1.0) for h in hs)

    n, m = len(x), len(y)
    kxx, kyy = ksum(x, x), ksum(y, y)
    return float((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
                 + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * ksum(x, y).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=16, help="sample sets scored against one reference")
    ap.add_argument("--points", type=int, nargs="+", default=[1000, 4000], help="points per sample set")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"load average before: {os.getloadavg()}  (cores: {os.cpu_count()}, torch threads: 1)")
    print(f"{'points':>7} {'before s':>9} {'mmd s':>9} {'reference s':>12} {'mmd x':>6} {'reference x':>12} "
          f"{'max rel diff':>13}   ({args.calls} calls, medians)")
    for n in args.points:
        g = torch.Generator().manual_seed(0)
        ref = sk.ring8().sample(n, generator=g)
        xs = [sk.ring8().sample(n, generator=g) * (1 + 0.01 * i) for i in range(args.calls)]
        hs = [m * median_bandwidth(ref, xs[0]) for m in MEDIAN_MULTIPLIERS]
        times = {"before": [], "mmd": [], "reference": []}
        values = {}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            values["before"] = [mmd_one_exp_per_bandwidth(x, ref, hs) for x in xs]
            t1 = time.perf_counter()
            values["mmd"] = [mmd(x, ref, hs) for x in xs]
            t2 = time.perf_counter()
            score = ReferenceMMD(ref, hs)
            values["reference"] = [score(x) for x in xs]
            t3 = time.perf_counter()
            for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[k].append(dt)
        med = {k: statistics.median(v) for k, v in times.items()}
        diff = max(abs(a - b) / max(abs(a), 1e-300) for k in ("mmd", "reference")
                   for a, b in zip(values["before"], values[k]))
        print(f"{n:7d} {med['before']:9.3f} {med['mmd']:9.3f} {med['reference']:12.3f} "
              f"{med['before'] / med['mmd']:6.2f} {med['before'] / med['reference']:12.2f} {diff:13.1e}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
