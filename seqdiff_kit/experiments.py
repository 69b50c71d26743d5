"""The paper's comparison at toy scale: simple loss versus sequence-aware (SA) loss, over seeds, sampling steps,
eta and datasets, with 95% t-intervals, equal-steps and equal-compute budgets, and the 1-D closed form.

The grid. For every dataset, loss, seed and training budget one model is trained (a *train cell*); each is
then sampled at every (sampling steps, eta) pair (an *eval cell*) from an ``x_T`` and noise that depend only on
(dataset, seed, steps, eta), so the models of one seed are compared on the very same randomness.

Budgets. SA(K) evaluates the network K times per training sample, so besides *equal steps* (both losses
``n`` updates) the grid trains the simple loss for ``K n`` updates: *equal compute* (model evaluations).

Intervals. Over the ``n`` seeds, ``mean +- t_{(1+level)/2, n-1} s / sqrt(n)`` with the sample standard deviation
``s`` (Student's t; ``student_t_ppf`` computes the quantile exactly, without scipy). Comparisons pair the
two losses by seed: ``d_i = m_SA,i - m_simple,i`` and the same interval on the ``d_i``.

On disk (``out/``): ``models/.../*.safetensors + .json`` (checkpoint.py), ``rows.jsonl`` (one JSON line per
eval cell; read back on the next run, so finished cells are never recomputed), ``rows.csv``,
``summary.csv``, ``comparison.csv`` and ``report.html``. Work runs in a process pool (spawn context) with one
torch thread per worker.

The core of this module never imports plotly: the HTML report imports ``viz``/``report`` lazily.
"""
from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ._io import atomic_write
from ._validate import check_choice, check_float, check_int
from .checkpoint import build_model, checkpoint_exists, checkpoint_paths, load_checkpoint
from .data import PRESETS as MIXTURE_PRESETS
from .data import GaussianMixture, digits, preset
from .denoisers import seeded_model
from .losses import Loss
from .schedule import Schedule
from .train import fit

DATASETS = tuple(MIXTURE_PRESETS) + ("digits", "gauss1d")
LEVEL = 0.95

# metric -> +1 (higher is better) or -1 (lower is better); "std_dev" = |std_ratio - 1|
DIRECTIONS = {"mmd": -1, "sw": -1, "loglik": +1, "fd": -1, "std_dev": -1}


# ====================================================================== Student-t intervals
def _t_two_sided(x: float, df: int) -> float:
    """``A(x | df) = P(|T| <= x)`` for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4):
    with ``theta = atan(x / sqrt(df))``,
    odd df:  ``A = (2/pi) [theta + sin(theta) (cos(theta) + 2/3 cos^3 + ... + (2.4...(df-3))/(1.3...(df-2)) cos^(df-2))]``
    even df: ``A = sin(theta) [1 + 1/2 cos^2 + (1.3)/(2.4) cos^4 + ... + (1.3...(df-3))/(2.4...(df-2)) cos^(df-2)]``."""
    theta = math.atan(x / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    c2 = c * c
    if df % 2:
        if df == 1:
            return 2 * theta / math.pi
        term, total = c, c
        for k in range(1, (df - 1) // 2):
            term *= (2 * k) / (2 * k + 1) * c2
            total += term
        return 2 / math.pi * (theta + s * total)
    term, total = 1.0, 1.0
    for k in range(0, df // 2 - 1):
        term *= (2 * k + 1) / (2 * k + 2) * c2
        total += term
    return s * total


def student_t_ppf(q: float, df: int) -> float:
    """The quantile ``x`` with ``P(T <= x) = q`` for Student's t with ``df`` degrees of freedom (integer).

    Solves ``A(x | df) = 2 q - 1`` (``A`` the two-sided probability, A&S 26.7.3-4) by bisection to float64
    precision; ``q < 1/2`` uses the symmetry ``x(q) = -x(1 - q)``."""
    q = check_float("q", q, 0.0, 1.0)
    df = check_int("df", df, 1)
    if q in (0.0, 1.0):
        raise ValueError(f"q must be in the open interval (0, 1), got {q}")
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -student_t_ppf(1.0 - q, df)
    target = 2 * q - 1
    lo, hi = 0.0, 1.0
    while _t_two_sided(hi, df) < target:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_two_sided(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi)


def mean_ci(values: Sequence[float], level: float = LEVEL) -> dict:
    """Mean and two-sided ``level`` t-interval of the finite entries of ``values``:

    ``mean +- t_{(1+level)/2, n-1} s / sqrt(n)``, ``s^2 = sum (v - mean)^2 / (n - 1)``.
    Returns ``n, mean, sd, sem, t, half_width, low, high`` (interval entries NaN when n < 2)."""
    level = check_float("level", level, 0.0, 1.0, low_open=True, high_open=True)
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    n = len(v)
    nan = math.nan
    if n == 0:
        return dict(n=0, mean=nan, sd=nan, sem=nan, t=nan, half_width=nan, low=nan, high=nan)
    mean = sum(v) / n
    if n < 2:
        return dict(n=1, mean=mean, sd=nan, sem=nan, t=nan, half_width=nan, low=nan, high=nan)
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    sem = sd / math.sqrt(n)
    t = student_t_ppf(0.5 + level / 2, n - 1)
    return dict(n=n, mean=mean, sd=sd, sem=sem, t=t, half_width=t * sem, low=mean - t * sem, high=mean + t * sem)


# ====================================================================== configuration
@dataclass
class DatasetSpec:
    """One dataset of the grid: its network, training recipe, losses and evaluation settings.

    ``model``: ``{"class": "MLPDenoiser" | "TinyUNet", "args": {...}}``. ``train``: keyword arguments of
    ``train.fit`` (``steps``, ``batch_size``, ``lr``, ``warmup``, ``cosine_decay``, ``ema_decay``, ``grad_clip``).
    ``losses``: ``Loss.config`` dicts; the first must be the simple loss. ``equal_compute``: also train the
    simple loss for ``K * steps`` for each SA(K). ``var``: the data variance of ``gauss1d`` (x0 ~ N(0, var))."""

    name: str
    model: dict
    train: dict
    losses: list
    sampling_steps: tuple
    etas: tuple = (0.0,)
    n_eval: int = 1000
    equal_compute: bool = True
    var: float = 0.25

    def __post_init__(self):
        check_choice("dataset name", self.name, DATASETS)
        if not isinstance(self.model, dict) or "class" not in self.model:
            raise ValueError(f"model must be a dict {{'class': ..., 'args': {{...}}}}, got {self.model!r}")
        if not isinstance(self.train, dict) or "steps" not in self.train:
            raise ValueError(f"train must be a dict of fit() arguments with 'steps', got {self.train!r}")
        check_int("train['steps']", self.train["steps"], 1)
        self.losses = [Loss.from_config(d).config for d in self.losses]
        if not self.losses or self.losses[0]["name"] != "simple":
            raise ValueError(f"losses must start with the simple loss (the baseline), got {self.losses!r}")
        self.sampling_steps = tuple(check_int("sampling_steps[i]", s, 1) for s in self.sampling_steps)
        self.etas = tuple(check_float("etas[i]", e, 0.0, 1.0) for e in self.etas)
        if not self.sampling_steps or not self.etas:
            raise ValueError(f"sampling_steps and etas must be non-empty, got {self.sampling_steps} and {self.etas}")
        check_int("n_eval", self.n_eval, 2)
        check_float("var", self.var, 0.0, low_open=True)


@dataclass
class ExperimentConfig:
    """The whole grid: datasets, seeds (at least 2; the presets use 3) and the noise schedule."""

    datasets: list
    seeds: tuple = (0, 1, 2)
    schedule: dict = field(default_factory=lambda: Schedule.linear(1000).config())
    name: str = "custom"

    def __post_init__(self):
        self.datasets = [d if isinstance(d, DatasetSpec) else DatasetSpec(**d) for d in self.datasets]
        if not self.datasets:
            raise ValueError("datasets must hold at least one DatasetSpec, got an empty list")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"datasets must have distinct names, got {names}")
        self.seeds = tuple(check_int("seeds[i]", s, 0) for s in self.seeds)
        if len(set(self.seeds)) < 2:
            raise ValueError(f"seeds must hold at least 2 distinct seeds for an interval, got {list(self.seeds)}")
        Schedule.from_config(self.schedule)

    def to_dict(self) -> dict:
        return asdict(self)


def _fit_kwargs(**kw) -> dict:
    base = dict(batch_size=256, lr=2e-3, warmup=0, cosine_decay=False, ema_decay=0.995, grad_clip=1.0)
    base.update(kw)
    return base


def preset_config(name: str) -> ExperimentConfig:
    """The named grids. ``fast``: tiny networks and a few dozen updates (a smoke test of the machinery, far
    too small to show an effect; about a minute on 2 busy cores). ``paper-toy``: ring8 (the default 2-D recipe),
    8x8 digits (a 16-channel TinyUNet) and the 1-D Gaussian study, 3 seeds; sized for ~15-20 minutes with 2
    workers on 2 cores."""
    check_choice("preset", name, tuple(PRESETS))
    return PRESETS[name]()


def _fast() -> ExperimentConfig:
    sa = {"name": "sa", "K": 2, "lam": 1.0}
    return ExperimentConfig(name="fast", seeds=(0, 1, 2), datasets=[
        DatasetSpec("ring8", {"class": "MLPDenoiser", "args": dict(dim=2, width=32, depth=2, time_dim=16)},
                    _fit_kwargs(steps=60, batch_size=128, lr=3e-3), [{"name": "simple"}, sa],
                    sampling_steps=(5, 20), etas=(0.0,), n_eval=256),
        DatasetSpec("digits", {"class": "TinyUNet", "args": dict(channels=8, time_dim=16)},
                    _fit_kwargs(steps=8, batch_size=32, lr=2e-3), [{"name": "simple"}, sa],
                    sampling_steps=(5, 20), etas=(0.0,), n_eval=64),
        DatasetSpec("gauss1d", {"class": "MLPDenoiser", "args": dict(dim=1, width=16, depth=2, time_dim=16)},
                    _fit_kwargs(steps=60, batch_size=256, lr=3e-3), [{"name": "simple"}, sa],
                    sampling_steps=(5, 20), etas=(0.0,), n_eval=1000, equal_compute=False, var=0.25),
    ])


def _paper_toy() -> ExperimentConfig:
    return ExperimentConfig(name="paper-toy", seeds=(0, 1, 2), datasets=[
        # a shorter budget than train.DEFAULT_2D (8000 updates) so that 3 seeds x 3 budgets fit on 2 cores: 3000 updates, MLP 128 x 3
        DatasetSpec("ring8", {"class": "MLPDenoiser", "args": dict(dim=2, width=128, depth=3, time_dim=64)},
                    _fit_kwargs(steps=3000, batch_size=256, lr=2e-3, warmup=100, cosine_decay=True,
                                ema_decay=0.995),
                    [{"name": "simple"}, {"name": "sa", "K": 2, "lam": 1.0}],
                    sampling_steps=(5, 10, 20, 50, 100, 200), etas=(0.0, 1.0), n_eval=2000),
        DatasetSpec("digits", {"class": "TinyUNet", "args": dict(channels=16, time_dim=32)},
                    _fit_kwargs(steps=1200, batch_size=128, lr=2e-3, warmup=100, cosine_decay=True,
                                ema_decay=0.995),
                    [{"name": "simple"}, {"name": "sa", "K": 2, "lam": 1.0}],
                    sampling_steps=(5, 10, 20, 50, 100), etas=(0.0, 1.0), n_eval=500),
        DatasetSpec("gauss1d", {"class": "MLPDenoiser", "args": dict(dim=1, width=64, depth=2, time_dim=32)},
                    _fit_kwargs(steps=2000, batch_size=512, lr=2e-3, warmup=100, cosine_decay=True,
                                ema_decay=0.995),
                    [{"name": "simple"}, {"name": "sa", "K": 2, "lam": 0.5}, {"name": "sa", "K": 2, "lam": 1.0},
                     {"name": "sa", "K": 3, "lam": 1.0}],
                    sampling_steps=(5, 10, 20, 50, 100, 200, 1000), etas=(0.0, 1.0), n_eval=10000,
                    equal_compute=False, var=0.25),
    ])


PRESETS = {"fast": _fast, "paper-toy": _paper_toy}


# ====================================================================== cells
def loss_label(cfg: dict) -> str:
    """``"simple"`` or ``"SA(K=2,lam=1)"``."""
    if cfg["name"] == "simple":
        return "simple"
    return f"SA(K={cfg['K']},lam={cfg['lam']:g})"


def evals_per_sample(cfg: dict) -> int:
    """Network evaluations per training sample: 1 for the simple loss, K for SA(K)."""
    return 1 if cfg["name"] == "simple" else int(cfg["K"])


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class TrainCell:
    """One trained model: (dataset, loss, seed, number of updates). ``recipe`` hashes everything else that
    shapes the weights (network, optimiser settings, schedule, data variance), so a changed recipe never
    reuses a stale checkpoint."""

    dataset: str
    loss: str          # JSON of the Loss config (hashable)
    seed: int
    train_steps: int
    recipe: str

    @property
    def loss_config(self) -> dict:
        return json.loads(self.loss)

    @property
    def key(self) -> str:
        return f"{self.dataset}|{loss_label(self.loss_config)}|n{self.train_steps}|s{self.seed}|{self.recipe}"

    def stem(self, out: Path) -> Path:
        label = loss_label(self.loss_config).replace("(", "_").replace(")", "").replace(",", "_").replace("=", "")
        return out / "models" / self.dataset / f"{label}_n{self.train_steps}_s{self.seed}_{self.recipe}"


def _recipe(ds: DatasetSpec, schedule: dict) -> str:
    train = {k: v for k, v in ds.train.items() if k != "steps"}
    extra = {"var": ds.var} if ds.name == "gauss1d" else {}
    return _digest({"model": ds.model, "train": train, "schedule": schedule, **extra})


def train_cells(config: ExperimentConfig) -> list[TrainCell]:
    """Every model the grid needs: each loss at ``steps`` updates and, with ``equal_compute``, the simple loss
    at ``K * steps`` for every SA(K) (duplicates removed), for every seed."""
    cells = []
    for ds in config.datasets:
        n = int(ds.train["steps"])
        recipe = _recipe(ds, config.schedule)
        budgets = [(cfg, n) for cfg in ds.losses]
        if ds.equal_compute:
            budgets += [(ds.losses[0], n * evals_per_sample(cfg)) for cfg in ds.losses if cfg["name"] == "sa"]
        seen = set()
        for cfg, steps in budgets:
            for seed in config.seeds:
                cell = TrainCell(ds.name, json.dumps(cfg, sort_keys=True), seed, steps, recipe)
                if cell not in seen:
                    seen.add(cell)
                    cells.append(cell)
    return cells


def eval_key(cell: TrainCell, steps: int, eta: float, n_eval: int) -> str:
    return f"{cell.key}|steps{steps}|eta{eta:g}|N{n_eval}"


def _eval_seed(dataset: str, seed: int, steps: int, eta: float, tag: str = "") -> int:
    """A seed that depends only on (dataset, seed, steps, eta): every loss of one seed sees the same x_T and
    noise (paired comparisons). crc32, not hash(): Python salts str hashes per process."""
    return zlib.crc32(f"{dataset}|{seed}|{steps}|{eta:g}|{tag}".encode())


# ====================================================================== worker side
def _data(ds: dict):
    if ds["name"] == "digits":
        return digits()[0]
    if ds["name"] == "gauss1d":
        return GaussianMixture(torch.ones(1), torch.zeros(1, 1), torch.full((1, 1), float(ds["var"])), name="gauss1d")
    return preset(ds["name"])


@functools.lru_cache(maxsize=None)
def _closed_form_a(var: float, K: int, lam: float, schedule_json: str) -> torch.Tensor:
    from .analysis import gaussian_sa_optimum

    return gaussian_sa_optimum(var, K, lam, Schedule.from_config(json.loads(schedule_json)))


def evaluate_model(model, ds: dict, data, schedule: Schedule, seed: int, steps: int, eta: float,
                   loss_cfg: dict | None = None, reference_stats=None) -> dict:
    """Sample ``ds["n_eval"]`` points with ``steps`` sampler steps and ``eta`` (x_T and noise from
    ``_eval_seed(dataset, seed, steps, eta)``) and score them against the true data:

    mixtures: ``mmd`` (unbiased MMD^2 against as many fresh true draws), ``sw`` (sliced W1), ``loglik``
    (exact mean log p); digits: ``fd`` (classifier Frechet distance against all 1797 digits); all:
    ``std_ratio = sqrt(tr Cov(samples) / tr Cov(data))`` and its value at every sampler step ``path_std_ratio``;
    gauss1d also ``std_ratio_closed_form``, the exact ratio of the SA population optimum's linear sampler.
    ``reference_stats``: digits only, ``metrics.digit_feature_stats(data)`` when the caller already has it."""
    from .drift import distribution_drift
    from .metrics import mean_log_likelihood, mmd, sliced_wasserstein

    n_eval = int(ds["n_eval"])
    g = torch.Generator().manual_seed(_eval_seed(ds["name"], seed, steps, eta))
    out: dict = {}
    try:
        dd = distribution_drift(model, data, schedule, steps, n_samples=n_eval, eta=eta, generator=g, with_mmd=False)
    except ValueError as err:  # a diverged sampler (non-finite eps) is a result, not a crash of the grid
        out["error"] = str(err)[:300]
        return out
    x = dd.trajectory.final
    out["std_ratio"] = float(dd.variance_ratio[-1])
    out["path_t"] = dd.t.tolist()
    out["path_std_ratio"] = [round(float(v), 6) for v in dd.variance_ratio]
    if isinstance(data, GaussianMixture) and ds["name"] != "gauss1d":
        g_ref = torch.Generator().manual_seed(_eval_seed(ds["name"], seed, steps, eta, "ref"))
        ref = data.sample(n_eval, generator=g_ref).to(x.dtype)
        out["mmd"] = mmd(x, ref)
        out["sw"] = sliced_wasserstein(x, ref, generator=g_ref)
        out["loglik"] = mean_log_likelihood(x, data)
    elif ds["name"] == "digits":
        from .metrics import digit_feature_stats, digit_frechet_distance

        if reference_stats is None:
            reference_stats = digit_feature_stats(data)
        out["fd"] = digit_frechet_distance(x, reference_stats=reference_stats)
    else:
        from .analysis import linear_sampler_std_ratio

        cfg = loss_cfg or {"name": "simple", "K": 1, "lam": 0.0}
        a = _closed_form_a(float(ds["var"]), int(cfg["K"]), float(cfg["lam"]), json.dumps(ds["schedule"], sort_keys=True))
        out["std_ratio_closed_form"] = linear_sampler_std_ratio(a, float(ds["var"]), schedule, steps, eta=eta)
    return out


def _checkpoint_done(stem: Path, steps: int) -> bool:
    if not checkpoint_exists(stem):
        return False
    try:
        meta = json.loads(checkpoint_paths(stem)[1].read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return int(meta.get("step", -1)) == steps


def _run_job(job: dict) -> dict:
    """Worker: load the finished model or train it (resuming a partial checkpoint), then run the missing
    eval cells. Returns ``{"key", "trained", "train_seconds", "rows", "eval_seconds"}``."""
    torch.set_num_threads(int(job.get("threads", 1)))
    ds, cell = job["dataset"], job["cell"]
    schedule = Schedule.from_config(ds["schedule"])
    data = _data(ds)
    loss_cfg = json.loads(cell["loss"])
    stem = Path(job["stem"])
    trained, t_train = False, 0.0
    if _checkpoint_done(stem, cell["train_steps"]):
        model, _ = load_checkpoint(stem, use_ema=True)
    else:
        net = seeded_model(build_model, cell["seed"], spec=ds["model"])  # the initial weights come from the seed too
        kw = dict(ds["train"])
        kw["steps"] = cell["train_steps"]
        res = fit(net, data, schedule, Loss.from_config(loss_cfg), seed=cell["seed"], checkpoint=stem,
                  checkpoint_every=max(1, cell["train_steps"] // 4), resume=checkpoint_exists(stem), progress=False, threads=1,
                  dataset_name=ds["name"], **kw)
        model, trained, t_train = res.ema, True, res.seconds
    model.eval()
    rows = []
    t0 = time.perf_counter()
    ref_stats = None
    if ds["name"] == "digits" and job["evals"]:  # every eval cell scores against all real digits: their features once
        from .metrics import digit_feature_stats

        ref_stats = digit_feature_stats(data)
    for steps, eta, key in job["evals"]:
        metrics = evaluate_model(model, ds, data, schedule, cell["seed"], steps, eta, loss_cfg,
                                 reference_stats=ref_stats)
        rows.append({"key": key, "dataset": ds["name"], "loss": loss_label(loss_cfg), "loss_name": loss_cfg["name"],
                     "K": int(loss_cfg.get("K", 1)), "lam": float(loss_cfg.get("lam", 0.0)), "seed": cell["seed"],
                     "train_steps": cell["train_steps"],
                     "compute": cell["train_steps"] * evals_per_sample(loss_cfg),
                     "steps": steps, "eta": eta, "n_eval": ds["n_eval"], **metrics})
    return {"key": cell["key"], "trained": trained, "train_seconds": t_train, "rows": rows,
            "eval_seconds": time.perf_counter() - t0}


# ====================================================================== the runner
@dataclass
class ExperimentResult:
    """``rows``: one dict per (train cell, steps, eta) and seed; ``summary``: mean and t-interval per group and
    metric; ``comparison``: paired SA - simple differences per budget; ``stats``: what this run did;
    ``paths``: the files written."""

    rows: list
    summary: list
    comparison: list
    stats: dict
    paths: dict


def _read_rows(path: Path) -> dict:
    """Rows of ``rows.jsonl`` by key; a torn last line (a crash mid-write) is skipped."""
    rows = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "key" in row:
                rows[row["key"]] = row
    return rows


def _append_rows(path: Path, rows: list) -> None:
    # a torn last line (a crash mid-write) must not swallow the next row: start on a fresh line
    torn = path.is_file() and path.stat().st_size > 0 and path.read_bytes()[-1:] != b"\n"
    with open(path, "a", encoding="utf-8") as f:
        if torn:
            f.write("\n")
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def plan_jobs(config: ExperimentConfig, out: Path, done_keys) -> list[dict]:
    """The jobs still to run: one per train cell that lacks a finished checkpoint or any of its eval rows."""
    specs = {d.name: d for d in config.datasets}
    jobs = []
    for cell in train_cells(config):
        ds = specs[cell.dataset]
        evals = [(s, e, eval_key(cell, s, e, ds.n_eval)) for s in ds.sampling_steps for e in ds.etas]
        missing = [ev for ev in evals if ev[2] not in done_keys]
        stem = cell.stem(out)
        trained = _checkpoint_done(stem, cell.train_steps)
        if not missing and trained:
            continue
        ds_dict = {**asdict(ds), "schedule": config.schedule}
        cost = cell.train_steps * evals_per_sample(cell.loss_config) * (0 if trained else 1)
        jobs.append({"dataset": ds_dict, "cell": {**asdict(cell), "key": cell.key}, "stem": str(stem),
                     "evals": missing, "cost": cost * (20 if ds.name == "digits" else 1)})
    # longest first: a long job started last would leave the other worker idle at the end
    jobs.sort(key=lambda j: -j["cost"])
    return jobs


def run_experiment(config: ExperimentConfig | str, out, *, workers: int = 1, progress: bool = True,
                   report: bool = True, level: float = LEVEL) -> ExperimentResult:
    """Run (or resume) the grid into folder ``out`` and write ``rows.csv``, ``summary.csv``, ``comparison.csv``
    and (``report=True``) ``report.html``.

    ``config``: an ``ExperimentConfig`` or a preset name. Finished train cells (a checkpoint at its last step)
    and eval cells (a line in ``rows.jsonl``) are read back, not recomputed. ``workers > 1`` runs the jobs in
    a spawn-context process pool with one torch thread each; ``workers = 1`` runs them in this process."""
    if isinstance(config, str):
        config = preset_config(config)
    if not isinstance(config, ExperimentConfig):
        raise TypeError(f"config must be an ExperimentConfig or a preset name {sorted(PRESETS)}, "
                        f"got {type(config).__name__}")
    workers = check_int("workers", workers, 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "config.json", json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    store = out / "rows.jsonl"
    done = _read_rows(store)
    jobs = plan_jobs(config, out, set(done))
    stats = {"jobs": len(jobs), "trained": 0, "loaded": 0, "evaluated": 0, "reused_rows": 0, "errors": [],
             "train_seconds": 0.0}
    t0 = time.perf_counter()

    def record(res: dict, i: int) -> None:
        _append_rows(store, res["rows"])
        for row in res["rows"]:
            done[row["key"]] = row
        stats["trained" if res["trained"] else "loaded"] += 1
        stats["evaluated"] += len(res["rows"])
        stats["train_seconds"] += res["train_seconds"]
        if progress:
            what = f"trained in {res['train_seconds']:.0f} s" if res["trained"] else "loaded"
            print(f"[{i}/{len(jobs)}] {res['key']}: {what}, {len(res['rows'])} evals in {res['eval_seconds']:.0f} s "
                  f"({time.perf_counter() - t0:.0f} s elapsed)", file=sys.stderr, flush=True)

    if jobs and workers == 1:
        before = torch.get_num_threads()
        try:
            for i, job in enumerate(jobs, 1):
                try:
                    record(_run_job(job), i)
                except Exception as err:  # keep the finished cells; report the failure at the end
                    stats["errors"].append(f"{job['cell']['key']}: {type(err).__name__}: {err}")
        finally:
            torch.set_num_threads(before)
    elif jobs:
        ctx = mp.get_context("spawn")
        # each job sets its own torch thread count (_run_job)
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            futures = {pool.submit(_run_job, job): job for job in jobs}
            for i, fut in enumerate(as_completed(futures), 1):
                try:
                    record(fut.result(), i)
                except Exception as err:
                    stats["errors"].append(f"{futures[fut]['cell']['key']}: {type(err).__name__}: {err}")
    stats["seconds"] = time.perf_counter() - t0

    wanted = {eval_key(c, s, e, d.n_eval) for d in config.datasets for c in train_cells(config)
              if c.dataset == d.name for s in d.sampling_steps for e in d.etas}
    rows = [done[k] for k in sorted(wanted) if k in done]
    stats["reused_rows"] = len(rows) - stats["evaluated"]
    summary, comparison = summarize(rows, level), compare(rows, config, level)
    paths = {"rows": write_csv(out / "rows.csv", rows), "summary": write_csv(out / "summary.csv", summary),
             "comparison": write_csv(out / "comparison.csv", comparison)}
    paths["markdown"] = atomic_write(out / "results.md",
                                     f"# {config.name}: SA vs simple (seeds {', '.join(map(str, config.seeds))})\n\n"
                                     + comparison_markdown(comparison) + "\n" + closed_form_markdown(summary))
    result = ExperimentResult(rows=rows, summary=summary, comparison=comparison, stats=stats, paths=paths)
    if report:
        paths["report"] = write_experiment_report(out / "report.html", result, config)
    atomic_write(out / "stats.json", json.dumps(stats, indent=2) + "\n")
    if stats["errors"]:
        raise RuntimeError(f"{len(stats['errors'])} job(s) failed (the others are saved in {str(out)!r}; rerun to "
                           f"retry only the missing cells): " + "; ".join(stats["errors"][:3]))
    return result


# ====================================================================== tables
def _metric_names(rows) -> list:
    names = []
    for row in rows:
        for k in ("mmd", "sw", "loglik", "fd", "std_ratio", "std_ratio_closed_form"):
            if k in row and k not in names:
                names.append(k)
    return names


GROUP = ("dataset", "loss", "K", "lam", "train_steps", "compute", "steps", "eta")


def summarize(rows: Sequence[dict], level: float = LEVEL) -> list[dict]:
    """The tidy table: one row per (dataset, loss, train_steps, steps, eta, metric) with ``n``, ``mean``,
    ``sd``, ``ci_low``, ``ci_high`` (the t-interval of ``mean_ci``) and the seeds used."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in GROUP), []).append(row)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0][:2]) + kv[0][2:]):
        members = sorted(members, key=lambda r: r["seed"])
        for metric in _metric_names(members):
            vals = [r.get(metric, math.nan) for r in members]
            ci = mean_ci(vals, level)
            out.append({**dict(zip(GROUP, key)), "metric": metric, "n": ci["n"], "mean": ci["mean"], "sd": ci["sd"],
                        "ci_low": ci["low"], "ci_high": ci["high"], "level": level,
                        "seeds": " ".join(str(r["seed"]) for r in members if math.isfinite(r.get(metric, math.nan)))})
    return out


def _score(row: dict, metric: str) -> float:
    if metric == "std_dev":
        return abs(row.get("std_ratio", math.nan) - 1.0)
    return row.get(metric, math.nan)


def compare(rows: Sequence[dict], config: ExperimentConfig | None = None, level: float = LEVEL) -> list[dict]:
    """SA against simple, paired by seed: for each SA loss, budget (``equal_steps``: the simple model with as
    many updates; ``equal_compute``: the one with K times as many), steps, eta and metric, the differences
    ``d_i = m_SA,i - m_simple,i`` with their mean and t-interval, and a verdict: ``SA better`` / ``SA worse``
    when the interval excludes 0 (in the metric's good direction; ``std_dev = |std_ratio - 1|``), else
    ``no clear difference``."""
    by = {}
    for row in rows:
        by[(row["dataset"], row["loss"], row["train_steps"], row["steps"], row["eta"], row["seed"])] = row
    out = []
    sa_groups = sorted({(r["dataset"], r["loss"], r["K"], r["train_steps"], r["steps"], r["eta"])
                        for r in rows if r["loss_name"] == "sa"}, key=str)
    for dataset, loss, K, n, steps, eta in sa_groups:
        for budget, n_simple in (("equal_steps", n), ("equal_compute", K * n)):
            seeds = sorted({r["seed"] for r in rows if (r["dataset"], r["loss"], r["train_steps"], r["steps"],
                                                        r["eta"]) == (dataset, loss, n, steps, eta)})
            pairs = [(by[(dataset, loss, n, steps, eta, s)], by.get((dataset, "simple", n_simple, steps, eta, s)))
                     for s in seeds]
            pairs = [(a, b) for a, b in pairs if b is not None]
            if not pairs:
                continue
            metrics = [m for m in ("mmd", "sw", "loglik", "fd") if m in pairs[0][0]] + ["std_dev"]
            for metric in metrics:
                sa_v = [_score(a, metric) for a, _ in pairs]
                simple_v = [_score(b, metric) for _, b in pairs]
                ci = mean_ci([x - y for x, y in zip(sa_v, simple_v)], level)
                sign = DIRECTIONS[metric]
                if not math.isfinite(ci["low"]):
                    verdict = "undetermined"
                elif (sign > 0 and ci["low"] > 0) or (sign < 0 and ci["high"] < 0):
                    verdict = "SA better"
                elif (sign > 0 and ci["high"] < 0) or (sign < 0 and ci["low"] > 0):
                    verdict = "SA worse"
                else:
                    verdict = "no clear difference"
                out.append({"dataset": dataset, "sa_loss": loss, "budget": budget, "sa_train_steps": n,
                            "simple_train_steps": n_simple, "steps": steps, "eta": eta, "metric": metric,
                            "simple_mean": mean_ci(simple_v, level)["mean"], "sa_mean": mean_ci(sa_v, level)["mean"],
                            "diff_mean": ci["mean"], "diff_low": ci["low"], "diff_high": ci["high"], "n": ci["n"],
                            "seeds": " ".join(str(a["seed"]) for a, _ in pairs), "verdict": verdict})
    return out


_COLUMN_ORDER = ("dataset", "loss", "sa_loss", "loss_name", "K", "lam", "budget", "seed", "train_steps", "compute",
                 "sa_train_steps", "simple_train_steps", "steps", "eta", "n_eval", "metric", "n", "mean", "sd",
                 "ci_low", "ci_high", "level", "simple_mean", "sa_mean", "diff_mean", "diff_low", "diff_high",
                 "verdict", "seeds", "mmd", "sw", "loglik", "fd", "std_ratio", "std_ratio_closed_form", "error", "key")


def write_csv(path, rows: Sequence[dict]) -> Path:
    """Write ``rows`` (dicts) as CSV with the union of their scalar keys as columns (list values, such as the
    per-step path, are left to ``rows.jsonl``); written atomically."""
    path = Path(path)
    keys = {k for r in rows for k, v in r.items() if not isinstance(v, (list, dict))}
    # a fixed column order (known columns first, then the rest sorted): the same rows give the same file
    cols = [k for k in _COLUMN_ORDER if k in keys] + sorted(keys - set(_COLUMN_ORDER))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in cols})
    return atomic_write(path, buf.getvalue())


def _fmt(v: float) -> str:
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "n/a"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def comparison_markdown(comparison: Sequence[dict], metrics=("mmd", "fd", "std_dev")) -> str:
    """A Markdown table of the paired comparisons, both budgets side by side: per dataset, eta, sampling steps
    and metric, the simple and SA means, ``SA - simple`` with its t-interval and the verdict."""
    rows = [r for r in comparison if r["metric"] in metrics]
    by = {}
    for r in rows:
        by.setdefault((r["dataset"], r["sa_loss"], r["eta"], r["metric"], r["steps"]), {})[r["budget"]] = r
    head = ("| dataset | SA loss | eta | steps | metric | simple, n updates | SA | SA - simple [95% CI] | verdict "
            "| simple, K n updates | SA - simple [95% CI] | verdict |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (ds, loss, eta, metric, steps), b in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2],
                                                                                 kv[0][3], kv[0][4])):
        e, c = b.get("equal_steps"), b.get("equal_compute")
        cells = [ds, loss, f"{eta:g}", str(steps), metric]
        cells += [_fmt(e["simple_mean"]), _fmt(e["sa_mean"]),
                  f"{_fmt(e['diff_mean'])} [{_fmt(e['diff_low'])}, {_fmt(e['diff_high'])}]", e["verdict"]] if e else ["", "", "", ""]
        cells += [_fmt(c["simple_mean"]), f"{_fmt(c['diff_mean'])} [{_fmt(c['diff_low'])}, {_fmt(c['diff_high'])}]",
                  c["verdict"]] if c else ["-", "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def closed_form_markdown(summary: Sequence[dict]) -> str:
    """The 1-D study as Markdown: measured std ratio (mean [95% CI] over seeds) against the closed form."""
    meas = {(r["loss"], r["eta"], r["steps"]): r for r in summary
            if r["dataset"] == "gauss1d" and r["metric"] == "std_ratio"}
    exact = {(r["loss"], r["eta"], r["steps"]): r["mean"] for r in summary
             if r["dataset"] == "gauss1d" and r["metric"] == "std_ratio_closed_form"}
    lines = ["| loss | eta | steps | measured std ratio [95% CI] | closed form |", "|---|---|---|---|---|"]
    for key in sorted(meas, key=lambda k: (k[0] != "simple", k[0], k[1], k[2])):
        m = meas[key]
        lines.append(f"| {key[0]} | {key[1]:g} | {key[2]} | {_fmt(m['mean'])} [{_fmt(m['ci_low'])}, "
                     f"{_fmt(m['ci_high'])}] | {_fmt(exact.get(key, math.nan))} |")
    return "\n".join(lines) + "\n"


# ====================================================================== the HTML report (plotly, lazily)
_LABELS = {"mmd": "MMD^2 (lower is better)", "sw": "sliced W1 (lower is better)",
           "loglik": "mean log-likelihood (higher is better)", "fd": "digit Frechet distance (lower is better)",
           "std_ratio": "std ratio, samples / data (1 is right)"}


def _series_name(row: dict) -> str:
    return f"{row['loss']}, {row['train_steps']} updates"


def _metric_figure(summary, dataset: str, metric: str, eta: float, title: str):
    from .viz import curves_figure

    sel = [r for r in summary if r["dataset"] == dataset and r["metric"] == metric and r["eta"] == eta]
    steps = sorted({r["steps"] for r in sel})
    names = sorted({_series_name(r) for r in sel}, key=lambda s: (not s.startswith("simple"), s))
    curves, bands = {}, {}
    for name in names:
        by_steps = {r["steps"]: r for r in sel if _series_name(r) == name}
        curves[name] = [by_steps[s]["mean"] if s in by_steps else math.nan for s in steps]
        bands[name] = ([by_steps[s]["ci_low"] if s in by_steps else math.nan for s in steps],
                       [by_steps[s]["ci_high"] if s in by_steps else math.nan for s in steps])
    return curves_figure(steps, curves, title=title, xlabel="sampling steps", ylabel=_LABELS.get(metric, metric),
                         bands=bands, log_x=True, reference=1.0 if metric == "std_ratio" else None)


def _path_figure(rows, dataset: str, eta: float, steps: int):
    """The std ratio at every sampler step (mean over seeds), one curve per model."""
    from .viz import curves_figure

    sel = [r for r in rows if r["dataset"] == dataset and r["eta"] == eta and r["steps"] == steps and "path_t" in r]
    if not sel:
        return None
    t = sel[0]["path_t"]
    curves = {}
    for name in sorted({_series_name(r) for r in sel}, key=lambda s: (not s.startswith("simple"), s)):
        paths = [r["path_std_ratio"] for r in sel if _series_name(r) == name]
        curves[name] = [sum(p[j] for p in paths) / len(paths) for j in range(len(t))]
    return curves_figure(t, curves, title=f"{dataset}: std ratio along the path ({steps} steps, eta={eta:g})",
                         xlabel="timestep t (the sampler runs right to left; -1: the final samples)",
                         ylabel="std(x_t) / std under q(x_t)", reverse_x=True, reference=1.0)


def _closed_form_figure(summary, eta: float):
    """gauss1d: measured std ratio (mean and t-interval over seeds) with the closed form as dashed lines."""
    import plotly.graph_objects as go

    from .viz import color_for

    fig = _metric_figure(summary, "gauss1d", "std_ratio", eta,
                         f"1-D Gaussian: measured std ratio (bands: 95% t-interval) vs closed form (dashed), eta={eta:g}")
    sel = [r for r in summary if r["dataset"] == "gauss1d" and r["metric"] == "std_ratio_closed_form"
           and r["eta"] == eta]
    for i, loss in enumerate(sorted({r["loss"] for r in sel}, key=lambda s: (s != "simple", s))):
        pts = sorted((r["steps"], r["mean"]) for r in sel if r["loss"] == loss)
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines",
                                 name=f"{loss}, closed form", line=dict(dash="dash", width=1.6,
                                                                        color=color_for(loss, i))))
    return fig


def write_experiment_report(path, result: ExperimentResult, config: ExperimentConfig) -> Path:
    """The HTML report: per dataset, each metric against sampling steps (mean over seeds with the 95%
    t-interval as a band) for every eta, the std ratio along the path, the 1-D closed form overlaid on the
    measured std ratios, and the comparison table."""
    from .report import Section, write_report

    summary, rows = result.summary, result.rows
    secs = []
    intro = (f"Simple loss against the sequence-aware (SA) loss, {len(config.seeds)} seeds "
             f"({', '.join(map(str, config.seeds))}). Bands are 95% Student-t intervals over seeds. "
             "Each SA model is compared with a simple model of as many updates (equal steps) and with one of K "
             "times as many updates (equal compute: SA evaluates the network K times per sample).")
    secs.append(Section("The experiment", intro))
    for ds in config.datasets:
        figs = []
        metrics = [m for m in _metric_names([r for r in rows if r["dataset"] == ds.name])
                   if m != "std_ratio_closed_form"]
        if ds.name == "gauss1d":
            figs = [_closed_form_figure(summary, eta) for eta in ds.etas]
            prose = (f"x0 ~ N(0, {ds.var:g}). The networks are trained through the real losses; the dashed lines "
                     "are the exact std ratio of the linear sampler at the population optimum of "
                     "L_simple + lam L_sa (`analysis.gaussian_sa_optimum`). Below 1 the sampler shrinks the "
                     "distribution, above 1 it over-disperses.")
        else:
            for metric in metrics:
                for eta in ds.etas:
                    figs.append(_metric_figure(summary, ds.name, metric, eta,
                                               f"{ds.name}: {metric} vs sampling steps (eta={eta:g})"))
            for eta in ds.etas:
                for steps in (min(ds.sampling_steps), max(ds.sampling_steps)):
                    fig = _path_figure(rows, ds.name, eta, steps)
                    if fig is not None:
                        figs.append(fig)
            prose = (f"{ds.name}: {ds.model['class']} {ds.model.get('args', {})}, {ds.train['steps']} updates "
                     f"(batch {ds.train.get('batch_size')}), {ds.n_eval} samples per evaluation.")
        table = [r for r in result.comparison if r["dataset"] == ds.name]
        secs.append(Section(ds.name, prose, figure=figs, table=table or None))
    return write_report(path, secs, title=f"SA vs simple loss: {config.name}",
                        subtitle="seqdiff_kit experiment runner",
                        settings={"preset": config.name, "seeds": list(config.seeds),
                                  "schedule": json.dumps(config.schedule), "jobs run": result.stats.get("jobs"),
                                  "models trained this run": result.stats.get("trained")})


# ====================================================================== command line
def add_experiment_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``experiment`` on an argparse ``subparsers`` object (``seqdiff experiment ...``)."""
    p = subparsers.add_parser("experiment", help="run the simple-vs-SA grid (seeds, steps, eta, budgets)",
                              description="Run (or resume) the simple-vs-SA comparison and write CSV + HTML.")
    p.add_argument("--preset", default="paper-toy", choices=sorted(PRESETS))
    p.add_argument("--out", default=None, help="output folder (default runs/<preset>)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run_experiment_cli)
    return p


def run_experiment_cli(args) -> int:
    out = args.out or os.path.join("runs", args.preset)
    res = run_experiment(args.preset, out, workers=args.workers, progress=not args.quiet)
    print(f"{len(res.rows)} rows; trained {res.stats['trained']} models, evaluated {res.stats['evaluated']} cells "
          f"in {res.stats['seconds']:.0f} s")
    for name, p in res.paths.items():
        print(f"{name}: {p}")
    return 0


def main(argv=None) -> int:
    """``python -m seqdiff_kit.experiments [--preset ...] [--out ...] [--workers ...]`` (the ``seqdiff
    experiment`` subcommand without the CLI module)."""
    parser = argparse.ArgumentParser(prog="python -m seqdiff_kit.experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    add_experiment_parser(sub)
    args = parser.parse_args(["experiment", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
