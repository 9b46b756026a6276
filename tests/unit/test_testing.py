from __future__ import annotations

from qseries import report, testing
from qseries.errors import ToolError


def run(path: str, passed: bool, *events: str, error: str = "") -> testing.CaseRun:
    return testing.CaseRun(path, passed, 0.1, events, error, "")


def test_control_needs_failures_for_lack_of_prepare() -> None:
    runs = [
        run("/x/stop-cont", False, "vm events: done stop", error="seen != expected"),
        run("/x/no-op", True, "vm events: "),
        run("/x/migrate/p2p", False, "source events: done pre-copy, done stop"),
    ]
    results = testing.expect_control(runs)
    assert [r.status for r in results] == [report.PASS] * 3
    assert results[0].detail == "fails as it must: no VFIO_MIGRATION_PREPARE"


def test_control_rejects_a_pass_and_other_failures() -> None:
    results = testing.expect_control(
        [
            run("/x/stop-cont", True, "vm events: done stop"),
            run("/x/migrate/pre-copy", False, error="QEMU crashed"),
            run("/x/failure", False, "source events: prepare stop-copy, done running"),
            run("/x/no-op", False, "vm events: done running", error="boom"),
        ]
    )
    assert [r.status for r in results] == [report.FAIL] * 4
    assert "proves nothing" in results[0].detail
    assert results[1].detail == "fails for another reason: QEMU crashed"


def test_expect_pass() -> None:
    results = testing.expect_pass(
        [
            run("/x/a", True, "vm events: prepare stop, done stop"),
            run("/x/b", False, error="assertion failed"),
        ]
    )
    assert [r.status for r in results] == [report.PASS, report.FAIL]
    assert results[1].detail == "assertion failed"


def test_mutation_apply_refuses_a_missing_anchor() -> None:
    mutation = testing.MUTATIONS[0]
    try:
        mutation.apply("int main(void) { return 0; }\n")
    except ToolError as err:
        assert "prepare-after-ioctl" in str(err)
    else:
        raise AssertionError("a mutation that does not apply must say so")


def test_tests_table_closes_with_counts() -> None:
    results = [
        report.Result("a", report.PASS, ""),
        report.Result("b", report.FAIL, "x"),
        report.Result("c", report.SKIP, "y"),
    ]
    text = report.table(results, tests=True)
    assert text.splitlines()[0].startswith("test ")
    assert text.splitlines()[-1] == "1 passed, 1 failed, 1 skipped"
    assert report.table(results).splitlines()[-1] == "1 of 3 checks failed"
