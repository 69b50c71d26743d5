"""ipywidgets dashboards of the lessons: sliders that switch precomputed frames in the browser.

Every dashboard computes all it can show in its constructor and builds one ``frontend.FigureWidget``; every
frame and caption then travels to the browser once (``frontend.load_frames``) and the slider's index is
jslinked to the figure and the caption, so a key press redraws in the page however busy the kernel is. The
kernel follows: the slider's observer calls ``update(j)``, which keeps ``fig.data`` equal to what is shown.
Each dashboard exposes ``fig``, ``slider``, ``label`` (the caption; ``value`` is the one shown), ``widget``
(the box to display), ``frame(j)`` (frame j's arrays) and ``update(j)``. Slider readouts name the frame
(``t = 250``, ``20 steps``), never an index. ``FigureWidget`` and ``replace_figure`` (``frontend``) are
importable from here too. The core modules never import plotly or ipywidgets.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Mapping, Sequence

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
from einops import rearrange
from plotly.subplots import make_subplots

from ._validate import check_float, check_int, check_tensor, check_type
from .data import GaussianMixture
from .samplers import Trajectory
from .schedule import Schedule
from . import viz
from .viz import segments_xy
from .frontend import (Changes, FigureWidget, FrameCaption, ShowsWidget, load_frames, replace_figure, show_frame,
                       update_traces)

__all__ = ["NoisingDashboard", "ScoreFieldDashboard", "PathDashboard", "LiveLossPlot", "StepCountDashboard",
           "SAControls", "DigitGridDashboard", "SolverDashboard", "LAM_CHOICES", "steps_label", "segments_xy",
           "FigureWidget", "replace_figure"]


# viz.style_layout options of the dashboards: narrower margins than viz's figures, no legend background
_LOOK = dict(margin=dict(l=50, b=40), legend_bg=False)


def steps_label(n: int) -> str:
    """``"1 sampling step"``, ``"20 sampling steps"``."""
    return f"{n} sampling step" + ("" if n == 1 else "s")


def _timesteps(ts: Sequence[int], low: int, schedule: Schedule) -> list[int]:
    ts = [int(t) for t in ts]
    if not ts or min(ts) < low or max(ts) > schedule.T - 1 or len(set(ts)) != len(ts):
        raise ValueError(f"ts must be a non-empty list of distinct timesteps in [{low}, {schedule.T - 1}], "
                         f"got {ts[:6]}")
    return ts


def _density_background(mixture: GaussianMixture, bounds, grid_size: int = 50) -> go.Heatmap:
    """The mixture's clean log-density as a heatmap smoothed by the browser (``zsmooth="fast"``): far cheaper
    to redraw on every slider move than contours or plotly's own smoothing (docs/performance.md)."""
    xs, ys, z = viz.log_density_grid(mixture, bounds, grid_size)
    return go.Heatmap(x=xs, y=ys, z=viz.clip_tails(z), colorscale=viz.DENSITY_SCALE, showscale=False,
                      zsmooth="fast", hoverinfo="skip", name="log p")


def _cloud_figure(mixture: GaussianMixture | None, bounds, title: str | None) -> go.Figure:
    """A 2-D point-cloud dashboard's base: the mixture's density (or nothing) on fixed square axes."""
    layout = viz.cloud_layout(title, bounds, margin=dict(l=50, b=40, t=90), legend_bg=False, width=620, height=600)
    return go.Figure([_density_background(mixture, bounds)] if mixture is not None else [], layout)


def _square_union(a, b) -> tuple[float, float, float, float]:
    """The square bounds holding both square bounds ``a`` and ``b`` (``a`` itself when it holds ``b``)."""
    if a[0] <= b[0] and b[1] <= a[1] and a[2] <= b[2] and b[3] <= a[3]:
        return tuple(a)
    x0, x1, y0, y1 = min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])
    half, cx, cy = max(x1 - x0, y1 - y0) / 2, (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - half, cx + half, cy - half, cy + half)


class _SliderDashboard(ShowsWidget):
    """A slider over ``n_frames`` precomputed frames (see the module docstring). Subclasses define
    ``frame_labels()`` (the readouts), ``caption(j, page)`` and ``frame(j, page)`` (the traces' arrays);
    ``n_pages`` > 1: pages of frames picked by a toggle (``SolverDashboard``'s solvers)."""

    n_frames: int
    n_pages: int = 1
    page: int = 0
    fig: FigureWidget

    def _options(self) -> list:
        labels = self.frame_labels()
        if len(set(labels)) != len(labels):
            raise ValueError(f"the frames' labels must be distinct (one slider position each), got {labels}")
        return list(zip(labels, range(len(labels))))

    def _wire(self, description: str) -> None:
        # continuous_update: a drag redraws as it moves, the frames switch in the page
        self.slider = W.SelectionSlider(options=self._options(), value=0, description=description,
                                        continuous_update=True, layout=W.Layout(width="420px"),
                                        style={"description_width": "initial"})
        self.label = FrameCaption(layout=W.Layout(min_width="300px", flex="1 1 auto"))
        self._links = [W.jslink((self.slider, "index"), (self.fig, "_seqdiff_frame")),
                       W.jslink((self.slider, "index"), (self.label, "frame"))]
        self.slider.observe(lambda change: self.update(change["new"]), names="value")
        self._load_frames()
        self.widget = W.VBox([W.HBox([self.slider, self.label]), self.fig])

    def _load_frames(self) -> None:
        pages, frames = range(self.n_pages), range(self.n_frames)
        load_frames(self.fig, [self.frame(j, p) for p in pages for j in frames], self.n_frames)
        with self.label.hold_sync():
            self.label.captions = [self.caption(j, p) for p in pages for j in frames]
            self.label.n = self.n_frames

    def _new_frames(self) -> None:
        """After new data (a retrain, another setting): new slider positions, frames and captions; frame 0."""
        options = self._options()
        self._load_frames()
        with self.slider.hold_trait_notifications():
            self.slider.options = options
            self.slider.value = 0
        self.update(0)

    def update(self, j: int) -> None:
        """Show frame ``j``: moves the slider (the browser redraws from the frames it holds) and ``fig.data``."""
        j = check_int("j", j, 0, self.n_frames - 1)
        if self.slider.value != j:
            self.slider.value = j  # its observer calls update(j) again
            return
        # A move made in the browser reached the figure and the caption there, by the jslinks, and their own
        # messages bring the kernel their state: telling them again could send a frame the browser has left
        # since (the kernel reads the slider's message late on a busy machine), and the jslink would move the
        # slider back to it. ipywidgets applies a browser message under the widget's property lock.
        moved_there = any(getattr(w, "_property_lock", None) for w in (self.slider, getattr(self, "toggle", None)))
        show_frame(self.fig, j, self.page, self.frame(j, self.page), move=not moved_there)
        if moved_there:
            return
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
    ``ts``: the frames' timesteps (default: the clean data t=-1, then 41 evenly spaced from 0 to T-1). The
    noise is drawn once from ``generator``. ``add_noise(x0, t, noise, schedule)``: the function that noises
    (default ``schedule.add_noise``; a student's own from the exercise "01-add-noise")."""

    def __init__(self, points: torch.Tensor, schedule: Schedule, images: torch.Tensor | None = None, *,
                 ts: Sequence[int] | None = None, generator: torch.Generator | None = None,
                 max_points: int = 400, title: str | None = "The forward process: data becomes noise",
                 add_noise: Callable | None = None):
        check_tensor("points", points, ndim=2, nonempty=True, finite=True)
        if points.shape[1] != 2:
            raise ValueError(f"points must have shape [N, 2], got {tuple(points.shape)}")
        check_type("schedule", schedule, Schedule)
        max_points = check_int("max_points", max_points, 1)
        ts = _timesteps([-1] + viz.subsample_index(schedule.T, 41).tolist() if ts is None else ts, -1, schedule)
        self.schedule, self.ts, self.n_frames = schedule, ts, len(ts)
        t = torch.tensor(ts)                                                                 # [S]
        S = len(ts)

        def noised(x0: torch.Tensor) -> torch.Tensor:
            """Every frame at once, [S, *x0.shape]: one eps (drawn here) for all t, so a point moves smoothly."""
            eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
            if add_noise is None:
                return schedule.add_noise(x0.expand(S, *x0.shape), t, eps.expand(S, *x0.shape))
            return add_noise(x0.expand(S, *x0.shape).clone(), t, eps.expand(S, *x0.shape).clone(), schedule)

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
        base.add_trace(viz.cloud_trace(self.xy[0], "x_t", viz.series_styles(["x_t"])[0], 4, 0.7), row=1, col=1)
        if self.images is not None:
            base.add_trace(go.Heatmap(z=self.images[0], zmin=-1.5, zmax=1.5, colorscale="gray", showscale=False,
                                      name="digits", hoverinfo="skip"), row=1, col=2)
            base.update_yaxes(autorange="reversed", scaleanchor="x2", visible=False, row=1, col=2)
            base.update_xaxes(visible=False, row=1, col=2)
        lim = 3.6
        base.update_xaxes(range=[-lim, lim], row=1, col=1, title="x<sub>1</sub>")
        base.update_yaxes(range=[-lim, lim], row=1, col=1, scaleanchor="x", title="x<sub>2</sub>")
        # two panels take the output's width (no fixed width: a notebook beside the file browser has about 850 px)
        size = dict(autosize=True) if cols == 2 else dict(width=520)
        viz.style_layout(base, title, **_LOOK, **size, height=470, showlegend=False)
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
    """Triangles at the tips of the arrows ``tail -> tip`` ([P, 2] each) as one polyline ``[left, tip, right,
    left, nan, ...]`` [5P, 2]; a head is ``size`` long (at most half its arrow), ``half_angle`` to each side."""
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

    Arrows point where probability increases; each frame's longest is ``arrow_scale`` grid cells (the caption
    gives its norm). The density is a heatmap: far cheaper to redraw than contours."""

    def __init__(self, mixture: GaussianMixture, schedule: Schedule, ts: Sequence[int] | None = None, *,
                 grid_size: int = 15, density_grid: int = 50, bound: float = 3.0, arrow_scale: float = 0.9,
                 title: str | None = "The score field grad log p_t (arrows) over log p_t"):
        viz.check_mixture_2d("mixture", mixture)
        check_type("schedule", schedule, Schedule)
        grid_size = check_int("grid_size", grid_size, 2, 100)
        density_grid = check_int("density_grid", density_grid, 8, 300)
        bound = check_float("bound", bound, 0.0, low_open=True)
        arrow_scale = check_float("arrow_scale", arrow_scale, 0.0, low_open=True)
        ts = _timesteps([0, 20, 50, 100, 150, 200, 300, 400, 500, 600, 800, 999] if ts is None else ts, 0, schedule)
        self.ts, self.n_frames = ts, len(ts)
        g = torch.linspace(-bound, bound, grid_size, dtype=torch.float64)
        pts = rearrange(torch.stack(torch.meshgrid(g, g, indexing="xy"), -1), "a b d -> (a b) d")
        cell = 2 * bound / (grid_size - 1)
        self.abar = schedule.alpha_bar(torch.tensor(ts)).numpy()
        arrows, heads, dens, peak = [], [], [], []
        for a in self.abar.tolist():
            score = mixture.score(pts, a)                                   # = -eps*/sqrt(1 - abar)
            top = float(torch.linalg.vector_norm(score, dim=1).max())
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
        fig.update_layout(viz.square_axes([-bound * 1.05, bound * 1.05] * 2))
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
    """Sampling paths (``{name: Trajectory}`` of 2-D points) with a slider over the recorded state.

    Two paths of one batch (a learned and the ideal path from the same ``x_T``) are joined point by point by
    segments whose length is the distance ``||x_a - x_b||``; the caption gives its mean. ``mixture`` draws the
    clean density behind the points. At most ``max_points`` points of each path are drawn."""

    def __init__(self, trajectories: Mapping[str, Trajectory], *, mixture: GaussianMixture | None = None,
                 max_points: int = 200, pair_lines: bool = True, title: str | None = None):
        if not isinstance(trajectories, Mapping) or len(trajectories) == 0:
            raise TypeError(f"trajectories must be a non-empty dict of name -> Trajectory, got {trajectories!r}")
        self.mixture, self.max_points = mixture, check_int("max_points", max_points, 1)
        self.pair_lines = pair_lines
        self._load(trajectories)
        self.fig = FigureWidget(self._figure(title or "Sampling paths"))
        self._wire("sampling")

    def _load(self, trajectories: Mapping[str, Trajectory]) -> None:
        names, self.paths, self.pair, self.t = viz.prepare_paths(trajectories, self.max_points, self.pair_lines)
        self.names, self.n_frames = names, len(self.t)                                      # paths: [S, P, 2]
        if self.pair:
            self.segments = segments_xy(self.paths[names[0]], self.paths[names[1]])        # [S, 3P, 2]
            # the caption's mean distance uses every point, not only the drawn ones
            full = trajectories[names[0]].x - trajectories[names[1]].x
            self.mean_distance = viz.to_numpy("mean_distance",
                                              torch.linalg.vector_norm(full.double(), dim=-1).mean(dim=1))

    def _figure(self, title: str, keep=None) -> go.Figure:
        bounds = viz.cloud_bounds(np.concatenate(list(self.paths.values()), axis=1), self.mixture)
        self.bounds = bounds if keep is None else _square_union(keep, bounds)
        fig = _cloud_figure(self.mixture, self.bounds, title)
        self._first = len(fig.data)
        if self.pair:
            fig.add_trace(go.Scatter(x=self.segments[0, :, 0], y=self.segments[0, :, 1], mode="lines",
                                     name="pairing", line=dict(width=0.7, color="rgba(80,80,80,0.5)"),
                                     hoverinfo="skip", showlegend=False))
        for n, style in zip(self.names, viz.series_styles(self.names)):
            fig.add_trace(viz.cloud_trace(self.paths[n][0], n, style, 5, 0.8, hoverinfo="skip"))
        return fig

    def set_paths(self, trajectories: Mapping[str, Trajectory], *, title: str | None = None,
                  mixture: GaussianMixture | None = None) -> None:
        """Show other paths (the explorer's new settings): a new figure and slider range, the same widgets.
        ``mixture``: another data density behind them (default: the same). Over the same density the axes only
        grow, so paths of several settings are seen on one scale, and the background is not sent again."""
        same = mixture is None or mixture is self.mixture
        if mixture is not None:
            self.mixture = check_type("mixture", mixture, GaussianMixture)
        self._load(trajectories)
        replace_figure(self.fig, self._figure(title or self.fig.layout.title.text or "Sampling paths",
                                              keep=self.bounds if same else None))
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
        shown = ([self.segments[j]] if self.pair else []) + [self.paths[n][j] for n in self.names]
        return {self._first + k: {"x": p[:, 0], "y": p[:, 1]} for k, p in enumerate(shown)}


# ---------------------------------------------------------------------------------------------- 03: live loss
class LiveLossPlot(ShowsWidget):
    """A loss curve that grows while a training loop runs: ``append(step, **values)`` stores numbers,
    ``flush()`` (every few dozen steps: a redraw costs far more than a step) draws them with their running mean
    over ``window`` steps. ``floor``: a dashed line at a loss no network beats (the ideal denoiser's)."""

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

    bounds_quantile = 0.002  # the share of points (per side and coordinate) the axes may leave out

    def __init__(self, steps: Sequence[int], finals: Mapping[str, Sequence[torch.Tensor]], *,
                 mixture: GaussianMixture | None = None, max_points: int = 250, panels: bool | None = None,
                 title: str | None = "Final samples against the number of sampling steps"):
        self.mixture, self.max_points, self.title = mixture, check_int("max_points", max_points, 1), title
        self.panels = panels
        self._load(steps, self._pages(finals))
        self.fig = FigureWidget(self._figure())
        self._wire("steps")

    @staticmethod
    def _pages(finals) -> dict:
        return {"": finals}  # one page of frames

    def _load(self, steps, pages: Mapping[str, Mapping]) -> None:
        """``pages[page]``: the ``finals`` of one page of frames (one per solver of ``SolverDashboard``)."""
        self.pages = {}
        for page, finals in pages.items():
            if not isinstance(finals, Mapping) or not finals:
                raise TypeError(f"finals must be a non-empty dict of [solver ->] model name -> list of [N, 2] "
                                f"samples, got {finals!r}")
            if self.pages and list(finals) != self.names:
                raise ValueError(f"finals[{page!r}] must hold the models {self.names}, got {list(finals)}")
            self._set_steps(steps, finals)
            self.pages[page] = {}
            for n, lst in finals.items():
                if len(lst) != len(self.steps):
                    raise ValueError(f"finals[{n!r}] must hold one sample per step count ({len(self.steps)}), "
                                     f"got {len(lst)}")
                self.pages[page][n] = np.stack([viz.to_numpy(f"finals[{n!r}]", x[:self.max_points]) for x in lst])
        self.n_pages = len(self.pages)

    def _figure(self) -> go.Figure:
        # the bounds hold every page's samples, so a switch of page never moves the axes
        clouds = np.concatenate([c for page in self.pages.values() for c in page.values()], axis=1)
        bounds = viz.cloud_bounds(clouds, self.mixture, self.bounds_quantile)
        m = len(self.names)
        panels = m > 1 if self.panels is None else bool(self.panels)
        if panels:
            fig = make_subplots(rows=1, cols=m, subplot_titles=self.names, horizontal_spacing=0.03)
            for c in range(m if self.mixture is not None else 0):
                fig.add_trace(_density_background(self.mixture, bounds), row=1, col=c + 1)
        else:
            fig = _cloud_figure(self.mixture, bounds, self.title)
        self._traces = {}
        for c, (n, style) in enumerate(zip(self.names, viz.series_styles(self.names))):
            self._traces[n] = len(fig.data)
            fig.add_trace(viz.cloud_trace(next(iter(self.pages.values()))[n][0], n, style, 4, 0.7, hoverinfo="skip"),
                          **(dict(row=1, col=c + 1) if panels else {}))
        if not panels:
            return fig
        # no fixed width: the panels share the output's width (a notebook's is about 850 px at 1280 px)
        viz.style_layout(fig, self.title, **_LOOK, height=420, autosize=True)
        fig.update_layout(legend=dict(orientation="h", x=0, y=-0.02, xanchor="left", yanchor="top"))
        for c in range(m):
            suffix = "" if c == 0 else str(c + 1)
            x, y = viz.square_axes(bounds, suffix).values()
            # every panel says which coordinate it shows; the shared y title sits on the first panel only
            y.update(showticklabels=c == 0, title=y["title"] if c == 0 else None)
            fig.update_layout({f"xaxis{suffix}": {**x, "showticklabels": False}, f"yaxis{suffix}": y})
        return fig

    def set_samples(self, steps: Sequence[int], finals: Mapping[str, Sequence[torch.Tensor]]) -> None:
        """Show new samples (e.g. after a retrain): the figure is rebuilt, the slider keeps its widget."""
        self._load(steps, self._pages(finals))
        replace_figure(self.fig, self._figure())
        self._new_frames()

    def frame(self, j: int, page: int = 0) -> Changes:
        clouds = list(self.pages.values())[page]
        return {self._traces[n]: {"x": clouds[n][j][:, 0], "y": clouds[n][j][:, 1]} for n in self.names}


# lam values a class can try: 0 (the simple loss alone) up to 10
LAM_CHOICES = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0)


class SAControls(ShowsWidget):
    """K and lam controls for the sequence-aware loss and a button that calls ``on_train(K, lam)`` (the slow
    work, so on a click, never on a slider move), its output in ``output`` (cleared first). While it runs the
    button is disabled and ``status`` says what is trained; then how long it took, or that it failed."""

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
        """Call ``on_train(K, lam)`` with the widgets' values; returns its result."""
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
    """Grids of digit samples from several models side by side, one frame per number of sampling steps:
    ``grids[name]`` [S, N, 1, 8, 8] (``evaluate.sample_grids``), model ``name`` with ``steps[k]`` steps."""

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
        # the output's width (no fixed width): the tiles keep their aspect and shrink to fit a narrow notebook
        viz.style_layout(fig, title, **_LOOK, autosize=True, height=h * 7 + 110, plot_bgcolor="white")
        fig.update_xaxes(visible=False, constrain="domain")
        fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", scaleratio=1)
        self.fig = FigureWidget(fig)
        self._wire("steps")

    def frame(self, j: int, page: int = 0) -> Changes:
        return {k: {"z": self.tiles[n][j]} for k, n in enumerate(self.names)}


# ---------------------------------------------------------------------------------------------- 07: solvers
class SolverDashboard(StepCountDashboard):
    """``StepCountDashboard`` with a toggle over the solver: ``finals[solver][name][k]`` is the [N, 2] final
    sample of model ``name`` run by ``solver`` with ``steps[k]`` steps (all from the same ``x_T``); every solver
    holds the same models. The axes hold 98% of all the solvers' points in each coordinate (and the clusters
    whole): a few points thrown far out by one solver at few steps fall outside rather than shrinking every
    panel's clusters to a dot."""

    bounds_quantile = 0.01

    def __init__(self, steps: Sequence[int], finals: Mapping[str, Mapping[str, Sequence[torch.Tensor]]], *,
                 mixture: GaussianMixture | None = None, max_points: int = 250, panels: bool | None = None,
                 title: str | None = "Final samples: solver and number of steps"):
        super().__init__(steps, finals, mixture=mixture, max_points=max_points, panels=panels, title=title)
        self.toggle = W.ToggleButtons(options=self.solvers, value=self.solvers[0], description="solver",
                                      style={"button_width": "auto", "description_width": "initial"})
        self._links += [W.jslink((self.toggle, "index"), (self.fig, "_seqdiff_page")),
                        W.jslink((self.toggle, "index"), (self.label, "page"))]
        self.toggle.observe(lambda change: self.select(change["new"]), names="value")
        self.widget = W.VBox([self.toggle, self.widget])

    @staticmethod
    def _pages(finals) -> dict:
        if not isinstance(finals, Mapping) or not finals:
            raise TypeError(f"finals must be a non-empty dict of solver -> {{model name -> list of [N, 2] samples}}, "
                            f"got {finals!r}")
        return {str(k): v for k, v in finals.items()}

    @property
    def solvers(self) -> list[str]:
        return list(self.pages)

    @property
    def solver(self) -> str:
        """The solver shown (the page)."""
        return self.solvers[self.page]

    def caption(self, j: int, page: int = 0) -> str:
        return f"<b>{steps_label(self.steps[j])}</b>, solver {self.solvers[page]}"

    def select(self, solver: str) -> None:
        """Show ``solver``'s samples at the current step count."""
        if solver not in self.pages:
            raise ValueError(f"solver must be one of {self.solvers}, got {solver!r}")
        self.page = self.solvers.index(solver)
        if self.toggle.value != solver:
            self.toggle.value = solver  # its observer calls select(solver) again
            return
        self.update(self.slider.value)
