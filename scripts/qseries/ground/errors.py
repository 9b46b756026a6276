"""Error classes.

Every failure qseries reports is one of these: a single line that says
what went wrong, where, and what to do about it.  The command line turns
them into that line on stderr and an exit code; only ``--debug`` shows a
traceback.
"""

from __future__ import annotations

from pathlib import Path

# Exit codes, after git's porcelain: 1 for "the thing you asked about is
# not fine" (a failed check), 2 for "you asked wrongly" (bad input).
EXIT_FAILED = 1
EXIT_USAGE = 2


class QSeriesError(Exception):
    """A failure with a one-line explanation."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class Located(QSeriesError):
    """An error at a place in a file (file:line: message)."""

    def __init__(
        self,
        path: Path | str,
        line: int | None,
        message: str,
        hint: str | None = None,
    ):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}", hint)
        self.path = Path(path)
        self.line = line


class SeriesFileError(Located):
    """series.yaml is missing, malformed or does not match the schema."""

    exit_code = EXIT_USAGE


class TemplateError(Located):
    """A generator template failed to render."""

    exit_code = EXIT_USAGE


class AnchorError(QSeriesError):
    """A generator could not find what it edits in the base tree."""

    exit_code = EXIT_FAILED


class SourceError(QSeriesError):
    """A QEMU base tree could not be obtained."""


class UsageError(QSeriesError):
    """The command line asks for something inconsistent."""

    exit_code = EXIT_USAGE


class ToolError(QSeriesError):
    """An external program (git, apt-get, perl, ...) failed."""
