"""The command line's boundary: what it writes and leaves, pipes, encodings,
and the lock that keeps two runs out of one work dir."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ..conftest import REPO, RunCli, git


def generate(run_cli: RunCli, tree: Path, out: Path, *extra: str, **kw):  # type: ignore[no-untyped-def]
    return run_cli(
        "generate",
        "--series",
        "v1",
        "--tree",
        str(tree),
        "--output",
        str(out),
        *extra,
        **kw,
    )


def test_generate_keeps_files_it_did_not_write(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = generate(run_cli, mini_tree, out)
    assert first.returncode == 0, first.stderr
    mine = out / "v1"
    # A user's files: a patch of their own, one named like ours but not
    # written by qseries, and a note.
    (mine / "notes.patch").write_text("my own patch\n")
    (mine / "v1-0009-hand-made.patch").write_text("From me\n")
    (mine / "README").write_text("keep\n")
    # A mail an earlier generate wrote, which this one no longer writes.
    stale = mine / "v1-0004-dropped-patch.patch"
    stale.write_bytes(
        (
            mine / "v1-0003-tests-qtest-Add-vfio-migration-prepare-test.patch"
        ).read_bytes()
    )

    proc = generate(run_cli, mini_tree, out)
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
    assert "removed v1-0004-dropped-patch.patch" in proc.stdout
    assert (mine / "notes.patch").read_text() == "my own patch\n"
    assert (mine / "v1-0009-hand-made.patch").read_text() == "From me\n"
    assert (mine / "README").read_text() == "keep\n"
    for name in ("README", "notes.patch", "v1-0009-hand-made.patch"):
        assert f"left alone in {mine}: {name} (not written by qseries)" in proc.stderr


def test_json_into_a_closed_pipe_is_quiet(mini_tree: Path, tmp_path: Path) -> None:
    """`qseries generate --json | head -c 1`, with head gone before qseries
    writes: no error line, no traceback, git's exit code for SIGPIPE."""
    env = {**os.environ, "QSERIES_WORKDIR": str(tmp_path / "work")}
    argv = [
        sys.executable,
        "-m",
        "qseries",
        "generate",
        "--series",
        "v1",
        "--json",
        "--tree",
        str(mini_tree),
        "--output",
        str(tmp_path / "out"),
    ]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has already gone
    try:
        proc = subprocess.run(
            argv,
            cwd=REPO,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr
    assert "error" not in proc.stderr, proc.stderr
    assert proc.returncode == 141
    assert (tmp_path / "out" / "v1").is_dir()


def test_ascii_terminal_does_not_end_the_run(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sortie-é"
    proc = generate(
        run_cli, mini_tree, out, env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "sortie-\\xe9" in proc.stdout
    assert (out / "v1").is_dir()


# A run of qseries as far as the work dir goes: it marks it, then locks it.
HOLDER = """
import sys
from pathlib import Path
from qseries.ground.workdir import WorkDirLock, prepare
prepare(Path(sys.argv[1]))
lock = WorkDirLock(Path(sys.argv[1]), "qseries test")
lock.acquire(wait=False)
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


def hold_lock(workdir: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workdir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "scripts")},
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "held\n"
    return holder


def test_a_busy_work_dir_is_refused_with_its_holder(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    holder = hold_lock(workdir)
    try:
        proc = run_cli("--no-wait", "source", "--tree", str(mini_tree))
    finally:
        holder.communicate("", timeout=30)
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line == (
        f"qseries: error: the work dir {workdir} is in use "
        f"(pid {holder.pid}: qseries test); wait for that run, or pass "
        "another --workdir"
    )
    assert not (workdir / "trees").exists()


def test_a_second_run_waits_for_the_first(mini_tree: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    holder = hold_lock(workdir)
    second = subprocess.Popen(
        [sys.executable, "-m", "qseries", "source", "--tree", str(mini_tree)],
        cwd=REPO,
        env={**os.environ, "QSERIES_WORKDIR": str(workdir)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        # Still waiting: nothing cloned while the other run holds the dir.
        assert second.poll() is None
        assert not (workdir / "trees").exists()
    finally:
        holder.communicate("", timeout=30)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert err.startswith(
        f"qseries: waiting for the work dir {workdir}, in use "
        f"(pid {holder.pid}: qseries test)\n"
    )
    assert f"commit: {git(mini_tree, 'rev-parse', 'HEAD').strip()}" in out
    # The lock names nobody once the run is over.
    assert (workdir / "lock").read_text() == ""
