"""Toward ideal-level quality in 30 CPU-seconds (issue 26): the default 2-D recipe (``RING8_FAST``) against
candidate changes, side by side in one run, on ring8 with one torch thread.

Each contender trains once, on the process's CPU clock (``time.process_time``, so that a budget means the same
work on a loaded machine as on a quiet one), and its EMA is snapshotted when the clock passes each budget (10
and 30 CPU-s by default). Score: MMD^2 of 100 DDIM steps (eta = 0, trailing) from ``x_T ~ N(0, I)`` against a
fresh ring8 draw, with ``evaluate.Scorer``'s bandwidths (``mmd_bandwidths``: the one rule of every table),
divided by the ideal denoiser's MMD^2 from the same ``x_T`` and reference; the mean over evaluation seeds.
One training seed per contender unless ``--train-seeds`` says more (the median is printed).

Contenders: ``default`` (RING8_FAST: 8000 updates, cosine decay over them); ``fitted`` (RING8_FAST with its
update count set so the cosine decay ends at the budget: a separate run per budget, sized from the default
run's updates per CPU-second); ``ema0.995`` (RING8_FAST with a shorter EMA, which forgets the early weights
sooner). The load average is printed beside every figure.

    .venv/bin/python benchmarks/bench_recipe_search.py [--budgets 10 30] [--points 5000] [--eval-seeds 3]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

import seqdiff_kit as sk
from seqdiff_kit.evaluate import Scorer
from seqdiff_kit.recipes import RING8_FAST
from seqdiff_kit.train import train_iter


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def train_to(recipe, budgets, seed):
    """``{budget: (updates, ema copy)}``: one run of ``recipe`` snapshotted at each CPU-second budget (counted
    from the end of the first update; or at its end when it finishes first)."""
    states = train_iter(recipe.build_model(), recipe.data(), recipe.make_schedule(), recipe.loss, seed=seed,
                        progress=False, threads=1, **{**recipe.fit})
    state = next(states)  # the clock starts after the first update, which pays the set-up
    out, pending, t0 = {}, sorted(budgets), time.process_time()
    for state in states:
        while pending and time.process_time() - t0 >= pending[0]:
            out[pending.pop(0)] = (state.step, copy.deepcopy(state.ema).eval())
        if not pending:
            break
    for b in pending:  # finished before the budget
        out[b] = (state.step, copy.deepcopy(state.ema).eval())
    return out


class Yardstick:
    """MMD^2 (Scorer's bandwidths) of a model's 100-step DDIM samples over the ideal denoiser's, mean over
    evaluation seeds."""

    def __init__(self, seeds: int, n: int):
        self.mixture, self.schedule = sk.ring8(), sk.Schedule.linear(1000)
        ideal = sk.IdealDenoiser(self.mixture, self.schedule)
        self.cases = []
        for s in range(seeds):
            g = torch.Generator().manual_seed(1000 + s)
            x_T, ref = torch.randn(n, 2, generator=g), self.mixture.sample(n, generator=g)
            scorer = Scorer(self.mixture, ref, metrics=("mmd",))
            self.cases.append((x_T, scorer, scorer.score(self._final(ideal, x_T))["mmd"]))

    def _final(self, model, x_T):
        with torch.no_grad():
            return sk.sample(model, x_T, self.schedule, 100, record_every=100).final

    def ratio(self, model) -> float:
        return statistics.fmean(sc.score(self._final(model, x))["mmd"] / ideal for x, sc, ideal in self.cases)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[10.0, 30.0])
    ap.add_argument("--points", type=int, default=5000)
    ap.add_argument("--eval-seeds", type=int, default=3)
    ap.add_argument("--train-seeds", type=int, default=1)
    args = ap.parse_args(argv)
    sk.set_threads(1)
    budgets = sorted(args.budgets)
    print(f"ring8, one thread, CPU-second budgets {budgets}; {load()}")
    yard = Yardstick(args.eval_seeds, args.points)
    print(f"ideal denoiser MMD^2 per eval seed: {[f'{c[2]:.2e}' for c in yard.cases]} ({load()})")
    results = {}  # (contender, budget) -> [(updates, ratio)] over training seeds
    for seed in range(args.train_seeds):
        runs = {"default": train_to(RING8_FAST, budgets, seed),
                "ema0.995": train_to(RING8_FAST.replace(fit={**RING8_FAST.fit, "ema_decay": 0.995}), budgets, seed)}
        rate = runs["default"][budgets[0]][0] / budgets[0]  # updates per CPU-second of this machine now
        runs["fitted"] = {b: train_to(RING8_FAST.replace(steps=max(200, int(rate * b * 0.95))), [b], seed)[b]
                          for b in budgets}
        for name, snaps in runs.items():
            for b, (updates, model) in snaps.items():
                results.setdefault((name, b), []).append((updates, yard.ratio(model)))
        print(f"training seed {seed} done ({load()})")
    print(f"\n{'contender':10s} " + "  ".join(f"{f'{b:g} CPU-s: updates, MMD^2/ideal':>32s}" for b in budgets))
    for name in ("default", "fitted", "ema0.995"):
        cells = []
        for b in budgets:
            rows = results[(name, b)]
            cells.append(f"{statistics.median(u for u, _ in rows):>14.0f}, "
                         f"{statistics.median(r for _, r in rows):>15.2f}x")
        print(f"{name:10s} " + "  ".join(f"{c:>32s}" for c in cells))
    print(f"({args.train_seeds} training seed(s), {args.eval_seeds} x {args.points} evaluation points; {load()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
