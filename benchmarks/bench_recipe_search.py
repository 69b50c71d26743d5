"""Toward ideal-level quality in 30 CPU-seconds (issue 26): the default 2-D recipe against candidate changes,
side by side in one run, on ring8 with one torch thread.

Each contender trains on the process's CPU clock (``time.process_time``, so that a budget means the same work on
a loaded machine as on a quiet one) and its EMA is snapshotted when the clock passes each budget (10 and 30
CPU-s by default), or when the run ends first. Score: MMD^2 of 100 DDIM steps (eta = 0, trailing) from
``x_T ~ N(0, I)`` against a fresh ring8 draw, with ``evaluate.Scorer``'s bandwidths (``mmd_bandwidths``: the one
rule of every table), summed over the evaluation seeds and divided by the ideal denoiser's sum from the same
``x_T`` and references (a ratio of means: the ideal's own MMD^2 moves several-fold between 5000-point draws, and a
mean of per-seed ratios would be ruled by the draw where it happens to be smallest).

A contender is data (``CONTENDERS``): changes (``Recipe.replace`` keywords; ``model_args`` entries merged) to
its ``start``, ``"before"`` (``BEFORE``: RING8_FAST as issue 18 left it, 8000 updates of 512 points at lr 3e-3)
or ``"default"`` (``recipes.RING8_FAST`` now); ``fit=None`` trains the recipe's own update count and snapshots
it, ``fit="budget"`` sizes the update count so that the cosine decay ends at each budget (a separate run per
budget; updates per CPU-second measured by a probe of the contender just before, times 0.92). ``ema_window``:
the EMA decay set so that its window ``1 / (1 - decay)`` is that fraction of the run's updates. Medians over
training seeds (each seeds the initial weights and every draw), the range in brackets, and each contender against
the first one named, paired by training seed (``stats.raw_difference``: the 95% t-interval of the differences in
MMD^2/ideal); updates done, the CPU seconds they took and the load average beside every figure. ``--loss sa``
puts the SA loss (K = 2, lam = 1) in every contender.

    .venv/bin/python benchmarks/bench_recipe_search.py [--contenders before default ...] [--budgets 10 30]
        [--train-seeds 3] [--first-seed 0] [--points 5000] [--eval-seeds 3] [--loss simple|sa] [--costs]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from dataclasses import dataclass, field

import torch

import seqdiff_kit as sk
from seqdiff_kit.evaluate import Scorer
from seqdiff_kit.losses import Loss
from seqdiff_kit.metrics import mmd
from seqdiff_kit.recipes import RING8_FAST, SA, Recipe
from seqdiff_kit.stats import raw_difference
from seqdiff_kit.train import train_iter


# RING8_FAST before issue 26: the start of the screen and the baseline of the record
BEFORE = RING8_FAST.replace(name="ring8_fast_issue18", steps=8000, batch_size=512, lr=3e-3, warmup=100)
STARTS = {"before": BEFORE, "default": RING8_FAST}


@dataclass(frozen=True)
class Contender:
    changes: dict = field(default_factory=dict)  # Recipe.replace keywords; "model_args" merged into the start's
    fit: str | None = "budget"                   # "budget": cosine decay ends at each budget; None: recipe's steps
    ema_window: float | None = None              # EMA window as a fraction of the run's updates
    start: str = "before"                        # a key of STARTS

    def recipe(self, loss, steps: int | None = None) -> Recipe:
        base = STARTS[self.start].replace(loss=loss)
        changes = dict(self.changes)
        if "model_args" in changes:
            changes["model_args"] = {**base.model_args, **changes["model_args"]}
        r = base.replace(**changes)
        if steps is not None:
            r = r.replace(steps=steps)
        if self.ema_window is not None:
            r = r.replace(ema_decay=1.0 - 1.0 / max(10.0, self.ema_window * r.steps))
        return r


CONTENDERS = {
    "before": Contender(fit=None),
    "default": Contender(fit=None, start="default"),
    "fit-default": Contender(start="default"),  # the default's settings, its update count fitted to each budget
    # the screen (one training seed): the schedule and EMA fitted to the budget, lr, batch size
    "fitted": Contender(),
    "fit-ema10%": Contender(ema_window=0.10),
    "fit-noema": Contender(changes={"ema_decay": 0.0}),
    "fit-lr6e-3": Contender(changes={"lr": 6e-3, "warmup": 200}),
    "fit-b256": Contender(changes={"batch_size": 256}),
    "fit-b1024": Contender(changes={"batch_size": 1024}),
    # confirmed with 3 seeds: fixed update counts that take about 30 CPU-s at load 8-10 here, as a default must
    "b1024": Contender(fit=None, changes={"batch_size": 1024, "steps": 5000}),
    "b2048-lr6e-3": Contender(fit=None, changes={"batch_size": 2048, "steps": 3000, "lr": 6e-3, "warmup": 200}),
    # larger batches and lr, after the confirmation (6 seeds beside b2048-lr6e-3); b2048-lr1e-2 is RING8_FAST now
    "b2048-lr1e-2": Contender(fit=None, changes={"batch_size": 2048, "steps": 3000, "lr": 1e-2, "warmup": 200}),
    "b4096-lr1e-2": Contender(fit=None, changes={"batch_size": 4096, "steps": 2000, "lr": 1e-2, "warmup": 200}),
    # fixed update counts screened with one seed
    "b2048": Contender(fit=None, changes={"batch_size": 2048, "steps": 3400}),
    "b1024-lr6e-3": Contender(fit=None, changes={"batch_size": 1024, "steps": 5400, "lr": 6e-3, "warmup": 200}),
    # per-update costs only (--costs): network sizes
    "64x2": Contender(changes={"model_args": {"depth": 2}}),
    "128x2": Contender(changes={"model_args": {"width": 128, "depth": 2}}),
    "96x4": Contender(changes={"model_args": {"width": 96, "depth": 4}}),
}


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def train_to(recipe: Recipe, budgets, seed: int) -> dict:
    """``{budget: (updates, CPU-s, ema copy)}``: one run of ``recipe`` with ``seed`` (its weights and draws),
    snapshotted at each CPU-second budget (counted from the end of the first update, which pays the set-up), or
    at its end when it finishes first."""
    recipe = recipe.replace(seed=seed)  # the initial weights too
    states = train_iter(recipe.build_model(), recipe.data(), recipe.make_schedule(), recipe.loss, seed=seed,
                        progress=False, threads=1, **recipe.fit)
    state = next(states)
    out, pending, t0 = {}, sorted(budgets), time.process_time()
    for state in states:
        while pending and time.process_time() - t0 >= pending[0]:
            out[pending.pop(0)] = (state.step, time.process_time() - t0, copy.deepcopy(state.ema).eval())
        if not pending:
            break
    for b in pending:
        out[b] = (state.step, time.process_time() - t0, copy.deepcopy(state.ema).eval())
    return out


def rate(recipe: Recipe, seconds: float = 1.5) -> float:
    """Updates per CPU-second of ``recipe`` on this machine now (a short probe run)."""
    probe = recipe.replace(steps=10**7, cosine_decay=False)
    return train_to(probe, [seconds], seed=12345)[seconds][0] / seconds


def run(contender: Contender, loss, budgets, seed: int) -> dict:
    if contender.fit is None:
        return train_to(contender.recipe(loss), budgets, seed)
    per_s = rate(contender.recipe(loss))
    print(f"  probe: {per_s:.0f} updates per CPU-second ({load()})", flush=True)
    return {b: train_to(contender.recipe(loss, max(200, int(0.92 * per_s * b))), [b], seed)[b] for b in budgets}


class Yardstick:
    """Sum over evaluation seeds of a model's MMD^2 (100-step DDIM samples) over the ideal denoiser's sum from the
    same x_T and references. ``kernel="scorer"``: the Scorer's bandwidths (the one rule of every table, which
    resolves ring8's 0.1-wide modes); ``"median"``: ``metrics.mmd``'s median-distance multiples (0.25-4 times the
    median pairwise distance, the kernel of the tables before issue 22), for comparison with older figures."""

    def __init__(self, seeds: int, n: int, kernel: str = "scorer"):
        self.mixture, self.schedule = sk.ring8(), sk.Schedule.linear(1000)
        ideal = sk.IdealDenoiser(self.mixture, self.schedule)
        self.cases = []
        for s in range(seeds):
            g = torch.Generator().manual_seed(1000 + s)
            x_T, ref = torch.randn(n, 2, generator=g), self.mixture.sample(n, generator=g)
            score = (Scorer(self.mixture, ref, metrics=("mmd",)).score if kernel == "scorer"
                     else lambda x, ref=ref: {"mmd": mmd(x, ref)})
            self.cases.append((x_T, score))
        self.ideal = [score(self._final(ideal, x))["mmd"] for x, score in self.cases]

    def _final(self, model, x_T):
        with torch.no_grad():
            return sk.sample(model, x_T, self.schedule, 100, record_every=100).final

    def ratio(self, model) -> float:
        return sum(score(self._final(model, x))["mmd"] for x, score in self.cases) / sum(self.ideal)


def table(results: dict, names, budgets) -> None:
    print(f"\n{'contender':18s} " + "  ".join(f"{f'{b:g} CPU-s: updates, MMD^2/ideal [range]':>40s}"
                                            for b in budgets))
    for name in names:
        cells = []
        for b in budgets:
            rows = results[(name, b)]
            ratios = [r for _, r in rows]
            span = f" [{min(ratios):.2f}-{max(ratios):.2f}]" if len(rows) > 1 else ""
            cells.append(f"{statistics.median(u for u, _ in rows):.0f}, {statistics.median(ratios):.2f}x{span}")
        print(f"{name:18s} " + "  ".join(f"{c:>40s}" for c in cells))
    first = names[0]
    for name in names[1:]:  # paired by training seed (stats.raw_difference: a t-interval of the differences)
        for b in budgets:
            ours, theirs = [r for _, r in results[(name, b)]], [r for _, r in results[(first, b)]]
            if len(ours) > 1:
                d = raw_difference(ours, theirs)
                print(f"{name} - {first} at {b:g} CPU-s, paired by seed: {d['mean']:+.2f} [{d['low']:+.2f}, "
                      f"{d['high']:+.2f}] ({d['verdict']})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contenders", nargs="+", default=["before", "default"], choices=list(CONTENDERS))
    ap.add_argument("--budgets", type=float, nargs="+", default=[10.0, 30.0])
    ap.add_argument("--points", type=int, default=5000)
    ap.add_argument("--eval-seeds", type=int, default=3)
    ap.add_argument("--train-seeds", type=int, default=1)
    ap.add_argument("--first-seed", type=int, default=0, help="training seeds first-seed, first-seed + 1, ...")
    ap.add_argument("--loss", choices=("simple", "sa"), default="simple")
    ap.add_argument("--costs", action="store_true", help="print each contender's CPU-ms per update and stop")
    ap.add_argument("--kernel", choices=("scorer", "median"), default="scorer",
                    help="the MMD kernel of the yardstick (see Yardstick)")
    args = ap.parse_args(argv)
    sk.set_threads(1)
    budgets, loss = sorted(args.budgets), Loss() if args.loss == "simple" else SA
    print(f"ring8, {loss!r}, one thread, CPU-second budgets {budgets}, {args.kernel} kernel; {load()}")
    if args.costs:
        for name in args.contenders:
            r = CONTENDERS[name].recipe(loss)
            print(f"{name:18s} batch {r.fit['batch_size']:5d}, MLP {r.model_args['width']} x "
                  f"{r.model_args['depth']}: {1000 / rate(r):.2f} CPU-ms per update ({load()})", flush=True)
        return 0
    yard = Yardstick(args.eval_seeds, args.points, args.kernel)
    print(f"ideal denoiser MMD^2 per eval seed: {[f'{v:.2e}' for v in yard.ideal]} ({load()})")
    results = {}  # (contender, budget) -> [(updates, ratio)] over training seeds
    for seed in range(args.first_seed, args.first_seed + args.train_seeds):
        for name in args.contenders:
            for b, (updates, cpu, model) in run(CONTENDERS[name], loss, budgets, seed).items():
                results.setdefault((name, b), []).append((updates, yard.ratio(model)))
                print(f"seed {seed} {name} {b:g} CPU-s: {updates} updates in {cpu:.1f} CPU-s, "
                      f"{results[(name, b)][-1][1]:.2f}x ({load()})", flush=True)
    table(results, args.contenders, budgets)
    print(f"({args.train_seeds} training seed(s), {args.eval_seeds} x {args.points} evaluation points; {load()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
