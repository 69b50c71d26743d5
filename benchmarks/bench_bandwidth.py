"""Which MMD bandwidths separate a good sampler from the data's own noise: candidate rules compared on each
dataset by the ideal denoiser's MMD^2 after DDIM steps against the data's own level.

For every rule and dataset: the data's own level (a fresh draw of N points against another, ``--draws`` times:
mean and sample standard deviation) and the ideal denoiser's MMD^2 at ``--steps`` DDIM steps (the same seeds:
``x_T`` and the reference draw from ``Generator(seed)``, as ``evaluate`` draws them), its mean and sd, and
``z = (ideal mean - data mean) / data sd``: how many of the data's standard deviations the ideal denoiser's
discretisation error stands above the data's noise, and the ideal's MMD^2 minus the data's paired by seed (same
reference draw) with its 95% t-interval (``stats.paired``). For the digits (no ideal denoiser) only the data's level:
random halvings of the real digits, 898 against 899.

Rules (bandwidths from a fixed data draw: 2000 points of ``Generator(0)``, or the real digits):

- ``median x 0.25-4``: 0.25, 0.5, 1, 2, 4 times the median pairwise distance (the rule before issue 22);
- ``fixed 0.05-1``: 0.05, 0.1, 0.2, 0.5, 1 whatever the data;
- ``median x 1/32-2``: halvings from twice the median distance, seven bandwidths;
- ``median halved down to q1%`` (``evaluate.mmd_bandwidths``): the median distance and its halvings down to
  the 1% quantile of the pairwise distances of the 2000 (about the width of one mode).

Usage: python benchmarks/bench_bandwidth.py [--datasets ring8 grid25] [--points 1000] [--draws 20] [--steps 20 100]
"""
import argparse
import os
import statistics
import time

import torch

from seqdiff_kit.data import GaussianMixture, dataset
from seqdiff_kit.denoisers import IdealDenoiser
from seqdiff_kit.evaluate import mmd_bandwidths, real_halves
from seqdiff_kit.metrics import ReferenceMMD
from seqdiff_kit.schedule import Schedule
from seqdiff_kit.solvers import sample
from seqdiff_kit.stats import paired


def rules(data) -> dict:
    ours = mmd_bandwidths(data)
    med = ours[0]  # the median pairwise distance of the fixed draw
    return {"median x 0.25-4": [m * med for m in (0.25, 0.5, 1, 2, 4)],
            "fixed 0.05-1": [0.05, 0.1, 0.2, 0.5, 1.0],
            "median x 1/32-2": [2 * med / 2 ** k for k in range(7)],
            "median halved down to q1%": ours}


def measure(name: str, points: int, draws: int, steps: int) -> list[dict]:
    data = dataset(name)
    schedule = Schedule.linear()
    is_mixture = isinstance(data, GaussianMixture)
    refs, owns, ideals = [], [], []
    for seed in range(draws):
        if is_mixture:
            g = torch.Generator().manual_seed(seed)
            x_T = torch.randn(points, data.dim, generator=g)
            refs.append(data.sample(points, generator=g))
            owns.append(data.sample(points, generator=g))
            ideals.append(sample(IdealDenoiser(data, schedule), x_T, schedule, steps).final)
        else:
            a, b = real_halves(seed)
            refs.append(a)
            owns.append(b)
    out = []
    for rule, hs in rules(data).items():
        own = [ReferenceMMD(r, hs)(o) for r, o in zip(refs, owns)]
        row = {"dataset": name, "rule": rule, "bandwidths": hs, "data_mean": statistics.mean(own),
               "data_sd": statistics.stdev(own)}
        if ideals:
            ideal = [ReferenceMMD(r, hs)(x) for r, x in zip(refs, ideals)]
            row.update(ideal_mean=statistics.mean(ideal), ideal_sd=statistics.stdev(ideal),
                       z=(statistics.mean(ideal) - row["data_mean"]) / row["data_sd"], diff=paired(ideal, own))
        out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["ring8", "grid25", "two_moons", "gauss1d", "digits"])
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--steps", type=int, nargs="+", default=[100])
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    print(f"N = {args.points} points per draw, {args.draws} draws (seeds 0..{args.draws - 1}), ideal denoiser at "
          f"{', '.join(map(str, args.steps))} DDIM steps (trailing), one thread")
    print("| dataset | steps | rule | bandwidths | data's own MMD^2: mean (sd) | ideal MMD^2: mean (sd) | z | "
          "ideal - data, paired by seed [95% CI] |")
    print("|---|---:|---|---|---|---|---:|---|")
    for name, steps in [(name, s) for name in args.datasets for s in args.steps]:
        for r in measure(name, args.points, args.draws, steps):
            hs = ", ".join(f"{h:.3g}" for h in r["bandwidths"])
            ideal = f"{r['ideal_mean']:.2e} ({r['ideal_sd']:.1e})" if "z" in r else "-"
            z = f"{r['z']:.1f}" if "z" in r else "-"
            d = f"{r['diff']['mean']:.2e} [{r['diff']['low']:.2e}, {r['diff']['high']:.2e}]" if "z" in r else "-"
            own = f"{r['data_mean']:.2e} ({r['data_sd']:.1e})"
            print(f"| {name} | {steps} | {r['rule']} | {hs} | {own} | {ideal} | {z} | {d} |", flush=True)
    print(f"{time.perf_counter() - t0:.0f} s; load average {' / '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
