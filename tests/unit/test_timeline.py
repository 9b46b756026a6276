"""The timeline of a migration, drawn: from hand-built Timelines, no QEMU."""

from __future__ import annotations

import itertools
import json
import re
import xml.etree.ElementTree as ET

import pytest

from qseries.labs.vfio_migration import timeline as tl
from qseries.labs.vfio_migration.timeline import (
    DeviceTransition,
    Lane,
    QmpEvent,
    Timeline,
)

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_790_000_000_000_000  # us, CLOCK_REALTIME


def ev(
    ms: float, state: str, kind: str | None = "done", name: str = "VFIO_MIGRATION"
) -> QmpEvent:
    subject = state.removesuffix("-prepare") if kind else None
    return QmpEvent(name, state, kind, subject, T0 + round(ms * 1000))


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


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.encode())


def by_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if name in (e.get("class") or "").split()]


def lane(root: ET.Element, name: str) -> ET.Element:
    found = [e for e in root.iter(f"{SVG}g") if e.get("id") == f"lane-{name}"]
    assert len(found) == 1, f"lanes named {name}: {len(found)}"
    return found[0]


def texts(root: ET.Element) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter(f"{SVG}text")]


def colours(root: ET.Element) -> set[str]:
    return {
        value.lower()
        for e in root.iter()
        for key in ("fill", "stroke")
        if (value := e.get(key))
    }


def marker_x(marker: ET.Element) -> float:
    circle = marker.find(f"{SVG}circle")
    if circle is not None:
        return float(circle.get("cx", "nan"))
    polygon = marker.find(f"{SVG}polygon")
    assert polygon is not None
    return float(polygon.get("points", "").split()[0].split(",")[0])


def test_lead_is_the_notice_to_its_completion_from_qemu_timestamps() -> None:
    t = timeline()
    assert t.lead is not None
    assert t.lead.notice.state == "pre-copy-p2p-prepare"
    assert t.lead.completion.state == "pre-copy-p2p"
    assert t.lead_ms == pytest.approx(300.2)
    assert CONTROL.lead is None and CONTROL.lead_ms is None


def test_a_failed_quiesce_ends_the_lead_at_the_next_completion() -> None:
    failed = (
        ev(0.1, "pre-copy"),
        ev(10.0, "pre-copy-p2p-prepare", "notice"),
        ev(50.0, "running"),
    )
    t = timeline(failed)
    assert t.lead is not None and t.lead.completion.state == "running"
    assert t.lead_ms == pytest.approx(40.0)


def test_json_round_trips_and_carries_the_lead() -> None:
    t = timeline()
    data = json.loads(t.to_json())
    assert data["lead_ms"] == pytest.approx(300.2)
    assert data["lanes"]["source"]["transitions"][1] == {
        "from": "PRE_COPY",
        "to": "PRE_COPY_P2P",
        "begin_us": T0 + 10_050,
        "end_us": T0 + 310_050,
        "result": "ok",
    }
    assert data["lanes"]["source"]["events"][1]["kind"] == "notice"
    assert Timeline.from_json(t.to_json()) == t
    assert json.loads(CONTROL.to_json())["lead_ms"] is None


def test_the_svg_has_two_lanes_with_their_bars_and_markers() -> None:
    root = parse(tl.render_svg(timeline()))
    assert root.tag == f"{SVG}svg"
    for name, want in (("source", timeline().source), ("destination", DESTINATION)):
        g = lane(root, name)
        assert name in texts(g)
        bars = by_class(g, "bar")
        assert [(b.get("data-from"), b.get("data-to")) for b in bars] == [
            (t.source, t.target) for t in want.transitions
        ]
        assert tl.LANE_BAR[name] in colours(g)
        assert tl.LANE_BAND[name] in colours(g)
        labels = texts(g)
        for t in want.transitions:
            assert any(label.startswith(f"{t.source}→{t.target}") for label in labels)
        markers = by_class(g, "marker")
        assert len(markers) == len(want.events)
        for e in want.events:
            assert e.state in labels
    source = lane(root, "source")
    assert len(by_class(source, "notice")) == 1
    assert len(by_class(source, "done")) == 4
    assert "PRE_COPY→PRE_COPY_P2P 300.0 ms" in texts(source)


def test_bars_run_from_begin_to_end_on_one_time_axis() -> None:
    root = parse(tl.render_svg(timeline()))
    source = lane(root, "source")
    (quiesce,) = [
        b for b in by_class(source, "bar") if b.get("data-to") == "PRE_COPY_P2P"
    ]
    rect = quiesce.find(f"{SVG}rect")
    assert rect is not None
    x, width = float(rect.get("x", "0")), float(rect.get("width", "0"))
    ticks = {
        "".join(e.itertext()): float(e.get("x", "nan")) for e in by_class(root, "tick")
    }
    assert "0" in ticks and "300" in ticks
    px_per_ms = (ticks["300"] - ticks["0"]) / 300
    assert x == pytest.approx(ticks["0"] + 10.05 * px_per_ms, abs=0.2)
    assert width == pytest.approx(300 * px_per_ms, abs=0.2)


def test_the_lead_is_a_bracket_from_the_notice_to_its_completion() -> None:
    root = parse(tl.render_svg(timeline()))
    source = lane(root, "source")
    (lead,) = by_class(root, "lead")
    assert lead in list(source.iter())
    assert [t for t in texts(lead) if t.startswith("lead")] == ["lead 300.2 ms"]
    (line,) = by_class(lead, "lead-line")
    (notice,) = by_class(source, "notice")
    completion = by_class(source, "done")[1]
    assert float(line.get("x1", "nan")) == pytest.approx(marker_x(notice), abs=0.1)
    assert float(line.get("x2", "nan")) == pytest.approx(marker_x(completion), abs=0.1)
    assert tl.LEAD_COLOUR in colours(lead)
    assert not by_class(root, "no-notice")
    assert not any(tl.NO_NOTICE in t for t in texts(root))


def test_without_a_notice_no_lead_is_drawn_and_it_says_so() -> None:
    svg = tl.render_svg(CONTROL)
    root = parse(svg)
    assert not by_class(root, "lead")
    assert not any(t.startswith("lead ") for t in texts(root))
    assert tl.LEAD_COLOUR not in colours(root)
    for name in ("source", "destination"):
        assert not by_class(lane(root, name), "notice")
    said = [t for t in texts(root) if tl.NO_NOTICE in t]
    assert said, texts(root)
    # Once in the summary and once in the lane of the quiesce, at its bar.
    assert any(NOTICE in t for t in said)
    assert any("before PRE_COPY→PRE_COPY_P2P" in t for t in texts(lane(root, "source")))
    # Both sides are drawn all the same.
    for name in ("source", "destination"):
        assert by_class(lane(root, name), "bar")


def test_notice_and_completion_markers_differ_and_the_legend_says_which() -> None:
    root = parse(tl.render_svg(timeline()))
    source = lane(root, "source")
    (notice,) = by_class(source, "notice")
    done = by_class(source, "done")[0]
    assert notice.find(f"{SVG}polygon") is not None  # a diamond
    assert done.find(f"{SVG}circle") is not None
    assert tl.NOTICE_COLOUR in colours(notice) and tl.DONE_COLOUR in colours(done)
    assert tl.NOTICE_COLOUR not in colours(done)
    (legend,) = by_class(root, "legend")
    words = " ".join(texts(legend))
    assert "prepare notice" in words and "completion" in words and "lead" in words
    assert len(by_class(legend, "notice")) == len(by_class(legend, "done")) == 1


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
    source = lane(root, "source")
    labels = [e for e in source.iter(f"{SVG}text") if e.get("class") == "label"]
    assert len(labels) == 14
    rows: dict[float, list[tuple[float, float]]] = {}
    for label in labels:
        x, text = float(label.get("x", "nan")), "".join(label.itertext())
        rows.setdefault(float(label.get("y", "nan")), []).append(
            (x, x + len(text) * tl.CHAR_W)
        )
    assert len(rows) >= 7  # they did not all land on one line
    for spans in rows.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"overlapping labels in one row: {spans}"
    # The lane grew to hold them: every label inside the band.
    band = by_class(source, "band")[0]
    top = float(band.get("y", "nan"))
    bottom = top + float(band.get("height", "nan"))
    assert all(top < float(e.get("y", "nan")) < bottom for e in labels)
    # And nothing runs off the right edge.
    width = float(root.get("width", "nan"))
    assert all(x1 <= width for spans in rows.values() for _, x1 in spans)


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


def test_the_svg_is_self_contained() -> None:
    svg = tl.render_svg(timeline())
    root = parse(svg)
    assert not [e for e in root.iter() if e.tag.endswith(("script", "image"))]
    for e in root.iter():
        for key, value in e.attrib.items():
            assert not key.endswith("href"), (e.tag, key)
            assert "url(" not in value and "://" not in value, (e.tag, key, value)
    # The namespace declaration is the only URL.
    assert re.findall(r"\w+://", svg) == ["http://"]
    width, height = float(root.get("width", "0")), float(root.get("height", "0"))
    assert root.get("viewBox") == f"0 0 {width:g} {height:g}"


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
    source = lane(parse(tl.render_svg(t)), "source")
    bars = {b.get("data-to"): b for b in by_class(source, "bar")}
    assert tl.LANE_BAR["source"] in colours(bars["PRE_COPY"])
    assert tl.FAILED_STROKE in colours(bars["PRE_COPY_P2P"])
    assert tl.LANE_BAR["source"] not in colours(bars["PRE_COPY_P2P"])
    assert "PRE_COPY→PRE_COPY_P2P 5.0 ms EIO" in texts(source)
    assert "RUNNING→STOP unfinished" in texts(source)


def test_the_fake_log_gives_transitions_and_open_requests() -> None:
    log = "\n".join(
        [
            "init 42 stop_copy,p2p,pre_copy",
            f"begin 4242 RUNNING PRE_COPY {T0}",
            f"transition 4242 RUNNING PRE_COPY {T0} {T0 + 125} ok",
            "step 4242 RUNNING PRE_COPY",
            f"begin 4242 PRE_COPY PRE_COPY_P2P {T0 + 200}",
            f"transition 4242 PRE_COPY PRE_COPY_P2P {T0 + 200} {T0 + 300_200} EIO",
            f"begin 4242 PRE_COPY STOP_COPY {T0 + 400_000}",
            "transition 4242 torn",
            "transition 4242 A B x y ok",
        ]
    )
    assert tl.parse_fake_log(log) == (
        DeviceTransition("RUNNING", "PRE_COPY", T0, T0 + 125, "ok"),
        DeviceTransition("PRE_COPY", "PRE_COPY_P2P", T0 + 200, T0 + 300_200, "EIO"),
        DeviceTransition("PRE_COPY", "STOP_COPY", T0 + 400_000, None, tl.UNFINISHED),
    )


@pytest.mark.parametrize(
    ("span", "step"), [(350.0, 50.0), (12.0, 1.0), (1000.0, 100.0), (0.4, 0.05)]
)
def test_ticks_are_round(span: float, step: float) -> None:
    assert tl.nice_step(span) == pytest.approx(step)
