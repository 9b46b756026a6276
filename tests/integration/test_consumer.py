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

With 4 devices that each take 300 ms, quiesced by QEMU one after
another, one link per device (100 ms timeout: the guard must be in time
four times): masking each on its own device's notice keeps all four;
masking on the completions, each sent only once its device is done,
loses all four.  On the control (a QEMU of the same base without the
change, named by QSERIES_CONTROL_QEMU) no device hears a notice.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path
from typing import Any

import pytest

from qseries.core.results import PASS
from qseries.labs.vfio_migration import qmpcheck
from qseries.labs.vfio_migration.demo import (
    QUIESCE_STATE,
    DemoResult,
    DevicesResult,
    MaskOn,
    guard_module,
    run_devices,
)
from qseries.labs.vfio_migration.plan import Wire
from qseries.labs.vfio_migration.qmpcheck import Finding

N = qmpcheck.DEVICES
CONTROL_QEMU = "QSERIES_CONTROL_QEMU"


@pytest.fixture(scope="session")
def control_qemu() -> Path:
    """A QEMU of the same base without the change: `qseries build --what
    control` builds it in the build dir the series shares, so it is
    named by a copy of its own."""
    name = os.environ.get(CONTROL_QEMU)
    if not name:
        pytest.skip(f"{CONTROL_QEMU} names no control QEMU")
    path = Path(name)
    if not path.is_file():
        pytest.fail(f"{CONTROL_QEMU}: {name!r} is not a file")
    return path


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


def devices(qemu: Path, fake: Path, tmp_path: Path, mask_on: MaskOn) -> DevicesResult:
    """N devices as the product's check runs them."""
    return asyncio.run(
        run_devices(
            qemu,
            fake,
            tmp_path,
            N,
            mask_on=mask_on,
            delay_ms=qmpcheck.DEMO_DELAY_MS,
            timeout_ms=qmpcheck.DEVICES_TIMEOUT_MS,
        )
    )


def every_device_quiesced(result: DevicesResult) -> list[DemoResult]:
    """Each device reached the quiesce state, silent for its own spell,
    one after another; the devices in that order."""
    why = result.explain()
    assert result.migration == "completed", why
    assert sorted(d.device for d in result.devices) == [f"vfio{i}" for i in range(N)]
    assert len({d.group for d in result.devices}) == N, why
    for d in result.devices:
        assert d.completion_state == QUIESCE_STATE, why
        assert len(d.silences) == 1 and d.silences[0][1] is not None, why
    order = result.in_silence_order()
    for before, after in itertools.pairwise(order):
        end = before.silences[0][1]
        assert end is not None and end <= after.silences[0][0], why
    return order


def test_n_devices_masked_on_their_own_notices_keep_every_link(
    qemu: Path, fake: Path, wire: Wire, tmp_path: Path
) -> None:
    result = devices(qemu, fake, tmp_path, "notice")
    print(result.explain())
    why = result.explain()
    order = every_device_quiesced(result)
    for d in result.devices:
        heard_notice(d)
        assert not d.link_dropped, why
        assert d.masked_us and d.unmasked_us, why
        assert not d.failures and not d.problems, why
    # Each link masked on its own notice: after the device before it
    # was done, not all of them on the first notice.
    for before, after in itertools.pairwise(order):
        end = before.silences[0][1]
        assert end is not None and after.masked_us[0] >= end, why
    finding = qmpcheck.judge_keeps_devices(result, wire)
    judged_passed(finding)
    print("\n".join([finding.detail, *finding.items[:N]]))


def test_n_devices_masked_on_their_completions_lose_every_link(
    qemu: Path, fake: Path, tmp_path: Path
) -> None:
    result = devices(qemu, fake, tmp_path, "completion")
    print(result.explain())
    why = result.explain()
    every_device_quiesced(result)
    for d in result.devices:
        assert d.dropped_at_us is not None and d.masked_us, why
        # Its completion came after its transition: too late, each one.
        assert d.dropped_at_us < d.masked_us[0], why
    finding = qmpcheck.judge_drops_devices(result)
    judged_passed(finding)
    print("\n".join([finding.detail, *finding.items[:N]]))
    assert not qmpcheck.judge_keeps_devices(result).passed


def test_on_the_control_no_device_hears_its_notice(
    control_qemu: Path, fake: Path, tmp_path: Path
) -> None:
    keeps, drops = asyncio.run(
        qmpcheck.consumers(control_qemu, fake, tmp_path, N, qmpcheck.DEMO_DELAY_MS)
    )
    why = "\n".join([keeps.detail, *keeps.items])
    assert not keeps.passed and keeps.no_notice, why
    assert keeps.detail.endswith(f"for any of the {N} devices"), why
    assert all(f"vfio{i}.dropped_at_ms" in keeps.figures for i in range(N)), why
    assert drops.passed, "\n".join([drops.detail, *drops.items])
    results = qmpcheck.expect_control([keeps, drops])
    assert [r.status for r in results] == [PASS, PASS], results


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


def test_each_devices_guard_hears_only_its_own_device() -> None:
    rdma_guard = guard_module()
    by_id = rdma_guard.RdmaGuard(None, "vfio0", QUIESCE_STATE)
    by_path = rdma_guard.RdmaGuard(None, "/machine/peripheral/vfio1", QUIESCE_STATE)
    guards = rdma_guard.DeviceGuards([by_id, by_path])

    def event(device: str, state: str) -> dict[str, object]:
        data = {
            "device-id": device,
            "qom-path": f"/machine/peripheral/{device}",
            "device-state": state,
        }
        return {"event": "VFIO_MIGRATION", "data": data}

    # QEMU quiesces vfio1 first; vfio2 has no guard.
    for i, message in enumerate(
        [
            event("vfio1", "pre-copy-p2p-prepare"),
            event("vfio1", "pre-copy-p2p"),
            event("vfio2", "pre-copy-p2p-prepare"),
            event("vfio0", "pre-copy-p2p-prepare"),
            event("vfio2", "pre-copy-p2p"),
            event("vfio0", "pre-copy-p2p"),
        ]
    ):
        guards.feed(message, received_us=1000 * i)
    for guard, notice_us in ((by_id, 3000), (by_path, 0)):
        report = guard.report
        assert [str(e) for e in report.events] == [
            "notice(pre-copy-p2p)",
            "completion(pre-copy-p2p)",
        ]
        assert report.notice is not None and report.notice.received_us == notice_us
        assert len(report.masked_us) == len(report.unmasked_us) == 1
    assert rdma_guard.verdict(guards) == (
        0,
        "vfio0: pre-copy-p2p episode handled (no link simulated); "
        "/machine/peripheral/vfio1: pre-copy-p2p episode handled (no link "
        "simulated)",
    )


def test_the_worst_device_decides_the_verdict(tmp_path: Path) -> None:
    rdma_guard = guard_module()
    guards = [
        rdma_guard.RdmaGuard(
            rdma_guard.SimulatedRdmaLink(tmp_path / "log", 50, group=4242 + i),
            f"vfio{i}",
        )
        for i in range(3)
    ]
    several = rdma_guard.DeviceGuards(guards)
    assert rdma_guard.verdict(several)[0] == 2  # nothing heard yet

    def reached(guard: Any) -> None:
        for state in ("pre-copy-p2p-prepare", "pre-copy-p2p"):
            data = {"device-id": guard.device, "device-state": state}
            guard.feed({"event": "VFIO_MIGRATION", "data": data})

    reached(guards[0])
    reached(guards[1])
    assert rdma_guard.verdict(several)[0] == 2  # vfio2's not yet
    guards[1].link.dropped_at_us = 1
    # A dropped link outweighs one not yet heard of.
    code, line = rdma_guard.verdict(several)
    assert code == 1
    assert line.split("; ")[1].startswith("vfio1: RDMA link DROPPED")
    assert line.split("; ")[2].startswith("vfio2: no pre-copy-p2p transition seen")
    guards[1].link.dropped_at_us = None
    reached(guards[2])
    assert rdma_guard.verdict(several) == (
        0,
        "vfio0: RDMA link kept; vfio1: RDMA link kept; vfio2: RDMA link kept",
    )
    with pytest.raises(ValueError):
        rdma_guard.DeviceGuards([guards[0], guards[0]])
    with pytest.raises(ValueError):
        rdma_guard.DeviceGuards([rdma_guard.RdmaGuard(None, None)])


def test_several_devices_with_a_log_need_a_group_each(tmp_path: Path) -> None:
    main = guard_module().main
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "--qmp",
                str(tmp_path / "none.sock"),
                "--device",
                "vfio0",
                "--device",
                "vfio1",
                "--fake-log",
                str(tmp_path / "log"),
                "--group",
                "4242",
            ]
        )
    assert exited.value.code == 2


def test_the_link_times_out_only_silent_and_unmasked() -> None:
    first_drop = guard_module().first_drop
    assert first_drop(0, 300, [], 50) == 50
    assert first_drop(0, 300, [(-1, True), (300, False)], 50) is None
    assert first_drop(0, 300, [(40, True)], 50) is None
    assert first_drop(0, 300, [(60, True)], 50) == 50
    assert first_drop(0, 300, [(-1, True), (200, False)], 50) == 250
    assert first_drop(0, 30, [], 50) is None
