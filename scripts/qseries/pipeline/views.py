"""What a command found, rendering itself: as text for a person, as JSON
for a machine (--json), with the command's exit code.

The command line prints a view and exits with its code; it formats
nothing itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..core.results import Result, passed
from ..ground.console import say
from ..mail.handoff import Exported, Sent
from ..mail.trailers import Collected
from ..qemu.build import Build
from ..qemu.generate import Generated, Installed
from ..qemu.source import BaseTree
from ..reports import report
from .b4check import Verdict
from .matrix import Row


class View(Protocol):
    """A command's result, as it shows itself."""

    @property
    def exit_code(self) -> int: ...

    def text(self) -> str:
        """For a person: lines, without the last newline."""
        ...

    def json_text(self) -> str:
        """For a machine (--json)."""
        ...


def dumps(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


class _JsonView:
    """A view whose JSON is a value (to_json), printed sorted."""

    exit_code = 0

    def to_json(self) -> object:
        raise NotImplementedError

    def json_text(self) -> str:
        return dumps(self.to_json())


@dataclass
class Source(_JsonView):
    base: BaseTree

    def to_json(self) -> object:
        return self.base.to_json()

    def text(self) -> str:
        return "\n".join(
            [
                f"base:   {self.base.describe()}",
                f"commit: {self.base.commit}",
                f"path:   {self.base.root}",
            ]
        )


@dataclass
class Generate(_JsonView):
    version: str
    base: BaseTree
    result: Generated
    installed: Installed
    directory: Path

    def to_json(self) -> object:
        return {
            "version": self.version,
            "base": self.base.to_json(),
            "tip": self.result.tip,
            "directory": str(self.directory),
            "files": [f.name for f in self.result.files],
            "changed": list(self.installed.changes),
            "foreign": list(self.installed.foreign),
            "to": list(self.result.to),
            "cc": list(self.result.cc),
        }

    def text(self) -> str:
        changes = list(self.installed.changes)
        lines = [str(self.directory / f.name) for f in self.result.files]
        lines += [c for c in changes if c.startswith("removed ")]
        lines.append(
            f"{len(changes)} file(s) changed in {self.directory}"
            if changes
            else f"{self.directory} is up to date"
        )
        return "\n".join(lines)


@dataclass
class Checks(_JsonView):
    """Results of checks or tests, as a table."""

    results: list[Result]
    tests: bool = False  # the table of a test run (says what each tested)

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 0 if passed(self.results) else 1

    def to_json(self) -> object:
        return report.to_json(self.results)

    def text(self) -> str:
        return report.table(self.results, tests=self.tests)


@dataclass
class RangeDiff(_JsonView):
    old: str
    new: str
    base: BaseTree
    diff: str

    def to_json(self) -> object:
        return {
            "old": self.old,
            "new": self.new,
            "base": self.base.to_json(),
            "range-diff": self.diff,
        }

    def text(self) -> str:
        return self.diff


@dataclass
class Export(_JsonView):
    version: str
    base: BaseTree
    done: Exported

    def to_json(self) -> object:
        return {
            "repo": str(self.done.repo),
            "branch": self.done.branch,
            "tip": self.done.tip,
            "commits": list(self.done.commits),
        }

    def text(self) -> str:
        head = (
            f"{self.version} on {self.base.describe()}: branch "
            f"'{self.done.branch}' of {self.done.repo}"
        )
        return "\n".join([head, *(f"  {line}" for line in self.done.commits)])


@dataclass
class Send(_JsonView):
    version: str
    mails: int
    sent: Sent

    def to_json(self) -> object:
        return {
            "version": self.version,
            "really": self.sent.really,
            "from": self.sent.sender,
            "to": list(self.sent.to),
            "cc": list(self.sent.cc),
            "in-reply-to": self.sent.in_reply_to,
            "output": self.sent.output,
        }

    def text(self) -> str:
        sent = self.sent
        how = "sent" if sent.really else "dry run (nothing sent; --really-send sends)"
        reply = f", in reply to {sent.in_reply_to}" if sent.in_reply_to else ""
        lines = [
            sent.output,
            f"{self.version}: {self.mails} mails from {sent.sender}{reply}: {how}",
        ]
        if sent.really:
            lines.append(
                f"record the cover letter's Message-Id as versions.{self.version}."
                "message-id in series.yaml: the next version replies to it"
            )
        return "\n".join(lines)


@dataclass
class Trailers(_JsonView):
    collected: Collected
    diff: str

    def to_json(self) -> object:
        c = self.collected
        return {
            "version": c.version.name,
            "for_others": [
                {"tag": tag, "from": sender} for tag, sender in c.for_others
            ],
            "patches": [
                {
                    "number": p.number,
                    "subject": p.subject,
                    "tags": list(p.tags),
                    "new": list(p.new),
                    "changed": p.changed,
                    "copied": bool(p.new) and not p.changed,
                }
                for p in c.patches
            ],
            "diff": self.diff,
        }

    def text(self) -> str:
        if self.diff:
            return self.diff.removesuffix("\n")
        return f"{self.collected.version.name}: no new trailers to copy"


@dataclass
class Built(_JsonView):
    version: str
    series_file: Path
    built: Build
    products: dict[str, Path]

    def to_json(self) -> object:
        return {
            **self.built.to_json(),
            **{name: str(path) for name, path in self.products.items()},
            "version": self.version,
            "series_file": str(self.series_file.absolute()),
        }

    def text(self) -> str:
        b = self.built
        lines = [f"qemu:  {b.qemu}"]
        lines += [f"{name + ':':<6} {path}" for name, path in self.products.items()]
        lines.append(f"steps: {b.steps} ninja steps in {b.seconds:.1f} s")
        lines.append(f"log:   {b.log}")
        return "\n".join(lines)


@dataclass
class Reproduced:
    """A reproduce: its results, phases and facts, and where the reports
    are; its JSON is the report's own."""

    outcome_text: list[str]
    report_json: str
    passed: bool
    # Said after the verdict: the work dir's size once older bases went.
    after: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def text(self) -> str:
        return "\n".join([*self.outcome_text, *self.after])

    def json_text(self) -> str:
        # stdout is the report's JSON: what is said after it goes to stderr.
        for line in self.after:
            say(line)
        return self.report_json.removesuffix("\n")


@dataclass
class Cleaned(_JsonView):
    dry_run: bool
    removed: list[dict[str, object]]
    lines: list[str]
    total: int
    workdir_bytes: int

    def to_json(self) -> object:
        return {
            "dry_run": self.dry_run,
            "removed": self.removed,
            "bytes": self.total,
            "workdir_bytes": self.workdir_bytes,
        }

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Matrix(_JsonView):
    version: str
    ok: bool
    rows: Sequence[Row]
    table: str

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 0 if self.ok else 1

    def to_json(self) -> object:
        return {
            "version": self.version,
            "passed": self.ok,
            "bases": [r.to_json() for r in self.rows],
        }

    def text(self) -> str:
        return self.table


@dataclass
class Lines(_JsonView):
    """A few lines, or a value for --json (ci gitlab, bench)."""

    lines: list[str]
    value: object = None

    def to_json(self) -> object:
        return self.value

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Raw:
    """Text printed as it is (ci gitlab --stdout): no --json form."""

    raw: str
    exit_code: int = 0

    def text(self) -> str:
        return self.raw.removesuffix("\n")

    def json_text(self) -> str:
        return self.text()


@dataclass
class B4Verdict:
    """b4-check's answer: the JSON list b4 review reads, with or without
    --json; the exit is 0 whatever it says (b4 reads the status)."""

    verdict: Verdict
    exit_code: int = 0

    def text(self) -> str:
        return self.json_text()

    def json_text(self) -> str:
        return json.dumps([self.verdict.to_json()], indent=2)


@dataclass
class Plan(_JsonView):
    """The stages a command would run (--plan), in order."""

    command: str
    stages: list[tuple[str, str, tuple[str, ...], str | None]]

    def to_json(self) -> object:
        return {
            "command": self.command,
            "stages": [
                {"name": n, "summary": s, "needs": list(needs), "lab": lab}
                for n, s, needs, lab in self.stages
            ],
        }

    def text(self) -> str:
        width = max((len(n) for n, *_ in self.stages), default=0)
        lines = [f"qseries {self.command} runs:"]
        for name, summary, needs, lab in self.stages:
            after = f" (after {', '.join(needs)})" if needs else ""
            by = f" [the {lab} lab, within {needs[0]}]" if lab else ""
            lines.append(f"  {name:<{width}}  {summary}{after}{by}")
        return "\n".join(lines)
