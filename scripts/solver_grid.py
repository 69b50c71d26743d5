"""The few-step fixes on ring8: {simple, SA, IP, ideal} x {DDIM, DDIM + Epsilon Scaling, DDPM, DPM-Solver++(2M),
Heun, Analytic-DPM, exact covariance (ideal)} x timestep spacings x 5/10/20/50 steps x seeds, scored against the
data's own level, every closest cell re-run on fresh seeds (``seqdiff_kit.few_step.run_study``; ``seqdiff
experiment --preset solvers`` runs the defaults). Uses the shipped ring8 checkpoints (simple; SA with K = 2,
lam = 1; Input Perturbation with gamma = 0.1).

    python scripts/solver_grid.py --out runs/solvers            # 3 seeds, 2000 points, trailing, quad, Karras
    python scripts/solver_grid.py --seeds 0 --points 500 --spacings trailing   # a quick look
    python scripts/solver_grid.py --tables runs/solvers/rows.json      # the tables again from saved rows

Writes ``OUT/rows.json`` (every cell and the data draws) and ``OUT/results.md`` (one table per step count and the
closest-to-the-data tables) and prints the tables.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import seqdiff_kit
from seqdiff_kit.few_step import FIXES, STEPS, STUDY_SPACINGS, FixGrid, run_study, study_markdown


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/solvers")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--gamma-points", type=int, default=4000)
    p.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    p.add_argument("--fixes", nargs="+", default=list(FIXES))
    p.add_argument("--spacings", nargs="+", default=list(STUDY_SPACINGS))
    p.add_argument("--data-draws", type=int, default=100)
    p.add_argument("--tables", metavar="ROWS_JSON", help="only print the tables of a saved run's rows.json")
    args = p.parse_args()
    seqdiff_kit.set_threads()
    if args.tables:
        saved = json.loads(Path(args.tables).read_text())
        grid = FixGrid.from_rows(saved["rows"], saved["data"], saved["settings"])
        fresh = saved.get("fresh")
        fresh = None if fresh is None else FixGrid.from_rows(fresh["rows"], saved["data"], fresh["settings"])
        print(study_markdown(grid, saved.get("seconds"), saved.get("load"), fresh))
        return
    _, paths = run_study(args.out, steps=args.steps, fixes=args.fixes, spacings=args.spacings, seeds=args.seeds,
                         n_points=args.points, n_gamma=args.gamma_points, data_draws=args.data_draws, log=print)
    print(paths["results"].read_text())


if __name__ == "__main__":
    main()
