"""Console output: progress for people, on stderr.

Every line qseries prints while it works starts with 'qseries: ', so
that a log of a run reads apart from the output of the tools it runs.
"""

from __future__ import annotations

import sys
from typing import TextIO


def say(message: str) -> None:
    """Progress for people, on stderr."""
    print(f"qseries: {message}", file=sys.stderr, flush=True)


_said: set[str] = set()


def say_once(message: str) -> None:
    """A line that several steps of one run reach (the base is asked for
    by check and by the build): said the first time only."""
    if message not in _said:
        _said.add(message)
        say(message)


class Progress:
    """ninja's [n/N] lines as a bar on a terminal, as sparse lines otherwise."""

    def __init__(self, label: str, stream: TextIO | None = None):
        self.label = label
        self.stream: TextIO = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last_tenth = -1

    def update(self, done: int, total: int) -> None:
        if total <= 0:
            return
        if self.tty:
            width = 30
            filled = width * done // total
            bar = "=" * filled + " " * (width - filled)
            print(f"\r{self.label} [{bar}] {done}/{total}", end="", file=self.stream)
            if done == total:
                print(file=self.stream)
        else:
            tenth = 10 * done // total
            if tenth != self.last_tenth:
                self.last_tenth = tenth
                print(f"qseries: {self.label} {done}/{total}", file=self.stream)
        self.stream.flush()
