"""run_mutations writes the sources of the tree the series' build ran in:
never through a symlink that build may have left there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qseries.core.results import PASS, Result
from qseries.labs.vfio_migration import plan as lab_plan
from qseries.labs.vfio_migration import vfiotest
from qseries.labs.vfio_migration.plan import Mutation
from qseries.qemu.build import BuildError

from ..conftest import git

ORIGINAL = "int notify(void) { return 1; }\n"


def mutation(name: str) -> Mutation:
    return Mutation(
        name=name,
        what="no notice",
        file="hw/x.c",
        edits=(("return 1;", "return 0;"),),
        case="/x",
        reason="no notice",
        fault="stop-cont/source/running>stop",
    )


PLAN = lab_plan.TestPlan(
    qtest="x-test",
    preload="env",
    targets=(),
    base_passes=(),
    notice_pattern="prepare",
    mutations=(mutation("one"), mutation("two")),
)


def plant(kind: str, tree: Path, victim: Path) -> str:
    """What the series' build does: hw/x.c, or hw itself, made a symlink
    to the victim's."""
    if kind == "file":
        (victim / "x.c").write_text("precious\n")
        return f"rm -f {tree}/hw/x.c && ln -s {victim}/x.c {tree}/hw/x.c"
    (victim / "x.c").write_text("precious\n")
    return f"rm -rf {tree}/hw && ln -s {victim} {tree}/hw"


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_no_write_through_a_symlink_the_build_left(tmp_path: Path, kind: str) -> None:
    tree = tmp_path / "tree"
    (tree / "hw").mkdir(parents=True)
    (tree / "hw" / "x.c").write_text(ORIGINAL)
    git(tree, "init", "-q", "-b", "master")
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", "base")
    victim = tmp_path / "victim"
    victim.mkdir()
    command = plant(kind, tree, victim)
    builddir = tmp_path / "build"
    builddir.mkdir()
    (builddir / "build.ninja").write_text(
        f"rule plant\n  command = {command} && touch $out\n"
        "build qemu-system-x86_64: plant\n"
    )
    qemu = builddir / "qemu-system-x86_64"
    checked: list[str] = []

    def fault_check(m: Mutation) -> Result:
        checked.append(m.name)
        return Result(f"mutation {m.name}", PASS, "")

    with pytest.raises(BuildError) as info:
        vfiotest.run_mutations(
            PLAN, tree, builddir, qemu, None, tmp_path / "log", fault_check
        )
    assert checked == ["one"]
    assert (victim / "x.c").read_text() == "precious\n"
    message = str(info.value)
    assert "\n" not in message
    assert f"{tree}/hw" in message and "symlink" in message
    # The tree's sources back as git has them, the symlink gone.
    assert not os.path.islink(tree / "hw" / "x.c")
    assert (tree / "hw" / "x.c").read_text() == ORIGINAL
