"""The notebooks' conventions, checked statically (nbval runs them): committed without outputs or metadata,
a teaching first cell, a parameters cell, every displaying cell tagged, exercises that exist and check right.
Also the exercises module: each expected answer recomputed independently (brute force or Monte Carlo)."""
import ast
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqdiff_kit import IdealDenoiser, Schedule, exercises, ring8

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
LESSONS = ["01_forward_process", "02_ideal_denoiser", "03_training", "04_trajectory_drift", "06_digits",
           "05_sequence_aware_loss"]
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


# ---------------------------------------------------------------------------------------------- exercises
def test_every_expected_answer_checks_right_and_a_perturbed_one_wrong(capsys):
    for ex_id, ex in exercises.EXERCISES.items():
        want = ex.expected()
        assert exercises.check(ex_id, want) is True, ex_id
        if ex.kind == "int":
            wrong = want + 1
        elif ex.kind == "float":
            wrong = want * 1.2 + 0.1
        else:
            wrong = want + 0.05
        assert exercises.check(ex_id, wrong) is False, ex_id
        assert exercises.check(ex_id, None) is False
    out = capsys.readouterr().out
    assert out.count("✔") == len(exercises.EXERCISES) and "Why:" in out


def test_exercise_answers_recomputed_independently():
    lin, cos = Schedule.linear(), Schedule.cosine()
    # 01: brute-force product of (1 - beta) over t
    prod, t_half = 1.0, None
    for t, b in enumerate(lin.betas.tolist()):
        prod *= 1 - b
        if prod < 0.5:
            t_half = t
            break
    assert exercises.EXERCISES["01-alpha-bar-half"].expected() == t_half
    a = float(cos.alpha_bars[500])
    assert exercises.EXERCISES["01-snr-cosine-500"].expected() == pytest.approx(a / (1 - a), rel=1e-12)
    # 01: Monte Carlo spread of x_t's first coordinate
    g = torch.Generator().manual_seed(0)
    x0 = ring8().sample(200000, generator=g, dtype=torch.float64)
    xt = lin.add_noise(x0, torch.tensor(300), torch.randn(x0.shape, generator=g, dtype=torch.float64))
    assert exercises.EXERCISES["01-std-xt"].expected() == pytest.approx(float(xt[:, 0].std()), rel=0.01)
    # 02: the one-step DDIM sample is the posterior mean E[x0 | x_T]
    x_T = exercises.problem("02-ddim-one-step")["x_T"]
    post = IdealDenoiser(ring8(), lin).x0(x_T, torch.tensor([999]))[0]
    torch.testing.assert_close(exercises.EXERCISES["02-ddim-one-step"].expected(), post, atol=1e-6, rtol=0)
    assert exercises.EXERCISES["02-eps-origin"].expected().abs().max() < 1e-10
    # 03: x0_pred by hand; the zero model's loss by Monte Carlo
    p = exercises.problem("03-x0-pred")
    ab = float(p["schedule"].alpha_bars[p["t"]])
    by_hand = (p["x_t"] - math.sqrt(1 - ab) * p["eps"]) / math.sqrt(ab)
    torch.testing.assert_close(exercises.EXERCISES["03-x0-pred"].expected(), by_hand)
    from seqdiff_kit.losses import simple_loss
    mc = float(simple_loss(lambda x, t: torch.zeros_like(x), x0[:50000], lin, generator=g).simple)
    assert exercises.EXERCISES["03-zero-model-loss"].expected() == pytest.approx(mc, rel=0.02)
    # 04: gamma from alphas; the biased step's closed form (sqrt(1-a_s) - sqrt(a_s) sqrt(1-a_t)/sqrt(a_t)) b
    a_t, a_prev = float(lin.alpha_bars[500]), float(lin.alpha_bars[499])
    gamma = math.sqrt(float(lin.alphas[500])) * (1 - a_prev) / (1 - a_t)
    assert exercises.EXERCISES["04-gamma-500"].expected() == pytest.approx(gamma, rel=1e-12)
    q = exercises.problem("04-bias-step")
    a_t, a_s = float(lin.alpha_bars[q["t"]]), float(lin.alpha_bars[q["s"]])
    coef = math.sqrt(1 - a_s) - math.sqrt(a_s) * math.sqrt(1 - a_t) / math.sqrt(a_t)
    torch.testing.assert_close(exercises.EXERCISES["04-bias-step"].expected(), coef * q["b"], atol=1e-10, rtol=0)
    # 05: K = 1 gives (1 + lam) L_simple
    assert exercises.EXERCISES["05-k1-ratio"].expected() == pytest.approx(1 + exercises.problem("05-k1-ratio")["lam"])


def test_check_refuses_bad_arguments(capsys):
    with pytest.raises(ValueError, match="exercise_id must be one of"):
        exercises.check("99-nope", 1)
    with pytest.raises(TypeError, match="exercise_id must be a str"):
        exercises.check(1, 1)
    with pytest.raises(TypeError, match="must be an integer"):
        exercises.check("01-alpha-bar-half", "259")
    with pytest.raises(TypeError, match="single number"):
        exercises.check("01-snr-cosine-500", torch.ones(3))
    with pytest.raises(TypeError, match="answer must be a number"):
        exercises.check("02-eps-origin", object())
    assert exercises.check("02-eps-origin", torch.zeros(3)) is False
    assert "shape" in capsys.readouterr().out
