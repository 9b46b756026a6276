"""atomic: a file written whole or not at all, against real failures.

The failure is the kernel's own: a lowered RLIMIT_FSIZE makes a write
past the limit fail with EFBIG part way, as a full disk does with
ENOSPC (Python ignores SIGXFSZ, so the write returns the error).  The
limit is lowered for this process only and raised again at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from qseries import cli
from qseries.core import generators
from qseries.core.series import load
from qseries.ground import atomic
from qseries.ground.errors import QSeriesError
from qseries.ground.workdir import WorkDir
from qseries.pipeline import graph
from qseries.pipeline import stages as pipeline
from qseries.qemu import generate as gen
from qseries.qemu.source import SourceSpec

from ..conftest import REPO

LIMIT = 8192
V1 = load(REPO / "series.yaml", generators.specs()).version("v1")


@contextlib.contextmanager
def file_size_limit(limit: int = LIMIT) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_new_file_gets_what_open_would_give(tmp_path: Path) -> None:
    path = tmp_path / "new.txt"
    atomic.write_text(path, "one\r\ntwo\n")
    assert path.read_bytes() == b"one\r\ntwo\n"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert names(tmp_path) == ["new.txt"]


def test_the_old_mode_is_kept_and_a_given_mode_wins(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"old")
    path.chmod(0o600)
    atomic.write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    atomic.write_bytes(path, b"newer", mode=0o640)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert names(tmp_path) == ["secret"]


def test_a_failure_mid_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mail.patch"
    path.write_bytes(b"the old mail\n")
    with file_size_limit(), pytest.raises(atomic.WriteError) as caught:
        atomic.write_bytes(path, b"x" * (LIMIT * 4))
    assert path.read_bytes() == b"the old mail\n"
    assert names(tmp_path) == ["mail.patch"]
    line = str(caught.value)
    assert line == (
        f"cannot write {path}: File too large; it was left as it was; "
        "the file is larger than this process may write; raise the limit"
    )
    assert "Errno" not in line


def test_a_failed_new_file_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    with file_size_limit(), pytest.raises(atomic.WriteError, match="nothing was left"):
        atomic.write_bytes(path, b"x" * (LIMIT * 4))
    assert names(tmp_path) == []


def test_a_set_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    old = {tmp_path / f"v1-000{i}.patch": f"old {i}\n".encode() for i in range(3)}
    for path, data in old.items():
        path.write_bytes(data)
    new = {path: b"new\n" for path in old}
    big = tmp_path / "v1-0002.patch"
    new[big] = b"x" * (LIMIT * 4)
    with file_size_limit(), pytest.raises(atomic.WriteError) as caught:
        atomic.write_all(new)
    assert "none of the 3 files was written" in str(caught.value)
    assert {p: p.read_bytes() for p in old} == old
    assert names(tmp_path) == sorted(p.name for p in old)
    new[big] = b"new\n"
    atomic.write_all(new)
    assert {p: p.read_bytes() for p in old} == new


def test_a_directory_in_a_set_is_found_before_any_file_changes(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"old")
    second.mkdir()
    with pytest.raises(atomic.WriteError, match="Is a directory"):
        atomic.write_all({first: b"new", second: b"new"})
    assert first.read_bytes() == b"old"
    assert names(tmp_path) == ["a", "b"]


def test_a_symlink_stays_a_link_to_the_file_written(tmp_path: Path) -> None:
    real = tmp_path / "real" / "series.yaml"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "series.yaml"
    link.symlink_to(real)
    atomic.write_bytes(link, b"new")
    assert link.is_symlink()
    assert real.read_bytes() == b"new"
    assert names(real.parent) == ["series.yaml"]


def test_a_pipe_is_written_in_place(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        atomic.write_text(fifo, "through the pipe\n")
        assert os.read(reader, 100) == b"through the pipe\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert names(tmp_path) == ["fifo"]


def test_make_dirs_and_remove_dirs_undo_only_what_was_made(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    made = atomic.make_dirs(tmp_path / "out" / "a" / "v1")
    assert made == [tmp_path / "out" / "a", tmp_path / "out" / "a" / "v1"]
    atomic.remove_dirs(made)
    assert names(tmp_path / "out") == []
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(atomic.WriteError, match="cannot make the directory"):
        atomic.make_dirs(blocker / "v1")


def test_install_keeps_the_old_mails_whole_when_the_new_cannot_be_written(
    tmp_path: Path,
) -> None:
    version = V1
    dest = tmp_path / "v1"
    dest.mkdir()
    zero = gen.ZERO_FROM
    old = {
        "v1-0000-cover-letter.patch": zero + b"old cover\n",
        "v1-0001-a.patch": zero + b"old one\n",
        "v1-0004-dropped.patch": zero + b"a mail the new version has not\n",
        "notes.txt": b"the user's\n",
    }
    for name, data in old.items():
        (dest / name).write_bytes(data)
    generated = tmp_path / "generated"
    generated.mkdir()
    (generated / "v1-0000-cover-letter.patch").write_bytes(zero + b"new cover\n")
    (generated / "v1-0001-a.patch").write_bytes(zero + b"x" * (LIMIT * 4))
    with file_size_limit(), pytest.raises(atomic.WriteError):
        gen.install(generated, dest, version)
    # Not a new cover letter beside an old patch, nor the stale mail gone.
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == old


def test_install_removes_what_a_killed_generate_left_half_written(
    tmp_path: Path,
) -> None:
    version = V1
    dest = tmp_path / "v1"
    dest.mkdir()
    left = dest / f".v1-0001-a.patch.k2j4_x9q{atomic.SUFFIX}"
    left.write_bytes(gen.ZERO_FROM + b"half")
    generated = tmp_path / "generated"
    generated.mkdir()
    (generated / "v1-0001-a.patch").write_bytes(gen.ZERO_FROM + b"whole\n")
    installed = gen.install(generated, dest, version)
    assert names(dest) == ["v1-0001-a.patch"]
    assert installed.foreign == ()
    assert not generated.exists()


def test_a_raw_os_error_is_one_line_without_its_number() -> None:
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/w/lock")
    assert cli._describe(full) == "/w/lock: No space left on device"
    moved = OSError(errno.EXDEV, os.strerror(errno.EXDEV), "/a", None, "/b")
    assert cli._describe(moved) == "/a -> /b: Invalid cross-device link"
    bare = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert cli._describe(bare) == "No space left on device"
    assert cli._describe(OSError("plain words")) == "plain words"


def reports_run(tmp_path: Path, report_dir: Path) -> pipeline.Pipeline:
    request = pipeline.Request(
        series_file=REPO / "series.yaml",
        spec=SourceSpec(tree=tmp_path / "no-such-tree"),
        version="v1",
        stages=frozenset({graph.CHECK}),
        reports=True,
        report_dir=report_dir,
    )
    return pipeline.Pipeline(request, WorkDir(tmp_path / "work"))


def test_the_reports_of_a_run_are_written_together(tmp_path: Path) -> None:
    directory = tmp_path / "reports"
    run = reports_run(tmp_path, directory)
    run.write_reports(directory)
    old = {p.name: p.read_bytes() for p in directory.iterdir()}
    assert sorted(old) == ["junit.xml", "report.json", "summary.md"]
    run.outcome.facts.append("a fact that changes every report")
    run.outcome.tables["faults-v1.md"] = "x" * (LIMIT * 4)
    with file_size_limit(), pytest.raises(atomic.WriteError, match="none of the 4"):
        run.write_reports(directory)
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == old


def test_reports_that_cannot_be_written_leave_the_error_of_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = reports_run(tmp_path, blocker / "reports")
    with pytest.raises(QSeriesError) as caught:
        run.run()
    assert not isinstance(caught.value, atomic.WriteError)
    assert "no-such-tree" in str(caught.value)
    said = capsys.readouterr().err
    assert f"no reports of what ran: cannot make the directory {blocker}/" in said
