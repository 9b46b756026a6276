"""The import and init commands: a series folder from what a maintainer
has (a branch, a thread), or a skeleton to write one by hand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..ground import atomic
from ..ground.errors import UsageError
from ..ground.workdir import WorkDir
from ..mail import importer
from . import graph, views
from .stages import Request, options


@dataclass(frozen=True)
class Import:
    to: Path  # SERIESDIR
    tree: Path | None  # the user's checkout (read only)
    rng: str | None  # BASE..TOPIC of tree
    mbox: Path | None  # a mailed thread


@dataclass(frozen=True)
class Init:
    to: Path


def run_import(request: Request, workdir: WorkDir) -> views.View:
    how = options(request, Import)
    found: list[importer.Imported] = []

    def step() -> None:
        if how.mbox is not None:
            found.append(importer.import_mbox(workdir, how.mbox, how.to, how.tree))
        else:
            assert how.tree is not None and how.rng is not None
            found.append(importer.import_branch(workdir, how.tree, how.rng, how.to))

    graph.execute(graph.GENERIC.order({"import"}), {"import": step})
    done = found[0]
    tree = f" --tree {how.tree}" if how.tree is not None else ""
    lines = [
        f"imported {done.patches} patch(es) as {done.version} into {done.series_file}"
        + (f" (base-commit {done.base_commit[:12]})" if done.base_commit else ""),
        *(f"note: {n}" for n in done.notes),
        f"next: qseries --series-file {done.series_file} generate{tree}",
    ]
    value = {
        "series_file": str(done.series_file),
        "version": done.version,
        "patches": done.patches,
        "base_commit": done.base_commit,
        "notes": list(done.notes),
    }
    return views.Lines(lines, value)


SKELETON = """\
# A series of qseries: edit it, then run `qseries -C {folder} generate`.
# The keys are in docs/series-schema.md, the kinds of change in
# docs/kinds.md.  `qseries import` writes one from a branch or a thread.
schema: 2
subject-prefix: PATCH
versions:
  v1:
    author: "{author}"    # also the Signed-off-by of each patch
    date: "{date}"   # fixed, so that the mails are the same each time
    # The QEMU releases the series applies to: name yours.  Debian's
    # package of the newest one is fetched; --tree PATH takes your
    # checkout instead.
    base: ">=10.2, <11"
    cover:
      subject: "area: What the series does"
      body: |
        Why the change is needed, and what it does.
    patches:
      - subject: "docs/devel: Say what the series adds"
        body: |
          The commit message: why, then what.
        changes:
          # A new file, taken as it is from beside series.yaml.  Other
          # kinds: diff (a git diff), qapi, c-edit (docs/kinds.md).
          - kind: carry
            file: docs/devel/my-change.rst
            source: my-change.rst
"""

EXAMPLE = """\
My change
=========

What the series adds, for a reader of QEMU's developer documentation.
"""


def run_init(request: Request, workdir: WorkDir) -> views.View:
    how = options(request, Init)
    written: list[Path] = []

    def step() -> None:
        to = how.to
        if to.exists() and (not to.is_dir() or any(to.iterdir())):
            raise UsageError(
                f"init {to}: exists and is not an empty folder",
                "name a new folder for the series",
            )
        to.mkdir(parents=True, exist_ok=True)
        date = datetime.now(UTC).replace(microsecond=0).isoformat()
        text = SKELETON.format(
            folder=to, author="Your Name <you@example.org>", date=date
        )
        atomic.write_text(to / "my-change.rst", EXAMPLE)
        atomic.write_text(to / "series.yaml", text)
        written.extend([to / "series.yaml", to / "my-change.rst"])

    graph.execute(graph.GENERIC.order({"init"}), {"init": step})
    lines = [f"wrote {p}" for p in written]
    lines.append(f"next: edit {written[0]}, then: qseries -C {how.to} generate")
    return views.Lines(lines, {"written": [str(p) for p in written]})
