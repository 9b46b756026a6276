"""The VFIO lab's proof on devices, as the pipeline runs it.

For each QEMU the pipeline tests (the series, the control), the lab's
scenarios run on the kernel's mtty and, for the comparison, on the
fake; the kernel's records are judged for the version's notice (or,
on the control, for its lack), and at the end the two devices' lists
are compared into the fake-vs-kernel table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...core.results import FAIL, PASS, SKIP, Result
from ...ground.workdir import WorkDir
from . import judge, scenarios
from .device import DeviceRun, FakeDevice, KernelDevice
from .plan import Wire

SERIES = "series"
CONTROL = "control"


class DeviceProof:
    def __init__(
        self,
        workdir: WorkDir,
        wire: Wire,
        fake: Callable[[], Path],
        tmpdir: Path,
        say: Callable[[str], None],
        kernel: str | None = None,
    ):
        self.lab = scenarios.load()
        self.wire = wire
        self.fake = fake
        self.tmpdir = tmpdir
        self.say = say
        self.kernel = KernelDevice(workdir, kernel, say)
        self.runs: dict[tuple[str, str], DeviceRun] = {}
        self.facts: list[str] = []
        self.evidence: list[Path] = []

    def pinned(self) -> str:
        """The kernel --kernel names, as Debian's index lists it (an error
        if it does not), in one line; nothing is downloaded."""
        return self.kernel.pinned()

    def _fake_device(self) -> FakeDevice:
        return FakeDevice(self.fake(), self.tmpdir, self.lab.flags)

    def run(self, build: str, qemu: Path) -> list[Result]:
        """The scenarios on mtty (judged) and on the fake (kept to compare)."""
        chosen = self.lab.scenarios
        kernel = self.kernel.run(qemu, chosen, build)
        self.runs[(build, kernel.device)] = kernel
        self.facts += [f for f in kernel.facts if f not in self.facts]
        self.evidence += kernel.evidence
        fake = self._fake_device().run(qemu, chosen, build)
        self.runs[(build, fake.device)] = fake
        results: list[Result] = []
        by_name = {s.name: s for s in chosen}
        for run in kernel.runs:
            scenario = by_name[run.scenario]
            if build == SERIES:
                results.append(judge.judge_series("mtty", run, self.wire, scenario))
            else:
                series = self.runs.get((SERIES, kernel.device))
                theirs = (
                    next((r for r in series.runs if r.scenario == run.scenario), None)
                    if series
                    else None
                )
                results.append(
                    judge.judge_control("mtty", run, self.wire, scenario, theirs)
                )
        if any(not r.ok for r in results):
            for path in kernel.evidence:
                results[-1].items.append(f"the guest's console: {path}")
        if build == SERIES:
            results += [
                Result(f"mtty: {what}", SKIP, f"not possible on mtty: {why}")
                for what, why in self.lab.not_on_mtty
            ]
        return results

    def table(self) -> list[judge.Row]:
        out: list[judge.Row] = []
        for build in (SERIES, CONTROL):
            fake = self.runs.get((build, "fake"))
            kernel = self.runs.get((build, "kernel"))
            if fake is not None and kernel is not None:
                out += judge.rows(build, fake.runs, kernel.runs, self.wire)
        return out

    def control_matches(self) -> Result | None:
        """On mtty, the control said what the series said but the notices."""
        series = self.runs.get((SERIES, "kernel"))
        control = self.runs.get((CONTROL, "kernel"))
        if series is None or control is None:
            return None
        name = "mtty: the notice changes nothing else"
        theirs = {r.scenario: r for r in series.runs}
        compared = 0
        for run in control.runs:
            other = theirs.get(run.scenario)
            if other is None or run.error or other.error:
                continue
            for side in run.sides:
                mine = judge.said(side, self.wire)
                their_side = other.side(side.vm)
                if their_side is None:
                    continue
                expected = judge.without_notices(
                    judge.said(their_side, self.wire), self.wire
                )
                compared += 1
                if mine != expected:
                    return Result(
                        name,
                        FAIL,
                        f"{run.scenario} {side.vm}: the control said "
                        f"{judge.shown(mine)}, the series without its notices "
                        f"{judge.shown(expected)}",
                    )
        if not compared:
            return Result(
                name, FAIL, "no scenario ran whole on both the series and the control"
            )
        return Result(
            name,
            PASS,
            f"{compared} lists of the control equal the series' without its notices",
        )

    def compare(self, title: str) -> tuple[list[Result], str]:
        """The fake-vs-kernel result and its table (markdown)."""
        rows = self.table()
        if not rows:
            return [Result("fake vs kernel", FAIL, "nothing ran on both devices")], ""
        results = [judge.compare_result(rows)]
        matches = self.control_matches()
        if matches is not None:
            results.append(matches)
        return results, judge.markdown(rows, title, self.facts, self.lab.not_on_mtty)
