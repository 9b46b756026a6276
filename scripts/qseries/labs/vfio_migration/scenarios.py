"""The lab's scenarios: one table of steps that every device runs.

scenarios.yaml (package data) says what each scenario does: which
QEMUs it starts, the QMP commands it sends and the events it waits for.
The fake runs the steps from Python (fake.py), the kernel's mtty runs
them as the busybox shell script guest_script() writes (scenario-lib.sh
holds its functions); both record what each QEMU said on QMP until it
exited, as Side records, so that the two can be compared list by list.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from ...ground.errors import QSeriesError

VMS = ("source", "destination")
COMMANDS = ("cont", "stop", "migrate")
# The properties of the vfio-pci device on every device of the lab.
# x-device-dirty-page-tracking=off: mtty registers the DMA logging
# feature, but its report ioctl fails without IOMMUFD (Debian's kernel),
# and the migration with it.  The fake gets the same, to compare.
NO_DIRTY_TRACKING = "x-device-dirty-page-tracking=off"
DEVICE_OPTIONS = f"enable-migration=on,migration-events=on,{NO_DIRTY_TRACKING}"
# The QMP stream's descriptor in the guest script, per QEMU.
FDS = {"source": 3, "destination": 4}
BEGIN = "QSERIES-BEGIN"
STDERR = "QSERIES-STDERR"
END = "QSERIES-END"
ERROR = "QSERIES-SCENARIO-ERROR:"
# With STAMP=1 (the bench), each line of a QEMU's stream comes after the
# guest's clock when the script read it, and each scenario's start and
# end are lines of their own (scenario-lib.sh).
STAMPED = re.compile(r"@(\d+)\.(\d{6}) (.*)")
CLOCK = "QSERIES-CLOCK"


class ScenarioError(QSeriesError):
    """The lab's scenario table is malformed."""


@dataclass(frozen=True)
class Step:
    vm: str
    run: str | None = None  # a QMP command of COMMANDS
    wait: str | None = None  # a QMP event
    data: tuple[tuple[str, str], ...] = ()  # members the event's data has
    nth: int = 1  # the Nth such event of this QEMU

    def describe(self) -> str:
        if self.run is not None:
            return f"{self.vm}: {self.run}"
        members = ", ".join(f"{k}={v}" for k, v in self.data)
        return f"{self.vm}: {self.wait}" + (f"({members})" if members else "")


@dataclass(frozen=True)
class Scenario:
    name: str
    vms: tuple[str, ...]
    steps: tuple[Step, ...]
    # The device states each QEMU must report (its completions).
    reaches: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def must_reach(self, vm: str) -> tuple[str, ...]:
        return dict(self.reaches).get(vm, ())


@dataclass(frozen=True)
class Lab:
    flags: str  # the fake's FAKEVFIO_MIGRATION_FLAGS, mtty's fixed ones
    scenarios: tuple[Scenario, ...]
    # What only the fake can run: (what, why not on mtty).
    not_on_mtty: tuple[tuple[str, str], ...] = ()


def _fail(where: str, what: str) -> ScenarioError:
    return ScenarioError(f"scenarios.yaml: {where}: {what}")


def _step(raw: object, where: str, vms: Sequence[str], seen: dict[Any, int]) -> Step:
    if not isinstance(raw, dict):
        raise _fail(where, "a step is a mapping")
    vm = str(raw.get("vm"))
    if vm not in vms:
        raise _fail(where, f"vm {vm!r} is not one of the scenario's {list(vms)}")
    unknown = set(raw) - {"vm", "run", "wait", "data"}
    if unknown:
        raise _fail(where, f"unknown keys {sorted(unknown)}")
    if ("run" in raw) == ("wait" in raw):
        raise _fail(where, "a step either runs a command or waits for an event")
    if "run" in raw:
        if raw["run"] not in COMMANDS:
            raise _fail(where, f"run {raw['run']!r} is not one of {list(COMMANDS)}")
        if raw["run"] == "migrate" and (vm != "source" or "destination" not in vms):
            raise _fail(where, "only the source migrates, to a destination")
        return Step(vm=vm, run=str(raw["run"]))
    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise _fail(where, "data is a mapping of member to value")
    members = tuple(sorted((str(k), str(v)) for k, v in data.items()))
    key = (vm, str(raw["wait"]), members)
    seen[key] = seen.get(key, 0) + 1
    return Step(vm=vm, wait=str(raw["wait"]), data=members, nth=seen[key])


def parse(text: str) -> Lab:
    """The lab from the text of scenarios.yaml."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise _fail("top", f"not YAML: {err}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("scenarios"), list):
        raise _fail("top", "a mapping with a list of scenarios")
    scenarios: list[Scenario] = []
    for i, entry in enumerate(raw["scenarios"]):
        where = f"scenario {i + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _fail(where, "a mapping with a name")
        where = f"scenario {entry['name']}"
        vms = entry.get("vms")
        if not isinstance(vms, list) or not vms or not set(vms) <= set(VMS):
            raise _fail(where, f"vms is a list of {list(VMS)}")
        steps = entry.get("steps")
        if not isinstance(steps, list) or not steps:
            raise _fail(where, "steps is a list")
        seen: dict[Any, int] = {}
        reaches = entry.get("reaches") or {}
        if not isinstance(reaches, dict) or not all(
            vm in vms and isinstance(states, list) for vm, states in reaches.items()
        ):
            raise _fail(where, "reaches maps a vm of the scenario to a list of states")
        scenarios.append(
            Scenario(
                name=entry["name"],
                vms=tuple(vms),
                reaches=tuple(
                    (str(vm), tuple(str(x) for x in states))
                    for vm, states in reaches.items()
                ),
                steps=tuple(
                    _step(s, f"{where}, step {j + 1}", vms, seen)
                    for j, s in enumerate(steps)
                ),
            )
        )
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise _fail("top", "two scenarios share a name")
    not_on_mtty = raw.get("not-on-mtty") or []
    if not isinstance(not_on_mtty, list) or not all(
        isinstance(n, dict) and {"what", "why"} <= set(n) for n in not_on_mtty
    ):
        raise _fail("not-on-mtty", "a list of {what, why}")
    return Lab(
        flags=str(raw.get("flags", "")),
        scenarios=tuple(scenarios),
        not_on_mtty=tuple((str(n["what"]), str(n["why"])) for n in not_on_mtty),
    )


def load() -> Lab:
    """The lab's scenarios, from the package."""
    return parse(resources.files(__package__).joinpath("scenarios.yaml").read_text())


def select(lab: Lab, names: Sequence[str]) -> tuple[Scenario, ...]:
    """The scenarios named (all of them for none)."""
    if not names:
        return lab.scenarios
    known = {s.name: s for s in lab.scenarios}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ScenarioError(
            f"no scenario {unknown[0]!r} in the lab",
            f"choose among {', '.join(known)}",
        )
    return tuple(known[n] for n in names)


# -- what a QEMU said ---------------------------------------------------------


@dataclass(frozen=True)
class QmpEvent:
    name: str
    data: Mapping[str, Any]
    qemu_us: int  # QEMU's timestamp
    guest_us: int | None = None  # when the guest's script read it (STAMP=1)

    @property
    def state(self) -> str | None:
        value = self.data.get("device-state")
        return str(value) if value is not None else None


@dataclass(frozen=True)
class Side:
    """What one QEMU of a scenario said on QMP, from start to exit."""

    vm: str
    events: tuple[QmpEvent, ...]
    stderr: str = ""


@dataclass(frozen=True)
class ScenarioRun:
    scenario: str
    sides: tuple[Side, ...]
    error: str | None = None  # a step that did not happen
    notes: tuple[str, ...] = field(default_factory=tuple)

    def side(self, vm: str) -> Side | None:
        return next((s for s in self.sides if s.vm == vm), None)


def unstamped(line: str) -> tuple[int | None, str]:
    """The guest's clock in microseconds a stamped line was read at
    (None for a line without a stamp), and the line as QEMU said it."""
    found = STAMPED.fullmatch(line)
    if found is None:
        return None, line
    return int(found[1]) * 1_000_000 + int(found[2]), found[3]


def event_of(
    message: Mapping[str, Any], guest_us: int | None = None
) -> QmpEvent | None:
    """A QMP event from a decoded message (None for anything else)."""
    name = message.get("event")
    if not isinstance(name, str):
        return None
    stamp = message.get("timestamp") or {}
    data = message.get("data") or {}
    return QmpEvent(
        name=name,
        data=dict(data) if isinstance(data, dict) else {},
        qemu_us=int(stamp.get("seconds", 0)) * 1_000_000
        + int(stamp.get("microseconds", 0)),
        guest_us=guest_us,
    )


def events_of(lines: Sequence[str]) -> tuple[QmpEvent, ...]:
    """The events of a QMP stream, one JSON message a line (each after
    its stamp, if the guest stamped them)."""
    out: list[QmpEvent] = []
    for stamped in lines:
        guest_us, line = unstamped(stamped)
        try:
            message = json.loads(line)
        except ValueError:
            continue  # a line QEMU cut short, or not QMP
        if isinstance(message, dict):
            event = event_of(message, guest_us)
            if event is not None:
                out.append(event)
    return tuple(out)


# -- the guest's script -------------------------------------------------------


def _pattern(name: str, value: str) -> str:
    return json.dumps({name: value})[1:-1]  # '"status": "completed"'


def _step_shell(step: Step) -> str:
    fd = FDS[step.vm]
    if step.run == "migrate":
        return f"migrate {fd}"
    if step.run is not None:
        return f"send {fd} {shlex.quote(json.dumps({'execute': step.run}))}"
    assert step.wait is not None
    patterns = [_pattern("event", step.wait)] + [_pattern(k, v) for k, v in step.data]
    return " ".join(
        [
            "wait_event",
            step.vm,
            str(step.nth),
            shlex.quote(step.describe().split(": ", 1)[1]),
            *(shlex.quote(p) for p in patterns),
        ]
    )


def device_id(index: int) -> str:
    """The id of a QEMU's index-th vfio-pci device (vfio0 first)."""
    return f"vfio{index}"


def mdevs_of(vm: str, devices: int) -> list[str]:
    """The mdevs of one QEMU when each has devices of them: the source's
    come first (MDEV0..), then the destination's."""
    first = 0 if vm == "source" else devices
    return [f"$MDEV{first + k}" for k in range(devices)]


def guest_script(
    scenarios: Sequence[Scenario], stamp: bool = False, devices: int = 1
) -> str:
    """The busybox sh script that runs the scenarios in the guest, each
    QEMU on mdevs of its own (devices each, in order: with one, the
    source on MDEV0, the destination on MDEV1), and writes what they
    said to the results port.  stamp: with the guest's clock on every
    line a QEMU says, and at each scenario's start and end (the bench)."""
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError("the results are framed by name: name each scenario once")
    if devices < 1:
        raise ValueError(f"a QEMU has at least one device, not {devices}")
    library = resources.files(__package__).joinpath("scenario-lib.sh").read_text()
    lines = [library, f"DEVICE_OPTIONS={shlex.quote(DEVICE_OPTIONS)}", ""]
    if stamp:
        lines[-1:-1] = ["STAMP=1"]
    for i, scenario in enumerate(scenarios):
        lines.append(f"scenario_begin {shlex.quote(scenario.name)}")
        lines.append(f'MIGRATE_URI="unix:$RUN/migrate-{i}.sock"')
        lines.append(f"steps_{i}() {{")
        for vm in sorted(scenario.vms, key=lambda v: v != "destination"):
            first, *more = mdevs_of(vm, devices)
            # vm_start puts the first on the command line as vfio0; the
            # others follow it, in order.
            extra = "".join(
                f' -device "vfio-pci,id={device_id(k + 1)},sysfsdev={mdev},'
                '$DEVICE_OPTIONS"'
                for k, mdev in enumerate(more)
            )
            extra += ' -incoming "$MIGRATE_URI"' if vm == "destination" else " -S"
            lines.append(f'    vm_start {vm} {FDS[vm]} "{first}"{extra} || return 1')
        for vm in scenario.vms:
            events = {"execute": "migrate-set-capabilities"} | {
                "arguments": {"capabilities": [{"capability": "events", "state": True}]}
            }
            lines.append(f"    send {FDS[vm]} {shlex.quote(json.dumps(events))}")
        for step in scenario.steps:
            lines.append(f"    {_step_shell(step)} || return 1")
        lines.append("}")
        lines.append(f"steps_{i}")
        lines.append(f"scenario_end {' '.join(scenario.vms)}")
        lines.append("")
    return "\n".join(lines) + "\n"


def read_results(text: str, scenarios: Sequence[Scenario]) -> list[ScenarioRun]:
    """What the guest's script wrote, scenario by scenario; a scenario it
    wrote nothing of carries an error."""
    blocks: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    errors: dict[str, str] = {}
    current: tuple[list[str], list[str]] | None = None
    into_stderr = False
    for raw in text.replace("\r", "").split("\n"):
        words = raw.split(" ")
        if raw.startswith(ERROR):
            rest = raw[len(ERROR) :].strip()
            name, _, what = rest.partition(": ")
            errors.setdefault(name, what)
        elif words[0] == BEGIN and len(words) == 3:
            current = ([], [])
            into_stderr = False
        elif words[0] == STDERR and len(words) == 3:
            into_stderr = True
        elif words[0] == END and len(words) == 3:
            if current is not None:  # a block counts once it is whole
                blocks[(words[1], words[2])] = current
            current = None
        elif current is not None:
            current[1 if into_stderr else 0].append(raw)
    runs: list[ScenarioRun] = []
    for scenario in scenarios:
        sides = []
        for vm in scenario.vms:
            block = blocks.get((scenario.name, vm))
            if block is not None:
                sides.append(Side(vm, events_of(block[0]), "\n".join(block[1]).strip()))
        error = errors.get(scenario.name)
        if error is None and len(sides) != len(scenario.vms):
            error = "the guest reported nothing of it"
        runs.append(ScenarioRun(scenario.name, tuple(sides), error))
    return runs
