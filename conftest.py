"""Notebook budget under nbval: every notebook must finish within 90 s with a kernel peak memory under 2 GB.

It sits at the repository's root, not in ``notebooks/``, so that the students' file list holds only the lessons;
pytest loads it for every run, and it acts only when nbval collected notebooks
(``pytest --nbval --nbval-current-env notebooks``).
For each notebook nbval collects (one item per code cell, all sharing one kernel that lives on the notebook's
``IPyNbFile`` collector), we append one more item, ``<notebook>::budget``, with the same parent, so it runs
after the last cell while the kernel is still alive. It asserts

- wall time, from the setup of the first cell (kernel start included) to the end of the last cell, < 90 s;
- the kernel's peak resident memory, ``VmHWM`` in ``/proc/<kernel pid>/status`` (the kernel process is
  ``kernel.km.provisioner.process``), < 2 GB (Binder's limit).

Both numbers go into the item's ``user_properties`` (and so into JUnit XML and, under pytest-xdist, to the
controller) and into a table at the end of the run. ``SEQDIFF_NB_SECONDS`` / ``SEQDIFF_NB_MEGABYTES`` override
the limits. When notebooks are collected the fast path is the default (``SEQDIFF_FAST=1`` unless set) and the
kernel imports this checkout (its root goes first on PYTHONPATH).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
BUDGET_SECONDS = float(os.environ.get("SEQDIFF_NB_SECONDS", "90"))
BUDGET_BYTES = float(os.environ.get("SEQDIFF_NB_MEGABYTES", "2048")) * 1024**2


def _notebook_environment() -> None:
    """What a notebook's kernel inherits from this process: the fast path and this checkout first."""
    os.environ.setdefault("SEQDIFF_FAST", "1")
    if os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] != str(ROOT):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

_START: dict[str, float] = {}
RESULTS: list[dict] = []


def _is_notebook(node) -> bool:
    return type(node).__name__ == "IPyNbFile"  # nbval's collector; nbval is optional, so no import


def kernel_pid(kernel) -> int:
    """The process id of an nbval ``RunningKernel`` (jupyter_client >= 7 keeps it on the provisioner)."""
    km = kernel.km
    proc = getattr(getattr(km, "provisioner", None), "process", None)
    if proc is None:
        proc = getattr(km, "kernel", None)  # jupyter_client < 7
    if proc is None or getattr(proc, "pid", None) is None:
        raise RuntimeError("cannot find the kernel process of this nbval kernel")
    return int(proc.pid)


def peak_rss_bytes(pid: int) -> int:
    """``VmHWM`` (the peak resident set size) of a live process, from ``/proc/<pid>/status``."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM line")


class NotebookBudget(pytest.Item):
    """Asserts the wall time and the kernel peak memory of the notebook its parent collector ran."""

    def runtest(self) -> None:
        nb = self.parent
        wall = time.perf_counter() - _START.get(nb.nodeid, time.perf_counter())
        kernel = getattr(nb, "kernel", None)
        if kernel is None or not kernel.is_alive():
            raise AssertionError(f"{nb.name}: the kernel is gone, so its peak memory cannot be read "
                                 f"(a cell crashed it or nbval timed out); wall time {wall:.1f} s")
        if not os.path.exists("/proc/self/status"):
            pytest.skip(f"peak memory needs /proc (Linux); wall time was {wall:.1f} s")
        peak = peak_rss_bytes(kernel_pid(kernel))
        row = {"notebook": nb.name, "seconds": round(wall, 1), "peak_mb": round(peak / 1024**2, 1)}
        self.user_properties.extend([("wall_seconds", row["seconds"]), ("kernel_peak_mb", row["peak_mb"])])
        assert wall < BUDGET_SECONDS, (f"{nb.name} took {wall:.1f} s on the fast path; the budget is "
                                       f"{BUDGET_SECONDS:.0f} s")
        assert peak < BUDGET_BYTES, (f"{nb.name}: kernel peak memory {peak / 1024**2:.0f} MB; the budget is "
                                     f"{BUDGET_BYTES / 1024**2:.0f} MB")

    def reportinfo(self):
        return self.path, None, f"{self.parent.name}::budget"


def pytest_collection_modifyitems(session, config, items):
    """Insert a budget item after the last cell of every notebook (and, if there is one, set the kernels'
    environment: collection ends before any kernel starts)."""
    if any(_is_notebook(item.parent) for item in items):
        _notebook_environment()
    out, seen = [], set()
    for k, item in enumerate(items):
        out.append(item)
        parent = item.parent
        last_of_nb = k + 1 == len(items) or items[k + 1].parent is not parent
        if _is_notebook(parent) and last_of_nb and parent.nodeid not in seen:
            seen.add(parent.nodeid)
            out.append(NotebookBudget.from_parent(parent, name="budget"))
    items[:] = out


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # tryfirst: before the default setup starts nbval's kernel, so kernel start-up counts too
    if _is_notebook(item.parent):
        _START.setdefault(item.parent.nodeid, time.perf_counter())


def pytest_runtest_logreport(report):
    """Collect the budget items' figures from their reports: under pytest-xdist the items run in worker processes
    and the controller, which prints the table, sees only the reports (and their ``user_properties``)."""
    if report.when != "call" or not report.nodeid.endswith("::budget") or "PYTEST_XDIST_WORKER" in os.environ:
        return
    props = dict(report.user_properties)
    if "wall_seconds" in props:
        RESULTS.append({"notebook": report.nodeid.split("::")[0].rsplit("/", 1)[-1],
                        "seconds": props["wall_seconds"], "peak_mb": props["kernel_peak_mb"]})


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("notebook budget (fast path)")
    for r in sorted(RESULTS, key=lambda r: r["notebook"]):
        tr.write_line(f"{r['notebook']:<34} {r['seconds']:>6.1f} s  {r['peak_mb']:>7.1f} MB peak")
    tr.write_line(f"{'all notebooks':<34} {sum(r['seconds'] for r in RESULTS):>6.1f} s  "
                  f"{max(r['peak_mb'] for r in RESULTS):>7.1f} MB max peak "
                  f"(budgets: {BUDGET_SECONDS:.0f} s, {BUDGET_BYTES / 1024**2:.0f} MB each)")
