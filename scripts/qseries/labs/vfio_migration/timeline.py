"""timeline: one live migration's VFIO events and device transitions, drawn.

capture() migrates a source QEMU to a destination QEMU, both with the
fake VFIO device (P2P and pre-copy), the source's quiesce transition
(PRE_COPY -> PRE_COPY_P2P) slowed down by delay_ms, and records for both
sides every VFIO QMP event with QEMU's timestamp and every state change
the fake device logged, with its begin and end times.  QEMU and the fake
both use the host's CLOCK_REALTIME, so one axis carries both.

render_svg() draws a Timeline as one self-contained SVG (no scripts, no
external resources): a time axis, a lane per side with the transitions
as bars and the events as markers, and the lead of the prepare notice of
the quiesce over its completion as a bracket, or the words "no prepare
notice" when QEMU sent none (the base, without the series).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from .demo import FLAGS, QUIESCE_ARC, QUIESCE_STATE
from .plan import Wire
from .vm import (
    DONE,
    NOTICE,
    FakeVfioVM,
    forget_socket_dir,
    kernel_state,
    socket_path,
)

SOURCE = "source"
DESTINATION = "destination"
UNFINISHED = "unfinished"  # a "begin" the fake never logged the end of

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
    name: str
    events: tuple[QmpEvent, ...]
    transitions: tuple[DeviceTransition, ...]


@dataclass(frozen=True)
class Lead:
    """The prepare notice of the quiesce and the completion after it."""

    lane: str
    notice: QmpEvent
    completion: QmpEvent

    @property
    def ms(self) -> float:
        return (self.completion.qemu_us - self.notice.qemu_us) / 1000


@dataclass(frozen=True)
class Timeline:
    source: Lane
    destination: Lane
    migration: str  # the source's final query-migrate status
    delay_ms: int  # injected into the source's quiesce transition
    notice: str  # what the version sends as a notice (Wire.describe_notice)
    quiesce_state: str = QUIESCE_STATE

    @property
    def lanes(self) -> tuple[Lane, Lane]:
        return (self.source, self.destination)

    @property
    def lead(self) -> Lead | None:
        """The first notice of the quiesce state and the first completion
        after it (whatever its state: a failed quiesce reports another),
        from QEMU's timestamps; None without such a notice."""
        for lane in self.lanes:
            events = lane.events
            for i, event in enumerate(events):
                if event.kind == NOTICE and event.subject == self.quiesce_state:
                    done = next((e for e in events[i + 1 :] if e.kind == DONE), None)
                    if done is not None:
                        return Lead(lane.name, event, done)
        return None

    @property
    def lead_ms(self) -> float | None:
        lead = self.lead
        return None if lead is None else lead.ms

    def quiesce(self) -> tuple[str, DeviceTransition] | None:
        """The lane and the first transition into the quiesce state."""
        target = kernel_state(self.quiesce_state)
        for lane in self.lanes:
            for t in lane.transitions:
                if t.target == target:
                    return lane.name, t
        return None

    def origin_us(self) -> int:
        """The first record of either side (0 when there is none)."""
        times = [e.qemu_us for lane in self.lanes for e in lane.events]
        times += [t.begin_us for lane in self.lanes for t in lane.transitions]
        return min(times, default=0)

    def end_us(self) -> int:
        times = [e.qemu_us for lane in self.lanes for e in lane.events]
        times += [
            t.begin_us if t.end_us is None else t.end_us
            for lane in self.lanes
            for t in lane.transitions
        ]
        return max(times, default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "migration": self.migration,
            "delay_ms": self.delay_ms,
            "notice": self.notice,
            "quiesce_state": self.quiesce_state,
            "lead_ms": self.lead_ms,
            "lanes": {
                lane.name: {
                    "events": [
                        {
                            "name": e.name,
                            "state": e.state,
                            "kind": e.kind,
                            "subject": e.subject,
                            "qemu_us": e.qemu_us,
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
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timeline:
        """The inverse of to_dict (lead_ms is recomputed, not read).
        KeyError, TypeError or ValueError on a malformed document."""

        def lane(name: str) -> Lane:
            raw = data["lanes"][name]
            return Lane(
                name,
                tuple(
                    QmpEvent(
                        str(e["name"]),
                        _opt_str(e["state"]),
                        _opt_str(e["kind"]),
                        _opt_str(e["subject"]),
                        int(e["qemu_us"]),
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
            )

        return cls(
            source=lane(SOURCE),
            destination=lane(DESTINATION),
            migration=str(data["migration"]),
            delay_ms=int(data["delay_ms"]),
            notice=str(data["notice"]),
            quiesce_state=str(data["quiesce_state"]),
        )

    @classmethod
    def from_json(cls, text: str) -> Timeline:
        return cls.from_dict(json.loads(text))


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


# The fake's log.


def parse_fake_log(text: str) -> tuple[DeviceTransition, ...]:
    """The transitions of a fake device's log, by begin time.

    A "transition" record closes the "begin" with the same arc and begin
    time; a "begin" left open (QEMU stopped in the middle of a request)
    is a transition with no end and the result UNFINISHED.
    """
    open_begins: list[tuple[str, str, int]] = []
    out: list[DeviceTransition] = []
    for line in text.splitlines():
        f = line.split()
        try:
            if len(f) >= 5 and f[0] == "begin":
                open_begins.append((f[2], f[3], int(f[4])))
            elif len(f) >= 7 and f[0] == "transition":
                begin = (f[2], f[3], int(f[4]))
                if begin in open_begins:
                    open_begins.remove(begin)
                out.append(DeviceTransition(f[2], f[3], int(f[4]), int(f[5]), f[6]))
        except ValueError:
            continue  # a torn or foreign line: not a record
    out += [DeviceTransition(s, t, b, None, UNFINISHED) for s, t, b in open_begins]
    return tuple(sorted(out, key=lambda t: t.begin_us))


def _lane(vm: FakeVfioVM) -> Lane:
    try:
        log = vm.log.read_text(errors="replace")
    except FileNotFoundError:
        log = ""
    return Lane(
        vm.name,
        tuple(
            QmpEvent(e.name, e.state, e.kind, e.subject, e.qemu_us)
            for e in vm.events
            if e.kind is not None or e.state is not None
        ),
        parse_fake_log(log),
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
) -> Timeline:
    """capture(), for a caller with an event loop (no overall timeout)."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    # A short directory of its own: the socket path must fit in sun_path.
    scratch = Path(tempfile.mkdtemp(prefix="timeline-", dir=tmpdir))
    uri = f"unix:{socket_path(scratch / 'mig.sock')}"
    src_env = {
        "FAKEVFIO_MIGRATION_FLAGS": FLAGS,
        "FAKEVFIO_DELAY": f"{QUIESCE_ARC}={delay_ms}",
    }
    dst_env = {"FAKEVFIO_MIGRATION_FLAGS": FLAGS}
    async with (
        FakeVfioVM(qemu, fake, tmpdir, SOURCE, src_env, wire=wire) as src,
        FakeVfioVM(
            qemu, fake, tmpdir, DESTINATION, dst_env, ["-incoming", uri], wire
        ) as dst,
    ):
        status = await src.migrate(uri, migrate_timeout)
        if status == "completed":
            await _incoming_done(dst, migrate_timeout)
        # The last events and records come a little after the status.
        await _settle((src, dst), SETTLE_QUIET, SETTLE_TIMEOUT)
        # Read before the block ends: the VMs delete their logs then.
        timeline = Timeline(
            source=_lane(src),
            destination=_lane(dst),
            migration=status,
            delay_ms=delay_ms,
            notice=wire.describe_notice(),
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
) -> Timeline:
    """Migrate a source with a delay_ms quiesce transition to a
    destination and return what both sides did.

    Both QEMUs are stopped on the way out, whatever happens; TimeoutError
    after `timeout` seconds, and the time to stop them (a QEMU stuck in
    the fake's delay ignores "quit" and is killed after 15 s).  A
    migration that does not complete is no error: Timeline.migration
    says how it ended.
    """

    async def bounded() -> Timeline:
        return await asyncio.wait_for(
            capture_async(qemu, fake, wire, tmpdir, delay_ms), timeout
        )

    return asyncio.run(bounded())


# The drawing.

WIDTH = 1280
LEFT = 150  # the lane names' column
RIGHT = 30
PAD = 16  # inside the plot, before the first and after the last record
FONT = "DejaVu Sans Mono, Liberation Mono, Menlo, Consolas, monospace"
FONT_SIZE = 12
CHAR_W = 7.4  # a monospace advance at FONT_SIZE, rounded up
ROW_H = 16  # one row of staggered labels
LABEL_GAP = 10  # the least space between two labels of a row
BAR_H = 18
MIN_BAR_W = 3.0
MARKER_R = 6.0

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
TEXT = "#111827"
MUTED = "#4b5563"
GRID = "#d1d5db"
NO_NOTICE = "no prepare notice"


def _text_w(text: str, size: float = FONT_SIZE) -> float:
    return len(text) * CHAR_W * size / FONT_SIZE


def _attrs(**attrs: object) -> str:
    return "".join(
        f" {k.rstrip('_').replace('_', '-')}={quoteattr(_num(v))}"
        for k, v in attrs.items()
        if v is not None
    )


def _num(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return str(value)


def _el(tag: str, **attrs: object) -> str:
    return f"<{tag}{_attrs(**attrs)}/>"


def _text(x: float, y: float, text: str, **attrs: object) -> str:
    return f"<text{_attrs(x=x, y=y, **attrs)}>{escape(text)}</text>"


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>"


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
class _Label:
    anchor: float  # the x it belongs to
    x: float  # where its text starts
    text: str
    row: int


def stagger(items: Iterable[tuple[float, str]], right: float) -> list[_Label]:
    """Rows for labels starting at their anchor x (or, where that would
    cross `right`, ending there): each label goes into the first row
    where it does not overlap the one before it."""
    rows: list[float] = []  # the right end of each row's last label
    out: list[_Label] = []
    for anchor, text in sorted(items, key=lambda item: item[0]):
        width = _text_w(text)
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
        out.append(_Label(anchor, x, text, row))
    return out


def _rows(labels: Sequence[_Label]) -> int:
    return max((label.row + 1 for label in labels), default=0)


def _event_colour(event: QmpEvent) -> str:
    return {NOTICE: NOTICE_COLOUR, DONE: DONE_COLOUR}.get(
        event.kind or "", OTHER_COLOUR
    )


def _marker(event: QmpEvent, x: float, y: float, title: str) -> str:
    colour = _event_colour(event)
    r = MARKER_R
    if event.kind == NOTICE:
        points = f"{x:.1f},{y - r - 1:.1f} {x + r + 1:.1f},{y:.1f} "
        points += f"{x:.1f},{y + r + 1:.1f} {x - r - 1:.1f},{y:.1f}"
        shape = _el("polygon", points=points, fill=colour, stroke=TEXT)
        kind = "notice"
    elif event.kind == DONE:
        shape = _el("circle", cx=x, cy=y, r=r, fill=colour, stroke=TEXT)
        kind = "done"
    else:
        side = 2 * r - 2
        shape = _el(
            "rect",
            x=x - r + 1,
            y=y - r + 1,
            width=side,
            height=side,
            fill=colour,
            stroke=TEXT,
        )
        kind = "other"
    return f'<g class="marker {kind}">{_title(title)}{shape}</g>'


def _lead_bracket(lead: Lead, x0: float, x1: float, y: float, top: float) -> str:
    """|<-- lead N ms -->| from the notice's x to the completion's, its
    ends reaching up to the two markers."""
    c = LEAD_COLOUR
    text = f"lead {lead.ms:.1f} ms"
    parts = [
        f'<g class="lead" data-lead-ms="{lead.ms:.1f}">',
        _title(
            f"{lead.lane}: {lead.notice.label()} at QEMU {lead.notice.qemu_us} us, "
            f"{lead.completion.label()} at {lead.completion.qemu_us} us"
        ),
        _el("line", x1=x0, y1=top, x2=x0, y2=y + 7, stroke=c, stroke_width=2.5),
        _el("line", x1=x1, y1=top, x2=x1, y2=y + 7, stroke=c, stroke_width=2.5),
        _el(
            "line",
            class_="lead-line",
            x1=x0,
            y1=y,
            x2=x1,
            y2=y,
            stroke=c,
            stroke_width=3,
        ),
    ]
    if x1 - x0 > 16:
        for tip, back in ((x1, x1 - 9), (x0, x0 + 9)):
            points = f"{tip:.1f},{y:.1f} {back:.1f},{y - 5:.1f} {back:.1f},{y + 5:.1f}"
            parts.append(_el("polygon", points=points, fill=c))
    style: dict[str, object] = {
        "class_": "lead-text",
        "font_size": 13,
        "font_weight": "bold",
        "fill": c,
    }
    width = _text_w(text, 13) + 12
    if x1 - x0 >= width + 24:
        # On the line, in a white box.
        mid = (x0 + x1) / 2
        parts.append(
            _el(
                "rect", x=mid - width / 2, y=y - 10, width=width, height=20, fill="#fff"
            )
        )
        parts.append(_text(mid, y + 4.5, text, text_anchor="middle", **style))
    elif x1 + width < WIDTH - 8:
        parts.append(_text(x1 + 10, y + 4.5, text, **style))
    else:
        parts.append(_text(x0 - 10, y + 4.5, text, text_anchor="end", **style))
    parts.append("</g>")
    return "".join(parts)


@dataclass(frozen=True)
class _Scale:
    """Times (us) to x, over the plot's width."""

    origin_us: int
    span_us: int
    left: float = LEFT + PAD
    right: float = WIDTH - RIGHT - PAD

    def x(self, us: int) -> float:
        return self.left + (us - self.origin_us) / self.span_us * (
            self.right - self.left
        )

    def ms(self, us: int) -> str:
        return f"{(us - self.origin_us) / 1000:.1f} ms"

    def ticks(self) -> list[tuple[float, str]]:
        """(x, label in ms) at a round step, from 0 to the end."""
        span_ms = self.span_us / 1000
        step = nice_step(span_ms)
        out = []
        n = 0
        while n * step <= span_ms + 1e-9:
            out.append(
                (self.x(self.origin_us + round(n * step * 1000)), f"{n * step:g}")
            )
            n += 1
        return out


def _bar_text(tr: DeviceTransition) -> str:
    text = tr.label()
    if tr.end_us is not None and tr.end_us - tr.begin_us >= 1000:
        text += f" {(tr.end_us - tr.begin_us) / 1000:.1f} ms"
    if tr.result != "ok":
        text += f" {tr.result}"
    return text


def _bar(lane: str, tr: DeviceTransition, scale: _Scale, y: float) -> str:
    x0 = scale.x(tr.begin_us)
    x1 = scale.right if tr.end_us is None else scale.x(tr.end_us)
    ok = tr.result == "ok"
    end = "never ended" if tr.end_us is None else f"to {scale.ms(tr.end_us)}"
    rect = _el(
        "rect",
        x=x0,
        y=y,
        width=max(x1 - x0, MIN_BAR_W),
        height=BAR_H,
        fill=LANE_BAR.get(lane, OTHER_COLOUR) if ok else FAILED_FILL,
        stroke=None if ok else FAILED_STROKE,
        stroke_width=None if ok else 2,
        stroke_dasharray="4,3" if tr.result == UNFINISHED else None,
    )
    return (
        f'<g class="bar" data-from={quoteattr(tr.source)} '
        f"data-to={quoteattr(tr.target)} data-result={quoteattr(tr.result)}>"
        + _title(
            f"{lane}: {tr.label()} from {scale.ms(tr.begin_us)} {end}: {tr.result}"
        )
        + rect
        + "</g>"
    )


def _labels(
    labels: Sequence[_Label], y0: float, step: float, y_from: float, halo: str
) -> list[str]:
    """Staggered labels, row r at y0 + r * step; a leader line from
    y_from to the labels beyond the first row."""
    out = []
    style: dict[str, object] = {
        "fill": TEXT,
        "stroke": halo,  # a rim of the band around the text, over lines
        "stroke_width": 3,
        "paint_order": "stroke",
    }
    for label in labels:
        y = y0 + label.row * step
        if label.row:
            end = y - 10 if step > 0 else y + 3
            out.append(
                _el(
                    "line",
                    x1=label.anchor,
                    y1=y_from,
                    x2=label.anchor,
                    y2=end,
                    stroke=MUTED,
                    stroke_width=0.8,
                )
            )
    for label in labels:
        y = y0 + label.row * step
        out.append(_text(label.x, y, label.text, class_="label", **style))
    return out


def _lane_svg(
    t: Timeline, lane: Lane, scale: _Scale, top: float
) -> tuple[list[str], float]:
    """One lane's elements, from top; and its bottom."""
    lead = t.lead
    quiesce = t.quiesce()
    right = WIDTH - 12
    event_labels = stagger(
        ((scale.x(e.qemu_us), e.label()) for e in lane.events), right
    )
    bar_labels = stagger(
        ((scale.x(tr.begin_us), _bar_text(tr)) for tr in lane.transitions), right
    )
    has_lead = lead is not None and lead.lane == lane.name
    says_no_notice = lead is None and (
        quiesce[0] == lane.name if quiesce else lane.name == SOURCE
    )
    marker_y = top + 12 + max(_rows(event_labels), 1) * ROW_H + 8
    lead_y = marker_y + 26
    bar_y = lead_y + 18 if has_lead or says_no_notice else marker_y + 18
    bottom = bar_y + BAR_H + 6 + max(_rows(bar_labels), 1) * ROW_H + 8
    band = LANE_BAND.get(lane.name, "#f3f4f6")

    parts = [f'<g class="lane" id={quoteattr("lane-" + lane.name)}>']
    parts.append(
        _el(
            "rect",
            class_="band",
            x=8,
            y=top,
            width=WIDTH - 16,
            height=bottom - top,
            rx=6,
            fill=band,
        )
    )
    parts.append(
        _text(
            20,
            (top + bottom) / 2 + 5,
            lane.name,
            class_="lane-name",
            font_size=15,
            font_weight="bold",
            fill=TEXT,
        )
    )
    parts += [
        _el("line", x1=x, y1=top, x2=x, y2=bottom, stroke=GRID)
        for x, _ in scale.ticks()
    ]
    # A guide from each marker down through the bars.
    parts += [
        _el(
            "line",
            x1=scale.x(e.qemu_us),
            y1=marker_y,
            x2=scale.x(e.qemu_us),
            y2=bar_y + BAR_H + 3,
            stroke="#9ca3af",
            stroke_dasharray="3,3",
        )
        for e in lane.events
    ]
    parts += [_bar(lane.name, tr, scale, bar_y) for tr in lane.transitions]
    parts.append('<g class="bar-labels">')
    parts += _labels(bar_labels, bar_y + BAR_H + 17, ROW_H, bar_y + BAR_H, band)
    parts.append('</g><g class="event-labels">')
    parts += _labels(event_labels, marker_y - 12, -ROW_H, marker_y - MARKER_R, band)
    parts.append("</g>")
    for e in lane.events:
        what = f" ({e.kind} of {e.subject})" if e.kind else ""
        parts.append(
            _marker(
                e,
                scale.x(e.qemu_us),
                marker_y,
                f"{lane.name}: {e.name} {e.state or '-'}{what} at "
                f"{scale.ms(e.qemu_us)} (QEMU {e.qemu_us} us)",
            )
        )
    if has_lead and lead is not None:
        parts.append(
            _lead_bracket(
                lead,
                scale.x(lead.notice.qemu_us),
                scale.x(lead.completion.qemu_us),
                lead_y,
                marker_y + MARKER_R + 2,
            )
        )
    if says_no_notice:
        text = f"{NO_NOTICE} of {t.quiesce_state}"
        at = scale.left
        if quiesce is not None:
            text += f" before {quiesce[1].label()}"
            at = scale.x(quiesce[1].begin_us)
        parts.append(
            _text(
                min(at, WIDTH - 12 - _text_w(text, 13)),
                lead_y + 4,
                text,
                class_="no-notice",
                font_size=13,
                font_weight="bold",
                fill=NO_NOTICE_COLOUR,
            )
        )
    parts.append("</g>")
    return parts, bottom


def _legend(y: float, with_lead: bool) -> list[str]:
    out = ['<g class="legend">']
    x = 16.0

    def item(swatch: str, text: str) -> None:
        nonlocal x
        out.append(swatch)
        out.append(_text(x + 22, y + 4, text, fill=TEXT, font_size=11))
        x += 22 + _text_w(text, 11) + 20

    def box(fill: str, **stroke: object) -> str:
        return _el("rect", x=x, y=y - 6, width=16, height=12, fill=fill, **stroke)

    for name in (SOURCE, DESTINATION):
        item(box(LANE_BAR[name]), f"{name} transition")
    item(box(FAILED_FILL, stroke=FAILED_STROKE, stroke_width=2), "failed")
    for kind, text in ((NOTICE, "prepare notice (QMP)"), (DONE, "completion (QMP)")):
        item(_marker(QmpEvent("", None, kind, None, 0), x + 8, y, text), text)
    item(_marker(QmpEvent("", None, None, None, 0), x + 8, y, "other"), "other event")
    if with_lead:
        # Only with a lead: without one, nothing has the lead's colour.
        line = _el(
            "line", x1=x, y1=y, x2=x + 16, y2=y, stroke=LEAD_COLOUR, stroke_width=3
        )
        item(line, "lead: notice \u2192 completion")
    out.append("</g>")
    return out


def render_svg(t: Timeline) -> str:
    """The timeline as a self-contained SVG document."""
    origin = t.origin_us()
    scale = _Scale(origin, max(t.end_us() - origin, 1000))
    lead = t.lead
    out: list[str] = []

    title = f"VFIO migration timeline \u2014 notice: {t.notice}"
    out.append(_text(16, 26, title, font_size=16, font_weight="bold", fill=TEXT))
    arc = QUIESCE_ARC.replace(">", "\u2192")
    info = f"migration {t.migration}; {t.delay_ms} ms injected into the source's {arc}"
    out.append(_text(16, 46, info, fill=MUTED, class_="info"))
    if lead is not None:
        summary = (
            f"lead {lead.ms:.1f} ms: the {lead.lane}'s {lead.notice.label()} "
            f"came {lead.ms:.1f} ms before {lead.completion.label()} "
            "(QEMU's timestamps)"
        )
        out.append(_text(16, 64, summary, fill=TEXT, class_="summary"))
    else:
        summary = (
            f"{NO_NOTICE}: QEMU sent no {t.notice} announcing {t.quiesce_state}; "
            "no lead to draw"
        )
        out.append(
            _text(
                16,
                64,
                summary,
                fill=NO_NOTICE_COLOUR,
                font_weight="bold",
                class_="summary no-notice",
            )
        )

    axis_y = 100.0
    y = axis_y + 14
    for lane in t.lanes:
        parts, bottom = _lane_svg(t, lane, scale, y)
        out.append("".join(parts))
        y = bottom + 12
    axis = ['<g class="axis">']
    axis.append(_text(16, axis_y - 8, "time (ms)", fill=MUTED, class_="axis-label"))
    for x, label in scale.ticks():
        axis.append(_el("line", x1=x, y1=axis_y - 4, x2=x, y2=axis_y + 4, stroke=TEXT))
        axis.append(
            _text(x, axis_y - 8, label, text_anchor="middle", class_="tick", fill=TEXT)
        )
    axis.append(
        _el("line", x1=scale.left, y1=axis_y, x2=scale.right, y2=axis_y, stroke=TEXT)
    )
    axis.append("</g>")
    out.append("".join(axis))

    legend_y = y + 14
    out.append("".join(_legend(legend_y, lead is not None)))
    note = (
        "ms since the first record; QEMU's event timestamps and the fake "
        "device's log, both CLOCK_REALTIME; a bar runs from the request's "
        "begin to its end"
    )
    out.append(_text(16, legend_y + 26, note, fill=MUTED, font_size=11))
    height = round(legend_y + 36)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'font-family={quoteattr(FONT)} font-size="{FONT_SIZE}">\n'
        f"<title>{escape(title)}</title>\n"
        + _el("rect", x=0, y=0, width=WIDTH, height=height, fill="#fff")
        + "\n"
        + "\n".join(out)
        + "\n</svg>\n"
    )
