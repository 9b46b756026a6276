"""The base tree's commit, made with git fast-import: the same commit as
git add --all --force and git commit make of the same files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from qseries.qemu import source

DATE = "2025-11-20T16:05:00+01:00"
MESSAGE = "QEMU 10.2.2 from Debian's qemu source package"


def tree(root: Path) -> Path:
    """Files as a QEMU tarball has them, and the odd ones it may."""
    (root / "hw" / "vfio").mkdir(parents=True)
    (root / "hw" / "vfio" / "migration.c").write_text("int x;\n")
    (root / "configure").write_text("#!/bin/sh\n")
    (root / "configure").chmod(0o755)
    (root / "empty").write_bytes(b"")
    (root / "blob.bin").write_bytes(bytes(range(256)) * 3)
    (root / ".gitignore").write_text("ignored.o\n")
    (root / "ignored.o").write_text("kept: the tree is committed whole\n")
    (root / '"quoted name').write_text("a name git must quote\n")
    (root / "a name with spaces").write_text("x\n")
    (root / "link").symlink_to("configure")
    (root / "dir-link").symlink_to("hw")
    (root / "empty-dir").mkdir()
    os.symlink(b"not-utf8-\xff", os.fsencode(root / "odd-link"))
    # A folder named .git below the top (not a repository): git keeps
    # no path with a .git in it.
    (root / "sub" / ".git").mkdir(parents=True)
    (root / "sub" / ".git" / "config").write_text("[core]\n")
    (root / "sub" / "kept.c").write_text("int y;\n")
    return root


def git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": source.BASE_NAME,
        "GIT_AUTHOR_EMAIL": source.BASE_EMAIL,
        "GIT_AUTHOR_DATE": DATE,
        "GIT_COMMITTER_NAME": source.BASE_NAME,
        "GIT_COMMITTER_EMAIL": source.BASE_EMAIL,
        "GIT_COMMITTER_DATE": DATE,
    }
    done = subprocess.run(
        ["git", "-C", str(root), *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_the_import_makes_the_commit_git_add_and_commit_make(tmp_path: Path) -> None:
    imported = tree(tmp_path / "imported")
    added = tmp_path / "added"
    shutil.copytree(imported, added, symlinks=True)
    commit = source._commit_all(imported, MESSAGE, DATE)

    git(added, "init", "-q", "--initial-branch=qseries-base")
    git(added, "add", "--all", "--force", ".")
    git(added, "commit", "-q", "--no-verify", "-m", MESSAGE)
    assert commit == git(added, "rev-parse", "HEAD")
    assert git(imported, "symbolic-ref", "HEAD") == "refs/heads/qseries-base"


def test_the_imported_tree_is_clean_packed_and_its_index_fresh(tmp_path: Path) -> None:
    imported = tree(tmp_path / "imported")
    source._commit_all(imported, MESSAGE, DATE)
    # diff-files trusts the index's stats (git status would refresh them).
    assert git(imported, "diff-files", "--name-only") == ""
    assert git(imported, "status", "--porcelain", "--ignored") == ""
    loose = git(imported, "count-objects", "-v").splitlines()
    assert "count: 0" in loose
    assert not list(tmp_path.glob(".*.fast-import"))  # the stream is gone


def test_a_path_is_quoted_only_where_fast_import_needs_it() -> None:
    assert source._quoted(b"hw/vfio/migration.c") == b"hw/vfio/migration.c"
    assert source._quoted(b"a b") == b"a b"
    assert source._quoted(b'"x') == b'"\\"x"'
    assert source._quoted(b"a\nb") == b'"a\\nb"'
