"""The experiment grid on a real Dask cluster on 127.0.0.1 (a `dask scheduler` and two `dask worker` processes
started here, stopped by pid): the same rows as a local run, a worker killed mid-run loses and duplicates
nothing, a second run skips every finished job; an unreachable scheduler is a one-line error before any work."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from seqdiff_kit import cli
from seqdiff_kit import experiments as ex
from seqdiff_kit.denoisers import MLPDenoiser, seeded_model
from seqdiff_kit.recipes import Recipe

import distributed  # the dist extra, also in the test extra
ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 90  # seconds for a process to come up on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    # the workers import this checkout's seqdiff_kit, with one torch thread each
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SEQDIFF_THREADS": "1"}


def _stop(procs) -> None:
    """Kill the workers (they hold nothing worth saving), then stop the scheduler; every one by its pid."""
    for p in procs[1:]:
        if p.poll() is None:
            p.kill()
    if procs and procs[0].poll() is None:
        procs[0].terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=15)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``(address, {name: worker Popen})``: a scheduler and two single-threaded workers without a nanny (so
    that a worker's pid is the process that runs the jobs)."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask-logs")
    procs, workers = [], {}
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
                                       str(port), "--no-dashboard"], env=_env(), cwd=logs,
                                      stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "wb")))
        for name in ("w0", "w1"):
            workers[name] = subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1", "--nworkers", "1",
                 "--no-nanny", "--no-dashboard", "--name", name, "--memory-limit", "0",
                 "--local-directory", str(logs / name)],
                env=_env(), cwd=logs, stdout=subprocess.DEVNULL, stderr=open(logs / f"{name}.log", "wb"))
            procs.append(workers[name])
        client = ex.connect_scheduler(address, timeout=START_TIMEOUT)
        try:
            client.wait_for_workers(2, timeout=START_TIMEOUT)
        finally:
            client.close()
        yield address, workers
    finally:
        _stop(procs)


def _tiny_grid() -> ex.ExperimentConfig:
    """6 small jobs (ring8, simple and SA(2) at 30 updates and simple at 60, 2 seeds), about a second each."""
    recipe = Recipe("tiny", "ring8", "MLPDenoiser", dict(dim=2, width=16, depth=2, time_dim=8),
                    dict(steps=30, batch_size=64, lr=3e-3, warmup=0, cosine_decay=False, ema_decay=0.99,
                         grad_clip=1.0))
    spec = ex.DatasetSpec(recipe, [{"name": "simple"}, {"name": "sa", "K": 2, "lam": 1.0}], sampling_steps=(5, 10),
                          n_eval=128)
    return ex.ExperimentConfig([spec], seeds=(0, 1), name="tiny")


def _jsonl_keys(path: Path) -> list:
    return [json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow  # a Dask cluster of three processes and two grid runs: ~20 s on a loaded 2-core machine
def test_dask_rows_equal_local_rows_and_a_killed_worker_loses_nothing(cluster, tmp_path, capsys):
    address, workers = cluster
    config = _tiny_grid()
    local = ex.run_experiment(config, tmp_path / "local", workers=1, progress=False, report=False)
    n_rows = len(local.rows)
    assert n_rows == 6 * 2 and local.stats["errors"] == []

    # kill w0 by its pid while it holds a job, once the run is under way (a row recorded)
    killed = {}

    def kill_w0():
        watcher = distributed.Client(address, timeout=30, set_as_default=False)
        try:
            info = watcher.scheduler_info()["workers"]
            w0 = next(a for a, w in info.items() if w["name"] == "w0")
            deadline = time.monotonic() + 120
            store = tmp_path / "dask" / "rows.jsonl"
            while time.monotonic() < deadline:
                busy = watcher.processing().get(w0, ())
                if busy and store.is_file() and store.stat().st_size > 0:
                    os.kill(workers["w0"].pid, signal.SIGKILL)
                    killed["holding"] = list(busy)
                    return
                time.sleep(0.02)
        finally:
            watcher.close()

    killer = threading.Thread(target=kill_w0)
    killer.start()
    try:
        res = ex.run_experiment(config, tmp_path / "dask", scheduler=address, progress=True, report=False)
    finally:
        killer.join(timeout=150)
    assert killed["holding"], "w0 was not killed while it held a job"
    assert workers["w0"].wait(timeout=30) == -signal.SIGKILL
    # nothing lost, nothing recorded twice, and the very same numbers as the local run
    keys = _jsonl_keys(tmp_path / "dask" / "rows.jsonl")
    assert len(keys) == len(set(keys)) == n_rows
    assert res.stats["errors"] == [] and res.stats["executor"] == "dask" and res.stats["workers"] == 2
    # every job trained here, but the killed one may have saved its model before the kill: then w1 loads it
    assert res.stats["trained"] + res.stats["loaded"] == res.stats["jobs"] == 6 and res.stats["trained"] >= 5
    assert res.rows == local.rows
    assert (tmp_path / "dask" / "rows.csv").read_text() == (tmp_path / "local" / "rows.csv").read_text()
    err = capsys.readouterr().err
    assert f"6 jobs on the Dask scheduler {address} (2 workers)" in err
    assert [f"[{i}/6 jobs done]" in err for i in range(1, 7)] == [True] * 6

    # a second run through the cluster (one worker left) finds every job done
    again = ex.run_experiment(config, tmp_path / "dask", scheduler=address, progress=False, report=False)
    assert again.stats["jobs"] == 0 and again.rows == local.rows
    assert _jsonl_keys(tmp_path / "dask" / "rows.jsonl") == keys


def _one_line_error(capsys, argv) -> str:
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1 and err.startswith("seqdiff: error: "), err
    return err


def test_unreachable_or_malformed_scheduler_is_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    err = _one_line_error(capsys, ["experiment", "--preset", "fast", "--out", str(out), "--quiet",
                                   "--scheduler", f"tcp://127.0.0.1:{_free_port()}", "--connect-timeout", "0.5"])
    # Dask's connect and the bound around it share the timeout: either may end first, both name it
    assert "is not a reachable Dask scheduler" in err and "after 0.5 s" in err
    err = _one_line_error(capsys, ["experiment", "--preset", "fast", "--out", str(out), "--quiet",
                                   "--scheduler", "foo://127.0.0.1:8786", "--connect-timeout", "0.5"])
    assert "scheduler 'foo://127.0.0.1:8786' is not a reachable" in err and "unknown address scheme" in err
    assert not out.exists()  # nothing was written
    with pytest.raises(TypeError, match="scheduler must be"):
        ex.run_experiment("fast", out, scheduler=8786)
    with pytest.raises(ValueError, match=r"timeout must be in \(0"):
        ex.connect_scheduler("tcp://127.0.0.1:8786", timeout=0)


def test_scheduler_and_workers_are_exclusive_and_timeout_needs_a_scheduler(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["experiment", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "argument --scheduler: not allowed with argument --workers" in err
    err = _one_line_error(capsys, ["experiment", "--out", str(tmp_path / "x"), "--connect-timeout", "3"])
    assert "--connect-timeout 3 applies to --scheduler only" in err


def test_seeded_model_draws_its_own_weights_under_threads():
    """Two threads of one Dask worker build models at once: each still gets the weights of its own seed."""
    want = {s: seeded_model(MLPDenoiser, s, width=64, depth=3).state_dict() for s in range(4)}
    got, barrier = {}, threading.Barrier(4)

    def build(seed):
        barrier.wait()
        got[seed] = [seeded_model(MLPDenoiser, seed, width=64, depth=3).state_dict() for _ in range(30)]

    threads = [threading.Thread(target=build, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s, states in got.items():
        for state in states:
            assert all(torch.equal(state[k], want[s][k]) for k in want[s]), s
    assert len(got) == 4


def _in_thread(fn, seconds: float):
    """``fn()`` in a daemon thread: (finished within ``seconds``, what it returned or raised)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            box["value"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), box.get("value")


def test_a_port_that_accepts_and_never_answers_is_one_line_within_the_timeout(tmp_path, capsys):
    """Such a port (not a Dask scheduler) once kept `seqdiff experiment --scheduler` waiting for good (still
    after 420 s), whatever --connect-timeout said."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        address = f"tcp://127.0.0.1:{srv.getsockname()[1]}"
        t0 = time.monotonic()
        done, value = _in_thread(lambda: cli.main(["experiment", "--preset", "fast", "--out", str(tmp_path / "x"),
                                                   "--quiet", "--scheduler", address, "--connect-timeout", "1"]), 60)
        took = time.monotonic() - t0
    assert done, "still waiting after 60 s"
    err = capsys.readouterr().err
    assert value == 1 and len(err.strip().splitlines()) == 1, err
    assert f"scheduler '{address}' is not a reachable Dask scheduler (no Dask answer after 1 s)" in err
    assert took < 30 and not (tmp_path / "x").exists()


def test_a_malformed_address_leaves_no_client_traceback_behind(tmp_path):
    """A Client that failed to start printed a traceback from its __del__ after the one-line error (and took
    seconds more): the address is now tried before any Client exists."""
    code = "import sys; from seqdiff_kit.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "experiment", "--preset", "fast", "--out",
                           str(tmp_path / "x"), "--scheduler", "foo://127.0.0.1:8786", "--connect-timeout", "2"],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr.startswith("seqdiff: error: scheduler 'foo://127.0.0.1:8786'")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_dask_worker_s_address_is_not_taken_for_the_scheduler(cluster):
    address, _ = cluster
    with distributed.Client(address, timeout=30, set_as_default=False) as client:
        worker = next(iter(client.scheduler_info()["workers"]))
    with pytest.raises(ValueError, match=rf"'{worker}' answers but is not a Dask scheduler \(a 'Worker'\)"):
        ex.connect_scheduler(worker, timeout=10)


def test_connect_timeout_is_bounded(tmp_path, capsys):
    """--connect-timeout 1e308 was accepted (and asyncio cannot wait that long)."""
    with pytest.raises(SystemExit) as stop:
        cli.main(["experiment", "--out", str(tmp_path / "x"), "--scheduler", "tcp://127.0.0.1:8786",
                  "--connect-timeout", "1e308"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "--connect-timeout must be <= 3600.0 (an hour), got 1e+308" in err
    with pytest.raises(ValueError, match=r"timeout must be in \(0.0, 3600.0\], got 1e\+308"):
        ex.connect_scheduler("tcp://127.0.0.1:8786", timeout=1e308)
