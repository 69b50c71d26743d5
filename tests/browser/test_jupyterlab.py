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
from _shared import JS_NORM_AND_HASH, NOTEBOOKS

pytestmark = pytest.mark.browser

DEFAULT_NOTEBOOKS = ("04_trajectory_drift.ipynb", "05_sequence_aware_loss.ipynb")
NOTEBOOK_NAMES = tuple(os.environ.get("SEQDIFF_BROWSER_NOTEBOOKS", "").split()) or DEFAULT_NOTEBOOKS
RUN_TIMEOUT_S = 150  # the fast path takes about a minute on 2 busy cores
UPDATE_TIMEOUT_S = 20  # a slider move: browser -> kernel -> FigureWidget -> browser

# the prompts of all code cells: "[3]:" ran, "[*]:" running or queued, "[ ]:" not run
JS_PROMPTS = """() => Array.from(document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')).map(e => e.textContent.trim())"""

JS_STATUS = """() => {
    const el = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
    return el ? el.getAttribute('data-status') : null;
}"""

# every error a cell can show: tracebacks (error outputs render as stderr), stderr mentioning an Error, a widget
# that failed to render
JS_ERRORS = """() => {
    const out = [];
    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
    panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').forEach(e => {
        if (/Traceback|Error/.test(e.innerText)) out.push('stderr: ' + e.innerText.slice(0, 1500));
    });
    panel.querySelectorAll('.jp-RenderedText').forEach(e => {
        if (/Traceback \\(most recent call last\\)|^\\w*Error: /m.test(e.innerText)) out.push('text: ' + e.innerText.slice(0, 1500));
    });
    panel.querySelectorAll('.jupyter-widgets-error-widget, .widget-error').forEach(e => out.push('widget: ' + e.innerText.slice(0, 500)));
    panel.querySelectorAll('.jp-OutputArea-output').forEach(e => {
        if (/Error displaying widget|Failed to load model class|model not found/.test(e.innerText)) out.push('widget: ' + e.innerText.slice(0, 500));
    });
    return out;
}"""

# the sliders that drive a plotly figure: an ipywidgets slider whose dashboard box also holds a .js-plotly-plot
JS_MARK_DASHBOARDS = """() => {
    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
    const sliders = Array.from(panel.querySelectorAll('.jp-OutputArea .widget-slider, .jp-OutputArea .widget-hslider'));
    let n = 0;
    const seen = new Set();
    for (const s of sliders) {
        if (seen.has(s)) continue;
        seen.add(s);
        let box = s.parentElement, plot = null;
        // climb to the nearest box that holds a figure, but not beyond the output of the cell
        while (box && !box.classList.contains('jp-OutputArea-output')) {
            plot = box.querySelector('.js-plotly-plot');
            if (plot) break;
            box = box.parentElement;
        }
        if (!plot || !s.querySelector('.noUi-handle')) continue;
        s.setAttribute('data-seqdiff-slider', String(n));
        plot.setAttribute('data-seqdiff-plot', String(n));
        box.setAttribute('data-seqdiff-box', String(n));
        n += 1;
    }
    return n;
}"""

# a fingerprint of what the figure shows: every trace's coordinates, colours and visibility (plain, typed or
# base64-encoded {dtype, bdata} arrays alike), hashed so that only a short string crosses to Python
JS_PLOT_DATA = f"""(i) => {{
    const gd = document.querySelector(`[data-seqdiff-plot="${{i}}"]`);
    if (!gd || !gd.data || !gd.data.length) return null;{JS_NORM_AND_HASH}
    return hash(JSON.stringify(gd.data.map(t => [t.type, t.visible, t.text, t.marker && t.marker.color]
        .concat(['x', 'y', 'z', 'u', 'v'].map(k => norm(t[k]))))));
}}"""

JS_SLIDER_VALUE = """(i) => {
    const s = document.querySelector(`[data-seqdiff-slider="${i}"]`);
    const r = s && s.querySelector('.widget-readout');
    const h = s && s.querySelector('.noUi-handle');
    return r ? r.textContent.trim() : (h ? h.getAttribute('aria-valuenow') : null);
}"""


JS_KERNEL_NAME = """() => {
    const el = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-KernelName');
    return el ? el.textContent.trim() : null;
}"""


def _open_notebook(page, lab, name: str) -> None:
    # a workspace per notebook, so the second page does not reopen the first notebook
    ws = name.split(".")[0].replace("_", "-")
    page.goto(lab.url(f"lab/workspaces/{ws}/tree/{name}"), wait_until="domcontentloaded", timeout=90_000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=90_000)
    # a notebook without kernel metadata asks for a kernel: take the default (Python 3), as a student would
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        dialog = page.locator(".jp-Dialog")
        if dialog.count():
            dialog.locator(".jp-mod-accept").first.click()
        elif "Python" in (page.evaluate(JS_KERNEL_NAME) or "") and page.evaluate(JS_STATUS) == "idle":
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"{name}: no idle Python kernel within 90 s (kernel {page.evaluate(JS_KERNEL_NAME)!r}, "
                         f"status {page.evaluate(JS_STATUS)!r})")


def _run_all(page, name: str) -> float:
    t0 = time.monotonic()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    # done: the kernel is idle, nothing queued, and at least one cell has run (so Run All did start)
    page.wait_for_function(
        f"""() => {{
            const prompts = ({JS_PROMPTS})();
            const status = ({JS_STATUS})();
            return status === 'idle' && prompts.length > 0 && !prompts.some(p => p.includes('*'))
                   && prompts.some(p => /\\[\\d+\\]/.test(p));
        }}""", timeout=RUN_TIMEOUT_S * 1000, polling=500)
    seconds = time.monotonic() - t0
    prompts = page.evaluate(JS_PROMPTS)
    errors = page.evaluate(JS_ERRORS)
    not_run = [i for i, p in enumerate(prompts) if not any(ch.isdigit() for ch in p)]
    assert not errors, f"{name}: cells show errors:\n" + "\n---\n".join(errors)
    assert not not_run, f"{name}: code cells {not_run} did not run (prompts {prompts})"
    return seconds


def _wait_plot(page, i: int, relation: str, reference: str, failure: str) -> str:
    """Wait until slider ``i``'s figure data is ``relation`` ("!==" or "===") ``reference``; return the data."""
    try:
        page.wait_for_function(f"(r) => ({JS_PLOT_DATA})({i}) {relation} r", arg=reference,
                               timeout=UPDATE_TIMEOUT_S * 1000, polling=100)
    except Exception as err:
        raise AssertionError(f"{failure} (slider value {page.evaluate(JS_SLIDER_VALUE, i)!r})") from err
    return page.evaluate(JS_PLOT_DATA, i)


def _wait_changed(page, i: int, before: str, how: str, name: str) -> str:
    return _wait_plot(page, i, "!==", before, f"{name}: moving slider {i} by {how} did not change its figure "
                                              f"within {UPDATE_TIMEOUT_S} s")


def _wait_back(page, i: int, expected: str, how: str, name: str) -> None:
    _wait_plot(page, i, "===", expected, f"{name}: after {how} slider {i} does not show the same figure data as "
                                         f"before at that value")


def _exercise_slider(page, i: int, name: str) -> dict:
    box = page.locator(f'[data-seqdiff-box="{i}"]')
    box.scroll_into_view_if_needed()
    handle = page.locator(f'[data-seqdiff-slider="{i}"] .noUi-handle').first
    data0, value0 = page.evaluate(JS_PLOT_DATA, i), page.evaluate(JS_SLIDER_VALUE, i)
    assert data0, f"{name}: figure {i} has no data"

    # keyboard: focus the handle, one step to the right
    handle.focus()
    page.keyboard.press("ArrowRight")
    data1 = _wait_changed(page, i, data0, "keyboard (ArrowRight)", name)
    value1 = page.evaluate(JS_SLIDER_VALUE, i)
    assert value1 != value0, f"{name}: slider {i} value did not move by keyboard ({value0!r})"
    # and back: the figure is a function of the slider value (its callback indexes precomputed frames)
    page.keyboard.press("ArrowLeft")
    _wait_back(page, i, data0, "ArrowLeft", name)
    assert page.evaluate(JS_SLIDER_VALUE, i) == value0
    page.keyboard.press("ArrowRight")
    _wait_back(page, i, data1, "ArrowRight again", name)

    # mouse: press on the handle, drag it a third of the rail to the right, release
    hb = handle.bounding_box()
    rail = page.locator(f'[data-seqdiff-slider="{i}"] .noUi-target').first.bounding_box()
    x0, y0 = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + rail["width"] / 3, y0, steps=8)
    page.mouse.up()
    _wait_changed(page, i, data1, "mouse drag", name)
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
        _open_notebook(page, lab_server, name)
        lab_server.pids()  # record the kernel's pid while the server knows it
        run_s = _run_all(page, name)
        page.wait_for_selector(".jp-OutputArea .js-plotly-plot", timeout=30_000)
        page.wait_for_selector(".jp-OutputArea .widget-slider, .jp-OutputArea .widget-hslider", timeout=30_000)
        n = page.evaluate(JS_MARK_DASHBOARDS)
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

    survivors = server.stop()
    assert survivors == []
    assert kernel_proc.pid in server.pids(), "stop() did not record the orphaned kernel"
    try:
        kernel_proc.wait(timeout=10)
    except psutil.TimeoutExpired:
        pass
    assert not kernel_proc.is_running() or kernel_proc.status() == psutil.STATUS_ZOMBIE, \
        f"kernel pid {kernel_proc.pid} still runs after stop()"
