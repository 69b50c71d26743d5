"""The training-run manager (``runs.train_run``) through its API: a fresh run is ``recipes.train`` with files,
an existing run is refused, a resumed run is the uninterrupted one bit for bit (resumed by the API and by the
CLI) with its history whole, and the folder is locked while it trains. The CLI's options, messages and refusals
are tested in test_cli.py and test_cli_hostile.py, its processes in test_ddp.py."""
import json
import re
from pathlib import Path

import pytest
import torch

from seqdiff_kit import cli, runs
from seqdiff_kit._io import FolderLockedError, locked_folder, shorten
from seqdiff_kit.checkpoint import read_checkpoint
from seqdiff_kit.ddp import LaunchFailed
from seqdiff_kit.recipes import Recipe, recipe_for, train
from seqdiff_kit.runs import Names, Run, train_run

RECIPE = recipe_for("ring8").replace(steps=6, batch_size=16, seed=3)
QUIET = dict(progress=False, threads=1)


class Stop(Exception):
    """Raised from on_step: the run stops there, as a killed one would after its checkpoint."""


def stop_at(step: int):
    def on_step(state):
        if state.step == step:
            raise Stop
    return on_step


def history(out) -> list:
    return json.loads((out / "history.json").read_text())["history"]


def same_tensors(a, b) -> list:
    """The keys whose tensors differ between two checkpoints (their key sets must agree)."""
    ta, tb = read_checkpoint(a)[0], read_checkpoint(b)[0]
    assert ta.keys() == tb.keys()
    return [k for k in ta if not torch.equal(ta[k], tb[k])]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """RECIPE trained in one go, checkpointed every 3 steps."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    return train_run(RECIPE, out, checkpoint_every=3, **QUIET)


def test_a_fresh_run_is_the_recipes_training_with_its_files(straight):
    assert isinstance(straight, Run) and straight.main and straight.processes == 1
    assert straight.new_steps == 6 and straight.checkpoint == straight.out / "model"
    rows = history(straight.out)
    assert [r["step"] for r in rows] == list(range(1, 7)) and straight.last_loss == rows[-1]["loss"]
    loaded = straight.load()
    assert loaded.config["dataset"] == "ring8" and loaded.config["step"] == 6
    plain = train(RECIPE, **QUIET)  # the same recipe without a folder: the same EMA weights, bit for bit
    assert all(torch.equal(p, q) for p, q in zip(plain.model.state_dict().values(),
                                                 loaded.model.state_dict().values()))
    assert [r["loss"] for r in rows] == [r["loss"] for r in plain.history]


def test_an_existing_run_is_refused_unless_overwritten(straight, tmp_path):
    out = tmp_path / "x"
    train_run(RECIPE, out, **QUIET)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=re.escape(f"out {shorten(out)} already holds a run (step 6 of 6, dataset "
                                                   f"ring8); pass resume=True to continue it or overwrite=True to "
                                                   f"replace it")):
        train_run(RECIPE.replace(seed=4), out, **QUIET)
    with pytest.raises(ValueError, match="resume=True and overwrite=True contradict each other"):
        train_run(RECIPE, out, resume=True, overwrite=True, **QUIET)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    replaced = train_run(RECIPE.replace(seed=4), out, overwrite=True, **QUIET)
    assert replaced.load().config["seed"] == 4 and [r["step"] for r in history(out)] == list(range(1, 7))


def test_resumed_by_the_api_is_the_uninterrupted_run_with_its_history_whole(straight, tmp_path):
    out = tmp_path / "y"
    with pytest.raises(Stop):
        train_run(RECIPE, out, checkpoint_every=3, on_step=stop_at(4), **QUIET)
    assert read_checkpoint(out / "model")[1]["step"] == 3 and len(history(out)) == 3
    run = train_run(RECIPE, out, checkpoint_every=3, resume=True, **QUIET)
    assert run.new_steps == 3
    assert same_tensors(out / "model", straight.checkpoint) == []
    assert history(out) == history(straight.out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["history.json", "model.json", "model.safetensors"]  # no lock file left
    again = train_run(RECIPE, out, resume=True, **QUIET)  # a finished run resumed: nothing to do, history kept
    assert again.new_steps == 0 and again.last_loss is None and history(out) == history(straight.out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the repeated command lost nothing


def test_resumed_by_the_cli_is_the_uninterrupted_run(straight, tmp_path, capsys):
    out = tmp_path / "z"
    with pytest.raises(Stop):
        train_run(RECIPE, out, checkpoint_every=3, on_step=stop_at(5), **QUIET)
    rc = cli.main(["train", "--dataset", "ring8", "--steps", "6", "--batch-size", "16", "--seed", "3",
                   "--checkpoint-every", "3", "--out", str(out), "--resume", "--quiet", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    assert "(3 steps in " in capsys.readouterr().out
    assert same_tensors(out / "model", straight.checkpoint) == [] and history(out) == history(straight.out)


def test_the_folder_is_locked_while_the_run_trains(tmp_path):
    out, seen = tmp_path / "w", []

    def on_step(state):
        if state.step == 2:
            with pytest.raises(FolderLockedError):
                with locked_folder(out):
                    pass
            with pytest.raises(ValueError, match=r"out '.*' is being written by another seqdiff process"):
                train_run(RECIPE, out, overwrite=True, **QUIET)
        seen.append(state.step)

    train_run(RECIPE, out, on_step=on_step, **QUIET)
    assert seen == list(range(1, 7))
    assert not (out / ".seqdiff.lock").exists()  # released when the run ends, its file removed
    with locked_folder(out):
        pass


def test_notes_names_and_refusals_before_work(tmp_path):
    notes = []
    run = train_run(RECIPE.replace(steps=2), tmp_path / "n", resume=True, note=notes.append, **QUIET)
    assert run.new_steps == 2 and notes == [f"no run in {shorten(tmp_path / 'n')} to resume; starting a new one"]
    cli_names = Names(out="--out", resume="--resume", overwrite="--overwrite")
    with pytest.raises(ValueError, match="--resume and --overwrite contradict each other"):
        train_run(RECIPE, tmp_path / "m", resume=True, overwrite=True, names=cli_names)
    with pytest.raises(ValueError, match="steps must be >= 1 for a new run"):
        train_run(RECIPE.replace(steps=0), tmp_path / "m", **QUIET)
    with pytest.raises(ValueError, match="batch_size 16 must be divisible by the number of processes 3"):
        train_run(RECIPE, tmp_path / "m", nproc=3)
    with pytest.raises(ValueError, match=r"threads must be in \[1, inf\], got 0"):  # before processes start
        train_run(RECIPE, tmp_path / "m", nproc=2, threads=0)
    with pytest.raises(ValueError, match="on_step sees the states of this process; with nproc 2"):
        train_run(RECIPE, tmp_path / "m", nproc=2, on_step=print)
    with pytest.raises(TypeError, match="recipe"):
        train_run({"dataset": "ring8"}, tmp_path / "m")
    assert not (tmp_path / "m" / "model.json").exists()


def test_processes_start_in_runs_with_the_recipe_and_rank_0_speaks_for_them(tmp_path, monkeypatch):
    """``nproc = 2`` launches ``python -m seqdiff_kit.runs SPEC`` (never the CLI again) with the recipe in SPEC;
    rank 0's result, or its error line, is the launcher's. (test_ddp.py runs real processes.)"""
    seen = {}

    def launch(nproc, argv, module):
        spec = json.loads(Path(argv[0]).read_text())
        seen.update(nproc=nproc, module=module, recipe=Recipe.from_config(spec["recipe"]).config(),
                    options=spec["options"])
        Path(spec["result"]).write_text(json.dumps({"new_steps": 6, "seconds": 1.5, "last_loss": 0.25}))

    monkeypatch.setattr(runs, "launch", launch)
    run = train_run(RECIPE, tmp_path / "p", nproc=2, checkpoint_every=3, **QUIET)
    assert seen["module"] == "seqdiff_kit.runs" and seen["nproc"] == 2 and seen["recipe"] == RECIPE.config()
    assert seen["options"]["checkpoint_every"] == 3 and seen["options"]["nproc"] == 2
    assert (run.new_steps, run.processes, run.seconds, run.last_loss, run.main) == (6, 2, 1.5, 0.25, True)

    def failing(nproc, argv, module):
        Path(json.loads(Path(argv[0]).read_text())["report"]).write_text("rank 0's own error\n")
        raise LaunchFailed(1, 2, 4321, 1, None)

    monkeypatch.setattr(runs, "launch", failing)
    with pytest.raises(ValueError, match="^rank 0's own error$"):
        train_run(RECIPE, tmp_path / "p", nproc=2, **QUIET)

    def killed(nproc, argv, module):
        raise LaunchFailed(1, 2, 4321, -9, "SIGKILL")

    monkeypatch.setattr(runs, "launch", killed)
    with pytest.raises(ValueError, match=re.escape(f"training stopped: rank 1 of 2 (pid 4321) was killed by SIGKILL; "
                                                   f"the last checkpoint in out {shorten(tmp_path / 'p')} is complete: "
                                                   f"resume=True continues it")):
        train_run(RECIPE, tmp_path / "p", nproc=2, **QUIET)
