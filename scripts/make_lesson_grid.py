"""Compute notebook 07's fast-path grid once and store it beside the shipped checkpoints
(data/checkpoints/ring8_lesson07.json + .safetensors): the shipped ring8 networks, the ideal denoiser, every fix,
spacing and step count of ``few_step.LESSON_KWARGS`` (one seed, 500 points). Every student's fast path would
compute the same numbers; ``few_step.lesson_grid`` loads them when the networks and arguments are unchanged.

    .venv/bin/python scripts/make_lesson_grid.py
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqdiff_kit import Schedule, ring8, set_threads  # noqa: E402
from seqdiff_kit.few_step import (LESSON_GRID, LESSON_KWARGS, SHIPPED_MODELS, grid_call, run_grid,  # noqa: E402
                                  save_grid)
from seqdiff_kit.recipes import load_shipped  # noqa: E402


def main() -> int:
    set_threads(1)
    models = {name: load_shipped(stem).model for name, stem in SHIPPED_MODELS.items()}
    mixture, schedule = ring8(), Schedule.linear(1000)
    t0 = time.process_time()
    grid = run_grid(models, mixture, schedule, **LESSON_KWARGS)
    paths = save_grid(grid, LESSON_GRID, grid_call(models, mixture, schedule, **LESSON_KWARGS), mixture)
    print(f"wrote {', '.join(map(str, paths))} in {time.process_time() - t0:.1f} CPU-s "
          f"(load {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
