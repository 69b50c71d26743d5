"""What every lesson gives a class beyond its prose (issue 17), checked statically: a run-time estimate for the
fast and the full path, a "what you should see" note right after every dashboard, a wrap-up of what was learned
before the exercises, and a check for every exercise (a wrong answer gets a hint, never the answer: see
test_exercises.py)."""
import json
import re
from pathlib import Path

import pytest

from seqdiff_kit import exercises

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
LESSONS = sorted(p.stem for p in NB_DIR.glob("0*.ipynb"))
# a cell that shows a dashboard: its last line displays a widget of seqdiff_kit.widgets
SHOWS_DASHBOARD = re.compile(r"(\.widget|^dashboard|^live = widgets\.LiveLossPlot)", re.M)


def cells(name):
    nb = json.loads((NB_DIR / f"{name}.ipynb").read_text(encoding="utf-8"))
    return [(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
            for c in nb["cells"]]


def shows_dashboard(kind, text):
    if kind != "code":
        return False
    last = text.strip().splitlines()[-1] if text.strip() else ""
    return bool(re.search(r"\.widget$", last)) or last == "dashboard" or "widgets.LiveLossPlot(" in text


def test_there_are_seven_lessons():
    assert len(LESSONS) == 7


@pytest.mark.parametrize("name", LESSONS)
def test_run_time_for_both_paths_after_the_parameters(name):
    cs = cells(name)
    assert cs[2][0] == "markdown" and cs[2][1].startswith("**Run time:**"), \
        "the cell after the parameters cell (where FAST is set) gives the run time"
    assert "fast path" in cs[2][1] and "full path" in cs[2][1]


@pytest.mark.parametrize("name", LESSONS)
def test_every_dashboard_says_what_to_see(name):
    cs = cells(name)
    shown = [k for k, (kind, text) in enumerate(cs) if shows_dashboard(kind, text)]
    assert shown, "a lesson has at least one dashboard"
    for k in shown:
        nxt = cs[k + 1]
        assert nxt[0] == "markdown" and nxt[1].startswith("**What you should see:**"), \
            f"cell {k} shows a dashboard; the next cell must say what to see, not {nxt[1][:60]!r}"


@pytest.mark.parametrize("name", LESSONS)
def test_a_wrap_up_before_the_exercises(name):
    cs = cells(name)
    heads = [k for k, (kind, text) in enumerate(cs) if kind == "markdown" and "## Exercises" in text]
    wraps = [k for k, (kind, text) in enumerate(cs) if kind == "markdown" and text.startswith("## What you learned")]
    assert len(wraps) == 1 and heads and wraps[0] < heads[-1]
    assert cs[wraps[0]][1].count("\n- ") >= 3, "three or more points"


@pytest.mark.parametrize("name", LESSONS)
def test_every_exercise_is_checked(name):
    cs = cells(name)
    head = max(k for k, (kind, text) in enumerate(cs) if kind == "markdown" and "## Exercises" in text)
    tail = "\n".join(text for _, text in cs[head:])
    numbered = re.findall(r"^\s*\d\. \*\*", tail, flags=re.M)
    checks = re.findall(r'exercises\.check\("([^"]+)"', tail)
    assert len(checks) == len(numbered), f"{len(numbered)} exercises, {len(checks)} checks"
    assert all(c in exercises.EXERCISES for c in checks)
    assert "the check is your explanation" not in tail
