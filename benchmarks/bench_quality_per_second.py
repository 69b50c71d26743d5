"""Quality per second of training: the kit's 2-D recipes against smalldiffusion's toy recipe on ring8.

Every contender trains on the same ring8 mixture with one torch thread and is stopped at each budget (10, 30
and 60 s by default); the EMA (the kit) or the model (smalldiffusion, which keeps no EMA) at that moment is
scored. Stopping a run at a budget and snapshotting a longer run there are the same thing (neither run looks
ahead), so each contender trains once, up to the largest budget. A kit recipe that finishes its planned steps
before a budget is scored as finished.

Scoring: 3 eval seeds x 5000 points, 100 DDIM steps (eta = 0, trailing spacing) from ``x_T ~ N(0, I)``, the kit's
``metrics.mmd`` against 5000 fresh ring8 draws per seed, mean over seeds. Two kernels: the default (bandwidths
0.25..4 x the median pairwise distance, as ``mmd(x, ref)``) and fixed narrow ones (0.05, 0.1, 0.2, 0.5, 1) that
see the 0.1-wide modes. The ideal denoiser eps* sampled from the same x_T is the yardstick.

smalldiffusion 0.5.0 (optional: ``make bench-peers``, i.e. ``pip install --no-deps smalldiffusion==0.5.0``) runs
its own ``training_loop`` (AdamW at lr 1e-3, no EMA, no lr schedule) on its toy recipe's model and schedule
(``TimeInputMLP(hidden_dims=(16, 128, 128, 128, 128, 16))``, ``ScheduleLogLinear(N=200, sigma_min=0.005,
sigma_max=10)``, batches of 2048),
fed one batch of 2048 fresh ring8 draws per epoch, and samples with its own ``samples(..., gam=1, mu=0)``
(DDIM) over ``schedule.sample_sigmas(100)`` from ``sigma_max * x_T``. Its imports of ``accelerate`` and
``torchvision`` are replaced by stand-ins when those are not installed: on one CPU process ``Accelerator.prepare``
is the identity and ``backward`` is ``loss.backward()``; torchvision only serves its image transforms.

Clock: ``--clock cpu`` (default) stops at CPU seconds of the training thread, so that on a shared machine a
budget means the same work as wall seconds on a quiet one; ``--clock wall`` uses wall seconds. Both are
printed. Usage: python benchmarks/bench_quality_per_second.py [--budgets 10 30 60] [--clock cpu|wall]
"""
import argparse
import contextlib
import copy
import io
import importlib.util
import os
import statistics
import sys
import time
import types

import torch

import seqdiff_kit as sk
from seqdiff_kit import recipes
from seqdiff_kit.metrics import ReferenceMMD, mmd
from seqdiff_kit.train import train_iter

# the shipped models' recipe and the default one for new 2-D trainings
RECIPES_2D = {"RING8": recipes.RING8, "RING8_FAST": recipes.RING8_FAST}

NARROW = (0.05, 0.1, 0.2, 0.5, 1.0)


class Clock:
    def __init__(self, kind: str):
        self.kind = kind
        self.cpu0, self.wall0 = time.thread_time(), time.perf_counter()

    def cpu(self) -> float:
        return time.thread_time() - self.cpu0

    def wall(self) -> float:
        return time.perf_counter() - self.wall0

    def now(self) -> float:
        return self.cpu() if self.kind == "cpu" else self.wall()


def snapshots(states, budgets, clock_kind, take):
    """Run ``states`` (an iterator of training states) until the largest budget, calling ``take(state)`` at
    each budget (or at the end, for the budgets left). Returns {budget: (snapshot, steps, cpu s, wall s)}."""
    clock, out, state, steps, pending = Clock(clock_kind), {}, None, 0, sorted(budgets)
    for state in states:
        steps += 1
        while pending and clock.now() >= pending[0]:
            out[pending.pop(0)] = (take(state), steps, clock.cpu(), clock.wall())
        if not pending:
            break
    for b in pending:  # the run ended before these budgets: it is scored as finished
        out[b] = (take(state), steps, clock.cpu(), clock.wall())
    return out


# ---------------------------------------------------------------------- the kit
def train_kit(recipe_name, budgets, clock, seed=0):
    recipe = RECIPES_2D[recipe_name].replace(seed=seed)
    states = train_iter(recipe.build_model(), recipe.data(), recipe.make_schedule(), recipe.loss, seed=seed,
                        progress=False, threads=1, **recipe.fit)
    return snapshots(states, budgets, clock, lambda st: copy.deepcopy(st.ema).eval())


def kit_sampler(model, x_T):
    return sk.sample(model, x_T, sk.Schedule.linear(), 100, record_every=100).final


# ---------------------------------------------------------------------- smalldiffusion
def _stand_ins():
    """Minimal ``accelerate``/``torchvision`` modules for smalldiffusion's imports, where those are missing."""
    if "accelerate" not in sys.modules and importlib.util.find_spec("accelerate") is None:
        class Accelerator:
            device = torch.device("cpu")

            def prepare(self, *objects):
                return objects

            def backward(self, loss):
                loss.backward()

        sys.modules["accelerate"] = types.SimpleNamespace(Accelerator=Accelerator)
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        transforms = types.SimpleNamespace(**{n: (lambda *a, **k: None) for n in (
            "Compose", "RandomHorizontalFlip", "ToTensor", "Lambda", "Normalize", "Resize", "CenterCrop")})
        sys.modules["torchvision"] = types.SimpleNamespace(transforms=transforms)
        sys.modules["torchvision.transforms"] = transforms


def smalldiffusion_available() -> bool:
    return importlib.util.find_spec("smalldiffusion") is not None


class FreshRing8:
    """One batch of ``batch`` fresh ring8 draws per epoch (the toy recipe's loader with unlimited data)."""

    def __init__(self, batch, seed):
        self.batch, self.gen, self.mix = batch, torch.Generator().manual_seed(seed), sk.ring8()

    def __iter__(self):
        yield self.mix.sample(self.batch, generator=self.gen)


def train_smalldiffusion(budgets, clock, seed=0):
    _stand_ins()
    import smalldiffusion as sd

    torch.manual_seed(seed)
    model = sd.TimeInputMLP(hidden_dims=(16, 128, 128, 128, 128, 16))
    schedule = sd.ScheduleLogLinear(N=200, sigma_min=0.005, sigma_max=10)
    accelerator = sys.modules["accelerate"].Accelerator()
    states = sd.training_loop(FreshRing8(2048, seed), model, schedule, accelerator=accelerator, epochs=10**9)
    # the loop yields before each update: a snapshot taken there holds every update done so far
    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
        snaps = snapshots(states, budgets, clock, lambda ns: copy.deepcopy(ns.model).eval())

    def sampler(net, x_T):
        sigmas = schedule.sample_sigmas(100)
        *_, x0 = sd.samples(net, sigmas, gam=1, mu=0, xt=x_T * sigmas[0], accelerator=accelerator)
        return x0

    return snaps, sampler


# ---------------------------------------------------------------------- scoring
class Scorer:
    def __init__(self, seeds, n):
        self.cases = []
        for s in seeds:
            g = torch.Generator().manual_seed(1000 + s)
            x_T = torch.randn(n, 2, generator=g)
            ref = sk.ring8().sample(n, generator=g)
            self.cases.append((x_T, ref, ReferenceMMD(ref, NARROW)))

    def __call__(self, model, sampler):
        """Mean over the eval seeds of (MMD with the default kernel, MMD with the narrow kernel)."""
        default, narrow = [], []
        with torch.no_grad():
            for x_T, ref, narrow_mmd in self.cases:
                x = sampler(model, x_T).float()
                default.append(mmd(x, ref))
                narrow.append(narrow_mmd(x))
        return statistics.mean(default), statistics.mean(narrow)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", type=float, nargs="+", default=[10, 30, 60])
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES_2D), choices=list(RECIPES_2D))
    ap.add_argument("--points", type=int, default=5000)
    ap.add_argument("--eval-seeds", type=int, default=3)
    ap.add_argument("--train-seeds", type=int, default=1, help="training runs per contender (medians over them)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    print(f"load average before: {load0}  (cores: {os.cpu_count()}, torch threads: 1, clock: {args.clock})")
    score = Scorer(range(args.eval_seeds), args.points)
    ideal = score(sk.IdealDenoiser(sk.ring8(), sk.Schedule.linear()), kit_sampler)
    print(f"ideal denoiser, 100 DDIM steps: MMD {ideal[0]:.3g} (default kernel), {ideal[1]:.3g} (narrow kernel)")

    seeds = range(args.train_seeds)
    contenders = {f"kit {name}": (lambda seed, name=name: (train_kit(name, args.budgets, args.clock, seed), kit_sampler))
                  for name in args.recipes}
    if smalldiffusion_available():
        contenders["smalldiffusion toy"] = lambda seed: train_smalldiffusion(args.budgets, args.clock, seed)
    else:
        print("smalldiffusion is not installed (pip install --no-deps smalldiffusion==0.5.0): kit recipes only")

    print(f"\nmedians over {args.train_seeds} training run(s) (min-max over them in brackets); MMD: mean over "
          f"{args.eval_seeds} eval seeds x {args.points} points; /ideal: the ratio to the ideal denoiser's; -ideal: "
          f"the difference (the default kernel's estimate is noisy at this size: the ideal's own value moves by "
          f"several 1e-4 between eval seeds)")
    print(f"{'contender':<22} {'budget':>6} {'steps':>7} {'cpu s':>6} {'wall s':>6} {'MMD':>9} {'/ideal':>7} "
          f"{'[range]':>13} {'-ideal':>9} {'narrow':>9} {'/ideal':>7} {'[range]':>13}")
    train_kit(args.recipes[0], [1.0], args.clock)  # warm-up: torch's one-time set-up of the first update
    for name, train in contenders.items():  # trained, then scored (the clock counts the training only)
        per_seed = [train(seed) for seed in seeds]
        for b in sorted(args.budgets):
            rows = []
            for snaps, sampler in per_seed:
                model, steps, cpu, wall = snaps[b]
                rows.append((steps, cpu, wall, *score(model, sampler)))
            med = [statistics.median(col) for col in zip(*rows)]

            def spread(j):
                return f"[{min(r[j] for r in rows) / ideal[j - 3]:.2f}-{max(r[j] for r in rows) / ideal[j - 3]:.2f}]"

            print(f"{name:<22} {b:6.0f} {med[0]:7.0f} {med[1]:6.1f} {med[2]:6.1f} {med[3]:9.3g} "
                  f"{med[3] / ideal[0]:7.2f} {spread(3):>13} {med[3] - ideal[0]:9.2g} {med[4]:9.3g} "
                  f"{med[4] / ideal[1]:7.2f} {spread(4):>13}", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
