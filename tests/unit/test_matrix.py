"""Which bases the matrix runs a version on."""

from __future__ import annotations

from pathlib import Path

from qseries import generators, matrix, series

REPO = Path(__file__).resolve().parents[2]
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
    # v1 is for >=10.2, <11.
    assert matrix.debian_bases(LISTED, version("v1")) == [
        "1:11.0.1+ds-1",
        "1:10.2.2+ds-1",
    ]


def test_a_failed_base_fails_the_matrix_but_not_one_already_merged() -> None:
    def row(verdict: str) -> matrix.Row:
        return matrix.Row("b", verdict, "", None, 0.0)

    assert matrix.passed([row("pass"), row(matrix.ALREADY), row(matrix.UNAVAILABLE)])
    assert not matrix.passed([row("pass"), row("FAIL")])
    text = matrix.table("v2", [row("pass"), row("FAIL")])
    assert text.splitlines()[-1] == "v2: 1 of 2 bases failed"
