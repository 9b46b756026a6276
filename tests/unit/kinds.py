"""What the kinds' unit tests share: a real QEMU tree to read (never
written), a reader over it with a test's own files on top, and a
context with a change's keys."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from qseries.core import generators
from qseries.core.templates import Templates
from qseries.ground.errors import AnchorError

from ..conftest import REPO

# The Debian 10.2.2 base, as the real-QEMU tests or a qseries run left it.
TREE_NAME = "debian-1_10.2.2+ds-1"
CANDIDATES = [
    Path(os.environ.get("QSERIES_WORKDIR") or REPO / ".work") / "trees" / TREE_NAME,
    Path.home() / ".cache" / "qseries" / "trees" / TREE_NAME,
]


def qemu_tree() -> Path:
    """The real QEMU tree, or the test is skipped (marked 'qemu')."""
    for path in CANDIDATES:
        if (path / "qapi" / "qapi-schema.json").is_file():
            return path
    pytest.skip("no QEMU 10.2.2 tree: run a real-QEMU test or qseries source first")


def reader(root: Path | None, files: Mapping[str, str] = {}) -> generators.Reader:
    """Files of `files`, else of the tree at root; AnchorError if neither."""

    def read(path: str) -> str:
        if path in files:
            return files[path]
        if root is not None and (root / path).is_file():
            return (root / path).read_text(encoding="utf-8")
        raise AnchorError(f"{path} is missing", "test")

    return read


def context(
    params: Mapping[str, str], series_dir: Path = REPO, since: str = "11.0"
) -> generators.Context:
    return generators.Context(
        since=since,
        base="QEMU test",
        templates=Templates(series_dir),
        params=dict(params),
    )


def apply(
    kind: str,
    params: Mapping[str, str],
    read: generators.Reader,
    series_dir: Path = REPO,
) -> generators.Files:
    """Apply a core kind, after the load-time check of its keys."""
    generator = generators.CORE[kind]
    generator.check(params)
    return generator.apply(read, context(params, series_dir))


def text(files: generators.Files, path: str) -> str:
    value = files[path]
    assert value is not None, f"{path} was deleted"
    return value
