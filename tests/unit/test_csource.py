from __future__ import annotations

import pytest

from qseries.core import csource

TEXT = """\
static int helper(int a);

static QapiState
helper(int a)
{
    const char *s = "}{)(";
    /* } */
    if (a) {
        return helper(a - 1);
    }
    return 0;
}

int other(void) { return helper(2); }
"""


def test_finds_definition_not_declaration_or_call() -> None:
    fn = csource.find_function(TEXT, "helper")
    assert TEXT[fn.params[0] : fn.params[1]] == "(int a)"
    body = TEXT[fn.body[0] : fn.body[1]]
    assert body.startswith("{\n    const char")
    assert body.endswith("return 0;\n}")
    other = csource.find_function(TEXT, "other")
    assert TEXT[other.body[0] : other.body[1]] == "{ return helper(2); }"


def test_missing_function() -> None:
    with pytest.raises(csource.NotFound):
        csource.find_function(TEXT, "absent")


def test_code_matches_across_whitespace() -> None:
    m = csource.find_code(TEXT, "if (a) { return helper(a-1); }")
    assert TEXT[m.start() : m.end()].startswith("if (a) {\n")
    # Words stay words: 'returnhelper' is not 'return helper'.
    with pytest.raises(csource.NotFound):
        csource.find_code("returnhelper(a);", "return helper(a);")


def test_code_must_be_unique_unless_first() -> None:
    text = "f(x);\nf(x);\n"
    with pytest.raises(csource.NotFound, match="more than once"):
        csource.find_code(text, "f(x);")
    assert csource.find_code(text, "f(x);", first=True).start() == 0


def test_line_span() -> None:
    text = "a;\n    b;\nc;\n"
    m = csource.find_code(text, "b;")
    assert csource.line_span(text, m) == (3, 10)
