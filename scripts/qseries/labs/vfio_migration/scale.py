"""scale: one live migration with N devices, each held to its own order.

QEMU moves every VFIO device to its P2P state one after another, in the
main loop: device k hears its prepare notice only once the k-1 before it
have quiesced.  With N fake devices on each side (the quiesce of each
slowed down by T, or by k*T when staggered), one migration is run with
the fault matrix's machinery (faults.run_case) and judged per device:

- exact: each device's events are those QEMU sends for the requests the
  fake logged for that device (its own notice before each announced
  request starts, one completion once it ended), on both sides; nothing
  lost, nothing merged into another device's;
- paired: each notice of a device is followed by exactly one completion
  before its next notice;
- order: the P2P step runs device after device (no two devices'
  PRE_COPY_P2P transitions overlap), and the notices for it come in that
  order, each after the previous device's transition ended.  Nothing is
  asserted across devices for the other transitions: under multifd a
  device's state is saved and loaded by threads of its own.

On the negative control (the base with only the test patch) every
device must lack its notices, and only them.

The figures of a run (per device: the lead of its notice over its
completion, how long before its transition began the notice was sent,
how long QMP took to deliver it; the switchover from the first notice to
the last completion) feed `qseries bench --devices`.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.results import FAIL, PASS, Result
from . import faults
from .demo import FLAGS, QUIESCE_ARC, QUIESCE_STATE
from .plan import MAX_DEVICES, FaultPlan, Scenario, Wire
from .vm import DONE, NOTICE, Event, LogRecord, kernel_state

P2P = kernel_state(QUIESCE_STATE)


@dataclass(frozen=True)
class Shape:
    """What one scaled run is: devices per side, the quiesce's delay,
    staggered or equal, device state over multifd or not."""

    devices: int
    delay_ms: int
    stagger: bool = False
    multifd: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.devices <= MAX_DEVICES:
            raise ValueError(f"devices: from 1 to {MAX_DEVICES}, not {self.devices}")

    @property
    def name(self) -> str:
        how = "staggered" if self.stagger else "equal"
        return (
            f"{self.devices} device{'s' if self.devices > 1 else ''}, "
            f"{how} {self.delay_ms} ms" + (", multifd" if self.multifd else "")
        )

    def delay_of(self, k: int) -> int:
        """The quiesce's delay of device k (from 1)."""
        return self.delay_ms * k if self.stagger else self.delay_ms

    def scenario(self) -> Scenario:
        return Scenario(
            name=f"{self.devices}-devices",
            what=f"live migration, {self.name}",
            run="migrate",
            flags=FLAGS,
            devices=self.devices,
            each_arc=False,
            delay=f"{QUIESCE_ARC}={self.delay_ms}",
            stagger=self.stagger,
            multifd=self.multifd,
        )


def run(shape: Shape, qemu: Path, fake: Path, tmp: Path, wire: Wire) -> faults.CaseRun:
    """One migration of the shape's devices, as the fault matrix runs it."""
    return faults.run_case(faults.Case(shape.scenario()), qemu, fake, tmp, wire)


# -- judging ---------------------------------------------------------------


def _per_device(problems: Sequence[str], side: str, device: str) -> list[str]:
    marker = f" {side} {device}:"
    return [p for p in problems if marker in f" {p.split(': ', 1)[-1]}"]


def device_problems(
    run: faults.CaseRun, wire: Wire, invariants: Sequence[str]
) -> dict[str, list[str]]:
    """Each device's problems under the version's invariants (exact,
    paired: see faults.py), on every side."""
    found = [p for name in invariants for p in faults.INVARIANT_CHECKS[name](run, wire)]
    out: dict[str, list[str]] = {}
    for side in run.sides.values():
        for device in side.devices:
            out.setdefault(device, [])
            out[device] += _per_device(found, side.side, device)
    return out


def _p2p_steps(records: Sequence[LogRecord]) -> list[LogRecord]:
    return sorted(
        (r for r in records if r.kind == "transition" and r.target == P2P),
        key=lambda r: r.begin_us,
    )


def check_order(run: faults.CaseRun, wire: Wire) -> list[str]:
    """The P2P step, device after device, notices in the same order."""
    side = run.sides.get("source")
    if side is None:
        return ["no source side was recorded"]
    groups = {g: d for d, g in side.devices.items()}
    steps = _p2p_steps(side.log)
    order = [groups.get(r.group, str(r.group)) for r in steps]
    problems = []
    if sorted(order) != sorted(side.devices):
        problems.append(
            f"order: {P2P} requested for [{', '.join(order) or 'none'}], "
            f"not once for each of {len(side.devices)} devices"
        )
    for a, b in itertools.pairwise(steps):
        if b.begin_us < a.end_us:
            problems.append(
                f"order: {groups.get(b.group)}'s {P2P} began "
                f"{(a.end_us - b.begin_us) / 1000:.1f} ms before "
                f"{groups.get(a.group)}'s ended"
            )
    if not faults.announced(wire, P2P):
        return problems
    notices = [
        e
        for e in side.events
        if e.kind == NOTICE and e.subject == QUIESCE_STATE and e.device
    ]
    heard = [str(e.device) for e in notices]
    if heard != order:
        problems.append(
            f"order: notices for {QUIESCE_STATE} heard for [{', '.join(heard)}], "
            f"the devices quiesced in the order [{', '.join(order)}]"
        )
        return problems
    for previous, notice in zip(steps, notices[1:], strict=False):
        if notice.qemu_us < previous.end_us:
            problems.append(
                f"order: the notice of {notice.device} was sent "
                f"{(previous.end_us - notice.qemu_us) / 1000:.1f} ms before "
                f"{groups.get(previous.group)} had quiesced"
            )
    return problems


def _general(run: faults.CaseRun, wire: Wire) -> list[str]:
    """What faults.judge says beside the invariants: QEMUs that ended,
    migrations not over, events the wire does not know."""
    probe = faults.CaseRun(run.case, run.sides, [], [], run.error)
    faults.judge(probe, FaultPlan((), (), ""), wire)
    return probe.problems


def migrated(run: faults.CaseRun) -> list[str]:
    """What says the migration went through: both sides completed, the
    destination running, and each of its devices through RESUMING to
    RUNNING in the fake's log (a destination that lost a device's state
    fails its load, whatever the source says)."""
    problems = []
    for name in ("source", "destination"):
        side = run.sides.get(name)
        if side is None:
            problems.append(f"no {name} was recorded")
        elif side.migration != "completed":
            problems.append(f"the migration ended {side.migration} on the {name}")
    destination = run.sides.get("destination")
    if destination is None:
        return problems
    if destination.runstate != "running":
        problems.append(f"the destination is {destination.runstate}, not running")
    for device, group in destination.devices.items():
        reached = [
            r.target
            for r in destination.log
            if r.kind == "transition" and r.group == group and r.result == "ok"
        ]
        if (
            "RESUMING" not in reached
            or "RUNNING" not in reached[reached.index("RESUMING") :]
        ):
            problems.append(
                f"destination {device} never went from RESUMING to RUNNING "
                f"(reached: {', '.join(map(str, reached)) or 'nothing'})"
            )
    return problems


def results(
    shape: Shape,
    run: faults.CaseRun,
    wire: Wire,
    invariants: Sequence[str] = faults.INVARIANTS_ALL,
) -> list[Result]:
    """On the series: the run, every device and the order, each passing."""
    name = f"{shape.devices} devices"
    if run.error is not None:
        return [Result(name, FAIL, f"{shape.name}: {run.error}")]
    out = []
    general = migrated(run) + _general(run, wire)
    out.append(
        Result(
            f"{name}: migration",
            FAIL if general else PASS,
            general[0] if general else f"{shape.name}: completed on both sides",
            [*general[1:], events_line(run, wire)],
        )
    )
    figures = figures_of(shape, run)
    for device, problems in device_problems(run, wire, invariants).items():
        fig = figures["devices"].get(device, {})
        said = (
            f"lead {fig['lead_ms']:.1f} ms, notice {fig['began_after_notice_us']} us "
            "before its transition began"
            if "lead_ms" in fig
            else "no lead measured"
        )
        out.append(
            Result(
                f"{name}: {device}",
                FAIL if problems else PASS,
                problems[0] if problems else f"its own events, in order; {said}",
                problems[1:],
            )
        )
    order = check_order(run, wire)
    out.append(
        Result(
            f"{name}: order",
            FAIL if order else PASS,
            order[0]
            if order
            else f"{P2P} device after device, each notice after the previous "
            f"device quiesced (switchover {figures['switchover_ms'] or 0:.1f} ms)",
            order[1:],
        )
    )
    return out


def control_results(shape: Shape, run: faults.CaseRun, wire: Wire) -> list[Result]:
    """On the control: every device lacks its notices, and only them."""
    name = f"control {shape.devices} devices"
    if run.error is not None:
        return [Result(name, FAIL, f"{shape.name}: {run.error}")]
    out = []
    general = migrated(run) + [
        p for p in _general(run, wire) if "does not know" not in p
    ]
    out.append(
        Result(
            f"{name}: migration",
            FAIL if general else PASS,
            general[0] if general else "the base migrates all the same",
            [events_line(run, wire)],
        )
    )
    for side in run.sides.values():
        for device, group in side.devices.items():
            want = faults.expected_events(side.log, group, wire, True)
            got = [
                (e.kind, e.subject)
                for e in faults.device_events(side, device)
                if e.kind
            ]
            wanted = [(w.kind, w.state) for w in want]
            without = [(k, s) for k, s in wanted if k != NOTICE]
            label = f"{name}: {side.side} {device}"
            if not any(k == NOTICE for k, _ in wanted):
                if side.side == "source":
                    # Every source device moves to PRE_COPY_P2P, which
                    # each version announces.
                    out.append(
                        Result(label, FAIL, "it never reached an announced state")
                    )
                continue  # v2 announces nothing on the destination
            if got == wanted:
                out.append(Result(label, FAIL, "its notices came without the change"))
            elif got == without:
                out.append(
                    Result(
                        label,
                        PASS,
                        f"fails as it must: no notice, its {len(without)} "
                        "completions as on the series",
                    )
                )
            else:
                out.append(
                    Result(
                        label,
                        FAIL,
                        "fails for another reason: events "
                        f"[{', '.join(f'{k} {s}' for k, s in got)}]",
                    )
                )
    return out


def events_line(run: faults.CaseRun, wire: Wire) -> str:
    parts = []
    for side in run.sides.values():
        kinds = [e.kind for e in side.events if e.kind]
        parts.append(
            f"{side.side}: {kinds.count(NOTICE)} notices, {kinds.count(DONE)} "
            "completions"
        )
    return "; ".join(parts)


# -- figures ---------------------------------------------------------------


def _first(events: Sequence[Event], device: str, kind: str) -> Event | None:
    return next(
        (
            e
            for e in events
            if e.device == device and e.kind == kind and e.subject == QUIESCE_STATE
        ),
        None,
    )


def figures_of(shape: Shape, run: faults.CaseRun) -> dict[str, Any]:
    """What a consumer can count on, per device, from one run."""
    side = run.sides.get("source")
    devices: dict[str, dict[str, float]] = {}
    out: dict[str, Any] = {
        "devices": devices,
        "switchover_ms": 0.0,
        "expected_ms": sum(shape.delay_of(k) for k in range(1, shape.devices + 1)),
        "events": {},
    }
    if side is None:
        return out
    steps = {r.group: r for r in _p2p_steps(side.log)}
    notices: list[Event] = []
    dones: list[Event] = []
    for k, (device, group) in enumerate(side.devices.items(), start=1):
        fig: dict[str, float] = {"delay_ms": shape.delay_of(k)}
        devices[device] = fig
        notice = _first(side.events, device, NOTICE)
        done = _first(side.events, device, DONE)
        step = steps.get(group)
        if done is not None:
            dones.append(done)
        if notice is None or done is None or step is None:
            continue
        notices.append(notice)
        fig.update(
            lead_ms=round((done.received_mono - notice.received_mono) * 1000, 3),
            began_after_notice_us=step.begin_us - notice.qemu_us,
            delivery_us=notice.received_us - notice.qemu_us,
            quiesce_ms=(step.end_us - step.begin_us) / 1000,
        )
    if notices and len(dones) == shape.devices:
        first = min(n.received_mono for n in notices)
        last = max(d.received_mono for d in dones)
        out["switchover_ms"] = round((last - first) * 1000, 3)
    else:
        out["switchover_ms"] = None  # not measured: no notice, or a device lost
    for s in run.sides.values():
        kinds = [e.kind for e in s.events if e.kind]
        out["events"][s.side] = {
            "notices": kinds.count(NOTICE),
            "completions": kinds.count(DONE),
        }
    leads = [f["lead_ms"] for f in devices.values() if "lead_ms" in f]
    delivery = [f["delivery_us"] for f in devices.values() if "delivery_us" in f]
    out["min_lead_ms"] = min(leads) if leads else None
    out["delivery_median_us"] = statistics.median(delivery) if delivery else None
    return out
