"""ipywidgets dashboards for the notebooks: sliders whose callbacks only index precomputed arrays.

Every dashboard computes everything it can show in its constructor (with the core modules), keeps it as
numpy arrays, and builds one ``plotly.graph_objects.FigureWidget``. Moving a slider calls ``update(j)``,
which copies row ``j`` of those arrays into the figure's traces: no model call, no maths (well under 50 ms;
``benchmarks/bench_widgets.py`` prints the time). Each dashboard exposes ``fig`` (the FigureWidget),
``slider`` (the control), ``widget`` (the box to display) and ``update(j)``.

- ``NoisingDashboard``: the forward process ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` on 2-D points and
  on a digit, with a slider over t (notebook 01).
- ``ScoreFieldDashboard``: the exact score ``grad log p_t(x) = -eps*(x, t) / sqrt(1 - abar_t)`` of a mixture
  as arrows over the noised density, with a slider over t (notebook 02).
- ``PathDashboard``: one or two sampling paths with a slider over the step; two paths of the same batch are
  joined point by point by segments (their length is the drift) (notebooks 02-04).
- ``LiveLossPlot``: a loss curve fed from ``train.train_iter`` while it runs (notebook 03).
- ``StepCountDashboard``: final samples of several models for a slider over the number of sampling steps (05).
- ``SAControls``: K and lam widgets and a button that calls back to (re)train (05).
- ``DigitGridDashboard``: digit sample grids of several models for a slider over the number of steps (06).

This module imports plotly and ipywidgets; the core modules never do.
"""
from __future__ import annotations

import math
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

__all__ = ["NoisingDashboard", "ScoreFieldDashboard", "PathDashboard", "LiveLossPlot", "StepCountDashboard",
           "SAControls", "DigitGridDashboard", "segments_xy"]


# viz.style_layout options of the dashboards: narrower margins than viz's figures, no legend background
_LOOK = dict(margin=dict(l=50, b=40), legend_bg=False)


def _cloud_figure(mixture: GaussianMixture | None, bounds, title: str | None) -> go.Figure:
    """The base of a 2-D point-cloud dashboard: the mixture's density (or an empty figure) on fixed square axes
    ``bounds``, with a horizontal legend on top. The caller adds its scatter traces after the background."""
    if mixture is not None:
        fig = viz.density_figure(mixture, grid_size=60, bounds=bounds, title=title)
        fig.data[0].showscale = False
    else:
        fig = viz.style_layout(go.Figure(), title, **_LOOK, width=620, height=560)
    fig.update_xaxes(range=[bounds[0], bounds[1]], autorange=False)
    fig.update_yaxes(range=[bounds[2], bounds[3]], autorange=False, scaleanchor="x")
    fig.update_layout(legend=dict(orientation="h", x=0, y=1.0, xanchor="left", yanchor="bottom"))
    return fig


def _slider(n: int, description: str) -> W.IntSlider:
    return W.IntSlider(value=0, min=0, max=max(n - 1, 0), step=1, description=description,
                       continuous_update=True, layout=W.Layout(width="560px"),
                       style={"description_width": "initial"})


class _ShowsWidget:
    """Mixin: a bare object at the end of a notebook cell displays its ``widget``."""

    widget: W.Widget

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


class _SliderDashboard(_ShowsWidget):
    """Shared plumbing: an IntSlider over ``n`` precomputed frames wired to ``update``."""

    n_frames: int

    def _wire(self, description: str) -> None:
        self.slider = _slider(self.n_frames, description)
        self.label = W.HTML(value=self.caption(0))
        self.slider.observe(lambda change: self.update(change["new"]), names="value")
        self.widget = W.VBox([W.HBox([self.slider, self.label]), self.fig])

    def caption(self, j: int) -> str:  # overridden
        return ""

    def _check_frame(self, j) -> int:
        return check_int("j", j, 0, self.n_frames - 1)


class _StepCountDashboard(_SliderDashboard):
    """A dashboard with one frame per number of sampling steps."""

    def _set_steps(self, steps: Sequence[int], names) -> None:
        self.steps = [int(s) for s in steps]
        if not self.steps:
            raise ValueError("steps must hold at least one step count")
        self.names, self.n_frames = list(names), len(self.steps)

    def caption(self, j: int) -> str:
        return f"<b>{self.steps[j]} sampling steps</b>"


# ---------------------------------------------------------------------------------------------- 01: noising
class NoisingDashboard(_SliderDashboard):
    """The forward process on 2-D points and on images, one frame per timestep in ``ts``:

        x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps      (the same eps for every t, so a point moves smoothly)

    ``points`` [N, 2] clean 2-D data; ``images`` [M, 1, H, W] clean images in [-1, 1] (optional), tiled in a row.
    ``ts`` the timesteps of the frames (default: 41 evenly spaced from 0 to T-1, plus the clean data t=-1
    first). The noise is drawn once from ``generator``."""

    def __init__(self, points: torch.Tensor, schedule: Schedule, images: torch.Tensor | None = None, *,
                 ts: Sequence[int] | None = None, generator: torch.Generator | None = None,
                 max_points: int = 800, title: str | None = "The forward process: data becomes noise"):
        check_tensor("points", points, ndim=2, nonempty=True, finite=True)
        if points.shape[1] != 2:
            raise ValueError(f"points must have shape [N, 2], got {tuple(points.shape)}")
        check_type("schedule", schedule, Schedule)
        max_points = check_int("max_points", max_points, 1)
        if ts is None:
            ts = [-1] + viz.subsample_index(schedule.T, 41).tolist()
        ts = [int(t) for t in ts]
        if not ts or min(ts) < -1 or max(ts) > schedule.T - 1:
            raise ValueError(f"ts must be a non-empty list of timesteps in [-1, {schedule.T - 1}], got {ts[:6]}...")
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
            # one image row per frame: [S, M, 1, H, W] -> [S, H, M*W] (NaN-free so the heatmap stays simple)
            self.images = rearrange(frames, "s m 1 h w -> s h (m w)").numpy()
        cols = 2 if self.images is not None else 1
        base = make_subplots(rows=1, cols=cols, column_widths=[0.5, 0.5][:cols], horizontal_spacing=0.08,
                             subplot_titles=("2-D points", "digits")[:cols])
        base.add_trace(go.Scatter(x=self.xy[0, :, 0], y=self.xy[0, :, 1], mode="markers", name="x_t",
                                  marker=dict(size=4, color=viz.PALETTE[0], opacity=0.7)), row=1, col=1)
        if self.images is not None:
            base.add_trace(go.Heatmap(z=self.images[0], zmin=-1.5, zmax=1.5, colorscale="gray", showscale=False,
                                      name="digits"), row=1, col=2)
            base.update_yaxes(autorange="reversed", scaleanchor="x2", visible=False, row=1, col=2)
            base.update_xaxes(visible=False, row=1, col=2)
        lim = 3.6
        base.update_xaxes(range=[-lim, lim], row=1, col=1, title="x<sub>1</sub>")
        base.update_yaxes(range=[-lim, lim], row=1, col=1, scaleanchor="x", title="x<sub>2</sub>")
        viz.style_layout(base, title, **_LOOK, width=900 if cols == 2 else 520, height=470, showlegend=False)
        self.fig = go.FigureWidget(base)
        self._wire("timestep index")

    def caption(self, j: int) -> str:
        t, a = self.ts[j], float(self.abar[j])
        snr = "inf" if a >= 1 else f"{a / (1 - a):.3g}"
        return f"<b>t = {t}</b> &nbsp; alpha_bar = {a:.4f} &nbsp; SNR = {snr}"

    def update(self, j: int) -> None:
        """Show frame ``j`` (pure indexing)."""
        j = self._check_frame(j)
        with self.fig.batch_update():
            self.fig.data[0].x, self.fig.data[0].y = self.xy[j, :, 0], self.xy[j, :, 1]
            if self.images is not None:
                self.fig.data[1].z = self.images[j]
        self.label.value = self.caption(j)


# ---------------------------------------------------------------------------------------------- 02: score field
class ScoreFieldDashboard(_SliderDashboard):
    """The exact score of a 2-D mixture's noised marginal as arrows on a grid, over ``log p_t``, per timestep:

        s(x, t) = grad_x log p_t(x) = -eps*(x, t) / sqrt(1 - abar_t)

    Arrows point where probability increases. Their lengths are divided by the frame's largest score norm
    (times ``arrow_scale`` grid cells), so every frame is readable; the caption gives that largest norm."""

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
        if not ts or min(ts) < 0 or max(ts) > schedule.T - 1:
            raise ValueError(f"ts must be a non-empty list of timesteps in [0, {schedule.T - 1}], got {ts}")
        self.ts, self.n_frames = ts, len(ts)
        g = torch.linspace(-bound, bound, grid_size, dtype=torch.float64)
        pts = rearrange(torch.stack(torch.meshgrid(g, g, indexing="xy"), -1), "a b d -> (a b) d")
        cell = 2 * bound / (grid_size - 1)
        self.abar = schedule.alpha_bar(torch.tensor(ts)).numpy()
        arrows, dens, peak = [], [], []
        for a in self.abar.tolist():
            score = mixture.score(pts, a)                                   # = -eps*/sqrt(1 - abar)
            norm = torch.linalg.vector_norm(score, dim=1)
            top = float(norm.max())
            tip = pts + arrow_scale * cell * score / max(top, 1e-12)
            arrows.append(segments_xy(pts.numpy(), tip.numpy()))
            xs, ys, logp = viz.log_density_grid(mixture, (-bound, bound, -bound, bound), density_grid, a)
            dens.append(viz.clip_tails(logp))                              # clip the tails for contrast
            peak.append(top)
        self.arrows, self.density, self.peak = np.stack(arrows), np.stack(dens), np.array(peak)
        self.tails = pts.numpy()
        fig = go.Figure([
            go.Contour(x=xs, y=ys, z=self.density[0], colorscale="Blues", showscale=False,
                       ncontours=16, line=dict(width=0.3), name="log p_t", hoverinfo="skip"),
            go.Scatter(x=self.arrows[0, :, 0], y=self.arrows[0, :, 1], mode="lines", name="score",
                       line=dict(color="#222", width=1.2), hoverinfo="skip"),
            go.Scatter(x=self.tails[:, 0], y=self.tails[:, 1], mode="markers", name="grid",
                       marker=dict(size=3, color="#222"), hoverinfo="skip")])
        viz.style_layout(fig, title, **_LOOK, width=560, height=560, showlegend=False)
        fig.update_xaxes(range=[-bound * 1.05, bound * 1.05], title="x<sub>1</sub>")
        fig.update_yaxes(range=[-bound * 1.05, bound * 1.05], scaleanchor="x", title="x<sub>2</sub>")
        self.fig = go.FigureWidget(fig)
        self._wire("timestep index")

    def caption(self, j: int) -> str:
        return (f"<b>t = {self.ts[j]}</b> &nbsp; alpha_bar = {float(self.abar[j]):.4f} &nbsp; "
                f"largest |score| = {float(self.peak[j]):.3g}")

    def update(self, j: int) -> None:
        j = self._check_frame(j)
        with self.fig.batch_update():
            self.fig.data[0].z = self.density[j]
            self.fig.data[1].x, self.fig.data[1].y = self.arrows[j, :, 0], self.arrows[j, :, 1]
        self.label.value = self.caption(j)


# ---------------------------------------------------------------------------------------------- paths
class PathDashboard(_SliderDashboard):
    """Sampling paths with a slider over the recorded step.

    ``trajectories`` maps a name to a ``Trajectory`` of 2-D points; all must record the same number of states.
    Frame ``j`` shows ``x`` at state ``j`` of every path (the last frame is the final sample). With exactly two
    paths of the same batch size (e.g. a learned and the ideal path from the same ``x_T`` and noise), segments
    join paired points: their length is the per-sample distance ``||x_a - x_b||``, and the caption reports its
    mean. ``mixture`` draws the clean data density behind the points. At most ``max_points`` points (the same
    indices in every path) are drawn."""

    def __init__(self, trajectories: Mapping[str, Trajectory], *, mixture: GaussianMixture | None = None,
                 max_points: int = 300, pair_lines: bool = True, title: str | None = None):
        if not isinstance(trajectories, Mapping) or len(trajectories) == 0:
            raise TypeError(f"trajectories must be a non-empty dict of name -> Trajectory, got {trajectories!r}")
        max_points = check_int("max_points", max_points, 1)
        names, _, self.paths, self.pair, self.t = viz.prepare_paths(trajectories, max_points, pair_lines)
        self.names, self.n_frames = names, len(self.t)                                      # paths: [S, P, 2]
        if self.pair:
            a, b = self.paths[names[0]], self.paths[names[1]]
            self.segments = segments_xy(a, b)                                               # [S, 3P, 2]
            # the caption's mean distance uses every point, not only the drawn ones
            full = trajectories[names[0]].x - trajectories[names[1]].x
            self.mean_distance = viz.to_numpy("mean_distance",
                                               torch.linalg.vector_norm(full.double(), dim=-1).mean(dim=1))
        bounds = viz.square_bounds(np.concatenate(list(self.paths.values()), axis=1))
        fig = _cloud_figure(mixture, bounds, title or "Sampling paths")
        self._first = len(fig.data)
        if self.pair:
            fig.add_trace(go.Scatter(x=self.segments[0, :, 0], y=self.segments[0, :, 1], mode="lines",
                                     name="pairing", line=dict(width=0.7, color="rgba(80,80,80,0.5)"),
                                     hoverinfo="skip"))
        for i, n in enumerate(names):
            p = self.paths[n][0]
            fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="markers", name=n,
                                     marker=dict(size=5, color=viz.color_for(n, i), opacity=0.8,
                                                 line=dict(width=0.3, color="white"))))
        self.fig = go.FigureWidget(fig)
        self._wire("sampling step")

    def caption(self, j: int) -> str:
        t = self.t[j]
        where = "final sample" if t < 0 else f"t = {t}"
        text = f"<b>step {j}/{self.n_frames - 1}</b> &nbsp; {where}"
        if self.pair:
            text += f" &nbsp; mean distance = {float(self.mean_distance[j]):.3f}"
        return text

    def update(self, j: int) -> None:
        j = self._check_frame(j)
        k = self._first
        with self.fig.batch_update():
            if self.pair:
                self.fig.data[k].x, self.fig.data[k].y = self.segments[j, :, 0], self.segments[j, :, 1]
                k += 1
            for n in self.names:
                p = self.paths[n][j]
                self.fig.data[k].x, self.fig.data[k].y = p[:, 0], p[:, 1]
                k += 1
        self.label.value = self.caption(j)


# ---------------------------------------------------------------------------------------------- 03: live loss
class LiveLossPlot(_ShowsWidget):
    """A loss curve that grows while a training loop runs.

    ``append(step, **values)`` stores numbers (e.g. ``loss=state.loss``); ``flush()`` pushes them into the
    figure, together with a running mean over ``window`` steps (the raw per-batch loss is noisy). Call
    ``flush`` every few dozen steps: redrawing costs far more than a training step."""

    def __init__(self, names: Sequence[str] = ("loss",), *, window: int = 50, title: str | None = "Training loss",
                 log_y: bool = True):
        self.names = [str(n) for n in names]
        if not self.names:
            raise ValueError("names must hold at least one series name, got an empty list")
        self.window = check_int("window", window, 1)
        self.steps: list[int] = []
        self.values: dict[str, list[float]] = {n: [] for n in self.names}
        fig = go.Figure()
        for i, n in enumerate(self.names):
            color = viz.color_for(n, i)
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name=f"{n} (per batch)",
                                     line=dict(color=color, width=1), opacity=0.3))
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name=f"{n} (mean of {self.window})",
                                     line=dict(color=color, width=2.5)))
        viz.style_layout(fig, title, **_LOOK, width=700, height=380)
        fig.update_xaxes(title="training step")
        fig.update_yaxes(title="loss", type="log" if log_y else "linear")
        self.fig = go.FigureWidget(fig)
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
        steps = np.asarray(self.steps)
        with self.fig.batch_update():
            for k, n in enumerate(self.names):
                self.fig.data[2 * k].x, self.fig.data[2 * k].y = steps, np.asarray(self.values[n])
                self.fig.data[2 * k + 1].x, self.fig.data[2 * k + 1].y = steps, self.running_mean(n)


# ---------------------------------------------------------------------------------------------- 05
class StepCountDashboard(_StepCountDashboard):
    """Final samples of several models, one frame per number of sampling steps.

    ``finals[name][k]`` is the [N, 2] final sample of model ``name`` run with ``steps[k]`` steps (all from the
    same ``x_T``). ``mixture`` draws the true density behind them."""

    def __init__(self, steps: Sequence[int], finals: Mapping[str, Sequence[torch.Tensor]], *,
                 mixture: GaussianMixture | None = None, max_points: int = 400,
                 title: str | None = "Final samples against the number of sampling steps"):
        if not isinstance(finals, Mapping) or not finals:
            raise TypeError(f"finals must be a non-empty dict of name -> list of [N, 2] samples, got {finals!r}")
        self._set_steps(steps, finals)
        max_points = check_int("max_points", max_points, 1)
        self.clouds = {}
        for n, lst in finals.items():
            if len(lst) != len(self.steps):
                raise ValueError(f"finals[{n!r}] must hold one sample per step count ({len(self.steps)}), "
                                 f"got {len(lst)}")
            self.clouds[n] = np.stack([viz.to_numpy(f"finals[{n!r}]", x[:max_points]) for x in lst])  # [S, P, 2]
        bounds = viz.square_bounds(np.concatenate(list(self.clouds.values()), axis=1), q=0.002)
        fig = _cloud_figure(mixture, bounds, title)
        self._first = len(fig.data)
        for i, n in enumerate(self.names):
            p = self.clouds[n][0]
            fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="markers", name=n,
                                     marker=dict(size=4, color=viz.color_for(n, i), opacity=0.7)))
        self.fig = go.FigureWidget(fig)
        self._wire("steps index")

    def update(self, j: int) -> None:
        j = self._check_frame(j)
        with self.fig.batch_update():
            for k, n in enumerate(self.names):
                p = self.clouds[n][j]
                self.fig.data[self._first + k].x, self.fig.data[self._first + k].y = p[:, 0], p[:, 1]
        self.label.value = self.caption(j)


class SAControls(_ShowsWidget):
    """K and lam controls for the sequence-aware loss and a button that calls ``on_train(K, lam)``.

    The callback does the (slow) work, e.g. retrain and redraw; whatever it prints or displays goes into
    ``output``. Training takes seconds to minutes, so it runs on a click, never on a slider move."""

    def __init__(self, on_train: Callable[[int, float], object], *, K: int = 2, lam: float = 1.0,
                 K_max: int = 8, label: str = "train simple and SA"):
        if not callable(on_train):
            raise TypeError(f"on_train must be callable as on_train(K, lam), got {type(on_train).__name__}")
        K_max = check_int("K_max", K_max, 1)
        K = check_int("K", K, 1, K_max)
        lam = check_float("lam", lam, 0.0)
        self.on_train = on_train
        self.K = W.IntSlider(value=K, min=1, max=K_max, description="K (steps summed)",
                             style={"description_width": "initial"})
        self.lam = W.FloatLogSlider(value=max(lam, 1e-2), base=10, min=-2, max=1, step=0.1,
                                    description="lam (SA weight)", style={"description_width": "initial"})
        self.button = W.Button(description=label, button_style="primary", icon="play")
        self.output = W.Output()
        self.button.on_click(lambda _: self.run())
        self.widget = W.VBox([W.HBox([self.K, self.lam, self.button]), self.output])

    @property
    def values(self) -> tuple[int, float]:
        return int(self.K.value), float(self.lam.value)

    def run(self):
        """Call ``on_train(K, lam)`` with the widgets' values, capturing its output; returns its result."""
        with self.output:
            self.output.clear_output(wait=True)
            return self.on_train(*self.values)


# ---------------------------------------------------------------------------------------------- 06: digits
class DigitGridDashboard(_StepCountDashboard):
    """Grids of digit samples from several models side by side, one frame per number of sampling steps.

    ``grids[name]`` is [S, N, 1, 8, 8] (``evaluate.sample_grids``): model ``name`` run with ``steps[k]``
    steps from the same ``x_T``. Each frame is tiled once here (``viz.image_grid``); moving the slider only
    swaps the precomputed arrays into the heatmaps."""

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
            self.tiles[n] = np.stack([viz.image_grid(g[k], nrow=nrow).numpy() for k in range(self.n_frames)])
        fig = make_subplots(rows=1, cols=len(self.names), subplot_titles=self.names, horizontal_spacing=0.04)
        for i, n in enumerate(self.names):
            fig.add_trace(go.Heatmap(z=self.tiles[n][0], zmin=-1, zmax=1, colorscale="gray", showscale=False,
                                     hoverinfo="skip"), row=1, col=i + 1)
        h, w = self.tiles[self.names[0]].shape[1:]
        viz.style_layout(fig, title, **_LOOK, width=min(1000, 80 + len(self.names) * (w * 7 + 20)),
                    height=h * 7 + 110, plot_bgcolor="white")
        fig.update_xaxes(visible=False, constrain="domain")
        fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", scaleratio=1)
        self.fig = go.FigureWidget(fig)
        self._wire("steps index")

    def update(self, j: int) -> None:
        j = self._check_frame(j)
        with self.fig.batch_update():
            for k, n in enumerate(self.names):
                self.fig.data[k].z = self.tiles[n][j]
        self.label.value = self.caption(j)
