"""The work dir: which directory may be one, its marker, and its lock.

A work dir is a directory qseries made or marked (WORKDIR/.qseries-workdir):
qseries writes trees, builds and caches there and `clean --all` removes
them, so a mistyped --workdir must not land in `/`, a home directory, the
qseries checkout or the user's --tree.  Before anything is written, a
work dir is refused if it is `/`, under /proc, /sys or /dev, inside (or
equal to) a --tree or --repo the command was given, or a non-empty
directory without the marker.  A work dir of an older qseries (no marker,
but holding only names qseries makes, its lock file among them) is
adopted: marked, and used.

Two runs sharing a work dir would move the same worktrees, apply into the
same check tree and run apt on the same private state (apt runs there
without its own locking).  Every command therefore holds an exclusive
flock on WORKDIR/lock for as long as it runs.  The kernel drops a flock
when its holder dies, so a killed run never leaves a stale lock behind.
A second run waits, saying who holds the lock, or with --no-wait refuses.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from .atomic import advice, describe
from .errors import QSeriesError, UsageError

LOCK_NAME = "lock"
MARKER_NAME = ".qseries-workdir"
MARKER_TEXT = (
    "This directory is a qseries work dir: QEMU trees, builds and caches.\n"
    "qseries may remove what it made here (qseries clean --all).\n"
)
RUNS_NAME = "runs"  # runs.RUNS_DIR: the records of runs
# What qseries makes at the top of a work dir, and so all `clean --all`
# removes (clean.py): a work dir named by mistake loses nothing else.
# A lab's folders are the lab's to name (pipeline/lab.py's made()); clean
# adds those of the labs installed.
MADE = (
    "apt",
    "bench",
    "bench.json",
    "build",
    "cache",
    "data",  # pkgdata: package data copied for tools that take a path
    "debian",
    "home",
    "logs",
    "reports",
    "tmp",
    "trees",
    "work",
)
# What a work dir of an older qseries may hold: what qseries makes, and
# lost+found, which a work dir at the top of its own file system has.
# Only a work dir of before the marker is adopted, and no lab's folder
# is older than the marker: the core's names are all it can hold.
ADOPTABLE = frozenset((*MADE, LOCK_NAME, RUNS_NAME, "lost+found"))
# Kernel file systems: nothing there is a directory to keep files in.
KERNEL_DIRS = (Path("/proc"), Path("/sys"), Path("/dev"))
NAME_MAX = 255  # bytes in one name, on Linux's file systems
SHOWN = 3  # foreign names a refusal lists


class WorkDirBusy(QSeriesError):
    """Another qseries run holds the work dir."""


def first_existing(path: Path) -> Path:
    """path itself, or its nearest ancestor that exists."""
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_directory(path: Path, what: str) -> None:
    """Refuse, as bad input, a directory option that names a file."""
    blocker = first_existing(path)
    if not blocker.is_dir():
        where = "" if blocker == path.expanduser().absolute() else f" ({blocker})"
        raise UsageError(
            f"{what} {path}{where} is a file, not a directory",
            f"pass {what} a directory",
        )


class WorkDirRefused(UsageError):
    """The work dir (or --output) names a place qseries must not write."""


class WorkDirError(QSeriesError):
    """The system refused to make or write the work dir (a full disk, a
    read-only mount, no permission)."""


# What to do when the work dir cannot be written, by errno.
_ADVICE = {
    errno.ENOSPC: "free some space there, or pass --workdir DIR on a disk with room",
    errno.EDQUOT: "free some of your quota, or pass --workdir DIR elsewhere",
    errno.EROFS: "the file system is read-only: pass --workdir DIR on a writable one",
    errno.EACCES: "you may not write there: pass --workdir DIR you can write",
    errno.EPERM: "you may not write there: pass --workdir DIR you can write",
}


def cannot_write(doing: str, err: OSError) -> WorkDirError:
    """An OSError met while writing the work dir, as one line with advice."""
    return WorkDirError(
        f"cannot {doing}: {describe(err)}", _ADVICE.get(err.errno or 0, advice(err))
    )


def _short(name: str) -> str:
    return name if len(name) <= 24 else f"{name[:20]}..."


def _option(what: str) -> str:
    """The option to name in advice: what is "the work dir" or "--output"."""
    return what if what.startswith("--") else "--workdir"


def _resolve(path: Path, what: str) -> Path:
    """path with its symbolic links followed; a loop is bad input."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as err:
        # Python 3.11 raises RuntimeError on a loop, later ones ELOOP.
        if isinstance(err, OSError) and err.errno != errno.ELOOP:
            raise
        raise WorkDirRefused(
            f"{what} {path} goes through a loop of symbolic links",
            f"point {_option(what)} at a real directory",
        ) from None


def _inside(path: Path, top: Path) -> bool:
    return path == top or top in path.parents


def _kernel_dir(path: Path) -> Path | None:
    return next((d for d in KERNEL_DIRS if _inside(path, d)), None)


def _look(path: Path, what: str) -> bool:
    """Does path exist?  Refuse, as bad input, a name the kernel cannot
    look up (too long, a loop of symbolic links)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        if err.errno == errno.ENAMETOOLONG:
            longest = max(path.parts, key=lambda p: len(os.fsencode(p)))
            if len(os.fsencode(longest)) > NAME_MAX:
                why = (
                    f"a name of {len(longest)} characters ({_short(longest)}), "
                    f"more than the {NAME_MAX} a file system takes"
                )
            else:
                why = f"a path of {len(str(path))} characters, too long for Linux"
            raise WorkDirRefused(
                f"{what} has {why}", f"pass {_option(what)} a shorter path"
            ) from None
        if err.errno == errno.ELOOP:
            raise WorkDirRefused(
                f"{what} {path} goes through a loop of symbolic links",
                f"point {_option(what)} at a real directory",
            ) from None
        if err.errno == errno.ENOTDIR:
            return False  # check_directory says which file is in the way
        raise WorkDirError(
            f"cannot look at {what} {path}: {describe(err)}",
            _ADVICE.get(err.errno or 0, advice(err)),
        ) from None
    return True


def check_workdir(path: Path, trees: Sequence[tuple[str, Path]] = ()) -> None:
    """Refuse, before anything is written, a work dir qseries must not
    write into.  trees: the checkouts the command was given, as (option,
    path): qseries only reads them, so the work dir is never in one."""
    what = "the work dir"
    exists = _look(path, what)
    real = _resolve(path, what)
    if real == Path("/"):
        raise WorkDirRefused(
            f"{what} {path} is the root directory",
            "pass --workdir a directory of its own, e.g. ~/.cache/qseries",
        )
    kernel = _kernel_dir(real) or _kernel_dir(path.absolute())
    if kernel is not None:
        raise WorkDirRefused(
            f"{what} {path} is under {kernel}, a kernel file system",
            "pass --workdir a directory on a disk, e.g. ~/.cache/qseries",
        )
    for option, tree in trees:
        try:
            top = tree.expanduser().resolve()
        except (RuntimeError, OSError):
            continue  # a --tree that cannot be resolved is refused later
        if _inside(real, top):
            where = "is" if real == top else "is inside"
            raise WorkDirRefused(
                f"{what} {path} {where} {option} {tree}",
                "keep the work dir out of your checkouts: pass --workdir a "
                "directory elsewhere",
            )
    if not exists or not real.is_dir():
        return
    try:
        names = os.listdir(real)
    except OSError as err:
        raise WorkDirError(
            f"cannot list {what} {path}: {describe(err)}",
            _ADVICE.get(err.errno or 0, advice(err)),
        ) from None
    if MARKER_NAME in names:
        return
    foreign = sorted(n for n in names if n not in ADOPTABLE)
    if foreign:
        shown = ", ".join(_short(n) for n in foreign[:SHOWN])
        more = f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else ""
        raise WorkDirRefused(
            f"{what} {path} is not a qseries work dir: it is not empty and "
            f"has no {MARKER_NAME} (it holds {shown}{more})",
            "pass --workdir a new or empty directory",
        )
    # build/ and tmp/ are anyone's names; the lock file, which every run
    # of an older qseries wrote, is qseries' own.
    held = sorted(n for n in names if n != "lost+found")
    if held and not _is_file(real / LOCK_NAME):
        shown = ", ".join(_short(n) for n in held[:SHOWN])
        more = f" and {len(held) - SHOWN} more" if len(held) > SHOWN else ""
        raise WorkDirRefused(
            f"{what} {path} is not a qseries work dir: it is not empty and "
            f"has no {MARKER_NAME}, nor the lock file of an older qseries "
            f"(it holds {shown}{more})",
            "pass --workdir a new or empty directory",
        )


def _is_file(path: Path) -> bool:
    """A regular file at path, itself (not through a symlink)?"""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def check_output(
    output: Path | None,
    workdir: Path,
    trees: Sequence[tuple[str, Path]] = (),
    option: str = "--output",
) -> None:
    """Refuse an --output in the work dir (qseries removes what is there,
    base trees included) or in a checkout qseries only reads."""
    if output is None:
        return
    real = _resolve(output.expanduser().absolute(), option)
    for name, place in (("the work dir", workdir), *trees):
        try:
            top = place.expanduser().resolve()
        except (RuntimeError, OSError):
            continue
        if _inside(real, top):
            shown = f"{name} {place}"
            raise WorkDirRefused(
                f"{option} {output} is inside {shown}",
                f"pass {option} a directory of your own, outside it",
            )


def prepare(root: Path, notify: Callable[[str], None] | None = None) -> None:
    """Make the work dir if need be and mark it, adopting the work dir of
    an older qseries.  Call after check_workdir.  On a failure, what this
    made is removed again."""
    real = root.resolve()  # a symbolic link to a directory still to make
    missing = []
    parent = real
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    marker = real / MARKER_NAME
    made_marker = False
    try:
        real.mkdir(parents=True, exist_ok=True)
        held = [n for n in os.listdir(real) if n != "lost+found"]
        if MARKER_NAME in held:
            return
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return  # a run beside this one marked it meanwhile
        made_marker = True
        try:
            os.write(fd, MARKER_TEXT.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        if made_marker:
            marker.unlink(missing_ok=True)
        for made in missing:
            try:
                made.rmdir()
            except OSError:
                break
        doing = "make" if real in missing else "mark"
        raise cannot_write(f"{doing} the work dir {root}", err) from None
    if held and notify is not None:
        notify(f"adopted {root} as a work dir: it holds only what qseries makes")


class WorkDirLock:
    """An exclusive lock on a work dir, held by this process."""

    def __init__(self, root: Path, command: str):
        self.root = root
        self.path = root / LOCK_NAME
        self.command = command
        self.fd: int | None = None

    def holder(self) -> str:
        """Who holds the lock, as the holder wrote it ("pid N: command")."""
        try:
            text = self.path.read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text or "another process"

    def acquire(self, wait: bool, notify: Callable[[str], None] | None = None) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._acquire(wait, notify)
        except OSError as err:
            raise cannot_write(f"write the lock {self.path}", err) from None

    def _acquire(self, wait: bool, notify: Callable[[str], None] | None) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = self.holder()
                if not wait:
                    raise WorkDirBusy(
                        f"the work dir {self.root} is in use ({who})",
                        "wait for that run, or pass another --workdir",
                    ) from None
                if notify is not None:
                    notify(f"waiting for the work dir {self.root}, in use ({who})")
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}: {self.command}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            # Say nobody holds it before letting go.
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> WorkDirLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class WorkDir:
    """The one directory qseries writes to (besides the patches/ it makes)."""

    def __init__(self, path: Path):
        self.path = path.expanduser().absolute()

    @classmethod
    def default(cls, option: str | None) -> WorkDir:
        """--workdir, else $QSERIES_WORKDIR, else ~/.cache/qseries.  An
        empty --workdir is refused (it would be the current directory);
        an empty QSERIES_WORKDIR counts as unset, as XDG_CACHE_HOME does."""
        if option == "":
            raise UsageError(
                "--workdir is empty",
                "pass --workdir DIR, or leave it out for ~/.cache/qseries",
            )
        value = option or os.environ.get("QSERIES_WORKDIR")
        if value:
            return cls(Path(value))
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return cls(Path(cache) / "qseries")

    def sub(self, *parts: str) -> Path:
        path = self.path.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path
