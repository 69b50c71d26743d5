"""Data-parallel training: shards emulated in one process resume bit for bit; two gloo processes launched by
`seqdiff train --nproc 2` (torch's elastic launcher on 127.0.0.1) give the weights of one process emulating the
same two shards; rank 1 killed mid-run leaves a complete checkpoint that a resumed run finishes from; bad input
(a batch the processes cannot split, CUDA without CUDA, --nproc against torchrun's world size) is one line."""
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import seqdiff_kit as sk
from seqdiff_kit import cli
from seqdiff_kit.checkpoint import load_checkpoint, read_checkpoint
from seqdiff_kit.ddp import shard_seed
from seqdiff_kit.denoisers import MLPDenoiser, seeded_model
from seqdiff_kit.losses import Loss
from seqdiff_kit.recipes import recipe_for
from seqdiff_kit.train import fit, read_history, train_iter

ROOT = Path(__file__).resolve().parent.parent
SCHED = sk.Schedule.linear()
# the run of the process tests: the ring8 recipe with the SA loss, a small batch and few steps
STEPS, BATCH, EVERY, SEED, LR = 200, 64, 10, 3, 2e-3
ARGS = ["train", "--dataset", "ring8", "--loss", "sa", "--K", "2", "--lam", "1", "--steps", str(STEPS),
        "--batch-size", str(BATCH), "--seed", str(SEED), "--checkpoint-every", str(EVERY), "--quiet", "--threads", "1"]
LAUNCH_TIMEOUT = 240  # seconds: three fresh python processes importing torch on a loaded 2-core machine


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SEQDIFF_THREADS": "1"}


def _seqdiff(*argv) -> list:
    return [sys.executable, "-m", "seqdiff_kit.cli", *argv]


def _small(seed=0):
    return seeded_model(MLPDenoiser, seed, width=32, depth=2, time_dim=16)


# ---------------------------------------------------------------------- shards in one process
def test_one_shard_is_the_single_process_run_and_shards_draw_their_own_streams():
    assert shard_seed(7, 0) == 7 and len({shard_seed(7, r) for r in range(8)}) == 8
    assert all(0 <= shard_seed(2**63 - 1, r) < 2**63 for r in range(4))
    common = dict(steps=6, batch_size=32, seed=7, threads=1, progress=False)
    plain = fit(_small(), sk.ring8(), SCHED, Loss(), **common)
    one = fit(_small(), sk.ring8(), SCHED, Loss(), shards=1, **common)
    two = fit(_small(), sk.ring8(), SCHED, Loss(), shards=2, **common)
    assert [h["loss"] for h in one.history] == [h["loss"] for h in plain.history]
    assert all(torch.equal(p, q) for p, q in zip(one.model.parameters(), plain.model.parameters()))
    assert two.history[0]["loss"] != plain.history[0]["loss"]  # shard 1 draws other points
    with pytest.raises(ValueError, match=r"batch_size must be divisible by the number of shards \(3; .*got "
                                         r"batch_size=32"):
        train_iter(_small(), sk.ring8(), SCHED, Loss(), shards=3, **common)


def test_sharded_resume_is_bit_for_bit_and_needs_as_many_shards(tmp_path):
    """Two emulated shards on tensor data (each shard shuffles the 100 points with its own generator and wraps
    across epochs): 30 straight steps == 15 steps, an interruption and 15 resumed steps."""
    data = sk.ring8().sample(100, generator=torch.Generator().manual_seed(9))
    common = dict(steps=30, batch_size=64, lr=3e-3, seed=11, threads=1, progress=False, checkpoint_every=5,
                  shards=2)
    straight = fit(_small(0), data, SCHED, Loss("sa", K=2, lam=1.0), checkpoint=tmp_path / "a", **common)
    it = train_iter(_small(0), data, SCHED, Loss("sa", K=2, lam=1.0), checkpoint=tmp_path / "b", **common)
    for state in it:
        if state.step == 15:
            break
    it.close()
    resumed = fit(_small(5), data, SCHED, Loss("sa", K=2, lam=1.0), checkpoint=tmp_path / "b", resume=True, **common)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history[15:]]
    ta, ma = read_checkpoint(tmp_path / "a")
    tb, mb = read_checkpoint(tmp_path / "b")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert {"extra.rng_state", "extra.shard1.rng_state", "extra.data_perm", "extra.shard1.data_perm"} <= set(ta)
    assert ma["train"]["shards"] == 2 and len(ma["shard_data_states"]) == 1
    with pytest.raises(ValueError, match=r"cannot resume.*train\.shards: checkpoint 2 != now 1"):
        fit(_small(0), data, SCHED, Loss("sa", K=2, lam=1.0), checkpoint=tmp_path / "b", resume=True,
            **{**common, "shards": 1, "steps": 40})


# ---------------------------------------------------------------------- bad input, one line
def _one_line_error(capsys, argv) -> str:
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1 and err.startswith("seqdiff: error: "), err
    return err


def test_bad_process_counts_and_devices_are_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    out = tmp_path / "never"
    err = _one_line_error(capsys, ["train", "--steps", "5", "--batch-size", "64", "--nproc", "3", "--out", str(out)])
    assert "--batch-size 64 must be divisible by the number of processes 3" in err
    # a CUDA device this machine does not have (none on a CPU build; one past the last otherwise)
    missing = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    err = _one_line_error(capsys, ["train", "--steps", "5", "--device", missing, "--out", str(out)])
    assert f"--device '{missing}' is not available" in err
    err = _one_line_error(capsys, ["train", "--steps", "5", "--device", "tpu", "--out", str(out)])
    assert "--device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got 'tpu'" in err
    # under torchrun (its variables set), --nproc must agree with the world size; refused before joining
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    err = _one_line_error(capsys, ["train", "--steps", "5", "--nproc", "3", "--out", str(out)])
    assert "--nproc 3 differs from torchrun's world size 2" in err
    assert not out.exists()
    with pytest.raises(ValueError, match="device 'cuda:99' is not available"):
        fit(_small(), sk.ring8(), SCHED, Loss(), steps=1, device="cuda:99", progress=False)


def test_a_rank_ends_without_teardown_and_keeps_its_output():
    """A rank (WORLD_SIZE > 1) leaves through ``ddp.exit_rank`` (os._exit, see there): its status and what it
    printed still arrive, stdout and stderr both written through pipes (block-buffered)."""
    env = {**_env(), "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    env.pop("PYTHONUNBUFFERED", None)
    done = subprocess.run(_seqdiff("--version"), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == f"seqdiff_kit {sk.__version__}\n", done
    bad = subprocess.run(_seqdiff("train", "--steps", "5", "--nproc", "3"), env=env, capture_output=True, text=True,
                         timeout=LAUNCH_TIMEOUT)
    assert bad.returncode == 1 and bad.stderr == \
        "seqdiff: error: --nproc 3 differs from torchrun's world size 2; under torchrun leave --nproc out\n", bad


def test_devices_are_arguments_never_a_hard_coded_cuda_call():
    """Every module places tensors with ``.to(device)`` from an argument: no ``.cuda()`` anywhere."""
    import ast

    calls = [f"{p.name}:{node.lineno}" for p in sorted((ROOT / "seqdiff_kit").glob("*.py"))
             for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "cuda"]
    assert calls == []


# ---------------------------------------------------------------------- two gloo processes
@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """``seqdiff train --nproc 2`` run to the end: the output folder."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    done = subprocess.run(_seqdiff(*ARGS, "--nproc", "2", "--out", str(out)), env=_env(), capture_output=True,
                          text=True, timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert f"({STEPS} steps on 2 processes" in done.stdout
    return out


@pytest.mark.slow  # three processes importing torch: ~15 s on a loaded 2-core machine
def test_two_gloo_processes_match_one_process_emulating_their_shards(ddp_run):
    recipe = recipe_for("ring8").replace(loss=Loss("sa", K=2, lam=1.0), seed=SEED, steps=STEPS, batch_size=BATCH)
    one = fit(recipe.build_model(), recipe.data(), recipe.make_schedule(), recipe.loss, seed=SEED, progress=False,
              threads=1, shards=2, **recipe.fit)
    tensors, meta = read_checkpoint(ddp_run / "model")
    assert meta["step"] == STEPS and meta["train"]["shards"] == 2 and "extra.shard1.rng_state" in tensors
    # Adam moves a weight by at most ~3 lr per step; float32 rounding of the averaged gradient may change a
    # step by a relative 1e-6 where gradients are not tiny: allow 1e-4 of the largest possible total move
    # (measured on this machine: 0.0, the two paths add the same two shard gradients)
    tol = 1e-4 * 3 * LR * STEPS
    diff = max(float((tensors[f"{prefix}{k}"] - v).abs().max())
               for prefix, module in (("model.", one.model), ("ema.", one.ema))
               for k, v in module.state_dict().items())
    assert diff <= tol, diff
    # the logged loss is the mean over the ranks: the emulation's mean over its shards
    logged = [h["loss"] for h in read_history(ddp_run / "model")]
    assert len(logged) == STEPS
    assert max(abs(a - h["loss"]) for a, h in zip(logged, one.history)) <= 1e-5 * max(h["loss"] for h in one.history)


def _rank_pid(launcher: subprocess.Popen, rank: int, deadline: float) -> int:
    """The pid of the child of ``launcher`` whose environment says RANK=rank."""
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                env = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == launcher.pid and f"RANK={rank}".encode() in env:
                return int(entry.name)
        time.sleep(0.05)
    raise AssertionError(f"no rank {rank} under the launcher")


@pytest.mark.slow  # two launches of three processes: ~30 s on a loaded 2-core machine
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds rank 1 through /proc (Linux)")
def test_killed_rank_leaves_a_complete_checkpoint_and_the_resumed_run_finishes(ddp_run, tmp_path):
    out = tmp_path / "run"
    launcher = subprocess.Popen(_seqdiff(*ARGS, "--nproc", "2", "--out", str(out)), env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        rank1 = _rank_pid(launcher, 1, deadline)
        while not (out / "model.json").exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(rank1, signal.SIGKILL)  # right after the first checkpoint
        _, err = launcher.communicate(timeout=LAUNCH_TIMEOUT)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(timeout=30)
    assert launcher.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"seqdiff: error: training stopped: rank 1 of 2 (pid {rank1}) was killed by SIGKILL; "
                               f"the last checkpoint in --out ") and lines[0].endswith("--resume continues it"), err
    model, meta = load_checkpoint(out / "model")  # complete and loadable, somewhere before the end
    assert meta["step"] % EVERY == 0 and EVERY <= meta["step"] < STEPS, meta["step"]
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())

    done = subprocess.run(_seqdiff(*ARGS, "--nproc", "2", "--out", str(out), "--resume"), env=_env(),
                          capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 0, done.stderr
    # the resumed run is the uninterrupted one, bit for bit (same processes, same machine)
    resumed, _ = read_checkpoint(out / "model")
    straight, _ = read_checkpoint(ddp_run / "model")
    assert resumed.keys() == straight.keys()
    assert [k for k in straight if not torch.equal(resumed[k], straight[k])] == []
    assert [h["step"] for h in read_history(out / "model")] == list(range(1, STEPS + 1))
    assert math.isfinite(read_checkpoint(out / "model")[1]["last"]["loss"])
