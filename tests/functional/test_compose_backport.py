"""A backport builds as it checks: a patch whose context differs on the
base is applied 3-way with the generation base's objects at hand."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from qseries.ground.workdir import WorkDir
from qseries.qemu import build
from qseries.qemu.source import BaseTree

from ..conftest import FIXTURES, git


def base_tree(path: Path, label: str) -> BaseTree:
    commit = git(path, "rev-parse", "HEAD").strip()
    return BaseTree("tree", path, commit, "10.2.0", label)


def committed(path: Path) -> None:
    git(path, "init", "-q", "-b", "master")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")


def test_compose_merges_3_way_with_the_generation_base(tmp_path: Path) -> None:
    origin_root = tmp_path / "origin"
    shutil.copytree(FIXTURES / "qemu-mini", origin_root)
    committed(origin_root)
    # The patch: a line added to MAINTAINERS next to its end.
    maint = origin_root / "MAINTAINERS"
    text = maint.read_text()
    maint.write_text(text.replace("F: qapi/vfio.json\n", "F: qapi/vfio.json\nF: x.c\n"))
    patch = tmp_path / "0001.patch"
    patch.write_text(
        subprocess.run(
            ["git", "diff"], cwd=origin_root, capture_output=True, text=True, check=True
        ).stdout
    )
    git(origin_root, "checkout", "-q", "--", "MAINTAINERS")

    # The older base differs in the patch's context, far enough for a
    # 3-way merge to resolve it but not for a plain apply.
    old_root = tmp_path / "old"
    shutil.copytree(FIXTURES / "qemu-mini", old_root)
    text = (old_root / "MAINTAINERS").read_text()
    (old_root / "MAINTAINERS").write_text(
        text.replace("F: hw/vfio/*\n", "F: hw/vfio/*.c\n")
    )
    committed(old_root)
    # The old base's repository does not hold the origin's blobs.
    assert "F: hw/vfio/*\n" in (origin_root / "MAINTAINERS").read_text()

    work = WorkDir(tmp_path / "work")
    origin, old = base_tree(origin_root, "origin"), base_tree(old_root, "old")
    with pytest.raises(build.BuildError, match=r"0001\.patch does not apply to"):
        build.compose(old, [patch], work)
    commit = build.compose(old, [patch], work, origin)
    merged = git(old_root, "show", f"{commit}:MAINTAINERS")
    assert "F: hw/vfio/*.c\n" in merged
    assert "F: qapi/vfio.json\nF: x.c\n" in merged


def test_compose_without_its_generation_base_uses_one_line_of_context(
    tmp_path: Path,
) -> None:
    """When Debian dropped the generation base (loose), a patch whose
    context differs beyond its nearest line still applies; not otherwise."""
    old_root = tmp_path / "old"
    shutil.copytree(FIXTURES / "qemu-mini", old_root)
    committed(old_root)
    maint = old_root / "MAINTAINERS"
    text = maint.read_text()
    maint.write_text(text.replace("F: qapi/vfio.json\n", "F: qapi/vfio.json\nF: x.c\n"))
    patch = tmp_path / "0001.patch"
    patch.write_text(git(old_root, "diff"))
    git(old_root, "checkout", "-q", "--", "MAINTAINERS")
    # The base's context differs two lines above the change.
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line == "F: qapi/vfio.json\n")
    lines[at - 2] = lines[at - 2].rstrip("\n") + " (moved)\n"
    maint.write_text("".join(lines))
    git(old_root, "commit", "-q", "-am", "context")
    work = WorkDir(tmp_path / "work")
    old = base_tree(old_root, "old")
    with pytest.raises(build.BuildError, match=r"0001\.patch does not apply to"):
        build.compose(old, [patch], work)
    commit = build.compose(old, [patch], work, None, loose=True)
    assert "F: qapi/vfio.json\nF: x.c\n" in git(
        old_root, "show", f"{commit}:MAINTAINERS"
    )
