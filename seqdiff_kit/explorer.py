"""The no-code explorer page of ``make app`` (``app/explorer.ipynb``, served by Voila).

Only ipywidgets is imported at the top: the controls show at once, in a loading state, and the work (torch,
the checkpoints, the first paths: ``explorer_engine``) starts once the browser has drawn them.
"""
from __future__ import annotations

import html
import os
import threading
from numbers import Integral
from pathlib import Path

import ipywidgets as W

__all__ = ["Explorer", "RECIPES", "GLOSSARY", "glossary_note"]

# the recipes the page can name without importing them (``recipes``' constants): torch loads after the page shows
RECIPES = ("RING8", "RING8_FAST")
GLOSSARY = "docs/glossary.md"
# seconds after which the work starts even if no browser reported a drawn view
START_ANYWAY_S = 20.0


def glossary_note() -> str:
    """The page's pointer to the glossary (each metric, its target, its reading), where the toolkit has it."""
    if not (Path(__file__).resolve().parent.parent / GLOSSARY).is_file():
        return ""
    return (f"<span style='font-size:12px'>What each score means, its target and how to read it: the glossary, "
            f"<code>{GLOSSARY}</code> in the toolkit.</span>")


def _count(name: str, value, low: int = 1) -> int:
    # the page's own check (``_validate`` would import torch before the page shows)
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


class Explorer:
    """Controls for the dataset, the loss (simple, or SA with K and lam), the solver and the number of steps;
    the learned and the ideal paths from one ``x_T`` (``widgets.PathDashboard``), the drift from the ideal path
    step by step, and the final samples' two-sided scores beside the data's own level.

    The work starts when the browser has drawn the controls (``start()``; ``wait()`` starts it and waits).
    Models: every 2-D checkpoint in ``checkpoint_dir`` (default: the shipped ones), and every setting trained by
    an earlier page of the same server (in ``cache_dir``/server-<pid>-<start>; None: a temporary folder). Any
    other setting trains on a click from ``recipe`` (a ``recipes.Recipe`` or a name in ``RECIPES``: its network
    and fit settings, the chosen dataset and loss, ``quick_steps`` updates) after a measured time estimate."""

    DATASETS = ("ring8", "grid25", "two_moons")
    STEP_CHOICES = (5, 10, 20, 50, 100)

    def __init__(self, *, recipe=None, n_points: int = 500, n_reference: int = 1000, quick_steps: int = 2000,
                 seed: int = 0, checkpoint_dir=None, max_points: int = 250, cache_dir="runs/explorer",
                 threads: int | None = 1, precompute: bool = True):
        if isinstance(recipe, str):
            if recipe not in RECIPES:
                raise ValueError(f"recipe must be a recipes.Recipe or one of {RECIPES}, got {recipe!r}")
        elif recipe is not None:
            from .recipes import Recipe  # loaded already when the caller holds a Recipe

            if not isinstance(recipe, Recipe):
                raise TypeError(f"recipe must be a recipes.Recipe or one of {RECIPES}, got {type(recipe).__name__}")
        self.recipe = recipe
        self.n_points, self.n_reference = _count("n_points", n_points, 2), _count("n_reference", n_reference, 2)
        self.quick_steps, self.seed = _count("quick_steps", quick_steps), _count("seed", seed, 0)
        self.max_points, self.threads = _count("max_points", max_points), threads
        self.checkpoint_dir, self.cache_dir, self.precompute = checkpoint_dir, cache_dir, bool(precompute)
        self.engine = self.paths = self.drift_fig = self.shown = self.error = None
        self.scores: dict[str, dict] = {}
        self._build_controls()
        self._started, self._ready = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        # the browser reports each view it draws (ipywidgets' _view_count): the work starts after the first
        self.status._view_count = 0
        self.status.observe(lambda change: change["new"] and self.start(), names="_view_count")
        timer = threading.Timer(START_ANYWAY_S, self.start)
        timer.daemon = True
        timer.start()

    def _build_controls(self) -> None:
        style = {"description_width": "initial"}
        self.dataset = W.Dropdown(options=list(self.DATASETS), value="ring8", description="dataset", style=style)
        self.loss = W.ToggleButtons(options=[("simple loss", "simple"), ("sequence-aware (SA)", "sa")],
                                    value="simple", description="loss", style=style)
        self.K = W.IntSlider(value=2, min=1, max=4, description="K", style=style, continuous_update=False,
                             layout=W.Layout(width="220px"))
        self.lam = W.SelectionSlider(options=[("1", 1.0)], value=1.0, description="lam", style=style,
                                     continuous_update=False, layout=W.Layout(width="260px"))
        self.solver = W.Dropdown(options=[("loading...", 0)], value=0, description="solver", style=style,
                                 layout=W.Layout(width="340px"))
        self.steps = W.SelectionSlider(options=[(str(s), s) for s in self.STEP_CHOICES], value=10,
                                       description="sampling steps", style=style, continuous_update=False,
                                       layout=W.Layout(width="320px"))
        # (no icon: the icon font would come from a CDN)
        self.train_button = W.Button(description="train this model", button_style="warning",
                                     layout=W.Layout(width="auto", min_width="170px", display="none"))
        self.progress = W.IntProgress(value=0, min=0, max=self.quick_steps, description="training",
                                      style=style, layout=W.Layout(display="none"))
        self.status = W.HTML("<i>Loading: the models and the first paths are being prepared...</i>")
        self.metrics = W.HTML("<i>loading...</i>")
        self.drift_note = W.HTML()
        self.glossary = W.HTML(glossary_note())
        self.controls = (self.dataset, self.loss, self.K, self.lam, self.solver, self.steps)
        for control in self.controls:
            control.disabled = True
        loading = W.HTML("<div style='width:520px;height:520px;display:flex;align-items:center;justify-content:"
                         "center;color:#777'>loading the paths...</div>")
        # the paths keep their width (a flex row would squeeze them beside the right column)
        self.paths_box, self.drift_box = W.Box([loading], layout=W.Layout(flex="0 0 auto")), W.Box()
        controls = W.VBox([W.HBox([self.dataset, self.solver]), W.HBox([self.loss, self.K, self.lam]),
                           W.HBox([self.steps, self.train_button, self.progress]), self.status])
        right = W.VBox([self.drift_box, self.drift_note, W.HTML("<b>Final samples against fresh data</b>"),
                        self.metrics, self.glossary])
        # side by side where the page is wide enough, the right column below the paths where it is not (a
        # projector's 1024 px): nothing is squeezed or cut
        self.widget = W.VBox([controls, W.HBox([self.paths_box, right], layout=W.Layout(flex_flow="row wrap"))])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ loading
    def start(self) -> None:
        """Start the work (once): load torch, the models and the first paths in a background thread."""
        with self._lock:
            if self._started.is_set():
                return
            self._started.set()
        threading.Thread(target=self._load, name="explorer-load", daemon=True).start()

    def wait(self, timeout: float | None = None) -> "Explorer":
        """Start the work if it has not started and wait for the first view; re-raise its error, if any."""
        self.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the explorer did not load within {timeout} s")
        if self.error is not None:
            raise self.error
        return self

    def _load(self) -> None:
        try:
            from ._runtime import set_threads
            from .explorer_engine import Engine
            from .frontend import FigureWidget
            from .widgets import LAM_CHOICES

            if self.threads is not None:
                set_threads(self.threads)  # tiny networks: a second thread only waits on a busy machine
            self.engine = Engine(recipe=self.recipe, n_points=self.n_points, n_reference=self.n_reference,
                                 quick_steps=self.quick_steps, seed=self.seed, checkpoint_dir=self.checkpoint_dir,
                                 cache_dir=self.cache_dir)
            self.solver.options = [(label, k) for k, (label, _) in enumerate(self.engine.solvers)]
            self.lam.options = [(f"{v:g}", v) for v in LAM_CHOICES]
            self.lam.value = 1.0
            self.drift_fig = FigureWidget()
            self.drift_box.children = (self.drift_fig,)
            self.refresh()
            # the controls answer only after the first view is drawn: no second thread draws beside this one
            self.train_button.on_click(lambda _: self.train())
            for control in self.controls:
                control.disabled = False
                control.observe(lambda _: self.refresh(), names="value")
            self._loss_controls()
        except BaseException as err:  # noqa: BLE001 (shown on the page, re-raised by wait())
            self.error = err
            self.status.value = f"<b>The explorer could not load:</b> {html.escape(repr(err))}"
        finally:
            self._ready.set()
        if self.error is None and self.precompute:
            self._precompute()

    def _precompute(self) -> None:
        """The other step counts, then the other solvers, of the first setting, computed while the page is
        read, so that moving those controls only picks results up."""
        key, solver, steps = self.setting(), self.solver.value, int(self.steps.value)
        if key not in self.engine.models:
            return
        try:  # this thread at the lowest priority (Linux: per thread), behind the page's answers and the browser
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        todo = [(solver, s) for s in self.STEP_CHOICES] + [(k, steps) for k in range(len(self.engine.solvers))]
        for k, s in todo:
            self.engine.view(key, k, s, self._model_name(key))

    # ------------------------------------------------------------------ settings
    def setting(self) -> tuple:
        """``(dataset, loss name, K, lam)`` of the controls (lam = 0 is the simple loss)."""
        from .explorer_engine import Engine

        return Engine.key(self.dataset.value, self.loss.value, self.K.value, self.lam.value)

    @staticmethod
    def _model_name(key: tuple) -> str:
        return "learned (simple)" if key[1] == "simple" else f"learned (SA, K={key[2]}, lam={key[3]:g})"

    def _describe(self, key: tuple) -> str:
        from .widgets import steps_label

        label = self.engine.solvers[self.solver.value][0]
        return (f"{key[0]}, {self._model_name(key)[9:-1]} loss, {label.split(' (')[0]}, "
                f"{steps_label(int(self.steps.value))}")

    def _lam_zero_note(self) -> str:
        if self.loss.value == "sa" and float(self.lam.value) == 0.0:
            return (" <b>SA with lam = 0 is the simple loss</b> (its sequence term has weight 0): the simple "
                    "model is shown, and K has no effect.")
        return ""

    def _loss_controls(self) -> None:
        """K and lam only for the SA loss, and K not at lam = 0 (the SA term is gone)."""
        sa = self.loss.value == "sa"
        self.lam.disabled = not sa
        self.K.disabled = not sa or float(self.lam.value) == 0.0

    # ------------------------------------------------------------------ actions
    def refresh(self) -> None:
        """Show the controls' setting (its kept results, or computed now), or offer to train a missing model
        with a training time measured now."""
        self._loss_controls()
        key = self.setting()
        if key not in self.engine.models:
            shown = f" The figures still show: {self.shown}." if self.shown else ""
            if self.engine.recipe is None:
                self.train_button.layout.display = "none"
                self.status.value = (f"<b>No model for {key[0]} with this loss is shipped.</b> This page shows the "
                                     f"shipped settings only.{shown}")
                return
            seconds = self.engine.estimate(key)
            self.train_button.layout.display = None
            self.status.value = (f"<b>No model for {key[0]} with this loss yet.</b> Click <i>train this model</i> "
                                 f"({self.quick_steps} updates: about {seconds:.0f} s at this machine's present "
                                 f"load, timed on 20 updates just now).{shown}")
            return
        self.train_button.layout.display = "none"
        self._show(key)

    def train(self) -> None:
        """Train the controls' missing model (``Engine.train``, with a progress bar), then show it."""
        key = self.setting()
        if key in self.engine.models or self.engine.recipe is None:
            return self.refresh()

        def step(state) -> None:
            if state.step % 50 == 0 or state.step == self.quick_steps:
                self.progress.value = state.step

        self.train_button.disabled = True
        self.progress.layout.display, self.progress.value, self.progress.max = None, 0, self.quick_steps
        self.status.value = f"<i>training {self._model_name(key)} on {key[0]}...</i>"
        try:
            self.engine.train(key, on_step=step)
        finally:
            self.train_button.disabled = False
            self.progress.layout.display = "none"
        self.refresh()

    def _show(self, key: tuple) -> None:
        from . import viz
        from .explorer_engine import NO_SPLIT, score_table
        from .frontend import replace_figure
        from .widgets import PathDashboard

        steps, name = int(self.steps.value), self._model_name(key)
        view = self.engine.view(key, self.solver.value, steps, name)
        trajectories, mixture = {name: view.learned, "ideal": view.reference}, self.engine.mixtures[key[0]]
        title = f"{name} and ideal paths from the same x_T"
        if self.paths is None:
            self.paths = PathDashboard(trajectories, mixture=mixture, max_points=self.max_points, title=title)
            self.paths_box.children = (self.paths.widget,)
        else:
            self.paths.set_paths(trajectories, title=title, mixture=mixture)
        # x: the timestep each step reaches, in sampling order, as in the lessons (-1: the final samples)
        two = "distance from the exact flow" in view.curves  # a deterministic run has the second reference
        fig = viz.curves_figure(view.after, view.curves, title="Distance from the ideal path" + (
                                    " and from the exact flow" if two else "") + ", step by step",
                                xlabel="timestep t reached (sampling runs left to right; -1: the final samples)",
                                ylabel="mean distance", markers=steps <= 20, reverse_x=True)
        fig.update_layout(width=560, height=380, legend=dict(orientation="h", x=0, y=-0.25))
        replace_figure(self.drift_fig, fig)
        solver = self.engine.solvers[self.solver.value][0]
        self.drift_note.value = "" if view.split else f"<i>{html.escape(NO_SPLIT.format(solver=solver))}</i>"
        self.scores = view.scores
        self.metrics.value = score_table(view.scores)
        self.shown = self._describe(key)
        self.status.value = (f"Showing <b>{self.shown}</b>; model: {self.engine.sources[key]}. "
                             f"{self.n_points} samples from one seeded x_T.{self._lam_zero_note()}")
