"""Turn the lessons into an nbgrader course folder: every exercise becomes graded work.

    python scripts/make_course.py OUT [--lessons 01,04] [--points 2] [--answer-points 1]
    cd OUT && nbgrader generate_assignment 01_forward_process     # the students' copy, in OUT/release

OUT gets ``nbgrader_config.py`` and ``source/<lesson>/<lesson>.ipynb``, the instructor's copy of each lesson. The
stub of each function to write (``seqdiff_kit.exercises.CODE``) becomes a solution cell whose body, the teacher's
solution from ``teacher/solutions.py``, sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader
puts ``raise NotImplementedError()`` there in the students' copy); after its ``exercises.check`` comes a locked,
autograded test cell worth ``--points``: the cases the check shows as visible asserts, the edge cases (t = 0,
t = T-1, the last step, the mask) between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``. Each numeric
exercise's ``answer = None`` becomes a solution region holding the value the kit computes
(``exercises.EXERCISES[id].expected()``, at build time), followed by a test cell worth ``--answer-points``.
Everything else of the lesson is unchanged; ``nbgrader autograde`` runs it whole, so the kernel must import
seqdiff_kit. Building the folder needs no nbgrader; running it needs the ``teach`` extra.
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from seqdiff_kit import exercises  # noqa: E402

STUB = "raise NotImplementedError  # your code here"
CHECK = re.compile(r'exercises\.check\("([^"]+)",\s*(\w+)\)')
ANSWER = re.compile(r"^answer = None.*$", flags=re.M)
CONFIG = '''c = get_config()  # noqa: F821 - nbgrader's config loader defines it
c.CourseDirectory.course_id = "seqdiff_kit"
c.Execute.timeout = 600  # a lesson's slowest cell (training on the full path) stays under it
'''


def src(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def code_exercise_of(name: str):
    """The coding exercise whose function is ``name``, or None."""
    return next((ex for ex in exercises.CODE.values() if ex.signature.split("(")[0] == name), None)


def solution_body(name: str) -> str:
    """The body of the teacher's solution ``name`` (indented as in its def)."""
    text = exercises.solution_source(name)
    fn = ast.parse(text).body[0]
    return "\n".join(text.splitlines()[fn.body[0].lineno - 1:])


def meta(cell: dict, grade_id: str, *, solution: bool = False, points: int | None = None) -> dict:
    out = copy.deepcopy(cell)
    out["metadata"]["nbgrader"] = {"grade": points is not None, "grade_id": grade_id, "locked": points is not None,
                                   "schema_version": 3, "solution": solution, "task": False,
                                   **({"points": points} if points is not None else {})}
    return out


def answer_code(ex_id: str) -> str:
    """``answer = <the expected value>`` as code: a number, words, or a float64 tensor."""
    value = exercises.EXERCISES[ex_id].expected()
    if hasattr(value, "tolist"):
        return f"answer = torch.tensor({value.tolist()!r}, dtype=torch.float64)"
    return f"answer = {list(value) if isinstance(value, tuple) else value!r}"


def test_cell(ex_id: str, name: str, points: int) -> dict:
    if ex_id in exercises.EXERCISES:
        body = f'ok, message = exercises.grade("{ex_id}", {name})\nassert ok, message'
    else:
        body = (f'# autograded: the cases exercises.check shows; the edge cases are hidden\n'
                f'ok, message = exercises.grade("{ex_id}", {name}, part="basic")\nassert ok, message\n'
                f'### BEGIN HIDDEN TESTS\nok, message = exercises.grade("{ex_id}", {name}, part="edge")\n'
                f'assert ok, message\n### END HIDDEN TESTS')
    cell = {"cell_type": "code", "execution_count": None, "id": f"test-{ex_id}", "metadata": {}, "outputs": [],
            "source": body}
    return meta(cell, f"test-{ex_id}", points=points)


def to_assignment(nb: dict, points: int, answer_points: int) -> tuple[dict, list[str]]:
    """The instructor's copy of a lesson and the ids of its graded exercises."""
    cells, graded = [], []
    for cell in nb["cells"]:
        text = src(cell) if cell["cell_type"] == "code" else ""
        stub = re.match(r"def (\w+)\(", text)
        ex = code_exercise_of(stub.group(1)) if stub and STUB in text else None
        if ex is not None:
            indent = re.search(r"^( *)" + re.escape(STUB), text, flags=re.M).group(1)
            region = f"{indent}### BEGIN SOLUTION\n{solution_body(stub.group(1))}\n{indent}### END SOLUTION"
            cell = meta({**cell, "source": text.replace(indent + STUB, region)}, f"code-{ex.id}", solution=True)
        check = CHECK.search(text)
        if check and check.group(1) in exercises.EXERCISES and ANSWER.search(text):
            region = f"### BEGIN SOLUTION\n{answer_code(check.group(1))}\n### END SOLUTION"
            cell = meta({**cell, "source": ANSWER.sub(lambda m: region, text)}, f"answer-{check.group(1)}",
                        solution=True)
        cells.append(cell)
        if check and (check.group(1) in exercises.CODE or check.group(1) in exercises.EXERCISES):
            worth = points if check.group(1) in exercises.CODE else answer_points
            cells.append(test_cell(check.group(1), check.group(2), worth))
            graded.append(check.group(1))
    return {**nb, "cells": cells}, graded


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="the course folder to write (nbgrader's course root)")
    p.add_argument("--lessons", default="", help="comma-separated lesson numbers (default: every lesson with a "
                   "coding exercise), e.g. 01,04")
    p.add_argument("--points", type=int, default=2, help="points per coding exercise (default 2)")
    p.add_argument("--answer-points", type=int, default=1, help="points per numeric exercise (default 1)")
    args = p.parse_args(argv)
    for flag, value in (("--points", args.points), ("--answer-points", args.answer_points)):
        if value < 1:
            p.error(f"{flag} must be a positive integer, got {value}")
    wanted = [w.strip() for w in args.lessons.split(",") if w.strip()]
    lessons = [nb for nb in sorted((ROOT / "notebooks").glob("0*.ipynb")) if not wanted or nb.name[:2] in wanted]
    unknown = sorted(set(wanted) - {nb.name[:2] for nb in lessons})
    if unknown:
        p.error(f"--lessons must name lessons of notebooks/ (01 to 07), got {unknown}")
    if args.out.exists() and any(args.out.iterdir()):
        p.error(f"the course folder {args.out} exists and is not empty: give a new or empty folder")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nbgrader_config.py").write_text(CONFIG, encoding="utf-8")
    for path in lessons:
        nb, graded = to_assignment(json.loads(path.read_text(encoding="utf-8")), args.points, args.answer_points)
        if not graded:
            continue
        folder = args.out / "source" / path.stem
        folder.mkdir(parents=True)
        (folder / path.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        total = sum(args.points if g in exercises.CODE else args.answer_points for g in graded)
        print(f"{path.stem}: {len(graded)} graded exercises ({', '.join(graded)}), {total} points")
    print(f"next: cd {args.out} && nbgrader generate_assignment <lesson>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
