"""The browser side of the dashboards: figures whose frames switch in the page, without the kernel.

``FigureWidget`` is plotly's, with its 5 MB front-end module sent once per kernel and parsed once per page
(``_LOADER_ESM``). ``load_frames`` sends every frame at once; a slider jslinked to ``fig._seqdiff_frame`` (a
toggle to ``fig._seqdiff_page``) and to a ``FrameCaption`` then switches frames in the page. ``show_frame``,
``update_traces`` and ``replace_figure`` keep ``fig.data`` and the widget's saved state (what a reloaded page
draws, then showing the frame its saved index names) equal to what is shown.
"""
from __future__ import annotations

import copy
import functools
import hashlib
from pathlib import Path
from typing import Mapping, Sequence

import anywidget
import ipywidgets as W
import numpy as np
import plotly
import plotly.graph_objects as go
import traitlets

from ._validate import check_int, check_type

__all__ = ["FigureWidget", "Changes", "update_traces", "load_frames", "decode_frame", "show_frame", "FrameCaption",
           "replace_figure", "ShowsWidget"]

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
// plotly's animation path (redraw: false) draws only the layers of the traces it animates and takes every
// other layer of the figure off the page (a density background, a digit tile, a panel whose points do not
// move) while its data still lists them. keepLayers puts each such layer back where it was, as the removal
// happens (a MutationObserver answers before the browser paints), for as long as the animation runs; a layer
// goes back only while a visible trace of its type is in its subplot, so a real redraw still removes layers.
function keepLayers(el) {
  const restore = (records) => {
    for (const r of records.reverse()) {
      for (const node of Array.from(r.removedNodes).reverse()) {
        const layer = node.__data__ && node.__data__.className, id = r.target.getAttribute("class");
        if (node.isConnected || typeof layer !== "string") continue;
        const type = layer.replace(/layer\\d*$/, "");
        if (!(el._fullData || []).some((t) => t.visible === true && t.type === type && t.xaxis + t.yaxis === id)) continue;
        const next = r.nextSibling && r.nextSibling.parentNode === r.target ? r.nextSibling : null;
        r.target.insertBefore(node, next);
      }
    }
  };
  const observer = new MutationObserver(restore);
  // a subplot's traces are drawn in g.subplot > g.overplot > g.<id> (e.g. g.xy)
  el.querySelectorAll(".cartesianlayer .subplot > .overplot > g").forEach((g) => observer.observe(g, { childList: true }));
  let on = true;
  return () => {
    if (!on) return;
    on = false;
    restore(observer.takeRecords());
    observer.disconnect();
  };
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
    const release = keepLayers(el);
    Plotly.animate(el, { data, traces }, { transition: { duration: 0 }, frame: { duration: 0, redraw: false },
                                           mode: "immediate" }).then(release, release);
    setTimeout(release, 5000);  // an animation cut short by the next one may never settle
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
    """Set properties of some traces (``{trace index: {property: value}}``) in one message to the browser, and
    in the widget's saved state: plotly.py syncs that state only when it is assigned whole, so a reloaded page
    would draw the first values. Writing it in place sends nothing more."""
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
    """Send every frame of ``fig`` to the browser at once, as one float32 buffer (NaN stays a gap).

    ``frames[page * n_frames + j]`` is frame ``j`` of page ``page``: the 1-D or 2-D arrays it puts into the
    traces; every frame sets the same properties with the same shapes."""
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


def show_frame(fig: FigureWidget, j: int, page: int, changes: Changes, *, move: bool = True) -> None:
    """Show frame ``j`` of ``page``: the browser switches to it (one small message) and ``fig.data`` takes
    ``changes``, the frame's arrays, without sending them. ``move=False``: ``fig.data`` only, for a move the
    browser made itself (a lagging kernel would send back a frame the browser has left)."""
    for k, props in changes.items():
        fig._perform_plotly_restyle({key: [value] for key, value in props.items()}, [k])
    if not move:
        return
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


def _changed(old: dict, new: dict) -> dict:
    """The entries of ``new`` that differ from ``old`` (what cannot be compared counts as changed)."""
    out = {}
    for key, value in new.items():
        if key == "type":
            continue
        try:
            was = old.get(key)
            if isinstance(value, np.ndarray) or isinstance(was, np.ndarray):
                same = was is not None and np.array_equal(np.asarray(was), np.asarray(value))
            else:
                same = bool(was == value)
        except (ValueError, TypeError):  # e.g. dicts holding arrays
            same = False
        if not same:
            out[key] = value
    return out


def replace_figure(fig: go.FigureWidget, new: go.Figure) -> None:
    """Make ``fig`` show ``new`` (e.g. after a retrain). With the same kinds of traces only the properties that
    differ are overwritten, in one message and one redraw (re-adding traces resends a density background)."""
    check_type("fig", fig, go.FigureWidget)
    check_type("new", new, go.Figure)
    same = len(fig.data) == len(new.data) and all(a.type == b.type for a, b in zip(fig.data, new.data))
    with fig.batch_update():
        if same:
            for old, trace in zip(fig.data, new.data):
                old.update(_changed(old.to_plotly_json(), trace.to_plotly_json()), overwrite=True)
            fig.layout.update(_changed(fig.layout.to_plotly_json(), new.layout.to_plotly_json()), overwrite=True)
        else:
            fig.data = ()
            fig.add_traces(list(new.data))
            fig.layout = new.layout
    fig._widget_data = copy.deepcopy(fig._data)
    fig._widget_layout = copy.deepcopy(fig._layout_obj._props)


class ShowsWidget:
    """Mixin: a bare object at the end of a notebook cell displays its ``widget``."""

    widget: W.Widget

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)
