"""Runs recorded in the work dir, so that the next run ends what a
killed one left behind.

SIGKILL gives qseries no chance to clean up: the QEMUs, ninja and its
compilers, meson's test runners and the QEMUs libqtest starts keep
running (reparented, some in sessions of their own), and the run's
scratch directories stay.  So each run, once it holds the work dir's
lock, writes WORKDIR/runs/PID.json and sets a marker that the
environment of every process it starts carries (proc.set_run_marker).
Only one run at a time holds the lock, so the next run knows every
other record for a dead run's: it ends the processes whose environment
carries that run's marker (leaving the session does not drop it),
removes the scratch the run made, then the record, and says so.

A pid can be reused.  A process counts as the run's only if it started
(field 22 of /proc/PID/stat, clock ticks since boot) no earlier than
the run, and it is signalled through a pidfd opened before its start
time is read again, so the signal reaches that process or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import proc
from .errors import ToolError

RUNS_DIR = "runs"
# Where runs make their scratch: an entry of these that a run created
# or changed is its own (no other run held the lock meanwhile).
SCRATCH_ROOTS = ("tmp",)
# Directories a run makes and always removes at its end (bench's cold
# reproduce and its steps by hand): any left there is a dead run's.  A
# lab names its own (pipeline/lab.py's throwaway()), which the caller
# of record() adds to these.
THROWAWAY = (
    "bench/cold-reproduce",
    "bench/by-hand",
)
# How long the processes of a dead run have to stop on SIGTERM.
GRACE = 5.0


def start_time(pid: int) -> int | None:
    """When pid started (clock ticks since boot), None if it is gone."""
    fields = proc.stat_fields(pid)
    # fields[0] is field 3 of stat (the state); field 22 is the start.
    return None if fields is None else int(fields[19])


def marker_of(workdir: Path, pid: int, start: int) -> str:
    """The marker of run pid: the work dir and the run it names."""
    return f"{pid}.{start}@{workdir}"


@dataclass(frozen=True)
class Record:
    """What a run wrote of itself in the work dir."""

    path: Path
    pid: int
    start: int
    started: float
    command: str
    argv: tuple[str, ...]
    marker: str
    # root -> {entry name: [inode, ctime in ns]} when the run began.
    scratch: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    throwaway: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "start": self.start,
            "started": self.started,
            "command": self.command,
            "argv": list(self.argv),
            "marker": self.marker,
            "scratch": self.scratch,
            "throwaway": list(self.throwaway),
        }

    @classmethod
    def read(cls, path: Path) -> Record | None:
        """The record in path, None if it is not one (half written)."""
        try:
            data = json.loads(path.read_text())
            return cls(
                path=path,
                pid=int(data["pid"]),
                start=int(data["start"]),
                started=float(data["started"]),
                command=str(data["command"]),
                argv=tuple(str(a) for a in data["argv"]),
                marker=str(data["marker"]),
                scratch={
                    str(root): {str(k): [int(i) for i in v] for k, v in dict(e).items()}
                    for root, e in dict(data["scratch"]).items()
                },
                throwaway=tuple(str(t) for t in data["throwaway"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def alive(self) -> bool:
        """The run's process still runs (its pid not reused since)."""
        return start_time(self.pid) == self.start


def _entries(root: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(root):
            st = entry.stat(follow_symlinks=False)
            found[entry.name] = [st.st_ino, st.st_ctime_ns]
    return found


def marked(marker: str, after: int) -> list[tuple[int, int]]:
    """(pid, start) of every process whose environment carries marker
    and that started no earlier than after."""
    needle = f"{proc.RUN_VARIABLE}={marker}".encode()
    found = []
    own = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if needle not in environ.split(b"\0"):
            continue
        start = start_time(int(entry))
        if start is not None and start >= after:
            found.append((int(entry), start))
    return found


def _signal(pid: int, start: int, sig: int) -> bool:
    """Send sig to pid if it is still the process that started at start."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False  # gone
    try:
        if start_time(pid) != start:
            return False  # the pid is another process's now
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def _ask_to_stop(pid: int, start: int) -> bool:
    """SIGTERM, then SIGCONT: a stopped process acts on it only once
    it runs again."""
    if not _signal(pid, start, signal.SIGTERM):
        return False
    _signal(pid, start, signal.SIGCONT)
    return True


def end_processes(marker: str, after: int, grace: float = GRACE) -> int:
    """End every process carrying marker: SIGTERM, up to grace seconds,
    then SIGKILL, until none is left (what they start meanwhile
    included).  Returns how many there were."""
    seen: set[tuple[int, int]] = set()
    left = marked(marker, after)
    for pid, start in left:
        if _ask_to_stop(pid, start):
            seen.add((pid, start))
    deadline = time.monotonic() + grace
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = marked(marker, after)
        for pid, start in left:
            if (pid, start) not in seen and _ask_to_stop(pid, start):
                seen.add((pid, start))
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:
        for pid, start in left:
            if _signal(pid, start, signal.SIGKILL):
                seen.add((pid, start))
        time.sleep(0.02)
        left = marked(marker, after)
    return len(seen)


def _remove(path: Path) -> bool:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return not os.path.lexists(path)


def remove_scratch(workdir: Path, record: Record) -> int:
    """Remove what record's run made in its scratch roots and throw-away
    dirs.  Returns how many entries went."""
    removed = 0
    for root, before in record.scratch.items():
        for name, now in _entries(workdir / root).items():
            if before.get(name) != now and _remove(workdir / root / name):
                removed += 1
    for name in record.throwaway:
        path = workdir / name
        if os.path.lexists(path) and _remove(path):
            removed += 1
    return removed


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _when(started: float) -> str:
    at = time.localtime(started)
    if time.strftime("%Y-%m-%d", at) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", at)
    return time.strftime("%Y-%m-%d %H:%M:%S", at)


def clean_dead(
    workdir: Path, notify: Callable[[str], None], grace: float = GRACE
) -> list[Record]:
    """End the processes and remove the scratch of every dead run
    recorded in workdir (the caller holds its lock), one line each for
    notify.  Returns the records removed."""
    own = (os.getpid(), start_time(os.getpid()))
    cleaned = []
    for half in (workdir / RUNS_DIR).glob("*.json.new"):
        # A record a run was killed writing: it had started nothing yet.
        with contextlib.suppress(FileNotFoundError):
            half.unlink()
    for path in sorted((workdir / RUNS_DIR).glob("*.json")):
        record = Record.read(path)
        if record is None:
            # Not a record qseries wrote (they are written whole).
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        if (record.pid, record.start) == own or record.alive():
            continue
        ended = end_processes(record.marker, record.start, grace)
        removed = remove_scratch(workdir, record)
        stuck = marked(record.marker, record.start)
        if ended or removed:
            what = " and ".join(
                part
                for part in (
                    f"ended {_count(ended, 'process', 'processes')}" if ended else "",
                    f"removed {_count(removed, 'scratch dir', 'scratch dirs')}"
                    if removed
                    else "",
                )
                if part
            )
            notify(
                f"{what} left by a killed run (pid {record.pid}, "
                f"{record.command}, started {_when(record.started)})"
            )
        if stuck:
            # Kept, so that the next run tries again (a process in
            # uninterruptible sleep outlives even SIGKILL for a while).
            notify(
                f"{_count(len(stuck), 'process', 'processes')} of a killed run "
                f"(pid {record.pid}) did not end: "
                + ", ".join(str(pid) for pid, _ in stuck)
            )
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        cleaned.append(record)
    return cleaned


def record(
    workdir: Path,
    command: str,
    argv: Sequence[str],
    throwaway: Sequence[str] = THROWAWAY,
) -> Record:
    """Write this run's record and set its marker for what it starts.
    throwaway: the directories the run makes and removes at its end."""
    pid = os.getpid()
    start = start_time(pid)
    if start is None:
        raise ToolError(
            "/proc is not mounted: qseries cannot tell its runs' processes apart",
            "mount proc on /proc (mount -t proc proc /proc) and run qseries again",
        )
    runs = workdir / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    rec = Record(
        path=runs / f"{pid}.json",
        pid=pid,
        start=start,
        started=time.time(),
        command=command,
        argv=tuple(argv),
        marker=marker_of(workdir, pid, start),
        scratch={root: _entries(workdir / root) for root in SCRATCH_ROOTS},
        throwaway=tuple(throwaway),
    )
    half = rec.path.with_suffix(".json.new")
    half.write_text(json.dumps(rec.to_json(), indent=1) + "\n")
    half.replace(rec.path)
    proc.set_run_marker(rec.marker)
    return rec


@contextlib.contextmanager
def recorded(
    workdir: Path,
    command: str,
    notify: Callable[[str], None],
    throwaway: Sequence[str] = THROWAWAY,
) -> Iterator[Record]:
    """For the length of a run that holds workdir's lock: first what dead
    runs left is ended, then this run is recorded.  However the run
    ends, what it started and left running (a grandchild that left its
    group, outliving a time limit) is ended, then its record removed."""
    clean_dead(workdir, notify)
    before = proc.run_marker()
    rec = record(workdir, command, sys.argv, throwaway)
    finished = False
    try:
        yield rec
        finished = True
    finally:
        proc.set_run_marker(before)
        with proc.signals_held():
            ended = end_processes(rec.marker, rec.start)
        # A run cut short ends its processes anyway, and says why itself.
        if ended and finished:
            notify(
                f"ended {_count(ended, 'process', 'processes')} this run left running"
            )
        if not marked(rec.marker, rec.start):
            with contextlib.suppress(FileNotFoundError):
                rec.path.unlink()


def leftover_names(pids: Sequence[int]) -> str:
    """'sleep (108), git (1)': the programs of pids, most frequent first."""
    names: dict[str, int] = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip() or "?"
        except OSError:
            name = "?"
        names[name] = names.get(name, 0) + 1
    ranked = sorted(names.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{name} ({count})" for name, count in ranked[:5])
    return shown + (", ..." if len(ranked) > 5 else "")


def end_leftovers(before: set[int], say: Callable[[str], None]) -> None:
    """End what a run that returned left running, under the work dir's
    lock, and name it in one line.  Its descendants, as qseries is their
    subreaper: those that dropped the run's marker from their
    environment (`env -i`) included, which runs.recorded, going by the
    marker, does not find.

    Nothing qseries starts is meant to outlive its command: what does is
    a bug (a detached `git gc --auto`) or the doing of code qseries runs
    (a QEMU wrapper's `setsid sleep &`).  The exit code stays the
    command's: its verdict holds, and once the line is said nothing of
    the run is left to clean up.
    """
    left = proc.descendants(exclude=before)
    if not left:
        return
    names = leftover_names(left)
    ended = proc.kill_descendants(exclude=before)
    count = len(set(ended) | set(left))
    say(
        f"ended {count} process{'es' if count != 1 else ''} this run left "
        f"running: {names}"
    )
