"""The prepare notice reaches a QMP client while a slow quiesce runs.

The product's own check, qseries.labs.vfio_migration.qmpcheck.timing
(the "qmp timing" of
`qseries test` and `reproduce`), on the version's QEMU: the source's
fake device sleeps 500 ms inside PRE_COPY -> PRE_COPY_P2P, the first
step of the switchover of a device with P2P and pre-copy, the one
transition every version of the series announces.  The official
qemu.qmp client must hear the version's notice for pre-copy-p2p at
least 495 ms before the completion, and the fake's log must show that
the transition began after the timestamp QEMU gave the notice.  With a
quiesce too short for that lead, the same check fails on the lead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from qseries.labs.vfio_migration import qmpcheck
from qseries.labs.vfio_migration.plan import Wire


def test_notice_leads_slow_quiesce(
    qemu: Path, fake: Path, wire: Wire, tmp_path: Path
) -> None:
    finding = asyncio.run(qmpcheck.timing(qemu, fake, wire, tmp_path))
    print("\n".join([finding.detail, *finding.items]))
    assert finding.passed, finding
    figures = finding.figures
    assert figures["lead_ms"] >= qmpcheck.MIN_LEAD_S * 1000
    assert figures["began_after_notice_us"] >= 0
    assert figures["quiesce_ms"] >= qmpcheck.DELAY_MS
    assert figures["completion_after_end_us"] >= 0
    assert not any(tmp_path.iterdir()), "a check that passed keeps no files"


def test_a_quiesce_shorter_than_the_lead_fails_on_the_lead(
    qemu: Path, fake: Path, wire: Wire, tmp_path: Path
) -> None:
    finding = asyncio.run(qmpcheck.timing(qemu, fake, wire, tmp_path, delay_ms=100))
    assert not finding.passed and not finding.no_notice, finding
    assert finding.detail.startswith("lead "), finding
    assert finding.figures["lead_ms"] < qmpcheck.MIN_LEAD_S * 1000
    # What explains it is kept, and named.
    kept = [item for item in finding.items if item.startswith("kept source: ")]
    assert kept, finding.items
