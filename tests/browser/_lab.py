"""What the JupyterLab browser tests share: the JavaScript that reads the page (prompts, kernel status, errors,
dashboards, plot data) and the steps a student takes (open a notebook, run all cells, save, reload).

Pasted into the functions handed to ``page.evaluate``; imported by test_dashboards.py.
"""
from __future__ import annotations

import time

from _shared import JS_NORM_AND_HASH

RUN_TIMEOUT_S = 150  # the fast path takes about a minute on 2 busy cores
UPDATE_TIMEOUT_S = 20  # a slider move (in the page) or a figure the kernel changes

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

# the prompts of all code cells: "[3]:" ran, "[*]:" running or queued, "[ ]:" not run
JS_PROMPTS = f"""() => Array.from(document.querySelectorAll(
    '{PANEL} .jp-CodeCell .jp-InputArea-prompt')).map(e => e.textContent.trim())"""

JS_STATUS = f"""() => {{
    const el = document.querySelector('{PANEL} .jp-Notebook-ExecutionIndicator');
    return el ? el.getAttribute('data-status') : null;
}}"""

JS_KERNEL_NAME = f"""() => {{
    const el = document.querySelector('{PANEL} .jp-KernelName');
    return el ? el.textContent.trim() : null;
}}"""

# every error a cell can show: tracebacks (error outputs render as stderr), stderr mentioning an Error, a widget
# that failed to render
JS_ERRORS = f"""() => {{
    const out = [];
    const panel = document.querySelector('{PANEL}');
    panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').forEach(e => {{
        if (/Traceback|Error/.test(e.innerText)) out.push('stderr: ' + e.innerText.slice(0, 1500));
    }});
    panel.querySelectorAll('.jp-RenderedText').forEach(e => {{
        if (/Traceback \\(most recent call last\\)|^\\w*Error: /m.test(e.innerText)) out.push('text: ' + e.innerText.slice(0, 1500));
    }});
    panel.querySelectorAll('.jupyter-widgets-error-widget, .widget-error').forEach(e => out.push('widget: ' + e.innerText.slice(0, 500)));
    panel.querySelectorAll('.jp-OutputArea-output').forEach(e => {{
        if (/Error displaying widget|Failed to load model class|model not found/.test(e.innerText)) out.push('widget: ' + e.innerText.slice(0, 500));
    }});
    return out;
}}"""

# every stderr output of every cell (warnings included): a student should see none
JS_STDERR = f"""() => Array.from(document.querySelectorAll(
    '{PANEL} .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')).map(e => e.innerText.slice(0, 800))"""

# The sliders that drive a plotly figure: an ipywidgets slider whose dashboard box also holds a .js-plotly-plot.
# The caption is the HTML widget beside the slider (the dashboards of seqdiff_kit.widgets put one there).
JS_MARK_DASHBOARDS = """(root) => {
    const panel = document.querySelector(root);
    const sliders = Array.from(panel.querySelectorAll('.widget-slider, .widget-hslider'));
    let n = 0;
    const seen = new Set();
    for (const s of sliders) {
        if (seen.has(s)) continue;
        seen.add(s);
        let box = s.parentElement, plot = null;
        // climb to the nearest box that holds a figure, but not beyond the output of the cell
        while (box && box !== panel && !box.classList.contains('jp-OutputArea-output')) {
            plot = box.querySelector('.js-plotly-plot');
            if (plot) break;
            box = box.parentElement;
        }
        if (!plot || !s.querySelector('.noUi-handle')) continue;
        s.setAttribute('data-seqdiff-slider', String(n));
        plot.setAttribute('data-seqdiff-plot', String(n));
        box.setAttribute('data-seqdiff-box', String(n));
        const row = s.parentElement;
        const cap = row && row.querySelector('.seqdiff-caption, .widget-html-content');
        if (cap) cap.setAttribute('data-seqdiff-caption', String(n));
        n += 1;
    }
    return n;
}"""

# A fingerprint of what the figure shows: every trace's coordinates, colours and visibility, read from plotly's
# full data (decoded arrays, whether they arrived as typed arrays, base64 or plain lists), hashed so that only
# a short string crosses to Python.
JS_PLOT_DATA = f"""(i) => {{
    const gd = document.querySelector(`[data-seqdiff-plot="${{i}}"]`);
    if (!gd || !gd._fullData || !gd._fullData.length) return null;{JS_NORM_AND_HASH}
    return hash(JSON.stringify(gd._fullData.map(t => [t.type, t.visible, t.marker && t.marker.color]
        .concat(['x', 'y', 'z'].map(k => norm(t[k]))))));
}}"""

# True once plotly's own view of slider i's figure finished its first drawing: it hooks its plotly_restyle handler
# then, and the dashboards' frame switching waits for that handler (``drawn`` in seqdiff_kit/widgets.py). Checked
# before the test hooks events of its own (JS_LATENCY_ARM), which would otherwise pass for that handler.
JS_DRAWN = """(i) => {
    const gd = document.querySelector(`[data-seqdiff-plot="${i}"]`);
    return !!(gd && gd._fullData && gd._fullData.length && gd._ev && gd._ev._events
              && gd._ev._events.plotly_restyle);
}"""

JS_SLIDER_VALUE = """(i) => {
    const s = document.querySelector(`[data-seqdiff-slider="${i}"]`);
    const r = s && s.querySelector('.widget-readout');
    const h = s && s.querySelector('.noUi-handle');
    return r ? r.textContent.trim() : (h ? h.getAttribute('aria-valuenow') : null);
}"""

# looked up at each call from the slider's row: a caption's element may be drawn after the dashboards were marked
JS_FIND_CAPTION = """(i) => {
    const s = document.querySelector(`[data-seqdiff-slider="${i}"]`);
    return s && s.parentElement ? s.parentElement.querySelector('.seqdiff-caption, .widget-html-content') : null;
}"""

JS_CAPTION = f"""(i) => {{
    const c = ({JS_FIND_CAPTION})(i);
    return c ? c.innerText.trim() : null;
}}"""

# Series that look the same: two traces of one figure, both in the legend, with the same colour and the same
# dash (lines) or symbol (markers). Read from plotly's full data (defaults filled in), for every figure.
JS_DUPLICATE_STYLES = """(root) => {
    const out = [];
    document.querySelectorAll(root + ' .js-plotly-plot').forEach((gd, k) => {
        const seen = new Map();
        (gd._fullData || []).forEach(t => {
            if (t.type !== 'scatter' || t.showlegend === false || t.visible !== true) return;
            const lines = (t.mode || '').includes('lines');
            const color = lines ? t.line.color : t.marker.color;
            const key = (lines ? 'line ' + t.line.dash : 'marker ' + t.marker.symbol) + ' ' + color;
            if (seen.has(key)) out.push(`figure ${k}: '${seen.get(key)}' and '${t.name}' are both ${key}`);
            else seen.set(key, t.name);
        });
    });
    return out;
}"""

# What plotly drew against what its data lists, for every figure of the notebook that has drawn: each visible
# heatmap trace is one <image> (a density background, a digit tile) and each visible scatter trace one
# g.trace group. A fast redraw path that drops a layer leaves plotly's data intact, so only the DOM shows it.
JS_UNDRAWN = """(root) => {
    const out = [];
    document.querySelectorAll(root + ' .js-plotly-plot').forEach((gd, k) => {
        const data = (gd._fullData || []).filter(t => t.visible === true);
        if (!data.length || !gd.querySelector('.main-svg')) return;
        const heat = data.filter(t => t.type === 'heatmap').length;
        const images = gd.querySelectorAll('.heatmaplayer image').length;
        if (images !== heat) out.push(`figure ${k}: ${heat} heatmap traces, ${images} heatmap images drawn`);
        const points = data.filter(t => t.type === 'scatter').length;
        const groups = gd.querySelectorAll('.scatterlayer g.trace').length;
        if (groups !== points) out.push(`figure ${k}: ${points} scatter traces, ${groups} drawn`);
    });
    return out;
}"""


# Markdown shown as text: an output (printed text or rendered Markdown/HTML) or a Markdown cell that still
# shows table rows ("| a | b |") or bold markers ("**") literally
JS_RAW_MARKDOWN = """(root) => {
    const out = [];
    document.querySelectorAll(root + ' .jp-OutputArea-output, ' + root + ' .jp-MarkdownOutput').forEach(e => {
        const text = e.innerText || '';
        const bad = text.split('\\n').filter(l => /^\\s*\\|.*\\|\\s*$/.test(l) || l.includes('**'));
        if (bad.length) out.push(`${bad.length} lines such as ${JSON.stringify(bad[0].slice(0, 120))}`);
    });
    return out;
}"""


# What sticks out of its output area (cut off, or behind a scroll bar): figures, images and widget boxes wider
# than the room the notebook gives them
JS_CLIPPED = """(root) => {
    const out = [];
    document.querySelectorAll(root + ' .jp-OutputArea-output').forEach((o, k) => {
        const box = o.getBoundingClientRect();
        if (!box.width) return;
        const seen = new Set();
        o.querySelectorAll('.js-plotly-plot, img, .widget-box, .widget-hbox, .widget-vbox').forEach(e => {
            const r = e.getBoundingClientRect();
            const what = e.classList.contains('js-plotly-plot') ? 'figure' : e.tagName === 'IMG' ? 'image' : 'widget box';
            const svg = e.querySelector(':scope > div > .svg-container, .svg-container');
            const right = svg ? Math.max(r.right, svg.getBoundingClientRect().right) : r.right;
            if (right > box.right + 1 && !seen.has(what)) {
                seen.add(what);
                out.push(`output ${k}: a ${what} ends ${Math.round(right - box.right)} px past the output's ${Math.round(box.width)} px`);
            }
        });
    });
    return out;
}"""

# JupyterLab's file browser, open (as a student has it) or closed
JS_FILE_BROWSER_OPEN = """() => { const fb = document.querySelector('#filebrowser'); return !!fb && !fb.classList.contains('lm-mod-hidden') && fb.getBoundingClientRect().width > 0; }"""


# Latency of one arrow-key step, measured in the page: from the keydown (capture phase, before the slider sees
# it) to the first animation frame after plotly finished redrawing the figure (its restyle/update/afterplot
# event); and to the caption's change (the slider's index reaches the caption through a jslink in the page,
# as it reaches the figure). ``arm(i)`` hooks slider i's figure and caption and
# clears the clocks; ``read()`` returns [ms to the redraw, ms to the caption] once the redraw happened, else null.
JS_LATENCY_ARM = """(i) => {
    const gd = document.querySelector(`[data-seqdiff-plot="${i}"]`);
    const cap = (""" + JS_FIND_CAPTION + """)(i);
    if (!window.__sdClock) {
        window.__sdClock = {t0: null, t1: null, tc: null};
        document.addEventListener('keydown', () => {
            const c = window.__sdClock;
            if (c.t0 === null) c.t0 = performance.now();
        }, true);
    }
    if (gd.__sdHooked !== gd._ev) {  // a new plot (Plotly.newPlot) drops every listener with its _ev
        gd.__sdHooked = gd._ev;
        const done = () => {
            const c = window.__sdClock;
            if (c.t0 !== null && c.t1 === null) requestAnimationFrame(() => { if (c.t1 === null) c.t1 = performance.now(); });
        };
        ['plotly_restyle', 'plotly_update', 'plotly_relayout', 'plotly_afterplot', 'plotly_redraw', 'plotly_animated'].forEach(e => gd.on(e, done));
    }
    if (cap && !cap.__sdHooked) {
        cap.__sdHooked = true;
        new MutationObserver(() => {
            const c = window.__sdClock;
            if (c.t0 !== null && c.tc === null) c.tc = performance.now();
        }).observe(cap, {childList: true, subtree: true, characterData: true});
    }
    Object.assign(window.__sdClock, {t0: null, t1: null, tc: null});
}"""

JS_LATENCY_READ = """() => {
    const c = window.__sdClock;
    return c && c.t0 !== null && c.t1 !== null ? [c.t1 - c.t0, c.tc === null ? null : c.tc - c.t0] : null;
}"""


def open_notebook(page, lab, name: str, workspace: str | None = None) -> None:
    """Open ``name`` in JupyterLab and wait for an idle Python kernel (accepting the kernel dialog if asked)."""
    # a workspace per notebook, so the second page does not reopen the first notebook
    ws = workspace or name.split(".")[0].replace("_", "-")
    page.goto(lab.url(f"lab/workspaces/{ws}/tree/{name}"), wait_until="domcontentloaded", timeout=90_000)
    wait_notebook(page, name)


def wait_notebook(page, name: str) -> None:
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


def save_notebook(page, name: str) -> None:
    """Save the notebook (its outputs and widget references) as a student does, with Ctrl+S."""
    page.locator(f"{PANEL} .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    try:
        page.wait_for_function("() => !document.querySelector('.jp-mod-current.jp-mod-dirty, "
                               ".lm-TabBar-tab.jp-mod-current.jp-mod-dirty')", timeout=30_000, polling=200)
    except Exception as err:
        raise AssertionError(f"{name}: the notebook was not saved before the reload") from err


def run_all(page, name: str) -> float:
    """Run > Run All Cells; wait until every cell ran; assert no cell shows an error. Returns the seconds."""
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


# JupyterLab renders an output's plotly figure when it first scrolls into view: visit every cell once
JS_REVEAL = f"""async () => {{
    for (const c of document.querySelectorAll('{PANEL} .jp-Cell')) {{
        c.scrollIntoView();
        await new Promise(r => setTimeout(r, 60));
    }}
}}"""


def open_file_browser(page) -> None:
    """Show JupyterLab's file browser beside the notebook (a narrower notebook, as a student usually has it)."""
    if not page.evaluate(JS_FILE_BROWSER_OPEN):
        page.locator('.jp-SideBar.jp-mod-left [data-id="filebrowser"]').first.click()
    page.wait_for_function(JS_FILE_BROWSER_OPEN, timeout=30_000)


def reveal_outputs(page, n: int, name: str, timeout_s: float = 60) -> None:
    """Scroll through the notebook until ``n`` dashboards (slider + figure) are rendered and marked."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.evaluate(JS_REVEAL)
        found = mark_dashboards(page)
        if found >= n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: {found} of {n} dashboards rendered within {timeout_s:.0f} s")
        page.wait_for_timeout(500)


def wait_drawn(page, n: int, name: str) -> None:
    """Wait until the figures of the ``n`` marked dashboards show data and plotly's view finished drawing each
    (JS_DRAWN): a slider moved earlier would race that first drawing, which no student's key press can do on
    a busy machine before the figure is on the screen."""
    for i in range(n):
        try:
            page.wait_for_function(JS_DRAWN, arg=i, timeout=RUN_TIMEOUT_S * 1000, polling=100)
        except Exception as err:
            raise AssertionError(f"{name}: the figure of slider {i} was not drawn within {RUN_TIMEOUT_S} s") from err


def mark_dashboards(page) -> int:
    return page.evaluate(JS_MARK_DASHBOARDS, PANEL)


def wait_plot(page, i: int, relation: str, reference: str, failure: str) -> str:
    """Wait until slider ``i``'s figure data is ``relation`` ("!==" or "===") ``reference``; return the data."""
    try:
        page.wait_for_function(f"(r) => ({JS_PLOT_DATA})({i}) {relation} r", arg=reference,
                               timeout=UPDATE_TIMEOUT_S * 1000, polling=100)
    except Exception as err:
        raise AssertionError(f"{failure} (slider value {page.evaluate(JS_SLIDER_VALUE, i)!r})") from err
    return page.evaluate(JS_PLOT_DATA, i)


def wait_changed(page, i: int, before: str, how: str, name: str) -> str:
    return wait_plot(page, i, "!==", before, f"{name}: moving slider {i} by {how} did not change its figure "
                                             f"within {UPDATE_TIMEOUT_S} s")


def wait_back(page, i: int, expected: str, how: str, name: str) -> None:
    wait_plot(page, i, "===", expected, f"{name}: after {how} slider {i} does not show the same figure data as "
                                        f"before at that value")
