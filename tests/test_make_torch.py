"""`make`'s torch install: PyTorch's CPU wheel index where the machine reaches it, the plain pin quickly where it
does not. The Makefile's own install line runs (``make -n`` prints it) with a stand-in python whose ``-m pip``
only records its arguments: nothing is installed."""
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import torch_index  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def torch_line(fake_py: Path, *overrides: str) -> str:
    """The shell line of the Makefile's install recipe that installs torch, with ``PY`` the stand-in."""
    out = subprocess.run(["make", "-s", "-n", "-B", ".venv/.installed", f"PY={fake_py}", *overrides], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    lines = [line for line in out.splitlines() if "torch==" in line and "pip install" in line]
    assert len(lines) == 1, out
    return lines[0]


def run_install(tmp_path: Path, *overrides: str) -> tuple[int, str, str, float]:
    """Run the torch line: (exit status, what pip was asked, stderr, seconds)."""
    record = tmp_path / "pip_args"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "$@" > "{record}"; exit 0; fi\n'
                    f'exec "{sys.executable}" "$@"\n')
    fake.chmod(0o755)
    line = torch_line(fake, *overrides)
    t0 = time.monotonic()
    done = subprocess.run(["sh", "-c", line], cwd=ROOT, capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - t0
    return done.returncode, record.read_text().strip() if record.exists() else "", done.stderr, seconds


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers: a probe must give up on its own."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/whl/cpu"
    sock.close()


@pytest.fixture
def cpu_index():
    """A local stand-in for PyTorch's CPU index: it answers /whl/cpu/torch/."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/whl/cpu/torch/" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/whl/cpu"
    server.shutdown()
    server.server_close()


def test_an_index_that_never_answers_falls_back_to_the_plain_pin_within_seconds(tmp_path, silent_server):
    rc, pip, err, seconds = run_install(tmp_path, f"TORCH_CPU_INDEX={silent_server}")
    assert rc == 0, err
    assert pip == "-m pip install --quiet torch==2.13.0", pip  # the plain pin, no index argument
    assert seconds < torch_index.PROBE_S + 3, seconds
    assert "not reached" in err and "plain pin" in err


def test_a_name_that_does_not_resolve_falls_back_within_seconds(tmp_path):
    rc, pip, err, seconds = run_install(tmp_path, "TORCH_CPU_INDEX=https://download.pytorch.invalid/whl/cpu")
    assert rc == 0 and pip == "-m pip install --quiet torch==2.13.0", (pip, err)
    assert seconds < torch_index.PROBE_S + 3, seconds


def test_a_reachable_cpu_index_is_taken(tmp_path, cpu_index):
    rc, pip, err, _ = run_install(tmp_path, f"TORCH_CPU_INDEX={cpu_index}")
    assert rc == 0, err
    assert pip == f"-m pip install --quiet torch==2.13.0 --index-url {cpu_index}", pip
    assert "CPU build" in err


def test_the_default_index_is_pytorchs_cpu_one_and_decides_within_seconds(tmp_path):
    """Whatever this machine's network: the real CPU index is the one tried, and the answer comes quickly."""
    rc, pip, err, seconds = run_install(tmp_path)
    assert rc == 0, err
    assert pip in ("-m pip install --quiet torch==2.13.0",
                   "-m pip install --quiet torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"), pip
    assert "https://download.pytorch.org/whl/cpu" in err
    assert seconds < torch_index.PROBE_S + 3, seconds


def test_torch_index_none_and_a_url_need_no_probe_and_a_bad_value_stops_the_install(tmp_path, silent_server):
    rc, pip, _, seconds = run_install(tmp_path, "TORCH_INDEX=none", f"TORCH_CPU_INDEX={silent_server}")
    assert rc == 0 and pip == "-m pip install --quiet torch==2.13.0" and seconds < torch_index.PROBE_S, seconds
    rc, pip, _, _ = run_install(tmp_path, "TORCH_INDEX=https://mirror.example/whl/cpu")
    assert rc == 0 and pip.endswith("--index-url https://mirror.example/whl/cpu"), pip
    os.remove(tmp_path / "pip_args")
    rc, pip, err, _ = run_install(tmp_path, "TORCH_INDEX=cuda")
    assert rc != 0 and pip == "", pip  # pip never ran
    assert "TORCH_INDEX must be auto, none or an index URL, got 'cuda'" in err
