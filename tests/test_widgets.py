"""Dashboards: they build, a slider move puts exactly the precomputed (and independently recomputed) numbers
into the figure, and bad arguments are refused. Update timing is a benchmark (benchmarks/bench_widgets.py)."""
import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from seqdiff_kit import IdealDenoiser, Schedule, ring8, sample
from seqdiff_kit import widgets
from seqdiff_kit.drift import paired_trajectories

T = 60


@pytest.fixture(scope="module")
def setup():
    mix, sch = ring8(), Schedule.linear(T)
    ideal = IdealDenoiser(mix, sch)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(30, 2, generator=g)
    pair = paired_trajectories(lambda x, t: 0.8 * ideal(x, t), ideal, x_T, sch, 5, eta=1.0, generator=g)
    return mix, sch, pair.reference, pair.model


def arr(v):
    return np.asarray(v, dtype=float)


def test_segments_xy_joins_pairs_with_gaps():
    a, b = np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 0.0], [1.0, 3.0]])
    s = widgets.segments_xy(a, b)
    assert s.shape == (6, 2)
    np.testing.assert_array_equal(s[[0, 1, 3, 4]], [[0, 0], [2, 0], [1, 1], [1, 3]])
    assert np.isnan(s[[2, 5]]).all()
    with pytest.raises(ValueError, match="same shape"):
        widgets.segments_xy(a, b[:1])


def test_noising_dashboard_frames_are_the_forward_process(setup):
    mix, sch, _, _ = setup
    points = mix.sample(50, generator=torch.Generator().manual_seed(1))
    images = torch.rand(2, 1, 8, 8) * 2 - 1
    d = widgets.NoisingDashboard(points, sch, images, ts=[-1, 0, 30, T - 1],
                                 generator=torch.Generator().manual_seed(5))
    assert isinstance(d.fig, go.FigureWidget) and d.n_frames == 4
    # recompute independently: the dashboard draws the points' eps first, then the images' eps
    g = torch.Generator().manual_seed(5)
    eps = torch.randn(points.shape, generator=g, dtype=torch.float64)
    eps_im = torch.randn(images.shape, generator=g, dtype=torch.float64)
    for j, t in enumerate([-1, 0, 30, T - 1]):
        d.slider.value = j  # the slider's observer calls update(j)
        a = float(sch.alpha_bar(t))
        want = math.sqrt(a) * points.double() + math.sqrt(1 - a) * eps
        np.testing.assert_allclose(arr(d.fig.data[0].x), want[:, 0].numpy(), atol=1e-12)
        np.testing.assert_allclose(arr(d.fig.data[0].y), want[:, 1].numpy(), atol=1e-12)
        im = math.sqrt(a) * images.double() + math.sqrt(1 - a) * eps_im
        np.testing.assert_allclose(arr(d.fig.data[1].z)[:, 8:16], im[1, 0].numpy(), atol=1e-12)
        assert f"t = {t}" in d.label.value
    with pytest.raises(ValueError, match="j must be in"):
        d.update(4)
    with pytest.raises(ValueError, match="ts must be"):
        widgets.NoisingDashboard(points, sch, ts=[T])
    with pytest.raises(ValueError, match=r"points must have shape \[N, 2\]"):
        widgets.NoisingDashboard(torch.zeros(5, 3), sch)


def test_score_field_arrows_follow_the_exact_score(setup):
    mix, sch, _, _ = setup
    ts = [0, 20, T - 1]
    d = widgets.ScoreFieldDashboard(mix, sch, ts, grid_size=5, density_grid=10, bound=2.0, arrow_scale=0.5)
    for j, t in enumerate(ts):
        d.update(j)
        seg = np.stack([arr(d.fig.data[1].x), arr(d.fig.data[1].y)], 1).reshape(-1, 3, 2)
        tail, tip = seg[:, 0], seg[:, 1]
        score = mix.score(torch.from_numpy(tail), float(sch.alpha_bar(t))).numpy()
        v = tip - tail
        # parallel to the score, scaled so that the longest arrow is arrow_scale grid cells (cell = 1.0 here)
        np.testing.assert_allclose(v * np.linalg.norm(score, axis=1).max() / 0.5, score, rtol=1e-9, atol=1e-12)
        assert np.linalg.norm(v, axis=1).max() == pytest.approx(0.5)
        logp = mix.log_prob(torch.tensor([[arr(d.fig.data[0].x)[0], arr(d.fig.data[0].y)[0]]]),
                            alpha_bar=float(sch.alpha_bar(t)))
        z = arr(d.fig.data[0].z)
        assert z[0, 0] == pytest.approx(max(float(logp), z.max() - 12.0))


def test_path_dashboard_slider_shows_states_and_segments(setup):
    mix, _, a, b = setup
    d = widgets.PathDashboard({"learned": b, "ideal": a}, mixture=mix, max_points=30)
    assert d.pair and d.n_frames == a.x.shape[0]
    before = arr(d.fig.data[-1].x).copy()
    d.slider.value = 3
    after = arr(d.fig.data[-1].x)
    assert not np.allclose(before, after)  # the figure data changed
    np.testing.assert_allclose(after, a.x[3, :, 0].numpy(), atol=1e-7)
    np.testing.assert_allclose(arr(d.fig.data[-2].y), b.x[3, :, 1].numpy(), atol=1e-7)
    seg = np.stack([arr(d.fig.data[-3].x), arr(d.fig.data[-3].y)], 1).reshape(-1, 3, 2)
    lengths = np.linalg.norm(seg[:, 1] - seg[:, 0], axis=1)
    np.testing.assert_allclose(lengths, torch.linalg.vector_norm(b.x[3] - a.x[3], dim=1).numpy(), rtol=1e-6)
    assert f"{lengths.mean():.3f}" in d.label.value
    d.update(d.n_frames - 1)
    assert "final sample" in d.label.value
    single = widgets.PathDashboard({"learned (simple)": b}, max_points=7)
    assert not single.pair and len(arr(single.fig.data[0].x)) == 7


def test_path_dashboard_rejects_bad_input(setup):
    mix, sch, a, _ = setup
    shorter = sample(IdealDenoiser(mix, sch), a.x[0], sch, 3)
    with pytest.raises(ValueError, match="same number of states"):
        widgets.PathDashboard({"a": a, "b": shorter})
    with pytest.raises(TypeError, match="must be a Trajectory"):
        widgets.PathDashboard({"a": a.x})
    with pytest.raises(TypeError, match="non-empty dict"):
        widgets.PathDashboard({})


def test_live_loss_plot_running_mean_and_flush():
    live = widgets.LiveLossPlot(("loss", "sa"), window=3)
    vals = [5.0, 4.0, 3.0, 1.0, 2.0]
    for i, v in enumerate(vals):
        live.append(i + 1, loss=v, sa=v / 2)
    live.flush()
    brute = [np.mean(vals[max(0, i - 2):i + 1]) for i in range(len(vals))]
    np.testing.assert_allclose(live.running_mean("loss"), brute)
    np.testing.assert_allclose(arr(live.fig.data[1].y), brute)
    np.testing.assert_allclose(arr(live.fig.data[2].y), np.array(vals) / 2)
    assert list(live.fig.data[0].x) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="among the series"):
        live.append(6, other=1.0)


def test_step_count_dashboard_and_sa_controls(setup):
    mix, _, a, b = setup
    d = widgets.StepCountDashboard([5, 10], {"simple": [a.x[1], a.x[2]], "SA": [b.x[1], b.x[2]]}, mixture=mix)
    d.slider.value = 1
    np.testing.assert_allclose(arr(d.fig.data[-1].x), b.x[2, :, 0].numpy(), atol=1e-7)
    assert "10 sampling steps" in d.label.value
    with pytest.raises(ValueError, match="one sample per step count"):
        widgets.StepCountDashboard([5, 10], {"simple": [a.x[1]]})
    calls = []
    c = widgets.SAControls(lambda K, lam: calls.append((K, lam)) or "done", K=3, lam=0.5)
    c.K.value = 4
    assert c.run() == "done" and calls == [(4, pytest.approx(0.5))]
    with pytest.raises(TypeError, match="on_train must be callable"):
        widgets.SAControls(None)
    with pytest.raises(ValueError, match="K must be in"):
        widgets.SAControls(lambda K, lam: None, K=9)
