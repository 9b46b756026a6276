"""reproduce and matrix on small trees: the reports, a base that has the
series already, and a base where the pipeline cannot go on.

The small QEMU-like tree has no configure and no scripts/: the checks
that need QEMU's checkers fail there, and so does the build.  That is
enough to see the pipeline report what it found and stop.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ..conftest import RunCli, copy_series, git


@pytest.fixture
def generated(run_cli: RunCli, mini_tree: Path, tmp_path: Path) -> Path:
    """v1 generated on the small tree: the --output directory."""
    out = tmp_path / "out"
    proc = run_cli(
        "generate", "--series", "v1", "--tree", str(mini_tree), "--output", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def merged(mini_tree: Path, generated: Path, tmp_path: Path) -> Path:
    """The small tree with v1 applied: a base that merged the series."""
    tree = tmp_path / "merged"
    git(tmp_path, "clone", "-q", str(mini_tree), str(tree))
    for patch in sorted((generated / "v1").glob("v1-000[1-9]-*.patch")):
        git(tree, "am", "-q", str(patch))
    return tree


QUICK = ("--no-bisect", "--no-mutations", "--no-control")


def test_reproduce_on_a_base_with_the_series_says_so_and_writes_reports(
    run_cli: RunCli, merged: Path, generated: Path, tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    proc = run_cli(
        "reproduce", "--series", "v1", "--tree", str(merged),
        "--output", str(generated), "--report-dir", str(reports),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"reports in {reports}" in proc.stdout
    assert "v1 is already in this base: nothing to build or test" in proc.stdout
    data = json.loads((reports / "report.json").read_text())
    assert data["passed"] is True
    assert [g["name"] for g in data["groups"]] == ["check"]
    assert [p["name"] for p in data["phases"]][:2] == ["source", "check"]
    root = ET.parse(reports / "junit.xml").getroot()
    apply = next(c for c in root.iter("testcase") if c.get("name") == "apply")
    skipped = apply.find("skipped")
    assert skipped is not None
    assert skipped.get("message", "").startswith("already in this base")
    summary = (reports / "summary.md").read_text()
    assert summary.startswith("# qseries reproduce: v1 on ")
    assert "**PASSED**" in summary


def test_reproduce_takes_a_mailed_series_in_any_order(
    run_cli: RunCli, merged: Path, generated: Path, tmp_path: Path
) -> None:
    """--mbox: b4 orders the mails and names the version; the pipeline
    runs on what it picked."""
    mails = sorted((generated / "v1").glob("*.patch"))
    mbox = tmp_path / "thread.mbox"
    mbox.write_text("".join(p.read_text() for p in reversed(mails)))
    reports = tmp_path / "reports"
    proc = run_cli(
        "reproduce", "--mbox", str(mbox), "--tree", str(merged),
        "--report-dir", str(reports), *QUICK,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads((reports / "report.json").read_text())
    assert data["version"] == "v1"
    check = {r["name"]: r for r in data["groups"][0]["results"]}
    assert check["mails"]["detail"] == "v1, patches 1..3, every diff sound"
    assert check["apply"]["detail"].startswith("already in this base")
    assert not any((tmp_path / "work" / "tmp").glob("run-*"))


def test_reproduce_reports_the_stage_that_could_not_go_on(
    run_cli: RunCli, mini_tree: Path, generated: Path, tmp_path: Path
) -> None:
    """The small tree cannot be configured: the build stage fails, and the
    reports still say so, with the checks that ran before it."""
    reports = tmp_path / "reports"
    proc = run_cli(
        "reproduce", "--series", "v1", "--tree", str(mini_tree),
        "--output", str(generated), "--report-dir", str(reports), *QUICK,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("qseries: error: "), proc.stderr
    data = json.loads((reports / "report.json").read_text())
    assert data["passed"] is False
    groups = {g["name"]: g for g in data["groups"]}
    assert list(groups) == ["check", "test"]
    assert groups["test"]["results"][0]["status"] == "fail"
    assert groups["test"]["results"][0]["detail"] in error
    root = ET.parse(reports / "junit.xml").getroot()
    assert int(root.get("failures", "0")) >= 2  # checkpatch and the build


def test_matrix_runs_each_tree_and_tells_already_merged_from_failed(
    run_cli: RunCli, mini_tree: Path, merged: Path, generated: Path
) -> None:
    proc = run_cli(
        "matrix", "--json", "--series", "v1", "--no-debian",
        "--tree", str(merged), "--tree", str(mini_tree),
        "--output", str(generated), *QUICK,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    rows = {r["base"]: r for r in data["bases"]}
    assert rows[f"--tree {merged}"]["verdict"] == "already in this base"
    assert Path(rows[f"--tree {merged}"]["report_dir"], "junit.xml").is_file()
    failed = rows[f"--tree {mini_tree}"]
    assert failed["verdict"] == "FAIL"
    assert data["passed"] is False


def test_matrix_passes_when_every_base_has_the_series(
    run_cli: RunCli, merged: Path, generated: Path
) -> None:
    proc = run_cli(
        "matrix", "--series", "v1", "--no-debian", "--tree", str(merged),
        "--output", str(generated), *QUICK,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "already in this base" in proc.stdout
    assert proc.stdout.rstrip().endswith("v1: no base failed (1 bases)")


def test_matrix_without_any_base_is_a_usage_error(run_cli: RunCli) -> None:
    proc = run_cli("matrix", "--no-debian")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "qseries: error: --no-debian leaves no base; add --tree PATH"
    )


def test_a_second_run_reuses_the_checks_until_an_input_changes(
    run_cli: RunCli, merged: Path, generated: Path, tmp_path: Path
) -> None:
    """Check results are kept for the same inputs; editing a template
    beside series.yaml is a new input."""
    series = copy_series(tmp_path / "series")
    argv = (
        "--series-file", str(series), "reproduce", "--series", "v1",
        "--tree", str(merged), "--output", str(generated), *QUICK,
    )  # fmt: skip
    first = run_cli(*argv)
    assert first.returncode == 0, first.stderr
    assert "reused check results" not in first.stdout
    second = run_cli(*argv)
    assert "(reused check results for the same inputs)" in second.stdout
    template = series.parent / "hw" / "vfio" / "migration-v1.c.j2"
    template.write_text(template.read_text() + "\n")
    third = run_cli(*argv)
    assert third.returncode == 0, third.stderr
    assert "reused check results" not in third.stdout


def test_matrix_names_the_hunk_of_a_base_that_conflicts(
    run_cli: RunCli, mini_tree: Path, generated: Path, tmp_path: Path
) -> None:
    """A base whose code moved under a patch: the row names the patch,
    the file and the hunk, and the run stops after check."""
    moved = tmp_path / "moved"
    git(tmp_path, "clone", "-q", str(mini_tree), str(moved))
    patch = next((generated / "v1").glob("v1-0002-*.patch")).read_text()
    path = re.search(r"^\+\+\+ b/(\S+)", patch, re.M)
    assert path is not None
    source = moved / path[1]
    source.write_text(
        "\n".join(
            line.replace("vfio", "VFIO") if "vfio" in line else line
            for line in source.read_text().splitlines()
        )
        + "\n"
    )
    git(moved, "commit", "-qam", "moved")
    proc = run_cli(
        "matrix", "--json", "--series", "v1", "--no-debian", "--tree", str(moved),
        "--output", str(generated), *QUICK,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    (row,) = json.loads(proc.stdout)["bases"]
    assert row["verdict"] == "FAIL"
    assert re.fullmatch(
        r"patch 2/3 'vfio/migration: [^']+' does not apply: "
        r"hw/vfio/migration\.c: the hunk at line \d+ does not match the base",
        row["detail"],
    ), row["detail"]
    data = json.loads(Path(row["report_dir"], "report.json").read_text())
    assert [g["name"] for g in data["groups"]] == ["check"]
