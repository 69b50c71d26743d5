"""A corpus of hostile and careless ``seqdiff`` command lines (issue 16's measure).

Every case runs ``seqdiff_kit.cli.main(argv)`` in this process (a subprocess costs seconds of torch import) with
its own folder as the working directory, and is judged:

- a case that must be refused: a non-zero exit, exactly one line on stderr, starting ``seqdiff: error:`` and
  naming the culprit (an option, a key), and no traceback;
- a case that must work (a resume, ``--overwrite``, what a killed run leaves behind): exit status 0;
- in both, nothing lost: the check after the run passes (an earlier run intact, the history whole, no temporary
  files left, no second writer reporting success over the first).

``python tests/test_cli_hostile.py`` runs every case (the slow ones too) against the ``seqdiff_kit`` first on
``PYTHONPATH`` and prints the tally; ``--limit-gb`` caps the address space so that code without upper bounds
fails fast instead of swapping, ``--timeout`` stops a case that runs away.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from seqdiff_kit import cli

FORMAT = "seqdiff_kit-checkpoint"
TRAIN = ["train", "--dataset", "ring8", "--steps", "3", "--batch-size", "16", "--quiet", "--threads", "1"]
SAMPLE = ["sample", "--checkpoint", "{d}/c", "--steps", "3", "--n", "8", "--threads", "1"]
COMPARE = ["compare", "{a}", "{d}/c", "--steps", "2", "--points", "16", "--threads", "1"]
DEMO = ["demo", "--points", "16", "--quiet", "--threads", "1"]
LONG_NAME = "n" * 300                       # one component over NAME_MAX (255 on Linux and macOS)
LONG_PATH = "/".join(["p" * 200] * 25)       # 5000 characters: over PATH_MAX (4096)
NEAR_MAX = "s" * 240 + ".npz"               # fits NAME_MAX, but the temporary file beside it does not
BACKGROUND_STEPS = 60                       # the first writer of a concurrency case


# ---------------------------------------------------------------------- a case and its context
@dataclass
class Ctx:
    d: Path          # this case's folder (and working directory)
    base: Path       # the shared runs: a (simple loss), b (SA loss), g (grid25), all 3 steps, seed 0

    def fmt(self, argv):
        return [s.format(d=self.d, a=self.base / "a", b=self.base / "b", g=self.base / "g") for s in argv]

    def copy_run(self, name="a", to="c"):
        shutil.copytree(self.base / name, self.d / to)
        return self.d / to


@dataclass
class Case:
    name: str
    argv: list
    must: str = "refuse"                   # "refuse" or "work"
    needles: tuple = ()                    # words the error line must contain
    setup: Callable | None = None          # setup(ctx)
    keep: tuple = ()                       # paths (relative to the case folder) whose bytes must not change
    check: Callable | None = None          # check(ctx) -> None, or what was lost
    background: list | None = None         # a first writer running in a thread while argv runs
    slow: bool = False


@dataclass
class Outcome:
    verdict: str                           # clean | vague | traceback | loss | wrong
    rc: object = None
    err: str = ""
    detail: str = ""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class _Timeout(BaseException):
    pass


def _call_main(argv):
    """(exit status or the exception that escaped, stdout, stderr), warnings printed as the console would."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        warnings.simplefilter("default")
        try:
            rc = cli.main(argv)
        except SystemExit as exc:
            rc = exc.code
        except (_Timeout, KeyboardInterrupt):
            raise
        except BaseException:  # noqa: BLE001 - what escaped main is exactly what we count
            rc = traceback.format_exc()
    text = err.getvalue() + "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                                    for w in caught)
    return rc, out.getvalue(), text


def _snapshot(root: Path, rels) -> dict:
    snap = {}
    for rel in rels:
        p = root / rel
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else []
        for f in files:
            if f.name.endswith(".lock"):
                continue
            snap[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return snap


def run_case(case: Case, ctx: Ctx) -> Outcome:
    """Set up, run and judge one case (the working directory is the case folder meanwhile)."""
    ctx.d.mkdir(parents=True, exist_ok=True)
    old_cwd = os.getcwd()
    os.chdir(ctx.d)
    t0 = time.perf_counter()
    try:
        if case.setup:
            case.setup(ctx)
        before = _snapshot(ctx.d, case.keep)
        bg = None
        if case.background is not None:
            bg = _Background(ctx.fmt(case.background), (ctx.d / "x" / ".seqdiff.lock", ctx.d / "x" / "model.json"))
            bg.start()
        try:
            rc, out, err = _call_main(ctx.fmt(case.argv))
        finally:
            if bg is not None:
                bg.join()
        seconds = time.perf_counter() - t0
        if isinstance(rc, str):
            return Outcome("traceback", rc=None, err=err, detail=rc.strip().splitlines()[-1], seconds=seconds)
        lost = []
        after = _snapshot(ctx.d, case.keep)
        if case.keep and after != before:
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            lost.append(f"changed or removed: {', '.join(changed)}")
        if bg is not None:
            if isinstance(bg.rc, str):
                return Outcome("traceback", rc=rc, err=err, detail="first writer: " + bg.rc.strip().splitlines()[-1],
                               seconds=seconds)
            if bg.rc == 0 and rc == 0:
                lost.append("two writers on one --out both reported success: one run is lost")
        if case.check:
            try:
                problem = case.check(ctx)
            except Exception as exc:  # noqa: BLE001 - a check that cannot even read the result is a loss
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                lost.append(problem)
        if "Traceback (most recent call last)" in err:
            return Outcome("traceback", rc=rc, err=err, detail=err.strip().splitlines()[-1], seconds=seconds)
        if case.must == "work" and rc != 0 and not (case.keep and after != before):
            return Outcome("wrong", rc=rc, err=err, detail=f"exit {rc}: {err.strip()[:300]}", seconds=seconds)
        if lost:
            return Outcome("loss", rc=rc, err=err, detail="; ".join(lost), seconds=seconds)
        if case.must == "work":
            if rc == 0:
                return Outcome("clean", rc=rc, err=err, seconds=seconds)
            return Outcome("wrong", rc=rc, err=err, detail=f"exit {rc}: {err.strip()[:300]}", seconds=seconds)
        lines = err.strip().splitlines()
        if rc in (0, None):
            return Outcome("wrong", rc=rc, err=err, detail="accepted (exit 0)", seconds=seconds)
        if len(lines) != 1 or not lines[0].startswith("seqdiff: error: "):
            return Outcome("wrong", rc=rc, err=err, detail=f"{len(lines)} lines on stderr: {err.strip()[:300]!r}",
                           seconds=seconds)
        missing = [n for n in case.needles if n.lower() not in lines[0].lower()]
        if missing:
            return Outcome("vague", rc=rc, err=err, detail=f"does not name {missing}: {lines[0]}", seconds=seconds)
        return Outcome("clean", rc=rc, err=err, seconds=seconds)
    finally:
        os.chdir(old_cwd)


class _Background(threading.Thread):
    """A first writer: ``cli.main(argv)`` in a thread; ``start`` returns once one of ``markers`` is non-empty (its
    lock, or its first checkpoint where there is no lock)."""

    def __init__(self, argv, markers):
        super().__init__(daemon=True)
        self.argv, self.markers, self.rc = argv, markers, None

    def run(self):
        try:
            self.rc = cli.main(self.argv)
        except BaseException:  # noqa: BLE001
            self.rc = traceback.format_exc()

    def start(self):
        super().start()
        deadline = time.monotonic() + 60
        # a marker counts once it holds something: the lock file exists a moment before its flock is taken, and
        # its holder's pid is written after it, so an empty lock file could still go to the second writer
        while not any(_nonempty(m) for m in self.markers) and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.002)


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


# ---------------------------------------------------------------------- checkpoint surgery
def _read_pair(stem: Path):
    from safetensors.torch import load

    return load(stem.with_suffix(".safetensors").read_bytes()), json.loads(stem.with_suffix(".json").read_text())


def _write_pair(stem: Path, tensors, meta):
    """A pair consistent in every way the format checks (embedded config, SHA-256), whatever ``meta`` holds."""
    from safetensors.torch import save

    meta = {k: v for k, v in meta.items() if k not in ("weights_file", "weights_sha256")}
    blob = save(tensors, metadata={"config": json.dumps(meta, sort_keys=True)})
    stem.with_suffix(".safetensors").write_bytes(blob)
    meta.update(weights_file=stem.name + ".safetensors", weights_sha256=hashlib.sha256(blob).hexdigest())
    stem.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True))


def crafted(edit, run="a"):
    """Setup: copy a run to ``c`` and rewrite both files consistently after ``edit(meta, tensors)``."""
    def setup(ctx):
        stem = ctx.copy_run(run) / "model"
        tensors, meta = _read_pair(stem)
        edit(meta, tensors)
        _write_pair(stem, tensors, meta)
    return setup


def json_edited(edit, run="a"):
    """Setup: copy a run to ``c`` and hand-edit its JSON only."""
    def setup(ctx):
        js = ctx.copy_run(run) / "model.json"
        meta = json.loads(js.read_text())
        edit(meta)
        js.write_text(json.dumps(meta, indent=2))
    return setup


def raw_file(name, data: bytes | str, run="a"):
    """Setup: copy a run to ``c`` and replace one of its files by ``data``."""
    def setup(ctx):
        p = ctx.copy_run(run) / name
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    return setup


def file_bytes(fn):
    def setup(ctx):
        p = ctx.copy_run() / "model.safetensors"
        p.write_bytes(fn(p.read_bytes()))
    return setup


def _set(path, value):
    def edit(meta, *_):
        node = meta
        for k in path[:-1]:
            node = node[k]
        if value is _DEL:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return edit


_DEL = object()


def torch_dtype(name):
    import torch

    return getattr(torch, name)


def _poke(name, value, at=0):
    """An edit: element ``at`` of tensor ``name`` set to ``value``."""
    def edit(meta, tensors):
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[at] = value
    return edit


def _cast(dtype):
    """An edit: every weight (model and EMA) cast to ``dtype``."""
    def edit(meta, tensors):
        for k in [k for k in tensors if k.startswith(("model.", "ema."))]:
            tensors[k] = tensors[k] > 0 if str(dtype) == "torch.bool" else tensors[k].to(dtype)
    return edit


def _drop(prefix):
    """An edit: the tensors whose names start with ``prefix`` removed."""
    def edit(meta, tensors):
        for k in [k for k in tensors if k.startswith(prefix)]:
            del tensors[k]
    return edit


def _deep_json():
    depth = 200_000
    head = json.dumps({"format": FORMAT, "format_version": 1})[:-1]
    return head + ', "deep": ' + "[" * depth + "]" * depth + "}"


def _header_len(n):
    return lambda b: struct.pack("<Q", n) + b[8:]


# ---------------------------------------------------------------------- setups and checks for runs
def mkfile(rel, text="not a folder"):
    def setup(ctx):
        (ctx.d / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx.d / rel).write_text(text)
    return setup


def mkdir(rel):
    def setup(ctx):
        (ctx.d / rel).mkdir(parents=True, exist_ok=True)
    return setup


def both(*setups):
    def setup(ctx):
        for s in setups:
            s(ctx)
    return setup


def run_x(ctx):
    """Setup: a finished 3-step run in ``x`` (a copy of the shared run a)."""
    ctx.copy_run("a", "x")


def tmp_litter(ctx):
    """Setup: a finished run in ``x`` plus the temporary files a killed save leaves behind."""
    run_x(ctx)
    x = ctx.d / "x"
    dead = _dead_pid()
    for name in (f".model.safetensors.{dead}.k2j3h4.tmp", ".model.json.q8w7e6.tmp", ".history.json.zz1.tmp"):
        (x / name).write_bytes(b"half a file")
        old = time.time() - 3600
        os.utime(x / name, (old, old))


def unfinished_run(ctx):
    """Setup: ``x`` holds a run stopped after step 3 of 6 (checkpoint every 3), as an interrupted
    ``seqdiff train --steps 6 --checkpoint-every 3`` leaves it (no history.json: that is written at the end)."""
    import seqdiff_kit as sk
    from seqdiff_kit.recipes import recipe_for
    from seqdiff_kit.train import train_iter

    default = recipe_for("ring8")  # what `seqdiff train --dataset ring8` trains
    recipe = {k: default.fit[k] for k in ("lr", "warmup", "cosine_decay", "ema_decay", "grad_clip")}
    model = default.replace(seed=0).build_model()
    it = train_iter(model, sk.ring8(), sk.Schedule.linear(), sk.Loss("simple"), steps=6, batch_size=16, seed=0,
                    checkpoint=ctx.d / "x" / "model", checkpoint_every=3, progress=False, threads=1,
                    dataset_name="ring8", **recipe)
    for state in it:
        if state.step == 3:
            break
    it.close()


def stale_lock(ctx):
    """Setup: a finished run in ``x`` and the lock file of a writer that was killed (a dead pid in it)."""
    run_x(ctx)
    (ctx.d / "x" / ".seqdiff.lock").write_text(f"{_dead_pid()}\n")


def planted_lock(kind, folder="x"):
    """Setup: ``folder``'s lock name is a link to ``precious.txt`` beside it (a symbolic or a hard link)."""
    def setup(ctx):
        (ctx.d / "precious.txt").write_text("years of work\n")
        (ctx.d / folder).mkdir(parents=True, exist_ok=True)
        lock = ctx.d / folder / ".seqdiff.lock"
        if kind == "symlink":
            lock.symlink_to(Path("..") / "precious.txt")
        else:
            os.link(ctx.d / "precious.txt", lock)
    return setup


def resume_crafted(edit):
    """Setup: a finished run in ``x`` whose pair is rewritten consistently after ``edit(meta, tensors)``."""
    return lambda ctx: (run_x(ctx), _craft_in(ctx.d / "x" / "model", edit))


def strict_history(rel="x"):
    def check(ctx):
        def refuse(name):
            raise ValueError(f"bare {name}")
        try:
            json.loads((ctx.d / rel / "history.json").read_text(), parse_constant=refuse)
        except ValueError as err:
            return f"history.json is not strict JSON: {err}"
        return None
    return check


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def history_steps(ctx, rel="x"):
    return [h["step"] for h in json.loads((ctx.d / rel / "history.json").read_text())["history"]]


def expect_history(n, rel="x"):
    def check(ctx):
        steps = history_steps(ctx, rel)
        if steps != list(range(1, n + 1)):
            return f"history.json holds steps {steps[:3]}...{steps[-3:]} ({len(steps)}), not 1..{n}"
        return None
    return check


def no_tmp(rel="x"):
    def check(ctx):
        left = sorted(p.name for p in (ctx.d / rel).iterdir() if p.name.endswith(".tmp"))
        return f"temporary files left: {left}" if left else None
    return check


def no_lock(rel="x"):
    """The lock file is removed when its holder ends normally (a stale one of a killed writer too)."""
    def check(ctx):
        return "the lock file was left behind" if (ctx.d / rel / ".seqdiff.lock").exists() else None
    return check


def all_of(*checks):
    def check(ctx):
        problems = [p for c in checks if (p := c(ctx))]
        return "; ".join(problems) or None
    return check


def run_is(seed, step, rel="x"):
    def check(ctx):
        meta = json.loads((ctx.d / rel / "model.json").read_text())
        if (meta.get("seed"), meta.get("step")) != (seed, step):
            return f"{rel}/model.json is seed {meta.get('seed')} step {meta.get('step')}, not seed {seed} step {step}"
        return None
    return check


# ---------------------------------------------------------------------- the corpus
def T(*extra, out="{d}/x"):
    return [*TRAIN, "--out", out, *extra]


def S(*extra, out="{d}/s.npz"):
    return [*SAMPLE, "--out", out, *extra]


def C(*extra, out="{d}/cmp"):
    return [*COMPARE, "--out", out, *extra]


def D(*extra, out="{d}/demo"):
    return [*DEMO, "--out", out, *extra]


copy_c = lambda ctx: ctx.copy_run("a", "c")  # noqa: E731
HUGE = str(10**30)
CASES: list[Case] = []


def add(*cases):
    CASES.extend(cases)


# options: types, ranges, overflow
add(
    Case("train-steps-word", T("--steps", "many"), needles=("--steps",)),
    Case("train-steps-float", T("--steps", "1e3"), needles=("--steps",)),
    Case("train-steps-negative", T("--steps", "-5"), needles=("steps",)),
    Case("train-steps-huge", T("--steps", HUGE), needles=("--steps",)),
    Case("train-steps-1e12", T("--steps", str(10**12)), needles=("--steps",)),
    Case("train-batch-zero", T("--batch-size", "0"), needles=("--batch-size",)),
    Case("train-batch-negative", T("--batch-size", "-1"), needles=("--batch-size",)),
    Case("train-batch-1e9", T("--batch-size", str(10**9)), needles=("--batch-size",)),
    Case("train-batch-huge", T("--batch-size", HUGE), needles=("--batch-size",)),
    Case("train-lr-nan", T("--lr", "nan"), needles=("--lr",)),
    Case("train-lr-inf", T("--lr", "inf"), needles=("--lr",)),
    Case("train-lr-negative", T("--lr", "-1"), needles=("lr",)),
    Case("train-lr-zero", T("--lr", "0"), needles=("lr",)),
    Case("train-lr-word", T("--lr", "fast"), needles=("--lr",)),
    Case("train-lr-1e308", T("--lr", "1e308"), needles=("--lr",)),
    Case("train-lr-diverges", T("--lr", "1", "--loss", "sa", "--lam", "1e300"), needles=("step",)),
    Case("train-K-zero", T("--loss", "sa", "--K", "0"), needles=("K",)),
    Case("train-K-1e9", T("--loss", "sa", "--K", str(10**9)), needles=("--K",)),
    Case("train-K-word", T("--loss", "sa", "--K", "two"), needles=("--K",)),
    Case("train-lam-negative", T("--loss", "sa", "--lam", "-1"), needles=("lam",)),
    Case("train-lam-nan", T("--loss", "sa", "--lam", "nan"), needles=("--lam",)),
    Case("train-simple-with-K", T("--loss", "simple", "--K", "3"), needles=("K",)),
    Case("train-dataset-unknown", T("--dataset", "moons"), needles=("dataset",)),
    Case("train-dataset-empty", T("--dataset", ""), needles=("dataset",)),
    Case("train-model-unknown", T("--model", "cnn"), needles=("--model",)),
    Case("train-digits-mlp", T("--dataset", "digits", "--model", "mlp"), needles=("model",)),
    Case("train-seed-2**70", T("--seed", str(2**70)), needles=("--seed",)),
    Case("train-seed-negative-2**70", T("--seed", str(-2**70)), needles=("--seed",)),
    Case("train-seed-float", T("--seed", "1.5"), needles=("--seed",)),
    Case("train-threads-1e12", T("--threads", str(10**12)), needles=("--threads",)),
    Case("train-threads-zero", T("--threads", "0"), needles=("--threads",)),
    Case("train-checkpoint-every-zero", T("--checkpoint-every", "0"), needles=("--checkpoint-every",)),
    Case("train-unknown-option", T("--epochs", "3"), needles=("--epochs",)),
    Case("sample-steps-zero", S("--steps", "0"), setup=copy_c, needles=("steps",)),
    Case("sample-steps-over-T", S("--steps", "5000"), setup=copy_c, needles=("steps",)),
    Case("sample-steps-huge", S("--steps", HUGE), setup=copy_c, needles=("steps",)),
    Case("sample-eta-negative", S("--eta", "-0.1"), setup=copy_c, needles=("eta",)),
    Case("sample-eta-2", S("--eta", "2"), setup=copy_c, needles=("eta",)),
    Case("sample-eta-nan", S("--eta", "nan"), setup=copy_c, needles=("--eta",)),
    Case("sample-n-zero", S("--n", "0"), setup=copy_c, needles=("--n",)),
    Case("sample-n-1e9", S("--n", str(10**9)), setup=copy_c, needles=("--n",)),
    Case("sample-n-1e11", S("--n", str(10**11)), setup=copy_c, needles=("--n",)),
    Case("sample-n-huge", S("--n", HUGE), setup=copy_c, needles=("--n",)),
    Case("sample-seed-2**70", S("--seed", str(2**70)), setup=copy_c, needles=("--seed",)),
    Case("sample-threads-1e12", S("--threads", str(10**12)), setup=copy_c, needles=("--threads",)),
    Case("sample-spacing-unknown", S("--spacing", "log"), setup=copy_c, needles=("--spacing",)),
    Case("sample-no-checkpoint-option", ["sample", "--out", "{d}/s.npz"], needles=("--checkpoint",)),
    Case("compare-steps-zero", C("--steps", "0"), setup=copy_c, needles=("steps",)),
    Case("compare-steps-over-T", C("--steps", "2", "4000"), setup=copy_c, needles=("steps",)),
    Case("compare-points-1e9", C("--points", str(10**9)), setup=copy_c, needles=("--points",)),
    Case("compare-points-1e6", C("--points", str(10**6)), setup=copy_c, needles=("--points",)),
    Case("compare-eta-5", C("--eta", "5"), setup=copy_c, needles=("eta",)),
    Case("compare-seed-2**70", C("--seed", str(2**70)), setup=copy_c, needles=("--seed",)),
    Case("compare-threads-1e12", C("--threads", str(10**12)), setup=copy_c, needles=("--threads",)),
    Case("compare-no-checkpoints", ["compare", "--out", "{d}/cmp"], needles=("CKPT",)),
    Case("compare-steps-twice", C("--steps", "3", "3"), setup=copy_c, needles=("--steps", "3", "once")),
    Case("compare-steps-twice-among-others", C("--steps", "2", "5", "2", "5", "9"), setup=copy_c,
         needles=("--steps", "2, 5")),
    Case("demo-train-steps-without-retrain", D("--train-steps", "5"), needles=("--train-steps", "--retrain")),
    Case("experiment-solvers-with-workers", ["experiment", "--preset", "solvers", "--out", "{d}/e", "--workers", "2"],
         needles=("--workers", "solvers")),
    Case("experiment-solvers-with-scheduler", ["experiment", "--preset", "solvers", "--out", "{d}/e", "--scheduler",
                                               "tcp://127.0.0.1:1", "--connect-timeout", "2"],
         needles=("--scheduler and --connect-timeout", "solvers")),
    Case("experiment-connect-timeout-1e308", ["experiment", "--preset", "fast", "--out", "{d}/e", "--scheduler",
                                              "tcp://127.0.0.1:1", "--connect-timeout", "1e308"],
         needles=("--connect-timeout", "3600")),
    Case("demo-points-one", D("--points", "1"), needles=("points",)),
    Case("demo-points-1e9", D("--points", str(10**9)), needles=("--points",)),
    Case("demo-points-1e6", D("--points", str(10**6)), needles=("--points",)),
    Case("demo-seed-2**70", D("--seed", str(2**70)), needles=("--seed",)),
    Case("demo-threads-1e12", D("--threads", str(10**12)), needles=("--threads",)),
    Case("demo-train-steps-zero", D("--retrain", "--train-steps", "0"), needles=("--train-steps",)),
    Case("demo-train-steps-huge", D("--retrain", "--train-steps", HUGE), needles=("--train-steps",)),
    Case("experiment-preset-unknown", ["experiment", "--preset", "nope", "--out", "{d}/e"], needles=("--preset",)),
    Case("experiment-workers-zero", ["experiment", "--preset", "fast", "--workers", "0", "--out", "{d}/e"],
         needles=("workers",)),
    Case("experiment-workers-negative", ["experiment", "--preset", "fast", "--workers", "-1", "--out", "{d}/e"],
         needles=("workers",)),
    Case("unknown-command", ["frobnicate"], needles=("frobnicate",)),
)

# output paths: checked before any work
for cmd, build, expected_file in (("train", T, "history.json"), ("compare", C, "report.html"),
                                  ("demo", D, "report.html")):
    setup0 = copy_c if cmd == "compare" else None
    add(
        Case(f"{cmd}-out-under-a-file", build(out="{d}/f/x"), setup=both(*(s for s in (setup0, mkfile("f")) if s)),
             needles=("--out", "f")),
        Case(f"{cmd}-out-is-a-file", build(out="{d}/f"), setup=both(*(s for s in (setup0, mkfile("f")) if s)),
             needles=("--out",)),
        Case(f"{cmd}-out-name-too-long", build(out="{d}/" + LONG_NAME), setup=setup0, needles=("--out", "long")),
        Case(f"{cmd}-out-path-too-long", build(out="{d}/" + LONG_PATH), setup=setup0, needles=("--out", "long")),
        Case(f"{cmd}-out-file-is-a-folder", build(out="{d}/x"),
             setup=both(*(s for s in (setup0, mkdir(f"x/{expected_file}")) if s)), needles=(expected_file,)),
        Case(f"{cmd}-out-empty", build(out=""), setup=setup0, needles=("--out",)),
        Case(f"{cmd}-out-in-proc", build(out="/proc/seqdiff-hostile/x"), setup=setup0, needles=("--out",)),
    )
add(
    Case("train-out-model-json-is-a-folder", T(), setup=mkdir("x/model.json"), needles=("model.json",)),
    Case("sample-out-under-a-file", S(out="{d}/f/s.npz"), setup=both(copy_c, mkfile("f")), needles=("--out",)),
    Case("sample-out-is-a-folder", S(out="{d}/s.npz"), setup=both(copy_c, mkdir("s.npz")), needles=("--out",)),
    Case("sample-out-name-too-long", S(out="{d}/" + LONG_NAME + ".npz"), setup=copy_c, needles=("--out", "long")),
    Case("sample-out-name-near-max", S(out="{d}/" + NEAR_MAX), setup=copy_c, needles=("--out", "long")),
    Case("sample-out-path-too-long", S(out="{d}/" + LONG_PATH + ".npz"), setup=copy_c, needles=("--out", "long")),
    Case("sample-out-pickle", S(out="{d}/s.pkl"), setup=copy_c, needles=("--out", ".npz")),
    Case("sample-out-empty", S(out=""), setup=copy_c, needles=("--out",)),
    Case("sample-out-in-proc", S(out="/proc/seqdiff-hostile/s.npz"), setup=copy_c, needles=("--out",)),
    Case("experiment-out-under-a-file", ["experiment", "--preset", "fast", "--out", "{d}/f/e"], setup=mkfile("f"),
         needles=("--out",)),
    Case("experiment-out-is-a-file", ["experiment", "--preset", "fast", "--out", "{d}/f"], setup=mkfile("f"),
         needles=("--out",)),
    Case("experiment-out-name-too-long", ["experiment", "--preset", "fast", "--out", "{d}/" + LONG_NAME],
         needles=("--out", "long")),
    Case("experiment-out-empty", ["experiment", "--preset", "fast", "--out", ""], needles=("--out",)),
)

# checkpoints: missing, corrupt, pickled, edited, mismatched, hand-crafted against the schema
add(
    Case("sample-checkpoint-missing", S(), needles=("not found",)),
    Case("sample-checkpoint-empty-folder", S(), setup=mkdir("c"), needles=("not found",)),
    Case("sample-checkpoint-pt-name", [*SAMPLE[:2], "{d}/m.pt", *SAMPLE[3:], "--out", "{d}/s.npz"],
         setup=mkfile("m.pt"), needles=("pickle",)),
    Case("sample-weights-garbage", S(), setup=raw_file("model.safetensors", "not safetensors"), needles=("corrupt",)),
    Case("sample-weights-empty", S(), setup=raw_file("model.safetensors", b""), needles=("corrupt",)),
    Case("sample-weights-truncated", S(), setup=file_bytes(lambda b: b[:1000]), needles=("safetensors",)),
    Case("sample-weights-header-huge", S(), setup=file_bytes(_header_len(2**60)), needles=("corrupt",)),
    Case("sample-weights-header-not-json", S(), setup=file_bytes(lambda b: b[:8] + b"{" + b"\x00" * (len(b) - 9)),
         needles=("corrupt",)),
    Case("sample-weights-pickle", S(), setup=raw_file("model.safetensors", b"\x80\x04\x95" + b"\0" * 64),
         needles=("pickle",)),
    Case("sample-weights-zip", S(), setup=raw_file("model.safetensors", b"PK\x03\x04" + b"\0" * 64),
         needles=("zip",)),
    Case("sample-weights-is-a-folder", S(), setup=both(copy_c, lambda c: (
        (c.d / "c" / "model.safetensors").unlink(), (c.d / "c" / "model.safetensors").mkdir())),
         needles=("model.safetensors",)),
    Case("sample-json-garbage", S(), setup=raw_file("model.json", "{not json"), needles=("json",)),
    Case("sample-json-empty", S(), setup=raw_file("model.json", b""), needles=("json",)),
    Case("sample-json-list", S(), setup=raw_file("model.json", "[]"), needles=("format",)),
    Case("sample-json-not-utf8", S(), setup=raw_file("model.json", b"\xff\xfe{\x00}"), needles=("utf-8",)),
    Case("sample-json-pickle", S(), setup=raw_file("model.json", b"\x80\x04K\x01."), needles=("pickle",)),
    Case("sample-json-deep-nesting", S(), setup=raw_file("model.json", _deep_json()), needles=("nest",)),
    Case("sample-json-is-a-folder", S(), setup=both(copy_c, lambda c: (
        (c.d / "c" / "model.json").unlink(), (c.d / "c" / "model.json").mkdir())), needles=("model.json",)),
    Case("sample-json-symlink-loop", S(), setup=both(copy_c, lambda c: (
        (c.d / "c" / "model.json").unlink(), (c.d / "c" / "model.json").symlink_to(c.d / "c" / "model.json"))),
         needles=("model.json",)),
    Case("sample-weights-of-another-run", S(), setup=both(copy_c, lambda c: shutil.copy(
        c.base / "b" / "model.safetensors", c.d / "c" / "model.safetensors")), needles=("mismatch",)),
    Case("sample-json-of-another-run", S(), setup=both(copy_c, lambda c: shutil.copy(
        c.base / "b" / "model.json", c.d / "c" / "model.json")), needles=("mismatch",)),
    Case("sample-json-sha-edited", S(), setup=json_edited(_set(["weights_sha256"], "0" * 64)),
         needles=("mismatch",)),
    Case("sample-json-edited-schedule-T", S(), setup=json_edited(_set(["schedule", "T"], 500)),
         needles=("model.json",)),
    Case("sample-json-edited-dataset", S(), setup=json_edited(_set(["dataset"], "grid25")),
         needles=("model.json",)),
    Case("sample-json-edited-width", S(), setup=json_edited(_set(["model", "args", "width"], 60000)),
         needles=("width",)),
    Case("sample-json-edited-T-1e12", S(), setup=json_edited(_set(["schedule", "T"], 10**12)), needles=("T",)),
    Case("sample-json-edited-schedule-empty", S(), setup=json_edited(_set(["schedule"], {})),
         needles=("schedule",)),
)
for label, path, value, needle in (
        ("schedule-empty", ["schedule"], {}, "schedule"),
        ("schedule-missing", ["schedule"], _DEL, "schedule"),
        ("schedule-list", ["schedule"], [1000], "schedule"),
        ("schedule-no-T", ["schedule", "T"], _DEL, "T"),
        ("schedule-T-1e12", ["schedule", "T"], 10**12, "T"),
        ("schedule-T-negative", ["schedule", "T"], -1, "T"),
        ("schedule-T-string", ["schedule", "T"], "1000", "T"),
        ("schedule-T-float", ["schedule", "T"], 1000.5, "T"),
        ("schedule-name-unknown", ["schedule", "name"], "exponential", "name"),
        ("schedule-custom-no-betas", ["schedule"], {"name": "custom"}, "betas"),
        ("schedule-custom-bad-betas", ["schedule"], {"name": "custom", "betas": [2.0]}, "betas"),
        ("schedule-custom-betas-strings", ["schedule"], {"name": "custom", "betas": ["a"]}, "betas"),
        ("model-missing", ["model"], _DEL, "model"),
        ("model-class-os-system", ["model", "class"], "os.system", "class"),
        ("model-args-missing", ["model", "args"], _DEL, "args"),
        ("model-width-60000", ["model", "args", "width"], 60000, "width"),
        ("model-width-negative", ["model", "args", "width"], -1, "width"),
        ("model-width-string", ["model", "args", "width"], "128", "width"),
        ("model-depth-1e6", ["model", "args", "depth"], 10**6, "depth"),
        ("model-dim-float", ["model", "args", "dim"], 2.0, "dim"),
        ("model-unknown-arg", ["model", "args", "evil"], 1, "evil"),
        ("model-T-1e12", ["model", "args", "T"], 10**12, "T"),
        ("format-version-99", ["format_version"], 99, "format_version"),
        ("format-missing", ["format"], _DEL, "format")):
    add(Case(f"sample-crafted-{label}", S(), setup=crafted(_set(path, value)), needles=(needle,)))
add(
    Case("sample-crafted-missing-tensor", S(), setup=crafted(lambda m, t: t.pop("ema.out.bias")),
         needles=("out.bias",)),
    Case("sample-crafted-wrong-shape", S(), setup=crafted(lambda m, t: t.update({"ema.out.bias": t["ema.out.bias"][:1]})),
         needles=("out.bias",)),
    Case("sample-crafted-int8-weights", S(), setup=crafted(_cast(torch_dtype("int8"))), needles=("int8", "floating")),
    Case("sample-crafted-bool-weights", S(), setup=crafted(_cast(torch_dtype("bool"))), needles=("bool", "floating")),
    Case("sample-crafted-nan-weights", S(), setup=crafted(_poke("ema.out.bias", float("nan"))),
         needles=("ema.out.bias", "finite")),
    Case("sample-crafted-schedule-T-of-another-network", S(), setup=crafted(_set(["schedule", "T"], 500)),
         needles=("T=500", "T=1000")),
    Case("compare-corrupt-second", C(), setup=raw_file("model.safetensors", "junk"), needles=("corrupt",)),
    Case("compare-missing-second", C(), needles=("not found",)),
    Case("compare-different-datasets", ["compare", "{a}", "{g}", "--steps", "2", "--points", "16", "--out",
                                        "{d}/cmp"], needles=("dataset",)),
    Case("compare-crafted-schedule-empty", C(), setup=crafted(_set(["schedule"], {})), needles=("schedule",)),
)

# train: repeated commands, resume, overwrite, what a killed run leaves, concurrent writers
add(
    Case("train-again-over-a-finished-run", T("--seed", "1"), setup=run_x, keep=("x",), needles=("--overwrite",)),
    Case("train-again-with-other-steps", T("--steps", "9"), setup=run_x, keep=("x",), needles=("--resume",)),
    Case("train-again-over-an-unfinished-run", T("--steps", "6"), setup=unfinished_run, keep=("x",),
         needles=("--resume",)),
    Case("train-resume-an-unfinished-run", T("--steps", "6", "--checkpoint-every", "3", "--resume"), must="work",
         setup=unfinished_run, check=all_of(run_is(0, 6), expect_history(6))),
    Case("train-resume-nothing-there", T("--resume"), must="work", check=all_of(run_is(0, 3), expect_history(3))),
    Case("train-resume-half-a-pair", T("--resume"), setup=lambda c: (run_x(c), (c.d / "x" / "model.safetensors")
                                                                     .unlink()), keep=("x",), needles=("--overwrite",)),
    Case("train-seed-max", T("--seed", str(2**63 - 1)), must="work", check=run_is(2**63 - 1, 3)),
    Case("sample-seed-max", S("--seed", str(2**63 - 1)), must="work", setup=copy_c),
    Case("train-resume-and-overwrite", T("--resume", "--overwrite"), setup=run_x, keep=("x",),
         needles=("--overwrite",)),
    Case("train-overwrite", T("--seed", "1", "--overwrite"), must="work", setup=run_x,
         check=all_of(run_is(1, 3), expect_history(3))),
    Case("train-resume-a-finished-run", T("--resume"), must="work", setup=run_x,
         keep=("x/model.json", "x/model.safetensors"), check=expect_history(3)),
    Case("train-resume-twice", T("--resume"), must="work", setup=lambda c: (run_x(c), cli.main(c.fmt(T("--resume")))),
         keep=("x/model.json", "x/model.safetensors"), check=expect_history(3)),
    Case("train-resume-lost-history", T("--resume"), must="work",
         setup=lambda c: (run_x(c), (c.d / "x" / "history.json").write_text("{trunc")), check=expect_history(3)),
    Case("train-resume-other-seed", T("--resume", "--seed", "7"), setup=run_x, keep=("x",), needles=("seed",)),
    Case("train-resume-other-loss", T("--resume", "--loss", "sa"), setup=run_x, keep=("x",), needles=("loss",)),
    Case("train-resume-more-steps-cosine", T("--resume", "--steps", "5"), setup=run_x, keep=("x",),
         needles=("steps",)),
    Case("train-resume-corrupt-weights", T("--resume"), setup=lambda c: (run_x(c), (
        c.d / "x" / "model.safetensors").write_bytes(b"junk")), keep=("x",), needles=("corrupt",)),
    Case("train-resume-edited-json", T("--resume"), setup=lambda c: (run_x(c), _edit_json(
        c.d / "x" / "model.json", _set(["train", "lr"], 1.0))), keep=("x",), needles=("model.json",)),
    Case("train-resume-weights-of-another-run", T("--resume"), setup=lambda c: (run_x(c), shutil.copy(
        c.base / "b" / "model.safetensors", c.d / "x" / "model.safetensors")), keep=("x",), needles=("mismatch",)),
    Case("train-resume-crafted-no-step", T("--resume"), setup=lambda c: (run_x(c), _craft_in(
        c.d / "x" / "model", _set(["step"], _DEL))), keep=("x",), needles=("step",)),
    Case("train-resume-crafted-step-string", T("--resume"), setup=lambda c: (run_x(c), _craft_in(
        c.d / "x" / "model", _set(["step"], "3"))), keep=("x",), needles=("step",)),
    Case("train-resume-crafted-step-negative", T("--resume"), setup=lambda c: (run_x(c), _craft_in(
        c.d / "x" / "model", _set(["step"], -4))), keep=("x",), needles=("step",)),
    Case("train-resume-crafted-step-1e12", T("--resume"), setup=lambda c: (run_x(c), _craft_in(
        c.d / "x" / "model", _set(["step"], 10**12))), keep=("x",), needles=("step",)),
    Case("train-resume-crafted-no-rng-state", T("--resume"), setup=lambda c: (run_x(c), _craft_in(
        c.d / "x" / "model", lambda m, t: t.pop("extra.rng_state"))), keep=("x",), needles=("rng_state",)),
    Case("train-resume-crafted-T-1e12", T("--resume"), setup=lambda c: (run_x(c), _craft_in(
        c.d / "x" / "model", _set(["schedule", "T"], 10**12))), keep=("x",), needles=("T",)),
    Case("train-resume-crafted-nan-ema", T("--resume"), setup=resume_crafted(_poke("ema.out.bias", float("nan"))),
         keep=("x",), needles=("ema.out.bias", "finite")),
    Case("train-resume-crafted-inf-weights", T("--resume"), setup=resume_crafted(_poke("model.inp.weight",
                                                                                        float("inf"))),
         keep=("x",), needles=("model.inp.weight", "finite")),
    Case("train-resume-crafted-float64-weights", T("--resume"), setup=resume_crafted(_cast(torch_dtype("float64"))),
         keep=("x",), needles=("float64", "float32")),
    Case("train-resume-crafted-float16-weights", T("--resume"), setup=resume_crafted(_cast(torch_dtype("float16"))),
         keep=("x",), needles=("float16", "float32")),
    Case("train-resume-crafted-no-optimizer-state", T("--resume"), setup=resume_crafted(_drop("extra.optim.")),
         keep=("x",), needles=("optimizer state", "optim.0")),
    Case("train-resume-crafted-half-the-optimizer-state", T("--resume"), setup=resume_crafted(
        _drop("extra.optim.3.")), keep=("x",), needles=("optimizer state", "optim.3")),
    Case("train-resume-crafted-optimizer-step-0", T("--resume"), setup=resume_crafted(_poke("extra.optim.0.step", 0.0)),
         keep=("x",), needles=("optim.0.step", "3")),
    Case("train-resume-crafted-nan-adam-moment", T("--resume"), setup=resume_crafted(
        _poke("extra.optim.1.exp_avg_sq", float("nan"))), keep=("x",), needles=("optim.1.exp_avg_sq", "NaN")),
    Case("train-resume-crafted-nan-history", T("--resume"), setup=resume_crafted(_poke("extra.history", float("nan"),
                                                                                       at=7)),
         keep=("x",), needles=("history", "NaN")),
    Case("train-resume-nan-in-history-json", T("--resume"), must="work", setup=both(  # a checkpoint of before
        resume_crafted(_drop("extra.history")), lambda c: (c.d / "x" / "history.json").write_text(  # histories
            '{"history": [{"step": 1, "loss": NaN}, {"step": 2}, {"step": 3}]}')), check=strict_history()),
    Case("train-resume-crafted-data-state-list", T("--resume"), setup=resume_crafted(_set(["data_state"], [1, 2])),
         keep=("x",), needles=("data_state",)),
    Case("train-resume-crafted-data-state-pos-string", T("--resume"), setup=resume_crafted(
        _set(["data_state"], {"pos": "x", "has_perm": False})), keep=("x",), needles=("pos",)),
    Case("train-resume-crafted-data-state-has-perm", T("--resume"), setup=resume_crafted(
        _set(["data_state"], {"pos": 0, "has_perm": True})), keep=("x",), needles=("has_perm",)),
    Case("train-stale-temp-files", T("--overwrite"), must="work", setup=tmp_litter, check=no_tmp()),
    Case("train-stale-temp-files-resume", T("--resume"), must="work", setup=tmp_litter,
         check=all_of(no_tmp(), expect_history(3))),
    Case("train-stale-lock-of-a-killed-run", T("--resume"), must="work", setup=stale_lock,
         check=all_of(expect_history(3), no_lock())),
    Case("train-lock-is-a-symlink", T(), setup=planted_lock("symlink"), keep=("precious.txt",),
         needles=(".seqdiff.lock", "symbolic link")),
    Case("train-lock-is-a-hard-link", T(), setup=planted_lock("hard link"), keep=("precious.txt",),
         needles=(".seqdiff.lock", "hard links")),
    Case("train-second-writer", T("--steps", "2", "--seed", "1"), background=T(
        "--steps", str(BACKGROUND_STEPS), "--checkpoint-every", "20"), needles=("--out",),
         check=all_of(run_is(0, BACKGROUND_STEPS), expect_history(BACKGROUND_STEPS))),
    Case("train-second-writer-resume", T("--resume", "--steps", str(BACKGROUND_STEPS)), background=T(
        "--steps", str(BACKGROUND_STEPS), "--checkpoint-every", "20"), needles=("--out",),
         check=all_of(run_is(0, BACKGROUND_STEPS), expect_history(BACKGROUND_STEPS))),
    Case("train-second-writer-overwrite", T("--steps", "2", "--overwrite"), background=T(
        "--steps", str(BACKGROUND_STEPS), "--checkpoint-every", "20"), needles=("--out",),
         check=all_of(run_is(0, BACKGROUND_STEPS), expect_history(BACKGROUND_STEPS))),
)


def _edit_json(js: Path, edit):
    meta = json.loads(js.read_text())
    edit(meta)
    js.write_text(json.dumps(meta, indent=2))


def _craft_in(stem: Path, edit):
    tensors, meta = _read_pair(stem)
    edit(meta, tensors)
    _write_pair(stem, tensors, meta)


def _killed_then_resumed():
    """A run killed (SIGKILL) in the middle, then resumed: the history must be whole and nothing left over."""
    steps = 200

    def setup(ctx):
        code = ("import sys; from seqdiff_kit.cli import main; sys.exit(main(sys.argv[1:]))")
        argv = ctx.fmt(T("--steps", str(steps), "--checkpoint-every", "25"))
        proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        js = ctx.d / "x" / "model.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if json.loads(js.read_text()).get("step", 0) >= 50:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return Case("train-killed-then-resumed", T("--steps", str(steps), "--checkpoint-every", "25", "--resume"),
                must="work", setup=setup, check=all_of(expect_history(steps), no_tmp()), slow=True)


add(_killed_then_resumed())


# ---------------------------------------------------------------------- shared runs
def make_base(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, extra in (("a", ["--loss", "simple"]), ("b", ["--loss", "sa", "--K", "2", "--lam", "1"]),
                        ("g", ["--dataset", "grid25"])):
        if not (root / name / "model.json").exists():
            with contextlib.redirect_stdout(io.StringIO()):
                rc = cli.main([*TRAIN, *extra, "--out", str(root / name)])
            assert rc == 0, f"could not train the shared run {name}"
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_base(tmp_path_factory.mktemp("hostile-base"))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else [])
                                  for c in CASES])
def test_hostile_command_line(case, base, tmp_path):
    outcome = run_case(case, Ctx(d=tmp_path / "case", base=base))
    assert outcome.verdict == "clean", f"{case.name}: {outcome.verdict}: {outcome.detail}"


def test_the_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 100
    assert len({c.name for c in CASES}) == len(CASES)


# ---------------------------------------------------------------------- the tally
def main(argv=None) -> int:
    import argparse
    import resource
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit-gb", type=float, default=6.0, help="address-space cap (default 6 GB)")
    p.add_argument("--timeout", type=int, default=60, help="seconds per case (default 60)")
    p.add_argument("-k", default="", help="only cases whose name contains this")
    p.add_argument("--json", default=None, help="write the per-case outcomes here")
    p.add_argument("--width", type=int, default=200, help="characters of each case's message to print")
    args = p.parse_args(argv)
    cap = int(args.limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    def on_alarm(*_):
        raise _Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    import seqdiff_kit
    print(f"seqdiff_kit from {os.path.dirname(seqdiff_kit.__file__)}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = make_base(Path(tmp) / "base")
        for i, case in enumerate(c for c in CASES if args.k in c.name):
            signal.alarm(args.timeout)
            try:
                o = run_case(case, Ctx(d=Path(tmp) / f"case{i}", base=base))
            except _Timeout:
                o = Outcome("wrong", detail=f"still running after {args.timeout} s")
            except Exception as exc:  # noqa: BLE001 - a setup that failed
                o = Outcome("wrong", detail=f"setup failed: {type(exc).__name__}: {exc}")
            finally:
                signal.alarm(0)
            results[case.name] = o
            line = o.detail or (o.err.strip().splitlines() or [""])[-1]
            print(f"{o.verdict:9s} {o.seconds:6.2f}s {case.name}: {line[:args.width]}", flush=True)
    counts = {v: sum(o.verdict == v for o in results.values())
              for v in ("clean", "vague", "traceback", "loss", "wrong")}
    print(f"\n{len(results)} cases: {counts['clean']} clean, {counts['vague']} one-line but not naming the culprit, "
          f"{counts['traceback']} tracebacks, {counts['loss']} data loss, {counts['wrong']} other wrong outcomes "
          f"(accepted, several lines, ran away)")
    if args.json:
        Path(args.json).write_text(json.dumps({k: {"verdict": o.verdict, "detail": o.detail, "rc": str(o.rc)}
                                               for k, o in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
