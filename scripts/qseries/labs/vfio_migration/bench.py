"""bench: the figures behind the README's performance claims.

Nothing here is a test: it measures and prints.  Ratios compare runs made
in the same invocation, on the same machine, so that a noisy machine
shifts both sides alike.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ...core.series import Version
from ...ground.console import Progress, say
from ...ground.gitutil import Git
from ...ground.proc import run_bounded, run_logged
from ...ground.workdir import WorkDir
from ...pipeline import stages as pipeline
from ...qemu import build as build_mod
from ...qemu import testing
from ...qemu.source import Apt, BaseTree, SourceSpec
from ...reports.report import Phase
from . import demo, sbench, vfiotest
from .lab import Prover
from .measure import MTTY_PORTS
from .plan import SERIES_DATA, Wire, plan_of
from .vm import FakeVfioVM

# The most repetitions of the lab's scenarios in the guest's one boot:
# two of mtty's mdevs each.
MAX_REPEAT = MTTY_PORTS // 2
# Longest a step of the by-hand run may take (a cold ninja on 2 cores
# takes about 4 minutes).
STEP_TIMEOUT = 30 * 60


@dataclass
class Figures:
    values: dict[str, float | int | str]

    def add(self, key: str, value: float | int | str) -> None:
        self.values[key] = value
        say(f"bench: {key} = {value}")


def _timed(fn: Callable[[], object]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def _ninja(builddir: Path, targets: list[str]) -> tuple[float, int]:
    started = time.monotonic()
    ran = run_bounded(
        ["ninja", *targets], os.environ, STEP_TIMEOUT, cwd=builddir, untrusted=True
    )
    if ran.timed_out or ran.returncode != 0:
        tail = (ran.stdout + ran.stderr).strip().splitlines()[-3:]
        why = f"timed out after {STEP_TIMEOUT:g} s" if ran.timed_out else "failed"
        raise build_mod.BuildError(
            f"bench: ninja in {builddir} {why}", " | ".join(tail)
        )
    steps = len([line for line in ran.stdout.splitlines() if line.startswith("[")])
    return time.monotonic() - started, steps


def cold_build(base: BaseTree, commit: str, workdir: WorkDir, figures: Figures) -> None:
    """A build from scratch in a throw-away build dir of its own."""
    tree = build_mod.checkout(base, commit, workdir)
    builddir = workdir.path / "bench" / "cold"
    shutil.rmtree(builddir, ignore_errors=True)
    log = workdir.sub("logs") / "bench-cold.log"
    log.write_text("")
    started = time.monotonic()
    build_mod.configure(tree, builddir, sys.executable, log)
    configured = time.monotonic() - started
    code, steps = run_logged(
        ["ninja", build_mod.QEMU_TARGET],
        builddir,
        log,
        Progress("bench cold build"),
        untrusted=True,
    )
    if code != 0:
        raise build_mod.BuildError("cold build failed", f"see {log}")
    figures.add("cold_configure_s", round(configured, 1))
    figures.add("cold_build_s", round(time.monotonic() - started, 1))
    figures.add("cold_build_steps", steps)
    shutil.rmtree(builddir, ignore_errors=True)


def incremental(
    base: BaseTree,
    control: str,
    series: str,
    workdir: WorkDir,
    targets: list[str],
    qtest: str,
    fake: Path | None,
    figures: Figures,
) -> None:
    """qseries build + test of the qtest, against bare git checkout + ninja +
    one run of the qtest binary; both toggle from the control to the series."""
    build_mod.build(base, control, workdir, targets)
    started = time.monotonic()
    built = build_mod.build(base, series, workdir, targets)
    vfiotest.series_qtest(built.qtest(qtest), built.qemu, fake)
    tool = time.monotonic() - started
    figures.add("incremental_steps", built.steps)
    figures.add("incremental_build_and_qtest_s", round(tool, 2))

    build_mod.build(base, control, workdir, targets)
    bare = _bare(built, series, targets, qtest, fake)
    figures.add("bare_build_and_qtest_s", round(bare, 2))
    figures.add("incremental_ratio", round(tool / bare, 3))


def _bare(
    built: build_mod.Build,
    commit: str,
    targets: list[str],
    qtest: str,
    fake: Path | None,
) -> float:
    """Seconds of what a person does by hand in a built tree: git checkout
    of commit, ninja, one run of the qtest binary."""
    started = time.monotonic()
    Git(built.tree).run("checkout", "--quiet", "--force", "--detach", commit)
    _ninja(built.builddir, targets)
    ran = testing.run_qtest(
        built.qtest(qtest),
        ["--tap"],
        built.qemu,
        vfiotest.fake_env(fake),
        testing.QTEST_TIMEOUT,
    )
    if ran.timed_out or ran.returncode != 0:
        raise build_mod.BuildError(
            f"bench: {qtest} failed in the run by hand",
            " | ".join((ran.stdout + ran.stderr).strip().splitlines()[-3:]),
        )
    return time.monotonic() - started


def stop_cont_ratio(
    patched: Path,
    unpatched: Path,
    fake: Path,
    cycles: int,
    tmpdir: Path,
    figures: Figures,
) -> None:
    async def run(qemu: Path) -> list[float]:
        vm = FakeVfioVM(qemu, fake, tmpdir, "bench")
        try:
            await vm.start()
            await sbench.stop_cont_cycles(vm, 10)  # warm up
            return await sbench.stop_cont_cycles(vm, cycles)
        finally:
            await vm.close()

    # Interleave rounds so that drifts in machine load hit both alike.
    rounds = 4
    patched_times: list[float] = []
    unpatched_times: list[float] = []
    for _ in range(rounds):
        unpatched_times += asyncio.run(run(unpatched))
        patched_times += asyncio.run(run(patched))
    p = statistics.median(patched_times)
    u = statistics.median(unpatched_times)
    figures.add("stop_cont_cycles", len(patched_times))
    figures.add("stop_cont_patched_median_ms", round(p * 1000, 3))
    figures.add("stop_cont_unpatched_median_ms", round(u * 1000, 3))
    figures.add("stop_cont_ratio", round(p / u, 3))


def prepare_lead(
    patched: Path,
    fake: Path,
    wire: Wire,
    delay_ms: int,
    tmpdir: Path,
    figures: Figures,
    runs: int = 5,
) -> None:
    """Lead of the prepare notice over the completion of the switchover's
    quiesce (PRE_COPY -> PRE_COPY_P2P, with delay_ms injected), as a QMP
    client hears them, over live migrations; and QEMU timestamp -> client
    latency."""
    leads: list[float] = []
    latencies: list[float] = []
    for i in range(runs):
        lead = asyncio.run(
            demo.switchover_lead(patched, fake, tmpdir, delay_ms, wire, i)
        )
        leads.append(lead.lead_s)
        latencies += lead.latencies_ms
    figures.add("prepare_delay_injected_ms", delay_ms)
    figures.add("prepare_lead_runs", runs)
    figures.add("prepare_lead_median_ms", round(statistics.median(leads) * 1000, 2))
    figures.add("prepare_lead_min_ms", round(min(leads) * 1000, 2))
    figures.add(
        "qemu_to_client_latency_median_ms", round(statistics.median(latencies), 3)
    )


def qtest_seconds(binary: Path, qemu: Path, fake: Path | None) -> float:
    return _timed(lambda: vfiotest.series_qtest(binary, qemu, fake))


# -- reproduce, cold and warm, against the same steps by hand ---------------


def _phases(prefix: str, outcome: pipeline.Outcome, figures: Figures) -> float:
    """Every phase of a run as a figure; returns their sum."""
    total = 0.0
    for phase in outcome.phases:
        key = re.sub(r"\W+", "_", phase.name.lower()).strip("_")
        figures.add(f"{prefix}_phase_{key}_s", round(phase.seconds, 1))
        total += phase.seconds
    return total


# reproduce's phases that do what the run by hand does (fetch and unpack,
# patch, configure, ninja, and the same qtest binaries once; the fake the
# qtest loads counts on reproduce's side only).  QEMU's runner and the
# QMP checks are work the hand run does not do.
SAME_AS_BY_HAND = (
    "source",
    "apply",
    "configure",
    "build",
    "build the fake device",
    "qtest",
    "QEMU's qtests",
)


def cold_reproduce(
    request: pipeline.Request, workdir: WorkDir, figures: Figures
) -> None:
    """reproduce from an empty work dir (index, download, unpack, configure,
    ninja with an empty ccache, the tests), its phases one by one, and
    the sum of those that the run by hand does too."""
    cold = WorkDir(workdir.path / "bench" / "cold-reproduce")
    shutil.rmtree(cold.path, ignore_errors=True)
    cold.path.mkdir(parents=True)
    started = time.monotonic()
    try:
        outcome = pipeline.run(
            replace(request, report_dir=cold.path / "reports", reports=True), cold
        )
    finally:
        seconds = time.monotonic() - started
        shutil.rmtree(cold.path, ignore_errors=True)
    figures.add("cold_reproduce_s", round(seconds, 1))
    figures.add("cold_reproduce_passed", str(outcome.passed))
    _phases("cold_reproduce", outcome, figures)
    figures.add(
        "cold_reproduce_same_steps_s", round(same_as_by_hand(outcome.phases), 1)
    )


def same_as_by_hand(phases: Sequence[Phase]) -> float:
    """The seconds of the phases that the run by hand does too."""
    return sum(p.seconds for p in phases if p.name in SAME_AS_BY_HAND)


def cold_by_hand(
    debian_version: str,
    patches: Sequence[Path],
    targets: Sequence[str],
    qtests: Sequence[str],
    qtest_fake: Path | None,
    workdir: WorkDir,
    figures: Figures,
) -> None:
    """What a person types for the same result, each step timed: apt-get
    update and source (the private apt configuration, as qseries has no
    other), dpkg-source -x, patch -p1, configure (the same arguments,
    without ccache), ninja, and each qtest binary once."""
    hand = WorkDir(workdir.path / "bench" / "by-hand")
    shutil.rmtree(hand.path, ignore_errors=True)
    hand.path.mkdir(parents=True)
    try:
        _by_hand(hand, debian_version, patches, targets, qtests, qtest_fake, figures)
    finally:
        shutil.rmtree(hand.path, ignore_errors=True)


def _by_hand(
    hand: WorkDir,
    debian_version: str,
    patches: Sequence[Path],
    targets: Sequence[str],
    qtests: Sequence[str],
    qtest_fake: Path | None,
    figures: Figures,
) -> None:
    steps: dict[str, float] = {}

    def step(name: str, fn: Callable[[], object]) -> None:
        steps[name] = _timed(fn)
        figures.add(f"by_hand_{name}_s", round(steps[name], 1))

    apt = Apt(hand)
    dsc: list[Path] = []
    step("update", lambda: apt.update(True))
    step(
        "download",
        lambda: dsc.append(apt.download("qemu", debian_version, hand.sub("dl"))),
    )
    tree = hand.path / "qemu"
    step("unpack", lambda: _check(["dpkg-source", "-x", str(dsc[0]), str(tree)]))

    def apply() -> None:
        for patch in patches:
            _check(["patch", "-s", "-p1", "-i", str(patch)], cwd=tree)

    step("apply", apply)
    builddir = hand.path / "build"
    builddir.mkdir()
    devices = build_mod.devices_file(hand.path)
    args = [*build_mod.CONFIGURE_ARGS, build_mod.devices_arg(tree, devices)]
    step(
        "configure",
        lambda: _check(
            [str(tree / "configure"), *args, f"--python={sys.executable}"],
            cwd=builddir,
            untrusted=True,
        ),
    )
    step("ninja", lambda: _check(["ninja", *targets], cwd=builddir, untrusted=True))
    build_mod.link_firmware(builddir)
    env = {**os.environ, "QTEST_QEMU_BINARY": str(builddir / build_mod.QEMU_TARGET)}
    env.pop("LD_PRELOAD", None)
    if qtest_fake is not None:
        env["QTEST_VFIO_FAKE"] = str(qtest_fake)

    def run_qtests() -> None:
        for name in qtests:
            binary = builddir / "tests" / "qtest" / name
            _check([str(binary), "--tap"], env=env, untrusted=True)

    step("qtests", run_qtests)
    figures.add("by_hand_s", round(sum(steps.values()), 1))


def _check(
    argv: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    untrusted: bool = False,
) -> None:
    """A step by hand; untrusted: it runs the series' code (the sandbox)."""
    ran = run_bounded(
        argv,
        env if env is not None else os.environ,
        STEP_TIMEOUT,
        cwd,
        untrusted=untrusted,
    )
    if ran.timed_out or ran.returncode != 0:
        tail = (ran.stdout + ran.stderr).strip().splitlines()[-3:]
        raise build_mod.BuildError(
            f"bench: {' '.join(argv[:3])} exited with {ran.returncode}",
            " | ".join(tail),
        )


def warm_reproduce(
    request: pipeline.Request,
    edited: Path,
    workdir: WorkDir,
    qtest: str,
    qtest_fake: Path | None,
    figures: Figures,
) -> None:
    """After a template edit (edited: the patches generated from it):
    reproduce's build and qtest phases, and the whole warm run, against a
    bare git checkout + ninja + one run of the qtest binary, both from
    the unedited series.  ccache is off on both sides: the second would
    otherwise compile nothing the first did not."""
    request = replace(request, report_dir=workdir.path / "bench" / "reports")
    saved = os.environ.get("CCACHE_DISABLE")
    os.environ["CCACHE_DISABLE"] = "1"
    try:
        pipeline.run(request, workdir)
        started = time.monotonic()
        outcome = pipeline.run(replace(request, patches_root=edited), workdir)
        whole = time.monotonic() - started
        after = outcome.build
        if after is None:
            raise build_mod.BuildError("the warm reproduce built nothing")
        figures.add("warm_reproduce_s", round(whole, 1))
        _phases("warm_reproduce", outcome, figures)
        same = sum(
            p.seconds
            for p in outcome.phases
            if p.name in ("apply", "configure", "build", "qtest")
        )
        figures.add("warm_reproduce_apply_build_and_qtest_s", round(same, 2))

        pipeline.run(request, workdir)  # back to the unedited series
        targets = [build_mod.QEMU_TARGET, f"tests/qtest/{qtest}"]
        bare = _bare(after, after.commit, targets, qtest, qtest_fake)
    finally:
        if saved is None:
            os.environ.pop("CCACHE_DISABLE", None)
        else:
            os.environ["CCACHE_DISABLE"] = saved
    figures.add("warm_bare_checkout_ninja_and_qtest_s", round(bare, 2))
    figures.add("warm_reproduce_ratio", round(same / bare, 3))
    figures.add("warm_reproduce_whole_ratio", round(whole / bare, 3))


def reproduce_figures(
    request: pipeline.Request,
    base: BaseTree,
    patches: Sequence[Path],
    version: Version,
    fake: Path,
    workdir: WorkDir,
    figures: Figures,
    cold: bool,
) -> None:
    """reproduce cold (an empty work dir) against the same steps by hand,
    and warm after a template edit against bare ninja and the qtest."""
    from ...core import generators
    from ...core import series as series_mod
    from ...qemu import generate as gen

    plan = plan_of(version).test
    qtest_fake = fake if plan.preload == "env" else None
    if cold and base.debian_version:
        spec = SourceSpec(base_version=base.debian_version)
        cold_reproduce(replace(request, spec=spec), workdir, figures)
        qtests = [plan.qtest, *testing.QEMU_QTESTS]
        targets = [build_mod.QEMU_TARGET, *(f"tests/qtest/{q}" for q in qtests)]
        cold_by_hand(
            base.debian_version,
            patches,
            [*targets, *plan.targets],
            qtests,
            qtest_fake,
            workdir,
            figures,
        )
        ratio = float(figures.values["cold_reproduce_s"]) / float(
            figures.values["by_hand_s"]
        )
        figures.add("cold_reproduce_ratio", round(ratio, 3))
        same = float(figures.values["cold_reproduce_same_steps_s"]) / float(
            figures.values["by_hand_s"]
        )
        figures.add("cold_reproduce_same_steps_ratio", round(same, 3))
    edited = edit_a_template(
        request.series_file, version, workdir.path / "bench" / "edited-series"
    )
    copy = series_mod.load(edited, generators.specs())
    _, tmp = gen.generate(copy, copy.version(version.name), base, workdir)
    root = workdir.path / "bench" / "edited-patches"
    shutil.rmtree(root, ignore_errors=True)
    gen.install(tmp, root / version.name, copy.version(version.name))
    warm_reproduce(request, root, workdir, plan.qtest, qtest_fake, figures)


def edit_a_template(series_file: Path, version: Version, dest: Path) -> Path:
    """A copy of the series in dest whose version's C template has one
    comment line changed (so its C file recompiles); the copy's
    series.yaml."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    root = series_file.parent
    shutil.copy(series_file, dest / series_file.name)
    for name in SERIES_DATA:
        if (root / name).is_dir():
            shutil.copytree(root / name, dest / name)
    templates = [
        p.params["template"]
        for p in version.patches
        if p.params.get("template", "").endswith(".c.j2")
    ]
    if not templates:
        raise build_mod.BuildError(f"{version.name} has no C template to edit")
    path = dest / templates[0]
    text = path.read_text()
    edited = re.sub(
        r"^(\s+\* )(?=\S)", r"\1Edited for the bench: ", text, count=1, flags=re.M
    )
    if edited == text:
        raise build_mod.BuildError(f"{templates[0]} has no comment line to edit")
    path.write_text(edited)
    return dest / series_file.name


@dataclass(frozen=True)
class Plan:
    """What `qseries bench` measures."""

    cycles: int  # stop/cont cycles per round
    delay_ms: int  # injected into the quiesce transition for the lead
    cold: bool  # the cold builds (minutes each)
    reproduce: bool  # reproduce cold and warm against the same by hand
    # The devices measured: the fake (every figure above) and the
    # kernel's mtty in a guest (labs/vfio_migration/kbench.py).
    devices: frozenset[str] = frozenset({"fake"})
    repeat: int = 5  # each scenario's runs in the guest's one boot
    kernel: str | None = None  # the kernel for mtty (None: the newest)
    # --devices: the N-device figures (sbench.py) for each N, instead of
    # the others.
    counts: tuple[int, ...] | None = None
    multifd: bool = False  # the devices' state over multifd channels


def run(request: pipeline.Request, workdir: WorkDir, plan: Plan) -> Figures:
    """Every figure of the plan, for the request's version and base."""
    setup = pipeline.Pipeline(request, workdir)
    try:
        version = setup.version
        base = setup.base()
        patches = setup.mails()[1]
        assert isinstance(setup.prover, Prover)
        fake = setup.prover.fake()
    finally:
        setup.close()
    test = plan_of(version).test
    figures = Figures({"base": base.describe(), "series": version.name})
    targets = [build_mod.QEMU_TARGET, f"tests/qtest/{test.qtest}", *test.targets]
    if plan.counts is not None:
        _scale_figures(request, workdir, plan, figures, base, fake)
        return figures
    if "fake" in plan.devices:
        _fake_figures(request, workdir, plan, figures, version, base, patches, fake)
    if "kernel" in plan.devices:
        from . import kbench

        full = build_mod.compose(base, patches, workdir)
        qemu = build_mod.build(base, full, workdir, targets).qemu
        kbench.boots(
            qemu, plan_of(version).wire, workdir, plan.repeat, figures.add, plan.kernel
        )
        if plan.reproduce:
            kbench.cold_and_warm(qemu, workdir, figures.add, plan.kernel)
    return figures


def _built_versions(
    request: pipeline.Request, workdir: WorkDir, base: BaseTree
) -> list[sbench.Built]:
    """Every version of the series built on the base, and its control
    (each QEMU copied aside, as the build dir is shared)."""
    setup = pipeline.Pipeline(request, workdir)
    try:
        names = [f"v{n}" for n in sorted(setup.series.versions)]
    finally:
        setup.close()
    out: list[sbench.Built] = []
    for name in names:
        one = pipeline.Pipeline(replace(request, version=name), workdir)
        try:
            version = one.version
            patches = one.mails()[1]
        finally:
            one.close()
        plan = plan_of(version)
        targets = [build_mod.QEMU_TARGET]
        tests = [p for p in patches if testing.is_test_patch(p)]
        built = build_mod.build(
            base, build_mod.compose(base, tests, workdir), workdir, targets
        )
        control = _aside(built.qemu, f"{name}-control")
        built = build_mod.build(
            base, build_mod.compose(base, patches, workdir), workdir, targets
        )
        invariants = plan.test.faults.invariants if plan.test.faults else ("exact",)
        out.append(
            sbench.Built(name, _aside(built.qemu, name), plan.wire, invariants, control)
        )
    return out


def _aside(qemu: Path, name: str) -> Path:
    """A copy of a built QEMU beside it (it finds its firmware there)."""
    copy = qemu.with_name(f"{qemu.name}-{name}")
    copy.write_bytes(qemu.read_bytes())
    copy.chmod(0o755)
    return copy


def _scale_figures(
    request: pipeline.Request,
    workdir: WorkDir,
    plan: Plan,
    figures: Figures,
    base: BaseTree,
    fake: Path,
) -> None:
    """The N-device figures: sbench.py."""
    assert plan.counts is not None
    versions = _built_versions(request, workdir, base)
    measured = next(v for v in versions if v.name == figures.values["series"])
    growth = None
    if plan.reproduce:
        growth = lambda: sbench.growth_figures(  # noqa: E731
            request, workdir, sbench.GROWTH_COUNTS
        )
    sbench.run(
        versions,
        measured,
        fake,
        plan.counts,
        plan.multifd,
        plan.cycles,
        workdir,
        figures.add,
        growth,
    )


def _fake_figures(
    request: pipeline.Request,
    workdir: WorkDir,
    plan: Plan,
    figures: Figures,
    version: Version,
    base: BaseTree,
    patches: list[Path],
    fake: Path,
) -> None:
    """Every figure of the fake device's runs."""
    test = plan_of(version).test
    control = build_mod.compose(
        base, [p for p in patches if testing.is_test_patch(p)], workdir
    )
    full = build_mod.compose(base, patches, workdir)
    targets = [build_mod.QEMU_TARGET, f"tests/qtest/{test.qtest}", *test.targets]
    qtest_fake = fake if test.preload == "env" else None
    if plan.cold:
        cold_build(base, full, workdir, figures)
    incremental(base, control, full, workdir, targets, test.qtest, qtest_fake, figures)
    built = build_mod.build(base, control, workdir, targets)
    unpatched = built.builddir / f"{build_mod.QEMU_TARGET}-unpatched"
    unpatched.write_bytes(built.qemu.read_bytes())
    unpatched.chmod(0o755)
    built = build_mod.build(base, full, workdir, targets)
    seconds = qtest_seconds(built.qtest(test.qtest), built.qemu, qtest_fake)
    figures.add("qtest_run_s", round(seconds, 2))
    tmpdir = workdir.sub("tmp")
    prepare_lead(
        built.qemu, fake, plan_of(version).wire, plan.delay_ms, tmpdir, figures
    )
    stop_cont_ratio(built.qemu, unpatched, fake, plan.cycles, tmpdir, figures)
    if plan.reproduce:
        reproduce_figures(
            replace(request, version=version.name, reports=True),
            base,
            patches,
            version,
            fake,
            workdir,
            figures,
            plan.cold,
        )
