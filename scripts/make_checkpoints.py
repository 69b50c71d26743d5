"""Regenerate the shipped ring8 checkpoints: data/checkpoints/ring8_simple.*, ring8_sa.* and ring8_ip.*.

Three MLPDenoisers (width 128, depth 3) on ring8 with the RING8 recipe of seqdiff_kit.recipes (Adam, batch
256, lr 2e-3 with warm-up and cosine decay, EMA, gradient clipping; the step count and the rest are recorded in
each JSON), seed 0 for the weights, the data, the timesteps and the noise: one with the simple loss, one with
the SA loss (K = 2, lam = 1), one with Input Perturbation (gamma = 0.1). Only the EMA weights are stored
(safetensors + JSON), so the files stay small, and the same seed and thread count give the same bytes.
``--only`` retrains some of them (the others keep their files).

    .venv/bin/python scripts/make_checkpoints.py [--only ring8_ip] [--seed 0] [--steps N] [--threads 1]
                                                 [--out data/checkpoints]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from seqdiff_kit.checkpoint import save_checkpoint
from seqdiff_kit.data import CHECKPOINT_DIR
from seqdiff_kit.recipes import SHIPPED, train

RING8_STEMS = [stem for stem in SHIPPED if stem.startswith("ring8_")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=RING8_STEMS, default=RING8_STEMS,
                        help="the checkpoints to train (default: all of them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: SEQDIFF_THREADS or 2)")
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR)
    args = parser.parse_args(argv)
    for stem in args.only:
        t0 = time.perf_counter()
        recipe = SHIPPED[stem].replace(seed=args.seed, **({} if args.steps is None else {"steps": args.steps}))
        trained = train(recipe, threads=args.threads)
        config = dict(trained.config, script="scripts/make_checkpoints.py")
        save_checkpoint(args.out / stem, trained.model, config)  # the EMA model only: small files
        print(f"{stem}: {args.out / stem}.safetensors/.json, final loss {config['last']['loss']:.4f}, "
              f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
