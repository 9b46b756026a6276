"""--tree: what is wrong with the path is said in the user's terms, and the
user's repository is only ever read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from qseries.ground.errors import EXIT_USAGE, SourceError
from qseries.ground.workdir import WorkDir
from qseries.qemu.source import TreeOptionError, tree_base

from ..conftest import FIXTURES, REPO, RunCli, git, loosen_objects

SERIES = ("--series-file", str(REPO / "series.yaml"))
VERSION_OF_MINI = (FIXTURES / "qemu-mini" / "VERSION").read_text().strip()


def _last(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_typo_inside_a_checkout_is_not_that_checkout(
    run_cli: RunCli, mini_tree: Path
) -> None:
    # Run from inside a QEMU checkout: a missing --tree must not fall
    # back to the current directory.
    proc = run_cli(*SERIES, "source", "--tree", "qemu-typo", cwd=mini_tree)
    assert proc.returncode == EXIT_USAGE, proc.stdout
    assert _last(proc.stderr) == (
        "qseries: error: --tree qemu-typo: no such directory; "
        "pass the path of a QEMU git checkout"
    )


def test_a_file_is_not_a_tree(run_cli: RunCli, mini_tree: Path) -> None:
    proc = run_cli(*SERIES, "source", "--tree", "VERSION", cwd=mini_tree)
    assert proc.returncode == EXIT_USAGE, proc.stdout
    assert _last(proc.stderr).startswith(
        "qseries: error: --tree VERSION: is a file, not a directory"
    )


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("unborn", "--tree {}: has no commit yet"),
        ("not-qemu", "--tree {}: not a QEMU tree (no VERSION file at HEAD {})"),
        ("plain", "--tree {}: is not a git checkout"),
    ],
)
def test_not_a_qemu_checkout(setup: str, message: str, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    head = ""
    if setup != "plain":
        git(repo, "init", "-q")
    if setup == "not-qemu":
        (repo / "README").write_text("hello\n")
        git(repo, "add", "README")
        git(repo, "commit", "-q", "-m", "readme")
        head = git(repo, "rev-parse", "HEAD").strip()[:12]
    with pytest.raises(TreeOptionError) as err:
        tree_base(WorkDir(tmp_path / "work"), repo)
    assert err.value.message == message.format(repo, head)
    assert err.value.exit_code == EXIT_USAGE
    assert not (tmp_path / "work" / "trees").exists()


def test_clone_shares_no_inode_with_the_tree(mini_tree: Path, tmp_path: Path) -> None:
    objects = [p for p in (mini_tree / ".git" / "objects").rglob("*") if p.is_file()]
    before = {p: (p.stat().st_nlink, p.stat().st_mtime_ns) for p in objects}
    assert {links for links, _ in before.values()} == {1}
    workdir = WorkDir(tmp_path / "work")
    base = tree_base(workdir, mini_tree)
    # What later commands do in the clone: write objects that already exist.
    git(base.root, "add", "--all", "--force", ".")
    git(base.root, "commit", "-q", "--allow-empty", "-m", "touch")
    after = {p: (p.stat().st_nlink, p.stat().st_mtime_ns) for p in objects}
    assert after == before


def _corrupt_version_blob(repo: Path) -> None:
    blob = git(repo, "rev-parse", "HEAD:VERSION").strip()
    loose = repo / ".git" / "objects" / blob[:2] / blob[2:]
    os.chmod(loose, 0o644)
    loose.write_bytes(b"not zlib")


def test_corrupt_cached_clone_is_cloned_again(
    mini_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = WorkDir(tmp_path / "work")
    base = tree_base(workdir, mini_tree)
    loosen_objects(base.root)
    _corrupt_version_blob(base.root)
    capsys.readouterr()
    again = tree_base(workdir, mini_tree)
    assert again.version == "10.2.50"
    assert f"the cached clone {base.root} has corrupt git objects" in (
        capsys.readouterr().err
    )


def test_corrupt_user_tree_is_not_a_missing_file(
    mini_tree: Path, tmp_path: Path
) -> None:
    _corrupt_version_blob(mini_tree)
    with pytest.raises(SourceError) as err:
        tree_base(WorkDir(tmp_path / "work"), mini_tree)
    assert err.value.message.startswith(f"--tree {mini_tree}: git cannot read")
    assert "is corrupt" in err.value.message
    assert err.value.hint == f"run 'git fsck' in {mini_tree}"


def test_a_tree_at_an_odd_path_is_taken(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    """Commas, quotes, a blank and 100+ characters in --tree's path: the
    path is passed as an argument, never through a shell or into QEMU's
    options (the tree is cloned into the work dir)."""
    odd = tmp_path / ("q" * 60) / 'it\'s a "tree", really,,'
    odd.parent.mkdir(parents=True)
    mini_tree.rename(odd)
    assert len(str(odd)) > 100
    proc = run_cli(*SERIES, "source", "--tree", str(odd), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["version"] == VERSION_OF_MINI
