"""N devices per side on the kernel's mtty: the guest script, the limit
of mtty's ports, and the judge per device, on the record of a real run
(tests/fixtures/mtty-v2-2-devices.results: v2 on QEMU 10.2.2 in the
guest, two mdevs per side, as the guest's results port gave it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qseries.core.results import SKIP
from qseries.ground.errors import EXIT_USAGE
from qseries.ground.workdir import WorkDir
from qseries.labs.vfio_migration import kscale, scenarios
from qseries.labs.vfio_migration.device import DeviceRun, KernelDevice
from qseries.labs.vfio_migration.measure import MTTY_PORTS
from qseries.labs.vfio_migration.proof import CONTROL, SERIES, DeviceProof
from qseries.labs.vfio_migration.scenarios import QmpEvent, ScenarioRun, Side

from .wires import V1, V2

RECORDED = Path(__file__).parents[1] / "fixtures" / "mtty-v2-2-devices.results"


def recorded() -> str:
    return RECORDED.read_text()


def runs_of(text: str) -> list[ScenarioRun]:
    return scenarios.read_results(text, scenarios.load().scenarios)


def by_name(name: str) -> scenarios.Scenario:
    return next(s for s in scenarios.load().scenarios if s.name == name)


def judged(text: str, devices: int = 2) -> list[str]:
    """The details of the series' verdicts on each scenario of text
    ('pass: ...' or 'fail: ...')."""
    out = []
    for run in runs_of(text):
        verdict = kscale.judge_series("mtty", run, V2, by_name(run.scenario), devices)
        out.append(f"{'pass' if verdict.ok else 'fail'}: {verdict.detail}")
    return out


def line_of(text: str, state: str, device: str, nth: int = 1) -> str:
    """The nth line of text with this device-state of this device."""
    found = [
        line
        for line in text.split("\n")
        if f'"device-state": "{state}", "device-id": "{device}"' in line
    ]
    return found[nth - 1]


# -- the guest script -----------------------------------------------------------


def test_each_qemu_gets_its_own_mdevs_in_order() -> None:
    lab = scenarios.load()
    script = scenarios.guest_script(lab.scenarios, devices=3)
    body = script.split("steps_1() {", 1)[1].split("\n}\n", 1)[0]
    starts = [line.strip() for line in body.splitlines() if "vm_start" in line]
    assert starts == [
        'vm_start destination 4 "$MDEV3"'
        ' -device "vfio-pci,id=vfio1,sysfsdev=$MDEV4,$DEVICE_OPTIONS"'
        ' -device "vfio-pci,id=vfio2,sysfsdev=$MDEV5,$DEVICE_OPTIONS"'
        ' -incoming "$MIGRATE_URI" || return 1',
        'vm_start source 3 "$MDEV0"'
        ' -device "vfio-pci,id=vfio1,sysfsdev=$MDEV1,$DEVICE_OPTIONS"'
        ' -device "vfio-pci,id=vfio2,sysfsdev=$MDEV2,$DEVICE_OPTIONS"'
        " -S || return 1",
    ]
    # One device per side is the script the lab always ran.
    one = scenarios.guest_script(lab.scenarios, devices=1)
    assert one == scenarios.guest_script(lab.scenarios)
    assert "-device" not in one.split("steps_0() {", 1)[1]
    with pytest.raises(ValueError, match="at least one device"):
        scenarios.guest_script(lab.scenarios, devices=0)


# -- the limit -------------------------------------------------------------------


def test_mttys_ports_allow_half_of_them_per_side() -> None:
    assert kscale.max_devices() == MTTY_PORTS // 2 == 12
    for devices in (1, 2, 4, 12):
        kscale.check_devices(devices)
    for devices in (0, 13, 16):
        with pytest.raises(kscale.DeviceLimitError) as caught:
            kscale.check_devices(devices)
        assert caught.value.message == (
            f"the kernel device takes 1 to 12 devices per side, not {devices}: "
            "mtty has 24 ports (MAX_MTTYS in mtty.c), one per mdev of type "
            "mtty-1, and both sides run in one guest"
        )
        assert caught.value.exit_code == EXIT_USAGE
        assert "12 or fewer" in (caught.value.hint or "")


def test_a_request_over_the_limit_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    lab = scenarios.load()
    with pytest.raises(kscale.DeviceLimitError, match="not 13"):
        KernelDevice(WorkDir(tmp_path)).run(
            tmp_path / "qemu", lab.scenarios, "series", devices=13
        )
    proof = DeviceProof(
        WorkDir(tmp_path), V2, lambda: tmp_path / "fake", tmp_path, print
    )
    with pytest.raises(kscale.DeviceLimitError, match="not 13"):
        proof.run(SERIES, tmp_path / "qemu", devices=13)
    assert not (tmp_path / "kernel").exists()  # no kit fetched, no guest


def test_the_guests_count_of_instances_checks_the_limit() -> None:
    # The recorded run made 4 mdevs and mtty had 20 more to give.
    left = kscale.instances_left(recorded())
    assert left == 20
    verdict = kscale.instances_result(left, 2)
    assert verdict.ok
    assert verdict.detail == (
        "4 mdevs of mtty-1 made, 20 more available: 24 ports, "
        "at most 12 devices per side"
    )
    # A kernel whose mtty has other ports than qseries assumes.
    other = kscale.instances_result(30, 2)
    assert not other.ok and "34 ports" in other.detail
    assert not kscale.instances_result(None, 2).ok
    assert kscale.instances_left("QSERIES-MTTY-INSTANCES mtty-2 10\n") is None
    assert kscale.INSTANCES_SCRIPT.count("available_instances") == 1


# -- the judge per device ---------------------------------------------------------


def test_the_recorded_run_passes_device_by_device() -> None:
    assert judged(recorded()) == [
        "pass: nothing to announce, and no notice on any device",
        "pass: every device's announced moves came after its own notice "
        "(2 in all); the P2P step of the source in QEMU's order",
        "pass: nothing to announce, and no notice on any device",
    ]


def test_the_p2p_step_goes_from_the_last_device_to_the_first() -> None:
    run = runs_of(recorded())[1]
    source = run.side("source")
    assert source is not None
    assert kscale.p2p_step(source, V2) == [
        ("notice", "vfio1"),
        ("done", "vfio1"),
        ("notice", "vfio0"),
        ("done", "vfio0"),
    ]
    assert kscale.qemu_p2p_order(3, notices=False) == [
        ("done", "vfio2"),
        ("done", "vfio1"),
        ("done", "vfio0"),
    ]


def test_a_notice_lost_on_one_device_fails_that_device() -> None:
    text = recorded()
    lost = text.replace(line_of(text, "pre-copy-p2p-prepare", "vfio0") + "\n", "")
    verdict = judged(lost)[1]
    assert verdict.startswith(
        "fail: vfio0: source: event 4: pre-copy-p2p reached with no "
        "VFIO_MIGRATION(pre-copy-p2p-prepare) for it before"
    )


def test_a_completion_lost_on_one_device_fails_it() -> None:
    text = recorded()
    lost = text.replace(line_of(text, "stop-copy", "vfio1") + "\n", "")
    assert judged(lost)[1].startswith("fail: vfio1: source never reported stop-copy")


def test_an_event_merged_into_no_device_fails() -> None:
    text = recorded()
    line = line_of(text, "pre-copy-p2p", "vfio1")
    merged = text.replace(line, line.replace('"device-id": "vfio1", ', ""))
    assert judged(merged)[1] == (
        "fail: source: VFIO_MIGRATION(pre-copy-p2p) names device None, "
        "not one of vfio0, vfio1"
    )


def test_an_event_said_of_another_device_fails_both() -> None:
    text = recorded()
    line = line_of(text, "running", "vfio1")
    other = text.replace(line, line.replace('"vfio1"', '"vfio0"'))
    verdict = judged(other)[0]
    # Each still reached running (stop-cont continues twice); vfio1 said
    # one event less than vfio0, which said one more.
    assert verdict.startswith("fail: source: vfio1 said VFIO_MIGRATION(running-p2p)")
    assert verdict.count("VFIO_MIGRATION(running)") == 1 + 3


def test_a_device_the_run_did_not_ask_for_fails() -> None:
    # Judged as one device per side: vfio1 is a stranger.
    assert judged(recorded(), devices=1)[0].startswith(
        "fail: source: VFIO_MIGRATION(running-p2p) names device 'vfio1', "
        "not one of vfio0"
    )


def test_the_p2p_step_out_of_qemus_order_fails() -> None:
    text = recorded()
    first = [
        line_of(text, s, "vfio1") for s in ("pre-copy-p2p-prepare", "pre-copy-p2p")
    ]
    then = [line_of(text, s, "vfio0") for s in ("pre-copy-p2p-prepare", "pre-copy-p2p")]
    block = "\n".join(first + then)
    assert block in text
    swapped = text.replace(block, "\n".join(then + first))
    assert judged(swapped)[1] == (
        "fail: source: the P2P step went notice vfio0, done vfio0, notice vfio1, "
        "done vfio1; QEMU takes it notice vfio1, done vfio1, notice vfio0, "
        "done vfio0"
    )
    # Two devices' steps interleaved: each one's own order holds, the
    # step is no longer device after device.
    interleaved = text.replace(block, "\n".join([first[0], then[0], first[1], then[1]]))
    assert "the P2P step went notice vfio1, notice vfio0" in judged(interleaved)[1]


def _without_notices(text: str) -> str:
    return "\n".join(
        line for line in text.split("\n") if "pre-copy-p2p-prepare" not in line
    )


def test_the_control_lacks_every_devices_notice_and_only_it() -> None:
    series = runs_of(recorded())[1]
    control = runs_of(_without_notices(recorded()))[1]
    scenario = by_name("migrate/running")
    verdict = kscale.judge_control("mtty", control, V2, scenario, series, 2)
    assert verdict.ok, verdict.detail
    assert verdict.detail == (
        "on each of 2 devices: fails for lack of the notice, as it must: "
        "1 announced move with none"
    )
    # A control with one device's notice is no control.
    text = recorded()
    one = _without_notices(text).replace(
        line_of(text, "pre-copy-p2p", "vfio0"),
        line_of(text, "pre-copy-p2p-prepare", "vfio0")
        + "\n"
        + line_of(text, "pre-copy-p2p", "vfio0"),
    )
    control = runs_of(one)[1]
    verdict = kscale.judge_control("mtty", control, V2, scenario, series, 2)
    assert not verdict.ok
    assert verdict.detail == "vfio0: source: the base sends a notice"


def test_the_controls_p2p_step_out_of_qemus_order_fails() -> None:
    text = _without_notices(recorded())
    first, then = (line_of(text, "pre-copy-p2p", d) for d in ("vfio1", "vfio0"))
    swapped = text.replace(f"{first}\n{then}", f"{then}\n{first}")
    assert swapped != text
    control = runs_of(swapped)[1]
    scenario = by_name("migrate/running")
    verdict = kscale.judge_control("mtty", control, V2, scenario, None, 2)
    assert not verdict.ok
    assert verdict.detail == (
        "source: the P2P step went done vfio0, done vfio1; "
        "QEMU takes it done vfio1, done vfio0"
    )


def test_v1_announces_every_move_of_every_device() -> None:
    def event(state: str, device: str, name: str = "VFIO_MIGRATION") -> QmpEvent:
        return QmpEvent(name, {"device-state": state, "device-id": device}, 0)

    steps = []
    for device in ("vfio1", "vfio0"):
        steps += [event("pre-copy-p2p", device, "VFIO_MIGRATION_PREPARE")]
        steps += [event("pre-copy-p2p", device)]
    source = Side("source", tuple(steps))
    assert kscale.order_faults(source, V1, 2, notices=True) == []
    run = ScenarioRun("m", (source,))
    m = scenarios.Scenario("m", ("source",), (), (("source", ("pre-copy-p2p",)),))
    assert kscale.judge_series("mtty", run, V1, m, 2).ok
    # vfio0's completion before its notice.
    steps[2], steps[3] = steps[3], steps[2]
    run = ScenarioRun("m", (Side("source", tuple(steps)),))
    assert not kscale.judge_series("mtty", run, V1, m, 2).ok


# -- the proof ---------------------------------------------------------------------


def as_fake(text: str) -> DeviceRun:
    """What the fake's one device says: what mtty's vfio0 said."""
    runs = [kscale.split(r, V2, 2)["vfio0"] for r in runs_of(text)]
    return DeviceRun(
        "fake",
        [ScenarioRun(r.scenario.split(kscale.SPLIT)[0], r.sides) for r in runs],
        1.0,
    )


def test_the_proof_compares_each_mtty_device_with_the_fake(tmp_path: Path) -> None:
    proof = DeviceProof(
        WorkDir(tmp_path), V2, lambda: tmp_path / "fake", tmp_path, print
    )
    text = recorded()
    kernel = DeviceRun(
        "kernel", runs_of(text), 1.0, instances_left=kscale.instances_left(text)
    )
    results = proof.judge_many(SERIES, kernel, as_fake(text), 2)
    assert [r.name for r in results if r.status != SKIP] == [
        "mtty: stop-cont (2 devices per side)",
        "mtty: migrate/running (2 devices per side)",
        "mtty: migrate/paused (2 devices per side)",
        "mtty: 2 devices per side",
    ]
    assert all(r.ok for r in results if r.status != SKIP)
    rows = proof.table()
    assert [(r.scenario, r.side) for r in rows][:4] == [
        ("stop-cont@vfio0", "source"),
        ("stop-cont@vfio1", "source"),
        ("migrate/running@vfio0", "source"),
        ("migrate/running@vfio0", "destination"),
    ]
    assert all(r.verdict == "equal" for r in rows)
    # The control without its notices, judged against the series' whole run.
    control = DeviceRun("kernel", runs_of(_without_notices(text)), 1.0)
    results = proof.judge_many(CONTROL, control, as_fake(_without_notices(text)), 2)
    assert all(r.ok for r in results), [r.detail for r in results]
    matches = proof.control_matches()
    assert matches is not None and matches.ok
    assert matches.detail == (
        "10 lists of the control equal the series' without its notices"
    )
