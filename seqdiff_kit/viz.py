"""Plotly figure builders: densities, sampling paths with a step slider, curves, digit grids, schedules.

Builders take library objects or tensors and return a ``go.Figure``; the numbers come from the core modules,
which never import plotly. The report's figures also come as ``*_spec`` functions returning a plain dict
``{"data": [...], "layout": {...}[, "frames": [...]]}``: ``go.Figure(spec)`` is the figure and
``plotly_json(spec)`` its JSON, made without plotly's validated objects (they cost far more than the numbers);
a spec is written in the form plotly's validation leaves unchanged (titles as ``{"text": ...}``).

``ROLE_STYLES`` is the one style table of every lesson (simple, SA, ideal, data); ``series_styles`` styles the
series of one figure so that no two are drawn alike.
"""
from __future__ import annotations

import base64
import functools
import json
import math
import pkgutil
import re
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import plotly
import plotly.graph_objects as go
import torch
from einops import rearrange

from ._validate import check_float, check_int, check_tensor, check_type
from .data import GaussianMixture
from .samplers import Trajectory
from .schedule import Schedule

class Style(NamedTuple):
    """How one series is drawn: a colour, a line dash (for lines) and a marker symbol (for points)."""

    color: str
    dash: str = "solid"
    symbol: str = "circle"


# Colour-blind-friendly (Okabe-Ito) roles, so "simple", "SA" and "ideal" read the same in every figure.
# blue and green clouds of small points are hard to tell apart: each role also has its own marker shape
ROLE_STYLES = {"simple": Style("#0072B2"), "sa": Style("#D55E00", symbol="square"),
               "ideal": Style("#009E73", symbol="diamond"), "data": Style("#555555")}
ROLE_COLORS = {role: style.color for role, style in ROLE_STYLES.items()}
# the rest of the Okabe-Ito palette, for series without a role (never a role's colour); yellow is left out
# because it does not read on white
OTHER_COLORS = ("#CC79A7", "#E69F00", "#56B4E9", "#000000")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x", "star")
# a role is a whole word of the name; the first one named wins ("simple (lam = 0): the ideal" is simple)
_ROLE_WORDS = re.compile(r"(?<![a-z])(ideal|simple|sa|sequence[- ]aware|data|real digits)(?![a-z])")
_ROLE_OF_WORD = {"ideal": "ideal", "simple": "simple", "sa": "sa", "sequence-aware": "sa", "sequence aware": "sa",
                 "data": "data", "real digits": "data"}
# Neutral greys for densities, so the blue/red/green sample clouds stand out on top of them.
DENSITY_SCALE = [[0.0, "#ffffff"], [0.45, "#e3e6eb"], [0.8, "#a9b0bb"], [1.0, "#6b7280"]]
TEMPLATE = "plotly_white"
FONT = dict(family="Inter, 'Segoe UI', Helvetica, Arial, sans-serif", size=13)


def role_of(name: str) -> str | None:
    """The role (``"simple"``, ``"sa"``, ``"ideal"``, ``"data"``) of the name's first whole role word, or None."""
    m = _ROLE_WORDS.search(str(name).lower())
    return _ROLE_OF_WORD[m.group(1)] if m else None


def series_styles(names: Sequence[str]) -> list[Style]:
    """The styles of one figure's series, in order: the role's colour when the name states one, else the
    next colour no role uses; the first series of a colour is solid (circles), the next ones of that colour
    take the next dash and symbol. No two series get the same (colour, dash) or (colour, symbol)."""
    out, count, other = [], {}, 0
    for name in names:
        role = role_of(name)
        if role is not None:
            color = ROLE_STYLES[role].color
        else:
            color = OTHER_COLORS[other % len(OTHER_COLORS)]
            other += 1
        k = count.get(color, 0)
        if k >= len(DASHES):
            raise ValueError(f"names hold more than {len(DASHES)} series of colour {color}; "
                             f"a figure cannot draw them all apart: {list(names)}")
        count[color] = k + 1
        first = SYMBOLS.index(ROLE_STYLES[role].symbol) if role is not None else 0
        out.append(Style(color, DASHES[k], SYMBOLS[(first + k) % len(SYMBOLS)]))
    return out


def color_for(name: str, index: int = 0) -> str:
    """A lone series' colour: its role's, else ``OTHER_COLORS[index % len(OTHER_COLORS)]``."""
    role = role_of(name)
    return ROLE_STYLES[role].color if role is not None else OTHER_COLORS[index % len(OTHER_COLORS)]


def tint(hex_color: str, alpha: float) -> str:
    """``hex_color`` at opacity ``alpha`` as an ``rgba(...)`` colour (a faint version of a series' colour)."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def line_style(style: Style, width: float = 2.2) -> dict:
    return dict(color=style.color, dash=style.dash, width=width)


def marker_style(style: Style, size: float, opacity: float, *, edge: bool = True) -> dict:
    """plotly ``marker`` of a series drawn as points (``edge``: a thin white outline, for dense clouds)."""
    out = dict(size=size, color=style.color, symbol=style.symbol, opacity=opacity)
    if edge:
        out["line"] = dict(width=0.3, color="white")
    return out


def cloud_trace(points: np.ndarray, name, style: Style, size: float, opacity: float, *, edge: bool = False,
                **kw) -> dict:
    """A scatter trace of the points [N, 2] as markers in ``style`` (``marker_style``); ``kw``: more properties."""
    return dict(type="scatter", x=points[:, 0], y=points[:, 1], mode="markers", name=str(name),
                marker=marker_style(style, size, opacity, edge=edge), **kw)


def nan_to_none(z: np.ndarray) -> list:
    """A 2-D array as nested lists with None (JSON null, a gap) for NaN, which JSON does not allow."""
    z = np.asarray(z, dtype=np.float64)
    return [[None if math.isnan(v) else v for v in row] for row in z.tolist()]


def layout_spec(title: str | None, *, margin: dict | None = None, legend_bg: bool = True, **kw) -> dict:
    """The shared look as layout properties: template, font, title top left; ``margin`` overrides some default
    margins, ``legend_bg``: a translucent white legend; ``kw``: more layout properties."""
    if legend_bg:
        kw["legend"] = dict(bgcolor="rgba(255,255,255,0.8)")
    out = dict(template=TEMPLATE, font=dict(FONT))
    if title:
        out["title"] = dict(text=title, x=0.02, xanchor="left")
    out["margin"] = {**dict(l=60, r=20, t=60 if title else 30, b=50), **(margin or {})}
    out.update(kw)
    return out


def style_layout(fig: go.Figure, title: str | None, *, margin: dict | None = None, legend_bg: bool = True,
                 **kw) -> go.Figure:
    """Give ``fig`` the shared look (``layout_spec``); no ``title`` removes the figure's title."""
    layout = layout_spec(title, margin=margin, legend_bg=legend_bg, **kw)
    if not title:
        layout["title"] = None  # removes a title the figure has
    fig.update_layout(layout)
    return fig


@functools.lru_cache(maxsize=None)
def _template_json(name: str) -> dict:
    """The template ``name`` as JSON: a built-in one read from plotly's file (``pio.templates`` would build
    plotly objects first, far slower), else ``pio.templates[name]``. Cached: callers copy it."""
    try:
        raw = pkgutil.get_data("plotly", f"package_data/templates/{name}.json") if "+" not in name else None
    except OSError:  # not a built-in template
        raw = None
    if raw is not None:
        return json.loads(raw)
    import plotly.io as pio

    return pio.templates[name].to_plotly_json()


# layout keys whose arrays plotly.js reads as plain lists, never as typed arrays (plotly's own rule)
_LIST_KEYS = frozenset({"geojson", "layer", "layers", "range"})
# plotly >= 6 writes float arrays as plotly.js typed arrays (base64); older versions (and their plotly.js) use lists
TYPED_ARRAYS = int(plotly.__version__.split(".")[0]) >= 6


def _json_ready(v, key=None):
    """A copy of ``v`` with leaves as plotly writes them: float64 arrays as typed arrays (``TYPED_ARRAYS``),
    other arrays and numpy scalars as plain values, NaN and infinities as None."""
    if isinstance(v, dict) or isinstance(v, Mapping):  # a dict first: the abstract check costs more
        return {k: _json_ready(x, k) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_ready(x) for x in v]
    if isinstance(v, np.ndarray):
        if TYPED_ARRAYS and v.dtype == np.float64 and v.size and key not in _LIST_KEYS:
            out = {"dtype": "f8", "bdata": base64.b64encode(np.ascontiguousarray(v, dtype="<f8")).decode("ascii")}
            if v.ndim > 1:
                out["shape"] = ", ".join(map(str, v.shape))
            return out
        return _json_ready(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def plotly_json(spec: Mapping) -> dict:
    """The JSON-ready dict plotly writes for ``go.Figure(spec)``, without building it: a copy of ``spec`` with
    the template expanded from its name (plotly's default when it names none)."""
    check_figure_spec("spec", spec)
    out = _json_ready(spec)
    layout = out.setdefault("layout", {})
    template = layout.get("template")
    if template is None:
        import plotly.io as pio

        template = pio.templates.default
    if isinstance(template, str):
        layout["template"] = _json_ready(_template_json(template))
    elif not isinstance(template, Mapping):
        layout["template"] = _json_ready(template.to_plotly_json())
    return out


def check_figure_spec(name: str, spec) -> Mapping:
    """``spec`` if it is a figure spec, else a TypeError naming ``name``."""
    ok = (isinstance(spec, Mapping) and set(spec) <= {"data", "layout", "frames"}
          and isinstance(spec.get("data"), (list, tuple)) and all(isinstance(t, Mapping) for t in spec["data"])
          and isinstance(spec.get("layout", {}), Mapping)
          and isinstance(spec.get("frames", []), (list, tuple))
          and all(isinstance(f, Mapping) for f in spec.get("frames", [])))
    if not ok:
        got = f"a dict with keys {sorted(map(str, spec))}" if isinstance(spec, Mapping) else type(spec).__name__
        raise TypeError(f"{name} must be a figure spec (a dict with a list of trace dicts under 'data', optionally "
                        f"'layout' and 'frames'), got {got}")
    return spec


def _figure_of(spec_builder):
    """The ``*_figure`` twin of a ``*_spec`` builder: the same arguments, the spec as a plotly Figure."""

    @functools.wraps(spec_builder)
    def figure(*args, **kwargs) -> go.Figure:
        return go.Figure(spec_builder(*args, **kwargs))

    figure.__name__ = figure.__qualname__ = spec_builder.__name__.replace("_spec", "_figure")
    return figure


def to_numpy(name: str, value, ndim: int | None = None) -> np.ndarray:
    """A tensor, array or sequence as a float64 numpy array (errors name the argument ``name``)."""
    if isinstance(value, torch.Tensor):
        arr = value.detach().cpu().to(torch.float64).numpy()
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a tensor, array or sequence of numbers, "
                            f"got {type(value).__name__}") from err
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(arr.shape)}")
    return arr


def _check_mapping(name: str, value, allow_empty: bool = False) -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of name -> value, got {type(value).__name__}")
    if not allow_empty and len(value) == 0:
        raise ValueError(f"{name} must hold at least one entry, got an empty dict")
    return value


def subsample_index(n: int, max_points: int) -> np.ndarray:
    """Evenly spaced indices keeping at most ``max_points`` of ``n``."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def _square_box(lo, hi, pad: float = 1.0, eps: float = 0.0) -> tuple[float, float, float, float]:
    """The square (x_min, x_max, y_min, y_max) centred on the box ``lo``..``hi`` (2 numbers each) whose half
    side is half the box's longer side times ``pad``, plus ``eps``."""
    centre, half = (lo + hi) / 2, float((hi - lo).max()) / 2 * pad + eps
    return centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half


def square_bounds(points: np.ndarray, q: float = 0.002, pad: float = 1.12,
                  include=None) -> tuple[float, float, float, float]:
    """A square box holding the central ``1 - 2q`` of the finite ``points`` [..., 2] in each coordinate
    (and the box ``include`` = (x_min, x_max, y_min, y_max) if given), its side widened by ``pad``."""
    flat = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    flat = flat[np.isfinite(flat).all(1)]
    lo, hi = np.quantile(flat, q, axis=0), np.quantile(flat, 1 - q, axis=0)
    if include is not None:
        lo, hi = np.minimum(lo, [include[0], include[2]]), np.maximum(hi, [include[1], include[3]])
    return _square_box(lo, hi, pad, 1e-6)


def mixture_bounds(mixture: GaussianMixture, pad_std: float = 3.5) -> tuple[float, float, float, float]:
    """A square box holding every component mean +- ``pad_std`` of its widest standard deviation."""
    mu = mixture.means.numpy()
    spread = float(np.sqrt(mixture._evals.max().item()))
    return _square_box(mu.min(0) - pad_std * spread, mu.max(0) + pad_std * spread)


def cloud_bounds(points: np.ndarray, mixture: GaussianMixture | None, q: float = 0.002):
    """``square_bounds`` of ``points`` that also holds every cluster of ``mixture`` whole: the outer clusters
    are where over-dispersion shows, so they are never clipped."""
    return square_bounds(points, q, include=mixture_bounds(mixture) if mixture is not None else None)


def check_mixture_2d(name: str, mixture, optional: bool = False) -> GaussianMixture | None:
    """``mixture`` if it is a 2-D ``GaussianMixture`` (or None when ``optional``), else an error naming it."""
    if mixture is None and optional:
        return None
    check_type(name, mixture, GaussianMixture)
    if mixture.dim != 2:
        raise ValueError(f"{name} must be 2-D, got dim={mixture.dim}")
    return mixture


def square_axes(bounds, suffix: str = "") -> dict:
    """Layout of fixed square axes ``bounds`` for subplot ``suffix`` ("", "2", ...): the plot area shrinks to
    the square instead of the range growing or being cut, and frames never autorange."""
    return {f"xaxis{suffix}": dict(title=dict(text="x<sub>1</sub>"), range=[bounds[0], bounds[1]],
                                   autorange=False, constrain="domain"),
            f"yaxis{suffix}": dict(title=dict(text="x<sub>2</sub>"), range=[bounds[2], bounds[3]],
                                   autorange=False, constrain="domain", scaleanchor=f"x{suffix}", scaleratio=1)}


def cloud_layout(title: str | None, bounds, **kw) -> dict:
    """``layout_spec`` of a 2-D point-cloud figure: fixed square axes ``bounds``, the legend in a row on top."""
    layout = layout_spec(title, **kw)
    layout.setdefault("legend", {}).update(orientation="h", x=0, y=1.01, xanchor="left", yanchor="bottom")
    layout.update(square_axes(bounds))
    return layout


def log_density_grid(mixture: GaussianMixture, bounds, grid_size: int, alpha_bar: float = 1.0):
    """``log p_t`` on a ``grid_size x grid_size`` grid: returns (xs, ys, z [ny, nx])."""
    xs = np.linspace(bounds[0], bounds[1], grid_size)
    ys = np.linspace(bounds[2], bounds[3], grid_size)
    gx, gy = torch.meshgrid(torch.from_numpy(xs), torch.from_numpy(ys), indexing="xy")  # [ny, nx] each
    pts = rearrange(torch.stack([gx, gy], dim=-1), "ny nx d -> (ny nx) d")
    z = rearrange(mixture.log_prob(pts, alpha_bar=alpha_bar), "(ny nx) -> ny nx", ny=grid_size)
    return xs, ys, z.numpy()


def clip_tails(z: np.ndarray, floor: float = 12.0) -> np.ndarray:
    """``max(z, z.max() - floor)``: log p falls like -|x|^2; a colour scale over all of it would hide the modes."""
    return np.maximum(z, z.max() - floor)


def _density_trace(xs, ys, z, floor: float, showscale: bool, name: str) -> dict:
    return dict(type="contour", x=xs, y=ys, z=clip_tails(z, floor), name=name,
                colorscale=[list(c) for c in DENSITY_SCALE], showscale=showscale, ncontours=18,
                line=dict(width=0.4, color="rgba(255,255,255,0.5)"),
                colorbar=dict(title=dict(text="log p", side="right"), thickness=12, len=0.8),
                hovertemplate="x=%{x:.2f}<br>y=%{y:.2f}<br>log p=%{z:.2f}<extra></extra>", opacity=0.85)


# ---------------------------------------------------------------------------------------------- density
def density_spec(mixture: GaussianMixture, samples: Mapping[str, torch.Tensor] | None = None, *,
                 alpha_bar: float = 1.0, grid_size: int = 120, bounds=None, max_points: int = 2000,
                 floor: float = 12.0, title: str | None = None, marker_size: float = 4.0) -> dict:
    """Contours of the exact 2-D mixture log-density with sample clouds on top, as a figure spec.

    The background is ``log p_t(x) = logsumexp_i (log pi_i + log N(x; sqrt(a) mu_i, a S_i + (1 - a) I))``
    at ``a = alpha_bar``, clipped below at ``max log p - floor``. ``samples``: name -> [N, 2] tensor (at most
    ``max_points`` of each drawn). Traces: one contour, then one scatter per sample cloud."""
    check_mixture_2d("mixture", mixture)
    alpha_bar = check_float("alpha_bar", alpha_bar, 0.0, 1.0, low_open=True)
    grid_size = check_int("grid_size", grid_size, 8, 1000)
    max_points = check_int("max_points", max_points, 1)
    floor = check_float("floor", floor, 0.0, low_open=True)
    samples = _check_mapping("samples", samples if samples is not None else {}, allow_empty=True)
    clouds = {}
    for name, x in samples.items():
        check_tensor(f"samples[{name!r}]", x, ndim=2)
        if x.shape[1] != 2:
            raise ValueError(f"samples[{name!r}] must have shape [N, 2], got {tuple(x.shape)}")
        clouds[name] = to_numpy(f"samples[{name!r}]", x)
    if bounds is None:
        b = mixture_bounds(mixture.noised(alpha_bar) if alpha_bar < 1 else mixture)
        # widen the box to hold (almost) every sample: stray samples are the interesting ones
        bounds = square_bounds(np.concatenate(list(clouds.values())), pad=1.08, include=b) if clouds else b
    else:
        bounds = tuple(float(b) for b in bounds)
        if len(bounds) != 4 or bounds[0] >= bounds[1] or bounds[2] >= bounds[3]:
            raise ValueError(f"bounds must be (x_min, x_max, y_min, y_max) with min < max, got {bounds}")
    xs, ys, z = log_density_grid(mixture, bounds, grid_size, alpha_bar)
    data = [_density_trace(xs, ys, z, floor, True, "log p")]
    for (name, x), style in zip(clouds.items(), series_styles(list(clouds))):
        data.append(cloud_trace(x[subsample_index(len(x), max_points)], name, style, marker_size, 0.75, edge=True))
    if title is None:
        title = f"{mixture.name}: exact log-density" + (f" at alpha_bar={alpha_bar:.3g}" if alpha_bar < 1 else "")
    return dict(data=data, layout=cloud_layout(title, bounds, margin=dict(t=90), width=620, height=560))


density_figure = _figure_of(density_spec)


# ---------------------------------------------------------------------------------------------- trajectories
def segments_xy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Segments ``a[i]`` -> ``b[i]`` ([..., P, 2] each) as one polyline ``[a1, b1, nan, a2, ...]`` [..., 3P, 2]."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.shape[-1] != 2:
        raise ValueError(f"a and b must have the same shape [..., P, 2], got {a.shape} and {b.shape}")
    gap = np.full_like(a, np.nan)
    return rearrange(np.stack([a, b, gap], axis=-2), "... p k d -> ... (p k) d")


def prepare_paths(trajectories: Mapping[str, Trajectory], max_points: int, pair_lines: bool):
    """Check a non-empty dict of 2-D ``Trajectory`` recording the same number of states; returns (names,
    {name: [R+1, P, 2] array of at most ``max_points`` evenly spaced samples, the same in every path}, whether
    to pair them (two paths of one batch and ``pair_lines``), the recorded timesteps (-1: the final sample))."""
    names, first = list(trajectories), next(iter(trajectories.values()), None)
    for name, tr in trajectories.items():
        check_type(f"trajectories[{name!r}]", tr, Trajectory)
        if tr.x.ndim != 3 or tr.x.shape[-1] != 2:
            raise ValueError(f"trajectories[{name!r}].x must have shape [R+1, B, 2] (2-D points), "
                             f"got {tuple(tr.x.shape)}")
        if tr.x.shape[0] != first.x.shape[0]:
            raise ValueError(f"trajectories must all record the same number of states for one slider; "
                             f"{names[0]!r} has {first.x.shape[0]}, {name!r} has {tr.x.shape[0]}")
    B = min(trajectories[n].x.shape[1] for n in names)
    keep = subsample_index(B, max_points)
    paths = {n: to_numpy(f"trajectories[{n!r}].x", trajectories[n].x[:, keep]) for n in names}
    pair = pair_lines and len(names) == 2 and all(trajectories[n].x.shape[1] == B for n in names)
    return names, paths, pair, [int(t) for t in first.t]


def trajectory_slider_spec(trajectories: Mapping[str, Trajectory], max_points: int = 300, *,
                           mixture: GaussianMixture | None = None, schedule: Schedule | None = None,
                           pair_lines: bool = True, grid_size: int = 60, title: str | None = None,
                           marker_size: float = 5.0) -> dict:
    """Point clouds of each sampling path at every recorded state, with a slider and play button, as a spec.

    Two paths of one batch (learned and ideal from the same ``x_T``) are joined point by point by segments whose
    length is the per-sample drift. ``mixture`` draws its log-density behind; with ``schedule`` too, each frame
    shows the noised marginal ``p_t`` at its timestep. At most ``max_points`` samples of each path are drawn.
    Traces: [density], [pair segments], one scatter per path; one frame per recorded state."""
    trajectories = _check_mapping("trajectories", trajectories)
    max_points = check_int("max_points", max_points, 1)
    grid_size = check_int("grid_size", grid_size, 8, 1000)
    names, paths, pair, t_labels = prepare_paths(trajectories, max_points, pair_lines)
    n_states = len(t_labels)
    check_mixture_2d("mixture", mixture, optional=True)
    check_type("schedule", schedule, (Schedule, type(None)))
    if schedule is not None and mixture is None:
        raise ValueError("schedule needs mixture: it is used to draw the noised marginal p_t of the mixture")

    bounds = cloud_bounds(np.concatenate(list(paths.values()), axis=1), mixture)
    styles = series_styles(names)
    segs = segments_xy(paths[names[0]], paths[names[1]]) if pair else None  # [R+1, 3P, 2]

    def traces_at(j: int, static: bool) -> list:
        """The traces shown at state j; ``static`` adds a background that never changes (drawn once)."""
        out = []
        if mixture is not None and (schedule is not None or static):
            a = 1.0 if schedule is None else float(schedule.alpha_bar(t_labels[j]))
            out.append(_density_trace(*log_density_grid(mixture, bounds, grid_size, a), 12.0, False,
                                      "log p" if schedule is None else "log p_t"))
        if pair:
            seg = segs[j]  # one trace of x: [a1, b1, nan, a2, b2, nan, ...] draws every segment
            out.append(dict(type="scatter", x=seg[:, 0], y=seg[:, 1], mode="lines", name="pairing",
                            line=dict(width=0.7, color="rgba(80,80,80,0.45)"), hoverinfo="skip"))
        for n, style in zip(names, styles):
            out.append(cloud_trace(paths[n][j], n, style, marker_size, 0.8, edge=True,
                                   hovertemplate=f"{n}<br>x=%{{x:.3f}}<br>y=%{{y:.3f}}<extra></extra>"))
        return out

    data = traces_at(0, static=True)
    n_static = 1 if (mixture is not None and schedule is None) else 0  # a static background is never resent
    animated = list(range(n_static, len(data)))
    frames = [dict(data=traces_at(j, static=False), name=str(j), traces=list(animated)) for j in range(n_states)]

    redraw = schedule is not None  # contour changes need a full redraw; scatter-only frames animate cheaply
    if title is None:
        title = "Sampling paths" + (" (segments join paired samples)" if pair else "")
    layout = cloud_layout(title, bounds, margin=dict(b=110, t=90), width=640, height=660)
    layout.update(_step_slider(["end" if t < 0 else f"t={t}" for t in t_labels], redraw))
    return dict(data=data, layout=layout, frames=frames)


trajectory_slider_figure = _figure_of(trajectory_slider_spec)


def _step_slider(labels: Sequence[str], redraw: bool) -> dict:
    """The layout's slider over animation frames ``"0", "1", ...`` (one per label) and its play/pause buttons;
    ``redraw``: whether a frame needs plotly's full redraw (a heatmap that changes) or animates its traces only."""
    def anim(duration: int = 0, transition: int = 0, redraw: bool = redraw, **extra) -> dict:
        return dict(mode="immediate", frame=dict(duration=duration, redraw=redraw),
                    transition=dict(duration=transition), **extra)

    steps = [dict(method="animate", label=label, args=[[str(j)], anim()]) for j, label in enumerate(labels)]
    return dict(
        sliders=[dict(active=0, steps=steps, x=0.17, len=0.83, y=0, yanchor="top", pad=dict(t=40),
                      currentvalue=dict(prefix="sampling step: ", font=dict(size=13)))],
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=0, xanchor="left", yanchor="top",
                          pad=dict(t=40, r=8), showactive=False, buttons=[
                              dict(label="▶", method="animate", args=[None, anim(350, 150, fromcurrent=True)]),
                              dict(label="❚❚", method="animate", args=[[None], anim(redraw=False)])])])


# ---------------------------------------------------------------------------------------------- curves
def curves_spec(x, curves: Mapping[str, Sequence[float]], title: str = "", xlabel: str = "", ylabel: str = "",
                bands: Mapping[str, object] | None = None, *, log_x: bool = False, log_y: bool = False,
                reverse_x: bool = False, reference: float | None = None, markers: bool = True) -> dict:
    """Named curves over a shared ``x`` (drift per step, a metric against steps) as a figure spec.

    ``bands[name]``: ``(lower, upper)`` arrays, or one array ``s`` drawn as ``y +- s``, shaded in the curve's
    colour. ``reference``: a dashed horizontal line. ``reverse_x``: the axis runs high to low (T-1 -> 0, as a
    sampler does). A log x axis is ticked at the x values used (up to ``MAX_LABELLED_X``), a log y axis at
    ``log_ticks``; values <= 0 are gaps on a log y axis. Traces: per curve, its band (if any), then its line."""
    xv = to_numpy("x", x, ndim=1)
    curves = _check_mapping("curves", curves)
    bands = _check_mapping("bands", bands if bands is not None else {}, allow_empty=True)
    unknown = set(bands) - set(curves)
    if unknown:
        raise ValueError(f"bands names must be among the curves {sorted(map(str, curves))}, "
                         f"got {sorted(map(str, unknown))}")
    if log_x and bool((xv <= 0).any()):
        raise ValueError(f"x must be positive for log_x=True, got a minimum of {xv.min()}")
    if reference is not None:
        reference = check_float("reference", reference)
    data = []
    shown = []  # every value drawn on y, to place a log axis's range and ticks
    n_curves = len(curves)
    for i, ((name, y), style) in enumerate(zip(curves.items(), series_styles(list(curves)))):
        # where curves coincide the later one covers the earlier: earlier ones are drawn wider (and their
        # markers larger), so each shows at the edges of those drawn over it
        wider = min(n_curves - 1 - i, 2)
        yv = to_numpy(f"curves[{name!r}]", y, ndim=1)
        if len(yv) != len(xv):
            raise ValueError(f"curves[{name!r}] must have len(x) = {len(xv)} values, got {len(yv)}")
        if log_y:  # a log axis cannot show 0 or less: leave a gap there rather than a plunge to -infinity
            yv = np.where(yv > 0, yv, np.nan)
        shown.append(yv)
        if name in bands:
            lower, upper = _band(name, bands[name], yv)
            shown.append(upper)
            # one closed polygon: along the upper edge, back along the lower edge
            data.append(dict(type="scatter", x=np.concatenate([xv, xv[::-1]]),
                             y=np.concatenate([upper, lower[::-1]]), fill="toself",
                             fillcolor=tint(style.color, 0.18), line=dict(width=0), hoverinfo="skip",
                             showlegend=False, legendgroup=str(name), name=f"{name} band"))
        data.append(dict(type="scatter", x=xv, y=yv, mode="lines+markers" if markers else "lines", name=str(name),
                         legendgroup=str(name), line=line_style(style, 2.2 + 1.8 * wider),
                         marker=marker_style(style, 6 + 3 * wider, 1.0, edge=False)))
    layout = layout_spec(title or None, width=700, height=430)
    if reference is not None:  # a dashed line across the whole plot at y = reference
        layout["shapes"] = [dict(type="line", xref="x domain", x0=0, x1=1, yref="y", y0=reference, y1=reference,
                                 line=dict(color="#888", dash="dash", width=1))]
    xaxis = layout["xaxis"] = dict(title=dict(text=xlabel), type="log" if log_x else "linear",
                                   autorange="reversed" if reverse_x else True)
    if log_x:
        used = np.unique(xv)
        ticks = used if len(used) <= MAX_LABELLED_X else log_ticks(used.min(), used.max())
        xaxis.update(tickvals=[float(v) for v in ticks], ticktext=[f"{v:g}" for v in ticks],
                     minor=dict(showgrid=False))
    yaxis = layout["yaxis"] = dict(title=dict(text=ylabel), type="log" if log_y else "linear")
    if log_y:
        vals = np.concatenate(shown + ([np.array([reference])] if reference is not None else []))
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if len(vals):
            lo, hi = float(vals.min()), float(vals.max())
            ticks = log_ticks(lo, hi)
            pad = 0.04 * max(math.log10(hi / lo), 0.3)
            yaxis.update(range=[math.log10(lo) - pad, math.log10(hi) + pad], tickvals=ticks,
                         ticktext=[f"{v:g}" for v in ticks])
    return dict(data=data, layout=layout)


curves_figure = _figure_of(curves_spec)


# a log x axis labels every value used (step counts) up to this many, else 1-2-5 ticks
MAX_LABELLED_X = 12


def log_ticks(lo: float, hi: float, max_ticks: int = 8) -> list[float]:
    """Log-axis ticks from ``lo`` to ``hi`` (> 0), to label in full (plotly writes minor ticks as a bare "2"):
    the 1-2-5 values in range, thinned to 1-3, to decades, then to every k-th decade until at most
    ``max_ticks`` remain; a range holding fewer than two gets four log-spaced values (two digits)."""
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"lo and hi must be positive and finite, got {lo} and {hi}")
    lo, hi = min(lo, hi), max(lo, hi)
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))

    def inside(mantissas, every=1):
        vals = [m * 10.0 ** k for k in range(k0, k1 + 1) if (k - k0) % every == 0 for m in mantissas]
        return [float(f"{v:.3g}") for v in vals if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]

    for mantissas in ((1, 2, 5), (1, 3), (1,)):
        vals = inside(mantissas)
        if 2 <= len(vals) <= max_ticks:
            return vals
        if len(vals) < 2:
            break
    else:
        every = 2
        while len(inside((1,), every)) > max_ticks:
            every += 1
        return inside((1,), every)
    return sorted({float(f"{v:.2g}") for v in np.geomspace(lo, hi, 4)})


def _band(name, band, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(band, (tuple, list)) and len(band) == 2 and np.ndim(band[0]) == 1:
        lower = to_numpy(f"bands[{name!r}][0]", band[0], ndim=1)
        upper = to_numpy(f"bands[{name!r}][1]", band[1], ndim=1)
    else:
        s = to_numpy(f"bands[{name!r}]", band, ndim=1)
        lower, upper = y - s, y + s
    if len(lower) != len(y) or len(upper) != len(y):
        raise ValueError(f"bands[{name!r}] must match the curve's length {len(y)}, got {len(lower)} and {len(upper)}")
    return lower, upper


# ---------------------------------------------------------------------------------------------- images
def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 1) -> torch.Tensor:
    """Tile ``images`` [N, 1, H, W] (or [N, H, W]) row-major, ``nrow`` to a row, into one 2-D array whose gaps
    and missing cells are NaN."""
    check_tensor("images", images)
    if images.ndim == 4:
        if images.shape[1] != 1:
            raise ValueError(f"images must have one channel, shape [N, 1, H, W], got {tuple(images.shape)}")
        images = rearrange(images, "n 1 h w -> n h w")
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(f"images must have shape [N, 1, H, W] or [N, H, W] with N >= 1, got {tuple(images.shape)}")
    nrow = check_int("nrow", nrow, 1)
    pad = check_int("pad", pad, 0, 16)
    n = images.shape[0]
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    x = images.detach().cpu().to(torch.float64)
    x = torch.cat([x, torch.full((rows * cols - n, *x.shape[1:]), math.nan, dtype=x.dtype)])
    x = torch.nn.functional.pad(x, (0, pad, 0, pad), value=math.nan)
    grid = rearrange(x, "(r c) h w -> (r h) (c w)", r=rows, c=cols)
    return grid[: grid.shape[0] - pad, : grid.shape[1] - pad] if pad else grid


def image_grid_figure(images: torch.Tensor, nrow: int = 8, *, pad: int = 1, value_range=(-1.0, 1.0),
                      title: str | None = None, cell_px: int = 8) -> go.Figure:
    """Greyscale images (digits in [-1, 1]) tiled as one heatmap, ``value_range`` mapped to black -> white."""
    grid = image_grid(images, nrow, pad).numpy()
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    cell_px = check_int("cell_px", cell_px, 1, 64)
    fig = go.Figure(go.Heatmap(z=grid, zmin=lo, zmax=hi, colorscale="gray", showscale=False,
                               hovertemplate="row %{y}, col %{x}: %{z:.2f}<extra></extra>"))
    h, w = grid.shape
    style_layout(fig, title, margin=dict(l=20, r=20, t=50 if title else 20, b=20), width=max(220, w * cell_px + 60),
                 height=max(200, h * cell_px + (90 if title else 60)), plot_bgcolor="white")
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", scaleratio=1)
    return fig


# ---------------------------------------------------------------------------------------------- schedules
def schedule_figure(schedules: Mapping[str, Schedule], *, title: str | None = "Noise schedules") -> go.Figure:
    """``alpha_bar_t`` (left) and the log-SNR ``log(alpha_bar_t / (1 - alpha_bar_t))`` (right) against t; two
    traces per schedule."""
    schedules = _check_mapping("schedules", schedules)
    from plotly.subplots import make_subplots  # imports plotly's validated objects: only where they are built

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("ᾱ<sub>t</sub> (signal kept)", "log-SNR λ<sub>t</sub>"))
    for (name, sch), style in zip(schedules.items(), series_styles([str(n) for n in schedules])):
        check_type(f"schedules[{name!r}]", sch, Schedule)
        t = np.arange(sch.T)
        fig.add_trace(go.Scatter(x=t, y=sch.alpha_bars.numpy(), name=str(name), legendgroup=str(name),
                                 line=line_style(style)), row=1, col=1)
        fig.add_trace(go.Scatter(x=t, y=sch.log_snr(torch.arange(sch.T)).numpy(), name=str(name),
                                 legendgroup=str(name), showlegend=False, line=line_style(style)),
                      row=1, col=2)
    style_layout(fig, title, width=860, height=400)
    fig.update_xaxes(title="timestep t")
    fig.update_yaxes(title="ᾱ<sub>t</sub>", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title="λ<sub>t</sub>", row=1, col=2)
    return fig


# ---------------------------------------------------------------------- experiment summaries over seeds
SUMMARY_LABELS = {"mmd": "MMD^2 (lower is better)", "sw": "sliced W1 (lower is better)",
                  "loglik": "mean log-likelihood (the data's own value is right; higher is not better)",
                  "loglik_gap": "log-likelihood gap to the data (0 is right; above: too tight)",
                  "fd": "digit Frechet distance (lower is better)",
                  "std_ratio": "std ratio, samples / data (1 is right)"}


def _series_name(row: Mapping) -> str:
    return f"{row['loss']}, {row['train_steps']} updates"


def _series_order(name: str):
    return (not name.startswith("simple"), name)


def seeds_summary_figure(summary: Sequence[Mapping], dataset: str, metric: str, eta: float, title: str) -> go.Figure:
    """One metric against the sampling steps from experiment summary rows (``experiments.summarize``): the mean
    over seeds per loss and budget, the t-interval ``[ci_low, ci_high]`` as a band."""
    sel = [r for r in summary if r["dataset"] == dataset and r["metric"] == metric and r["eta"] == eta]
    steps = sorted({r["steps"] for r in sel})
    curves, bands = {}, {}
    for name in sorted({_series_name(r) for r in sel}, key=_series_order):
        by_steps = {r["steps"]: r for r in sel if _series_name(r) == name}
        curves[name] = [by_steps[s]["mean"] if s in by_steps else math.nan for s in steps]
        bands[name] = ([by_steps[s]["ci_low"] if s in by_steps else math.nan for s in steps],
                       [by_steps[s]["ci_high"] if s in by_steps else math.nan for s in steps])
    return curves_figure(steps, curves, title=title, xlabel="sampling steps",
                         ylabel=SUMMARY_LABELS.get(metric, metric), bands=bands, log_x=True,
                         reference={"std_ratio": 1.0, "loglik_gap": 0.0}.get(metric))


def seeds_path_figure(rows: Sequence[Mapping], dataset: str, eta: float, steps: int) -> go.Figure | None:
    """The std ratio at every sampler step (mean over seeds), one curve per loss and budget, from experiment
    rows holding ``path_t`` and ``path_std_ratio``; None when no row has them."""
    sel = [r for r in rows if r["dataset"] == dataset and r["eta"] == eta and r["steps"] == steps and "path_t" in r]
    if not sel:
        return None
    t = sel[0]["path_t"]
    curves = {}
    for name in sorted({_series_name(r) for r in sel}, key=_series_order):
        paths = [r["path_std_ratio"] for r in sel if _series_name(r) == name]
        curves[name] = [sum(p[j] for p in paths) / len(paths) for j in range(len(t))]
    return curves_figure(t, curves, title=f"{dataset}: std ratio along the path ({steps} steps, eta={eta:g})",
                         xlabel="timestep t (the sampler runs right to left; -1: the final samples)",
                         ylabel="std(x_t) / std under q(x_t)", reverse_x=True, reference=1.0)


def closed_form_figure(summary: Sequence[Mapping], eta: float) -> go.Figure:
    """gauss1d: the measured std ratio (mean and t-interval over seeds) with the closed form as dashed lines
    (summary rows of metric ``std_ratio_closed_form``)."""
    fig = seeds_summary_figure(summary, "gauss1d", "std_ratio", eta, "1-D Gaussian: measured std ratio (bands: "
                               f"95% t-interval) vs closed form (dashed), eta={eta:g}")
    sel = [r for r in summary if r["dataset"] == "gauss1d" and r["metric"] == "std_ratio_closed_form"
           and r["eta"] == eta]
    losses = sorted({r["loss"] for r in sel}, key=lambda s: (s != "simple", s))
    # the closed forms continue the figure's style table: each keeps its loss's colour with a dash no measured
    # curve of that colour uses
    measured = [t.name for t in fig.data if t.showlegend is not False]
    styles = series_styles(measured + [f"{loss}, closed form" for loss in losses])
    used = {(st.color, st.dash) for st in styles}
    for loss, style in zip(losses, styles[len(measured):]):
        pts = sorted((r["steps"], r["mean"]) for r in sel if r["loss"] == loss)
        if style.dash == "solid" and (style.color, "dash") not in used:  # no measured curve: still draw it dashed
            used.discard((style.color, "solid"))
            style = style._replace(dash="dash")
            used.add((style.color, "dash"))
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines",
                                 name=f"{loss}, closed form", line=line_style(style, 1.6)))
    return fig
