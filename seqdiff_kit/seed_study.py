"""The lessons' multi-seed study on ring8 (the simple loss, SA, Input Perturbation and the ideal denoiser over
training seeds), the digits comparison over training seeds, and the interval format of every comparison table.

One seed ``s`` (``measure_seed``): an MLP trained with each loss of ``STUDY_MODELS`` (``study_recipe``: the shipped
``RING8`` recipe with seed ``s``; seed 0 is the shipped networks' recipe), then from ``x_T``, reference and second
data draws of ``Generator(s)``, per model and DDIM step count: every metric of ``evaluate.METRICS`` that applies
(``SAMPLE_METRICS``), against the ideal path from the same ``x_T`` (``drift.step_drift``: ``drift_final``, the
estimation error, and ``local_sum``, the summed local errors), against the exact probability-flow endpoint
(``total_final``, the total error); per model the paper's estimation gap from ``t = 100`` (``gap_from_100``); and a
second data draw scored like a model (``data``). ``SeedStudy`` reads the stored JSON: means with t-intervals over
seeds and paired differences (``stats.compare``: by the distance to the target where there is one).

The digits (simple vs SA, ``recipes.DIGITS``): ``measure_digit_seeds`` scores every network with
``evaluate.steps_table`` (FD against real half A and the confident share), ``DigitSeeds`` reads the stored
``data/checkpoints/digits_seeds.json`` with SA - simple paired by training seed.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import torch

from ._format import format_number
from ._runtime import set_threads
from ._io import atomic_write
from ._validate import check_choice, check_int
from .data import CHECKPOINT_DIR, GaussianMixture, ring8
from .denoisers import IdealDenoiser
from .drift import estimation_gap, exact_flow, step_drift
from .evaluate import CONFIDENCE, METRICS, PIXEL_RANGE, Scorer, applicable, steps_table
from .experiments import local_pool
from .losses import Loss
from .metrics import TARGETS
from .recipes import IP, RING8, SA, Recipe, train
from .solvers import sample
from .schedule import Schedule
from .stats import LEVEL, compare, mean_ci, paired

STUDY_PATH = CHECKPOINT_DIR / "ring8_seeds.json"
STUDY_STEPS = (5, 10, 20, 50, 100)
# the shipped ring8 networks' losses (recipes.SHIPPED: ring8_simple, ring8_sa, ring8_ip)
STUDY_MODELS = {"simple": Loss("simple"), "SA": SA, "IP": IP}
IDEAL, DATA = "ideal", "data"
# the metrics a cell holds: every one of evaluate.METRICS that applies to ring8
SAMPLE_METRICS = applicable(ring8())
PATH_METRICS = ("drift_final", "local_sum", "total_final")
IDEAL_PATH_METRICS = ("total_final",)  # the ideal denoiser has no distance from its own path
GAP_START = 100


# ---------------------------------------------------------------------- measuring
def measure_seed(models: dict, mixture: GaussianMixture, schedule: Schedule, seed: int,
                 steps: Sequence[int] = STUDY_STEPS, n_points: int = 1000) -> dict:
    """Everything one seed contributes: ``{name: {"steps": {S: metrics}, "gap_from_100": float}}`` for each
    model and the ideal denoiser, and ``{"data": metrics}``. Randomness from ``Generator(seed)``, in order:
    ``x_T``, the reference, the second data draw, the gap's ``x0``; the gap's noise afresh per model."""
    gen = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n_points, 2, generator=gen)
    ref = mixture.sample(n_points, generator=gen)
    own = mixture.sample(n_points, generator=gen)
    x0 = mixture.sample(n_points, generator=gen)
    scorer = Scorer(mixture, ref, own=own, seed=seed)
    ideal = IdealDenoiser(mixture, schedule)
    flow_end = exact_flow(mixture, schedule, x_T, timesteps=[schedule.T - 1]).final

    def total(final: torch.Tensor) -> dict:
        return {"total_final": float((final.double() - flow_end.double()).norm(dim=1).mean())}

    out: dict = {DATA: scorer.data_level}
    for name, model in {**models, IDEAL: ideal}.items():
        cells = {}
        for s in steps:
            if name == IDEAL:
                final = sample(ideal, x_T, schedule, s).final
                cells[str(s)] = {**scorer.score(final), **total(final)}
                continue
            d = step_drift(model, ideal, x_T, schedule, s)
            cells[str(s)] = {**scorer.score(d.paths.model.final), **total(d.paths.model.final),
                             "drift_final": float(d.mean("drift")[-1]), "local_sum": float(d.mean("local").sum())}
        g = estimation_gap(model, x0, schedule, start_t=GAP_START, generator=torch.Generator().manual_seed(seed))
        out[name] = {"steps": cells, "gap_from_100": float(g.mean("e")[-1])}
    return out


def study_recipe(loss: Loss, seed: int, train_steps: int | None = None) -> Recipe:
    """``recipes.RING8`` with ``loss`` and ``seed`` (seed 0: the shipped ring8 networks' recipe but for the name);
    ``train_steps`` shortens it for quick checks."""
    recipe = RING8.replace(name="ring8_seed_study", loss=loss, seed=seed)
    return recipe if train_steps is None else recipe.replace(steps=train_steps)


def study_seed(seed: int, train_steps: int | None, n_points: int, steps: Sequence[int], threads: int) -> dict:
    """One seed of ``run_study``: train every model of ``STUDY_MODELS`` and ``measure_seed`` them, with the
    process CPU seconds (``train_cpu`` per network, ``cpu`` in all)."""
    set_threads(threads)  # a pool worker starts with torch's default
    cpu0 = time.process_time()
    base = study_recipe(Loss(), seed, train_steps)
    models, train_cpu = {}, {}
    for name, loss in STUDY_MODELS.items():
        c = time.process_time()
        models[name] = train(study_recipe(loss, seed, train_steps), progress=False, threads=threads).model
        train_cpu[name] = round(time.process_time() - c, 1)
    results = measure_seed(models, base.data(), base.make_schedule(), seed, steps, n_points)
    return {"results": results, "train_cpu": train_cpu, "cpu": round(time.process_time() - cpu0, 1)}


def run_study(seeds: Sequence[int] = (0, 1, 2, 3, 4), train_steps: int | None = None, *, n_points: int = 1000,
              steps: Sequence[int] = STUDY_STEPS, threads: int = 1, jobs: int = 1,
              log: Callable | None = None) -> dict:
    """Train and measure every seed (``study_seed``), ``jobs`` seeds at a time in spawned processes (which does
    not change the results); returns the JSON-able study with its costs and the load average at the start."""
    seeds = [check_int("seeds[i]", s, 0) for s in seeds]
    if len(set(seeds)) < 3:
        raise ValueError(f"seeds must hold at least 3 distinct seeds for an interval, got {seeds}")
    train_steps = None if train_steps is None else check_int("train_steps", train_steps, 1)
    jobs = check_int("jobs", jobs, 1)
    say = log or (lambda msg: None)
    base = study_recipe(Loss(), seeds[0], train_steps)
    t0, load = time.perf_counter(), os.getloadavg()[0]
    work = partial(study_seed, train_steps=train_steps, n_points=n_points, steps=list(steps), threads=threads)
    done: dict = {}
    # the pool starts no process until it is given work, and jobs = 1 runs the seeds here; Ctrl-C or SIGTERM
    # ends the workers too (experiments.local_pool)
    with local_pool(min(jobs, len(seeds))) as pool:
        for seed, result in zip(seeds, pool.map(work, seeds) if jobs > 1 else map(work, seeds)):
            done[seed] = result
            say(f"seed {seed} done after {time.perf_counter() - t0:.0f} s (training CPU s: {result['train_cpu']})")
    recipe = {k: v for k, v in base.config().items() if k not in ("loss", "seed")}  # per model and per seed
    return {"dataset": "ring8", "schedule": base.make_schedule().config(),
            "sampler": "DDIM (eta = 0), trailing spacing",
            "models": {n: loss.config for n, loss in STUDY_MODELS.items()},
            "recipe": recipe, "seeds": seeds, "n_points": n_points,
            "steps": list(steps), "gap_start": GAP_START, "seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(sum(d["cpu"] for d in done.values()), 1),
            "train_cpu_seconds": {str(s): done[s]["train_cpu"] for s in seeds}, "load_at_start": round(load, 2),
            "torch_threads": threads, "jobs": jobs, "results": {str(s): done[s]["results"] for s in seeds}}


def save_study(study: dict, path=STUDY_PATH) -> Path:
    return atomic_write(path, json.dumps(study, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------------- reading
def _need(ok: bool, key: str, what: str, got) -> None:
    """A stored study's check: ValueError naming ``key``, what it must be and (the start of) what it is."""
    if not ok:
        raise ValueError(f"key {key!r} must be {what}, got {got!r:.60}")


def _check_header(data, maker: str) -> None:
    """``data`` is a JSON object with non-empty integer lists ``seeds`` and ``steps``."""
    _need(isinstance(data, dict), "study", f"a JSON object ({maker}'s dict)", type(data).__name__)
    for key in ("seeds", "steps"):
        value = data.get(key)
        _need(isinstance(value, list) and value and all(type(v) is int for v in value), key,
             "a non-empty list of integers", value)


def _check_study(data) -> None:
    """Raise ValueError naming the first key that ``run_study``'s dict would have and ``data`` lacks (seeds, steps,
    models, and per seed the results of every model, the ideal denoiser and the data at every step count)."""
    _check_header(data, "run_study")
    models = data.get("models")
    _need(isinstance(models, (dict, list)) and models and all(isinstance(m, str) for m in models), "models",
         "the studied models' names", models)
    results = data.get("results")
    _need(isinstance(results, dict), "results", "an object of per-seed results", type(results).__name__)
    for seed in data["seeds"]:
        res = results.get(str(seed))
        _need(isinstance(res, dict) and isinstance(res.get(DATA), dict), f"results.{seed}",
             f"an object with the {DATA!r} scores", res)
        for model in [*models, IDEAL]:
            cells = res.get(model, {}).get("steps") if isinstance(res.get(model), dict) else None
            _need(isinstance(cells, dict) and all(isinstance(cells.get(str(s)), dict) for s in data["steps"]),
                 f"results.{seed}.{model}.steps", f"an object with the scores at steps {data['steps']}", cells)


@dataclass
class StoredStudy:
    """A study stored as JSON over training seeds: ``data``, checked by the subclass's ``check``."""

    data: dict
    PATH: ClassVar[Path]
    SCRIPT: ClassVar[str]  # what writes the file at PATH

    def __post_init__(self):
        self.check(self.data)

    @classmethod
    def load(cls, path=None):
        """The study stored at ``path`` (default ``PATH``): FileNotFoundError naming ``SCRIPT`` when it is absent,
        ValueError naming the file (and the key) when it is not a study."""
        path = Path(cls.PATH if path is None else path)
        if not path.is_file():
            raise FileNotFoundError(f"seed study not found at {str(path)!r}; run {cls.SCRIPT}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise ValueError(f"seed study {str(path)!r} is not valid UTF-8 JSON "
                             f"({' '.join(str(err).split())[:120]})") from None
        try:
            return cls(data)
        except ValueError as err:
            raise ValueError(f"seed study {str(path)!r}: {err}") from None

    @property
    def seeds(self) -> list[int]:
        return list(self.data["seeds"])

    @property
    def steps(self) -> list[int]:
        return list(self.data["steps"])


@dataclass
class SeedStudy(StoredStudy):
    """A stored study (``run_study``'s dict): per-seed values, intervals and paired differences."""

    PATH: ClassVar[Path] = STUDY_PATH
    SCRIPT: ClassVar[str] = "scripts/measure_seed_study.py"
    check = staticmethod(_check_study)

    @property
    def models(self) -> list[str]:
        """The learned models in ``STUDY_MODELS``' order (the file stores them sorted), then the ideal one."""
        stored = list(self.data["models"])
        return [*(n for n in STUDY_MODELS if n in stored), *(n for n in stored if n not in STUDY_MODELS), IDEAL]

    @property
    def sample_metrics(self) -> tuple[str, ...]:
        """The ``SAMPLE_METRICS`` this stored study holds (a study measured before a metric joined the registry
        lacks it)."""
        held = self.data["results"][str(self.seeds[0])][DATA]
        return tuple(m for m in SAMPLE_METRICS if m in held)

    @property
    def path_metrics(self) -> tuple[str, ...]:
        """The ``PATH_METRICS`` this stored study holds, in the tables' order."""
        held = self.data["results"][str(self.seeds[0])][self.models[0]]["steps"][str(self.steps[0])]
        return tuple(m for m in ("drift_final", "total_final", "local_sum") if m in held)

    @property
    def spread_metrics(self) -> tuple[str, str]:
        """The radial and tangential spread the tables judge: the robust (MAD) ones where the study holds them,
        else the std ones."""
        robust = ("spread_radial_mad", "spread_tangential_mad")
        return robust if set(robust) <= set(self.sample_metrics) else ("spread_radial", "spread_tangential")

    def values(self, model: str, metric: str, steps: int | None = None) -> list[float]:
        """One number per seed: ``metric`` of ``model`` at ``steps`` (``model="data"``: the second data draw,
        no steps; ``metric="gap_from_100"``: no steps)."""
        check_choice("model", model, [*self.models, DATA])
        res = [self.data["results"][str(s)] for s in self.seeds]
        if metric in SAMPLE_METRICS and metric not in self.sample_metrics:
            raise ValueError(f"metric {metric!r} is not in this stored study (measured before it was added to "
                             f"evaluate.METRICS); it holds {list(self.sample_metrics)}: re-run "
                             f"scripts/measure_seed_study.py")
        if model == DATA:
            check_choice("metric", metric, SAMPLE_METRICS)
            return [r[DATA][metric] for r in res]
        if metric == "gap_from_100":
            return [r[model]["gap_from_100"] for r in res]
        check_choice("metric", metric, SAMPLE_METRICS + (PATH_METRICS if model != IDEAL else IDEAL_PATH_METRICS))
        check_choice("steps", steps, self.steps)
        if metric not in res[0][model]["steps"][str(steps)]:
            raise ValueError(f"metric {metric!r} is not in this stored study (measured before it was added); "
                             f"re-run scripts/measure_seed_study.py")
        return [r[model]["steps"][str(steps)][metric] for r in res]

    def interval(self, model: str, metric: str, steps: int | None = None, level: float = LEVEL) -> dict:
        """Mean and t-interval over seeds (``stats.mean_ci``) of ``values(model, metric, steps)``."""
        return mean_ci(self.values(model, metric, steps), level)

    def paired(self, metric: str, steps: int | None = None, a: str = "SA", b: str = "simple",
               level: float = LEVEL) -> dict:
        """``a`` against ``b``, paired by seed: ``diff``, the t-interval of ``m_a - m_b``, and ``stats.compare``'s
        verdict; for a quantity with a target also ``distance``, the interval of the distances' difference."""
        va, vb = self.values(a, metric, steps), self.values(b, metric, steps)
        d = compare(metric, va, vb, level)
        if metric in TARGETS:
            return {"diff": paired(va, vb, level), "distance": d, "verdict": d["verdict"]}
        return {"diff": d, "verdict": d["verdict"]}


# ---------------------------------------------------------------------- tables (the README's, generated)
METRIC_TITLES = {**{m: METRICS[m].title for m in SAMPLE_METRICS}, "drift_final": "distance from ideal path",
                 "total_final": "distance from exact flow end", "local_sum": "summed local errors",
                 "gap_from_100": "estimation gap from t = 100"}


def format_value(v) -> str:
    """A number of a comparison table: three significant digits (``n/a`` where there is none)."""
    return format_number(v, "{:.3g}", "n/a")


def format_interval(ci: dict) -> str:
    """``mean [low, high]`` of an interval (``stats.mean_ci``), the one cell format of every comparison table."""
    return f"{format_value(ci['mean'])} [{format_value(ci['low'])}, {format_value(ci['high'])}]"


def summary_markdown(study: SeedStudy, metrics: Sequence[str] | None = None,
                     models: Sequence[str] | None = None) -> str:
    """A Markdown table: the data row, then one row per (steps, model), each cell the mean [95% interval] over
    seeds. Default ``metrics``: MMD^2, std ratio, the judged spreads, the off-mode share, log-lik gap, coverage."""
    if metrics is None:
        off = ("off_mode_share",) if "off_mode_share" in study.sample_metrics else ()
        metrics = ("mmd", "std_ratio", *study.spread_metrics, *off, "loglik_gap", "coverage_tv")
    models = list(models or study.models)
    head = "| model | steps | " + " | ".join(METRIC_TITLES[m] for m in metrics) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(metrics)]
    lines.append("| data (a second draw) | - | "
                 + " | ".join(format_interval(study.interval(DATA, m)) for m in metrics) + " |")
    for s in study.steps:
        for name in models:
            lines.append(f"| {name} | {s} | "
                         + " | ".join(format_interval(study.interval(name, m, s)) for m in metrics) + " |")
    return "\n".join(lines) + "\n"


def paired_markdown(study: SeedStudy, metrics: Sequence[str] | None = None, a: str = "SA",
                    b: str = "simple") -> str:
    """A Markdown table of ``a - b`` paired by seed (``SeedStudy.paired``: the distance interval where there is a
    target) per step count; the MMD^2 column's title carries the data's own level. Default ``metrics``: MMD^2,
    std ratio, the judged radial spread, log-lik gap and the path metrics."""
    if metrics is None:
        metrics = ("mmd", "std_ratio", study.spread_metrics[0], "loglik_gap", *study.path_metrics)
    titles = {**METRIC_TITLES, "mmd": f"MMD^2 (data's own: {format_interval(study.interval(DATA, 'mmd'))})"}
    head = "| steps | " + " | ".join(titles[m] for m in metrics) + " |"
    lines = [head, "|---:|" + "---|" * len(metrics)]

    def cell(p: dict) -> str:
        ci = p.get("distance", p["diff"])
        return f"{format_interval(ci)} {p['verdict']}"

    for s in study.steps:
        lines.append(f"| {s} | " + " | ".join(cell(study.paired(m, s, a, b)) for m in metrics) + " |")
    return "\n".join(lines) + "\n"


def gap_markdown(study: SeedStudy, b: str = "simple") -> str:
    """A one-row Markdown table of ``gap_from_100``: each model's mean [95% interval] over seeds, and every other
    learned model minus ``b`` paired by seed."""
    others = [n for n in study.models if n not in (b, IDEAL)]
    names = [b, *others, IDEAL]
    pairs = [study.paired("gap_from_100", None, a, b) for a in others]
    head = "| | " + " | ".join(names) + "".join(f" | {a} - {b} (paired)" for a in others) + " |"
    row = ("| estimation gap from t = 100 | " + " | ".join(format_interval(study.interval(n, "gap_from_100"))
                                                       for n in names)
           + "".join(f" | {format_interval(p['diff'])} {p['verdict']}" for p in pairs) + " |")
    return "\n".join([head, "|---|" + "---:|" * (len(names) + len(others)), row]) + "\n"


# ---------------------------------------------------------------------- the digits over training seeds
DIGITS_SEEDS_PATH = CHECKPOINT_DIR / "digits_seeds.json"
DIGITS_LOSSES = {"simple": Loss("simple"), "sa": Loss("sa", K=2, lam=1.0)}
DIGIT_METRICS = ("fd", "confident")
DIGIT_TITLES = {"fd": "FD", "confident": "confident share"}


def measure_digit_seeds(networks: dict, schedule: Schedule, steps: Sequence[int] = STUDY_STEPS, *,
                        n_points: int = 1000, seed: int = 0, level: float = LEVEL, device="cpu") -> dict:
    """The digits comparison over training seeds in its stored form (``DigitSeeds``): ``networks`` (``{loss:
    {training seed: model}}``, the losses of ``DIGITS_LOSSES``, the same seeds for each, at least 2) scored by one
    ``evaluate.steps_table`` call (one ``x_T`` from ``seed``, real half A, DDIM at each of ``steps``), with
    ``DigitSeeds.paired`` of every metric and step count."""
    if not isinstance(networks, dict) or set(networks) != set(DIGITS_LOSSES):
        raise ValueError(f"networks must be a dict with the keys {sorted(DIGITS_LOSSES)}, got "
                         f"{sorted(networks) if isinstance(networks, dict) else type(networks).__name__}")
    seeds = sorted(networks["simple"])
    if sorted(networks["sa"]) != seeds or len(seeds) < 2:
        raise ValueError(f"networks must hold the same training seeds (at least 2) for each loss, got "
                         f"{ {k: sorted(v) for k, v in networks.items()} }")
    models = {f"{loss}_s{s}": networks[loss][s] for loss in DIGITS_LOSSES for s in seeds}
    t0 = time.perf_counter()
    table = steps_table(models, schedule, steps, n=n_points, seed=seed, device=device)
    record = {"dataset": "digits8x8", "schedule": schedule.config(), "seeds": seeds, "steps": list(table.steps),
              "losses": {loss: cfg.config for loss, cfg in DIGITS_LOSSES.items()}, "floor": table.floor,
              "level": level,
              "evaluation": {"function": "seqdiff_kit.evaluate.steps_table", "n": table.n, "seed": table.seed,
                             "sampler": f"DDIM (eta = {table.eta}), trailing spacing", "confidence": CONFIDENCE,
                             "reference": "half A of the real digits (evaluate.real_halves(0))",
                             "clamp": list(PIXEL_RANGE), "seconds": round(time.perf_counter() - t0, 1)},
              "networks": {loss: {str(s): {"fd": table.fd[f"{loss}_s{s}"], "confident": table.confident[f"{loss}_s{s}"]}
                                  for s in seeds} for loss in DIGITS_LOSSES}}
    record["paired"] = DigitSeeds(record).paired_table(level)
    return record


def _check_digit_seeds(data) -> None:
    """Raise ValueError naming the first key ``measure_digit_seeds``'s dict would have and ``data`` lacks."""
    _check_header(data, "measure_digit_seeds")
    _need(isinstance(data.get("floor"), (int, float)), "floor", "a number", data.get("floor"))
    networks = data.get("networks")
    _need(isinstance(networks, dict) and set(networks) == set(DIGITS_LOSSES), "networks",
         f"an object with the losses {sorted(DIGITS_LOSSES)}", networks)
    for loss in DIGITS_LOSSES:
        for seed in data["seeds"]:
            row = networks[loss].get(str(seed)) if isinstance(networks[loss], dict) else None
            for metric in DIGIT_METRICS:
                values = row.get(metric) if isinstance(row, dict) else None
                _need(isinstance(values, list) and len(values) == len(data["steps"])
                     and all(isinstance(v, (int, float)) for v in values), f"networks.{loss}.{seed}.{metric}",
                     f"a list of {len(data['steps'])} numbers (one per step count)", values)


@dataclass
class DigitSeeds(StoredStudy):
    """The stored digits comparison over training seeds (``measure_digit_seeds``'s dict)."""

    PATH: ClassVar[Path] = DIGITS_SEEDS_PATH
    SCRIPT: ClassVar[str] = "scripts/train_digits.py seeds"
    check = staticmethod(_check_digit_seeds)

    @property
    def floor(self) -> float:
        """FD between the two halves of the real digits under the same evaluation."""
        return float(self.data["floor"])

    def values(self, loss: str, metric: str, steps: int) -> dict[int, float]:
        """``{training seed: metric}`` of the ``loss`` network at ``steps`` DDIM steps."""
        check_choice("loss", loss, DIGITS_LOSSES)
        check_choice("metric", metric, DIGIT_METRICS)
        j = self.steps.index(check_choice("steps", steps, self.steps))
        return {s: float(self.data["networks"][loss][str(s)][metric][j]) for s in self.seeds}

    def interval(self, loss: str, metric: str, steps: int, level: float = LEVEL) -> dict:
        """Mean and t-interval over training seeds (``stats.mean_ci``) of ``values(loss, metric, steps)``."""
        return mean_ci(list(self.values(loss, metric, steps).values()), level)

    def paired(self, metric: str, steps: int, level: float = LEVEL) -> dict:
        """SA - simple paired by training seed: ``stats.paired``'s t-interval and ``stats.compare``'s verdict."""
        a, b = self.values("sa", metric, steps), self.values("simple", metric, steps)
        return {**paired(a, b, level), "verdict": compare(metric, a, b, level)["verdict"]}

    def paired_table(self, level: float = LEVEL) -> dict:
        """``{metric: {str(steps): paired(metric, steps)}}``: what the stored file holds under ``paired``."""
        return {m: {str(s): self.paired(m, s, level) for s in self.steps} for m in DIGIT_METRICS}


def digit_seeds_markdown(study: DigitSeeds, metrics: Sequence[str] = DIGIT_METRICS) -> str:
    """A Markdown table per step count: each loss's mean [95% interval] over training seeds and SA - simple paired
    by seed for each of ``metrics``; the floor below."""
    head = "| DDIM steps | " + " | ".join(f"{DIGIT_TITLES[m]} simple | {DIGIT_TITLES[m]} SA | SA - simple"
                                          for m in metrics) + " |"
    lines = [head, "|---:|" + "---:|---:|---|" * len(metrics)]
    for s in study.steps:
        cells = []
        for m in metrics:
            p = study.paired(m, s)
            cells += [format_interval(study.interval("simple", m, s)), format_interval(study.interval("sa", m, s)),
                      f"{format_interval(p)} {p['verdict']}"]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    n = len(study.seeds)
    level = study.data.get("level", LEVEL)
    foot = (f"\n{n} training seeds per loss ({', '.join(map(str, study.seeds))}), SA - simple paired by seed; "
            f"intervals: {100 * level:g}% Student t with {n - 1} degree{'s' if n > 2 else ''} of freedom. "
            f"Floor (two halves of the real digits): FD = {study.floor:.2f}.")
    return "\n".join(lines) + "\n" + foot + "\n"


def digit_seeds_per_seed_markdown(study: DigitSeeds, metric: str = "fd") -> str:
    """A Markdown table of ``metric`` per network (one row per loss and training seed) and step count."""
    check_choice("metric", metric, DIGIT_METRICS)
    lines = ["| network | " + " | ".join(f"{s} steps" for s in study.steps) + " |",
             "|---|" + "---:|" * len(study.steps)]
    fmt = "{:.2f}" if metric == "fd" else "{:.3f}"
    for loss in DIGITS_LOSSES:
        for seed in study.seeds:
            row = [fmt.format(study.values(loss, metric, s)[seed]) for s in study.steps]
            lines.append(f"| {'SA' if loss == 'sa' else loss}, seed {seed} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
