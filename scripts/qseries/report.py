"""Results of checks, as a table for people and JSON for machines."""

from __future__ import annotations

from dataclasses import dataclass, field

PASS = "pass"
FAIL = "FAIL"
SKIP = "skip"


@dataclass
class Result:
    name: str
    status: str
    detail: str
    items: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != FAIL


def passed(results: list[Result]) -> bool:
    return all(r.ok for r in results)


def table(results: list[Result], tests: bool = False) -> str:
    """The results as a table; with tests, closed by 'N passed, N failed'."""
    width = max(len(r.name) for r in results)
    heading = "test" if tests else "check"
    lines = [f"{heading:<{width}}  result  detail"]
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.status:<6}  {r.detail}")
        lines.extend(f"{'':<{width}}          {item}" for item in r.items)
    failed = sum(not r.ok for r in results)
    lines.append("")
    if tests:
        skipped = sum(r.status == SKIP for r in results)
        passed = len(results) - failed - skipped
        lines.append(f"{passed} passed, {failed} failed, {skipped} skipped")
        return "\n".join(lines)
    lines.append(
        f"{failed} of {len(results)} checks failed"
        if failed
        else f"all {len(results)} checks passed"
    )
    return "\n".join(lines)


def to_json(results: list[Result]) -> dict[str, object]:
    return {
        "passed": passed(results),
        "results": [
            {
                "name": r.name,
                "status": r.status.lower(),
                "detail": r.detail,
                "items": r.items,
            }
            for r in results
        ],
    }
