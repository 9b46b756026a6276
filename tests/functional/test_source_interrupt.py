"""SIGINT and SIGTERM while `qseries source` downloads, and the next run.

The archive is a local one (tests/debian_archive.py) whose upstream
tarball is, at first, a named pipe that nobody writes: apt's copy method
blocks reading it, as on a stalled mirror.  qseries is interrupted
there; it must exit with 130 or 143 and its one line, leave no apt
process running, and the next plain run, once the tarball is a file
again, must get the base without anything cleaned up by hand.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from ..debian_archive import Archive
from .test_signals import interrupt_when, plain

VERSION = "1:10.2.2+ds-1"


@pytest.fixture
def stalled(tmp_path: Path) -> tuple[Archive, Path, Path]:
    """An archive listing VERSION in sid, its tarball replaced by a named
    pipe; returns the archive, the tarball's path and the real file."""
    archive = Archive(tmp_path / "archive", tmp_path / "packages")
    archive.add(VERSION)
    archive.publish({"sid": [VERSION], "trixie": [VERSION]})
    (tarball,) = archive.pool.glob("qemu_*.orig.tar.xz")
    real = tmp_path / tarball.name
    shutil.move(tarball, real)
    os.mkfifo(tarball)
    return archive, tarball, real


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_source_interrupted_in_a_download_then_completes(
    stalled: tuple[Archive, Path, Path], tmp_path: Path, sig: int
) -> None:
    archive, tarball, real = stalled
    workdir = tmp_path / "work"
    env = {"QSERIES_DEBIAN_MIRROR": archive.url}

    def downloading(seen: list[str]) -> bool:
        # apt-get and its copy method, blocked on the pipe.
        return "copy" in seen

    interrupt_when(workdir, sig, downloading, "source", env=env, wait=120)
    tarball.unlink()
    shutil.move(real, tarball)
    out = plain_with(workdir, env, "source")
    assert "10.2.2" in out


def plain_with(workdir: Path, env: dict[str, str], *args: str) -> str:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return plain(workdir, *args, timeout=300)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
