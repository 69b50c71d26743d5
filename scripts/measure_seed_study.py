#!/usr/bin/env python
"""Measure the lessons' multi-seed study on ring8 and store it next to the shipped checkpoints.

For each seed: an MLP trained with each loss of ``seqdiff_kit.seed_study.STUDY_MODELS`` (simple, SA with K = 2
and lam = 1, Input Perturbation with the paper's gamma), all with the shipped ring8 recipe (``recipes.RING8``,
its 8000 updates; seed 0 is the shipped networks' recipe), then every metric of
``seqdiff_kit.seed_study.measure_seed`` at 5 to 100 DDIM steps, for each model and the ideal denoiser, and for
a second data draw. Writes ``data/checkpoints/ring8_seeds.json`` (the notebooks and the README read it;
``scripts/make_readme_tables.py`` turns it into the README's tables); the file records the wall time, the
process CPU seconds of every training and the load average at the start.

    python scripts/measure_seed_study.py [--seeds 0 1 2 3 4] [--train-steps N] [--jobs 1] [--out PATH]
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from seqdiff_kit import set_threads
from seqdiff_kit.seed_study import STUDY_PATH, run_study, save_study


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--train-steps", type=int, default=None, help="updates per network (default: RING8's)")
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--jobs", type=int, default=1, help="seeds measured at once, each in its own process")
    parser.add_argument("--out", type=Path, default=STUDY_PATH)
    args = parser.parse_args(argv)
    # `kill` unwinds like Ctrl-C, so run_study's pool ends its workers (left running otherwise)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    set_threads(args.threads)
    study = run_study(args.seeds, args.train_steps, n_points=args.points, threads=args.threads, jobs=args.jobs,
                      log=print)
    print(f"wrote {save_study(study, args.out)} ({study['seconds']:.0f} s wall, {study['cpu_seconds']:.0f} s CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
