"""The bench's figures of the kernel device, from the records of a run.

What a real quiesce of mtty costs is the time from a notice to the
completion it announces, in QEMU's own timestamps (v2: pre-copy-p2p-
prepare to pre-copy-p2p; v1: each VFIO_MIGRATION_PREPARE to its
VFIO_MIGRATION).  QMP delivery is the time from QEMU's timestamp of an
event to the guest's clock when the script read its line (STAMP=1 in
scenario-lib.sh); both clocks are the guest's.  Each scenario runs R
times in one boot, under names of their own (repeated()), each time
on a pair of mdevs of its own (on mtty, the third migration through the
same two mdevs fails: the destination's load ends with EBADF), and the
figures pool the repetitions by the scenario's name.
"""

from __future__ import annotations

import shlex
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .plan import Wire
from .scenarios import CLOCK, Scenario, ScenarioRun, Side, guest_script, unstamped

REPEAT = "#"  # NAME#K: the Kth run of scenario NAME in one boot
# mtty's ports (MAX_MTTYS in mtty.c): one per mdev of its type mtty-1.
MTTY_PORTS = 24


def repeated(scenarios: Sequence[Scenario], times: int) -> tuple[Scenario, ...]:
    """The scenarios, all of them once, then again, times times in all:
    each under a name of its own (the guest's results are framed by
    name)."""
    if times < 1:
        raise ValueError(f"repeat at least once, not {times}")
    return tuple(
        replace(s, name=f"{s.name}{REPEAT}{k}")
        for k in range(1, times + 1)
        for s in scenarios
    )


def max_repeat(scenarios: Sequence[Scenario]) -> int:
    """The most repetitions one boot has mdevs for (a pair each)."""
    return MTTY_PORTS // 2 if scenarios else 0


def repeated_script(
    scenarios: Sequence[Scenario], times: int
) -> tuple[tuple[Scenario, ...], str, int]:
    """The scenarios repeated, the stamped guest script that runs them,
    each repetition on its own pair of mdevs (MDEV0, MDEV1 are set anew
    before it), and how many mdevs the guest needs for that."""
    if times > max_repeat(scenarios):
        raise ValueError(
            f"{times} repetitions need {2 * times} mdevs; mtty has {MTTY_PORTS}"
        )
    chosen = repeated(scenarios, times)
    lines = guest_script(chosen, stamp=True).split("\n")
    per = len(scenarios)
    for k in range(times - 1, 0, -1):  # from the end: the indexes before hold
        at = lines.index(f"scenario_begin {shlex.quote(chosen[k * per].name)}")
        lines.insert(at, f"MDEV0=$MDEV{2 * k} MDEV1=$MDEV{2 * k + 1}")
    return chosen, "\n".join(lines), 2 * times


def scenario_of(name: str) -> str:
    """The scenario a repetition's name is of."""
    return name.rsplit(REPEAT, 1)[0] if REPEAT in name else name


def quiesce_us(side: Side, wire: Wire) -> list[int]:
    """Per notice of the side, QEMU's time from it to the completion it
    announces; a notice closed by another completion counts not."""
    out: list[int] = []
    pending: tuple[str, int] | None = None
    for event in side.events:
        kind = wire.classify(event.name, event.state)
        if kind is None:
            continue
        what, state = kind
        if what == "notice":
            pending = (state, event.qemu_us)
        elif pending is not None:
            if state == pending[0]:
                out.append(event.qemu_us - pending[1])
            pending = None
    return out


def delivery_us(side: Side) -> list[int]:
    """Per event the guest stamped, QEMU's timestamp to the guest's read."""
    return [e.guest_us - e.qemu_us for e in side.events if e.guest_us is not None]


def clock_marks(results: str) -> dict[str, dict[str, int]]:
    """The guest's clock (microseconds) at each scenario's start and end,
    from the QSERIES-CLOCK lines of its results."""
    marks: dict[str, dict[str, int]] = {}
    for raw in results.replace("\r", "").split("\n"):
        words = raw.split(" ")
        if len(words) != 4 or words[0] != CLOCK or words[2] not in ("start", "end"):
            continue
        at, _ = unstamped(f"@{words[3]} -")
        if at is not None:
            marks.setdefault(words[1], {})[words[2]] = at
    return marks


@dataclass(frozen=True)
class Spread:
    count: int
    median_ms: float
    max_ms: float


def spread_us(values: Sequence[int]) -> Spread | None:
    """Median and max in milliseconds (None for no values)."""
    if not values:
        return None
    return Spread(
        len(values),
        round(statistics.median(values) / 1000, 3),
        round(max(values) / 1000, 3),
    )


def key(name: str) -> str:
    """A scenario's name as part of a figure's name."""
    return "".join(c if c.isalnum() else "_" for c in name)


def figures(
    runs: Sequence[ScenarioRun], wire: Wire, results: str
) -> dict[str, float | int]:
    """The figures of one boot: per scenario, the quiesce (notice to
    completion) and the scenario's seconds; over all, QMP delivery."""
    quiesce: dict[str, list[int]] = {}
    seconds: dict[str, list[int]] = {}
    delivery: list[int] = []
    marks = clock_marks(results)
    for run in runs:
        name = scenario_of(run.scenario)
        quiesce.setdefault(name, [])
        for side in run.sides:
            quiesce[name] += quiesce_us(side, wire)
            delivery += delivery_us(side)
        mark = marks.get(run.scenario, {})
        if "start" in mark and "end" in mark:
            seconds.setdefault(name, []).append(mark["end"] - mark["start"])
    out: dict[str, float | int] = {}
    for name, values in quiesce.items():
        found = spread_us(values)
        out[f"quiesce_{key(name)}_notices"] = found.count if found else 0
        if found is not None:
            out[f"quiesce_{key(name)}_median_ms"] = found.median_ms
            out[f"quiesce_{key(name)}_max_ms"] = found.max_ms
    for name, values in seconds.items():
        found = spread_us(values)
        assert found is not None
        out[f"scenario_{key(name)}_median_s"] = round(found.median_ms / 1000, 3)
    found = spread_us(delivery)
    out["qmp_delivery_events"] = found.count if found else 0
    if found is not None:
        out["qmp_delivery_median_ms"] = found.median_ms
        out["qmp_delivery_max_ms"] = found.max_ms
    starts = [m["start"] for m in marks.values() if "start" in m]
    ends = [m["end"] for m in marks.values() if "end" in m]
    if starts and ends:
        out["scenarios_s"] = round((max(ends) - min(starts)) / 1_000_000, 2)
    return out
