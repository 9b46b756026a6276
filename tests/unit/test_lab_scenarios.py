"""The VFIO lab's scenario table, the guest script's framing, and the
judges of the records (pure: records are built here from event lists)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qseries.ground.workdir import WorkDir
from qseries.labs.vfio_migration import judge, scenarios
from qseries.labs.vfio_migration.device import DeviceRun, KernelDevice
from qseries.labs.vfio_migration.proof import DeviceProof
from qseries.labs.vfio_migration.scenarios import QmpEvent, ScenarioRun, Side

from .wires import V1, V2


def side(vm: str, *items: tuple[str, str]) -> Side:
    events = [QmpEvent("RESUME", {}, 0)]
    events += [QmpEvent(e, {"device-state": s}, i) for i, (e, s) in enumerate(items)]
    return Side(vm, tuple(events))


def done(*states: str) -> list[tuple[str, str]]:
    return [("VFIO_MIGRATION", s) for s in states]


V2_SOURCE = [
    *done("running-p2p", "running", "pre-copy"),
    ("VFIO_MIGRATION", "pre-copy-p2p-prepare"),
    *done("pre-copy-p2p", "stop-copy", "stop"),
]
BASE_SOURCE = done("running-p2p", "running", "pre-copy", "pre-copy-p2p", "stop-copy")
BASE_SOURCE += done("stop")


def test_the_lab_loads_and_counts_repeated_waits() -> None:
    lab = scenarios.load()
    names = [s.name for s in lab.scenarios]
    assert names == ["stop-cont", "migrate/running", "migrate/paused"]
    assert set(lab.flags.split(",")) == {"stop_copy", "p2p", "pre_copy"}
    resumes = [s.nth for s in lab.scenarios[0].steps if s.wait == "RESUME"]
    assert resumes == [1, 2]
    assert any("fault matrix" in why for _, why in lab.not_on_mtty)


def test_what_mtty_cannot_run_is_listed_with_a_reason() -> None:
    with pytest.raises(scenarios.ScenarioError, match="not-on-mtty"):
        scenarios.parse(
            "scenarios:\n  - {name: x, vms: [source], steps: [{vm: source, "
            "run: cont}]}\nnot-on-mtty: [{what: faults}]\n"
        )


@pytest.mark.parametrize(
    "step, message",
    [
        ("{vm: nowhere, run: cont}", "vm 'nowhere' is not one of"),
        ("{vm: source, run: cont, wait: STOP}", "either runs a command or waits"),
        ("{vm: source, run: reboot}", "run 'reboot' is not one of"),
        ("{vm: source, wait: STOP, colour: red}", "unknown keys ['colour']"),
        ("{vm: destination, run: migrate}", "only the source migrates"),
    ],
)
def test_a_bad_step_is_named(step: str, message: str) -> None:
    text = (
        "scenarios:\n  - name: x\n    vms: [source, destination]\n"
        f"    steps: [{step}]\n"
    )
    with pytest.raises(scenarios.ScenarioError) as caught:
        scenarios.parse(text)
    assert "scenario x, step 1" in str(caught.value)
    assert message in str(caught.value)


def test_an_unknown_scenario_is_refused() -> None:
    with pytest.raises(scenarios.ScenarioError, match="no scenario 'reboot'"):
        scenarios.select(scenarios.load(), ["reboot"])


def test_the_guest_script_runs_every_step_in_order() -> None:
    lab = scenarios.load()
    script = scenarios.guest_script(lab.scenarios)
    body = script.split("steps_1() {", 1)[1].split("\n}\n", 1)[0]
    lines = [line.strip() for line in body.strip().splitlines()]
    # The destination listens before the source starts and migrates.
    assert lines[0].startswith('vm_start destination 4 "$MDEV1" -incoming')
    assert lines[1].startswith('vm_start source 3 "$MDEV0" -S')
    assert lines[-3] == "migrate 3 || return 1"
    assert '\'"status": "completed"\'' in lines[-2]
    assert scenarios.DEVICE_OPTIONS in script
    ends = [line for line in script.split("\n") if line.startswith("scenario_end ")]
    assert ends == [
        "scenario_end source",
        "scenario_end source destination",
        "scenario_end source destination",
    ]


def test_results_are_read_by_frame_and_errors_kept() -> None:
    lab = scenarios.load()
    text = "\r\n".join(
        [
            "QSERIES-BEGIN stop-cont source",
            '{"QMP": {}}',
            '{"timestamp": {"seconds": 1, "microseconds": 5}, "event": '
            '"VFIO_MIGRATION", "data": {"device-state": "running"}}',
            "not json",
            "QSERIES-STDERR stop-cont source",
            "a warning",
            "QSERIES-END stop-cont source",
            "QSERIES-SCENARIO-ERROR: migrate/paused: source: no MIGRATION after 30 s",
        ]
    )
    runs = scenarios.read_results(text, lab.scenarios)
    first = runs[0].sides[0]
    assert [(e.name, e.state, e.qemu_us) for e in first.events] == [
        ("VFIO_MIGRATION", "running", 1_000_005)
    ]
    assert first.stderr == "a warning"
    assert runs[0].error is None
    assert runs[1].error == "the guest reported nothing of it"
    assert runs[2].error == "source: no MIGRATION after 30 s"


# A scenario of one source, that must reach the quiesce.
M = scenarios.Scenario("m", ("source",), (), (("source", ("pre-copy-p2p",)),))
S = scenarios.Scenario("s", ("source",), (), (("source", ("running",)),))


def test_v2_series_passes_and_a_late_notice_fails() -> None:
    good = ScenarioRun("m", (side("source", *V2_SOURCE),))
    assert judge.judge_series("mtty", good, V2, M).ok
    late = list(V2_SOURCE)
    late[3], late[4] = late[4], late[3]  # the notice after the move
    result = judge.judge_series(
        "mtty", ScenarioRun("m", (side("source", *late),)), V2, M
    )
    assert not result.ok
    assert "pre-copy-p2p reached with no VFIO_MIGRATION(pre-copy-p2p-prepare)" in (
        result.detail
    )


def test_a_run_that_never_gets_there_proves_nothing() -> None:
    """A QEMU that sends no VFIO event, or stops short of the quiesce,
    fails the series and the control alike."""
    silent = ScenarioRun("m", (Side("source", ()),))
    result = judge.judge_series("mtty", silent, V2, M)
    assert not result.ok and result.detail == "source never reported pre-copy-p2p"
    control = judge.judge_control("mtty", silent, V2, M, None)
    assert not control.ok
    assert control.detail == (
        "failed for another reason: source never reported pre-copy-p2p"
    )
    short = ScenarioRun("m", (side("source", *done("running-p2p", "running")),))
    assert not judge.judge_series("mtty", short, V2, M).ok


def test_a_notice_closed_by_another_state_fails() -> None:
    items = [*done("pre-copy"), ("VFIO_MIGRATION", "pre-copy-p2p-prepare")]
    items += done("stop-copy", "stop")
    assert judge.notice_faults(items, V2) == [
        "event 3: the notice of pre-copy-p2p closed by stop-copy"
    ]


def test_v1_needs_a_notice_before_every_move() -> None:
    items = [("VFIO_MIGRATION_PREPARE", "stop"), ("VFIO_MIGRATION", "stop")]
    assert judge.notice_faults(items, V1) == []
    assert judge.notice_faults(items + done("running"), V1) == [
        "event 3: running reached with no VFIO_MIGRATION_PREPARE for it before"
    ]
    assert judge.notice_faults([("VFIO_MIGRATION_PREPARE", "stop")], V1) == [
        "the last notice, of stop, was never closed"
    ]


def test_the_control_must_lack_exactly_the_notice() -> None:
    base = ScenarioRun("m", (side("source", *BASE_SOURCE),))
    series = ScenarioRun("m", (side("source", *V2_SOURCE),))
    result = judge.judge_control("mtty", base, V2, M, series)
    assert result.ok and "fails for lack of the notice" in result.detail
    # Nothing announced: the control passes as the series does.
    quiet = ScenarioRun("s", (side("source", *done("running-p2p", "running")),))
    assert "nothing to announce" in (
        judge.judge_control("mtty", quiet, V2, S, None).detail
    )
    # A control that differs beyond the notice is wrong.
    other = ScenarioRun("m", (side("source", *BASE_SOURCE[:-1]),))
    assert not judge.judge_control("mtty", other, V2, M, series).ok
    # A control with the notice is not the base.
    assert not judge.judge_control("mtty", series, V2, M, None).ok


def test_fake_and_kernel_rows() -> None:
    fake = [ScenarioRun("m", (side("source", *V2_SOURCE),))]
    same = [ScenarioRun("m", (side("source", *V2_SOURCE),))]
    rows = judge.rows("series", fake, same, V2)
    assert [r.verdict for r in rows] == ["equal"]
    assert judge.compare_result(rows).ok
    other = [ScenarioRun("m", (side("source", *V2_SOURCE[:-1]),))]
    rows = judge.rows("series", fake, other, V2)
    assert [r.verdict for r in rows] == ["DIFFERENT"]
    assert not judge.compare_result(rows).ok
    why = {("m", "source"): "mtty stops at once"}
    assert judge.rows("series", fake, other, V2, why)[0].verdict == "explained"
    table = judge.markdown(rows, "v2 on x", ["a fact"])
    assert "| series | m | source | DIFFERENT |" in table
    failed = [ScenarioRun("m", (), "no RESUME")]
    assert judge.rows("series", fake, failed, V2)[0].verdict == "missing"


def test_mtty_is_not_asked_for_more_migrations_than_it_takes(tmp_path: Path) -> None:
    lab = scenarios.load()
    migrating = [s for s in lab.scenarios if s.name.startswith("migrate/")]
    third = dataclasses.replace(migrating[0], name="migrate/again")
    device = KernelDevice(WorkDir(tmp_path))
    with pytest.raises(scenarios.ScenarioError, match="3 scenarios migrate"):
        device.run(tmp_path / "qemu", [*lab.scenarios, third], "series")
    assert not (tmp_path / "kernel").exists()  # refused before any download


def test_no_outer_qemu_is_said_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qseries.labs.vfio_migration import device, guest

    assert device.kernel_unavailable() is None  # the bootstrap installs it
    monkeypatch.setattr(guest, "OUTER_QEMU", tmp_path / "qemu-system-x86_64")
    why = device.kernel_unavailable()
    assert why == (
        f"no {tmp_path}/qemu-system-x86_64 to boot the guest with "
        "(apt-get install qemu-system-x86)"
    )


def _proof(tmp_path: Path) -> DeviceProof:
    return DeviceProof(
        WorkDir(tmp_path), V2, lambda: tmp_path / "fake", tmp_path, print
    )


def _device_run(device: str, *items: tuple[str, str]) -> DeviceRun:
    return DeviceRun(device, [ScenarioRun("m", (side("source", *items),))], 1.0)


def test_the_proof_compares_the_devices_and_the_control(tmp_path: Path) -> None:
    proof = _proof(tmp_path)
    proof.runs[("series", "kernel")] = _device_run("kernel", *V2_SOURCE)
    proof.runs[("series", "fake")] = _device_run("fake", *V2_SOURCE)
    proof.runs[("control", "kernel")] = _device_run("kernel", *BASE_SOURCE)
    proof.runs[("control", "fake")] = _device_run("fake", *BASE_SOURCE[:-1])
    results, text = proof.compare("v2 on QEMU 10.2.2")
    by_name = {r.name: r for r in results}
    # The fake's control differs from mtty's: one row, named.
    assert [r.verdict for r in proof.table()] == ["equal", "DIFFERENT"]
    assert not by_name["fake vs kernel"].ok
    assert by_name["mtty: the notice changes nothing else"].ok
    assert "| control | m | source | DIFFERENT |" in text
    assert "Not possible on mtty" in text
    # A control that says more than the series without its notices.
    proof.runs[("control", "kernel")] = _device_run("kernel", *BASE_SOURCE[:-1])
    matches = proof.control_matches()
    assert matches is not None and not matches.ok
    # Nothing that ran whole on both: no pass.
    proof.runs[("control", "kernel")] = DeviceRun(
        "kernel", [ScenarioRun("m", (), "no RESUME")], 1.0
    )
    matches = proof.control_matches()
    assert matches is not None and not matches.ok
