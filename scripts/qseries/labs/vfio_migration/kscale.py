"""N devices per side on the kernel's mtty: how many it allows, and the
judge of each device's events.

mtty has MAX_MTTYS ports in all (24 in mtty.c), and an mdev of its type
mtty-1 takes one of them; the source and the destination run in one
guest, each on mdevs of its own, so a run of N devices per side makes
2N mdevs, and N is at most half the ports.  The guest says how many
more mtty-1 would make (its available_instances) once the run's are
made, which checks that figure on the kernel itself.

QEMU starts its devices in command-line order (vfio0 first), and each
one's change-state handler is added in that order with the same
priority; when the VM stops (the migration's switchover), QEMU walks
the handlers from the last to the first, moving each device to
PRE_COPY_P2P before it turns to the next (vm_state_notify in
system/runstate.c).  So on the source, the P2P step says, for
vfioN-1 down to vfio0, each device's notice and then its completion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...core.results import FAIL, PASS, Result
from ...ground.errors import EXIT_USAGE, QSeriesError
from . import judge
from .measure import MTTY_PORTS
from .plan import Wire
from .scenarios import Scenario, ScenarioRun, Side, device_id

MTTY_TYPE = "mtty-1"  # one port per mdev; the type the guest's /init makes
INSTANCES = "QSERIES-MTTY-INSTANCES"
# The step QEMU takes device after device, in an order of its own.
P2P_STATE = "pre-copy-p2p"
SPLIT = "@"  # NAME@vfioK: what device K said of scenario NAME
# Appended to the guest's script: how many more mdevs of mtty-1 mtty
# would make, the run's own made (guest-init.sh makes them).
INSTANCES_SCRIPT = f"""
# What mtty has left of its ports, once this run's mdevs are made.
left=/sys/class/mdev_bus/mtty/mdev_supported_types/{MTTY_TYPE}/available_instances
if [ -r "$left" ]; then
    echo "{INSTANCES} {MTTY_TYPE} $(cat "$left")" >&9
fi
"""


class DeviceLimitError(QSeriesError):
    """More devices per side than mtty has ports for."""

    exit_code = EXIT_USAGE


def max_devices(ports: int = MTTY_PORTS) -> int:
    """The most devices per side one guest has mdevs for."""
    return ports // 2


def check_devices(devices: int, ports: int = MTTY_PORTS) -> None:
    """Refuse a count of devices per side mtty cannot give, in one line."""
    most = max_devices(ports)
    if not 1 <= devices <= most:
        raise DeviceLimitError(
            f"the kernel device takes 1 to {most} devices per side, not "
            f"{devices}: mtty has {ports} ports (MAX_MTTYS in mtty.c), one per "
            f"mdev of type {MTTY_TYPE}, and both sides run in one guest",
            f"ask for {most} or fewer devices with --device kernel, or run more "
            "on the fake device",
        )


def instances_left(results: str) -> int | None:
    """The available_instances of mtty-1 the guest's script reported
    (None if it reported none)."""
    for line in results.replace("\r", "").split("\n"):
        words = line.split(" ")
        if (
            len(words) == 3
            and words[:2] == [INSTANCES, MTTY_TYPE]
            and words[2].isdigit()
        ):
            return int(words[2])
    return None


def instances_result(left: int | None, devices: int) -> Result:
    """What the guest said of mtty's ports, against the limit applied."""
    name = f"mtty: {devices} devices per side"
    if left is None:
        return Result(
            name, FAIL, f"the guest did not report {MTTY_TYPE}'s available_instances"
        )
    ports = left + 2 * devices
    detail = (
        f"{2 * devices} mdevs of {MTTY_TYPE} made, {left} more available: "
        f"{ports} ports, at most {max_devices(ports)} devices per side"
    )
    if ports != MTTY_PORTS:
        return Result(
            name,
            FAIL,
            f"{detail}, where qseries assumes {MTTY_PORTS} (MAX_MTTYS); "
            "correct MTTY_PORTS in measure.py",
        )
    return Result(name, PASS, detail)


# -- what each device said ------------------------------------------------------


def device_ids(devices: int) -> list[str]:
    return [device_id(k) for k in range(devices)]


def _vfio(side: Side, wire: Wire) -> list[tuple[int, str | None]]:
    """Index and device-id of each notice and completion of a side."""
    return [
        (i, e.data.get("device-id"))
        for i, e in enumerate(side.events)
        if wire.classify(e.name, e.state) is not None
    ]


def strangers(side: Side, wire: Wire, devices: int) -> list[str]:
    """A side's notices and completions that name no device of the run
    (merged into none, or said of a device it does not have)."""
    ids = set(device_ids(devices))
    out = []
    for i, dev in _vfio(side, wire):
        if dev not in ids:
            event = side.events[i]
            out.append(
                f"{side.vm}: {event.name}({event.state}) names device {dev!r}, "
                f"not one of {', '.join(sorted(ids))}"
            )
    return out


def side_of(side: Side, wire: Wire, dev: str) -> Side:
    """The side as if it had only device dev: its events, and every
    event that is neither a notice nor a completion (RESUME, MIGRATION)."""
    return Side(
        side.vm,
        tuple(
            e
            for e in side.events
            if wire.classify(e.name, e.state) is None or e.data.get("device-id") == dev
        ),
        side.stderr,
    )


def split(run: ScenarioRun, wire: Wire, devices: int) -> dict[str, ScenarioRun]:
    """Per device id, the run as that device alone said it."""
    return {
        dev: ScenarioRun(
            f"{run.scenario}{SPLIT}{dev}",
            tuple(side_of(s, wire, dev) for s in run.sides),
            run.error,
            run.notes,
        )
        for dev in device_ids(devices)
    }


def p2p_step(side: Side, wire: Wire) -> list[tuple[str, str]]:
    """The side's notices and completions of PRE_COPY_P2P, in order:
    (notice | done, device id)."""
    out = []
    for e in side.events:
        kind = wire.classify(e.name, e.state)
        if kind is not None and kind[1] == P2P_STATE:
            out.append((kind[0], str(e.data.get("device-id"))))
    return out


def qemu_p2p_order(devices: int, notices: bool) -> list[tuple[str, str]]:
    """The P2P step as QEMU takes it: the last device first, each one's
    notice (if the version sends one) just before its completion."""
    out: list[tuple[str, str]] = []
    for dev in reversed(device_ids(devices)):
        out += [("notice", dev)] if notices else []
        out += [("done", dev)]
    return out


def _shown_order(step: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{kind} {dev}" for kind, dev in step) or "nothing"


def order_faults(side: Side, wire: Wire, devices: int, notices: bool) -> list[str]:
    """Where a side's P2P step is not in the order QEMU takes it (a side
    without the step has nothing to order)."""
    step = p2p_step(side, wire)
    if not step:
        return []
    expected = qemu_p2p_order(devices, notices)
    if step == expected:
        return []
    return [
        f"{side.vm}: the P2P step went {_shown_order(step)}; QEMU takes it "
        f"{_shown_order(expected)}"
    ]


def same_faults(run: ScenarioRun, wire: Wire, devices: int) -> list[str]:
    """Every device of a side must say what vfio0 said: one that says
    less lost events, one that says more got another's."""
    out = []
    per = split(run, wire, devices)
    first = device_ids(devices)[0]
    for s in run.sides:
        mine = per[first].side(s.vm)
        assert mine is not None
        theirs = judge.said(mine, wire)
        for dev in device_ids(devices)[1:]:
            other = per[dev].side(s.vm)
            assert other is not None
            listed = judge.said(other, wire)
            if listed != theirs:
                out.append(
                    f"{s.vm}: {dev} said {judge.shown(listed)}, "
                    f"{first} {judge.shown(theirs)}"
                )
    return out


def _items(run: ScenarioRun, wire: Wire, devices: int) -> list[str]:
    items = []
    for dev, alone in split(run, wire, devices).items():
        items += [
            f"{s.vm} {dev}: {judge.shown(judge.said(s, wire))}" for s in alone.sides
        ]
    return items


def judge_series(
    device: str, run: ScenarioRun, wire: Wire, scenario: Scenario, devices: int
) -> Result:
    """The series on N devices per side: each device holds the version's
    promise on its own, none lost or merged, the P2P step in QEMU's order."""
    name = f"{device}: {run.scenario} ({devices} devices per side)"
    if run.error is not None:
        return Result(name, FAIL, run.error)
    faults: list[str] = []
    for s in run.sides:
        faults += strangers(s, wire, devices)
    for dev, alone in split(run, wire, devices).items():
        verdict = judge.judge_series(device, alone, wire, scenario)
        if not verdict.ok:
            faults.append(f"{dev}: {verdict.detail}")
    faults += same_faults(run, wire, devices)
    for s in run.sides:
        faults += order_faults(s, wire, devices, notices=True)
    items = _items(run, wire, devices)
    if faults:
        return Result(name, FAIL, faults[0], items + faults[1:])
    notices = sum(_notice(wire, e.name, e.state) for s in run.sides for e in s.events)
    if not notices:
        return Result(
            name, PASS, "nothing to announce, and no notice on any device", items
        )
    steps = " and ".join(s.vm for s in run.sides if p2p_step(s, wire))
    detail = (
        f"every device's announced moves came after its own notice ({notices} in all)"
    )
    if steps:
        detail += f"; the P2P step of the {steps} in QEMU's order"
    return Result(name, PASS, detail, items)


def _notice(wire: Wire, event: str, state: str | None) -> bool:
    kind = wire.classify(event, state)
    return kind is not None and kind[0] == "notice"


def judge_control(
    device: str,
    run: ScenarioRun,
    wire: Wire,
    scenario: Scenario,
    series: ScenarioRun | None,
    devices: int,
) -> Result:
    """The base QEMU on N devices per side: every device lacks exactly
    the notices, none lost or merged, the P2P step in QEMU's order."""
    name = f"{device}: {run.scenario} ({devices} devices per side)"
    if run.error is not None:
        return Result(name, FAIL, f"failed for another reason: {run.error}")
    faults: list[str] = []
    for s in run.sides:
        faults += strangers(s, wire, devices)
    theirs: Mapping[str, ScenarioRun] = (
        split(series, wire, devices) if series is not None else {}
    )
    details = []
    for dev, alone in split(run, wire, devices).items():
        verdict = judge.judge_control(device, alone, wire, scenario, theirs.get(dev))
        if not verdict.ok:
            faults.append(f"{dev}: {verdict.detail}")
        details.append(verdict.detail)
    faults += same_faults(run, wire, devices)
    for s in run.sides:
        faults += order_faults(s, wire, devices, notices=False)
    items = _items(run, wire, devices)
    if faults:
        return Result(name, FAIL, faults[0], items + faults[1:])
    return Result(name, PASS, f"on each of {devices} devices: {details[0]}", items)
