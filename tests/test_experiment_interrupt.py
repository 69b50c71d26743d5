"""`seqdiff experiment` shows its progress and stops at once on Ctrl-C or SIGTERM, keeping what finished.

The run is a process (as a user starts it) in its own process group, so that the SIGINT reaches the parent and
its pool's workers together, as Ctrl-C in a terminal does. The grid has one quick job and one that would train
for hours: the interrupt comes after the quick one is reported, while the other runs."""
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

# a grid registered in the child before the CLI reads its presets: gauss1d trains 5 updates, ring8 10**6; the
# longest jobs start first, so a third worker is the one that runs a quick job
CHILD = """
import sys
from seqdiff_kit import experiments as ex
from seqdiff_kit.recipes import Recipe

def tiny():
    fit = dict(batch_size=64, lr=1e-3, warmup=0, cosine_decay=False, ema_decay=0.9, grad_clip=1.0)
    quick = Recipe("quick", "gauss1d", "MLPDenoiser", dict(dim=1, width=8, depth=1, time_dim=8), {**fit, "steps": 5})
    slow = Recipe("slow", "ring8", "MLPDenoiser", dict(dim=2, width=8, depth=1, time_dim=8), {**fit, "steps": 10**6})
    return ex.ExperimentConfig(name="interrupt", seeds=(0, 1), datasets=[
        ex.DatasetSpec(quick, [{"name": "simple"}], sampling_steps=(2,), etas=(0.0,), n_eval=32,
                       equal_compute=False),
        ex.DatasetSpec(slow, [{"name": "simple"}], sampling_steps=(2,), etas=(0.0,), n_eval=32)])

ex.GRIDS["interrupt"] = tiny
from seqdiff_kit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("how, signum, status, message", [
    ("group", signal.SIGINT, 130, "seqdiff: interrupted"),  # Ctrl-C in a terminal: the whole process group
    ("parent", signal.SIGTERM, 143, "seqdiff: terminated"),  # `kill PID`: the parent alone ends its workers
])
def test_ctrl_c_ends_the_run_at_once_and_keeps_the_finished_job(tmp_path, how, signum, status, message):
    out = tmp_path / "grid"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "experiment", "--preset", "interrupt", "--out", str(out),
                             "--workers", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    lines, feed = [], queue.Queue()
    threading.Thread(target=lambda: [feed.put(line) for line in proc.stderr] + [feed.put("")], daemon=True).start()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                line = feed.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if not line:
                break
            lines.append(line)
            if "jobs done]" in line:
                break
        assert lines and lines[0].startswith("4 jobs on 3 local workers"), lines
        assert "[1/4 jobs done]" in lines[-1] and "gauss1d" in lines[-1], lines
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers, "the pool's workers should be running the long job"
        t0 = time.monotonic()
        if how == "group":
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        rc = proc.wait(timeout=30)
        seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    rest = "".join(iter(lambda: feed.get(timeout=10), ""))
    # the workers end in well under a second; the rest is three interpreters with torch exiting on busy cores
    assert seconds < 10, f"the run took {seconds:.1f} s to stop after {signal.Signals(signum).name}"
    assert rc == status, (rc, rest)
    *late, last = rest.strip().splitlines()
    assert last == message, rest  # one line, no traceback from any process
    assert all("jobs done]" in line for line in late), rest  # at most the other quick job, finished meanwhile
    reported = [line for line in lines + late if "jobs done]" in line]
    assert not [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], "workers left behind"
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == len(reported) and {r["dataset"] for r in rows} == {"gauss1d"}, rows  # every finished job's
    assert all(math.isfinite(r["std_ratio"]) for r in rows), rows  # gauss1d's score, computed
