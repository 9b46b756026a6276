"""The kinds as series.yaml sees them: the core's registry, a lab's kinds
beside it, a patch's list of changes, and errors at their lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qseries.core import generators, series
from qseries.ground.errors import SeriesFileError
from qseries.labs.vfio_migration.generators import KINDS as LAB_KINDS

from ..conftest import REPO

CORE_FILES = sorted((REPO / "scripts" / "qseries" / "core" / "generators").glob("*.py"))

HEAD = """\
schema: 2
versions:
  v1:
    author: "A U Thor <author@example.org>"
    date: "2026-01-02T03:04:05+00:00"
    target: "10.2"
    cover:
      subject: "x: Cover"
      body: "Cover text."
    patches:
"""

TWO_CHANGES = """\
      - subject: "misc: Add and use it"
        body: "Body."
        changes:
          - kind: carry
            file: docs/x.rst
            template: x.rst.j2
          - kind: c-edit
            file: monitor/qmp-cmds.c
            function: qmp_quit
            before: "shutdown_action = SHUTDOWN_ACTION_POWEROFF;"
            code: "    /* quitting */\\n"
"""


def load(tmp_path: Path, patches: str) -> series.Series:
    (tmp_path / "x.rst.j2").write_text("x\n")
    path = tmp_path / "series.yaml"
    path.write_text(HEAD + patches)
    return series.load(path, generators.specs())


def refused(tmp_path: Path, patches: str) -> str:
    with pytest.raises(SeriesFileError) as info:
        load(tmp_path, patches)
    message = str(info.value)
    assert "\n" not in message
    return message.removeprefix(str(tmp_path / "series.yaml"))


def test_the_core_kinds() -> None:
    assert sorted(generators.CORE) == ["c-edit", "carry", "diff", "qapi", "qtest"]
    for name, kind in generators.CORE.items():
        assert kind.name == name and kind.summary
        assert not set(kind.params) & set(kind.optional)


def test_the_core_names_no_series() -> None:
    assert CORE_FILES
    for path in CORE_FILES:
        found = re.findall(
            r"vfio|p2p|pre.copy|stop.copy|rdma|migration.events|fakevfio",
            path.read_text(),
            re.I,
        )
        assert not found, (path.name, found)


def test_specs_adds_a_labs_kinds_and_refuses_a_clash() -> None:
    kinds = generators.specs(LAB_KINDS)
    assert set(kinds) == {*generators.CORE, "vfio-migration-notice"}
    assert kinds["vfio-migration-notice"] is LAB_KINDS["vfio-migration-notice"]
    assert generators.specs() == generators.CORE
    with pytest.raises(ValueError, match="take core names: qapi"):
        generators.specs({"qapi": generators.CORE["carry"]})


def test_a_patch_with_a_list_of_changes(tmp_path: Path) -> None:
    patch = load(tmp_path, TWO_CHANGES).version("v1").patches[0]
    assert [c.kind for c in patch.changes] == ["carry", "c-edit"]
    assert [c.line for c in patch.changes] == [14, 17]
    assert patch.changes[1].params["function"] == "qmp_quit"
    assert patch.changes[1].generator is generators.CORE["c-edit"]
    # The first change also answers for the patch, as the short form did.
    assert patch.generator == "carry"
    assert patch.params == {"file": "docs/x.rst", "template": "x.rst.j2"}


def test_the_short_form_is_one_change(tmp_path: Path) -> None:
    patch = (
        load(
            tmp_path,
            '      - subject: "x: y"\n        body: "B."\n        generator: carry\n'
            "        with: {file: docs/x.rst, template: x.rst.j2}\n",
        )
        .version("v1")
        .patches[0]
    )
    assert [(c.kind, dict(c.params)) for c in patch.changes] == [
        ("carry", {"file": "docs/x.rst", "template": "x.rst.j2"})
    ]


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        (
            "- kind: carry",
            "- kind: cary",
            ":14: versions.v1.patches[0].changes[0].kind: "
            "unknown kind 'cary'; known: c-edit, carry, diff, qapi, qtest",
        ),
        (
            "            template: x.rst.j2\n",
            "",
            ":14: versions.v1.patches[0].changes[0]: needs exactly one of: source, "
            "template",
        ),
        (
            "            function: qmp_quit\n",
            "            function: qmp_quit\n            colour: red\n",
            ":20: versions.v1.patches[0].changes[1]: unknown key 'colour'",
        ),
        (
            "file: docs/x.rst",
            "file: ../x.rst",
            ":15: versions.v1.patches[0].changes[0].file: '../x.rst' is not a path "
            "inside the QEMU tree",
        ),
        (
            "template: x.rst.j2",
            "template: /etc/passwd",
            ":16: versions.v1.patches[0].changes[0].template: '/etc/passwd' is not a "
            "path inside the series' folder",
        ),
        (
            "        changes:\n",
            "        generator: carry\n        changes:\n",
            ":11: versions.v1.patches[0]: give either 'generator'",
        ),
        (
            "        changes:\n          - kind: carry",
            "        changes: []\n        x:\n          - kind: carry",
            None,
        ),
    ],
)
def test_errors_name_the_change_and_its_line(
    tmp_path: Path, old: str, new: str, where: str | None
) -> None:
    assert old in TWO_CHANGES
    message = refused(tmp_path, TWO_CHANGES.replace(old, new, 1))
    if where is not None:
        assert message.startswith(where), message


def test_an_empty_list_of_changes_is_refused(tmp_path: Path) -> None:
    message = refused(
        tmp_path, '      - subject: "x: y"\n        body: "B."\n        changes: []\n'
    )
    assert message.startswith(
        ":13: versions.v1.patches[0].changes: expected a non-empty list of changes"
    ), message


def test_the_repository_series_says_what_it_edits() -> None:
    loaded = series.load(REPO / "series.yaml", generators.specs())
    for version in loaded.versions.values():
        for patch in version.patches:
            for change in patch.changes:
                if change.kind == "qapi":
                    assert change.params["file"] == "qapi/vfio.json"
                if change.kind == "qtest":
                    assert change.params["maintainers-section"] == "VFIO"


def test_every_change_counts_in_the_inputs(tmp_path: Path) -> None:
    from qseries.core import inputs

    (tmp_path / "hunks.diff").write_text("")
    (tmp_path / "code.c.j2").write_text("{% include 'part.j2' %}\n")
    (tmp_path / "part.j2").write_text("x;\n")
    patches = TWO_CHANGES.replace(
        '            code: "    /* quitting */\\n"\n',
        "            template: code.c.j2\n          - kind: diff\n"
        "            patch: hunks.diff\n",
    )
    loaded = load(tmp_path, patches)
    names = [name for name, _ in inputs.series_files(loaded)]
    assert names == ["code.c.j2", "hunks.diff", "part.j2", "series.yaml", "x.rst.j2"]
