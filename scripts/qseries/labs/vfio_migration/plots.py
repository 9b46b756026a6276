"""plots: the lab's pictures drawn with matplotlib, as SVG.

One setup for every picture (the timeline's and the bench report's), so
that each is a self-contained SVG document (no scripts, no external
resources, text kept as text) and the same input gives the same bytes.
matplotlib is imported only by the functions that draw: importing the
lab stays fast.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Pixels: the figure's dpi is 72, so one point of matplotlib is one pixel
# of the SVG (whose size render() gives in pixels, not points).
DPI = 72
# The fonts matplotlib ships (and measures with); the SVG names them,
# then the generic family, for the browser.
MONO = ["DejaVu Sans Mono"]
SANS = ["DejaVu Sans"]
TEXT = "#111827"
MUTED = "#4b5563"
GRID = "#d1d5db"

RC: dict[str, Any] = {
    "svg.fonttype": "none",  # text stays text: searchable, and small
    "svg.hashsalt": "qseries",  # ids from the content, not from chance
    "svg.id": "qseries",
    "font.family": "monospace",
    "font.monospace": MONO,
    "font.sans-serif": SANS,
    "font.size": 12,
    "text.color": TEXT,
    "axes.edgecolor": TEXT,
    "axes.labelcolor": TEXT,
    "xtick.color": TEXT,
    "ytick.color": TEXT,
    "path.simplify": False,
}
# No creator, date or format block: they vary, and name URLs.
METADATA: dict[str, str | None] = {
    "Creator": None,
    "Date": None,
    "Format": None,
    "Type": None,
}


@contextmanager
def style() -> Iterator[None]:
    """matplotlib's settings for our SVGs, for the block only."""
    import matplotlib

    # cast: matplotlib types each key by name; RC's are checked at run time.
    with matplotlib.rc_context(cast(Any, RC)):
        yield


def figure(width_px: float, height_px: float) -> Figure:
    """A figure of that many pixels, on the SVG canvas (no Agg)."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasSVG(fig)
    return fig


_DOCTYPE = re.compile(r"<!DOCTYPE[^>]*>\s*")
_SIZE = re.compile(r'(<svg\b[^>]*?\b(?:width|height)=")([0-9.]+)pt"')


def render(fig: Figure) -> str:
    """The figure as an SVG document, sized in pixels, without the DTD
    reference matplotlib writes (a URL nobody needs to fetch)."""
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata=METADATA)
    svg = _DOCTYPE.sub("", out.getvalue(), count=1)
    for _ in range(2):  # width, then height
        svg = _SIZE.sub(r'\g<1>\g<2>"', svg, count=1)
    return svg


def text_width(text: str, size: float, bold: bool = False, mono: bool = True) -> float:
    """The width in pixels of one line of text in our fonts, as
    matplotlib measures it (the browser draws the same font)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    prop = FontProperties(
        family=MONO if mono else SANS,
        size=size,
        weight="bold" if bold else "normal",
    )
    width, _, _ = text_to_path.get_text_width_height_descent(text, prop, ismath=False)
    return float(width) * DPI / 72


# The bench report's plot.

SERIES_COLOURS = ("#2557d6", "#e0115f", "#0d8a5b", "#f59e0b", "#6d28d9", "#374151")
GOAL_MARGIN_MS = 5.0  # the lead's goal: T - 5 ms


def _value(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def plot_growth(rows: Sequence[Mapping[str, Any]]) -> str:
    """The smallest per-device lead and the switchover time against the
    number of devices, one series per injected delay T, with the goals
    (T - 5 ms; N*T and the bound) drawn; an SVG document.

    rows: {"devices": N, "delay_ms": T, "min_lead_ms": float or None,
    "switchover_ms": float or None, "bound_ms": float}; a missing figure
    (no notice, a failed run) is left out of its series.
    """
    by_delay: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_delay.setdefault(int(row["delay_ms"]), []).append(row)
    devices = sorted({int(row["devices"]) for row in rows})
    with style():
        fig = figure(1100, 460)
        lead_ax, switch_ax = fig.subplots(1, 2)
        fig.subplots_adjust(left=0.07, right=0.98, top=0.86, bottom=0.25, wspace=0.22)
        fig.suptitle(
            "VFIO devices per side: the prepare notice's lead and the switchover",
            fontsize=14,
            fontweight="bold",
            x=0.01,
            ha="left",
        )
        for i, (delay, series) in enumerate(sorted(by_delay.items())):
            colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
            series = sorted(series, key=lambda r: int(r["devices"]))
            ns = [int(r["devices"]) for r in series]
            leads = [(int(r["devices"]), _value(r, "min_lead_ms")) for r in series]
            points = [(n, v) for n, v in leads if v is not None]
            lead_ax.plot(
                [n for n, _ in points],
                [v for _, v in points],
                marker="o",
                color=colour,
                label=f"T = {delay} ms: smallest lead",
                gid=f"lead-points-T{delay}",
            )
            lead_ax.axhline(
                delay - GOAL_MARGIN_MS,
                color=colour,
                linestyle="--",
                linewidth=1,
                label=f"T = {delay} ms: goal T \u2212 {GOAL_MARGIN_MS:g} = "
                f"{delay - GOAL_MARGIN_MS:g} ms",
                gid=f"lead-goal-T{delay}",
            )
            switches = [(int(r["devices"]), _value(r, "switchover_ms")) for r in series]
            points = [(n, v) for n, v in switches if v is not None]
            switch_ax.plot(
                [n for n, _ in points],
                [v for _, v in points],
                marker="o",
                color=colour,
                label=f"T = {delay} ms: switchover",
                gid=f"switchover-points-T{delay}",
            )
            switch_ax.plot(
                ns,
                [n * delay for n in ns],
                color=colour,
                linestyle=":",
                linewidth=1,
                label=f"T = {delay} ms: N\u00b7T",
                gid=f"switchover-nt-T{delay}",
            )
            switch_ax.plot(
                ns,
                [float(r["bound_ms"]) for r in series],
                color=colour,
                linestyle="--",
                linewidth=1,
                label=f"T = {delay} ms: bound 1.05\u00b7N\u00b7T + 20",
                gid=f"switchover-bound-T{delay}",
            )
        for ax, title, ylabel in (
            (lead_ax, "smallest per-device lead (higher is better)", "lead (ms)"),
            (
                switch_ax,
                "switchover: first notice \u2192 last completion (lower is better)",
                "time (ms)",
            ),
        ):
            ax.set_title(title, fontsize=12, loc="left")
            ax.set_xlabel("devices per side (N)")
            ax.set_ylabel(ylabel)
            if devices and devices[-1] > 2 * max(devices[0], 1):
                ax.set_xscale("log", base=2)
            ax.set_xticks(devices, [str(n) for n in devices])
            ax.minorticks_off()
            ax.set_ylim(bottom=0)
            ax.grid(color=GRID, linewidth=0.8)
            ax.legend(
                loc="upper center",
                bbox_to_anchor=(0.5, -0.16),
                ncols=2,
                fontsize=9,
                frameon=False,
            )
        return render(fig)
