"""sbench: what a consumer of the notice can count on as devices grow.

`qseries bench --devices 1,2,4,8,16` runs, for each N and for a quiesce
of T = 300 ms and of T = 50 ms per device, one live migration of N fake
devices per side (scale.py) with the series' QEMU, and measures per
device the lead of its notice over its completion, how long before its
transition began QEMU stamped the notice, QMP's delivery delay, and the
switchover from the first notice to the last completion against N*T.
Beside it: the cost of the events on stop/cont at each N (the series'
QEMU against the base with only the test patch, rounds interleaved),
and the events one migration sends per device for every version of the
series.  With --reproduce, what a bigger run costs the tool: a warm
reproduce with 1, 4 and 16 devices, and the fault matrix (cases, time).

Every goal is marked met or missed; nothing here is a test.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...ground import atomic
from ...ground.console import say
from ...ground.workdir import WorkDir
from ...pipeline import stages as pipeline
from ...pipeline.graph import CHECK, CONTROL, TEST
from . import scale
from .demo import FLAGS
from .lab import FAULTS
from .plan import Wire
from .vm import FakeVfioVM

DELAYS_MS = (300, 50)
LEAD_SLACK_MS = 5.0  # every lead at least T - this
SWITCHOVER_FACTOR = 1.05  # first notice to last completion at most
SWITCHOVER_SLACK_MS = 20.0  # ... this factor of N*T plus this
STOP_CONT_GOAL = 1.05  # patched/unpatched stop+cont, at every N
DELIVERY_GOAL_MS = 1.0  # QMP delivery delay of the notice, median
GROWTH_COUNTS = (1, 4, 16)

Add = Callable[[str, float | int | str], None]


@dataclass
class Row:
    """One N at one T."""

    devices: int
    delay_ms: int
    leads_ms: list[float]
    began_after_notice_us: list[int]
    delivery_us: list[int]
    switchover_ms: float | None  # None: not measured
    passed: bool
    problems: list[str] = field(default_factory=list)

    @property
    def bound_ms(self) -> float:
        return SWITCHOVER_FACTOR * self.devices * self.delay_ms + SWITCHOVER_SLACK_MS

    @property
    def min_lead_ms(self) -> float | None:
        return min(self.leads_ms) if len(self.leads_ms) == self.devices else None

    def goals(self) -> dict[str, bool]:
        lead = self.min_lead_ms
        delivery = statistics.median(self.delivery_us) if self.delivery_us else None
        return {
            "lead": lead is not None and lead >= self.delay_ms - LEAD_SLACK_MS,
            "before": len(self.began_after_notice_us) == self.devices
            and all(us >= 0 for us in self.began_after_notice_us),
            "switchover": self.switchover_ms is not None
            and 0 < self.switchover_ms <= self.bound_ms,
            "delivery": delivery is not None and delivery <= DELIVERY_GOAL_MS * 1000,
            "events": self.passed,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "delay_ms": self.delay_ms,
            "min_lead_ms": self.min_lead_ms,
            "leads_ms": self.leads_ms,
            "began_after_notice_us": self.began_after_notice_us,
            "delivery_median_us": statistics.median(self.delivery_us)
            if self.delivery_us
            else None,
            "switchover_ms": self.switchover_ms,
            "expected_ms": self.devices * self.delay_ms,
            "bound_ms": self.bound_ms,
            "goals": self.goals(),
            "problems": self.problems,
        }


def measure_row(
    shape: scale.Shape,
    qemu: Path,
    fake: Path,
    wire: Wire,
    invariants: Sequence[str],
    tmp: Path,
) -> Row:
    """One migration of the shape, its figures and its verdict."""
    ran = scale.run(shape, qemu, fake, tmp, wire)
    judged = scale.results(shape, ran, wire, invariants)
    fig = scale.figures_of(shape, ran)
    devices = list(fig["devices"].values())
    return Row(
        devices=shape.devices,
        delay_ms=shape.delay_ms,
        leads_ms=[d["lead_ms"] for d in devices if "lead_ms" in d],
        began_after_notice_us=[
            int(d["began_after_notice_us"])
            for d in devices
            if "began_after_notice_us" in d
        ],
        delivery_us=[int(d["delivery_us"]) for d in devices if "delivery_us" in d],
        switchover_ms=fig["switchover_ms"],
        passed=all(r.ok for r in judged),
        problems=[f"{r.name}: {r.detail}" for r in judged if not r.ok],
    )


async def stop_cont_cycles(vm: FakeVfioVM, cycles: int) -> list[float]:
    """Seconds of each of `cycles` stop and cont."""
    out = []
    for _ in range(cycles):
        started = time.monotonic()
        await vm.cmd("stop")
        await vm.cmd("cont")
        out.append(time.monotonic() - started)
    return out


def stop_cont(
    patched: Path, unpatched: Path, fake: Path, devices: int, cycles: int, tmp: Path
) -> dict[str, float]:
    """Median stop+cont of N devices, patched against unpatched, in
    interleaved rounds so that the machine's drifts hit both alike."""

    async def one(qemu: Path) -> list[float]:
        # Several devices migrate only when every one has P2P.
        flags = {"FAKEVFIO_MIGRATION_FLAGS": FLAGS}
        vm = FakeVfioVM(qemu, fake, tmp, "sbench", flags, devices=devices)
        try:
            await vm.start()
            await stop_cont_cycles(vm, 5)  # warm up
            return await stop_cont_cycles(vm, cycles)
        finally:
            await vm.close()

    times: dict[Path, list[float]] = {patched: [], unpatched: []}
    for _ in range(4):
        for qemu in (unpatched, patched):
            times[qemu] += asyncio.run(one(qemu))
    p = statistics.median(times[patched])
    u = statistics.median(times[unpatched])
    return {
        "patched_ms": round(p * 1000, 3),
        "unpatched_ms": round(u * 1000, 3),
        "ratio": round(p / u, 3),
    }


@dataclass(frozen=True)
class Built:
    """A version's QEMU as the bench runs it."""

    name: str
    qemu: Path
    wire: Wire
    invariants: tuple[str, ...]
    control: Path  # the base with only the version's test patch


def events_per_migration(
    versions: Sequence[Built], fake: Path, devices: int, tmp: Path
) -> dict[str, dict[str, Any]]:
    """Notices and completions one migration of N devices sends, per
    device, for each version (and what was wrong, if the run failed)."""
    out = {}
    for v in versions:
        shape = scale.Shape(devices, 0)
        ran = scale.run(shape, v.qemu, fake, tmp, v.wire)
        judged = scale.results(shape, ran, v.wire, v.invariants)
        bad = [f"{r.name}: {r.detail}" for r in judged if not r.ok]
        counts = scale.figures_of(shape, ran)["events"]
        notices = sum(c["notices"] for c in counts.values())
        done = sum(c["completions"] for c in counts.values())
        out[v.name] = {
            "notices_per_device": notices / devices,
            "completions_per_device": done / devices,
            "problem": bad[0] if bad else "",
        }
    return out


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def table(
    rows: Sequence[Row],
    stops: dict[tuple[str, int], dict[str, float]],
    events: dict[str, dict[str, Any]],
    growth: dict[str, float],
) -> str:
    """The bench's report of N devices, in Markdown, goals marked."""
    out = [
        "# What a consumer can count on, by the number of devices",
        "",
        f"Goals: every device's lead >= T - {LEAD_SLACK_MS:g} ms; every notice "
        "stamped before its device's transition began; first notice to last "
        f"completion <= {SWITCHOVER_FACTOR}*N*T + {SWITCHOVER_SLACK_MS:g} ms; "
        f"QMP delivery of the notice <= {DELIVERY_GOAL_MS:g} ms (median); each "
        f"device's events exact; stop/cont patched/unpatched <= {STOP_CONT_GOAL}.",
        "",
        "| N | T ms | min lead ms | notice before transition (min us) | "
        "switchover ms | N*T ms | bound ms | delivery median us | events | goals |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        goals = r.goals()
        lead = r.min_lead_ms
        missed = [k for k, ok in goals.items() if not ok]
        delivery = statistics.median(r.delivery_us) if r.delivery_us else None
        out.append(
            f"| {r.devices} | {r.delay_ms} | "
            f"{'-' if lead is None else f'{lead:.1f}'} ({_mark(goals['lead'])}) | "
            f"{min(r.began_after_notice_us, default=0)} ({_mark(goals['before'])}) | "
            f"{'-' if r.switchover_ms is None else f'{r.switchover_ms:.1f}'} "
            f"({_mark(goals['switchover'])}) | "
            f"{r.devices * r.delay_ms} | {r.bound_ms:.0f} | "
            f"{'-' if delivery is None else f'{delivery:.0f}'} "
            f"({_mark(goals['delivery'])}) | {_mark(goals['events'])} | "
            f"{'all met' if not missed else 'missed: ' + ', '.join(missed)} |"
        )
    out += [
        "",
        "| version | N | stop+cont patched ms | unpatched ms | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    for (name, n), s in sorted(stops.items()):
        out.append(
            f"| {name} | {n} | {s['patched_ms']:.3f} | {s['unpatched_ms']:.3f} | "
            f"{s['ratio']:.3f} | {_mark(s['ratio'] <= STOP_CONT_GOAL)} |"
        )
    if events:
        out += [
            "",
            "| version | notices per device per migration | completions per device "
            "| events exact |",
            "|---|---|---|---|",
        ]
        for name, e in events.items():
            out.append(
                f"| {name} | {e['notices_per_device']:g} | "
                f"{e['completions_per_device']:g} | "
                f"{'MISSED: ' + e['problem'] if e['problem'] else 'met'} |"
            )
    if growth:
        out += ["", "| what the tool ran | seconds |", "|---|---|"]
        out += [f"| {k} | {v:g} |" for k, v in growth.items()]
    return "\n".join(out) + "\n"


def growth_figures(
    request: pipeline.Request, workdir: WorkDir, counts: Sequence[int]
) -> dict[str, float]:
    """What a bigger run costs: a warm reproduce with N devices (no
    mutations, no fault matrix, no kernel device), and the fault matrix
    alone (its cases and their time)."""
    out: dict[str, float] = {}
    base_lab = dict(request.lab)
    base_lab.update(devices=frozenset({"fake"}), multifd=False, faults=())
    reports = workdir.path / "bench" / "growth"
    # reproduce's stages but bisect, mutations and the fault matrix.
    stages = frozenset({CHECK, TEST, CONTROL})
    for n in counts:
        lab = {**base_lab, "counts": (n,)}
        started = time.monotonic()
        pipeline.run(
            replace(request, lab=lab, stages=stages, report_dir=reports, reports=True),
            workdir,
        )
        out[f"reproduce, {n} device{'s' if n > 1 else ''}"] = round(
            time.monotonic() - started, 1
        )
    lab = {**base_lab, "counts": None}
    started = time.monotonic()
    outcome = pipeline.run(
        replace(
            request,
            lab=lab,
            stages=stages | {FAULTS},
            report_dir=reports,
            reports=True,
        ),
        workdir,
    )
    whole = time.monotonic() - started
    cases = sum(
        1
        for g in outcome.groups
        if g.name == "faults"
        for r in g.results
        if r.name.startswith("fault ")
    )
    faults_s = sum(g.seconds for g in outcome.groups if g.name == "faults")
    out["reproduce with the fault matrix"] = round(whole, 1)
    out["fault matrix cases"] = cases
    out["fault matrix s"] = round(faults_s, 1)
    if cases:
        out["fault matrix s per case"] = round(faults_s / cases, 2)
    return out


def run(
    versions: Sequence[Built],
    measured: Built,
    fake: Path,
    counts: Sequence[int],
    multifd: bool,
    cycles: int,
    workdir: WorkDir,
    add: Add,
    growth: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Every figure of the N-device bench; the report and the plot are
    written to WORKDIR/bench/scale.{md,svg,json}."""
    from . import plots

    tmp = workdir.sub("tmp")
    rows: list[Row] = []
    for delay in DELAYS_MS:
        for n in counts:
            say(f"bench: {n} device(s), {delay} ms each")
            row = measure_row(
                scale.Shape(n, delay, multifd=multifd),
                measured.qemu,
                fake,
                measured.wire,
                measured.invariants,
                tmp,
            )
            rows.append(row)
            goals = row.goals()
            add(
                f"scale_n{n}_t{delay}_min_lead_ms",
                "-" if row.min_lead_ms is None else round(row.min_lead_ms, 2),
            )
            add(
                f"scale_n{n}_t{delay}_switchover_ms",
                "-" if row.switchover_ms is None else round(row.switchover_ms, 1),
            )
            add(
                f"scale_n{n}_t{delay}_goals",
                "met"
                if all(goals.values())
                else "missed: " + ",".join(k for k, ok in goals.items() if not ok),
            )
    # Each version against its own control: v2 sends nothing on stop/cont
    # (it announces PRE_COPY_P2P only), v1 announces every transition.
    stops: dict[tuple[str, int], dict[str, float]] = {}
    for v in versions:
        for n in counts:
            say(f"bench: stop/cont of {v.name} with {n} device(s)")
            stops[v.name, n] = stop_cont(v.qemu, v.control, fake, n, cycles, tmp)
            add(f"scale_{v.name}_n{n}_stop_cont_ratio", stops[v.name, n]["ratio"])
    events = events_per_migration(versions, fake, max(counts), tmp)
    for name, e in events.items():
        add(f"scale_{name}_notices_per_device", e["notices_per_device"])
    grown = growth() if growth is not None else {}
    for key, value in grown.items():
        add(f"growth: {key}", value)
    out_dir = workdir.path / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = table(rows, stops, events, grown)
    data = {
        "rows": [r.to_json() for r in rows],
        "stop_cont": {f"{name} n{n}": s for (name, n), s in stops.items()},
        "events": events,
        "growth": grown,
    }
    svg = plots.plot_growth([r.to_json() for r in rows])
    atomic.write_all(
        {
            out_dir / "scale.md": report.encode(),
            out_dir / "scale.json": (json.dumps(data, indent=2) + "\n").encode(),
            out_dir / "scale.svg": svg.encode(),
        }
    )
    for line in report.splitlines():
        say(line)
    add("scale_report", str(out_dir / "scale.md"))
    add("scale_plot", str(out_dir / "scale.svg"))
    return data
