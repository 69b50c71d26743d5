"""Files written so that nothing is lost: atomic writes (with the litter of killed writes swept up) and a lock
that gives one output folder to one writer at a time."""
from __future__ import annotations

import os
import stat
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt

TMP_SUFFIX = ".tmp"
# what a temporary name adds to the target's: "." + name + "." + pid + "." + 8 random characters + ".tmp"
TMP_EXTRA = 1 + 1 + 10 + 1 + 8 + len(TMP_SUFFIX)
# a temporary file whose writer cannot be identified is left alone this long: no save takes an hour
STALE_SECONDS = 3600.0
LOCK_NAME = ".seqdiff.lock"


class FolderLockedError(RuntimeError):
    """Another process holds the folder's lock: it is writing there now."""


def atomic_write(target, data: bytes | str, mode: int = 0o644) -> Path:
    """Write ``data`` to ``target`` so that readers see the old file or the new one, never a torn one.

    A temporary file in the same folder (same filesystem, so ``os.replace`` is atomic), fsync, chmod
    (``mkstemp`` makes owner-only files; what we write is meant to be shared), replace, then fsync the folder.
    The temporary name carries the writer's pid, so that the temporary files of killed writers are removed the
    next time the same target is written (``remove_stale_temp_files``)."""
    target = Path(target)
    if isinstance(data, str):
        data = data.encode("utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with suppress(OSError):  # make the rename itself durable; not every platform can open a folder
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return target


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or not a pid we can ask about: assume alive
    return True


def remove_stale_temp_files(target) -> list[Path]:
    """Remove the temporary files that writes of ``target`` left behind when their process died.

    A name ``.<target>.<pid>.<random>.tmp`` is stale once that pid is no longer running; a temporary name
    without a pid (older versions) once it is ``STALE_SECONDS`` old. Returns what was removed."""
    target = Path(target)
    prefix = f".{target.name}."
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(TMP_SUFFIX)) or len(name) <= len(prefix) + len(TMP_SUFFIX):
            continue
        middle = name[len(prefix):-len(TMP_SUFFIX)].split(".")
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if len(middle) == 2 and middle[0].isdigit():
            pid = int(middle[0])
            stale = (pid != os.getpid() and not _pid_alive(pid)) or age > STALE_SECONDS
        elif len(middle) == 1:
            stale = age > STALE_SECONDS
        else:
            continue  # not one of ours
        if stale:
            with suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


# how the lock file is opened: never through a symbolic link (a link planted there would aim our writes at
# another file), never blocking on a FIFO planted there, not inherited by the processes we start
_LOCK_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_PID_TEXT = 32  # a lock file holds its holder's pid and a newline; anything longer was not written by us


def _open_lock_file(path: Path) -> int | None:
    """A descriptor of the regular file ``path`` (created if absent), refusing anything else with a ValueError
    that names it: a symbolic link, a folder, a FIFO or device, a file with other hard links. None when the file
    was removed between the open and the check (its holder released it): the caller opens it again."""
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _LOCK_FLAGS, 0o644)
        except PermissionError:
            fd = os.open(path, os.O_RDONLY | _LOCK_FLAGS)  # someone else's lock file: locking needs no write access
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise
        return None  # the read-only open lost the file to its holder's release
    except OSError:
        if not (os.path.islink(path) or os.path.isdir(path)):
            raise
        fd = None
    st = None if fd is None else os.fstat(fd)
    if st is not None and stat.S_ISREG(st.st_mode) and st.st_nlink == 0:
        os.close(fd)
        return None
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        if fd is not None:
            os.close(fd)
        raise ValueError(f"{str(path)!r} is {_kind_of(path, st)}, not the plain file seqdiff locks; remove it or "
                         f"choose another output folder")
    return fd


def _kind_of(path: Path, st) -> str:
    if os.path.islink(path):
        return f"a symbolic link (to {os.readlink(path)!r:.80})"
    if st is None or stat.S_ISDIR(st.st_mode):
        return "a folder"
    if stat.S_ISREG(st.st_mode):
        return f"a file with {st.st_nlink} hard links (another name of some other file)"
    return "a FIFO, socket or device"


def _is_at(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, not replaced since the open)."""
    try:
        here = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


# a releasing holder removes the lock file, so a contender may lock a file that no longer has the name; it opens
# the name again, and it cannot lose this way more often than other holders release meanwhile
_LOCK_TRIES = 100


def _lock_fd(path: Path, folder: Path) -> int:
    """A descriptor of ``path`` holding its exclusive flock, checked to still be the file at ``path``."""
    for _ in range(_LOCK_TRIES):
        fd = _open_lock_file(path)
        if fd is None:
            continue
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # pragma: no cover - Windows
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            if fcntl is not None and not _is_at(fd, path):
                os.close(fd)  # the holder of a removed file: not the folder's lock
                continue
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise FolderLockedError(f"{str(folder)!r} is being written by another seqdiff process{who}; wait for "
                                    f"it to finish or choose another folder") from None
        if fcntl is None or _is_at(fd, path):
            return fd
        os.close(fd)  # locked a file its holder removed on release (or someone replaced): take the new one
    raise FolderLockedError(f"{str(folder)!r} is being locked and released by other seqdiff processes faster than "
                            f"this one can take it ({_LOCK_TRIES} tries); try again")


@contextmanager
def locked_folder(folder):
    """Hold an exclusive lock on ``folder`` (created if needed) while the block runs; a second holder, in this
    process or another, gets ``FolderLockedError`` at once instead of waiting.

    The lock is the OS's ``flock`` on ``<folder>/.seqdiff.lock``, released however the process ends (kill -9
    included), so a lock file left by a killed holder is reused, never stale. A holder that ends normally removes
    the file while it still holds the lock; a contender that locked the removed file sees (by device and inode)
    that the name no longer leads to it and opens the name again. The file is opened without following links and
    must be a plain file of its own (else ValueError); its text, the holder's pid, is rewritten and removed only
    when it already is a pid (or empty), so no other file is changed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = _lock_fd(path, folder)
    try:
        # who holds it, for the message above; the lock itself is the flock, not this text
        if _read_pid(fd) is not None:
            with suppress(OSError):
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield path
    finally:
        _release(fd, path)


def _release(fd: int, path: Path) -> None:
    """Remove the lock file (only ours: a pid or empty, still at ``path``) while locked, then unlock."""
    try:
        if fcntl is not None and _read_pid(fd) is not None and _is_at(fd, path):
            os.unlink(path)
    except OSError:
        pass  # a folder we may lock but not write in: the file stays, as after a kill
    finally:
        os.close(fd)  # releases the lock


def _read_pid(fd: int) -> str | None:
    """The pid a lock file holds ("" when empty), None when it holds anything else."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, _PID_TEXT + 1)
    except OSError:
        return None
    text = text.decode("ascii", "replace").strip()
    return text if len(text) <= _PID_TEXT and (text == "" or text.isdigit()) else None


# ---------------------------------------------------------------------- one-line messages about paths
def one_line(message) -> str:
    """``message`` as one line: every run of whitespace (newlines too) a single space."""
    return " ".join(str(message).split())


def shorten(text, limit: int = 60) -> str:
    """``repr`` of a path or value, cut in the middle when long (a 5000-character path stays one readable line)."""
    r = repr(str(text))
    return r if len(r) <= limit else f"{r[:limit // 2]}...{r[-limit // 4:]} ({len(str(text))} characters)"


def os_error_line(err: OSError) -> str:
    """The OS's words for ``err`` and the path it names, as one line."""
    where = f": {shorten(err.filename)}" if getattr(err, "filename", None) else ""
    return one_line(f"{err.strerror or err}{where}")
