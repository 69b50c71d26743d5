"""Data-parallel training step time: one process against N gloo processes (DistributedDataParallel) on the same
global batch, and the largest weight difference between the N-process run and one process emulating its N shards.

Each configuration trains ``--steps`` updates from the same recipe (ring8's MLP 128 x 3 at batch 256, the
digits' TinyUNet at batch 128; SA loss K = 2), one torch thread per process; the time of every update after
``--warmup`` is taken on rank 0 and the median printed with the machine load. The N-process runs go through
``torch.distributed.run --standalone`` (this script re-runs itself as each rank).

Usage: python benchmarks/bench_ddp.py [--nproc 2] [--steps 60] [--warmup 10]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from seqdiff_kit.checkpoint import read_checkpoint
from seqdiff_kit.ddp import destroy_process_group, init_process_group, launch_env
from seqdiff_kit.losses import Loss
from seqdiff_kit.recipes import DIGITS, RING8
from seqdiff_kit.train import fit, train_iter

RECIPES = {"ring8 MLP 128x3, batch 256": RING8.replace(batch_size=256),
           "digits TinyUNet, batch 128": DIGITS.replace(batch_size=128)}


def step_times(recipe, steps: int, shards: int | None, checkpoint=None) -> list[float]:
    """Seconds of each update of ``recipe`` (SA loss) trained for ``steps`` updates."""
    recipe = recipe.replace(loss=Loss("sa", K=2, lam=1.0), steps=steps)
    times, t0 = [], time.perf_counter()
    for _ in train_iter(recipe.build_model(), recipe.data(), recipe.make_schedule(), recipe.loss, seed=0,
                        progress=False, threads=1, shards=shards, checkpoint=checkpoint, **recipe.fit):
        now = time.perf_counter()
        times.append(now - t0)
        t0 = now
    return times


def rank_main(args) -> None:
    env = launch_env()
    init_process_group(torch.device("cpu"), env)
    try:
        for name, recipe in RECIPES.items():
            times = step_times(recipe, args.steps, None, checkpoint=Path(args.out) / name.split()[0])
            if env.rank == 0:
                with open(Path(args.out) / "times.jsonl", "a") as f:
                    f.write(json.dumps({"name": name, "times": times[args.warmup:]}) + "\n")
    finally:
        destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rank:
        return rank_main(args)
    torch.set_num_threads(1)
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average), torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "SEQDIFF_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc),
               __file__, "--rank", "--out", tmp, "--steps", str(args.steps), "--warmup", str(args.warmup)]
        subprocess.run(cmd, env=env, check=True)
        ddp = {r["name"]: r["times"] for r in map(json.loads, (Path(tmp) / "times.jsonl").read_text().splitlines())}
        for name, recipe in RECIPES.items():
            one = step_times(recipe, args.steps, 1)[args.warmup:]
            emulated = recipe.replace(loss=Loss("sa", K=2, lam=1.0), steps=args.steps)
            res = fit(emulated.build_model(), emulated.data(), emulated.make_schedule(), emulated.loss, seed=0,
                      progress=False, threads=1, shards=args.nproc, **emulated.fit)
            tensors, _ = read_checkpoint(Path(tmp) / name.split()[0])
            diff = max(float((tensors["model." + k] - v).abs().max()) for k, v in res.model.state_dict().items())
            m1, mn = statistics.median(one), statistics.median(ddp[name])
            print(f"{name}: median step 1 process {1e3 * m1:.1f} ms, {args.nproc} processes {1e3 * mn:.1f} ms "
                  f"(ratio {mn / m1:.2f}); max |weight difference| {args.nproc} processes vs one emulating "
                  f"{args.nproc} shards after {args.steps} steps: {diff:.3g}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
