"""The fault matrix's judgement: the events a device's log calls for,
the invariants, the flags and the table (tests/functional runs the
matrix on real QEMUs, inside `qseries reproduce`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qseries.core.results import FAIL, PASS, SKIP
from qseries.labs.vfio_migration import faults
from qseries.labs.vfio_migration.faults import Case, CaseRun, SideRun
from qseries.labs.vfio_migration.plan import FaultPlan, Scenario, Wire
from qseries.labs.vfio_migration.vm import Event, LogRecord, read_log

V1 = Wire("VFIO_MIGRATION", "VFIO_MIGRATION_PREPARE")
V2 = Wire("VFIO_MIGRATION", "VFIO_MIGRATION", "pre-copy-p2p-prepare", "pre-copy-p2p")
G = 4242
T0 = 1_000_000


def tr(source: str, target: str, t: int, result: str = "ok") -> LogRecord:
    return LogRecord("transition", G, source, target, T0 + t, T0 + t + 5, result)


def reset(t: int, result: str = "ok") -> LogRecord:
    return LogRecord("reset", G, None, None, T0 + t, T0 + t, result)


def ev(wire: Wire, kind: str, state: str, t: int, device: str = "vfio0") -> Event:
    if kind == "notice":
        name = wire.notice_event
        raw = wire.notice_state or state
    else:
        name, raw = wire.completion, state
    return Event(name, raw, T0 + t, T0 + t, 0.0, kind, state, device)


def labels(expected: list[faults.Expected]) -> list[str]:
    return [f"{e.kind} {e.state}" for e in expected]


P2P_LOG = [
    tr("RUNNING", "PRE_COPY", 10),
    tr("PRE_COPY", "PRE_COPY_P2P", 20),
    tr("PRE_COPY_P2P", "STOP_COPY", 30),
    tr("STOP_COPY", "STOP", 40),
]


def test_v2_announces_only_pre_copy_p2p() -> None:
    assert labels(faults.expected_events(P2P_LOG, G, V2, True)) == [
        "done pre-copy",
        "notice pre-copy-p2p",
        "done pre-copy-p2p",
        "done stop-copy",
        "done stop",
    ]


def test_v1_announces_every_request() -> None:
    got = labels(faults.expected_events(P2P_LOG[:2], G, V1, True))
    assert got == [
        "notice pre-copy",
        "done pre-copy",
        "notice pre-copy-p2p",
        "done pre-copy-p2p",
    ]


def test_a_failed_request_is_followed_by_its_recovery() -> None:
    log = [tr("RUNNING", "PRE_COPY", 10, "EIO"), tr("RUNNING", "RUNNING", 20)]
    assert labels(faults.expected_events(log, G, V1, True)) == [
        "notice pre-copy",
        "done running",
    ]


def test_a_failed_request_without_recovery_ends_in_a_reset() -> None:
    log = [tr("PRE_COPY", "PRE_COPY_P2P", 10, "EIO"), reset(20)]
    assert labels(faults.expected_events(log, G, V2, True)) == [
        "notice pre-copy-p2p",
        "done running",
    ]


def test_a_failed_recovery_ends_in_a_reset() -> None:
    log = [
        tr("STOP", "STOP_COPY", 10, "EIO"),
        tr("STOP", "STOP", 20, "EIO"),
        reset(30),
    ]
    assert labels(faults.expected_events(log, G, V1, True)) == [
        "notice stop-copy",
        "done running",
    ]


def test_a_failed_reset_sends_nothing_more() -> None:
    log = [tr("PRE_COPY", "STOP_COPY", 10, "EIO"), reset(20, "EIO")]
    assert labels(faults.expected_events(log, G, V2, True)) == []


def test_machine_resets_and_other_devices_do_not_count() -> None:
    other = LogRecord("transition", G + 1, "RUNNING", "STOP", T0, T0 + 1, "ok")
    log = [reset(1), other, tr("RUNNING", "STOP", 10)]
    assert labels(faults.expected_events(log, G, V2, True)) == ["done stop"]


def test_migration_events_off_means_no_event() -> None:
    assert faults.expected_events(P2P_LOG, G, V1, False) == []


SCENARIO = Scenario("migrate-p2p", "a migration", "migrate", "stop_copy,p2p,pre_copy")
PLAN = FaultPlan((SCENARIO,), ("exact",), "docs/faults-v9.md")


def side(
    name: str,
    log: list[LogRecord],
    events: list[Event],
    migration: str | None = "completed",
    ended: str | None = None,
) -> SideRun:
    return SideRun(
        side=name,
        devices={"vfio0": G},
        events=events,
        log=log,
        migration=migration,
        runstate=None if ended else "running",
        ended=ended,
        stderr="",
        migrated_at_us=T0,
    )


def case_run(*sides: SideRun, scenario: Scenario = SCENARIO) -> CaseRun:
    run = CaseRun(Case(scenario), {s.side: s for s in sides})
    faults.judge(run, FaultPlan((scenario,), PLAN.invariants, PLAN.table), V2)
    return run


def v2_events(times: dict[str, int]) -> list[Event]:
    out = []
    for label, t in times.items():
        kind, state = label.split()
        out.append(ev(V2, kind, state, t))
    return out


GOOD = {
    "done pre-copy": 16,
    "notice pre-copy-p2p": 19,
    "done pre-copy-p2p": 26,
    "done stop-copy": 36,
    "done stop": 46,
}


def test_the_events_of_the_log_pass() -> None:
    run = case_run(side("source", P2P_LOG, v2_events(GOOD)))
    assert run.problems == [] and run.flags == []


def test_a_missing_completion_is_caught() -> None:
    times = dict(GOOD)
    del times["done stop"]
    run = case_run(side("source", P2P_LOG, v2_events(times)))
    assert run.problems and run.problems[0].startswith("exact: source vfio0: events")


def test_a_notice_sent_after_the_request_started_is_caught() -> None:
    times = dict(GOOD, **{"notice pre-copy-p2p": 21})
    run = case_run(side("source", P2P_LOG, v2_events(times)))
    assert any("after the request started" in p for p in run.problems)


def test_a_completion_sent_before_the_device_got_there_is_caught() -> None:
    times = dict(GOOD, **{"done stop-copy": 32})
    run = case_run(side("source", P2P_LOG, v2_events(times)))
    assert any("before the device got there" in p for p in run.problems)


def test_paired_wants_one_completion_per_notice() -> None:
    log = [tr("RUNNING", "STOP", 10)]
    twice = [ev(V1, "notice", "stop", 9), ev(V1, "done", "stop", 16)]
    twice.append(ev(V1, "done", "stop", 17))
    run = CaseRun(Case(SCENARIO), {"source": side("source", log, twice)})
    assert faults.check_paired(run, V1) == [
        "paired: source vfio0: notice stop followed by 2 completions (stop, stop)"
    ]


def test_paired_allows_none_only_after_a_reset_when_qemu_ended() -> None:
    log = [tr("PRE_COPY", "STOP_COPY", 10, "EIO"), reset(20, "EIO")]
    notice = [ev(V1, "notice", "stop-copy", 9)]
    alive = CaseRun(Case(SCENARIO), {"source": side("source", log, notice)})
    assert faults.check_paired(alive, V1) == [
        "paired: source vfio0: notice stop-copy never followed by a completion"
    ]
    ended = side("source", log, notice, ended="killed by signal 6")
    run = CaseRun(Case(SCENARIO), {"source": ended})
    assert faults.check_paired(run, V1) == []


def test_paired_accepts_the_recovery_state() -> None:
    log = [tr("RUNNING", "PRE_COPY", 10, "EIO"), tr("RUNNING", "RUNNING", 20)]
    events = [ev(V1, "notice", "pre-copy", 9), ev(V1, "done", "running", 26)]
    run = CaseRun(Case(SCENARIO), {"source": side("source", log, events)})
    assert faults.check_paired(run, V1) == []


def test_a_completed_migration_after_a_failed_transition_is_flagged() -> None:
    log = [tr("RESUMING", "RUNNING", 10, "EIO"), reset(20)]
    events = [ev(V2, "done", "running", 21)]
    src = side("source", [], [])
    dst = side("destination", log, events)
    run = case_run(src, dst)
    assert run.problems == []
    assert run.flags == [
        "both sides report 'completed' although destination RESUMING>RUNNING failed"
    ]


def test_a_failure_before_the_migration_is_not_flagged() -> None:
    log = [tr("RUNNING", "STOP", -10, "EIO"), reset(-5)]
    events = [ev(V2, "done", "running", -4)]
    run = case_run(side("source", log, events), side("destination", [], []))
    assert run.problems == [] and run.flags == []


def test_a_qemu_that_ends_is_a_failure_unless_the_scenario_says_so() -> None:
    crashed = side("source", [], [], migration=None, ended="killed by signal 11")
    run = case_run(crashed)
    assert run.problems == ["QEMU (source) killed by signal 11"]
    expected = Scenario(
        "reset-fails",
        "x",
        "migrate",
        "stop_copy",
        each_arc=False,
        exits=(("source", "hw_error()"),),
    )
    assert case_run(crashed, scenario=expected).problems == []
    alive = side("source", [], [])
    still = case_run(alive, scenario=expected).problems
    assert still == ["QEMU (source) is still running; expected it to end: hw_error()"]


def test_a_migration_that_never_ends_is_reported() -> None:
    run = case_run(side("source", [], [], migration="active"))
    assert run.problems == ["source: migration still 'active' after 60 s"]


def test_the_table_and_its_comparison(tmp_path: Path) -> None:
    run = case_run(side("source", P2P_LOG, v2_events(GOOD)))
    matrix = faults.Matrix([run], V2, PLAN)
    text = faults.table(matrix, "v9", "QEMU 10.2.2, Debian 1:10.2.2+ds-1")
    assert (
        "| migrate-p2p | none | pre-copy, pre-copy-p2p-prepare, pre-copy-p2p, "
        "stop-copy, stop | - | source completed, running | pass |" in text
    )
    committed = tmp_path / "faults-v9.md"
    based = "QEMU 10.2.2, Debian 1:10.2.2+ds-1"
    assert faults.table_result(text, committed, based).status == FAIL
    committed.write_text(text)
    assert faults.table_result(text, committed, based).status == PASS
    assert faults.table_result(text, committed, "QEMU 10.0.13, Debian x").status == SKIP
    changed = text.replace("| pass |", "| FAIL: x |")
    result = faults.table_result(changed, committed, based)
    assert result.status == FAIL and "differs from this run" in result.detail
    assert result.items and "FAIL: x" in result.items[0]


def test_case_ids_and_the_fake_environment() -> None:
    case = Case(SCENARIO, "destination", "RESUMING>RUNNING")
    assert case.id == "migrate-p2p/destination/RESUMING>RUNNING"
    assert case.env("destination")["FAKEVFIO_FAIL"] == "RESUMING>RUNNING=EIO:once"
    assert "FAKEVFIO_FAIL" not in case.env("source")
    fixed = Scenario(
        "reset-fails",
        "x",
        "migrate",
        "stop_copy",
        each_arc=False,
        fail=(("source", "PRE_COPY>STOP_COPY=EIO:once"),),
        reset_fails=(("source", "EIO"),),
    )
    env = Case(fixed).env("source")
    assert env["FAKEVFIO_FAIL"] == "PRE_COPY>STOP_COPY=EIO:once"
    assert env["FAKEVFIO_RESET_FAIL"] == "EIO"


def test_one_of_n_fails_only_that_device_and_delays_stagger() -> None:
    one = Scenario(
        "one-of-four", "x", "migrate", "stop_copy,p2p", devices=4, fail_device=3
    )
    case = Case(one, "source", "PRE_COPY>PRE_COPY_P2P")
    assert case.env("source")["FAKEVFIO_FAIL"] == (
        f"PRE_COPY>PRE_COPY_P2P=EIO:once@{G + 2}"
    )
    assert "FAKEVFIO_FAIL" not in case.env("destination")
    fixed = Scenario(
        "one-of-two",
        "x",
        "migrate",
        "stop_copy,p2p",
        devices=2,
        each_arc=False,
        fail=(("source", "A>B=EIO:once, C>D=EIO"),),
        fail_device=2,
    )
    assert Case(fixed).env("source")["FAKEVFIO_FAIL"] == (
        f"A>B=EIO:once@{G + 1},C>D=EIO@{G + 1}"
    )
    slow = Scenario("slow", "x", "migrate", "stop_copy,p2p", devices=3, delay="A>B=50")
    assert Case(slow).env("source")["FAKEVFIO_DELAY"] == "A>B=50"
    staggered = Scenario(
        "slow",
        "x",
        "migrate",
        "stop_copy,p2p",
        devices=3,
        delay="A>B=50",
        stagger=True,
    )
    assert Case(staggered).env("destination")["FAKEVFIO_DELAY"] == (
        f"A>B=50@{G},A>B=100@{G + 1},A>B=150@{G + 2}"
    )


def test_read_log_keeps_transitions_and_resets(tmp_path: Path) -> None:
    log = tmp_path / "fakevfio.log"
    log.write_text(
        "init 1 stop_copy\n"
        "begin 4242 RUNNING STOP 10\n"
        "transition 4242 RUNNING STOP 10 20 ok\n"
        "reset 4242 30\n"
        "reset-failed 4243 40 EIO\n"
        "transition 4242 STOP RUN"  # cut short by a killed QEMU
    )
    records = read_log(log)
    assert [(r.kind, r.group, r.result) for r in records] == [
        ("transition", 4242, "ok"),
        ("reset", 4242, "ok"),
        ("reset", 4243, "EIO"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run: dance", "'dance' is not one of: stop-cont, migrate, cancel"),
        ("devices: 17", "expected 1 to 16"),
        ("fail: {source: 'A>B=EIO'}", "'fail' goes with 'each-arc: false'"),
        ("events: maybe", "expected true or false"),
        ("exits: {sideways: x}", "unknown key 'sideways'"),
        ("fail-device: 2", "expected 1 to 1"),
        ("delay: 'PRE_COPY>STOP=soon'", "expected FROM>TO=MS, kernel names"),
        ("stagger: often", "expected true or false"),
        ("multifd: 1", "expected true or false"),
        ("stagger: true", "'stagger' needs 'delay'"),
        ("devices: 2\n    fail-device: 2\n    each-arc: false", "needs each-arc"),
    ],
)
def test_bad_scenarios_are_refused_with_their_line(
    tmp_path: Path, text: str, message: str
) -> None:
    from qseries.core import generators, series
    from qseries.ground.errors import SeriesFileError

    from ..conftest import copy_series

    # A copy: a series may not reach its files through symlinks out.
    tmp_path = copy_series(tmp_path / "s").parent
    doc = (tmp_path / "series.yaml").read_text()
    bad = tmp_path / "faults-bad.yaml"
    key = text.split(":")[0]
    body = (
        "scenarios:\n  - name: x\n    what: y\n    run: migrate\n    flags: stop_copy\n"
    )
    if key == "run":
        body = body.replace("    run: migrate\n", "")
    bad.write_text(body + f"    {text}\n")
    (tmp_path / "series.yaml").write_text(
        doc.replace("scenarios: faults/scenarios.yaml", "scenarios: faults-bad.yaml")
    )
    with pytest.raises(SeriesFileError) as err:
        series.load(tmp_path / "series.yaml", generators.specs())
    assert message in str(err.value)
    assert str(err.value).startswith(f"{bad}:")


def test_case_ids_must_name_a_case() -> None:
    from qseries.ground.errors import UsageError

    faults.check_case_ids(PLAN, ["migrate-p2p", "migrate-p2p/source/PRE_COPY>STOP"])
    for bad in (
        "migrate-p2p/source/RUNNING",  # the shell took '>PRE_COPY'
        "migrate-p2p/left/RUNNING>STOP",
        "migrate-p2p/source/RUNNING>FLYING",
        "unplug",
    ):
        with pytest.raises(UsageError, match="names no case of the fault matrix"):
            faults.check_case_ids(PLAN, [bad])
