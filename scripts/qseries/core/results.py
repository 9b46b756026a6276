"""The result of one check or test: what every stage returns.

The reports (qseries.reports) render lists of them; the stages below
them only make them.
"""

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
