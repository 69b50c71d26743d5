"""The no-code explorer of ``make app`` (app/explorer.ipynb served by Voila) in headless Chromium.

It loads within the time a class waits, shows no code, and its controls change the figures: the number of
sampling steps, the solver, the loss (the shipped SA model), and a dataset without a shipped model offers a
training run instead of failing. No error appears (no page error, no stderr output, no broken widget).
Screenshots go to artifacts/browser/.
"""
from __future__ import annotations

import time

import pytest
from _shared import JS_NORM_AND_HASH

pytestmark = pytest.mark.browser

LOAD_TIMEOUT_S = 180  # kernel start, imports and the first paths on 2 busy cores

JS_PLOT = f"""(k) => {{
    const gd = document.querySelectorAll('.js-plotly-plot')[k];
    if (!gd || !gd._fullData || !gd._fullData.length) return null;{JS_NORM_AND_HASH}
    return hash(JSON.stringify(gd._fullData.map(t => ['x', 'y'].map(key => norm(t[key])))));
}}"""

JS_TEXT = "() => document.body.innerText"

JS_PROBLEMS = """() => {
    const out = [];
    document.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]').forEach(e => out.push('stderr: ' + e.innerText.slice(0, 800)));
    document.querySelectorAll('.jupyter-widgets-error-widget, .widget-error').forEach(e => out.push('widget: ' + e.innerText.slice(0, 400)));
    document.querySelectorAll('[data-mime-type="application/vnd.jupyter.error"], .jp-RenderedText').forEach(e => {
        if (/Traceback|Error/.test(e.innerText)) out.push('error: ' + e.innerText.slice(0, 800));
    });
    return out;
}"""


def _status(page) -> str:
    return page.locator(".widget-html-content", has_text="Showing").or_(
        page.locator(".widget-html-content", has_text="No model")).first.inner_text()


def _wait_text(page, text: str, what: str) -> None:
    try:
        page.wait_for_function("(t) => document.body.innerText.includes(t)", arg=text, timeout=60_000, polling=200)
    except Exception as err:
        raise AssertionError(f"explorer: after {what} the page never said {text!r}; it says "
                             f"{_status(page)!r}") from err


def _wait_changed(page, k: int, before: str, what: str) -> str:
    try:
        page.wait_for_function(f"(b) => ({JS_PLOT})({k}) !== b", arg=before, timeout=60_000, polling=200)
    except Exception as err:
        raise AssertionError(f"explorer: {what} did not change figure {k}") from err
    return page.evaluate(JS_PLOT, k)


def test_explorer_loads_without_code_and_its_controls_change_the_figures(voila_server, page, artifacts, capsys):
    t0 = time.monotonic()
    try:
        page.goto(voila_server.url(""), wait_until="domcontentloaded", timeout=90_000)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2 && "
                               "document.body.innerText.includes('Showing')", timeout=LOAD_TIMEOUT_S * 1000,
                               polling=500)
        load_s = time.monotonic() - t0
        text = page.evaluate(JS_TEXT)
        assert "shipped (ring8_simple" in text and "10 sampling steps" in text, _status(page)
        # no code: Voila strips the sources
        assert page.locator(".CodeMirror, .cm-editor, .jp-InputArea-editor").count() == 0
        assert "import seqdiff_kit" not in text and "Explorer()" not in text
        page.screenshot(path=artifacts.path("explorer.png"), full_page=True)
        paths, drift = page.evaluate(JS_PLOT, 0), page.evaluate(JS_PLOT, 1)
        assert paths and drift

        # more sampling steps: new paths and a longer drift curve
        steps = page.locator(".widget-hslider", has=page.locator("label", has_text="sampling steps")).first
        steps.locator(".noUi-handle").first.focus()
        page.keyboard.press("ArrowRight")
        _wait_text(page, "20 sampling steps", "ArrowRight on the steps slider")
        paths = _wait_changed(page, 0, paths, "a step count of 20")
        drift = _wait_changed(page, 1, drift, "a step count of 20")

        # another solver: the same x_T, other paths
        solver = page.locator(".widget-dropdown", has=page.locator("label", has_text="solver")).locator("select")
        solver.select_option(index=1)
        _wait_text(page, "DDPM", "choosing DDPM")
        paths = _wait_changed(page, 0, paths, "DDPM")

        # the shipped SA model
        page.locator(".widget-toggle-button", has_text="sequence-aware").first.click()
        _wait_text(page, "shipped (ring8_sa", "choosing the SA loss")
        paths = _wait_changed(page, 0, paths, "the SA model")
        page.screenshot(path=artifacts.path("explorer_sa.png"), full_page=True)

        # no shipped model: a training run is offered, the figures still say what they show
        dataset = page.locator(".widget-dropdown", has=page.locator("label", has_text="dataset")).locator("select")
        dataset.select_option("grid25")
        _wait_text(page, "No model for grid25", "choosing grid25")
        assert page.locator("button", has_text="train this model").is_visible()

        problems = page.evaluate(JS_PROBLEMS)
        assert not problems, "explorer shows errors:\n" + "\n".join(problems)
        assert not page.errors, f"uncaught errors in the page: {page.errors[:5]}"
        with capsys.disabled():
            print(f"\n[browser] explorer: loaded in {load_s:.1f} s (kernel start included); steps, solver, loss "
                  f"and dataset controls changed the page; {time.monotonic() - t0:.1f} s in all", flush=True)
    except BaseException:
        try:
            page.screenshot(path=artifacts.path("explorer_FAILED.png"), full_page=True)
        except Exception:
            pass
        raise
