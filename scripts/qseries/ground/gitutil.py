"""git, run through proc's runner with a fixed, private configuration.

Output must not depend on who runs qseries: the user's and the system's
git configuration are ignored, and so are the locale and the time zone.
Every git command has a time limit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ToolError
from .proc import GUARDED_VARIABLES, run_bounded

CLEAN_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    # Some commands (am --abort, for one) want an identity even when they
    # commit nothing; commands that do commit pass their own.
    "GIT_AUTHOR_NAME": "qseries",
    "GIT_AUTHOR_EMAIL": "qseries@localhost",
    "GIT_COMMITTER_NAME": "qseries",
    "GIT_COMMITTER_EMAIL": "qseries@localhost",
    "LC_ALL": "C",
    "TZ": "UTC",
}


# On every git command line qseries builds: no `gc --auto` or `maintenance
# run --auto`, which a commit or a fetch starts detached and which outlives
# the run (writing under a tree after qseries exited, outside the work
# dir's lock).  Command-line settings win over the repository's own, so
# this holds in a user's repository too (export fetches into it), and
# they reach the git commands a git command starts (GIT_CONFIG_PARAMETERS)
# without changing any file.
NO_MAINTENANCE = ("-c", "gc.auto=0", "-c", "maintenance.auto=false")


def git_argv(*args: str) -> list[str]:
    """The command line of `git ARGS`, run with no background maintenance."""
    return ["git", *NO_MAINTENANCE, *args]


# Inherited from a caller (git exports GIT_DIR to hooks, for one), these
# would point our git commands at another repository: the user's.  The
# runner drops them from every child's environment too.
FOREIGN_GIT_VARIABLES = tuple(v for v in GUARDED_VARIABLES if v.startswith("GIT_"))
# A git command's time limit unless its caller gives one: generous for
# a worktree of QEMU's 35,000 files on a slow disk, yet finite.
GIT_TIMEOUT = 900.0


def scrub_environment() -> None:
    """Drop repository-selecting git variables from our environment."""
    for name in FOREIGN_GIT_VARIABLES:
        os.environ.pop(name, None)


# What git says when an object it needs cannot be read back.
CORRUPT_PATTERN = re.compile(
    r"is corrupt|inflate: data stream error|unable to unpack|object file .* is empty"
    r"|hash mismatch|bad object|unable to read [0-9a-f]{7,}|packfile .* cannot be"
)
NO_SPACE = "No space left on device"


class CorruptRepoError(ToolError):
    """git cannot read back an object of the repository."""


class GitTimeout(ToolError):
    """A git command ran longer than its time limit."""


def _subcommand(args: tuple[str, ...]) -> str:
    """'clone' of ('-c', 'x=y', 'clone', ...)."""
    rest = iter(args)
    for arg in rest:
        if arg in ("-c", "-C"):
            next(rest, None)
        elif not arg.startswith("-"):
            return arg
    return args[0] if args else ""


def git_env() -> dict[str, str]:
    """The environment for a git run outside Git (one that must see git's
    output on failure): ours, without repository-selecting variables, with
    the clean configuration."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_GIT_VARIABLES}
    return {**env, **CLEAN_ENV}


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error:", "fatal:"))]
    return (errors or lines or ["(no output)"])[-1]


class Git:
    """One repository (or a directory to run git in)."""

    def __init__(self, path: Path):
        scrub_environment()
        self.path = path

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        strip: bool = True,
        timeout: float = GIT_TIMEOUT,
        input: str | None = None,
        stdin_path: Path | None = None,
    ) -> str:
        """Run git ARGS (input, or the file stdin_path, on its stdin);
        raise ToolError with git's own message on failure.

        git and its children are killed once timeout seconds have
        passed, and GitTimeout says so.  The variables of env are the
        caller's choice: a GIT_INDEX_FILE there is kept.
        """
        full_env = {**os.environ, **CLEAN_ENV, **(env or {})}
        try:
            ran = run_bounded(
                git_argv(*args),
                full_env,
                timeout,
                cwd=self.path,
                input=input,
                keep=tuple(env or ()),
                stdin_path=stdin_path,
            )
        except FileNotFoundError:
            if not self.path.is_dir():
                raise ToolError(
                    f"git {_subcommand(args)}: no directory {self.path}"
                ) from None
            raise ToolError("git is not installed", "install git") from None
        if ran.timed_out:
            raise GitTimeout(
                f"git {_subcommand(args)} did not finish within its time limit of "
                f"{timeout:g} s (in {self.path})",
                "check the network and the disk, then run qseries again",
            )
        if ran.returncode != 0:
            if NO_SPACE in ran.stderr:
                raise ToolError(
                    f"git {args[0]} failed: no space left on device in {self.path}",
                    "free some space there, or pass --workdir on a disk with room",
                )
            if CORRUPT_PATTERN.search(ran.stderr):
                raise CorruptRepoError(
                    f"git {args[0]} failed in {self.path}: {_first_line(ran.stderr)}"
                )
            raise ToolError(
                f"git {args[0]} failed in {self.path}: "
                f"{_first_line(ran.stderr + chr(10) + ran.stdout)}"
            )
        return ran.stdout.removesuffix("\n") if strip else ran.stdout

    def try_run(self, *args: str) -> str | None:
        try:
            return self.run(*args)
        except ToolError:
            return None

    def rev(self, rev: str) -> str:
        return self.run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")

    def show(self, commit: str, path: str) -> str:
        return self.run("show", f"{commit}:{path}", strip=False)

    def hash_blob(self, data: str) -> str:
        """Store a blob; return its id."""
        return self.run("hash-object", "-w", "--stdin", input=data)
