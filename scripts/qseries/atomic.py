"""Files written whole or not at all.

A mail cut short by a full disk still has a valid name: `git am` or a
reviewer would take the first 4 KB of a patch for the patch.  So every
file qseries hands to a user (mails, series.yaml, reports, CI files) is
written to a temporary name beside it, flushed to disk, then renamed
over the final name, which POSIX makes atomic within a directory.  On a
failure the temporary file is removed and the old file, if any, stays.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from .errors import QSeriesError

# What to do about the errors a write meets most, by errno.
_ADVICE = {
    errno.ENOSPC: "free some space there or write somewhere else",
    errno.EDQUOT: "free some of your quota or write somewhere else",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.EACCES: "you may not write there; write somewhere else",
    errno.EPERM: "you may not write there; write somewhere else",
    errno.ENAMETOOLONG: "the name is too long; use a shorter path",
}


class WriteError(QSeriesError):
    """A file could not be written; nothing was left under its name."""


def describe(err: OSError) -> str:
    """An OSError as one line: its cause in words, without Python's
    '[Errno N]' prefix."""
    return err.strerror or str(err)


def advice(err: OSError) -> str:
    return _ADVICE.get(err.errno or 0, "check the path and try again")


def write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write data to path whole: a reader sees the old file or the new,
    never part of one.  mode: the new file's permissions (default: the
    old file's, or 0o644 less the umask for a new one)."""
    path = Path(path)
    existed = path.exists()
    tmp = path.with_name(f".{path.name}.qseries-tmp")
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o644 & ~umask
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        left = "it was left as it was" if existed else "nothing was left there"
        raise WriteError(
            f"cannot write {path}: {describe(err)}; {left}",
            advice(err),
        ) from err


def write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """write_bytes of text, with no newline translation (what the text
    holds, LF or CRLF, is what the file gets)."""
    write_bytes(path, text.encode(encoding))
