"""The VFIO lab's scenarios on the fake, with the version's QEMU.

Two drivers run the same scenario table: Python through qemu.qmp (the
fake device's) and the shell script the guest runs on mtty.  Here the
shell script runs on this host against the fake device, so that what it
records can be compared with what the Python driver records, list by
list: a difference between the fake and the kernel in the reports is
then the devices', not the drivers'.  About 5 s.
"""

from __future__ import annotations

from pathlib import Path

from qseries.labs.vfio_migration import fake as fake_mod
from qseries.labs.vfio_migration import judge, scenarios
from qseries.labs.vfio_migration.plan import Wire

from .conftest import run_guest_script_here


def test_every_scenario_keeps_the_promise_on_the_fake(
    qemu: Path, fake: Path, wire: Wire, tmp_path: Path
) -> None:
    lab = scenarios.load()
    runs = fake_mod.run(lab.scenarios, qemu, fake, tmp_path, lab.flags)
    results = [
        judge.judge_series("fake", run, wire, scenario)
        for run, scenario in zip(runs, lab.scenarios, strict=True)
    ]
    assert all(r.ok for r in results), [r.detail for r in results]
    # The scenario that reaches PRE_COPY_P2P has the notice on both
    # versions; the one from a paused source goes through no P2P state.
    migrated = next(r for r in runs if r.scenario == "migrate/running")
    source = migrated.side("source")
    assert source is not None
    assert ("VFIO_MIGRATION", "pre-copy-p2p") in judge.said(source, wire)
    paused = next(r for r in runs if r.scenario == "migrate/paused").side("source")
    assert paused is not None
    assert all("p2p" not in state for _, state in judge.said(paused, wire))


def test_the_guest_script_records_what_the_python_driver_does(
    qemu: Path, fake: Path, wire: Wire, busybox: Path, tmp_path: Path
) -> None:
    lab = scenarios.load()
    text = run_guest_script_here(
        scenarios.guest_script(lab.scenarios), busybox, qemu, fake, lab.flags, tmp_path
    )
    from_shell = scenarios.read_results(text, lab.scenarios)
    from_python = fake_mod.run(lab.scenarios, qemu, fake, tmp_path / "py", lab.flags)
    assert [r.error for r in from_shell] == [None] * len(lab.scenarios)
    rows = judge.rows("series", from_python, from_shell, wire)
    assert [r.verdict for r in rows] == ["equal"] * 5, judge.markdown(rows, "", [])
