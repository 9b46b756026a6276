"""A failed QMP test keeps what explains it.

FakeVfioVM deletes its scratch directory when its block succeeds; when
the block raises, the fake's log and QEMU's stderr stay, and their paths
are printed and noted on the exception.  These run a real QEMU with the
fake, on the series and on the control alike.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from qseries.labs.vfio_migration.vm import Event, FakeVfioVM

# VFIO_MIGRATION is QEMU's (since 9.1), the same in every version.
COMPLETION = "VFIO_MIGRATION"


def stopped(events: list[Event]) -> bool:
    return any(e.name == COMPLETION and e.state == "stop" for e in events)


def test_failure_keeps_the_fake_log_and_qemu_stderr(
    qemu: Path, fake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vm = FakeVfioVM(qemu, fake, tmp_path, "vm", {"FAKEVFIO_FAIL": "RUNNING>STOP=EIO"})

    async def run() -> None:
        async with vm:
            await vm.cmd("stop")
            # RUNNING -> STOP fails, so the device never reports STOP.
            await vm.wait_for(stopped, timeout=2)

    with pytest.raises(TimeoutError) as caught:
        asyncio.run(run())
    assert vm.proc is not None and vm.proc.returncode is not None
    assert vm.stderr_path.is_file()
    log = vm.log.read_text()
    assert any(
        line.split()[3:4] == ["STOP"] and line.split()[-1] == "EIO"
        for line in log.splitlines()
        if line.startswith("transition ")
    ), log
    line = vm.evidence()
    assert str(vm.log) in line and str(vm.stderr_path) in line
    assert caught.value.__notes__ == [line]
    assert line in capsys.readouterr().err


def test_a_qemu_that_does_not_start_keeps_its_stderr(
    qemu: Path, fake: Path, tmp_path: Path
) -> None:
    vm = FakeVfioVM(qemu, fake, tmp_path, "vm", args=["-no-such-option"])
    with pytest.raises(RuntimeError) as caught:
        asyncio.run(vm.__aenter__())
    assert "no-such-option" in vm.stderr_path.read_text()
    assert caught.value.__notes__ == [vm.evidence()]


def test_success_deletes_the_scratch_directory(
    qemu: Path, fake: Path, tmp_path: Path
) -> None:
    vm = FakeVfioVM(qemu, fake, tmp_path, "vm")

    async def run() -> None:
        async with vm:
            await vm.cmd("stop")
            await vm.wait_for(stopped)

    asyncio.run(run())
    assert vm.proc is not None and vm.proc.returncode is not None
    assert not vm.dir.exists()
