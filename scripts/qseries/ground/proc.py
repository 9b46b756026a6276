"""External commands with a time limit, killed whole when it runs out.

This is the one module of qseries that starts processes: a command run
to its end (run_bounded), a long one whose output streams to a log
(run_streaming: ninja, meson), a QEMU started from asyncio
(start_async) and a child asked questions a line at a time
(start_conversation: the template renderer).  Each has a time limit,
gets the environment its caller gives minus what would change what it
runs on (LD_PRELOAD, git's repository-selecting variables) unless the
caller names them, carries the run marker (set_run_marker) and gets
SIGTERM if qseries dies (PR_SET_PDEATHSIG).  A command that runs the
series' own code (its build, QEMU, the qtests) says untrusted=True: it
then runs in the run's sandbox (set_sandbox, made by sandbox.py), if
the run has one.

Each command runs in a session of its own, so that on a time limit (or
an interrupt of qseries) its whole process group goes with it: apt's
download methods, dpkg-source's tar, the QEMUs a qtest started.  What it
printed until then is kept.

A group is first asked to stop (SIGTERM: ninja then stops the compilers
it runs, each in a group of its own, and removes their half-written
outputs), and killed (SIGKILL) after a grace period.  qseries itself is
a child subreaper, so that what a killed command left running (a
compiler of ninja, a test meson started in a session of its own) stays
its descendant, and on an interrupt the command line ends every
descendant there still is (kill_descendants).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import ctypes.util
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

from .console import Progress
from .errors import ToolError

# How long a process group has to stop on SIGTERM before SIGKILL.
GRACE = 5.0
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# What a child gets when qseries dies.  SIGTERM, not SIGKILL: the child
# leads a group of its own and passes the stop on (ninja stops its
# compilers and removes their half-written outputs, QEMU shuts down,
# a test harness ends its QEMUs), which SIGKILL would not let it do; a
# child that ignores SIGTERM is found by the next run (RUN_VARIABLE).
DEATH_SIGNAL = signal.SIGTERM

# Every child's environment says which run of qseries started it, once
# set_run_marker() named the run: the next run finds what a killed one
# left by it (in /proc/PID/environ).
RUN_VARIABLE = "QSERIES_RUN"
_run_marker: str | None = None


class Wrapper(Protocol):
    """What runs an untrusted command elsewhere (sandbox.RunSandbox)."""

    def wrap(self, argv: Sequence[str], cwd: Path | None) -> list[str]: ...

    def environment(self, env: Mapping[str, str]) -> dict[str, str]: ...


# The run's sandbox, if any: what an untrusted command runs in.
_sandbox: Wrapper | None = None

# A child gets these only when its caller names them (keep=): the first
# loads a library into every program the child runs, the others point
# git at another repository than the one it is run in (git exports
# GIT_DIR to its hooks, so a qseries run from a hook inherits it).
GUARDED_VARIABLES = (
    "LD_PRELOAD",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)

# What starting a child raises when it fails between fork and exec (and
# is no OSError): the command line reports it as a failure of the system.
SubprocessError = subprocess.SubprocessError

# Loaded once here, not in a child between fork and exec.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class Terminated(BaseException):
    """qseries got SIGTERM.

    Like KeyboardInterrupt, it is no Exception: no `except Exception`
    takes it for an error to report and go on from.
    """


@dataclass(frozen=True)
class Ran:
    """A finished (or, with timed_out, killed) process."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    timeout: float


class CommandTimeout(ToolError):
    """A command ran longer than its time limit and was stopped."""

    def __init__(self, argv: Sequence[str], timeout: float, log: Path | None = None):
        where = f"; what it printed is in {log}" if log is not None else ""
        super().__init__(
            f"{shown(argv)} did not finish within its time limit of "
            f"{timeout:g} s{where}",
            "look at what it was waiting for, then run qseries again",
        )
        self.argv = tuple(argv)
        self.timeout = timeout
        self.log = log


def shown(argv: Sequence[str], limit: int = 160) -> str:
    """argv as one line for a message: the program's name, then its
    arguments, cut at limit characters."""
    text = shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else "(nothing)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def set_run_marker(value: str | None) -> None:
    """Name the run every child started from now on belongs to (None:
    the environment's own QSERIES_RUN, if any, is passed on as is)."""
    global _run_marker
    _run_marker = value


def run_marker() -> str | None:
    return _run_marker


def set_sandbox(wrapper: Wrapper | None) -> None:
    """Run every untrusted command started from now on through wrapper
    (None: as any other command)."""
    global _sandbox
    _sandbox = wrapper


def sandbox() -> Wrapper | None:
    return _sandbox


def child_env(env: Mapping[str, str], keep: Collection[str] = ()) -> dict[str, str]:
    """The environment of a child: env, but for the GUARDED_VARIABLES
    not in keep, with the run marker."""
    out = {k: v for k, v in env.items() if k not in GUARDED_VARIABLES or k in keep}
    if _run_marker is not None:
        out[RUN_VARIABLE] = _run_marker
    return out


def _in_child(parent: int) -> Callable[[], None]:
    """What a child runs between fork and exec when setpriv cannot set
    the death signal for it: the signal, and no exec at all if the
    parent is already gone (it may have died before the prctl, which
    then never fires)."""

    def setup() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return setup


# util-linux's setpriv (Essential on Debian) sets the death signal and
# execs the command: the child is then started with vfork, which a
# preexec_fn rules out, and a fork of this whole process costs several
# times more (measured: the functional tests' system time went from
# 6 s to 14 s with preexec_fn on every git call).
_SETPRIV = shutil.which("setpriv")


def death_signal_argv() -> list[str]:
    """setpriv's command line that gives what it runs the death signal,
    empty without setpriv."""
    if _SETPRIV is None:
        return []
    signame = signal.Signals(DEATH_SIGNAL).name.removeprefix("SIG")
    return [_SETPRIV, f"--pdeathsig={signame}", "--"]


def _runnable(argv: Sequence[str], env: Mapping[str, str], cwd: Path | None) -> bool:
    """Does argv[0] name a program that exec can run (as Popen would look
    it up)?  If not, Popen itself is left to raise what it raises."""
    program = argv[0] if argv else ""
    if "/" in program:
        path = Path(program) if cwd is None else Path(cwd) / program
        return path.is_file() and os.access(path, os.X_OK)
    return shutil.which(program, path=env.get("PATH", os.defpath)) is not None


def _popen_args(
    argv: Sequence[str],
    env: Mapping[str, str],
    keep: Collection[str],
    pass_fds: Sequence[int],
    cwd: Path | None,
    untrusted: bool = False,
) -> tuple[list[str], dict[str, Any], bool]:
    """The command line, whether it runs in the sandbox, and what every
    entry point gives Popen (or
    asyncio, which passes it on): a session of its own, the child's
    environment, the death signal (through setpriv, else a preexec_fn),
    the run's sandbox if untrusted.  A program that is not there is not
    wrapped: Popen raises FileNotFoundError for it, as its callers expect.
    The death signal fires when the *thread* that started the child
    ends: run_bounded and run_streaming wait for their child in that
    thread, and a child of start_async belongs to the event loop of its
    thread, which stops it before it ends (qseries starts no other
    threads)."""
    child = child_env(env, keep)
    args: dict[str, Any] = {
        "env": child,
        "cwd": cwd,
        "start_new_session": True,
        "pass_fds": tuple(pass_fds),
    }
    runnable = _runnable(argv, child, cwd)
    wrapped = False
    if untrusted and _sandbox is not None and runnable:
        command = _sandbox.wrap(argv, cwd)
        wrapped = command != list(argv)
        argv = command
        args["env"] = _sandbox.environment(child)
    if _SETPRIV is not None and runnable:
        return [*death_signal_argv(), *argv], args, wrapped
    args["preexec_fn"] = _in_child(os.getpid())
    return list(argv), args, wrapped


def _status(code: int, wrapped: bool) -> int:
    """A command's exit status as Popen gives it for a command run
    directly: bwrap, the init of the sandbox's pid namespace, exits with
    128+N when its command was killed by signal N (Popen's -N)."""
    return -(code - 128) if wrapped and 128 < code < 128 + 65 else code


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def on_sigterm_raise() -> None:
    """Make SIGTERM raise Terminated in the main thread, so that the
    cleanups that run on KeyboardInterrupt (process groups killed, locks
    released, temporary files removed) run on SIGTERM too."""
    signal.signal(signal.SIGTERM, _raise_terminated)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back for the duration (a second Ctrl-C
    must not cut a cleanup short); delivered on the way out."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_running(pgid: int) -> bool:
    """Does a process of group pgid still run (a zombie does not)?"""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[2] == pgid and stat[0] not in ("Z", "X"):
                return True
    return False


def stop_group(proc: subprocess.Popen[str], grace: float | None = None) -> None:
    """End the process group proc leads (proc started a session of its
    own): SIGTERM, up to grace seconds for the group to exit, then
    SIGKILL to whatever is left of it.  proc is reaped.

    The leader may end before the rest of its group: bwrap, whose
    command is still stopping on the same SIGTERM (sandbox.py), so the
    grace is the group's, not only the leader's."""
    with signals_held():
        _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + (GRACE if grace is None else grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(deadline - time.monotonic(), 0))
        while time.monotonic() < deadline and group_running(proc.pid):
            time.sleep(0.02)
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def run_bounded(
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
    *,
    input: str | None = None,
    keep: Collection[str] = (),
    untrusted: bool = False,
    stdin_path: Path | None = None,
) -> Ran:
    """Run argv in a session of its own, for at most timeout seconds,
    with input (if any) on its stdin, or the file stdin_path (bytes, as
    they are: a stream too big or too binary for input), in the run's
    sandbox if untrusted.

    FileNotFoundError (no such program) is the caller's to report.
    """
    if input is not None and stdin_path is not None:
        raise ValueError("input and stdin_path are two stdins")
    command, args, wrapped = _popen_args(argv, env, keep, pass_fds, cwd, untrusted)
    with contextlib.ExitStack() as files:
        stdin: Any = subprocess.DEVNULL if input is None else subprocess.PIPE
        if stdin_path is not None:
            stdin = files.enter_context(open(stdin_path, "rb"))
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=stdin,
            encoding="utf-8",
            errors="replace",
            **args,
        )
    try:
        out, err = proc.communicate(input, timeout=timeout)
        code = _status(proc.returncode, wrapped)
        return Ran(tuple(argv), code, out, err, False, timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        # The pipes close once every holder is gone; a grandchild that
        # left the group (setsid) may still hold them.
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out, err = "", ""
        code = _status(proc.returncode, wrapped)
        return Ran(tuple(argv), code, out, err, True, timeout)
    except BaseException:
        stop_group(proc)
        raise


class Conversation:
    """A child that answers each line written to its stdin with one line
    on its stdout (start_conversation), each answer within a time limit."""

    def __init__(self, proc: subprocess.Popen[Any], time_limit: float):
        self.proc = proc
        self.time_limit = time_limit
        self._pending = b""

    def ask(self, line: str) -> str | None:
        """Send line (without its newline); return the answer, or None
        when the child ended or did not answer in time (it is then
        stopped: its returncode says how it ended)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(line.encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            stop_group(self.proc)
            return None
        deadline = time.monotonic() + self.time_limit
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._pending:
                remaining = deadline - time.monotonic()
                chunk = (
                    os.read(fd, 65536) if selector.select(max(remaining, 0)) else b""
                )
                if not chunk:  # its end, or the time limit
                    stop_group(self.proc, grace=0)
                    return None
                self._pending += chunk
        answer, self._pending = self._pending.split(b"\n", 1)
        return answer.decode("utf-8", errors="replace")


@contextlib.contextmanager
def start_conversation(
    argv: Sequence[str],
    env: Mapping[str, str],
    time_limit: float,
    *,
    keep: Collection[str] = (),
) -> Iterator[Conversation]:
    """Start argv in a session of its own for questions and answers, a
    line each (Conversation.ask, time_limit seconds per answer); on the
    way out its stdin is closed and the group stopped if it lingers.
    Its stderr is not kept.  FileNotFoundError is the caller's."""
    command, args, _ = _popen_args(argv, env, keep, (), None)
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        **args,
    )
    try:
        yield Conversation(proc, time_limit)
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.returncode is None:
            stop_group(proc, grace=1.0)
        if proc.stdout is not None:
            proc.stdout.close()


def run_streaming(
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
    cwd: Path,
    log: Path,
    on_line: Callable[[str], None] | None = None,
    *,
    keep: Collection[str] = (),
    untrusted: bool = False,
) -> int:
    """Run argv in a session of its own (in the run's sandbox if
    untrusted), its output (stdout and stderr) appended to log and each
    line given to on_line as it comes; return its exit code.

    Past timeout seconds the group is stopped and CommandTimeout names
    the command and the log.  FileNotFoundError is the caller's.
    """
    deadline = time.monotonic() + timeout
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {shlex.join(argv)}\n")
        out.flush()
        command, args, wrapped = _popen_args(argv, env, keep, (), cwd, untrusted)
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **args,
        )
        try:
            assert proc.stdout is not None
            _pump(proc.stdout, deadline, out, on_line)
            remaining = deadline - time.monotonic()
            if remaining > 0:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    return _status(proc.wait(timeout=remaining), wrapped)
            stop_group(proc)
            out.write(f"qseries: stopped after its time limit of {timeout:g} s\n")
            raise CommandTimeout(argv, timeout, log)
        except BaseException:
            if proc.returncode is None:
                stop_group(proc)
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


def _pump(
    stream: IO[bytes],
    deadline: float,
    out: IO[str],
    on_line: Callable[[str], None] | None,
) -> None:
    """Copy stream to out line by line until its end or the deadline."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return
            chunk = os.read(stream.fileno(), 65536)
            pending += decoder.decode(chunk, final=not chunk)
            *lines, pending = pending.split("\n")
            for line in lines:
                out.write(line + "\n")
                if on_line is not None:
                    on_line(line + "\n")
            if not chunk:
                if pending:
                    out.write(pending)
                    if on_line is not None:
                        on_line(pending)
                return


class Started:
    """A child started from asyncio (start_async), in a session of its
    own, stopped whole once its time limit has passed."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        argv: Sequence[str],
        wrapped: bool = False,
    ):
        self.process = process
        self.argv = tuple(argv)
        self.wrapped = wrapped
        self.timed_out = False
        self._timers: list[asyncio.TimerHandle] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        code = self.process.returncode
        return None if code is None else _status(code, self.wrapped)

    def _expire(self) -> None:
        """The time limit: SIGTERM to the group now, SIGKILL after GRACE."""
        if self.process.returncode is None:
            self.timed_out = True
            _signal_group(self.pid, signal.SIGTERM)
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(GRACE, self._kill))

    def _kill(self) -> None:
        if self.process.returncode is None:
            _signal_group(self.pid, signal.SIGKILL)

    async def wait(self) -> int:
        code = await self.process.wait()
        for timer in self._timers:
            timer.cancel()
        return _status(code, self.wrapped)

    async def stop(self, grace: float | None = None) -> int:
        """End its group: SIGTERM, up to grace seconds for the group (as
        stop_group), then SIGKILL."""
        if self.process.returncode is None:
            _signal_group(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + (GRACE if grace is None else grace)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(self.process.wait()),
                    max(deadline - time.monotonic(), 0),
                )
            while time.monotonic() < deadline and group_running(self.pid):
                await asyncio.sleep(0.02)
            _signal_group(self.pid, signal.SIGKILL)
        return await self.wait()


async def start_async(
    argv: Sequence[str],
    env: Mapping[str, str],
    time_limit: float,
    *,
    cwd: Path | None = None,
    stdout: int | IO[Any] = subprocess.DEVNULL,
    stderr: int | IO[Any] = subprocess.DEVNULL,
    pass_fds: Sequence[int] = (),
    keep: Collection[str] = (),
    untrusted: bool = False,
) -> Started:
    """Start argv from the running event loop, in a session of its own
    (in the run's sandbox if untrusted); past time_limit seconds its
    group is stopped (Started.timed_out).

    FileNotFoundError is the caller's.
    """
    command, args, wrapped = _popen_args(argv, env, keep, pass_fds, cwd, untrusted)
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        **args,
    )
    started = Started(process, argv, wrapped)
    loop = asyncio.get_running_loop()
    started._timers.append(loop.call_later(time_limit, started._expire))
    return started


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux),
    so that they stay its descendants for kill_descendants()."""
    try:
        return bool(_LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except AttributeError:
        return False


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat from the state on (field 3 first),
    None if pid is gone.  The command name before them may hold blanks
    and parentheses: the fields start after its last ')'."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of pid, None if it is gone."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def descendants(root: int | None = None, exclude: Collection[int] = ()) -> list[int]:
    """The live (not zombie) descendants of root (default: this process),
    but for those in exclude and theirs."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    live: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is None:
            continue
        state, ppid, _ = stat
        children.setdefault(ppid, []).append(int(entry))
        if state not in ("Z", "X"):
            live.add(int(entry))
    found: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in exclude:
            continue
        found.append(pid)
        todo.extend(children.get(pid, []))
    return [pid for pid in found if pid in live]


def kill_descendants(
    grace: float | None = None, exclude: Collection[int] = ()
) -> list[int]:
    """End every process this one started, directly or not, that is still
    running (but for those in exclude and theirs): SIGTERM, up to grace
    seconds, then SIGKILL.  Returns the pids that were running."""
    with signals_held():
        first = descendants(exclude=exclude)
        for pid in first:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + (GRACE if grace is None else grace)
        left = first
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = descendants(exclude=exclude)
        # SIGKILL until they are gone (or zombies), what they started
        # meanwhile included, before the caller says it is done.
        deadline = time.monotonic() + 2
        left = descendants(exclude=exclude)
        while left and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
            left = descendants(exclude=exclude)
    return first


# A whole QEMU build on 2 cores stays well within this.
STREAM_TIMEOUT = 5400.0
NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")


def run_logged(
    argv: Sequence[str],
    cwd: Path,
    log: Path,
    progress: Progress | None,
    timeout: float = STREAM_TIMEOUT,
    *,
    untrusted: bool = False,
) -> tuple[int, int]:
    """Run argv, appending its output to log; return (exit code, steps).

    In a group of its own, stopped whole if qseries is interrupted
    (ninja then stops its compilers) or timeout seconds pass; in the
    run's sandbox if untrusted (it builds the series' tree).
    """
    steps = 0

    def line(text: str) -> None:
        nonlocal steps
        m = NINJA_STEP.match(text)
        if m:
            steps = int(m[1])
            if progress:
                progress.update(int(m[1]), int(m[2]))

    env = {**os.environ, "LC_ALL": "C", "NINJA_STATUS": "[%f/%t] "}
    try:
        code = run_streaming(argv, env, timeout, cwd, log, line, untrusted=untrusted)
    except FileNotFoundError:
        raise ToolError(f"{argv[0]} is not installed", "run 'make bootstrap'") from None
    return code, steps
