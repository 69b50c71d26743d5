"""What the explorer page (``explorer``) computes, kept apart so that the page shows before torch loads: the
models of each setting, the learned and ideal paths with their drift curves and scores (cached per setting),
measured training-time estimates, and the two-sided score table.
"""
from __future__ import annotations

import html
import inspect
import json
import math
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ._format import format_number
from .schedule import Schedule
from .data import CHECKPOINT_DIR, PRESETS
from .denoisers import IdealDenoiser
from .losses import Loss
from . import recipes, solvers
from .checkpoint import checkpoint_exists, load_checkpoint
from .drift import exact_flow, measure_references, step_drift
from .metrics import TARGETS, reading, target_distance
from .recipes import Recipe, estimate_seconds
from .runs import train_run
from .evaluate import METRICS, Scorer

__all__ = ["Engine", "View", "solver_options", "session_folder", "score_table", "TABLE", "NO_SPLIT"]

# the page's score table: metrics of evaluate.METRICS with a target (metrics.TARGETS), each judged two-sided
TABLE = ("mmd", "sw", "std_ratio", "loglik_gap")
# why a solver outside the generalized step shows the accumulated drift unsplit
NO_SPLIT = ("{solver} shows the accumulated drift without its split: the split into local and propagated error "
            "takes one model step from the ideal path's state with the step's own formula (drift.step_drift), which exists "
            "for the generalized DDIM/DDPM step only; {solver} is a second-order solver whose step also depends "
            "on earlier model outputs or a second evaluation, so a single step from the ideal state is not the "
            "step the sampler took.")


def solver_options() -> list[tuple[str, dict]]:
    """``(label, keyword arguments of solvers.sample)`` of each sampler offered: DDIM (eta = 0), DDPM (eta = 1),
    then every deterministic solver of ``solvers.SOLVERS`` that needs nothing from the data (a stochastic one
    would need the learned and the ideal path to share their noise)."""
    out = [("DDIM (eta = 0, deterministic)", {"eta": 0.0}), ("DDPM (eta = 1, random)", {"eta": 1.0})]
    for name in solvers.SOLVERS:
        needs = [v for v in solvers.solver_options(name).values() if v is inspect.Parameter.empty]
        if name not in ("ddim", "ddpm") and name not in solvers.STOCHASTIC and not needs:
            out.append((str(name), {"solver": name}))
    return out


def session_folder(base) -> Path:
    """The folder under ``base`` of the process that started this kernel (pid and start time): every page of
    one Voila server (a kernel each) finds the models trained by the earlier ones; a restarted server starts afresh."""
    parent = os.getppid()
    try:  # the parent's start time in clock ticks since boot (proc(5), field 22): a reused pid is a new server
        started = "-" + Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):  # no /proc (not Linux), or the parent is gone: the pid alone names it
        started = ""
    return Path(base) / f"server-{parent}{started}"


def score_table(scores: dict[str, dict]) -> str:
    """The HTML table of ``scores`` (``{row: {metric: value}}``, the last row the data's own second draw): the
    targets (``metrics.TARGETS``), then each row; a sided quantity reads as ``metrics.reading`` says, with the
    data's own distance from the target as the tolerance."""
    *models, data = scores
    level = {m: target_distance(m, scores[data][m]) for m in TABLE}

    def cell(who: str, m: str) -> str:
        v = scores[who][m]
        if who == data or m in ("mmd", "sw") or not math.isfinite(v):
            return format_number(v)
        return f"{format_number(v)} ({reading(m, v, level[m])})"

    rows = [("target", *(format_number(TARGETS[m]) for m in TABLE))]
    rows += [(who, *(cell(who, m) for m in TABLE)) for who in [*models, data]]
    style = "padding:3px 10px;text-align:right"
    head = "".join(f"<th style='{style}'>{html.escape(h)}</th>" for h in ("", *(METRICS[m].title for m in TABLE)))
    body = "".join("<tr>" + "".join(f"<td style='{style}'>{html.escape(str(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    note = ("<div style='font-size:12px;color:#555'>Each score against its target, on either side; the data row "
            "is a second draw of real data (one draw): the level sampling noise alone reaches. \"on target\": "
            "within the data's own distance from the target.</div>")
    return f"<table style='border-collapse:collapse;font-size:14px'><tr>{head}</tr>{body}</table>{note}"


@dataclass(frozen=True)
class View:
    """One setting's paths, drift curves, timesteps reached, scores and whether the drift is split."""

    learned: object
    reference: object
    curves: dict
    after: torch.Tensor
    scores: dict
    split: bool


class Engine:
    """The models and results behind the explorer page (arguments: ``explorer.Explorer``). A setting's ``key``
    is ``(dataset, loss name, K, lam)`` (SA at lam = 0 is the simple loss); its ``view`` is computed once, kept."""

    def __init__(self, *, recipe: Recipe | str | None, n_points: int, n_reference: int, quick_steps: int,
                 seed: int, checkpoint_dir=None, cache_dir=None):
        # checked by the page (explorer.Explorer): a Recipe, the name of one, or None
        self.recipe = getattr(recipes, recipe) if isinstance(recipe, str) else recipe
        self.n_points, self.n_reference = n_points, n_reference
        self.quick_steps, self.seed = quick_steps, seed
        self.schedule = Schedule.linear()
        self.solvers = solver_options()
        self.mixtures = {name: PRESETS[name]() for name in ("ring8", "grid25", "two_moons")}
        self.models, self.sources = {}, {}
        shipped = Path(CHECKPOINT_DIR if checkpoint_dir is None else checkpoint_dir)
        if not shipped.is_dir():
            raise ValueError(f"checkpoint_dir {str(shipped)!r} is not a folder; give a folder of checkpoints")
        self._add_folder(shipped, "shipped")
        if not self.models and self.recipe is None:
            raise ValueError(f"checkpoint_dir {str(shipped)!r} holds no finished checkpoint of {sorted(self.mixtures)} "
                             f"and recipe is None, so the page has nothing to show; give a folder of `seqdiff train` "
                             f"checkpoints or a recipe to train from")
        # where this page trains: the server's session folder, or a temporary one of this page
        self._temp = tempfile.TemporaryDirectory(prefix="seqdiff-explorer-") if cache_dir is None else None
        self.folder = Path(self._temp.name) if cache_dir is None else session_folder(cache_dir)
        self.folder.mkdir(parents=True, exist_ok=True)
        for run in sorted(p for p in self.folder.iterdir() if p.is_dir()):
            self._add_folder(run, "trained earlier in this session")
        self._scorers: dict[str, Scorer] = {}
        self._views: dict[tuple, View] = {}
        self._lock = threading.Lock()  # the page's thread and its precomputing one share the scorers

    @staticmethod
    def key(dataset: str, name: str, K: int = 1, lam: float = 0.0) -> tuple:
        if name == "simple" or float(lam) == 0.0:  # lam = 0: the SA term vanishes, the loss is the simple one
            return (dataset, "simple", 1, 0.0)
        return (dataset, "sa", int(K), float(lam))

    def _add_folder(self, folder, how: str) -> None:
        """Every finished 2-D checkpoint in ``folder`` (a session's only at ``quick_steps``: another page may
        still be training it)."""
        for js in sorted(Path(folder).glob("*.json")):
            if not checkpoint_exists(js.with_suffix("")):  # a JSON without weights (e.g. a study's results)
                continue
            try:
                cfg = json.loads(js.read_text(encoding="utf-8"))
                if not isinstance(cfg, dict):
                    raise ValueError(f"it holds a JSON {type(cfg).__name__}, not a checkpoint config")
                if cfg.get("dataset") not in PRESETS or not isinstance(cfg.get("loss"), dict):
                    continue
                if how != "shipped" and cfg.get("step") != self.quick_steps:
                    continue
                loss = cfg["loss"]
                key = self.key(cfg["dataset"], loss.get("name", "simple"), loss.get("K", 1), loss.get("lam", 0.0))
                self.models[key], _ = load_checkpoint(js.with_suffix(""))
            except (ValueError, TypeError, OSError, RecursionError) as err:
                if how != "shipped":  # a session's damaged run: that setting is trained again on request
                    continue
                raise ValueError(f"checkpoint_dir {str(folder)!r}: {js.name} is not a usable checkpoint "
                                 f"({' '.join(str(err).split())[:200]})") from None
            name = js.stem if how == "shipped" else js.parent.name
            self.sources[key] = f"{how} ({name}, {cfg.get('step', '?')} updates)"

    def setting_recipe(self, key: tuple) -> Recipe:
        """``recipe``'s network and fit settings with the setting's dataset and loss and ``quick_steps``."""
        loss = Loss("simple") if key[1] == "simple" else Loss("sa", K=key[2], lam=key[3])
        return self.recipe.replace(name=f"explorer-{key[0]}", dataset=key[0], loss=loss, seed=self.seed,
                                   steps=self.quick_steps)

    def estimate(self, key: tuple) -> float:
        """Seconds the quick training of ``key`` takes here now, measured (``recipes.estimate_seconds``)."""
        return estimate_seconds(self.setting_recipe(key))

    def train(self, key: tuple, on_step: Callable | None = None) -> float:
        """Train ``key``'s model into ``self.folder``/<setting> through ``runs.train_run``; returns the seconds."""
        run = train_run(self.setting_recipe(key), self.folder / "_".join(str(v) for v in key), overwrite=True,
                        progress=False, on_step=on_step)
        self.models[key] = run.load().model
        self.sources[key] = f"trained here ({self.quick_steps} updates, {run.seconds:.0f} s)"
        return run.seconds

    def scorer(self, dataset: str) -> Scorer:
        """``dataset``'s ``evaluate.Scorer`` against ``n_reference`` fresh draws (one per dataset)."""
        if dataset not in self._scorers:
            self._scorers[dataset] = Scorer.draw(self.mixtures[dataset], self.n_reference, seed=self.seed + 2,
                                                 metrics=TABLE)
        return self._scorers[dataset]

    def view(self, key: tuple, solver: int, steps: int, name: str) -> View:
        """The ``View`` of a setting (computed on first request, then kept); ``name``: the learned row's name."""
        at = (key, solver, steps)
        if at in self._views:  # kept: no waiting on the precomputing thread
            return self._views[at]
        with self._lock:
            if at not in self._views:
                self._views[at] = self._compute(key, self.solvers[solver][1], steps, name)
            return self._views[at]

    def has_view(self, key: tuple, solver: int, steps: int) -> bool:
        return (key, solver, steps) in self._views

    def paths(self, mixture, model, steps: int, kwargs: dict):
        """``(learned, ideal path, drift curves, timesteps reached)`` from one seeded ``x_T``: the drift split
        into local and propagated error for the generalized step, unsplit for another solver (``NO_SPLIT``)."""
        ideal = IdealDenoiser(mixture, self.schedule)
        x_T = torch.randn(self.n_points, 2, generator=torch.Generator().manual_seed(self.seed))
        with torch.no_grad():
            if "solver" in kwargs:
                learned = solvers.sample(model, x_T, self.schedule, steps, **kwargs)
                reference = solvers.sample(ideal, x_T, self.schedule, steps, **kwargs)
                dist = torch.linalg.vector_norm((learned.x - reference.x).double(), dim=-1).mean(dim=1)[1:]
                curves, after = {"accumulated drift": dist}, reference.t[1:]
            else:
                drift = step_drift(model, ideal, x_T, self.schedule, steps, eta=kwargs["eta"],
                                   generator=torch.Generator().manual_seed(self.seed + 1))
                learned, reference = drift.paths.model, drift.paths.reference
                # (no curve name says "ideal": that word is the ideal denoiser's colour)
                curves = {"accumulated drift": drift.mean("drift"), "local error of the step": drift.mean("local"),
                          "propagated from earlier steps": drift.mean("propagated")}
                after = drift.next_timesteps
        if kwargs.get("eta", 0.0) == 0.0:  # a deterministic run: the exact flow from x_T is the second reference
            flow = exact_flow(mixture, self.schedule, x_T, timesteps=learned.timesteps)
            curves["distance from the exact flow"] = measure_references(learned, reference, flow).mean("total")[1:]
        return learned, reference, curves, after

    def _compute(self, key: tuple, kwargs: dict, steps: int, name: str) -> View:
        learned, reference, curves, after = self.paths(self.mixtures[key[0]], self.models[key], steps, kwargs)
        scorer = self.scorer(key[0])
        scores = {name: scorer.score(learned.final), "ideal denoiser": scorer.score(reference.final),
                  "data (a second draw)": scorer.data_level}
        return View(learned, reference, curves, after, scores, split="solver" not in kwargs)

