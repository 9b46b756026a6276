"""The timeline of a migration, drawn: from hand-built Timelines, no QEMU."""

from __future__ import annotations

import itertools
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from qseries.labs.vfio_migration import plots
from qseries.labs.vfio_migration import timeline as tl
from qseries.labs.vfio_migration.timeline import (
    DeviceTransition,
    Lane,
    QmpEvent,
    Timeline,
)

SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
T0 = 1_790_000_000_000_000  # us, CLOCK_REALTIME


def ev(
    ms: float,
    state: str,
    kind: str | None = "done",
    name: str = "VFIO_MIGRATION",
    device: str | None = None,
) -> QmpEvent:
    subject = state.removesuffix("-prepare") if kind else None
    return QmpEvent(name, state, kind, subject, T0 + round(ms * 1000), device)


def tr(
    ms: float, source: str, target: str, took_ms: float = 0.01, result: str = "ok"
) -> DeviceTransition:
    begin = T0 + round(ms * 1000)
    return DeviceTransition(
        source, target, begin, begin + round(took_ms * 1000), result
    )


# A v2 migration: the source announces PRE_COPY_P2P, which takes 300 ms.
SOURCE_EVENTS = (
    ev(0.1, "pre-copy"),
    ev(10.0, "pre-copy-p2p-prepare", "notice"),
    ev(310.2, "pre-copy-p2p"),
    ev(310.3, "stop-copy"),
    ev(311.0, "stop"),
)
SOURCE_TRANSITIONS = (
    tr(0.0, "RUNNING", "PRE_COPY", 0.1),
    tr(10.05, "PRE_COPY", "PRE_COPY_P2P", 300.0),
    tr(310.25, "PRE_COPY_P2P", "STOP_COPY"),
    tr(310.9, "STOP_COPY", "STOP"),
)
DESTINATION = Lane(
    "destination",
    (ev(2.0, "resuming"), ev(312.0, "running-p2p"), ev(312.1, "running")),
    (
        tr(1.9, "RUNNING", "RESUMING"),
        tr(311.9, "RESUMING", "RUNNING_P2P", 0.07),
        tr(312.05, "RUNNING_P2P", "RUNNING"),
    ),
)
NOTICE = "VFIO_MIGRATION(pre-copy-p2p-prepare)"


def timeline(source_events: tuple[QmpEvent, ...] = SOURCE_EVENTS) -> Timeline:
    return Timeline(
        source=Lane("source", source_events, SOURCE_TRANSITIONS),
        destination=DESTINATION,
        migration="completed",
        delay_ms=300,
        notice=NOTICE,
    )


# The control: the base QEMU sends no notice.
CONTROL = timeline(tuple(e for e in SOURCE_EVENTS if e.kind != "notice"))


def many(
    n: int, delay: float = 300, stagger: bool = False, notices: bool = True
) -> Timeline:
    """n devices per side as QEMU moves them: one after another into
    PRE_COPY_P2P (device k taking k * delay when staggered), each with
    its notice just before (unless not `notices`: the control)."""
    sources, destinations = [], []
    at = 10.0
    for k in range(1, n + 1):
        device = f"vfio{k - 1}"
        took = k * delay if stagger else delay
        events = [ev(0.1 + k * 0.01, "pre-copy", device=device)]
        if notices:
            events.append(ev(at, "pre-copy-p2p-prepare", "notice", device=device))
        events.append(ev(at + took + 0.2, "pre-copy-p2p", device=device))
        moves = [
            tr(k * 0.01, "RUNNING", "PRE_COPY", 0.1),
            tr(at + 0.05, "PRE_COPY", "PRE_COPY_P2P", took),
        ]
        sources.append((device, events, moves))
        at += took + 0.3
    lanes = []
    for device, events, moves in sources:
        events += [ev(at + 0.1, "stop-copy", device=device)]
        moves += [tr(at + 0.05, "PRE_COPY_P2P", "STOP_COPY")]
        lanes.append(Lane("source", tuple(events), tuple(moves), device))
    for k in range(n):
        device = f"vfio{k}"
        destinations.append(
            Lane(
                "destination",
                (
                    ev(2.0 + k * 0.01, "resuming", device=device),
                    ev(at + 2 + k * 0.3, "running", device=device),
                ),
                (
                    tr(1.9 + k * 0.01, "RUNNING", "RESUMING"),
                    tr(at + 1.9 + k * 0.3, "RESUMING", "RUNNING"),
                ),
                device,
            )
        )
    return Timeline(
        lanes[0],
        destinations[0],
        "completed",
        round(delay),
        NOTICE,
        others=(*lanes[1:], *destinations[1:]),
        stagger=stagger,
    )


# Reading the SVG.


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.encode())


def groups(root: ET.Element, *parts: object) -> list[ET.Element]:
    """The elements whose id starts with the parts joined by ':'."""
    prefix = ":".join(str(p) for p in parts)
    return [
        e
        for e in root.iter(f"{SVG}g")
        if (e.get("id") or "") == prefix or (e.get("id") or "").startswith(prefix + ":")
    ]


def one(root: ET.Element, *parts: object) -> ET.Element:
    found = groups(root, *parts)
    assert len(found) == 1, f"{parts}: {[e.get('id') for e in found]}"
    return found[0]


def texts(root: ET.Element) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter(f"{SVG}text")]


def style(e: ET.Element) -> dict[str, str]:
    out = {}
    for item in (e.get("style") or "").split(";"):
        if ":" in item:
            key, value = item.split(":", 1)
            out[key.strip()] = value.strip()
    return out


def colours(root: ET.Element) -> set[str]:
    found = set()
    for e in root.iter():
        for key in ("fill", "stroke"):
            value = e.get(key) or style(e).get(key)
            if value:
                found.add(value.lower())
    return found


def numbers(e: ET.Element) -> list[float]:
    return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", e.get("d", ""))]


def path_box(g: ET.Element) -> tuple[float, float, float, float]:
    """The box of the first path of a group: left, top, right, bottom."""
    path = g.find(f".//{SVG}path")
    assert path is not None, g.get("id")
    n = numbers(path)
    xs, ys = n[0::2], n[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def marker_xy(g: ET.Element) -> tuple[float, float]:
    use = g.find(f".//{SVG}use")
    assert use is not None, g.get("id")
    return float(use.get("x", "nan")), float(use.get("y", "nan"))


def marker_shape(root: ET.Element, g: ET.Element) -> list[float]:
    """The outline a marker's <use> points to."""
    use = g.find(f".//{SVG}use")
    assert use is not None, g.get("id")
    ref = use.get(f"{XLINK}href", "").removeprefix("#")
    (shape,) = [e for e in root.iter(f"{SVG}path") if e.get("id") == ref]
    return numbers(shape)


Box = tuple[float, float, float, float]


def text_boxes(root: ET.Element) -> list[tuple[str, Box]]:
    """Every text's box (left, top, right, bottom) from its position, its
    anchor and its width in the font matplotlib measures with."""
    out = []
    for e in root.iter(f"{SVG}text"):
        s = style(e)
        size = float(s["font-size"].removesuffix("px"))
        text = "".join(e.itertext())
        mono = "Mono" in s.get("font-family", "")
        width = plots.text_width(text, size, s.get("font-weight") == "700", mono)
        x, y = float(e.get("x", "nan")), float(e.get("y", "nan"))
        x0 = {"start": x, "middle": x - width / 2, "end": x - width}[
            s.get("text-anchor", "start")
        ]
        out.append((text, (x0, y - 0.76 * size, x0 + width, y + 0.24 * size)))
    return out


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def assert_no_overlap(root: ET.Element) -> None:
    boxes = text_boxes(root)
    bad = [
        (ta, tb)
        for (ta, a), (tb, b) in itertools.combinations(boxes, 2)
        if overlaps(a, b)
    ]
    assert not bad, f"overlapping texts: {bad[:5]}"
    width = float(root.get("width", "nan"))
    assert all(b[0] >= 0 and b[2] <= width for _, b in boxes), boxes


def ticks(root: ET.Element) -> dict[str, float]:
    """The time axis' tick labels and their x."""
    axis = next(e for e in root.iter(f"{SVG}g") if e.get("id") == "matplotlib.axis_1")
    return {
        "".join(e.itertext()): float(e.get("x", "nan")) for e in axis.iter(f"{SVG}text")
    }


# The model.


def test_lead_is_the_notice_to_its_completion_from_qemu_timestamps() -> None:
    t = timeline()
    assert t.lead is not None
    assert t.lead.notice.state == "pre-copy-p2p-prepare"
    assert t.lead.completion.state == "pre-copy-p2p"
    assert t.lead_ms == pytest.approx(300.2)
    assert CONTROL.lead is None and CONTROL.lead_ms is None
    assert CONTROL.min_lead_ms is None and CONTROL.leads == ()


def test_a_failed_quiesce_ends_the_lead_at_the_next_completion() -> None:
    failed = (
        ev(0.1, "pre-copy"),
        ev(10.0, "pre-copy-p2p-prepare", "notice"),
        ev(50.0, "running"),
    )
    t = timeline(failed)
    assert t.lead is not None and t.lead.completion.state == "running"
    assert t.lead_ms == pytest.approx(40.0)


def test_each_device_has_its_own_lead_and_lead_ms_is_the_first_devices() -> None:
    t = many(4, 100, stagger=True)
    assert t.devices == 4 and len(t.lanes) == 8
    assert [lane.title for lane in t.lanes] == [
        *(f"source vfio{k}" for k in range(4)),
        *(f"destination vfio{k}" for k in range(4)),
    ]
    assert [(x.lane, x.device) for x in t.leads] == [
        ("source", f"vfio{k}") for k in range(4)
    ]
    assert [x.ms for x in t.leads] == pytest.approx([100.2, 200.2, 300.2, 400.2])
    assert t.lead_ms == pytest.approx(100.2)  # the first device's
    assert t.min_lead_ms == pytest.approx(100.2)
    assert [t.delay_of(k) for k in (1, 4)] == [100, 400]
    # One device without its notice: no lead for it, the others keep theirs.
    lanes = list(t.lanes)
    lanes[2] = Lane(
        "source",
        tuple(e for e in lanes[2].events if e.kind != "notice"),
        lanes[2].transitions,
        "vfio2",
    )
    t2 = Timeline(
        lanes[0], lanes[4], "completed", 100, NOTICE, others=(*lanes[1:4], *lanes[5:])
    )
    assert [x.device for x in t2.leads] == ["vfio0", "vfio1", "vfio3"]


def test_json_round_trips_and_carries_every_devices_lead() -> None:
    t = timeline()
    data = json.loads(t.to_json())
    assert data["lead_ms"] == pytest.approx(300.2)
    assert data["devices"] == 1
    (source, destination) = data["lanes"]
    assert (source["side"], source["device"]) == ("source", "vfio0")
    assert destination["side"] == "destination"
    assert source["transitions"][1] == {
        "from": "PRE_COPY",
        "to": "PRE_COPY_P2P",
        "begin_us": T0 + 10_050,
        "end_us": T0 + 310_050,
        "result": "ok",
    }
    assert source["events"][1]["kind"] == "notice"
    assert Timeline.from_json(t.to_json()) == t
    assert json.loads(CONTROL.to_json())["lead_ms"] is None

    n = many(8, 50, stagger=True)
    data = json.loads(n.to_json())
    assert data["devices"] == 8 and data["stagger"] is True
    assert len(data["lanes"]) == 16
    assert [x["device"] for x in data["leads"]] == [f"vfio{k}" for k in range(8)]
    assert data["min_lead_ms"] == pytest.approx(50.2)
    assert Timeline.from_json(n.to_json()) == n


def test_the_one_device_json_of_before_is_still_read() -> None:
    old = {
        "migration": "completed",
        "delay_ms": 300,
        "notice": NOTICE,
        "quiesce_state": "pre-copy-p2p",
        "lead_ms": 300.2,
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
                        "from": x.source,
                        "to": x.target,
                        "begin_us": x.begin_us,
                        "end_us": x.end_us,
                        "result": x.result,
                    }
                    for x in lane.transitions
                ],
            }
            for lane in timeline().lanes
        },
    }
    assert Timeline.from_dict(old) == timeline()
    with pytest.raises(ValueError):
        Timeline.from_dict({**old, "lanes": []})


def test_the_fake_log_gives_each_devices_transitions_and_open_requests() -> None:
    log = "\n".join(
        [
            "init 42 stop_copy,p2p,pre_copy",
            f"begin 4242 RUNNING PRE_COPY {T0}",
            f"begin 4243 RUNNING PRE_COPY {T0 + 5}",
            f"transition 4242 RUNNING PRE_COPY {T0} {T0 + 125} ok",
            f"transition 4243 RUNNING PRE_COPY {T0 + 5} {T0 + 130} ok",
            "step 4242 RUNNING PRE_COPY",
            f"begin 4242 PRE_COPY PRE_COPY_P2P {T0 + 200}",
            f"transition 4242 PRE_COPY PRE_COPY_P2P {T0 + 200} {T0 + 300_200} EIO",
            f"begin 4242 PRE_COPY STOP_COPY {T0 + 400_000}",
            "transition 4242 torn",
            "transition 4242 A B x y ok",
        ]
    )
    mine = (
        DeviceTransition("RUNNING", "PRE_COPY", T0, T0 + 125, "ok"),
        DeviceTransition("PRE_COPY", "PRE_COPY_P2P", T0 + 200, T0 + 300_200, "EIO"),
        DeviceTransition("PRE_COPY", "STOP_COPY", T0 + 400_000, None, tl.UNFINISHED),
    )
    assert tl.parse_fake_log(log, 4242) == mine
    assert tl.parse_fake_log(log, 4243) == (
        DeviceTransition("RUNNING", "PRE_COPY", T0 + 5, T0 + 130, "ok"),
    )
    assert len(tl.parse_fake_log(log)) == 4


def test_staggered_delays_name_each_devices_group() -> None:
    assert tl.delay_rules(300) == "PRE_COPY>PRE_COPY_P2P=300"
    assert tl.delay_rules(300, 8) == "PRE_COPY>PRE_COPY_P2P=300"
    assert tl.delay_rules(50, 3, stagger=True) == (
        "PRE_COPY>PRE_COPY_P2P=50@4242,"
        "PRE_COPY>PRE_COPY_P2P=100@4243,"
        "PRE_COPY>PRE_COPY_P2P=150@4244"
    )


# The drawing.


def test_the_svg_has_two_lanes_with_their_bars_and_markers() -> None:
    root = parse(tl.render_svg(timeline()))
    assert root.tag == f"{SVG}svg"
    names = texts(one(root, "lanes"))
    for name, want in (("source", timeline().source), ("destination", DESTINATION)):
        assert f"{name} vfio0" in names
        band = one(root, "band", name, "vfio0")
        assert tl.LANE_BAND[name] in colours(band)
        bars = groups(root, "bar", name, "vfio0")
        assert [tuple(b.get("id", "").split(":")[4:6]) for b in bars] == [
            (x.source, x.target) for x in want.transitions
        ]
        assert all(tl.LANE_BAR[name] in colours(b) for b in bars)
        labels = texts(root)
        for x in want.transitions:
            assert any(label.startswith(f"{x.source}→{x.target}") for label in labels)
        assert len(groups(root, "marker")) == 8
        for e in want.events:
            assert e.state in labels
        # Everything of the lane is inside its band.
        top, bottom = path_box(band)[1], path_box(band)[3]
        for b in bars:
            assert top < path_box(b)[1] < path_box(b)[3] < bottom
    assert len(groups(root, "marker", "notice", "source")) == 1
    assert len(groups(root, "marker", "done", "source")) == 4
    assert "PRE_COPY→PRE_COPY_P2P 300.0 ms" in texts(root)
    assert_no_overlap(root)


def test_bars_run_from_begin_to_end_on_one_time_axis() -> None:
    root = parse(tl.render_svg(timeline()))
    quiesce = one(root, "bar", "source", "vfio0", 1)
    assert "PRE_COPY_P2P" in quiesce.get("id", "")
    x0, _, x1, _ = path_box(quiesce)
    at = ticks(root)
    assert "0" in at and "300" in at
    px_per_ms = (at["300"] - at["0"]) / 300
    assert x0 == pytest.approx(at["0"] + 10.05 * px_per_ms, abs=0.2)
    assert x1 - x0 == pytest.approx(300 * px_per_ms, abs=0.2)
    assert texts(one(root, "lanes")).count("time (ms)") == 1


def test_the_lead_is_a_bracket_from_the_notice_to_its_completion() -> None:
    root = parse(tl.render_svg(timeline()))
    (line,) = groups(root, "lead-line")
    assert line.get("id") == "lead-line:source:vfio0"
    assert texts(one(root, "lead-text", "source", "vfio0")) == ["lead 300.2 ms"]
    notice = one(root, "marker", "notice", "source", "vfio0")
    done = one(root, "marker", "done", "source", "vfio0", 2)
    x0, y, x1, _ = path_box(line)
    assert x0 == pytest.approx(marker_xy(notice)[0], abs=0.1)
    assert x1 == pytest.approx(marker_xy(done)[0], abs=0.1)
    band = path_box(one(root, "band", "source", "vfio0"))
    assert band[1] < y < band[3]
    assert tl.LEAD_COLOUR in colours(line)
    assert not groups(root, "no-notice")
    assert not any(tl.NO_NOTICE in t for t in texts(root))


def test_without_a_notice_no_lead_is_drawn_and_it_says_so() -> None:
    root = parse(tl.render_svg(CONTROL))
    assert not groups(root, "lead-line") and not groups(root, "lead-text")
    assert not any(t.startswith("lead ") for t in texts(root))
    assert tl.LEAD_COLOUR not in colours(root)
    assert not groups(root, "marker", "notice")
    said = [t for t in texts(root) if tl.NO_NOTICE in t]
    # Once in the summary and once in the lane of the quiesce, at its bar.
    assert any(NOTICE in t for t in texts(one(root, "summary")))
    (lane_says,) = groups(root, "no-notice")
    assert lane_says.get("id") == "no-notice:source:vfio0"
    assert texts(lane_says) == [
        "no prepare notice of pre-copy-p2p before PRE_COPY→PRE_COPY_P2P"
    ]
    assert len(said) == 2
    # Both sides are drawn all the same.
    for name in ("source", "destination"):
        assert groups(root, "bar", name)
    assert_no_overlap(root)


def test_notice_and_completion_markers_differ_and_the_legend_says_which() -> None:
    root = parse(tl.render_svg(timeline()))
    notice = one(root, "marker", "notice")
    done = groups(root, "marker", "done")[0]
    assert tl.NOTICE_COLOUR in colours(notice) and tl.DONE_COLOUR in colours(done)
    assert tl.NOTICE_COLOUR not in colours(done)
    assert marker_shape(root, notice) != marker_shape(root, done)
    words = " ".join(texts(one(root, "legend")))
    assert "prepare notice" in words and "completion" in words and "lead" in words
    assert "failed" in words
    control = " ".join(texts(one(parse(tl.render_svg(CONTROL)), "legend")))
    assert "prepare notice" in control and "lead" not in control


def test_crowded_labels_are_staggered_without_overlap() -> None:
    # Seven events and transitions within 2 ms: one pile of labels.
    crowd = tuple(ev(100 + i * 0.3, f"state-number-{i}") for i in range(7))
    steps = tuple(tr(100 + i * 0.3, f"S{i}", f"T{i}") for i in range(7))
    t = Timeline(
        Lane("source", crowd, steps),
        Lane("destination", (ev(0, "resuming"),), (tr(0, "RUNNING", "RESUMING"),)),
        "completed",
        300,
        NOTICE,
    )
    root = parse(tl.render_svg(t))
    labels = [
        e
        for g in groups(root, "event-label", "source")
        + groups(root, "bar-label", "source")
        for e in g.iter(f"{SVG}text")
    ]
    assert len(labels) == 14
    assert len({e.get("y") for e in labels}) >= 7  # not all on one line
    assert_no_overlap(root)
    # The lane grew to hold them: every label inside the band.
    _, top, _, bottom = path_box(one(root, "band", "source"))
    assert all(top < float(e.get("y", "nan")) < bottom for e in labels)


def test_eight_devices_a_lane_each_with_its_own_lead_and_nothing_overlaps() -> None:
    t = many(8, 50, stagger=True)
    root = parse(tl.render_svg(t))
    bands = groups(root, "band")
    assert [b.get("id") for b in bands] == [
        f"band:{side}:vfio{k}" for side in ("source", "destination") for k in range(8)
    ]
    tops = [path_box(b)[1] for b in bands]
    bottoms = [path_box(b)[3] for b in bands]
    assert all(b < t2 for b, t2 in zip(bottoms, tops[1:], strict=False)), (
        "lanes overlap"
    )
    names = texts(one(root, "lanes"))
    for side in ("source", "destination"):
        for k in range(8):
            assert f"{side} vfio{k}" in names
    for k, lead in enumerate(t.leads):
        key = ("source", f"vfio{k}")
        line = path_box(one(root, "lead-line", *key))
        band = path_box(one(root, "band", *key))
        assert band[1] < line[1] < band[3]
        assert texts(one(root, "lead-text", *key)) == [f"lead {lead.ms:.1f} ms"]
        notice = one(root, "marker", "notice", *key)
        assert line[0] == pytest.approx(marker_xy(notice)[0], abs=0.1)
        assert band[1] < marker_xy(notice)[1] < band[3]
        assert groups(root, "bar", *key, 1, "PRE_COPY", "PRE_COPY_P2P")
    assert not groups(root, "lead-line", "destination")
    assert_no_overlap(root)
    # Taller with more devices, about a lane's height each.
    heights = [
        float(parse(tl.render_svg(many(n, 50))).get("height", "0")) for n in (1, 8)
    ]
    assert heights[1] > heights[0] + 14 * 60
    summary = " ".join(texts(one(root, "summary")))
    assert "8 devices with a lead, the smallest 50.2 ms (source vfio0)" in summary


def test_eight_devices_without_notices_say_so_on_every_source_lane() -> None:
    root = parse(tl.render_svg(many(8, 50, notices=False)))
    said = [g.get("id") for g in groups(root, "no-notice")]
    assert said == [f"no-notice:source:vfio{k}" for k in range(8)]
    assert tl.LEAD_COLOUR not in colours(root)
    assert_no_overlap(root)


def test_text_is_escaped() -> None:
    odd = (ev(0, "<b>&\"'"), ev(1, "]]>"))
    t = Timeline(
        Lane("source", odd, (tr(0, "A&B", "<C>"),)),
        DESTINATION,
        "failed <x>",
        300,
        "EV<&>",
    )
    root = parse(tl.render_svg(t))  # well-formed XML
    words = texts(root)
    assert "<b>&\"'" in words and "]]>" in words
    assert any("A&B→<C>" in w for w in words)
    assert any("failed <x>" in w for w in words)


def test_the_svg_is_self_contained_and_the_same_for_the_same_timeline() -> None:
    svg = tl.render_svg(timeline())
    root = parse(svg)
    assert not [
        e for e in root.iter() if e.tag.endswith(("script", "image", "foreignObject"))
    ]
    for e in root.iter():
        for key, value in e.attrib.items():
            if key.endswith("href"):
                assert value.startswith("#"), (e.tag, key, value)
            assert re.sub(r"url\(#[\w-]+\)", "", value).count("url(") == 0, value
    # The namespace declarations are the only URLs.
    assert len(re.findall(r"\w+://", svg)) == 2
    assert "<!DOCTYPE" not in svg
    width, height = float(root.get("width", "0")), float(root.get("height", "0"))
    assert root.get("viewBox") == f"0 0 {width:g} {height:g}"
    assert width == tl.WIDTH
    assert tl.render_svg(timeline()) == svg


def test_failed_and_unfinished_transitions_look_different() -> None:
    steps = (
        tr(0, "RUNNING", "PRE_COPY"),
        tr(10, "PRE_COPY", "PRE_COPY_P2P", 5, "EIO"),
        DeviceTransition("RUNNING", "STOP", T0 + 20_000, None, tl.UNFINISHED),
    )
    t = Timeline(
        Lane("source", (ev(10, "running"),), steps),
        DESTINATION,
        "failed",
        300,
        NOTICE,
    )
    root = parse(tl.render_svg(t))
    bars = {b.get("id", "").split(":")[5]: b for b in groups(root, "bar", "source")}
    assert tl.LANE_BAR["source"] in colours(bars["PRE_COPY"])
    assert tl.FAILED_STROKE in colours(bars["PRE_COPY_P2P"])
    assert tl.FAILED_FILL in colours(bars["PRE_COPY_P2P"])
    assert tl.LANE_BAR["source"] not in colours(bars["PRE_COPY_P2P"])
    assert bars["PRE_COPY_P2P"].get("id", "").endswith(":EIO")
    dashes = [style(p).get("stroke-dasharray") for p in bars["STOP"].iter(f"{SVG}path")]
    assert any(dashes), "an unfinished request is drawn dashed"
    assert not any(
        style(p).get("stroke-dasharray")
        for p in bars["PRE_COPY_P2P"].iter(f"{SVG}path")
    )
    assert "PRE_COPY→PRE_COPY_P2P 5.0 ms EIO" in texts(root)
    assert "RUNNING→STOP unfinished" in texts(root)


@pytest.mark.parametrize(
    ("span", "step"), [(350.0, 50.0), (12.0, 1.0), (1000.0, 100.0), (0.4, 0.05)]
)
def test_ticks_are_round(span: float, step: float) -> None:
    assert tl.nice_step(span) == pytest.approx(step)


# The bench report's plot.

GROWTH: list[dict[str, Any]] = [
    {
        "devices": n,
        "delay_ms": t,
        "min_lead_ms": t - 0.5 - n * 0.1,
        "switchover_ms": n * t * 1.01 + 3,
        "bound_ms": 1.05 * n * t + 20,
    }
    for t in (50, 300)
    for n in (1, 2, 4, 8, 16)
]


def test_the_growth_plot_has_every_point_and_the_goals() -> None:
    svg = plots.plot_growth(GROWTH)
    root = parse(svg)
    for t in (50, 300):
        for what in (
            "lead-points",
            "switchover-points",
            "switchover-nt",
            "switchover-bound",
        ):
            assert one(root, f"{what}-T{t}") is not None
        leads = one(root, f"lead-points-T{t}")
        assert len(leads.findall(f".//{SVG}use")) == 5  # a marker per N
        goal = path_box(one(root, f"lead-goal-T{t}"))
        assert goal[1] == pytest.approx(goal[3])  # a level line
        labels = " ".join(texts(root))
        assert f"T = {t} ms: goal T \u2212 5 = {t - 5} ms" in labels
    # The points sit where their values say: the larger lead higher up.
    ys = {t: [marker_xy_all(one(root, f"lead-points-T{t}"))] for t in (50, 300)}
    assert min(y for _, y in ys[300][0]) < min(y for _, y in ys[50][0])
    xs = [x for x, _ in ys[300][0]]
    assert xs == sorted(xs) and len(set(xs)) == 5
    ticks_text = texts(root)
    for n in (1, 2, 4, 8, 16):
        assert str(n) in ticks_text
    assert "T = 300 ms: N·T" in ticks_text
    assert "T = 50 ms: bound 1.05·N·T + 20" in ticks_text


def marker_xy_all(g: ET.Element) -> list[tuple[float, float]]:
    return [
        (float(u.get("x", "nan")), float(u.get("y", "nan")))
        for u in g.iter(f"{SVG}use")
    ]


def test_the_growth_plot_is_the_same_for_the_same_rows_and_leaves_out_misses() -> None:
    assert plots.plot_growth(GROWTH) == plots.plot_growth(list(GROWTH))
    assert plots.plot_growth(GROWTH) != plots.plot_growth(GROWTH[:-1])
    missing: list[dict[str, Any]] = [dict(GROWTH[0], min_lead_ms=None), *GROWTH[1:5]]
    root = parse(plots.plot_growth(missing))
    assert len(one(root, "lead-points-T50").findall(f".//{SVG}use")) == 4
    assert len(one(root, "switchover-points-T50").findall(f".//{SVG}use")) == 5
