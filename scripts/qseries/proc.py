"""External commands with a time limit, killed whole when it runs out.

Each command runs in a session of its own, so that on a time limit (or
an interrupt of qseries) its whole process group goes with it: apt's
download methods, dpkg-source's tar, the QEMUs a qtest started.  What it
printed until then is kept.

A group is first asked to stop (SIGTERM: ninja then stops the compilers
it runs, each in a group of its own, and removes their half-written
outputs), and killed (SIGKILL) after a grace period.  qseries itself is
a child subreaper, so that what a killed command left running (a
compiler of ninja, a test meson started in a session of its own) stays
its descendant, and on an interrupt the command line ends every
descendant there still is (kill_descendants).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

# How long a process group has to stop on SIGTERM before SIGKILL.
GRACE = 5.0
PR_SET_CHILD_SUBREAPER = 36


class Terminated(BaseException):
    """qseries got SIGTERM.

    Like KeyboardInterrupt, it is no Exception: no `except Exception`
    takes it for an error to report and go on from.
    """


@dataclass(frozen=True)
class Ran:
    """A finished (or, with timed_out, killed) process."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    timeout: float


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def on_sigterm_raise() -> None:
    """Make SIGTERM raise Terminated in the main thread, so that the
    cleanups that run on KeyboardInterrupt (process groups killed, locks
    released, temporary files removed) run on SIGTERM too."""
    signal.signal(signal.SIGTERM, _raise_terminated)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back for the duration (a second Ctrl-C
    must not cut a cleanup short); delivered on the way out."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(proc: subprocess.Popen[str], grace: float | None = None) -> None:
    """End the process group proc leads (proc started a session of its
    own): SIGTERM, up to grace seconds for proc to exit, then SIGKILL to
    whatever is left of the group.  proc is reaped."""
    with signals_held():
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=GRACE if grace is None else grace)
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def run_bounded(
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> Ran:
    """Run argv in a session of its own, for at most timeout seconds.

    FileNotFoundError (no such program) is the caller's to report.
    """
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
        pass_fds=tuple(pass_fds),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return Ran(tuple(argv), proc.returncode, out, err, False, timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        # The pipes close once every holder is gone; a grandchild that
        # left the group (setsid) may still hold them.
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out, err = "", ""
        return Ran(tuple(argv), proc.returncode, out, err, True, timeout)
    except BaseException:
        stop_group(proc)
        raise


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux),
    so that they stay its descendants for kill_descendants()."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of pid, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2])


def descendants(root: int | None = None, exclude: Collection[int] = ()) -> list[int]:
    """The live (not zombie) descendants of root (default: this process),
    but for those in exclude and theirs."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    live: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is None:
            continue
        state, ppid, _ = stat
        children.setdefault(ppid, []).append(int(entry))
        if state not in ("Z", "X"):
            live.add(int(entry))
    found: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in exclude:
            continue
        found.append(pid)
        todo.extend(children.get(pid, []))
    return [pid for pid in found if pid in live]


def kill_descendants(
    grace: float | None = None, exclude: Collection[int] = ()
) -> list[int]:
    """End every process this one started, directly or not, that is still
    running (but for those in exclude and theirs): SIGTERM, up to grace
    seconds, then SIGKILL.  Returns the pids that were running."""
    with signals_held():
        first = descendants(exclude=exclude)
        for pid in first:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + (GRACE if grace is None else grace)
        left = first
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = descendants(exclude=exclude)
        # SIGKILL until they are gone (or zombies), what they started
        # meanwhile included, before the caller says it is done.
        deadline = time.monotonic() + 2
        left = descendants(exclude=exclude)
        while left and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
            left = descendants(exclude=exclude)
    return first
