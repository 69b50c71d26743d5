"""Sampling speed with the time embedding computed once per distinct t against once per point.

A sampler step calls the network with one t for the whole batch, so ``MLPDenoiser`` / ``TinyUNet`` now run
their time MLP on one row instead of B. The "per point" side is the same network with
``denoisers.distinct_timesteps`` replaced by the identity (the computation before the change). Both sides
run interleaved in one process (so load drifts hit both alike); medians over repeats, one torch thread.
Also a training step (simple loss, random t, so few repeats) for the same pair.

Usage: python benchmarks/bench_time_embedding.py [--repeats 5] [--steps 100]
"""
import argparse
import os
import statistics
import time

import torch

import seqdiff_kit as sk
import seqdiff_kit.denoisers as denoisers
from seqdiff_kit.losses import simple_loss

CACHED = denoisers.distinct_timesteps


def per_point(t):
    return t, None


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def race(label, fn, repeats):
    """Median seconds of ``fn`` with the per-t cache and with the per-point embedding, interleaved."""
    times = {"per point": [], "per t": []}
    fn()  # warm-up (allocator, kernels)
    for _ in range(repeats):
        for name, impl in (("per point", per_point), ("per t", CACHED)):
            denoisers.distinct_timesteps = impl
            times[name].append(timed(fn))
    denoisers.distinct_timesteps = CACHED
    old, new = statistics.median(times["per point"]), statistics.median(times["per t"])
    print(f"{label:<44} {old:9.3f} {new:9.3f} {old / new:7.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"load average before: {os.getloadavg()}  (cores: {os.cpu_count()}, torch threads: 1)")
    sched = sk.Schedule.linear()
    torch.manual_seed(0)
    mlp, unet = sk.MLPDenoiser().eval(), sk.TinyUNet().eval()
    g = torch.Generator().manual_seed(0)
    print(f"{'':<44} {'per point':>9} {'per t':>9} {'speed-up':>8}   (median seconds)")
    for n in (1000, 10_000):
        x_T = torch.randn(n, 2, generator=g)
        race(f"MLP, {args.steps} DDIM steps, {n} points", lambda: sk.sample(
            mlp, x_T, sched, args.steps, record_every=args.steps), args.repeats)
    for n in (100, 1000):
        x_T = torch.randn(n, 1, 8, 8, generator=g)
        race(f"TinyUNet, {args.steps // 5} DDIM steps, {n} images", lambda: sk.sample(
            unet, x_T, sched, args.steps // 5, record_every=args.steps), args.repeats)
    x0 = sk.ring8().sample(256, generator=g)
    train_mlp = sk.MLPDenoiser().train()

    def train_steps():
        gen = torch.Generator().manual_seed(1)
        for _ in range(50):
            simple_loss(train_mlp, x0, sched, generator=gen).total.backward()

    race("MLP, 50 training steps, batch 256, random t", train_steps, args.repeats)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
