"""Dashboards: they build, a slider move puts exactly the precomputed (and independently recomputed) numbers
into the figure AND into the widget's saved state (what a reloaded page draws), the JSON sent to the browser
holds no NaN, no figure draws two series alike, readouts and captions name t or the step count, and bad
arguments are refused. Update timing is a benchmark (benchmarks/bench_widgets.py) and a browser test
(tests/browser/test_dashboards.py)."""
import json
import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from seqdiff_kit import IdealDenoiser, Schedule, ring8, sample
from seqdiff_kit import frontend, viz, widgets
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
    """``v`` (an array, or nested lists whose None are gaps) as a float64 array, the gaps as NaN."""
    return np.asarray(v, dtype=float)


# float32's unit roundoff: the frames travel to the browser as float32 (frontend.load_frames)
F32 = 2.0 ** -24


def saved(fig: go.FigureWidget, k: int, key: str) -> np.ndarray:
    """Trace ``k``'s ``key`` as the browser draws it on a (re)load: the widget's saved state, then the frame
    that its saved slider index names, from the frames the browser holds (``frontend.decode_frame``)."""
    state = fig.get_state()
    if state.get("_seqdiff_frame_spec"):
        frame = frontend.decode_frame(fig, state["_seqdiff_frame"], state["_seqdiff_page"])
        if key in frame.get(k, {}):
            return frame[k][key].astype(float)
    value = state["_widget_data"][k][key]
    if isinstance(value, dict) and "buffer" in value:
        return np.frombuffer(value["buffer"], dtype=value["dtype"]).reshape(value["shape"])
    return arr(value)


def sent_messages(fig: go.FigureWidget) -> list:
    """Patch ``fig`` to record the messages it sends to the browser (no kernel here)."""
    out = []
    fig._send = lambda msg, buffers=None: out.append(msg)
    return out


def assert_json(messages) -> None:
    """What the kernel does with each message: JSON without NaN or infinity (binary buffers travel apart)."""
    for msg in messages:
        json.dumps(msg, allow_nan=False, default=lambda o: "<buffer>" if isinstance(o, memoryview) else repr(o))


def look_alike(fig) -> list:
    """Pairs of legend series of ``fig`` drawn with the same colour and the same dash (lines) or symbol."""
    seen, out = {}, []
    for t in fig.data:
        if t.type != "scatter" or t.showlegend is False:
            continue
        lines = "lines" in (t.mode or "lines")
        key = (t.line.color, t.line.dash or "solid") if lines else (t.marker.color, t.marker.symbol or "circle")
        if key in seen:
            out.append((seen[key], t.name, key))
        seen.setdefault(key, t.name)
    return out


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
    assert [label for label, _ in d.slider.options] == ["clean", "t = 0", "t = 30", f"t = {T - 1}"]
    # recompute independently: the dashboard draws the points' eps first, then the images' eps
    g = torch.Generator().manual_seed(5)
    eps = torch.randn(points.shape, generator=g, dtype=torch.float64)
    eps_im = torch.randn(images.shape, generator=g, dtype=torch.float64)
    for j, t in reversed(list(enumerate([-1, 0, 30, T - 1]))):
        d.slider.value = j  # the slider's observer calls update(j)
        a = float(sch.alpha_bar(t))
        want = math.sqrt(a) * points.double() + math.sqrt(1 - a) * eps
        np.testing.assert_allclose(arr(d.fig.data[0].x), want[:, 0].numpy(), atol=1e-12)
        np.testing.assert_allclose(arr(d.fig.data[0].y), want[:, 1].numpy(), atol=1e-12)
        np.testing.assert_allclose(saved(d.fig, 0, "y"), want[:, 1].numpy(), atol=1e-12, rtol=2 * F32)
        im = math.sqrt(a) * images.double() + math.sqrt(1 - a) * eps_im
        np.testing.assert_allclose(arr(d.fig.data[1].z)[:, 8:16], im[1, 0].numpy(), atol=1e-12)
        np.testing.assert_allclose(saved(d.fig, 1, "z")[:, 8:16], im[1, 0].numpy(), atol=1e-12, rtol=2 * F32)
        assert f"t = {t}" in d.label.value
    with pytest.raises(ValueError, match="j must be in"):
        d.update(4)
    with pytest.raises(ValueError, match="ts must be"):
        widgets.NoisingDashboard(points, sch, ts=[T])
    with pytest.raises(ValueError, match="distinct"):
        widgets.NoisingDashboard(points, sch, ts=[0, 0])
    with pytest.raises(ValueError, match=r"points must have shape \[N, 2\]"):
        widgets.NoisingDashboard(torch.zeros(5, 3), sch)


def test_score_field_arrows_follow_the_exact_score_and_have_heads(setup):
    mix, sch, _, _ = setup
    ts = [0, 20, T - 1]
    d = widgets.ScoreFieldDashboard(mix, sch, ts, grid_size=5, density_grid=10, bound=2.0, arrow_scale=0.5)
    assert [label for label, _ in d.slider.options] == ["t = 0", "t = 20", f"t = {T - 1}"]
    for j, t in enumerate(ts):
        d.slider.value = j
        seg = np.stack([arr(d.fig.data[1].x), arr(d.fig.data[1].y)], 1).reshape(-1, 3, 2)
        tail, tip = seg[:, 0], seg[:, 1]
        score = mix.score(torch.from_numpy(tail), float(sch.alpha_bar(t))).numpy()
        v = tip - tail
        # parallel to the score, scaled so that the longest arrow is arrow_scale grid cells (cell = 1.0 here)
        np.testing.assert_allclose(v * np.linalg.norm(score, axis=1).max() / 0.5, score, rtol=1e-9, atol=1e-12)
        assert np.linalg.norm(v, axis=1).max() == pytest.approx(0.5)
        # one filled triangle per arrow: its apex is the arrow's tip, its base behind it, across the shaft
        head = np.stack([arr(d.fig.data[2].x), arr(d.fig.data[2].y)], 1).reshape(-1, 5, 2)
        np.testing.assert_allclose(head[:, 1], tip, atol=1e-12)
        np.testing.assert_allclose(head[:, 3], head[:, 0], atol=1e-12)            # closed
        base = (head[:, 0] + head[:, 2]) / 2
        long = np.linalg.norm(v, axis=1) > 1e-9
        back = np.einsum("pd,pd->p", (tip - base)[long], v[long])
        assert (back > 0).all()                                                    # the base lies behind the tip
        assert np.isnan(head[:, 4]).all() and d.fig.data[2].fill == "toself"
        np.testing.assert_allclose(saved(d.fig, 2, "x"), head.reshape(-1, 2)[:, 0], atol=1e-12, rtol=2 * F32)
        logp = mix.log_prob(torch.tensor([[arr(d.fig.data[0].x)[0], arr(d.fig.data[0].y)[0]]]),
                            alpha_bar=float(sch.alpha_bar(t)))
        z = arr(d.fig.data[0].z)
        assert z[0, 0] == pytest.approx(max(float(logp), z.max() - 12.0))


def test_path_dashboard_slider_shows_states_and_segments(setup):
    mix, _, a, b = setup
    d = widgets.PathDashboard({"learned": b, "ideal": a}, mixture=mix, max_points=30)
    assert d.pair and d.n_frames == a.x.shape[0]
    labels = [label for label, _ in d.slider.options]
    assert labels == [f"t = {int(t)}" for t in a.timesteps] + ["end"]
    before = arr(d.fig.data[-1].x).copy()
    d.slider.value = 3
    after = arr(d.fig.data[-1].x)
    assert not np.allclose(before, after)  # the figure data changed
    np.testing.assert_allclose(after, a.x[3, :, 0].numpy(), atol=1e-7)
    np.testing.assert_allclose(saved(d.fig, len(d.fig.data) - 1, "x"), a.x[3, :, 0].numpy(), atol=1e-7, rtol=2 * F32)
    np.testing.assert_allclose(arr(d.fig.data[-2].y), b.x[3, :, 1].numpy(), atol=1e-7)
    seg = np.stack([arr(d.fig.data[-3].x), arr(d.fig.data[-3].y)], 1).reshape(-1, 3, 2)
    lengths = np.linalg.norm(seg[:, 1] - seg[:, 0], axis=1)
    np.testing.assert_allclose(lengths, torch.linalg.vector_norm(b.x[3] - a.x[3], dim=1).numpy(), rtol=1e-6)
    assert f"{lengths.mean():.3f}" in d.label.value and "after 3 of 5 steps" in d.label.value
    d.update(d.n_frames - 1)
    assert "final samples" in d.label.value
    # the axes hold every ring8 cluster whole, whatever the paths span
    lo_x, hi_x, lo_y, hi_y = viz.mixture_bounds(mix)
    (x0, x1), (y0, y1) = d.fig.layout.xaxis.range, d.fig.layout.yaxis.range
    assert x0 <= lo_x and x1 >= hi_x and y0 <= lo_y and y1 >= hi_y
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


def test_live_loss_plot_running_mean_flush_and_floor():
    live = widgets.LiveLossPlot(("loss", "sa"), window=3, floor=0.5)
    vals = [5.0, 4.0, 3.0, 1.0, 2.0]
    for i, v in enumerate(vals):
        live.append(i + 1, loss=v, sa=v / 2)
    live.flush()
    brute = [np.mean(vals[max(0, i - 2):i + 1]) for i in range(len(vals))]
    np.testing.assert_allclose(live.running_mean("loss"), brute)
    np.testing.assert_allclose(arr(live.fig.data[1].y), brute)
    np.testing.assert_allclose(saved(live.fig, 1, "y"), brute)
    np.testing.assert_allclose(arr(live.fig.data[2].y), np.array(vals) / 2)
    assert list(live.fig.data[0].x) == [1, 2, 3, 4, 5]
    floor = live.fig.data[4]
    assert "floor" in floor.name and floor.line.dash == "dash"
    assert list(floor.x) == [1, 5] and list(floor.y) == [0.5, 0.5]
    with pytest.raises(ValueError, match="among the series"):
        live.append(6, other=1.0)
    with pytest.raises(ValueError, match="floor"):
        widgets.LiveLossPlot(floor=0.0)  # a log axis cannot show it


def test_step_count_dashboard_panels_readout_and_plurals(setup):
    mix, _, a, b = setup
    d = widgets.StepCountDashboard([1, 10], {"simple": [a.x[1], a.x[2]], "SA": [b.x[1], b.x[2]]}, mixture=mix)
    assert [label for label, _ in d.slider.options] == ["1", "10"] and "steps" in d.slider.description
    assert d.label.value == "<b>1 sampling step</b>"
    # one panel per model (overlaid clouds hide each other): a density heatmap and a cloud in each
    assert [t.type for t in d.fig.data] == ["heatmap", "heatmap", "scatter", "scatter"]
    assert d.fig.data[2].xaxis == "x" and d.fig.data[3].xaxis == "x2"
    d.slider.value = 1
    np.testing.assert_allclose(arr(d.fig.data[-1].x), b.x[2, :, 0].numpy(), atol=1e-7)
    np.testing.assert_allclose(saved(d.fig, 3, "x"), b.x[2, :, 0].numpy(), atol=1e-7, rtol=2 * F32)
    assert d.label.value == "<b>10 sampling steps</b>"
    assert widgets.steps_label(1) == "1 sampling step" and widgets.steps_label(2) == "2 sampling steps"
    one = widgets.StepCountDashboard([5], {"ideal (DDIM)": [a.x[1]]}, mixture=mix)
    assert [t.type for t in one.fig.data] == ["heatmap", "scatter"]  # one model: one panel
    # a retrain shows new samples in the same widgets
    d.set_samples([5, 20, 50], {"simple": [a.x[3], a.x[4], a.x[5]], "SA (K=4, lam=0)": [b.x[3], b.x[4], b.x[5]]})
    assert [label for label, _ in d.slider.options] == ["5", "20", "50"] and d.slider.value == 0
    assert [t.name for t in d.fig.data if t.type == "scatter"] == ["simple", "SA (K=4, lam=0)"]
    np.testing.assert_allclose(saved(d.fig, 3, "x"), b.x[3, :, 0].numpy(), atol=1e-7, rtol=2 * F32)
    with pytest.raises(ValueError, match="one sample per step count"):
        widgets.StepCountDashboard([5, 10], {"simple": [a.x[1]]})


def test_sa_controls_training_state_and_lambda_zero():
    seen = []
    c = widgets.SAControls(lambda K, lam: seen.append((K, lam, c.button.disabled, c.button.description,
                                                       c.status.value)) or print("table") or "done", K=3, lam=0.5)
    assert 0.0 in [v for _, v in c.lam.options]  # lam can reach 0: the simple loss alone
    c.K.value, c.lam.value = 4, 0.0
    with c.output:
        print("an old table")
    assert c.run() == "done"
    K, lam, disabled, description, status = seen[0]
    assert (K, lam) == (4, 0.0) and disabled and description == "training..." and "training" in status
    assert not c.button.disabled and c.button.description == "train simple and SA" and "done" in c.status.value
    assert [o.get("text") for o in c.output.outputs] in ([], ["table\n"])  # the old table was cleared

    def boom(K, lam):
        raise RuntimeError("no")
    bad = widgets.SAControls(boom)
    with pytest.raises(RuntimeError):
        bad.run()
    assert not bad.button.disabled and "failed" in bad.status.value
    with pytest.raises(TypeError, match="on_train must be callable"):
        widgets.SAControls(None)
    with pytest.raises(ValueError, match="K must be in"):
        widgets.SAControls(lambda K, lam: None, K=9)


def test_digit_grid_dashboard_sends_no_nan():
    g = torch.Generator().manual_seed(0)
    grids = {"simple": torch.rand(2, 5, 1, 8, 8, generator=g) * 2 - 1, "SA": torch.rand(2, 5, 1, 8, 8, generator=g)}
    d = widgets.DigitGridDashboard([5, 10], grids, nrow=3)  # 5 images in 2 rows of 3: one empty cell
    sent = sent_messages(d.fig)
    d.slider.value = 1
    d.fig.send_state()  # what a (re)loaded page receives
    assert sent and all(m["method"] == "update" for m in sent)
    assert_json(sent)
    z = saved(d.fig, 1, "z")
    want = viz.image_grid(grids["SA"][1], nrow=3).numpy()
    np.testing.assert_array_equal(np.isnan(z), np.isnan(want))
    np.testing.assert_allclose(z[~np.isnan(z)], want[~np.isnan(want)])
    assert d.label.value == "<b>10 sampling steps</b>"


def test_every_dashboard_sends_json_and_keeps_its_state(setup):
    mix, sch, a, b = setup
    boards = [widgets.NoisingDashboard(mix.sample(20), sch, torch.zeros(2, 1, 8, 8), ts=[-1, 10, 50]),
              widgets.ScoreFieldDashboard(mix, sch, [0, 30], grid_size=4, density_grid=9),
              widgets.PathDashboard({"learned (simple)": b, "ideal": a}, mixture=mix),
              widgets.StepCountDashboard([5, 10], {"simple": [a.x[1], a.x[2]], "SA": [b.x[1], b.x[2]],
                                                   "ideal": [a.x[3], a.x[4]]}, mixture=mix)]
    for d in boards:
        sent = sent_messages(d.fig)
        d.slider.value = 1
        d.fig.send_state()
        assert_json(sent)
        # every trace's saved state equals what the figure shows now
        for k, trace in enumerate(d.fig.data):
            for key in ("x", "y", "z"):
                shown = trace.to_plotly_json().get(key)
                if shown is None:
                    continue
                np.testing.assert_allclose(saved(d.fig, k, key), arr(shown), rtol=2 * F32, atol=0,
                                           err_msg=f"{type(d).__name__} {k}.{key}")


def _links(w) -> set:
    """The (source, target) pairs of the jslinks (ipywidgets.Link) a dashboard holds."""
    return {((l.source[0].model_id, l.source[1]), (l.target[0].model_id, l.target[1])) for l in w._links}


def test_every_frame_and_caption_is_in_the_browser_and_a_slider_move_sends_no_arrays(setup):
    """The slider switches frames in the browser: its index is jslinked to the figure's frame and the caption's,
    every frame's arrays and captions are already there (decoded as the browser does, they are the frames that
    ``update`` puts into ``fig.data``), and a move then sends the browser no array."""
    mix, sch, a, b = setup
    finals = {"ddim": {"ideal": [a.x[1], a.x[2]], "SA": [b.x[1], b.x[2]]},
              "heun": {"ideal": [a.x[3], a.x[4]], "SA": [b.x[3], b.x[4]]}}
    boards = [widgets.NoisingDashboard(mix.sample(20), sch, torch.zeros(2, 1, 8, 8), ts=[-1, 10, 50]),
              widgets.ScoreFieldDashboard(mix, sch, [0, 30], grid_size=4, density_grid=9),
              widgets.PathDashboard({"learned (simple)": b, "ideal": a}, mixture=mix),
              widgets.StepCountDashboard([5, 10], {"simple": [a.x[1], a.x[2]], "SA": [b.x[1], b.x[2]]}, mixture=mix),
              widgets.DigitGridDashboard([5, 10], {"simple": torch.rand(2, 5, 1, 8, 8) * 2 - 1}, nrow=3),
              widgets.SolverDashboard([5, 10], finals, mixture=mix)]
    for d in boards:
        name = type(d).__name__
        slider, fig, cap = d.slider.model_id, d.fig.model_id, d.label.model_id
        assert {((slider, "index"), (fig, "_seqdiff_frame")), ((slider, "index"), (cap, "frame"))} <= _links(d), name
        pages = getattr(d, "solvers", [None])
        assert len(d.label.captions) == d.n_frames * len(pages), name
        for p in range(len(pages)):
            for j in range(d.n_frames):
                if pages[p] is not None:
                    d.select(pages[p])
                d.update(j)
                assert d.label.captions[p * d.n_frames + j] == d.label.value == d.caption(j, p), name
                browser = frontend.decode_frame(d.fig, j, p)
                assert set(browser) == set(d.frame(j, p)), name
                for k, props in browser.items():
                    for key, got in props.items():
                        shown = arr(getattr(d.fig.data[k], key))
                        np.testing.assert_allclose(got, shown, rtol=2 * F32, atol=0, err_msg=f"{name} {j} {k}.{key}")
        d.update(0)
        messages, buffers = [], []
        d.fig._send = lambda msg, buffers=None, out=buffers: (messages.append(msg), out.append(buffers))
        d.slider.value = d.n_frames - 1
        assert messages and not any(buffers), f"{name}: a slider move sent arrays to the browser"
        assert all(set(m["state"]) <= {"_seqdiff_frame", "_seqdiff_page"} for m in messages), (name, messages)
    solver = boards[-1]
    assert {((solver.toggle.model_id, "index"), (solver.fig.model_id, "_seqdiff_page")),
            ((solver.toggle.model_id, "index"), (solver.label.model_id, "page"))} <= _links(solver)


def test_a_late_slider_message_does_not_send_the_browser_back_a_frame_it_left(setup):
    """Keys pressed faster than a busy kernel reads them: the browser has moved the figure and the caption to
    frame 2 (the jslinks' messages arrive first) when the slider's message of frame 1 is read. The kernel must
    not answer with frame 1: the jslink would move the browser's slider back. fig.data still follows the
    slider, and a move made from Python still reaches the figure and the caption."""
    mix, sch, a, b = setup
    boards = [widgets.PathDashboard({"learned (simple)": b, "ideal": a}, mixture=mix),
              widgets.SolverDashboard([5, 10, 20], {"ddim": {"ideal": [a.x[1], a.x[2], a.x[3]]},
                                                    "heun": {"ideal": [a.x[3], a.x[4], a.x[5]]}}, mixture=mix)]
    for d in boards:
        name = type(d).__name__
        sent = []
        for w in (d.fig, d.label):
            # echoes of the browser's own messages (ipywidgets 8) left out: they repeat what the browser sent
            w._send = lambda msg, buffers=None, w=w: (msg.get("method") == "echo_update"
                                                      or sent.append((w, dict(msg.get("state", {})))))
        d.fig.set_state({"_seqdiff_frame": 2})  # the browser's messages, in the order they arrive
        d.label.set_state({"frame": 2})
        d.slider.set_state({"index": 1})
        moves = [(w, state) for w, state in sent if {"_seqdiff_frame", "_seqdiff_page", "frame", "page"} & set(state)]
        assert not moves, f"{name}: the kernel sent the browser {moves} after the slider's late message"
        assert (d.fig._seqdiff_frame, d.label.frame) == (2, 2), name
        for k, props in d.frame(1, d.page).items():  # Python's fig.data follows the slider's message
            for key, want in props.items():
                np.testing.assert_allclose(arr(getattr(d.fig.data[k], key)), np.asarray(want), err_msg=name)
        d.slider.set_state({"index": 2})
        if hasattr(d, "toggle"):
            d.fig.set_state({"_seqdiff_page": 1})
            d.label.set_state({"page": 1})
            d.toggle.set_state({"index": 1})
            assert d.solver == "heun" and (d.fig._seqdiff_page, d.label.page) == (1, 1), name
            assert not [s for _, s in sent if {"_seqdiff_page", "page"} & set(s)], name
        sent.clear()
        d.update(0)  # from Python: the browser is told
        assert (d.fig._seqdiff_frame, d.label.frame, d.slider.index) == (0, 0, 0), name
        assert any(s.get("_seqdiff_frame") == 0 for w, s in sent if w is d.fig), (name, sent)


def test_load_frames_refuses_frames_of_other_shapes():
    fig = frontend.FigureWidget(go.Figure([go.Scatter(x=[0, 1], y=[0, 1])]))
    frontend.load_frames(fig, [{0: {"x": np.zeros(2)}}, {0: {"x": np.ones(2)}}], 2)
    np.testing.assert_array_equal(frontend.decode_frame(fig, 1)[0]["x"], [1, 1])
    with pytest.raises(ValueError, match="same properties with the same shapes"):
        frontend.load_frames(fig, [{0: {"x": np.zeros(2)}}, {0: {"x": np.ones(3)}}], 2)
    with pytest.raises(ValueError, match="whole number of pages"):
        frontend.load_frames(fig, [{0: {"x": np.zeros(2)}}] * 3, 2)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        frontend.load_frames(fig, [{0: {"x": np.zeros((2, 2, 2))}}], 1)
    with pytest.raises(ValueError, match="j must be in"):
        frontend.decode_frame(fig, 2)


def test_no_figure_draws_two_series_alike(setup):
    mix, sch, a, b = setup
    x = np.arange(1, 6)
    figs = [viz.curves_figure(x, {"|e| learned (simple)": x, "|e| ideal": x + 1.0, "|delta| learned (simple)": x * 3.0},
                              log_y=True),
            viz.curves_figure(x, {"simple (lam = 0): the ideal": x, "SA (K=2, lam=1)": x, "SA (K=4, lam=1)": x,
                                  "data": x}, bands={"SA (K=2, lam=1)": 0.1 * x}),
            viz.curves_figure(x, {"accumulated drift": x, "local error": x, "propagated": x}),
            viz.density_figure(mix, {"simple": a.final, "SA": b.final, "ideal": a.final, "SA again": b.final},
                               grid_size=10),
            viz.trajectory_slider_figure({"learned (simple)": b, "ideal": a}),
            viz.schedule_figure({n: Schedule.from_name(n, 50) for n in ("linear", "cosine", "quadratic", "sigmoid")}),
            widgets.PathDashboard({"DDIM (eta = 0)": a, "DDPM (eta = 1)": b}).fig,
            widgets.StepCountDashboard([5], {"simple": [a.x[1]], "SA": [b.x[1]], "ideal": [a.x[2]]}).fig,
            widgets.LiveLossPlot(("loss", "simple", "sa"), floor=1.0).fig]
    for fig in figs:
        assert not look_alike(fig), look_alike(fig)
    # a model keeps its colour across figures
    sa = [t for fig in figs for t in fig.data if t.name == "SA"]
    assert len(sa) >= 2 and {t.marker.color for t in sa} == {viz.ROLE_COLORS["sa"]}


def test_solver_dashboard_shows_the_chosen_solver_and_step_count(setup):
    mix, _, a, b = setup
    finals = {"ddim": {"ideal": [a.x[1], a.x[2]], "SA": [b.x[1], b.x[2]]},
              "heun": {"ideal": [a.x[3], a.x[4]], "SA": [b.x[3], b.x[4]]}}
    d = widgets.SolverDashboard([5, 10], finals, mixture=mix)
    sent = sent_messages(d.fig)
    d.slider.value = 1
    np.testing.assert_allclose(arr(d.fig.data[d._traces["SA"]].x), b.x[2, :, 0].numpy(), atol=1e-7)
    d.toggle.value = "heun"  # the toggle's observer calls select
    np.testing.assert_allclose(arr(d.fig.data[d._traces["SA"]].y), b.x[4, :, 1].numpy(), atol=1e-7)
    np.testing.assert_allclose(arr(d.fig.data[d._traces["ideal"]].x), a.x[4, :, 0].numpy(), atol=1e-7)
    d.fig.send_state()
    assert sent and all(m["method"] == "update" for m in sent)
    np.testing.assert_allclose(saved(d.fig, d._traces["SA"], "y"), b.x[4, :, 1].numpy(), atol=1e-7, rtol=2 * F32)
    assert "10 sampling steps" in d.label.value and "heun" in d.label.value
    with pytest.raises(ValueError, match="solver must be one of"):
        d.select("euler")
    with pytest.raises(ValueError, match="must hold the models"):
        widgets.SolverDashboard([5, 10], {"ddim": finals["ddim"], "heun": {"ideal": finals["heun"]["ideal"]}})
    with pytest.raises(ValueError, match="one sample per step count"):
        widgets.SolverDashboard([5, 10], {"ddim": {"ideal": [a.x[1]]}})
    with pytest.raises(TypeError, match="finals must be"):
        widgets.SolverDashboard([5], {"ddim": []})




def test_solver_dashboard_axes_keep_the_clusters_large_when_one_solver_throws_points_far(setup):
    """One solver throwing 1% of its points far out (karras timesteps at 5 steps in notebook 07) must not widen
    the axes of every panel: they stay within 1.5 times the box that holds the mixture's clusters."""
    mix = setup[0]
    gen = torch.Generator().manual_seed(3)
    near = [mix.sample(400, generator=gen) for _ in range(2)]
    far = [x.clone() for x in near]
    for x in far:
        x[:4] = 40.0 * torch.randn(4, 2, generator=gen)
    d = widgets.SolverDashboard([5, 10], {"ddim": {"ideal": near}, "heun": {"ideal": far}}, mixture=mix)
    lo, hi = d.fig.layout.xaxis.range
    box = viz.mixture_bounds(mix)
    assert hi - lo <= 1.5 * (box[1] - box[0]), (lo, hi, box)
    wide = widgets.StepCountDashboard([5, 10], {"ideal": far}, mixture=mix)  # one cloud: every point shown
    assert wide.fig.layout.xaxis.range[1] - wide.fig.layout.xaxis.range[0] > 1.5 * (box[1] - box[0])
