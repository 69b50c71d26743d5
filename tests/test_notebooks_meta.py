"""The notebooks' conventions, checked statically (nbval runs them): committed without outputs or metadata,
a teaching first cell, a parameters cell, every displaying cell tagged, exercises that exist (the exercises
module itself is tested in test_exercises.py)."""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from seqdiff_kit import exercises

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
LESSONS = ["01_forward_process", "02_ideal_denoiser", "03_training", "04_trajectory_drift", "06_digits",
           "05_sequence_aware_loss", "07_fixing_few_step_sampling"]
ALL = sorted(NB_DIR.glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))
import strip_notebooks  # noqa: E402

SHOW = "nbval-ignore-output"


def load(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def src(cell):
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def test_lessons_exist():
    for name in LESSONS:
        assert (NB_DIR / f"{name}.ipynb").is_file(), name


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_committed_without_outputs_or_metadata(path):
    nb = load(path)
    assert set(nb["metadata"]) <= {"kernelspec"}, f"notebook metadata must be stripped: {sorted(nb['metadata'])}"
    for k, cell in enumerate(nb["cells"]):
        assert set(cell.get("metadata", {})) <= {"tags"}, f"cell {k} has metadata {sorted(cell['metadata'])}"
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"cell {k} has outputs"
            assert cell["execution_count"] is None, f"cell {k} has an execution count"
    assert "widgets" not in json.dumps(nb["metadata"])
    # and the stripper agrees there is nothing left to strip
    assert strip_notebooks.dumps(strip_notebooks.strip(nb)) == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", LESSONS)
def test_first_cell_teaches_and_second_is_parameters(name):
    cells = load(NB_DIR / f"{name}.ipynb")["cells"]
    first = src(cells[0])
    assert cells[0]["cell_type"] == "markdown"
    assert first.startswith("# ") and "What you will learn" in first
    assert re.search(r"\*\*Time:\*\* about \d+ minutes", first), "say how long the lesson takes"
    assert "**Next:**" in first, "say what comes next"
    params = cells[1]
    assert params["cell_type"] == "code" and "parameters" in params["metadata"].get("tags", [])
    p = src(params)
    assert 'FAST = os.environ.get("SEQDIFF_FAST", "1") != "0"' in p
    assert "seqdiff_kit.set_threads(" in p and "manual_seed(SEED)" in p


def _walk_outside_functions(node):
    """ast.walk that skips function bodies (a print in a callback runs on a click, not in the cell)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield child
        yield from _walk_outside_functions(child)


def _displays(code: str) -> bool:
    """Whether a cell can show something: a bare expression as its last statement, or a print/display/check."""
    tree = ast.parse(code)
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        return True
    for node in _walk_outside_functions(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in ("print", "display", "check"):
                return True
    return False


@pytest.mark.parametrize("name", LESSONS)
def test_every_displaying_cell_is_tagged_and_no_other(name):
    for k, cell in enumerate(load(NB_DIR / f"{name}.ipynb")["cells"]):
        if cell["cell_type"] != "code":
            continue
        tagged = SHOW in cell["metadata"].get("tags", [])
        shows = _displays(src(cell))
        assert shows == tagged, (f"{name} cell {k}: " + ("displays output but lacks the nbval-ignore-output tag"
                                 if shows else "is tagged nbval-ignore-output but shows nothing: check it strictly"))
        assert "progress=True" not in src(cell) or tagged


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_ends_with_checkable_exercises(name):
    cells = load(NB_DIR / f"{name}.ipynb")["cells"]
    heads = [k for k, c in enumerate(cells) if c["cell_type"] == "markdown" and "## Exercises" in src(c)]
    assert heads, "a lesson ends with an Exercises section"
    tail = "\n".join(src(c) for c in cells[heads[-1]:])
    ids = re.findall(r'exercises\.check\("([^"]+)"', tail)
    assert len(ids) >= 2 and all(i in exercises.EXERCISES for i in ids), ids
    assert all(i.startswith(name[:2]) for i in ids)
    numbered = re.findall(r"^\s*\d\. \*\*", tail, flags=re.M)
    assert 2 <= len(numbered) <= 3, "two or three exercises"


def test_strip_script_removes_outputs_widget_state_and_keeps_tags(tmp_path):
    dirty = {"cells": [{"cell_type": "code", "execution_count": 3, "id": "a",
                        "metadata": {"tags": ["parameters", "parameters"], "collapsed": True, "scrolled": True},
                        "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi"}], "source": ["x = 1\n", "x"]},
                       {"cell_type": "markdown", "id": "b", "metadata": {"jp-MarkdownHeadingCollapsed": True},
                        "source": "# t"}],
             "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}},
                          "language_info": {"version": "3.11"}, "kernelspec": {"name": "other"}},
             "nbformat": 4, "nbformat_minor": 5}
    p = tmp_path / "x.ipynb"
    p.write_text(json.dumps(dirty))
    run = [sys.executable, str(ROOT / "scripts" / "strip_notebooks.py")]
    assert subprocess.run(run + ["--check", str(p)], capture_output=True).returncode == 1
    assert subprocess.run(run + [str(p)], capture_output=True).returncode == 0
    clean = load(p)
    assert clean["metadata"] == {"kernelspec": strip_notebooks.KERNELSPEC}
    code, mdc = clean["cells"]
    assert code["outputs"] == [] and code["execution_count"] is None and code["metadata"] == {"tags": ["parameters"]}
    assert src(code) == "x = 1\nx" and mdc["metadata"] == {}
    assert subprocess.run(run + ["--check", str(p)], capture_output=True).returncode == 0  # idempotent


# a training time stated as a constant ("about 25 s", "15 minutes on 2 cores") is wrong on most machines
_TRAINING_TIME = re.compile(r"(train\w*|updates?)[^.\n]{0,80}?\babout \d+(\.\d+)? ?(s|seconds?|minutes?)\b|"
                            r"\b\d+ (to \d+ )?minutes (on|for)\b[^.\n]{0,40}(cores?|SA|train)", re.IGNORECASE)


@pytest.mark.parametrize("name", ["03_training", "06_digits"])
def test_training_time_is_measured_on_the_spot(name):
    cells = load(NB_DIR / f"{name}.ipynb")["cells"]
    code = [src(c) for c in cells if c["cell_type"] == "code"]
    training = [c for c in code if re.search(r"\btrain(_iter)?\(", c)]
    assert training, "the lesson trains a network on some path"
    # the training cell (or the cell that picks the path) measures how long before it starts
    assert all("estimate_seconds(" in c for c in training), "every training cell measures its time first"
    stated = [m.group(0) for c in cells for m in _TRAINING_TIME.finditer(src(c))]
    assert not stated, f"training time stated as a constant: {stated}"
