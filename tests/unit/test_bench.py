"""The generic bench's figures, computed from the pipeline's own
Outcome, Phase and Group objects: per patch, the ratio of the last k to
the first, and the bisect stage's builds (the base's warm-up left out)."""

from __future__ import annotations

import pytest

from qseries.core import generators, series
from qseries.core.results import FAIL, PASS, Result
from qseries.pipeline import bench, stages
from qseries.reports.report import Group, Phase

from ..conftest import REPO


def outcome(phases: list[Phase], groups: list[Group]) -> stages.Outcome:
    loaded = series.load(
        REPO / "series" / "qom-type-info" / "series.yaml", generators.specs()
    )
    return stages.Outcome(loaded.version(None), phases=phases, groups=groups)


def built(subject: str, steps: int) -> Result:
    """A prefix that built, said as the bisect stage says it."""
    return Result(
        "bisect", PASS, f"builds after '{subject}' {stages.ninja_steps(steps)}"
    )


def test_the_check_per_patch_and_its_ratio() -> None:
    figures = bench.check_figures({1: 4.0, 2: 10.0, 3: 13.5})
    assert figures["check_s"] == 13.5
    assert figures["check_per_patch_s"] == 4.5
    assert figures["check_k1_per_patch_s"] == 4.0
    assert figures["check_k2_s"] == 10.0
    assert figures["check_k2_per_patch_s"] == 5.0
    assert figures["check_k3_per_patch_s"] == 4.5
    # The whole series' cost per patch against the first patch's alone.
    assert figures["check_per_patch_ratio"] == 1.125


def test_a_check_that_pays_a_part_once_is_below_one() -> None:
    # 6 s paid once, 1 s per patch: 7, 8, 9 s.
    figures = bench.check_figures({1: 7.0, 2: 8.0, 3: 9.0})
    assert figures["check_per_patch_ratio"] == round(3.0 / 7.0, 3)


def test_the_check_needs_every_k_from_one() -> None:
    with pytest.raises(ValueError, match=r"k = 1\.\.N"):
        bench.check_figures({1: 4.0, 3: 9.0})
    with pytest.raises(ValueError):
        bench.check_figures({})


def test_phase_seconds_sums_the_phases_named() -> None:
    run = outcome([Phase("source", 1.0), Phase("check", 2.5), Phase("check", 0.5)], [])
    assert bench.phase_seconds(run, ["check"]) == 3.0
    assert bench.phase_seconds(run, ["test"]) == 0.0


def test_bisect_counts_each_prefix_and_the_whole_series() -> None:
    # The base's build (the bench's warm-up) is not the series' cost.
    run = outcome(
        [
            Phase("source", 0.2),
            Phase("apply (base)", 3.0),
            Phase("configure (base)", 0.0),
            Phase("build (base)", 50.0),
            Phase("bisect", 20.0),
            Phase("apply", 1.0),
            Phase("configure", 0.0),
            Phase("build", 9.0),
        ],
        [Group("bisect", (built("one", 64), built("two", 6)), 20.0)],
    )
    figures = bench.bisect_figures(run, series_steps=4)
    assert figures["bisect_s"] == 30.0
    assert figures["bisect_per_patch_s"] == 10.0
    assert figures["bisect_ninja_steps_per_patch"] == round(74 / 3, 1)
    assert [figures[f"bisect_k{k}_ninja_steps"] for k in (1, 2, 3)] == [64, 6, 4]
    assert figures["bisect_passed"] == "True"


def test_a_prefix_that_does_not_build_counts_no_steps() -> None:
    failed = Result("bisect 1/2", FAIL, "does not build after patch 1 'one'")
    run = outcome(
        [Phase("bisect", 5.0), Phase("apply", 1.0), Phase("build", 2.0)],
        [Group("bisect", (failed,), 5.0)],
    )
    figures = bench.bisect_figures(run, series_steps=10)
    assert figures["bisect_k1_ninja_steps"] == 0
    assert figures["bisect_k2_ninja_steps"] == 10
    assert figures["bisect_per_patch_s"] == 4.0
    assert figures["bisect_passed"] == "False"


def test_one_patch_is_the_series_build_alone() -> None:
    run = outcome(
        [Phase("bisect", 0.0), Phase("apply", 0.5), Phase("build", 1.5)],
        [Group("bisect", (), 0.0)],
    )
    figures = bench.bisect_figures(run, series_steps=2)
    assert figures["bisect_s"] == 2.0
    assert figures["bisect_per_patch_s"] == 2.0
    assert figures["bisect_ninja_steps_per_patch"] == 2.0
    assert figures["bisect_k1_ninja_steps"] == 2


def test_bisect_figures_need_the_bisect_stage() -> None:
    with pytest.raises(ValueError, match="no bisect stage"):
        bench.bisect_figures(outcome([], []), series_steps=1)
