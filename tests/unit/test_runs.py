"""The records of runs in the work dir: a dead run's processes and
scratch are ended and removed by the next run, nothing else is.

The "runs" here are real processes (sleep) whose pid and start time a
record names; the processes left behind carry the run's marker in their
environment, as what qseries starts does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from qseries.ground import proc, runs
from qseries.ground.errors import ToolError


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts, killed and reaped at its end."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def sleeper(
    procs: list[subprocess.Popen[bytes]], marker: str | None = None
) -> subprocess.Popen[bytes]:
    """A process that runs until killed, in a session of its own, with
    marker as its QSERIES_RUN."""
    env = {k: v for k, v in os.environ.items() if k != proc.RUN_VARIABLE}
    if marker is not None:
        env[proc.RUN_VARIABLE] = marker
    p = subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
    procs.append(p)
    # Its environment is sleep's once it has exec'd.
    deadline = time.monotonic() + 10
    while Path(f"/proc/{p.pid}/comm").read_text().strip() != "sleep":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # Start times are in clock ticks: the next process must start later.
    time.sleep(0.03)
    return p


def write_record(
    workdir: Path,
    pid: int,
    start: int,
    scratch: dict[str, dict[str, list[int]]],
    marker: str | None = None,
) -> runs.Record:
    rec = runs.Record(
        path=workdir / runs.RUNS_DIR / f"{pid}.json",
        pid=pid,
        start=start,
        started=time.time(),
        command="qseries test",
        argv=("qseries", "test"),
        marker=marker or runs.marker_of(workdir, pid, start),
        scratch=scratch,
        throwaway=runs.THROWAWAY,
    )
    rec.path.parent.mkdir(parents=True, exist_ok=True)
    rec.path.write_text(json.dumps(rec.to_json()))
    return rec


def dead_run(
    workdir: Path, procs: list[subprocess.Popen[bytes]]
) -> tuple[runs.Record, Path]:
    """The record of a run that was killed, with a scratch dir it made
    under WORKDIR/tmp (an older entry there is no run's)."""
    (workdir / "tmp" / "kept-from-before").mkdir(parents=True)
    snapshot = {"tmp": runs._entries(workdir / "tmp")}
    run = sleeper(procs)
    start = runs.start_time(run.pid)
    assert start is not None
    run.kill()
    run.wait()
    rec = write_record(workdir, run.pid, start, snapshot)
    made = workdir / "tmp" / "run-abc"
    (made / "sub").mkdir(parents=True)
    (made / "sub" / "file").write_text("x")
    return rec, made


def test_a_dead_runs_processes_and_scratch_are_ended_and_said(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    before = sleeper(started)  # not the dead run's: no marker
    rec, made = dead_run(tmp_path, started)
    left = sleeper(started, rec.marker)
    os.kill(left.pid, signal.SIGSTOP)  # stopped: it must still end on SIGTERM
    (tmp_path / "bench" / "by-hand" / "x").mkdir(parents=True)
    lines: list[str] = []
    cleaned = runs.clean_dead(tmp_path, lines.append, grace=2)
    assert [c.pid for c in cleaned] == [rec.pid]
    assert left.wait(timeout=10) == -signal.SIGTERM
    assert before.poll() is None
    assert not made.exists()
    assert not (tmp_path / "bench" / "by-hand").exists()
    assert (tmp_path / "tmp" / "kept-from-before").is_dir()
    assert not rec.path.exists()
    assert len(lines) == 1
    assert lines[0].startswith(
        "ended 1 process and removed 2 scratch dirs left by a killed run "
        f"(pid {rec.pid}, qseries test, started "
    )
    # Nothing left: nothing said.
    lines.clear()
    assert runs.clean_dead(tmp_path, lines.append) == []
    assert lines == []


def test_a_process_that_ignores_sigterm_is_killed(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    rec, _ = dead_run(tmp_path, started)
    env = {**os.environ, proc.RUN_VARIABLE: rec.marker}
    stubborn = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"],
        env=env,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    started.append(stubborn)
    assert stubborn.stdout is not None
    assert stubborn.stdout.readline() == b"ready\n"
    lines: list[str] = []
    runs.clean_dead(tmp_path, lines.append, grace=0.5)
    assert stubborn.wait(timeout=10) == -signal.SIGKILL
    # sh and the sleep it ran at the time, both with the marker.
    assert lines[0].startswith("ended ")
    assert runs.marked(rec.marker, rec.start) == []


def test_a_process_older_than_the_run_is_not_its_own(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """A process with the marker that started before the run did (its
    pid and start time reused after a reboot, say) is not the run's."""
    older = sleeper(started, "a marker")
    start = runs.start_time(older.pid)
    assert start is not None
    rec = write_record(tmp_path, 999_999_999, start + 1, {}, marker="a marker")
    lines: list[str] = []
    runs.clean_dead(tmp_path, lines.append, grace=0.5)
    assert older.poll() is None
    assert lines == []
    assert not rec.path.exists()


def test_a_reused_pid_is_not_taken_for_the_run(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """The record's pid now names another process (another start time):
    the run is dead, that process is not touched."""
    other = sleeper(started)
    start = runs.start_time(other.pid)
    assert start is not None
    rec = write_record(tmp_path, other.pid, start - 1, {"tmp": {}})
    assert not rec.alive()
    lines: list[str] = []
    assert [c.pid for c in runs.clean_dead(tmp_path, lines.append, 0.5)] == [other.pid]
    time.sleep(0.1)
    assert other.poll() is None
    assert not rec.path.exists()
    # Nor is it signalled by its pid with the start time it does not have.
    assert not runs._signal(other.pid, start - 1, signal.SIGKILL)
    time.sleep(0.1)
    assert other.poll() is None


def test_a_live_runs_record_is_left_alone(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """This run's own record, and that of a run still alive, are not a
    dead run's: neither their processes nor their scratch are touched."""
    old = proc.run_marker()
    try:
        own = runs.record(tmp_path, "qseries test", ["qseries", "test"])
        assert proc.child_env({})[proc.RUN_VARIABLE] == own.marker
    finally:
        proc.set_run_marker(old)
    own_child = sleeper(started, own.marker)
    live = sleeper(started)
    start = runs.start_time(live.pid)
    assert start is not None
    other = write_record(tmp_path, live.pid, start, {"tmp": {}})
    other_child = sleeper(started, other.marker)
    (tmp_path / "tmp" / "run-live").mkdir(parents=True)
    lines: list[str] = []
    assert runs.clean_dead(tmp_path, lines.append, grace=0.5) == []
    assert lines == []
    assert own.path.exists() and other.path.exists()
    assert own_child.poll() is None and other_child.poll() is None
    assert (tmp_path / "tmp" / "run-live").is_dir()


def test_recorded_removes_its_record_however_the_run_ends(tmp_path: Path) -> None:
    old = proc.run_marker()
    with (
        pytest.raises(KeyboardInterrupt),
        runs.recorded(tmp_path, "qseries build", lambda line: None) as rec,
    ):
        assert json.loads(rec.path.read_text())["marker"] == rec.marker
        assert proc.run_marker() == rec.marker
        raise KeyboardInterrupt
    assert not rec.path.exists()
    assert proc.run_marker() == old
    assert rec.marker == f"{os.getpid()}.{rec.start}@{tmp_path}"


def test_the_scratch_a_caller_names_is_a_dead_runs_to_remove(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """A lab's throw-away dirs, given to recorded, are in the run's
    record; the next run removes them if the run was killed."""
    named = (*runs.THROWAWAY, "bench/lab-scratch")
    with runs.recorded(tmp_path, "qseries bench", lambda line: None, named) as rec:
        assert json.loads(rec.path.read_text())["throwaway"] == list(named)
    run = sleeper(started)
    start = runs.start_time(run.pid)
    assert start is not None
    run.kill()
    run.wait()
    dead = replace(
        rec, path=rec.path.with_name(f"{run.pid}.json"), pid=run.pid, start=start
    )
    dead.path.write_text(json.dumps(dead.to_json()))
    (tmp_path / "bench" / "lab-scratch" / "x").mkdir(parents=True)
    lines: list[str] = []
    assert [c.pid for c in runs.clean_dead(tmp_path, lines.append)] == [run.pid]
    assert not (tmp_path / "bench" / "lab-scratch").exists()
    assert lines[0].startswith("removed 1 scratch dir left by a killed run")
    # Not named: the core's alone leave it.
    assert "bench/lab-scratch" not in runs.THROWAWAY


def test_a_half_written_record_is_dropped(tmp_path: Path) -> None:
    records = tmp_path / runs.RUNS_DIR
    records.mkdir()
    (records / "12.json.new").write_text('{"pid": 12')
    (records / "13.json").write_text("not json")
    assert runs.clean_dead(tmp_path, lambda line: None) == []
    assert list(records.iterdir()) == []


def test_no_proc_is_one_line_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where /proc is not mounted (a bare chroot), no start time can be read.
    monkeypatch.setattr(runs, "start_time", lambda pid: None)
    with pytest.raises(ToolError) as caught:
        runs.record(tmp_path, "qseries test", ["qseries", "test"])
    assert "/proc is not mounted" in str(caught.value)
    assert not (tmp_path / runs.RUNS_DIR).exists()


def test_what_a_run_leaves_running_is_ended_at_its_end(tmp_path: Path) -> None:
    said: list[str] = []
    with runs.recorded(tmp_path, "qseries test", said.append) as rec:
        # A grandchild that left its group: it outlives the command.
        ran = proc.run_bounded(
            ["sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"],
            os.environ,
            30,
        )
        left = int(ran.stdout.strip())
        assert Path(f"/proc/{left}").exists()
    assert runs.marked(rec.marker, rec.start) == []
    assert said == ["ended 1 process this run left running"]
    assert not rec.path.exists()


def test_a_dead_run_whose_process_does_not_end_keeps_its_record(
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec, _ = dead_run(tmp_path, started)
    survivor = sleeper(started, rec.marker)
    # As a process in uninterruptible sleep would: signals do not end it.
    monkeypatch.setattr(runs, "end_processes", lambda marker, after, grace: 1)
    said: list[str] = []
    runs.clean_dead(tmp_path, said.append, grace=0.1)
    assert rec.path.exists()
    assert said[-1].endswith(f"did not end: {survivor.pid}")
