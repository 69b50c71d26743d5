"""Training runs in output folders: a ``Recipe`` trained by ``recipes.train`` into a folder where nothing is lost,
in one process, in N data-parallel processes, or as one rank of a torchrun launch.

    run = train_run(recipe, "runs/x")            # runs/x/model.safetensors, model.json, history.json
    run = train_run(recipe, "runs/x", resume=True)   # continue it (bit for bit on the CPU)
    trained = run.load()                         # the EMA network and its config (recipes.Trained)

An existing run is replaced only with ``overwrite=True`` and continued only with ``resume=True``; one process
at a time writes a folder (``_io.locked_folder``); ``history.json`` is rewritten at every checkpoint.
``nproc = N > 1`` starts N ranks (``ddp.launch`` of ``main``); under torchrun ``train_run`` is a rank itself; rank
0 alone holds the folder, writes and reports. Every command's ``--out`` is checked (``check_out_path``) and
written under its lock (``writing``) here.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ._io import (TMP_EXTRA, FolderLockedError, atomic_write, locked_folder, one_line, os_error_line,
                  remove_stale_temp_files, shorten)
from ._validate import check_device_arg, check_int, check_type
from .checkpoint import checkpoint_exists, read_checkpoint
from .ddp import LaunchFailed, barrier, destroy_process_group, init_process_group, launch, launch_env
from .recipes import Recipe, Trained, load_for_sampling, train
from .train import NonFiniteLossError, read_history

TRAIN_FILES = ("model.safetensors", "model.json", "history.json")


@dataclass(frozen=True)
class Names:
    """How messages name ``train_run``'s arguments (the CLI passes its options)."""

    out: str = "out"
    resume: str = "resume=True"
    overwrite: str = "overwrite=True"
    nproc: str = "nproc"
    batch_size: str = "batch_size"
    device: str = "device"


@dataclass
class Run:
    """What ``train_run`` did: the folder ``out``, the updates this call made (``new_steps``; 0 when a finished
    run was resumed), on how many ``processes``, in how many ``seconds``, the last logged loss (None without an
    update) and whether this process is the one that wrote the folder (``main``: rank 0)."""

    out: Path
    new_steps: int
    processes: int
    seconds: float
    last_loss: float | None
    main: bool = True

    @property
    def checkpoint(self) -> Path:
        """The checkpoint's stem, ``out / "model"``."""
        return self.out / "model"

    def load(self, device="cpu") -> Trained:
        """The trained network (its EMA weights) and its checkpoint config."""
        return load_for_sampling(self.checkpoint, device=device)


class RankFailed(RuntimeError):
    """This rank's part of a data-parallel run failed; rank 0 reports the run's error (raised on the others)."""


# ---------------------------------------------------------------------- output paths and folders
def _pathconf(where, key: str, default: int) -> int:
    try:
        return int(os.pathconf(where, key))
    except (OSError, ValueError, AttributeError):
        return default


def _check_lengths(option: str, text: str, p: Path, folder: bool, files, where) -> None:
    """Refuse a name or path too long for the file system of the folder ``where``, counting the temporary file
    written first and, for a folder, the ``files`` written in it."""
    name_max, path_max = _pathconf(where, "PC_NAME_MAX", 255), _pathconf(where, "PC_PATH_MAX", 4096)
    for part in p.parts:
        n = len(os.fsencode(part))
        if n > name_max:
            raise ValueError(f"{option} {shorten(text)} is too long: the name {shorten(part, 30)} is {n} bytes, "
                             f"more than the {name_max} this file system allows")
    inner = max((len(os.fsencode(f)) for f in files), default=0) if folder else len(os.fsencode(p.name))
    if inner + TMP_EXTRA > name_max:
        raise ValueError(f"{option} {shorten(text)} is too long: the temporary file written before it needs "
                         f"{inner + TMP_EXTRA} bytes of name, more than the {name_max} this file system allows")
    total = len(os.fsencode(text)) + ((1 + inner + TMP_EXTRA) if folder else TMP_EXTRA)
    if total > path_max:
        raise ValueError(f"{option} {shorten(text)} is too long: {total} bytes with the files written in it, "
                         f"more than the {path_max} this file system allows")


def check_out_path(option: str, path, *, folder: bool, files=()) -> Path:
    """Refuse, before any work, an output path that cannot be written: empty, a name or path too long for the
    file system, under an existing file, a file where a folder is wanted or the reverse, or one of ``files`` (the
    files a folder will hold) a folder. ``option`` names the argument in the message."""
    what = "folder" if folder else "file"
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{option} must name an output {what}, got {text!r}")
    p = anc = Path(text)
    while not os.path.lexists(anc) and anc != anc.parent:  # lexists: False for a name too long, not an error
        anc = anc.parent
    _check_lengths(option, text, p, folder, files, anc if os.path.isdir(anc) else anc.parent)
    if os.path.lexists(anc) and anc != p and not os.path.isdir(anc):
        raise ValueError(f"{option} {shorten(text)}: {shorten(anc)} is a file, so nothing can be created under it")
    if os.path.lexists(p) and os.path.isdir(p) != folder:
        raise ValueError(f"{option} {shorten(text)} is a {'file' if folder else 'folder'}; give a {what}")
    for f in files if folder else ():
        if os.path.isdir(p / f):
            raise ValueError(f"{option} {shorten(text)}: {f} there is a folder, where seqdiff writes the file {f}")
    return p


def make_folder(option: str, folder: Path) -> None:
    """Create ``folder`` (and its parents), or say in one line why it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{option} {shorten(folder)}: cannot create the folder ({err.strerror or err})") from None
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{option} {shorten(folder)}: no permission to write in this folder")


@contextmanager
def writing(option: str, folder: Path):
    """Create ``folder`` and hold its lock while the block runs (a second writer gets a one-line error)."""
    make_folder(option, folder)
    try:
        with locked_folder(folder):
            yield folder
    except FolderLockedError as err:
        raise ValueError(f"{option} {err}") from None


# ---------------------------------------------------------------------- a run in its folder
@dataclass
class _Job:
    """``train_run``'s arguments (``out`` a ``Path`` once ``_checked``)."""

    recipe: Recipe
    out: Path
    resume: bool
    overwrite: bool
    checkpoint_every: int | None
    progress: bool
    threads: int | None
    device: str
    nproc: int
    names: Names
    on_step: Callable | None
    note: Callable[[str], None]

    def options(self) -> dict:
        """What a launched rank needs besides the recipe, the folder and the names (JSON)."""
        return {k: getattr(self, k) for k in ("resume", "overwrite", "checkpoint_every", "progress", "threads",
                                               "device", "nproc")}


def train_run(recipe: Recipe, out, *, resume: bool = False, overwrite: bool = False,
              checkpoint_every: int | None = None, progress: bool = True, threads: int | None = None,
              device="cpu", nproc: int = 1, on_step: Callable | None = None, names: Names = Names(),
              note: Callable[[str], None] | None = None) -> Run:
    """Train ``recipe`` (``recipes.train``) into the folder ``out``: ``out/model.safetensors`` + ``model.json``
    (written every ``checkpoint_every`` steps and at the end) and ``out/history.json``; returns a ``Run``.

    ``resume`` with nothing to resume starts a new run, said through ``note(text)`` (default: a warning).
    ``on_step(state)`` is called with every ``train.TrainState`` in this process (not with ``nproc > 1``).
    ``names``: how messages name the arguments (the CLI passes its options). Every check runs before training
    starts; the arguments' before the folder is created, the folder's content's under its lock."""
    check_type("recipe", recipe, Recipe)
    env = launch_env()
    nproc = check_int("nproc", nproc, 1)
    if env.world > 1 and nproc not in (1, env.world):
        raise ValueError(f"{names.nproc} {nproc} differs from torchrun's world size {env.world}; under torchrun "
                         f"leave {names.nproc} out")
    if on_step is not None and env.world == 1 and nproc > 1:
        raise ValueError(f"on_step sees the states of this process; with {names.nproc} {nproc} the training runs "
                         f"in other processes")
    job = _Job(recipe, out, bool(resume), bool(overwrite), checkpoint_every, bool(progress), threads,
               str(device), max(env.world, nproc), names, on_step,
               note or (lambda text: warnings.warn(text, stacklevel=4)))  # at train_run's caller
    if env.world > 1:
        return _as_rank(job, env)
    device = _checked(job)
    if job.nproc > 1:
        return _launch(job)
    return _train_here(job, device, env)


def _checked(job: _Job):
    """The checks of a run before any work; returns its ``torch.device`` (and makes ``job.out`` a checked
    ``Path``)."""
    n, batch_size = job.names, job.recipe.fit.get("batch_size", 256)
    if batch_size % job.nproc:
        raise ValueError(f"{n.batch_size} {batch_size} must be divisible by the number of processes {job.nproc} "
                         f"({n.nproc} or torchrun's world size): each process draws {n.batch_size.lstrip('-')} / "
                         f"{job.nproc} samples")
    for name in ("threads", "checkpoint_every"):  # here, not in the processes a launch would start
        if getattr(job, name) is not None:
            check_int(name, getattr(job, name), 1)
    if job.resume and job.overwrite:
        raise ValueError(f"{n.resume} and {n.overwrite} contradict each other: {n.resume} continues the run in "
                         f"{n.out}, {n.overwrite} replaces it; give one")
    device = check_device_arg(n.device, job.device)
    if device.type == "cuda" and job.nproc > torch.cuda.device_count():
        raise ValueError(f"{n.nproc} {job.nproc} with {n.device} cuda needs {job.nproc} CUDA devices (one per "
                         f"process), this machine has {torch.cuda.device_count()}")
    job.out = check_out_path(n.out, job.out, folder=True, files=TRAIN_FILES)
    return device


def _existing_run(job: _Job) -> bool:
    """Whether the run in the folder is resumed; refuses to replace one without resume or overwrite."""
    out, n = job.out, job.names
    present = [name for name in TRAIN_FILES[:2] if (out / name).exists()]
    if present and not (job.resume or job.overwrite):
        raise ValueError(f"{n.out} {shorten(out)} already holds a run ({_describe_run(out)}); pass {n.resume} to "
                         f"continue it or {n.overwrite} to replace it")
    resume = job.resume and checkpoint_exists(out / "model")
    if job.resume and present and not resume:
        raise ValueError(f"{n.out} {shorten(out)} holds only {present[0]} of the checkpoint pair, so there is "
                         f"nothing to resume; pass {n.overwrite} to start a new run there")
    return resume


def _describe_run(out: Path) -> str:
    try:
        meta = json.loads((out / "model.json").read_text())
        return f"step {meta['step']} of {meta['train']['steps']}, dataset {meta['dataset']}"
    except Exception:  # noqa: BLE001 - only a description for the refusal above
        return "a checkpoint"


def _train_here(job: _Job, device, env) -> Run:
    """The run in this process (one rank of a launch, or all of it): rank 0 holds the folder's lock, sweeps up
    killed writers' temporary files, decides resume or refusal and writes the history."""
    out, stem, main = job.out, job.out / "model", env.rank == 0
    with writing(job.names.out, out) if main else nullcontext():
        if main:
            for name in TRAIN_FILES:  # what writers killed mid-save left (nobody else writes here: we hold the lock)
                remove_stale_temp_files(out / name)
        resume = _existing_run(job)
        if job.resume and not resume and main:
            job.note(f"no run in {shorten(out)} to resume; starting a new one")
        if not resume and job.recipe.steps == 0:
            raise ValueError("steps must be >= 1 for a new run (0 steps writes no checkpoint)")

        def step(state) -> None:
            if state.checkpointed and main:
                _write_history(out, job.recipe, _older_history(out, state.history[0]["step"]) + state.history)
            if job.on_step is not None:
                job.on_step(state)

        t0 = time.perf_counter()
        trained = train(job.recipe, progress=job.progress, threads=job.threads, device=device, checkpoint=stem,
                        checkpoint_every=job.checkpoint_every, resume=resume, on_step=step)
        if not trained.history and main:  # a finished run resumed: its stored history, kept whole
            history = read_history(stem)
            first = history[0]["step"] if history else int(read_checkpoint(stem)[1]["step"]) + 1
            _write_history(out, job.recipe, _older_history(out, first) + history)
    last = trained.history[-1]["loss"] if trained.history else None
    return Run(out, len(trained.history), env.world, time.perf_counter() - t0, last, main)


def _write_history(out: Path, recipe: Recipe, history: list) -> None:
    atomic_write(out / "history.json", json.dumps({"loss": recipe.loss.config, "dataset": recipe.dataset,
                                                   "history": history}, indent=1, allow_nan=False) + "\n")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # history.json is strict JSON: NaN or Infinity there is damage


def _older_history(out: Path, first_step: int) -> list:
    """The rows before ``first_step`` from an existing history.json (checkpoints of older versions stored no
    history of their own); empty when there is none or it is unreadable."""
    if first_step <= 1:
        return []
    try:
        rows = json.loads((out / "history.json").read_text(), parse_constant=_refuse_constant)["history"]
        rows = [r for r in rows if isinstance(r, dict) and isinstance(r.get("step"), int) and r["step"] < first_step]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return rows if [r["step"] for r in rows] == list(range(1, first_step)) else []


# ---------------------------------------------------------------------- data-parallel processes
def _as_rank(job: _Job, env) -> Run:
    """One rank of a data-parallel run: every rank fails alike, rank 0 alone reports (``RankFailed`` on the
    others); the ranks of a finished run leave together (``ddp.barrier``)."""
    try:
        device = init_process_group(_checked(job), env)
        try:
            run = _train_here(job, device, env)
            barrier()  # rank 0 may still be writing
            return run
        finally:
            destroy_process_group()
    except Exception as err:  # noqa: BLE001 - one line below, from rank 0 only
        if env.rank != 0:
            raise RankFailed(f"rank {env.rank}: {err}") from None
        raise ValueError(_rank_error_line(err, job.names)) from None


def _rank_error_line(err: Exception, names: Names) -> str:
    if isinstance(err, OSError):
        return os_error_line(err)
    if isinstance(err, RuntimeError) and not isinstance(err, NonFiniteLossError):  # a collective failed
        return (f"training stopped: another process of the run failed ({one_line(err)[:200]}); the last "
                f"checkpoint in {names.out} is complete: {names.resume} continues it")
    return one_line(err)


def _launch(job: _Job) -> Run:
    """Run ``job`` in ``job.nproc`` processes (``ddp.launch`` of ``main``); one line when the run fails: the rank
    that was killed, else rank 0's own error (handed over in a file), else the first rank that failed."""
    _existing_run(job)  # a refusal comes from here, before N processes start
    n = job.names
    with tempfile.TemporaryDirectory(prefix="seqdiff-launch-") as tmp:
        spec, report, result = (Path(tmp) / name for name in ("run.json", "rank0-error", "rank0-result.json"))
        spec.write_text(json.dumps({"recipe": job.recipe.config(), "out": str(job.out), "options": job.options(),
                                    "names": dataclasses.asdict(n), "report": str(report), "result": str(result)}))
        try:
            launch(job.nproc, [str(spec)], module="seqdiff_kit.runs")
        except LaunchFailed as err:
            if err.signal is None and report.is_file():
                raise ValueError(report.read_text().strip()) from None
            raise ValueError(f"training stopped: {err}; the last checkpoint in {n.out} {shorten(job.out)} is "
                             f"complete: {n.resume} continues it") from None
        done = json.loads(result.read_text())
    return Run(job.out, done["new_steps"], job.nproc, done["seconds"], done["last_loss"])


def main(argv: list[str]) -> int:
    """A rank of ``train_run(..., nproc=N)``: ``python -m seqdiff_kit.runs SPEC`` (``ddp.launch`` starts N of
    them). Rank 0 leaves its result, or its error line, in the files the launcher named in SPEC."""
    spec = json.loads(Path(argv[0]).read_text())
    try:
        run = train_run(Recipe.from_config(spec["recipe"]), spec["out"], names=Names(**spec["names"]),
                        note=lambda text: sys.stderr.write(f"seqdiff: {text}\n"), **spec["options"])
    except RankFailed:
        return 1
    except Exception as err:  # noqa: BLE001 - rank 0's one line, for the launcher to print
        if launch_env().rank == 0:
            atomic_write(spec["report"], one_line(err) + "\n")
        return 1
    if run.main:
        atomic_write(spec["result"], json.dumps({"new_steps": run.new_steps, "seconds": run.seconds,
                                                 "last_loss": run.last_loss}))
    return 0


if __name__ == "__main__":
    from .ddp import exit_rank

    exit_rank(main(sys.argv[1:]))
