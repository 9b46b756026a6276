"""External commands with a time limit, killed whole when it runs out.

Each command runs in a session of its own, so that on a time limit (or
an interrupt of qseries) its whole process group goes with it: apt's
download methods, dpkg-source's tar, the QEMUs a qtest started.  What it
printed until then is kept.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Ran:
    """A finished (or, with timed_out, killed) process."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    timeout: float


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_bounded(
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
    cwd: Path | None = None,
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
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return Ran(tuple(argv), proc.returncode, out, err, False, timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return Ran(tuple(argv), proc.returncode, out, err, True, timeout)
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
