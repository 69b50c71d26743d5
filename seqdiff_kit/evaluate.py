"""One evaluation for every model comparison: the demo, ``seqdiff compare``, the experiment grid, the digits
tables and the notebooks all call ``evaluate``.

``evaluate(models, data, schedule, steps)`` samples every model from one shared ``x_T`` at each step count and
scores the samples. The metrics of a row (``steps`` sampler steps of one model, ``N`` samples):

- ``mmd``: unbiased squared MMD to the reference with RBF kernels of fixed bandwidths
  ``h = (0.25, 0.5, 1, 2, 4) x median pairwise distance of the data`` (fixed, so rows are comparable);
- ``sw``: sliced 1-Wasserstein distance to the reference (256 directions from the seed);
- ``loglik``: ``(1/N) sum_i log p(x_i)`` under the true mixture (mixtures); its target is the data's own value,
  not "as high as possible": a sampler whose modes are too tight scores above the data;
- ``loglik_gap``: ``loglik`` minus the reference draws' own (``metrics.loglik_gap``; mixtures): 0 is right,
  above 0 too tight, below 0 too diffuse;
- ``fd``: Frechet distance of digit-classifier features to the reference (images);
- ``confident``: the share of samples the digit classifier labels with confidence >= 0.9 (images);
- ``std_ratio``: ``sqrt(tr Cov(samples) / tr Cov(reference))`` (< 1 shrinks, > 1 over-disperses).

The reference. Mixtures: ``N`` fresh draws of the data. Images: half A of a fixed split of the data set into two
halves (``real_halves``: a permutation from seed 0), the reference of the shipped digits tables in the README;
it does not depend on the evaluation's seed, so every digits number in the project is against the same images.
The ``data`` row scores a second draw (mixtures) or the other half (images) the same way: the floor sampling
noise allows. Image samples are clamped to the pixel range [-1, 1] before they are scored.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from ._format import format_number
from ._io import atomic_write
from ._validate import check_choice, check_float, check_int, check_type
from .classifier import confidence_share, digit_features, get_classifier
from .checkpoint import read_checkpoint
from .data import CHECKPOINT_DIR, GaussianMixture, digits, sample_shape
from .denoisers import IdealDenoiser
from .drift import (DistributionDrift, PairedTrajectories, StepDrift, distribution_drift, paths_drift,
                    trajectory_drift)
from .classifier import digit_feature_stats, digit_frechet_distance
from .metrics import (MEDIAN_MULTIPLIERS, ReferenceMMD, ReferenceSlicedWasserstein, frechet_distance, loglik_gap,
                      mean_log_likelihood, median_bandwidth, mmd, sliced_wasserstein, std_ratio)
from .samplers import Trajectory, make_noise
from .solvers import SOLVERS, STOCHASTIC, options_from_data, sample
from .schedule import Schedule

DEFAULT_STEPS = (5, 10, 20, 50, 100)
IDEAL = "ideal"
DATA_ROW = "data (own)"
PIXEL_RANGE = (-1.0, 1.0)
CONFIDENCE = 0.9
METRICS = ("mmd", "sw", "loglik", "loglik_gap", "fd", "confident", "std_ratio")


# ---------------------------------------------------------------------- the digits reference
def real_halves(seed: int = 0, data: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint halves of the real digits (or of ``data`` [N, ...]): ``data[perm[:N // 2]]`` and
    ``data[perm[N // 2:]]`` (898 + 899 of the 1797 digits), ``perm`` from ``Generator().manual_seed(seed)``.
    With seed 0 the first is the reference of every digits score (the module docstring)."""
    x = digits()[0] if data is None else data
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(check_int("seed", seed)))
    half = x.shape[0] // 2
    return x[perm[:half]], x[perm[half:]]


def frechet_floor(seed: int = 0, classifier=None) -> float:
    """``FD(half B, half A)``: the digit Frechet distance between two disjoint halves of the real digits.

    No model scores reliably below it at this sample size (the estimate's own noise and bias)."""
    a, b = real_halves(seed)
    return digit_frechet_distance(b, a, classifier)


@dataclass(frozen=True)
class FloorSpread:
    """``frechet_floor`` over several random halvings: ``values[j]`` for ``seeds[j]``, their mean, sample
    standard deviation, minimum and maximum. The spread is the digit FD's own noise at this sample size:
    differences between models smaller than it are not effects."""

    seeds: tuple
    values: tuple
    mean: float
    sd: float
    low: float
    high: float


def frechet_floor_spread(seeds=tuple(range(8)), classifier=None) -> FloorSpread:
    """``frechet_floor(seed)`` for every seed in ``seeds`` (at least 5 for a spread): the classifier features
    of the 1797 real digits are computed once and re-split by each seed's ``real_halves`` permutation."""
    seeds = tuple(check_int("seeds[i]", s, 0) for s in seeds)
    if len(set(seeds)) < 5:
        raise ValueError(f"seeds must hold at least 5 distinct seeds for a spread, got {list(seeds)}")
    x = digits()[0]
    feats = digit_features(x, classifier)
    values = []
    for seed in seeds:
        a, b = real_halves(seed, feats)  # the same permutation as the images' halves
        values.append(frechet_distance(b, a))
    v = torch.tensor(values, dtype=torch.float64)
    return FloorSpread(seeds=seeds, values=tuple(values), mean=float(v.mean()), sd=float(v.std()),
                       low=float(v.min()), high=float(v.max()))


# ---------------------------------------------------------------------- one row
def score(x: torch.Tensor, reference: torch.Tensor, data, bandwidths, seed: int, *, reference_stats=None,
          classifier=None, metrics: Sequence[str] = METRICS, mmd_reference: ReferenceMMD | None = None,
          sw_reference: ReferenceSlicedWasserstein | None = None) -> dict:
    """The metrics of samples ``x`` against the reference draws (the module docstring), in ``METRICS`` order,
    those of ``metrics`` that apply to ``data`` (a ``GaussianMixture`` or images). ``reference_stats``: the
    digit-feature statistics of ``reference``; ``mmd_reference`` (``ReferenceMMD(reference, bandwidths)``) and
    ``sw_reference`` (``ReferenceSlicedWasserstein(reference, seed=seed)``): the reference's parts of the MMD and
    the sliced Wasserstein distance. All three give the same numbers, computed once per evaluation."""
    is_mixture = isinstance(data, GaussianMixture)
    row = {}
    if "mmd" in metrics:
        row["mmd"] = mmd_reference(x) if mmd_reference is not None else mmd(x, reference, bandwidths)
    if "sw" in metrics:
        row["sw"] = (sw_reference(x) if sw_reference is not None
                     else sliced_wasserstein(x, reference, generator=torch.Generator().manual_seed(seed)))
    if is_mixture and "loglik" in metrics:
        row["loglik"] = mean_log_likelihood(x, data)
    if is_mixture and "loglik_gap" in metrics:
        row["loglik_gap"] = loglik_gap(x, reference, data).gap
    if not is_mixture and "fd" in metrics:
        row["fd"] = digit_frechet_distance(x, classifier=classifier, reference_stats=reference_stats)
    if not is_mixture and "confident" in metrics:
        row["confident"] = confidence_share(x, classifier, threshold=CONFIDENCE)
    if "std_ratio" in metrics:
        row["std_ratio"] = std_ratio(x, reference)
    return row


# ---------------------------------------------------------------------- the evaluation
@dataclass
class Evaluation:
    """Everything ``evaluate`` measured.

    ``rows``: one dict per (model, steps) plus the ``data`` row (the table). ``trajectories[name][steps]``:
    the sampled paths (``x`` [steps+1, N, ...]). ``reference``: the draw every row is scored against;
    ``own``: a second draw (the data row); ``bandwidths``: the MMD kernel widths used throughout.
    ``drift[name][steps]``: ``StepDrift`` against the ideal path (mixtures and ``solver="ddim"`` only: its
    one-step local error is the generalized step's). ``std_ratio[name][steps]``:
    the per-step ``sqrt(tr Cov(x_t) / tr Cov(q(x_t)))`` [steps+1], exact for the data's law.
    """

    dataset: str
    data: object
    schedule: Schedule
    steps: tuple
    x_T: torch.Tensor
    reference: torch.Tensor
    own: torch.Tensor
    bandwidths: list
    rows: list
    trajectories: dict
    drift: dict = field(default_factory=dict)
    std_ratio: dict = field(default_factory=dict)
    drift_steps: tuple = ()
    slider_steps: int | None = None
    seed: int = 0
    eta: float = 0.0
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def names(self) -> list[str]:
        return list(self.trajectories)

    def samples(self, name: str, steps: int) -> torch.Tensor:
        """The scored samples of one model at one step count (images clamped to ``PIXEL_RANGE``)."""
        x = self.trajectories[name][steps].final
        return x if isinstance(self.data, GaussianMixture) else x.clamp(*PIXEL_RANGE)

    def column(self, name: str, metric: str) -> list[float]:
        """A metric of one model across ``steps`` (in order)."""
        by = {r["steps"]: r[metric] for r in self.rows if r["model"] == name}
        return [by[s] for s in self.steps]

    def table(self, metric: str) -> dict[str, dict[int, float]]:
        """``{model: {steps: value}}``: one metric pivoted by model and step count (the data row left out)."""
        return {name: dict(zip(self.steps, self.column(name, metric))) for name in self.names}

    def data_row(self) -> dict:
        return next(r for r in self.rows if r["model"] == DATA_ROW)


def check_steps(steps, T: int, name: str = "steps", allow_empty: bool = False) -> tuple[int, ...]:
    """Step counts as a sorted tuple of distinct integers in ``[1, T]`` (a single int is one step count)."""
    if isinstance(steps, int) and not isinstance(steps, bool):
        steps = (steps,)
    out = tuple(check_int(name, s, 1, T) for s in steps)
    if not out and not allow_empty:
        raise ValueError(f"{name} must hold at least one step count, got an empty list")
    return tuple(sorted(set(out)))


def evaluate(models: Mapping[str, Callable], data, schedule: Schedule, steps: Sequence[int] = DEFAULT_STEPS, *,
             n_points: int = 1000, seed: int = 0, ideal: bool = True, eta: float = 0.0, solver: str = "ddim",
             spacing: str = "trailing", drift_steps: Sequence[int] | None = None,
             slider_steps: int | None = None, metrics: Sequence[str] = METRICS, classifier=None,
             dataset: str | None = None, log: Callable | None = None, device="cpu") -> Evaluation:
    """Sample every model from one shared ``x_T ~ N(0, I)`` [n_points, ...] at each step count and score them.

    ``data``: a ``GaussianMixture`` (adds the ideal denoiser when ``ideal``; scores MMD, sliced W,
    log-likelihood) or clean images [M, 1, 8, 8] (MMD, sliced W, digit Frechet distance, confidence; no ideal
    path). ``metrics``: the row metrics to compute (default: every one that applies). ``solver``: a name of
    ``solvers.SOLVERS`` (``eta`` belongs to ``ddim``, the generalized step; the options a solver needs from the
    data come from ``solvers.options_from_data``, seeded by ``seed``). With ``eta > 0`` or a stochastic solver
    all models share the per-step noise of each step count. ``drift_steps`` (default: the smallest and the largest
    step count; ``()`` for none) get the per-step drift against the ideal path and the per-step spread ratio.
    Randomness, in order, from ``seed``: ``x_T``, the reference draws (mixtures), the data row's draws
    (mixtures), the noise."""
    n_points = check_int("n_points", n_points, 2)
    seed = check_int("seed", seed)
    eta = check_float("eta", eta, 0.0, 1.0)
    check_choice("solver", solver, SOLVERS)
    if solver != "ddim" and eta != 0.0:
        raise ValueError(f"eta belongs to the generalized step (solver='ddim'), got eta={eta} with solver={solver!r}")
    check_type("schedule", schedule, Schedule)
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict of name -> model")
    for m in metrics:
        check_choice("metrics[i]", m, METRICS)
    steps = check_steps(steps, schedule.T)
    drift_steps = (steps[0], steps[-1]) if drift_steps is None else check_steps(drift_steps, schedule.T,
                                                                                 "drift_steps", allow_empty=True)
    slider_steps = (20 if 20 in steps else steps[len(steps) // 2]) if slider_steps is None else slider_steps
    missing = sorted(set(drift_steps) - set(steps)) + ([slider_steps] if slider_steps not in steps else [])
    if missing:
        raise ValueError(f"drift_steps and slider_steps must be among steps {list(steps)}, got {missing}")
    is_mixture = isinstance(data, GaussianMixture)
    if not is_mixture and not isinstance(data, torch.Tensor):
        raise TypeError(f"data must be a GaussianMixture or a tensor of clean samples, got {type(data).__name__}")
    say = log or (lambda msg: None)
    t0 = time.perf_counter()

    gen = torch.Generator().manual_seed(seed)
    x_T = torch.randn((n_points, *sample_shape(data)), generator=gen).to(device)
    if is_mixture:
        ref = data.sample(n_points, generator=gen)
        own = data.sample(n_points, generator=gen)
    else:
        ref, own = real_halves(0, data)
    ref, own = ref.to(device), own.to(device)
    # fixed bandwidths from the data alone: every row is scored with the same kernel
    h0 = median_bandwidth(ref, own)
    bandwidths = [m * h0 for m in MEDIAN_MULTIPLIERS]

    all_models = dict(models)
    if ideal and is_mixture:
        all_models[IDEAL] = IdealDenoiser(data, schedule)
    ref_stats = None
    if not is_mixture:  # the reference's classifier features are the same for every row
        classifier = get_classifier(classifier, device)
        ref_stats = digit_feature_stats(ref, classifier) if "fd" in metrics else None

    # the reference's parts of the MMD and the sliced Wasserstein distance: the same for every row
    mmd_ref = ReferenceMMD(ref, bandwidths) if "mmd" in metrics else None
    sw_ref = ReferenceSlicedWasserstein(ref, seed=seed) if "sw" in metrics else None

    def score_row(x):
        if not is_mixture:
            x = x.clamp(*PIXEL_RANGE)
        return score(x, ref, data, bandwidths, seed, reference_stats=ref_stats, classifier=classifier,
                     metrics=metrics, mmd_reference=mmd_ref, sw_reference=sw_ref)

    rows = [{"model": DATA_ROW, "steps": 0, **score_row(own)}]
    trajectories: dict[str, dict[int, Trajectory]] = {n: {} for n in all_models}
    stochastic = eta > 0 or solver in STOCHASTIC
    noises = {s: (make_noise(s, x_T.shape, gen, device=device) if stochastic else None) for s in steps}
    step_args = {"eta": eta} if solver == "ddim" else {}
    for s in steps:
        for name, model in all_models.items():
            opts = options_from_data(solver, model, data, schedule, schedule.timesteps(s, spacing),
                                     generator=torch.Generator().manual_seed(seed))
            tr = sample(model, x_T, schedule, s, solver=solver, spacing=spacing, noise=noises[s], **step_args,
                        **opts)
            trajectories[name][s] = tr
            rows.append({"model": name, "steps": s, **score_row(tr.final)})
        say(f"sampled {len(all_models)} models at {s} steps")

    drift: dict[str, dict[int, StepDrift]] = {}
    std_ratio: dict[str, dict[int, torch.Tensor]] = {}
    for s in drift_steps:  # from the paths sampled above (same x_T, same noise): nothing is sampled again
        for name, model in all_models.items():
            if is_mixture and IDEAL in all_models and name != IDEAL and solver == "ddim":  # paths_drift's step
                paths = PairedTrajectories(trajectories[name][s], trajectories[IDEAL][s], noises[s])
                drift.setdefault(name, {})[s] = paths_drift(model, paths, schedule, eta=eta)
            dd = trajectory_drift(trajectories[name][s], data if is_mixture else data.to(device), schedule,
                                  with_mmd=False)
            std_ratio.setdefault(name, {})[s] = dd.std_ratio
    settings = {"dataset": dataset or getattr(data, "name", "data"), "models": ", ".join(all_models),
                "sampler": (f"DDIM (eta={eta})" if eta == 0 else f"generalized DDIM (eta={eta})") if solver == "ddim"
                else solver,
                "timestep spacing": spacing, "steps": ", ".join(map(str, steps)), "points": n_points,
                "seed": seed, "schedule": f"{schedule.name}, T={schedule.T}",
                "MMD bandwidths": ", ".join(f"{b:.3g}" for b in bandwidths),
                "drift steps": ", ".join(map(str, drift_steps)), "slider steps": slider_steps}
    if not is_mixture:
        settings["reference"] = (f"half A of the real images ({ref.shape[0]} of {data.shape[0]}, a fixed split); "
                                 f"samples clamped to {list(PIXEL_RANGE)}")
    return Evaluation(dataset=settings["dataset"], data=data, schedule=schedule, steps=steps, x_T=x_T,
                      reference=ref, own=own, bandwidths=bandwidths, rows=rows,
                      trajectories=trajectories, drift=drift, std_ratio=std_ratio, drift_steps=drift_steps,
                      slider_steps=slider_steps, seed=seed, eta=eta, settings=settings,
                      seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------------- tables
COLUMN_TITLES = {"model": "model", "steps": "steps", "mmd": "MMD^2", "sw": "sliced W1", "loglik": "log-lik",
                 "loglik_gap": "log-lik gap", "fd": "digit FD", "confident": "conf>=0.9", "std_ratio": "std ratio"}


def table_columns(rows: Sequence[dict]) -> list[str]:
    return [c for c in COLUMN_TITLES if any(c in r for r in rows)]


def display_rows(rows: Sequence[dict]) -> list[dict]:
    """Rows keyed by the column titles (numbers kept as numbers; the data row's steps shown as "-").
    The report formats numbers with 4 significant digits, as ``format_table`` does."""
    cols = table_columns(rows)
    out = []
    for r in rows:
        d = {COLUMN_TITLES[c]: r[c] for c in cols}
        if r["model"] == DATA_ROW:
            d["steps"] = "-"
        out.append(d)
    return out


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table (fixed-width columns, numbers to 4 significant digits) of ``rows``."""
    shown = [{k: format_number(v) for k, v in r.items()} for r in display_rows(rows)]
    heads = list(shown[0]) if shown else []
    widths = [max(len(h), *(len(r[h]) for r in shown)) for h in heads]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(heads), line(["-" * w for w in widths])]
    out += [line([r[h] for h in heads]) for r in shown]
    return "\n".join(out)


def write_metrics_json(path, evaluation: Evaluation) -> Path:
    return atomic_write(path, json.dumps({"rows": evaluation.rows, "settings": evaluation.settings}, indent=2,
                                         default=str) + "\n")


# ---------------------------------------------------------------------- the digits tables
@dataclass
class StepsTable:
    """Digit Frechet distance (against real half A) and confidence share per model and step count: the form
    the shipped digits checkpoints record (``config["evaluation"]``).

    ``fd[name][j]`` and ``confident[name][j]`` belong to ``steps[j]``; ``floor = FD(half B, half A)``."""

    steps: tuple
    fd: dict = field(default_factory=dict)
    confident: dict = field(default_factory=dict)
    floor: float = float("nan")
    n: int = 0
    seed: int = 0
    eta: float = 0.0

    @classmethod
    def from_evaluation(cls, ev: Evaluation) -> "StepsTable":
        fd, conf = ev.table("fd"), ev.table("confident")
        return cls(steps=ev.steps, fd={n: list(v.values()) for n, v in fd.items()},
                   confident={n: list(v.values()) for n, v in conf.items()}, floor=ev.data_row()["fd"],
                   n=ev.x_T.shape[0], seed=ev.seed, eta=ev.eta)

    def as_dict(self) -> dict:
        return {"steps": list(self.steps), "fd": self.fd, "confident": self.confident, "floor": self.floor,
                "n": self.n, "seed": self.seed, "eta": self.eta}

    @classmethod
    def from_dict(cls, d: dict) -> "StepsTable":
        return cls(steps=tuple(d["steps"]), fd=dict(d["fd"]), confident=dict(d["confident"]),
                   floor=float(d["floor"]), n=int(d["n"]), seed=int(d["seed"]), eta=float(d.get("eta", 0.0)))

    def markdown(self) -> str:
        """A Markdown table: one row per step count, FD and confidence share per model, the floor below."""
        names = list(self.fd)
        head = "| steps | " + " | ".join(f"FD {m} | conf>=0.9 {m}" for m in names) + " |"
        rule = "|---:|" + "---:|---:|" * len(names)
        rows = []
        for j, s in enumerate(self.steps):
            cells = " | ".join(f"{self.fd[m][j]:.2f} | {100 * self.confident[m][j]:.1f}%" for m in names)
            rows.append(f"| {s} | {cells} |")
        foot = (f"\nFloor (two disjoint halves of the real digits): FD = {self.floor:.2f}. "
                f"{self.n} samples per cell, seed {self.seed}, eta = {self.eta}.")
        return "\n".join([head, rule, *rows]) + "\n" + foot


def shipped_table(names: Sequence[str] = ("simple", "sa")) -> StepsTable:
    """The table measured when the shipped digits checkpoints ``digits_<name>`` were made (1000 samples per
    cell), read from their JSON (``config["evaluation"]``); its columns are ``names``."""
    table = None
    for name in names:
        _, cfg = read_checkpoint(CHECKPOINT_DIR / f"digits_{name}")
        ev = StepsTable.from_dict(cfg["evaluation"])
        if table is None:
            table = StepsTable(steps=ev.steps, floor=ev.floor, n=ev.n, seed=ev.seed, eta=ev.eta)
        if ev.steps != table.steps:
            raise ValueError(f"checkpoint {name!r} was evaluated at steps {ev.steps}, others at {table.steps}")
        table.fd[name] = next(iter(ev.fd.values()))
        table.confident[name] = next(iter(ev.confident.values()))
    return table


def steps_table(models: dict, schedule: Schedule, steps=DEFAULT_STEPS, *, n: int = 1000, seed: int = 0,
                eta: float = 0.0, classifier=None, device="cpu") -> StepsTable:
    """The digits table of ``evaluate`` on the real digits: for each model and step count, ``FD(samples, real
    half A)`` and the confidence share; the floor ``FD(real half B, real half A)``."""
    if not isinstance(models, dict) or not models:
        raise TypeError(f"models must be a non-empty dict of name -> model, got {type(models).__name__}")
    ev = evaluate(models, digits()[0], schedule, steps, n_points=n, seed=seed, eta=eta, drift_steps=(),
                  metrics=("fd", "confident"), classifier=classifier, dataset="digits", device=device)
    return StepsTable.from_evaluation(ev)


# ---------------------------------------------------------------------- sampling helpers for the notebooks
def start_noise(shape: Sequence[int], n: int, seed: int = 0, device="cpu") -> torch.Tensor:
    """``x_T`` [n, *shape]: standard normal draws from ``torch.Generator().manual_seed(seed)`` (on the CPU, so
    every device sees the same numbers); the ``x_T`` of ``evaluate`` with the same seed."""
    n = check_int("n", n, 1)
    g = torch.Generator().manual_seed(check_int("seed", seed))
    return torch.randn((n, *shape), generator=g).to(device)


def sample_images(model, schedule: Schedule, n: int = 1000, steps: int = 50, *, seed: int = 0, eta: float = 0.0,
                  spacing: str = "trailing", clamp: bool = True, batch_size: int = 1000, shape=(1, 8, 8),
                  device="cpu") -> torch.Tensor:
    """``n`` samples [n, *shape] after ``steps`` generalized-sampler steps (``eta = 0``: DDIM) from
    ``x_T = start_noise(shape, n, seed)``; stochastic steps draw ``z`` from ``Generator().manual_seed(seed + 1)``.

    No clipping of ``x0_pred`` inside the sampler; ``clamp`` maps the final images to ``PIXEL_RANGE``, as any
    conversion to pixels does. Runs in chunks of ``batch_size`` (memory)."""
    n = check_int("n", n, 1)
    steps = check_int("steps", steps, 1, schedule.T)
    batch_size = check_int("batch_size", batch_size, 1)
    eta = check_float("eta", eta, 0.0, 1.0)
    x_T = start_noise(shape, n, seed, device)
    noise = None
    if eta > 0:
        noise = make_noise(steps, x_T.shape, torch.Generator().manual_seed(seed + 1), device=device)
    out = []
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        z = noise[:, sl] if noise is not None else None
        traj = sample(model, x_T[sl], schedule, steps, eta=eta, spacing=spacing, noise=z, record_every=steps)
        out.append(traj.final)
    x = torch.cat(out)
    return x.clamp(*PIXEL_RANGE) if clamp else x


def sample_grids(models: dict, schedule: Schedule, steps=DEFAULT_STEPS, *, n: int = 36, seed: int = 0,
                 eta: float = 0.0, device="cpu") -> dict[str, torch.Tensor]:
    """``{name: images [len(steps), n, 1, 8, 8]}``: the same ``x_T`` sampled by every model at every step
    count (a slider over steps then only indexes this array)."""
    if not isinstance(models, dict) or not models:
        raise TypeError(f"models must be a non-empty dict of name -> model, got {type(models).__name__}")
    return {name: torch.stack([sample_images(m, schedule, n, s, seed=seed, eta=eta, device=device).cpu()
                               for s in steps]) for name, m in models.items()}


def image_drift(models: dict, schedule: Schedule, steps: int = 20, *, n: int = 256, seed: int = 0,
                eta: float = 0.0, with_mmd: bool = True, n_reference: int | None = None,
                device="cpu") -> dict[str, DistributionDrift]:
    """Per-step distribution drift of each model's ``x_t`` against ``q(x_t)`` of the real digits
    (``drift.distribution_drift``: MMD and ``std_ratio = sqrt(tr Cov(x_t^model) / tr Cov(q(x_t)))``),
    every model from the same ``x_T = start_noise((1, 8, 8), n, seed)`` and the same reference draws
    (``n_reference`` real digits per step, default all 1797)."""
    if not isinstance(models, dict) or not models:
        raise TypeError(f"models must be a non-empty dict of name -> model, got {type(models).__name__}")
    data, _ = digits()
    x_T = start_noise((1, 8, 8), n, seed, device)
    return {name: distribution_drift(m, data.to(device), schedule, steps, x_T=x_T, eta=eta, with_mmd=with_mmd,
                                     n_reference=n_reference,
                                     generator=torch.Generator().manual_seed(seed + 2), device=device)
            for name, m in models.items()}
