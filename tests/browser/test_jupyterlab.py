"""The JupyterLab server the browser tests rely on: its kernels end by pid, even after the server crashed.

What a student sees in JupyterLab (Run All, every slider by keyboard and by mouse, errors, reload) is checked
notebook by notebook in test_dashboards.py.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

pytestmark = pytest.mark.browser


def test_lab_server_stops_its_kernels_by_pid_even_after_a_crash(make_lab_server):
    """The clean-up the notebook tests rely on: a kernel started through the REST API is found by its connection
    file and ended by pid, even when the server itself was killed first (its kernels re-parented)."""
    import psutil

    server = make_lab_server().start()
    kernel = server.api("POST", "api/kernels", body={"name": "python3"}, timeout=60)
    conn = f"kernel-{kernel['id']}.json"
    deadline, found = time.monotonic() + 60, []
    while not found and time.monotonic() < deadline:  # observed independently of LabServer.pids()
        found = [p for p in psutil.process_iter(["cmdline"]) if conn in " ".join(p.info["cmdline"] or [])]
        time.sleep(0.2)
    assert found, f"no process holds {conn}"
    kernel_proc = found[0]
    assert kernel_proc.pid != server.proc.pid

    # A hung kernel, which is the case where ending it by pid matters. Were it to keep running, ipykernel's
    # parent poller would exit it about a second after the server dies, and whether stop() sees it first
    # would be a race.
    os.kill(kernel_proc.pid, signal.SIGSTOP)
    os.kill(server.proc.pid, signal.SIGKILL)  # a crashed server: nobody will shut the kernel down politely
    server.proc.wait(timeout=10)
    assert kernel_proc.is_running() and kernel_proc.status() != psutil.STATUS_ZOMBIE, \
        "the hung kernel should outlive a killed server (it has its own session)"

    # a stopped process leaves SIGTERM pending, so SIGKILL ends it: one second of grace before it, not five
    survivors = server.stop(grace=1.0)
    assert survivors == []
    assert kernel_proc.pid in server.pids(), "stop() did not record the orphaned kernel"
    try:
        kernel_proc.wait(timeout=10)
    except psutil.TimeoutExpired:
        pass
    assert not kernel_proc.is_running() or kernel_proc.status() == psutil.STATUS_ZOMBIE, \
        f"kernel pid {kernel_proc.pid} still runs after stop()"
