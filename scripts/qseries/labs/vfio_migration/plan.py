"""The VFIO migration lab's keys of a version in series.yaml.

A version of a series proven in this lab says how it speaks on QMP
(`wire`: the completion event, the notice and, for a notice carried as
a device-state value, the state it announces) and how it is tested
(`test`: its qtest, how the qtest finds the fake device, the cases
that pass on the base, the mutations the qtest must catch and the
fault matrix).  The core's loader hands the lab these keys
(labs.vfio_migration.LAB.parse_version); the stages read them back
with plan_of(version).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from ...core.series import (
    Reader,
    Version,
)
from ...core.series import (
    choice as _choice,
)
from ...core.series import (
    compose_beside as _compose_beside,
)
from ...core.series import (
    flag as _flag,
)
from ...core.series import (
    qtest_name as _qtest_name,
)
from ...core.series import (
    series_file as _series_file,
)
from ...core.series import (
    tree_path as _tree_path,
)
from ...ground.errors import SeriesFileError, UsageError

_Reader = Reader

# The folders beside series.yaml that a series of this lab reads (its
# templates, the mutations and fault plans, the qtests and the fake
# device they carry): what a copy of the series must take along.
SERIES_DATA = ("qapi", "hw", "mutations", "faults", "tests/qtest", "tests/fakevfio")

PRELOADS = ("env", "beside")


@dataclass(frozen=True)
class Wire:
    """How a version of the series speaks on QMP: what a client sees."""

    completion: str  # the event sent once a device changed state
    notice_event: str  # the event that carries the prepare notice
    # When the notice is a value of device-state (sent with notice_event)
    # rather than an event of its own: that value, and the state it
    # announces.
    notice_state: str | None = None
    announces: str | None = None

    def classify(self, event: str, state: str | None) -> tuple[str, str] | None:
        """('notice', announced state), ('done', state), or None for an
        event that is neither."""
        if state is None:
            return None
        if self.notice_state is None:
            if event == self.notice_event:
                return ("notice", state)
        elif event == self.notice_event and state == self.notice_state:
            return ("notice", self.announces or state)
        if event == self.completion:
            return ("done", state)
        return None

    def describe_notice(self) -> str:
        if self.notice_state is None:
            return self.notice_event
        return f"{self.notice_event}({self.notice_state})"


@dataclass(frozen=True)
class Mutation:
    """A deliberate break of the change, which the version's qtest must
    catch: in the case whose path ends with `case`, on an error line
    matching `reason`."""

    name: str
    what: str
    file: str  # the QEMU file edited
    edits: tuple[tuple[str, str], ...]  # (old, new) text
    case: str
    reason: str
    # Caught by this case of the fault matrix ('SCENARIO/SIDE/FROM>TO')
    # rather than by the qtest: its failure must match `reason`.
    fault: str | None = None


# Runs of the fault matrix (faults/scenarios.yaml).
SCENARIO_RUNS = ("stop-cont", "migrate", "cancel")


SIDES = ("source", "destination")
# vfio-pci devices per QEMU the lab runs (scenarios, --devices).
MAX_DEVICES = 16


# What a version's events are held to under faults; see faults.py.
INVARIANTS = ("exact", "paired")


@dataclass(frozen=True)
class Scenario:
    """One scenario of the fault matrix."""

    name: str
    what: str
    run: str  # one of SCENARIO_RUNS
    flags: str  # FAKEVFIO_MIGRATION_FLAGS
    devices: int = 1
    events: bool = True
    each_arc: bool = True
    # The one device (1 to devices) whose arcs fail; None: all of them.
    fail_device: int | None = None
    # FROM>TO=MS slowing every device down (FAKEVFIO_DELAY); with
    # stagger, device k (from 1) takes k times MS.
    delay: str | None = None
    stagger: bool = False
    # Device state over multifd channels (x-migration-multifd-transfer).
    multifd: bool = False
    fail: tuple[tuple[str, str], ...] = ()  # (side, FAKEVFIO_FAIL rules)
    reset_fails: tuple[tuple[str, str], ...] = ()  # (side, errno)
    exits: tuple[tuple[str, str], ...] = ()  # (side, why QEMU ends)


@dataclass(frozen=True)
class FaultPlan:
    """The fault matrix of a version: scenarios, the invariants its events
    must keep, and the table of a real run kept in the repository."""

    scenarios: tuple[Scenario, ...]
    invariants: tuple[str, ...]
    table: str  # path beside series.yaml
    scenarios_file: str = ""  # where the scenarios are, beside series.yaml


@dataclass(frozen=True)
class TestPlan:
    """How a version is tested: its qtest and what the runs must show."""

    qtest: str  # the qtest's name (tests/qtest/NAME.c)
    # 'env': the qtest loads the fake VFIO library from QTEST_VFIO_FAKE,
    # which qseries builds; 'beside': the patch carries the fake and the
    # qtest finds it next to its own binary.
    preload: str
    targets: tuple[str, ...]  # more ninja targets the qtest needs
    # Cases that pass on the base too (the negative control expects
    # every other case to fail for lack of the notice).
    base_passes: tuple[str, ...]
    # Matches a notice in the events the qtest prints ("# source events:
    # ..."), so that the control can tell "no notice" from other failures.
    notice_pattern: str
    mutations: tuple[Mutation, ...]
    faults: FaultPlan | None = None
    mutations_file: str = ""  # where the mutations are, beside series.yaml


def _wire(r: _Reader, node: yaml.Node, where: str) -> Wire:
    keys = r.mapping(
        node, where, ["completion", "notice-event"], ["notice-state", "announces"]
    )
    if ("notice-state" in keys) != ("announces" in keys):
        raise r.fail(node, where, "'notice-state' and 'announces' go together")
    return Wire(
        completion=r.string(keys["completion"], f"{where}.completion"),
        notice_event=r.string(keys["notice-event"], f"{where}.notice-event"),
        notice_state=(
            r.string(keys["notice-state"], f"{where}.notice-state")
            if "notice-state" in keys
            else None
        ),
        announces=(
            r.string(keys["announces"], f"{where}.announces")
            if "announces" in keys
            else None
        ),
    )


def _mutations(r: _Reader, node: yaml.Node, where: str) -> tuple[Mutation, ...]:
    """The mutations file named by 'mutations:', beside series.yaml."""
    path, root = _compose_beside(r, node, where)
    mr = _Reader(path)
    if not isinstance(root, yaml.SequenceNode) or not root.value:
        raise SeriesFileError(path, 1, "expected a non-empty list of mutations")
    out = []
    for i, item in enumerate(root.value):
        at = f"[{i}]"
        keys = mr.mapping(
            item, at, ["name", "what", "file", "edits", "reason"], ["case", "fault"]
        )
        if ("case" in keys) == ("fault" in keys):
            raise mr.fail(item, at, "give either 'case' (a qtest case) or 'fault'")
        edits_node = keys["edits"]
        if not isinstance(edits_node, yaml.SequenceNode) or not edits_node.value:
            raise mr.fail(edits_node, f"{at}.edits", "expected a non-empty list")
        edits = []
        for j, edit in enumerate(edits_node.value):
            pair = mr.mapping(edit, f"{at}.edits[{j}]", ["old", "new"], [])
            edits.append(
                (
                    mr.string(pair["old"], f"{at}.edits[{j}].old"),
                    mr.string(pair["new"], f"{at}.edits[{j}].new", nonempty=False),
                )
            )
        reason = mr.pattern(keys["reason"], f"{at}.reason")
        out.append(
            Mutation(
                name=mr.string(keys["name"], f"{at}.name"),
                what=mr.string(keys["what"], f"{at}.what"),
                file=_tree_path(mr, keys["file"], f"{at}.file"),
                edits=tuple(edits),
                case=mr.string(keys["case"], f"{at}.case") if "case" in keys else "",
                reason=reason,
                fault=(
                    mr.string(keys["fault"], f"{at}.fault") if "fault" in keys else None
                ),
            )
        )
    names = [m.name for m in out]
    for i, m in enumerate(out):
        if names.index(m.name) != i:
            raise mr.fail(root.value[i], f"[{i}].name", f"duplicate '{m.name}'")
    return tuple(out)


def _sides(r: _Reader, node: yaml.Node, where: str) -> tuple[tuple[str, str], ...]:
    keys = r.mapping(node, where, [], SIDES)
    return tuple((side, r.string(keys[side], f"{where}.{side}")) for side in keys)


def _scenario(r: _Reader, node: yaml.Node, where: str) -> Scenario:
    keys = r.mapping(
        node,
        where,
        ["name", "what", "run", "flags"],
        [
            "devices",
            "events",
            "each-arc",
            "fail",
            "reset-fails",
            "exits",
            "fail-device",
            "delay",
            "stagger",
            "multifd",
        ],
    )
    run = _choice(r, keys["run"], f"{where}.run", SCENARIO_RUNS)
    devices = (
        _count(r, keys["devices"], f"{where}.devices", MAX_DEVICES)
        if "devices" in keys
        else 1
    )
    fail_device = (
        _count(r, keys["fail-device"], f"{where}.fail-device", devices)
        if "fail-device" in keys
        else None
    )
    delay = None
    if "delay" in keys:
        delay = r.string(keys["delay"], f"{where}.delay")
        if not re.fullmatch(r"[A-Z0-9_*]+>[A-Z0-9_*]+=[0-9]+", delay):
            raise r.fail(
                keys["delay"], f"{where}.delay", "expected FROM>TO=MS, kernel names"
            )
    name = r.string(keys["name"], f"{where}.name")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise r.fail(keys["name"], f"{where}.name", "use lower case, digits and '-'")
    each_arc = (
        _flag(r, keys["each-arc"], f"{where}.each-arc") if "each-arc" in keys else True
    )
    fail = _sides(r, keys["fail"], f"{where}.fail") if "fail" in keys else ()
    if each_arc and fail:
        raise r.fail(node, where, "'fail' goes with 'each-arc: false'")
    if fail_device is not None and not (each_arc or fail):
        raise r.fail(node, where, "'fail-device' needs each-arc or 'fail' rules")
    if fail_device is not None and any("@" in rule for _, rule in fail):
        raise r.fail(node, where, "'fail-device' names the device: no '@' in 'fail'")
    stagger = (
        _flag(r, keys["stagger"], f"{where}.stagger") if "stagger" in keys else False
    )
    if stagger and delay is None:
        raise r.fail(keys["stagger"], f"{where}.stagger", "'stagger' needs 'delay'")
    return Scenario(
        name=name,
        what=r.string(keys["what"], f"{where}.what"),
        run=run,
        flags=r.string(keys["flags"], f"{where}.flags"),
        devices=devices,
        events=_flag(r, keys["events"], f"{where}.events")
        if "events" in keys
        else True,
        each_arc=each_arc,
        fail=fail,
        reset_fails=(
            _sides(r, keys["reset-fails"], f"{where}.reset-fails")
            if "reset-fails" in keys
            else ()
        ),
        exits=_sides(r, keys["exits"], f"{where}.exits") if "exits" in keys else (),
        fail_device=fail_device,
        delay=delay,
        stagger=stagger,
        multifd=_flag(r, keys["multifd"], f"{where}.multifd")
        if "multifd" in keys
        else False,
    )


def _count(r: _Reader, node: yaml.Node, where: str, most: int) -> int:
    """A whole number from 1 to most."""
    text = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise r.fail(node, where, f"expected 1 to {most}")
    return int(text)


def _faults(r: _Reader, node: yaml.Node, where: str) -> FaultPlan:
    keys = r.mapping(node, where, ["scenarios", "invariants", "table"], [])
    path, root = _compose_beside(r, keys["scenarios"], f"{where}.scenarios")
    fr = _Reader(path)
    top = fr.mapping(root, "", ["scenarios"], [])
    items = top["scenarios"]
    if not isinstance(items, yaml.SequenceNode) or not items.value:
        raise fr.fail(items, "scenarios", "expected a non-empty list")
    scenarios = tuple(
        _scenario(fr, item, f"scenarios[{i}]") for i, item in enumerate(items.value)
    )
    names = [s.name for s in scenarios]
    for i, scenario in enumerate(scenarios):
        if names.index(scenario.name) != i:
            raise fr.fail(
                items.value[i], f"scenarios[{i}].name", f"duplicate '{scenario.name}'"
            )
    invariants = r.strings(keys["invariants"], f"{where}.invariants")
    for i, name in enumerate(invariants):
        if name not in INVARIANTS:
            raise r.fail(
                keys["invariants"].value[i],
                f"{where}.invariants[{i}]",
                f"unknown invariant '{name}'; known: " + ", ".join(INVARIANTS),
            )
    if not invariants:
        raise r.fail(keys["invariants"], f"{where}.invariants", "name at least one")
    return FaultPlan(
        scenarios=scenarios,
        invariants=invariants,
        table=_series_file(r, keys["table"], f"{where}.table"),
        scenarios_file=r.string(keys["scenarios"], f"{where}.scenarios"),
    )


def _test_plan(r: _Reader, node: yaml.Node, where: str) -> TestPlan:
    keys = r.mapping(
        node,
        where,
        ["qtest", "preload", "notice-pattern", "mutations"],
        ["targets", "base-passes", "faults"],
    )
    pattern = r.pattern(keys["notice-pattern"], f"{where}.notice-pattern")
    preload = _choice(r, keys["preload"], f"{where}.preload", PRELOADS)
    return TestPlan(
        qtest=_qtest_name(r, keys["qtest"], f"{where}.qtest"),
        preload=preload,
        targets=(
            r.strings(keys["targets"], f"{where}.targets") if "targets" in keys else ()
        ),
        base_passes=(
            r.strings(keys["base-passes"], f"{where}.base-passes")
            if "base-passes" in keys
            else ()
        ),
        notice_pattern=pattern,
        mutations=_mutations(r, keys["mutations"], f"{where}.mutations"),
        faults=_faults(r, keys["faults"], f"{where}.faults")
        if "faults" in keys
        else None,
        mutations_file=r.string(keys["mutations"], f"{where}.mutations"),
    )


@dataclass(frozen=True)
class VersionPlan:
    """What a version of a series in this lab says of itself."""

    wire: Wire
    test: TestPlan


VERSION_KEYS = (("wire", "test"), ())


def parse_version(r: Reader, keys: Mapping[str, yaml.Node], where: str) -> VersionPlan:
    return VersionPlan(
        wire=_wire(r, keys["wire"], f"{where}.wire"),
        test=_test_plan(r, keys["test"], f"{where}.test"),
    )


def plan_of(version: Version) -> VersionPlan:
    """The lab's data of a version (which names this lab)."""
    if not isinstance(version.lab, VersionPlan):
        raise UsageError(
            f"{version.name} is not a version of a vfio-migration series",
            "name the lab in series.yaml: 'lab: vfio-migration'",
        )
    return version.lab
