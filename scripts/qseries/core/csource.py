"""Find C function definitions and statements in QEMU source text.

Just enough of C to edit QEMU files safely: comments, string and
character literals are skipped when matching brackets, a definition is a
name at the start of a line (or after its return type on the same line)
followed by a parameter list and a body, and statements are matched
token by token so that re-wrapping or re-indenting in the base does not
matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class NotFound(Exception):
    """What was looked for is not in the text."""


@dataclass(frozen=True)
class Function:
    name: str
    params: tuple[int, int]  # "(...)" including the parentheses
    body: tuple[int, int]  # "{...}" including the braces


def _skip_literal(text: str, i: int) -> int:
    """If text[i] starts a comment or literal, return the index after it."""
    if text.startswith("/*", i):
        end = text.find("*/", i + 2)
        return len(text) if end < 0 else end + 2
    if text.startswith("//", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    if text[i] in "\"'":
        quote = text[i]
        j = i + 1
        while j < len(text) and text[j] != quote:
            j += 2 if text[j] == "\\" else 1
        return j + 1
    return i


def match_bracket(text: str, start: int) -> int:
    """Index just after the bracket closing the one at text[start]."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    stack = [pairs[text[start]]]
    i = start + 1
    while i < len(text):
        j = _skip_literal(text, i)
        if j != i:
            i = j
            continue
        c = text[i]
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")}]":
            if c != stack.pop():
                raise NotFound(f"unbalanced '{c}' at offset {i}")
            if not stack:
                return i + 1
        i += 1
    raise NotFound(f"unclosed '{text[start]}' at offset {start}")


def find_function(text: str, name: str) -> Function:
    """The definition of function `name` (not a declaration or a call)."""
    pattern = re.compile(
        r"^(?:[A-Za-z_][\w \t*]*?[\s*])?" + re.escape(name) + r"\s*\(", re.M
    )
    for m in pattern.finditer(text):
        open_paren = m.end() - 1
        try:
            close = match_bracket(text, open_paren)
        except NotFound:
            continue
        after = re.compile(r"\s*").match(text, close)
        brace = after.end() if after else close
        if brace < len(text) and text[brace] == "{":
            return Function(
                name, (open_paren, close), (brace, match_bracket(text, brace))
            )
    raise NotFound(f"no definition of {name}()")


def code_pattern(code: str) -> re.Pattern[str]:
    """A regex matching `code` with any whitespace between its tokens."""
    tokens = re.findall(r"[A-Za-z_]\w*|\d+|->|\S", code)
    parts: list[str] = []
    for prev, tok in zip([None, *tokens], tokens, strict=False):
        if prev is not None:
            word = prev[-1].isalnum() or prev[-1] == "_"
            both_words = word and (tok[0].isalnum() or tok[0] == "_")
            parts.append(r"\s+" if both_words else r"\s*")
        parts.append(re.escape(tok))
    return re.compile("".join(parts))


def find_code(
    text: str, code: str, start: int = 0, end: int | None = None, first: bool = False
) -> re.Match[str]:
    """The occurrence of `code` in text[start:end]; NotFound otherwise.

    It must be the only one, unless `first` asks for the first of several.
    """
    pattern = code_pattern(code)
    stop = len(text) if end is None else end
    matches = list(pattern.finditer(text, start, stop))
    if not matches:
        raise NotFound(f"'{code}'")
    if len(matches) > 1 and not first:
        raise NotFound(f"'{code}' more than once")
    return matches[0]


def line_span(text: str, m: re.Match[str]) -> tuple[int, int]:
    """Extend a match to whole lines, newline included."""
    start = text.rfind("\n", 0, m.start()) + 1
    end = text.find("\n", m.end())
    return start, len(text) if end < 0 else end + 1
