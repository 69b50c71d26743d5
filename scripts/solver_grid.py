"""The few-step fixes on ring8: {simple, SA, ideal} x {DDIM, DDPM, DPM-Solver++(2M), Heun, Analytic-DPM, exact
covariance (ideal)} x timestep spacings x 5/10/20/50 steps x seeds, scored against the data's own level
(``seqdiff_kit.few_step``). Uses the shipped ring8 checkpoints (simple; SA with K = 2, lam = 1).

    python scripts/solver_grid.py --out runs/solvers            # 3 seeds, 2000 points, trailing, quad, Karras
    python scripts/solver_grid.py --tables runs/solvers/rows.json      # the tables again from saved rows
    python scripts/solver_grid.py --seeds 0 --points 500 --spacings trailing   # a quick look

Writes ``OUT/rows.json`` (every cell and the data draws), ``OUT/results.md`` (one table per step count and the
closest-to-the-data table) and prints the tables.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import seqdiff_kit
from seqdiff_kit import Schedule, ring8
from seqdiff_kit.checkpoint import load_checkpoint
from seqdiff_kit.data import DATA_DIR
from seqdiff_kit.few_step import FIXES, STEPS, FixGrid, closest_markdown, grid_markdown, run_grid

MODELS = {"simple": "ring8_simple", "SA": "ring8_sa"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/solvers")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--gamma-points", type=int, default=4000)
    p.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    p.add_argument("--fixes", nargs="+", default=list(FIXES))
    p.add_argument("--spacings", nargs="+", default=["trailing", "quad", "karras"])
    p.add_argument("--data-draws", type=int, default=100)
    p.add_argument("--tables", metavar="ROWS_JSON", help="only write the tables of a saved run's rows.json")
    args = p.parse_args()
    seqdiff_kit.set_threads()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tables:
        saved = json.loads(Path(args.tables).read_text())
        grid, wall, load = FixGrid.from_rows(saved["rows"], saved["data"], saved["settings"]), saved["seconds"], None
    else:
        models = {name: load_checkpoint(DATA_DIR / "checkpoints" / stem)[0] for name, stem in MODELS.items()}
        t0 = time.perf_counter()
        grid = run_grid(models, ring8(), Schedule.linear(), steps=args.steps, fixes=args.fixes,
                        spacings=args.spacings, seeds=args.seeds, n_points=args.points, n_gamma=args.gamma_points,
                        data_draws=args.data_draws, log=print)
        wall, load = time.perf_counter() - t0, os.getloadavg()
        (out / "rows.json").write_text(json.dumps({"settings": grid.settings, "rows": grid.rows, "data": grid.data,
                                                   "seconds": wall, "load": load}, indent=1))
    when = "" if load is None else f"; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    head = (f"# Few-step fixes on ring8\n\nSettings: {json.dumps(grid.settings)}\n\n"
            f"Wall time {wall:.0f} s{when}.\n\n"
            "Means over seeds with 95% Student-t intervals; **bold**: within the data's own band (a fresh data "
            "draw of the same size, central 95% of the draws).\n")
    parts = [head]
    for steps in grid.steps:
        parts.append(f"\n## {steps} steps\n\n" + grid_markdown(grid, steps))
    parts.append("\n## Closest to the data, against simple + DDIM (trailing)\n\n"
                 + closest_markdown(grid, ("simple", "ddim", "trailing")))
    text = "".join(parts)
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
