"""The kernel bench's figures (labs/vfio_migration/measure.py, kbench.py)
and the guest's stamps they read (scenarios.py): pure, from records and
result texts built here."""

from __future__ import annotations

import json
import shlex

import pytest

from qseries.labs.vfio_migration import kbench, measure, scenarios
from qseries.labs.vfio_migration.scenarios import QmpEvent, ScenarioRun, Side

from .wires import V1, V2


def qmp(event: str, state: str | None, us: int) -> str:
    """One line of QEMU's QMP stream, timestamped us microseconds."""
    data = {"device-state": state} if state else {}
    stamp = {"seconds": us // 1_000_000, "microseconds": us % 1_000_000}
    return json.dumps({"event": event, "data": data, "timestamp": stamp})


def ev(event: str, state: str | None, us: int, guest: int | None = None) -> QmpEvent:
    data = {"device-state": state} if state else {}
    return QmpEvent(event, data, us, guest)


def test_a_stamped_line_gives_the_guests_clock_and_the_line() -> None:
    line = qmp("STOP", None, 5_000_000)
    assert scenarios.unstamped(f"@1796557209.004511 {line}") == (
        1_796_557_209_004_511,
        line,
    )
    # QEMU's lines start with "{": never read as a stamp.
    assert scenarios.unstamped(line) == (None, line)
    # Milliseconds are no stamp (the parser wants six digits).
    assert scenarios.unstamped(f"@1796557209.004 {line}")[0] is None


def test_stamps_add_the_guests_time_and_change_nothing_else() -> None:
    lines = [
        '{"QMP": {"version": {}}}',
        qmp("RESUME", None, 1_000_000),
        qmp("VFIO_MIGRATION", "running-p2p", 1_250_000),
        '{"return": {}}',
    ]
    stamped = [f"@10.{i:06d} {line}" for i, line in enumerate(lines)]
    plain = scenarios.events_of(lines)
    got = scenarios.events_of(stamped)
    assert [e.guest_us for e in plain] == [None, None]
    assert [e.guest_us for e in got] == [10_000_001, 10_000_002]
    assert [(e.name, e.data, e.qemu_us) for e in got] == [
        (e.name, e.data, e.qemu_us) for e in plain
    ]


def test_read_results_takes_the_stamps_inside_a_frame() -> None:
    lab = scenarios.load()
    stop_cont = lab.scenarios[0]
    text = "\n".join(
        [
            f"QSERIES-CLOCK {stop_cont.name} start 9.000000",
            f"QSERIES-BEGIN {stop_cont.name} source",
            "@10.000500 " + qmp("RESUME", None, 10_000_000),
            f"QSERIES-STDERR {stop_cont.name} source",
            f"QSERIES-END {stop_cont.name} source",
            f"QSERIES-CLOCK {stop_cont.name} end 11.500000",
        ]
    )
    (run,) = scenarios.read_results(text, [stop_cont])
    assert run.error is None
    source = run.side("source")
    assert source is not None
    assert source.events == (ev("RESUME", None, 10_000_000, 10_000_500),)
    assert measure.clock_marks(text) == {
        stop_cont.name: {"start": 9_000_000, "end": 11_500_000}
    }


def test_the_script_stamps_only_when_asked() -> None:
    lab = scenarios.load()
    plain = scenarios.guest_script(lab.scenarios)
    stamped = scenarios.guest_script(lab.scenarios, stamp=True)
    assert "\nSTAMP=1\n" not in plain
    assert "\nSTAMP=1\n" in stamped
    # The marks are scenario_begin's and scenario_end's, which write
    # them only with STAMP=1: without that line, the same script.
    assert stamped.replace("STAMP=1\n", "", 1) == plain
    library = stamped.split("\nDEVICE_OPTIONS=", 1)[0]
    assert "mark start" in library.split("scenario_begin()", 1)[1]
    assert "mark end" in library.split("scenario_end()", 1)[1]


def test_repetitions_have_names_of_their_own() -> None:
    lab = scenarios.load()
    chosen = measure.repeated(lab.scenarios, 3)
    names = [s.name for s in chosen]
    assert len(names) == 3 * len(lab.scenarios) == len(set(names))
    assert [measure.scenario_of(n) for n in names[: len(lab.scenarios)]] == [
        s.name for s in lab.scenarios
    ]
    assert measure.scenario_of("migrate/running#12") == "migrate/running"
    assert measure.scenario_of("stop-cont") == "stop-cont"
    assert [s.steps for s in chosen[-len(lab.scenarios) :]] == [
        s.steps for s in lab.scenarios
    ]
    scenarios.guest_script(chosen)  # distinct: accepted
    with pytest.raises(ValueError, match="name each scenario once"):
        scenarios.guest_script([*lab.scenarios, lab.scenarios[0]])
    with pytest.raises(ValueError):
        measure.repeated(lab.scenarios, 0)


def test_each_repetition_has_a_pair_of_mdevs_of_its_own() -> None:
    lab = scenarios.load()
    chosen, script, mdevs = measure.repeated_script(lab.scenarios, 3)
    assert chosen == measure.repeated(lab.scenarios, 3)
    assert mdevs == 6
    lines = script.split("\n")
    assert "STAMP=1" in lines
    pairs = [i for i, line in enumerate(lines) if line.startswith("MDEV0=")]
    assert [lines[i] for i in pairs] == [
        "MDEV0=$MDEV2 MDEV1=$MDEV3",
        "MDEV0=$MDEV4 MDEV1=$MDEV5",
    ]
    # Each just before the first scenario of its repetition.
    per = len(lab.scenarios)
    assert [lines[i + 1] for i in pairs] == [
        f"scenario_begin {shlex.quote(chosen[per].name)}",
        f"scenario_begin {shlex.quote(chosen[2 * per].name)}",
    ]
    assert measure.repeated_script(lab.scenarios, 12)[2] == measure.MTTY_PORTS
    with pytest.raises(ValueError, match="mdevs"):
        measure.repeated_script(lab.scenarios, 13)


def test_the_quiesce_is_notice_to_its_completion_v2() -> None:
    source = Side(
        "source",
        (
            ev("VFIO_MIGRATION", "pre-copy", 1_000),
            ev("VFIO_MIGRATION", "pre-copy-p2p-prepare", 2_000),
            ev("VFIO_MIGRATION", "pre-copy-p2p", 2_750),
            ev("VFIO_MIGRATION", "stop-copy", 9_000),
        ),
    )
    assert measure.quiesce_us(source, V2) == [750]
    # A notice closed by another completion counts not.
    wrong = Side(
        "source",
        (
            ev("VFIO_MIGRATION", "pre-copy-p2p-prepare", 2_000),
            ev("VFIO_MIGRATION", "stop-copy", 3_000),
            ev("VFIO_MIGRATION", "pre-copy-p2p", 4_000),
        ),
    )
    assert measure.quiesce_us(wrong, V2) == []


def test_the_quiesce_is_notice_to_its_completion_v1() -> None:
    source = Side(
        "source",
        (
            ev("VFIO_MIGRATION_PREPARE", "running-p2p", 100),
            ev("VFIO_MIGRATION", "running-p2p", 400),
            ev("STOP", None, 450),
            ev("VFIO_MIGRATION_PREPARE", "stop", 500),
            ev("VFIO_MIGRATION", "stop", 1_500),
            ev("VFIO_MIGRATION", "running", 2_000),  # no notice: no figure
        ),
    )
    assert measure.quiesce_us(source, V1) == [300, 1_000]


def test_the_figures_pool_repetitions_by_scenario() -> None:
    def migrated(name: str, lead: int, late: int) -> ScenarioRun:
        source = Side(
            "source",
            (
                ev("VFIO_MIGRATION", "pre-copy-p2p-prepare", 1_000, 1_000 + late),
                ev("VFIO_MIGRATION", "pre-copy-p2p", 1_000 + lead, 1_000 + lead),
            ),
        )
        return ScenarioRun(name, (source, Side("destination", ())))

    runs = [
        migrated("migrate/running#1", 2_000, 100),
        migrated("migrate/running#2", 4_000, 300),
        migrated("migrate/running#3", 9_000, 200),
        ScenarioRun("stop-cont#1", (Side("source", (ev("STOP", None, 5, 7),)),)),
    ]
    results = "\n".join(
        [
            "QSERIES-CLOCK migrate/running#1 start 1.000000",
            "QSERIES-CLOCK migrate/running#1 end 3.000000",
            "QSERIES-CLOCK migrate/running#2 start 3.000000",
            "QSERIES-CLOCK migrate/running#2 end 6.000000",
            "QSERIES-CLOCK stop-cont#1 start 6.000000",
            "QSERIES-CLOCK stop-cont#1 end 7.250000",
            "QSERIES-CLOCK stop-cont#2 start 7.5",  # no microseconds: dropped
        ]
    )
    got = measure.figures(runs, V2, results)
    assert got == {
        "quiesce_migrate_running_notices": 3,
        "quiesce_migrate_running_median_ms": 4.0,
        "quiesce_migrate_running_max_ms": 9.0,
        "quiesce_stop_cont_notices": 0,
        "scenario_migrate_running_median_s": 2.5,
        "scenario_stop_cont_median_s": 1.25,
        "qmp_delivery_events": 7,
        "qmp_delivery_median_ms": 0.002,
        "qmp_delivery_max_ms": 0.3,
        "scenarios_s": 6.25,
    }


def test_the_kernel_stage_ratios() -> None:
    figures = {
        "kernel_stage_cold_s": 60.0,
        "kernel_by_hand_s": 50.0,
        "kernel_stage_warm_s": 30.0,
        "kernel_by_hand_warm_s": 24.0,
    }
    assert kbench.stage_ratios(figures) == {
        "kernel_stage_cold_ratio": 1.2,
        "kernel_stage_warm_ratio": 1.25,
    }


def test_the_cold_ratio_counts_only_the_steps_the_hand_run_does() -> None:
    """Against the run by hand, reproduce's own extra work (QEMU's runner,
    the QMP checks) is left out; the fake the qtest loads is counted."""
    from qseries.labs.vfio_migration.bench import same_as_by_hand
    from qseries.reports.report import Phase

    phases = [
        Phase("source", 20.0),
        Phase("apply", 5.0),
        Phase("configure", 15.0),
        Phase("build", 180.0),
        Phase("build the fake device", 1.0),
        Phase("qtest", 3.0),
        Phase("QEMU's qtests", 15.0),
        Phase("QEMU's runner", 4.0),
        Phase("qmp", 2.0),
    ]
    assert same_as_by_hand(phases) == 239.0
