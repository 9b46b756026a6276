"""The VFIO migration lab as the pipeline sees it: options, stages, proof.

The pipeline builds and tests any series; a series of this lab is then
proven on its devices: its qtest on the fake VFIO device (with its
negative control, the mutations the qtest must catch and the fault
matrix), the QMP checks with the official client, the kernel's mtty in
a guest (compared with the fake, scenario by scenario), and, with
reports, the timeline of one migration.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ...core.results import FAIL, SKIP, Result
from ...ground import atomic
from ...ground.console import say
from ...ground.errors import UsageError
from ...pipeline.graph import REPORT, TEST, Stage
from ...qemu import testing
from ...qemu.build import Build
from . import faults as faults_mod
from . import kscale, multifd, qmpcheck, scale, vfiotest
from .device import kernel_unavailable
from .measure import MTTY_PORTS
from .plan import MAX_DEVICES, Mutation, plan_of
from .proof import DeviceProof
from .qapicheck import NoticeJudge

if TYPE_CHECKING:
    from ...pipeline.stages import Pipeline

MUTATIONS = "mutations"
TIMELINE = "timeline"
FAULTS = "faults"
# The lab's stages, each run within the generic stage it needs.
STAGES = (
    Stage(
        MUTATIONS,
        "break the series' C change on purpose; the qtest must fail",
        (TEST,),
        "vfio-migration",
    ),
    Stage(
        FAULTS,
        "the fault matrix: each injected failure's events",
        (TEST,),
        "vfio-migration",
    ),
    Stage(
        TIMELINE,
        "one live migration drawn beside the reports",
        (REPORT,),
        "vfio-migration",
    ),
)
DEVICE_CHOICES = ("fake", "kernel", "both")
# What the timeline injects into the quiesce transition by default.
DELAY_MS = 300
# Bench repetitions on mtty: each takes two of its mdevs.
MAX_REPEAT = MTTY_PORTS // 2


def add_options(p: argparse.ArgumentParser, command: str) -> None:
    """This lab's options of a command (test, reproduce, matrix, bench)."""
    g = p.add_argument_group("the vfio-migration lab")
    if command in ("test", "reproduce", "bench"):
        default = {
            "reproduce": "both where a guest can boot, else fake",
        }.get(command, "fake")
        g.add_argument(
            "--device",
            choices=DEVICE_CHOICES,
            default=None,
            help="prove it on the fake VFIO device, on the Linux kernel's mtty "
            f"sample device in a guest, or on both (default: {default})",
        )
        g.add_argument(
            "--kernel",
            metavar="ABI",
            help="the kernel for --device kernel: a Debian linux-image ABI such "
            "as 6.12.95+deb12 (default: the newest of the lab's series)",
        )
    if command in ("test", "reproduce", "bench"):
        many = command == "bench"
        g.add_argument(
            "--devices",
            metavar="N[,N...]" if many else "N",
            default=None,
            help=(
                "instead of the lab's other figures, measure a migration of N "
                "fake devices per side for each N of the list (e.g. 1,2,4,8,16), "
                "at 300 and at 50 ms of quiesce per device"
                if many
                else f"also migrate N devices per side (1 to {MAX_DEVICES}), "
                "each held to its own events and the P2P step to QEMU's order"
            ),
        )
        g.add_argument(
            "--multifd",
            action="store_true",
            help="send the devices' state over multifd channels "
            "(x-migration-multifd-transfer), where the base can",
        )
    if command in ("test", "reproduce", "matrix"):
        g.add_argument(
            "--no-mutations",
            dest="mutations",
            action="store_false",
            help="skip the version's mutations (the change broken on purpose, "
            "to see the qtest fail)",
        )
    if command in ("reproduce", "matrix"):
        g.add_argument(
            "--no-faults",
            dest="faults",
            action="store_false",
            help="skip the fault matrix",
        )
    if command == "test":
        g.add_argument(
            "--faults",
            action="store_true",
            help="also run the fault matrix: every device transition failed on "
            "each side, cancel, two devices, migration-events=off, a failed reset",
        )
        g.add_argument(
            "--fault",
            dest="fault_cases",
            action="append",
            default=[],
            metavar="CASE",
            help="run only this case of the fault matrix (SCENARIO or "
            "SCENARIO/SIDE/FROM>TO; repeatable)",
        )
        g.add_argument(
            "--write-table",
            action="store_true",
            help="with --faults: write the matrix's table to the file series.yaml "
            "names (test.faults.table)",
        )
    if command == "bench":
        g.add_argument(
            "--cycles",
            type=int,
            default=50,
            help="stop/cont cycles per round, 4 rounds each side (default 50)",
        )
        g.add_argument(
            "--delay-ms",
            type=int,
            default=DELAY_MS,
            help="delay injected into PRE_COPY>PRE_COPY_P2P for the lead of the "
            f"prepare notice (default {DELAY_MS})",
        )
        g.add_argument(
            "--repeat",
            type=int,
            default=5,
            metavar="R",
            help="on the kernel device, each scenario R times in one boot (default 5)",
        )


def choose(
    args: argparse.Namespace, command: str
) -> tuple[list[str], dict[str, object]]:
    """The lab's stages and options of a command line, checked."""
    faults = bool(getattr(args, "faults", False))
    cases = tuple(getattr(args, "fault_cases", ()))
    write_table = bool(getattr(args, "write_table", False))
    control = command == "test" and bool(getattr(args, "control", False))
    stages: list[str] = []
    if control:
        if faults or cases:
            raise UsageError(
                "--faults runs on the series, not on the control",
                "drop --control or --faults",
            )
    else:
        if faults or cases:
            stages.append(FAULTS)
        if write_table and not faults:
            raise UsageError(
                "--write-table writes the table of the whole fault matrix",
                "add --faults (and no --fault)",
            )
        if write_table and cases:
            raise UsageError(
                "--write-table needs the whole fault matrix, not some cases",
                "drop --fault",
            )
        if getattr(args, "mutations", False):
            stages.append(MUTATIONS)
    if command in ("reproduce", "matrix"):
        stages.append(TIMELINE)
    options: dict[str, object] = {
        "faults": cases,
        "write_table": write_table,
        "delay_ms": getattr(args, "delay_ms", DELAY_MS),
    }
    if command in ("test", "reproduce", "bench"):
        default = "auto" if command == "reproduce" else "fake"
        devices = devices_of(args.device, args.kernel, default)
        if "fake" not in devices and (cases or faults) and command == "test":
            raise UsageError(
                "the fault matrix runs on the fake device only",
                "use --device fake or both with --faults",
            )
        options["devices"] = devices
        options["kernel"] = args.kernel
    if command in ("test", "reproduce", "bench"):
        counts = device_counts(args.devices, many=command == "bench")
        if args.multifd and counts is None:
            raise UsageError(
                "--multifd goes with the N-device migration",
                "add --devices N",
            )
        options.update(counts=counts, multifd=bool(args.multifd))
        if counts is not None and "kernel" in devices and command != "bench":
            if args.device is None and counts[0] > kscale.max_devices():
                # reproduce's default takes the kernel where it can.
                say(
                    f"the kernel device does not run {counts[0]} devices per side "
                    f"(mtty gives at most {kscale.max_devices()}): the fake only"
                )
                devices = frozenset({"fake"})
                options["devices"] = devices
            else:
                # mtty has so many instances: said before any work.
                kscale.check_devices(counts[0])
    if command == "bench":
        if not 1 <= args.repeat <= MAX_REPEAT:
            raise UsageError(
                f"--repeat {args.repeat}: from 1 to {MAX_REPEAT} "
                "(each repetition takes two of mtty's 24 mdevs)",
                "pass --repeat 5",
            )
        options.update(cycles=args.cycles, repeat=args.repeat)
    return stages, options


def device_counts(text: str | None, many: bool) -> tuple[int, ...] | None:
    """The numbers of --devices: one for test and reproduce, a list for
    bench, each from 1 to MAX_DEVICES."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not all(t.isdigit() and 1 <= int(t) <= MAX_DEVICES for t in items):
        raise UsageError(
            f"--devices {text}: expected "
            + ("a comma list of numbers" if many else "a number")
            + f" from 1 to {MAX_DEVICES}",
            "pass --devices 8" if not many else "pass --devices 1,2,4,8,16",
        )
    if not many and len(items) > 1:
        raise UsageError(
            f"--devices {text}: one number here (a list is for bench)",
            "pass --devices 8",
        )
    return tuple(dict.fromkeys(int(t) for t in items))


def devices_of(chosen: str | None, kernel: str | None, default: str) -> frozenset[str]:
    """The devices of --device; for reproduce's 'auto', the kernel too
    where a guest can boot here (said when it cannot)."""
    chosen = chosen or default
    if chosen == "auto":
        why = kernel_unavailable()
        if why is None:
            return frozenset({"fake", "kernel"})
        say(f"the kernel device does not run here: {why}")
        return frozenset({"fake"})
    if chosen in ("kernel", "both"):
        why = kernel_unavailable()
        if why is not None:
            raise UsageError(f"--device {chosen}: {why}", "or run with --device fake")
    if kernel is not None and chosen == "fake":
        raise UsageError("--kernel is for --device kernel or both", "drop --kernel")
    return frozenset({"fake", "kernel"} if chosen == "both" else {chosen})


class Prover:
    """One run's proof of a version on this lab's devices."""

    def __init__(self, run: Pipeline):
        self.run = run
        self.options: Mapping[str, object] = run.request.lab
        self.plan = plan_of(run.version)
        self._fake: Path | None = None
        self._proof: DeviceProof | None = None
        cases = self._cases
        if cases and self.plan.test.faults is not None:
            # Before any work: a case id that names nothing runs nothing.
            faults_mod.check_case_ids(self.plan.test.faults, cases)

    @property
    def _cases(self) -> tuple[str, ...]:
        cases = self.options.get("faults", ())
        assert isinstance(cases, tuple)
        return cases

    @property
    def devices(self) -> frozenset[str]:
        devices = self.options.get("devices", frozenset({"fake"}))
        assert isinstance(devices, frozenset)
        return devices

    @property
    def shape(self) -> scale.Shape | None:
        """The N-device migration asked for (test and reproduce)."""
        counts = self.options.get("counts")
        if not isinstance(counts, tuple) or not counts:
            return None
        return scale.Shape(
            counts[0], self.delay_ms, multifd=bool(self.options.get("multifd"))
        )

    @property
    def kernel(self) -> str | None:
        kernel = self.options.get("kernel")
        return kernel if isinstance(kernel, str) else None

    @property
    def delay_ms(self) -> int:
        delay = self.options.get("delay_ms", DELAY_MS)
        assert isinstance(delay, int)
        return delay

    # -- what the pipeline asks --------------------------------------------

    def first_steps(self) -> list[tuple[str, Callable[[], object]]]:
        """Steps before the base: a --kernel Debian does not list stops
        the run at once (the index only; the kit is fetched when there
        is a QEMU)."""
        stages = self.run.request.stages
        tested = "control" in stages or "test" in stages
        if "kernel" in self.devices and tested and self.kernel is not None:
            return [("kernel", self._kernel_pinned)]
        return []

    def targets(self, tree: Path, what: str) -> list[str]:
        """The version's qtest and QEMU's, where the tree has them; its
        extra targets for the series and control."""
        test = self.plan.test
        names = (test.qtest, *testing.QEMU_QTESTS)
        targets = [
            f"tests/qtest/{n}"
            for n in names
            if (tree / "tests" / "qtest" / f"{n}.c").exists()
        ]
        if what in ("series", "control"):
            targets += test.targets
        return targets

    def inputs(self) -> list[tuple[str, bytes]]:
        """What check results depend on besides the series' files: none."""
        return []

    def qapi_judge(self) -> NoticeJudge:
        return NoticeJudge()

    def test(self, control: bool, built: Build, qemu: Path) -> None:
        """The series (or the control), proven on each device asked for."""
        fake = self.fake()
        if "fake" in self.devices:
            self._test_fake(control, built, qemu, fake)
        if "kernel" in self.devices:
            self._test_kernel(control, qemu)

    def products(self) -> dict[str, Path]:
        return {"fake": self.fake()}

    def after(self, directory: Path) -> None:
        """With reports: one live migration drawn."""
        if TIMELINE in self.run.request.stages and self.run.outcome.build is not None:
            self.timeline(directory)

    # -- the devices -------------------------------------------------------

    def fake(self) -> Path:
        """The fake device qseries builds (once a run)."""
        run = self.run
        if self._fake is None:
            sources = vfiotest.fake_sources(run.workdir)
            builddir = vfiotest.fake_builddir(sources, run.workdir)
            with run.phase("build the fake device") as reused:
                if (builddir / "build.ninja").exists():
                    reused.append("its configured build directory")
                self._fake = vfiotest.build_fake(sources, run.workdir)
        return self._fake

    def _proof_of(self) -> DeviceProof:
        if self._proof is None:
            self._proof = DeviceProof(
                self.run.workdir,
                self.plan.wire,
                self.fake,
                self.run.workdir.sub("tmp"),
                say,
                self.kernel,
            )
        return self._proof

    def _kernel_pinned(self) -> None:
        with self.run.phase("kernel"):
            say(f"kernel device: {self._proof_of().pinned()}")

    def _test_kernel(self, control: bool, qemu: Path) -> None:
        """The lab's scenarios on the kernel's mtty (and, to compare, on
        the fake); after the series, the fake-vs-kernel table."""
        run = self.run
        proof = self._proof_of()
        build = "control" if control else "series"
        shape = self.shape
        count = shape.devices if shape is not None else 1
        run.group(
            f"{'control ' if control else ''}kernel device",
            lambda: proof.run(build, qemu, count),
        )
        if control:
            return

        def compare() -> list[Result]:
            based_on = run.base().based_on()
            results, text = proof.compare(f"{run.version.name} on {based_on}")
            if text:
                name = f"fake-vs-kernel-{run.version.name}.md"
                run.outcome.tables[name] = text
                run.outcome.facts.append(
                    f"fake vs kernel: {results[0].detail} (the table: {name})"
                )
            return results

        run.group("fake vs kernel", compare)
        run.outcome.facts += [f for f in proof.facts if f not in run.outcome.facts]

    def _test_fake(self, control: bool, built: Build, qemu: Path, fake: Path) -> None:
        """The version's qtest, the mutations, QEMU's tests and the qmp
        checks: everything that runs on the fake device."""
        run = self.run
        request = run.request
        plan = self.plan.test
        what = "control" if control else "series"
        # The fake qseries builds, for a qtest that takes it from the
        # environment; a patch that carries its own is found by its qtest.
        qtest_fake = fake if plan.preload == "env" else None
        binary = built.qtest(plan.qtest)
        say(f"testing the {what} of {run.version.name}: {plan.qtest}")
        if control:
            run.group(
                "control qtest",
                lambda: vfiotest.expect_control(
                    vfiotest.series_qtest(binary, qemu, qtest_fake), plan
                ),
            )
        else:
            run.group(
                "qtest",
                lambda: testing.expect_pass(
                    vfiotest.series_qtest(binary, qemu, qtest_fake), vfiotest.evidence
                ),
            )
            if MUTATIONS in request.stages and request.qemu is None:
                run.group(
                    "mutations",
                    lambda: vfiotest.run_mutations(
                        plan,
                        built.tree,
                        built.builddir,
                        qemu,
                        qtest_fake,
                        built.log,
                        self._fault_check(qemu, fake),
                    ),
                )
            if FAULTS in request.stages:
                run.group("faults", lambda: self.faults(qemu, fake))
            run.group(
                "QEMU's qtests", lambda: testing.qemu_qtests(built.builddir, qemu)
            )
            if request.qemu is None:
                run.group(
                    "QEMU's runner",
                    lambda: [
                        testing.qemu_runner(
                            built.builddir,
                            plan.qtest,
                            f"needs {vfiotest.FAKE_ENV}"
                            if plan.preload == "env"
                            else None,
                        )
                    ],
                )
        shape = self.shape
        if shape is not None:
            run.group(
                f"{'control ' if control else ''}{shape.devices} devices",
                lambda: self._scaled(shape, control, qemu, fake),
            )
        run.group(
            "control qmp" if control else "qmp",
            lambda: qmpcheck.qmp(
                qemu,
                fake,
                self.plan.wire,
                testing.scratch_dir("qmp-"),
                control,
            ),
        )

    def _scaled(
        self, shape: scale.Shape, control: bool, qemu: Path, fake: Path
    ) -> list[Result]:
        """One migration of N devices, judged per device."""
        if shape.multifd:
            why = multifd.supported(qemu)
            if why is not None:
                # Skipped where the base lacks the feature, failed where
                # the QEMU could not even say.
                lacks = f"has no {multifd.PROPERTY} property" in why
                return [
                    Result(
                        f"{shape.devices} devices, multifd",
                        SKIP if lacks else FAIL,
                        why,
                    )
                ]
        wire = self.plan.wire
        tmp = self.run.workdir.sub("tmp")
        ran = scale.run(shape, qemu, fake, tmp, wire)
        # The consumer with a connection per device, masked on each
        # device's own notice, then on the completions.
        guards = asyncio.run(
            qmpcheck.consumers(qemu, fake, tmp, shape.devices, wire=wire)
        )
        if control:
            return scale.control_results(shape, ran, wire) + qmpcheck.expect_control(
                guards
            )
        faults_plan = self.plan.test.faults
        invariants = faults_plan.invariants if faults_plan else ("exact",)
        return scale.results(shape, ran, wire, invariants) + qmpcheck.expect_series(
            guards
        )

    def _fault_check(
        self, qemu: Path, fake: Path
    ) -> Callable[[Mutation], Result] | None:
        """How a mutation meant for the fault matrix is judged."""
        plan = self.plan.test.faults
        if plan is None:
            return None
        tmp = self.run.workdir.sub("tmp")
        wire = self.plan.wire
        return lambda m: faults_mod.catch_mutation(m, plan, wire, qemu, fake, tmp)

    def faults(self, qemu: Path, fake: Path) -> list[Result]:
        """The fault matrix of the version, and its table."""
        run = self.run
        plan = self.plan.test.faults
        if plan is None:
            return [
                Result(
                    "faults",
                    FAIL,
                    f"{run.version.name} has no fault plan: add test.faults to "
                    "series.yaml",
                )
            ]
        matrix = faults_mod.run_matrix(
            plan,
            self.plan.wire,
            qemu,
            fake,
            run.workdir.sub("tmp"),
            say,
            self._cases,
        )
        results = matrix.results()
        if self._cases:
            return results  # a part of the matrix has no table
        based_on = run.base().based_on()
        text = faults_mod.table(matrix, run.version.name, based_on)
        run.outcome.tables[f"faults-{run.version.name}.md"] = text
        committed = run.repo / plan.table
        if self.options.get("write_table"):
            committed.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(committed, text)
            say(f"wrote {committed}")
        results.append(faults_mod.table_result(text, committed, based_on))
        flagged = [r for r in matrix.runs if r.flags]
        if flagged:
            run.outcome.facts.append(
                f"fault matrix: {len(flagged)} cases flagged, e.g. "
                f"{flagged[0].case.id}: {flagged[0].flags[0]}"
            )
        return results

    def timeline(self, directory: Path) -> None:
        """One live migration of the series' QEMU, drawn."""
        from . import timeline as timeline_mod

        run = self.run
        built = run.outcome.build
        if built is None:
            return
        qemu = run.request.qemu.absolute() if run.request.qemu else built.qemu
        fake = self.fake()
        with run.phase("timeline"):
            picture = timeline_mod.capture(
                qemu,
                fake,
                self.plan.wire,
                run.workdir.sub("tmp"),
                self.delay_ms,
                devices=self.shape.devices if self.shape is not None else 1,
            )
            atomic.write_all(
                {
                    directory / "timeline.svg": timeline_mod.render_svg(
                        picture
                    ).encode(),
                    directory / "timeline.json": picture.to_json().encode(),
                }
            )
        run.outcome.pictures.append("timeline.svg")
        lead = picture.lead_ms
        run.outcome.facts.append(
            f"timeline of one migration ({self.delay_ms} ms injected into "
            "the quiesce transition): "
            + (
                f"the prepare notice led its completion by {lead:.1f} ms"
                if lead is not None
                else "no prepare notice"
            )
        )
