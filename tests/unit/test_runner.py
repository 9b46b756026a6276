"""What every child of proc's runner gets, whichever entry point started
it (run_bounded, run_streaming, start_async): the run marker in its
environment and no guarded variable unless asked for, a death signal
when qseries dies, and an end with a one-line error at its time limit.

Each is read from the real child: its /proc/PID/environ, and its fate
once its parent got SIGKILL (the death signal has no /proc field).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

import pytest

from qseries.ground import proc
from qseries.ground.gitutil import Git
from qseries.ground.proc import run_logged

from ..conftest import REPO, git
from .test_proc import alive, wait_for, wait_gone

ENTRY_POINTS = ("bounded", "streaming", "async")


@pytest.fixture
def marker() -> Iterator[str]:
    value = f"test-{os.getpid()}-{time.monotonic_ns()}"
    proc.set_run_marker(value)
    yield value
    proc.set_run_marker(None)


def run(
    how: str, argv: list[str], env: Mapping[str, str], tmp: Path, keep: Collection[str]
) -> None:
    """argv through entry point how, to its end."""
    if how == "bounded":
        ran = proc.run_bounded(argv, env, 30, keep=keep)
        assert (ran.returncode, ran.timed_out) == (0, False), ran.stderr
    elif how == "streaming":
        assert proc.run_streaming(argv, env, 30, tmp, tmp / "log", keep=keep) == 0
    else:

        async def main() -> int:
            started = await proc.start_async(argv, env, 30, keep=keep)
            return await started.wait()

        assert asyncio.run(main()) == 0


def child_environ(
    how: str, tmp: Path, env: Mapping[str, str], keep: Collection[str] = ()
) -> dict[str, str]:
    """The environment of a child of entry point how, as the kernel
    holds it (/proc/PID/environ, read by the child itself)."""
    out = tmp / f"environ-{how}"
    run(how, ["sh", "-c", f'cat /proc/$$/environ > "{out}"'], env, tmp, keep)
    entries = out.read_bytes().decode().split("\0")
    return dict(e.split("=", 1) for e in entries if "=" in e)


@pytest.mark.parametrize("how", ENTRY_POINTS)
def test_every_child_carries_the_run_marker(
    how: str, tmp_path: Path, marker: str
) -> None:
    env = {"PATH": os.environ["PATH"], proc.RUN_VARIABLE: "an-older-run"}
    assert child_environ(how, tmp_path, env)[proc.RUN_VARIABLE] == marker


def test_without_a_marker_the_inherited_one_passes_on(tmp_path: Path) -> None:
    proc.set_run_marker(None)
    env = {"PATH": os.environ["PATH"], proc.RUN_VARIABLE: "the-parent-run"}
    seen = child_environ("bounded", tmp_path, env)
    assert seen[proc.RUN_VARIABLE] == "the-parent-run"
    del env[proc.RUN_VARIABLE]
    assert proc.RUN_VARIABLE not in child_environ("bounded", tmp_path, env)


@pytest.mark.parametrize("how", ENTRY_POINTS)
def test_guarded_variables_only_when_asked_for(how: str, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        # An empty LD_PRELOAD loads nothing: the child runs as ever.
        "LD_PRELOAD": "",
        "GIT_DIR": str(tmp_path / "someone-elses.git"),
        "GIT_INDEX_FILE": str(tmp_path / "index"),
        "KEPT": "yes",
    }
    seen = child_environ(how, tmp_path, env)
    assert seen["KEPT"] == "yes"
    assert not {"LD_PRELOAD", "GIT_DIR", "GIT_INDEX_FILE"} & set(seen)
    seen = child_environ(how, tmp_path, env, keep=("GIT_INDEX_FILE", "LD_PRELOAD"))
    assert seen["GIT_INDEX_FILE"] == env["GIT_INDEX_FILE"]
    assert seen["LD_PRELOAD"] == ""
    assert "GIT_DIR" not in seen


# A parent that starts `sleep` (through sh, which writes its pid first)
# with one entry point of the runner and waits: SIGKILL of the parent
# must end the child, which is in a session of its own.
PARENT = textwrap.dedent(
    """\
    import asyncio, os, sys
    from pathlib import Path
    from qseries.ground import proc

    how, pidfile, tmp = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if sys.argv[4] == "preexec":
        proc._SETPRIV = None  # as where util-linux's setpriv is missing
    argv = ["sh", "-c", f'echo $$ > "{pidfile}"; exec sleep 300']
    if how == "bounded":
        proc.run_bounded(argv, os.environ, 600)
    elif how == "streaming":
        proc.run_streaming(argv, os.environ, 600, tmp, tmp / "log")
    else:
        async def main():
            started = await proc.start_async(argv, os.environ, 600)
            await started.wait()
        asyncio.run(main())
    """
)


@pytest.mark.parametrize("setter", ["setpriv", "preexec"])
@pytest.mark.parametrize("how", ENTRY_POINTS)
def test_a_child_dies_with_its_parent(how: str, setter: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, how, str(pidfile), str(tmp_path), setter],
        env={**os.environ, "PYTHONPATH": str(REPO / "scripts")},
        stdin=subprocess.DEVNULL,
    )
    try:
        child = wait_for(pidfile, 1)[0]
        assert alive(child)
        parent.kill()
        parent.wait(timeout=30)
        left = wait_gone([child], seconds=10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in wait_gone([int(p) for p in pidfile.read_text().split()], 0):
            os.kill(pid, signal.SIGKILL)
    assert left == []


def test_a_hung_build_step_ends_with_one_line_naming_it_and_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proc, "GRACE", 0.5)
    pidfile = tmp_path / "pid"
    log = tmp_path / "build.log"
    argv = ["sh", "-c", f'echo $$ > "{pidfile}"; echo "[1/2] cc a.o"; sleep 300']
    started = time.monotonic()
    with pytest.raises(proc.CommandTimeout) as err:
        run_logged(argv, tmp_path, log, None, timeout=1)
    assert time.monotonic() - started < 10
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("sh -c ")
    assert "did not finish within its time limit of 1 s" in text
    assert str(log) in text
    assert "[1/2] cc a.o" in log.read_text()
    assert wait_gone([int(p) for p in pidfile.read_text().split()]) == []


def test_a_streaming_run_keeps_its_lines_and_exit_code(tmp_path: Path) -> None:
    lines: list[str] = []
    log = tmp_path / "log"
    script = "printf 'one\\ntwo\\n'; printf 'partial' >&2; exit 3"
    code = proc.run_streaming(
        ["sh", "-c", script], os.environ, 30, tmp_path, log, lines.append
    )
    assert code == 3
    assert lines == ["one\n", "two\n", "partial"]
    assert log.read_text().endswith("one\ntwo\npartial")


def test_an_async_child_is_stopped_at_its_time_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(proc, "GRACE", 0.5)

    async def main() -> tuple[int, bool, float]:
        begun = time.monotonic()
        # TERM ignored: only the SIGKILL after the grace ends it.
        started = await proc.start_async(
            ["sh", "-c", 'trap "" TERM; sleep 300 & wait'], os.environ, 0.5
        )
        try:
            code = await asyncio.wait_for(started.wait(), 20)
        finally:
            await started.stop(grace=0)
        return code, started.timed_out, time.monotonic() - begun

    code, timed_out, took = asyncio.run(main())
    assert timed_out and code == -signal.SIGKILL and took >= 1.0


def test_git_reads_its_input_and_keeps_the_index_it_is_given(tmp_path: Path) -> None:
    git(tmp_path, "init", "--quiet")
    g = Git(tmp_path)
    blob = g.hash_blob("hello\n")
    # git's own id of the blob "hello\n".
    assert blob == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert g.run("cat-file", "-p", blob, strip=False) == "hello\n"
    index = tmp_path / "private-index"
    g.run(
        "update-index",
        "--add",
        "--cacheinfo",
        f"100644,{blob},a",
        env={"GIT_INDEX_FILE": str(index)},
    )
    assert index.exists() and not (tmp_path / ".git" / "index").exists()


@pytest.mark.parametrize("program", ["no-such-program-qseries", "./no-such-file"])
def test_a_missing_program_is_file_not_found(program: str, tmp_path: Path) -> None:
    # The callers turn it into "X is not installed", with or without setpriv.
    with pytest.raises(FileNotFoundError):
        proc.run_bounded([program], os.environ, 10, tmp_path)
    with pytest.raises(FileNotFoundError):
        proc.run_streaming([program], os.environ, 10, tmp_path, tmp_path / "log")
