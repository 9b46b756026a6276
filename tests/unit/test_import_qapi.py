"""Import of a patch to a QAPI module: qapi changes only where the core's
qapi kind regenerates the patched module byte for byte, else a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from qseries.mail.import_qapi import QapiChange, as_qapi, regenerate

from .kinds import apply, qemu_tree, reader, text

MISC = "qapi/misc.json"

# A small module, shaped as QEMU's are.
MODULE = """\
# -*- Mode: Python -*-
# vim: filetype=python

##
# = Test
##

##
# @Colour:
#
# A colour.
#
# @red: warm
#
# @blue: cold
#
# Since: 10.0
##
{ 'enum': 'Colour', 'data': [ 'red', 'blue' ] }

##
# @paint:
#
# Paint it.
#
# @colour: which one
#
# Since: 10.0
##
{ 'command': 'paint', 'data': { 'colour': 'Colour' } }
"""

EVENT = """\
##
# @PAINT_DRY:
#
# Emitted when the paint is dry.
#
# Since: 11.0
##
{ 'event': 'PAINT_DRY', 'data': { 'colour': 'Colour' } }"""

STRUCT = """\
##
# @Brush:
#
# A brush.
#
# @width: in mm
#
# Since: 11.0
##
{ 'struct': 'Brush', 'data': { 'width': 'int' } }"""


def after(module: str, head: str, added: str) -> str:
    """The module with `added` after the definition starting with `head`,
    one blank line apart as QEMU writes them."""
    at = module.index("}", module.index(head)) + 1
    while module[at] != "\n":  # a definition's closing bracket ends a line
        at = module.index("}", at) + 1
    return module[:at] + "\n\n" + added + module[at:]


def change(path: str, old: str, new: str) -> QapiChange:
    result = as_qapi(path, old, new)
    assert isinstance(result, QapiChange), result
    return result


def from_files(path: str, old: str, result: QapiChange, tmp_path: Path) -> str:
    """The module a series gets: templates written beside series.yaml, each
    change applied by the kind as generate applies it."""
    current = old
    for edit in result.edits:
        template = tmp_path / edit.params["template"]
        template.parent.mkdir(parents=True, exist_ok=True)
        template.write_text(edit.template)
        current = text(
            apply("qapi", edit.params, reader(None, {path: current}), tmp_path), path
        )
    return current


def test_an_event_after_a_definition(tmp_path: Path) -> None:
    new = after(MODULE, "{ 'enum': 'Colour'", EVENT)
    result = change("qapi/paint.json", MODULE, new)
    (edit,) = result.edits
    assert edit.params == {
        "file": "qapi/paint.json",
        "add": "definitions",
        "after": "Colour",
        "template": "qapi/paint-paint-dry.json.j2",
    }
    assert edit.template == EVENT + "\n"  # as written, its Since: too
    assert regenerate("qapi/paint.json", MODULE, result.edits) == new
    assert from_files("qapi/paint.json", MODULE, result, tmp_path) == new


def test_two_definitions_together_are_one_template() -> None:
    added = STRUCT + "\n\n" + EVENT
    new = after(MODULE, "{ 'enum': 'Colour'", added)
    (edit,) = change("qapi/paint.json", MODULE, new).edits
    assert edit.template == added + "\n"
    assert edit.params["template"] == "qapi/paint-brush.json.j2"


def test_additions_at_two_places_are_two_changes_in_order(tmp_path: Path) -> None:
    new = after(MODULE, "{ 'enum': 'Colour'", STRUCT) + "\n" + EVENT + "\n"
    result = change("qapi/paint.json", MODULE, new)
    assert [(e.params.get("after"), e.template) for e in result.edits] == [
        ("Colour", STRUCT + "\n"),
        (None, EVENT + "\n"),
    ]
    assert from_files("qapi/paint.json", MODULE, result, tmp_path) == new


def test_an_addition_at_the_end_names_no_anchor() -> None:
    new = MODULE + "\n" + EVENT + "\n"
    result = change("qapi/paint.json", MODULE, new)
    (edit,) = result.edits
    assert "after" not in edit.params
    assert regenerate("qapi/paint.json", MODULE, result.edits) == new


def test_jinja_syntax_is_escaped_and_regenerates(tmp_path: Path) -> None:
    added = EVENT.replace("is dry.", "is dry ({{ 'colour' }} {% x %} {# y #}).")
    new = after(MODULE, "{ 'command': 'paint'", added)
    result = change("qapi/paint.json", MODULE, new)
    (edit,) = result.edits
    assert edit.template.startswith("{% raw %}")
    assert from_files("qapi/paint.json", MODULE, result, tmp_path) == new


@pytest.mark.parametrize(
    ("new", "reason"),
    [
        (
            MODULE.replace("Paint it.", "Paint it well."),
            "qapi/paint.json: the patch changes an existing definition (paint)",
        ),
        (
            MODULE.replace("'red', 'blue'", "'red', 'blue', 'green'"),
            "qapi/paint.json: the patch changes an existing definition (Colour)",
        ),
        (
            MODULE[: MODULE.index("##\n# @paint")].rstrip("\n") + "\n",
            "qapi/paint.json: the patch removes a definition (paint)",
        ),
        (
            MODULE.replace("# = Test", "# = Tests"),
            "qapi/paint.json: the patch changes only text between definitions",
        ),
        (
            MODULE + "\n{ 'include': 'brush.json' }\n",
            "qapi/paint.json: the patch adds an include (brush.json)",
        ),
        (
            MODULE.replace("##\n# = Test", EVENT + "\n\n##\n# = Test"),
            "qapi/paint.json: the patch adds PAINT_DRY before the first definition",
        ),
        (
            after(MODULE, "{ 'enum': 'Colour'", "\n" + EVENT),
            "qapi/paint.json: regenerating would not give the same bytes "
            "(blank lines around the addition, line 21)",
        ),
        (
            MODULE.replace("\n\n##\n# @paint:", "\n\n" + EVENT + "\n##\n# @paint:"),
            "qapi/paint.json: regenerating would not give the same bytes "
            "(blank lines around the addition, line 29)",
        ),
        (
            MODULE.replace("{ 'enum'", EVENT + "\n\n{ 'enum'"),
            "qapi/paint.json: the patch changes an existing definition (Colour)",
        ),
        (MODULE, "qapi/paint.json: the patch does not change it"),
        (
            MODULE + "\n" + EVENT.replace("dry.", "dry {% endraw %}.") + "\n",
            "qapi/paint.json: the addition cannot be written as a template",
        ),
        (
            MODULE.replace("{ 'enum': 'Colour'", "{ 'enum': 'Color'"),
            "qapi/paint.json: the patch removes a definition (Colour)",
        ),
        (
            MODULE + "\n{ 'pragma': { 'doc-required': true } }\n",
            "qapi/paint.json: the patch adds an expression (pragma)",
        ),
        (
            MODULE[: MODULE.index("##\n# @Colour")]
            + MODULE[MODULE.index("##\n# @paint") :]
            + "\n"
            + MODULE[MODULE.index("##\n# @Colour") : MODULE.index("##\n# @paint")],
            "qapi/paint.json: the patch moves a definition (paint)",
        ),
    ],
    ids=[
        "doc",
        "value",
        "deletion",
        "comment",
        "include",
        "first",
        "blank-before",
        "blank-after",
        "inside-doc",
        "same",
        "endraw",
        "rename",
        "pragma",
        "move",
    ],
)
def test_what_stays_a_diff_says_why(new: str, reason: str) -> None:
    assert as_qapi("qapi/paint.json", MODULE, new) == reason


def test_a_changed_pragma_is_named_by_its_rank() -> None:
    pragma = "{ 'pragma': { 'doc-required': true } }\n\n"
    old = MODULE.replace("##\n# = Test", pragma + "##\n# = Test")
    new = old.replace("true", "false")
    assert as_qapi("qapi/paint.json", old, new) == (
        "qapi/paint.json: the patch changes an existing definition (pragma)"
    )
    second = "{ 'pragma': { 'command-name-exceptions': [ 'x' ] } }\n\n"
    old = old.replace("##\n# = Test", second + "##\n# = Test")
    new = old.replace("'x'", "'y'")
    assert as_qapi("qapi/paint.json", old, new) == (
        "qapi/paint.json: the patch changes an existing definition (pragma 2)"
    )


@pytest.mark.qemu
def test_real_event_after_a_command(tmp_path: Path) -> None:
    old = (qemu_tree() / MISC).read_text(encoding="utf-8")
    added = EVENT.replace("'data': { 'colour': 'Colour' } ", "")
    new = after(old, "{ 'command': 'query-name'", added)
    result = change(MISC, old, new)
    assert [e.params.get("after") for e in result.edits] == ["query-name"]
    assert from_files(MISC, old, result, tmp_path) == new


@pytest.mark.qemu
def test_real_additions_at_two_places_and_the_end(tmp_path: Path) -> None:
    path = "qapi/block-core.json"
    old = (qemu_tree() / path).read_text(encoding="utf-8")
    brush = STRUCT
    new = after(old, "{ 'struct': 'SnapshotInfo'", brush)
    new = after(new, "{ 'command': 'query-block'", EVENT.replace("Colour", "Brush"))
    new = new + "\n" + EVENT.replace("PAINT_DRY", "PAINT_WET") + "\n"
    result = change(path, old, new)
    assert [e.params.get("after") for e in result.edits] == [
        "SnapshotInfo",
        "query-block",
        None,
    ]
    assert [e.params["template"] for e in result.edits] == [
        "qapi/block-core-brush.json.j2",
        "qapi/block-core-paint-dry.json.j2",
        "qapi/block-core-paint-wet.json.j2",
    ]
    assert from_files(path, old, result, tmp_path) == new


@pytest.mark.qemu
def test_real_changes_stay_a_diff() -> None:
    old = (qemu_tree() / MISC).read_text(encoding="utf-8")
    changed = old.replace(
        "{ 'command': 'stop' }", "{ 'command': 'stop', 'boxed': true }"
    )
    assert as_qapi(MISC, old, changed) == (
        f"{MISC}: the patch changes an existing definition (stop)"
    )
    squeezed = after(old, "{ 'command': 'query-name'", EVENT).replace(
        "}\n\n" + EVENT, "}\n" + EVENT
    )
    reason = as_qapi(MISC, old, squeezed)
    assert isinstance(reason, str)
    assert reason.startswith(f"{MISC}: regenerating would not give the same bytes")
