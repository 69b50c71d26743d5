"""The standalone HTML report: plotly.js inlined once, nothing fetched from the network, sections and tables
present and escaped, atomic and reproducible writes."""
import json
import os
import re

import numpy as np
import plotly.graph_objects as go
import plotly.io
import plotly.offline
import pytest
import torch

from seqdiff_kit import IdealDenoiser, Schedule, ring8
from seqdiff_kit import viz
from seqdiff_kit.drift import paired_trajectories
from seqdiff_kit.report import Section, figure_html, render_report, table_html, write_report

PLOTLYJS = plotly.offline.get_plotlyjs()


@pytest.fixture(scope="module")
def figures():
    mix, sch = ring8(), Schedule.linear(40)
    ideal = IdealDenoiser(mix, sch)
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(30, 2, generator=g)
    pair = paired_trajectories(lambda x, t: 0.9 * ideal(x, t), ideal, x_T, sch, 3, eta=1.0, generator=g)
    tr_i, tr_l = pair.reference, pair.model
    slider = viz.trajectory_slider_figure({"ideal": tr_i, "learned (simple)": tr_l}, mixture=mix, grid_size=12)
    drift = (tr_i.x - tr_l.x).norm(dim=-1).mean(1)
    curves = viz.curves_figure(np.arange(len(drift)), {"simple": drift}, "Drift", "step", "distance")
    return slider, curves


ROWS = [{"loss": "simple", "K": 1, "mmd": 0.0123456, "note": "<b>bold?</b>"},
        {"loss": "SA", "K": 2, "mmd": torch.tensor(0.00812), "extra": True}]


def outside_plotlyjs(text: str) -> str:
    return text.replace(PLOTLYJS, "")


def test_report_is_standalone_and_complete(tmp_path, figures):
    slider, curves = figures
    path = write_report(tmp_path / "sub" / "report.html", [
        Section("Sampling paths", "Three DDPM steps.\n\nSegments join paired samples; see `x_T`.", figure=slider),
        ("Drift per step", "Distance to the ideal path.", curves),
        ("Metrics table", "Lower is better.", ROWS),
    ], title="Test report", settings={"seed": 7, "dataset": "ring8"})
    assert path == tmp_path / "sub" / "report.html" and path.is_file()
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # plotly.js exactly once, inline; nothing loaded from the network
    assert text.count(PLOTLYJS) == 1
    assert text.count("plotly.js v") == PLOTLYJS.count("plotly.js v")
    rest = outside_plotlyjs(text)
    assert "cdn.plot.ly" not in rest and "mathjax" not in rest.lower()
    assert not re.search(r"<script[^>]*\bsrc\s*=", text)
    assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']?https?:", rest)
    # one div and one newPlot per figure, the slider's frames included, and no autoplay
    assert rest.count("Plotly.newPlot(") == 2
    assert 'id="fig-0"' in rest and 'id="fig-1"' in rest
    assert "addFrames" in rest and "Plotly.animate(" not in rest
    # section titles (numbered, in a table of contents), prose paragraphs, code spans, settings
    for title in ("Sampling paths", "Drift per step", "Metrics table", "Settings"):
        assert f"{title}</h2>" in rest and f">{title}</a>" in rest
    assert "<p>Three DDPM steps.</p>" in rest and "<code>x_T</code>" in rest
    assert "<td>seed</td>" in rest and "<td>7</td>" in rest and "<td>ring8</td>" in rest
    assert f"<td>{torch.__version__}</td>" in rest
    # table values, formatted and escaped
    assert '<td class="num">0.01235</td>' in rest and '<td class="num">0.00812</td>' in rest
    assert "<td>SA</td>" in rest and "&lt;b&gt;bold?&lt;/b&gt;" in rest and "<b>bold?" not in rest
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_report_without_figures_has_no_plotlyjs(tmp_path):
    path = write_report(tmp_path / "plain.html", [("Only a table", "", ROWS[:1])], timestamp=False)
    text = path.read_text()
    assert "<script" not in text and "plotly.js v" not in text
    assert "Only a table</h2>" in text and "generated" not in text


def test_table_html_columns_and_cells():
    html = table_html(ROWS, caption="runs <1>")
    heads = re.findall(r"<th>(.*?)</th>", html)
    assert heads == ["loss", "K", "mmd", "note", "extra"]  # keys in order of first appearance
    rows = re.findall(r"<tr>(.*?)</tr>", html)[1:]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows]
    assert cells[0] == ["simple", "1", "0.01235", "&lt;b&gt;bold?&lt;/b&gt;", ""]
    assert cells[1] == ["SA", "2", "0.00812", "", "True"]
    assert "<caption>runs &lt;1&gt;</caption>" in html
    assert html.count('class="num"') == 4 and 'class="num"' not in table_html(ROWS, align_numbers=False)
    only = table_html(ROWS, columns=["mmd", "loss"], float_format="{:.2e}")
    assert re.findall(r"<th>(.*?)</th>", only) == ["mmd", "loss"] and "1.23e-02" in only
    with pytest.raises(TypeError, match="rows"):
        table_html({"a": 1})
    with pytest.raises(TypeError, match=r"rows\[1\]"):
        table_html([{"a": 1}, 3])


def test_report_escapes_titles_and_makes_unique_anchors():
    text = render_report([("A <script>", "x < y"), ("A <script>", ""), {"title": "Dict form", "table": ROWS}],
                         timestamp=False)
    assert "A &lt;script&gt;</h2>" in text and "<p>x &lt; y</p>" in text
    assert 'id="a-script"' in text and 'id="a-script-2"' in text and "Dict form</h2>" in text


def test_write_is_atomic_and_reproducible(tmp_path, figures):
    _, curves = figures
    target = tmp_path / "r.html"
    sections = [("Drift", "", curves)]
    write_report(target, sections, timestamp=False)
    first = target.read_bytes()
    write_report(target, sections, timestamp=False)
    assert target.read_bytes() == first  # same inputs, same bytes (fixed div ids, no timestamp)
    # a failing render leaves the old file untouched and no temporary file behind
    with pytest.raises(TypeError, match=r"sections\[1\]"):
        write_report(target, [("ok", "", curves), 42])
    assert target.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_write_report_rejects_bad_arguments(tmp_path, figures):
    with pytest.raises(ValueError, match="path must end in .html"):
        write_report(tmp_path / "r.txt", [("a", "")])
    with pytest.raises(TypeError, match="path"):
        write_report(3, [("a", "")])
    with pytest.raises(TypeError, match="sections"):
        write_report(tmp_path / "r.html", "not a list")
    with pytest.raises(TypeError, match=r"sections\[0\]\[2\]"):
        write_report(tmp_path / "r.html", [("a", "", 3.5)])
    with pytest.raises(ValueError, match=r"sections\[0\]\.title"):
        write_report(tmp_path / "r.html", [("", "")])
    with pytest.raises(ValueError, match="unknown keys"):
        write_report(tmp_path / "r.html", [{"title": "a", "figures": []}])
    with pytest.raises(TypeError, match="settings"):
        write_report(tmp_path / "r.html", [("a", "")], settings=[1, 2])
    assert not any(tmp_path.iterdir())


def _drawn(html_text: str, div_id: str) -> dict:
    """The data, layout and frames a report's script hands to plotly.js for one figure, parsed."""
    dec = json.JSONDecoder()
    i = re.search(r'Plotly\.newPlot\(\s*"' + div_id + r'",\s*', html_text).end()
    out = {}
    for key in ("data", "layout", "config"):
        out[key], i = dec.raw_decode(html_text, i)
        i = re.compile(r"\s*,?\s*").match(html_text, i).end()
    frames = re.compile(r"Plotly\.addFrames\([\"']" + div_id + r"[\"'],\s*").search(html_text, i)
    if frames:
        out["frames"] = dec.raw_decode(html_text, frames.end())[0]
    return out


def test_a_figure_spec_is_drawn_as_plotly_draws_its_figure(tmp_path):
    """A spec goes into the page without plotly's figure objects, and plotly.js receives the same figure
    (data, layout with the template, frames, config) as from plotly's own HTML for ``go.Figure(spec)``."""
    mix, sch = ring8(), Schedule.linear(40)
    ideal = IdealDenoiser(mix, sch)
    pair = paired_trajectories(lambda x, t: 0.9 * ideal(x, t), ideal, torch.randn(20, 2), sch, 3, eta=1.0,
                               generator=torch.Generator().manual_seed(3))
    specs = [viz.trajectory_slider_spec({"ideal": pair.reference, "simple": pair.model}, mixture=mix,
                                        schedule=sch, grid_size=10, title="paths </script> <b>"),
             viz.curves_spec([1, 2, 3], {"SA": [0.3, 0.2, 0.1]}, "drift", reference=0.2)]
    text = write_report(tmp_path / "r.html", [Section("Specs", "", figure=specs)], timestamp=False).read_text()
    for k, spec in enumerate(specs):
        mine = _drawn(text, f"fig-{k}")
        theirs = _drawn(go.Figure(spec).to_html(full_html=False, include_plotlyjs=False, div_id="x",
                                                 config={"displaylogo": False}), "x")
        assert mine["data"] == theirs["data"] and mine["layout"] == theirs["layout"]
        assert mine.get("frames") == theirs.get("frames") and (k == 0) == ("frames" in mine)
        assert mine["config"]["displaylogo"] is False and mine["config"]["responsive"] is True
    assert 'style="height:660px; width:640px;"' in text  # the slider's size, as plotly sizes its div
    # a title cannot close the script early: every "<" and "/" inside the JSON is escaped
    scripts = [s for s in re.findall(r"<script[^>]*>(.*?)</script>", outside_plotlyjs(text), re.S) if s]
    assert len(scripts) == 2 and not any("</" in s for s in scripts)
    assert "\\u003c\\u002fscript\\u003e" in scripts[0]
    with pytest.raises(TypeError, match=r"sections\[0\]\.figure\[1\] must be a figure spec"):
        render_report([Section("bad", figure=[specs[1], {"data": 3}])])
    assert figure_html(go.Figure(specs[1]), "y").count("Plotly.newPlot(") == 1  # a Figure: plotly's own HTML


def test_figure_html_checks_its_arguments():
    spec = viz.curves_spec([1, 2], {"a": [1.0, 2.0]})
    with pytest.raises(ValueError, match="div_id"):
        figure_html(spec, 'x"); alert(1); ("')
    with pytest.raises(TypeError, match="figure must be a plotly Figure or a figure spec"):
        figure_html([spec], "fig-0")
    with pytest.raises(TypeError, match="spec must be a figure spec"):
        figure_html({"layout": {}}, "fig-0")
