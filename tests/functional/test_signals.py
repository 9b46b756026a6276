"""SIGINT and SIGTERM in the middle of a real build and a real test run.

`qseries build` is interrupted while ninja compiles (a touched osdep.h
makes it rebuild nearly everything: from ccache, where the work dir has
one), `qseries test` while its QEMUs run.  Each time qseries must exit
with 130 or 143 and the one line, and no process it started may survive:
neither one it was running at the signal nor any in their process
groups (ninja runs each compiler in a group of its own, meson each test
in a session of its own).  The next plain run must then succeed, with
nothing cleaned up by hand.

The builds share the base's build dir with the other real-QEMU tests,
as test_bisect does: ninja only rebuilds there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qseries.ground import proc

from ..conftest import REPO, sigint_as_from_a_terminal

pytestmark = pytest.mark.qemu

SIGNALS: dict[int, tuple[int, str]] = {
    signal.SIGINT: (130, "qseries: interrupted"),
    signal.SIGTERM: (143, "qseries: terminated"),
}


def names(pids: list[int]) -> list[str]:
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            found.append(Path(f"/proc/{pid}/comm").read_text().strip())
    return found


def running() -> dict[int, int]:
    """Every running process (zombies do not count), with its group."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] not in ("Z", "X"):
            found[int(entry)] = int(fields[2])
    return found


def survivors(pids: list[int], groups: set[int]) -> list[int]:
    """Of pids and the members of groups, those still running once
    qseries has exited (give a SIGKILLed process a moment to go, not the
    time to end on its own)."""
    deadline = time.monotonic() + 0.3
    while True:
        now = running()
        left = [p for p, g in now.items() if p in pids or g in groups]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def start(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "qseries", *args],
        cwd=REPO,
        env={**os.environ, "QSERIES_WORKDIR": str(workdir), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=sigint_as_from_a_terminal,
    )


def plain(workdir: Path, *args: str, timeout: float = 1500) -> str:
    run = start(workdir, *args)
    out, err = run.communicate(timeout=timeout)
    assert run.returncode == 0, err[-3000:]
    return out


def interrupt_when(
    workdir: Path,
    sig: int,
    ready: Callable[[list[str]], bool],
    *args: str,
    wait: float = 600,
    env: dict[str, str] | None = None,
) -> None:
    """Start qseries ARGS, send sig once ready(names of its descendants),
    then check the exit, the line and that nothing it started lives."""
    run = start(workdir, *args, env=env)
    try:
        deadline = time.monotonic() + wait
        while True:
            if run.poll() is not None:
                raise AssertionError(f"qseries ended first: {run.communicate()}")
            started = proc.descendants(run.pid)
            if ready(names(started)):
                break
            assert time.monotonic() < deadline, f"never ready: {names(started)}"
            time.sleep(0.2)
        # Every process qseries runs now, and every group they are in.
        started = proc.descendants(run.pid)
        groups = {g for g in map(pgid, [run.pid, *started]) if g is not None}
        run.send_signal(sig)
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    code, line = SIGNALS[sig]
    assert run.returncode == code, err[-3000:]
    assert err.splitlines()[-1] == line, err[-3000:]
    assert "Traceback" not in err
    left = survivors(started, groups)
    assert left == [], f"survivors: {names(left)}"


def build_dir_of(base: dict[str, object], workdir: Path) -> tuple[Path, Path]:
    name = Path(str(base["root"])).name
    return workdir / "work" / f"build-{name}", workdir / "build" / name


def compiling(seen: list[str]) -> bool:
    return "ninja" in seen and any(n in ("cc1", "ccache", "gcc") for n in seen)


def test_build_interrupted_twice_leaves_nothing_and_then_completes(
    real_base: dict[str, object], real_workdir: Path
) -> None:
    build = ("build", "--series", "v2", "--what", "base")
    plain(real_workdir, *build)
    tree, builddir = build_dir_of(real_base, real_workdir)
    os.utime(tree / "include" / "qemu" / "osdep.h")
    # Compilers that take their time (no ccache), so that one left
    # running would still be there when qseries has exited.
    slow = {"CCACHE_DISABLE": "1"}
    interrupt_when(real_workdir, signal.SIGINT, compiling, *build, env=slow)
    interrupt_when(real_workdir, signal.SIGTERM, compiling, *build, env=slow)
    out = plain(real_workdir, *build)
    assert f"qemu:  {builddir / 'qemu-system-x86_64'}" in out
    # What the killed compilers and linker were making was made anew.
    version = subprocess.run(
        [str(builddir / "qemu-system-x86_64"), "-version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert version.stdout.startswith("QEMU emulator version")


def test_test_terminated_while_qemu_runs_leaves_nothing_then_passes(
    real_base: dict[str, object], real_workdir: Path
) -> None:
    args = ("test", "--series", "v2", "--no-bisect", "--no-mutations")
    interrupt_when(
        real_workdir,
        signal.SIGTERM,
        lambda seen: "qemu-system-x86" in seen,
        *args,
    )
    out = plain(real_workdir, *args)
    assert "0 failed" in out
