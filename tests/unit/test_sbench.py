"""The goals of `qseries bench --devices` (sbench.py), on rows built by
hand: each met at its bound and missed just past it, and the report
saying which.  The figures themselves come from real migrations in the
bench; nothing here times anything."""

from __future__ import annotations

import pytest

from qseries.labs.vfio_migration import sbench
from qseries.labs.vfio_migration.sbench import Row


def row(**changes: object) -> Row:
    base: dict[str, object] = {
        "devices": 4,
        "delay_ms": 300,
        "leads_ms": [300.1, 299.9, 300.4, 300.0],
        "began_after_notice_us": [20, 15, 30, 18],
        "delivery_us": [400, 500, 450, 600],
        "switchover_ms": 1202.0,
        "passed": True,
    }
    base.update(changes)
    return Row(**base)  # type: ignore[arg-type]


def test_a_good_row_meets_every_goal() -> None:
    r = row()
    assert r.goals() == dict.fromkeys(
        ("lead", "before", "switchover", "delivery", "events"), True
    )
    assert r.bound_ms == pytest.approx(1.05 * 4 * 300 + 20)
    assert r.min_lead_ms == 299.9


@pytest.mark.parametrize(
    ("changes", "goal", "met"),
    [
        ({"leads_ms": [295.0, 300.0, 300.0, 300.0]}, "lead", True),
        ({"leads_ms": [294.999, 300.0, 300.0, 300.0]}, "lead", False),
        ({"leads_ms": [300.0, 300.0, 300.0]}, "lead", False),  # a device lost
        ({"began_after_notice_us": [0, 1, 2, 3]}, "before", True),
        ({"began_after_notice_us": [-1, 1, 2, 3]}, "before", False),
        ({"began_after_notice_us": [1, 2, 3]}, "before", False),
        ({"switchover_ms": 1.05 * 1200 + 20}, "switchover", True),
        ({"switchover_ms": 1.05 * 1200 + 20.01}, "switchover", False),
        ({"switchover_ms": None}, "switchover", False),
        ({"delivery_us": [1000, 1000, 900, 1100]}, "delivery", True),
        ({"delivery_us": [1001, 1001, 900, 1100]}, "delivery", False),
        ({"delivery_us": []}, "delivery", False),
        ({"passed": False}, "events", False),
    ],
)
def test_each_goal_at_its_bound(
    changes: dict[str, object], goal: str, met: bool
) -> None:
    assert row(**changes).goals()[goal] is met


def test_the_report_marks_what_was_missed() -> None:
    rows = [row(), row(devices=8, switchover_ms=None, leads_ms=[50.0] * 8)]
    stops = {("v2", 4): {"patched_ms": 1.2, "unpatched_ms": 1.0, "ratio": 1.2}}
    events = {
        "v1": {"notices_per_device": 9.0, "completions_per_device": 9.0, "problem": ""},
        "v2": {
            "notices_per_device": 0.0,
            "completions_per_device": 9.0,
            "problem": "4 devices: vfio0: no notice",
        },
    }
    text = sbench.table(rows, stops, events, {"reproduce, 4 devices": 180.5})
    lines = text.splitlines()
    first = next(line for line in lines if line.startswith("| 4 | 300 |"))
    assert first.endswith("| all met |")
    second = next(line for line in lines if line.startswith("| 8 | 300 |"))
    assert "missed: lead, before, switchover" in second
    assert "| - (MISSED) |" in second
    assert "| v2 | 4 | 1.200 | 1.000 | 1.200 | MISSED |" in lines
    assert "| v1 | 9 | 9 | met |" in lines
    assert "| v2 | 0 | 9 | MISSED: 4 devices: vfio0: no notice |" in lines
    assert "| reproduce, 4 devices | 180.5 |" in lines
