"""What the VFIO lab reads of the QAPI its series defines.

The notice as the version defines it, read with QEMU's QAPI code (the
check stage runs it; see qemu/check.py's QapiJudge): an event of its own
shaped like the completion event (v1), or a value of the completion
event's device-state enum (v2), documented and new since the release
the series targets.
"""

from __future__ import annotations

from typing import Any

from ...core.results import FAIL, Result
from ...core.series import Version
from ...qemu.check import QapiOutcome
from .plan import plan_of


class NoticeJudge:
    """check.QapiJudge for this lab's series."""

    def names(self, version: Version) -> list[str]:
        wire = plan_of(version).wire
        return sorted({wire.notice_event, wire.completion})

    def judge(self, version: Version, events: dict[str, Any]) -> Result | QapiOutcome:
        wire = plan_of(version).wire
        completion = events[wire.completion]
        if wire.notice_state is None:
            return _notice_event(events[wire.notice_event], completion, version)
        return _notice_state(completion, version)


def _notice_event(
    notice: dict[str, Any] | None, completion: dict[str, Any] | None, version: Version
) -> Result | QapiOutcome:
    wire = plan_of(version).wire
    if notice is None:
        return Result(
            "qapi", FAIL, f"the patched schema has no {wire.notice_event} event"
        )
    problems: list[str] = []
    if completion is None:
        problems.append(f"the schema has no {wire.completion} to compare with")
    elif notice["members"] != completion["members"]:
        problems.append(
            f"members {notice['members']} differ from {wire.completion}'s "
            f"{completion['members']}"
        )
    for member in notice["members"]:
        if not notice["docs"].get(member["name"]):
            problems.append(f"member '{member['name']}' is not documented")
    if notice["since"] != version.since:
        problems.append(
            f"Since: is {notice['since']!r}, the series records {version.since!r}"
        )
    names = ", ".join(m["name"] for m in notice["members"])
    return (
        notice["where"],
        notice["function"],
        problems,
        f"{wire.notice_event}({names}) matches {wire.completion}, documented, "
        f"Since: {notice['since']}",
    )


def _notice_state(
    completion: dict[str, Any] | None, version: Version
) -> Result | QapiOutcome:
    wire = plan_of(version).wire
    value = wire.notice_state
    if completion is None:
        return Result("qapi", FAIL, f"the patched schema has no {wire.completion}")
    carrying = [
        (name, enum)
        for name, enum in completion["enums"].items()
        if value in enum["values"]
    ]
    if not carrying:
        return Result(
            "qapi",
            FAIL,
            f"no enum member of {wire.completion} has the value '{value}'",
            [
                f"{name}: {', '.join(e['values'])}"
                for name, e in completion["enums"].items()
            ],
        )
    name, enum = carrying[0]
    problems: list[str] = []
    doc = enum["docs"].get(value, "")
    if not doc:
        problems.append(f"{name} value '{value}' is not documented")
    elif f"(since {version.since})" not in doc:
        problems.append(
            f"the doc of '{value}' does not say '(since {version.since})': {doc!r}"
        )
    if wire.announces not in enum["values"]:
        problems.append(
            f"'{value}' announces '{wire.announces}', not a value of {name}"
        )
    return (
        enum["where"],
        enum["constants"][value],
        problems,
        f"{name} has '{value}' (since {version.since}), documented; "
        f"sent with {wire.completion}",
    )
