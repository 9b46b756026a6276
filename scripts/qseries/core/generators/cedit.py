"""c-edit: code put into a named function of a C file, or a new function.

The file, the function and the anchor are the change's keys: code goes
before, after or in place of the lines holding a statement ('before:',
'after:', 'replace:', matched token by token, whitespace aside), or at
a regular expression ('pattern:', with 'where:'), inside the function's
body; or a new function goes after a named one ('after-function:').
The code is inline ('code:') or a template, whole or one of its macros.
An anchor that is missing or not unique is refused, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ...ground.errors import AnchorError
from .. import csource
from . import BadKey, Context, Files, Generator, Reader, Reads, exists, one_of

ANCHORS = ("before", "after", "replace", "pattern")
WHERE = ("before", "after", "replace")


def _check(params: Mapping[str, str]) -> None:
    one_of(params, ("code", "template"))
    if "macro" in params and "template" not in params:
        raise ValueError("'macro' needs 'template'")
    if "after-function" in params:
        extra = [k for k in (*ANCHORS, "function", "where") if k in params]
        if extra:
            raise ValueError("'after-function' takes no " + ", ".join(extra))
        return
    if "function" not in params:
        raise ValueError("needs 'function' (or 'after-function' for a new one)")
    anchor = one_of(params, ANCHORS)
    if "where" in params:
        if anchor != "pattern":
            raise ValueError("'where' goes with 'pattern'")
        if params["where"] not in WHERE:
            raise BadKey(f"where must be one of: {', '.join(WHERE)}", "where")
    if anchor == "pattern":
        try:
            re.compile(params["pattern"])
        except re.error as err:
            raise BadKey(f"bad pattern: {err}", "pattern") from None


def _reads(params: Mapping[str, str]) -> Reads:
    return ((params["template"],) if "template" in params else ()), ()


def _code(ctx: Context) -> str:
    if "code" in ctx.params:
        return ctx.param("code")
    context = {
        k.replace("-", "_"): v
        for k, v in ctx.params.items()
        if k not in ("template", "macro")
    }
    context.update(since=ctx.since, base=ctx.base)
    if "macro" in ctx.params:
        return ctx.templates.macro(ctx.param("template"), ctx.param("macro"), **context)
    return ctx.templates.render(ctx.param("template"), **context)


def _lines(code: str) -> str:
    """Code as whole lines."""
    return code if code.endswith("\n") or not code else code + "\n"


def _apply(read: Reader, ctx: Context) -> Files:
    path = ctx.param("file")
    text = exists(read, path, ctx)
    name = ctx.get("after-function") or ctx.param("function")

    def fail(what: str) -> AnchorError:
        return AnchorError(
            f"{path} of {ctx.base}: {what}",
            "update the change's anchor, or pick another base",
        )

    try:
        fn = csource.find_function(text, name)
    except csource.NotFound:
        raise fail(f"no function {name}()") from None
    code = _code(ctx)
    if "after-function" in ctx.params:
        end = text.find("\n", fn.body[1])
        at = len(text) if end < 0 else end + 1
        return {path: text[:at] + "\n" + _lines(code.strip("\n")) + text[at:]}
    start, stop = fn.body
    if "pattern" in ctx.params:
        matches = list(
            re.compile(ctx.param("pattern"), re.M).finditer(text, start, stop)
        )
        what = f"the pattern {ctx.param('pattern')!r}"
        where = ctx.get("where", "replace")
    else:
        where = next(k for k in WHERE if k in ctx.params)
        what = repr(ctx.param(where))
        pattern = csource.code_pattern(ctx.param(where))
        matches = list(pattern.finditer(text, start, stop))
    if not matches:
        raise fail(f"{name}() has no {what}")
    if len(matches) > 1:
        raise fail(f"{name}() has {what} {len(matches)} times; give a longer anchor")
    m = matches[0]
    if "pattern" in ctx.params and where == "replace":
        return {path: text[: m.start()] + code + text[m.end() :]}
    first, last = csource.line_span(text, m)
    if where == "before":
        return {path: text[:first] + _lines(code) + text[first:]}
    if where == "after":
        return {path: text[:last] + _lines(code) + text[last:]}
    return {path: text[:first] + _lines(code) + text[last:]}


KIND = Generator(
    "c-edit",
    "insert or replace code in a named function of a C file, or add one",
    _apply,
    ("file",),
    (
        "function",
        "after-function",
        *ANCHORS,
        "where",
        "code",
        "template",
        "macro",
    ),
    reads=_reads,
    paths=("file",),
    check=_check,
)
