"""One standalone HTML report: sections of prose, plotly figures and tables, readable offline.

plotly.js is embedded exactly once, as a single inline ``<script>`` in the page head, and every figure is written
with ``include_plotlyjs=False``; the page loads nothing from the network (no CDN, no MathJax). The file is
written atomically (a temporary file in the same folder, then ``os.replace``), so a reader never sees half a report.
A figure is a plotly ``Figure`` or a figure spec (``viz``): a spec is drawn by a call of plotly.js's
``Plotly.newPlot`` with the JSON plotly would write for it (``viz.plotly_json``), without building (or importing)
plotly's validated objects.

    from seqdiff_kit.report import Section, write_report, table_html
    write_report("runs/report.html", [
        Section("Samples", "Eight-mode ring, 10 DDIM steps.", figure=fig),
        ("Metrics", "Lower is better.", [{"loss": "simple", "mmd": 0.012}, {"loss": "SA", "mmd": 0.008}]),
    ], settings={"steps": 10, "seed": 0})
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import os
import re
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any, Mapping, Sequence

import plotly
import plotly.graph_objects as go
import plotly.offline
import torch

from ._format import format_number
from ._runtime import __version__
from ._io import atomic_write
from .viz import check_figure_spec, plotly_json

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "toImageButtonOptions": {"format": "png", "scale": 2}}


@dataclass
class Section:
    """A report section: a title, prose (plain text; blank lines split paragraphs, `backticks` become code),
    and any of a figure or a list of them (plotly Figures or figure specs, ``viz``), a table (list of dicts) and
    raw HTML, shown in that order."""

    title: str
    prose: str = ""
    figure: go.Figure | Mapping | Sequence[go.Figure | Mapping] | None = None
    table: Sequence[Mapping[str, Any]] | None = None
    html: str | None = None


# ---------------------------------------------------------------------------------------------- helpers
def table_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
               float_format: str = "{:.4g}", caption: str | None = None, align_numbers: bool = True) -> str:
    """An HTML ``<table>`` from a list of dicts (one row each). ``columns`` fixes the order (default: keys in order
    of first appearance); a missing key is an empty cell. Numbers are right-aligned (unless ``align_numbers`` is
    False, for mixed key/value columns); every cell is HTML-escaped."""
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise TypeError(f"rows must be a list of dicts, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"rows[{i}] must be a dict, got {type(row).__name__}")
    columns = list(dict.fromkeys(k for row in rows for k in row) if columns is None else columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)

    def cell(v) -> str:
        number = v.numel() == 1 if isinstance(v, torch.Tensor) else isinstance(v, Real) and not isinstance(v, bool)
        cls = ' class="num"' if align_numbers and number else ""
        return f"<td{cls}>{html.escape(format_number(v, float_format))}</td>"

    body = "".join("<tr>" + "".join(cell(row.get(c, "")) for c in columns) + "</tr>" for row in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f'<table class="data">{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table>')


def _prose_html(text: str) -> str:
    """Plain text to paragraphs: escaped, blank lines split paragraphs, `code` spans kept."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", text or "") if p.strip()]
    return "\n".join("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(p)) + "</p>" for p in paras)


def _slug(title: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
    slug, k = base, 2
    while slug in used:
        slug, k = f"{base}-{k}", k + 1
    used.add(slug)
    return slug


def _coerce_section(i: int, s) -> Section:
    """Accept a Section, a dict of its fields, or a tuple (title, prose[, content]) whose content is a Figure,
    a list of Figures, a list of dicts (a table) or an HTML string."""
    if isinstance(s, Section):
        sec = s
    elif isinstance(s, Mapping):
        unknown = set(s) - {"title", "prose", "figure", "table", "html"}
        if unknown:
            raise ValueError(f"sections[{i}] has unknown keys {sorted(unknown)}; "
                             "allowed: title, prose, figure, table, html")
        sec = Section(**s)
    elif isinstance(s, tuple) and 1 <= len(s) <= 3:
        title, prose = s[0], s[1] if len(s) > 1 else ""
        sec = Section(title, prose)
        content = s[2] if len(s) > 2 else None
        if isinstance(content, go.Figure):
            sec.figure = content
        elif isinstance(content, str):
            sec.html = content
        elif isinstance(content, Sequence) and content and all(isinstance(c, Mapping) for c in content):
            sec.table = content
        elif isinstance(content, Sequence) and content and all(isinstance(c, go.Figure) for c in content):
            sec.figure = list(content)
        elif content is not None:
            raise TypeError(f"sections[{i}][2] must be a plotly Figure, a list of Figures, a list of dicts (a table) "
                            f"or an HTML string, got {type(content).__name__}")
    else:
        raise TypeError(f"sections[{i}] must be a Section, a dict or a tuple (title, prose, content), "
                        f"got {type(s).__name__}")
    if not isinstance(sec.title, str) or not sec.title.strip():
        raise ValueError(f"sections[{i}].title must be a non-empty string, got {sec.title!r}")
    if not isinstance(sec.prose, str):
        raise TypeError(f"sections[{i}].prose must be a string, got {type(sec.prose).__name__}")
    figs = sec.figure if isinstance(sec.figure, (list, tuple)) else ([sec.figure] if sec.figure is not None else [])
    for j, f in enumerate(figs):
        if isinstance(f, Mapping):  # first: looking up go.Figure imports plotly's validated objects
            check_figure_spec(f"sections[{i}].figure[{j}]", f)
        elif not isinstance(f, go.Figure):
            raise TypeError(f"sections[{i}].figure must be a plotly Figure, a figure spec or a list of them, "
                            f"got {type(f).__name__}")
    sec.figure = list(figs)
    return sec


def _script_json(value) -> str:
    """Compact JSON that is safe inside a ``<script>`` element: ``<``, ``>`` and ``/`` written as ``\\uXXXX``
    escapes (the same string to JSON, never a closing tag to HTML), as plotly writes its figures."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("/", "\\u002f")


def figure_html(figure, div_id: str) -> str:
    """A ``<div>`` and its script drawing ``figure`` (a plotly Figure or a figure spec), plotly.js not included
    (it sits once in the page's head). ``div_id``: a letter, then letters, digits, ``-`` or ``_``; fixed ids keep
    the output reproducible. A slider figure opens at its first frame instead of racing through them (no
    auto-play)."""
    if not isinstance(div_id, str) or not re.fullmatch(r"[A-Za-z][\w-]*", div_id):
        raise ValueError(f"div_id must be a letter followed by letters, digits, '-' or '_', got {div_id!r}")
    if not isinstance(figure, Mapping):  # first: looking up go.Figure imports plotly's validated objects
        if not isinstance(figure, go.Figure):
            raise TypeError(f"figure must be a plotly Figure or a figure spec, got {type(figure).__name__}")
        return figure.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False, div_id=div_id,
                              config=PLOTLY_CONFIG, auto_play=False)
    fig = plotly_json(figure)
    layout = fig["layout"]
    size = "; ".join(f"{k}:{layout[k]}px" if isinstance(layout.get(k), Real) else f"{k}:100%"
                     for k in ("height", "width"))
    call = (f'Plotly.newPlot("{div_id}", {_script_json(fig["data"])}, {_script_json(layout)}, '
            f'{_script_json(PLOTLY_CONFIG)})')
    if fig.get("frames"):
        call += f'.then(function () {{ Plotly.addFrames("{div_id}", {_script_json(fig["frames"])}); }})'
    # the figure's size on a box around the plot's div, which fills it (and follows it with "responsive")
    return (f'<div style="{size};"><div id="{div_id}" class="plotly-graph-div" style="height:100%; width:100%;">'
            f'</div>\n<script>{call};</script></div>')


CSS = """
:root { --ink:#1d2430; --muted:#5b6473; --line:#e3e7ee; --accent:#0072B2; --bg:#f6f7f9; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 16px/1.6 Inter, "Segoe UI", Helvetica, Arial, sans-serif; }
header { background:#fff; border-bottom:1px solid var(--line); }
header .wrap, main { max-width: 1000px; margin: 0 auto; padding: 0 28px; }
header .wrap { padding-top: 28px; padding-bottom: 20px; }
h1 { font-size: 1.9rem; margin: 0 0 .2rem; letter-spacing: -.01em; }
.subtitle { color: var(--muted); margin: 0; }
nav.toc { margin-top: 14px; font-size: .92rem; }
nav.toc a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
nav.toc a:hover { text-decoration: underline; }
section { background:#fff; border:1px solid var(--line); border-radius:10px; padding: 8px 26px 22px;
          margin: 24px 0; }
h2 { font-size: 1.3rem; margin: 18px 0 8px; }
h2 .num { color: var(--muted); font-weight: 500; margin-right: .4em; }
p { margin: .5rem 0 .8rem; max-width: 72ch; }
code { font: .88em/1 "JetBrains Mono", Menlo, Consolas, monospace; background:#eef1f5; padding: 2px 5px;
       border-radius: 4px; }
.figure { margin: 12px 0; overflow-x: auto; }
table.data { border-collapse: collapse; margin: 12px 0; font-size: .92rem; font-variant-numeric: tabular-nums; }
table.data caption { caption-side: top; text-align: left; color: var(--muted); padding-bottom: 6px; }
table.data th, table.data td { padding: 6px 14px; border-bottom: 1px solid var(--line); text-align: left; }
table.data th { background:#f0f3f7; font-weight: 600; border-bottom: 2px solid #cfd6e0; }
table.data td.num { text-align: right; }
table.data tbody tr:nth-child(even) { background: #fafbfc; }
table.data tbody tr:hover { background: #eef5fb; }
footer { color: var(--muted); font-size: .85rem; text-align: center; padding: 8px 0 30px; }
"""


# ---------------------------------------------------------------------------------------------- the report
def render_report(sections: Sequence, *, title: str = "seqdiff_kit report", subtitle: str | None = None,
                  settings: Mapping[str, Any] | None = None, timestamp: bool = True) -> str:
    """The report's HTML text (see ``write_report``)."""
    if isinstance(sections, (str, bytes, Mapping)) or not isinstance(sections, Sequence):
        raise TypeError(f"sections must be a list of Section / (title, prose, content) tuples, "
                        f"got {type(sections).__name__}")
    secs = [_coerce_section(i, s) for i, s in enumerate(sections)]
    if settings is not None and not isinstance(settings, Mapping):
        raise TypeError(f"settings must be a dict of name -> value, got {type(settings).__name__}")
    env = {"seqdiff_kit": __version__, "torch": torch.__version__, "plotly": plotly.__version__}
    if timestamp:
        env["generated"] = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    rows = [{"setting": k, "value": v} for k, v in [*(settings or {}).items(), *env.items()]]
    settings_sec = _coerce_section(len(secs), Section(
        "Settings", "The run's settings and the library versions that produced this report.", table=rows))
    secs.append(settings_sec)

    used: set[str] = set()
    slugs = [_slug(s.title, used) for s in secs]
    n_fig = 0
    parts = []
    for k, (sec, slug) in enumerate(zip(secs, slugs), start=1):
        body = [f'<h2><span class="num">{k}.</span>{html.escape(sec.title)}</h2>', _prose_html(sec.prose)]
        for fig in sec.figure:  # plotly.js sits once in <head>
            body.append(f'<div class="figure">{figure_html(fig, f"fig-{n_fig}")}</div>')
            n_fig += 1
        if sec.table is not None:
            # the settings' value column mixes text and numbers: keep it left-aligned
            body.append(table_html(sec.table, align_numbers=sec is not settings_sec))
        if sec.html:
            body.append(sec.html)
        parts.append(f'<section id="{slug}">\n' + "\n".join(b for b in body if b) + "\n</section>")

    toc = " ".join(f'<a href="#{s}">{html.escape(sec.title)}</a>' for sec, s in zip(secs, slugs))
    script = f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>' if n_fig else ""
    sub = f'<p class="subtitle">{html.escape(subtitle)}</p>' if subtitle else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n{script}\n</head>\n<body>\n"
            f'<header><div class="wrap"><h1>{html.escape(title)}</h1>{sub}<nav class="toc">{toc}</nav></div></header>\n'
            f"<main>\n" + "\n".join(parts) + "\n</main>\n"
            f"<footer>Made with seqdiff_kit {html.escape(__version__)}; works offline.</footer>\n</body>\n</html>\n")


def write_report(path, sections: Sequence, *, title: str = "seqdiff_kit report", subtitle: str | None = None,
                 settings: Mapping[str, Any] | None = None, timestamp: bool = True) -> Path:
    """Write one standalone HTML report and return its path.

    ``sections``: a list of ``Section`` objects, dicts of their fields, or tuples ``(title, prose, content)``
    where content is a Figure, a list of Figures, a list of dicts (a table) or an HTML string. A final
    "Settings" section lists ``settings`` and the library versions. plotly.js (MIT) is inlined once, so the file
    works offline; the write is atomic (temporary file, then ``os.replace``)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"path must end in .html or .htm, got {str(path)!r}")
    text = render_report(sections, title=title, subtitle=subtitle, settings=settings, timestamp=timestamp)
    atomic_write(path, text)  # creates the folder
    return path
