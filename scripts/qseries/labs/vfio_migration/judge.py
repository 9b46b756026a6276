"""Judging the scenarios' records: the notice, the control, and the
fake against the kernel.

What a version promises is its Wire: which event is the notice and
which completions it announces (every one for a notice event of its
own, v1; only the move to the announced state for a notice carried as
a device-state, v2).  On a device's record of a scenario:

- the series passes when every announced completion of each side comes
  after its notice, with no completion in between, and every notice is
  closed by exactly one completion before the next notice;
- the control (the base QEMU) must fail exactly where the series has
  something to announce, and for lack of the notice only: once the
  series' notices are left out, the two lists must be equal;
- the fake and the kernel must say the same: per scenario and side,
  the ordered (event, device-state) lists, cleanup included, timing
  left out, equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...core.results import FAIL, PASS, Result
from .plan import Wire
from .scenarios import Scenario, ScenarioRun, Side

Said = tuple[str, str]  # (event, device-state)


def said(side: Side, wire: Wire) -> list[Said]:
    """The notices and completions of one side, in order."""
    return [
        (e.name, e.state or "")
        for e in side.events
        if wire.classify(e.name, e.state) is not None
    ]


def shown(items: Sequence[Said]) -> str:
    return ", ".join(f"{event}({state})" for event, state in items) or "nothing"


def _due(wire: Wire, state: str) -> bool:
    """Whether the version announces a move to this state."""
    return wire.notice_state is None or state == wire.announces


def _kinds(items: Sequence[Said], wire: Wire) -> list[tuple[str, str]]:
    out = []
    for event, state in items:
        kind = wire.classify(event, state)
        assert kind is not None
        out.append(kind)
    return out


def notice_faults(items: Sequence[Said], wire: Wire) -> list[str]:
    """What is wrong with one side's list for the version's promise."""
    faults: list[str] = []
    pending: str | None = None  # the state announced, not yet closed
    for i, (kind, subject) in enumerate(_kinds(items, wire)):
        if kind == "notice":
            if pending is not None:
                faults.append(f"event {i + 1}: a notice of {pending} never closed")
            pending = subject
        else:
            if pending is not None and pending != subject:
                # The lab's scenarios fail no transition: a notice is
                # closed by the state it announced.
                faults.append(
                    f"event {i + 1}: the notice of {pending} closed by {subject}"
                )
            elif _due(wire, subject) and pending != subject:
                faults.append(
                    f"event {i + 1}: {subject} reached with no "
                    f"{wire.describe_notice()} for it before"
                )
            pending = None
    if pending is not None:
        faults.append(f"the last notice, of {pending}, was never closed")
    return faults


def without_notices(items: Sequence[Said], wire: Wire) -> list[Said]:
    return [
        item
        for item, (kind, _) in zip(items, _kinds(items, wire), strict=True)
        if kind != "notice"
    ]


def _name(device: str, run: ScenarioRun) -> str:
    return f"{device}: {run.scenario}"


def unreached(run: ScenarioRun, scenario: Scenario, wire: Wire) -> list[str]:
    """The states a side had to report and did not: such a run proves
    nothing of the notice, whatever else it says."""
    out: list[str] = []
    for vm in scenario.vms:
        side = run.side(vm)
        reached = {state for _, state in said(side, wire)} if side else set()
        out += [
            f"{vm} never reported {state}"
            for state in scenario.must_reach(vm)
            if state not in reached
        ]
    return out


def judge_series(
    device: str, run: ScenarioRun, wire: Wire, scenario: Scenario
) -> Result:
    if run.error is not None:
        return Result(_name(device, run), FAIL, run.error)
    faults: list[str] = unreached(run, scenario, wire)
    items: list[str] = []
    for side in run.sides:
        listed = said(side, wire)
        items.append(f"{side.vm}: {shown(listed)}")
        faults += [f"{side.vm}: {f}" for f in notice_faults(listed, wire)]
    if faults:
        return Result(_name(device, run), FAIL, faults[0], items)
    notices = sum(
        kind == "notice"
        for side in run.sides
        for kind, _ in _kinds(said(side, wire), wire)
    )
    return Result(
        _name(device, run),
        PASS,
        f"every announced move came after its notice ({notices} in all)"
        if notices
        else "nothing to announce, and no notice",
        items,
    )


def judge_control(
    device: str,
    run: ScenarioRun,
    wire: Wire,
    scenario: Scenario,
    series: ScenarioRun | None,
) -> Result:
    """The base QEMU on one scenario: it must lack exactly the notices."""
    name = _name(device, run)
    if run.error is not None:
        return Result(name, FAIL, f"failed for another reason: {run.error}")
    items = [f"{s.vm}: {shown(said(s, wire))}" for s in run.sides]
    missed = unreached(run, scenario, wire)
    if missed:
        return Result(name, FAIL, f"failed for another reason: {missed[0]}", items)
    missing = 0
    for side in run.sides:
        listed = said(side, wire)
        if any(kind == "notice" for kind, _ in _kinds(listed, wire)):
            return Result(name, FAIL, f"{side.vm}: the base sends a notice", items)
        missing += sum(_due(wire, state) for _, state in listed)
    if series is not None and series.error is None:
        for side in run.sides:
            theirs = series.side(side.vm)
            if theirs is None:
                continue
            ours, expected = said(side, wire), without_notices(said(theirs, wire), wire)
            if ours != expected:
                return Result(
                    name,
                    FAIL,
                    f"{side.vm}: differs from the series beyond the notices: "
                    f"{shown(ours)} against {shown(expected)}",
                    items,
                )
    if missing:
        return Result(
            name,
            PASS,
            f"fails for lack of the notice, as it must: {missing} announced "
            f"move{'s' if missing > 1 else ''} with none",
            items,
        )
    return Result(name, PASS, "nothing to announce: passes as the series does", items)


@dataclass(frozen=True)
class Row:
    """One line of the fake-vs-kernel table."""

    build: str  # series | control
    scenario: str
    side: str
    fake: tuple[Said, ...] | None
    kernel: tuple[Said, ...] | None
    why: str | None = None  # the explanation of a known difference

    @property
    def equal(self) -> bool:
        return self.fake is not None and self.fake == self.kernel

    @property
    def verdict(self) -> str:
        if self.equal:
            return "equal"
        if self.fake is None or self.kernel is None:
            return "missing"
        return "explained" if self.why else "DIFFERENT"


def rows(
    build: str,
    fake: Sequence[ScenarioRun],
    kernel: Sequence[ScenarioRun],
    wire: Wire,
    explained: dict[tuple[str, str], str] | None = None,
) -> list[Row]:
    kernel_by = {r.scenario: r for r in kernel}
    out: list[Row] = []
    for ours in fake:
        theirs = kernel_by.get(ours.scenario)
        for side in ours.sides:
            other = theirs.side(side.vm) if theirs and theirs.error is None else None
            out.append(
                Row(
                    build,
                    ours.scenario,
                    side.vm,
                    tuple(said(side, wire)) if ours.error is None else None,
                    tuple(said(other, wire)) if other is not None else None,
                    (explained or {}).get((ours.scenario, side.vm)),
                )
            )
    return out


def compare_result(table: Sequence[Row]) -> Result:
    bad = [r for r in table if r.verdict in ("DIFFERENT", "missing")]
    name = "fake vs kernel"
    if not table:
        return Result(name, FAIL, "nothing ran on both devices")
    if bad:
        return Result(
            name,
            FAIL,
            f"{len(bad)} of {len(table)} lists differ",
            [
                f"{r.build} {r.scenario} {r.side}: fake "
                f"{shown(r.fake or ())}; kernel {shown(r.kernel or ())}"
                for r in bad
            ],
        )
    explained = sum(r.verdict == "explained" for r in table)
    return Result(
        name,
        PASS,
        f"{len(table) - explained} of {len(table)} lists equal"
        + (f", {explained} explained" if explained else ""),
    )


def markdown(
    table: Sequence[Row],
    title: str,
    facts: Sequence[str],
    not_possible: Sequence[tuple[str, str]] = (),
) -> str:
    lines = [f"# Fake vs kernel: {title}", ""]
    lines += [f"- {fact}" for fact in facts]
    lines += [
        "",
        "Per scenario and side, the ordered (event, device-state) list each "
        "device gave, from QEMU's start to its exit; timing left out.",
        "",
        "| build | scenario | side | verdict | fake | kernel (mtty) |",
        "|---|---|---|---|---|---|",
    ]
    for r in table:
        kernel = "same" if r.equal else shown(r.kernel or ())
        verdict = r.verdict + (f": {r.why}" if r.why else "")
        lines.append(
            f"| {r.build} | {r.scenario} | {r.side} | {verdict} | "
            f"{shown(r.fake or ())} | {kernel} |"
        )
    if not_possible:
        lines += ["", "Not possible on mtty (proven on the fake only):", ""]
        lines += [f"- {what}: {why}" for what, why in not_possible]
    return "\n".join(lines) + "\n"
