"""The nbgrader course of scripts/make_course.py, round-tripped through nbgrader itself, offline: the instructor's
copy marks the solutions (the functions to write and the numeric answers) and the hidden tests;
``generate_assignment`` hides both; ``autograde`` gives a filled-in copy full marks and takes from a copy with one
planted bug exactly that exercise's points."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from seqdiff_kit import exercises

ROOT = Path(__file__).resolve().parent.parent
LESSON = "01_forward_process"
NBGRADER = Path(sys.executable).with_name("nbgrader")
pytestmark = pytest.mark.slow  # three runs of lesson 1 under nbgrader


def run(cmd, cwd):
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "SEQDIFF_FAST": "1"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout + out.stderr


def text_of(nb):
    return "\n".join(src(c) for c in nb["cells"])


def src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def index_wraps(x0, t, noise, schedule):
    """The "edge" student's add_noise: alpha_bars[t] wraps around at t = -1 (the clean data)."""
    a = schedule.alpha_bars[t].reshape(-1, *[1] * (x0.ndim - 1)).to(x0.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def fill(release: dict, source: dict, bug: tuple[str, str, str] | None) -> dict:
    """The students' copy with every solution region filled in as the instructor's copy has it; ``bug``
    ``(grade_id, old, new)``: one edit of that cell's solution."""
    solved = {c["metadata"]["nbgrader"]["grade_id"]: src(c) for c in source["cells"]
              if c["metadata"].get("nbgrader", {}).get("solution")}
    nb = json.loads(json.dumps(release))
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in solved:
            text = re.sub(r"^ *### (BEGIN|END) SOLUTION\n", "", solved[grade_id], flags=re.M)
            if bug is not None and bug[0] == grade_id:
                assert bug[1] in text
                text = text.replace(bug[1], bug[2])
            cell["source"] = text
    return nb


def test_nbgrader_round_trip(tmp_path, monkeypatch):
    # nbgrader's gradebook runs the `alembic` command: the one installed beside this Python
    monkeypatch.setenv("PATH", f"{NBGRADER.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    course = tmp_path / "course"
    run([sys.executable, ROOT / "scripts" / "make_course.py", course, "--lessons", "01", "--points", "3"], tmp_path)
    source = json.loads((course / "source" / LESSON / f"{LESSON}.ipynb").read_text())
    assert "answer = 259" in text_of(source)  # a numeric exercise's answer, as the kit computes it
    graded = {c["metadata"]["nbgrader"]["grade_id"]: c for c in source["cells"] if "nbgrader" in c["metadata"]}
    assert set(graded) == {f"{kind}-01-{name}" for kind, name in [
        ("code", "alpha-bars"), ("code", "add-noise"), ("test", "alpha-bars"), ("test", "add-noise"),
        *[(kind, name) for kind in ("answer", "test") for name in ("alpha-bar-half", "snr-cosine-500", "std-xt")]]}
    assert "### BEGIN SOLUTION" in src(graded["code-01-add-noise"]) and graded["test-01-add-noise"]["metadata"][
        "nbgrader"]["points"] == 3
    assert "### BEGIN HIDDEN TESTS" in src(graded["test-01-add-noise"])

    run([NBGRADER, "generate_assignment", LESSON, "--force"], course)
    release_path = course / "release" / LESSON / f"{LESSON}.ipynb"
    text = release_path.read_text()
    for hidden in ("BEGIN SOLUTION", "cumprod", "BEGIN HIDDEN", 'part="edge"'):
        assert hidden not in text, hidden  # the students' copy has neither the solutions nor the hidden tests
    assert text.count("YOUR CODE HERE") == 5 and 'part=\\"basic\\"' in text and "answer = 259" not in text

    release = json.loads(text)
    planted = {"full": None,  # add_noise with the wrong sign; with alpha_bars[t], wrong only at t = -1 (hidden tests)
               "bug": ("code-01-add-noise", "(1 - a).sqrt() * noise", "- (1 - a).sqrt() * noise"),
               "edge": ("code-01-add-noise", "schedule.alpha_bar(t)", "schedule.alpha_bars[t]")}
    for student, bug in planted.items():
        folder = course / "submitted" / student / LESSON
        folder.mkdir(parents=True)
        (folder / f"{LESSON}.ipynb").write_text(json.dumps(fill(release, source, bug)))
    run([NBGRADER, "autograde", LESSON, "--create", "--force"], course)

    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: gb.find_submission(LESSON, s).score for s in planted}
        cells = {s: {g.name: g.score for g in gb.find_submission_notebook(LESSON, LESSON, s).grades}
                 for s in planted}
        assert gb.find_submission(LESSON, "full").max_score == 2 * 3 + 3 * 1
    assert scores == {"full": 9, "bug": 6, "edge": 6}
    assert cells["bug"] == cells["edge"] == {"test-01-alpha-bars": 3, "test-01-add-noise": 0, "test-01-alpha-bar-half": 1,
                                             "test-01-snr-cosine-500": 1, "test-01-std-xt": 1}
    feedback = (course / "autograded" / "bug" / LESSON / f"{LESSON}.ipynb").read_text()
    assert "wrong sign" in feedback  # the grader's record keeps the one-line reading of the mistake
    edge = (course / "autograded" / "edge" / LESSON / f"{LESSON}.ipynb").read_text()
    assert 'part=\\"edge\\"' in edge and "alpha_bars[-1] is the LAST timestep" in edge  # hidden tests put back
    assert exercises.grade("01-add-noise", index_wraps, part="basic")[0]  # the visible test alone passes it
