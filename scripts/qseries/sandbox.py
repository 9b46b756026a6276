"""The sandbox that the series' own code runs in, made by bubblewrap.

Building and testing a series runs code its author wrote: meson runs
the series' meson.build, ninja its compiler commands, QEMU and the
qtests its C.  A series from a stranger must not read the user's home or
their QEMU checkout (--tree), change the system or reach the network.
So the commands that run it (proc's entry points, untrusted=True) run
under bwrap: the system read-only, a private /tmp and /run, the work dir
writable, the home and every --tree hidden under an empty tmpfs (with
what must stay visible bound back read-only: the work dir, the venv
qseries and meson run from, qseries' own checkout), no network.

Whether bwrap can be used is probed once per run, at the first command
that needs it; when it cannot (not installed, user namespaces refused),
or QSERIES_SANDBOX=off, the run says so in one line and goes on without
(still bounded by proc: its own process group, a time limit).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import proc

# Set to "off" (or "no", "0"): run the series' code without the sandbox.
SWITCH = "QSERIES_SANDBOX"
OFF = ("off", "no", "0")
PROBE_TIMEOUT = 20.0
INSTALL_HINT = "install bubblewrap (apt-get install bubblewrap) to run it sandboxed"
# The programs the build runs from PATH that may live in a hidden
# directory (a venv in the home): their directories stay visible.
TOOLS = ("ninja", "meson", "ccache")
# qseries' own checkout: the build reads configs/ from it.
CHECKOUT = Path(__file__).resolve().parents[2]
# Replaced by an empty tmpfs of the sandbox's own.
PRIVATE = ("/tmp", "/run")
# What stays read-only inside the writable work dir: the base trees.
# They hold the checkers qseries runs on every series (checkpatch.pl,
# get_maintainer.pl, the QAPI code) and the base every build starts
# from; a series' build must not change what checks the next series.
READ_ONLY = ("trees",)


def _under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


@dataclass(frozen=True)
class Sandbox:
    """A bwrap command line: what is hidden, bound back, writable."""

    bwrap: str
    writable: tuple[Path, ...]
    hidden: tuple[Path, ...]
    visible: tuple[Path, ...] = ()
    # Inside a writable path, bound again read-only.
    readonly: tuple[Path, ...] = ()

    def prefix(self) -> list[str]:
        """bwrap and its options, up to the command.

        bwrap mounts in the order given, a later mount over an earlier
        one: so the mounts go parents first (a path with fewer parts
        first), and of two on one path the tmpfs that hides first, then
        the bind that shows.  A hidden tree inside the work dir stays
        hidden; the work dir inside the hidden home is seen.

        The pid namespace is shared (no --unshare-pid): the pids the
        sandboxed processes have are those qseries sees, so that its
        process-group kills, kill_descendants (it is their subreaper)
        and the next run's cleanup of a killed one (runs.py: the
        QSERIES_RUN in /proc/PID/environ) reach them as they reach an
        unsandboxed command.  That makes a user namespace a must, for
        root too (--unshare-user; bwrap makes one anyway for anyone
        else): without it, /proc/PID/root of any process of the same
        user outside (qseries itself) is the whole file system again,
        writable, and /proc/PID/environ and ptrace reach them; from a
        user namespace of its own the kernel refuses all three.  No
        --new-session either: the command stays in the process group
        proc made for it, which is what a time limit stops (and it has
        no terminal to be fed keystrokes from).

        /run is emptied with /tmp: the unix sockets there (a docker
        daemon's, the session bus in /run/user/UID) would let the
        command have something outside run what it asks.
        """
        mounts: list[tuple[int, int, list[str]]] = [
            (2, 0, ["--tmpfs", private]) for private in PRIVATE
        ]
        for path in self.hidden:
            if path.is_dir() and path != Path("/"):
                mounts.append((len(path.parts), 0, ["--tmpfs", str(path)]))
        for path in self.visible:
            if path.exists() and _under(path, [*map(Path, PRIVATE), *self.hidden]):
                mounts.append((len(path.parts), 1, ["--ro-bind", str(path), str(path)]))
        for path in self.writable:
            real = path.resolve()
            mounts.append((len(real.parts), 2, ["--bind", str(real), str(real)]))
            if path.absolute() != real:
                where = str(path.absolute())
                mounts.append(
                    (len(path.absolute().parts), 2, ["--bind", str(real), where])
                )
        for path in self.readonly:
            if path.is_dir():
                real = str(path.resolve())
                mounts.append((len(path.resolve().parts), 3, ["--ro-bind", real, real]))
        mounts.sort(key=lambda m: (m[0], m[1]))
        argv = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for _, _, options in mounts:
            argv += options
        return [*argv, "--unshare-user", "--unshare-net"]

    def wrap(self, argv: Sequence[str], cwd: Path | None) -> list[str]:
        """argv run in the sandbox, in cwd (else where bwrap lands).

        The command gets SIGTERM when bwrap dies (setpriv, as proc does
        for every child), not bwrap's --die-with-parent, which sends
        SIGKILL: a stop of the process group reaches bwrap and the
        command together, and bwrap, gone first, would take from ninja
        and QEMU the SIGTERM they stop cleanly on.
        """
        out = self.prefix()
        if cwd is not None:
            out += ["--chdir", str(Path(cwd).absolute())]
        death = proc.death_signal_argv()
        if not death:
            out.append("--die-with-parent")
        return [*out, "--", *death, *argv]


def probe(sandbox: Sandbox, env: Mapping[str, str]) -> str | None:
    """Why the sandbox cannot run a command here (None: it can): bwrap
    with the very mounts it will have, running true, bounded."""
    try:
        ran = proc.run_bounded(
            [*sandbox.prefix(), "--", "true"], env, PROBE_TIMEOUT, cwd=Path("/")
        )
    except OSError as err:
        return f"{sandbox.bwrap} does not run ({err.strerror or err})"
    if ran.timed_out:
        return f"bwrap did not finish within {PROBE_TIMEOUT:g} s"
    if ran.returncode != 0:
        said = (ran.stderr.strip().splitlines() or [f"exit {ran.returncode}"])[-1]
        return f"bwrap fails here ({said})"
    return None


class RunSandbox:
    """The sandbox of one run, decided at the first command that needs
    it (proc.set_sandbox): a run that builds nothing probes nothing."""

    def __init__(
        self,
        workdir: Path,
        hidden: Sequence[Path],
        notify: Callable[[str], None],
        env: Mapping[str, str] | None = None,
        visible: Sequence[Path] | None = None,
    ):
        self.env = os.environ if env is None else env
        self.workdir = workdir.absolute()
        self.hidden = tuple(p.absolute() for p in hidden)
        self.visible = tuple(visible if visible is not None else built_from(self.env))
        self.notify = notify
        self.decided = False
        self.sandbox: Sandbox | None = None
        self.reason: str | None = None

    def decide(self) -> Sandbox | None:
        """The sandbox, probed the first time; said once when there is none."""
        if self.decided:
            return self.sandbox
        self.decided = True
        switch = self.env.get(SWITCH, "").strip().lower()
        bwrap = shutil.which("bwrap", path=self.env.get("PATH", os.defpath))
        if switch in OFF:
            self.reason = f"{SWITCH}={switch}"
            hint = f"unset {SWITCH} to run it sandboxed"
        elif bwrap is None:
            self.reason = "bwrap is not on PATH"
            hint = INSTALL_HINT
        else:
            sandbox = Sandbox(
                bwrap,
                (self.workdir,),
                self.hidden,
                self.visible,
                tuple(self.workdir / name for name in READ_ONLY),
            )
            self.reason = probe(sandbox, self.env)
            hint = (
                "let bwrap make user namespaces (README.md: 'The series' code "
                "is untrusted') to run it sandboxed"
                if "namespace" in (self.reason or "")
                else "see README.md, 'The series' code is untrusted'"
            )
            if self.reason is None:
                self.sandbox = sandbox
                return sandbox
        self.notify(
            f"running the series' code without a sandbox: {self.reason}; {hint}"
        )
        return None

    def wrap(self, argv: Sequence[str], cwd: Path | None) -> list[str]:
        sandbox = self.decide()
        return list(argv) if sandbox is None else sandbox.wrap(argv, cwd)


def built_from(env: Mapping[str, str], programs: Iterable[Path] = ()) -> list[Path]:
    """What the series' build and tests run from, to be seen even in a
    hidden home: Python's prefixes (meson runs under qseries' own
    Python), the directories of the tools and of programs, the checkout."""
    found = {Path(sys.prefix), Path(sys.base_prefix), CHECKOUT}
    tools = [shutil.which(t, path=env.get("PATH", os.defpath)) for t in TOOLS]
    for where in [*(Path(t) for t in tools if t is not None), *programs]:
        found |= {where.absolute().parent, where.resolve().parent}
    return sorted(p.absolute() for p in found)


def hidden_paths(trees: Iterable[Path | None], env: Mapping[str, str]) -> list[Path]:
    """What a run hides: the user's home and each --tree it was given."""
    home = env.get("HOME") or os.path.expanduser("~")
    found = [Path(home).resolve()] if home and home != "/" else []
    return found + [Path(t).resolve() for t in trees if t is not None]


@contextmanager
def for_run(
    workdir: Path,
    trees: Iterable[Path | None],
    notify: Callable[[str], None],
    shown: Iterable[Path | None] = (),
) -> Iterator[RunSandbox]:
    """The commands of this run that run the series' code go through
    the sandbox (proc's untrusted=True) until the block ends.  shown:
    programs the run was given (test --qemu) whose directories must be
    seen, read-only, even in a hidden home or tree."""
    programs = [Path(p) for p in shown if p is not None]
    run = RunSandbox(
        workdir,
        hidden_paths(trees, os.environ),
        notify,
        visible=built_from(os.environ, programs),
    )
    before = proc.sandbox()
    proc.set_sandbox(run)
    try:
        yield run
    finally:
        proc.set_sandbox(before)
