"""Atomic writes that sweep up what killed writers left, and the output-folder lock (an OS lock, so a killed
holder never leaves it stale)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import seqdiff_kit._io as io_mod
from seqdiff_kit._io import (LOCK_NAME, STALE_SECONDS, FolderLockedError, atomic_write, locked_folder,
                             remove_stale_temp_files)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_atomic_write_leaves_only_the_target(tmp_path):
    atomic_write(tmp_path / "sub" / "a.json", "one")
    atomic_write(tmp_path / "sub" / "a.json", b"two")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.json"]
    assert (tmp_path / "sub" / "a.json").read_bytes() == b"two"


def test_a_failed_write_keeps_the_old_file_and_names_its_temp_by_pid(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    atomic_write(target, "old")
    seen = []

    def boom(src, dst):
        seen.append(Path(src).name)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(io_mod.os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        atomic_write(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert seen[0].startswith(f".a.json.{os.getpid()}.") and seen[0].endswith(".tmp")


def test_stale_temp_files_are_swept_on_the_next_write(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    names = {
        f".model.safetensors.{dead}.abcd1234.tmp": True,    # its writer is gone
        f".model.safetensors.{alive}.abcd1234.tmp": False,  # a live writer's, still being written
        ".model.safetensors.q1w2e3r4.tmp": False,           # no pid (an older version): recent, left alone
        ".model.safetensors.z9x8c7v6.tmp": True,            # no pid, older than STALE_SECONDS
        f".model.json.{dead}.abcd1234.tmp": False,          # another target's: swept when that one is written
        "notes.tmp": False,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"half")
    _age(tmp_path / ".model.safetensors.z9x8c7v6.tmp", STALE_SECONDS + 60)
    atomic_write(tmp_path / "model.safetensors", b"whole")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"model.safetensors"} | {n for n, gone in names.items() if not gone}
    atomic_write(tmp_path / "model.json", b"{}")
    assert f".model.json.{dead}.abcd1234.tmp" not in {p.name for p in tmp_path.iterdir()}
    assert remove_stale_temp_files(tmp_path / "model.safetensors") == []


def test_a_second_holder_is_refused_at_once_and_the_lock_is_released(tmp_path):
    with locked_folder(tmp_path / "out") as path:
        assert path == tmp_path / "out" / LOCK_NAME and path.read_text() == f"{os.getpid()}\n"
        t0 = time.perf_counter()
        with pytest.raises(FolderLockedError, match=rf"being written by another seqdiff process \(pid {os.getpid()}\)"):
            with locked_folder(tmp_path / "out"):
                pass
        assert time.perf_counter() - t0 < 1.0
        assert path.exists()
    assert os.listdir(tmp_path / "out") == []  # released on exit, its file removed
    with locked_folder(tmp_path / "out"):
        pass
    with pytest.raises(RuntimeError):  # and on an exception
        with locked_folder(tmp_path / "out"):
            raise RuntimeError("crash")
    assert os.listdir(tmp_path / "out") == []
    with locked_folder(tmp_path / "out"):
        pass


HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("io_mod", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
with m.locked_folder(sys.argv[2]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path):
    """The lock is flock(2): the kernel drops it with the process. The module is loaded on its own (no torch
    import), so the holder starts in a fraction of a second."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, io_mod.__file__, str(tmp_path / "out")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(FolderLockedError, match=f"pid {proc.pid}"):
            with locked_folder(tmp_path / "out"):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / "out" / LOCK_NAME).read_text().strip() == str(proc.pid)  # the file stays behind...
    with locked_folder(tmp_path / "out"):  # ...and does not block anyone
        pass
    assert os.listdir(tmp_path / "out") == []  # the next holder removes it


CONTENDER = """
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("io_mod", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
folder, counter, go, rounds = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
while not os.path.exists(go):
    time.sleep(0.001)
done = refused = 0
while done < rounds:
    try:
        with m.locked_folder(folder):
            with open(counter) as f:  # read, then write: two holders at once would lose an increment
                n = int(f.read())
            with open(counter, "w") as f:
                f.write(str(n + 1))
            done += 1
    except m.FolderLockedError:
        refused += 1
print(done, refused, flush=True)
"""


def test_contending_processes_never_hold_the_lock_together(tmp_path):
    """Each release removes the lock file while contenders may already have it open: one that then locks the
    removed file must notice (device and inode) and open the name again, or it and the next creator of the file
    would both hold "the" lock. A counter incremented non-atomically under the lock ends exactly right."""
    out, counter, go = tmp_path / "out", tmp_path / "counter", tmp_path / "go"
    out.mkdir()
    counter.write_text("0")
    procs, rounds = 3, 250
    ps = [subprocess.Popen([sys.executable, "-c", CONTENDER, io_mod.__file__, str(out), str(counter), str(go),
                            str(rounds)], stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    go.touch()
    results = [p.communicate(timeout=300)[0].split() for p in ps]
    assert all(p.returncode == 0 for p in ps), results
    assert [int(r[0]) for r in results] == [rounds] * procs
    assert sum(int(r[1]) for r in results) > 0  # they did contend
    assert int(counter.read_text()) == procs * rounds
    assert os.listdir(out) == []


# ---------------------------------------------------------------------- what a hostile folder holds at the lock's name
def _plant(kind: str, lock: Path, victim: Path) -> None:
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "relative-symlink":
        lock.symlink_to(os.path.relpath(victim, lock.parent))
    elif kind == "dangling-symlink":
        lock.symlink_to(victim.parent / "not-there-yet")
    elif kind == "hard-link":
        os.link(victim, lock)
    elif kind == "fifo":
        os.mkfifo(lock)
    elif kind == "folder":
        lock.mkdir()


@pytest.mark.parametrize("kind", ["symlink", "relative-symlink", "dangling-symlink", "hard-link", "fifo", "folder"])
def test_a_lock_name_that_is_not_a_plain_file_is_refused_and_nothing_is_written_through_it(tmp_path, kind):
    """``ln -s ../precious.txt out/.seqdiff.lock`` once made the lock truncate precious.txt and write a pid in it."""
    victim = tmp_path / "precious.txt"
    victim.write_text("years of work\n")
    out = tmp_path / "out"
    out.mkdir()
    _plant(kind, out / LOCK_NAME, victim)
    with pytest.raises(ValueError, match=rf"{LOCK_NAME}'? is a .*not the plain file seqdiff locks"):
        with locked_folder(out):  # a FIFO must not block the open
            pass
    assert victim.read_text() == "years of work\n"
    assert not (tmp_path / "not-there-yet").exists()


def test_an_existing_lock_file_that_holds_no_pid_is_locked_but_not_rewritten(tmp_path):
    (tmp_path / "out").mkdir()
    lock = tmp_path / "out" / LOCK_NAME
    lock.write_text("notes someone keeps here\n")
    with locked_folder(tmp_path / "out"):
        assert lock.read_text() == "notes someone keeps here\n"
        with pytest.raises(FolderLockedError):
            with locked_folder(tmp_path / "out"):
                pass
    assert lock.read_text() == "notes someone keeps here\n"  # not ours: not removed on release either
    lock.write_text("")  # an empty one, or a pid, is the lock's own text
    with locked_folder(tmp_path / "out"):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert not lock.exists()
