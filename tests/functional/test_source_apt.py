"""The Debian base through real apt, on a small local deb-src repository.

The repository (file:// URIs) holds a tiny "qemu" source package made
with dpkg-source -b, listed for sid and trixie like Debian's.  Its Release
files are unsigned, so only the test's Apt marks it [trusted=yes]; the
index apt reads from it still carries the sha256 of every file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from qseries.core.versions import VersionRange
from qseries.ground.errors import SourceError
from qseries.ground.workdir import WorkDir
from qseries.qemu.source import DEBIAN_SUITES, DOWNLOADED_STAMP, Apt, debian_base

from ..conftest import git, loosen_objects

VERSION = "1:10.2.2+ds"
SAFE = "1_10.2.2+ds"
TARBALL = "qemu_10.2.2+ds.tar.xz"
RANGE = VersionRange.parse(">=10.2, <11")


class LocalApt(Apt):
    """Apt on the test's unsigned repository."""

    def source_options(self) -> str:
        return " [trusted=yes]"


def _run(cwd: Path, *argv: str) -> str:
    return subprocess.run(
        list(argv), cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def _index_repo(repo: Path, also: str = "") -> None:
    """Sources and Release files for each suite, from what the pool holds.

    also: a version to list as well, with the same files.
    """
    sources = _run(repo, "dpkg-scansources", "pool", "/dev/null")
    if also:
        sources += "\n" + sources.replace(f"Version: {VERSION}", f"Version: {also}")
    for suite in DEBIAN_SUITES:
        dists = repo / "dists" / suite
        (dists / "main" / "source").mkdir(parents=True, exist_ok=True)
        (dists / "main" / "source" / "Sources").write_text(sources)
        data = sources.encode()
        (dists / "Release").write_text(
            f"Suite: {suite}\nCodename: {suite}\nComponents: main\n"
            "Date: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n"
            f" {hashlib.sha256(data).hexdigest()} {len(data)} main/source/Sources\n"
        )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    src = tmp_path / "build" / "qemu-10.2.2"
    (src / "debian" / "source").mkdir(parents=True)
    (src / "VERSION").write_text("10.2.2\n")
    (src / "main.c").write_text("int main(void) { return 0; }\n")
    (src / "debian" / "source" / "format").write_text("3.0 (native)\n")
    (src / "debian" / "control").write_text(
        "Source: qemu\nMaintainer: Test <test@example.org>\n\n"
        "Package: qemu-test\nArchitecture: all\nDescription: test\n test\n"
    )
    (src / "debian" / "changelog").write_text(
        f"qemu ({VERSION}) unstable; urgency=medium\n\n  * Test.\n\n"
        " -- Test <test@example.org>  Thu, 01 Jan 2026 00:00:00 +0000\n"
    )
    _run(src.parent, "dpkg-source", "-b", src.name)
    repo = tmp_path / "repo"
    pool = repo / "pool" / "main" / "q" / "qemu"
    pool.mkdir(parents=True)
    for built in src.parent.glob("qemu_*"):
        shutil.move(built, pool)
    _index_repo(repo)
    return repo


def _apt(workdir: WorkDir, repo: Path) -> LocalApt:
    # copy: rather than file:, which would symlink the downloads to the pool.
    return LocalApt(workdir, mirror=f"copy://{repo}")


def test_base_from_local_repository(repo: Path, tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "work")
    base = debian_base(workdir, RANGE, None, False, _apt(workdir, repo))
    assert (base.version, base.debian_version) == ("10.2.2", VERSION)
    assert git(base.root, "status", "--porcelain") == ""
    # Nothing but the tree is left in trees/
    assert sorted(p.name for p in (workdir.path / "trees").iterdir()) == [
        f"debian-{SAFE}"
    ]


def test_damaged_download_is_fetched_again(repo: Path, tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "work")
    base = debian_base(workdir, RANGE, None, False, _apt(workdir, repo))
    shutil.rmtree(base.root)
    cached = workdir.path / "debian" / SAFE / TARBALL
    good = cached.read_bytes()
    # Truncated, then the same size with other bytes: the cache is not
    # trusted for being there, whatever its stamp says.
    for damaged in (good[: len(good) // 2], bytes(len(good))):
        cached.write_bytes(damaged)
        again = debian_base(workdir, RANGE, None, False, _apt(workdir, repo))
        assert again.commit == base.commit
        assert cached.read_bytes() == good
        shutil.rmtree(again.root)


def test_tampered_mirror_fails_in_one_line(repo: Path, tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "work")
    apt = _apt(workdir, repo)
    apt.update(False)  # the index, with the genuine sha256
    served = repo / "pool" / "main" / "q" / "qemu" / TARBALL
    served.write_bytes(bytes(served.stat().st_size))
    with pytest.raises(SourceError) as err:
        debian_base(workdir, RANGE, None, False, apt)
    assert f"{TARBALL} from copy://{repo} does not match the sha256" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (workdir.path / "debian" / SAFE).exists()


def test_interrupted_update_is_not_fresh(repo: Path, tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "work")
    apt = _apt(workdir, repo)
    apt.update(False)
    assert apt.is_fresh()
    lists = list((apt.root / "lists").glob("*_Sources*"))
    assert len(lists) == len(DEBIAN_SUITES)
    # An update cut short: new lists, but no stamp.  A version published
    # since must show up on the next run.
    apt.stamp.unlink()
    _index_repo(repo, also="1:10.2.3+ds")
    again = _apt(workdir, repo)
    assert not again.is_fresh()
    again.update(False)
    assert again.source_versions("qemu") == ["1:10.2.3+ds", VERSION]


def test_leftovers_of_an_interrupt_are_removed(repo: Path, tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "work")
    base = debian_base(workdir, RANGE, None, False, _apt(workdir, repo))
    shutil.rmtree(base.root)
    trees = workdir.path / "trees"
    leftovers = [
        trees / f"debian-{SAFE}.partial" / "VERSION",
        trees / f"debian-{SAFE}.partial.tmp-extract.Ab12" / "big",
        trees / "qemu_10.2.2+ds.orig.tar.xz",
        workdir.path / "debian" / "1_10.2.1+ds" / "qemu_10.2.1+ds.dsc",
        workdir.path / "apt" / "lists" / "partial" / "x_Sources.xz",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half\n")
    debian_base(workdir, RANGE, None, False, _apt(workdir, repo))
    for path in leftovers:
        assert not path.exists()
    assert not (trees / f"debian-{SAFE}.partial").exists()
    assert not (workdir.path / "debian" / "1_10.2.1+ds").exists()
    assert (workdir.path / "debian" / SAFE / DOWNLOADED_STAMP).is_file()


def test_corrupt_cached_base_is_made_again(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = WorkDir(tmp_path / "work")
    base = debian_base(workdir, RANGE, None, False, _apt(workdir, repo))
    loosen_objects(base.root)
    blob = git(base.root, "rev-parse", f"{base.commit}:VERSION").strip()
    loose = base.root / ".git" / "objects" / blob[:2] / blob[2:]
    os.chmod(loose, 0o644)
    loose.write_bytes(b"garbage")
    capsys.readouterr()
    again = debian_base(workdir, RANGE, None, False, _apt(workdir, repo))
    assert f"the cached base tree {base.root} has corrupt git objects" in (
        capsys.readouterr().err
    )
    assert git(again.root, "show", "HEAD:VERSION") == "10.2.2\n"
