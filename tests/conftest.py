"""Shared fixtures: the CLI as a subprocess, small QEMU-like git trees,
and the real Debian QEMU base (downloaded once into the work dir)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from qseries.labs.vfio_migration.plan import SERIES_DATA

REPO = Path(__file__).resolve().parent.parent


def sigint_as_from_a_terminal() -> None:
    """For a child the tests send SIGINT: the default disposition, which
    Python turns into KeyboardInterrupt.  A shell runs its background
    jobs (`make check &`, a CI runner's) with SIGINT ignored, and a
    process keeps what it inherits (preexec_fn of subprocess.Popen)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


FIXTURES = Path(__file__).resolve().parent / "fixtures"

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+00:00",
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
        text=True,
    ).stdout


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def real_workdir() -> Path:
    """The work dir shared by the tests that use the real QEMU tree."""
    path = Path(os.environ.get("QSERIES_WORKDIR") or REPO / ".work")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def real_base(real_workdir: Path) -> dict[str, object]:
    """`qseries source --json` on the default Debian base, in real_workdir."""
    proc = subprocess.run(
        [sys.executable, "-m", "qseries", "source", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "QSERIES_WORKDIR": str(real_workdir)},
    )
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)
    return data


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """Run `python -m qseries ARGS` in the repository, like a user would."""

    def run(
        *args: str,
        workdir: Path | None = None,
        cwd: Path = REPO,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "QSERIES_WORKDIR": str(workdir or tmp_path / "work"),
            **(env or {}),
        }
        return subprocess.run(
            [sys.executable, "-m", "qseries", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    return run


@pytest.fixture
def mini_tree(tmp_path: Path) -> Path:
    """A small QEMU-like git checkout with the files the generators edit."""
    tree = tmp_path / "qemu"
    shutil.copytree(FIXTURES / "qemu-mini", tree)
    git(tree, "init", "-q", "-b", "master")
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", "base")
    return tree


# What series.yaml reads beside itself: templates, the files patches
# carry (qtests, the fake), the mutations.


def copy_series(dest: Path) -> Path:
    """series.yaml and every file it reads, copied into dest."""
    dest.mkdir(parents=True)
    shutil.copy(REPO / "series.yaml", dest)
    for sub in SERIES_DATA:
        shutil.copytree(REPO / sub, dest / sub)
    return dest / "series.yaml"


@pytest.fixture
def series_copy(tmp_path: Path) -> Path:
    """series.yaml and its templates, copied so that tests can edit them."""
    return copy_series(tmp_path / "series")


def tree_snapshot(tree: Path) -> dict[str, bytes]:
    """Every file of a checkout, .git included, by content."""
    return {
        str(p.relative_to(tree)): p.read_bytes()
        for p in sorted(tree.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def loosen_objects(repo: Path) -> None:
    """Unpack a repository's packs into loose objects, as a tree of an
    older qseries has them (qseries packs the trees it makes)."""
    pack_dir = repo / ".git" / "objects" / "pack"
    for pack in sorted(pack_dir.glob("*.pack")):
        data = pack.read_bytes()
        for made in pack_dir.glob(pack.stem + ".*"):
            made.unlink()
        subprocess.run(
            ["git", "unpack-objects", "-q"],
            cwd=repo,
            input=data,
            env={**os.environ, **GIT_ENV},
            check=True,
            capture_output=True,
        )
