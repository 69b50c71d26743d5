"""The no-code explorer of ``make app`` (app/explorer.ipynb served by Voila) in headless Chromium.

Its controls show before the work finishes (a loading state first: the work starts once the browser has drawn
them), it shows no code, and its controls change the figures: the number of sampling steps, the solver, the
loss (the shipped SA model; SA with lam = 0 says it is the simple loss), heun's drift figure says why it has
no local/propagated split, the score table gives each score's target, and a dataset without a shipped model
offers a training run with a measured estimate. A control that returns to a setting seen before picks up its
kept results (the round trip is printed). No request leaves 127.0.0.1 and no error appears (no page error, no
stderr output, no broken widget). The time to the first page and the round trips are printed with the load.
Screenshots go to artifacts/browser/.
"""
from __future__ import annotations

import os
import statistics
import time
from urllib.parse import urlparse

import pytest
from _shared import JS_NORM_AND_HASH, REPO

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


def _off_host(urls: list[str]) -> list[str]:
    return [u for u in urls if urlparse(u).scheme not in ("data", "blob", "about")
            and urlparse(u).hostname not in ("127.0.0.1", "localhost")]


def _round_trip(page, press, before: str, steps: int, what: str) -> tuple[str, float]:
    """Seconds from a key press until the page shows ``steps`` sampling steps: the status, the paths' slider
    caption (its frames rebuilt) and another (non-empty) drift figure. Returns the drift figure's hash too."""
    t0 = time.monotonic()
    press()
    try:
        page.wait_for_function(f"([b, s]) => {{ const h = ({JS_PLOT})(1); const t = document.body.innerText; "
                               f"return h !== null && h !== b && t.includes(s + ' sampling steps') && "
                               f"t.includes('of ' + s + ' steps'); }}", arg=[before, steps], timeout=60_000,
                               polling="raf")
    except Exception as err:
        raise AssertionError(f"explorer: {what} did not redraw for {steps} steps; the page says "
                             f"{_status(page)!r}") from err
    return page.evaluate(JS_PLOT, 1), time.monotonic() - t0


def _first_page(page, url: str, t0: float) -> tuple[float, float]:
    """Open the page: its controls first, in their loading state (the work starts only once the browser has
    drawn them), then the first paths and scores. Returns the seconds to each from ``t0``."""
    page.goto(url, wait_until="domcontentloaded", timeout=90_000)
    dataset = page.locator(".widget-dropdown", has=page.locator("label", has_text="dataset")).locator("select")
    dataset.wait_for(state="visible", timeout=LOAD_TIMEOUT_S * 1000)
    first_s = time.monotonic() - t0
    first_text = page.evaluate(JS_TEXT)
    plots_at_first = page.locator(".js-plotly-plot").count()
    assert "Loading" in first_text and plots_at_first == 0, (first_text[:300], plots_at_first)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2 && "
                           "document.body.innerText.includes('Showing')", timeout=LOAD_TIMEOUT_S * 1000, polling=200)
    return first_s, time.monotonic() - t0


# what sticks out of the page's width: figures and widget boxes whose right edge is past the window's
JS_WIDER = """() => {
    const w = document.documentElement.clientWidth, out = [];
    document.querySelectorAll('.js-plotly-plot, .widget-box, .widget-hbox, .widget-vbox').forEach(e => {
        const r = e.getBoundingClientRect();
        if (r.width && r.right > w + 1) out.push(`${e.className.slice(0, 60)}: ${Math.round(r.width)} px wide, ends at ${Math.round(r.right)}`);
    });
    if (document.documentElement.scrollWidth > w + 1) out.push(`the page scrolls sideways (${document.documentElement.scrollWidth} px)`);
    return out;
}"""


def _fits(page, width: int, artifacts) -> None:
    """At ``width`` px nothing is cut or needs a sideways scroll (waits for figures that size themselves)."""
    page.set_viewport_size({"width": width, "height": 900})
    try:
        page.wait_for_function(f"() => ({JS_WIDER})().length === 0", timeout=20_000, polling=250)
    except Exception:
        page.screenshot(path=artifacts.path(f"explorer_{width}px.png"), full_page=True)
        raise AssertionError(f"explorer at {width} px: " + "; ".join(page.evaluate(JS_WIDER))) from None
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


def test_explorer_loads_without_code_and_its_controls_change_the_figures(voila_server, page, artifacts, capsys):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    t0 = time.monotonic()
    try:
        first_s, load_s = _first_page(page, voila_server.url(""), t0)
        text = page.evaluate(JS_TEXT)
        assert "shipped (ring8_simple" in text and "10 sampling steps" in text, _status(page)
        # the two-sided score table: a target row, the log-likelihood gap read against its target, the data's row
        assert "target" in text and "log-lik gap" in text and "data (a second draw)" in text
        assert any(w in text for w in ("(too tight)", "(too diffuse)", "(on target)"))
        assert ("docs/glossary.md" in text) == (REPO / "docs" / "glossary.md").is_file()  # named where it exists
        # no code: Voila strips the sources
        assert page.locator(".CodeMirror, .cm-editor, .jp-InputArea-editor").count() == 0
        assert "import seqdiff_kit" not in text and "Explorer(" not in text
        page.screenshot(path=artifacts.path("explorer.png"), full_page=True)
        _fits(page, 1024, artifacts)  # a projector's width
        # a reload of the same server finds what this one trains: the kernel's session folder is this server's
        sessions = list((voila_server.notebook_dir / "runs" / "explorer").glob(f"server-{voila_server.proc.pid}-*"))
        assert len(sessions) == 1, sessions
        paths, drift = page.evaluate(JS_PLOT, 0), page.evaluate(JS_PLOT, 1)
        assert paths and drift

        # more sampling steps: new paths and a longer drift curve; then back and forth between kept settings
        steps = page.locator(".widget-hslider", has=page.locator("label", has_text="sampling steps")).first
        steps.locator(".noUi-handle").first.focus()
        drift, _ = _round_trip(page, lambda: page.keyboard.press("ArrowRight"), drift, 20, "ArrowRight on steps")
        trips = []
        for key, n in [("ArrowLeft", 10), ("ArrowRight", 20)] * 3:
            drift, seconds = _round_trip(page, lambda: page.keyboard.press(key), drift, n, f"{key} on steps")
            trips.append(seconds)

        # another solver: the same x_T, other paths and drift; heun: the drift figure says why it is not split
        solver = page.locator(".widget-dropdown", has=page.locator("label", has_text="solver")).locator("select")
        solver.select_option(index=1)
        _wait_text(page, "DDPM", "choosing DDPM")
        drift = _wait_changed(page, 1, drift, "DDPM")
        solver.select_option(index=3)
        _wait_text(page, "heun shows the accumulated drift without its split", "choosing heun")
        solver.select_option(index=0)
        _wait_text(page, "DDIM, 20 sampling steps", "choosing DDIM again")
        drift = _wait_changed(page, 1, drift, "DDIM again")

        # the shipped SA model; lam = 0 shows the simple model and says so
        page.locator(".widget-toggle-button", has_text="sequence-aware").first.click()
        _wait_text(page, "shipped (ring8_sa", "choosing the SA loss")
        _wait_changed(page, 1, drift, "the SA model")
        page.screenshot(path=artifacts.path("explorer_sa.png"), full_page=True)
        lam = page.locator(".widget-hslider", has=page.locator("label", has_text="lam")).first
        lam.locator(".noUi-handle").first.focus()
        for _ in range(4):  # 1 -> 0.5 -> 0.25 -> 0.1 -> 0
            page.keyboard.press("ArrowLeft")
        _wait_text(page, "SA with lam = 0 is the simple loss", "lam = 0")

        # no shipped model: a training run is offered with a measured estimate, the figures still say what they show
        dataset = page.locator(".widget-dropdown", has=page.locator("label", has_text="dataset")).locator("select")
        dataset.select_option("grid25")
        _wait_text(page, "No model for grid25", "choosing grid25")
        _wait_text(page, "at this machine's present load, timed on 20 updates just now", "choosing grid25")
        assert page.locator("button", has_text="train this model").is_visible()

        problems = page.evaluate(JS_PROBLEMS)
        assert not problems, "explorer shows errors:\n" + "\n".join(problems)
        assert not page.errors, f"uncaught errors in the page: {page.errors[:5]}"
        assert not _off_host(requests), f"requests left 127.0.0.1: {_off_host(requests)}"
        load = "/".join(f"{v:.1f}" for v in os.getloadavg())
        with capsys.disabled():
            print(f"\n[browser] explorer (load {load}): controls shown in {first_s:.1f} s (kernel start included), "
                  f"first paths and scores in {load_s:.1f} s; round trips between kept settings: median "
                  f"{statistics.median(trips):.2f} s ({', '.join(f'{t:.2f}' for t in trips)}); "
                  f"{len(requests)} requests, all to 127.0.0.1; {time.monotonic() - t0:.1f} s in all", flush=True)
    except BaseException:
        try:
            page.screenshot(path=artifacts.path("explorer_FAILED.png"), full_page=True)
        except Exception:
            pass
        raise
