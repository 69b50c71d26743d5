"""Fixtures of the browser tests: the system's Chromium driven by playwright, a private JupyterLab server, a
private Voila server (the explorer page of ``make app``); the screenshots folder (``artifacts``) is in
tests/conftest.py.

Nothing here downloads a browser: playwright launches Debian's ``chromium`` (``apt-get install chromium``).
Where Chromium or playwright is missing the tests skip and say how to install them, except when
``SEQDIFF_REQUIRE_BROWSER=1`` (set by ``.ci/run``): then a missing browser is a failure.

The JupyterLab server gets a free port on 127.0.0.1, a random token, fresh Jupyter config/data/runtime and
IPython dirs under the test's temp folder (the user's own settings and kernels are never read or written) and
``SEQDIFF_FAST=1``. It is stopped by process id: its process group, and every kernel it started, found as its
child processes and as the processes holding one of its connection files (``kernel-<id>.json`` from
``/api/kernels``, in its private runtime dir), also when a test fails.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from _shared import APP, NOTEBOOKS

# the flags the project allows: no sandbox (containers), no GPU, and nothing that talks to the network
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_HINT = ("install them with `apt-get install chromium` (Debian's Chromium) and `pip install playwright` "
                "(do not run `playwright install`: the tests drive the system's Chromium)")
REQUIRE_ENV = "SEQDIFF_REQUIRE_BROWSER"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives JupyterLab or the HTML report in headless Chromium (tests/browser); "
                   "needs Debian's chromium and python playwright")


def browser_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "0") not in ("", "0")


def skip_or_fail(reason: str, hint: str = INSTALL_HINT) -> None:
    """Skip with ``reason`` and ``hint`` (how to install), or fail when ``SEQDIFF_REQUIRE_BROWSER=1`` (CI)."""
    if browser_required():
        pytest.fail(f"{reason}; {REQUIRE_ENV}=1 requires the browser tests to run: {hint}", pytrace=False)
    pytest.skip(f"{reason}: {hint}")


def find_chromium() -> str | None:
    """The system Chromium: ``SEQDIFF_CHROMIUM`` if set, else ``chromium``/``chromium-browser`` on PATH."""
    explicit = os.environ.get("SEQDIFF_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


class _WorkerCapsys:
    """``capsys`` whose ``disabled()`` writes to the worker's stderr (see the ``capsys`` fixture below)."""

    def __init__(self, capsys):
        self._capsys = capsys

    def __getattr__(self, name):
        return getattr(self._capsys, name)

    @contextlib.contextmanager
    def disabled(self):
        with self._capsys.disabled():
            sys.stdout.flush()
            saved = os.dup(1)
            os.dup2(2, 1)
            try:
                yield
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
                os.close(saved)


@pytest.fixture
def capsys(capsys):
    """pytest's ``capsys``; in a pytest-xdist worker its ``disabled()`` prints to the worker's stderr, which is the
    terminal that started the run: a worker's stdout is /dev/null (execnet keeps the real one for its channel),
    and what the browser tests print there (timings, latencies) is part of their result."""
    return _WorkerCapsys(capsys) if "PYTEST_XDIST_WORKER" in os.environ else capsys


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium (playwright ``Browser``) launched from the system's executable."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("python playwright is not installed")
    exe = find_chromium()
    if exe is None:
        explicit = os.environ.get("SEQDIFF_CHROMIUM")
        skip_or_fail(f"SEQDIFF_CHROMIUM={explicit!r} is not an executable" if explicit else
                     "Chromium was not found (no `chromium` or `chromium-browser` on PATH, no /usr/bin/chromium)")
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        except Exception as err:  # a broken install is reported like a missing one, with the cause
            skip_or_fail(f"Chromium at {exe} did not start ({type(err).__name__}: {str(err).splitlines()[0]})")
        try:
            yield browser
        finally:
            browser.close()


def leaves_loopback(url: str) -> bool:
    """Whether a request to ``url`` leaves the machine: any http(s)/ws(s) host but 127.0.0.1 (file:, data:,
    blob: and about: stay in the browser)."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname != "127.0.0.1"


@pytest.fixture
def page(chromium):
    """A fresh browser context and page (1280 x 900). Uncaught page errors are collected in ``page.errors``,
    console errors in ``page.console_errors``, requests that would leave 127.0.0.1 in ``page.outside``; such
    requests are aborted (the tests run offline), and at teardown the test fails if any console error or
    outside request happened: a student's page shows neither."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.errors, pg.console_errors, pg.outside = [], [], []
    pg.on("pageerror", lambda err: pg.errors.append(str(err)))
    pg.on("console", lambda msg: pg.console_errors.append(f"{msg.text[:300]} ({msg.location.get('url', '?')})")
          if msg.type == "error" else None)

    def outside(route):
        pg.outside.append(route.request.url)
        route.abort()

    context.route(lambda url: leaves_loopback(url), outside)
    pg.on("websocket", lambda ws: pg.outside.append(ws.url) if leaves_loopback(ws.url) else None)
    try:
        yield pg
    finally:
        context.close()
    assert not pg.outside, f"requests that leave 127.0.0.1: {pg.outside[:5]}"
    assert not pg.console_errors, f"console errors in the page: {pg.console_errors[:5]}"


# ---------------------------------------------------------------------------------------------- JupyterLab
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# JupyterLab settings for a reproducible test page: every cell rendered (no windowing, so all outputs are in
# the DOM), no news or update pop-ups.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"checkForUpdates": False,
                                                                         "fetchNews": "false"},
}


class LabServer:
    """A JupyterLab server in its own process group, with private Jupyter dirs under ``root``.

    ``pids()`` records (and returns) the server and every kernel process it started; ``stop()`` ends them all
    by process id and returns the ids that survived (none, normally)."""

    def __init__(self, root: Path, notebook_dir: Path, *, timeout: float = 120.0):
        import psutil  # jupyter_server depends on it

        self._psutil = psutil
        self.root, self.notebook_dir = Path(root), Path(notebook_dir)
        self.token = secrets.token_hex(16)
        self.dirs = {k: self.root / k for k in ("config", "data", "runtime", "ipython", "workspaces")}
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        settings = self.dirs["config"] / "lab" / "user-settings"
        for rel, value in LAB_SETTINGS.items():
            f = settings / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(value))
        self.env = dict(os.environ)
        self.env.update({
            "SEQDIFF_FAST": "1",
            "JUPYTER_CONFIG_DIR": str(self.dirs["config"]), "JUPYTER_DATA_DIR": str(self.dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(self.dirs["runtime"]), "IPYTHONDIR": str(self.dirs["ipython"]),
            "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(self.dirs["workspaces"]),
            "JUPYTER_PLATFORM_DIRS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        })
        self.env.setdefault("SEQDIFF_THREADS", "1")
        self.log_path = self.root / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None
        self._known: dict[int, object] = {}  # pid -> psutil.Process (keeps the create time: no pid reuse)
        self.timeout = timeout
        self.port = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"

    name = "JupyterLab"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--notebook-dir={self.notebook_dir}", "--ServerApp.open_browser=False",
               # offline: no update checks, no extension manager looking up PyPI
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI often run as root
            cmd.append("--allow-root")
        return cmd

    def start(self) -> "LabServer":
        for attempt in range(3):  # a free port can be taken between choosing and binding it: try another
            self.port = free_port()
            cmd = self.command()
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(cmd, cwd=self.notebook_dir, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            self._remember(self.proc.pid)
            if self._wait_ready():
                return self
            if "address already in use" not in self.log_tail().lower():
                break
        tail, code = self.log_tail(), self.proc.poll()
        self.stop()
        why = f"exited with status {code}" if code is not None else f"did not answer within {self.timeout:.0f} s"
        raise RuntimeError(f"{self.name} on {self.base} {why}; its log ({self.log_path}) ends:\n{tail}")

    def ready_path(self) -> str:
        return "api/status"

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                self.api("GET", self.ready_path(), timeout=2)
                return True
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        return False

    def api(self, method: str, path: str, timeout: float = 10, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}/{path}", method=method, data=data,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def _remember(self, pid: int) -> None:
        if pid not in self._known:
            try:
                self._known[pid] = self._psutil.Process(pid)
            except self._psutil.Error:
                pass

    def kernels(self) -> list[dict]:
        try:
            return self.api("GET", "api/kernels", timeout=5) or []
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
            return []

    def pids(self) -> list[int]:
        """Record and return the server's pid and its kernels' pids: the server's child processes, and the
        processes whose command line names one of the connection files in the private runtime dir (the
        kernels listed by /api/kernels, found even if the server died and they were re-parented)."""
        ps = self._psutil
        if self.proc is not None:
            self._remember(self.proc.pid)
            try:
                for child in ps.Process(self.proc.pid).children(recursive=True):
                    self._remember(child.pid)
            except ps.Error:
                pass
        runtime = str(self.dirs["runtime"])
        wanted = [f"kernel-{k['id']}.json" for k in self.kernels()]
        for p in ps.process_iter(["pid", "cmdline"]):
            cmd = " ".join(p.info.get("cmdline") or [])
            if runtime in cmd or any(w in cmd for w in wanted):
                self._remember(p.info["pid"])
        return sorted(self._known)

    def shutdown_kernels(self) -> None:
        """Shut down every running kernel through the REST API (frees the memory between notebooks)."""
        self.pids()
        for k in self.kernels():
            try:
                self.api("DELETE", f"api/kernels/{k['id']}", timeout=20)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass

    def stop(self, grace: float = 5.0) -> list[int]:
        """End the server and every process recorded by ``pids()``; return the pids still alive (should be []).
        ``grace``: the seconds SIGTERM has before SIGKILL follows."""
        ps = self._psutil
        if self.proc is None:
            return []
        self.pids()
        if self.proc.poll() is None:
            try:  # the polite way first: the server shuts its kernels down too
                self.api("POST", "api/shutdown", timeout=5)
                self.proc.wait(timeout=10)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, subprocess.TimeoutExpired):
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in self._known.values() if p.is_running() and p.status() != ps.STATUS_ZOMBIE]
            if not alive:
                break
            if self.proc.poll() is None:
                try:  # the server's own session: everything it spawned without a new session
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    pass
            for p in alive:
                try:
                    # kernels lead their own session (jupyter_client starts them with a new session): end the
                    # group they lead, else just the process
                    if os.getpgid(p.pid) == p.pid:
                        os.killpg(p.pid, sig)
                    else:
                        p.send_signal(sig)
                except (ProcessLookupError, ps.Error):
                    pass
            _, still = ps.wait_procs(alive, timeout=grace)
            if not still:
                break
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return [pid for pid, p in self._known.items() if p.is_running() and p.status() != ps.STATUS_ZOMBIE]


class VoilaServer(LabServer):
    """Voila serving one notebook (``make app``'s command) on 127.0.0.1 with a token, private Jupyter dirs and
    ``SEQDIFF_FAST=1``; every page load starts a kernel, which ``pids()`` finds as the server's children."""

    name = "Voila"

    def __init__(self, root: Path, notebook: Path, **kw):
        super().__init__(root, Path(notebook).parent, **kw)
        self.notebook = Path(notebook)
        # the explorer's template (app/voila/templates/explorer: no CDN), found as `make app` finds it
        self.env["JUPYTER_PATH"] = str(self.notebook_dir)

    def command(self) -> list[str]:
        # Voila has no --allow-root (it is not a jupyter_server ServerApp); it runs as root as it is
        return [sys.executable, "-m", "voila", str(self.notebook), "--template=explorer", "--no-browser",
                "--Voila.ip=127.0.0.1",
                f"--port={self.port}", f"--token={self.token}", "--Voila.port_retries=0"]

    def ready_path(self) -> str:
        return f"voila/static/voila.js?token={self.token}"

    def api(self, method: str, path: str, timeout: float = 10, body: dict | None = None):
        req = urllib.request.Request(f"{self.base}/{path}", method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
        return None

    def kernels(self) -> list[dict]:
        return []

    def shutdown_kernels(self) -> None:
        self.pids()

    def stop(self, grace: float = 5.0) -> list[int]:
        self.pids()
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        return super().stop(grace)


def require_lab() -> None:
    missing = []
    for mod in ("jupyterlab", "ipywidgets", "anywidget", "psutil"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        skip_or_fail(f"{', '.join(missing)} not installed", hint="pip install -e '.[lab]'")


@pytest.fixture(scope="module")
def lab_server(chromium, tmp_path_factory):
    """A running JupyterLab on a copy of notebooks/ (runs never write outputs into the repo's notebooks).

    Stopped by pid in the finalizer, which fails the test run (an error at teardown) if any process survives."""
    require_lab()
    root = tmp_path_factory.mktemp("jupyterlab")
    nb_dir = root / "notebooks"
    nb_dir.mkdir()
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        shutil.copy2(nb, nb_dir / nb.name)
    server = LabServer(root / "jupyter", nb_dir)
    server.start()
    try:
        yield server
    finally:
        survivors = server.stop()
        assert not survivors, f"processes of the JupyterLab test server survived shutdown: {survivors}"


@pytest.fixture(scope="module")
def voila_server(chromium, tmp_path_factory):
    """Voila on a copy of ``app/`` (the explorer of ``make app``), stopped by pid at teardown."""
    require_lab()
    try:
        __import__("voila")
    except ImportError:
        skip_or_fail("voila is not installed", hint="pip install -e '.[lab]'")
    root = tmp_path_factory.mktemp("voila")
    app = root / "app"
    shutil.copytree(APP, app)
    server = VoilaServer(root / "jupyter", app / "explorer.ipynb")
    server.start()
    try:
        yield server
    finally:
        survivors = server.stop()
        assert not survivors, f"processes of the Voila test server survived shutdown: {survivors}"


@pytest.fixture
def make_lab_server(tmp_path):
    """A factory of ``LabServer`` objects (not started) on an empty notebook dir; each is stopped at teardown."""
    require_lab()
    servers = []

    def make() -> LabServer:
        root = tmp_path / f"lab{len(servers)}"
        (root / "notebooks").mkdir(parents=True)
        servers.append(LabServer(root / "jupyter", root / "notebooks"))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()
