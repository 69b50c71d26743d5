"""`make lab`: the command line the Makefile builds (as root it adds --allow-root, which JupyterLab demands there,
and nothing else changes), and, slow, the server really starting from that line on 127.0.0.1, stopped by pid."""
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def lab_command(*overrides) -> list[str]:
    """The jupyter command `make lab` would run (``make -n`` prints it; nothing is installed or started)."""
    out = subprocess.run(["make", "-s", "-n", "lab", *overrides], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    lines = [line for line in out.splitlines() if "jupyter lab" in line]
    assert len(lines) == 1, out
    return shlex.split(lines[0])


def test_as_root_the_lab_adds_allow_root_and_nothing_else():
    root, user = lab_command("LAB_UID=0"), lab_command("LAB_UID=1000")
    assert "--allow-root" in root and "--allow-root" not in user
    assert [a for a in root if a != "--allow-root"] == user
    assert "--ip=127.0.0.1" in user and "--notebook-dir=notebooks" in user and "--port=8888" in user


def test_the_default_follows_the_user_running_make():
    assert ("--allow-root" in lab_command()) == (os.geteuid() == 0)


def test_a_container_can_publish_the_port():
    cmd = lab_command("LAB_UID=0", "LAB_IP=0.0.0.0", "LAB_PORT=9999", "LAB_ARGS=--no-browser")
    assert "--ip=0.0.0.0" in cmd and "--port=9999" in cmd and cmd[-1] == "--no-browser"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_lab_starts_from_the_makefiles_command_line(tmp_path):
    """Whoever runs the tests (root in a container, or a user), the line `make lab` builds starts JupyterLab."""
    jupyter = Path(sys.executable).parent / "jupyter"
    if not jupyter.exists():
        pytest.skip("jupyter is not installed next to this Python")
    port = _free_port()
    cmd = lab_command(f"VENV={Path(sys.executable).parent.parent}", f"LAB_PORT={port}",
                      "LAB_ARGS=--no-browser --ServerApp.port_retries=0")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break  # it exited
            seen.append(line)
            if f"http://127.0.0.1:{port}/lab?token=" in line:
                break
        assert proc.poll() is None, "".join(seen[-5:])
        assert any(f"http://127.0.0.1:{port}/lab?token=" in s for s in seen), "".join(seen[-5:])
        assert not any("Running as root is not recommended" in s for s in seen)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
