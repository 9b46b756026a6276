"""diff: a set of hunks carried as it is, applied with git.

The hunks are a git diff beside series.yaml ('patch:'), applied by the
commit builder with git apply onto the patch's index: new, deleted,
renamed and binary files work as git knows them.  On a base the hunks
no longer fit, the builder says which file and which hunk (conflict()
reads git apply's own words).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ...ground.errors import AnchorError
from . import Context, Files, Generator, Reader, Reads

HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@", re.M)


def _reads(params: Mapping[str, str]) -> Reads:
    return (), (params["patch"],)


def _hunks(ctx: Context) -> str:
    return ctx.templates.read(ctx.param("patch"))


def _apply(read: Reader, ctx: Context) -> Files:
    raise AnchorError(  # the builder applies the hunks with git instead
        "the diff kind is applied with git, not as files",
        "apply it through qseries generate",
    )


def _sections(diff: str) -> dict[str, str]:
    """The text of each file's part of a git diff, by both of its names."""
    out: dict[str, str] = {}
    parts = re.split(r"^(?=diff --git )", diff, flags=re.M)
    for part in parts:
        m = re.match(r"diff --git a/(\S+) b/(\S+)", part)
        if m:
            out.setdefault(m[1], part)
            out.setdefault(m[2], part)
    return out


def conflict(diff: str, stderr: str) -> str:
    """What git apply could not do, as 'FILE: what' naming the hunk."""
    failed = re.search(r"patch failed: (.+):(\d+)$", stderr, re.M)
    if failed:
        path, line = failed[1], int(failed[2])
        section = _sections(diff).get(path, "")
        headers = list(HUNK.finditer(section))
        header = next((h for h in headers if int(h[1]) == line), None)
        if header is None and headers:
            header = headers[0]
        shown = header[0] if header else f"at line {line}"
        return f"{path}: hunk {shown} does not apply"
    for pattern, what in (
        (
            r"error: (.+): already exists in (?:index|working directory)",
            "is added by the patch but exists in the base",
        ),
        (
            r"error: (.+): does not exist in index",
            "is changed by the patch but the base has no such file",
        ),
        (
            r"error: (?:cannot apply )?binary patch (?:does not apply )?to '(.+)'",
            "binary hunk does not apply",
        ),
    ):
        m = re.search(pattern, stderr, re.M)
        if m:
            return f"{m[1]}: {what}"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return lines[-1].removeprefix("error: ") if lines else "git apply failed"


KIND = Generator(
    "diff",
    "apply a set of hunks (a git diff beside series.yaml) with git",
    _apply,
    ("patch",),
    reads=_reads,
    hunks=_hunks,
)
