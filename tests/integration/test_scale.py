"""N devices in one migration, on the version's real QEMU and the fake.

Each case is one live migration of a few seconds: the fake's per-device
rules (a delay or a failure ending in @GROUP) act on that device only,
QEMU quiesces the devices one after another in the order it chooses,
and every device keeps its own events (scale.py, faults.py).  The N = 8
run with multifd and its control run in `make check` through `qseries
reproduce --devices 8 --multifd`; the other N in `qseries bench`.
"""

from __future__ import annotations

from pathlib import Path

from qseries.core.results import PASS
from qseries.labs.vfio_migration import faults, multifd, scale
from qseries.labs.vfio_migration.plan import Scenario, Wire
from qseries.labs.vfio_migration.vm import FIRST_GROUP

DELAY_MS = 60


def test_staggered_devices_each_take_their_own_delay(
    qemu: Path, fake: Path, wire: Wire, tmp_path: Path
) -> None:
    shape = scale.Shape(4, DELAY_MS, stagger=True)
    run = scale.run(shape, qemu, fake, tmp_path, wire)
    results = scale.results(shape, run, wire, ("exact",))
    assert [r.status for r in results] == [PASS] * len(results), results
    source = run.sides["source"]
    took = {
        r.group - FIRST_GROUP + 1: (r.end_us - r.begin_us) / 1000
        for r in source.log
        if r.kind == "transition" and r.target == scale.P2P
    }
    # Device k took at least k times the delay (what else it took is
    # the machine's).
    assert sorted(took) == [1, 2, 3, 4]
    for k, ms in took.items():
        assert k * DELAY_MS <= ms, took
    fig = scale.figures_of(shape, run)
    assert fig["expected_ms"] == 10 * DELAY_MS
    assert fig["switchover_ms"] >= fig["expected_ms"]


def test_one_failing_device_of_four_leaves_the_others_whole(
    qemu: Path, fake: Path, wire: Wire, tmp_path: Path
) -> None:
    scenario = Scenario(
        "one-of-four",
        "one of four fails",
        "migrate",
        "stop_copy,p2p,pre_copy",
        devices=4,
        fail_device=3,
    )
    case = faults.Case(scenario, "source", "PRE_COPY>PRE_COPY_P2P")
    run = faults.run_case(case, qemu, fake, tmp_path, wire)
    assert run.error is None
    source = run.sides["source"]
    failed = {r.group for r in source.log if r.result != "ok"}
    assert failed == {FIRST_GROUP + 2}
    assert source.migration == "failed"
    assert faults.check_exact(run, wire) == []


def test_multifd_devices_keep_their_events(
    qemu: Path, fake: Path, wire: Wire, tmp_path: Path
) -> None:
    assert multifd.supported(qemu) is None
    shape = scale.Shape(4, DELAY_MS, multifd=True)
    run = scale.run(shape, qemu, fake, tmp_path, wire)
    results = scale.results(shape, run, wire, ("exact",))
    assert [r.status for r in results] == [PASS] * len(results), results
