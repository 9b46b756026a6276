"""The sandbox that the series' own code runs in, made by bubblewrap.

Building and testing a series runs code its author wrote: meson runs
the series' meson.build, ninja its compiler commands, QEMU and the
qtests its C.  A series from a stranger must not read the user's home or
their QEMU checkout (--tree), change the system or reach the network.
So the commands that run it (proc's entry points, untrusted=True) run
under bwrap: the system read-only, a private /tmp and /run, of the work
dir only the builds, ccache and scratch writable (WRITABLE), the home
and every --tree hidden under an empty tmpfs (with what must stay
visible bound back read-only: the work dir, the venv qseries and meson
run from, the folder qseries is imported from), the user's environment but for what
builds use left out, no network, namespaces of its own for users and
pids.

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
# Where qseries is imported from (site-packages, or an editable install's
# folder): its Python, run in the sandbox, finds qseries there.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
# Replaced by an empty tmpfs of the sandbox's own.
PRIVATE = ("/tmp", "/run")
# What the series' code may write in the work dir; the rest of it is
# read-only in the sandbox.  Everything qseries itself later runs or
# trusts outside the sandbox stays out of reach: the base trees (they
# hold the checkers qseries runs on every series: checkpatch.pl,
# get_maintainer.pl, the QAPI code), the worktrees the builds read
# (their .git file points git, run by qseries, at a repository; a
# planted one with core.fsmonitor set would run its program), the home
# perl and b4 read their configuration from, the check cache, the run
# records.  The builds write their build dirs, the compilers ccache, the
# tests their scratch (TMPDIR is under tmp/), bench its own trees.
WRITABLE = ("build", "tmp", "cache/ccache", "bench")
# The environment the series' code inherits from the user's, by name:
# what builds and tests need.  What qseries sets for a command itself
# (a value other than its own environment's) is passed too; the rest
# (CI tokens, cloud keys, agent sockets) is not.
INHERITED = frozenset(
    (
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ", "LANG",
        "LANGUAGE", "TMPDIR", "CC", "CXX", "CFLAGS", "CXXFLAGS", "CPPFLAGS",
        "LDFLAGS", "PKG_CONFIG_PATH", "LD_LIBRARY_PATH", "MAKEFLAGS",
        "NINJA_STATUS", "V", "SPEED", "NO_COLOR",
    )
)  # fmt: skip
INHERITED_PREFIXES = ("LC_", "MESON", "CCACHE_", "QTEST_", "QEMU_", "G_", "MALLOC_")


def _under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


@dataclass(frozen=True)
class Sandbox:
    """A bwrap command line: what is hidden, bound back, writable."""

    bwrap: str
    writable: tuple[Path, ...]
    hidden: tuple[Path, ...]
    visible: tuple[Path, ...] = ()

    def prefix(self) -> list[str]:
        """bwrap and its options, up to the command.

        bwrap mounts in the order given, a later mount over an earlier
        one: so the mounts go parents first (a path with fewer parts
        first), and of two on one path the tmpfs that hides first, then
        the bind that shows.  A hidden tree inside the work dir stays
        hidden; the work dir inside the hidden home is seen.

        A pid namespace of its own (--unshare-pid): the series' code
        sees no process outside and can signal none (`kill -9 -1` from
        a qtest would otherwise reach every process of the user, as the
        kernel compares the uids behind the user namespace).  qseries
        still sees the sandboxed processes, by the pids of its own
        namespace: its process-group kills, kill_descendants (it is
        their subreaper) and the next run's cleanup of a killed one
        (runs.py: the QSERIES_RUN in /proc/PID/environ) reach them as
        they reach an unsandboxed command.  A user namespace of its
        own, for root too (--unshare-user; bwrap makes one anyway for
        anyone else): /proc/PID/root of a process outside would be the
        whole file system again, writable.  No --new-session: the
        command stays in the process group proc made for it, which is
        what a time limit stops (and it has no terminal to be fed
        keystrokes from).

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
        covered = [*map(Path, PRIVATE), *self.hidden]
        for path in self.visible:
            # Seen at the path it is named by and at its real one: a
            # venv in a home reached through a symlink is still found.
            for where in {path.absolute(), path.resolve()}:
                if where.exists() and _under(where, covered):
                    source = str(where.resolve())
                    mounts.append(
                        (len(where.parts), 1, ["--ro-bind", source, str(where)])
                    )
        for path in self.writable:
            if not path.exists():
                continue
            target = path.resolve()
            for where in {path.absolute(), target}:
                mounts.append(
                    (len(where.parts), 2, ["--bind", str(target), str(where)])
                )
        mounts.sort(key=lambda m: (m[0], m[1]))
        argv = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for _, _, options in mounts:
            argv += options
        return [*argv, "--unshare-user", "--unshare-net", "--unshare-pid"]

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
            # The work dir is seen read-only (bound back if it is in the
            # hidden home); only WRITABLE is the series' to write.
            writable = []
            for name in WRITABLE:
                (self.workdir / name).mkdir(parents=True, exist_ok=True)
                writable.append(self.workdir / name)
            sandbox = Sandbox(
                bwrap, tuple(writable), self.hidden, (*self.visible, self.workdir)
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

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """What of env a command in the sandbox gets: see INHERITED."""
        if self.decide() is None:
            return dict(env)
        return confined_env(env, os.environ)


def confined_env(env: Mapping[str, str], own: Mapping[str, str]) -> dict[str, str]:
    """env less what the user's environment (own) holds that the
    series' code has no use for: a variable is kept if INHERITED names
    it, or if qseries set it for this command (absent from own, or with
    another value there), or if it is qseries' own (QSERIES_*)."""
    return {
        k: v
        for k, v in env.items()
        if k in INHERITED
        or k.startswith((*INHERITED_PREFIXES, "QSERIES_"))
        or own.get(k) != v
    }


def built_from(env: Mapping[str, str], programs: Iterable[Path] = ()) -> list[Path]:
    """What the series' build and tests run from, to be seen even in a
    hidden home: Python's prefixes (meson runs under qseries' own
    Python), where qseries is imported from, the directories of the
    tools and of programs.  What they read of qseries' data (the devices
    file, the fake's sources) is a copy in the work dir, seen anyway."""
    found = {Path(sys.prefix), Path(sys.base_prefix), PACKAGE_PARENT}
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
