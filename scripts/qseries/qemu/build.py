"""build: configure and build QEMU with meson/ninja, incrementally.

Each base gets one worktree and one build directory in the work dir.
Switching what is built (the bare base, the base with the series' qtest
only, the whole series) moves the worktree with `git checkout`, which
rewrites only the files that differ: ninja then rebuilds only what
depends on them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ..core import lab as lab_mod
from ..ground import pkgdata
from ..ground.console import Progress, say
from ..ground.errors import QSeriesError, ToolError, UsageError
from ..ground.gitutil import Git
from ..ground.proc import run_logged
from ..ground.workdir import WorkDir
from .source import BaseTree

CONFIGURE_ARGS = (
    "--target-list=x86_64-softmmu",
    "--without-default-features",
    "--without-default-devices",  # only those of DEVICES (devices_arg)
    "--disable-docs",
    "--disable-install-blobs",
)
# The Kconfig symbols of the devices every build has (package data), and
# the file of a lab that adds those its proof runs (see devices_data).
DEVICES = resources.files("qseries.qemu") / "data" / "qseries-x86_64.mak"
LAB_DEVICES = "devices.mak"
DEVICES_OPTION = "--with-devices-x86_64="  # configure's, naming the file
CCACHE_MAX_SIZE = "1G"
# configure splits --cc at blanks (and expands globs): no such characters.
PLAIN_PATH = re.compile(r"[\w./+,:@%=-]+")
QEMU_TARGET = "qemu-system-x86_64"
SEABIOS_DIR = Path("/usr/share/seabios")
LOG_TAIL = 25
# Time limits: configure (meson's checks), and a ninja run (a cold build
# of the q35 target takes 10-20 minutes on two cores; a hung compiler
# or test must still end).
CONFIGURE_TIMEOUT = 900.0
BUILD_TIMEOUT = 5400.0


class BuildError(QSeriesError):
    """configure or ninja failed."""


class BuildPathError(UsageError):
    """QEMU cannot be built in the work dir's path."""


# What QEMU's build cannot take in the path of its source or build
# directory: configure refuses blanks and colons ("main directory cannot
# contain spaces nor colons"); a double quote breaks the assembler on
# gcc's output, a single quote the launcher that pip writes for meson
# in the build's pyvenv once the path is long (#!/bin/sh, the path
# unquoted).  Seen with QEMU 10.2.2 on Debian 12.
BUILD_REFUSES = re.compile(r"[\s:'\"]")
# The commands that configure and build QEMU in the work dir (check too:
# its compile check builds the series' objects).
COMMANDS_THAT_BUILD = ("build", "test", "reproduce", "matrix", "bench", "check")


def check_build_paths(workdir: WorkDir) -> None:
    """Refuse, before any work, a work dir QEMU cannot be built in: its
    worktrees and build directories are in it."""
    where = str(workdir.path)
    m = BUILD_REFUSES.search(where)
    if m is None:
        return
    if m[0] == ":":
        what, why = "a colon", "QEMU's configure refuses it"
    elif m[0] in "'\"":
        what, why = f"a quote ({m[0]})", "QEMU's build breaks on it"
    else:
        what, why = f"a blank ({m[0]!r})", "QEMU's configure refuses it"
    raise BuildPathError(
        f"the work dir {where} has {what} in its path: {why}",
        "pass --workdir (or set QSERIES_WORKDIR to) a path without blanks, "
        "colons or quotes",
    )


def build_dir(workdir: WorkDir, base: BaseTree) -> Path:
    """The build directory of base in the work dir."""
    check_build_paths(workdir)
    return workdir.path / "build" / base.root.name


@dataclass(frozen=True)
class Build:
    tree: Path  # the worktree that was built
    builddir: Path
    commit: str
    log: Path
    steps: int  # ninja steps run by the last build
    seconds: float  # configure (if it ran) and ninja
    configured: bool = False  # configure ran (the build dir was not ready)
    configure_seconds: float = 0.0

    @property
    def qemu(self) -> Path:
        return self.builddir / QEMU_TARGET

    def qtest(self, name: str) -> Path:
        return self.builddir / "tests" / "qtest" / name

    def to_json(self) -> dict[str, object]:
        return {
            "tree": str(self.tree),
            "builddir": str(self.builddir),
            "commit": self.commit,
            "log": str(self.log),
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "qemu": str(self.qemu),
        }


def compose(
    base: BaseTree,
    patches: Sequence[Path],
    workdir: WorkDir,
    origin: BaseTree | None = None,
    loose: bool = False,
) -> str:
    """A commit of the base with patches applied, made without a checkout.

    On a base other than origin, the one the patches were generated on
    (a backport), a patch whose context differs is applied with a 3-way
    merge, origin's objects at hand, as `qseries check` does.  loose:
    the generation base is gone (Debian dropped it), so a patch that
    does not apply is tried with one line of context, as check does.
    """
    if not patches:
        return base.commit
    g = Git(base.root)
    with tempfile.TemporaryDirectory(dir=workdir.sub("tmp")) as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        g.run("read-tree", base.commit, env=env)
        for patch in patches:
            try:
                g.run("apply", "--cached", str(patch), env=env)
                continue
            except ToolError as err:
                failure = err
            if origin is not None and origin.root != base.root:
                merge_env = {
                    **env,
                    "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(
                        origin.root / ".git" / "objects"
                    ),
                }
                try:
                    g.run("apply", "--cached", "--3way", str(patch), env=merge_env)
                    say(f"{patch.name}: merged 3-way with {origin.describe()}")
                    continue
                except ToolError as err:
                    failure = err
            if loose:
                # No generation base to merge with: one line of context, as
                # `qseries check` does, which lists the patch for review.
                try:
                    g.run("apply", "--cached", "-C1", str(patch), env=env)
                    say(
                        f"{patch.name}: applied with 1 line of context, without "
                        "its generation base: review it"
                    )
                    continue
                except ToolError as err:
                    failure = err
            raise BuildError(
                f"{patch.name} does not apply to {base.describe()}: {failure}",
                "run 'qseries check' for details",
            ) from None
        tree = g.run("write-tree", env=env)
        # Fixed identity and date: the same patches give the same commit.
        ident = {
            "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+00:00",
            "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+00:00",
        }
        names = ", ".join(p.name for p in patches)
        return g.run(
            "commit-tree", tree, "-p", base.commit, "-m", f"qseries: {names}", env=ident
        )


def checkout(base: BaseTree, commit: str, workdir: WorkDir) -> Path:
    """The base's build worktree, moved to commit."""
    tree = workdir.path / "work" / f"build-{base.root.name}"
    g = Git(base.root)
    # A worktree whose repository was made anew since is thrown away.
    if not (tree / ".git").exists() or not Git(tree).try_run("rev-parse", "--git-dir"):
        shutil.rmtree(tree, ignore_errors=True)
        g.run("worktree", "prune")
        tree.parent.mkdir(parents=True, exist_ok=True)
        say(f"checking out {base.describe()} for building")
        g.run("worktree", "add", "--quiet", "--force", "--detach", str(tree), commit)
    else:
        drop_stale_locks(tree)
        Git(tree).run("checkout", "--quiet", "--force", "--detach", commit)
    return tree


# What a git killed while it moved a worktree leaves behind; git then
# refuses to touch the worktree until they are gone.
GIT_LOCKS = ("index.lock", "HEAD.lock")


def drop_stale_locks(tree: Path) -> list[Path]:
    """Remove the lock files an interrupted git left in the worktree's
    git dir.  Only qseries uses its worktrees, and it holds the work
    dir's lock: a lock file found now is stale."""
    gitdir = Path(Git(tree).run("rev-parse", "--absolute-git-dir"))
    dropped = []
    for name in GIT_LOCKS:
        lock = gitdir / name
        if lock.exists():
            lock.unlink()
            dropped.append(lock)
    return dropped


def _fail(what: str, log: Path) -> BuildError:
    lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL:]
    for line in lines:
        print(f"  | {line}", file=sys.stderr)
    return BuildError(f"{what} failed", f"the whole log is {log}")


def devices_data(devices: Traversable = DEVICES) -> bytes:
    """The devices file: devices, then the devices.mak of every installed
    lab.  Those of every lab, not only of the series' own: series of
    different labs on one base then share its build dir, configured once."""
    if not devices.is_file():
        raise BuildError(
            f"qseries' {devices.name} is missing", "reinstall qseries: it ships it"
        )
    parts = [devices.read_bytes()]
    names = lab_mod.installed()  # none, and no labs package, in a bare install
    for name in names:
        labs = resources.files(lab_mod.LABS_PACKAGE)
        extra = labs / name.replace("-", "_") / LAB_DEVICES
        if extra.is_file():
            said = f"\n# From the {name} lab ({LAB_DEVICES}):\n"
            parts.append(said.encode() + extra.read_bytes())
    return b"".join(parts)


def devices_file(root: Path, devices: Traversable = DEVICES) -> Path:
    """The devices file (devices_data) as a path configure can read: a
    copy under root (the work dir), at a path that changes only with its
    content."""
    return pkgdata.place(root, devices.name, devices_data(devices))


def devices_arg(tree: Path, devices: Path) -> str:
    """configure's option that builds the devices of a Kconfig .mak file.

    configure reads configs/devices/x86_64-softmmu/NAME.mak of the tree;
    a NAME relative to that folder names a file outside the tree.
    """
    if not devices.is_file():
        raise BuildError(f"{devices} is missing", "run again: qseries copies it")
    name = os.path.relpath(devices.absolute().with_suffix(""), _devices_folder(tree))
    return f"{DEVICES_OPTION}{name}"


def _devices_folder(tree: Path) -> Path:
    return tree.absolute() / "configs" / "devices" / "x86_64-softmmu"


def device_lines(text: str) -> list[str]:
    """What a devices file sets, one setting a line (CONFIG_X=y), in its
    order: its comments and blank lines, and blanks within a line, mean
    nothing to Kconfig, so they do not tell two files apart."""
    lines = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            lines.append(re.sub(r" ?= ?", "=", " ".join(words)))
    return lines


def ccache_cc(workdir: WorkDir, ccache: str | None = None) -> str | None:
    """configure's --cc that compiles through ccache, if it is installed.

    The cache is the work dir's (never the user's), capped; paths under
    the work dir are hashed relative to the build dir and the build dir
    itself not at all (-g would hash it), so that a new build dir or
    another checkout of the same sources, placed alike, hits.  The
    settings are in the compiler's command line: meson's checks and any
    ninja run in the build dir, whoever starts it, use them.
    """
    ccache = ccache or shutil.which("ccache")
    if not ccache:
        return None
    cache = workdir.path / "cache" / "ccache"
    if not all(PLAIN_PATH.fullmatch(str(p)) for p in (ccache, cache, workdir.path)):
        return None
    cc = os.environ.get("CC") or "gcc"  # configure's own default
    settings = (
        f"CCACHE_DIR={cache}",
        f"CCACHE_BASEDIR={workdir.path}",
        "CCACHE_NOHASHDIR=1",
        # Depend mode hashes what the compiler's -MD says it read rather
        # than running the preprocessor once more: a miss costs about
        # nothing (a cold build took 1.4x as long without it).
        "CCACHE_DEPEND=1",
        f"CCACHE_MAXSIZE={CCACHE_MAX_SIZE}",
        "LC_ALL=C",  # hashed by ccache: the same whoever runs ninja
    )
    return f"--cc=env {' '.join(settings)} {ccache} {cc}"


def _still_configured(
    stamped: object, tree: Path, args: list[str], devices: Sequence[str]
) -> bool:
    """Does a build dir configured as stamped serve args and devices?

    The same tree and the same arguments, --python among them: the
    build's pyvenv is made from that Python, and the sandbox a build runs
    in shows only this run's own Python (another install's, in a home or
    a private /tmp, would leave the pyvenv with no meson).  All but the
    devices option, that is: a build with more devices than a run needs
    serves it.  The devices file holds those of every lab installed when
    the build dir was configured; a run with fewer labs (one deleted, a
    bare install sharing the work dir) must not cost a configure and a
    rebuild of QEMU for devices it merely does not use.  A device more
    than the build has (a lab installed since) configures anew.  A stamp
    of an older qseries names no devices: it serves only the same
    arguments (the devices file's path names its content), as before.
    """
    if not isinstance(stamped, dict) or stamped.get("tree") != str(tree):
        return False
    had_args, had_devices = stamped.get("args"), stamped.get("devices")
    if not isinstance(had_args, list) or not isinstance(had_devices, list):
        return had_args == args
    return (
        _other_args(had_args) == _other_args(args)
        and _has_devices(had_devices, devices)
        and _devices_file_kept(tree, had_args)
    )


def _is_devices(arg: object) -> bool:
    return isinstance(arg, str) and arg.startswith(DEVICES_OPTION)


def _other_args(args: Sequence[object]) -> list[object]:
    return [a for a in args if not _is_devices(a)]


def _has_devices(had: list[object], needed: Sequence[str]) -> bool:
    """Had every setting needed, and more only in devices turned on (a
    CONFIG_X=n more could take away a device that needed brings in)."""
    if not all(isinstance(line, str) for line in had):
        return False  # not a stamp qseries wrote
    lines = {str(line) for line in had}
    return set(needed) <= lines and all(
        line.endswith("=y") for line in lines - set(needed)
    )


def _devices_file_kept(tree: Path, args: Sequence[object]) -> bool:
    """Is the devices file that args name still there?  meson reads it
    again whenever ninja has it regenerate the build."""
    names = [str(a).removeprefix(DEVICES_OPTION) for a in args if _is_devices(a)]
    if len(names) != 1:
        return False
    # Joined and normalized, as meson does (the folder need not exist).
    return Path(os.path.normpath(_devices_folder(tree) / f"{names[0]}.mak")).is_file()


def configure(
    tree: Path,
    builddir: Path,
    python: str,
    log: Path,
    workdir: WorkDir | None = None,
) -> bool:
    """Configure builddir unless it already serves this run (see
    _still_configured: the same arguments, among them ccache's, used when
    workdir is given and ccache is found, whose coming or going
    reconfigures; and at least the devices of devices_data).  The stamp
    records the device lines configure was given, for later runs with
    fewer labs."""
    # Without a work dir (bench's cold build, in a build dir of its own)
    # the devices file goes beside the build dir.
    devices = devices_file(workdir.path if workdir else builddir.parent)
    lines = device_lines(devices.read_text())
    args = [*CONFIGURE_ARGS, devices_arg(tree, devices), f"--python={python}"]
    cc = ccache_cc(workdir) if workdir else None
    if cc:
        args.append(cc)
    stamp = builddir / "qseries-configure.json"
    if (builddir / "build.ninja").exists() and stamp.exists():
        try:
            if _still_configured(json.loads(stamp.read_text()), tree, args, lines):
                return False
        except ValueError:
            pass
    shutil.rmtree(builddir, ignore_errors=True)
    builddir.mkdir(parents=True)
    say(f"configuring {tree.name} in {builddir}")
    code, _ = run_logged(
        [str(tree / "configure"), *args],
        builddir,
        log,
        None,
        CONFIGURE_TIMEOUT,
        untrusted=True,
    )
    if code != 0:
        raise _fail("configure", log)
    # Whole or not at all: a half-written stamp must not count as done.
    # A new name of its own (O_EXCL), renamed over the stamp: the build
    # dir is the series' to write, and a link it left at a fixed name
    # would have this write land wherever it points.
    fd, partial = tempfile.mkstemp(prefix=".qseries-configure.", dir=builddir)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps({"tree": str(tree), "args": args, "devices": lines}))
    os.replace(partial, stamp)
    return True


def firmware_dir(builddir: Path) -> Path:
    """Where a QEMU run from builddir looks for firmware: the data dir of
    the qemu-bundle tree that configure links up (share/qemu)."""
    found = sorted(builddir.glob("qemu-bundle/**/share/qemu"))
    if not found:
        raise BuildError(
            f"{builddir} has no qemu-bundle/.../share/qemu",
            "re-run the build (configure makes it)",
        )
    return found[0]


def link_firmware(builddir: Path, source: Path = SEABIOS_DIR) -> int:
    """Link the seabios package's images where the built QEMU finds them.

    The +ds tarball carries no firmware and --disable-install-blobs
    installs none, so a PC machine would not start without these.
    """
    datadir = firmware_dir(builddir)
    linked = 0
    for image in sorted(source.glob("*.bin")):
        target = datadir / image.name
        if not target.exists():
            target.symlink_to(image)
            linked += 1
    return linked


def build(
    base: BaseTree,
    commit: str,
    workdir: WorkDir,
    targets: Sequence[str],
    python: str | None = None,
    tree: Path | None = None,
) -> Build:
    """Build targets of base at commit, reusing the base's build dir.

    tree: the base's build worktree, which the caller has just moved to
    commit (checkout): it is not checked out a second time (git stats
    every file of QEMU's to do it).
    """
    builddir = build_dir(workdir, base)
    if tree is None:
        tree = checkout(base, commit, workdir)
    builddir.parent.mkdir(parents=True, exist_ok=True)
    log = workdir.sub("logs") / f"build-{base.root.name}.log"
    log.write_text("")
    python = python or sys.executable
    started = time.monotonic()
    configured = configure(tree, builddir, python, log, workdir)
    configure_seconds = time.monotonic() - started
    if not SEABIOS_DIR.is_dir():
        raise BuildError(
            f"{SEABIOS_DIR} is missing", "install Debian's seabios package"
        )
    say(f"building {', '.join(targets)} (log: {log})")
    code, steps = run_logged(
        ["ninja", *targets],
        builddir,
        log,
        Progress(f"ninja {base.root.name}"),
        untrusted=True,
    )
    if code != 0:
        raise _fail("ninja", log)
    link_firmware(builddir)
    return Build(
        tree,
        builddir,
        commit,
        log,
        steps,
        time.monotonic() - started,
        configured,
        configure_seconds,
    )


# "../../work/build-x/qom/object.c:12:5: error: expected ';' ..."
# and meson's "meson.build:3:0: ERROR: ..." when a series breaks the build
# files; gcc's "fatal error:" (a missing header) is one too.
BUILD_ERROR = re.compile(
    r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:\d+:)? (?:(?:fatal )?error|ERROR): "
    r"(?P<what>.*)$"
)
ERRORS_SHOWN = 6


@dataclass(frozen=True)
class Compiled:
    """What compile_objects made of the C files it was given."""

    compiled: tuple[str, ...]  # tree-relative files whose objects were built
    unbuilt: tuple[str, ...]  # files no target of this configuration compiles
    errors: tuple[str, ...]  # "file:line: error: ..." (tree-relative), if failed
    failed: tuple[str, ...]  # the given files the errors name
    log: Path
    steps: int

    @property
    def ok(self) -> bool:
        return not self.errors


def changed_c_files(tree: Path, old: str, new: str) -> list[str]:
    """The C files added or modified from commit old to commit new."""
    out = Git(tree).run(
        "diff",
        "--name-only",
        "-z",
        "--diff-filter=AM",
        old,
        new,
        "--",
        "*.c",
        strip=False,
    )
    return sorted(name for name in out.split("\0") if name)


def _objects(builddir: Path, tree: Path, files: Sequence[str]) -> dict[str, list[str]]:
    """For each of files (tree-relative), the objects compile_commands.json
    builds from it; a file this configuration does not compile is absent."""
    db = builddir / "compile_commands.json"
    try:
        entries = json.loads(db.read_text())
    except (OSError, ValueError) as err:
        raise BuildError(f"cannot read {db}: {err}", "re-run configure") from None
    top = tree.resolve()
    wanted = set(files)
    found: dict[str, list[str]] = {}
    for entry in entries:
        try:
            where = Path(entry["directory"], entry["file"]).resolve()
            output = str(entry["output"])
        except (KeyError, TypeError):
            continue
        if where.is_relative_to(top):
            name = where.relative_to(top).as_posix()
            if name in wanted and output not in found.setdefault(name, []):
                found[name].append(output)
    return found


def _shown_path(path: str, tree: Path, builddir: Path) -> str:
    """A path from a compiler message, relative to the tree (or the build
    dir, for generated files) when it is inside one of them."""
    full = Path(builddir, path).resolve()
    for top in (tree.resolve(), builddir.resolve()):
        if full.is_relative_to(top):
            return full.relative_to(top).as_posix()
    return path


def build_errors(log: Path, tree: Path, builddir: Path) -> list[str]:
    """The error lines of a failed configure or ninja run, tree-relative."""
    found: list[str] = []
    for line in log.read_text(errors="replace").splitlines():
        m = BUILD_ERROR.match(line)
        if m:
            file = _shown_path(m["file"], tree, builddir)
            found.append(f"{file}:{m['line']}: error: {m['what'].strip()}")
    if not found:
        # No message in a known form: ninja's FAILED lines say which step.
        lines = log.read_text(errors="replace").splitlines()
        found = [line for line in lines if line.startswith(("FAILED:", "ERROR:"))]
        found = found or lines[-3:]
    return found


def compile_objects(
    base: BaseTree,
    commit: str,
    workdir: WorkDir,
    files: Sequence[str],
    python: str | None = None,
) -> Compiled:
    """Build the objects of files (tree-relative C files) at commit.

    It uses the base's build worktree and build dir, as build() does, so
    the configuration and everything built here serve a later build.
    ninja first makes what an object needs, e.g. the QAPI headers of the
    patched schema. A configure or ninja failure is returned in errors,
    with the compiler's (or meson's) messages; a tool that is missing
    raises.
    """
    builddir = build_dir(workdir, base)
    tree = checkout(base, commit, workdir)
    builddir.parent.mkdir(parents=True, exist_ok=True)
    log = workdir.sub("logs") / f"compile-{base.root.name}.log"
    log.write_text("")

    def failed(steps: int, unbuilt: tuple[str, ...] = ()) -> Compiled:
        errors = build_errors(log, tree, builddir)
        named = {e.split(":", 1)[0] for e in errors}
        hit = tuple(f for f in files if f in named)
        return Compiled((), unbuilt, tuple(errors), hit, log, steps)

    try:
        configure(tree, builddir, python or sys.executable, log, workdir)
    except BuildError:
        return failed(0)
    # If the series changes a meson.build, ninja regenerates build.ninja
    # and compile_commands.json before anything is read from them.
    code, _ = run_logged(["ninja", "build.ninja"], builddir, log, None, untrusted=True)
    if code != 0:
        return failed(0)
    objects = _objects(builddir, tree, files)
    built = tuple(f for f in files if f in objects)
    unbuilt = tuple(f for f in files if f not in objects)
    if not built:
        return Compiled((), unbuilt, (), (), log, 0)
    say(f"compiling {', '.join(built)} (log: {log})")
    code, steps = run_logged(
        ["ninja", *(o for f in built for o in objects[f])],
        builddir,
        log,
        Progress(f"compile {base.root.name}"),
        untrusted=True,
    )
    if code != 0:
        return failed(steps, unbuilt)
    return Compiled(built, unbuilt, (), (), log, steps)


@dataclass(frozen=True)
class PrefixBuild:
    """One step of the bisectability proof: the base with patches 1..k."""

    k: int
    total: int
    patch: Path
    ok: bool
    steps: int
    errors: tuple[str, ...]  # tree-relative error lines, when it failed
    log: Path


def bisect(
    base: BaseTree,
    patches: Sequence[Path],
    workdir: WorkDir,
    targets_for: Callable[[Path], list[str]],
    origin: BaseTree | None = None,
    loose: bool = False,
) -> list[PrefixBuild]:
    """Build the tree after each proper prefix of the series, as QEMU
    requires of every commit (git bisect must work): an incremental ninja
    per prefix, in the base's build dir.  The whole series is built by
    the caller.  targets_for(tree) names what to build in that tree."""
    out = []
    for k in range(1, len(patches)):
        commit = compose(base, patches[:k], workdir, origin, loose)
        say(f"bisectability: patches 1..{k} of {len(patches)}")
        tree = checkout(base, commit, workdir)
        builddir = build_dir(workdir, base)
        log = workdir.sub("logs") / f"build-{base.root.name}.log"
        try:
            built = build(base, commit, workdir, targets_for(tree), tree=tree)
        except BuildError:
            errors = build_errors(log, tree, builddir)
            # The next build writes the same log: keep this one.
            kept = log.with_name(f"bisect-{base.root.name}-{k}.log")
            shutil.copyfile(log, kept)
            out.append(
                PrefixBuild(
                    k, len(patches), patches[k - 1], False, 0, tuple(errors), kept
                )
            )
            continue
        out.append(
            PrefixBuild(k, len(patches), patches[k - 1], True, built.steps, (), log)
        )
    return out
