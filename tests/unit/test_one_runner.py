"""One runner: no module of qseries but proc.py starts a process.

Every external command gets its time limit, clean environment, death
signal and run marker from proc.py; a module that starts one by other
means (subprocess, asyncio's subprocess functions, os.system and its
kin, pty, multiprocessing, GitPython) gets none of them.  Each module
is read with ast, so a name in a string or a comment does not count.
"""

from __future__ import annotations

import ast

import pytest

from ..conftest import REPO

PACKAGE = REPO / "scripts" / "qseries"
RUNNER = "ground/proc.py"

# Modules whose import alone means starting processes (or GitPython's
# way of running git, which has no time limit unless one is passed).
MODULES = ("subprocess", "pty", "multiprocessing", "git", "gitdb", "pexpect")
OS_CALLS = (
    "system",
    "popen",
    "fork",
    "forkpty",
    "posix_spawn",
    "posix_spawnp",
    *(f"exec{s}" for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")),
    *(f"spawn{s}" for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")),
)
# asyncio's, as functions or as event loop methods.
ASYNC_CALLS = (
    "create_subprocess_exec",
    "create_subprocess_shell",
    "subprocess_exec",
    "subprocess_shell",
)


def starts(source: str) -> list[str]:
    """Where source starts (or can start) a process other than through
    proc: 'line N: what', in order."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in MODULES or alias.name == "asyncio.subprocess":
                    found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            names = [alias.name for alias in node.names]
            if module.split(".")[0] in MODULES or module == "asyncio.subprocess":
                found.append((node.lineno, f"from {module} import"))
            elif module == "os" and any(n in OS_CALLS for n in names):
                found.append((node.lineno, "from os import " + ", ".join(names)))
            elif module == "asyncio" and (
                "subprocess" in names or any(n in ASYNC_CALLS for n in names)
            ):
                found.append((node.lineno, "from asyncio import " + ", ".join(names)))
        elif isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner == "os" and node.attr in OS_CALLS:
                found.append((node.lineno, f"os.{node.attr}"))
            elif node.attr in ASYNC_CALLS:
                found.append((node.lineno, f".{node.attr}"))
            elif owner == "asyncio" and node.attr == "subprocess":
                found.append((node.lineno, "asyncio.subprocess"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


def test_no_module_but_the_runner_starts_a_process() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / RUNNER in modules and len(modules) > 40
    offenders = {
        str(path.relative_to(PACKAGE)): hits
        for path in modules
        if path != PACKAGE / RUNNER and (hits := starts(path.read_text()))
    }
    assert offenders == {}


def test_the_runner_is_what_the_scan_finds_starting_processes() -> None:
    assert starts((PACKAGE / RUNNER).read_text())


@pytest.mark.parametrize(
    ("source", "hit"),
    [
        ("import subprocess\n", "line 1: import subprocess"),
        ("x = 1\nfrom subprocess import run\n", "line 2: from subprocess import"),
        ("import asyncio.subprocess\n", "line 1: import asyncio.subprocess"),
        (
            "import asyncio\nasync def f():\n"
            "    await asyncio.create_subprocess_exec('qemu')\n",
            "line 3: .create_subprocess_exec",
        ),
        (
            "async def f(loop):\n    await loop.subprocess_shell(p, 'ls')\n",
            "line 2: .subprocess_shell",
        ),
        ("from asyncio import create_subprocess_shell\n", "line 1: from asyncio"),
        ("stdin = asyncio.subprocess.DEVNULL\n", "line 1: asyncio.subprocess"),
        ("import os\nos.system('ls')\n", "line 2: os.system"),
        ("import os\nos.popen('ls')\n", "line 2: os.popen"),
        ("os.execvpe('ls', [], {})\n", "line 1: os.execvpe"),
        ("os.spawnlp(os.P_WAIT, 'ls')\n", "line 1: os.spawnlp"),
        ("pid = os.fork()\n", "line 1: os.fork"),
        ("os.posix_spawn('/bin/ls', [], {})\n", "line 1: os.posix_spawn"),
        ("from os import execv\n", "line 1: from os import execv"),
        ("import pty\n", "line 1: import pty"),
        ("import multiprocessing.pool\n", "line 1: import multiprocessing.pool"),
        ("import git\n", "line 1: import git"),
        ("from git import Repo\n", "line 1: from git import"),
        ("from gitdb import IStream\n", "line 1: from gitdb import"),
    ],
)
def test_each_way_of_starting_a_process_is_found(source: str, hit: str) -> None:
    assert any(h.startswith(hit) for h in starts(source)), starts(source)


@pytest.mark.parametrize(
    "source",
    [
        "from .proc import run_bounded\nrun_bounded(['git'], {}, 1)\n",
        "import os\nos.environ.get('HOME')\nos.execute = 1 if False else 0\n",
        "'''import subprocess'''\n# os.system('ls')\n",
        "from .gitutil import Git\nimport asyncio\nasyncio.run(main())\n",
    ],
)
def test_what_starts_nothing_is_not_found(source: str) -> None:
    assert starts(source) == []


# Every git command line is built by gitutil.git_argv, which adds the
# settings that keep git from starting a detached gc or maintenance.
GIT_ARGV = "ground/gitutil.py"


def git_command_lines(source: str) -> list[int]:
    """The lines of source where a list or tuple starts with "git": a
    git command line not built by git_argv."""
    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.List, ast.Tuple))
        and node.elts
        and isinstance(node.elts[0], ast.Constant)
        and node.elts[0].value == "git"
    )


def test_every_git_command_line_is_built_by_git_argv() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := git_command_lines(path.read_text()))
    }
    # gitutil's one: git_argv itself.
    assert list(offenders) == [GIT_ARGV] and len(offenders[GIT_ARGV]) == 1, offenders
    assert git_command_lines('argv = ["git", "commit"]\n') == [1]
    assert git_command_lines('x = ("git", *args)\nrun(git_argv("am"))\n') == [1]
