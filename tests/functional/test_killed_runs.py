"""SIGKILL of qseries in the middle of each long command, then the next run.

SIGKILL leaves qseries no cleanup: what it started (QEMUs, ninja and its
compilers, meson's test runners, libqtest's QEMUs) is reparented, some
in sessions of their own, and its scratch under WORKDIR/tmp stays.  Each
test starts a real command, waits until a process that carries the
run's marker (QSERIES_RUN, from the run's record in WORKDIR/runs) is a
QEMU, ninja or a compiler, SIGKILLs qseries and checks what was left.
The children get SIGTERM when qseries dies (PR_SET_PDEATHSIG), which
ends most of them; to stand for those it does not end (a process that
ignores SIGTERM, or hangs), all but the first test stop (SIGSTOP) the
run's processes before the SIGKILL, so that they survive it.  The next
qseries run in that work dir must say in one line what it ended and
removed, leave no process with the dead run's marker, no scratch of it
and no record, and pass.  That next run is the same command for `build`
and `test`, a cheap one (`ci gitlab --stdout`) for the others.

Cost, on 2 cores with v2 built in the work dir: 87 s for the five (test
48 s, as it runs its qtests once in full; matrix 15, build 9, the fault
case 9, bench 4).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from qseries.ground import proc, runs

from .test_signals import build_dir_of, plain, start

pytestmark = pytest.mark.qemu

CHEAP = ("ci", "gitlab", "--stdout")
TEST = ("test", "--series", "v2", "--no-bisect", "--no-mutations")
FAULT = "migrate-precopy/source/PRE_COPY>STOP_COPY"
COMPILERS = ("cc1", "ccache", "gcc", "ninja")


@dataclass(frozen=True)
class Marked:
    """A process carrying a run's marker."""

    pid: int
    ppid: int
    name: str
    variables: frozenset[str]

    def stopped(self) -> bool:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return True  # gone
        return stat.rsplit(")", 1)[1].split()[0] in ("T", "t", "Z", "X")


def marked(marker: str) -> list[Marked]:
    """Every live process whose environment carries marker."""
    needle = f"{proc.RUN_VARIABLE}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            name = Path(f"/proc/{entry}/comm").read_text().strip()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if needle in environ:
            variables = frozenset(v.split(b"=", 1)[0].decode() for v in environ if v)
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            found.append(Marked(int(entry), ppid, name, variables))
    return found


def scratch(workdir: Path) -> dict[str, tuple[int, int]]:
    """The entries of WORKDIR/tmp, by name, with what tells them apart."""
    found = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(workdir / "tmp"):
            st = entry.stat(follow_symlinks=False)
            found[entry.name] = (st.st_ino, st.st_ctime_ns)
    return found


def freeze(marker: str) -> None:
    """SIGSTOP every process of the run, what they start meanwhile
    included, until all are stopped."""
    deadline = time.monotonic() + 30
    while running := [m for m in marked(marker) if not m.stopped()]:
        assert time.monotonic() < deadline, [m.name for m in running]
        for m in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(m.pid, signal.SIGSTOP)
        time.sleep(0.05)


def kill_then_next(
    workdir: Path,
    ready: Callable[[list[Marked]], bool],
    args: tuple[str, ...],
    then: tuple[str, ...] = CHEAP,
    env: dict[str, str] | None = None,
    frozen: bool = True,
    wait: float = 600,
) -> str:
    """Start qseries ARGS, SIGKILL it once ready(its marked processes),
    check what it left, run qseries THEN and check that it ended and
    removed all of it and passed.  Returns THEN's stdout.

    frozen: the run's processes are stopped before the SIGKILL, so that
    the death signal cannot end them (as it does not end one that
    ignores SIGTERM, or hangs): they survive it, and the next run must
    end them."""
    before = scratch(workdir)
    run = start(workdir, *args, env=env)
    record = workdir / runs.RUNS_DIR / f"{run.pid}.json"
    try:
        deadline = time.monotonic() + wait
        marker = None
        while True:
            if run.poll() is not None:
                raise AssertionError(f"qseries ended first: {run.communicate()}")
            if marker is None and record.exists():
                with contextlib.suppress(ValueError):
                    marker = json.loads(record.read_text())["marker"]
            if marker is not None and ready(marked(marker)):
                break
            seen = [m.name for m in marked(marker)] if marker else []
            assert time.monotonic() < deadline, f"never ready: {seen}"
            time.sleep(0.1)
        if frozen:
            freeze(marker)
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == -signal.SIGKILL
    assert marker is not None
    time.sleep(0.2)
    # What the killed run left: its record, its scratch, maybe processes.
    assert record.exists()
    survivors = marked(marker)
    left = {n: i for n, i in scratch(workdir).items() if before.get(n) != i}
    if frozen:
        assert survivors, "no process of the run survived SIGKILL"
    assert survivors or left, "the killed run left nothing to clean"

    nxt = start(workdir, *then)
    out, err = nxt.communicate(timeout=1500)
    assert nxt.returncode == 0, err[-3000:]
    command = f"qseries {args[0]}"
    said = [line for line in err.splitlines() if "left by a killed run" in line]
    assert len(said) == 1, err[-3000:]
    pattern = (
        r"qseries: (ended \d+ process(es)?( and removed \d+ scratch dirs?)?"
        r"|removed \d+ scratch dirs?) left by a killed run "
        rf"\(pid {run.pid}, {re.escape(command)}, started \d\d:\d\d:\d\d\)"
    )
    assert re.fullmatch(pattern, said[0]), said[0]
    if frozen:
        ended = re.match(r"qseries: ended (\d+)", said[0])
        assert ended and int(ended[1]) >= len(survivors), said[0]
    assert marked(marker) == [], [m.name for m in marked(marker)]
    now = scratch(workdir)
    assert [n for n, i in left.items() if now.get(n) == i] == []
    assert not record.exists()
    return out


def qemu_running(seen: list[Marked]) -> bool:
    return any(m.name.startswith("qemu-system") for m in seen)


def compiling(seen: list[Marked]) -> bool:
    return any(m.name in ("cc1", "cc1plus") for m in seen)


def busy(seen: list[Marked]) -> bool:
    """A QEMU, ninja or a compiler of the run is at work."""
    return qemu_running(seen) or any(m.name in COMPILERS for m in seen)


def test_killed_test_is_cleaned_up_and_test_passes_after(
    real_base: dict[str, object], real_workdir: Path
) -> None:
    out = kill_then_next(real_workdir, qemu_running, TEST, then=TEST, frozen=False)
    assert "0 failed" in out


def test_killed_fault_case_is_cleaned_up(
    real_base: dict[str, object], real_workdir: Path
) -> None:
    def faulty_qemu(seen: list[Marked]) -> bool:
        """A QEMU of the fault matrix: with a fault, started by qseries
        itself (which, unlike its children, does not carry the marker),
        not by a qtest: past the sandbox's bwrap and setpriv, its parent
        is unmarked."""
        by_pid = {m.pid: m for m in seen}

        def under_a_qtest(m: Marked) -> bool:
            parent = m.ppid
            while parent in by_pid and by_pid[parent].name in ("bwrap", "setpriv"):
                parent = by_pid[parent].ppid
            return parent in by_pid

        return any(
            m.name.startswith("qemu-system")
            and "FAKEVFIO_FAIL" in m.variables
            and not under_a_qtest(m)
            for m in seen
        )

    kill_then_next(real_workdir, faulty_qemu, (*TEST, "--fault", FAULT))


def test_killed_build_is_cleaned_up_and_build_completes_after(
    real_base: dict[str, object], real_workdir: Path
) -> None:
    build = ("build", "--series", "v2")
    plain(real_workdir, *build)
    tree, builddir = build_dir_of(real_base, real_workdir)
    # One file to compile, slowly (no ccache), and the link after it.
    os.utime(tree / "hw" / "vfio" / "pci-quirks.c")
    slow = {"CCACHE_DISABLE": "1"}
    out = kill_then_next(real_workdir, compiling, build, then=build, env=slow)
    assert f"qemu:  {builddir / 'qemu-system-x86_64'}" in out


def test_killed_bench_is_cleaned_up(
    real_base: dict[str, object], real_workdir: Path
) -> None:
    kill_then_next(real_workdir, busy, ("bench", "--skip-cold"))


def test_killed_matrix_is_cleaned_up(
    real_base: dict[str, object], real_workdir: Path
) -> None:
    matrix = ("matrix", "--series", "v2", "--no-bisect", "--no-mutations")
    kill_then_next(real_workdir, busy, matrix)
