"""Reloading a page with the kernel running brings every widget back, every time.

A small notebook (three dashboards with a density background, made from random points: no training, no
sampling) is run once and saved; the page is then reloaded ``SEQDIFF_RELOADS`` times (default 1, to keep the
suite short: test_dashboards.py reloads every lesson once too; the issue's measure is 20 or more,
``SEQDIFF_RELOADS=20``), and after each reload every widget output must show its figure and slider: none may
stay "Loading widget..." or say "Error displaying widget: model not found". The count of good reloads and the
seconds each took are printed with the machine's load.
"""
from __future__ import annotations

import os
import statistics
import time

import nbformat
import pytest
from _lab import JS_ERRORS, JS_REVEAL, JS_UNDRAWN, PANEL, open_notebook, run_all, save_notebook, wait_notebook

pytestmark = pytest.mark.browser

RELOADS = int(os.environ.get("SEQDIFF_RELOADS", "1"))
# SEQDIFF_RELOAD_NOTEBOOK=02_ideal_denoiser.ipynb reloads a lesson instead (more widgets, a longer restore)
LESSON = os.environ.get("SEQDIFF_RELOAD_NOTEBOOK", "")
DASHBOARDS = 3
NAME = LESSON or "reload_check.ipynb"
CELLS = [
    "import torch\nfrom seqdiff_kit import ring8, widgets\n"
    "mixture, gen = ring8(), torch.Generator().manual_seed(0)\n"
    "finals = {name: [torch.randn(150, 2, generator=gen) * s for s in (3.0, 2.0, 1.0)] for name in ('a', 'b')}",
] + [f"widgets.StepCountDashboard([5, 10, 20], finals, mixture=mixture, title='check {k}').widget"
     for k in range(DASHBOARDS)]

# per widget output: 'ok' (drawn, every figure in it too), 'error' (the error text of JupyterLab's renderer)
# or 'waiting' (still "Loading widget..." or a figure not drawn yet)
JS_WIDGET_OUTPUTS = f"""() => Array.from(document.querySelectorAll('{PANEL} .jp-OutputArea-output'))
    .filter(o => o.querySelector('.jupyter-widgets, .widget-box, .js-plotly-plot')
                 || /Loading widget|Error displaying widget/.test(o.innerText))
    .map(o => {{
        if (/Error displaying widget|model not found/.test(o.innerText)) return 'error';
        if (/Loading widget/.test(o.innerText)) return 'waiting';
        return Array.from(o.querySelectorAll('.js-plotly-plot')).every(p => p.querySelector('.main-svg'))
            ? 'ok' : 'waiting';
    }})"""


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _wait_widgets(page, n: int, timeout_s: float = 90) -> list[str]:
    """The outputs' states once all are drawn, or one has an error, or ``timeout_s`` passed. The notebook is
    scrolled through meanwhile: JupyterLab draws a plotly figure when it first comes into view."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.evaluate(JS_REVEAL)
        states = page.evaluate(JS_WIDGET_OUTPUTS)
        done = len(states) >= n and all(s == "ok" for s in states)
        if done or "error" in states or time.monotonic() > deadline:
            return states
        page.wait_for_timeout(300)


def test_reload_restores_every_widget(lab_server, page, capsys):
    if not LESSON:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, lab_server.notebook_dir / NAME)
    try:
        open_notebook(page, lab_server, NAME, workspace="reload-check")
        lab_server.pids()
        run_all(page, NAME)
        after_run = _wait_widgets(page, 1 if LESSON else DASHBOARDS)
        n = len(after_run)
        assert n >= 1 and after_run == ["ok"] * n, f"{NAME}: the widgets did not draw after Run All: {after_run}"
        save_notebook(page, NAME)  # the outputs (widget references) a reloaded page finds
        outcomes, seconds = [], []
        for _ in range(RELOADS):
            t0 = time.monotonic()
            page.reload(wait_until="domcontentloaded", timeout=90_000)
            wait_notebook(page, NAME)
            states = _wait_widgets(page, n)
            seconds.append(time.monotonic() - t0)
            outcomes.append(states)
        good = sum(s == ["ok"] * n for s in outcomes)
        with capsys.disabled():
            print(f"\n[reload] {good} of {RELOADS} reloads restored all {n} widget outputs of {NAME}; median "
                  f"{statistics.median(seconds):.1f} s to every widget drawn (max {max(seconds):.1f} s); "
                  f"load average {_load()}", flush=True)
        bad = [(k, s) for k, s in enumerate(outcomes) if s != ["ok"] * n]
        assert not bad, f"{NAME}: reloads that did not restore every widget (reload, states): {bad}"
        assert not page.evaluate(JS_ERRORS), f"{NAME}: errors after the reloads: {page.evaluate(JS_ERRORS)}"
        assert not page.evaluate(JS_UNDRAWN, PANEL), f"{NAME}: {page.evaluate(JS_UNDRAWN, PANEL)}"
    finally:
        lab_server.shutdown_kernels()
