"""Kinds of change: each a generator that turns base files into new ones.

A generator is a pure function of the files it reads (from the tree the
patch applies to, as earlier changes of the patch left it) and of the
files beside series.yaml; it returns the new contents, None for a file it
deletes.  What it edits (files, functions, definitions, anchors) is data
of the series, its 'with:' keys: no kind here names a file or a symbol of
QEMU.  It finds its place by C or QAPI structure, not by line numbers,
and refuses (AnchorError naming the file, the anchor and the base)
rather than write a file it is not sure about.

A kind applied by git instead (diff) gives the hunks to apply; the
commit builder runs git apply on them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ...ground.errors import AnchorError
from ..templates import Templates

Reader = Callable[[str], str]
# What a change makes of the tree: new contents by path, None to delete.
Files = dict[str, str | None]
Reads = tuple[tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True)
class Context:
    since: str  # the QAPI 'Since:' of new definitions
    base: str  # a description of the base, for messages
    templates: Templates
    # The change's keys in series.yaml: what the generator edits is data
    # of the version, not of the code.
    params: Mapping[str, str] = field(default_factory=dict)

    def param(self, name: str) -> str:
        return self.params[name]

    def get(self, name: str, default: str = "") -> str:
        return self.params.get(name, default)


class BadKey(ValueError):
    """What is wrong with a change's keys, at the key to blame if any."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def _no_reads(params: Mapping[str, str]) -> Reads:
    return (), ()


def _no_check(params: Mapping[str, str]) -> None:
    return None


@dataclass(frozen=True)
class Generator:
    name: str
    summary: str
    apply: Callable[[Reader, Context], Files]
    params: tuple[str, ...] = ()  # required keys of 'with:'
    optional: tuple[str, ...] = ()  # optional keys of 'with:'
    # The files beside series.yaml a change of this kind reads, from its
    # keys: (templates it renders, files it takes verbatim).  What its
    # results depend on, besides the base; the loader refuses any of them
    # that is not inside the series' folder.
    reads: Callable[[Mapping[str, str]], Reads] = _no_reads
    # Keys whose value is a path in QEMU's tree (checked when loaded).
    paths: tuple[str, ...] = ()
    # Checks of the keys together, when series.yaml is loaded: raises
    # ValueError (BadKey to name the key) with what is wrong.
    check: Callable[[Mapping[str, str]], None] = _no_check
    # A kind applied by git: the hunks (a git diff) to apply; apply is
    # then not called.
    hunks: Callable[[Context], str] | None = None


def template_reads(params: Mapping[str, str]) -> Reads:
    """A change that renders its 'template' key, if it has one."""
    return ((params["template"],) if "template" in params else ()), ()


def absent(read: Reader, path: str, ctx: Context) -> None:
    """Refuse to add a file the base has already."""
    try:
        read(path)
    except AnchorError:
        return
    raise AnchorError(
        f"{path} exists in {ctx.base} already", "is the series applied already?"
    )


def exists(read: Reader, path: str, ctx: Context) -> str:
    """The text of a file the change edits; refused when it is missing."""
    try:
        return read(path)
    except AnchorError:
        raise AnchorError(
            f"{path} is missing in {ctx.base}",
            "the change edits it; check the path, or pick another base",
        ) from None


def one_of(params: Mapping[str, str], keys: tuple[str, ...]) -> str:
    """The one key of `keys` that params has; ValueError otherwise."""
    found = [k for k in keys if k in params]
    if len(found) != 1:
        raise BadKey("needs exactly one of: " + ", ".join(keys))
    return found[0]


QAPI_DOC_WIDTH = 70  # QEMU wraps QAPI doc comments at 70 columns


def doc_lines(text: str, indent: str = "") -> str:
    """Text as '# ' doc comment lines, wrapped as QEMU wraps QAPI docs:
    at 70 columns, two spaces after a full stop kept, continuation lines
    indented by `indent`."""
    joined = re.sub(r"\.[ \t]*\n\s*", ".  ", text.strip())
    parts = re.split(r"( +)", re.sub(r"[ \t]*\n\s*", " ", joined))
    words = parts[0::2]
    gaps = ["  " if g.startswith("  ") else " " for g in parts[1::2]]
    lines: list[str] = []
    line = words[0]
    for gap, word in zip(gaps, words[1:], strict=True):
        if len("# " + line + gap + word) > QAPI_DOC_WIDTH:
            lines.append(line)
            line = indent + word
        else:
            line += gap + word
    lines.append(line)
    return "".join(f"# {ln}\n" for ln in lines)


def _core() -> dict[str, Generator]:
    from . import carry, cedit, diff, qapi, qtest

    kinds = (carry.KIND, diff.KIND, qapi.KIND, cedit.KIND, qtest.KIND)
    return {g.name: g for g in kinds}


CORE: dict[str, Generator] = _core()


def specs(
    extra: Mapping[str, Generator] = MappingProxyType({}),
) -> dict[str, Generator]:
    """Every kind a series may use: the core's and a lab's (`extra`), by
    name, for series.yaml's loader.  A lab's kind may not take a core
    kind's name."""
    clash = sorted(set(CORE) & set(extra))
    if clash:
        raise ValueError("a lab's kinds take core names: " + ", ".join(clash))
    return {**CORE, **extra}
