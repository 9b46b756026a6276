"""The timeline of a real migration, as a browser shows it.

One live migration (source -> destination, the source's PRE_COPY ->
PRE_COPY_P2P slowed down by 300 ms) is captured, drawn as SVG and
opened in headless Chromium; the screenshot must show both lanes with
their transitions and, on the series, the lead of the prepare notice
over its completion.  The drawing gives the lane bands, the bars and
the lead colours of their own, so the PNG is checked by counting and
locating the pixels of each colour.

On the control (QEMU without the change) the lanes are drawn all the
same, nothing is drawn in the lead's colour, and the lead test fails
saying "no prepare notice", as every QMP test must there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from qseries.labs.vfio_migration import timeline as tl
from qseries.labs.vfio_migration.plan import Wire
from qseries.labs.vfio_migration.timeline import Timeline

DELAY_MS = 300
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
    pixels: dict[str, int]  # of each colour below
    boxes: dict[str, Box | None]  # where they are

    def element(self, cls: str) -> ET.Element | None:
        return next(
            (e for e in self.svg.iter() if cls in (e.get("class") or "").split()),
            None,
        )

    def texts(self) -> list[str]:
        return ["".join(e.itertext()) for e in self.svg.iter(f"{SVG}text")]

    def explain(self) -> str:
        t = self.timeline
        lines = [f"screenshot {self.png}, migration {t.migration}"]
        for lane in t.lanes:
            events = ", ".join(e.label() for e in lane.events) or "none"
            moves = ", ".join(tr.label() for tr in lane.transitions) or "none"
            lines.append(f"{lane.name}: events {events}; transitions {moves}")
        lines += [f"{k}: {n} px in {self.boxes[k]}" for k, n in self.pixels.items()]
        return "\n".join(lines)


COLOURS = {
    "source band": tl.LANE_BAND[tl.SOURCE],
    "destination band": tl.LANE_BAND[tl.DESTINATION],
    "source bars": tl.LANE_BAR[tl.SOURCE],
    "destination bars": tl.LANE_BAR[tl.DESTINATION],
    "lead": tl.LEAD_COLOUR,
}


def measure(
    png: Path, bottom: int
) -> tuple[tuple[int, int], dict[str, int], dict[str, Box | None]]:
    """The screenshot's size, and how many pixels of each of COLOURS
    there are above `bottom` (the legend below has them too), and where."""
    from PIL import Image, ImageChops

    image = Image.open(png).convert("RGB")
    lanes = image.crop((0, 0, image.size[0], bottom))
    count: dict[str, int] = {}
    boxes: dict[str, Box | None] = {}
    for name, colour in COLOURS.items():
        r, g, b = (
            band.point(lambda v, want=want: 255 if v == want else 0)
            for band, want in zip(lanes.split(), rgb(colour), strict=True)
        )
        mask = ImageChops.multiply(ImageChops.multiply(r, g), b)
        count[name] = mask.histogram()[255]
        box = mask.getbbox()
        boxes[name] = None if box is None else (box[0], box[1], box[2] - 1, box[3] - 1)
    return image.size, count, boxes


def lanes_bottom(root: ET.Element) -> int:
    """Where the last lane's band ends."""
    bands = [e for e in root.iter(f"{SVG}rect") if e.get("class") == "band"]
    assert bands, "the SVG has no lanes"
    return max(
        round(float(e.get("y", "0")) + float(e.get("height", "0"))) for e in bands
    )


@pytest.fixture(scope="module")
def shot(
    qemu: Path, fake: Path, wire: Wire, tmp_path_factory: pytest.TempPathFactory
) -> Shot:
    browser = _chromium()
    _pillow()
    tmp = tmp_path_factory.mktemp("timeline")
    t = tl.capture(qemu, fake, wire, tmp, DELAY_MS)
    (tmp / "timeline.json").write_text(t.to_json())
    svg = tl.render_svg(t)
    page = tmp / "timeline.svg"
    page.write_text(svg, encoding="utf-8")
    root = ET.fromstring(svg.encode())
    size = (int(root.get("width", "0")), int(root.get("height", "0")))
    png = tmp / "timeline.png"
    screenshot(browser, page, png, size)
    lead = "none" if t.lead_ms is None else f"{t.lead_ms:.1f} ms"
    print(f"timeline: {png} (lead {lead}, QEMU's timestamps)")
    return Shot(t, root, png, *measure(png, lanes_bottom(root)))


def band_rows(s: Shot, lane: str) -> tuple[int, int]:
    box = s.boxes[f"{lane} band"]
    assert box is not None, f"no {lane} lane in the screenshot:\n{s.explain()}"
    return box[1], box[3]


def inside(box: Box | None, rows: tuple[int, int]) -> bool:
    return box is not None and rows[0] <= box[1] and box[3] <= rows[1]


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
        # Most of the band shows, under the labels and lines.
        band_area = (rows[1] - rows[0]) * (shot.size[0] - 16)
        assert shot.pixels[f"{name} band"] > band_area / 2, why
        assert inside(shot.boxes[f"{name} bars"], rows), why
    # The quiesce bar: DELAY_MS of the axis, as tall as a bar.
    width = float(shot.svg.get("width", "0"))
    span_ms = (t.end_us() - t.origin_us()) / 1000
    px_per_ms = (width - tl.LEFT - tl.RIGHT - 2 * tl.PAD) / span_ms
    assert shot.pixels["source bars"] >= 0.8 * DELAY_MS * px_per_ms * tl.BAR_H, why
    # The destination's transitions are short: a few narrow bars.
    assert shot.pixels["destination bars"] >= tl.MIN_BAR_W * tl.BAR_H, why


def test_the_timeline_shows_the_lead(shot: Shot) -> None:
    t, why = shot.timeline, shot.explain()
    lead = t.lead
    if lead is None:
        # The control, or a series that lost its notice: nothing may
        # look like a lead, and the drawing must say why.
        assert shot.pixels["lead"] == 0, why
        assert shot.element("lead") is None, why
        assert any(tl.NO_NOTICE in text for text in shot.texts()), why
        pytest.fail(
            f"no prepare notice ({t.notice}) for {t.quiesce_state} in the "
            f"source's events ({', '.join(e.label() for e in t.source.events)}); "
            f"the timeline draws no lead: {shot.png}"
        )
    assert lead.lane == tl.SOURCE, why
    assert lead.ms >= DELAY_MS - SLACK_MS, why
    quiesce = t.quiesce()
    assert quiesce is not None and quiesce[1].end_us is not None, why
    # The notice came before the device was asked to move, the
    # completion after it moved (QEMU's and the fake's clocks).
    assert lead.notice.qemu_us <= quiesce[1].begin_us, why
    assert quiesce[1].end_us <= lead.completion.qemu_us, why
    assert f"lead {lead.ms:.1f} ms" in shot.texts(), why

    line = shot.element("lead-line")
    assert line is not None, why
    x1, x2 = float(line.get("x1", "nan")), float(line.get("x2", "nan"))
    box = shot.boxes["lead"]
    assert box is not None, f"no lead in the screenshot:\n{why}"
    assert inside(box, band_rows(shot, tl.SOURCE)), why
    assert abs(box[0] - x1) <= 3 and abs(box[2] - x2) <= 3, why
    # A 3 px line from the notice to the completion (broken by its text,
    # and anti-aliased at its edges), and its ends.
    assert shot.pixels["lead"] >= x2 - x1, why
