"""What conftest.py and the browser tests share: the repository's folders and the JavaScript that reads plotly
data (pasted into the functions the tests hand to ``page.evaluate``)."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
APP = REPO / "app"

# Two declarations for the body of a JS function:
# ``norm(v)``: plotly.py sends arrays base64-encoded ({dtype, bdata, shape}); plotly.js decodes the traces it draws
# in place (adding _inputArray) but keeps the frames as sent, so compare the encoded payloads, or the plain arrays
# (typed arrays become plain ones).
# ``hash(s)``: a short fingerprint of a string (32-bit FNV-1a and the length), so only that crosses to Python.
JS_NORM_AND_HASH = """
    const norm = (u) => {
        if (u === undefined || u === null) return null;
        if (ArrayBuffer.isView(u)) return Array.from(u);
        if (Array.isArray(u)) return u.map(norm);
        if (typeof u === 'object' && 'bdata' in u) return [u.dtype, u.shape === undefined ? null : String(u.shape), u.bdata];
        return u;
    };
    const hash = (s) => {
        let h = 2166136261;
        for (let k = 0; k < s.length; k++) { h ^= s.charCodeAt(k); h = Math.imul(h, 16777619); }
        return (h >>> 0).toString(16) + ':' + s.length;
    };"""


# Every legend entry drawn as a line, per figure under a root selector: [figure index, name, colour]. The
# figures are marked (data-seqdiff-fig) so that hidden_series can screenshot each one.
JS_LINE_SERIES = """(root) => {
    const out = [];
    document.querySelectorAll(root + ' .js-plotly-plot').forEach((gd, k) => {
        gd.setAttribute('data-seqdiff-fig', String(k));
        (gd._fullData || []).forEach(t => {
            if (t.type === 'scatter' && t.visible === true && t.showlegend !== false && (t.mode || '').includes('lines'))
                out.push([k, String(t.name), t.line.color]);
        });
    });
    return out;
}"""

# Axes that say nothing of what they measure (one with tick labels and no title; panels whose x or y axes have
# no title at all), and axis titles that are raw column keys
JS_AXIS_TITLES = """(root) => {
    const out = [];
    document.querySelectorAll(root + ' .js-plotly-plot').forEach((gd, k) => {
        const L = gd._fullLayout;
        if (!L) return;
        const fig = ((L.title && L.title.text) || '').slice(0, 60);
        const axes = Object.keys(L).filter(a => /^[xy]axis\\d*$/.test(a) && L[a].visible);
        const title = (a) => (L[a].title && L[a].title.text) || '';
        // panels side by side may share one title per letter (the first panel's y), never none at all
        const titled = (letter) => axes.some(a => a[0] === letter && title(a));
        axes.forEach(a => {
            const ax = L[a], text = title(a);
            if (!text && (ax.showticklabels || !titled(a[0])))
                out.push(`figure ${k} (${fig}): ${a} has no title` + (ax.showticklabels ? ' (it has tick labels)' : ''));
            if (/^(mmd|sw|loglik_gap|loglik|fd|std_ratio)$/.test(text)) out.push(`figure ${k} (${fig}): ${a} is titled with the key ${text}`);
        });
    });
    return out;
}"""

MIN_SERIES_PIXELS = 30


def _rgb(color: str) -> tuple[int, int, int] | None:
    import re

    if color.startswith("#") and len(color) == 7:
        return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
    m = re.match(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)", color)
    return tuple(round(float(v)) for v in m.groups()) if m else None


def hidden_series(page, root: str) -> list[str]:
    """Legend entries (line series) of the figures under ``root`` whose colour shows on fewer than
    ``MIN_SERIES_PIXELS`` pixels of the figure's screenshot (legend hidden): a curve drawn under another one."""
    import io

    import numpy as np
    from PIL import Image

    by_figure: dict[int, list] = {}
    for k, name, color in page.evaluate(JS_LINE_SERIES, root):
        by_figure.setdefault(k, []).append((name, color))
    out = []
    for k, series in by_figure.items():
        if len(series) < 2:
            continue
        plot = page.locator(f'{root} [data-seqdiff-fig="{k}"]').first
        plot.scroll_into_view_if_needed()
        plot.evaluate("gd => gd.querySelectorAll('.legend').forEach(l => l.style.visibility = 'hidden')")
        try:
            pixels = np.asarray(Image.open(io.BytesIO(plot.screenshot())).convert("RGB")).astype(int)
        finally:
            plot.evaluate("gd => gd.querySelectorAll('.legend').forEach(l => l.style.visibility = '')")
        title = page.evaluate("gd => ((gd._fullLayout.title || {}).text || '').slice(0, 60)", plot.element_handle())
        for name, color in series:
            rgb = _rgb(color)
            if rgb is None:
                continue
            n = int((np.abs(pixels - np.array(rgb)).sum(-1) < 40).sum())
            if n < MIN_SERIES_PIXELS:
                out.append(f"figure {k} ({title}): '{name}' ({color}) shows on {n} pixels: hidden under another series")
    return out
