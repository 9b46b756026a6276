"""generate onto a disk that fills up: the mails are whole, or not there.

The small disk is a real one: a tmpfs of a few KB mounted for the test
(root only; CI runs as root, so there a missing mount is a failure, not
a skip).  The mails of v1 on the small checkout take about 36 KB.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import RunCli, copy_series

IN_CI = os.environ.get("CI") == "true"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not IN_CI, reason="mounting a small tmpfs needs root"
)


def mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[list[Path]]:
    """Where the test mounts its small disks; each is unmounted after."""
    made: list[Path] = []
    yield made
    for where in reversed(made):
        subprocess.run(["umount", str(where)], check=False, capture_output=True)


def small_disk(mounts: list[Path], where: Path, size: str) -> Path:
    mount_tmpfs(where, size)
    mounts.append(where)
    return where


def files(root: Path) -> dict[str, bytes]:
    """Every file under root (hidden ones too), by content."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def generate(run_cli: RunCli, series: Path, tree: Path, out: Path):  # type: ignore[no-untyped-def]
    return run_cli(
        "--series-file",
        str(series),
        "generate",
        "--series",
        "v1",
        "--tree",
        str(tree),
        "--output",
        str(out),
    )


def test_a_full_disk_leaves_no_mail_cut_short(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path, mounts: list[Path]
) -> None:
    series = copy_series(tmp_path / "series")
    whole = generate(run_cli, series, mini_tree, tmp_path / "roomy")
    assert whole.returncode == 0, whole.stderr
    want = files(tmp_path / "roomy")
    assert sum(len(data) for data in want.values()) > 16 * 1024

    out = small_disk(mounts, tmp_path / "small", "16k")
    proc = generate(run_cli, series, mini_tree, out)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"qseries: error: cannot write {out}/v1/v1-000"), line
    assert line.endswith(
        ": No space left on device; none of the 4 files was written; "
        "free some space there or write somewhere else"
    ), line
    assert "Errno" not in line
    # Whole mails or none; here none fit, and no empty v1 is left either.
    left = files(out)
    assert all(want.get(name) == data for name, data in left.items()), list(left)
    assert list(out.iterdir()) == []


def test_a_full_disk_keeps_the_old_mails_of_the_version_whole(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path, mounts: list[Path]
) -> None:
    series = copy_series(tmp_path / "series")
    out = small_disk(mounts, tmp_path / "small", "64k")
    first = generate(run_cli, series, mini_tree, out)
    assert first.returncode == 0, first.stderr
    old = files(out)
    assert len(old) == 4
    # Patch 3 grows past the disk (and the cover letter's diffstat with
    # it): neither may be left new beside the old, nor cut short.
    qtest = series.parent / "tests" / "qtest" / "vfio-migration-prepare-test.c"
    with qtest.open("a") as f:
        f.write("/* A comment that makes the mail too large. */\n" * 1500)
    second = generate(run_cli, series, mini_tree, out)
    assert second.returncode == 1, second.stderr
    line = second.stderr.strip().splitlines()[-1]
    assert line.endswith(
        ": No space left on device; none of the 2 files was written; "
        "free some space there or write somewhere else"
    ), line
    assert files(out) == old


def test_a_full_disk_leaves_the_old_ci_file_and_says_so(
    run_cli: RunCli, tmp_path: Path, mounts: list[Path]
) -> None:
    out = small_disk(mounts, tmp_path / "small", "16k")
    path = out / ".gitlab-ci.yml"
    path.write_text("# an older pipeline\n")
    # The rest of the disk is taken: the new file has no room beside it.
    (out / "filler").write_bytes(b"x" * 3 * 4096)
    proc = run_cli("ci", "gitlab", "--force", "--output", str(path))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"qseries: error: cannot write {path}: No space left on device; "
        "it was left as it was; free some space there or write somewhere else"
    )
    assert path.read_text() == "# an older pipeline\n"
    assert sorted(p.name for p in out.iterdir()) == [".gitlab-ci.yml", "filler"]
