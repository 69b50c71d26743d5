"""Every port the README's multi-process set-ups open listens on 127.0.0.1 only: the Dask scheduler and workers
(the README's own commands, read from it; a worker's RPC port runs pickled functions) and `seqdiff train
--nproc 2` (the rendezvous store, the ranks' store, gloo). The sockets are read from the processes the test
started (psutil), sampled while they run."""
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def listeners(pids) -> set:
    """(pid, address, port) of every listening TCP socket of ``pids`` and their children."""
    found = set()
    for pid in pids:
        try:
            procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            continue
        for proc in procs:
            try:
                for c in proc.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        found.add((proc.pid, c.laddr.ip, c.laddr.port))
            except psutil.Error:
                pass
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readme_dask_commands() -> list[list[str]]:
    """The README's `dask scheduler` and `dask worker` lines, as a user copies them (comments dropped)."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "README.md").read_text().splitlines()]
    cmds = [shlex.split(line) for line in lines if line.startswith(("dask scheduler", "dask worker"))]
    assert [c[1] for c in cmds] == ["scheduler", "worker"], cmds
    return cmds


def stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, 15)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()


def test_the_readme_dask_cluster_listens_on_loopback_only(tmp_path):
    """The README's scheduler and workers (its ports moved to free ones, so a busy 8786 cannot fail the test)."""
    port, dash = free_port(), free_port()
    procs = []
    try:
        for cmd in readme_dask_commands():
            argv = [str(BIN / "dask")] + [a.replace("8786", str(port)).replace("8787", str(dash)) for a in cmd[1:]]
            procs.append(subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          start_new_session=True))
            if cmd[1] == "scheduler":
                deadline = time.monotonic() + 60
                while not any(p == port for _, _, p in listeners([procs[0].pid])):
                    assert time.monotonic() < deadline and procs[0].poll() is None, "the scheduler did not start"
                    time.sleep(0.2)
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
            workers = list(client.scheduler_info()["workers"])
        seen = listeners(p.pid for p in procs)
    finally:
        stop(procs)
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers), workers
    assert {p for _, _, p in seen} >= {port, dash}, seen  # the scheduler and its dashboard were seen
    assert len({pid for pid, _, _ in seen}) >= 3, seen  # the scheduler, the nannies and the workers
    wide = sorted(s for s in seen if s[1] != "127.0.0.1")
    assert not wide, f"listening on other addresses than 127.0.0.1: {wide}"


def ranks_of(pid: int) -> set:
    """The pids of the launcher's rank processes (``python -u -m seqdiff_kit...``) running now."""
    out = set()
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return out
    for c in children:
        try:
            if "seqdiff_kit" in " ".join(c.cmdline()):
                out.add(c.pid)
        except psutil.Error:
            pass
    return out


def test_train_nproc_2_listens_on_loopback_only(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "seqdiff_kit.cli", "train", "--nproc", "2", "--dataset", "ring8", "--steps", "400",
           "--out", str(tmp_path / "run"), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    seen, ranks = set(), set()
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            seen |= listeners([proc.pid])
            ranks |= ranks_of(proc.pid)
            time.sleep(0.1)
        out, err = proc.communicate(timeout=60)
    finally:
        stop([proc])
    assert proc.returncode == 0, err
    assert re.search(r"400 steps on 2 processes", out), out
    assert len(ranks) >= 2, ranks
    assert {pid for pid, _, _ in seen} >= {proc.pid}, seen  # the launcher's rendezvous store was seen
    assert {pid for pid, _, _ in seen} & ranks, seen  # and the ranks' own listeners
    wide = sorted(s for s in seen if s[1] != "127.0.0.1")
    assert not wide, f"listening on other addresses than 127.0.0.1: {wide}"
