"""The no-code explorer of ``make app`` (``app/explorer.ipynb``, served by Voila): an application page that
finds the shipped 2-D checkpoints, trains missing settings from a ``recipes.Recipe``, samples the learned and
the ideal paths and scores the final samples, drawn with the lessons' ``PathDashboard`` and ``viz``'s curves.
"""
from __future__ import annotations

import html
import inspect
import json
import tempfile
from pathlib import Path
from typing import Sequence

import ipywidgets as W
import torch

from ._format import format_number
from ._validate import check_int, check_type
from .schedule import Schedule
from .data import CHECKPOINT_DIR, PRESETS
from .denoisers import IdealDenoiser
from .losses import Loss
from . import solvers
from .checkpoint import checkpoint_exists, load_checkpoint
from .drift import step_drift
from . import viz
from .frontend import FigureWidget, ShowsWidget, replace_figure
from .widgets import LAM_CHOICES, PathDashboard, steps_label
from .recipes import Recipe
from .runs import train_run
from .evaluate import METRICS, Scorer

__all__ = ["Explorer", "solver_options", "TABLE"]

# the page's score table: metrics of evaluate.METRICS (scored by evaluate.Scorer, as every table is) and what
# each should read; the data's own row is the level sampling noise alone reaches
TABLE = ("mmd", "sw", "std_ratio", "loglik")
TARGET = {"mmd": "0 best", "sw": "0 best", "std_ratio": "1 best", "loglik": "as the data"}


def solver_options() -> list[tuple[str, dict]]:
    """The samplers the explorer offers, read from ``seqdiff_kit.solvers`` when called: the generalized step
    as DDIM (eta = 0) and DDPM (eta = 1), then every further deterministic solver of ``solvers.SOLVERS`` that
    needs nothing from the data (DPM-Solver++(2M), Heun), each as ``(label, keyword arguments of
    solvers.sample)``. The stochastic ones would need the learned and the ideal path to share their noise."""
    out = [("DDIM (eta = 0, deterministic)", {"eta": 0.0}), ("DDPM (eta = 1, random)", {"eta": 1.0})]
    for name in solvers.SOLVERS:
        needs = [v for v in solvers.solver_options(name).values() if v is inspect.Parameter.empty]
        if name not in ("ddim", "ddpm") and name not in solvers.STOCHASTIC and not needs:
            out.append((str(name), {"solver": name}))
    return out


def _html_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cell = "padding:3px 12px;text-align:right"
    head = "".join(f"<th style='{cell}'>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='{cell}'>{html.escape(str(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<table style='border-collapse:collapse;font-size:14px'><tr>{head}</tr>{body}</table>"


class Explorer(ShowsWidget):
    """The no-code explorer of ``make app`` (``app/explorer.ipynb`` served by Voila): controls for the
    dataset, the loss (simple or SA with K and lam), the solver and the number of sampling steps; the learned
    and the ideal paths from the same ``x_T`` (with a slider over the step), the drift from the ideal path
    step by step, and the final samples' metrics against fresh data.

    Models: every 2-D checkpoint shipped in ``checkpoint_dir`` loads at once (ring8 with the simple loss and
    with SA K = 2, lam = 1). Any other setting is trained on a click from ``recipe`` (the page passes the shipped
    ``recipes.RING8``; only its network and fit settings are used, with the chosen dataset and loss and
    ``quick_steps`` updates), with a progress bar, and kept for the session; without a recipe only the shipped
    settings can be shown. SA with lam = 0 is the simple loss."""

    DATASETS = ("ring8", "grid25", "two_moons")
    STEP_CHOICES = (5, 10, 20, 50, 100)

    def __init__(self, *, recipe: Recipe | None = None, n_points: int = 500, n_reference: int = 1000,
                 quick_steps: int = 2000, seed: int = 0, checkpoint_dir=None, max_points: int = 250):
        self.recipe = None if recipe is None else check_type("recipe", recipe, Recipe)
        self.n_points = check_int("n_points", n_points, 2)
        self.n_reference = check_int("n_reference", n_reference, 2)
        self.quick_steps = check_int("quick_steps", quick_steps, 1)
        self.seed = check_int("seed", seed)
        self.schedule = Schedule.linear()
        self._scorers: dict[str, Scorer] = {}
        self._folder: tempfile.TemporaryDirectory | None = None
        self.scores: dict[str, dict] = {}
        self.models, self.sources = self._shipped(CHECKPOINT_DIR if checkpoint_dir is None else checkpoint_dir)
        self._mixtures = {name: PRESETS[name]() for name in self.DATASETS}

        style = {"description_width": "initial"}
        self.dataset = W.Dropdown(options=list(self.DATASETS), value="ring8", description="dataset", style=style)
        self.loss = W.ToggleButtons(options=[("simple loss", "simple"), ("sequence-aware (SA)", "sa")],
                                    value="simple", description="loss", style=style)
        self.K = W.IntSlider(value=2, min=1, max=4, description="K", style=style, continuous_update=False,
                             layout=W.Layout(width="220px"))
        self.lam = W.SelectionSlider(options=[(f"{v:g}", v) for v in LAM_CHOICES], value=1.0, description="lam",
                                     style=style, continuous_update=False, layout=W.Layout(width="260px"))
        self._solvers = solver_options()
        self.solver = W.Dropdown(options=[(label, k) for k, (label, _) in enumerate(self._solvers)], value=0,
                                 description="solver", style=style, layout=W.Layout(width="340px"))
        self.steps = W.SelectionSlider(options=[(str(s), s) for s in self.STEP_CHOICES], value=10,
                                       description="sampling steps", style=style, continuous_update=False,
                                       layout=W.Layout(width="320px"))
        self.train_button = W.Button(description="train this model", icon="play", button_style="warning",
                                     layout=W.Layout(width="auto", min_width="170px", display="none"))
        self.progress = W.IntProgress(value=0, min=0, max=self.quick_steps, description="training",
                                      style=style, layout=W.Layout(display="none"))
        self.status = W.HTML()
        self.metrics = W.HTML()
        self.train_button.on_click(lambda _: self.train())
        for control in (self.dataset, self.loss, self.K, self.lam, self.solver, self.steps):
            control.observe(lambda _: self.refresh(), names="value")

        self.paths: PathDashboard | None = None
        self.drift_fig = FigureWidget()
        self.shown = None
        self.max_points = check_int("max_points", max_points, 1)
        self.refresh()
        controls = W.VBox([W.HBox([self.dataset, self.solver]), W.HBox([self.loss, self.K, self.lam]),
                           W.HBox([self.steps, self.train_button, self.progress]), self.status])
        right = W.VBox([self.drift_fig, W.HTML("<b>Final samples against fresh data</b>"), self.metrics])
        self.widget = W.VBox([controls, W.HBox([self.paths.widget, right])])

    @classmethod
    def _shipped(cls, folder) -> tuple[dict[tuple, torch.nn.Module], dict[tuple, str]]:
        """Every 2-D checkpoint in ``folder`` by its setting, and where each came from."""
        models, sources = {}, {}
        for js in sorted(Path(folder).glob("*.json")):
            if not checkpoint_exists(js.with_suffix("")):  # a JSON without weights (e.g. a study's results)
                continue
            cfg = json.loads(js.read_text(encoding="utf-8"))
            if cfg.get("dataset") in PRESETS and isinstance(cfg.get("loss"), dict):
                key = cls._key(cfg["dataset"], cfg["loss"].get("name", "simple"), cfg["loss"].get("K", 1),
                               cfg["loss"].get("lam", 0.0))
                models[key], _ = load_checkpoint(js.with_suffix(""))
                sources[key] = f"shipped ({js.stem}, {cfg.get('step', '?')} updates)"
        return models, sources

    # ------------------------------------------------------------------ settings
    @staticmethod
    def _key(dataset: str, name: str, K: int = 1, lam: float = 0.0) -> tuple:
        if name == "simple" or float(lam) == 0.0:  # lam = 0: the SA term vanishes, the loss is the simple one
            return (dataset, "simple", 1, 0.0)
        return (dataset, "sa", int(K), float(lam))

    def setting(self) -> tuple:
        """``(dataset, loss name, K, lam)`` of the controls (lam = 0 is the simple loss)."""
        return self._key(self.dataset.value, self.loss.value, self.K.value, self.lam.value)

    @staticmethod
    def _model_name(key: tuple) -> str:
        return "learned (simple)" if key[1] == "simple" else f"learned (SA, K={key[2]}, lam={key[3]:g})"

    def _describe(self, key: tuple) -> str:
        label = self._solvers[self.solver.value][0]
        return (f"{key[0]}, {self._model_name(key)[9:-1]} loss, {label.split(' (')[0]}, "
                f"{steps_label(int(self.steps.value))}")

    # ------------------------------------------------------------------ actions
    def refresh(self) -> None:
        """Recompute the figures and metrics for the controls' setting, or offer to train a missing model."""
        sa = self.loss.value == "sa"
        self.K.disabled = self.lam.disabled = not sa
        key = self.setting()
        model = self.models.get(key)
        if model is None:
            shown = f" The figures still show: {self.shown}." if self.shown else ""
            if self.recipe is None:
                self.train_button.layout.display = "none"
                self.status.value = (f"<b>No model for {key[0]} with this loss is shipped.</b> This page shows the "
                                     f"shipped settings only.{shown}")
                return
            self.train_button.layout.display = None
            self.status.value = (f"<b>No model for {key[0]} with this loss yet.</b> Click <i>train this model</i> "
                                 f"({self.quick_steps} updates, about {self.quick_steps // 100} s on one core)."
                                 f"{shown}")
            return
        self.train_button.layout.display = "none"
        self._show(key, model)

    def train(self) -> None:
        """Train the controls' missing model from ``recipe`` (``quick_steps`` updates, progress bar) through
        ``runs.train_run``, into this page's session folder, then show it."""
        key = self.setting()
        if key in self.models or self.recipe is None:
            return self.refresh()
        loss = Loss("simple") if key[1] == "simple" else Loss("sa", K=key[2], lam=key[3])
        recipe = self.recipe.replace(name=f"explorer-{key[0]}", dataset=key[0], loss=loss, seed=self.seed,
                                     steps=self.quick_steps)

        def step(state) -> None:
            if state.step % 50 == 0 or state.step == self.quick_steps:
                self.progress.value = state.step

        self.train_button.disabled = True
        self.progress.layout.display, self.progress.value, self.progress.max = None, 0, self.quick_steps
        self.status.value = f"<i>training {self._model_name(key)} on {key[0]}...</i>"
        try:
            if self._folder is None:  # the session's runs, removed with the page (a temporary folder)
                self._folder = tempfile.TemporaryDirectory(prefix="seqdiff-explorer-")
            folder = Path(self._folder.name) / "_".join(str(v) for v in key)
            run = train_run(recipe, folder, overwrite=True, progress=False, on_step=step)
            self.models[key] = run.load().model
            self.sources[key] = f"trained here ({self.quick_steps} updates, {run.seconds:.0f} s)"
        finally:
            self.train_button.disabled = False
            self.progress.layout.display = "none"
        self.refresh()

    def _paths(self, mixture, model, steps: int, kwargs: dict):
        """The learned and the ideal paths from one seeded ``x_T``, and the drift curves between them: the
        accumulated drift split into local and propagated error for the generalized step, the distance alone
        for another solver. Returns ``(learned, reference, curves, timesteps reached)``."""
        ideal = IdealDenoiser(mixture, self.schedule)
        x_T = torch.randn(self.n_points, 2, generator=torch.Generator().manual_seed(self.seed))
        with torch.no_grad():
            if "solver" in kwargs:  # a solver outside the generalized step: paths only, no local/propagated split
                learned = solvers.sample(model, x_T, self.schedule, steps, **kwargs)
                reference = solvers.sample(ideal, x_T, self.schedule, steps, **kwargs)
                dist = torch.linalg.vector_norm((learned.x - reference.x).double(), dim=-1).mean(dim=1)[1:]
                return learned, reference, {"accumulated drift": dist}, reference.t[1:]
            drift = step_drift(model, ideal, x_T, self.schedule, steps, eta=kwargs["eta"],
                               generator=torch.Generator().manual_seed(self.seed + 1))
        # (no curve name says "ideal": that word is the ideal denoiser's colour)
        curves = {"accumulated drift": drift.mean("drift"), "local error of the step": drift.mean("local"),
                  "propagated from earlier steps": drift.mean("propagated")}
        return drift.paths.model, drift.paths.reference, curves, drift.next_timesteps

    def scorer(self, dataset: str) -> Scorer:
        """The scorer of ``dataset``'s final samples: ``evaluate.Scorer`` (the tables' metrics and MMD bandwidths)
        against ``n_reference`` fresh draws, with a second draw for the data's own level; one per dataset."""
        if dataset not in self._scorers:
            self._scorers[dataset] = Scorer.draw(self._mixtures[dataset], self.n_reference, seed=self.seed + 2,
                                                 metrics=TABLE)
        return self._scorers[dataset]

    def _show(self, key: tuple, model) -> None:
        mixture, steps = self._mixtures[key[0]], int(self.steps.value)
        name = self._model_name(key)
        learned, reference, curves, after = self._paths(mixture, model, steps, self._solvers[self.solver.value][1])
        title = f"{name} and ideal paths from the same x_T"
        if self.paths is None:
            self.paths = PathDashboard({name: learned, "ideal": reference}, mixture=mixture,
                                       max_points=self.max_points, title=title)
        else:
            self.paths.set_paths({name: learned, "ideal": reference}, title=title)
        # x: the timestep each step reaches, in sampling order, as in the lessons (-1: the final samples)
        fig = viz.curves_figure(after, curves, title="Distance from the ideal path, step by step",
                                xlabel="timestep t reached (sampling runs left to right; -1: the final samples)",
                                ylabel="mean distance", markers=steps <= 20, reverse_x=True)
        fig.update_layout(width=560, height=380, legend=dict(orientation="h", x=0, y=-0.25))
        replace_figure(self.drift_fig, fig)

        scorer = self.scorer(key[0])
        self.scores = {name: scorer.score(learned.final), "ideal denoiser": scorer.score(reference.final),
                       "data (a second draw)": scorer.data_level}
        rows = [(who, *(format_number(row[m]) for m in TABLE)) for who, row in self.scores.items()]
        self.metrics.value = _html_table(rows, ("", *(f"{METRICS[m].title} ({TARGET[m]})" for m in TABLE)))
        self.shown = self._describe(key)
        self.status.value = (f"Showing <b>{self.shown}</b>; model: {self.sources[key]}. "
                             f"{self.n_points} samples from one seeded x_T.")
