"""handoff: the series, in the forms other tools take over from.

- range_diff: `git range-diff` between two versions, each committed on
  the same base by the generators (as `generate` does), so that a
  reviewer reads what changed patch by patch.
- export: the version's commits on a new branch of a repository the user
  names, for b4 prep or git-publish.  Only that branch is created: the
  repository's HEAD, index, working tree and other branches stay as they
  are, and an existing branch is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import generate as gen
from .errors import ToolError, UsageError
from .gitutil import Git
from .series import Series, Version
from .source import BaseTree, WorkDir


def range_diff(
    series: Series,
    old: Version,
    new: Version,
    base: BaseTree,
    workdir: WorkDir,
    color: bool = False,
) -> str:
    """What changed from old to new, patch by patch."""
    old_tip = gen.build_commits(series, old, base, workdir)
    new_tip = gen.build_commits(series, new, base, workdir)
    return Git(base.root).run(
        "range-diff",
        "--color" if color else "--no-color",
        f"{base.commit}..{old_tip}",
        f"{base.commit}..{new_tip}",
    )


def check_target(repo: Path, branch: str) -> tuple[Git, str]:
    """Refuse, before any work, a target that is not a repository or a
    branch that exists already or is not a valid name."""
    shown = str(repo)
    if not repo.is_dir():
        raise UsageError(f"--repo {shown} is not a directory", "name a git repository")
    target = Git(repo)
    if target.try_run("rev-parse", "--git-dir") is None:
        raise UsageError(
            f"--repo {shown} is not a git repository", "name a git repository"
        )
    if target.try_run("check-ref-format", "--branch", branch) is None or re.search(
        r"\s", branch
    ):
        raise UsageError(
            f"--branch {branch!r} is not a valid branch name", "pick another name"
        )
    ref = f"refs/heads/{branch}"
    if target.try_run("rev-parse", "--verify", "--quiet", ref) is not None:
        raise UsageError(
            f"--repo {shown} has a branch '{branch}' already",
            "pick a new branch name; qseries never moves an existing one",
        )
    return target, ref


@dataclass(frozen=True)
class Exported:
    repo: Path
    branch: str
    tip: str
    commits: tuple[str, ...]  # "sha subject", oldest first


def export(
    series: Series,
    version: Version,
    base: BaseTree,
    workdir: WorkDir,
    repo: Path,
    branch: str,
) -> Exported:
    """The version's commits on a new branch `branch` of `repo`."""
    target, ref = check_target(repo, branch)
    shown = str(repo)
    tip = gen.build_commits(series, version, base, workdir)
    source = f"refs/qseries/{version.name}"
    try:
        target.run(
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            str(base.root.resolve()),
            f"{source}:{ref}",
        )
    except ToolError as err:
        raise ToolError(f"exporting to {shown} failed: {err}") from None
    log = target.run("log", "--reverse", "--format=%h %s", f"{base.commit}..{ref}")
    return Exported(repo, branch, tip, tuple(log.splitlines()))
