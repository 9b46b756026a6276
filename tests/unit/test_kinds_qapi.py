"""The qapi kind on real QEMU modules: each form placed where asked,
and what it writes read back by QEMU's own QAPI generator."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qseries.core.generators import qapi
from qseries.ground.errors import AnchorError

from .kinds import apply, qemu_tree, reader, text

pytestmark = pytest.mark.qemu

MISC = "qapi/misc.json"
BLOCK = "qapi/block-core.json"


def qapi_gen(tree: Path, files: dict[str, str | None], tmp_path: Path) -> str:
    """Run the tree's qapi-gen.py on its whole schema with `files` written
    over it; its error output ('' when it accepts the schema)."""
    work = tmp_path / "schema"
    shutil.copytree(tree / "qapi", work / "qapi")
    shutil.copytree(tree / "scripts" / "qapi", work / "scripts" / "qapi")
    shutil.copy(tree / "scripts" / "qapi-gen.py", work / "scripts")
    for path, content in files.items():
        assert content is not None
        (work / path).write_text(content)
    ran = subprocess.run(
        [sys.executable, "scripts/qapi-gen.py", "-o", "out", "qapi/qapi-schema.json"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return ran.stderr if ran.returncode else ""


def test_a_command_from_keys_goes_after_the_named_definition(tmp_path: Path) -> None:
    tree = qemu_tree()
    params = {
        "file": MISC,
        "add": "command",
        "command": "x-query-answer",
        "doc": "Return nothing, for the test of a new command.",
        "after": "query-name",
    }
    out = apply("qapi", params, reader(tree))
    new = text(out, MISC)
    before = (tree / MISC).read_text()
    anchor = before.index("{ 'command': 'query-name'")
    anchor = before.index("}", anchor) + 1
    added = (
        "\n\n##\n# @x-query-answer:\n#\n"
        "# Return nothing, for the test of a new command.\n#\n# Since: 11.0\n##\n"
        "{ 'command': 'x-query-answer' }"
    )
    assert new == before[:anchor] + added + before[anchor:]
    assert qapi_gen(tree, dict(out), tmp_path) == ""


def test_an_event_with_data_goes_last(tmp_path: Path) -> None:
    tree = qemu_tree()
    params = {
        "file": MISC,
        "add": "event",
        "event": "X_TEST_EVENT",
        "doc": "Emitted for the test.",
        "data": "NameInfo",
    }
    out = apply("qapi", params, reader(tree))
    new = text(out, MISC)
    assert new.endswith(
        "# Since: 11.0\n##\n{ 'event': 'X_TEST_EVENT',\n  'data': 'NameInfo' }\n"
    )
    assert new.startswith((tree / MISC).read_text().rstrip("\n") + "\n\n##\n")
    assert qapi_gen(tree, dict(out), tmp_path) == ""


def test_a_struct_member_is_added_with_its_doc(tmp_path: Path) -> None:
    tree = qemu_tree()
    params = {
        "file": BLOCK,
        "add": "member",
        "struct": "BlockdevSnapshotSync",
        "member": "*x-test-flag",
        "type": "bool",
        "doc": "a flag for the test",
    }
    out = apply("qapi", params, reader(tree))
    new = text(out, BLOCK)
    assert "            '*format': 'str', '*mode': 'NewImageMode',\n" in new
    assert "            '*x-test-flag': 'bool' } }\n" in new
    assert (
        "#     'absolute-paths'.\n#\n# @x-test-flag: a flag for the test (since "
        "11.0)\n##\n{ 'struct': 'BlockdevSnapshotSync'," in new
    )
    assert qapi_gen(tree, dict(out), tmp_path) == ""
    # What the patch changes is only those lines.
    assert len(new.splitlines()) == len((tree / BLOCK).read_text().splitlines()) + 3


def test_a_union_member_goes_into_its_base(tmp_path: Path) -> None:
    tree = qemu_tree()
    params = {
        "file": BLOCK,
        "add": "member",
        "struct": "BlockStatsSpecific",
        "member": "*x-test-id",
        "type": "str",
        "doc": "an id for the test",
    }
    out = apply("qapi", params, reader(tree))
    new = text(out, BLOCK)
    assert "'base': { 'driver': 'BlockdevDriver', '*x-test-id': 'str' }," in new
    assert qapi_gen(tree, dict(out), tmp_path) == ""


def test_an_enum_value_is_added_with_its_doc(tmp_path: Path) -> None:
    tree = qemu_tree()
    params = {
        "file": BLOCK,
        "add": "enum-value",
        "enum": "NewImageMode",
        "value": "x-test-mode",
        "doc": "a mode for the test",
    }
    out = apply("qapi", params, reader(tree))
    new = text(out, BLOCK)
    assert "  'data': [ 'existing', 'absolute-paths', 'x-test-mode' ] }" in new
    assert "# @x-test-mode: a mode for the test (since 11.0)\n" in new
    # The enum's C users switch over it: only the schema is checked here.
    assert qapi_gen(tree, dict(out), tmp_path) == ""


def test_definitions_from_a_template(tmp_path: Path) -> None:
    tree = qemu_tree()
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "defs.json.j2").write_text(
        "##\n# @XTestInfo:\n#\n# What x-query-test returns.\n#\n"
        "# @answer: the answer\n#\n# Since: {{ since }}\n##\n"
        "{ 'struct': 'XTestInfo', 'data': { 'answer': 'int' } }\n\n"
        "##\n# @x-query-test:\n#\n# Return the answer.\n#\n"
        "# Since: {{ since }}\n##\n"
        "{ 'command': 'x-query-test', 'returns': 'XTestInfo' }\n"
    )
    params = {
        "file": MISC,
        "add": "definitions",
        "template": "defs.json.j2",
        "after": "NameInfo",
    }
    out = apply("qapi", params, reader(tree), tmp_path / "series")
    new = text(out, MISC)
    assert new.index("{ 'struct': 'NameInfo'") < new.index("@XTestInfo:")
    assert new.index("@XTestInfo:") < new.index("{ 'command': 'query-name'")
    assert qapi_gen(tree, dict(out), tmp_path) == ""
    # Twice is refused, not duplicated.
    with pytest.raises(AnchorError, match="XTestInfo is defined already"):
        apply("qapi", params, reader(tree, {MISC: new}), tmp_path / "series")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"add": "command", "command": "x-c", "doc": "d.", "after": "no-such"},
            r"^qapi/misc.json of QEMU test: no definition no-such;",
        ),
        (
            {"add": "command", "command": "query-name", "doc": "d."},
            "query-name is defined already",
        ),
        (
            {
                "add": "member",
                "struct": "NoSuch",
                "member": "m",
                "type": "int",
                "doc": "d",
            },
            "no struct or union NoSuch",
        ),
        (
            {"add": "enum-value", "enum": "NoSuch", "value": "v", "doc": "d"},
            "no enum NoSuch",
        ),
        (
            {
                "add": "member",
                "struct": "NameInfo",
                "member": "*name",
                "type": "str",
                "doc": "d",
            },
            "NameInfo has a member name already",
        ),
    ],
)
def test_what_cannot_be_placed_is_refused(params: dict[str, str], message: str) -> None:
    tree = qemu_tree()
    with pytest.raises(AnchorError) as info:
        apply("qapi", {"file": MISC, **params}, reader(tree))
    assert re.search(message, str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_module_is_refused() -> None:
    with pytest.raises(AnchorError, match=r"qapi/nope\.json is missing in QEMU test"):
        apply(
            "qapi",
            {"file": "qapi/nope.json", "add": "event", "event": "E", "doc": "d"},
            reader(None),
        )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"add": "thing"}, "add must be one of"),
        ({"add": "event", "event": "E"}, "add: event needs: doc"),
        (
            {"add": "event", "event": "E", "doc": "d", "like": "F"},
            "does not take: like",
        ),
        ({"add": "enum-value", "enum": "E", "value": "v"}, "either 'template' or"),
    ],
)
def test_keys_are_checked_when_loaded(params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        qapi.KIND.check({"file": MISC, **params})


def test_definitions_are_read_from_the_real_modules() -> None:
    tree = qemu_tree()
    found = qapi.definitions((tree / BLOCK).read_text())
    names = [d.name for d in found if d.meta == "struct"]
    assert "BlockdevSnapshotSync" in names
    snapshot = next(d for d in found if d.name == "BlockdevSnapshotSync")
    assert snapshot.doc is not None
    # Every definition of the module, and only those, once each.
    assert len(found) == len(re.findall(r"^\{ '", (tree / BLOCK).read_text(), re.M))
