"""Which check results `reproduce` keeps for a later run with the same
inputs: only those that do not depend on a moment of the archive."""

from __future__ import annotations

from qseries.core.results import FAIL, PASS, SKIP, Result
from qseries.pipeline import stages as pipeline
from qseries.qemu import check


def test_passing_results_are_kept() -> None:
    assert pipeline._keepable([Result("fresh", PASS, "equal to a fresh generate")])


def test_a_failure_is_not_kept() -> None:
    assert not pipeline._keepable([Result("apply", FAIL, "does not apply")])


def test_a_skip_for_a_base_that_did_not_download_is_not_kept() -> None:
    skipped = Result("fresh", SKIP, f"{check.NO_ORIGIN}: 404 Not Found")
    assert not pipeline._keepable([skipped])


def test_a_check_made_on_a_stand_in_is_not_kept() -> None:
    stand_in = Result("fresh", PASS, f"compared on QEMU 10.0.13 {check.STAND_IN}")
    assert not pipeline._keepable([stand_in])


def test_a_skip_that_lasts_is_kept() -> None:
    assert pipeline._keepable([Result("maintainers", SKIP, "already in this base")])
