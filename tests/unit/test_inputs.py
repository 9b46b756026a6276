"""The check cache's key: every file the series names counts, and nothing
else around series.yaml is read, a work dir inside the checkout least of
all."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qseries.ground.workdir import WorkDir
from qseries.pipeline import stages as pipeline
from qseries.qemu.source import SourceSpec

from ..conftest import copy_series

MAIL = """\
From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: A <a@example.org>
Subject: [PATCH v2 1/1] x

x
---
diff --git a/x b/x
--- a/x
+++ b/x
@@ -1 +1 @@
-a
+b
"""

# Paths under which a file was opened or a directory listed, while the
# hook listens (an audit hook cannot be removed: it is made deaf).
_heard: list[str] = []
_listening: list[bool] = [False]


def _hook(event: str, args: tuple[object, ...]) -> None:
    if _listening[0] and event in ("open", "os.scandir", "os.listdir") and args:
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)):
            _heard.append(os.fsdecode(path))


sys.addaudithook(_hook)


class Keys:
    """The check key of a copy of series.yaml, on a small --tree base."""

    def __init__(self, tmp: Path, tree: Path, workdir: Path):
        self.series = copy_series(tmp / "series")
        self.patches = tmp / "patches"
        (self.patches / "v2").mkdir(parents=True)
        (self.patches / "v2" / "v2-0001-x.patch").write_text(MAIL)
        self.tree = tree
        self.workdir = WorkDir(workdir)

    def __call__(self) -> tuple[str, list[str]]:
        """The key, and what computing it opened or listed."""
        request = pipeline.Request(
            series_file=self.series,
            spec=SourceSpec(tree=self.tree),
            version="v2",
            patches_root=self.patches,
        )
        run = pipeline.Pipeline(request, self.workdir)
        try:
            run.base()
            run.mails()
            _heard.clear()
            _listening[0] = True
            try:
                key = run._check_key()
            finally:
                _listening[0] = False
            return key, list(_heard)
        finally:
            run.close()


@pytest.fixture
def keys(tmp_path: Path, mini_tree: Path) -> Iterator[Keys]:
    yield Keys(tmp_path, mini_tree, tmp_path / "work")


def test_same_inputs_same_key(keys: Keys) -> None:
    assert keys()[0] == keys()[0]


NAMED = [
    "series.yaml",
    "mutations/v2.yaml",
    "mutations/v1.yaml",
    "faults/scenarios.yaml",
    "qapi/vfio-v2.json.j2",
    "hw/vfio/migration-v2.c.j2",
    "tests/qtest/meson-preload.j2",
    "tests/qtest/vfio-migration-events-test.c",
    "tests/fakevfio/fakevfio.c",
]


# Read too, though no change to them is tried here.
V1 = [
    "qapi/vfio-v1.json.j2",
    "hw/vfio/migration-v1.c.j2",
    "tests/qtest/vfio-migration-prepare-test.c",
]


@pytest.mark.parametrize("name", NAMED)
def test_a_change_to_a_named_file_changes_the_key(keys: Keys, name: str) -> None:
    before, _ = keys()
    path = keys.series.parent / name
    path.write_text(path.read_text() + "\n# changed\n")
    assert keys()[0] != before


def test_a_template_a_template_includes_counts(keys: Keys) -> None:
    root = keys.series.parent
    (root / "qapi" / "part.j2").write_text("one\n")
    template = root / "qapi" / "vfio-v2.json.j2"
    template.write_text("{% include 'qapi/part.j2' %}\n" + template.read_text())
    before, _ = keys()
    (root / "qapi" / "part.j2").write_text("two\n")
    assert keys()[0] != before


def test_only_named_files_are_read(keys: Keys, tmp_path: Path) -> None:
    """Junk and a work dir inside the checkout: not listed, not read, and
    the key is the same without them."""
    before, _ = keys()
    root = keys.series.parent
    for junk in (root / "junk" / "deep", root / ".work" / "trees" / "x" / ".git"):
        junk.mkdir(parents=True)
        (junk / "big.bin").write_bytes(b"\0" * 4096)
        (junk / "template.j2").write_text("{{ nothing }}\n")
    (root / "notes.txt").write_text("not an input\n")
    # The run's own work dir inside the checkout, as make's .work is.
    keys.workdir = WorkDir(root / "work")
    key, heard = keys()
    assert key == before
    named = {str(root / n) for n in (*NAMED, *V1)}
    inside = [h for h in heard if Path(h).is_relative_to(root)]
    assert inside, "the key reads the named files"
    assert set(inside) <= named, inside


def test_a_computed_include_never_takes_a_work_dir_beside_it(tmp_path: Path) -> None:
    from qseries.core.templates import Templates

    root = tmp_path / "series"
    root.mkdir()
    # The include's name is known only at render time: the folder counts.
    (root / "main.j2").write_text("{% include which %}\n")
    (root / "part.j2").write_text("part\n")
    work = root / "work"  # a work dir, whatever its name
    (work / "trees").mkdir(parents=True)
    (work / "lock").write_text("")
    (work / "trees" / "big.c").write_text("int x;\n")
    found = Templates(root).closure(["main.j2"])
    assert root / "part.j2" in found
    assert not [p for p in found if work in p.parents], found
