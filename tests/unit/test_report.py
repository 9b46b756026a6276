"""The reports reproduce writes: JUnit XML, JSON and a markdown summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from qseries.core.results import FAIL, PASS, SKIP, Result
from qseries.reports import report
from qseries.reports.report import Group, Phase, Run


def sample() -> Run:
    return Run(
        title="v2 on QEMU 10.2.2 (Debian qemu 1:10.2.2+ds-1)",
        version="v2",
        base={"version": "10.2.2"},
        groups=(
            Group(
                "check",
                (
                    Result("apply", PASS, "3 patches apply"),
                    Result("checkpatch", FAIL, "2 errors | in 1/3", ["log: /w/cp.log"]),
                ),
                12.5,
            ),
            Group("qtest", (Result("/x/a", SKIP, "needs the fake"),), 3.0),
        ),
        phases=(
            Phase("source", 0.2, "base tree debian-1_10.2.2+ds-1"),
            Phase("build", 40.0),
        ),
        pictures=("timeline.svg",),
        facts=("the prepare notice led its completion by 300.4 ms",),
    )


def test_junit_has_a_suite_per_group_and_a_case_per_result() -> None:
    root = ET.fromstring(report.junit(sample()))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == (
        "3",
        "1",
        "1",
    )
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["check", "qtest"]
    assert suites["check"].get("time") == "12.500"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    failure = cases["checkpatch"].find("failure")
    assert failure is not None
    assert failure.get("message") == "2 errors | in 1/3"
    assert "log: /w/cp.log" in (failure.text or "")
    assert cases["/x/a"].find("skipped") is not None
    assert cases["apply"].find("failure") is None
    assert cases["apply"].get("classname") == "qseries.v2.check"


def test_json_carries_counts_groups_and_phases() -> None:
    data = report.run_json(sample(), "/r")
    json.dumps(data)
    assert data["passed"] is False
    assert (data["tests"], data["failures"], data["skipped"]) == (3, 1, 1)
    phases = data["phases"]
    assert isinstance(phases, list)
    assert phases[0] == {
        "name": "source",
        "seconds": 0.2,
        "reused": "base tree debian-1_10.2.2+ds-1",
    }


def test_markdown_summary_renders_a_verdict_tables_and_the_picture() -> None:
    text = report.markdown(sample())
    assert "**FAILED**: 1 passed, 1 failed, 1 skipped." in text
    # A pipe in a detail must not split the table cell.
    assert "| check | **FAIL** | checkpatch: 2 errors \\| in 1/3 |" in text
    assert "### checkpatch" in text and "log: /w/cp.log" in text
    assert "| source | 0.2 | base tree debian-1_10.2.2+ds-1 |" in text
    assert "| build | 40.0 | - |" in text
    assert "| total | 40.2 | |" in text
    assert "![timeline.svg](timeline.svg)" in text
    assert "- the prepare notice led its completion by 300.4 ms" in text


def test_a_run_that_passed_says_so() -> None:
    run = Run("v1", "v1", {}, (Group("check", (Result("a", PASS, "ok"),), 1.0),), ())
    assert run.passed
    assert "**PASSED**: 1 passed, 0 failed, 0 skipped." in report.markdown(run)


def test_junit_stays_well_formed_with_control_characters() -> None:
    """A compiler's colours or a NUL in a log line must not break the XML."""
    bad = Result("build \x1b[31m", FAIL, "error\x00 at \x1b[0m", ["a\x07b"])
    run = Run("v1", "v1", {}, (Group("build", (bad,), 1.0),), ())
    root = ET.fromstring(report.junit(run))
    case = next(root.iter("testcase"))
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == "error\ufffd at \ufffd[0m"
    assert failure.text == "a\ufffdb"
