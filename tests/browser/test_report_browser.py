"""The report of ``seqdiff demo`` in headless Chromium: opened as a file, offline, and its sampling-path slider
works.

``seqdiff demo --out <tmp> --points 64`` writes report.html (few points keep it fast; the figures are the same
kind). The test opens it as a ``file://`` URL, checks that every plotly figure rendered without page errors or
network requests, then moves the trajectory figure's slider by clicking on its rail and by dragging its grip,
and checks from the page that the slider's active step changed and that the plotted data became exactly the
data of that step's frame. Screenshots go to artifacts/browser/.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _shared import JS_AXIS_TITLES, JS_NORM_AND_HASH, hidden_series

pytestmark = pytest.mark.browser

POINTS = 64
DEMO_TIMEOUT_S = 150

# the figure with a slider (the sampling paths), marked so later calls find it
JS_MARK = """() => {
    const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    const gd = plots.find(g => g.layout && g.layout.sliders && g.layout.sliders.length);
    if (!gd) return null;
    gd.setAttribute('data-seqdiff-slider-plot', '1');
    return {n_plots: plots.length, n_traces: gd.data.length, n_steps: gd.layout.sliders[0].steps.length,
            n_frames: (gd._transitionData && gd._transitionData._frames || []).length};
}"""

# what the figure shows now: the slider's active step, whether each animated trace holds exactly the data of
# that step's frame (compared as JSON of norm), and a short fingerprint of all traces
JS_STATE = f"""() => {{{JS_NORM_AND_HASH}
    const json = (v) => JSON.stringify(norm(v));
    const gd = document.querySelector('[data-seqdiff-slider-plot]');
    const active = gd.layout.sliders[0].active;
    const step = gd.layout.sliders[0].steps[active];
    const name = step.args[0][0];
    const frame = gd._transitionData._frames.find(f => f.name === name);
    const traces = frame.traces || frame.data.map((_, k) => k);
    const matches = traces.map((ti, k) => ['x', 'y', 'z'].every(key => json(gd.data[ti][key]) === json(frame.data[k][key])));
    return {{active: active, label: step.label, frame: name, matches: matches,
             data: hash(gd.data.map(t => ['x', 'y', 'z'].map(key => json(t[key])).join('|')).join('#'))}};
}}"""


def _seqdiff_command() -> list[str]:
    script = Path(sys.executable).with_name("seqdiff")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "seqdiff_kit.cli"]


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    """``seqdiff demo --out <tmp> --points 64``: the path of its report.html and the seconds it took."""
    out = tmp_path_factory.mktemp("demo")
    # one thread: sampling 64 points with a tiny MLP gains nothing from more, and on a busy machine a second
    # thread per process made the demo ~8x slower (measured 7 s vs 43-73 s)
    env = dict(os.environ, SEQDIFF_THREADS="1", OMP_NUM_THREADS="1")
    cmd = _seqdiff_command() + ["demo", "--out", str(out), "--points", str(POINTS), "--threads", "1", "--quiet"]
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S)
    seconds = time.monotonic() - t0
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    report = out / "report.html"
    assert report.is_file(), f"seqdiff demo did not write {report}; stdout:\n{res.stdout[-2000:]}"
    return report, seconds


def _wait_moved(page, before: dict, how: str) -> dict:
    try:
        page.wait_for_function(
            f"(b) => {{ const s = ({JS_STATE})(); return s.active !== b.active && s.data !== b.data; }}",
            arg=before, timeout=15_000, polling=100)
    except Exception as err:
        now = page.evaluate(JS_STATE)
        raise AssertionError(f"the report's slider did not move by {how}: active step {before['active']} -> "
                             f"{now['active']}, data changed: {now['data'] != before['data']}") from err
    after = page.evaluate(JS_STATE)
    assert all(after["matches"]), (f"after moving the slider by {how} to step {after['active']} ({after['label']}) "
                                   f"the traces do not show that step's frame: {after['matches']}")
    return after


def test_demo_report_slider_changes_trajectory_plot(demo_report, page, artifacts, capsys):
    report, demo_seconds = demo_report
    t0 = time.monotonic()
    requests = []
    page.on("request", lambda req: requests.append(req.url) if not req.url.startswith(("file:", "data:", "blob:"))
            else None)
    page.goto(report.as_uri(), wait_until="load", timeout=60_000)
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
    info = page.evaluate(JS_MARK)
    assert info is not None, "the report has no plotly figure with a slider (the sampling paths)"
    assert info["n_steps"] == info["n_frames"] >= 2, f"slider steps and frames disagree: {info}"

    plot = page.locator("[data-seqdiff-slider-plot]")
    plot.scroll_into_view_if_needed()
    start = page.evaluate(JS_STATE)
    assert start["active"] == 0 and all(start["matches"]), f"the figure does not start at frame 0: {start}"
    plot.screenshot(path=artifacts.path("report_paths_start.png"))

    # click on the rail, 70% of the way along: plotly jumps to the nearest step and animates to its frame
    rail = plot.locator(".slider-rail-touch-rect").first.bounding_box()
    y = rail["y"] + rail["height"] / 2
    page.mouse.click(rail["x"] + 0.7 * rail["width"], y)
    clicked = _wait_moved(page, start, "a click on the rail")
    assert clicked["active"] > info["n_steps"] // 2, f"a click at 70% of the rail went to step {clicked['active']}"

    # drag the grip back to about 25% of the rail
    grip = plot.locator(".slider-grip-rect").first.bounding_box()
    gx, gy = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
    page.mouse.move(gx, gy)
    page.mouse.down()
    page.mouse.move(rail["x"] + 0.25 * rail["width"], gy, steps=10)
    page.mouse.up()
    dragged = _wait_moved(page, clicked, "dragging the grip")
    assert 0 < dragged["active"] < clicked["active"], f"dragging left went from {clicked['active']} to {dragged['active']}"

    plot.screenshot(path=artifacts.path("report_paths_moved.png"))
    legibility = hidden_series(page, "body") + page.evaluate(JS_AXIS_TITLES, "body")
    assert not legibility, "figures of the report a reader cannot read:\n" + "\n".join(legibility)
    page.screenshot(path=artifacts.path("report.png"), full_page=False)
    assert not page.errors, f"page errors in the report: {page.errors}"
    assert not requests, f"the report is not standalone: it requested {requests[:5]}"
    with capsys.disabled():
        print(f"\n[browser] report: seqdiff demo ({POINTS} points) {demo_seconds:.1f} s; {info['n_plots']} figures; "
              f"slider steps {start['label']} -> {clicked['label']} (click) -> {dragged['label']} (drag); "
              f"{time.monotonic() - t0:.1f} s in the browser; screenshots in {artifacts.folder}", flush=True)


def test_coinciding_curves_each_show(page, tmp_path):
    """Three series with the same values (the report's 100-step spread chart, where "simple" and "ideal" agree)
    each keep visible pixels of their colour: none is hidden under the one drawn after it."""
    from seqdiff_kit.report import Section, write_report
    from seqdiff_kit.viz import curves_spec

    y = [1.0, 0.9, 0.95, 1.0, 1.02]
    fig = curves_spec(list(range(5)), {"simple": y, "SA (K=2, lam=1)": [v + 0.002 for v in y], "ideal": y},
                      title="same values", xlabel="sampling step", ylabel="std ratio", reference=1.0)
    path = write_report(tmp_path / "curves.html", [Section("curves", figure=fig)], timestamp=False)
    page.goto(path.as_uri(), wait_until="load", timeout=60_000)
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
    hidden = hidden_series(page, "body")
    assert not hidden, "\n".join(hidden)
    assert not page.errors, f"page errors: {page.errors}"
