"""The pieces that keep the Debian base honest: time limits, a full disk,
sha256 checks of downloads, completion stamps."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from qseries.ground.errors import SourceError, ToolError
from qseries.ground.gitutil import Git, GitTimeout
from qseries.qemu.source import (
    NoSpaceError,
    _command_name,
    _run,
    _unpack,
    mismatched_files,
    need_space,
    parse_showsrc,
    read_stamp,
    write_stamp,
)

SHOWSRC = """\
Package: qemu
Version: 1:10.2.2+ds-1
Files:
 9779358a11dbeb946f0edd0d8eb53733 10994 qemu_10.2.2+ds-1.dsc
Checksums-Sha256:
 {a} 10994 qemu_10.2.2+ds-1.dsc
 {b} 38669728 qemu_10.2.2+ds.orig.tar.xz
Homepage: http://www.qemu.org/

Package: qemu-other
Version: 1:1.0-1
Checksums-Sha256:
 {a} 1 other.dsc

Package: qemu
Version: 1:11.1.3+ds-1
Checksums-Sha256:
 {b} 9743 qemu_11.1.3+ds-1.dsc
Directory: pool/main/q/qemu
""".format(a="a" * 64, b="b" * 64)


def test_showsrc_gives_each_versions_sha256() -> None:
    index = parse_showsrc(SHOWSRC, "qemu")
    assert index == {
        "1:10.2.2+ds-1": {
            "qemu_10.2.2+ds-1.dsc": ("a" * 64, 10994),
            "qemu_10.2.2+ds.orig.tar.xz": ("b" * 64, 38669728),
        },
        "1:11.1.3+ds-1": {"qemu_11.1.3+ds-1.dsc": ("b" * 64, 9743)},
    }


def test_mismatched_files(tmp_path: Path) -> None:
    data = b"qemu source\n"
    (tmp_path / "x.tar.xz").write_bytes(data)
    files = {"x.tar.xz": (hashlib.sha256(data).hexdigest(), len(data))}
    assert mismatched_files(tmp_path, files) == []
    (tmp_path / "x.tar.xz").write_bytes(data[:5])  # truncated
    assert mismatched_files(tmp_path, files) == ["x.tar.xz"]
    (tmp_path / "x.tar.xz").write_bytes(data.upper())  # same size, tampered
    assert mismatched_files(tmp_path, files) == ["x.tar.xz"]
    (tmp_path / "x.tar.xz").unlink()
    assert mismatched_files(tmp_path, files) == ["x.tar.xz"]


def test_stamp_is_whole_or_absent(tmp_path: Path) -> None:
    stamp = tmp_path / "complete"
    assert read_stamp(stamp) is None
    stamp.with_name("complete.tmp").write_text('{"version": ')  # interrupted
    assert read_stamp(stamp) is None
    write_stamp(stamp, {"version": "1:10.2.2+ds-1"})
    assert read_stamp(stamp) == {"version": "1:10.2.2+ds-1"}
    assert [p.name for p in tmp_path.iterdir()] == ["complete"]
    stamp.write_text('{"version": ')
    assert read_stamp(stamp) is None


def test_time_limit_kills_the_command_and_its_children(tmp_path: Path) -> None:
    start = time.monotonic()
    # The grandchild holds the output pipe: it must die too, or we hang.
    argv = ["sh", "-c", "sleep 30 & sleep 30"]
    with pytest.raises(ToolError) as err:
        _run(argv, timeout=0.5, workdir=tmp_path)
    assert time.monotonic() - start < 10
    assert "did not finish within its time limit of 0.5 s" in str(err.value)


def test_commands_are_named_for_people() -> None:
    apt = ["apt-get", "-o", "Dir::Cache=/x", "-o", "A=b", "update"]
    assert _command_name(apt) == "apt-get update"
    assert _command_name(["dpkg-source", "-x", "a.dsc", "dir"]) == "dpkg-source -x"


def test_git_time_limit(tmp_path: Path) -> None:
    g = Git(tmp_path)
    with pytest.raises(GitTimeout, match=r"git wait did not finish within .* 0.3 s"):
        g.run("-c", "alias.wait=!sleep 20", "wait", timeout=0.3)


def test_full_disk_is_said_as_such(tmp_path: Path) -> None:
    script = tmp_path / "unpack"
    script.write_text("echo 'tar: x: Cannot write: No space left on device' >&2\n")
    with pytest.raises(NoSpaceError) as err:
        _run(["sh", str(script)], timeout=10, workdir=tmp_path)
    assert err.value.message == (
        f"no space left on device in {tmp_path} (sh {script} failed)"
    )
    assert "--workdir" in str(err.value)


def test_too_little_space_fails_before_starting(tmp_path: Path) -> None:
    need_space(tmp_path, 1, "a step")
    with pytest.raises(NoSpaceError, match=f"not enough space in {tmp_path}"):
        need_space(tmp_path, 2**62, "a step")


def test_dpkg_dev_only_when_dpkg_source_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qseries.ground.workdir import WorkDir

    dsc = tmp_path / "dl" / "qemu_1.0.dsc"
    dsc.parent.mkdir()
    dsc.write_text("Format: 3.0 (native)\nSource: qemu\nVersion: 1.0\n")
    workdir = WorkDir(tmp_path / "work")
    with pytest.raises(SourceError) as err:
        _unpack(dsc, workdir.path / "trees" / "debian-1.0", "1.0", workdir)
    assert "dpkg-dev" not in str(err.value)
    assert str(err.value).startswith(f"dpkg-source -x {dsc} failed: ")
    assert not (workdir.path / "trees" / "debian-1.0.partial").exists()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(
        ToolError, match="dpkg-source is not installed; install dpkg-dev"
    ):
        _unpack(dsc, workdir.path / "trees" / "debian-1.0", "1.0", workdir)
