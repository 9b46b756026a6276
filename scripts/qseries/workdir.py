"""The work dir's lock: one qseries run at a time per work dir.

Two runs sharing a work dir would move the same worktrees, apply into the
same check tree and run apt on the same private state (apt runs there
without its own locking).  Every command therefore holds an exclusive
flock on WORKDIR/lock for as long as it runs.  The kernel drops a flock
when its holder dies, so a killed run never leaves a stale lock behind.
A second run waits, saying who holds the lock, or with --no-wait refuses.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from .errors import QSeriesError, UsageError

LOCK_NAME = "lock"


class WorkDirBusy(QSeriesError):
    """Another qseries run holds the work dir."""


def first_existing(path: Path) -> Path:
    """path itself, or its nearest ancestor that exists."""
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_directory(path: Path, what: str) -> None:
    """Refuse, as bad input, a directory option that names a file."""
    blocker = first_existing(path)
    if not blocker.is_dir():
        where = "" if blocker == path.expanduser().absolute() else f" ({blocker})"
        raise UsageError(
            f"{what} {path}{where} is a file, not a directory",
            f"pass {what} a directory",
        )


class WorkDirLock:
    """An exclusive lock on a work dir, held by this process."""

    def __init__(self, root: Path, command: str):
        self.root = root
        self.path = root / LOCK_NAME
        self.command = command
        self.fd: int | None = None

    def holder(self) -> str:
        """Who holds the lock, as the holder wrote it ("pid N: command")."""
        try:
            text = self.path.read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text or "another process"

    def acquire(self, wait: bool, notify: Callable[[str], None] | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = self.holder()
                if not wait:
                    raise WorkDirBusy(
                        f"the work dir {self.root} is in use ({who})",
                        "wait for that run, or pass another --workdir",
                    ) from None
                if notify is not None:
                    notify(f"waiting for the work dir {self.root}, in use ({who})")
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}: {self.command}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            # Say nobody holds it before letting go.
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> WorkDirLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
