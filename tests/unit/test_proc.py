"""Process hygiene: what qseries starts does not outlive a time limit, an
interrupt (SIGINT) or a termination (SIGTERM), and the next run recovers.

The interrupts are sent to a real `python -m qseries` process whose
command runs a child that starts grandchildren: one in the child's
process group, one in a session of its own (as ninja's compilers and
meson's tests are).  Every one of them must be gone once qseries has
exited, with 130 or 143 and one line on stderr.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qseries.ground import proc
from qseries.ground.console import Progress
from qseries.ground.proc import run_logged

from ..conftest import REPO, sigint_as_from_a_terminal


def alive(pid: int) -> bool:
    """Is pid a running process (not a zombie waiting to be reaped)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_gone(pids: list[int], seconds: float = 10) -> list[int]:
    """The pids still alive after up to seconds."""
    deadline = time.monotonic() + seconds
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


def wait_for(path: Path, lines: int, seconds: float = 20) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            found = path.read_text().split()
            if len(found) >= lines:
                return [int(x) for x in found]
        time.sleep(0.05)
    raise AssertionError(f"{path} never got {lines} pids")


# A command that runs long: its own pid, a grandchild in its group and
# one in a session of its own (that a group kill does not reach), then
# waits; TERM is ignored by the session one, so only SIGKILL ends it.
SPAWNER = textwrap.dedent(
    """\
    sleep 300 &
    echo $! >> "$1"
    setsid sh -c 'trap "" TERM; sleep 300 & echo $! >> "$0"; echo $$ >> "$0"; wait' \\
        "$1" &
    echo $$ >> "$1"
    wait
    """
)


def spawner(tmp_path: Path) -> Path:
    script = tmp_path / "spawner.sh"
    script.write_text(SPAWNER)
    return script


def test_a_timeout_stops_the_group_and_kills_what_ignores_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proc, "GRACE", 0.5)
    pids = tmp_path / "pids"
    script = tmp_path / "stubborn.sh"
    script.write_text(
        f'trap "" TERM\nsleep 300 &\necho $! >> {pids}\necho $$ >> {pids}\nwait\n'
    )
    started = time.monotonic()
    ran = proc.run_bounded(["sh", str(script)], os.environ, 1)
    assert ran.timed_out
    # SIGTERM first: the group had its grace before SIGKILL.
    assert time.monotonic() - started >= 1.5
    assert wait_gone([int(p) for p in pids.read_text().split()]) == []


def test_a_timeout_lets_ninja_like_leaders_clean_up_on_sigterm(tmp_path: Path) -> None:
    done = tmp_path / "cleaned"
    script = tmp_path / "leader.sh"
    script.write_text(f'trap "echo > {done}; exit 1" TERM\nsleep 300 &\nwait\n')
    ran = proc.run_bounded(["sh", str(script)], os.environ, 0.5)
    assert ran.timed_out
    assert done.exists()


def test_an_exception_stops_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = tmp_path / "pids"

    def interrupt(*args: object, **kwargs: object) -> None:
        wait_for(pids, 1)
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess.Popen, "communicate", interrupt)
    with pytest.raises(KeyboardInterrupt):
        proc.run_bounded(
            ["sh", "-c", f"sleep 300 & echo $! >> {pids}; wait"], os.environ, 100
        )
    assert wait_gone([int(p) for p in pids.read_text().split()]) == []


def test_run_logged_stops_its_group_when_interrupted(tmp_path: Path) -> None:
    pids = tmp_path / "pids"

    class Interrupting(Progress):
        def update(self, done: int, total: int) -> None:
            wait_for(pids, 1)
            raise KeyboardInterrupt

    argv = ["sh", "-c", f"sleep 300 & echo $! >> {pids}; echo '[1/9] cc x'; wait"]
    with pytest.raises(KeyboardInterrupt):
        run_logged(argv, tmp_path, tmp_path / "log", Interrupting("t"))
    assert wait_gone([int(p) for p in pids.read_text().split()]) == []


def test_kill_descendants_ends_orphans_but_not_what_was_there(tmp_path: Path) -> None:
    assert proc.become_subreaper()
    there = subprocess.Popen(["sleep", "300"])
    before = set(proc.descendants())
    try:
        pids = tmp_path / "pids"
        # The shell exits at once: its sleep is an orphan, ours as subreaper.
        subprocess.run(
            ["sh", "-c", f"setsid sleep 300 >/dev/null 2>&1 & echo $! > {pids}"],
            check=True,
        )
        orphan = wait_for(pids, 1)[0]
        assert orphan in proc.descendants()
        ended = proc.kill_descendants(grace=1, exclude=before)
        assert orphan in ended and there.pid not in ended
        assert wait_gone([orphan]) == []
        assert there.poll() is None
    finally:
        there.kill()
        there.wait()


HARNESS = textwrap.dedent(
    """\
    import os
    import sys
    from qseries import cli
    from qseries.ground import proc
    from qseries.pipeline import commands, views

    def long_command(request, workdir):
        proc.run_bounded(["sh", sys.argv[1], sys.argv[2]], os.environ, 600)
        return views.Lines([])

    def quick_command(request, workdir):
        return views.Lines(["done"])

    run = long_command if sys.argv[3] == "long" else quick_command
    commands.COMMANDS["source"] = commands.Command("source", run)
    sys.exit(cli.main(["--workdir", sys.argv[4], "--no-wait", "source"]))
    """
)


def start_harness(tmp_path: Path, how: str) -> tuple[subprocess.Popen[str], Path]:
    harness = tmp_path / "harness.py"
    harness.write_text(HARNESS)
    pids = tmp_path / f"pids-{how}"
    pids.unlink(missing_ok=True)
    argv = [
        sys.executable,
        str(harness),
        str(spawner(tmp_path)),
        str(pids),
        how,
        str(tmp_path / "work"),
    ]
    child = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "scripts")},
        start_new_session=True,
        preexec_fn=sigint_as_from_a_terminal,
    )
    return child, pids


@pytest.mark.parametrize(
    ("sig", "code", "line"),
    [
        (signal.SIGINT, 130, "qseries: interrupted"),
        (signal.SIGTERM, 143, "qseries: terminated"),
    ],
)
def test_a_signal_ends_every_child_and_the_next_run_recovers(
    tmp_path: Path, sig: int, code: int, line: str
) -> None:
    child, pids = start_harness(tmp_path, "long")
    try:
        started = wait_for(pids, 4)  # sleep, session's sleep and sh, spawner
        child.send_signal(sig)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == code
    assert err.splitlines() == [line]
    assert wait_gone(started) == []
    # Nothing left in the group of qseries (the harness's session) either.
    assert [p for p in proc.descendants(os.getpid()) if p in started] == []
    again, _ = start_harness(tmp_path, "quick")
    out, err = again.communicate(timeout=60)
    assert (again.returncode, out, err) == (0, "done\n", "")


def test_sigterm_raises_terminated_which_no_except_exception_takes() -> None:
    script = textwrap.dedent(
        """\
        import os, signal, sys
        from qseries.ground import proc
        proc.on_sigterm_raise()
        try:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                signal.pause()
            except Exception:
                sys.exit(1)
        except proc.Terminated:
            sys.exit(7)
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO / "scripts")},
        timeout=30,
        check=False,
    )
    assert ran.returncode == 7
