"""Bisectability on Debian's real QEMU: the tree must build after each
patch of a series.  v2 with its patches 1 and 2 swapped does not: its
migration.c patch uses the QAPI constant that its QAPI patch adds, so
the first prefix fails, and the report names that patch and the error.

The build shares the base's build dir with `qseries test`, which then
builds incrementally on what this test built."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qseries.ground.workdir import WorkDir
from qseries.qemu import build
from qseries.qemu.source import BaseTree

from ..conftest import REPO

pytestmark = pytest.mark.qemu


def test_a_patch_that_does_not_build_alone_is_named(
    real_base: dict[str, object], real_workdir: Path
) -> None:
    base = BaseTree(
        kind=str(real_base["kind"]),
        root=Path(str(real_base["root"])),
        commit=str(real_base["commit"]),
        version=str(real_base["version"]),
        label=str(real_base["label"]),
        debian_version=str(real_base["debian_version"]),
    )
    qapi, migration = sorted((REPO / "patches" / "v2").glob("v2-000[12]-*.patch"))
    steps = build.bisect(
        base,
        [migration, qapi],
        WorkDir(real_workdir),
        lambda tree: [build.QEMU_TARGET],
    )
    assert len(steps) == 1  # the whole series is the caller's to build
    (step,) = steps
    assert (step.k, step.total, step.patch, step.ok) == (1, 2, migration, False)
    assert any(
        re.match(
            r"hw/vfio/migration\.c:\d+: error: .*"
            r"QAPI_VFIO_MIGRATION_STATE_PRE_COPY_P2P_PREPARE",
            line,
        )
        for line in step.errors
    ), step.errors
    assert step.log.is_file() and step.log.name.startswith("bisect-")
