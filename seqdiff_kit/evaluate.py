"""The one scorer and the one evaluation of every model comparison: the demo, ``seqdiff compare``, the experiment
grid, the seed study, the few-step grid, the explorer, the digits tables and the notebooks all score through
``Scorer``, and compare models through ``evaluate``.

``Scorer(data, reference, own=...)`` scores samples against a reference draw with every metric of the one
registry ``METRICS`` that applies to the data (docs/glossary.md tells what each measures and its target), and
scores a second data draw the same way (``data_level``: the floor sampling noise allows, shown beside every
score). The MMD is a sum of RBF kernels at ``mmd_bandwidths(data)``, fixed per dataset so that every table's MMD
is comparable; the sliced Wasserstein distance uses 256 directions from the seed.

The reference. Mixtures: ``N`` fresh draws of the data. Images: half A of a fixed split of the real digits into
two halves (``real_halves``: a permutation from seed 0), whatever the evaluation's seed, so every digits number
in the project is against the same images. The ``data`` row scores a second draw (mixtures) or the other half
(images). Image samples are clamped to the pixel range [-1, 1] before they are scored.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from ._format import format_number
from ._io import atomic_write
from ._validate import check_choice, check_float, check_int, check_type
from .classifier import (confidence_share, digit_feature_stats, digit_features, digit_frechet_distance,
                         get_classifier)
from .checkpoint import read_checkpoint
from .data import CHECKPOINT_DIR, GaussianMixture, digits, sample_shape
from .denoisers import IdealDenoiser
from .drift import (DistributionDrift, PairedTrajectories, TwoReferences, distribution_drift, exact_flow,
                    measure_references, paths_drift, trajectory_drift)
from .metrics import (ReferenceMMD, ReferenceSlicedWasserstein, frechet_distance, loglik_gap, mean_log_likelihood,
                      mode_coverage, robust_mode_spread, std_ratio, within_mode_spread)
from .samplers import Trajectory, make_noise
from .solvers import SOLVERS, STOCHASTIC, options_from_data, sample
from .schedule import Schedule

DEFAULT_STEPS = (5, 10, 20, 50, 100)
IDEAL = "ideal"
DATA_ROW = "data (own)"
PIXEL_RANGE = (-1.0, 1.0)
CONFIDENCE = 0.9
TAIL, TAIL_DRAWS = 0.01, 100_000


def _check_data(data) -> None:
    if not isinstance(data, (GaussianMixture, torch.Tensor)):
        raise TypeError(f"data must be a GaussianMixture or a tensor of clean samples, got {type(data).__name__}")


def _check_models(models) -> None:
    if not isinstance(models, dict) or not models:
        raise TypeError(f"models must be a non-empty dict of name -> model, got {type(models).__name__}")


# ---------------------------------------------------------------------- the digits reference
def real_halves(seed: int = 0, data: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint halves of the real digits (or of ``data`` [N, ...]): ``data[perm[:N // 2]]`` and
    ``data[perm[N // 2:]]``, ``perm`` from ``Generator().manual_seed(seed)``. With seed 0 the first is the
    reference of every digits score."""
    x = digits()[0] if data is None else data
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(check_int("seed", seed)))
    half = x.shape[0] // 2
    return x[perm[:half]], x[perm[half:]]


def frechet_floor(seed: int = 0, classifier=None) -> float:
    """``FD(half B, half A)``: the digit Frechet distance between two disjoint halves of the real digits, below
    which no model scores reliably at this sample size."""
    a, b = real_halves(seed)
    return digit_frechet_distance(b, a, classifier)


@dataclass(frozen=True)
class FloorSpread:
    """``frechet_floor`` over several random halvings: ``values[j]`` for ``seeds[j]``, their mean, sample
    standard deviation, minimum and maximum: the digit FD's own noise at this sample size."""

    seeds: tuple
    values: tuple
    mean: float
    sd: float
    low: float
    high: float


def frechet_floor_spread(seeds=tuple(range(8)), classifier=None) -> FloorSpread:
    """``frechet_floor(seed)`` for every seed in ``seeds`` (at least 5), from the classifier features of the real
    digits computed once and re-split by each seed's ``real_halves`` permutation."""
    seeds = tuple(check_int("seeds[i]", s, 0) for s in seeds)
    if len(set(seeds)) < 5:
        raise ValueError(f"seeds must hold at least 5 distinct seeds for a spread, got {list(seeds)}")
    feats = digit_features(digits()[0], classifier)
    values = []
    for seed in seeds:
        a, b = real_halves(seed, feats)  # the same permutation as the images' halves
        values.append(frechet_distance(b, a))
    v = torch.tensor(values, dtype=torch.float64)
    return FloorSpread(seeds, tuple(values), float(v.mean()), float(v.std()), float(v.min()), float(v.max()))


# ---------------------------------------------------------------------- the MMD kernel
BANDWIDTH_POINTS = 1000
BANDWIDTH_QUANTILE = 0.01
_CACHE: dict = {}


def _cached(kind: str, data, compute: Callable):
    """``compute()`` once per ``kind`` and dataset content (a mixture's parameters, or the samples)."""
    _check_data(data)
    h = hashlib.sha256()
    for t in [data.weights, data.means, data.covariances] if isinstance(data, GaussianMixture) else [data]:
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    key = (kind, h.hexdigest())
    if key not in _CACHE:
        _CACHE[key] = compute()
    return _CACHE[key]


def mmd_bandwidths(data) -> list[float]:
    """The MMD kernel's bandwidths of a dataset, one rule for every table (docs/performance.md measures it):
    the median pairwise distance and its halvings down to the ``BANDWIDTH_QUANTILE`` quantile of the pairwise
    distances, both over ``BANDWIDTH_POINTS`` fixed data points (a mixture's draws from
    ``Generator().manual_seed(0)``; the first rows of a tensor of samples). The median sees the layout of the
    modes; the small quantile is about one mode's width, where a sampler's errors show."""
    def compute() -> tuple[float, ...]:
        if isinstance(data, GaussianMixture):
            z = data.sample(BANDWIDTH_POINTS, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        else:
            z = data[:BANDWIDTH_POINTS].flatten(1).double().cpu()
        iu = torch.triu_indices(len(z), len(z), offset=1)
        d = torch.cdist(z, z)[iu[0], iu[1]]
        out, narrow = [float(d.median())], float(d.kthvalue(max(1, round(BANDWIDTH_QUANTILE * d.numel()))).values)
        while out[-1] / 2 >= narrow:
            out.append(out[-1] / 2)
        return tuple(out)

    return list(_cached("bandwidths", data, compute))


# ---------------------------------------------------------------------- the metrics and the scorer
@dataclass(frozen=True)
class Metric:
    """One scored quantity of the registry ``METRICS``: its column ``title``, the data it ``applies`` to
    (``"all"``, ``"mixture"``, ``"ring"``: a 2-D mixture whose modes all sit away from its mean, ``"images"``)
    and ``compute(scorer, x) -> float`` (``x`` already clamped for images)."""

    title: str
    applies: str
    compute: Callable


def _spread(scorer: "Scorer", x: torch.Tensor, k: int, offset: bool = False) -> float:
    spread = scorer.memo(x, "spread", lambda: within_mode_spread(x, scorer.data, axes="radial"))
    return float((spread.pooled_offset if offset else spread.pooled)[k])


def _robust(scorer: "Scorer", x: torch.Tensor, k: int | None = None) -> float:
    """The MAD spread's pooled ratio on axis ``k`` (a ring's radial axes), or the off-mode share (``k=None``)."""
    axes = "radial" if is_ring(scorer.data) else "principal"  # the share does not depend on the axes
    spread = scorer.memo(x, "robust", lambda: robust_mode_spread(x, scorer.data, axes=axes))
    return spread.off_share if k is None else float(spread.pooled[k])


# The one registry of scored quantities (docs/glossary.md): every table path scores through ``Scorer``, which
# computes the entries that apply to its data. The spread verdicts use the MAD ratios (a few samples between the
# modes do not widen them); off-mode: farther than 4 (Mahalanobis) from every component.
METRICS: dict[str, Metric] = {
    "mmd": Metric("MMD^2", "all", lambda s, x: s.mmd_reference(x)),
    "sw": Metric("sliced W1", "all", lambda s, x: s.sw_reference(x)),
    "loglik": Metric("log-lik", "mixture", lambda s, x: mean_log_likelihood(x, s.data)),
    "loglik_gap": Metric("log-lik gap", "mixture", lambda s, x: loglik_gap(x, s.reference, s.data).gap),
    "fd": Metric("digit FD", "images", lambda s, x: digit_frechet_distance(x, classifier=s.classifier,
                                                                            reference_stats=s.reference_stats)),
    "confident": Metric("conf>=0.9", "images", lambda s, x: confidence_share(x, s.classifier, threshold=CONFIDENCE)),
    "std_ratio": Metric("std ratio", "all", lambda s, x: std_ratio(x, s.reference)),
    "coverage_tv": Metric("coverage TV", "mixture", lambda s, x: mode_coverage(x, s.data).tv),
    "spread_radial": Metric("radial spread", "ring", lambda s, x: _spread(s, x, 0)),
    "spread_tangential": Metric("tangential spread", "ring", lambda s, x: _spread(s, x, 1)),
    "radial_offset": Metric("radial offset", "ring", lambda s, x: _spread(s, x, 0, offset=True)),
    "spread_radial_mad": Metric("radial spread (MAD)", "ring", lambda s, x: _robust(s, x, 0)),
    "spread_tangential_mad": Metric("tangential spread (MAD)", "ring", lambda s, x: _robust(s, x, 1)),
    "off_mode_share": Metric("off-mode share", "mixture", lambda s, x: _robust(s, x)),
    "tail_share": Metric(f"share in the {TAIL:.0%} tail", "mixture",
                         lambda s, x: float((s.data.log_prob(x.double()) < s.tail_log_p).double().mean())),
}


def is_ring(data) -> bool:
    """A 2-D mixture whose every mode sits away from its mean (the radial/tangential axes are defined)."""
    if not isinstance(data, GaussianMixture) or data.dim != 2:
        return False
    return bool((torch.linalg.vector_norm(data.means - data.mean(), dim=1) > 1e-12).all())


def applicable(data, metrics: Sequence[str] | None = None) -> tuple[str, ...]:
    """The names of ``metrics`` (default: all of ``METRICS``, in its order) that apply to ``data``."""
    kinds = {"all"} | ({"mixture"} | ({"ring"} if is_ring(data) else set()) if isinstance(data, GaussianMixture)
                       else {"images"})
    names = list(METRICS) if metrics is None else [check_choice("metrics[i]", m, METRICS) for m in metrics]
    return tuple(m for m in names if METRICS[m].applies in kinds)


class Scorer:
    """The one scorer of samples against a dataset (the module docstring).

    ``data``: a ``GaussianMixture`` or clean images [M, ...]; ``reference``: the draw samples are scored against;
    ``own``: a second draw of the data, whose score (``data_level``) is the level sampling noise alone reaches.
    ``metrics``: names of ``METRICS`` (default all), kept where they apply (``applicable``). ``seed``: the sliced
    Wasserstein's directions. ``Scorer.draw`` draws the reference and ``own`` the way every table does;
    ``against`` re-uses everything but the draws."""

    def __init__(self, data, reference: torch.Tensor, *, own: torch.Tensor | None = None,
                 metrics: Sequence[str] | None = None, seed: int = 0, classifier=None, bandwidths=None,
                 tail_log_p: float | None = None):
        _check_data(data)
        self.data, self.reference, self.own, self.seed = data, reference, own, check_int("seed", seed)
        self.metrics = applicable(data, metrics)
        self.is_mixture = isinstance(data, GaussianMixture)
        self.bandwidths = list(bandwidths) if bandwidths is not None else mmd_bandwidths(data)
        self.mmd_reference = ReferenceMMD(reference, self.bandwidths) if "mmd" in self.metrics else None
        self.sw_reference = ReferenceSlicedWasserstein(reference, seed=seed) if "sw" in self.metrics else None
        self.classifier = self.reference_stats = None
        if not self.is_mixture and {"fd", "confident"} & set(self.metrics):
            self.classifier = get_classifier(classifier, reference.device)
            self.reference_stats = digit_feature_stats(reference, self.classifier) if "fd" in self.metrics else None
        self._tail_log_p, self._memo, self._level = tail_log_p, None, None

    @classmethod
    def draw(cls, data, n_points: int, seed: int = 0, *, generator: torch.Generator | None = None,
             device="cpu", **kwargs) -> "Scorer":
        """A scorer against fresh draws: a mixture's ``reference`` and ``own`` are two draws of ``n_points``
        from ``generator`` (default ``Generator().manual_seed(seed)``), in that order; images' are halves A and B
        of ``real_halves(0, data)``, whatever the seed."""
        n_points = check_int("n_points", n_points, 2)
        if isinstance(data, GaussianMixture):
            gen = generator if generator is not None else torch.Generator().manual_seed(check_int("seed", seed))
            ref, own = data.sample(n_points, generator=gen), data.sample(n_points, generator=gen)
        else:
            ref, own = real_halves(0, data)
        return cls(data, ref.to(device), own=own.to(device), seed=seed, **kwargs)

    def against(self, reference: torch.Tensor, own: torch.Tensor | None = None, seed: int | None = None) -> "Scorer":
        """The same scorer (``seed`` unless given) against another reference draw."""
        return Scorer(self.data, reference, own=own, metrics=self.metrics, seed=self.seed if seed is None else seed,
                      classifier=self.classifier, bandwidths=self.bandwidths, tail_log_p=self._tail_log_p)

    @property
    def tail_log_p(self) -> float:
        """The data's ``TAIL`` quantile of ``log p`` (a mixture's; ``TAIL_DRAWS`` draws of ``Generator(0)``)."""
        if self._tail_log_p is None:
            def quantile():
                draws = self.data.sample(TAIL_DRAWS, torch.Generator().manual_seed(0), dtype=torch.float64)
                return float(torch.quantile(self.data.log_prob(draws), TAIL))
            self._tail_log_p = _cached("tail", self.data, quantile)
        return self._tail_log_p

    def memo(self, x: torch.Tensor, key: str, compute: Callable):
        """``compute()``, kept while the same ``x`` is scored (several metrics share one computation)."""
        if self._memo is None or self._memo[0] is not x:
            self._memo = (x, {})
        if key not in self._memo[1]:
            self._memo[1][key] = compute()
        return self._memo[1][key]

    def score(self, x: torch.Tensor) -> dict:
        """``{metric: value}`` of samples ``x`` for every metric of this scorer, in ``METRICS`` order."""
        if not self.is_mixture:
            x = x.clamp(*PIXEL_RANGE)
        try:
            return {m: METRICS[m].compute(self, x) for m in self.metrics}
        finally:
            self._memo = None

    @property
    def data_level(self) -> dict:
        """The score of ``own``, the second data draw: what sampling noise alone reaches."""
        if self.own is None:
            raise ValueError("this scorer has no second data draw (own) for the data's level")
        if self._level is None:
            self._level = self.score(self.own)
        return self._level


# ---------------------------------------------------------------------- the evaluation
@dataclass
class Evaluation:
    """Everything ``evaluate`` measured.

    ``rows``: one dict per (model, steps) after the ``data`` row. ``trajectories[name][steps]``: the sampled
    paths (``x`` [steps+1, N, ...]); ``reference``, ``own``, ``bandwidths``: the ``Scorer``'s.
    ``drift[name][steps]``: ``StepDrift`` against the ideal path (mixtures and ``solver="ddim"``).
    ``references[name][steps]``: ``drift.TwoReferences``, the same runs against the ideal path (estimation error)
    and the exact probability-flow path ``flow`` from ``x_T`` (total error; mixtures, deterministic samplers).
    ``std_ratio[name][steps]``: the per-step ``sqrt(tr Cov(x_t) / tr Cov(q(x_t)))`` [steps+1], exact for the data's
    law."""

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
    references: dict = field(default_factory=dict)
    flow: Trajectory | None = None
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

    def reference_rows(self) -> list[dict]:
        """Per learned model and drift step count, the mean over points of the final samples' distances (the
        tables of ``drift.TwoReferences``: estimation, total, discretisation and the cross term)."""
        return [{"model": name, "steps": s, **{k: float(r.final(k).mean()) for k in TwoReferences.TABLES}}
                for name, by_steps in self.references.items() for s, r in by_steps.items()]


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
             slider_steps: int | None = None, metrics: Sequence[str] | None = None, classifier=None,
             dataset: str | None = None, log: Callable | None = None, device="cpu") -> Evaluation:
    """Sample every model from one shared ``x_T ~ N(0, I)`` [n_points, ...] at each step count and score them.

    ``data``: a ``GaussianMixture`` (adds the ideal denoiser when ``ideal``) or clean images [M, 1, 8, 8].
    ``metrics``: names of ``METRICS`` (default: every one that applies); the rows are ``Scorer.score`` of each
    model's samples, the data row ``Scorer.data_level``. ``solver``: a name of ``solvers.SOLVERS`` (``eta``
    belongs to ``ddim``, the generalized step; a solver's options from the data come from
    ``solvers.options_from_data``, seeded by ``seed``). With ``eta > 0`` or a stochastic solver all models share
    the per-step noise of each step count. ``drift_steps`` (default: the smallest and the largest step count;
    ``()`` for none) get the per-step drift and spread. Randomness, in order, from ``seed``: ``x_T``, the
    reference draws (mixtures), the data row's draws (mixtures), the noise."""
    n_points, seed = check_int("n_points", n_points, 2), check_int("seed", seed)
    eta = check_float("eta", eta, 0.0, 1.0)
    check_choice("solver", solver, SOLVERS)
    if solver != "ddim" and eta != 0.0:
        raise ValueError(f"eta belongs to the generalized step (solver='ddim'), got eta={eta} with solver={solver!r}")
    check_type("schedule", schedule, Schedule)
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict of name -> model")
    steps = check_steps(steps, schedule.T)
    drift_steps = (steps[0], steps[-1]) if drift_steps is None else check_steps(drift_steps, schedule.T,
                                                                                 "drift_steps", allow_empty=True)
    slider_steps = (20 if 20 in steps else steps[len(steps) // 2]) if slider_steps is None else slider_steps
    missing = sorted(set(drift_steps) - set(steps)) + ([slider_steps] if slider_steps not in steps else [])
    if missing:
        raise ValueError(f"drift_steps and slider_steps must be among steps {list(steps)}, got {missing}")
    _check_data(data)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    x_T = torch.randn((n_points, *sample_shape(data)), generator=gen).to(device)
    scorer = Scorer.draw(data, n_points, seed, generator=gen, device=device, metrics=metrics, classifier=classifier)
    all_models = dict(models)
    if ideal and isinstance(data, GaussianMixture):
        all_models[IDEAL] = IdealDenoiser(data, schedule)
    noises = {s: (make_noise(s, x_T.shape, gen, device=device) if eta > 0 or solver in STOCHASTIC else None)
              for s in steps}
    ev = Evaluation(dataset=dataset or getattr(data, "name", "data"), data=data, schedule=schedule, steps=steps,
                    x_T=x_T, reference=scorer.reference, own=scorer.own, bandwidths=scorer.bandwidths,
                    rows=[{"model": DATA_ROW, "steps": 0, **scorer.data_level}],
                    trajectories={n: {} for n in all_models}, drift_steps=drift_steps, slider_steps=slider_steps,
                    seed=seed, eta=eta)
    for s in steps:
        for name, model in all_models.items():
            opts = options_from_data(solver, model, data, schedule, schedule.timesteps(s, spacing),
                                     generator=torch.Generator().manual_seed(seed))
            tr = sample(model, x_T, schedule, s, solver=solver, spacing=spacing, noise=noises[s],
                        **({"eta": eta} if solver == "ddim" else {}), **opts)
            ev.trajectories[name][s] = tr
            ev.rows.append({"model": name, "steps": s, **scorer.score(tr.final)})
        if log:
            log(f"sampled {len(all_models)} models at {s} steps")
    _measure_drift(ev, all_models, noises, solver, device)
    ev.settings = {"dataset": ev.dataset, "models": ", ".join(all_models),
                   "sampler": solver if solver != "ddim" else f"DDIM (eta={eta})" if eta == 0
                   else f"generalized DDIM (eta={eta})",
                   "timestep spacing": spacing, "steps": ", ".join(map(str, steps)), "points": n_points,
                   "seed": seed, "schedule": f"{schedule.name}, T={schedule.T}",
                   "MMD bandwidths": ", ".join(f"{b:.3g}" for b in ev.bandwidths),
                   "drift steps": ", ".join(map(str, drift_steps)), "slider steps": slider_steps}
    if not isinstance(data, GaussianMixture):
        ev.settings["reference"] = (f"half A of the real images ({ev.reference.shape[0]} of {data.shape[0]}, a "
                                    f"fixed split); samples clamped to {list(PIXEL_RANGE)}")
    ev.seconds = time.perf_counter() - t0
    return ev


def _measure_drift(ev: Evaluation, models: dict, noises: dict, solver: str, device) -> None:
    """``ev.drift``, ``ev.references`` and ``ev.std_ratio`` at ``ev.drift_steps``, from the paths sampled (nothing
    sampled again; the exact flow is solved once, recording every timestep of those runs)."""
    is_mixture = isinstance(ev.data, GaussianMixture)
    paired = is_mixture and IDEAL in models
    if paired and ev.drift_steps and all(n is None for n in noises.values()):
        runs = [ev.trajectories[IDEAL][s] for s in ev.drift_steps]
        ts = sorted({int(t) for tr in runs for t in tr.timesteps}, reverse=True)
        ev.flow = exact_flow(ev.data, ev.schedule, ev.x_T.cpu(), timesteps=ts)
        ev.references = {name: {s: measure_references(ev.trajectories[name][s], ev.trajectories[IDEAL][s], ev.flow)
                                for s in ev.drift_steps} for name in models if name != IDEAL}
    for s in ev.drift_steps:
        for name, model in models.items():
            if paired and name != IDEAL and solver == "ddim":  # paths_drift's step is the generalized one
                paths = PairedTrajectories(ev.trajectories[name][s], ev.trajectories[IDEAL][s], noises[s])
                ev.drift.setdefault(name, {})[s] = paths_drift(model, paths, ev.schedule, eta=ev.eta)
            dd = trajectory_drift(ev.trajectories[name][s], ev.data if is_mixture else ev.data.to(device),
                                  ev.schedule, with_mmd=False)
            ev.std_ratio.setdefault(name, {})[s] = dd.std_ratio


# ---------------------------------------------------------------------- tables
# the columns of the plain-text table and the report's (the rows hold every metric of the scorer)
TABLE_METRICS = ("mmd", "sw", "loglik", "loglik_gap", "fd", "confident", "std_ratio")
COLUMN_TITLES = {"model": "model", "steps": "steps", **{m: METRICS[m].title for m in TABLE_METRICS}}


def display_rows(rows: Sequence[dict]) -> list[dict]:
    """Rows keyed by the column titles (numbers kept as numbers; the data row's steps shown as "-")."""
    cols = [c for c in COLUMN_TITLES if any(c in r for r in rows)]
    return [{**{COLUMN_TITLES[c]: r[c] for c in cols}, **({"steps": "-"} if r["model"] == DATA_ROW else {})}
            for r in rows]


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table (fixed-width columns, numbers to 4 significant digits) of ``rows``."""
    shown = [{k: format_number(v) for k, v in r.items()} for r in display_rows(rows)]
    heads = list(shown[0]) if shown else []
    widths = [max(len(h), *(len(r[h]) for r in shown)) for h in heads]

    def line(cells) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(heads), line(["-" * w for w in widths])] + [line([r[h] for h in heads]) for r in shown])


def write_metrics_json(path, evaluation: Evaluation) -> Path:
    return atomic_write(path, json.dumps({"rows": evaluation.rows, "references": evaluation.reference_rows(),
                                          "settings": evaluation.settings}, indent=2, default=str) + "\n")


# ---------------------------------------------------------------------- the digits tables
@dataclass
class StepsTable:
    """Digit Frechet distance (against real half A) and confidence share per model and step count: the form
    the shipped digits checkpoints record (``config["evaluation"]``). ``fd[name][j]`` and
    ``confident[name][j]`` belong to ``steps[j]``; ``floor = FD(half B, half A)``."""

    steps: tuple
    fd: dict = field(default_factory=dict)
    confident: dict = field(default_factory=dict)
    floor: float = float("nan")
    n: int = 0
    seed: int = 0
    eta: float = 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "steps": list(self.steps)}

    @classmethod
    def from_dict(cls, d: dict) -> "StepsTable":
        return cls(steps=tuple(d["steps"]), fd=dict(d["fd"]), confident=dict(d["confident"]),
                   floor=float(d["floor"]), n=int(d["n"]), seed=int(d["seed"]), eta=float(d.get("eta", 0.0)))

    def markdown(self) -> str:
        """A Markdown table: one row per step count, FD and confidence share per model, the floor below."""
        names = list(self.fd)
        head = "| steps | " + " | ".join(f"FD {m} | conf>=0.9 {m}" for m in names) + " |"
        rows = ["| {} | {} |".format(s, " | ".join(f"{self.fd[m][j]:.2f} | {100 * self.confident[m][j]:.1f}%"
                                                   for m in names)) for j, s in enumerate(self.steps)]
        return "\n".join([head, "|---:|" + "---:|---:|" * len(names), *rows]) + (
            f"\n\nFloor (two disjoint halves of the real digits): FD = {self.floor:.2f}. "
            f"{self.n} samples per cell, seed {self.seed}, eta = {self.eta}.")


def shipped_table(names: Sequence[str] = ("simple", "sa")) -> StepsTable:
    """The table measured when the shipped digits checkpoints ``digits_<name>`` were made (1000 samples per
    cell), read from their JSON (``config["evaluation"]``); its columns are ``names``."""
    table = None
    for name in names:
        ev = StepsTable.from_dict(read_checkpoint(CHECKPOINT_DIR / f"digits_{name}")[1]["evaluation"])
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
    _check_models(models)
    ev = evaluate(models, digits()[0], schedule, steps, n_points=n, seed=seed, eta=eta, drift_steps=(),
                  metrics=("fd", "confident"), classifier=classifier, dataset="digits", device=device)
    fd, conf = ev.table("fd"), ev.table("confident")
    return StepsTable(steps=ev.steps, fd={k: list(v.values()) for k, v in fd.items()},
                      confident={k: list(v.values()) for k, v in conf.items()}, floor=ev.data_row()["fd"],
                      n=ev.x_T.shape[0], seed=ev.seed, eta=ev.eta)


# ---------------------------------------------------------------------- sampling helpers for the notebooks
def start_noise(shape: Sequence[int], n: int, seed: int = 0, device="cpu") -> torch.Tensor:
    """``x_T`` [n, *shape]: standard normal draws from ``torch.Generator().manual_seed(seed)`` on the CPU (every
    device sees the same numbers)."""
    g = torch.Generator().manual_seed(check_int("seed", seed))
    return torch.randn((check_int("n", n, 1), *shape), generator=g).to(device)


def sample_images(model, schedule: Schedule, n: int = 1000, steps: int = 50, *, seed: int = 0, eta: float = 0.0,
                  spacing: str = "trailing", clamp: bool = True, batch_size: int = 1000, shape=(1, 8, 8),
                  device="cpu") -> torch.Tensor:
    """``n`` samples [n, *shape] after ``steps`` generalized-sampler steps (``eta = 0``: DDIM) from
    ``x_T = start_noise(shape, n, seed)``; stochastic steps draw ``z`` from ``Generator().manual_seed(seed + 1)``.
    ``clamp`` maps the final images to ``PIXEL_RANGE``, as any conversion to pixels does (nothing is clipped inside
    the sampler). Runs in chunks of ``batch_size`` (memory)."""
    steps = check_int("steps", steps, 1, schedule.T)
    batch_size = check_int("batch_size", batch_size, 1)
    eta = check_float("eta", eta, 0.0, 1.0)
    x_T = start_noise(shape, n, seed, device)
    noise = make_noise(steps, x_T.shape, torch.Generator().manual_seed(seed + 1), device=device) if eta > 0 else None
    x = torch.cat([sample(model, x_T[i:i + batch_size], schedule, steps, eta=eta, spacing=spacing,
                          noise=None if noise is None else noise[:, i:i + batch_size], record_every=steps).final
                   for i in range(0, len(x_T), batch_size)])
    return x.clamp(*PIXEL_RANGE) if clamp else x


def sample_grids(models: dict, schedule: Schedule, steps=DEFAULT_STEPS, *, n: int = 36, seed: int = 0,
                 eta: float = 0.0, device="cpu") -> dict[str, torch.Tensor]:
    """``{name: images [len(steps), n, 1, 8, 8]}``: the same ``x_T`` sampled by every model at every step
    count (a slider over steps then only indexes this array)."""
    _check_models(models)
    return {name: torch.stack([sample_images(m, schedule, n, s, seed=seed, eta=eta, device=device).cpu()
                               for s in steps]) for name, m in models.items()}


def image_drift(models: dict, schedule: Schedule, steps: int = 20, *, n: int = 256, seed: int = 0,
                eta: float = 0.0, with_mmd: bool = True, n_reference: int | None = None,
                device="cpu") -> dict[str, DistributionDrift]:
    """Per-step distribution drift of each model's ``x_t`` against ``q(x_t)`` of the real digits
    (``drift.distribution_drift``), every model from the same ``x_T = start_noise((1, 8, 8), n, seed)`` and the
    same reference draws (``n_reference`` real digits per step, default all)."""
    _check_models(models)
    data, x_T = digits()[0].to(device), start_noise((1, 8, 8), n, seed, device)
    return {name: distribution_drift(m, data, schedule, steps, x_T=x_T, eta=eta, with_mmd=with_mmd,
                                     n_reference=n_reference, generator=torch.Generator().manual_seed(seed + 2),
                                     device=device)
            for name, m in models.items()}
