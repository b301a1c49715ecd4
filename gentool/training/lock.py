"""One writer per run folder: ``.gentool.lock``, held while a run trains, resumes or
overwrites there.

Two runs writing one folder would interleave their ``metrics.jsonl`` and leave the
``model.safetensors`` of either. The lock is an advisory ``flock`` on ``.gentool.lock`` (the kernel
drops it with the process, ``kill -9`` included), and the file says who holds it: pid,
host and start time, for the one line a second writer gets. A lock file left behind by a
process that is gone, on this host, is taken over with one line said; one written on
another host (a shared file system) is refused with its name, since that run cannot be
asked whether it is alive. Where the OS has no ``flock`` (Windows) the pid check alone
decides. Holding the lock, :func:`lock_run_folder` removes the temporary files of
checkpoint writes cut short (a process killed while writing): no writer is left to finish
them.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gentool.checkpoint import unfinished_writes
from gentool.errors import UserError

__all__ = ["LOCK_FILE", "RunLock", "lock_run_folder"]

LOCK_FILE = ".gentool.lock"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class RunLock:
    """The lock of the run folder ``out``: :meth:`acquire` before anything there is
    touched, :meth:`release` however the run ends.

    Arguments:
        out: the run folder (made when missing; removed again on release when the run
            left it empty).
        say: where the line about a stale lock taken over goes.
    """

    def __init__(self, out: Path, say: Callable[[str], None] = print) -> None:
        self.out, self.path, self.say = Path(out), Path(out) / LOCK_FILE, say
        self._fd: int | None = None
        self._held = False
        self._made: list[Path] = []

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise a :class:`UserError` naming its holder."""
        missing = itertools.takewhile(lambda p: not p.exists(), (self.out, *self.out.parents))
        self._made = list(missing)
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            self._fd = self._open_locked()
            previous = _holder(_read(self._fd))
            if previous is not None:
                self._take_over(previous)
            record = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, (json.dumps(record) + "\n").encode())
            self._held = True
        except BaseException:
            self.release()  # the file stays: it is not ours
            raise

    def _open_locked(self) -> int:
        """The lock file's descriptor, locked; a file unlinked by its holder's release
        between our open and our lock is opened again."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _wait_for_holder(fd)
                    os.close(fd)
                    raise UserError(self._in_use(holder)) from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def _take_over(self, previous: dict[str, Any]) -> None:
        """A lock file no live process holds (``flock``), or whose process is gone."""
        host, pid = previous.get("host"), previous.get("pid")
        if host != socket.gethostname():
            raise UserError(
                f"{self.out} is locked by a gentool run on {_who(previous)}; if that run has "
                f"ended, remove {self.path} and run again"
            )
        if fcntl is None and isinstance(pid, int) and _alive(pid):
            raise UserError(self._in_use(previous))
        self.say(
            f"note: {self.out} was locked by gentool {_who(previous)}, which is no longer "
            "running; taking the run folder over"
        )

    def _in_use(self, holder: dict[str, Any] | None) -> str:
        who = _who(holder) if holder else "a process that is starting"
        return (
            f"{self.out} is in use by another gentool run ({who}); wait for it to end, "
            "or choose another --out"
        )

    def release(self) -> None:
        """Let go of the lock and remove its file; remove the run folder when this run made
        it and left it empty (a start that failed before writing anything)."""
        if self._fd is not None:
            try:
                if self._held and os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    self.path.unlink()  # while still locked, so no one takes a dying file
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd, self._held = None, False
        for folder in self._made:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []


def lock_run_folder(out: Path, dist: Any, say: Callable[[str], None]) -> RunLock:
    """Rank 0 of a job (or the one process) takes ``out``'s lock, before anything there is
    touched (``--overwrite`` clears it later), and removes what checkpoint writes cut short
    left there; every rank stops when the folder is another run's."""
    lock = RunLock(out, say)
    refused = None
    if dist.main:
        try:
            lock.acquire()
        except UserError as err:
            refused = err
    if dist.any(refused is not None):
        dist.close()
        raise refused or UserError(f"--out {out}: the run folder is another run's (see rank 0)")
    if dist.main:
        stale = unfinished_writes(out)
        if stale:
            size = sum(path.stat().st_size for path in stale) / 1e6
            for path in stale:
                path.unlink(missing_ok=True)
            say(
                f"note: removed {len(stale)} temporary file(s) of checkpoint writes cut short "
                f"({size:.1f} MB) from {out}"
            )
    return lock


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("utf-8", "replace")


def _holder(text: str) -> dict[str, Any] | None:
    """The holder a lock file names, or None for an empty or unreadable one."""
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _wait_for_holder(fd: int) -> dict[str, Any] | None:
    """The holder of a locked file; it writes its name just after locking, so wait a little."""
    for _ in range(20):
        holder = _holder(_read(fd))
        if holder is not None:
            return holder
        time.sleep(0.025)
    return None


def _who(holder: dict[str, Any]) -> str:
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"started {holder.get('started', '?')}"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
