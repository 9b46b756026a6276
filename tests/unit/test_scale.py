"""The N-device judgement (labs/vfio_migration/scale.py) on runs built
by hand: each device held to its own events, the P2P step to QEMU's
order, the control to lacking every notice and only them.  Real
migrations of N devices run in tests/integration/test_scale.py and in
`qseries reproduce --devices N`."""

from __future__ import annotations

from dataclasses import replace

import pytest

from qseries.core.results import FAIL, PASS, Result
from qseries.ground.errors import UsageError
from qseries.labs.vfio_migration import scale
from qseries.labs.vfio_migration.faults import Case, CaseRun, SideRun
from qseries.labs.vfio_migration.lab import device_counts
from qseries.labs.vfio_migration.plan import Wire
from qseries.labs.vfio_migration.vm import Event, LogRecord

V1 = Wire("VFIO_MIGRATION", "VFIO_MIGRATION_PREPARE")
V2 = Wire("VFIO_MIGRATION", "VFIO_MIGRATION", "pre-copy-p2p-prepare", "pre-copy-p2p")
G = 4242
T0 = 1_000_000_000
T = 300_000  # us: each device's quiesce
N = 3
SHAPE = scale.Shape(N, T // 1000)


def _name(k: int) -> str:
    return f"vfio{k}"


def _event(kind: str, state: str, t: int, device: str, wire: Wire = V2) -> Event:
    if kind == "notice":
        name, raw = wire.notice_event, wire.notice_state or state
    else:
        name, raw = wire.completion, state
    # Received 200 us after QEMU stamped it.
    at = T0 + t
    return Event(name, raw, at, at + 200, (at + 200) / 1e6, kind, state, device)


def _record(k: int, source: str, target: str, begin: int, end: int) -> LogRecord:
    return LogRecord("transition", G + k, source, target, T0 + begin, T0 + end, "ok")


def source_side(
    order: list[int] | None = None,
    drop: tuple[str, str] | None = None,
    overlap: bool = False,
    notices: bool = True,
) -> SideRun:
    """N devices quiesced one after another (in `order`), each for T, with
    v2's events; `drop` removes one (device, label) event."""
    order = list(range(N)) if order is None else order
    log: list[LogRecord] = []
    events: list[Event] = []
    for k in range(N):
        log.append(_record(k, "RUNNING", "PRE_COPY", 10 + k, 12 + k))
        events.append(_event("done", "pre-copy", 13 + k, _name(k)))
    start = 1000
    for i, k in enumerate(order):
        begin = start + i * (T + 100) - (T // 2 if overlap and i else 0)
        log.append(_record(k, "PRE_COPY", "PRE_COPY_P2P", begin, begin + T))
        if notices:
            events.append(_event("notice", "pre-copy-p2p", begin - 20, _name(k)))
        events.append(_event("done", "pre-copy-p2p", begin + T + 20, _name(k)))
    end = start + N * (T + 100)
    for k in range(N):
        log.append(_record(k, "PRE_COPY_P2P", "STOP_COPY", end + k * 10, end + 5))
        events.append(_event("done", "stop-copy", end + 6 + k * 10, _name(k)))
    if drop is not None:
        device, label = drop
        events = [e for e in events if (e.device, e.label()) != (device, label)]
    events.sort(key=lambda e: e.qemu_us)
    log.sort(key=lambda r: r.begin_us)
    return SideRun(
        side="source",
        devices={_name(k): G + k for k in range(N)},
        events=events,
        log=log,
        migration="completed",
        runstate="postmigrate",
        ended=None,
        stderr="",
        migrated_at_us=T0,
    )


def destination_side(
    migration: str = "completed", resumed: bool = True, notices: bool = True
) -> SideRun:
    """N devices loaded and run, one after another, with their events."""
    log: list[LogRecord] = []
    events: list[Event] = []
    steps = [("RUNNING", "RESUMING"), ("RESUMING", "RUNNING_P2P")]
    if resumed:
        steps.append(("RUNNING_P2P", "RUNNING"))
    for i, (a, b) in enumerate(steps):
        for k in range(N):
            t = 100 + i * 50 + k * 10
            log.append(_record(k, a, b, t, t + 2))
            events.append(_event("done", b.lower().replace("_", "-"), t + 3, _name(k)))
    return SideRun(
        side="destination",
        devices={_name(k): G + k for k in range(N)},
        events=events,
        log=log,
        migration=migration,
        runstate="running" if resumed else "inmigrate",
        ended=None,
        stderr="",
        migrated_at_us=T0,
    )


def run_of(side: SideRun, destination: SideRun | None = None) -> CaseRun:
    return CaseRun(
        Case(SHAPE.scenario()),
        {"source": side, "destination": destination or destination_side()},
    )


def by_name(results: list[Result]) -> dict[str, Result]:
    return {r.name: r for r in results}


def test_every_device_in_order_passes_with_its_figures() -> None:
    run = run_of(source_side())
    results = scale.results(SHAPE, run, V2, ("exact",))
    assert [r.name for r in results] == [
        "3 devices: migration",
        "3 devices: vfio0",
        "3 devices: vfio1",
        "3 devices: vfio2",
        "3 devices: order",
    ]
    assert all(r.status == PASS for r in results), results
    fig = scale.figures_of(SHAPE, run)
    assert fig["devices"]["vfio1"]["lead_ms"] == pytest.approx(T / 1000 + 0.04)
    assert fig["devices"]["vfio1"]["began_after_notice_us"] == 20
    assert fig["devices"]["vfio1"]["delivery_us"] == 200
    # First notice to last completion: N quiesces and the gaps between.
    assert fig["switchover_ms"] == pytest.approx((N * (T + 100) - 100 + 40) / 1000)
    assert fig["expected_ms"] == N * T // 1000


def test_a_lost_notice_fails_that_device_only() -> None:
    run = run_of(source_side(drop=("vfio1", "notice pre-copy-p2p")))
    results = by_name(scale.results(SHAPE, run, V2, ("exact",)))
    assert results["3 devices: vfio1"].status == FAIL
    assert "notice pre-copy-p2p" in results["3 devices: vfio1"].detail
    assert results["3 devices: vfio0"].status == PASS
    assert results["3 devices: vfio2"].status == PASS


def test_a_lost_completion_fails_that_device() -> None:
    run = run_of(source_side(drop=("vfio2", "done stop-copy")))
    results = by_name(scale.results(SHAPE, run, V2, ("exact",)))
    assert results["3 devices: vfio2"].status == FAIL
    assert results["3 devices: vfio1"].status == PASS


def test_notices_out_of_the_order_qemu_called_the_devices() -> None:
    side = source_side(order=[0, 2, 1])
    # The same events, the notices of vfio1 and vfio2 sent swapped.
    swapped = []
    for e in side.events:
        if e.kind == "notice" and e.device in ("vfio1", "vfio2"):
            e = replace(e, device="vfio2" if e.device == "vfio1" else "vfio1")
        swapped.append(e)
    side.events = swapped
    problems = scale.check_order(run_of(side), V2)
    assert any("notices for pre-copy-p2p heard for" in p for p in problems)


def test_a_failed_destination_fails_the_run() -> None:
    run = run_of(source_side(), destination_side("failed", resumed=False))
    results = by_name(scale.results(SHAPE, run, V2, ("exact",)))
    migration = results["3 devices: migration"]
    assert migration.status == FAIL
    assert "ended failed on the destination" in migration.detail
    assert any("never went from RESUMING to RUNNING" in i for i in migration.items)


def test_a_destination_that_lost_a_device_fails_the_run() -> None:
    dest = destination_side()
    dest.log = [r for r in dest.log if not (r.group == G + 1 and r.target == "RUNNING")]
    problems = scale.migrated(run_of(source_side(), dest))
    assert problems == [
        "destination vfio1 never went from RESUMING to RUNNING "
        "(reached: RESUMING, RUNNING_P2P)"
    ]


def test_the_order_qemu_chose_is_followed_whatever_it_is() -> None:
    assert scale.check_order(run_of(source_side(order=[2, 0, 1])), V2) == []


def test_overlapping_p2p_steps_are_caught() -> None:
    problems = scale.check_order(run_of(source_side(overlap=True)), V2)
    assert any("began" in p and "before" in p for p in problems)


def test_the_control_lacks_every_notice_and_only_them() -> None:
    run = run_of(source_side(notices=False))
    results = scale.control_results(SHAPE, run, V2)
    assert [r.status for r in results] == [PASS] * (N + 1), results
    assert "fails as it must" in results[1].detail


def test_a_control_that_did_not_migrate_is_not_a_pass() -> None:
    side = source_side(notices=False)
    side.migration = "failed"
    side.log = [r for r in side.log if r.group != G + 2 or r.target != "PRE_COPY_P2P"]
    results = by_name(scale.control_results(SHAPE, run_of(side), V2))
    assert results["control 3 devices: migration"].status == FAIL
    never = results["control 3 devices: source vfio2"]
    assert never.status == FAIL and "never reached" in never.detail
    empty = scale.control_results(SHAPE, CaseRun(Case(SHAPE.scenario()), {}), V2)
    assert [r.status for r in empty] == [FAIL]


def test_a_control_with_notices_proves_nothing() -> None:
    results = scale.control_results(SHAPE, run_of(source_side()), V2)
    assert [r.status for r in results[1:]] == [FAIL] * N
    assert "came without the change" in results[1].detail


def test_a_control_that_fails_otherwise_is_not_a_pass() -> None:
    side = source_side(notices=False, drop=("vfio0", "done stop-copy"))
    results = by_name(scale.control_results(SHAPE, run_of(side), V2))
    assert results["control 3 devices: source vfio0"].status == FAIL
    assert "another reason" in results["control 3 devices: source vfio0"].detail
    assert results["control 3 devices: source vfio1"].status == PASS


def test_shapes_and_their_delays() -> None:
    staggered = scale.Shape(4, 50, stagger=True, multifd=True)
    assert [staggered.delay_of(k) for k in (1, 2, 3, 4)] == [50, 100, 150, 200]
    scenario = staggered.scenario()
    assert (scenario.devices, scenario.stagger, scenario.multifd) == (4, True, True)
    assert scenario.delay == "PRE_COPY>PRE_COPY_P2P=50"
    with pytest.raises(ValueError, match="from 1 to 16"):
        scale.Shape(17, 50)


@pytest.mark.parametrize(
    ("text", "many", "want"),
    [("8", False, (8,)), ("1,2,4,8,16", True, (1, 2, 4, 8, 16)), ("3", True, (3,))],
)
def test_device_counts(text: str, many: bool, want: tuple[int, ...]) -> None:
    assert device_counts(text, many) == want


@pytest.mark.parametrize(
    ("text", "many", "said"),
    [
        ("0", False, "from 1 to 16"),
        ("17", True, "from 1 to 16"),
        ("2,x", True, "a comma list"),
        ("2,4", False, "one number here"),
    ],
)
def test_bad_device_counts(text: str, many: bool, said: str) -> None:
    with pytest.raises(UsageError, match=said):
        device_counts(text, many)
