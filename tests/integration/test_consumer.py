"""A consumer keeps a device's RDMA link up by masking on the notice.

The VFIO lab's rdma_guard.py watches a migrating source QEMU whose fake
device takes 300 ms to enter PRE_COPY_P2P, and simulates an RDMA link with a
50 ms timeout that the device stops answering from the start of that
transition (the lab's demo.py runs the scenario, as the product's qmp
check, qseries.labs.vfio_migration.qmpcheck, does; its judges must
agree).  Masking on the
prepare notice keeps the link; masking on the completion, all a
consumer could do without the series, drops it; a failed transition is
reported as such.  The margins (300 ms against 50 ms) leave a noisy
machine room; nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from qseries.labs.vfio_migration import qmpcheck
from qseries.labs.vfio_migration.demo import (
    QUIESCE_STATE,
    DemoResult,
    MaskOn,
    guard_module,
)
from qseries.labs.vfio_migration.qmpcheck import Finding


def demo(
    qemu: Path, fake: Path, tmp_path: Path, mask_on: MaskOn, fail: str | None = None
) -> DemoResult:
    """The scenario as the product's qmp check runs it."""
    return asyncio.run(qmpcheck.consumer(qemu, fake, tmp_path, mask_on, fail))


def heard_notice(result: DemoResult) -> None:
    assert result.notice_us is not None, (
        f"no prepare notice for {QUIESCE_STATE} reached the guard:\n{result.explain()}"
    )


def judged_passed(finding: Finding) -> None:
    """The product's judge agrees with the assertions above it."""
    assert finding.passed, "\n".join([finding.detail, *finding.items])


def test_masking_on_the_notice_keeps_the_link(
    qemu: Path, fake: Path, tmp_path: Path
) -> None:
    result = demo(qemu, fake, tmp_path, mask_on="notice")
    print(result.explain())
    heard_notice(result)
    assert result.migration == "completed", result.explain()
    assert result.completion_state == QUIESCE_STATE, result.explain()
    assert result.silences, f"the fake logged no quiesce:\n{result.explain()}"
    assert not result.link_dropped, result.explain()
    assert result.masked_us and result.unmasked_us, result.explain()
    assert not result.failures and not result.problems, result.explain()
    judged_passed(qmpcheck.judge_keeps(result))


def test_masking_on_the_completion_drops_the_link(
    qemu: Path, fake: Path, tmp_path: Path
) -> None:
    result = demo(qemu, fake, tmp_path, mask_on="completion")
    print(result.explain())
    assert result.migration == "completed", result.explain()
    assert result.completion_state == QUIESCE_STATE, result.explain()
    assert result.link_dropped, result.explain()
    assert result.dropped_at_us is not None and result.masked_us
    # The link went down before the consumer could mask.
    assert result.dropped_at_us < result.masked_us[0], result.explain()
    judged_passed(qmpcheck.judge_drops(result))
    # And masking on the notice's judge sees a dropped link.
    assert not qmpcheck.judge_keeps(result).passed


def test_a_failed_quiesce_is_reported_and_unmasked(
    qemu: Path, fake: Path, tmp_path: Path
) -> None:
    result = demo(qemu, fake, tmp_path, "notice", qmpcheck.FAIL_QUIESCE)
    print(result.explain())
    heard_notice(result)
    assert result.completion_state is not None, result.explain()
    assert result.completion_state != QUIESCE_STATE, result.explain()
    assert result.masked_us and result.unmasked_us, result.explain()
    assert result.completion_us is not None
    assert result.unmasked_us[0] >= result.completion_us, result.explain()
    assert any(
        QUIESCE_STATE in f and result.completion_state in f for f in result.failures
    ), result.explain()
    assert not result.link_dropped, result.explain()
    assert result.migration == "failed", result.explain()
    judged_passed(qmpcheck.judge_reports(result))


# The guard's reading of the events, without QEMU.


def events(*pairs: tuple[str, str]) -> list[dict[str, object]]:
    return [
        {"event": name, "data": {"device-id": "vfio0", "device-state": state}}
        for name, state in pairs
    ]


V1_OK = events(
    ("VFIO_MIGRATION_PREPARE", "pre-copy-p2p"), ("VFIO_MIGRATION", "pre-copy-p2p")
)
V2_OK = events(
    ("VFIO_MIGRATION", "pre-copy-p2p-prepare"), ("VFIO_MIGRATION", "pre-copy-p2p")
)
V2_FAILED = events(
    ("VFIO_MIGRATION", "pre-copy-p2p-prepare"), ("VFIO_MIGRATION", "running")
)
BASE = events(("VFIO_MIGRATION", "pre-copy"), ("VFIO_MIGRATION", "pre-copy-p2p"))


def feed(messages: list[dict[str, object]], mask_on: MaskOn = "notice") -> Any:
    guard = guard_module().RdmaGuard(None, "vfio0", QUIESCE_STATE, mask_on)
    for i, message in enumerate(messages):
        guard.feed(message, received_us=1000 * i)
    return guard.report


@pytest.mark.parametrize("messages", [V1_OK, V2_OK], ids=["v1", "v2"])
def test_the_guard_masks_on_either_notice(messages: list[dict[str, object]]) -> None:
    report = feed(messages)
    assert [str(e) for e in report.events] == [
        "notice(pre-copy-p2p)",
        "completion(pre-copy-p2p)",
    ]
    assert len(report.masked_us) == len(report.unmasked_us) == 1
    assert not report.failures and not report.problems


def test_the_guard_reports_a_failed_transition() -> None:
    report = feed(V2_FAILED)
    assert len(report.masked_us) == len(report.unmasked_us) == 1
    assert report.failures == [
        "transition to pre-copy-p2p failed: the device reported running instead"
    ]


def test_the_guard_says_when_no_notice_came() -> None:
    report = feed(BASE)
    assert not report.masked_us
    assert any("no prepare notice" in p for p in report.problems)
    assert feed(BASE, "completion").masked_us


def test_the_link_times_out_only_silent_and_unmasked() -> None:
    first_drop = guard_module().first_drop
    assert first_drop(0, 300, [], 50) == 50
    assert first_drop(0, 300, [(-1, True), (300, False)], 50) is None
    assert first_drop(0, 300, [(40, True)], 50) is None
    assert first_drop(0, 300, [(60, True)], 50) == 50
    assert first_drop(0, 300, [(-1, True), (200, False)], 50) == 250
    assert first_drop(0, 30, [], 50) is None
