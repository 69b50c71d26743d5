"""Fixing few-step sampling from both sides, judged against the exact ground truth of a Gaussian mixture.

A *cell* is (model, fix, spacing, steps, seed). ``model``: a learned network (the shipped simple-loss, SA and Input
Perturbation networks) or ``ideal``, the exact eps*, whose errors are the sampler's alone. ``fix``: a solver of
``solvers.SOLVERS`` (``analytic_dpm`` with Gamma estimated from that model on fresh data draws, ``exact_cov`` the
mixture's exact posterior covariance, the ideal denoiser only unless asked), or ``<solver>+es`` (``ES_FIXES``):
that deterministic solver with Epsilon Scaling (Ning et al., ICLR 2024), a constant ``c`` of ``ES_CANDIDATES``
fitted per (model, solver, spacing, steps) by ``drift.fit_eps_scale`` on starting points held apart from every
evaluation seed (``ES_FIT_SEED``), kept in ``settings["eps_scales"]`` (not the paper's ``lambda_t = b + k t``,
tuned by FID on images). All cells of one seed start from the same ``x_T``; the stochastic fixes share the per-step
noise of each (spacing, steps).

Every sample set is scored by ``evaluate.Scorer`` against that seed's reference draw; the tables show
``REPORTED``, each judged two-sided by its distance to its target (``metrics.TARGETS``) where it has one
(``JUDGED``). The data's own level: the same metrics for ``data_draws`` fresh data draws against the reference. A
cell is *within the data's level* when its mean over its k seeds lies in the band of a mean of k data draws
(``stats.mean_band``), for ``ONE_SIDED`` quantities below its upper end. The cell closest to the data on the
grid's own seeds is flattered by the choice: ``rerun`` samples it on fresh seeds, and only that counts as within.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from ._io import atomic_write
from ._validate import check_choice, check_int, check_type
from .data import CHECKPOINT_DIR, GaussianMixture, ring8
from .denoisers import IdealDenoiser
from .drift import exact_flow, fit_eps_scale, reference_distance  # exact_flow: notebook 07 imports it from here
from .evaluate import METRICS, TAIL, Scorer, applicable, mmd_bandwidths  # TAIL: notebook 07 reads it here
from .metrics import target_distance
from .recipes import load_shipped
from .samplers import make_noise
from .seed_study import format_interval, format_value
from .schedule import SPACINGS, Schedule
from .solvers import SOLVERS, STOCHASTIC, model_calls, options_from_data, sample
from .stats import distance_difference, mean_band, mean_ci

IDEAL = "ideal"
ES = "+es"  # a deterministic solver's name + ES: that solver with a fitted Epsilon Scaling
ODE_SOLVERS = ("ddim", "dpmpp_2m", "heun")  # the deterministic solvers, whose runs follow the probability flow
ES_FIXES = tuple(f + ES for f in ODE_SOLVERS)
FIXES = ("ddim", "ddim" + ES, "ddpm", "dpmpp_2m", "heun", "analytic_dpm", "exact_cov")
STEPS = (5, 10, 20, 50)
JUDGED = ("mmd", "loglik_gap", "std_ratio", "coverage_tv", "spread_radial_mad", "spread_tangential_mad")
REPORTED = JUDGED + ("spread_radial", "spread_tangential", "off_mode_share", "tail_share")
FLOW_FIXES = ("ddim", "ddim" + ES, "dpmpp_2m", "heun")  # the runs that follow the probability flow, kept flows
ES_CANDIDATES = tuple(round(0.9 + 0.01 * i, 2) for i in range(16))  # 0.90 ... 1.05: shrink, or undo a shrink
ES_FIT_SEED = 987_654_321  # the held-apart starting points of the fit; never an evaluation seed
ONE_SIDED = ("mmd", "coverage_tv", "off_mode_share")  # quantities that data draws push only upwards
METRIC_TITLES = {m: METRICS[m].title for m in REPORTED}


# ---------------------------------------------------------------------- scoring
def data_level(scorer: Scorer, n_points: int, draws: int = 50, seed: int = 0) -> list[dict]:
    """The metrics (``scorer``'s) of ``draws`` fresh data draws of ``n_points`` against as many independent
    reference draws: the level that sampling noise alone reaches."""
    n_points, draws = check_int("n_points", n_points, 2), check_int("draws", draws, 2)
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(draws):
        ref, own = scorer.data.sample(n_points, g), scorer.data.sample(n_points, g)
        out.append({"draw": k, **scorer.against(ref).score(own)})
    return out


# ---------------------------------------------------------------------- Epsilon Scaling as a fix
def base_solver(fix: str) -> str:
    """The solver of ``solvers.SOLVERS`` that a fix runs (``"ddim+es"`` runs ``"ddim"``)."""
    return fix[:-len(ES)] if fix.endswith(ES) else fix


def es_key(model: str, fix: str, spacing: str, steps: int) -> str:
    """The key of a fitted Epsilon Scaling factor in ``settings["eps_scales"]`` (JSON keys are strings)."""
    return f"{model}|{fix}|{spacing}|{steps}"


def _fit_scales(all_models: Mapping[str, Callable], fixes, grids: Mapping[tuple, torch.Tensor],
                mixture: GaussianMixture, schedule: Schedule, n_points: int, given: Mapping[str, float] | None,
                say: Callable[[str], None]) -> dict[str, float]:
    """``{es_key: c}`` for every ``+es`` fix, model and (spacing, steps): from ``given``, else fitted to the exact
    flow's end on ``n_points`` starting points drawn from ``ES_FIT_SEED``."""
    keys = [(name, fix, sp, n) for name in all_models for fix in fixes if fix.endswith(ES) for sp, n in grids]
    out = {es_key(*k): float(given[es_key(*k)]) for k in keys if given and es_key(*k) in given}
    todo = [k for k in keys if es_key(*k) not in out]
    if todo:
        x_fit = torch.randn(n_points, mixture.dim, generator=torch.Generator().manual_seed(ES_FIT_SEED))
        end = exact_flow(mixture, schedule, x_fit, timesteps=[schedule.T - 1]).final
        for name, fix, sp, n in todo:
            out[es_key(name, fix, sp, n)] = fit_eps_scale(all_models[name], x_fit, end, schedule, n, ES_CANDIDATES,
                                                          solver=base_solver(fix), spacing=sp).c
        say(f"Epsilon Scaling fitted for {len(todo)} cells on held-apart starting points")
    return out


# ---------------------------------------------------------------------- the grid
@dataclass
class FixGrid:
    """Everything ``run_grid`` measured: ``rows`` (one dict per cell and seed: its key, ``model_calls`` and the
    metrics), ``data`` (``data_level``'s draws), ``trajectories[(model, fix, spacing, steps)]`` (the first seed's
    runs when kept, from ``x_T``) and ``settings`` (the grid's arguments). A stored grid (``load_grid``) holds
    ``finals`` and ``flow`` instead of runs."""

    rows: list
    data: list
    scorer: Scorer | None = None
    schedule: Schedule | None = None
    x_T: torch.Tensor | None = None
    trajectories: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    finals: dict = field(default_factory=dict)
    flow: dict = field(default_factory=dict)
    flow_end: torch.Tensor | None = None
    _summary: tuple | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_rows(cls, rows: list, data: list, settings: dict | None = None) -> "FixGrid":
        """The tables of a grid saved as JSON rows: no samples, no reference."""
        return cls(rows=list(rows), data=list(data), settings=dict(settings or {}))

    @property
    def steps(self) -> list[int]:
        return sorted({r["steps"] for r in self.rows})

    def final(self, model: str, fix: str, spacing: str, steps: int) -> torch.Tensor:
        """The first seed's final samples of a cell: from its kept run, or from ``finals`` (a stored grid)."""
        key = (model, fix, spacing, steps)
        if key in self.trajectories:
            return self.trajectories[key].final
        if key in self.finals:
            return self.finals[key]
        raise ValueError(f"no samples of the cell {key}: run the grid with keep_trajectories=True")

    def flow_distance(self, mixture: GaussianMixture, fixes: Sequence[str] = FLOW_FIXES,
                      spacing: str = "trailing") -> dict[tuple, torch.Tensor]:
        """``{(model, fix, steps): d}``: ``drift.reference_distance`` of each kept run of ``fixes`` at ``spacing``
        from the exact flow of ``x_T`` at the runs' timesteps; kept in ``flow``, the flow's end in ``flow_end``."""
        keys = [(m, f, n) for (m, f, sp, n) in self.trajectories if f in fixes and sp == spacing]
        missing = [k for k in keys if (*k, spacing) not in self.flow]
        if missing:
            runs = [self.trajectories[(m, f, spacing, n)] for m, f, n in missing]
            visited = sorted({int(t) for tr in runs for t in tr.timesteps}, reverse=True)
            path = exact_flow(mixture, self.schedule, self.x_T, timesteps=visited)
            self.flow_end = path.final
            for (m, f, n), tr in zip(missing, runs):
                self.flow[(m, f, n, spacing)] = reference_distance(tr, path)[1]
        out = {k[:3]: v for k, v in self.flow.items() if k[1] in fixes and k[3] == spacing}
        if not out:
            raise ValueError(f"no kept runs of {list(fixes)} at spacing {spacing!r}: run the grid with "
                             f"keep_trajectories=True")
        return out

    def cells(self, steps: int | None = None) -> list[tuple]:
        """The distinct ``(model, fix, spacing)`` of the grid (at ``steps`` when given), in run order."""
        return list(dict.fromkeys((r["model"], r["fix"], r["spacing"]) for r in self.rows
                                  if steps is None or r["steps"] == steps))

    def values(self, metric: str, model: str, fix: str, spacing: str, steps: int) -> dict[int, float]:
        """``{seed: value}`` of one metric in one cell."""
        return {r["seed"]: r[metric] for r in self.rows
                if (r["model"], r["fix"], r["spacing"], r["steps"]) == (model, fix, spacing, steps)}

    def level(self, metric: str, n: int = 1, level: float = 0.95) -> dict:
        """The data's own band for a mean over ``n`` seeds (``stats.mean_band`` of the draws; ``low = -inf`` for
        ``ONE_SIDED``), with the draws' ``mean`` and ``n``."""
        band = mean_band([d[metric] for d in self.data], n, level)
        low = -math.inf if metric in ONE_SIDED else band["low"]
        return {"low": low, "high": band["high"], "mean": band["mean"], "n": n}

    @property
    def n_seeds(self) -> int:
        return len({r["seed"] for r in self.rows})

    @property
    def metrics(self) -> list[str]:
        """The ``REPORTED`` metrics the rows hold (the spreads only for a ring); ``judged``: those of ``JUDGED``."""
        return [m for m in REPORTED if self.rows and m in self.rows[0]]

    @property
    def judged(self) -> list[str]:
        return [m for m in JUDGED if m in self.metrics]

    def cell(self, model: str, fix: str, spacing: str, steps: int) -> dict[str, dict]:
        """``{metric: summary row}`` of one cell (95% intervals)."""
        rows = {r["metric"]: r for r in self.summary()
                if (r["model"], r["fix"], r["spacing"], r["steps"]) == (model, fix, spacing, steps)}
        if not rows:
            raise ValueError(f"no cell ({model!r}, {fix!r}, {spacing!r}, {steps}) in this grid")
        return rows

    def summary(self, level: float = 0.95) -> list[dict]:
        """Per cell, step count and metric: ``n, mean, low, high`` (``mean_ci`` over seeds), ``within`` (the mean
        lies in ``level(metric, n)``; never when no seed gave a value), ``distance`` and ``model_calls``."""
        key = (level, len(self.rows))
        if self._summary is not None and self._summary[0] == key:
            return self._summary[1]
        out = []
        for steps in self.steps:
            for model, fix, spacing in self.cells(steps):
                for metric in self.metrics:
                    vals = self.values(metric, model, fix, spacing, steps)
                    ci = mean_ci(list(vals.values()), level)
                    band = self.level(metric, max(ci["n"], 1))
                    out.append({"model": model, "fix": fix, "spacing": spacing, "steps": steps, "metric": metric,
                                "n": ci["n"], "mean": ci["mean"], "low": ci["low"], "high": ci["high"],
                                "within": ci["n"] > 0 and band["low"] <= ci["mean"] <= band["high"],
                                "distance": target_distance(metric, ci["mean"]) if metric in JUDGED else math.nan,
                                "model_calls": model_calls(base_solver(fix), steps)})
        self._summary = (key, out)
        return out

    def closest(self, steps: int, metric: str, models: Sequence[str] | None = None) -> dict:
        """The summary row at ``steps`` whose mean is closest to the metric's target, among ``models`` (default:
        all); an undefined (NaN) mean only when every cell's is."""
        check_choice("metric", metric, self.judged)
        rows = [r for r in self.summary() if r["steps"] == steps and r["metric"] == metric
                and (models is None or r["model"] in models)]
        if not rows:
            raise ValueError(f"no cell at steps={steps} for models {models}")
        return min(rows, key=lambda r: (math.isnan(r["distance"]), r["distance"]))

    def paired(self, metric: str, a: tuple, b: tuple, steps: int, level: float = 0.95) -> dict:
        """``a`` minus ``b`` (each ``(model, fix, spacing)``) in the distance to the target, paired by seed
        (``stats.distance_difference``; negative: ``a`` is closer)."""
        check_choice("metric", metric, self.judged)
        return distance_difference(metric, self.values(metric, *a, steps), self.values(metric, *b, steps), level)


def run_grid(models: Mapping[str, Callable], mixture: GaussianMixture, schedule: Schedule, *,
             steps: Sequence[int] = STEPS, fixes: Sequence[str] = FIXES, spacings: Sequence[str] = ("trailing",),
             seeds: Sequence[int] = (0, 1, 2), n_points: int = 2000, n_gamma: int = 4000, ideal: bool = True,
             exact_cov_models: Sequence[str] = (IDEAL,), data_draws: int = 50, keep_trajectories: bool = False,
             scorer: Scorer | None = None, eps_scales: Mapping[str, float] | None = None,
             log: Callable[[str], None] | None = None) -> FixGrid:
    """Sample every (model, fix, spacing, steps) for every seed and score it (see the module docstring).

    ``models``: name -> learned model (``ideal`` adds the ideal denoiser); ``exact_cov`` runs only for
    ``exact_cov_models``. Randomness, from each seed: ``x_T``, the reference draw, then the noise of each
    (spacing, steps); Gamma's draws from a generator of the same seed, restarted for every model.
    ``keep_trajectories`` keeps the first seed's runs. ``eps_scales`` (``{es_key: c}``): given Epsilon Scaling
    factors, the others fitted (``ES_FIT_SEED`` must then not be among ``seeds``)."""
    check_type("mixture", mixture, GaussianMixture)
    check_type("schedule", schedule, Schedule)
    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a dict of name -> model, got {type(models).__name__}")
    steps = tuple(sorted({check_int("steps", s, 1, schedule.T) for s in steps}))
    fixes = tuple(check_choice("fixes", f, (*SOLVERS, *ES_FIXES)) for f in fixes)
    spacings = tuple(check_choice("spacings", s, SPACINGS) for s in spacings)
    seeds = tuple(check_int("seeds", s) for s in seeds)
    if not steps or not fixes or not spacings or not seeds:
        raise ValueError("steps, fixes, spacings and seeds must each hold at least one value")
    if ES_FIT_SEED in seeds and any(f.endswith(ES) for f in fixes):
        raise ValueError(f"seeds must not hold {ES_FIT_SEED} (ES_FIT_SEED): the Epsilon Scaling fixes are fitted on "
                         f"its starting points, which no evaluation may use")
    n_points, n_gamma = check_int("n_points", n_points, 2), check_int("n_gamma", n_gamma, 2)
    all_models = dict(models)
    if ideal:
        all_models[IDEAL] = IdealDenoiser(mixture, schedule)
    if not all_models:
        raise ValueError("models must hold at least one model (or ideal=True)")
    say = log or (lambda msg: None)
    t0 = time.perf_counter()
    grids = {(sp, n): schedule.timesteps(n, sp) for sp in spacings for n in steps}
    visited = sorted({int(t) for ts in grids.values() for t in ts}, reverse=True)
    scales = _fit_scales(all_models, fixes, grids, mixture, schedule, n_points, eps_scales, say)

    rows, kept, first_x_T = [], {}, None
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        x_T = torch.randn(n_points, mixture.dim, generator=g)
        ref = mixture.sample(n_points, g)
        seed_scorer = Scorer(mixture, ref, seed=seed) if scorer is None else scorer.against(ref, seed=seed)
        scorer = scorer or seed_scorer  # the metrics, bandwidths and tail quantile of every seed and data draw
        noises = {(sp, n): make_noise(n, x_T.shape, g) for sp, n in grids}
        first_x_T = x_T if first_x_T is None else first_x_T
        for name, model in all_models.items():
            for fix in fixes:
                if fix == "exact_cov" and name not in exact_cov_models:
                    continue
                solver = base_solver(fix)
                opts = options_from_data(solver, model, mixture, schedule, visited, n_gamma=n_gamma,
                                         generator=torch.Generator().manual_seed(seed))
                for (spacing, n), ts in grids.items():
                    keep = keep_trajectories and seed == seeds[0]
                    tr = sample(model, x_T, schedule, timesteps=ts, solver=solver,
                                noise=noises[(spacing, n)] if solver in STOCHASTIC else None,
                                record_every=1 if keep else n, eps_scale=scales.get(es_key(name, fix, spacing, n)),
                                **opts)
                    if keep:
                        kept[(name, fix, spacing, n)] = tr
                    rows.append({"model": name, "fix": fix, "spacing": spacing, "steps": n, "seed": seed,
                                 "model_calls": model_calls(solver, n), **seed_scorer.score(tr.final)})
            done = seeds.index(seed) * len(all_models) + list(all_models).index(name) + 1
            say(f"[{done}/{len(seeds) * len(all_models)} done] seed {seed}: {name} "
                f"({time.perf_counter() - t0:.0f} s elapsed)")
    data = data_level(scorer, n_points, data_draws, seed=10_000 + seeds[0])
    settings = {"models": list(all_models), "fixes": list(fixes), "spacings": list(spacings), "steps": list(steps),
                "seeds": list(seeds), "n_points": n_points, "n_gamma": n_gamma, "data_draws": data_draws,
                "schedule": f"{schedule.name}, T={schedule.T}", "mixture": mixture.name,
                "exact_cov_models": list(exact_cov_models), "eps_scales": scales}
    return FixGrid(rows=rows, data=data, scorer=scorer, schedule=schedule, x_T=first_x_T, trajectories=kept,
                   settings=settings)


# ---------------------------------------------------------------------- the closest cell, confirmed on fresh seeds
def closest_cells(grid: FixGrid, metrics: Sequence[str] | None = None,
                  models: Sequence[str] | None = None) -> list[tuple]:
    """The distinct ``(model, fix, spacing, steps)`` that ``FixGrid.closest`` picks (among ``models``) at each
    step count for each judged metric (default: all the grid holds), in the order first picked."""
    metrics = grid.judged if metrics is None else metrics
    best = [grid.closest(steps, m, models=models) for steps in grid.steps for m in metrics]
    return list(dict.fromkeys((b["model"], b["fix"], b["spacing"], b["steps"]) for b in best))


def fresh_seeds(grid: FixGrid, count: int = 3) -> tuple[int, ...]:
    """``count`` seeds after the grid's largest (never ``ES_FIT_SEED``): seeds it did not use."""
    count = check_int("count", count, 1)
    out, s = [], max(r["seed"] for r in grid.rows)
    while len(out) < count:
        s += 1
        if s != ES_FIT_SEED:
            out.append(s)
    return tuple(out)


def rerun(grid: FixGrid, models: Mapping[str, Callable], mixture: GaussianMixture, schedule: Schedule,
          cells: Sequence[tuple], *, seeds: Sequence[int] | None = None, scorer: Scorer | None = None,
          log: Callable[[str], None] | None = None) -> FixGrid:
    """``cells`` (``(model, fix, spacing, steps)``, e.g. ``closest_cells(grid)``) sampled again on ``seeds``
    (default ``fresh_seeds(grid)``) the grid did not use, with its ``n_points``, ``n_gamma`` and Epsilon Scaling
    factors. The result holds those rows and the grid's data draws, so its ``summary`` judges each fresh mean by
    the same data level. ``models``: the learned networks by the grid's names; ``scorer``: a template."""
    seeds = fresh_seeds(grid) if seeds is None else tuple(check_int("seeds", s) for s in seeds)
    used = sorted({r["seed"] for r in grid.rows} & set(seeds))
    if used:
        raise ValueError(f"seeds must be fresh: {used} picked the cells already (grid seeds "
                         f"{sorted({r['seed'] for r in grid.rows})})")
    st, rows = grid.settings, []
    for model, fix, spacing, steps in cells:
        if model != IDEAL and model not in models:
            raise ValueError(f"models must hold the network {model!r} of cell {(model, fix, spacing, steps)}")
        learned = {} if model == IDEAL else {model: models[model]}
        rows += run_grid(learned, mixture, schedule, steps=(steps,), fixes=(fix,), spacings=(spacing,),
                         seeds=seeds, n_points=st["n_points"], n_gamma=st["n_gamma"], ideal=model == IDEAL,
                         exact_cov_models=(model,), data_draws=2, scorer=scorer,
                         eps_scales=st.get("eps_scales"), log=log).rows
    return FixGrid.from_rows(rows, grid.data, {**st, "seeds": list(seeds), "rerun": [list(c) for c in cells]})


def confirmed(grid: FixGrid, fresh: FixGrid | None, steps: int, metric: str,
              models: Sequence[str] | None = None) -> dict | None:
    """The summary row on ``fresh``'s seeds of the cell ``grid.closest(steps, metric, models)`` picked (None when
    ``fresh`` did not re-run it)."""
    best = grid.closest(steps, metric, models=models)
    key = (best["model"], best["fix"], best["spacing"], steps)
    if fresh is None or key[:3] not in fresh.cells(steps):
        return None
    return fresh.cell(*key)[metric]


# ---------------------------------------------------------------------- a grid computed once (notebook 07's fast path)
LESSON_GRID = CHECKPOINT_DIR / "ring8_lesson07"  # .json + .safetensors, written by scripts/make_lesson_grid.py
# notebook 07's fast path: one seed, 500 points (its parameters cell); the same grid for every student
LESSON_KWARGS = {"steps": STEPS, "spacings": ("trailing", "quad", "karras"), "seeds": (0,), "n_points": 500,
                 "n_gamma": 500, "data_draws": 20, "keep_trajectories": True}


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def grid_call(models: Mapping[str, torch.nn.Module], mixture: GaussianMixture, schedule: Schedule,
              **kwargs) -> dict:
    """What a grid is computed from, as JSON: the networks' and the mixture's ``_digest``, the schedule's config,
    the scorer's metrics and MMD bandwidths and ``run_grid``'s other arguments: equal calls give the same grid.
    Computed values (a named schedule's betas, the bandwidths) enter by definition or rounded to 9 digits, since
    their last bits differ between CPU kernels (``ATEN_CPU_CAPABILITY``)."""
    mix = {"weights": mixture.weights, "means": mixture.means, "covariances": mixture.covariances}
    named = schedule.config()
    return json.loads(json.dumps({
        "models": {name: _digest(model.state_dict()) for name, model in models.items()},
        "mixture": _digest(mix), "schedule": named if named["name"] != "custom" else _digest({"betas": schedule.betas}),
        "metrics": list(applicable(mixture)), "bandwidths": [float(f"{h:.9g}") for h in mmd_bandwidths(mixture)],
        "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(kwargs.items())}}))


def save_grid(grid: FixGrid, stem, call: dict, mixture: GaussianMixture) -> tuple[Path, Path]:
    """Write a grid run with ``keep_trajectories``: ``<stem>.json`` (``call`` from ``grid_call``, settings, rows,
    data draws) and ``<stem>.safetensors`` (``x_T``, each kept cell's final samples, the flow distances and end)."""
    if not grid.trajectories:
        raise ValueError("grid must hold its runs (run_grid(..., keep_trajectories=True)) to be saved")
    flow = grid.flow_distance(mixture)
    tensors = {"x_T": grid.x_T, "flow_end": grid.flow_end}
    tensors.update({f"final|{m}|{f}|{sp}|{n}": tr.final for (m, f, sp, n), tr in grid.trajectories.items()})
    tensors.update({f"flow|{m}|{f}|trailing|{n}": d for (m, f, n), d in flow.items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    st_path, json_path = Path(f"{stem}.safetensors"), Path(f"{stem}.json")
    atomic_write(st_path, safetensors_save(tensors))
    atomic_write(json_path, json.dumps({"call": call, "settings": grid.settings, "rows": grid.rows,
                                        "data": grid.data}, indent=1))
    return json_path, st_path


def load_grid(stem) -> FixGrid:
    """A grid written by ``save_grid``: tables, ``x_T``, ``finals``, ``flow`` and ``flow_end`` (no runs, no scorer)."""
    meta = json.loads(Path(f"{stem}.json").read_text(encoding="utf-8"))
    tensors = safetensors_load(Path(f"{stem}.safetensors").read_bytes())
    grid = FixGrid.from_rows(meta["rows"], meta["data"], meta["settings"])
    grid.x_T, grid.flow_end = tensors.pop("x_T"), tensors.pop("flow_end")
    for key, t in tensors.items():
        kind, m, f, sp, n = key.split("|")
        if kind == "final":
            grid.finals[(m, f, sp, int(n))] = t
        else:
            grid.flow[(m, f, int(n), sp)] = t
    return grid


def lesson_grid(models: Mapping[str, torch.nn.Module], mixture: GaussianMixture, schedule: Schedule, *,
                stem=LESSON_GRID, **kwargs) -> FixGrid:
    """``run_grid(models, mixture, schedule, **kwargs)``, or the grid stored at ``stem`` when it was computed from
    the same ``grid_call`` (so the same numbers): notebook 07's fast path, which ``scripts/make_lesson_grid.py``
    computes once."""
    path = Path(f"{stem}.json")
    if path.is_file() and json.loads(path.read_text(encoding="utf-8"))["call"] == grid_call(
            models, mixture, schedule, **kwargs):
        return load_grid(stem)
    return run_grid(models, mixture, schedule, **kwargs)


# ---------------------------------------------------------------------- the study (a preset of `seqdiff experiment`)
PRESET = "solvers"
SHIPPED_MODELS = {"simple": "ring8_simple", "SA": "ring8_sa", "IP": "ring8_ip"}
STUDY_SPACINGS = ("trailing", "quad", "karras")


def study_markdown(grid: FixGrid, wall: float | None = None, load: Sequence[float] | None = None,
                   fresh: FixGrid | None = None) -> str:
    """The study's ``results.md``: its settings, one table per step count, and the closest-to-the-data tables
    against the shipped simple network with DDIM, each closest cell confirmed on ``fresh`` (``rerun``)."""
    when = "" if load is None else f"; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    k = grid.n_seeds
    parts = [f"# Few-step fixes on ring8\n\nSettings: {json.dumps(grid.settings)}\n\n",
             "" if wall is None else f"Wall time {wall:.0f} s{when}.\n\n",
             f"Means over {k} seed{'s' if k > 1 else ''} with 95% Student-t intervals; **bold**: within the data's "
             f"own level (the mean lies in the 95% interval of a mean of {k} fresh data draws of the same size, "
             f"`stats.mean_band`).\n"]
    for steps in grid.steps:
        parts.append(f"\n## {steps} steps\n\n" + grid_markdown(grid, steps))
    seeds = "" if fresh is None else f" (fresh seeds: {', '.join(map(str, fresh.settings['seeds']))})"
    parts.append(f"\n## Closest to the data, against simple + DDIM (trailing){seeds}\n\n"
                 + closest_markdown(grid, ("simple", "ddim", "trailing"), fresh=fresh))
    learned = [m for m in grid.settings.get("models", []) if m != IDEAL]
    if learned:
        parts.append("\n## Closest to the data with the learned networks only\n\n"
                     + closest_markdown(grid, ("simple", "ddim", "trailing"), models=learned, fresh=fresh))
    return "".join(parts)


def run_study(out, *, steps: Sequence[int] = STEPS, fixes: Sequence[str] = FIXES,
              spacings: Sequence[str] = STUDY_SPACINGS, seeds: Sequence[int] = (0, 1, 2), n_points: int = 2000,
              n_gamma: int = 4000, data_draws: int = 100,
              log: Callable[[str], None] | None = None) -> tuple[FixGrid, dict[str, Path]]:
    """The few-step study on ring8 with the shipped networks (``SHIPPED_MODELS``: one trained network per loss;
    the seeds vary ``x_T``, the noise, the reference and Gamma's draws) and the ideal denoiser: ``run_grid``,
    every closest cell (``closest_cells``, all models and the learned ones) re-run on as many fresh seeds
    (``rerun``), then ``out/rows.json`` (every cell, the data draws, the fresh rows under ``"fresh"``) and
    ``out/results.md`` (``study_markdown``)."""
    out = Path(out)
    models = {name: load_shipped(stem).model for name, stem in SHIPPED_MODELS.items()}
    mixture, schedule = ring8(), Schedule.linear()
    t0 = time.perf_counter()
    grid = run_grid(models, mixture, schedule, steps=steps, fixes=fixes, spacings=spacings, seeds=seeds,
                    n_points=n_points, n_gamma=n_gamma, data_draws=data_draws, log=log)
    cells = dict.fromkeys(closest_cells(grid) + closest_cells(grid, models=list(models)))
    fresh = rerun(grid, models, mixture, schedule, list(cells), seeds=fresh_seeds(grid, max(2, grid.n_seeds)))
    wall, load = time.perf_counter() - t0, os.getloadavg()
    out.mkdir(parents=True, exist_ok=True)
    paths = {"rows": out / "rows.json", "results": out / "results.md"}
    atomic_write(paths["rows"], json.dumps({"settings": grid.settings, "rows": grid.rows, "data": grid.data,
                                            "fresh": {"settings": fresh.settings, "rows": fresh.rows},
                                            "seconds": wall, "load": list(load)}, indent=1))
    atomic_write(paths["results"], study_markdown(grid, wall, load, fresh))
    return grid, paths


# ---------------------------------------------------------------------- tables
def _bold(row: dict) -> str:
    """``mean [low, high]`` of a summary row, in bold when it is within the data's band."""
    return f"**{format_interval(row)}**" if row["within"] else format_interval(row)


def _band(lv: dict) -> str:
    high = format_value(lv["high"])
    return f"< {high}" if lv["low"] == -math.inf else f"[{format_value(lv['low'])}, {high}]"


def grid_markdown(grid: FixGrid, steps: int, metrics: Sequence[str] | None = None) -> str:
    """One step count as a Markdown table: per (model, fix, spacing) the model calls and each metric's mean over
    seeds with its 95% interval (default: every metric the grid holds), bold when within the data's band; the
    band last."""
    metrics = grid.metrics if metrics is None else list(metrics)
    summ = {(r["model"], r["fix"], r["spacing"], r["metric"]): r for r in grid.summary() if r["steps"] == steps}
    head = "| model | fix | spacing | model calls | " + " | ".join(METRIC_TITLES[m] for m in metrics) + " |"
    lines = [head, "|" + "---|" * (4 + len(metrics))]
    for model, fix, spacing in grid.cells(steps):
        cells = [_bold(summ[(model, fix, spacing, m)]) for m in metrics]
        lines.append(f"| {model} | {fix} | {spacing} | {model_calls(base_solver(fix), steps)} | "
                     + " | ".join(cells) + " |")
    k = grid.n_seeds
    band = [_band(grid.level(m, k)) for m in metrics]
    lines.append(f"| data (mean of {k} own draw{'s' if k > 1 else ''}) | - | - | - | " + " | ".join(band) + " |")
    return "\n".join(lines) + "\n"


def closest_markdown(grid: FixGrid, baseline: tuple, metrics: Sequence[str] | None = None,
                     models: Sequence[str] | None = None, fresh: FixGrid | None = None) -> str:
    """Per step count and judged metric (default: all the grid holds), the cell closest to its target (among
    ``models``), its mean [95% CI], the data's band for that mean, whether it is within on the seeds that picked
    it and on ``fresh`` seeds (``rerun``; the only "within" the docs may quote), and its distance to the target
    minus ``baseline``'s ((model, fix, spacing), paired by seed)."""
    metrics = grid.judged if metrics is None else list(metrics)
    lines = ["| steps | metric | closest (model, fix, spacing) | mean [95% CI] | data's band | within (picking "
             "seeds) | fresh seeds: mean [95% CI], within | distance minus the baseline's [95% CI] |",
             "|---|---|---|---|---|---|---|---|"]
    for steps in grid.steps:
        for m in metrics:
            best = grid.closest(steps, m, models=models)
            d = grid.paired(m, (best["model"], best["fix"], best["spacing"]), baseline, steps)
            again = confirmed(grid, fresh, steps, m, models)
            check = "not re-run" if again is None else f"{format_interval(again)}, {'yes' if again['within'] else 'no'}"
            lines.append(f"| {steps} | {METRIC_TITLES[m]} | {best['model']}, {best['fix']}, {best['spacing']} | "
                         f"{format_interval(best)} | {_band(grid.level(m, max(best['n'], 1)))} | "
                         f"{'yes' if best['within'] else 'no'} | {check} | {format_interval(d)} |")
    return "\n".join(lines) + "\n"
