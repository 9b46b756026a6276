"""Files written whole or not at all.

A mail cut short by a full disk still has a valid name: `git am` or a
reviewer would take the first 4 KB of a patch for the patch.  So every
file qseries hands to a user (mails, series.yaml, reports, CI files) is
written to a new temporary name beside it, flushed to disk, then renamed
over the final name, which POSIX makes atomic within a directory.  On a
failure the temporary file is removed and the old file, if any, stays.

A set of files that belong together (the mails of a version, the
reports of a run) is written in two steps: every file's content under
its temporary name first, and only once all of them are on disk the
renames, which need no space.  A full disk thus changes none of them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .errors import QSeriesError

# What to do about the errors a write meets most, by errno.
_ADVICE = {
    errno.ENOSPC: "free some space there or write somewhere else",
    errno.EDQUOT: "free some of your quota or write somewhere else",
    errno.EFBIG: "the file is larger than this process may write; raise the limit",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.EACCES: "you may not write there; write somewhere else",
    errno.EPERM: "you may not write there; write somewhere else",
    errno.ENAMETOOLONG: "the name is too long; use a shorter path",
    errno.EISDIR: "a directory has that name; remove it or write somewhere else",
}

SUFFIX = ".qseries-tmp"
# A temporary name holds part of the final one: room for the random part
# and the suffix within a file system's 255 bytes.
_NAME_ROOM = 200


class WriteError(QSeriesError):
    """A file could not be written; nothing was left under its name."""


def describe(err: OSError) -> str:
    """An OSError's cause in words, without Python's '[Errno N]' prefix."""
    return err.strerror or str(err)


def advice(err: OSError) -> str:
    return _ADVICE.get(err.errno or 0, "check the path and try again")


def _umask() -> int:
    """The process's umask, read without setting it (another thread may
    be creating a file meanwhile)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _special(path: Path) -> bool:
    """A device or a pipe (--output /dev/stdout): written to in place, as
    nothing can be renamed over it."""
    try:
        return not stat.S_ISREG(path.stat().st_mode) and not path.is_dir()
    except OSError:
        return False


def _target(path: Path) -> Path:
    """The file a write replaces: a symlink's target, so that a link the
    user made stays a link to the file written, as with a plain open()."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _stage(path: Path, data: bytes, mode: int | None) -> Path:
    """data, synced to disk, under a new temporary name beside path: its
    name.  The file gets mode (default: the old file's, or what open()
    would give a new one) and the old file's owner where that is allowed."""
    try:
        old: os.stat_result | None = path.stat()
    except FileNotFoundError:
        old = None
    if old is not None and stat.S_ISDIR(old.st_mode):
        # Found now, before any file of a set is renamed into place.
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if mode is None:
        mode = old.st_mode & 0o7777 if old is not None else 0o666 & ~_umask()
    # O_EXCL and a random name: never a file (or link) someone put there.
    fd, name = tempfile.mkstemp(
        prefix=f".{path.name[:_NAME_ROOM]}.", suffix=SUFFIX, dir=path.parent
    )
    tmp = Path(name)
    try:
        if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
            with contextlib.suppress(OSError):
                os.fchown(fd, old.st_uid, old.st_gid)
        os.fchmod(fd, mode)
        _write_fd(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_dir(directory: Path) -> None:
    """Make the renames in directory durable; a file system that cannot
    sync a directory still has them, so a failure here is no error."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _error(path: Path, err: OSError, left: str) -> WriteError:
    return WriteError(f"cannot write {path}: {describe(err)}; {left}", advice(err))


def _left(path: Path) -> str:
    return (
        "it was left as it was" if os.path.lexists(path) else "nothing was left there"
    )


def _write(files: Mapping[Path, tuple[bytes, int | None]]) -> None:
    """Stage every file, then rename each over its name (see write_all)."""
    staged: list[tuple[Path, Path]] = []
    special: list[tuple[Path, bytes]] = []
    renamed = 0
    several = len(files) > 1
    try:
        for path, (data, mode) in files.items():
            if _special(path):
                special.append((path, data))
                continue
            target = _target(path)
            try:
                staged.append((target, _stage(target, data, mode)))
            except OSError as err:
                left = f"none of the {len(files)} files was written"
                raise _error(path, err, left if several else _left(path)) from err
        for target, tmp in staged:
            try:
                os.replace(tmp, target)
            except OSError as err:
                left = f"{renamed} of the {len(files)} files were written"
                raise _error(target, err, left if several else _left(target)) from err
            renamed += 1
    finally:
        for _, tmp in staged[renamed:]:
            with contextlib.suppress(OSError):
                tmp.unlink()
    for directory in {target.parent for target, _ in staged}:
        _sync_dir(directory)
    for path, data in special:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                _write_fd(fd, data)
            finally:
                os.close(fd)
        except OSError as err:
            raise WriteError(
                f"cannot write {path}: {describe(err)}", advice(err)
            ) from err


def write_all(files: Mapping[Path, bytes]) -> None:
    """Write every file of a set whole, and none of them if the content of
    any cannot be written (a full disk, a quota): the old files stay.
    Only a crash between the renames, which take no space, leaves some
    files new and some old; each is whole either way."""
    _write({Path(path): (data, None) for path, data in files.items()})


def write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write data to path whole: a reader sees the old file or the new,
    never part of one.  mode: the new file's permissions (default: the
    old file's, or what open() gives a new file under the umask)."""
    _write({Path(path): (data, mode)})


def write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """write_bytes of text, with no newline translation (what the text
    holds, LF or CRLF, is what the file gets)."""
    write_bytes(path, text.encode(encoding))


def make_dirs(dest: Path) -> list[Path]:
    """mkdir -p dest, or WriteError: the directories it made, the deepest
    last (for remove_dirs, when what was to go in them cannot)."""
    made: list[Path] = []
    for directory in reversed([dest, *dest.parents]):
        if directory.is_dir():
            continue
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # made meanwhile: not ours to remove
        except OSError as err:
            remove_dirs(made)
            raise WriteError(
                f"cannot make the directory {directory}: {describe(err)}",
                advice(err),
            ) from err
        made.append(directory)
    return made


def remove_dirs(made: list[Path]) -> None:
    """Undo make_dirs: the directories it made, if they are still empty."""
    for directory in reversed(made):
        with contextlib.suppress(OSError):
            directory.rmdir()
