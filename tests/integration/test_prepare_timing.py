"""PREPARE reaches a QMP client before a slow transition ends.

The fake device sleeps 500 ms inside the transition; the official
qemu.qmp client must receive VFIO_MIGRATION_PREPARE at least 495 ms
before the matching VFIO_MIGRATION, and the fake's log must show that the
transition began after the timestamp QEMU gave the prepare event.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from qseries.vm import DONE, PREPARE, Event, FakeVfioVM, kernel_state

DELAY_MS = 500
MIN_LEAD_S = 0.495


def pair(vm: FakeVfioVM, state: str) -> tuple[Event, Event]:
    done = next((e for e in vm.events if e.name == DONE and e.state == state), None)
    assert done is not None, f"no VFIO_MIGRATION({state}): {vm.vfio_events()}"
    before = [e for e in vm.events[: vm.events.index(done)] if e.kind]
    prepare = before[-1] if before else None
    if prepare is None or prepare.name != PREPARE or prepare.state != state:
        pytest.fail(
            f"no VFIO_MIGRATION_PREPARE({state}) right before VFIO_MIGRATION({state}); "
            f"{vm.name} events: {vm.vfio_events()}"
        )
    return prepare, done


def check_timing(vm: FakeVfioVM, state: str) -> None:
    prepare, done = pair(vm, state)
    lead = done.received_mono - prepare.received_mono
    print(
        f"{vm.name} {state}: PREPARE lead {lead * 1000:.1f} ms "
        f"(QEMU timestamps {(done.qemu_us - prepare.qemu_us) / 1000:.1f} ms apart)"
    )
    assert lead >= MIN_LEAD_S
    transition = next(t for t in vm.transitions() if t.target == kernel_state(state))
    assert transition.begin_us >= prepare.qemu_us
    assert transition.end_us - transition.begin_us >= DELAY_MS * 1000
    assert done.qemu_us >= transition.end_us


def test_prepare_leads_slow_stop_copy(qemu: Path, fake: Path, tmp_path: Path) -> None:
    async def run() -> None:
        uri = f"unix:{tmp_path / 'mig.sock'}"
        async with (
            FakeVfioVM(
                qemu,
                fake,
                tmp_path,
                "source",
                {"FAKEVFIO_DELAY": f"PRE_COPY>STOP_COPY={DELAY_MS}"},
            ) as src,
            FakeVfioVM(qemu, fake, tmp_path, "destination", args=["-incoming", uri]),
        ):
            assert await src.migrate(uri) == "completed", src.stderr()
            await src.wait_for(
                lambda evs: any(e.name == DONE and e.state == "stop-copy" for e in evs)
            )
            check_timing(src, "stop-copy")

    asyncio.run(run())


def test_prepare_leads_slow_stop(qemu: Path, fake: Path, tmp_path: Path) -> None:
    async def run() -> None:
        async with FakeVfioVM(
            qemu, fake, tmp_path, "vm", {"FAKEVFIO_DELAY": f"RUNNING>STOP={DELAY_MS}"}
        ) as vm:
            await vm.cmd("stop")
            await vm.wait_for(
                lambda evs: any(e.name == DONE and e.state == "stop" for e in evs)
            )
            check_timing(vm, "stop")

    asyncio.run(run())
