"""Package data copied into the work dir for tools that take a path."""

from __future__ import annotations

from pathlib import Path

import pytest

from qseries.ground import pkgdata
from qseries.ground.workdir import MADE, WorkDirError


def folder(where: Path, text: str) -> Path:
    (where / "sub").mkdir(parents=True)
    (where / "top.c").write_text(text)
    (where / "sub" / "meson.build").write_text("project('x', 'c')\n")
    return where


def test_a_folder_is_copied_whole_once(tmp_path: Path) -> None:
    work = tmp_path / "work"
    source = folder(tmp_path / "pkg" / "fake", "int a;\n")
    copy = pkgdata.materialize(work, source)
    assert copy.name == "fake" and copy.parent.parent == work / pkgdata.FOLDER
    assert (copy / "top.c").read_text() == "int a;\n"
    assert (copy / "sub" / "meson.build").is_file()
    assert pkgdata.materialize(work, source) == copy
    (source / "top.c").write_text("int b;\n")
    moved = pkgdata.materialize(work, source)
    assert moved != copy and (moved / "top.c").read_text() == "int b;\n"
    assert (copy / "top.c").read_text() == "int a;\n"
    assert len(list((work / pkgdata.FOLDER).iterdir())) == 2  # no half copy


def test_bytes_are_placed_by_their_content(tmp_path: Path) -> None:
    work = tmp_path / "work"
    one = pkgdata.place(work, "x.mak", b"A=y\n")
    assert one.name == "x.mak" and one.read_bytes() == b"A=y\n"
    assert pkgdata.place(work, "x.mak", b"A=y\n") == one
    assert pkgdata.place(work, "x.mak", b"A=n\n") != one


def test_a_work_dir_that_cannot_take_it_says_so(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / pkgdata.FOLDER).write_text("not a folder\n")
    with pytest.raises(WorkDirError, match=r"cannot copy qseries' x.mak to "):
        pkgdata.place(work, "x.mak", b"A=y\n")


def test_clean_all_knows_the_folder() -> None:
    """clean --all removes what qseries made at the top of a work dir."""
    assert pkgdata.FOLDER in MADE
