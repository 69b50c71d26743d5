"""What a student sees: notebooks 04 and 05 opened in JupyterLab in headless Chromium, run on their fast path.

For each notebook: open it, Run > Run All Cells, wait until the kernel is idle and every code cell has run,
check that no cell shows an error, then for every slider that drives a plotly figure (the dashboards of
``seqdiff_kit.widgets``) move it by keyboard (ArrowRight on the focused handle) and by a mouse drag of the
handle, and check from the page that the figure's data changed each time. Screenshots go to artifacts/browser/.

Set ``SEQDIFF_BROWSER_NOTEBOOKS="02_ideal_denoiser.ipynb 03_....ipynb"`` to run the same checks on other notebooks.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
from _lab import (JS_ERRORS, JS_PLOT_DATA, JS_SLIDER_VALUE, mark_dashboards, open_notebook, run_all, wait_back,
                  wait_changed)
from _shared import NOTEBOOKS

pytestmark = pytest.mark.browser

DEFAULT_NOTEBOOKS = ("04_trajectory_drift.ipynb", "05_sequence_aware_loss.ipynb")
NOTEBOOK_NAMES = tuple(os.environ.get("SEQDIFF_BROWSER_NOTEBOOKS", "").split()) or DEFAULT_NOTEBOOKS


def _exercise_slider(page, i: int, name: str) -> dict:
    box = page.locator(f'[data-seqdiff-box="{i}"]')
    box.scroll_into_view_if_needed()
    handle = page.locator(f'[data-seqdiff-slider="{i}"] .noUi-handle').first
    data0, value0 = page.evaluate(JS_PLOT_DATA, i), page.evaluate(JS_SLIDER_VALUE, i)
    assert data0, f"{name}: figure {i} has no data"

    # keyboard: focus the handle, one step to the right
    handle.focus()
    page.keyboard.press("ArrowRight")
    data1 = wait_changed(page, i, data0, "keyboard (ArrowRight)", name)
    value1 = page.evaluate(JS_SLIDER_VALUE, i)
    assert value1 != value0, f"{name}: slider {i} value did not move by keyboard ({value0!r})"
    # and back: the figure is a function of the slider value (its callback indexes precomputed frames)
    page.keyboard.press("ArrowLeft")
    wait_back(page, i, data0, "ArrowLeft", name)
    assert page.evaluate(JS_SLIDER_VALUE, i) == value0
    page.keyboard.press("ArrowRight")
    wait_back(page, i, data1, "ArrowRight again", name)

    # mouse: press on the handle, drag it a third of the rail to the right, release
    hb = handle.bounding_box()
    rail = page.locator(f'[data-seqdiff-slider="{i}"] .noUi-target').first.bounding_box()
    x0, y0 = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + rail["width"] / 3, y0, steps=8)
    page.mouse.up()
    wait_changed(page, i, data1, "mouse drag", name)
    value2 = page.evaluate(JS_SLIDER_VALUE, i)
    assert value2 != value1, f"{name}: slider {i} value did not move by mouse drag ({value1!r})"
    return {"values": (value0, value1, value2)}


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_widgets_in_jupyterlab(name, lab_server, page, artifacts, capsys):
    path = NOTEBOOKS / name
    assert path.is_file(), f"{path} does not exist (ls notebooks/: {sorted(p.name for p in NOTEBOOKS.glob('*.ipynb'))})"
    stem = path.stem
    t0 = time.monotonic()
    try:
        open_notebook(page, lab_server, name)
        lab_server.pids()  # record the kernel's pid while the server knows it
        run_s = run_all(page, name)
        page.wait_for_selector(".jp-OutputArea .js-plotly-plot", timeout=30_000)
        page.wait_for_selector(".jp-OutputArea .widget-slider, .jp-OutputArea .widget-hslider", timeout=30_000)
        n = mark_dashboards(page)
        assert n >= 1, f"{name}: no slider that drives a plotly figure was found in the outputs"
        moved = [_exercise_slider(page, i, name) for i in range(n)]
        for i in range(n):
            page.locator(f'[data-seqdiff-box="{i}"]').screenshot(path=artifacts.path(f"{stem}_dashboard{i}.png"))
        errors = page.evaluate(JS_ERRORS)
        assert not errors, f"{name}: cells show errors after moving the sliders:\n" + "\n---\n".join(errors)
        assert not page.errors, f"{name}: uncaught errors in the page: {page.errors[:5]}"
        page.screenshot(path=artifacts.path(f"{stem}.png"))
        with capsys.disabled():
            print(f"\n[browser] {name}: ran all cells in {run_s:.1f} s, moved {n} dashboard sliders "
                  f"(values {[m['values'] for m in moved]}), "
                  f"{time.monotonic() - t0:.1f} s in all; "
                  f"screenshots in {artifacts.folder}", flush=True)
    except BaseException:
        try:  # the state at the failure helps more than the traceback
            page.screenshot(path=artifacts.path(f"{stem}_FAILED.png"))
        except Exception:
            pass
        raise
    finally:
        lab_server.shutdown_kernels()


def test_lab_server_stops_its_kernels_by_pid_even_after_a_crash(make_lab_server):
    """The clean-up the notebook tests rely on: a kernel started through the REST API is found by its connection
    file and ended by pid, even when the server itself was killed first (its kernels re-parented)."""
    import psutil

    server = make_lab_server().start()
    kernel = server.api("POST", "api/kernels", body={"name": "python3"}, timeout=60)
    conn = f"kernel-{kernel['id']}.json"
    deadline, found = time.monotonic() + 60, []
    while not found and time.monotonic() < deadline:  # observed independently of LabServer.pids()
        found = [p for p in psutil.process_iter(["cmdline"]) if conn in " ".join(p.info["cmdline"] or [])]
        time.sleep(0.2)
    assert found, f"no process holds {conn}"
    kernel_proc = found[0]
    assert kernel_proc.pid != server.proc.pid

    # A hung kernel, which is the case where ending it by pid matters. Were it to keep running, ipykernel's
    # parent poller would exit it about a second after the server dies, and whether stop() sees it first
    # would be a race.
    os.kill(kernel_proc.pid, signal.SIGSTOP)
    os.kill(server.proc.pid, signal.SIGKILL)  # a crashed server: nobody will shut the kernel down politely
    server.proc.wait(timeout=10)
    assert kernel_proc.is_running() and kernel_proc.status() != psutil.STATUS_ZOMBIE, \
        "the hung kernel should outlive a killed server (it has its own session)"

    # a stopped process leaves SIGTERM pending, so SIGKILL ends it: one second of grace before it, not five
    survivors = server.stop(grace=1.0)
    assert survivors == []
    assert kernel_proc.pid in server.pids(), "stop() did not record the orphaned kernel"
    try:
        kernel_proc.wait(timeout=10)
    except psutil.TimeoutExpired:
        pass
    assert not kernel_proc.is_running() or kernel_proc.status() == psutil.STATUS_ZOMBIE, \
        f"kernel pid {kernel_proc.pid} still runs after stop()"
