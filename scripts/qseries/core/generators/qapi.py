"""qapi: additions to a QAPI module of the tree (its 'file:').

'add:' says what is added: whole definitions from a template, an event
or a command from the change's keys, an event shaped like another one,
a value of an enum, or a member of a struct or union, each with its
documentation.  New definitions go after a named one ('after:') or at
the end of the module.  The generator only finds its place: whether
the result is valid QAPI is for QEMU's own parser, which the check
stage runs on the whole schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ...ground.errors import AnchorError
from . import BadKey, Context, Files, Generator, Reader, Reads, doc_lines, exists

# What each 'add:' needs and may have, besides 'file'.
FORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "definitions": (("template",), ("after",)),
    "event": (("event", "doc"), ("data", "after")),
    "command": (("command", "doc"), ("data", "returns", "after")),
    "event-like": (("event", "like", "template"), ("after",)),
    "enum-value": (("enum", "value"), ("template", "doc")),
    "member": (("struct", "member", "type", "doc"), ()),
}
KEYS = sorted({k for req, opt in FORMS.values() for k in (*req, *opt)})
META = ("enum", "struct", "union", "alternate", "event", "command", "include")


def _check(params: Mapping[str, str]) -> None:
    form = params["add"]
    if form not in FORMS:
        raise BadKey(f"add must be one of: {', '.join(FORMS)}", "add")
    required, optional = FORMS[form]
    missing = [k for k in required if k not in params]
    if missing:
        raise ValueError(f"add: {form} needs: {', '.join(missing)}")
    extra = sorted(set(params) - {"file", "add", *required, *optional})
    if extra:
        raise ValueError(f"add: {form} does not take: {', '.join(extra)}")
    if form == "enum-value" and ("template" in params) == ("doc" in params):
        raise ValueError("add: enum-value needs either 'template' or 'doc'")


@dataclass(frozen=True)
class Definition:
    meta: str  # 'enum', 'struct', 'event', ...
    name: str
    start: int  # its '{'
    end: int  # after its '}'
    doc: tuple[int, int] | None  # its '##' ... '##\n' block


def _skip(text: str, i: int) -> int:
    """Index after a comment or a string starting at text[i], else i."""
    if text[i] == "#":
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    if text[i] == "'":
        j = i + 1
        while j < len(text) and text[j] != "'":
            j += 2 if text[j] == "\\" else 1
        return j + 1
    return i


def _close(text: str, start: int) -> int:
    """Index after the bracket closing the one at text[start]."""
    depth = 0
    i = start
    while i < len(text):
        j = _skip(text, i)
        if j != i:
            i = j
            continue
        if text[i] in "{[":
            depth += 1
        elif text[i] in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unclosed '{text[start]}'")


def _doc_before(text: str, at: int) -> tuple[int, int] | None:
    """The '##' ... '##' doc block right before offset `at`, if any."""
    if not text.endswith("##\n", 0, at) or at < 6:
        return None
    opening = text.rfind("\n##\n", 0, at - 3)
    start = opening + 1 if opening >= 0 else 0
    if not text.startswith("##\n", start):
        return None
    if not all(ln.startswith("#") for ln in text[start:at].splitlines()):
        return None
    return start, at


def definitions(text: str) -> list[Definition]:
    """The module's top-level expressions, in order."""
    found: list[Definition] = []
    i = 0
    while i < len(text):
        j = _skip(text, i)
        if j != i:
            i = j
            continue
        if text[i] == "{":
            end = _close(text, i)
            m = re.match(r"\{\s*'([a-z]+)'\s*:\s*'([^']*)'", text[i:end])
            meta, name = (m[1], m[2]) if m else ("", "")
            found.append(Definition(meta, name, i, end, _doc_before(text, i)))
            i = end
            continue
        i += 1
    return found


class _Module:
    """One QAPI module of the base, and the edits of one change."""

    def __init__(self, read: Reader, ctx: Context):
        self.ctx = ctx
        self.path = ctx.param("file")
        self.text = exists(read, self.path, ctx)
        try:
            self.defs = definitions(self.text)
        except ValueError as err:
            raise AnchorError(
                f"{self.path} of {ctx.base}: cannot read its expressions ({err})",
                "is it a QAPI module?",
            ) from None

    def fail(self, what: str, hint: str) -> AnchorError:
        return AnchorError(f"{self.path} of {self.ctx.base}: {what}", hint)

    def find(self, name: str, metas: tuple[str, ...] = META) -> Definition:
        for d in self.defs:
            if d.name == name and d.meta in metas:
                return d
        kinds = " or ".join(metas) if metas != META else "definition"
        raise self.fail(f"no {kinds} {name}", "check the name, or pick another base")

    def has(self, name: str) -> bool:
        return any(d.name == name and d.meta != "include" for d in self.defs)

    def place(self, new: str) -> Files:
        """The module with the definitions `new` after 'after:' or last."""
        for m in re.finditer(r"^\{\s*'([a-z]+)'\s*:\s*'([^']*)'", new, re.M):
            if self.has(m[2]):
                raise self.fail(
                    f"{m[2]} is defined already", "is the series applied already?"
                )
        new = new.strip("\n")
        if "after" in self.ctx.params:
            anchor = self.find(self.ctx.param("after"))
            at = anchor.end
            return {self.path: self.text[:at] + "\n\n" + new + self.text[at:]}
        return {self.path: self.text.rstrip("\n") + "\n\n" + new + "\n"}

    def value_of(self, d: Definition, key: str) -> tuple[int, int] | None:
        """The span of `key`'s value inside definition d (its brackets)."""
        body = self.text[d.start : d.end]
        i = 1
        depth = 0
        while i < len(body) - 1:
            j = _skip(body, i)
            if j != i:
                if depth == 0 and body[i:j] == f"'{key}'":
                    m = re.compile(r"\s*:\s*").match(body, j)
                    if m and m.end() < len(body) and body[m.end()] in "{[":
                        start = d.start + m.end()
                        return start, _close(self.text, start)
                    return None
                i = j
                continue
            if body[i] in "{[":
                depth += 1
            elif body[i] in "}]":
                depth -= 1
            i += 1
        return None


def _doc(name: str, doc: str, since: str) -> str:
    return f"##\n# @{name}:\n#\n{doc_lines(doc)}#\n# Since: {since}\n##\n"


def _quote_type(t: str) -> str:
    m = re.fullmatch(r"\[\s*'?([\w-]+)'?\s*\]", t)
    return f"['{m[1]}']" if m else f"'{t.strip(chr(39))}'"


def _from_keys(mod: _Module, ctx: Context, meta: str) -> str:
    name = ctx.param(meta)
    lines = [f"{{ '{meta}': '{name}'"]
    if "data" in ctx.params:
        lines.append(f"  'data': '{ctx.param('data')}'")
    if "returns" in ctx.params:
        lines.append(f"  'returns': {_quote_type(ctx.param('returns'))}")
    return _doc(name, ctx.param("doc"), ctx.since) + ",\n".join(lines) + " }\n"


def _member_doc(mod: _Module, d: Definition, entry: str) -> str:
    """The definition's doc block with the new member's entry added
    after the last member (before 'Since:' when it has none)."""
    if d.doc is None:
        raise mod.fail(
            f"{d.name} has no doc comment to document the new member in",
            "QAPI definitions need one; pick another base",
        )
    block = mod.text[d.doc[0] : d.doc[1]]
    lines = block.splitlines(keepends=True)
    last = None
    for i, line in enumerate(lines[2:], 2):
        if re.match(r"# @[\w-]+:", line):
            last = i
    if last is not None:
        at = last + 1
        while at < len(lines) and lines[at].startswith("#  "):
            at += 1
        lines[at:at] = ["#\n", entry]
    else:
        section = next(
            (i for i, ln in enumerate(lines) if re.match(r"# (Since|Features):", ln)),
            None,
        )
        if section is None:
            lines[-1:-1] = ["#\n", entry]
        else:
            lines[section:section] = [entry, "#\n"]
    return "".join(lines)


def _add_member(mod: _Module, d: Definition, key: str, item: str, entry: str) -> str:
    """The module with `item` last in d's `key` and `entry` in its docs."""
    span = mod.value_of(d, key)
    if span is None:
        raise mod.fail(
            f"{d.name} has no inline '{key}' to add to",
            "add the member to the type it names instead",
        )
    start, end = span
    inner = mod.text[start + 1 : end - 1]
    close = end - 1
    if not inner.strip():
        edited = mod.text[: start + 1] + f" {item} " + mod.text[close:]
    else:
        body_end = start + 1 + len(inner.rstrip())
        first = re.compile(r"[\s]*").match(mod.text, start + 1)
        first_at = first.end() if first else start + 1
        column = first_at - (mod.text.rfind("\n", 0, first_at) + 1)
        line_start = mod.text.rfind("\n", 0, body_end) + 1
        tail = mod.text[line_start:body_end]
        # What follows on the line: the closing brackets, when they are
        # on the last member's line.
        eol = mod.text.find("\n", body_end)
        rest = mod.text[body_end : eol if eol >= 0 else len(mod.text)]
        if len(f"{tail}, {item}{rest}") <= 80:
            edited = mod.text[:body_end] + f", {item}" + mod.text[body_end:]
        else:
            edited = (
                mod.text[:body_end] + ",\n" + " " * column + item + mod.text[body_end:]
            )
    assert d.doc is not None
    doc = _member_doc(mod, d, entry)
    return edited[: d.doc[0]] + doc + edited[d.doc[1] :]


def _enum_value_doc(mod: _Module, ctx: Context) -> Files:
    d = mod.find(ctx.param("enum"), ("enum",))
    value = ctx.param("value")
    span = mod.value_of(d, "data")
    if span is None or mod.text[span[0]] != "[":
        raise mod.fail(f"enum {d.name} has no 'data' list", "pick another base")
    if re.search(rf"'{re.escape(value)}'", mod.text[span[0] : span[1]]):
        raise mod.fail(
            f"{d.name} has '{value}' already", "is the series applied already?"
        )
    entry = doc_lines(
        f"@{value}: {ctx.param('doc').strip()} (since {ctx.since})", indent="    "
    )
    return {mod.path: _add_member(mod, d, "data", f"'{value}'", entry)}


def _member(mod: _Module, ctx: Context) -> Files:
    d = mod.find(ctx.param("struct"), ("struct", "union"))
    member = ctx.param("member")
    key = "data" if d.meta == "struct" else "base"
    span = mod.value_of(d, key)
    if span is not None and re.search(
        rf"'\*?{re.escape(member.lstrip('*'))}'\s*:", mod.text[span[0] : span[1]]
    ):
        raise mod.fail(
            f"{d.name} has a member {member.lstrip('*')} already",
            "is the series applied already?",
        )
    entry = doc_lines(
        f"@{member.lstrip('*')}: {ctx.param('doc').strip()} (since {ctx.since})",
        indent="    ",
    )
    item = f"'{member}': {_quote_type(ctx.param('type'))}"
    return {mod.path: _add_member(mod, d, key, item, entry)}


def _event_like(mod: _Module, ctx: Context) -> Files:
    """A new event shaped like an existing one, from a template given
    the event, the one it is like ('completion') and since."""
    event, like = ctx.param("event"), ctx.param("like")
    if not re.search(rf"'event':\s*'{re.escape(like)}'", mod.text):
        raise mod.fail(f"no {like} event", "pick a base that has it")
    if re.search(rf"'event':\s*'{re.escape(event)}'", mod.text):
        raise mod.fail(f"{event} is defined already", "is the series applied already?")
    rendered = ctx.templates.render(
        ctx.param("template"), event=event, completion=like, since=ctx.since
    )
    return mod.place(rendered)


def _enum_value_template(mod: _Module, ctx: Context) -> Files:
    """Add a value to an enum, with documentation from a template.

    The template gives two macros: 'intro', sentences added to the enum's
    opening paragraph, and 'member', the new value's description (the
    generator wraps both as QAPI docs are wrapped).
    """
    enum, value = ctx.param("enum"), ctx.param("value")
    template = ctx.param("template")
    text = mod.text
    doc = re.search(
        rf"^##\n# @{re.escape(enum)}:\n#\n((?:# .*\n)+)#\n"
        rf"((?:# .*\n|#\n)*?)(#\n# Since: .*\n)##\n"
        rf"(\{{ 'enum': '{re.escape(enum)}',\n  'data': \[)([^\]]*)\]",
        text,
        re.M,
    )
    if doc is None:
        raise mod.fail(
            f"no documented enum {enum} shaped as expected",
            "give 'doc' instead of 'template', or pick another base",
        )
    values = re.findall(r"'([^']+)'", doc[5])
    if value in values:
        raise mod.fail(
            f"{enum} has '{value}' already", "is the series applied already?"
        )
    intro = "\n".join(line[2:] for line in doc[1].splitlines())
    addition = ctx.templates.macro(template, "intro", value=value, since=ctx.since)
    member = ctx.templates.macro(template, "member", value=value, since=ctx.since)
    new_doc = (
        doc_lines(intro + "  " + addition.strip())
        + "#\n"
        + doc[2]
        + "#\n"
        + doc_lines(f"@{value}: {member.strip()}", indent="    ")
        + doc[3]
    )
    data = doc[5].rstrip(" ")
    last = (doc[4] + data).rsplit("\n", 1)[-1]
    if len(f"{last}, '{value}' ] }}") > 80:
        pad = " " * (len(doc[4].rsplit("\n", 1)[-1]) + 1)
        data = f"{data},\n{pad}'{value}' "
    else:
        data = f"{data}, '{value}' "
    new_text = (
        text[: doc.start(1)] + new_doc + "##\n" + doc[4] + data + text[doc.end(5) :]
    )
    return {mod.path: new_text}


def _apply(read: Reader, ctx: Context) -> Files:
    mod = _Module(read, ctx)
    form = ctx.param("add")
    if form == "definitions":
        context = {k.replace("-", "_"): v for k, v in ctx.params.items()}
        return mod.place(
            ctx.templates.render(ctx.param("template"), **context, since=ctx.since)
        )
    if form in ("event", "command"):
        return mod.place(_from_keys(mod, ctx, form))
    if form == "event-like":
        return _event_like(mod, ctx)
    if form == "enum-value":
        if "template" in ctx.params:
            return _enum_value_template(mod, ctx)
        return _enum_value_doc(mod, ctx)
    return _member(mod, ctx)


def _reads(params: Mapping[str, str]) -> Reads:
    return ((params["template"],) if "template" in params else ()), ()


KIND = Generator(
    "qapi",
    "add a definition, an enum value or a member to a QAPI module",
    _apply,
    ("file", "add"),
    tuple(KEYS),
    reads=_reads,
    paths=("file",),
    check=_check,
)
