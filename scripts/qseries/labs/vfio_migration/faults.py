"""The fault matrix: the series' QEMU under failing device transitions.

Each scenario of the version's fault plan (faults/scenarios.yaml) runs
once as is, on QEMUs with the fake VFIO device; then, for every
MIG_DEVICE_STATE arc the fake logged on a side of that run, once more
with that arc failing once on that side.  Each run records the VFIO
events of every device (qemu.qmp), what the fake did (its log), the
migration status and runstate of each side and whether each QEMU is
still alive, and holds the events to the version's invariants:

- exact: each device's events are those that QEMU's
  vfio_migration_set_state() sends for the requests, failures and
  resets the fake logged: a notice (if the version's wire announces the
  requested state) before a request starts, a completion for the state
  reached once it ended, after a failed request a completion for the
  recovery state if the recovery request succeeded, else "running"
  once the device was reset, and nothing with migration-events=off;
- paired: every notice of a device is followed, before its next notice,
  by exactly one completion (for the announced state, a recovery state
  or "running" after a reset), or by none only when the device's reset
  was attempted and QEMU ended.

Which arcs exist, which requests fail and what QEMU does then are read
from the runs, not written here: the scenarios are data, the wire is
the version's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.results import FAIL, PASS, SKIP, Result
from ...ground.errors import UsageError
from . import multifd
from .plan import SIDES, FaultPlan, Mutation, Scenario, Wire
from .vm import (
    FIRST_GROUP,
    KERNEL_STATES,
    Event,
    FakeVfioVM,
    LogRecord,
    forget_socket_dir,
    kernel_state,
    read_log,
    socket_path,
)

ERRNO = "EIO"
# Quiet for this long (no event, no record of the fake) ends a step.
SETTLE_S = 0.4
SETTLE_MAX_S = 20.0
STATUS_TIMEOUT = 60.0
# The cancel scenario's bandwidth: pre-copy of 64 MiB of RAM lasts.
CANCEL_BANDWIDTH = 4096
TERMINAL = ("completed", "failed", "cancelled")
CASE_TIMEOUT = 120.0


def qapi_state(kernel: str) -> str:
    return kernel.lower().replace("_", "-")


@dataclass(frozen=True)
class Case:
    """A scenario with its faults: none, one arc of one side, or the
    scenario's own."""

    scenario: Scenario
    side: str | None = None  # the side whose arc fails
    arc: str | None = None  # FROM>TO, kernel names

    @property
    def id(self) -> str:
        if self.arc is None:
            return self.scenario.name
        return f"{self.scenario.name}/{self.side}/{self.arc}"

    def fail_rules(self, side: str) -> str | None:
        rules = [rule for s, rule in self.scenario.fail if s == side]
        if self.arc is not None and side == self.side:
            rules.append(f"{self.arc}={ERRNO}:once")
        only = self.scenario.fail_device
        if only is not None:
            # Each rule of a comma list, for that device alone.
            rules = [
                f"{one.strip()}@{FIRST_GROUP + only - 1}"
                for rule in rules
                for one in rule.split(",")
                if one.strip()
            ]
        return ",".join(rules) or None

    def delay_rules(self) -> str | None:
        """The scenario's delay for each device: equal, or device k
        (from 1) taking k times as long."""
        delay = self.scenario.delay
        if delay is None:
            return None
        arc, ms = delay.rsplit("=", 1)
        if not self.scenario.stagger:
            return delay
        return ",".join(
            f"{arc}={int(ms) * k}@{FIRST_GROUP + k - 1}"
            for k in range(1, self.scenario.devices + 1)
        )

    def env(self, side: str) -> dict[str, str]:
        env = {"FAKEVFIO_MIGRATION_FLAGS": self.scenario.flags}
        rules = self.fail_rules(side)
        if rules:
            env["FAKEVFIO_FAIL"] = rules
        delays = self.delay_rules()
        if delays:
            env["FAKEVFIO_DELAY"] = delays
        for s, errno in self.scenario.reset_fails:
            if s == side:
                env["FAKEVFIO_RESET_FAIL"] = errno
        return env


@dataclass
class SideRun:
    """What one QEMU of a case did."""

    side: str
    devices: dict[str, int]  # device id -> the fake's group
    events: list[Event]
    log: list[LogRecord]
    migration: str | None  # query-migrate's status; None: not asked
    runstate: str | None  # query-status; None: QEMU is gone
    ended: str | None  # None: alive at the end; else how it ended
    stderr: str
    migrated_at_us: int | None = None  # when `migrate` was sent

    def failed_in_migration(self) -> list[LogRecord]:
        """Failed requests and resets from the start of the migration."""
        if self.migrated_at_us is None:
            return []
        return [
            r
            for r in self.log
            if r.result != "ok" and r.begin_us >= self.migrated_at_us
        ]

    def arcs(self) -> list[str]:
        """The arcs requested here, in the order first seen."""
        out: list[str] = []
        for r in self.log:
            if r.kind == "transition" and r.source != r.target:
                arc = f"{r.source}>{r.target}"
                if arc not in out:
                    out.append(arc)
        return out


@dataclass
class CaseRun:
    case: Case
    sides: dict[str, SideRun] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    error: str | None = None  # the run itself could not be made

    @property
    def passed(self) -> bool:
        return self.error is None and not self.problems


# -- running ---------------------------------------------------------------


async def _ask(vm: FakeVfioVM, command: str, **arguments: Any) -> Any:
    """A QMP command, or None when QEMU is gone or refuses it."""
    if vm.proc is None or vm.proc.returncode is not None:
        return None
    try:
        return await asyncio.wait_for(vm.cmd(command, **arguments), 10)
    except Exception:
        return None


def _log_size(vm: FakeVfioVM) -> int:
    try:
        return vm.log.stat().st_size
    except FileNotFoundError:
        return 0


async def _settle(vms: Sequence[FakeVfioVM]) -> None:
    """Wait until no QEMU sends an event and no fake logs for SETTLE_S."""
    deadline = time.monotonic() + SETTLE_MAX_S
    last = None
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        now = tuple((len(vm.events), _log_size(vm)) for vm in vms)
        if now != last:
            last = now
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= SETTLE_S:
            return
        await asyncio.sleep(0.05)


async def _status(vm: FakeVfioVM) -> str | None:
    info = await _ask(vm, "query-migrate")
    return None if info is None else str(info.get("status", "none"))


async def _until_terminal(vm: FakeVfioVM, timeout: float = STATUS_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await _status(vm)
        if status is None or status in TERMINAL:
            return
        await asyncio.sleep(0.02)


def _ended(vm: FakeVfioVM) -> str | None:
    if vm.proc is None or vm.proc.returncode is None:
        return None
    code = vm.proc.returncode
    return f"killed by signal {-code}" if code < 0 else f"exited with {code}"


async def _side(vm: FakeVfioVM, side: str, migration: bool) -> SideRun:
    state = await _ask(vm, "query-status")
    return SideRun(
        side=side,
        devices={d: vm.group_of(d) for d in vm.devices},
        events=list(vm.events),
        log=read_log(vm.log),
        migration=await _status(vm) if migration else None,
        runstate=None if state is None else str(state.get("status")),
        ended=_ended(vm),
        stderr=vm.stderr(),
    )


async def _start(vm: FakeVfioVM) -> None:
    """Start the guest of a QEMU begun with -S, once its events are
    heard: what its devices do when it starts is part of the run."""
    await vm.cmd("cont")
    await _settle([vm])


def _vm(
    case: Case,
    side: str,
    qemu: Path,
    fake: Path,
    tmp: Path,
    wire: Wire,
    args: Sequence[str] = (),
) -> FakeVfioVM:
    return FakeVfioVM(
        qemu,
        fake,
        tmp,
        side,
        case.env(side),
        args=args,
        wire=wire,
        devices=case.scenario.devices,
        migration_events=case.scenario.events,
        device_options=multifd.DEVICE_OPTIONS if case.scenario.multifd else "",
    )


async def _run_stop_cont(
    case: Case, qemu: Path, fake: Path, tmp: Path, wire: Wire
) -> dict[str, SideRun]:
    async with _vm(case, "source", qemu, fake, tmp, wire, ["-S"]) as vm:
        await _start(vm)
        await _ask(vm, "stop")
        await _settle([vm])
        await _ask(vm, "cont")
        await _settle([vm])
        return {"source": await _side(vm, "source", migration=False)}


async def _run_migration(
    case: Case, qemu: Path, fake: Path, tmp: Path, wire: Wire
) -> dict[str, SideRun]:
    scratch = Path(tempfile.mkdtemp(prefix="mig-", dir=tmp))
    uri = f"unix:{socket_path(scratch / 'mig.sock')}"
    try:
        src = _vm(case, "source", qemu, fake, tmp, wire, ["-S"])
        dst = _vm(case, "destination", qemu, fake, tmp, wire, ["-incoming", "defer"])
        async with src, dst:
            await _start(src)
            if case.scenario.multifd:
                # With the return path: see multifd.py.
                channels = multifd.channels_for(case.scenario.devices)
                for vm in (src, dst):
                    await multifd.enable(vm, channels)
            await dst.cmd("migrate-incoming", uri=uri, **{"exit-on-error": False})
            if case.scenario.run == "cancel":
                await src.cmd(
                    "migrate-set-parameters", **{"max-bandwidth": CANCEL_BANDWIDTH}
                )
            started = time.time_ns() // 1000
            await src.cmd("migrate", uri=uri)
            if case.scenario.run == "cancel":
                await _cancel_in_pre_copy(src, dst)
            await _until_terminal(src)
            await _until_terminal(dst)
            await _settle([src, dst])
            sides = {
                "source": await _side(src, "source", migration=True),
                "destination": await _side(dst, "destination", migration=True),
            }
            for side in sides.values():
                side.migrated_at_us = started
            return sides
    finally:
        forget_socket_dir(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


def _reached(vm: FakeVfioVM, state: str) -> bool:
    """Has the first device of vm been moved to state?"""
    group = vm.group_of(vm.devices[0])
    return any(
        r.kind == "transition"
        and r.group == group
        and r.target == state
        and r.result == "ok"
        for r in read_log(vm.log)
    )


async def _cancel_in_pre_copy(src: FakeVfioVM, dst: FakeVfioVM) -> None:
    """migrate_cancel once both sides are in the migration (the source's
    device in PRE_COPY, the destination's in RESUMING), unless it ended
    before: a destination that fails its setup fails the migration, and
    cancelling then would race with the source noticing it."""
    deadline = time.monotonic() + STATUS_TIMEOUT
    while time.monotonic() < deadline:
        if _reached(src, "PRE_COPY") and _reached(dst, "RESUMING"):
            if await _status(src) == "active":
                await _ask(src, "migrate_cancel")
            return
        status = await _status(src)
        if status is None or status in TERMINAL:
            return
        await asyncio.sleep(0.02)


async def _run(case: Case, qemu: Path, fake: Path, tmp: Path, wire: Wire) -> CaseRun:
    run = CaseRun(case)
    runner = _run_stop_cont if case.scenario.run == "stop-cont" else _run_migration
    try:
        run.sides = await asyncio.wait_for(
            runner(case, qemu, fake, tmp, wire), CASE_TIMEOUT
        )
    except Exception as err:  # the run could not be made: say why
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        run.error = f"{type(err).__name__}: {first}"
    return run


def run_case(case: Case, qemu: Path, fake: Path, tmp: Path, wire: Wire) -> CaseRun:
    """Run one case (two QEMUs at most, each stopped at the end)."""
    tmp.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_run(case, qemu, fake, tmp, wire))


# -- the invariants --------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    kind: str  # "notice" or "done"
    state: str  # QAPI name of the state announced or reached
    before_us: int | None = None  # a notice: sent no later than this
    after_us: int | None = None  # a completion: sent no earlier than this


def announced(wire: Wire, target: str) -> bool:
    """Does the wire send a notice before a request for `target`?"""
    return wire.announces is None or kernel_state(wire.announces) == target


def expected_events(
    records: Sequence[LogRecord], group: int, wire: Wire, events_on: bool
) -> list[Expected]:
    """The events QEMU's vfio_migration_set_state() sends for what the
    fake logged of one device: a request, after a failure the recovery
    request (when the recovery state is not ERROR), and a reset when
    there was no recovery or it failed."""
    out: list[Expected] = []
    if not events_on:
        return out
    failed = False  # the last request failed: recovery or reset next
    resetting = False  # the recovery failed too: a reset next
    for r in records:
        if r.group != group:
            continue
        if r.kind == "transition":
            assert r.target is not None
            if failed:
                failed = False
                if r.result == "ok":
                    out.append(
                        Expected("done", qapi_state(r.target), after_us=r.end_us)
                    )
                else:
                    resetting = True
                continue
            if announced(wire, r.target):
                out.append(
                    Expected("notice", qapi_state(r.target), before_us=r.begin_us)
                )
            if r.result == "ok":
                out.append(Expected("done", qapi_state(r.target), after_us=r.end_us))
            else:
                failed = True
        elif r.kind == "reset" and (failed or resetting):
            failed = resetting = False
            if r.result == "ok":
                out.append(Expected("done", "running", after_us=r.begin_us))
    return out


def device_events(side: SideRun, device: str) -> list[Event]:
    return [e for e in side.events if e.state is not None and e.device == device]


def render(wire: Wire, e: Event) -> str:
    """An event as the table shows it."""
    if e.kind == "notice":
        return wire.notice_state or f"prepare {e.state}"
    if e.kind == "done":
        return str(e.state)
    return f"{e.name}({e.state})"


def check_exact(run: CaseRun, wire: Wire) -> list[str]:
    problems = []
    for side in run.sides.values():
        for device, group in side.devices.items():
            want = expected_events(side.log, group, wire, run.case.scenario.events)
            got = device_events(side, device)
            seen = [(e.kind, e.subject) for e in got]
            wanted = [(w.kind, w.state) for w in want]
            if seen != wanted:
                problems.append(
                    f"exact: {side.side} {device}: events "
                    f"[{', '.join(f'{k} {s}' for k, s in seen) or 'none'}], "
                    f"expected [{', '.join(f'{k} {s}' for k, s in wanted) or 'none'}]"
                )
                continue
            for e, w in zip(got, want, strict=True):
                if w.before_us is not None and e.qemu_us > w.before_us:
                    problems.append(
                        f"exact: {side.side} {device}: notice {w.state} sent "
                        f"{e.qemu_us - w.before_us} us after the request started"
                    )
                if w.after_us is not None and e.qemu_us < w.after_us:
                    problems.append(
                        f"exact: {side.side} {device}: {w.state} sent "
                        f"{w.after_us - e.qemu_us} us before the device got there"
                    )
    return problems


def check_paired(run: CaseRun, wire: Wire) -> list[str]:
    problems = []
    for side in run.sides.values():
        for device, group in side.devices.items():
            records = [r for r in side.log if r.group == group]
            recovered = {qapi_state(str(r.target)) for r in _recoveries(records)}
            resets = [r for r in records if r.kind == "reset"]
            events = [e for e in device_events(side, device) if e.kind]
            i = 0
            while i < len(events):
                e = events[i]
                if e.kind != "notice":
                    problems.append(
                        f"paired: {side.side} {device}: {e.subject} with no notice "
                        "before it"
                    )
                    i += 1
                    continue
                j = i + 1
                while j < len(events) and events[j].kind != "notice":
                    j += 1
                done = [x.subject for x in events[i + 1 : j]]
                allowed = {e.subject, *recovered} | ({"running"} if resets else set())
                if len(done) > 1:
                    problems.append(
                        f"paired: {side.side} {device}: notice {e.subject} followed "
                        f"by {len(done)} completions ({', '.join(map(str, done))})"
                    )
                elif done and done[0] not in allowed:
                    problems.append(
                        f"paired: {side.side} {device}: notice {e.subject} followed "
                        f"by {done[0]}, neither it nor a recovery state"
                    )
                elif not done and not (
                    any(r.begin_us >= e.qemu_us for r in resets) and side.ended
                ):
                    problems.append(
                        f"paired: {side.side} {device}: notice {e.subject} never "
                        "followed by a completion"
                    )
                i = j
    return problems


def _recoveries(records: Sequence[LogRecord]) -> list[LogRecord]:
    """The requests made right after a failed one (QEMU's recovery)."""
    out = []
    previous: LogRecord | None = None
    for r in records:
        if (
            r.kind == "transition"
            and previous is not None
            and previous.kind == "transition"
            and previous.result != "ok"
        ):
            out.append(r)
        previous = r
    return out


INVARIANT_CHECKS: dict[str, Callable[[CaseRun, Wire], list[str]]] = {
    "exact": check_exact,
    "paired": check_paired,
}
INVARIANTS_ALL = tuple(INVARIANT_CHECKS)


def judge(run: CaseRun, plan: FaultPlan, wire: Wire) -> None:
    """Fill the run's problems and flags."""
    if run.error is not None:
        return
    scenario = run.case.scenario
    exits = dict(scenario.exits)
    for side in run.sides.values():
        if side.ended and side.side not in exits:
            tail = side.stderr.splitlines()[-1:] if side.stderr else []
            problems = f"QEMU ({side.side}) {side.ended}"
            run.problems.append(problems + (f": {tail[0]}" if tail else ""))
        elif not side.ended and side.side in exits:
            run.problems.append(
                f"QEMU ({side.side}) is still running; expected it to end: "
                f"{exits[side.side]}"
            )
        if (
            side.migration is not None
            and not side.ended
            and side.migration not in TERMINAL
        ):
            run.problems.append(
                f"{side.side}: migration still '{side.migration}' after "
                f"{STATUS_TIMEOUT:g} s"
            )
        unknown = [e for e in side.events if e.state is not None and e.kind is None]
        if unknown:
            run.problems.append(
                f"{side.side}: events the wire does not know: "
                + ", ".join(f"{e.name}({e.state})" for e in unknown)
            )
    for name in plan.invariants:
        run.problems += INVARIANT_CHECKS[name](run, wire)
    statuses = [s.migration for s in run.sides.values()]
    where = sorted(
        {
            f"{s.side} {r.source}>{r.target}"
            if r.kind == "transition"
            else f"{s.side} reset"
            for s in run.sides.values()
            for r in s.failed_in_migration()
        }
    )
    if statuses == ["completed", "completed"] and where:
        run.flags.append(
            "both sides report 'completed' although " + ", ".join(where) + " failed"
        )


# -- the matrix ------------------------------------------------------------


@dataclass
class Matrix:
    runs: list[CaseRun]
    wire: Wire
    plan: FaultPlan

    def results(self) -> list[Result]:
        out = []
        for run in self.runs:
            name = f"fault {run.case.id}"
            if run.error is not None:
                out.append(Result(name, FAIL, f"the run failed: {run.error}"))
                continue
            detail = outcome(run)
            items = [*run.problems, *(f"flagged: {f}" for f in run.flags)]
            items += [
                f"{s.side}: {events_text(s, self.wire)}" for s in run.sides.values()
            ]
            if run.problems:
                out.append(Result(name, FAIL, run.problems[0], items))
            else:
                out.append(Result(name, PASS, detail, items))
        return out


def outcome(run: CaseRun) -> str:
    parts = []
    for s in run.sides.values():
        if s.ended:
            parts.append(f"{s.side} QEMU {s.ended}")
            continue
        state = s.runstate or "?"
        if s.migration is None:
            parts.append(f"{s.side} {state}")
        else:
            parts.append(f"{s.side} {s.migration}, {state}")
    return "; ".join(parts)


def events_text(side: SideRun, wire: Wire) -> str:
    per_device = []
    for device in side.devices:
        events = ", ".join(render(wire, e) for e in device_events(side, device))
        per_device.append(
            events or "none"
            if len(side.devices) == 1
            else f"{device}: {events or 'none'}"
        )
    return "; ".join(per_device)


def check_case_ids(plan: FaultPlan, ids: Sequence[str]) -> None:
    """Refuse a case id that names no case: a scenario, or
    SCENARIO/SIDE/FROM>TO with a known scenario, side and states."""
    names = [s.name for s in plan.scenarios]
    for given in ids:
        parts = given.split("/")
        arc = parts[2].split(">") if len(parts) == 3 else []
        if parts[0] in names and (
            len(parts) == 1
            or (
                len(parts) == 3
                and parts[1] in SIDES
                and len(arc) == 2
                and all(a in KERNEL_STATES for a in arc)
            )
        ):
            continue
        raise UsageError(
            f"--fault {given!r} names no case of the fault matrix",
            "give a scenario (" + ", ".join(names) + ") or SCENARIO/SIDE/FROM>TO "
            "(quote it: '>' is the shell's)",
        )


def run_matrix(
    plan: FaultPlan,
    wire: Wire,
    qemu: Path,
    fake: Path,
    tmp: Path,
    say: Callable[[str], None],
    only: Sequence[str] = (),
) -> Matrix:
    """Every scenario as is, then with each arc it used failing, one at a
    time on each side.  `only`: case ids (or scenario names) to run."""
    with contextlib.suppress(ValueError, OSError):
        # QEMU is expected to abort in some cases: no core files.
        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    runs: list[CaseRun] = []

    def wanted(case: Case) -> bool:
        return not only or case.id in only

    by_name = {s.name: s for s in plan.scenarios}
    direct = [o for o in only if o.count("/") == 2]
    for scenario in plan.scenarios:
        clean = Case(scenario)
        if only and not wanted(clean):
            continue
        say(f"faults: {clean.id}")
        first = run_case(clean, qemu, fake, tmp, wire)
        judge(first, plan, wire)
        runs.append(first)
        if not scenario.each_arc or first.error is not None:
            continue
        for side in first.sides.values():
            for arc in side.arcs():
                case = Case(scenario, side.side, arc)
                say(f"faults: {case.id}")
                run = run_case(case, qemu, fake, tmp, wire)
                judge(run, plan, wire)
                runs.append(run)
    # A case named whole (a mutation's) runs alone, without its scenario.
    for name in direct:
        scenario_name, side_name, arc = name.split("/")
        if scenario_name not in by_name or side_name not in SIDES:
            continue
        case = Case(by_name[scenario_name], side_name, arc)
        say(f"faults: {case.id}")
        run = run_case(case, qemu, fake, tmp, wire)
        judge(run, plan, wire)
        runs.append(run)
    return Matrix(runs, wire, plan)


# -- the table -------------------------------------------------------------


def table(matrix: Matrix, version: str, based_on: str) -> str:
    """The matrix as a Markdown table (docs/faults-vN.md)."""
    lines = [
        f"# Fault matrix of {version}",
        "",
        f"Generated by `qseries test --faults --series {version} --write-table` "
        f"from a real run on {based_on}: do not edit.",
        "",
        "Each scenario of `faults/scenarios.yaml` ran as is, then once for each "
        "arc its devices took on a side, with that arc failing once (EIO) on "
        "that side.  Events are each device's `device-state` values in the "
        "order QEMU sent them"
        + (
            "; `prepare X` is the notice that the device is about to move to X"
            if matrix.wire.notice_state is None
            else f"; `{matrix.wire.notice_state}` is the notice"
        )
        + ".  Invariants: "
        + ", ".join(matrix.plan.invariants)
        + ".",
        "",
        "| case | fault | source events | destination events | outcome | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for run in matrix.runs:
        scenario = run.case.scenario
        if run.case.arc is not None:
            fault = f"{run.case.side} {run.case.arc}"
        elif scenario.fail:
            fault = "; ".join(f"{s} {rule}" for s, rule in scenario.fail)
            fault += "".join(f"; {s} reset {e}" for s, e in scenario.reset_fails)
        else:
            fault = "none"
        src = run.sides.get("source")
        dst = run.sides.get("destination")
        if run.error is not None:
            verdict = f"FAIL: {run.error}"
        elif run.problems:
            verdict = "FAIL: " + run.problems[0]
        else:
            verdict = "pass"
        if run.flags:
            verdict += " · **flagged**: " + "; ".join(run.flags)
        lines.append(
            "| "
            + " | ".join(
                cell.replace("|", "\\|")
                for cell in (
                    f"{scenario.name}",
                    fault,
                    events_text(src, matrix.wire) if src else "-",
                    events_text(dst, matrix.wire) if dst else "-",
                    outcome(run) if run.error is None else "-",
                    verdict,
                )
            )
            + " |"
        )
    passed = sum(r.passed for r in matrix.runs)
    lines += ["", f"{passed} of {len(matrix.runs)} cases passed.", ""]
    return "\n".join(lines)


def table_result(text: str, committed: Path, based_on: str) -> Result:
    """The run's table against the one in the repository."""
    name = f"faults table {committed.name}"
    if not committed.exists():
        return Result(
            name, FAIL, f"{committed} is missing: write it with --write-table"
        )
    old = committed.read_text(encoding="utf-8")
    if based_on not in old:
        return Result(
            name,
            SKIP,
            f"{committed.name} was made on another base; this run's table is in "
            "the reports",
        )
    if old == text:
        return Result(name, PASS, f"{committed.name} is what this run found")
    old_rows = set(old.splitlines())
    changed = [line for line in text.splitlines() if line not in old_rows]
    return Result(
        name,
        FAIL,
        f"{committed.name} differs from this run: review and rewrite it with "
        "--write-table",
        changed[:10],
    )


def catch_mutation(
    mutation: Mutation,
    plan: FaultPlan,
    wire: Wire,
    qemu: Path,
    fake: Path,
    tmp: Path,
) -> Result:
    """A mutation meant for the fault matrix: its case must fail, on a
    problem matching the mutation's reason."""
    name = f"mutation {mutation.name}"
    matrix = run_matrix(
        plan, wire, qemu, fake, tmp, lambda _: None, [mutation.fault or ""]
    )
    if not matrix.runs:
        return Result(name, FAIL, f"no fault case {mutation.fault}")
    run = matrix.runs[0]
    if run.error is not None:
        return Result(name, FAIL, f"fault {run.case.id}: the run failed: {run.error}")
    caught = [p for p in run.problems if re.search(mutation.reason, p)]
    if caught:
        return Result(
            name,
            PASS,
            f"caught: {mutation.what}",
            [f"fault {run.case.id}: {caught[0]}"],
        )
    if run.problems:
        return Result(
            name,
            FAIL,
            f"failed for another reason: fault {run.case.id}: {run.problems[0]}",
            [f"expected /{mutation.reason}/"],
        )
    return Result(name, FAIL, f"fault {run.case.id} passed: {mutation.what}")
