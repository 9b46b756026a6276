"""The qapi check, with the QAPI code of Debian's real QEMU: any series'
new definitions documented and new since its target; and, as the VFIO
lab reads it, each version's notice as its wire defines it: an event of
its own (v1), or a value of VFIO_MIGRATION's device-state enum (v2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qseries.core import generators, series
from qseries.core.results import FAIL, PASS, Result
from qseries.core.templates import Templates
from qseries.ground.workdir import WorkDir
from qseries.labs.vfio_migration.qapicheck import NoticeJudge
from qseries.qemu import check

from ..conftest import REPO

pytestmark = pytest.mark.qemu

SERIES = series.load(REPO / "series.yaml", generators.specs())


def schema_tree(root: Path, tmp_path: Path, name: str) -> Path:
    """The real base's QAPI schema and code, with the version's QAPI patch."""
    tree = tmp_path / "qemu"
    shutil.copytree(root / "qapi", tree / "qapi")
    shutil.copytree(root / "scripts" / "qapi", tree / "scripts" / "qapi")
    shutil.copy(root / "scripts" / "qapi-gen.py", tree / "scripts")
    version = SERIES.version(name)
    patch = next(
        p for p in version.patches if p.params.get("template", "").startswith("qapi/")
    )
    ctx = generators.Context(
        since=version.since, base="test", templates=Templates(REPO), params=patch.params
    )
    out = patch.changes[0].generator.apply(lambda p: (tree / p).read_text(), ctx)
    for path, text in out.items():
        assert text is not None
        (tree / path).write_text(text)
    return tree


def qapi(tree: Path, name: str, tmp_path: Path) -> Result:
    # The copy holds the base's QAPI code beside the patched schema.
    return check.check_qapi(
        tree,
        SERIES.version(name),
        WorkDir(tmp_path / "work"),
        code=tree,
        judge=NoticeJudge(),
    )


@pytest.mark.parametrize("name", ["v1", "v2"])
def test_each_version_passes_with_its_own_notice(
    real_base: dict[str, object], tmp_path: Path, name: str
) -> None:
    tree = schema_tree(Path(str(real_base["root"])), tmp_path, name)
    result = qapi(tree, name, tmp_path)
    assert result.status == PASS, result
    assert result.detail.endswith("qapi-gen.py ok")


def test_v2_wants_the_value_documented_with_since(
    real_base: dict[str, object], tmp_path: Path
) -> None:
    tree = schema_tree(Path(str(real_base["root"])), tmp_path, "v2")
    vfio = tree / "qapi" / "vfio.json"
    text = vfio.read_text()
    assert "state.  (since 11.0)" in text
    vfio.write_text(text.replace("state.  (since 11.0)", "state."))
    result = qapi(tree, "v2", tmp_path)
    assert result.status == FAIL
    [item] = result.items
    assert item.startswith(
        "the doc of 'pre-copy-p2p-prepare' does not say '(since 11.0)': "
    )


def test_v2_without_the_value_fails(
    real_base: dict[str, object], tmp_path: Path
) -> None:
    root = Path(str(real_base["root"]))
    tree = schema_tree(root, tmp_path, "v2")
    shutil.copy(root / "qapi" / "vfio.json", tree / "qapi")
    result = qapi(tree, "v2", tmp_path)
    assert result.status == FAIL
    assert result.detail == (
        "no enum member of VFIO_MIGRATION has the value 'pre-copy-p2p-prepare'"
    )


def test_v1_schema_is_not_v2(real_base: dict[str, object], tmp_path: Path) -> None:
    """A version checked against another version's schema fails: the check
    reads the wire of the version it is given."""
    tree = schema_tree(Path(str(real_base["root"])), tmp_path, "v1")
    assert qapi(tree, "v1", tmp_path).status == PASS
    result = qapi(tree, "v2", tmp_path)
    assert result.status == FAIL
    assert "'pre-copy-p2p-prepare'" in result.detail


QOM = series.load(REPO / "series" / "qom-type-info" / "series.yaml", generators.specs())
COMMAND = """
##
# @x-qseries-test:
#
# A command the test adds.
#
# Since: {since}
##
{{ 'command': 'x-qseries-test' }}
"""


@pytest.mark.parametrize("since", ["11.0", "9.2", None])
def test_a_new_definition_is_documented_and_new_since_the_target(
    real_base: dict[str, object], tmp_path: Path, since: str | None
) -> None:
    """A series with no lab: QEMU's QAPI code reads the whole patched
    schema, and each definition the series adds must say the release
    after the series' target (11.0 for 10.2)."""
    root = Path(str(real_base["root"]))
    tree = tmp_path / "qemu"
    shutil.copytree(root / "qapi", tree / "qapi")
    module = tree / "qapi" / "qom.json"
    text = COMMAND.format(since=since)
    if since is None:
        text = text.replace("#\n# Since: None\n", "")
    module.write_text(module.read_text() + text)
    line = module.read_text().count("\n")
    result = check.check_qapi(
        tree, QOM.version("v1"), WorkDir(tmp_path / "work"), code=root
    )
    said = f"new command x-qseries-test at qapi/qom.json:{line}, Since: {since}"
    assert said in result.items, result
    if since == "11.0":
        assert result.status == PASS, result
        return
    assert result.status == FAIL, result
    assert (
        f"command x-qseries-test at qapi/qom.json:{line}: Since: is {since!r}, "
        "the series records '11.0'"
    ) in result.items


def test_a_schema_qemu_rejects_fails_with_its_words(
    real_base: dict[str, object], tmp_path: Path
) -> None:
    root = Path(str(real_base["root"]))
    tree = tmp_path / "qemu"
    shutil.copytree(root / "qapi", tree / "qapi")
    module = tree / "qapi" / "qom.json"
    module.write_text(module.read_text() + "{ 'command': 'x-undocumented' }\n")
    result = check.check_qapi(
        tree, QOM.version("v1"), WorkDir(tmp_path / "work"), code=root
    )
    assert result.status == FAIL
    assert result.detail == "QEMU's QAPI code rejects the schema"
    assert any("qom.json" in item for item in result.items), result
