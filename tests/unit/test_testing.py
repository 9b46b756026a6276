from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from qseries.core import generators, series
from qseries.core.results import FAIL, PASS, SKIP, Result
from qseries.ground import proc
from qseries.ground.errors import ToolError
from qseries.ground.workdir import WorkDir
from qseries.labs.vfio_migration import vfiotest
from qseries.labs.vfio_migration.plan import plan_of
from qseries.qemu import testing
from qseries.reports import report

from ..conftest import REPO

SERIES = series.load(REPO / "series.yaml", generators.specs())
V1 = SERIES.version("v1")
V2 = SERIES.version("v2")
PLAN = plan_of(V1).test

ASSERT = "ERROR:../tests/qtest/vfio-migration-prepare-test.c:300:check_events: "


def run(path: str, passed: bool, *events: str, error: str = "") -> testing.CaseRun:
    return testing.CaseRun(path, passed, 0.1, events, error, "")


def test_control_needs_failures_for_lack_of_prepare() -> None:
    runs = [
        run(
            "/x/stop-cont",
            False,
            "vm events: done stop",
            error=ASSERT + "assertion failed (seen == expected)",
        ),
        run("/x/no-op", True, "vm events: "),
        run(
            "/x/migrate/p2p",
            False,
            "source events: done pre-copy, done stop",
            error=ASSERT + "assertion failed (seen == expected)",
        ),
    ]
    results = vfiotest.expect_control(runs, PLAN)
    assert [r.status for r in results] == [PASS] * 3
    assert results[0].detail == (
        "fails as it must: no prepare notice ("
        + ASSERT
        + "assertion failed (seen == expected))"
    )


def test_control_rejects_a_pass_and_other_failures() -> None:
    results = vfiotest.expect_control(
        [
            run("/x/stop-cont", True, "vm events: done stop"),
            run("/x/migrate/pre-copy", False, error="QEMU crashed"),
            run("/x/failure", False, "source events: prepare stop-copy, done running"),
            run("/x/no-op", False, "vm events: done running", error="boom"),
        ],
        PLAN,
    )
    assert [r.status for r in results] == [FAIL] * 4
    assert "proves nothing" in results[0].detail
    assert results[1].detail == "fails for another reason: QEMU crashed"


def test_expect_pass() -> None:
    results = testing.expect_pass(
        [
            run("/x/a", True, "vm events: prepare stop, done stop"),
            run("/x/b", False, error="assertion failed"),
        ]
    )
    assert [r.status for r in results] == [PASS, FAIL]
    assert results[1].detail == "assertion failed"


def test_mutation_apply_refuses_a_missing_anchor() -> None:
    mutation = PLAN.mutations[0]
    try:
        vfiotest.apply_mutation(mutation, "int main(void) { return 0; }\n")
    except ToolError as err:
        assert "prepare-after-ioctl" in str(err)
    else:
        raise AssertionError("a mutation that does not apply must say so")


def test_tests_table_closes_with_counts() -> None:
    results = [
        Result("a", PASS, ""),
        Result("b", FAIL, "x"),
        Result("c", SKIP, "y"),
    ]
    text = report.table(results, tests=True)
    assert text.splitlines()[0].startswith("test ")
    assert text.splitlines()[-1] == "1 passed, 1 failed, 1 skipped"
    assert report.table(results).splitlines()[-1] == "1 of 3 checks failed"


def test_control_rejects_a_crash_after_the_events() -> None:
    # The events lack a prepare, but the case died of something else.
    for error in ("timed out after 300 s", "Broken pipe", ""):
        (result,) = vfiotest.expect_control(
            [run("/x/stop-cont", False, "vm events: done stop", error=error)], PLAN
        )
        assert result.status == FAIL, error
        assert result.detail == f"fails for another reason: {error}"


# The mutations: each is caught only by its own case, for its own reason.


def judge(name: str, *runs: testing.CaseRun) -> Result:
    mutation = next(m for m in PLAN.mutations if m.name == name)
    return vfiotest.judge_mutation(mutation, runs)


STOP_CONT = "/x86_64/vfio-migration-prepare/stop-cont"
NO_OP = "/x86_64/vfio-migration-prepare/no-op"
FAILURE = "/x86_64/vfio-migration-prepare/failure"


def test_mutation_caught_for_its_reason() -> None:
    cases = {
        "prepare-after-ioctl": (
            STOP_CONT,
            "assertion failed (prep->time_us <= t->begin_us): (5 <= 4)",
        ),
        "prepare-old-state": (
            STOP_CONT,
            'assertion failed (seen == expected): ("prepare running, done stop"'
            ' == "prepare stop, done stop")',
        ),
        "prepare-for-no-op": (
            NO_OP,
            'assertion failed (seen == expected): ("prepare running" == "")',
        ),
        "no-completion-on-reset": (
            FAILURE,
            "assertion failed (m.src->events->len >= 4): (3 >= 4)",
        ),
        "unannounced-transition": (
            STOP_CONT,
            "assertion failed (next == transitions->len): (1 == 2)",
        ),
    }
    # The others are the fault matrix's (tests/unit/test_faults.py).
    assert set(cases) == {m.name for m in PLAN.mutations if m.fault is None}
    for name, (path, error) in cases.items():
        result = judge(
            name,
            run(NO_OP, True),
            run(path, False, error=ASSERT + error),
            run("/x/other", False, error="timed out after 300 s"),
        )
        assert result.status == PASS, (name, result)
        assert result.detail.startswith("caught: ")
        assert f"{path}: {ASSERT}{error}" in result.items


def test_mutation_failing_for_another_reason_is_not_caught() -> None:
    crash = run(STOP_CONT, False, error="timed out after 300 s")
    result = judge("prepare-after-ioctl", crash)
    assert result.status == FAIL
    assert result.detail == f"failed for another reason: {STOP_CONT}: " + crash.error
    # The right assertion, but from a case that is not the one meant.
    wrong_case = run(
        FAILURE, False, error="assertion failed (prep->time_us <= t->begin_us)"
    )
    assert judge("prepare-after-ioctl", wrong_case).status == FAIL
    # Another assertion of the right case.
    other = run(NO_OP, False, error='assertion failed (seen == expected): ("" == "")')
    result = judge("prepare-for-no-op", other)
    assert result.detail.startswith("failed for another reason: ")


def test_mutation_that_no_case_catches() -> None:
    result = judge("prepare-old-state", run(STOP_CONT, True))
    assert result.status == FAIL
    assert result.detail.startswith("no test failed: ")


# Timeouts: each hang becomes one FAIL result, and the rest is kept.


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_listing_that_hangs_is_one_failed_run(tmp_path: Path) -> None:
    binary = script(tmp_path / "hangs", "sleep 30\n")
    started = time.monotonic()
    runs = vfiotest.series_qtest(binary, Path("/bin/true"), binary, list_timeout=0.5)
    assert time.monotonic() - started < 10
    (result,) = testing.expect_pass(runs)
    assert result.status == FAIL
    assert result.detail == "hangs -l timed out after 0.5 s"
    (control,) = vfiotest.expect_control(runs, PLAN)
    assert control.status == FAIL


def test_qemu_qtest_that_hangs_fails_and_the_others_count(tmp_path: Path) -> None:
    qtests = tmp_path / "build" / "tests" / "qtest"
    script(qtests / "qmp-test", 'echo "ok 1 /x/a"\n')
    script(qtests / "qmp-cmd-test", 'echo "ok 1 /x/b"\necho "ok 2 /x/c"\nsleep 30\n')
    script(qtests / "device-introspect-test", 'echo "ok 1 /x/d"\n')
    results = testing.qemu_qtests(tmp_path / "build", Path("/bin/true"), timeout=1)
    assert [r.status for r in results] == [PASS, FAIL, PASS]
    assert results[1].detail == "timed out after 1 s (2 cases passed by then)"
    assert results[1].items == ["ok 1 /x/b", "ok 2 /x/c"]


def test_timeout_kills_what_the_test_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    binary = script(
        tmp_path / "spawns", f"sleep 60 >/dev/null 2>&1 &\necho $! > {pidfile}\nwait\n"
    )
    ran = proc.run_bounded([str(binary)], os.environ, 0.5)
    assert ran.timed_out
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state in ("Z", "X"):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"process {pid} outlived the timeout")


# The fake is built from its sources as qseries ships them (package
# data of the lab), copied into the work dir: one build per content.


def sources(workdir: WorkDir, dest: Path, marker: str) -> Path:
    """The lab's fake sources with a marker, as a package of the fake."""
    shutil.copytree(vfiotest.fake_sources(workdir), dest / "fakevfio")
    with (dest / "fakevfio" / "fakevfio.c").open("a") as out:
        out.write(f'__attribute__((used)) const char fv_marker[] = "{marker}";\n')
    return dest / "fakevfio"


@pytest.mark.skipif(
    not Path(sys.executable).with_name("meson").exists() and not shutil.which("meson"),
    reason="needs meson",
)
def test_each_fake_builds_from_its_own_copy(tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "work")
    shipped = vfiotest.fake_sources(workdir)
    assert shipped.parent.parent == workdir.path / "data"
    assert sorted(p.name for p in shipped.iterdir()) == ["fakevfio.c", "meson.build"]
    one = vfiotest.fake_sources(workdir, sources(workdir, tmp_path / "one", "copy-one"))
    two = vfiotest.fake_sources(workdir, sources(workdir, tmp_path / "two", "copy-two"))
    assert len({shipped, one, two}) == 3
    lib_one = vfiotest.build_fake(one, workdir)
    lib_two = vfiotest.build_fake(two, workdir)
    assert lib_one != lib_two
    assert b"copy-one" in lib_one.read_bytes()
    assert b"copy-two" in lib_two.read_bytes()
    assert b"copy-one" not in lib_two.read_bytes()
    # The same sources again reuse their build directory.
    assert vfiotest.fake_sources(workdir, tmp_path / "one" / "fakevfio") == one
    assert vfiotest.build_fake(one, workdir) == lib_one


def test_the_lab_ships_the_fake_the_series_carries() -> None:
    """v2 carries the fake into QEMU from the series' tests/fakevfio; the
    lab builds its own copy: the two are one file."""
    carried = (REPO / "tests" / "fakevfio" / "fakevfio.c").read_bytes()
    assert (vfiotest.FAKE_SOURCES / "fakevfio.c").read_bytes() == carried


def test_control_of_v2_passes_cases_without_the_notice() -> None:
    """v2 announces PRE_COPY_P2P only: on the base, the cases that never
    reach it pass; the others fail, lacking pre-copy-p2p-prepare."""
    missing = ASSERT + 'assertion failed (seen == expected): ("pre-copy, pre-copy-p2p"'
    runs = [
        run("/x/vfio-migration-events/stop-cont", True, "source events: stop"),
        run(
            "/x/vfio-migration-events/migrate/p2p-precopy",
            False,
            "source events: pre-copy, pre-copy-p2p, stop-copy",
            error=missing,
        ),
        run(
            "/x/vfio-migration-events/migrate/precopy",
            False,
            "source events: pre-copy",
            error=missing,
        ),
        run(
            "/x/vfio-migration-events/failure/pre-copy-p2p",
            False,
            "source events: pre-copy-p2p-prepare, running",
            error=missing,
        ),
    ]
    results = vfiotest.expect_control(runs, plan_of(V2).test)
    assert [r.status for r in results] == [
        PASS,
        PASS,
        FAIL,
        FAIL,
    ]
    assert results[1].detail.startswith("fails as it must: no prepare notice")
    assert results[2].detail == missing


def test_a_skipped_case_is_not_a_pass(tmp_path: Path) -> None:
    script = tmp_path / "qtest"
    script.write_text(
        "#!/bin/sh\necho 'ok 1 /x/a # SKIP no fake VFIO library'\necho '1..1'\n"
    )
    script.chmod(0o755)
    case = testing.run_case(script, Path("/bin/true"), None, "/x/a")
    assert not case.passed
    assert case.error == "skipped: no fake VFIO library"


SUITE = "qemu.qtest+qtest-x86_64 - qemu:qtest-x86_64/vfio-migration-events-test"
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites tests="3" failures="{failures}" skipped="{skipped}">
  <testsuite name="{suite}">
    <testcase name="1 /x86_64/vfio-migration-events/stop-cont"/>
    <testcase name="2 /x86_64/vfio-migration-events/migrate/p2p-precopy"
      >{case}</testcase>
  </testsuite>
  <testsuite name="qemu" tests="2">
    <testcase name="qtest-x86_64/qmp-test" classname="qemu"/>
    <testcase name="qtest+qtest-x86_64 - qemu:qtest-x86_64/skipper"
      ><skipped/></testcase>
  </testsuite>
</testsuites>
"""
EVENTS = "qtest-x86_64/vfio-migration-events-test"


@pytest.mark.parametrize(
    ("case", "verdict"),
    [
        ("", "passed"),
        ('<failure message="assertion failed"/>', "failed"),
        ("<skipped/>", "skipped"),
    ],
)
def test_junit_verdict_of_a_tap_test(tmp_path: Path, case: str, verdict: str) -> None:
    path = tmp_path / "testlog.junit.xml"
    path.write_text(JUNIT.format(failures=0, skipped=0, case=case, suite=SUITE))
    result = testing.junit_verdict(path, EVENTS)
    assert result is not None
    assert result[0] == verdict
    assert result[1][0] == "1 /x86_64/vfio-migration-events/stop-cont: passed"
    assert testing.junit_verdict(path, "qtest-x86_64/qmp-test") == (
        "passed",
        ["qtest-x86_64/qmp-test: passed"],
    )
    assert testing.junit_verdict(path, "qtest-x86_64/skipper") == (
        "skipped",
        ["qtest+qtest-x86_64 - qemu:qtest-x86_64/skipper: skipped"],
    )
    assert testing.junit_verdict(path, "qtest-x86_64/other") is None
    assert testing.junit_verdict(tmp_path / "missing.xml", EVENTS) is None


# The series' qtest: every case in one run of the binary, a case that
# does not pass there again alone.

QTEST = """calls={calls}
echo "$*" >> "$calls"
case "$*" in
  -l) printf '/x/a\\n/x/b\\n/x/c\\n'; exit 0 ;;
  --tap)
{all}
  ;;
  "--tap -p /x/b")
{alone_b}
  ;;
  *) echo "# vm events: $3"; echo "ok 1 $3"; exit 0 ;;
esac
"""


def qtest(tmp_path: Path, all_cases: str, alone_b: str = "exit 1") -> Path:
    calls = tmp_path / "calls"
    calls.write_text("")
    body = QTEST.format(calls=calls, all=all_cases, alone_b=alone_b)
    return script(tmp_path / "bin" / "events-test", body)


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().splitlines()


def test_every_case_in_one_run_each_with_its_events(tmp_path: Path) -> None:
    binary = qtest(
        tmp_path,
        "echo '1..3'; for c in a b c; do echo \"# vm events: $c-stop, running\";"
        ' sleep 0.2; echo "ok 1 /x/$c"; done',
    )
    started = time.monotonic()
    runs = vfiotest.series_qtest(binary, Path("/bin/true"), None)
    elapsed = time.monotonic() - started
    assert calls(tmp_path) == ["-l", "--tap"]
    assert [(r.path, r.passed) for r in runs] == [
        ("/x/a", True),
        ("/x/b", True),
        ("/x/c", True),
    ]
    # Each case has the lines printed since the one before it, and its time.
    assert [r.events for r in runs] == [
        ("vm events: a-stop, running",),
        ("vm events: b-stop, running",),
        ("vm events: c-stop, running",),
    ]
    # Each case's time is its own (since the result before it): they
    # add up to no more than the whole call took.
    assert all(r.seconds > 0.15 for r in runs)
    assert sum(r.seconds for r in runs) <= elapsed
    results = testing.expect_pass(runs)
    assert [r.status for r in results] == [PASS] * 3
    assert results[1].items == ["vm events: b-stop, running"]


def test_a_failed_case_runs_again_alone_and_keeps_its_evidence(
    tmp_path: Path,
) -> None:
    # The run of all cases aborts in /x/b: /x/c is never reached.
    binary = qtest(
        tmp_path,
        "echo '1..3'; echo '# vm events: a'; echo 'ok 1 /x/a';"
        " echo '# vm events: b'; echo 'ERROR:t.c:9:f: assertion failed' >&2;"
        " exit 134",
        alone_b="mkdir -p d; echo evidence > d/fake.log;"
        " echo '# source fake VFIO log: ./d/fake.log';"
        " echo '# source events: b alone';"
        " echo 'ERROR:t.c:9:f: assertion failed (alone)' >&2; exit 134",
    )
    runs = vfiotest.series_qtest(binary, Path("/bin/true"), None)
    assert calls(tmp_path) == ["-l", "--tap", "--tap -p /x/b", "--tap -p /x/c"]
    assert [(r.path, r.passed) for r in runs] == [
        ("/x/a", True),
        ("/x/b", False),
        ("/x/c", True),
    ]
    failed = runs[1]
    assert failed.events == ("source events: b alone",)
    assert failed.error == "ERROR:t.c:9:f: assertion failed (alone)"
    (log,) = vfiotest.evidence(failed)
    path = Path(log.split("log: ", 1)[1])
    assert path.read_text() == "evidence\n"
    result = testing.expect_pass(runs, vfiotest.evidence)[1]
    assert result.status == FAIL
    assert result.items == ["source events: b alone", log]
    shutil.rmtree(path.parent.parent)


def test_a_skipped_case_in_the_run_of_all_is_run_alone(tmp_path: Path) -> None:
    binary = qtest(
        tmp_path,
        "echo 'ok 1 /x/a'; echo 'ok 2 /x/b # SKIP no fake'; echo 'ok 3 /x/c'",
        alone_b="echo 'ok 1 /x/b # SKIP no fake VFIO library'",
    )
    runs = vfiotest.series_qtest(binary, Path("/bin/true"), None)
    assert calls(tmp_path) == ["-l", "--tap", "--tap -p /x/b"]
    assert [r.passed for r in runs] == [True, False, True]
    assert runs[1].error == "skipped: no fake VFIO library"


def test_a_run_that_fails_after_every_case_passed_runs_them_alone(
    tmp_path: Path,
) -> None:
    binary = qtest(
        tmp_path,
        "echo 'ok 1 /x/a'; echo 'ok 2 /x/b'; echo 'ok 3 /x/c'; exit 1",
        alone_b="echo 'ok 1 /x/b'",
    )
    runs = vfiotest.series_qtest(binary, Path("/bin/true"), None)
    assert calls(tmp_path) == [
        "-l",
        "--tap",
        "--tap -p /x/a",
        "--tap -p /x/b",
        "--tap -p /x/c",
    ]
    assert [r.passed for r in runs] == [True, True, True]
