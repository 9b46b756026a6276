"""matrix: reproduce one version on every base it can meet.

The bases are the newest Debian qemu source package of each QEMU line
(MAJOR.MINOR) in the version's base range, and of every line above it:
a series that QEMU merged shows up there as "already in this base"
rather than as a conflict.  Trees given with --tree are added.  Each
base gets the whole pipeline and a report directory of its own; one
base failing (or not downloading) does not stop the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from . import check, pipeline
from .errors import QSeriesError
from .report import FAIL, SKIP
from .series import Version
from .source import Apt, SourceSpec, Unavailable, WorkDir, say, versions_newest_first
from .versions import upstream_of_debian

# A row's verdict, besides pass and FAIL.
ALREADY = "already in this base"
UNAVAILABLE = "not available"


@dataclass(frozen=True)
class Row:
    base: str  # how the base was asked for: a Debian version or a tree
    verdict: str  # "pass", "FAIL", ALREADY or UNAVAILABLE
    detail: str  # counts, or the one line that ended the run
    report_dir: Path | None
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "base": self.base,
            "verdict": self.verdict,
            "detail": self.detail,
            "report_dir": str(self.report_dir) if self.report_dir else None,
            "seconds": round(self.seconds, 1),
        }


def debian_bases(available: Sequence[str], version: Version) -> list[str]:
    """The newest Debian version of each QEMU line in the version's base
    range or above it, newest line first."""
    lines: dict[tuple[int, int], str] = {}
    for debian in versions_newest_first(list(available)):
        upstream = upstream_of_debian(debian)
        line = (upstream.major, upstream.minor)
        if line in lines:
            continue
        above = version.base.upper is not None and upstream >= version.base.upper
        if upstream in version.base or above:
            lines[line] = debian
    return list(lines.values())


def bases(
    workdir: WorkDir,
    version: Version,
    trees: Sequence[Path],
    refresh: bool,
    debian: bool = True,
) -> list[tuple[str, SourceSpec]]:
    """What to run on: (label, how to get it)."""
    out = []
    if debian:
        apt = Apt(workdir)
        apt.update(refresh)
        out += [
            (f"Debian {v}", SourceSpec(base_version=v))
            for v in debian_bases(apt.source_versions("qemu"), version)
        ]
    out += [(f"--tree {t}", SourceSpec(tree=t)) for t in trees]
    return out


def _row(label: str, outcome: pipeline.Outcome, seconds: float) -> Row:
    results = outcome.results
    applied = next((r for r in results if r.name == "apply"), None)
    if applied is not None and applied.detail == check.ALREADY:
        return Row(label, ALREADY, applied.detail, outcome.report_dir, seconds)
    failed = [r for r in results if r.status == FAIL]
    skipped = sum(r.status == SKIP for r in results)
    counts = f"{len(results) - len(failed) - skipped} passed, {skipped} skipped"
    if failed:
        first = failed[0]
        detail = f"{len(failed)} failed ({first.name}: {first.detail}); {counts}"
        return Row(label, FAIL, detail, outcome.report_dir, seconds)
    return Row(label, "pass", counts, outcome.report_dir, seconds)


def run(
    request: pipeline.Request,
    workdir: WorkDir,
    targets: Sequence[tuple[str, SourceSpec]],
    run_one: Callable[[pipeline.Request, WorkDir], pipeline.Outcome] = pipeline.run,
) -> list[Row]:
    """The request on each base, with a report directory per base."""
    import time

    rows = []
    for label, spec in targets:
        say(f"matrix: {label}")
        started = time.monotonic()
        one = replace(request, spec=replace(spec, refresh=False), report_dir=None)
        try:
            outcome = run_one(one, workdir)
        except Unavailable as err:
            rows.append(Row(label, UNAVAILABLE, str(err), None, 0.0))
            continue
        except QSeriesError as err:
            rows.append(Row(label, FAIL, str(err), None, time.monotonic() - started))
            continue
        rows.append(_row(label, outcome, time.monotonic() - started))
    return rows


def passed(rows: Sequence[Row]) -> bool:
    """Every base passed, or already has the series, or was not there."""
    return all(r.verdict != FAIL for r in rows)


def table(version: str, rows: Sequence[Row]) -> str:
    width = max([len("base"), *(len(r.base) for r in rows)])
    vwidth = max([len("result"), *(len(r.verdict) for r in rows)])
    lines = [f"{'base':<{width}}  {'result':<{vwidth}}  detail"]
    for r in rows:
        lines.append(f"{r.base:<{width}}  {r.verdict:<{vwidth}}  {r.detail}")
        if r.report_dir is not None:
            lines.append(f"{'':<{width}}  {'':<{vwidth}}  reports: {r.report_dir}")
    bad = sum(r.verdict == FAIL for r in rows)
    lines.append("")
    lines.append(
        f"{version}: {bad} of {len(rows)} bases failed"
        if bad
        else f"{version}: no base failed ({len(rows)} bases)"
    )
    return "\n".join(lines)
