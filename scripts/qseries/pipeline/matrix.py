"""matrix: reproduce one version on every base it can meet.

The bases are the newest Debian qemu source package of each QEMU line
(MAJOR.MINOR) in the version's base range, and of every line above it:
a series that QEMU merged shows up there as "already in this base"
rather than as a conflict.  Trees given with --tree are added.  Each
base gets the whole pipeline and a report directory of its own; one
base failing (or not downloading) does not stop the others.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..core.results import FAIL, SKIP
from ..core.series import Version
from ..core.versions import upstream_of_debian
from ..ground.console import say
from ..ground.errors import QSeriesError
from ..ground.workdir import WorkDir
from ..qemu import check
from ..qemu.source import Apt, SourceSpec, Unavailable, versions_newest_first
from . import stages as pipeline

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
    # A base the version must work on (in its range, or a --tree); one
    # above the range only shows whether QEMU merged the series.
    required: bool = True

    def to_json(self) -> dict[str, object]:
        return {
            "base": self.base,
            "required": self.required,
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


@dataclass(frozen=True)
class Base:
    label: str  # for people: "Debian 1:10.2.2+ds-1", "--tree PATH"
    spec: SourceSpec
    required: bool  # see Row.required


def bases(
    workdir: WorkDir,
    version: Version,
    trees: Sequence[Path],
    refresh: bool,
    debian: bool = True,
) -> list[Base]:
    """What to run on."""
    out = []
    if debian:
        apt = Apt(workdir)
        apt.update(refresh)
        out += [
            Base(
                f"Debian {v}",
                SourceSpec(base_version=v),
                upstream_of_debian(v) in version.base,
            )
            for v in debian_bases(apt.source_versions("qemu"), version)
        ]
    out += [Base(f"--tree {t}", SourceSpec(tree=t), True) for t in trees]
    return out


def report_dir(workdir: WorkDir, version: str, label: str) -> Path:
    """Where the matrix keeps one base's reports."""
    name = re.sub(r"[^\w.+-]+", "_", label).strip("_")[-80:]
    return workdir.path / "reports" / "matrix" / f"{version}-{name}"


def _row(base: Base, outcome: pipeline.Outcome, seconds: float) -> Row:
    results = outcome.results
    where = outcome.report_dir
    failed = [r for r in results if r.status == FAIL]
    skipped = sum(r.status == SKIP for r in results)
    counts = f"{len(results) - len(failed) - skipped} passed, {skipped} skipped"
    applied = next((r for r in results if r.name == "apply"), None)
    if applied is not None and applied.detail == check.ALREADY and not failed:
        return Row(base.label, ALREADY, applied.detail, where, seconds, base.required)
    if applied is not None and applied.status == FAIL:
        # The conflict: which patch, file and hunk.
        detail = applied.detail + (f": {applied.items[0]}" if applied.items else "")
        return Row(base.label, FAIL, detail, where, seconds, base.required)
    if failed:
        first = failed[0]
        detail = f"{len(failed)} failed ({first.name}: {first.detail}); {counts}"
        return Row(base.label, FAIL, detail, where, seconds, base.required)
    return Row(base.label, "pass", counts, where, seconds, base.required)


def run(
    request: pipeline.Request,
    workdir: WorkDir,
    targets: Sequence[Base],
    run_one: Callable[[pipeline.Request, WorkDir], pipeline.Outcome] = pipeline.run,
) -> list[Row]:
    """The request on each base, with a report directory per base."""
    rows = []
    version = request.version or "newest"
    for base in targets:
        say(f"matrix: {base.label}")
        started = time.monotonic()
        where = report_dir(workdir, version, base.label)
        one = replace(request, spec=replace(base.spec, refresh=False), report_dir=where)
        try:
            outcome = run_one(one, workdir)
        except Unavailable as err:
            rows.append(
                Row(base.label, UNAVAILABLE, str(err), None, 0.0, base.required)
            )
            continue
        except QSeriesError as err:
            line = str(err).splitlines()[0] if str(err) else type(err).__name__
            kept = where if (where / "report.json").is_file() else None
            seconds = time.monotonic() - started
            rows.append(Row(base.label, FAIL, line, kept, seconds, base.required))
            continue
        rows.append(_row(base, outcome, time.monotonic() - started))
    return rows


def passed(rows: Sequence[Row]) -> bool:
    """At least one base ran; none failed; every base the version must
    work on was there (one above its range may be missing)."""
    return bool(rows) and all(
        r.verdict != FAIL and not (r.verdict == UNAVAILABLE and r.required)
        for r in rows
    )


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
