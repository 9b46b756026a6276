"""The prepare notice reaches a QMP client while a slow quiesce runs.

The source's fake device sleeps 500 ms inside PRE_COPY -> PRE_COPY_P2P,
the first step of the switchover of a device with P2P and pre-copy, the
one transition every version of the series announces.  The official
qemu.qmp client must hear the version's notice for pre-copy-p2p at least
495 ms before the completion, and the fake's log must show that the
transition began after the timestamp QEMU gave the notice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from qseries.series import Wire
from qseries.vm import DONE, NOTICE, Event, FakeVfioVM, kernel_state, socket_path

DELAY_MS = 500
MIN_LEAD_S = 0.495
STATE = "pre-copy-p2p"
FLAGS = {"FAKEVFIO_MIGRATION_FLAGS": "stop_copy,p2p,pre_copy"}


def pair(vm: FakeVfioVM, state: str) -> tuple[Event, Event]:
    """The notice for `state` and its completion, adjacent."""
    done = next((e for e in vm.events if e.kind == DONE and e.subject == state), None)
    assert done is not None, f"no completion for {state}: {vm.vfio_events()}"
    before = [e for e in vm.events[: vm.events.index(done)] if e.kind]
    notice = before[-1] if before else None
    if notice is None or notice.kind != NOTICE or notice.subject != state:
        pytest.fail(
            f"no prepare notice for {state} right before its completion; "
            f"{vm.name} events: {vm.vfio_events()}"
        )
    return notice, done


def test_notice_leads_slow_quiesce(
    qemu: Path, fake: Path, wire: Wire, tmp_path: Path
) -> None:
    async def run() -> None:
        uri = f"unix:{socket_path(tmp_path / 'mig.sock')}"
        slow = {**FLAGS, "FAKEVFIO_DELAY": f"PRE_COPY>PRE_COPY_P2P={DELAY_MS}"}
        async with (
            FakeVfioVM(qemu, fake, tmp_path, "source", slow, wire=wire) as src,
            FakeVfioVM(
                qemu, fake, tmp_path, "destination", FLAGS, ["-incoming", uri], wire
            ),
        ):
            assert await src.migrate(uri) == "completed", src.stderr()
            await src.wait_for(
                lambda evs: any(e.kind == DONE and e.subject == STATE for e in evs)
            )
            notice, done = pair(src, STATE)
            lead = done.received_mono - notice.received_mono
            print(
                f"source {STATE}: notice lead {lead * 1000:.1f} ms (QEMU "
                f"timestamps {(done.qemu_us - notice.qemu_us) / 1000:.1f} ms apart)"
            )
            assert lead >= MIN_LEAD_S
            transition = next(
                t for t in src.transitions() if t.target == kernel_state(STATE)
            )
            assert transition.begin_us >= notice.qemu_us
            assert transition.end_us - transition.begin_us >= DELAY_MS * 1000
            assert done.qemu_us >= transition.end_us

    asyncio.run(run())
