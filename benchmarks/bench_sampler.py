"""Time and memory to record a full 1000-step trajectory of 10,000 2-D points (ideal denoiser of ring8).

Each configuration runs in a fresh subprocess so its peak resident memory is its own. Prints medians over
repeats and the machine load. Usage: python benchmarks/bench_sampler.py [--repeats 3] [--points 10000]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
import seqdiff_kit as sk
torch.set_num_threads(int(sys.argv[3]))
n, stride = int(sys.argv[1]), int(sys.argv[2])
s = sk.Schedule.linear(); den = sk.IdealDenoiser(sk.ring8(), s)
x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
traj = sk.sample(den, x_T, s, 1000, eta=1.0, generator=torch.Generator().manual_seed(1), record_every=stride)
dt = time.perf_counter() - t0
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "recorded_mb": traj.nbytes() / 2**20, "peak_rss_growth_mb": (rss1 - rss0) / 1024}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}  (cores: {os.cpu_count()}, torch threads: {args.threads})")
    rows = {}
    for rep in range(args.repeats):
        for stride in (1, 10, 100):  # interleaved, so drifting load hits every configuration alike
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.points), str(stride), str(args.threads)],
                                 capture_output=True, text=True, check=True).stdout
            rows.setdefault(stride, []).append(json.loads(out))
    base = statistics.median(r["seconds"] for r in rows[1])
    print(f"{'record_every':>12} {'median s':>9} {'vs 1':>6} {'recorded MB':>12} {'peak RSS growth MB':>19}")
    for stride, rs in rows.items():
        med = statistics.median(r["seconds"] for r in rs)
        print(f"{stride:>12} {med:9.2f} {med / base:6.2f} {rs[0]['recorded_mb']:12.1f} "
              f"{statistics.median(r['peak_rss_growth_mb'] for r in rs):19.1f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
