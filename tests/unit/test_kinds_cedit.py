"""The c-edit kind on a real QEMU C file: code before, after or in place
of a statement or a pattern of a named function, or a new function;
anything it cannot find once, refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from qseries.core.generators import cedit
from qseries.ground.errors import AnchorError

from .kinds import apply, qemu_tree, reader, text

pytestmark = pytest.mark.qemu

FILE = "monitor/qmp-cmds.c"
LOG = "    trace_qmp_stop_test();\n"


def edit(**params: str) -> tuple[str, str]:
    """The file before and after the edit."""
    tree = qemu_tree()
    out = apply("c-edit", {"file": FILE, **params}, reader(tree))
    return (tree / FILE).read_text(), text(out, FILE)


def test_code_before_a_statement() -> None:
    before, after = edit(
        function="qmp_stop", before="vm_stop(RUN_STATE_PAUSED);", code=LOG
    )
    old = "    } else {\n        vm_stop(RUN_STATE_PAUSED);\n"
    assert after == before.replace(
        old, "    } else {\n" + LOG + "        vm_stop(RUN_STATE_PAUSED);\n"
    )


def test_code_after_a_statement_spread_over_lines() -> None:
    # Whitespace between tokens does not matter, line breaks included.
    before, after = edit(
        function="qmp_stop",
        after='error_setg(errp,\n "There is a dump in process, please wait.");',
        code="        /* told */",
    )
    old = 'please wait.");\n'
    assert after == before.replace(old, old + "        /* told */\n", 1)


def test_code_replacing_a_statement() -> None:
    before, after = edit(
        function="qmp_quit",
        replace="shutdown_action = SHUTDOWN_ACTION_POWEROFF;",
        code="    shutdown_action = SHUTDOWN_ACTION_PAUSE;\n",
    )
    assert after == before.replace(
        "    shutdown_action = SHUTDOWN_ACTION_POWEROFF;\n",
        "    shutdown_action = SHUTDOWN_ACTION_PAUSE;\n",
    )


def test_a_pattern_replaced_only_where_it_matches() -> None:
    before, after = edit(
        function="qmp_stop", pattern=r"autostart = \d+;", code="autostart = false;"
    )
    assert after == before.replace(
        "        autostart = 0;\n", "        autostart = false;\n", 1
    )
    # The same pattern outside the function is left alone.
    assert after.count("autostart = 0;") == before.count("autostart = 0;") - 1


def test_lines_before_a_pattern() -> None:
    before, after = edit(
        function="qmp_stop",
        pattern=r"RUN_STATE_INMIGRATE",
        where="before",
        code="    /* x */",
    )
    old = "    if (runstate_check(RUN_STATE_INMIGRATE)) {\n"
    assert after == before.replace(old, "    /* x */\n" + old, 1)


def test_a_new_function_after_another(tmp_path: Path) -> None:
    (tmp_path / "fn.c.j2").write_text(
        "{% macro body() %}\n"
        "/* After {{ after_function }}(), since {{ since }}. */\n"
        "void qmp_x_test(Error **errp)\n{\n}\n"
        "{% endmacro %}\n"
    )
    tree = qemu_tree()
    params = {
        "file": FILE,
        "after-function": "qmp_quit",
        "template": "fn.c.j2",
        "macro": "body",
    }
    out = apply("c-edit", params, reader(tree), tmp_path)
    before = (tree / FILE).read_text()
    quit_end = "SHUTDOWN_CAUSE_HOST_QMP_QUIT);\n}\n"
    assert text(out, FILE) == before.replace(
        quit_end,
        quit_end + "\n/* After qmp_quit(), since 11.0. */\n"
        "void qmp_x_test(Error **errp)\n{\n}\n",
        1,
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"function": "qmp_nope", "before": "x;"}, "no function qmp_nope()"),
        (
            {"function": "qmp_stop", "before": "vm_start();"},
            "qmp_stop() has no 'vm_start();'",
        ),
        (
            {"function": "qmp_stop", "pattern": "autostart|RUN_STATE"},
            "qmp_stop() has the pattern 'autostart|RUN_STATE' 3 times",
        ),
    ],
)
def test_what_is_not_there_once_is_refused(
    params: dict[str, str], message: str
) -> None:
    with pytest.raises(AnchorError) as info:
        edit(**params, code="x;")
    assert f"{FILE} of QEMU test: {message}" in str(info.value)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"function": "f", "code": "x;"}, "needs exactly one of"),
        ({"function": "f", "before": "a;", "after": "b;", "code": "x;"}, "exactly one"),
        ({"before": "a;", "code": "x;"}, "needs 'function'"),
        ({"function": "f", "before": "a;"}, "exactly one of: code, template"),
        ({"function": "f", "pattern": "(", "code": "x;"}, "bad pattern"),
        (
            {"function": "f", "before": "a;", "where": "after", "code": "x;"},
            "goes with",
        ),
        ({"after-function": "f", "before": "a;", "code": "x;"}, "takes no before"),
    ],
)
def test_keys_are_checked_when_loaded(params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cedit.KIND.check({"file": FILE, **params})
