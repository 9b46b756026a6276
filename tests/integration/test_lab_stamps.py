"""The guest script's stamps (STAMP=1, for qseries bench), run on this
host with the guest's own shell (busybox-static of the kernel kit)
against the fake: every QMP event carries the time the script read it,
in microseconds of the same clock as QEMU's timestamps, and the records
are the same as without stamps.  About 10 s.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from qseries.labs.vfio_migration import fake as fake_mod
from qseries.labs.vfio_migration import judge, measure, scenarios
from qseries.labs.vfio_migration.plan import Wire

from .conftest import run_guest_script_here


def test_every_event_is_stamped_when_the_script_read_it(
    qemu: Path, fake: Path, wire: Wire, busybox: Path, tmp_path: Path
) -> None:
    lab = scenarios.load()
    chosen, text, mdevs = measure.repeated_script(lab.scenarios, 2)
    before = time.time_ns() // 1000
    text = run_guest_script_here(text, busybox, qemu, fake, lab.flags, tmp_path, mdevs)
    after = time.time_ns() // 1000
    runs = scenarios.read_results(text, chosen)
    assert [r.error for r in runs] == [None] * len(chosen)
    events = [e for r in runs for s in r.sides for e in s.events]
    assert len(events) > 10 * len(chosen) // 2
    for event in events:
        # Read after QEMU stamped it, within this run, in microseconds.
        assert event.guest_us is not None, event
        assert before <= event.qemu_us <= event.guest_us <= after, event
    # Each repetition framed by the guest's clock, in order.
    marks = measure.clock_marks(text)
    assert list(marks) == [s.name for s in chosen]
    spans = [(m["start"], m["end"]) for m in marks.values()]
    assert all(before <= a < b <= after for a, b in spans)
    assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(spans))
    # The stamps change no record: each repetition equals the Python
    # driver's unstamped run, list by list.
    from_python = fake_mod.run(lab.scenarios, qemu, fake, tmp_path / "py", lab.flags)
    for k in (0, 1):
        mine = runs[k * len(lab.scenarios) : (k + 1) * len(lab.scenarios)]
        renamed = [
            scenarios.ScenarioRun(measure.scenario_of(r.scenario), r.sides, r.error)
            for r in mine
        ]
        rows = judge.rows("series", from_python, renamed, wire)
        assert [r.verdict for r in rows] == ["equal"] * 5, judge.markdown(rows, "", [])
    # Every notice the version sends is closed, and counted once.
    figures = measure.figures(runs, wire, text)
    assert figures["qmp_delivery_events"] == len(events)
    notices = [
        e for e in events if (wire.classify(e.name, e.state) or ("",))[0] == "notice"
    ]
    counted = [v for k, v in figures.items() if k.endswith("_notices")]
    assert sum(counted) == len(notices)
