"""The QEMU that qseries starts for the QMP checks runs in the sandbox,
and the QMP client in qseries' own process still reaches it.

A real QEMU with the fake, started by FakeVfioVM with a run's sandbox
set: the QEMU process (a descendant of bwrap) is in network and pid
namespaces other than ours (we still see it, by our pid), QMP over the
unix socket in the work dir's scratch works, and the fake device's log
is written there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from qseries.ground import proc, sandbox
from qseries.labs.vfio_migration.vm import FakeVfioVM

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed"
)


@pytest.fixture
def sandboxed(tmp_path: Path) -> Iterator[list[str]]:
    """A run's sandbox: tmp_path the work dir, an empty home hidden."""
    home = tmp_path / "home"
    home.mkdir()
    said: list[str] = []
    before = proc.sandbox()
    proc.set_sandbox(sandbox.RunSandbox(tmp_path, [home], said.append))
    try:
        yield said
    finally:
        proc.set_sandbox(before)


def test_the_qemu_of_the_qmp_checks_runs_in_the_sandbox(
    qemu: Path, fake: Path, tmp_path: Path, sandboxed: list[str]
) -> None:
    # The series' code writes only the work dir's scratch (tmp/).
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    vm = FakeVfioVM(qemu, fake, scratch, "vm")
    found: list[str] = []

    async def run() -> None:
        async with vm:
            assert vm.proc is not None
            real = qemu.resolve()
            pids = [
                pid
                for pid in [*proc.descendants(vm.proc.pid), vm.proc.pid]
                if Path(f"/proc/{pid}/exe").resolve() == real
            ]
            assert len(pids) == 1, pids
            found.append(os.readlink(f"/proc/{pids[0]}/ns/net"))
            found.append(os.readlink(f"/proc/{pids[0]}/ns/pid"))
            status = await vm.cmd("query-status")
            assert status["status"] == "running"
            # The fake in QEMU logged its pid, into the work dir: the
            # one it has in its own pid namespace (NSpid: ours, then its).
            status_file = Path(f"/proc/{pids[0]}/status").read_text()
            nspid = next(
                line.split()[1:] for line in status_file.splitlines()
                if line.startswith("NSpid:")
            )  # fmt: skip
            assert len(nspid) == 2 and nspid[0] == str(pids[0]), nspid
            assert f"init {nspid[1]} " in vm.log.read_text()

    asyncio.run(run())
    assert sandboxed == []  # the sandbox was used, nothing said about it
    assert found[0] != os.readlink("/proc/self/ns/net")
    assert found[1] != os.readlink("/proc/self/ns/pid")
