"""Figure builders: trace/frame/step counts, and the plotted numbers recomputed from the library's own maths."""
import copy
import json
import math

import numpy as np
import plotly.graph_objects as go
import plotly.io
import pytest
import torch

from seqdiff_kit import GaussianMixture, IdealDenoiser, Schedule, ring8, sample
from seqdiff_kit import viz
from seqdiff_kit.drift import paired_trajectories

STEPS = 4  # a trajectory records STEPS + 1 states


@pytest.fixture(scope="module")
def setup():
    mix, sch = ring8(), Schedule.linear(50)
    ideal = IdealDenoiser(mix, sch)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(40, 2, generator=g)
    # a "learned" model that under-predicts the noise: a visible, deterministic drift from the ideal path
    pair = paired_trajectories(lambda x, t: 0.8 * ideal(x, t), ideal, x_T, sch, STEPS, eta=1.0, generator=g)
    return mix, sch, pair.reference, pair.model


def arr(v):
    return np.asarray(v, dtype=float)


# ------------------------------------------------------------------------------------------- styles
def test_role_colours_are_consistent():
    assert viz.color_for("SA (K=2, lam=1)") == viz.ROLE_COLORS["sa"]
    assert viz.color_for("learned (simple)") == viz.ROLE_COLORS["simple"]
    assert viz.color_for("ideal path") == viz.ROLE_COLORS["ideal"]
    assert viz.color_for("data (own)") == viz.ROLE_COLORS["data"]
    assert viz.role_of("samples") is None and viz.color_for("samples", 3) == viz.OTHER_COLORS[3]  # not SA
    assert len(set(viz.ROLE_COLORS.values())) == len(viz.ROLE_COLORS)
    assert not set(viz.OTHER_COLORS) & set(viz.ROLE_COLORS.values())  # a role's colour means that role only


def test_the_first_role_word_of_a_name_decides():
    # 05's closed form: "simple (lam = 0): the ideal" is the simple loss's optimum, drawn as simple
    assert viz.role_of("simple (lam = 0): the ideal") == "simple"
    assert viz.role_of("|delta| learned (simple)") == "simple"
    assert viz.role_of("ideal denoiser (DDIM)") == "ideal"
    assert viz.role_of("SA (K=2, λ=1)") == "sa" and viz.role_of("sequence-aware") == "sa"
    assert viz.role_of("DDIM (eta = 0)") is None


def test_the_roles_clouds_differ_in_shape_not_only_in_colour():
    """Blue (simple) and green (ideal) clouds of small points are hard to tell apart by colour alone."""
    styles = viz.series_styles(["simple", "SA (K=2, lam=1)", "ideal", "data"])
    assert len({s.symbol for s in styles[:3]}) == 3, styles
    second = viz.series_styles(["ideal", "ideal (heun)"])  # a role's second series takes the next shape
    assert second[0].symbol != second[1].symbol, second


def test_series_styles_never_draw_two_series_alike():
    cases = [["|e| learned (simple)", "|e| ideal", "|delta| learned (simple)"],            # 04's gap plot
             ["simple (lam = 0): the ideal", "SA (K=2, lam=1)", "SA (K=4, lam=1)"],       # 05's closed form
             ["a", "b", "c", "d", "e", "f", "simple", "ideal"]]                            # more than 4 others
    for names in cases:
        styles = viz.series_styles(names)
        assert len({(s.color, s.dash) for s in styles}) == len(names), (names, styles)
        assert len({(s.color, s.symbol) for s in styles}) == len(names), (names, styles)
        for name, style in zip(names, styles):
            role = viz.role_of(name)
            assert style.color == (viz.ROLE_COLORS[role] if role else style.color)
            assert role is not None or style.color in viz.OTHER_COLORS
    gap = viz.series_styles(cases[0])
    assert gap[0].color == gap[2].color == viz.ROLE_COLORS["simple"] and gap[0].dash != gap[2].dash
    with pytest.raises(ValueError, match="more than"):
        viz.series_styles(["SA"] * (len(viz.DASHES) + 1))


def test_nan_to_none():
    z = np.array([[1.0, np.nan], [np.nan, -2.5]])
    assert viz.nan_to_none(z) == [[1.0, None], [None, -2.5]]


# ------------------------------------------------------------------------------------------- density
def test_density_figure_matches_exact_log_density(setup):
    mix, _, tr_ideal, tr_learned = setup
    fig = viz.density_figure(mix, {"ideal": tr_ideal.final, "learned (simple)": tr_learned.final},
                             grid_size=30, max_points=25, floor=8.0)
    assert isinstance(fig, go.Figure)
    assert [d.type for d in fig.data] == ["contour", "scatter", "scatter"]
    c = fig.data[0]
    xs, ys, z = arr(c.x), arr(c.y), arr(c.z)
    assert z.shape == (30, 30)
    # brute force: z[j, i] is log p at (xs[i], ys[j]), clipped below at max - floor
    pts = torch.tensor([[xs[i], ys[j]] for j in range(30) for i in range(30)], dtype=torch.float64)
    logp = mix.log_prob(pts).numpy().reshape(30, 30)
    np.testing.assert_allclose(z, np.maximum(logp, logp.max() - 8.0), rtol=1e-10)
    assert z.max() == pytest.approx(logp.max()) and z.min() >= z.max() - 8.0 - 1e-9
    assert len(fig.data[1].x) == 25 and fig.data[1].name == "ideal"
    assert fig.data[1].marker.color == viz.ROLE_COLORS["ideal"]
    assert fig.data[2].marker.color == viz.ROLE_COLORS["simple"]


def test_cloud_axes_hold_every_cluster_whole(setup):
    mix = setup[0]
    lo_x, hi_x, lo_y, hi_y = viz.mixture_bounds(mix)
    mu, sd = mix.means.numpy(), 0.1  # ring8's component standard deviation
    # ring8's outer clusters, 3 standard deviations out, lie inside the box
    assert lo_x <= mu[:, 0].min() - 3 * sd and hi_x >= mu[:, 0].max() + 3 * sd
    assert lo_y <= mu[:, 1].min() - 3 * sd and hi_y >= mu[:, 1].max() + 3 * sd
    # and an over-dispersed cloud (the ring 1.4 times too wide) widens it: its outer clusters stay on the plot
    wide = 1.4 * mix.sample(1000, generator=torch.Generator().manual_seed(0))
    fig = viz.density_figure(mix, {"SA": wide}, grid_size=10)
    (x0, x1), (y0, y1) = fig.layout.xaxis.range, fig.layout.yaxis.range
    inside = ((wide[:, 0] >= x0) & (wide[:, 0] <= x1) & (wide[:, 1] >= y0) & (wide[:, 1] <= y1)).double().mean()
    assert float(inside) >= 0.998
    assert fig.layout.yaxis.constrain == "domain" and fig.layout.xaxis.constrain == "domain"


def test_density_figure_noised_marginal(setup):
    mix, sch, _, _ = setup
    a = float(sch.alpha_bar(30))
    fig = viz.density_figure(mix, alpha_bar=a, grid_size=12, bounds=(-2, 2, -1, 1), floor=1e6)
    c = fig.data[0]
    assert len(fig.data) == 1
    i, j = 5, 7
    want = mix.log_prob(torch.tensor([[arr(c.x)[i], arr(c.y)[j]]], dtype=torch.float64), alpha_bar=a)
    assert arr(c.z)[j, i] == pytest.approx(float(want), rel=1e-10)
    assert arr(c.x)[0] == -2 and arr(c.y)[-1] == 1


def test_density_figure_rejects_bad_input(setup):
    mix = setup[0]
    with pytest.raises(TypeError, match="mixture"):
        viz.density_figure("ring8")
    mix3 = GaussianMixture([1.0], [[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="dim=3"):
        viz.density_figure(mix3)
    with pytest.raises(ValueError, match=r"samples\['a'\].*\[N, 2\]"):
        viz.density_figure(mix, {"a": torch.zeros(5, 3)})
    with pytest.raises(ValueError, match="bounds"):
        viz.density_figure(mix, bounds=(1, 0, 0, 1))


# ------------------------------------------------------------------------------------------- trajectories
def _frame_trace(frame, name):
    return next(d for d in frame.data if d.name == name)


def test_trajectory_slider_frames_follow_the_paths(setup):
    _, _, tr_ideal, tr_learned = setup
    fig = viz.trajectory_slider_figure({"ideal": tr_ideal, "learned (simple)": tr_learned}, max_points=10)
    n_states = STEPS + 1
    assert [d.name for d in fig.data] == ["pairing", "ideal", "learned (simple)"]
    assert len(fig.frames) == n_states
    steps = fig.layout.sliders[0].steps
    assert len(steps) == n_states
    assert [s.label for s in steps] == [f"t={int(t)}" for t in tr_ideal.timesteps] + ["end"]
    # each slider step animates to its own, existing frame
    assert [s.args[0][0] for s in steps] == [f.name for f in fig.frames]
    keep = np.unique(np.linspace(0, 39, 10).round().astype(int))
    for j, frame in enumerate(fig.frames):
        assert list(frame.traces) == [0, 1, 2]
        for name, tr in (("ideal", tr_ideal), ("learned (simple)", tr_learned)):
            d = _frame_trace(frame, name)
            np.testing.assert_allclose(arr(d.x), tr.x[j, keep, 0].double().numpy(), rtol=1e-6)
            np.testing.assert_allclose(arr(d.y), tr.x[j, keep, 1].double().numpy(), rtol=1e-6)
        seg = _frame_trace(frame, "pairing")
        sx = arr(seg.x)
        assert len(sx) == 3 * len(keep)
        np.testing.assert_allclose(sx[0::3], tr_ideal.x[j, keep, 0].double().numpy(), rtol=1e-6)
        np.testing.assert_allclose(sx[1::3], tr_learned.x[j, keep, 0].double().numpy(), rtol=1e-6)
        assert np.isnan(sx[2::3]).all()
    # the data differ from one slider step to the next (the paths move)
    for j in range(n_states - 1):
        a = arr(_frame_trace(fig.frames[j], "ideal").x)
        b = arr(_frame_trace(fig.frames[j + 1], "ideal").x)
        assert np.abs(a - b).max() > 1e-3
    # and the first frame is what the figure shows before the slider moves
    np.testing.assert_allclose(arr(fig.data[1].x), arr(_frame_trace(fig.frames[0], "ideal").x))
    # paired learned/ideal points start together (same x_T) and end apart (the drift)
    d0 = np.hypot(sx[0::3] - sx[1::3], arr(seg.y)[0::3] - arr(seg.y)[1::3])
    assert d0.max() > 1e-3
    first = _frame_trace(fig.frames[0], "pairing")
    assert np.allclose(arr(first.x)[0::3], arr(first.x)[1::3])


def test_trajectory_slider_with_noised_marginal(setup):
    mix, sch, tr_ideal, tr_learned = setup
    fig = viz.trajectory_slider_figure({"ideal": tr_ideal, "simple": tr_learned}, mixture=mix, schedule=sch,
                                       grid_size=16)
    assert [d.type for d in fig.data] == ["contour", "scatter", "scatter", "scatter"]
    assert all(len(f.data) == 4 and list(f.traces) == [0, 1, 2, 3] for f in fig.frames)
    z_first, z_last = arr(fig.frames[0].data[0].z), arr(fig.frames[-1].data[0].z)
    # frame 0 shows p_t at t = T-1 (nearly N(0, I)), the last the clean data density: check both exactly
    c = fig.frames[-1].data[0]
    i, j = 3, 11
    pt = torch.tensor([[arr(c.x)[i], arr(c.y)[j]]], dtype=torch.float64)
    want_last = float(mix.log_prob(pt))
    want_first = float(mix.log_prob(pt, alpha_bar=float(sch.alpha_bar(int(tr_ideal.timesteps[0])))))
    assert z_last[j, i] == pytest.approx(max(want_last, z_last.max() - 12.0), rel=1e-9)
    assert z_first[j, i] == pytest.approx(max(want_first, z_first.max() - 12.0), rel=1e-9)
    assert np.abs(z_first - z_last).max() > 1.0


def test_trajectory_slider_static_background_and_no_pairs(setup):
    mix, _, tr_ideal, tr_learned = setup
    three = {"ideal": tr_ideal, "simple": tr_learned, "other": tr_learned}
    fig = viz.trajectory_slider_figure(three, mixture=mix, grid_size=10)
    assert [d.type for d in fig.data] == ["contour", "scatter", "scatter", "scatter"]
    assert "pairing" not in [d.name for d in fig.data]  # segments only for exactly two paths
    assert all(list(f.traces) == [1, 2, 3] and len(f.data) == 3 for f in fig.frames)  # contour never resent
    one = viz.trajectory_slider_figure({"ideal": tr_ideal}, max_points=1000)
    assert len(one.data) == 1 and len(one.data[0].x) == 40 and len(one.frames) == STEPS + 1


def test_trajectory_slider_rejects_bad_input(setup):
    mix, sch, tr_ideal, _ = setup
    short = sample(IdealDenoiser(mix, sch), torch.zeros(3, 2), sch, 2)
    with pytest.raises(ValueError, match="same number of states"):
        viz.trajectory_slider_figure({"a": tr_ideal, "b": short})
    with pytest.raises(TypeError, match=r"trajectories\['a'\]"):
        viz.trajectory_slider_figure({"a": tr_ideal.x})
    with pytest.raises(ValueError, match="at least one"):
        viz.trajectory_slider_figure({})
    with pytest.raises(ValueError, match="schedule needs mixture"):
        viz.trajectory_slider_figure({"a": tr_ideal}, schedule=sch)
    with pytest.raises(ValueError, match="max_points"):
        viz.trajectory_slider_figure({"a": tr_ideal}, max_points=0)


# ------------------------------------------------------------------------------------------- curves
def test_curves_figure_with_bands_and_log_axis():
    x = np.array([5, 10, 20, 50, 100])
    simple, sa = np.array([1.0, 0.6, 0.4, 0.35, 0.3]), np.array([0.7, 0.5, 0.4, 0.38, 0.36])
    se = np.full(5, 0.05)
    fig = viz.curves_figure(x, {"simple": simple, "SA": torch.tensor(sa)}, "MMD vs steps", "steps", "MMD",
                            bands={"simple": se, "SA": (sa - 0.1, sa + 0.2)}, log_x=True, reference=0.0)
    assert len(fig.data) == 4  # band, line, band, line
    band, line = fig.data[0], fig.data[1]
    assert band.fill == "toself" and line.name == "simple"
    by = arr(band.y)
    np.testing.assert_allclose(by[:5], simple + se)
    np.testing.assert_allclose(by[5:], (simple - se)[::-1])
    np.testing.assert_allclose(arr(fig.data[2].y)[:5], sa + 0.2)
    np.testing.assert_allclose(arr(fig.data[3].y), sa)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "linear"
    assert fig.layout.xaxis.title.text == "steps" and fig.layout.title.text == "MMD vs steps"
    assert line.line.color == viz.ROLE_COLORS["simple"] and fig.data[3].line.color == viz.ROLE_COLORS["sa"]
    assert list(fig.layout.xaxis.tickvals) == [5, 10, 20, 50, 100]
    assert len(fig.layout.shapes) == 1  # the reference line


def test_log_axes_label_the_values_used():
    steps = [5, 10, 20, 50, 100]
    fig = viz.curves_figure(steps, {"simple": [1.0, 0.5, 0.2, 0.1, 0.05]}, log_x=True, log_y=True)
    assert list(fig.layout.xaxis.tickvals) == steps and list(fig.layout.xaxis.ticktext) == ["5", "10", "20", "50",
                                                                                            "100"]
    ticks = list(fig.layout.yaxis.tickvals)
    assert ticks == [0.05, 0.1, 0.2, 0.5, 1.0] and list(fig.layout.yaxis.ticktext) == ["0.05", "0.1", "0.2",
                                                                                        "0.5", "1"]
    # every tick is labelled in full and lies in the axis range (log10 units)
    lo, hi = fig.layout.yaxis.range
    assert all(lo <= math.log10(t) <= hi for t in ticks)


def test_log_ticks_are_1_2_5_and_thinned():
    assert viz.log_ticks(1, 100) == [1, 2, 5, 10, 20, 50, 100]
    assert viz.log_ticks(0.001, 0.5) == [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]        # 1-2-5 would be 9
    assert viz.log_ticks(1e-6, 10) == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0]
    wide = viz.log_ticks(1e-12, 1e6)
    assert len(wide) <= 8 and all(math.log10(v).is_integer() for v in wide)
    narrow = viz.log_ticks(0.3, 0.5)
    assert len(narrow) >= 2 and narrow[0] == 0.3 and narrow[-1] == 0.5
    with pytest.raises(ValueError, match="positive"):
        viz.log_ticks(0, 1)


def test_log_y_leaves_a_gap_at_zero_instead_of_a_plunge():
    # 04's "propagated" error is exactly 0 at the first step (both paths start at the same x_T)
    fig = viz.curves_figure([1, 2, 3, 4], {"propagated": [0.0, 0.01, 0.05, 0.2], "local error": [0.1] * 4},
                            log_y=True)
    y = arr(fig.data[0].y)
    assert math.isnan(y[0]) and np.allclose(y[1:], [0.01, 0.05, 0.2])
    lo, hi = fig.layout.yaxis.range
    assert math.isfinite(lo) and 10 ** lo <= 0.01 and 10 ** hi >= 0.2


def test_curves_figure_rejects_bad_input():
    with pytest.raises(ValueError, match=r"curves\['a'\].*3"):
        viz.curves_figure([1, 2, 3], {"a": [1, 2]})
    with pytest.raises(ValueError, match="bands names"):
        viz.curves_figure([1, 2], {"a": [1, 2]}, bands={"b": [0, 0]})
    with pytest.raises(ValueError, match="log_x"):
        viz.curves_figure([0, 1], {"a": [1, 2]}, log_x=True)
    with pytest.raises(TypeError, match="curves"):
        viz.curves_figure([0, 1], [1, 2])
    fig = viz.curves_figure(range(3), {"a": [3, 2, 1]}, reverse_x=True)
    assert len(fig.data) == 1 and fig.layout.xaxis.autorange == "reversed"


# ------------------------------------------------------------------------------------------- figure specs
def _specs(setup):
    mix, sch, tr_ideal, tr_learned = setup
    pair = {"ideal": tr_ideal, "learned (simple)": tr_learned}
    return {
        "density": viz.density_spec(mix, {"ideal": tr_ideal.final, "SA": tr_learned.final}, grid_size=12,
                                    max_points=9, title="samples"),
        "density, noised, no samples": viz.density_spec(mix, alpha_bar=0.3, grid_size=10, bounds=(-2, 2, -1, 1)),
        "slider, pairs": viz.trajectory_slider_spec(pair, max_points=10),
        "slider, p_t per frame": viz.trajectory_slider_spec(pair, mixture=mix, schedule=sch, grid_size=10),
        "slider, static density": viz.trajectory_slider_spec({**pair, "other": tr_learned}, mixture=mix,
                                                             grid_size=10),
        "curves, bands, log axes": viz.curves_spec([5, 10, 20, 50], {"simple": [0.1, 0.05, 0.0, 0.01],
                                                                    "SA": [0.08, 0.04, 0.03, 0.02]},
                                                   "MMD", "steps", "MMD^2", bands={"simple": [0.01] * 4},
                                                   log_x=True, log_y=True, reference=0.005),
        "curves, no title": viz.curves_spec(range(3), {"a": [3, 2, 1]}, reverse_x=True, markers=False),
    }


def _plotly_wrote(fig: go.Figure) -> dict:
    """The figure as plotly itself writes it (validated objects, plotly's JSON encoder), parsed."""
    return json.loads(plotly.io.to_json(fig))


def test_figure_specs_are_the_figures_plotly_writes(setup):
    """A spec is in the form validation leaves unchanged: the JSON made from the spec alone (``plotly_json``,
    template expanded, arrays as plotly.js typed arrays) is what plotly writes for ``go.Figure(spec)``, and the
    public ``*_figure`` builders are ``go.Figure`` of their spec."""
    for name, spec in _specs(setup).items():
        before = copy.deepcopy(spec)
        made = json.loads(json.dumps(viz.plotly_json(spec), allow_nan=False))
        assert repr(spec) == repr(before), f"{name}: plotly_json changed the spec"
        assert made == _plotly_wrote(go.Figure(spec)), name
    mix, sch, tr_ideal, tr_learned = setup
    assert _plotly_wrote(viz.curves_figure([1, 2], {"SA": [1.0, 2.0]}, "t", reference=1.0)) == _plotly_wrote(
        go.Figure(viz.curves_spec([1, 2], {"SA": [1.0, 2.0]}, "t", reference=1.0)))
    if viz.TYPED_ARRAYS:  # float arrays travel as base64 typed arrays, as plotly writes them
        made = viz.plotly_json(_specs(setup)["density"])
        assert set(made["data"][0]["z"]) == {"dtype", "bdata", "shape"} and made["data"][0]["z"]["shape"] == "12, 12"


def test_plotly_json_expands_the_template_and_leaves_no_nan():
    spec = {"data": [{"type": "scatter", "x": np.array([1.0, np.nan]), "y": [np.float64(2.0), float("inf")]}]}
    made = viz.plotly_json(spec)
    # no template named: plotly's default one, as go.Figure applies it
    assert made == _plotly_wrote(go.Figure(spec)) and made["layout"]["template"]["layout"]
    assert made["data"][0]["y"] == [2.0, None]
    assert viz.plotly_json({"data": [], "layout": {"template": "plotly_white"}})["layout"]["template"] == \
        plotly.io.templates["plotly_white"].to_plotly_json()
    for bad in ({"data": {}}, {"data": [], "figure": 1}, {"data": [1]}, [{"type": "scatter"}]):
        with pytest.raises(TypeError, match="spec must be a figure spec"):
            viz.plotly_json(bad)


def test_layout_spec_is_what_style_layout_gives():
    spec = viz.layout_spec("A title", margin=dict(t=90), width=500, showlegend=False)
    fig = viz.style_layout(go.Figure(), "A title", margin=dict(t=90), width=500, showlegend=False)
    assert _plotly_wrote(go.Figure({"data": [], "layout": spec})) == _plotly_wrote(fig)
    assert spec["margin"] == dict(l=60, r=20, t=90, b=50) and spec["title"]["text"] == "A title"
    assert "title" not in viz.layout_spec(None) and "legend" not in viz.layout_spec("", legend_bg=False)
    titled = viz.style_layout(go.Figure(), "old")
    assert viz.style_layout(titled, None).layout.title.text is None  # no title removes the one it had


# ------------------------------------------------------------------------------------------- images
def test_image_grid_places_every_image():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(10, 1, 8, 8, generator=g) * 2 - 1
    grid = viz.image_grid(images, nrow=4, pad=1)
    assert grid.shape == (3 * 9 - 1, 4 * 9 - 1)
    for k in range(12):
        r, c = divmod(k, 4)
        block = grid[r * 9: r * 9 + 8, c * 9: c * 9 + 8]
        if k < 10:
            assert torch.equal(block, images[k, 0].double())
        else:
            assert torch.isnan(block).all()  # empty cells
    assert torch.isnan(grid[8, :]).all() and torch.isnan(grid[:, 17]).all()  # separators
    fig = viz.image_grid_figure(images, nrow=4, title="digits")
    assert len(fig.data) == 1 and fig.data[0].type == "heatmap"
    np.testing.assert_array_equal(arr(fig.data[0].z), grid.numpy())
    assert (fig.data[0].zmin, fig.data[0].zmax) == (-1.0, 1.0)
    assert fig.layout.yaxis.autorange == "reversed"  # row 0 at the top, like an image
    assert viz.image_grid(images[:3, 0], nrow=8, pad=0).shape == (8, 24)


def test_image_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="one channel"):
        viz.image_grid(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="nrow"):
        viz.image_grid(torch.zeros(2, 1, 8, 8), nrow=0)
    with pytest.raises(TypeError, match="images"):
        viz.image_grid(np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match="value_range"):
        viz.image_grid_figure(torch.zeros(2, 1, 8, 8), value_range=(1, -1))


# ------------------------------------------------------------------------------------------- schedules
def test_schedule_figure_plots_alpha_bar_and_log_snr():
    schedules = {"linear": Schedule.linear(100), "cosine": Schedule.cosine(100)}
    fig = viz.schedule_figure(schedules)
    assert len(fig.data) == 4
    for k, (name, sch) in enumerate(schedules.items()):
        a_trace, l_trace = fig.data[2 * k], fig.data[2 * k + 1]
        assert a_trace.name == l_trace.name == name and a_trace.legendgroup == l_trace.legendgroup
        # recompute alpha_bar from the betas, independently of Schedule's cumprod
        abar = np.exp(np.cumsum(np.log1p(-sch.betas.numpy())))
        np.testing.assert_allclose(arr(a_trace.y), abar, rtol=1e-10)
        np.testing.assert_allclose(arr(l_trace.y), np.log(abar / (1 - abar)), rtol=1e-8)
        assert a_trace.xaxis == "x" and l_trace.xaxis == "x2"
    assert math.isclose(arr(fig.data[0].y)[0], 1 - 1e-4)
    with pytest.raises(TypeError, match=r"schedules\['x'\]"):
        viz.schedule_figure({"x": "linear"})


def test_closed_form_figure_keeps_every_series_apart():
    rows = []
    for loss, budgets in (("simple", (1000, 2000)), ("sa(K=2, lam=1)", (1000,))):
        for train_steps in budgets:
            for steps in (5, 10, 20):
                rows.append(dict(dataset="gauss1d", metric="std_ratio", eta=0.0, steps=steps, loss=loss,
                                 train_steps=train_steps, mean=0.9, ci_low=0.85, ci_high=0.95))
        for steps in (5, 10, 20):
            rows.append(dict(dataset="gauss1d", metric="std_ratio_closed_form", eta=0.0, steps=steps, loss=loss,
                             mean=0.9))
    fig = viz.closed_form_figure(rows, 0.0)
    lines = [(t.name, t.line.color, t.line.dash) for t in fig.data if t.showlegend is not False]
    assert len(lines) == 5 and len({(c, d) for _, c, d in lines}) == 5, lines
    closed = {n: (c, d) for n, c, d in lines if "closed form" in n}
    assert closed["simple, closed form"][0] == viz.ROLE_COLORS["simple"]
    assert closed["sa(K=2, lam=1), closed form"][0] == viz.ROLE_COLORS["sa"]
    assert all(d != "solid" for c, d in closed.values())  # drawn dashed, as the title says
