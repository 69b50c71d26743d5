"""ipywidgets dashboards for the notebooks: sliders that switch precomputed frames in the browser.

Every dashboard computes everything it can show in its constructor (with the core modules), keeps it as
numpy arrays, and builds one ``plotly.graph_objects.FigureWidget``. All its frames then travel to the browser
once, as one float32 buffer (``load_frames``), with every caption; the slider's index is jslinked to the
figure and the caption, so an arrow key or a drag redraws in the page without waiting for the kernel, however
busy it is (``tests/browser/test_dashboards.py`` prints the time from the key press to the redrawn plot). The
kernel follows: the slider's observer calls ``update(j)``, which keeps ``fig.data`` equal to what is shown.
Each dashboard exposes ``fig`` (the FigureWidget), ``slider`` (the control), ``label`` (the caption; its
``value`` is the caption shown), ``widget`` (the box to display), ``frame(j)`` (frame j's arrays) and
``update(j)``.

Reload-safe: a page reloaded while the kernel runs redraws a FigureWidget from the widget's saved state (its
first frame), then shows the frame its saved index names from the frames it holds.

Slider readouts name the frame (``t = 250``, ``20 steps``), never an index.

- ``NoisingDashboard``: the forward process ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` on 2-D points and
  on a digit, with a slider over t (notebook 01).
- ``ScoreFieldDashboard``: the exact score ``grad log p_t(x) = -eps*(x, t) / sqrt(1 - abar_t)`` of a mixture
  as arrows over the noised density, with a slider over t (notebook 02).
- ``PathDashboard``: one or two sampling paths with a slider over the step; two paths of the same batch are
  joined point by point by segments (their length is the drift) (notebooks 02-04).
- ``LiveLossPlot``: a loss curve fed from ``train.train_iter`` while it runs, over the ideal loss (03).
- ``StepCountDashboard``: final samples of several models for a slider over the number of sampling steps, one
  panel per model (02, 05).
- ``SAControls``: K and lam controls and a button that calls back to (re)train, with a training state (05).
- ``DigitGridDashboard``: digit sample grids of several models for a slider over the number of steps (06).
- ``Explorer``: the no-code page of ``make app``: dataset, loss, solver and step count; paths, drift, metrics.
- ``SolverDashboard``: final samples of several models for a slider over the number of steps and a choice of
  solver (07).

This module imports plotly and ipywidgets; the core modules never do.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import html
import inspect
import math
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import anywidget
import ipywidgets as W
import numpy as np
import plotly
import plotly.graph_objects as go
import torch
import traitlets
from einops import rearrange
from plotly.subplots import make_subplots

from ._validate import check_float, check_int, check_tensor, check_type
from .data import GaussianMixture
from .samplers import Trajectory
from .schedule import Schedule
from . import viz
from .viz import segments_xy

__all__ = ["FigureWidget", "NoisingDashboard", "ScoreFieldDashboard", "PathDashboard", "LiveLossPlot", "StepCountDashboard",
           "SAControls", "DigitGridDashboard", "Explorer", "SolverDashboard", "segments_xy", "update_traces", "replace_figure",
           "steps_label", "load_frames", "decode_frame", "show_frame", "FrameCaption"]


# viz.style_layout options of the dashboards: narrower margins than viz's figures, no legend background
_LOOK = dict(margin=dict(l=50, b=40), legend_bg=False)


# ---------------------------------------------------------------------------------------------- figure widget
# plotly's FigureWidget is an anywidget whose front-end module is all of plotly.js (5 MB), sent in every
# figure's state and parsed again for every figure (seconds each on a busy machine); anywidget gives a model
# 2 s to initialize, so on a page reload, when every figure of a notebook is restored at once, some fail
# ("Failed to initialize model") and stay blank or stale. Here the module travels once per kernel, in one
# shared widget, is parsed once per page (cached by its hash), and anywidget's initialization returns at once;
# each figure's view waits for the module.
_LOADER_ESM = """
const CACHE = "__seqdiffPlotlyWidget";
async function source(model) {
  const id = String(model.get("_seqdiff_bundle")).replace("IPY_MODEL_", "");
  for (let k = 0; k < 1200; k++) {  // on a reload the shared widget may be restored after this figure
    try { return (await model.widget_manager.get_model(id)).get("source"); }
    catch (e) { await new Promise((r) => setTimeout(r, 50)); }
  }
  throw new Error("seqdiff_kit: plotly's front-end module did not arrive");
}
function load(model) {
  const cache = (globalThis[CACHE] ??= new Map());
  const key = model.get("_seqdiff_bundle_id");
  if (!cache.has(key)) {
    cache.set(key, source(model).then((text) => {
      const url = URL.createObjectURL(new Blob([text], { type: "text/javascript" }));
      // the module sets window.Plotly as it loads: keep that plotly.js, the one its views draw with (the page
      // may hold another, e.g. JupyterLab's plotly renderer's, whose calls would drop this one's event hooks)
      return import(url).then((mod) => ({ mod, Plotly: globalThis.Plotly }))
                        .finally(() => URL.revokeObjectURL(url));
    }));
  }
  return cache.get(key);
}
// Frames switched in the browser (see load_frames): every frame's arrays arrive once, as one float32 buffer
// described by _seqdiff_frame_spec; a change of _seqdiff_frame or _seqdiff_page (jslinked to a slider's or a
// toggle's index) restyles the figure here, without the kernel.
const FLOATS = new WeakMap();
function floats(model) {
  const v = model.get("_seqdiff_frames");
  if (!v || !v.byteLength) return null;
  if (!FLOATS.has(v)) {  // one aligned copy per buffer: a message's buffers may start at any byte
    const bytes = v.buffer.slice(v.byteOffset || 0, (v.byteOffset || 0) + v.byteLength);
    FLOATS.set(v, new Float32Array(bytes));
  }
  return FLOATS.get(v);
}
function frameValues(model) {  // [[trace, property, array or rows of arrays], ...] of the frame shown, or null
  const spec = model.get("_seqdiff_frame_spec"), data = floats(model);
  if (!spec || !spec.parts || !spec.parts.length || !data) return null;
  const j = model.get("_seqdiff_page") * spec.n + model.get("_seqdiff_frame");
  if (j < 0 || (j + 1) * spec.size > data.length) return null;
  let off = j * spec.size;
  return spec.parts.map(([k, prop, rows, cols]) => {
    const v = rows ? Array.from({ length: rows }, (_, r) => data.subarray(off + r * cols, off + (r + 1) * cols))
                   : data.subarray(off, off + cols);
    off += rows ? rows * cols : cols;
    return [k, prop, v];
  });
}
function withFrame(model) {  // the saved figure with the frame shown: what a (re)drawn view starts from
  const data = model.get("_widget_data"), values = frameValues(model);
  if (!values || !Array.isArray(data)) return data;
  const out = data.map((t) => ({ ...t }));
  // in the form plotly's view decodes arrays from the kernel: {dtype, shape, buffer}, a copy of the frame's part
  const encode = (a) => ({ dtype: "float32", shape: [a.length], buffer: { buffer: a.slice().buffer } });
  for (const [k, prop, v] of values) if (out[k]) out[k][prop] = Array.isArray(v) ? v.map(encode) : encode(v);
  return out;
}
function showFrame(model, el, Plotly) {
  const values = frameValues(model);
  if (!values) return;
  const traces = [...new Set(values.map((p) => p[0]))];
  if (traces.every((k) => el.data[k] && el.data[k].type === "scatter")) {
    // points only: an animation frame without a transition redraws just these traces, not every trace and
    // axis of the figure as a restyle does (half the time for a figure of three panels)
    const data = traces.map(() => ({}));
    for (const [k, prop, v] of values) data[traces.indexOf(k)][prop] = v;
    Plotly.animate(el, { data, traces }, { transition: { duration: 0 }, frame: { duration: 0, redraw: false },
                                           mode: "immediate" });
    return;
  }
  const update = { _doNotReportToPy: true };
  for (const [k, prop, v] of values) (update[prop] ??= new Array(traces.length).fill(undefined))[traces.indexOf(k)] = v;
  Plotly.restyle(el, update, traces);
}
// plotly's view hooks its events on the figure once its first drawing is done; restyling before that
// would race it
const drawn = (el) => !!(el._ev && el._ev._events && el._ev._events.plotly_restyle);
function followFrames(model, el, Plotly) {
  let pending = null;
  const show = () => {
    if (pending !== null) return;  // the pending call shows the latest frame
    const attempt = (n) => {
      if (drawn(el) || n > 400) { pending = null; showFrame(model, el, Plotly); }
      else pending = setTimeout(() => attempt(n + 1), 25);
    };
    attempt(0);
  };
  const events = "change:_seqdiff_frame change:_seqdiff_page change:_seqdiff_frames";
  model.on(events, show);
  return () => { model.off(events, show); clearTimeout(pending); };
}
// the model as plotly's view sees it: its saved data come with the frame shown (a reload, a second view)
function framedModel(model) {
  return new Proxy(model, {
    get(target, prop) {
      if (prop === "get") return (key) => (key === "_widget_data" ? withFrame(target) : target.get(key));
      const v = target[prop];
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
export default () => {
  let widget;
  return {
    initialize(ctx) {
      widget = load(ctx.model).then(({ mod, Plotly }) => {
        const w = mod.default();
        w.initialize({ ...ctx, model: framedModel(ctx.model) });
        return { w, Plotly };
      });
    },
    async render(ctx) {
      const { w, Plotly } = await widget;
      const cleanup = await w.render(ctx);
      const stop = followFrames(ctx.model, ctx.el, Plotly);
      return () => { stop(); if (typeof cleanup === "function") cleanup(); };
    },
  };
};
"""


class _PlotlyModule(W.Widget):
    """A view-less widget holding plotly's FigureWidget front-end module (``source``), shared by every figure."""

    source = traitlets.Unicode().tag(sync=True)


@functools.lru_cache(maxsize=1)
def _plotly_module() -> tuple[_PlotlyModule, str]:
    """The shared module widget (created once per kernel) and a short hash of the module's text."""
    text = (Path(plotly.__file__).parent / "package_data" / "widgetbundle.js").read_text(encoding="utf-8")
    return _PlotlyModule(source=text), hashlib.sha256(text.encode()).hexdigest()[:16]


class FigureWidget(go.FigureWidget):
    """plotly's ``FigureWidget`` whose front-end module travels and loads once (see ``_LOADER_ESM``): the same
    figure, the same Python API, the same messages."""

    _esm = _LOADER_ESM
    _seqdiff_bundle = traitlets.Instance(W.Widget).tag(sync=True, **W.widget_serialization)
    _seqdiff_bundle_id = traitlets.Unicode().tag(sync=True)
    # frames switched in the browser (load_frames): every frame's arrays, their layout, the frame shown
    _seqdiff_frames = traitlets.Bytes(b"").tag(sync=True)
    _seqdiff_frame_spec = traitlets.Dict().tag(sync=True)
    _seqdiff_frame = traitlets.Int(0).tag(sync=True)
    _seqdiff_page = traitlets.Int(0).tag(sync=True)

    @traitlets.default("_seqdiff_bundle")
    def _default_bundle(self) -> W.Widget:
        return _plotly_module()[0]

    @traitlets.default("_seqdiff_bundle_id")
    def _default_bundle_id(self) -> str:
        return _plotly_module()[1]


# ---------------------------------------------------------------------------------------------- figure state
def update_traces(fig: go.FigureWidget, changes: Mapping[int, Mapping[str, object]]) -> None:
    """Set properties of some traces of ``fig`` (``{trace index: {property: value}}``) in ONE message to the
    browser, which redraws only those traces' data, and keep the widget's saved state equal to what is shown.

    plotly.py syncs a FigureWidget's state (``_widget_data``) to the browser only when it is assigned whole (on
    display); later edits travel as messages that the saved state never sees, so a page reloaded with the
    kernel running would redraw the first frame. The new values are written into that state in place, which
    sends nothing more: the message above already carried them."""
    with fig.batch_update():
        for k, props in changes.items():
            fig.data[k].update(props)
    state = fig._widget_data
    for k, props in changes.items():
        validated = fig._data[k]
        for key in props:
            state[k][key] = validated.get(key)


Changes = Mapping[int, Mapping[str, object]]  # {trace index: {property: array}}: what one frame sets


def load_frames(fig: FigureWidget, frames: Sequence[Changes], n_frames: int) -> None:
    """Send every frame of ``fig`` to the browser at once, so that a slider jslinked to ``fig._seqdiff_frame``
    (and a toggle to ``fig._seqdiff_page``) switches frames there, without a round trip to the kernel.

    ``frames[page * n_frames + j]`` is frame ``j`` of page ``page``: the arrays (1-D, or 2-D such as a
    heatmap's ``z``) that the frame puts into the traces; every frame sets the same properties with the same
    shapes. They travel once as one float32 buffer (NaN stays a gap); a frame is then a view into it."""
    check_type("fig", fig, FigureWidget)
    n_frames = check_int("n_frames", n_frames, 1)
    frames = list(frames)
    if not frames or len(frames) % n_frames:
        raise ValueError(f"frames must hold a whole number of pages of n_frames = {n_frames} frames, "
                         f"got {len(frames)}")
    parts, arrays = [], []
    for j, frame in enumerate(frames):
        flat = []
        for k, props in frame.items():
            for key, value in props.items():
                a = np.asarray(value, dtype=np.float32)  # a None of a list (a gap) becomes NaN
                if a.ndim not in (1, 2):
                    raise ValueError(f"frames[{j}][{k}][{key!r}] must be a 1-D or 2-D array, got shape {a.shape}")
                flat.append(a.ravel())
                shape = [int(k), str(key), a.shape[0] if a.ndim == 2 else 0, a.shape[-1]]
                if j == 0:
                    parts.append(shape)
                elif len(parts) < len(flat) or parts[len(flat) - 1] != shape:
                    raise ValueError(f"frames[{j}] must set the same properties with the same shapes as frames[0] "
                                     f"({parts}), got {shape} at position {len(flat) - 1}")
        if len(flat) != len(parts):
            raise ValueError(f"frames[{j}] sets {len(flat)} arrays, frames[0] {len(parts)}")
        arrays.extend(flat)
    size = sum((r or 1) * c for _, _, r, c in parts)
    with fig.hold_sync():
        fig._seqdiff_frames = np.concatenate(arrays).astype("<f4").tobytes() if arrays else b""
        fig._seqdiff_frame_spec = {"n": n_frames, "size": size, "parts": parts}


def decode_frame(fig: FigureWidget, j: int, page: int = 0) -> dict[int, dict[str, np.ndarray]]:
    """Frame ``j`` of ``page`` as the browser reads it from what ``load_frames`` sent (float32 arrays)."""
    spec = fig._seqdiff_frame_spec
    if not spec:
        raise ValueError("fig holds no frames: call load_frames first")
    index = check_int("page", page, 0) * spec["n"] + check_int("j", j, 0, spec["n"] - 1)
    data = np.frombuffer(fig._seqdiff_frames, dtype="<f4")
    if (index + 1) * spec["size"] > data.size:
        raise ValueError(f"page must be below {data.size // (spec['size'] * spec['n'])}, got {page}")
    out: dict[int, dict[str, np.ndarray]] = {}
    off = index * spec["size"]
    for k, key, rows, cols in spec["parts"]:
        n = (rows or 1) * cols
        out.setdefault(k, {})[key] = data[off:off + n].reshape((rows, cols) if rows else (cols,))
        off += n
    return out


def show_frame(fig: FigureWidget, j: int, page: int, changes: Changes) -> None:
    """Show frame ``j`` of ``page`` (sent by ``load_frames``): the browser switches to it (one small message,
    or none when a jslinked slider already moved it there), and ``fig.data`` in Python takes ``changes``, the
    frame's arrays, without sending them again."""
    for k, props in changes.items():
        fig._perform_plotly_restyle({key: [value] for key, value in props.items()}, [k])
    with fig.hold_sync():
        fig._seqdiff_frame, fig._seqdiff_page = int(j), int(page)


class FrameCaption(anywidget.AnyWidget):
    """A caption that follows a slider in the browser: ``captions[page * n + frame]`` is shown, where ``frame``
    and ``page`` are jslinked to the slider's and a toggle's index. ``value`` is the caption shown."""

    _esm = """
    function render({ model, el }) {
      const div = document.createElement("div");
      div.className = "widget-html-content seqdiff-caption";
      const draw = () => {
        const i = model.get("page") * model.get("n") + model.get("frame");
        div.innerHTML = model.get("captions")[i] ?? "";
      };
      const events = "change:frame change:page change:captions change:n";
      model.on(events, draw);
      draw();
      el.classList.add("widget-html");
      el.appendChild(div);
      return () => model.off(events, draw);
    }
    export default { render };
    """
    captions = traitlets.List(traitlets.Unicode()).tag(sync=True)
    n = traitlets.Int(1).tag(sync=True)
    frame = traitlets.Int(0).tag(sync=True)
    page = traitlets.Int(0).tag(sync=True)

    @property
    def value(self) -> str:
        i = self.page * self.n + self.frame
        return self.captions[i] if 0 <= i < len(self.captions) else ""


def replace_figure(fig: go.FigureWidget, new: go.Figure) -> None:
    """Make ``fig`` show ``new`` (its traces and layout), e.g. after a retrain: rare, so the whole state is sent."""
    check_type("fig", fig, go.FigureWidget)
    check_type("new", new, go.Figure)
    with fig.batch_update():
        fig.data = ()
        fig.add_traces(list(new.data))
        fig.layout = new.layout
    fig._widget_data = copy.deepcopy(fig._data)
    fig._widget_layout = copy.deepcopy(fig._layout_obj._props)


def steps_label(n: int) -> str:
    """``"1 sampling step"``, ``"20 sampling steps"``."""
    return f"{n} sampling step" + ("" if n == 1 else "s")


def _cloud_layout(fig: go.Figure, bounds, suffix: str = "") -> None:
    """Fixed square axes ``bounds`` (of the subplot ``suffix``: "", "2", ...) that keep their range: the plot
    area shrinks to the square instead of the range growing or being cut."""
    fig.update_layout({f"xaxis{suffix}": dict(range=[bounds[0], bounds[1]], autorange=False, constrain="domain"),
                       f"yaxis{suffix}": dict(range=[bounds[2], bounds[3]], autorange=False, constrain="domain",
                                              scaleanchor=f"x{suffix}", scaleratio=1)})


def _density_background(mixture: GaussianMixture, bounds, grid_size: int = 50) -> go.Heatmap:
    """The mixture's clean log-density on ``bounds`` as a heatmap smoothed by the browser's image scaling
    (``zsmooth="fast"``): plotly redraws every trace when a slider moves, and this costs far less than contour
    lines or plotly's own ("best") smoothing (docs/performance.md)."""
    xs, ys, z = viz.log_density_grid(mixture, bounds, grid_size)
    return go.Heatmap(x=xs, y=ys, z=viz.clip_tails(z), colorscale=viz.DENSITY_SCALE, showscale=False,
                      zsmooth="fast", hoverinfo="skip", name="log p")


def _cloud_figure(mixture: GaussianMixture | None, bounds, title: str | None) -> go.Figure:
    """The base of a 2-D point-cloud dashboard: the mixture's density (or nothing) on fixed square axes
    ``bounds``, with a horizontal legend on top. The caller adds its scatter traces after the background."""
    fig = go.Figure([_density_background(mixture, bounds)] if mixture is not None else [])
    viz.style_layout(fig, title, margin=dict(l=50, b=40, t=90), legend_bg=False, width=620, height=600)
    fig.update_xaxes(title="x<sub>1</sub>")
    fig.update_yaxes(title="x<sub>2</sub>")
    _cloud_layout(fig, bounds)
    fig.update_layout(legend=dict(orientation="h", x=0, y=1.0, xanchor="left", yanchor="bottom"))
    return fig


def _bounds(clouds: np.ndarray, mixture: GaussianMixture | None) -> tuple[float, float, float, float]:
    """Square bounds holding (almost) every point of ``clouds`` [..., 2] and every cluster of ``mixture`` whole:
    the outer clusters are where over-dispersion shows, so they are never clipped."""
    return viz.square_bounds(clouds, include=viz.mixture_bounds(mixture) if mixture is not None else None)


def _unique_labels(labels: list[str], what: str) -> list[str]:
    if len(set(labels)) != len(labels):
        raise ValueError(f"{what} must be distinct (one slider position each), got {labels}")
    return labels


class _ShowsWidget:
    """Mixin: a bare object at the end of a notebook cell displays its ``widget``."""

    widget: W.Widget

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


class _SliderDashboard(_ShowsWidget):
    """Shared plumbing: a slider over ``n_frames`` precomputed frames. Every frame (``frame(j, page)``, the
    traces' arrays) and caption (``caption(j, page)``) goes to the browser once (``load_frames``); the slider's
    index is jslinked to the figure and the caption, so moving it redraws in the browser without the kernel.
    The kernel still follows: the slider's observer calls ``update(j)``, which keeps ``fig.data`` equal to what
    is shown. Its readout shows ``frame_labels()`` (t or a step count). ``n_pages`` > 1: pages of frames picked
    by a toggle (``SolverDashboard``'s solvers)."""

    n_frames: int
    n_pages: int = 1
    page: int = 0
    fig: FigureWidget

    def _wire(self, description: str) -> None:
        labels = _unique_labels(self.frame_labels(), "the frames' labels")
        self.slider = W.SelectionSlider(options=list(zip(labels, range(len(labels)))), value=0,
                                        description=description, continuous_update=False,
                                        layout=W.Layout(width="420px"), style={"description_width": "initial"})
        self.label = FrameCaption(layout=W.Layout(min_width="300px", flex="1 1 auto"))
        self._links = [W.jslink((self.slider, "index"), (self.fig, "_seqdiff_frame")),
                       W.jslink((self.slider, "index"), (self.label, "frame"))]
        self.slider.observe(lambda change: self.update(change["new"]), names="value")
        self._load_frames()
        self.widget = W.VBox([W.HBox([self.slider, self.label]), self.fig])

    def _load_frames(self) -> None:
        """Send every frame and caption to the browser (at construction and after new data)."""
        pages, frames = range(self.n_pages), range(self.n_frames)
        load_frames(self.fig, [self.frame(j, p) for p in pages for j in frames], self.n_frames)
        with self.label.hold_sync():
            self.label.captions = [self.caption(j, p) for p in pages for j in frames]
            self.label.n = self.n_frames

    def _new_frames(self) -> None:
        """After new data (a retrain, another setting): new slider positions, frames and captions; frame 0."""
        labels = _unique_labels(self.frame_labels(), "the frames' labels")
        self._load_frames()
        with self.slider.hold_trait_notifications():
            self.slider.options = list(zip(labels, range(len(labels))))
            self.slider.value = 0
        self.update(0)

    def frame_labels(self) -> list[str]:  # overridden
        return [str(j) for j in range(self.n_frames)]

    def caption(self, j: int, page: int = 0) -> str:  # overridden
        return ""

    def frame(self, j: int, page: int = 0) -> Changes:  # overridden: the traces' arrays of frame j
        return {}

    def _check_frame(self, j) -> int:
        return check_int("j", j, 0, self.n_frames - 1)

    def update(self, j: int) -> None:
        """Show frame ``j``: moves the slider (the browser redraws from the frames it holds) and ``fig.data``."""
        j = self._check_frame(j)
        if self.slider.value != j:
            self.slider.value = j  # its observer calls update(j) again
            return
        show_frame(self.fig, j, self.page, self.frame(j, self.page))
        with self.label.hold_sync():
            self.label.frame, self.label.page = j, self.page


class _StepCountDashboard(_SliderDashboard):
    """A dashboard with one frame per number of sampling steps."""

    def _set_steps(self, steps: Sequence[int], names) -> None:
        self.steps = [check_int("steps", s, 1) for s in steps]
        if not self.steps:
            raise ValueError("steps must hold at least one step count")
        self.names, self.n_frames = list(names), len(self.steps)

    def frame_labels(self) -> list[str]:
        return [str(s) for s in self.steps]

    def caption(self, j: int, page: int = 0) -> str:
        return f"<b>{steps_label(self.steps[j])}</b>"


# ---------------------------------------------------------------------------------------------- 01: noising
class NoisingDashboard(_SliderDashboard):
    """The forward process on 2-D points and on images, one frame per timestep in ``ts``:

        x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps      (the same eps for every t, so a point moves smoothly)

    ``points`` [N, 2] clean 2-D data; ``images`` [M, 1, H, W] clean images in [-1, 1] (optional), tiled in a row.
    ``ts`` the timesteps of the frames (default: 41 evenly spaced from 0 to T-1, plus the clean data t=-1
    first). The noise is drawn once from ``generator``."""

    def __init__(self, points: torch.Tensor, schedule: Schedule, images: torch.Tensor | None = None, *,
                 ts: Sequence[int] | None = None, generator: torch.Generator | None = None,
                 max_points: int = 400, title: str | None = "The forward process: data becomes noise"):
        check_tensor("points", points, ndim=2, nonempty=True, finite=True)
        if points.shape[1] != 2:
            raise ValueError(f"points must have shape [N, 2], got {tuple(points.shape)}")
        check_type("schedule", schedule, Schedule)
        max_points = check_int("max_points", max_points, 1)
        if ts is None:
            ts = [-1] + viz.subsample_index(schedule.T, 41).tolist()
        ts = [int(t) for t in ts]
        if not ts or min(ts) < -1 or max(ts) > schedule.T - 1 or len(set(ts)) != len(ts):
            raise ValueError(f"ts must be a non-empty list of distinct timesteps in [-1, {schedule.T - 1}], "
                             f"got {ts[:6]}...")
        self.schedule, self.ts, self.n_frames = schedule, ts, len(ts)
        t = torch.tensor(ts)                                                                 # [S]
        S = len(ts)

        def noised(x0: torch.Tensor) -> torch.Tensor:
            """Every frame at once, [S, *x0.shape]: one eps (drawn here) for all t, so a point moves smoothly."""
            eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
            return schedule.add_noise(x0.expand(S, *x0.shape), t, eps.expand(S, *x0.shape))

        self.xy = noised(points[:max_points].double()).numpy()                              # [S, N, 2]
        self.abar = schedule.alpha_bar(t).numpy()
        self.images = None
        if images is not None:
            check_tensor("images", images, ndim=4, nonempty=True, finite=True)
            frames = noised(images.double())                                                # [S, M, 1, H, W]
            # one image row per frame: [S, M, 1, H, W] -> [S, H, M*W] (NaN-free, so it travels as JSON as is)
            self.images = rearrange(frames, "s m 1 h w -> s h (m w)").numpy()
        cols = 2 if self.images is not None else 1
        base = make_subplots(rows=1, cols=cols, column_widths=[0.5, 0.5][:cols], horizontal_spacing=0.08,
                             subplot_titles=("2-D points", "digits")[:cols])
        style = viz.series_styles(["x_t"])[0]
        base.add_trace(go.Scatter(x=self.xy[0, :, 0], y=self.xy[0, :, 1], mode="markers", name="x_t",
                                  marker=viz.marker_style(style, 4, 0.7, edge=False)), row=1, col=1)
        if self.images is not None:
            base.add_trace(go.Heatmap(z=self.images[0], zmin=-1.5, zmax=1.5, colorscale="gray", showscale=False,
                                      name="digits", hoverinfo="skip"), row=1, col=2)
            base.update_yaxes(autorange="reversed", scaleanchor="x2", visible=False, row=1, col=2)
            base.update_xaxes(visible=False, row=1, col=2)
        lim = 3.6
        base.update_xaxes(range=[-lim, lim], row=1, col=1, title="x<sub>1</sub>")
        base.update_yaxes(range=[-lim, lim], row=1, col=1, scaleanchor="x", title="x<sub>2</sub>")
        viz.style_layout(base, title, **_LOOK, width=900 if cols == 2 else 520, height=470, showlegend=False)
        self.fig = FigureWidget(base)
        self._wire("timestep")

    def frame_labels(self) -> list[str]:
        return ["clean" if t < 0 else f"t = {t}" for t in self.ts]

    def caption(self, j: int, page: int = 0) -> str:
        t, a = self.ts[j], float(self.abar[j])
        snr = "inf" if a >= 1 else f"{a / (1 - a):.3g}"
        return f"<b>t = {t}</b>{' (clean data)' if t < 0 else ''} &nbsp; alpha_bar = {a:.4f} &nbsp; SNR = {snr}"

    def frame(self, j: int, page: int = 0) -> Changes:
        changes = {0: {"x": self.xy[j, :, 0], "y": self.xy[j, :, 1]}}
        if self.images is not None:
            changes[1] = {"z": self.images[j]}
        return changes


# ---------------------------------------------------------------------------------------------- 02: score field
def _arrowheads(tail: np.ndarray, tip: np.ndarray, size: float, half_angle: float = 0.45) -> np.ndarray:
    """Filled triangles at the tips of the arrows ``tail -> tip`` ([P, 2] each), as one polyline
    ``[left, tip, right, left, nan, ...]`` of shape [5P, 2]; each head is ``size`` long (shorter on short
    arrows: at most half the arrow) and opens by ``half_angle`` radians on each side."""
    v = tip - tail
    length = np.linalg.norm(v, axis=1, keepdims=True)
    unit = np.divide(v, length, out=np.zeros_like(v), where=length > 0)
    h = np.minimum(size, 0.5 * length)                                           # [P, 1]
    back = tip - h * unit * math.cos(half_angle)
    normal = np.stack([-unit[:, 1], unit[:, 0]], axis=1) * h * math.sin(half_angle)
    gap = np.full_like(tip, np.nan)
    return rearrange(np.stack([back + normal, tip, back - normal, back + normal, gap], axis=1), "p k d -> (p k) d")


class ScoreFieldDashboard(_SliderDashboard):
    """The exact score of a 2-D mixture's noised marginal as arrows on a grid, over ``log p_t``, per timestep:

        s(x, t) = grad_x log p_t(x) = -eps*(x, t) / sqrt(1 - abar_t)

    Arrows point where probability increases. Their lengths are divided by the frame's largest score norm
    (times ``arrow_scale`` grid cells), so every frame is readable; the caption gives that largest norm.
    The density is a heatmap (one small image per frame: far cheaper to redraw than contours)."""

    def __init__(self, mixture: GaussianMixture, schedule: Schedule, ts: Sequence[int] | None = None, *,
                 grid_size: int = 15, density_grid: int = 50, bound: float = 3.0, arrow_scale: float = 0.9,
                 title: str | None = "The score field grad log p_t (arrows) over log p_t"):
        if not isinstance(mixture, GaussianMixture) or mixture.dim != 2:
            raise TypeError(f"mixture must be a 2-D GaussianMixture, got {mixture!r}")
        check_type("schedule", schedule, Schedule)
        grid_size = check_int("grid_size", grid_size, 2, 100)
        density_grid = check_int("density_grid", density_grid, 8, 300)
        bound = check_float("bound", bound, 0.0, low_open=True)
        arrow_scale = check_float("arrow_scale", arrow_scale, 0.0, low_open=True)
        if ts is None:
            ts = [0, 20, 50, 100, 150, 200, 300, 400, 500, 600, 800, 999]
        ts = [int(t) for t in ts]
        if not ts or min(ts) < 0 or max(ts) > schedule.T - 1 or len(set(ts)) != len(ts):
            raise ValueError(f"ts must be a non-empty list of distinct timesteps in [0, {schedule.T - 1}], "
                             f"got {ts}")
        self.ts, self.n_frames = ts, len(ts)
        g = torch.linspace(-bound, bound, grid_size, dtype=torch.float64)
        pts = rearrange(torch.stack(torch.meshgrid(g, g, indexing="xy"), -1), "a b d -> (a b) d")
        cell = 2 * bound / (grid_size - 1)
        self.abar = schedule.alpha_bar(torch.tensor(ts)).numpy()
        arrows, heads, dens, peak = [], [], [], []
        for a in self.abar.tolist():
            score = mixture.score(pts, a)                                   # = -eps*/sqrt(1 - abar)
            norm = torch.linalg.vector_norm(score, dim=1)
            top = float(norm.max())
            tip = pts + arrow_scale * cell * score / max(top, 1e-12)
            arrows.append(segments_xy(pts.numpy(), tip.numpy()))
            heads.append(_arrowheads(pts.numpy(), tip.numpy(), 0.3 * cell))
            xs, ys, logp = viz.log_density_grid(mixture, (-bound, bound, -bound, bound), density_grid, a)
            dens.append(viz.clip_tails(logp))                               # clip the tails for contrast
            peak.append(top)
        self.arrows, self.heads = np.stack(arrows), np.stack(heads)       # [S, 3P, 2], [S, 5P, 2]
        self.density, self.peak = np.stack(dens), np.array(peak)
        ink = "#222"
        fig = go.Figure([
            go.Heatmap(x=xs, y=ys, z=self.density[0], colorscale="Blues", showscale=False, zsmooth="fast",
                       name="log p_t", hoverinfo="skip"),
            go.Scatter(x=self.arrows[0, :, 0], y=self.arrows[0, :, 1], mode="lines", name="score",
                       line=dict(color=ink, width=1.2), hoverinfo="skip"),
            go.Scatter(x=self.heads[0, :, 0], y=self.heads[0, :, 1], mode="lines", name="arrowheads",
                       fill="toself", fillcolor=ink, line=dict(color=ink, width=0.5), hoverinfo="skip",
                       legendgroup="score", showlegend=False)])
        viz.style_layout(fig, title, **_LOOK, width=560, height=560, showlegend=False)
        fig.update_xaxes(range=[-bound * 1.05, bound * 1.05], title="x<sub>1</sub>", constrain="domain")
        fig.update_yaxes(range=[-bound * 1.05, bound * 1.05], scaleanchor="x", title="x<sub>2</sub>",
                         constrain="domain")
        self.fig = FigureWidget(fig)
        self._wire("timestep")

    def frame_labels(self) -> list[str]:
        return [f"t = {t}" for t in self.ts]

    def caption(self, j: int, page: int = 0) -> str:
        return (f"<b>t = {self.ts[j]}</b> &nbsp; alpha_bar = {float(self.abar[j]):.4f} &nbsp; "
                f"largest |score| = {float(self.peak[j]):.3g}")

    def frame(self, j: int, page: int = 0) -> Changes:
        return {0: {"z": self.density[j]},
                1: {"x": self.arrows[j, :, 0], "y": self.arrows[j, :, 1]},
                2: {"x": self.heads[j, :, 0], "y": self.heads[j, :, 1]}}


# ---------------------------------------------------------------------------------------------- paths
class PathDashboard(_SliderDashboard):
    """Sampling paths with a slider over the recorded step.

    ``trajectories`` maps a name to a ``Trajectory`` of 2-D points; all must record the same number of states.
    Frame ``j`` shows ``x`` at state ``j`` of every path (the last frame is the final sample). With exactly two
    paths of the same batch size (e.g. a learned and the ideal path from the same ``x_T`` and noise), segments
    join paired points: their length is the per-sample distance ``||x_a - x_b||``, and the caption reports its
    mean. ``mixture`` draws the clean data density behind the points. At most ``max_points`` points (the same
    indices in every path) are drawn; the axes hold every cluster of ``mixture`` whole."""

    def __init__(self, trajectories: Mapping[str, Trajectory], *, mixture: GaussianMixture | None = None,
                 max_points: int = 200, pair_lines: bool = True, title: str | None = None):
        if not isinstance(trajectories, Mapping) or len(trajectories) == 0:
            raise TypeError(f"trajectories must be a non-empty dict of name -> Trajectory, got {trajectories!r}")
        max_points = check_int("max_points", max_points, 1)
        self.mixture, self.max_points, self.pair_lines = mixture, max_points, pair_lines
        self._load(trajectories)
        fig = self._figure(title or "Sampling paths")
        self.fig = FigureWidget(fig)
        self._wire("sampling")

    def _load(self, trajectories: Mapping[str, Trajectory]) -> None:
        names, _, self.paths, self.pair, self.t = viz.prepare_paths(trajectories, self.max_points,
                                                                    self.pair_lines)
        self.names, self.n_frames = names, len(self.t)                                      # paths: [S, P, 2]
        if self.pair:
            a, b = self.paths[names[0]], self.paths[names[1]]
            self.segments = segments_xy(a, b)                                               # [S, 3P, 2]
            # the caption's mean distance uses every point, not only the drawn ones
            full = trajectories[names[0]].x - trajectories[names[1]].x
            self.mean_distance = viz.to_numpy("mean_distance",
                                              torch.linalg.vector_norm(full.double(), dim=-1).mean(dim=1))

    def _figure(self, title: str) -> go.Figure:
        bounds = _bounds(np.concatenate(list(self.paths.values()), axis=1), self.mixture)
        fig = _cloud_figure(self.mixture, bounds, title)
        self._first = len(fig.data)
        if self.pair:
            fig.add_trace(go.Scatter(x=self.segments[0, :, 0], y=self.segments[0, :, 1], mode="lines",
                                     name="pairing", line=dict(width=0.7, color="rgba(80,80,80,0.5)"),
                                     hoverinfo="skip", showlegend=False))
        for n, style in zip(self.names, viz.series_styles(self.names)):
            p = self.paths[n][0]
            fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="markers", name=n,
                                     marker=viz.marker_style(style, 5, 0.8, edge=False), hoverinfo="skip"))
        return fig

    def set_paths(self, trajectories: Mapping[str, Trajectory], *, title: str | None = None) -> None:
        """Show other paths (the explorer's new settings): a new figure and slider range, the same widgets."""
        self._load(trajectories)
        replace_figure(self.fig, self._figure(title or self.fig.layout.title.text or "Sampling paths"))
        self._new_frames()

    def frame_labels(self) -> list[str]:
        return ["end" if t < 0 else f"t = {t}" for t in self.t]

    def caption(self, j: int, page: int = 0) -> str:
        t = self.t[j]
        where = "the final samples" if t < 0 else f"t = {t}"
        text = f"<b>after {j} of {self.n_frames - 1} steps</b> &nbsp; {where}"
        if self.pair:
            text += f" &nbsp; mean distance = {float(self.mean_distance[j]):.3f}"
        return text

    def frame(self, j: int, page: int = 0) -> Changes:
        k, changes = self._first, {}
        if self.pair:
            changes[k] = {"x": self.segments[j, :, 0], "y": self.segments[j, :, 1]}
            k += 1
        for n in self.names:
            p = self.paths[n][j]
            changes[k] = {"x": p[:, 0], "y": p[:, 1]}
            k += 1
        return changes


# ---------------------------------------------------------------------------------------------- 03: live loss
class LiveLossPlot(_ShowsWidget):
    """A loss curve that grows while a training loop runs.

    ``append(step, **values)`` stores numbers (e.g. ``loss=state.loss``); ``flush()`` pushes them into the
    figure, together with a running mean over ``window`` steps (the raw per-batch loss is noisy). Call
    ``flush`` every few dozen steps: redrawing costs far more than a training step. ``floor`` draws a dashed
    line at a loss no network can beat (the ideal denoiser's), named ``floor_name``."""

    def __init__(self, names: Sequence[str] = ("loss",), *, window: int = 50, title: str | None = "Training loss",
                 log_y: bool = True, floor: float | None = None,
                 floor_name: str = "ideal denoiser's loss (the floor)"):
        self.names = [str(n) for n in names]
        if not self.names:
            raise ValueError("names must hold at least one series name, got an empty list")
        self.window = check_int("window", window, 1)
        self.floor = None if floor is None else check_float("floor", floor, 0.0, low_open=log_y)
        self.steps: list[int] = []
        self.values: dict[str, list[float]] = {n: [] for n in self.names}
        fig = go.Figure()
        for n, style in zip(self.names, viz.series_styles(self.names)):
            # the per-batch line in a faint tint of the colour: a different colour, so never drawn alike
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name=f"{n} (per batch)",
                                     line=dict(color=viz.tint(style.color, 0.3), width=1, dash=style.dash)))
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name=f"{n} (mean of {self.window})",
                                     line=dict(color=style.color, width=2.5, dash=style.dash)))
        if self.floor is not None:  # dashed: a yardstick, not a measured series
            style = viz.series_styles(self.names + [floor_name])[-1]
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name=floor_name,
                                     line=dict(color=style.color, width=2, dash="dash")))
        viz.style_layout(fig, title, **_LOOK, width=700, height=380)
        fig.update_xaxes(title="training step")
        fig.update_yaxes(title="loss", type="log" if log_y else "linear")
        self.fig = FigureWidget(fig)
        self.widget = self.fig

    def append(self, step: int, **values: float) -> None:
        unknown = set(values) - set(self.names)
        if unknown:
            raise ValueError(f"values must be among the series {self.names}, got {sorted(unknown)}")
        self.steps.append(int(step))
        for n in self.names:
            self.values[n].append(float(values.get(n, math.nan)))

    def running_mean(self, name: str) -> np.ndarray:
        """Mean of the last ``window`` values at every step (fewer at the start): ``m_i = mean(v[i-w+1 .. i])``."""
        v = np.asarray(self.values[name], dtype=np.float64)
        c = np.concatenate([[0.0], np.cumsum(v)])
        i = np.arange(1, len(v) + 1)
        lo = np.maximum(i - self.window, 0)
        return (c[i] - c[lo]) / (i - lo)

    def flush(self) -> None:
        steps = np.asarray(self.steps, dtype=np.float64)
        changes = {}
        for k, n in enumerate(self.names):
            changes[2 * k] = {"x": steps, "y": np.asarray(self.values[n], dtype=np.float64)}
            changes[2 * k + 1] = {"x": steps, "y": self.running_mean(n)}
        if self.floor is not None and len(steps):
            changes[2 * len(self.names)] = {"x": np.array([steps[0], steps[-1]]),
                                            "y": np.array([self.floor, self.floor])}
        update_traces(self.fig, changes)


# ---------------------------------------------------------------------------------------------- 05
class StepCountDashboard(_StepCountDashboard):
    """Final samples of several models, one frame per number of sampling steps.

    ``finals[name][k]`` is the [N, 2] final sample of model ``name`` run with ``steps[k]`` steps (all from the
    same ``x_T``). ``mixture`` draws the true density behind them. ``panels``: one panel per model side by side
    (default when there is more than one model: overlaid clouds hide each other), else one shared panel."""

    def __init__(self, steps: Sequence[int], finals: Mapping[str, Sequence[torch.Tensor]], *,
                 mixture: GaussianMixture | None = None, max_points: int = 250, panels: bool | None = None,
                 title: str | None = "Final samples against the number of sampling steps"):
        self.mixture, self.max_points, self.title = mixture, check_int("max_points", max_points, 1), title
        self.panels = panels
        self._load(steps, finals)
        self.fig = FigureWidget(self._figure())
        self._wire("steps")

    def _load(self, steps, finals) -> None:
        if not isinstance(finals, Mapping) or not finals:
            raise TypeError(f"finals must be a non-empty dict of name -> list of [N, 2] samples, got {finals!r}")
        self._set_steps(steps, finals)
        self.clouds = {}
        for n, lst in finals.items():
            if len(lst) != len(self.steps):
                raise ValueError(f"finals[{n!r}] must hold one sample per step count ({len(self.steps)}), "
                                 f"got {len(lst)}")
            self.clouds[n] = np.stack([viz.to_numpy(f"finals[{n!r}]", x[:self.max_points]) for x in lst])

    def _figure(self) -> go.Figure:
        bounds = _bounds(np.concatenate(list(self.clouds.values()), axis=1), self.mixture)
        panels = len(self.names) > 1 if self.panels is None else bool(self.panels)
        styles = viz.series_styles(self.names)
        if not panels:
            fig = _cloud_figure(self.mixture, bounds, self.title)
            self._traces = {}
            for n, style in zip(self.names, styles):
                self._traces[n] = len(fig.data)
                p = self.clouds[n][0]
                fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="markers", name=n,
                                         marker=viz.marker_style(style, 4, 0.7, edge=False), hoverinfo="skip"))
            return fig
        m = len(self.names)
        fig = make_subplots(rows=1, cols=m, subplot_titles=self.names, horizontal_spacing=0.03)
        if self.mixture is not None:
            background = _density_background(self.mixture, bounds)
            for c in range(m):
                fig.add_trace(background, row=1, col=c + 1)
        self._traces = {}
        for c, (n, style) in enumerate(zip(self.names, styles)):
            self._traces[n] = len(fig.data)
            p = self.clouds[n][0]
            fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="markers", name=n,
                                     marker=viz.marker_style(style, 4, 0.7, edge=False), hoverinfo="skip"), row=1, col=c + 1)
        # no fixed width: the panels share the output's width (a notebook's is about 850 px at 1280 px)
        viz.style_layout(fig, self.title, **_LOOK, height=420, autosize=True)
        fig.update_layout(legend=dict(orientation="h", x=0, y=-0.02, xanchor="left", yanchor="top"))
        for c in range(m):
            suffix = "" if c == 0 else str(c + 1)
            _cloud_layout(fig, bounds, suffix)
            fig.update_layout({f"xaxis{suffix}": dict(showticklabels=False),
                               f"yaxis{suffix}": dict(showticklabels=c == 0)})
        return fig

    def set_samples(self, steps: Sequence[int], finals: Mapping[str, Sequence[torch.Tensor]]) -> None:
        """Show new samples (e.g. after a retrain): the figure is rebuilt, the slider keeps its widget."""
        self._load(steps, finals)
        replace_figure(self.fig, self._figure())
        self._new_frames()

    def frame(self, j: int, page: int = 0) -> Changes:
        return {self._traces[n]: {"x": self.clouds[n][j][:, 0], "y": self.clouds[n][j][:, 1]}
                for n in self.names}


# lam values a class can try: 0 (the simple loss alone) up to 10
LAM_CHOICES = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0)


class SAControls(_ShowsWidget):
    """K and lam controls for the sequence-aware loss and a button that calls ``on_train(K, lam)``.

    The callback does the (slow) work, e.g. retrain and refresh the figures; whatever it prints or displays
    goes into ``output``, which is cleared first. While it runs the button is disabled and reads "training...",
    and ``status`` says what is being trained; then how long it took (or that it failed). Training takes
    seconds to minutes, so it runs on a click, never on a slider move. ``lams`` are the lam choices (0, the
    simple loss alone, included)."""

    def __init__(self, on_train: Callable[[int, float], object], *, K: int = 2, lam: float = 1.0,
                 K_max: int = 8, lams: Sequence[float] = LAM_CHOICES, label: str = "train simple and SA"):
        if not callable(on_train):
            raise TypeError(f"on_train must be callable as on_train(K, lam), got {type(on_train).__name__}")
        K_max = check_int("K_max", K_max, 1)
        K = check_int("K", K, 1, K_max)
        lam = check_float("lam", lam, 0.0)
        choices = sorted({check_float("lams", v, 0.0) for v in lams} | {lam})
        self.on_train, self.label_text = on_train, str(label)
        self.K = W.IntSlider(value=K, min=1, max=K_max, description="K (steps summed)",
                             style={"description_width": "initial"}, layout=W.Layout(width="300px"))
        self.lam = W.SelectionSlider(options=[(f"{v:g}", v) for v in choices], value=lam,
                                     description="lam (SA weight)", style={"description_width": "initial"},
                                     layout=W.Layout(width="320px"))
        self.button = W.Button(description=self.label_text, button_style="primary", icon="play",
                               layout=W.Layout(width="auto", min_width="190px"))
        self.status = W.HTML("")
        self.output = W.Output()
        self.button.on_click(lambda _: self.run())
        self.widget = W.VBox([W.HBox([self.K, self.lam, self.button]), self.status, self.output])

    @property
    def values(self) -> tuple[int, float]:
        return int(self.K.value), float(self.lam.value)

    def run(self):
        """Call ``on_train(K, lam)`` with the widgets' values, capturing its output; returns its result."""
        K, lam = self.values
        self.output.clear_output()
        self.button.disabled, self.button.description, self.button.icon = True, "training...", "hourglass-half"
        self.status.value = (f"<i>training simple and SA (K = {K}, lam = {lam:g})... the figures above refresh "
                             f"when it is done</i>")
        t0 = time.perf_counter()
        ok = False
        try:
            with self.output:
                result = self.on_train(K, lam)
            ok = True
            return result
        finally:
            seconds = time.perf_counter() - t0
            self.button.disabled, self.button.description, self.button.icon = False, self.label_text, "play"
            self.status.value = (f"done: K = {K}, lam = {lam:g}, in {seconds:.0f} s" if ok else
                                 f"<b>training failed</b> after {seconds:.0f} s (K = {K}, lam = {lam:g})")


# ---------------------------------------------------------------------------------------------- 06: digits
class DigitGridDashboard(_StepCountDashboard):
    """Grids of digit samples from several models side by side, one frame per number of sampling steps.

    ``grids[name]`` is [S, N, 1, 8, 8] (``evaluate.sample_grids``): model ``name`` run with ``steps[k]``
    steps from the same ``x_T``. Each frame is tiled once here (``viz.image_grid``; its gaps become None, so
    the JSON sent to the browser holds no NaN); moving the slider only swaps the precomputed grids in."""

    def __init__(self, steps: Sequence[int], grids: Mapping[str, torch.Tensor], *, nrow: int = 6,
                 title: str | None = "Samples against the number of sampling steps (same x_T)"):
        if not isinstance(grids, Mapping) or not grids:
            raise TypeError(f"grids must be a non-empty dict of name -> [S, N, 1, 8, 8] images, got {grids!r}")
        self._set_steps(steps, grids)
        self.tiles = {}
        for n, g in grids.items():
            check_tensor(f"grids[{n!r}]", g, ndim=5)
            if g.shape[0] != self.n_frames:
                raise ValueError(f"grids[{n!r}] must hold one grid per step count ({self.n_frames}), "
                                 f"got {g.shape[0]}")
            self.tiles[n] = [viz.nan_to_none(viz.image_grid(g[k], nrow=nrow)) for k in range(self.n_frames)]
        fig = make_subplots(rows=1, cols=len(self.names), subplot_titles=self.names, horizontal_spacing=0.04)
        for i, n in enumerate(self.names):
            fig.add_trace(go.Heatmap(z=self.tiles[n][0], zmin=-1, zmax=1, colorscale="gray", showscale=False,
                                     hoverinfo="skip", name=n), row=1, col=i + 1)
        h, w = len(self.tiles[self.names[0]][0]), len(self.tiles[self.names[0]][0][0])
        viz.style_layout(fig, title, **_LOOK, width=min(1000, 80 + len(self.names) * (w * 7 + 20)),
                         height=h * 7 + 110, plot_bgcolor="white")
        fig.update_xaxes(visible=False, constrain="domain")
        fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", scaleratio=1)
        self.fig = FigureWidget(fig)
        self._wire("steps")

    def frame(self, j: int, page: int = 0) -> Changes:
        return {k: {"z": self.tiles[n][j]} for k, n in enumerate(self.names)}


# ---------------------------------------------------------------------------------------------- the explorer
def solver_options() -> list[tuple[str, dict]]:
    """The samplers the explorer offers, read from ``seqdiff_kit.solvers`` when called: the generalized step
    as DDIM (eta = 0) and DDPM (eta = 1), then every further deterministic solver of ``solvers.SOLVERS`` that
    needs nothing from the data (DPM-Solver++(2M), Heun), each as ``(label, keyword arguments of
    solvers.sample)``. The stochastic ones would need the learned and the ideal path to share their noise."""
    from . import solvers

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


class Explorer(_ShowsWidget):
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

    def __init__(self, *, recipe=None, n_points: int = 500, n_reference: int = 1000, quick_steps: int = 2000,
                 seed: int = 0, checkpoint_dir=None, max_points: int = 250):
        from .checkpoint import checkpoint_exists, load_checkpoint
        from .data import CHECKPOINT_DIR, PRESETS

        if recipe is not None and not all(hasattr(recipe, a) for a in ("replace", "build_model", "fit", "seed")):
            raise TypeError(f"recipe must be a recipes.Recipe (or None: shipped models only), got "
                            f"{type(recipe).__name__}")
        self.recipe = recipe
        self.n_points = check_int("n_points", n_points, 2)
        self.n_reference = check_int("n_reference", n_reference, 2)
        self.quick_steps = check_int("quick_steps", quick_steps, 1)
        self.seed = check_int("seed", seed)
        self.schedule = Schedule.linear()
        self.models: dict[tuple, torch.nn.Module] = {}
        self.sources: dict[tuple, str] = {}
        folder = CHECKPOINT_DIR if checkpoint_dir is None else checkpoint_dir
        import json
        from pathlib import Path
        for js in sorted(Path(folder).glob("*.json")):
            if not checkpoint_exists(js.with_suffix("")):  # a JSON without weights (e.g. a study's results)
                continue
            cfg = json.loads(js.read_text(encoding="utf-8"))
            if cfg.get("dataset") in PRESETS and isinstance(cfg.get("loss"), dict):
                key = self._key(cfg["dataset"], cfg["loss"].get("name", "simple"), cfg["loss"].get("K", 1),
                                cfg["loss"].get("lam", 0.0))
                self.models[key], _ = load_checkpoint(js.with_suffix(""))
                self.sources[key] = f"shipped ({js.stem}, {cfg.get('step', '?')} updates)"
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
        """Train the controls' missing model from ``recipe`` (``quick_steps`` updates, progress bar), then show it."""
        from .losses import Loss
        from .train import train_iter

        key = self.setting()
        if key in self.models or self.recipe is None:
            return self.refresh()
        loss = Loss("simple") if key[1] == "simple" else Loss("sa", K=key[2], lam=key[3])
        recipe = self.recipe.replace(name=f"explorer-{key[0]}", dataset=key[0], loss=loss, seed=self.seed,
                                     steps=self.quick_steps)
        fit = {k: v for k, v in recipe.fit.items() if k != "steps"}
        self.train_button.disabled = True
        self.progress.layout.display, self.progress.value, self.progress.max = None, 0, self.quick_steps
        self.status.value = f"<i>training {self._model_name(key)} on {key[0]}...</i>"
        t0 = time.perf_counter()
        try:
            state = None
            for state in train_iter(recipe.build_model(), recipe.data(), recipe.make_schedule(), loss,
                                    steps=self.quick_steps, seed=self.seed, progress=False, **fit):
                if state.step % 50 == 0 or state.step == self.quick_steps:
                    self.progress.value = state.step
            self.models[key] = state.ema.eval()
            self.sources[key] = f"trained here ({self.quick_steps} updates, {time.perf_counter() - t0:.0f} s)"
        finally:
            self.train_button.disabled = False
            self.progress.layout.display = "none"
        self.refresh()

    def _show(self, key: tuple, model) -> None:
        from . import metrics
        from .denoisers import IdealDenoiser
        from .drift import step_drift
        from .solvers import sample

        mixture, steps = self._mixtures[key[0]], int(self.steps.value)
        label, kwargs = self._solvers[self.solver.value]
        ideal = IdealDenoiser(mixture, self.schedule)
        g = torch.Generator().manual_seed(self.seed)
        x_T = torch.randn(self.n_points, 2, generator=g)
        name = self._model_name(key)
        with torch.no_grad():
            if "solver" in kwargs:  # a solver outside the generalized step: paths only, no local/propagated split
                learned = sample(model, x_T, self.schedule, steps, **kwargs)
                reference = sample(ideal, x_T, self.schedule, steps, **kwargs)
                dist = torch.linalg.vector_norm((learned.x - reference.x).double(), dim=-1).mean(dim=1)[1:]
                curves = {"accumulated drift": dist}
                after = reference.t[1:]                      # the timestep of the state each step reaches
            else:
                drift = step_drift(model, ideal, x_T, self.schedule, steps, eta=kwargs["eta"],
                                   generator=torch.Generator().manual_seed(self.seed + 1))
                learned, reference = drift.paths.model, drift.paths.reference
                # (no curve name says "ideal": that word is the ideal denoiser's colour)
                curves = {"accumulated drift": drift.mean("drift"), "local error of the step": drift.mean("local"),
                          "propagated from earlier steps": drift.mean("propagated")}
                after = drift.next_timesteps
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

        data = mixture.sample(self.n_reference, generator=torch.Generator().manual_seed(self.seed + 2))
        again = mixture.sample(self.n_reference, generator=torch.Generator().manual_seed(self.seed + 3))
        rows = []
        for who, x in ((name, learned.final), ("ideal denoiser", reference.final), ("data (a second draw)", again)):
            rows.append((who, f"{metrics.mmd(x, data):.4f}", f"{metrics.sliced_wasserstein(x, data):.3f}",
                         f"{metrics.std_ratio(x, data):.3f}", f"{metrics.mean_log_likelihood(x, mixture):.2f}"))
        self.metrics.value = _html_table(rows, ("", "MMD² (0 best)", "sliced W1 (0 best)", "std ratio (1 best)",
                                                "log-likelihood"))
        self.shown = self._describe(key)
        self.status.value = (f"Showing <b>{self.shown}</b>; model: {self.sources[key]}. "
                             f"{self.n_points} samples from one seeded x_T.")


# ---------------------------------------------------------------------------------------------- 07: solvers
class SolverDashboard(StepCountDashboard):
    """``StepCountDashboard`` with a toggle over the solver: final samples of several models under several
    solvers, one frame per number of sampling steps.

    ``finals[solver][name][k]`` is the [N, 2] final sample of model ``name`` run by ``solver`` with ``steps[k]``
    steps (all from the same ``x_T``); every solver must hold the same models. ``select(solver)`` and
    ``update(j)`` only swap precomputed arrays into the traces."""

    def __init__(self, steps: Sequence[int], finals: Mapping[str, Mapping[str, Sequence[torch.Tensor]]], *,
                 mixture: GaussianMixture | None = None, max_points: int = 250, panels: bool | None = None,
                 title: str | None = "Final samples: solver and number of steps"):
        if not isinstance(finals, Mapping) or not finals or not all(isinstance(v, Mapping) and v
                                                                    for v in finals.values()):
            raise TypeError("finals must be a non-empty dict of solver -> {model name -> list of [N, 2] samples}")
        self.mixture, self.max_points, self.title = mixture, check_int("max_points", max_points, 1), title
        self.panels = panels
        self.solvers = [str(k) for k in finals]
        self._clouds = {}
        for solver, by_model in finals.items():
            self._load(steps, by_model)
            if self._clouds and self.names != list(next(iter(finals.values()))):
                raise ValueError(f"finals[{solver!r}] must hold the models {list(next(iter(finals.values())))}, "
                                 f"got {self.names}")
            self._clouds[str(solver)] = self.clouds
        self.n_pages = len(self.solvers)
        # the figure's bounds hold every solver's samples, so a switch never moves the axes
        self.clouds = {n: np.concatenate([self._clouds[s][n] for s in self.solvers], axis=1) for n in self.names}
        self.fig = FigureWidget(self._figure())
        self.clouds = self._clouds[self.solvers[0]]
        self._wire("steps")
        self.toggle = W.ToggleButtons(options=self.solvers, value=self.solvers[0], description="solver",
                                      style={"button_width": "auto", "description_width": "initial"})
        self._links += [W.jslink((self.toggle, "index"), (self.fig, "_seqdiff_page")),
                        W.jslink((self.toggle, "index"), (self.label, "page"))]
        self.toggle.observe(lambda change: self.select(change["new"]), names="value")
        self.widget = W.VBox([self.toggle, self.widget])
        self.update(0)

    @property
    def solver(self) -> str:
        """The solver shown (the page)."""
        return self.solvers[self.page]

    def caption(self, j: int, page: int = 0) -> str:
        return f"<b>{steps_label(self.steps[j])}</b>, solver {self.solvers[page]}"

    def frame(self, j: int, page: int = 0) -> Changes:
        clouds = self._clouds[self.solvers[page]]
        return {self._traces[n]: {"x": clouds[n][j][:, 0], "y": clouds[n][j][:, 1]} for n in self.names}

    def select(self, solver: str) -> None:
        """Show ``solver``'s samples at the current step count."""
        if solver not in self._clouds:
            raise ValueError(f"solver must be one of {self.solvers}, got {solver!r}")
        self.page, self.clouds = self.solvers.index(solver), self._clouds[solver]
        if self.toggle.value != solver:
            self.toggle.value = solver  # its observer calls select(solver) again
            return
        self.update(self.slider.value)
