"""timeline: one live migration's VFIO events and device transitions, drawn.

capture() migrates a source QEMU to a destination QEMU, both with N fake
VFIO devices (P2P and pre-copy), each source device's quiesce transition
(PRE_COPY -> PRE_COPY_P2P) slowed down by delay_ms (device k by k times
delay_ms when staggered), and records for every device of both sides
each VFIO QMP event with QEMU's timestamp and each state change the fake
logged, with its begin and end times.  QEMU and the fake both use the
host's CLOCK_REALTIME, so one axis carries both.

render_svg() draws a Timeline with matplotlib (plots.py) as one
self-contained SVG: a time axis in ms, a lane per device per side with
the transitions as bars and the events as markers, labels that do not
overlap, and each device's lead of the prepare notice of the quiesce
over its completion as a bracket with its value, or the words "no
prepare notice" when QEMU sent none (the base, without the series).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import plots
from .demo import FLAGS, QUIESCE_ARC, QUIESCE_STATE
from .plan import Wire
from .vm import (
    DEVICE_ID,
    DONE,
    FIRST_GROUP,
    NOTICE,
    FakeVfioVM,
    forget_socket_dir,
    kernel_state,
    socket_path,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SOURCE = "source"
DESTINATION = "destination"
UNFINISHED = "unfinished"  # a "begin" the fake never logged the end of
MAX_DEVICES = 16

CAPTURE_TIMEOUT = 120.0  # the whole run: start, migrate, settle, stop
MIGRATE_TIMEOUT = 60.0
SETTLE_QUIET = 0.3  # no new event nor log record for this long: done
SETTLE_TIMEOUT = 10.0


@dataclass(frozen=True)
class QmpEvent:
    """A VFIO event as a QMP client got it."""

    name: str
    state: str | None  # its device-state
    kind: str | None  # NOTICE, DONE (what the wire makes of it) or None
    subject: str | None  # the state announced (NOTICE) or reached (DONE)
    qemu_us: int  # QEMU's timestamp (CLOCK_REALTIME, us)
    device: str | None = None  # its device-id

    def label(self) -> str:
        """The device-state alone where it says it all: a completion, or a
        notice carried by a state value of its own (v2's prepare state);
        a notice event of its own (v1's) keeps its name."""
        if self.state and (
            self.kind == DONE or (self.kind == NOTICE and self.state != self.subject)
        ):
            return self.state
        return f"{self.name} {self.state or ''}".strip()


@dataclass(frozen=True)
class DeviceTransition:
    """One MIG_DEVICE_STATE request, as the fake device logged it."""

    source: str  # the kernel's state names: PRE_COPY, ...
    target: str
    begin_us: int
    end_us: int | None  # None: begun, never ended
    result: str  # "ok", an errno name (EIO), or UNFINISHED

    def label(self) -> str:
        return f"{self.source}\u2192{self.target}"


@dataclass(frozen=True)
class Lane:
    """One device of one side: its events and its transitions."""

    name: str  # the side: SOURCE or DESTINATION
    events: tuple[QmpEvent, ...]
    transitions: tuple[DeviceTransition, ...]
    device: str = DEVICE_ID

    @property
    def title(self) -> str:
        return f"{self.name} {self.device}"


@dataclass(frozen=True)
class Lead:
    """A device's prepare notice of the quiesce and the completion after it."""

    lane: str  # the side
    notice: QmpEvent
    completion: QmpEvent
    device: str = DEVICE_ID

    @property
    def ms(self) -> float:
        return (self.completion.qemu_us - self.notice.qemu_us) / 1000


def lane_lead(lane: Lane, quiesce_state: str) -> Lead | None:
    """The lane's first notice of the quiesce state and the first
    completion after it (whatever its state: a failed quiesce reports
    another), from QEMU's timestamps; None without such a notice."""
    events = lane.events
    for i, event in enumerate(events):
        if event.kind == NOTICE and event.subject == quiesce_state:
            done = next((e for e in events[i + 1 :] if e.kind == DONE), None)
            if done is not None:
                return Lead(lane.name, event, done, lane.device)
    return None


@dataclass(frozen=True)
class Timeline:
    source: Lane  # the first device of each side
    destination: Lane
    migration: str  # the source's final query-migrate status
    delay_ms: int  # injected into the source's quiesce transition
    notice: str  # what the version sends as a notice (Wire.describe_notice)
    quiesce_state: str = QUIESCE_STATE
    # The other devices of either side, in their order (N > 1).
    others: tuple[Lane, ...] = field(default=())
    stagger: bool = False  # source device k took k * delay_ms

    @property
    def lanes(self) -> tuple[Lane, ...]:
        """Every device's lane: the source's, then the destination's."""
        return self.side(SOURCE) + self.side(DESTINATION)

    def side(self, name: str) -> tuple[Lane, ...]:
        first = self.source if name == SOURCE else self.destination
        return (first, *(lane for lane in self.others if lane.name == name))

    @property
    def devices(self) -> int:
        """Devices per side (the source's)."""
        return len(self.side(SOURCE))

    def delay_of(self, k: int) -> int:
        """The delay injected into source device k (from 1)."""
        return k * self.delay_ms if self.stagger else self.delay_ms

    @property
    def leads(self) -> tuple[Lead, ...]:
        """Each device's lead, in the order of the lanes."""
        found = (lane_lead(lane, self.quiesce_state) for lane in self.lanes)
        return tuple(lead for lead in found if lead is not None)

    @property
    def lead(self) -> Lead | None:
        """The first device's lead (the source's first device where it has
        one); None without any notice of the quiesce."""
        leads = self.leads
        return leads[0] if leads else None

    @property
    def lead_ms(self) -> float | None:
        lead = self.lead
        return None if lead is None else lead.ms

    @property
    def min_lead_ms(self) -> float | None:
        """The smallest lead of any device."""
        return min((lead.ms for lead in self.leads), default=None)

    def quiesce(self) -> tuple[str, DeviceTransition] | None:
        """The side and the first transition into the quiesce state."""
        for lane in self.lanes:
            found = self.quiesce_of(lane)
            if found is not None:
                return lane.name, found
        return None

    def quiesce_of(self, lane: Lane) -> DeviceTransition | None:
        target = kernel_state(self.quiesce_state)
        return next((t for t in lane.transitions if t.target == target), None)

    def _times(self, ends: bool) -> list[int]:
        times = [e.qemu_us for lane in self.lanes for e in lane.events]
        for lane in self.lanes:
            for t in lane.transitions:
                end = t.begin_us if t.end_us is None else t.end_us
                times.append(end if ends else t.begin_us)
        return times

    def origin_us(self) -> int:
        """The first record of any device (0 when there is none)."""
        return min(self._times(False), default=0)

    def end_us(self) -> int:
        return max(self._times(True), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "migration": self.migration,
            "delay_ms": self.delay_ms,
            "stagger": self.stagger,
            "devices": self.devices,
            "notice": self.notice,
            "quiesce_state": self.quiesce_state,
            "lead_ms": self.lead_ms,
            "min_lead_ms": self.min_lead_ms,
            "leads": [
                {"side": lead.lane, "device": lead.device, "lead_ms": lead.ms}
                for lead in self.leads
            ],
            "lanes": [
                {
                    "side": lane.name,
                    "device": lane.device,
                    "events": [
                        {
                            "name": e.name,
                            "state": e.state,
                            "kind": e.kind,
                            "subject": e.subject,
                            "qemu_us": e.qemu_us,
                            "device": e.device,
                        }
                        for e in lane.events
                    ],
                    "transitions": [
                        {
                            "from": t.source,
                            "to": t.target,
                            "begin_us": t.begin_us,
                            "end_us": t.end_us,
                            "result": t.result,
                        }
                        for t in lane.transitions
                    ],
                }
                for lane in self.lanes
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timeline:
        """The inverse of to_dict (the leads are recomputed, not read);
        also reads the one-device documents of before, whose "lanes" map
        each side to its lane.  KeyError, TypeError or ValueError on a
        malformed document."""

        def lane(side: str, device: str, raw: Mapping[str, Any]) -> Lane:
            return Lane(
                side,
                tuple(
                    QmpEvent(
                        str(e["name"]),
                        _opt_str(e["state"]),
                        _opt_str(e["kind"]),
                        _opt_str(e["subject"]),
                        int(e["qemu_us"]),
                        _opt_str(e.get("device")),
                    )
                    for e in raw["events"]
                ),
                tuple(
                    DeviceTransition(
                        str(t["from"]),
                        str(t["to"]),
                        int(t["begin_us"]),
                        None if t["end_us"] is None else int(t["end_us"]),
                        str(t["result"]),
                    )
                    for t in raw["transitions"]
                ),
                device,
            )

        raw_lanes = data["lanes"]
        if isinstance(raw_lanes, Mapping):  # one device per side
            lanes = [lane(s, DEVICE_ID, raw_lanes[s]) for s in (SOURCE, DESTINATION)]
        else:
            lanes = [lane(str(r["side"]), str(r["device"]), r) for r in raw_lanes]
        sides = {s: [x for x in lanes if x.name == s] for s in (SOURCE, DESTINATION)}
        if not sides[SOURCE] or not sides[DESTINATION]:
            raise ValueError("a timeline needs a lane on each side")
        return cls(
            source=sides[SOURCE][0],
            destination=sides[DESTINATION][0],
            migration=str(data["migration"]),
            delay_ms=int(data["delay_ms"]),
            notice=str(data["notice"]),
            quiesce_state=str(data["quiesce_state"]),
            others=(*sides[SOURCE][1:], *sides[DESTINATION][1:]),
            stagger=bool(data.get("stagger", False)),
        )

    @classmethod
    def from_json(cls, text: str) -> Timeline:
        return cls.from_dict(json.loads(text))


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


# The fake's log.


def parse_fake_log(text: str, group: int | None = None) -> tuple[DeviceTransition, ...]:
    """The transitions of a fake's log (of one IOMMU group's device, or
    of all), by begin time.

    A "transition" record closes the "begin" with the same group, arc
    and begin time; a "begin" left open (QEMU stopped in the middle of a
    request) is a transition with no end and the result UNFINISHED.
    """
    open_begins: list[tuple[str, str, str, int]] = []
    out: list[DeviceTransition] = []
    for line in text.splitlines():
        f = line.split()
        try:
            if len(f) < 2 or (group is not None and f[1] != str(group)):
                continue
            if len(f) >= 5 and f[0] == "begin":
                open_begins.append((f[1], f[2], f[3], int(f[4])))
            elif len(f) >= 7 and f[0] == "transition":
                begin = (f[1], f[2], f[3], int(f[4]))
                if begin in open_begins:
                    open_begins.remove(begin)
                out.append(DeviceTransition(f[2], f[3], int(f[4]), int(f[5]), f[6]))
        except ValueError:
            continue  # a torn or foreign line: not a record
    out += [DeviceTransition(s, t, b, None, UNFINISHED) for _, s, t, b in open_begins]
    return tuple(sorted(out, key=lambda t: t.begin_us))


def _lanes(vm: FakeVfioVM) -> list[Lane]:
    """One lane per device of the VM; an event naming no device (a QEMU
    that does not say) goes to the first."""
    try:
        log = vm.log.read_text(errors="replace")
    except FileNotFoundError:
        log = ""
    first = vm.devices[0]
    return [
        Lane(
            vm.name,
            tuple(
                QmpEvent(e.name, e.state, e.kind, e.subject, e.qemu_us, e.device)
                for e in vm.events
                if (e.kind is not None or e.state is not None)
                and (e.device or first) == device
            ),
            parse_fake_log(log, FIRST_GROUP + i),
            device,
        )
        for i, device in enumerate(vm.devices)
    ]


def delay_rules(delay_ms: int, devices: int = 1, stagger: bool = False) -> str:
    """FAKEVFIO_DELAY for the source: every device's quiesce takes
    delay_ms, or device k (from 1, IOMMU group FIRST_GROUP + k - 1)
    k times delay_ms."""
    if not stagger:
        return f"{QUIESCE_ARC}={delay_ms}"
    return ",".join(
        f"{QUIESCE_ARC}={k * delay_ms}@{FIRST_GROUP + k - 1}"
        for k in range(1, devices + 1)
    )


# The capture.


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


async def _settle(vms: Sequence[FakeVfioVM], quiet: float, timeout: float) -> None:
    """Wait until no VM got an event and no fake logged a record for
    `quiet` seconds (at most `timeout`)."""

    def snapshot() -> tuple[tuple[int, int], ...]:
        return tuple((len(vm.events), _log_size(vm.log)) for vm in vms)

    deadline = time.monotonic() + timeout
    last, since = snapshot(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        now = snapshot()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


async def _incoming_done(vm: FakeVfioVM, timeout: float) -> str:
    """The destination's query-migrate status once it is final."""
    deadline = time.monotonic() + timeout
    while True:
        status = str((await vm.cmd("query-migrate")).get("status"))
        if status in ("completed", "failed", "cancelled") or (
            time.monotonic() > deadline
        ):
            return status
        await asyncio.sleep(0.01)


async def capture_async(
    qemu: Path,
    fake: Path,
    wire: Wire,
    tmpdir: Path,
    delay_ms: int = 300,
    *,
    migrate_timeout: float = MIGRATE_TIMEOUT,
    devices: int = 1,
    stagger: bool = False,
) -> Timeline:
    """capture(), for a caller with an event loop (no overall timeout)."""
    if not 1 <= devices <= MAX_DEVICES:
        raise ValueError(f"devices: {devices}, not within 1 to {MAX_DEVICES}")
    tmpdir.mkdir(parents=True, exist_ok=True)
    # A short directory of its own: the socket path must fit in sun_path.
    scratch = Path(tempfile.mkdtemp(prefix="timeline-", dir=tmpdir))
    uri = f"unix:{socket_path(scratch / 'mig.sock')}"
    src_env = {
        "FAKEVFIO_MIGRATION_FLAGS": FLAGS,
        "FAKEVFIO_DELAY": delay_rules(delay_ms, devices, stagger),
    }
    dst_env = {"FAKEVFIO_MIGRATION_FLAGS": FLAGS}
    async with (
        FakeVfioVM(
            qemu, fake, tmpdir, SOURCE, src_env, wire=wire, devices=devices
        ) as src,
        FakeVfioVM(
            qemu,
            fake,
            tmpdir,
            DESTINATION,
            dst_env,
            ["-incoming", uri],
            wire,
            devices=devices,
        ) as dst,
    ):
        status = await src.migrate(uri, migrate_timeout)
        if status == "completed":
            await _incoming_done(dst, migrate_timeout)
        # The last events and records come a little after the status.
        await _settle((src, dst), SETTLE_QUIET, SETTLE_TIMEOUT)
        # Read before the block ends: the VMs delete their logs then.
        sources, destinations = _lanes(src), _lanes(dst)
        timeline = Timeline(
            source=sources[0],
            destination=destinations[0],
            migration=status,
            delay_ms=delay_ms,
            notice=wire.describe_notice(),
            others=(*sources[1:], *destinations[1:]),
            stagger=stagger,
        )
    forget_socket_dir(scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    return timeline


def capture(
    qemu: Path,
    fake: Path,
    wire: Wire,
    tmpdir: Path,
    delay_ms: int = 300,
    *,
    timeout: float = CAPTURE_TIMEOUT,
    devices: int = 1,
    stagger: bool = False,
) -> Timeline:
    """Migrate a source with `devices` fake devices, whose quiesce
    transitions take delay_ms (device k: k * delay_ms with stagger), to
    a destination with as many, and return what every device did.

    Both QEMUs are stopped on the way out, whatever happens; TimeoutError
    after `timeout` seconds, and the time to stop them (a QEMU stuck in
    the fake's delay ignores "quit" and is killed after 15 s).  A
    migration that does not complete is no error: Timeline.migration
    says how it ended.
    """

    async def bounded() -> Timeline:
        return await asyncio.wait_for(
            capture_async(
                qemu, fake, wire, tmpdir, delay_ms, devices=devices, stagger=stagger
            ),
            timeout,
        )

    return asyncio.run(bounded())


# The drawing: pixels from the top left, one pixel per SVG unit.

WIDTH = 1280
LEFT = 170  # the lane names' column
RIGHT = 30
PAD = 16  # inside the plot, before the first and after the last record
HEAD = 118  # the title lines and the time axis, above the lanes
FONT_SIZE = 12
ROW_H = 17  # one row of staggered labels
LABEL_GAP = 10  # the least space between two labels of a row
LANE_GAP = 8  # white between two lanes
BAR_H = 18
MIN_BAR_W = 3.0
MARKER_R = 6.0
LEAD_ROW = 24  # the lead's bracket (or "no prepare notice"), under the markers

# Fills that appear nowhere else, so that a screenshot can be checked by
# counting pixels: the lane bands, the transition bars, the lead.
LANE_BAND = {SOURCE: "#e7effd", DESTINATION: "#e3f5ec"}
LANE_BAR = {SOURCE: "#2557d6", DESTINATION: "#0d8a5b"}
LEAD_COLOUR = "#e0115f"
NOTICE_COLOUR = "#f59e0b"
DONE_COLOUR = "#6d28d9"
OTHER_COLOUR = "#6b7280"
FAILED_FILL = "#fde2e2"
FAILED_STROKE = "#b91c1c"
NO_NOTICE_COLOUR = "#7f1d1d"
TEXT = plots.TEXT
MUTED = plots.MUTED
GRID = plots.GRID
NO_NOTICE = "no prepare notice"
MARKERS = {NOTICE: "D", DONE: "o"}  # anything else: a square


def nice_step(span: float, most: int = 12) -> float:
    """The smallest 1, 2 or 5 times a power of ten that cuts span into
    at most `most` steps."""
    if span <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(span / most))
    for factor in (1, 2, 5, 10):
        if span / (base * factor) <= most:
            return float(base * factor)
    return float(base * 10)


@dataclass(frozen=True)
class Label:
    anchor: float  # the x (px) it belongs to
    x: float  # where its text starts (px)
    width: float
    text: str
    row: int


def stagger(items: Iterable[tuple[float, str]], right: float) -> list[Label]:
    """Rows for labels starting at their anchor x (or, where that would
    cross `right`, ending there): each label goes into the first row
    where it does not overlap the one before it."""
    rows: list[float] = []  # the right end of each row's last label
    out: list[Label] = []
    for anchor, text in sorted(items, key=lambda item: item[0]):
        width = plots.text_width(text, FONT_SIZE)
        x = anchor - 4
        if x + width > right:
            x = max(min(anchor + 4, right) - width, 4)
        for row, end in enumerate(rows):
            if x >= end + LABEL_GAP:
                rows[row] = x + width
                break
        else:
            row = len(rows)
            rows.append(x + width)
        out.append(Label(anchor, x, width, text, row))
    return out


def _rows(labels: Sequence[Label]) -> int:
    return max(max((label.row + 1 for label in labels), default=0), 1)


@dataclass(frozen=True)
class Scale:
    """Times (us) to x (px) over the plot's width, and to ms on its axis."""

    origin_us: int
    span_us: int
    left: float = LEFT + PAD
    right: float = WIDTH - RIGHT - PAD

    @property
    def px_per_ms(self) -> float:
        return (self.right - self.left) / (self.span_us / 1000)

    def x(self, us: int) -> float:
        return self.left + (us - self.origin_us) / 1000 * self.px_per_ms

    def ms(self, px: float) -> float:
        """Where a pixel column is on the axis."""
        return (px - self.left) / self.px_per_ms


def _bar_text(tr: DeviceTransition) -> str:
    text = tr.label()
    if tr.end_us is not None and tr.end_us - tr.begin_us >= 1000:
        text += f" {(tr.end_us - tr.begin_us) / 1000:.1f} ms"
    if tr.result != "ok":
        text += f" {tr.result}"
    return text


@dataclass(frozen=True)
class LaneBox:
    """Where one lane's parts go (px, from the top of the figure)."""

    lane: Lane
    top: float
    marker_y: float
    lead_y: float | None  # the bracket's, or the "no prepare notice" line's
    bar_y: float  # the bars' top
    bottom: float
    events: tuple[Label, ...]
    bars: tuple[Label, ...]
    lead: Lead | None
    no_notice: bool


@dataclass(frozen=True)
class Layout:
    """The whole picture's geometry: render_svg() draws it, the tests
    read it (lane rows, plot columns) against the SVG and screenshots."""

    scale: Scale
    lanes: tuple[LaneBox, ...]
    height: float

    @property
    def lanes_top(self) -> float:
        return HEAD

    @property
    def lanes_bottom(self) -> float:
        return self.lanes[-1].bottom


def layout(t: Timeline) -> Layout:
    origin = t.origin_us()
    scale = Scale(origin, max(t.end_us() - origin, 1000))
    right = WIDTH - RIGHT - 2  # inside the lane's band
    any_quiesce = t.quiesce() is not None
    y = float(HEAD)
    boxes = []
    for lane in t.lanes:
        events = stagger(((scale.x(e.qemu_us), e.label()) for e in lane.events), right)
        bars = stagger(
            ((scale.x(tr.begin_us), _bar_text(tr)) for tr in lane.transitions), right
        )
        lead = lane_lead(lane, t.quiesce_state)
        no_notice = lead is None and (
            t.quiesce_of(lane) is not None if any_quiesce else lane is t.source
        )
        marker_y = y + 6 + _rows(events) * ROW_H + MARKER_R + 4
        lead_y = marker_y + LEAD_ROW if lead or no_notice else None
        bar_y = (lead_y if lead_y is not None else marker_y) + 16
        bottom = bar_y + BAR_H + 4 + _rows(bars) * ROW_H + 4
        boxes.append(
            LaneBox(
                lane,
                y,
                marker_y,
                lead_y,
                bar_y,
                bottom,
                tuple(events),
                tuple(bars),
                lead,
                no_notice,
            )
        )
        y = bottom + LANE_GAP
    height = y - LANE_GAP + 96  # the legend and the note
    return Layout(scale, tuple(boxes), math.ceil(height))


def _gid(*parts: object) -> str:
    """An element id of its parts (what the tests look for)."""
    return ":".join(str(p) for p in parts)


def _lane_drawing(ax: Axes, t: Timeline, box: LaneBox, scale: Scale) -> None:
    lane = box.lane
    key = (lane.name, lane.device)
    band = LANE_BAND.get(lane.name, "#f3f4f6")
    ms = scale.ms
    ax.axhspan(
        box.top,
        box.bottom,
        facecolor=band,
        edgecolor="none",
        zorder=0.1,
        gid=_gid("band", *key),
    )
    # A guide from each marker down through the bars.
    if lane.events:
        ax.vlines(
            [ms(scale.x(e.qemu_us)) for e in lane.events],
            box.marker_y,
            box.bar_y + BAR_H + 3,
            colors="#9ca3af",
            linestyles=(0, (3, 3)),
            linewidth=1,
            zorder=1,
            gid=_gid("guides", *key),
        )
    for i, tr in enumerate(lane.transitions):
        x0 = scale.x(tr.begin_us)
        x1 = scale.right if tr.end_us is None else scale.x(tr.end_us)
        width = max(x1 - x0, MIN_BAR_W) / scale.px_per_ms
        ok = tr.result == "ok"
        ax.broken_barh(
            [(ms(x0), width)],
            (box.bar_y, BAR_H),
            facecolors=LANE_BAR.get(lane.name, OTHER_COLOUR) if ok else FAILED_FILL,
            edgecolors="none" if ok else FAILED_STROKE,
            linewidth=0 if ok else 2,
            linestyle=(0, (4, 3)) if tr.result == UNFINISHED else "solid",
            zorder=2,
            gid=_gid("bar", *key, i, tr.source, tr.target, tr.result),
        )
    _labels(ax, box.bars, box.bar_y + BAR_H, +1, band, scale, _gid("bar-label", *key))
    _labels(
        ax,
        box.events,
        box.marker_y - MARKER_R,
        -1,
        band,
        scale,
        _gid("event-label", *key),
    )
    for i, e in enumerate(lane.events):
        kind = e.kind if e.kind in MARKERS else "other"
        ax.plot(
            [ms(scale.x(e.qemu_us))],
            [box.marker_y],
            linestyle="none",
            marker=MARKERS.get(kind, "s"),
            markersize=2 * MARKER_R if kind != NOTICE else 2 * MARKER_R - 1,
            markerfacecolor=_event_colour(e),
            markeredgecolor=TEXT,
            markeredgewidth=1,
            zorder=5,
            gid=_gid("marker", kind, *key, i),
        )
    if box.lead is not None and box.lead_y is not None:
        _lead_bracket(ax, box.lead, box, scale)
    if box.no_notice and box.lead_y is not None:
        text = f"{NO_NOTICE} of {t.quiesce_state}"
        at = scale.left
        quiesce = t.quiesce_of(lane)
        if quiesce is not None:
            text += f" before {quiesce.label()}"
            at = scale.x(quiesce.begin_us)
        width = plots.text_width(text, 13, bold=True)
        ax.text(
            ms(min(at, WIDTH - RIGHT - 2 - width)),
            box.lead_y,
            text,
            fontsize=13,
            fontweight="bold",
            color=NO_NOTICE_COLOUR,
            va="center",
            zorder=6,
            gid=_gid("no-notice", *key),
        )


def _labels(
    ax: Axes,
    labels: Sequence[Label],
    y_from: float,
    direction: int,
    band: str,
    scale: Scale,
    gid: str,
) -> None:
    """Staggered labels, row r at r rows from y_from (below it when
    direction is +1, above when -1); a leader line from y_from to those
    beyond the first row.  Each sits on a box of the band's colour over
    the lines it crosses."""
    for i, label in enumerate(labels):
        y = y_from + direction * (4 + (label.row + 0.5) * ROW_H)
        if label.row:
            end = y - direction * ROW_H / 2
            ax.plot(
                [scale.ms(label.anchor)] * 2,
                [y_from, end],
                color=MUTED,
                linewidth=0.8,
                zorder=3,
                gid=_gid(gid, i, "leader"),
            )
        ax.text(
            scale.ms(label.x),
            y,
            label.text,
            va="center_baseline",
            ha="left",
            fontsize=FONT_SIZE,
            color=TEXT,
            bbox={"facecolor": band, "edgecolor": "none", "pad": 1},
            zorder=4,
            gid=_gid(gid, i),
        )


def _event_colour(event: QmpEvent) -> str:
    return {NOTICE: NOTICE_COLOUR, DONE: DONE_COLOUR}.get(
        event.kind or "", OTHER_COLOUR
    )


def _lead_bracket(ax: Axes, lead: Lead, box: LaneBox, scale: Scale) -> None:
    """|-- lead N ms --| from the notice's x to the completion's, its
    ends reaching up to the two markers."""
    assert box.lead_y is not None
    key = (lead.lane, lead.device)
    c = LEAD_COLOUR
    x0, x1 = scale.x(lead.notice.qemu_us), scale.x(lead.completion.qemu_us)
    y = box.lead_y
    ms = scale.ms
    ax.vlines(
        [ms(x0), ms(x1)],
        box.marker_y + MARKER_R + 2,
        y + 7,
        colors=c,
        linewidth=2.5,
        zorder=6,
        gid=_gid("lead-ends", *key),
    )
    ax.plot(
        [ms(x0), ms(x1)],
        [y, y],
        color=c,
        linewidth=3,
        solid_capstyle="butt",
        zorder=6,
        gid=_gid("lead-line", *key),
    )
    text = f"lead {lead.ms:.1f} ms"
    width = plots.text_width(text, 13, bold=True) + 12
    style: dict[str, Any] = {
        "fontsize": 13,
        "fontweight": "bold",
        "color": c,
        "va": "center_baseline",
        "zorder": 7,
        "gid": _gid("lead-text", *key),
    }
    if x1 - x0 >= width + 24:
        # On the line, in a white box.
        ax.text(
            ms((x0 + x1) / 2),
            y,
            text,
            ha="center",
            bbox={"facecolor": "#ffffff", "edgecolor": "none", "pad": 2},
            **style,
        )
    elif x1 + width < WIDTH - RIGHT:
        ax.text(ms(x1 + 10), y, text, ha="left", **style)
    else:
        ax.text(ms(x0 - 10), y, text, ha="right", **style)


def _legend(fig: Figure, y: float, height: float, with_lead: bool) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    def marker(shape: str, colour: str, label: str) -> Line2D:
        return Line2D(
            [],
            [],
            linestyle="none",
            marker=shape,
            markersize=10,
            markerfacecolor=colour,
            markeredgecolor=TEXT,
            label=label,
        )

    handles: list[Any] = [
        Patch(facecolor=LANE_BAR[SOURCE], label="source transition"),
        Patch(facecolor=LANE_BAR[DESTINATION], label="destination transition"),
        Patch(facecolor=FAILED_FILL, edgecolor=FAILED_STROKE, lw=2, label="failed"),
        marker(MARKERS[NOTICE], NOTICE_COLOUR, "prepare notice (QMP)"),
        marker(MARKERS[DONE], DONE_COLOUR, "completion (QMP)"),
        marker("s", OTHER_COLOUR, "other event"),
    ]
    if with_lead:
        # Only with a lead: without one, nothing has the lead's colour.
        handles.append(
            Line2D([], [], color=LEAD_COLOUR, linewidth=3, label="lead: notice → done")
        )
    legend = fig.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(8 / WIDTH, 1 - y / height),
        ncols=len(handles),
        fontsize=11,
        frameon=False,
        handlelength=1.6,
        columnspacing=1.4,
    )
    legend.set_gid("legend")


def _summary(t: Timeline) -> tuple[str, str]:
    """The summary line and its colour."""
    lead = t.lead
    if lead is None:
        return (
            f"{NO_NOTICE}: QEMU sent no {t.notice} announcing {t.quiesce_state}; "
            "no lead to draw",
            NO_NOTICE_COLOUR,
        )
    text = (
        f"lead {lead.ms:.1f} ms: {lead.lane} {lead.device}'s {lead.notice.label()} "
        f"came {lead.ms:.1f} ms before {lead.completion.label()} (QEMU's timestamps)"
    )
    if len(t.leads) > 1:
        least = min(t.leads, key=lambda x: x.ms)
        text += (
            f"; {len(t.leads)} devices with a lead, the smallest "
            f"{least.ms:.1f} ms ({least.lane} {least.device})"
        )
    return text, TEXT


def draw(t: Timeline) -> tuple[Figure, Layout]:
    """The timeline as a matplotlib figure (call inside plots.style())."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    geo = layout(t)
    scale, height = geo.scale, geo.height
    fig = plots.figure(WIDTH, height)

    def fy(px: float) -> float:
        return 1 - px / height

    def say(y: float, text: str, gid: str, **style: Any) -> None:
        """A line of text across the figure, its baseline at y."""
        fig.text(16 / WIDTH, fy(y), text, va="baseline", gid=gid, **style)

    title = f"VFIO migration timeline \u2014 notice: {t.notice}"
    say(26, title, "title", fontsize=16, fontweight="bold")
    arc = QUIESCE_ARC.replace(">", "\u2192")
    n = t.devices
    if n == 1:
        injected = f"{t.delay_ms} ms injected into the source's {arc}"
    elif t.stagger:
        injected = f"{n} devices per side; k \u00d7 {t.delay_ms} ms injected into "
        injected += f"source device k's {arc}"
    else:
        injected = f"{n} devices per side; {t.delay_ms} ms injected into each "
        injected += f"source device's {arc}"
    say(46, f"migration {t.migration}; {injected}", "info", color=MUTED)
    summary, colour = _summary(t)
    bold = "normal" if t.lead else "bold"
    gid = "summary" if t.lead else "summary:no-notice"
    say(64, summary, gid, color=colour, fontweight=bold)

    top, bottom = geo.lanes_top, geo.lanes_bottom
    ax = fig.add_axes(
        (
            LEFT / WIDTH,
            fy(bottom),
            (WIDTH - LEFT - RIGHT) / WIDTH,
            (bottom - top) / height,
        )
    )
    ax.set_gid("lanes")
    ax.set_xlim(scale.ms(LEFT), scale.ms(WIDTH - RIGHT))
    ax.set_ylim(bottom, top)
    ax.xaxis.set_major_locator(MultipleLocator(nice_step(scale.span_us / 1000)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_ticks_position("top")
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("time (ms)", color=MUTED, loc="left")
    ax.grid(axis="x", color=GRID, linewidth=1)
    ax.set_axisbelow(True)  # the grid over the bands, under the rest
    for side in ("left", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_yticks(
        [(b.top + b.bottom) / 2 for b in geo.lanes],
        [b.lane.title for b in geo.lanes],
        fontsize=13,
        fontweight="bold",
    )
    ax.tick_params(axis="y", length=0, pad=8)
    for box in geo.lanes:
        _lane_drawing(ax, t, box, scale)

    _legend(fig, bottom + 20, height, t.lead is not None)
    note = (
        "ms since the first record; QEMU's event timestamps and the fake "
        "device's log, both CLOCK_REALTIME; a bar runs from the request's "
        "begin to its end"
    )
    say(bottom + 72, note, "note", color=MUTED, fontsize=11)
    return fig, geo


def render_svg(t: Timeline) -> str:
    """The timeline as a self-contained SVG document."""
    with plots.style():
        fig, _ = draw(t)
        return plots.render(fig)
