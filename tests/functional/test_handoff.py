"""qseries diff and export: the series in the forms reviewers and
maintainers' tools take over from, on the small QEMU-like tree."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..conftest import RunCli, git, tree_snapshot


def test_diff_is_git_range_diff_of_two_versions(
    run_cli: RunCli, mini_tree: Path
) -> None:
    proc = run_cli("diff", "v1", "v2", "--tree", str(mini_tree))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # v1's patch 1 has no counterpart in v2, and the other way round ...
    assert re.fullmatch(
        r"1: +[0-9a-f]+ < -: +-+ qapi/vfio: Add VFIO_MIGRATION_PREPARE event", lines[0]
    ), lines[0]
    assert re.fullmatch(
        r"-: +-+ > 1: +[0-9a-f]+ qapi/vfio: Add pre-copy-p2p-prepare migration state",
        lines[1],
    ), lines[1]
    # ... while patch 2 is the same patch, changed: its diff follows.
    assert re.fullmatch(
        r"2: +[0-9a-f]+ ! 2: +[0-9a-f]+ vfio/migration: Emit VFIO_MIGRATION_PREPARE "
        r"before state changes",
        lines[2],
    ), lines[2]
    assert "    +    vfio/migration: Announce the move to PRE_COPY_P2P" in lines
    assert "\x1b[" not in proc.stdout  # no colour into a pipe

    data = json.loads(
        run_cli("diff", "v1", "v2", "--tree", str(mini_tree), "--json").stdout
    )
    assert (data["old"], data["new"]) == ("v1", "v2")
    assert data["range-diff"].splitlines()[:3] == lines[:3]


def test_diff_of_an_unknown_version_is_one_line(
    run_cli: RunCli, mini_tree: Path
) -> None:
    proc = run_cli("diff", "v1", "v9", "--tree", str(mini_tree))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "qseries: error: series.yaml: no version 'v9'; it has: v1, v2"
    ]


def user_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "mine"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "notes.txt").write_text("my work\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-q", "-m", "mine")
    (repo / "notes.txt").write_text("uncommitted\n")  # a dirty working tree
    return repo


def test_export_makes_only_a_new_branch(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    repo = user_repo(tmp_path)
    before = {
        "HEAD": git(repo, "symbolic-ref", "HEAD"),
        "main": git(repo, "rev-parse", "main"),
        "status": git(repo, "status", "--porcelain"),
        "files": {k: v for k, v in tree_snapshot(repo).items() if ".git/" not in k},
    }
    proc = run_cli(
        "export", "--series", "v2", "--tree", str(mini_tree),
        "--repo", str(repo), "--branch", "vfio-v2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    subjects = git(repo, "log", "--format=%s", "--reverse", "vfio-v2").splitlines()
    assert subjects[-3:] == [
        "qapi/vfio: Add pre-copy-p2p-prepare migration state",
        "vfio/migration: Announce the move to PRE_COPY_P2P",
        "tests/qtest: Add vfio-migration-events-test",
    ]
    # The commits carry the series' author and sign-off, as mailed.
    body = git(repo, "log", "-1", "--format=%an <%ae>%n%b", "vfio-v2")
    assert body.startswith("qseries developers <qseries-devel@example.org>\n")
    assert "Signed-off-by: qseries developers <qseries-devel@example.org>" in body
    assert proc.stdout.splitlines()[0].endswith(f"branch 'vfio-v2' of {repo}")
    after = {
        "HEAD": git(repo, "symbolic-ref", "HEAD"),
        "main": git(repo, "rev-parse", "main"),
        "status": git(repo, "status", "--porcelain"),
        "files": {k: v for k, v in tree_snapshot(repo).items() if ".git/" not in k},
    }
    assert after == before


def test_export_refuses_an_existing_branch_and_bad_targets(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    repo = user_repo(tmp_path)
    main = git(repo, "rev-parse", "main")

    def export(target: Path, branch: str) -> list[str]:
        proc = run_cli(
            "export", "--tree", str(mini_tree),
            "--repo", str(target), "--branch", branch,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        return proc.stderr.strip().splitlines()

    assert export(repo, "main") == [
        f"qseries: error: --repo {repo} has a branch 'main' already; pick a new "
        "branch name; qseries never moves an existing one"
    ]
    assert git(repo, "rev-parse", "main") == main
    plain = tmp_path / "plain"
    plain.mkdir()
    assert export(plain, "x") == [
        f"qseries: error: --repo {plain} is not a git repository; name a git repository"
    ]
    assert export(repo, "bad..name") == [
        "qseries: error: --branch 'bad..name' is not a valid branch name; pick "
        "another name"
    ]
    assert export(tmp_path / "nowhere", "x") == [
        f"qseries: error: --repo {tmp_path / 'nowhere'} is not a directory; name "
        "a git repository"
    ]


def test_export_starts_no_gc_in_the_users_repository(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    """A repository whose own config wants a gc on every command (two
    packs over gc.autoPackLimit=1): export's fetch into it starts none
    (git runs the pre-auto-gc hook first, which would record it), and
    its config is as it was."""
    repo = user_repo(tmp_path)
    git(repo, "repack", "-q")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second pack")
    git(repo, "repack", "-q")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    record = tmp_path / "gc-started"
    (hooks / "pre-auto-gc").write_text(f"#!/bin/sh\necho gc >> {record}\n")
    (hooks / "pre-auto-gc").chmod(0o755)
    for key, value in (
        ("gc.auto", "1"),
        ("gc.autoPackLimit", "1"),
        ("gc.autoDetach", "false"),
        ("maintenance.auto", "true"),
        ("core.hooksPath", str(hooks)),
    ):
        git(repo, "config", key, value)
    config = (repo / ".git" / "config").read_bytes()
    packs = sorted((repo / ".git" / "objects" / "pack").glob("*.pack"))
    assert len(packs) == 2
    proc = run_cli(
        "export", "--series", "v2", "--tree", str(mini_tree),
        "--repo", str(repo), "--branch", "vfio-v2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not record.exists()
    assert sorted((repo / ".git" / "objects" / "pack").glob("*.pack")) == packs
    assert (repo / ".git" / "config").read_bytes() == config


def test_export_refuses_what_is_no_plain_branch_name(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    """Names git would take but not as meant: a full ref name (which
    became refs/heads/refs/heads/NAME), '@' and 'HEAD' (the current
    commit), one git expands (@{-1}: the branch checked out before).
    Refused in one line, exit 2, and no ref is made."""
    repo = user_repo(tmp_path)
    git(repo, "checkout", "-q", "-b", "other")
    git(repo, "checkout", "-q", "main")  # @{-1} is now 'other'
    refs = git(repo, "for-each-ref")

    def export(branch: str) -> list[str]:
        proc = run_cli(
            "export", "--tree", str(mini_tree),
            "--repo", str(repo), f"--branch={branch}",
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        return proc.stderr.strip().splitlines()

    assert export("refs/heads/master") == [
        "qseries: error: --branch 'refs/heads/master' is a full ref name; pass "
        "the branch's name, 'master' (qseries makes refs/heads/NAME)"
    ]
    assert export("refs/tags/v2") == [
        "qseries: error: --branch 'refs/tags/v2' is a full ref name; pass a "
        "branch name, which qseries makes under refs/heads/"
    ]
    for name in ("@", "HEAD"):
        assert export(name) == [
            f"qseries: error: --branch '{name}' is git's name of the current "
            "commit, not a branch name; pick another name"
        ]
    assert export("-x") == [
        "qseries: error: --branch '-x' starts with '-', as an option does; "
        "pick another name"
    ]
    assert export("@{-1}") == [
        "qseries: error: --branch '@{-1}' is not a valid branch name; pick another name"
    ]
    assert git(repo, "for-each-ref") == refs
