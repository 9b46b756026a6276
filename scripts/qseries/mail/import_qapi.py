"""QAPI additions of an imported patch, as qapi changes that regenerate it.

A patch that only adds whole definitions to a QAPI module is kept as
`qapi` changes ('add: definitions', after the definition that precedes
each addition, or at the end of the module), with the added text, as
written, as their templates: on a new base the additions find their
place by name, not by line.  Such changes are proposed only when the
core's qapi kind itself, applied to the module before the patch, gives
the module after it byte for byte; anything else stays a diff, and the
importer says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jinja2

from ..core.generators import Context, Files, qapi
from ..core.generators.qapi import Definition, definitions
from ..core.templates import Templates
from ..ground.errors import AnchorError, QSeriesError

# What an 'add: definitions' template may hold.
ADDABLE = ("event", "command", "struct", "union", "enum", "alternate")
JINJA_OPENERS = ("{{", "{%", "{#")


@dataclass(frozen=True)
class QapiEdit:
    """One qapi change: its keys in series.yaml and its template's text."""

    params: dict[str, str]
    template: str


@dataclass(frozen=True)
class QapiChange:
    """The qapi changes that regenerate a module, applied in this order."""

    edits: tuple[QapiEdit, ...]


@dataclass(frozen=True)
class _Run:
    """Definitions the patch adds together, after `anchor` (of old)."""

    anchor: str  # its key
    added: list[Definition]


def _keyed(text: str) -> dict[str, Definition]:
    """The module's expressions in order, by kind and name (a pragma, which
    has no name, by its kind and rank: 'pragma', 'pragma 2')."""
    found: dict[str, Definition] = {}
    for d in definitions(text):
        if d.name:
            key = f"{d.meta} {d.name}"
            if key in found:
                raise ValueError(f"{d.name} is there twice")
        else:
            m = re.match(r"\{\s*'([\w-]+)'", text[d.start : d.end])
            key = word = m[1] if m else "expression"
            rank = 2
            while key in found:
                key, rank = f"{word} {rank}", rank + 1
        found[key] = d
    return found


def _whole(d: Definition, text: str) -> str:
    """The definition with its doc comment."""
    return text[d.doc[0] if d.doc else d.start : d.end]


def _template(text: str) -> str | None:
    """The template whose rendering is `text`; None if it cannot be."""
    if "endraw" in text:
        return None
    if any(opener in text for opener in JINJA_OPENERS):
        return "{% raw %}" + text + "{% endraw %}\n"
    return text + "\n"


def _name(path: str, first: Definition) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", first.name.lower()).strip("-")
    return f"qapi/{PurePosixPath(path).stem}-{slug}.json.j2"


def regenerate(path: str, old: str, edits: tuple[QapiEdit, ...]) -> str:
    """The module the core's qapi kind makes of `old` with these edits."""
    templates = Templates(Path("qapi-import"))
    templates.env.loader = jinja2.DictLoader(
        {e.params["template"]: e.template for e in edits}
    )
    text = old
    for edit in edits:
        qapi.KIND.check(edit.params)
        ctx = Context("", "the tree before the patch", templates, edit.params)

        def read(p: str, current: str = text) -> str:
            if p != path:
                raise AnchorError(f"{p} is not the module imported", path)
            return current

        files: Files = qapi.KIND.apply(read, ctx)
        result = files[path]
        assert result is not None, "the qapi kind does not delete"
        text = result
    return text


def _place(
    path: str,
    old: tuple[str, dict[str, Definition]],
    new: tuple[str, dict[str, Definition]],
    runs: list[_Run],
    end: bool,
) -> tuple[QapiEdit, ...] | None:
    """One edit per run: what `new` has between its anchor and the old
    text that follows it (blank lines around it left to the kind, which
    the check of the bytes judges).  With `end`, the last run goes at the
    end of the module (it must follow the last definition).  None if a
    run cannot be written so."""
    (before, olds), (after, news) = old, new
    edits: list[QapiEdit] = []
    for i, run in enumerate(runs):
        anchor = olds[run.anchor]
        at_old, at_new = anchor.end, news[run.anchor].end
        if i + 1 < len(runs):
            nxt = runs[i + 1].anchor
            next_old, next_new = olds[nxt].end, news[nxt].end
        else:
            next_old, next_new = len(before), len(after)
        params = {"file": path, "add": "definitions"}
        if end and i + 1 == len(runs):
            if run.anchor != list(olds)[-1]:
                return None
            at_new += len(before[at_old:].rstrip("\n"))
        elif anchor.name:
            params["after"] = anchor.name
            next_new -= len(before[at_old:next_old].lstrip("\n"))
        else:
            return None
        template = _template(after[at_new:next_new].strip("\n"))
        if template is None:
            return None
        params["template"] = _name(path, run.added[0])
        edits.append(QapiEdit(params, template))
    return tuple(edits)


def _where(got: str, want: str) -> str:
    """Where the regenerated module first differs from the patched one."""
    i = next(
        (n for n, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
        min(len(got), len(want)),
    )
    line = want.count("\n", 0, i) + 1
    if re.sub(r"\s+", "", got) == re.sub(r"\s+", "", want):
        return f"blank lines around the addition, line {line}"
    return f"text around the addition, line {line}"


def as_qapi(path: str, old: str, new: str) -> QapiChange | str:
    """The qapi changes that turn `old` into `new` (a QAPI module before and
    after a patch), or why the patch's change to it stays a diff."""
    if old == new:
        return f"{path}: the patch does not change it"
    try:
        old_by, new_by = _keyed(old), _keyed(new)
    except ValueError as err:
        return f"{path}: cannot read its QAPI expressions ({err})"
    for k, d in old_by.items():
        twin = new_by.get(k)
        if twin is None:
            return f"{path}: the patch removes a definition ({d.name or k})"
        if _whole(twin, new) != _whole(d, old):
            return f"{path}: the patch changes an existing definition ({d.name or k})"
    kept = [k for k in new_by if k in old_by]
    for k, was in zip(kept, old_by, strict=True):
        if k != was:
            return f"{path}: the patch moves a definition ({new_by[k].name or k})"
    runs: list[_Run] = []
    anchor: str | None = None
    for k, d in new_by.items():
        if k in old_by:
            anchor = k
        elif d.meta not in ADDABLE:
            what = f"an {d.meta}" if d.meta else "an expression"
            return f"{path}: the patch adds {what} ({d.name or k})"
        elif anchor is None:
            return f"{path}: the patch adds {d.name} before the first definition"
        elif runs and runs[-1].anchor == anchor:
            runs[-1].added.append(d)
        else:
            runs.append(_Run(anchor, [d]))
    if not runs:
        return f"{path}: the patch changes only text between definitions"
    regenerated: str | None = None
    for end in (True, False):
        edits = _place(path, (old, old_by), (new, new_by), runs, end)
        if edits is None:
            continue
        try:
            regenerated = regenerate(path, old, edits)
        except QSeriesError as err:
            return f"{path}: the qapi kind refuses the addition ({err})"
        if regenerated == new:
            return QapiChange(edits)
    if regenerated is None:
        return f"{path}: the addition cannot be written as a template"
    where = _where(regenerated, new)
    return f"{path}: regenerating would not give the same bytes ({where})"
