"""The VFIO lab's proof on devices, as the pipeline runs it.

For each QEMU the pipeline tests (the series, the control), the lab's
scenarios run on the kernel's mtty and, for the comparison, on the
fake; the kernel's records are judged for the version's notice (or,
on the control, for its lack), and at the end the two devices' lists
are compared into the fake-vs-kernel table.

With N devices per side on mtty (run(..., devices=N)), each scenario is
judged per device (kscale.py), and each device's lists, split from the
whole, are compared with the fake's, which runs with one device: every
device of a scenario takes the same steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from ...core.results import FAIL, PASS, SKIP, Result
from ...ground.workdir import WorkDir
from . import judge, kscale, scenarios
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
        # The kernel's records of N devices per side, whole (self.runs
        # holds them split per device, to compare with the fake's).
        self.whole: dict[str, DeviceRun] = {}
        self.facts: list[str] = []
        self.evidence: list[Path] = []

    def pinned(self) -> str:
        """The kernel --kernel names, as Debian's index lists it (an error
        if it does not), in one line; nothing is downloaded."""
        return self.kernel.pinned()

    def _fake_device(self) -> FakeDevice:
        return FakeDevice(self.fake(), self.tmpdir, self.lab.flags)

    def run(self, build: str, qemu: Path, devices: int = 1) -> list[Result]:
        """The scenarios on mtty (judged) and on the fake (kept to compare).
        devices: how many each QEMU on mtty has, at most
        kscale.max_devices() (more is refused before anything runs)."""
        kscale.check_devices(devices)
        if devices > 1:
            return self._run_many(build, qemu, devices)
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
        return self._finish(results, kernel.evidence, build)

    def _finish(
        self, results: list[Result], evidence: Sequence[Path], build: str
    ) -> list[Result]:
        """A failed run names the guest's console; the series' run says
        what mtty cannot do."""
        if any(not r.ok for r in results):
            for path in evidence:
                results[-1].items.append(f"the guest's console: {path}")
        if build == SERIES:
            results += [
                Result(f"mtty: {what}", SKIP, f"not possible on mtty: {why}")
                for what, why in self.lab.not_on_mtty
            ]
        return results

    def _run_many(self, build: str, qemu: Path, devices: int) -> list[Result]:
        """run() with devices per side on mtty, judged device by device."""
        chosen = self.lab.scenarios
        kernel = self.kernel.run(qemu, chosen, build, devices=devices)
        fake = self._fake_device().run(qemu, chosen, build)
        return self.judge_many(build, kernel, fake, devices)

    def judge_many(
        self, build: str, kernel: DeviceRun, fake: DeviceRun, devices: int
    ) -> list[Result]:
        """The records of a run of devices per side on mtty judged, and
        kept with the fake's (of one device) to compare, device by device."""
        chosen = self.lab.scenarios
        self.whole[build] = kernel
        self.facts += [f for f in kernel.facts if f not in self.facts]
        self.evidence += kernel.evidence
        ids = kscale.device_ids(devices)
        # The fake's one device stands for each of mtty's, by name.
        self.runs[(build, fake.device)] = replace(
            fake,
            runs=[
                replace(r, scenario=f"{r.scenario}{kscale.SPLIT}{dev}")
                for r in fake.runs
                for dev in ids
            ],
        )
        self.runs[(build, kernel.device)] = replace(
            kernel,
            runs=[
                alone
                for r in kernel.runs
                for alone in kscale.split(r, self.wire, devices).values()
            ],
        )
        by_name = {s.name: s for s in chosen}
        series = self.whole.get(SERIES)
        results: list[Result] = []
        for run in kernel.runs:
            scenario = by_name[run.scenario]
            if build == SERIES:
                results.append(
                    kscale.judge_series("mtty", run, self.wire, scenario, devices)
                )
            else:
                theirs = (
                    next((r for r in series.runs if r.scenario == run.scenario), None)
                    if series is not None
                    else None
                )
                results.append(
                    kscale.judge_control(
                        "mtty", run, self.wire, scenario, theirs, devices
                    )
                )
        if build == SERIES:
            results.append(kscale.instances_result(kernel.instances_left, devices))
        return self._finish(results, kernel.evidence, build)

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
