"""The bench of any series: what checking and bisecting cost per patch.

Issue 20 asks that the check's cost grow linearly with the patches and
that bisectability (a build after each prefix of the series) reuse one
build tree through ccache.  These figures say whether it does, for any
series, with or without a lab; a lab's bench adds its own.

Everything runs through the pipeline: the check stage without its
cache, on the first k patches for k = 1..N, and the bisect stage
followed by the build of the whole series, which the test stage would
make.  Times are read from the Outcome's phases.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from ..core.results import PASS
from ..ground.console import say
from ..ground.workdir import WorkDir
from . import graph, importbench, stages

Figures = dict[str, float | int | str]

# The phases of the series' build, as Pipeline.build names them; the
# bisect stage leaves that build (its last step) to the test stage.
SERIES_BUILD = ("apply", "configure", "build")
# How the bisect stage says what a prefix's build ran.
_STEPS = re.compile(r"\((\d+) ninja steps\)")


def phase_seconds(outcome: stages.Outcome, names: Iterable[str]) -> float:
    """Seconds of the outcome's phases of these names, summed."""
    wanted = set(names)
    return sum(p.seconds for p in outcome.phases if p.name in wanted)


def check_figures(seconds: Mapping[int, float]) -> Figures:
    """The check's figures from its seconds on the first k patches, for
    each k: per patch, and how the cost per patch of the whole series
    compares with that of its first patch alone (1 when the check costs
    the same for each patch; below 1 when a part is paid once)."""
    if not seconds or sorted(seconds) != list(range(1, len(seconds) + 1)):
        raise ValueError(f"check_figures: need k = 1..N, got {sorted(seconds)}")
    last = len(seconds)
    per = {k: s / k for k, s in seconds.items()}
    figures: Figures = {
        "check_s": round(seconds[last], 2),
        "check_per_patch_s": round(per[last], 2),
    }
    for k in sorted(seconds):
        figures[f"check_k{k}_s"] = round(seconds[k], 2)
        figures[f"check_k{k}_per_patch_s"] = round(per[k], 2)
    if per[1] > 0:
        figures["check_per_patch_ratio"] = round(per[last] / per[1], 3)
    return figures


def bisect_figures(outcome: stages.Outcome, series_steps: int) -> Figures:
    """The bisect stage's figures: the stage (a build after each proper
    prefix) and the build of the whole series (series_steps ninja steps),
    which together build the tree once per patch."""
    group = next((g for g in outcome.groups if g.name == graph.BISECT), None)
    if group is None:
        raise ValueError("bisect_figures: the outcome has no bisect stage")
    steps = []
    for result in group.results:
        found = _STEPS.search(result.detail) if result.status == PASS else None
        steps.append(int(found.group(1)) if found else 0)
    steps.append(series_steps)
    patches = len(steps)
    seconds = phase_seconds(outcome, (graph.BISECT, *SERIES_BUILD))
    figures: Figures = {
        "bisect_s": round(seconds, 2),
        "bisect_per_patch_s": round(seconds / patches, 2),
        "bisect_ninja_steps_per_patch": round(sum(steps) / patches, 1),
        "bisect_passed": str(all(r.status == PASS for r in group.results)),
    }
    for k, n in enumerate(steps, 1):
        figures[f"bisect_k{k}_ninja_steps"] = n
    return figures


def _prefix_root(pipe: stages.Pipeline, k: int, into: Path) -> Path:
    """A patches root whose vN holds the cover letter and the first k
    patches of the run's version, as they are."""
    cover, patches = pipe.mails()
    directory = into / f"first-{k}" / pipe.version.name
    directory.mkdir(parents=True)
    for path in [*([cover.path] if cover else []), *patches[:k]]:
        shutil.copyfile(path, directory / path.name)
    return directory.parent


def run(request: stages.Request, workdir: WorkDir) -> Figures:
    """Every figure of the request's version on its base, in one run."""
    if request.mbox is not None:
        raise ValueError("bench: a mailed series has no prefixes to take")
    pipe = stages.Pipeline(replace(request, stages=frozenset()), workdir)
    scratch = Path(tempfile.mkdtemp(prefix="bench-", dir=workdir.sub("tmp")))
    try:
        base = pipe.base()
        _, patches = pipe.mails()
        figures: Figures = {
            "base": base.describe(),
            "series": pipe.version.name,
            "patches": len(patches),
        }
        # Import and generate of a branch of N patches, beside git's own.
        figures.update(importbench.run(base, workdir))
        # The check on the first k patches, without the check cache: the
        # mails and freshness checks fail on a proper prefix (it is not
        # the whole series), but every check still runs on it.
        seconds: dict[int, float] = {}
        for k in range(1, len(patches) + 1):
            root = request.patches_root
            if k < len(patches):
                root = _prefix_root(pipe, k, scratch)
            checked = stages.run(
                replace(
                    request,
                    stages=frozenset({graph.CHECK}),
                    reuse=False,
                    patches_root=root,
                    version=pipe.version.name,
                ),
                workdir,
            )
            seconds[k] = phase_seconds(checked, (graph.CHECK,))
            say(f"bench: check of patches 1..{k}: {seconds[k]:.1f} s")
            if k == len(patches):
                figures["check_passed"] = str(checked.passed)
        figures.update(check_figures(seconds))
        # Bisect from the base built, so that each prefix's build is what
        # its patch changes, whatever the build dir held before.
        say("bench: building the base first, so that bisect starts from it")
        pipe.build("base")
        pipe.bisect()
        built = pipe.build("series")
        figures.update(bisect_figures(pipe.outcome, built.steps))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        pipe.close()
    for key, value in figures.items():
        say(f"bench: {key} = {value}")
    return figures
