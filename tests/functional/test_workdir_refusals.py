"""A refused work dir or --output is left exactly as it was.

qseries checks the work dir and --output before it writes anything: no
lock, no mkdir, no clone.  Each refusal runs the real command line, then
compares the listing of the places it could have written with the one
taken before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import FIXTURES, REPO, RunCli, copy_series, git


def listing(root: Path) -> list[tuple[str, int, int]]:
    """Every path under root with its size and time of change."""
    found = []
    for p in [root, *root.rglob("*")]:
        info = p.lstat()
        found.append((str(p.relative_to(root)), info.st_size, info.st_mtime_ns))
    return sorted(found)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    dest = tmp_path / "tree"
    shutil.copytree(FIXTURES / "qemu-mini", dest)
    git(dest, "init", "-q", "-b", "master")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "base")
    return dest


@pytest.mark.parametrize(
    ("workdir", "output", "says"),
    [
        ("project", None, "is not a qseries work dir"),
        ("tree", None, "is --tree"),
        ("tree/.work", None, "is inside --tree"),
        ("work", "work/trees/v1", "is inside the work dir"),
        ("work", "tree/patches", "is inside --tree"),
    ],
)
def test_nothing_is_written_where_qseries_refuses(
    run_cli: RunCli,
    tmp_path: Path,
    tree: Path,
    workdir: str,
    output: str | None,
    says: str,
) -> None:
    series = copy_series(tmp_path / "series") / "series.yaml"
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("the user's own files\n")
    (tmp_path / "work").mkdir()
    before = listing(tmp_path)
    args = ["--workdir", workdir, "--series-file", str(series), "generate"]
    args += ["--tree", str(tree), "--output", output or "out"]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
    assert listing(tmp_path) == before


# Makes each directory given read-only, in a mount namespace of its own,
# then runs "$@": should the refusal ever break, qseries meets a
# read-only file system instead of writing into / or the checkout.
READ_ONLY = (
    'for d; do [ "$d" = -- ] && break; mount --bind "$d" "$d"'
    ' && mount -o remount,bind,ro "$d" || exit 99; shift; done; shift; exec "$@"'
)


def run_read_only(
    places: list[Path], *args: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("a read-only bind mount needs root (CI runs this as root)")
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", READ_ONLY]
    argv += ["sh", *map(str, places), "--", sys.executable, "-m", "qseries", *args]
    return subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
        env={**os.environ, "QSERIES_WORKDIR": str(cwd / "work")},
    )


@pytest.mark.parametrize(
    ("place", "says"),
    [
        (Path("/"), "the work dir / is the root directory"),
        (REPO, f"the work dir {REPO} is not a qseries work dir"),
    ],
)
def test_root_and_checkout_are_refused_before_any_write(
    tmp_path: Path, place: Path, says: str
) -> None:
    series = copy_series(tmp_path / "series") / "series.yaml"
    args = ["--workdir", str(place), "--series-file", str(series), "clean"]
    proc = run_read_only([place], *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"qseries: error: {says}"), proc.stderr
    assert proc.stderr.count("\n") == 1


def test_an_old_work_dir_is_adopted_and_used(run_cli: RunCli, tmp_path: Path) -> None:
    """A work dir of the qseries before markers (CI's .work, ~/.cache/qseries)
    keeps working: the first run marks it and says so, once."""
    work = tmp_path / "work"
    for name in ("runs", "trees", "logs", "tmp"):
        (work / name).mkdir(parents=True)
    (work / "lock").write_text("")
    proc = run_cli("clean", "--dry-run", workdir=work)
    assert proc.returncode == 0, proc.stderr
    assert f"adopted {work} as a work dir" in proc.stderr
    assert (work / ".qseries-workdir").is_file()
    again = run_cli("clean", "--dry-run", workdir=work)
    assert again.returncode == 0, again.stderr
    assert "adopted" not in again.stderr
