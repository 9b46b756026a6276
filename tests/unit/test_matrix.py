"""Which bases the matrix runs a version on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qseries.core import generators, series
from qseries.core.versions import VersionRange, upstream_of_debian
from qseries.pipeline import matrix

REPO = Path(__file__).resolve().parents[2]
STABLE = "1:10.0.13+ds-0+deb13u1"  # trixie, Debian stable
LISTED = [
    "1:10.0.13+ds-0+deb13u1",
    "1:10.2.2+ds-1",
    "1:10.2.1+ds-1",
    "1:10.0.12+ds-0+deb13u1",
    "1:9.2.0+ds-1",
    "1:11.0.1+ds-1",
    "1:11.0.0+ds-1",
]


def version(name: str) -> series.Version:
    return series.load(REPO / "series.yaml", generators.specs()).version(name)


def test_newest_of_each_line_in_the_range_and_above_it() -> None:
    # v2 is for >=10.0, <11: 10.2.x and 10.0.x, and 11.0.x to find it merged.
    assert matrix.debian_bases(LISTED, version("v2")) == [
        "1:11.0.1+ds-1",
        "1:10.2.2+ds-1",
        "1:10.0.13+ds-0+deb13u1",
    ]


def test_lines_below_the_range_are_left_out() -> None:
    narrow = dataclasses.replace(version("v2"), base=VersionRange.parse(">=10.2, <11"))
    assert matrix.debian_bases(LISTED, narrow) == [
        "1:11.0.1+ds-1",
        "1:10.2.2+ds-1",
    ]


@pytest.mark.parametrize("name", ["v1", "v2"])
def test_every_version_keeps_a_base_in_debian_stable(name: str) -> None:
    """Sid moves on (it drops 10.2 once 11.x downloads); trixie's 10.0.x
    stays, and every version's range reaches down to it."""
    bases = matrix.debian_bases(LISTED, version(name))
    assert STABLE in bases
    assert upstream_of_debian(STABLE) in version(name).base


def test_a_failed_base_fails_the_matrix_but_not_one_already_merged() -> None:
    def row(verdict: str, required: bool = True) -> matrix.Row:
        return matrix.Row("b", verdict, "", None, 0.0, required)

    assert matrix.passed([row("pass"), row(matrix.ALREADY)])
    assert not matrix.passed([row("pass"), row("FAIL")])
    text = matrix.table("v2", [row("pass"), row("FAIL")])
    assert text.splitlines()[-1] == "v2: 1 of 2 bases failed"


def test_only_a_base_above_the_range_may_be_missing() -> None:
    def row(verdict: str, required: bool) -> matrix.Row:
        return matrix.Row("b", verdict, "", None, 0.0, required)

    # 11.x listed but not downloadable: the matrix still passes.
    assert matrix.passed([row("pass", True), row(matrix.UNAVAILABLE, False)])
    # A base in the range that cannot be had fails it.
    assert not matrix.passed([row("pass", True), row(matrix.UNAVAILABLE, True)])
    # So does a matrix that ran on nothing.
    assert not matrix.passed([])


def test_each_base_has_its_own_report_directory(tmp_path: Path) -> None:
    from qseries.ground.workdir import WorkDir

    workdir = WorkDir(tmp_path)
    a = matrix.report_dir(workdir, "v2", "Debian 1:10.2.2+ds-1")
    b = matrix.report_dir(workdir, "v2", "--tree /home/me/qemu")
    assert a == tmp_path / "reports" / "matrix" / "v2-Debian_1_10.2.2+ds-1"
    assert b.parent == a.parent and b != a
