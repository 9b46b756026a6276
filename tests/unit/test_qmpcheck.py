"""The qmp checks' judges, on what a run records, without QEMU; and the
group as the series and the control judge it."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

import pytest

from qseries.core import generators, series
from qseries.core.results import FAIL, PASS
from qseries.labs.vfio_migration import qmpcheck
from qseries.labs.vfio_migration.demo import DemoResult, DevicesResult
from qseries.labs.vfio_migration.plan import Wire, plan_of
from qseries.labs.vfio_migration.qmpcheck import DROPS, KEEPS, REPORTS, TIMING, Finding
from qseries.labs.vfio_migration.vm import Event, Transition

from ..conftest import REPO

SERIES = series.load(REPO / "series.yaml", generators.specs())
V1 = plan_of(SERIES.version("v1")).wire
V2 = plan_of(SERIES.version("v2")).wire

T0 = 1_700_000_000_000_000  # us
DELAY = qmpcheck.DELAY_MS


def event(wire: Wire, name: str, state: str, at_ms: float) -> Event:
    """An event QEMU stamped at T0 + at_ms, received 0.5 ms later."""
    kind = wire.classify(name, state)
    us = T0 + int(at_ms * 1000)
    return Event(
        name,
        state,
        us,
        us + 500,
        (us + 500) / 1e6,
        kind[0] if kind else None,
        kind[1] if kind else None,
        "vfio0",
    )


def migration(wire: Wire, notice: bool = True) -> list[Event]:
    """A source's events: pre-copy, then (the notice and) pre-copy-p2p
    DELAY ms later, then stop-copy."""
    if wire is V1:
        announce = [event(V1, "VFIO_MIGRATION_PREPARE", "pre-copy-p2p", 10)]
    else:
        announce = [event(V2, "VFIO_MIGRATION", "pre-copy-p2p-prepare", 10)]
    return [
        event(wire, "VFIO_MIGRATION", "pre-copy", 0),
        *(announce if notice else []),
        event(wire, "VFIO_MIGRATION", "pre-copy-p2p", 11 + DELAY),
        event(wire, "VFIO_MIGRATION", "stop-copy", 12 + DELAY),
    ]


def quiesce(begin_ms: float = 10.2, took_ms: float = DELAY + 0.3) -> list[Transition]:
    begin = T0 + int(begin_ms * 1000)
    return [
        Transition("RUNNING", "PRE_COPY", T0 - 100, T0 - 50, "ok"),
        Transition(
            "PRE_COPY", "PRE_COPY_P2P", begin, begin + int(took_ms * 1000), "ok"
        ),
    ]


@pytest.mark.parametrize("wire", [V1, V2], ids=["v1", "v2"])
def test_timing_passes_with_the_lead_and_the_order(wire: Wire) -> None:
    finding = qmpcheck.judge_timing("completed", migration(wire), quiesce())
    assert finding.passed, finding
    assert finding.detail == (
        "notice for pre-copy-p2p 501.0 ms before its completion (at least 495 ms), "
        "sent before PRE_COPY_P2P began"
    )
    assert finding.items[0].startswith("lead 501.0 ms as the client received them")
    assert "began 200 us after the notice's timestamp" in finding.items[1]
    assert finding.figures["lead_ms"] == 501.0
    assert finding.figures["began_after_notice_us"] == 200
    assert finding.figures["quiesce_ms"] == DELAY + 0.3


@pytest.mark.parametrize("wire", [V1, V2], ids=["v1", "v2"])
def test_timing_without_a_notice_fails_for_that(wire: Wire) -> None:
    finding = qmpcheck.judge_timing(
        "completed", migration(wire, notice=False), quiesce()
    )
    assert not finding.passed and finding.no_notice
    assert finding.detail == "no prepare notice for pre-copy-p2p"


def test_timing_fails_for_other_reasons_not_as_no_notice() -> None:
    events = migration(V2)
    cases = {
        "the migration ended failed": ("failed", events, quiesce()),
        "no completion for pre-copy-p2p": ("completed", events[:2], quiesce()),
        "lead 401.0 ms < 495 ms": (
            "completed",
            [
                *events[:2],
                dataclasses.replace(
                    events[2], received_mono=events[1].received_mono + 0.401
                ),
                events[3],
            ],
            quiesce(),
        ),
        "PRE_COPY_P2P began before the notice's timestamp": (
            "completed",
            events,
            quiesce(begin_ms=9.0),
        ),
        "PRE_COPY_P2P took 100.0 ms < the 500 ms injected": (
            "completed",
            events,
            quiesce(took_ms=100),
        ),
        "the fake logged no transition to PRE_COPY_P2P": (
            "completed",
            events,
            quiesce()[:1],
        ),
        "the notice for pre-copy-p2p is not right before its completion": (
            "completed",
            [events[1], events[0], *events[2:]],
            quiesce(),
        ),
    }
    for why, (status, evs, transitions) in cases.items():
        finding = qmpcheck.judge_timing(status, evs, transitions)
        assert not finding.passed and not finding.no_notice, why
        assert finding.detail == why


def demo(**changes: object) -> DemoResult:
    """The consumer's run on the series, masking on the notice."""
    silent = T0 + 10_000
    kept = DemoResult(
        mask_on="notice",
        delay_ms=300,
        timeout_ms=50.0,
        migration="completed",
        link_dropped=False,
        dropped_at_us=None,
        silences=((silent, silent + 300_000),),
        masked_us=(silent - 1_000,),
        unmasked_us=(silent + 301_000,),
        notice_us=silent - 1_000,
        completion_us=silent + 301_000,
        notice_qemu_us=silent - 1_200,
        completion_qemu_us=silent + 300_800,
        completion_state="pre-copy-p2p",
        guard_events=("notice(pre-copy-p2p)", "completion(pre-copy-p2p)"),
        events=("VFIO_MIGRATION pre-copy-p2p-prepare", "VFIO_MIGRATION pre-copy-p2p"),
        failures=(),
        problems=(),
    )
    return dataclasses.replace(kept, **changes)  # type: ignore[arg-type]


SILENT = T0 + 10_000
NO_NOTICE = {
    "notice_us": None,
    "notice_qemu_us": None,
    "masked_us": (),
    "unmasked_us": (),
    "link_dropped": True,
    "dropped_at_us": SILENT + 50_000,
    "problems": ("no prepare notice before VFIO_MIGRATION(pre-copy-p2p): ...",),
}


def test_the_consumer_keeps_the_link_on_the_notice() -> None:
    finding = qmpcheck.judge_keeps(demo())
    assert finding.passed, finding
    assert finding.detail == (
        "link kept through 300 ms of quiesce (50 ms timeout): masked at -1.0 ms, "
        "lead 302.0 ms"
    )
    missing = qmpcheck.judge_keeps(demo(**NO_NOTICE))
    assert not missing.passed and missing.no_notice
    assert missing.detail == "no prepare notice for pre-copy-p2p reached the guard"
    dropped = qmpcheck.judge_keeps(
        demo(link_dropped=True, dropped_at_us=SILENT + 50_000)
    )
    assert not dropped.passed and not dropped.no_notice
    assert dropped.detail == "the link dropped at +50.0 ms"
    # The migration's own failure is another reason, notice or not.
    failed = qmpcheck.judge_keeps(demo(**NO_NOTICE, migration="failed"))
    assert not failed.passed and not failed.no_notice


def test_the_consumer_drops_the_link_on_the_completion() -> None:
    late = demo(
        mask_on="completion",
        link_dropped=True,
        dropped_at_us=SILENT + 50_000,
        masked_us=(SILENT + 301_000,),
    )
    finding = qmpcheck.judge_drops(late)
    assert finding.passed and not finding.needs_notice, finding
    assert finding.detail == "link dropped at +50.0 ms, masked only at +301.0 ms"
    held = qmpcheck.judge_drops(demo(mask_on="completion"))
    assert not held.passed
    assert held.detail == "the link held without the notice"
    early = qmpcheck.judge_drops(
        dataclasses.replace(late, masked_us=(SILENT + 40_000,))
    )
    assert not early.passed
    assert early.detail == "the guard masked before the drop"


def test_the_consumer_reports_a_failed_transition() -> None:
    failed = demo(
        migration="failed",
        completion_state="running",
        failures=(
            "transition to pre-copy-p2p failed: the device reported running instead",
        ),
    )
    finding = qmpcheck.judge_reports(failed)
    assert finding.passed, finding
    assert finding.detail.startswith("reported: transition to pre-copy-p2p failed")
    missing = qmpcheck.judge_reports(
        dataclasses.replace(failed, **NO_NOTICE, completion_state=None)  # type: ignore[arg-type]
    )
    assert not missing.passed and missing.no_notice
    silent = qmpcheck.judge_reports(dataclasses.replace(failed, failures=()))
    assert not silent.passed and not silent.no_notice
    assert silent.detail == "the guard reported no failed transition"
    completed = qmpcheck.judge_reports(demo())
    assert not completed.passed and not completed.no_notice
    assert completed.detail == "the migration ended completed"


def finding(name: str, passed: bool, no_notice: bool = False) -> Finding:
    detail = "fine" if passed else ("no prepare notice" if no_notice else "QEMU died")
    return Finding(name, qmpcheck.NEEDS_NOTICE[name], passed, detail, (), no_notice)


def test_the_control_wants_each_notice_check_to_fail_for_lack_of_it() -> None:
    findings = [
        finding(TIMING, False, no_notice=True),
        finding(KEEPS, False, no_notice=True),
        finding(DROPS, True),
        finding(REPORTS, False, no_notice=True),
    ]
    results = qmpcheck.expect_control(findings)
    assert [r.status for r in results] == [PASS] * 4
    assert results[0].name == "control qmp timing (qemu.qmp)"
    assert results[0].detail == "fails as it must: no prepare notice"
    assert results[2].detail == "passes on the base too (no notice involved)"


def test_the_control_rejects_a_pass_and_other_failures() -> None:
    results = qmpcheck.expect_control(
        [
            finding(TIMING, True),
            finding(KEEPS, False),
            finding(DROPS, False),
            finding(REPORTS, False, no_notice=True),
        ]
    )
    assert [r.status for r in results] == [
        FAIL,
        FAIL,
        FAIL,
        PASS,
    ]
    assert results[0].detail == "passed without the change: the check proves nothing"
    assert results[1].detail == "fails for another reason: QEMU died"
    assert results[2].detail == "QEMU died"


def test_the_series_wants_every_check_to_pass() -> None:
    results = qmpcheck.expect_series(
        [finding(TIMING, True), finding(KEEPS, False, no_notice=True)]
    )
    assert [(r.name, r.status) for r in results] == [
        (TIMING, PASS),
        (KEEPS, FAIL),
    ]


def test_a_check_that_hangs_or_raises_is_a_failure_naming_why() -> None:
    async def hangs() -> Finding:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    async def raises() -> Finding:
        err = RuntimeError("source: QEMU exited: bad option\nmore")
        err.add_note("kept source: fake log L, QEMU stderr E")
        raise err

    async def waits_too_long() -> Finding:
        raise TimeoutError("source: events so far: []")

    hung = asyncio.run(qmpcheck._bounded(TIMING, hangs, 0.2))
    assert hung.detail == "timed out after 0.2 s" and not hung.no_notice
    raised = asyncio.run(qmpcheck._bounded(KEEPS, raises, 5))
    assert raised.detail == "RuntimeError: source: QEMU exited: bad option"
    assert raised.items == ("kept source: fake log L, QEMU stderr E",)
    inner = asyncio.run(qmpcheck._bounded(DROPS, waits_too_long, 5))
    assert inner.detail == "TimeoutError: source: events so far: []"
    assert not inner.needs_notice


def test_a_qemu_that_does_not_start_fails_the_control_too(tmp_path: Path) -> None:
    """Real processes: a 'QEMU' that exits at once is another reason."""
    findings = qmpcheck.run_checks(
        Path("/bin/false"), Path("/nonexistent.so"), V2, tmp_path / "qmp", timeout=30
    )
    assert [f.name for f in findings] == [TIMING, KEEPS, DROPS, REPORTS]
    assert all(not f.passed and not f.no_notice for f in findings), findings
    assert all("QEMU exited" in f.detail for f in findings), findings
    results = qmpcheck.expect_control(findings)
    assert all(r.status == FAIL for r in results)


PACKAGE = REPO / "scripts" / "qseries"


def test_the_package_never_runs_pytest_nor_reads_the_repository_tests() -> None:
    """reproduce and test run the product's own checks: no pytest, and
    nothing of tests/integration (it needs what only `make check` has)."""
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"pytest|tests/integration|\bintegration\b", line)
    ]
    assert found == []


# The consumer with N devices: one result per device, quiescing in turn
# (QEMU calls vfio3 first, as it does here), each for 300 ms.

N = 4
STEP = 300_200  # us from one device's silence to the next one's


def guarded(n: int = N, mask_on: str = "notice", **each: object) -> DevicesResult:
    """A run of n devices; device k (k-th to quiesce) gets the fields of
    demo(), shifted by k steps, then `each` (a callable of k, or a value)."""
    results = []
    for k in range(n):
        at = k * STEP
        base = demo(
            mask_on=mask_on,
            device=f"vfio{n - 1 - k}",
            group=4242 + n - 1 - k,
            silences=((SILENT + at, SILENT + at + 300_000),),
            masked_us=(SILENT + at + 500,),
            unmasked_us=(SILENT + at + 301_000,),
            notice_us=SILENT + at + 500,
            completion_us=SILENT + at + 301_000,
            notice_qemu_us=SILENT + at + 300,
            completion_qemu_us=SILENT + at + 300_800,
        )
        if mask_on == "completion":
            base = dataclasses.replace(
                base,
                link_dropped=True,
                dropped_at_us=SILENT + at + 50_000,
                masked_us=(SILENT + at + 301_000,),
                unmasked_us=(SILENT + at + 302_000,),
            )
        changes = {
            name: value(k) if callable(value) else value for name, value in each.items()
        }
        results.append(dataclasses.replace(base, **changes))  # type: ignore[arg-type]
    return DevicesResult(mask_on, 300, 50.0, "completed", tuple(results))


def n_finding(name: str, passed: bool, no_notice: bool = False) -> Finding:
    needs = qmpcheck.NEEDS_NOTICE[name]
    return Finding(name.format(n=N), needs, passed, "why", (), no_notice)


def test_every_link_masked_on_its_own_notice_is_kept() -> None:
    finding = qmpcheck.judge_keeps_devices(guarded(), V2)
    assert finding.passed and finding.needs_notice, finding
    assert finding.name == (
        "qmp consumer, 4 devices: each link masked on its own notice is kept"
    )
    assert finding.detail == (
        "4 links kept through 300 ms of quiesce each, one device after another "
        "(50 ms timeout): masked at +0.5 ms/+0.5 ms/+0.5 ms/+0.5 ms of their "
        "silences, leads 300.5/300.5/300.5/300.5 ms"
    )
    # Per device, in the order QEMU quiesced them.
    assert finding.items[:4] == tuple(
        f"vfio{3 - k} (group {4245 - k}): silent from +{k * 300.2:.1f} ms, "
        "lead 300.5 ms, masked at +0.5 ms, link kept"
        for k in range(4)
    )
    assert finding.figures["devices"] == 4
    assert finding.figures["vfio0.lead_ms"] == 300.5
    assert finding.figures["vfio0.masked_at_ms"] == 0.5
    assert finding.figures["vfio0.silent_from_ms"] == 900.6
    assert "vfio0.dropped_at_ms" not in finding.figures


def test_without_notices_on_every_device_the_keep_check_fails_for_that() -> None:
    run = guarded(
        notice_us=None,
        notice_qemu_us=None,
        masked_us=(),
        unmasked_us=(),
        link_dropped=True,
        dropped_at_us=lambda k: SILENT + k * STEP + 50_000,
        problems=("no prepare notice before VFIO_MIGRATION(pre-copy-p2p): ...",),
    )
    finding = qmpcheck.judge_keeps_devices(run, V2)
    assert not finding.passed and finding.no_notice, finding
    assert finding.detail == (
        "no prepare notice for pre-copy-p2p reached the guard, for any of the 4 devices"
    )
    assert finding.figures["vfio2.dropped_at_ms"] == 50.0
    assert finding.items[0] == (
        "vfio3 (group 4245): silent from +0.0 ms, lead -, never masked, "
        "link dropped at +50.0 ms"
    )
    # The control turns exactly that into a pass.
    [control] = qmpcheck.expect_control([finding])
    assert control.status == PASS
    assert control.name == f"control {finding.name}"
    # A migration that failed is another reason, notices or not.
    failed = qmpcheck.judge_keeps_devices(dataclasses.replace(run, migration="failed"))
    assert not failed.passed and not failed.no_notice
    assert failed.detail == "the migration ended failed"


def test_a_device_without_its_notice_is_named_and_is_not_the_control() -> None:
    run = guarded(
        notice_us=lambda k: None if k == 2 else SILENT + k * STEP + 500,
        masked_us=lambda k: () if k == 2 else (SILENT + k * STEP + 500,),
    )
    finding = qmpcheck.judge_keeps_devices(run)
    assert not finding.passed and not finding.no_notice
    assert finding.detail == (
        "no prepare notice for pre-copy-p2p reached the guard for vfio1 (of 4)"
    )


def test_a_dropped_link_among_many_is_named() -> None:
    run = guarded(
        link_dropped=lambda k: k == 3,
        dropped_at_us=lambda k: SILENT + k * STEP + 50_000 if k == 3 else None,
    )
    finding = qmpcheck.judge_keeps_devices(run)
    assert not finding.passed and not finding.no_notice
    assert finding.detail == "links dropped: vfio0 at +50.0 ms"
    assert finding.figures["vfio0.dropped_at_ms"] == 50.0


def test_masking_every_link_on_the_first_notice_is_not_per_device() -> None:
    """A consumer that masks every link on the first notice keeps them
    all too; the judge tells it apart by the order."""
    first = guarded(masked_us=(SILENT + 500,))
    finding = qmpcheck.judge_keeps_devices(first)
    assert not finding.passed and not finding.no_notice
    assert finding.detail == (
        "vfio2 was masked before vfio3, quiescing before it, was done: not on "
        "its own notice"
    )
    early = guarded(unmasked_us=lambda k: (SILENT + k * STEP + 200_000,))
    assert qmpcheck.judge_keeps_devices(early).detail == (
        "vfio3: unmasked before its quiesce ended"
    )


def test_the_keep_check_wants_the_versions_own_notice() -> None:
    v1_events = (
        "VFIO_MIGRATION_PREPARE pre-copy-p2p",
        "VFIO_MIGRATION pre-copy-p2p",
    )
    finding = qmpcheck.judge_keeps_devices(guarded(events=v1_events), V2)
    assert not finding.passed and not finding.no_notice
    assert finding.detail == (
        "vfio3: no VFIO_MIGRATION(pre-copy-p2p-prepare) for pre-copy-p2p among "
        "its events"
    )
    assert qmpcheck.judge_keeps_devices(guarded(events=v1_events), V1).passed


def test_masking_on_the_completions_drops_every_link() -> None:
    finding = qmpcheck.judge_drops_devices(guarded(mask_on="completion"))
    assert finding.passed and not finding.needs_notice, finding
    assert finding.name == (
        "qmp consumer, 4 devices: masking on the completions drops every link"
    )
    assert finding.detail == (
        "all 4 links dropped, at +50.0 ms/+50.0 ms/+50.0 ms/+50.0 ms of their "
        "silences; masked only at +301.0 ms/+301.0 ms/+301.0 ms/+301.0 ms, on "
        "their completions"
    )
    assert finding.items[0] == (
        "vfio3 (group 4245): silent from +0.0 ms, lead 300.5 ms, masked at "
        "+301.0 ms, link dropped at +50.0 ms"
    )
    assert finding.figures["vfio1.dropped_at_ms"] == 50.0
    assert finding.figures["vfio1.masked_at_ms"] == 301.0
    assert finding.figures["vfio1.dropped_before_mask_ms"] == 251.0


def test_links_that_held_on_the_completions_are_named() -> None:
    held = guarded(
        mask_on="completion",
        link_dropped=lambda k: k not in (1, 3),
        dropped_at_us=lambda k: None if k in (1, 3) else SILENT + k * STEP + 50_000,
    )
    finding = qmpcheck.judge_drops_devices(held)
    assert not finding.passed
    assert finding.detail == "the links of vfio2, vfio0 (of 4) held without the notice"
    early = guarded(
        mask_on="completion",
        masked_us=lambda k: (SILENT + (40_000 if k == 0 else k * STEP + 301_000),),
    )
    assert qmpcheck.judge_drops_devices(early).detail == (
        "the guard masked vfio3 before the drop"
    )
    lost = guarded(mask_on="completion", completion_state=lambda k: None)
    assert qmpcheck.judge_drops_devices(lost).detail == (
        "vfio3: the guard heard nothing for pre-copy-p2p"
    )


def test_the_control_judges_the_checks_of_n_devices() -> None:
    results = qmpcheck.expect_control(
        [
            n_finding(qmpcheck.KEEPS_N, False, no_notice=True),
            n_finding(qmpcheck.DROPS_N, True),
            n_finding(qmpcheck.KEEPS_N, True),
            n_finding(qmpcheck.DROPS_N, False),
        ]
    )
    assert [r.status for r in results] == [PASS, PASS, FAIL, FAIL]


def test_the_checks_of_n_devices_without_a_qemu_fail_naming_why(
    tmp_path: Path,
) -> None:
    """Real processes: a 'QEMU' that exits at once."""
    findings = asyncio.run(
        qmpcheck.consumers(
            Path("/bin/false"), Path("/nonexistent.so"), tmp_path, N, 300, V2, 30
        )
    )
    assert [f.name for f in findings] == [
        qmpcheck.KEEPS_N.format(n=N),
        qmpcheck.DROPS_N.format(n=N),
    ]
    assert [f.needs_notice for f in findings] == [True, False]
    assert all(not f.passed and not f.no_notice for f in findings), findings
    assert all("QEMU exited" in f.detail for f in findings), findings
