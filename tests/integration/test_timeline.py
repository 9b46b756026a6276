"""The timeline of a real migration, as a browser shows it.

One live migration (source -> destination, the source's PRE_COPY ->
PRE_COPY_P2P slowed down by 300 ms) is captured, drawn as SVG and
opened in headless Chromium; the screenshot must show both lanes with
their transitions and, on the series, the lead of the prepare notice
over its completion.  The drawing gives the lane bands, the bars and
the lead colours of their own, so the PNG is checked by counting and
locating the pixels of each colour.  A second migration, with 8 devices
per side (each source device's quiesce slowed down by 100 ms), must
show 16 lanes, and the lead on every source device's lane.

On the control (QEMU without the change) the lanes are drawn all the
same, nothing is drawn in the lead's colour, and the lead test fails
saying "no prepare notice", as every QMP test must there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qseries.labs.vfio_migration import timeline as tl
from qseries.labs.vfio_migration.plan import Wire
from qseries.labs.vfio_migration.timeline import Timeline

DELAY_MS = 300
DEVICES = 8  # the many-device picture's, per side
DEVICES_DELAY_MS = 100  # each of its source devices' quiesce: 0.8 s in all
STAGGER_DELAY_MS = 40  # device k of 3: k * 40 ms (no picture)
SLACK_MS = 5.0  # timestamps of two processes, rounded to the microsecond
CHROMIUM = "chromium"  # Debian's package and command
# Longer profile paths get a short $TMPDIR (see screenshot()).
SHORT_PATH = 60
SHOT_TIMEOUT = 90.0
SVG = "{http://www.w3.org/2000/svg}"
Box = tuple[int, int, int, int]  # left, top, right, bottom (inclusive)


def _missing(why: str) -> None:
    if os.environ.get("QSERIES_REQUIRE_QEMU") == "1":
        pytest.fail(why)
    pytest.skip(why)


def _chromium() -> str:
    found = shutil.which(CHROMIUM)
    if found is None:
        _missing(f"no {CHROMIUM} on PATH: apt-get install chromium")
    assert found is not None
    return found


def _pillow() -> None:
    if importlib.util.find_spec("PIL") is None:
        _missing("Pillow is not installed (pip install pillow)")


def screenshot(browser: str, page: Path, png: Path, size: tuple[int, int]) -> None:
    """Headless Chromium's screenshot of page, at size; the browser and
    whatever it started are killed once it is done or out of time."""
    profile = png.parent / "chromium-profile"
    profile.mkdir()
    # Chromium binds its singleton socket in $TMPDIR and links it from the
    # profile: under a long work dir that path overflows sun_path (108
    # bytes) and Chromium aborts.  Then a short private dir in /tmp serves.
    short = None
    if len(str(profile)) > SHORT_PATH:
        short = Path(tempfile.mkdtemp(prefix="qseries-chromium-", dir="/tmp"))
    argv = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size={size[0]},{size[1]}",
        page.as_uri(),
    ]
    proc = subprocess.Popen(
        argv,
        env={**os.environ, "HOME": str(profile), "TMPDIR": str(short or png.parent)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=SHOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        out = ""
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if short is not None:
            shutil.rmtree(short, ignore_errors=True)
    if not png.is_file():
        tail = "\n".join(out.splitlines()[-10:])
        pytest.fail(f"{CHROMIUM} wrote no screenshot (exit {proc.returncode}):\n{tail}")


def rgb(colour: str) -> tuple[int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


@dataclass(frozen=True)
class Shot:
    timeline: Timeline
    svg: ET.Element
    png: Path
    size: tuple[int, int]  # the screenshot's
    pixels: dict[str, int]  # of each colour below, in the lanes
    boxes: dict[str, Box | None]  # where they are
    lanes: dict[tuple[str, str], tuple[int, int]]  # each band's rows (SVG)

    def group(self, *parts: str) -> ET.Element | None:
        """The element drawn with that id (timeline._gid)."""
        want = ":".join(parts)
        return next((e for e in self.svg.iter() if e.get("id") == want), None)

    def texts(self) -> list[str]:
        return ["".join(e.itertext()) for e in self.svg.iter(f"{SVG}text")]

    def explain(self) -> str:
        t = self.timeline
        lines = [f"screenshot {self.png}, migration {t.migration}"]
        for lane in t.lanes:
            events = ", ".join(e.label() for e in lane.events) or "none"
            moves = ", ".join(tr.label() for tr in lane.transitions) or "none"
            lines.append(f"{lane.title}: events {events}; transitions {moves}")
        lines += [f"{k}: {n} px in {self.boxes[k]}" for k, n in self.pixels.items()]
        return "\n".join(lines)


COLOURS = {
    "source band": tl.LANE_BAND[tl.SOURCE],
    "destination band": tl.LANE_BAND[tl.DESTINATION],
    "source bars": tl.LANE_BAR[tl.SOURCE],
    "destination bars": tl.LANE_BAR[tl.DESTINATION],
    "lead": tl.LEAD_COLOUR,
}


def mask(image: Any, colour: str) -> Any:
    """A mask (255 where the pixel is exactly that colour) of an RGB image."""
    from PIL import ImageChops

    r, g, b = (
        band.point(lambda v, want=want: 255 if v == want else 0)
        for band, want in zip(image.split(), rgb(colour), strict=True)
    )
    return ImageChops.multiply(ImageChops.multiply(r, g), b)


def measure(
    png: Path, rows: tuple[int, int]
) -> tuple[tuple[int, int], dict[str, int], dict[str, Box | None]]:
    """The screenshot's size, and how many pixels of each of COLOURS
    there are within `rows` (the lanes: the legend has them too), and
    where."""
    from PIL import Image

    image = Image.open(png).convert("RGB")
    lanes = image.crop((0, rows[0], image.size[0], rows[1] + 1))
    count: dict[str, int] = {}
    boxes: dict[str, Box | None] = {}
    for name, colour in COLOURS.items():
        m = mask(lanes, colour)
        count[name] = m.histogram()[255]
        box = m.getbbox()
        boxes[name] = (
            None
            if box is None
            else (box[0], box[1] + rows[0], box[2] - 1, box[3] - 1 + rows[0])
        )
    return image.size, count, boxes


def path_box(g: ET.Element) -> tuple[float, float, float, float]:
    """The box of a group's first path: left, top, right, bottom."""
    path = g.find(f".//{SVG}path")
    assert path is not None, g.get("id")
    n = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", path.get("d", ""))]
    return min(n[0::2]), min(n[1::2]), max(n[0::2]), max(n[1::2])


def lane_rows(root: ET.Element) -> dict[tuple[str, str], tuple[int, int]]:
    """Each lane's band (side, device) and its rows, from the SVG."""
    out = {}
    for g in root.iter(f"{SVG}g"):
        parts = (g.get("id") or "").split(":")
        if len(parts) == 3 and parts[0] == "band":
            _, top, _, bottom = path_box(g)
            out[(parts[1], parts[2])] = (round(top), round(bottom))
    assert out, "the SVG has no lanes"
    return out


def take(
    qemu: Path,
    fake: Path,
    wire: Wire,
    tmp: Path,
    delay_ms: int,
    devices: int = 1,
) -> Shot:
    browser = _chromium()
    _pillow()
    t = tl.capture(qemu, fake, wire, tmp, delay_ms, devices=devices)
    (tmp / "timeline.json").write_text(t.to_json())
    svg = tl.render_svg(t)
    page = tmp / "timeline.svg"
    page.write_text(svg, encoding="utf-8")
    root = ET.fromstring(svg.encode())
    size = (int(root.get("width", "0")), int(root.get("height", "0")))
    png = tmp / "timeline.png"
    screenshot(browser, page, png, size)
    leads = ", ".join(f"{x.device} {x.ms:.1f} ms" for x in t.leads) or "none"
    print(f"timeline: {png} ({devices} devices, leads {leads}, QEMU's timestamps)")
    lanes = lane_rows(root)
    rows = (min(r[0] for r in lanes.values()), max(r[1] for r in lanes.values()))
    return Shot(t, root, png, *measure(png, rows), lanes)


@pytest.fixture(scope="module")
def shot(
    qemu: Path, fake: Path, wire: Wire, tmp_path_factory: pytest.TempPathFactory
) -> Shot:
    return take(qemu, fake, wire, tmp_path_factory.mktemp("timeline"), DELAY_MS)


@pytest.fixture(scope="module")
def shot8(
    qemu: Path, fake: Path, wire: Wire, tmp_path_factory: pytest.TempPathFactory
) -> Shot:
    tmp = tmp_path_factory.mktemp("timeline8")
    return take(qemu, fake, wire, tmp, DEVICES_DELAY_MS, DEVICES)


def band_rows(s: Shot, lane: str) -> tuple[int, int]:
    box = s.boxes[f"{lane} band"]
    assert box is not None, f"no {lane} lane in the screenshot:\n{s.explain()}"
    return box[1], box[3]


def inside(box: Box | None, rows: tuple[int, int]) -> bool:
    return box is not None and rows[0] <= box[1] and box[3] <= rows[1]


def no_lead(s: Shot) -> None:
    """The control, or a series that lost its notices: nothing may look
    like a lead, and the drawing must say why; then fail saying so."""
    t, why = s.timeline, s.explain()
    assert s.pixels["lead"] == 0, why
    assert not [e for e in s.svg.iter() if (e.get("id") or "").startswith("lead")]
    assert any(tl.NO_NOTICE in text for text in s.texts()), why
    pytest.fail(
        f"no prepare notice ({t.notice}) for {t.quiesce_state} in the "
        f"source's events ({', '.join(e.label() for e in t.source.events)}); "
        f"the timeline draws no lead: {s.png}"
    )


def test_the_timeline_shows_both_sides(shot: Shot) -> None:
    t, why = shot.timeline, shot.explain()
    assert t.migration == "completed", why
    quiesce = t.quiesce()
    assert quiesce is not None and quiesce[0] == tl.SOURCE, why
    move = quiesce[1]
    assert move.source == "PRE_COPY" and move.result == "ok", why
    assert move.end_us is not None
    assert move.end_us - move.begin_us >= DELAY_MS * 1000, why
    assert any(tr.target == "RESUMING" for tr in t.destination.transitions), why
    assert t.source.events and t.destination.events, why

    assert shot.size == (
        int(shot.svg.get("width", "0")),
        int(shot.svg.get("height", "0")),
    )
    src, dst = band_rows(shot, tl.SOURCE), band_rows(shot, tl.DESTINATION)
    assert src[1] < dst[0], f"the source lane is not above the destination:\n{why}"
    for name, rows in ((tl.SOURCE, src), (tl.DESTINATION, dst)):
        assert rows == pytest.approx(shot.lanes[(name, "vfio0")], abs=2), why
        # Most of the band shows, under the labels and lines.
        band_area = (rows[1] - rows[0]) * (tl.WIDTH - tl.LEFT - tl.RIGHT)
        assert shot.pixels[f"{name} band"] > band_area / 2, why
        assert inside(shot.boxes[f"{name} bars"], rows), why
    # The quiesce bar: DELAY_MS of the axis, as tall as a bar.
    span_ms = (t.end_us() - t.origin_us()) / 1000
    px_per_ms = (tl.WIDTH - tl.LEFT - tl.RIGHT - 2 * tl.PAD) / span_ms
    assert shot.pixels["source bars"] >= 0.8 * DELAY_MS * px_per_ms * tl.BAR_H, why
    # The destination's transitions are short: a few narrow bars.
    assert shot.pixels["destination bars"] >= tl.MIN_BAR_W * tl.BAR_H, why


def test_the_timeline_shows_the_lead(shot: Shot) -> None:
    t, why = shot.timeline, shot.explain()
    lead = t.lead
    if lead is None:
        no_lead(shot)
    assert lead is not None
    assert lead.lane == tl.SOURCE, why
    assert lead.ms >= DELAY_MS - SLACK_MS, why
    quiesce = t.quiesce()
    assert quiesce is not None and quiesce[1].end_us is not None, why
    # The notice came before the device was asked to move, the
    # completion after it moved (QEMU's and the fake's clocks).
    assert lead.notice.qemu_us <= quiesce[1].begin_us, why
    assert quiesce[1].end_us <= lead.completion.qemu_us, why
    assert f"lead {lead.ms:.1f} ms" in shot.texts(), why

    line = shot.group("lead-line", tl.SOURCE, lead.device)
    assert line is not None, why
    x1, _, x2, _ = path_box(line)
    box = shot.boxes["lead"]
    assert box is not None, f"no lead in the screenshot:\n{why}"
    assert inside(box, band_rows(shot, tl.SOURCE)), why
    assert abs(box[0] - x1) <= 3 and abs(box[2] - x2) <= 3, why
    # A 3 px line from the notice to the completion (broken by its text,
    # and anti-aliased at its edges), and its ends.
    assert shot.pixels["lead"] >= x2 - x1, why


def runs(column: list[bool]) -> list[tuple[int, int]]:
    """The (first, last) rows of each run of True."""
    out: list[tuple[int, int]] = []
    for y, on in enumerate(column):
        if on and (not out or out[-1][1] != y - 1):
            out.append((y, y))
        elif on:
            out[-1] = (out[-1][0], y)
    return out


def test_eight_devices_a_lane_each_in_the_browser(shot8: Shot) -> None:
    """16 bands in the screenshot, where the SVG put them, in order:
    source vfio0..7, then destination vfio0..7."""
    from PIL import Image

    t, why = shot8.timeline, shot8.explain()
    assert t.migration == "completed", why
    assert t.devices == DEVICES and len(t.lanes) == 2 * DEVICES, why
    for lane in t.lanes:
        assert lane.events and lane.transitions, f"{lane.title}: nothing\n{why}"
    image = Image.open(shot8.png).convert("RGB")
    # Just inside the plot's left edge: the bands, nothing drawn on them.
    x = tl.LEFT + 3
    found = []
    for side in (tl.SOURCE, tl.DESTINATION):
        column = mask(image.crop((x, 0, x + 1, image.size[1])), tl.LANE_BAND[side])
        found += [(side, r) for r in runs([v == 255 for v in column.tobytes()])]
    found.sort(key=lambda item: item[1][0])
    want = sorted(shot8.lanes.items(), key=lambda item: item[1][0])
    assert [side for side, _ in found] == [side for (side, _), _ in want], why
    assert len(found) == 2 * DEVICES, why
    for (side, rows), ((_, device), svg_rows) in zip(found, want, strict=True):
        assert rows == pytest.approx(svg_rows, abs=2), f"{side} {device}\n{why}"


def test_eight_devices_each_show_their_lead_in_the_browser(shot8: Shot) -> None:
    """The lead's colour on every source device's lane (the control:
    on none, and the test fails for lack of notices)."""
    from PIL import Image

    t, why = shot8.timeline, shot8.explain()
    if not t.leads:
        no_lead(shot8)
    image = Image.open(shot8.png).convert("RGB")
    leads = {lead.device: lead for lead in t.leads if lead.lane == tl.SOURCE}
    for (side, device), rows in shot8.lanes.items():
        band = image.crop((0, rows[0], image.size[0], rows[1] + 1))
        pixels = mask(band, tl.LEAD_COLOUR).histogram()[255]
        if side == tl.DESTINATION:
            assert pixels == 0, f"{side} {device}: lead colour\n{why}"
            continue
        assert device in leads, f"no lead for {side} {device}\n{why}"
        lead = leads[device]
        assert lead.ms >= DEVICES_DELAY_MS - SLACK_MS, why
        line = shot8.group("lead-line", side, device)
        assert line is not None, why
        x1, _, x2, _ = path_box(line)
        assert pixels >= x2 - x1, f"{side} {device}: {pixels} px of lead\n{why}"
        assert f"lead {lead.ms:.1f} ms" in shot8.texts(), why
    assert len(leads) == DEVICES, why


def test_staggered_devices_take_k_times_the_delay(
    qemu: Path, fake: Path, wire: Wire, tmp_path: Path
) -> None:
    """capture(stagger=True): source device k's quiesce takes k times
    the delay (the fake's per-group rules), each with its own lead."""
    t = tl.capture(
        qemu, fake, wire, tmp_path, STAGGER_DELAY_MS, devices=3, stagger=True
    )
    why = t.to_json()
    assert t.migration == "completed" and t.stagger, why
    took = []
    for k, lane in enumerate(t.side(tl.SOURCE), start=1):
        move = t.quiesce_of(lane)
        assert move is not None and move.end_us is not None, why
        took.append((move.end_us - move.begin_us) / 1000)
        assert took[-1] >= k * STAGGER_DELAY_MS, f"{lane.title}: {took[-1]} ms"
    # Each a delay longer than the one before (a generous half of it).
    assert all(b - a >= STAGGER_DELAY_MS / 2 for a, b in itertools.pairwise(took)), took
    for k, lead in enumerate(t.leads, start=1):
        assert lead.lane == tl.SOURCE and lead.ms >= k * STAGGER_DELAY_MS - SLACK_MS, (
            why
        )
    assert [x.device for x in t.leads] == [lane.device for lane in t.side(tl.SOURCE)]
