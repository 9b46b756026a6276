"""The pipeline: one run of the declared stages (graph.py) on a series.

Every command is some of the stages: `check` is source, mails and
check; `test` is source, mails, bisect and test; `reproduce` is all of
them and the report; `generate`, `send` and the others are the stage of
their name and what it needs (commands.py declares which).  The
Pipeline is the run's context: the request, the work dir, and what the
stages found; `run` executes the stages in the graph's order.

Each stage is timed as a phase; what a stage took from an earlier run
(the base tree, the configured build directory, check results for the
same inputs) is said in the phase, so that a second run tells what it
reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..core import generators, inputs
from ..core import series as series_mod
from ..core.mail import Mail, MailedSeries, read_mail
from ..core.results import FAIL, PASS, SKIP, Result, passed
from ..ground import atomic
from ..ground.console import say
from ..ground.errors import QSeriesError, SourceError, UsageError
from ..ground.workdir import WorkDir
from ..mail import mbox as mbox_mod
from ..qemu import build as build_mod
from ..qemu import check, testing, touched
from ..qemu.source import BaseTree, SourceSpec, get_base
from ..reports import report
from ..reports.report import Group, Phase
from . import graph
from . import lab as lab_mod
from .graph import BISECT, CHECK, CONTROL, MAILS, REPORT, SERIES, SOURCE, TEST


@dataclass(frozen=True)
class Request:
    """What to run, on what: the typed form of a command line."""

    series_file: Path
    spec: SourceSpec
    version: str | None = None  # None: the newest (or the mbox's)
    mbox: Path | None = None  # a mailed series instead of patches/vN
    patches_root: Path | None = None  # instead of patches/ beside series.yaml
    # The stages asked for (graph.py); those they need run too.
    stages: frozenset[str] = frozenset()
    qemu: Path | None = None  # test this binary rather than the one built
    reports: bool = False  # write the reports (reproduce)
    reuse: bool = False  # take check results of the same inputs from the cache
    report_dir: Path | None = None  # default WORKDIR/reports/SERIES/vN-BASE
    # The options of the series' lab, as its `choose` made them from
    # the command line (the lab reads them; the pipeline does not).
    lab: Mapping[str, object] = field(default_factory=dict)
    # The tests to run instead of those the change touches (--tests).
    tests: str | None = None
    # The command (commands.py) and its own options (a record of its kind).
    command: str = ""
    options: object = None


T = TypeVar("T")


def options(request: Request, kind: type[T]) -> T:
    """A command's own options, of the kind it takes."""
    found = request.options
    if not isinstance(found, kind):
        raise TypeError(f"{request.command} needs {kind.__name__} options")
    return found


@dataclass
class Outcome:
    """What a run found, stage by stage."""

    version: series_mod.Version
    base: BaseTree | None = None
    groups: list[Group] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    pictures: list[str] = field(default_factory=list)
    tables: dict[str, str] = field(default_factory=dict)  # file name -> text
    report_dir: Path | None = None
    build: build_mod.Build | None = None
    # The base has the series, or it does not apply: nothing to build or test.
    stopped: bool = False

    @property
    def results(self) -> list[Result]:
        return [r for g in self.groups for r in g.results]

    @property
    def passed(self) -> bool:
        return passed(self.results)

    def to_report(self) -> report.Run:
        base = self.base.to_json() if self.base else {}
        where = f" on {self.base.describe()}" if self.base else ""
        return report.Run(
            title=f"{self.version.name}{where}",
            version=self.version.name,
            base=base,
            groups=tuple(self.groups),
            phases=tuple(self.phases),
            pictures=tuple(self.pictures),
            facts=tuple(self.facts),
        )


class Pipeline:
    """One run: the request, the work dir, and what the stages found."""

    def __init__(self, request: Request, workdir: WorkDir):
        self.request = request
        self.workdir = workdir
        self.series = series_mod.load(request.series_file, generators.specs())
        self.repo = request.series_file.absolute().parent
        self._scratch: Path | None = None
        self._mails: tuple[Mail | None, list[Path]] | None = None
        self._mailed_series: MailedSeries | None = None
        self._build_ready = False
        # The names of QEMU's tests the control ran (a series with no lab).
        self._control_tests: list[str] | None = None
        self.lab = lab_mod.load(self.series.lab) if self.series.lab else None
        self.graph = graph.GENERIC.with_lab(self.lab.stages if self.lab else ())
        unknown = sorted(s for s in request.stages if s not in self.graph)
        if unknown:
            raise ValueError(f"unknown stages {unknown}")
        version = self.series.version(request.version)
        if request.mbox is not None:
            try:
                version = self._mailed().version
            except BaseException:
                self.close()
                raise
        self.outcome = Outcome(version)
        # The lab's proof of this run (it refuses bad options at once).
        self.prover: lab_mod.Prover | None = None
        if self.lab is not None:
            try:
                self.prover = self.lab.prover(self)
            except BaseException:
                self.close()
                raise

    # -- plumbing ----------------------------------------------------------

    @property
    def version(self) -> series_mod.Version:
        return self.outcome.version

    @property
    def scratch(self) -> Path:
        if self._scratch is None:
            self._scratch = Path(
                tempfile.mkdtemp(prefix="run-", dir=self.workdir.sub("tmp"))
            )
        return self._scratch

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    @contextmanager
    def phase(self, name: str) -> Iterator[list[str]]:
        """Time a phase; the block appends what it reused to the list."""
        reused: list[str] = []
        started = time.monotonic()
        try:
            yield reused
        finally:
            self.outcome.phases.append(
                Phase(name, time.monotonic() - started, "; ".join(reused))
            )

    def group(self, name: str, run: Callable[[], list[Result]]) -> list[Result]:
        """Run one group of results as a phase of its own."""
        started = time.monotonic()
        with self.phase(name):
            results = run()
        self.outcome.groups.append(
            Group(name, tuple(results), time.monotonic() - started)
        )
        return results

    # -- source ------------------------------------------------------------

    def base(self) -> BaseTree:
        if self.outcome.base is None:
            trees = self.workdir.path / "trees"
            before = set(trees.iterdir()) if trees.is_dir() else set()
            with self.phase("source") as reused:
                base = get_base(
                    self.workdir,
                    self.request.spec,
                    self.version.base,
                    self.version.base_commit,
                )
                if base.root in before:
                    reused.append(f"base tree {base.root.name}")
            self.outcome.base = base
            # Whether this run found the base's build directory ready: a
            # build later in the run reuses it only if so.
            builddir = build_mod.build_dir(self.workdir, base)
            self._build_ready = (builddir / "build.ninja").exists()
        return self.outcome.base

    def _mailed(self) -> MailedSeries:
        """What b4 made of --mbox (read once)."""
        assert self.request.mbox is not None
        if self._mailed_series is None:
            self._mailed_series = mbox_mod.read_series(
                self.request.mbox, self.series, self.workdir, self.scratch
            )
            for line in self._mailed_series.said:
                say(line)
        return self._mailed_series

    def patches_dir(self) -> Path:
        root = self.request.patches_root or self.request.series_file.parent / "patches"
        return root / self.version.name

    def mails(self) -> tuple[Mail | None, list[Path]]:
        """The cover letter, if any, and the patches, in order."""
        if self._mails is None:
            if self.request.mbox is not None:
                mailed = self._mailed()
                self._mails = (mailed.cover, [m.path for m in mailed.patches])
            else:
                mails = patch_mails(self.patches_dir())
                cover = next((m for m in mails if m.is_cover), None)
                self._mails = (cover, [m.path for m in mails if not m.is_cover])
        return self._mails

    def origin(self) -> check.Origin:
        """The base the mails were generated on, so that a backport applies
        with its objects at hand, or what stands in for it (its `gone`
        says why); no base when it cannot be had."""
        cover, _ = self.mails()
        try:
            return check.find_origin(cover, self.base(), self.workdir, self.version)
        except SourceError as err:
            say(f"applying without the generation base: {err}")
            return check.Origin(None)

    # -- check -------------------------------------------------------------

    def check(self) -> list[Result]:
        patches_dir = None if self.request.mbox else self.patches_dir()
        key = self._check_key()
        cached = self.workdir.path / "cache" / "checks" / f"{key}.json"

        def run() -> list[Result]:
            if self.request.reuse and cached.is_file():
                try:
                    results = _results_from_json(json.loads(cached.read_text()))
                except (ValueError, KeyError, TypeError):
                    results = None
                if results is not None:
                    self._reused_check = True
                    return results
            results = check.run_checks(
                self.series,
                self.version,
                self.request.spec,
                self.workdir,
                patches_dir,
                self.request.mbox,
                self._mailed() if self.request.mbox else None,
                self.prover.qapi_judge() if self.prover else None,
            )
            if _keepable(results):
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(".tmp")
                tmp.write_text(json.dumps(report.to_json(results)))
                tmp.replace(cached)
            return results

        self._reused_check = False
        results = self.group(CHECK, run)
        if self._reused_check:
            last = self.outcome.phases.pop()
            self.outcome.phases.append(
                Phase(last.name, last.seconds, "check results for the same inputs")
            )
        apply = next((r for r in results if r.name == "apply"), None)
        if apply is not None and apply.detail == check.ALREADY:
            self.outcome.facts.append(
                f"{self.version.name} is already in this base: nothing to build or test"
            )
            self.outcome.stopped = True
        elif apply is not None and apply.status == FAIL:
            # Nothing later can be built: say why once, and stop.
            self.outcome.facts.append(
                f"{self.version.name} does not apply to this base: "
                + (apply.items[0] if apply.items else apply.detail)
            )
            self.outcome.stopped = True
        return results

    def _check_key(self) -> str:
        """What the checks' results depend on: the base, the mails as
        given (names and bytes; an mbox as it is, headers and all), the
        files series.yaml names and its templates include, the devices
        file, and qseries itself (see inputs.py)."""
        digest = hashlib.sha256()

        def add(label: str, data: bytes) -> None:
            digest.update(f"{label}\0{len(data)}\0".encode())
            digest.update(data)

        base = self.base()
        add("base", f"{base.commit} {self.version.name}".encode())
        if self.request.mbox is not None:
            add("mbox", self.request.mbox.read_bytes())
        else:
            cover, patches = self.mails()
            for path in [*([cover.path] if cover else []), *patches]:
                add(path.name, path.read_bytes())
        for name, path in inputs.series_files(self.series):
            add(name, path.read_bytes())
        add(build_mod.DEVICES.name, build_mod.DEVICES.read_bytes())
        for name, data in self.prover.inputs() if self.prover else []:
            add(name, data)
        for name, data in inputs.package_files():
            add(f"{inputs.PACKAGE}/{name}", data)
        return digest.hexdigest()[:32]

    # -- build -------------------------------------------------------------

    def targets(self, tree: Path, what: str = "prefix") -> list[str]:
        """QEMU and what the test stage runs on it: the lab's targets,
        or the tests the change touches (a prefix of the series need
        not have them all)."""
        if self.prover is not None:
            return [build_mod.QEMU_TARGET, *self.prover.targets(tree, what)]
        # The tests the change touches are chosen from the build's own
        # introspection once QEMU is built (test_touched); a qtest the
        # series adds or changes is built with QEMU, where the tree has
        # it, so that bisect builds it after each patch too.
        qtests = [
            f"tests/qtest/{Path(path).stem}"
            for path in self.changed_files()
            if path.startswith("tests/qtest/")
            and path.endswith("-test.c")
            and (tree / path).is_file()
        ]
        return [build_mod.QEMU_TARGET, *qtests]

    def build(self, what: str = "series", qemu: bool = True) -> build_mod.Build:
        """Build the series, its negative control (the qtest patch alone)
        or the bare base, in the base's build directory."""
        base = self.base()
        patches = self.mails()[1] if what != "base" else []
        if what == "control":
            patches = self.test_patches()
            if not patches and self.prover is not None:
                raise UsageError(f"{self.version.name} has no test patch")
        label = "" if what == "series" else f" ({what})"
        with self.phase(f"apply{label}"):
            origin = self.origin() if what != "base" else check.Origin(None)
            commit = build_mod.compose(
                base, patches, self.workdir, origin.base, bool(origin.gone)
            )
            tree = build_mod.checkout(base, commit, self.workdir)
        targets = self.targets(tree, what)
        if not qemu:
            targets.remove(build_mod.QEMU_TARGET)
        say(f"building the {what} of {self.version.name} on {base.describe()}")
        built = build_mod.build(base, commit, self.workdir, targets, tree=tree)
        reused = self._build_ready and not built.configured
        self.outcome.phases.append(
            Phase(
                f"configure{label}",
                built.configure_seconds,
                "the configured build directory" if reused else "",
            )
        )
        self.outcome.phases.append(
            Phase(
                f"build{label}",
                built.seconds - built.configure_seconds,
                f"the built tree: only {built.steps} ninja steps ran" if reused else "",
            )
        )
        return built

    def bisect(self) -> list[Result]:
        """The tree builds after each patch of the series but the last:
        that one is the series itself, which the test stage builds."""
        base = self.base()
        _, patches = self.mails()
        origin = self.origin()

        def run() -> list[Result]:
            results = []
            for step in build_mod.bisect(
                base,
                patches,
                self.workdir,
                self.targets,
                origin.base,
                bool(origin.gone),
            ):
                mail = read_mail(step.patch)
                name = f"bisect {step.k}/{step.total}"
                if step.ok:
                    results.append(
                        Result(
                            name,
                            PASS,
                            f"builds after '{mail.subject}' {ninja_steps(step.steps)}",
                        )
                    )
                else:
                    results.append(
                        Result(
                            name,
                            FAIL,
                            f"does not build after patch {step.k} '{mail.subject}'",
                            [
                                *step.errors[: build_mod.ERRORS_SHOWN],
                                f"log: {step.log}",
                            ],
                        )
                    )
            return results

        return self.group(BISECT, run)

    def _whole_series_built(self, built: build_mod.Build) -> None:
        """Close the bisect group with its last step: the whole series,
        which the test stage has just built."""
        for i, group in enumerate(self.outcome.groups):
            if group.name != BISECT:
                continue
            _, patches = self.mails()
            last = read_mail(patches[-1]).subject
            step = Result(
                f"bisect {len(patches)}/{len(patches)}",
                PASS,
                f"builds after '{last}': the whole series {ninja_steps(built.steps)}",
            )
            self.outcome.groups[i] = Group(
                group.name, (*group.results, step), group.seconds
            )

    # -- test --------------------------------------------------------------

    def test(self, control: bool) -> None:
        """The series (or the control) built, then tested: by its lab,
        or with QEMU's tests that the change touches."""
        request = self.request
        what = "control" if control else "series"
        built = self.build(what, qemu=request.qemu is None)
        if not control:
            self.outcome.build = built
            self._whole_series_built(built)
        qemu = request.qemu.absolute() if request.qemu else built.qemu
        if self.prover is not None:
            self.prover.test(control, built, qemu)
        else:
            self.test_touched(control, built, qemu)

    # -- QEMU's tests that the change touches (a series with no lab) --------

    def changed_files(self) -> list[str]:
        """The files of QEMU's tree the series' patches change."""
        _, patches = self.mails()
        found: set[str] = set()
        for path in patches:
            found |= check.changed_paths(read_mail(path).body)
        return sorted(found)

    def test_touched(self, control: bool, built: build_mod.Build, qemu: Path) -> None:
        """QEMU's own tests that the change touches (or --tests), run with
        QEMU's runner on the series; on the control (the base with only
        the series' test patches) a test the series adds or changes must
        fail, as the change is missing there, and the others pass."""
        what = "control" if control else "series"
        if self.request.qemu is not None:
            raise UsageError(
                "--qemu is for a lab's tests: QEMU's own tests run with the "
                "QEMU of their build",
                "drop --qemu, or name a lab in series.yaml",
            )
        changed = self.changed_files()
        tests_of = touched.read_build(built.builddir)
        if self.request.tests is not None:
            choice = touched.parse_tests(self.request.tests, tests_of)
        else:
            choice = touched.choose(changed, built.tree, built.builddir)
        for line in choice.lines():
            say(line)
        if not choice.tests:
            if control:
                self._control_tests = []  # the series' tests must not go unheld
            name = "control: QEMU's tests" if control else "QEMU's tests"
            detail = choice.lines()[0]
            self.group(name, lambda: [Result(name, SKIP, detail, choice.lines()[1:])])
            return
        if choice.targets:
            say(f"building the tests of the {what}: {', '.join(choice.targets)}")
            build_mod.build(
                self.base(), built.commit, self.workdir, choice.targets, tree=built.tree
            )
        tests = [c.test for c in choice.tests]
        if not control:
            self.group("QEMU's tests", lambda: touched.run_tests(tests_of, tests))
            if self._control_tests is not None:
                ran = self._control_tests
                self.group(CONTROL_SAME, lambda: [_same_tests(tests, ran)])
            return
        self._control_tests = [t.name for t in tests]
        # The tests of the control's own patches (those it keeps: the
        # tests the series adds or changes) must fail there; the others
        # must pass as on the series.
        kept = {f for p in self.test_patches() for f in testing.patch_files(p)}
        own = _own_tests(tests, kept)
        self.group(
            "control: QEMU's tests",
            lambda: _judge_control(touched.run_tests(tests_of, tests), own),
        )

    def test_patches(self) -> list[Path]:
        """The patches the negative control keeps (testing.is_test_patch)."""
        return [p for p in self.mails()[1] if testing.is_test_patch(p)]

    # -- the whole run -----------------------------------------------------

    def plan(self) -> list[graph.Stage]:
        """The stages this run executes, in order (targets_of)."""
        return self.graph.order(targets_of(self.request))

    def steps(self) -> dict[str, Callable[[], object]]:
        """The step of each generic stage this class runs itself."""
        return {
            SERIES: lambda: self.series,
            SOURCE: self.base,
            MAILS: self.mails,
            CHECK: self.check,
            BISECT: self.bisect,
            CONTROL: lambda: self.test(control=True),
            TEST: lambda: self.test(control=False),
            REPORT: self.report,
        }

    def run(self, more: Mapping[str, Callable[[], object]] | None = None) -> Outcome:
        """Execute the plan; more: the steps of stages a command runs
        besides those of steps()."""
        steps = {**self.steps(), **(more or {})}
        order = self.plan()
        # The lab's steps before the base (to refuse early) come first.
        first = self.prover.first_steps() if self.prover is not None else []

        def execute(starting: Callable[[str], None] = lambda name: None) -> None:
            for name, step in first:
                starting(name)
                step()
            graph.execute(order, steps, lambda: self.outcome.stopped, starting)

        if REPORT not in {s.name for s in order}:
            execute()
            return self.outcome
        # With reports, a stage that cannot go on (a build that fails)
        # is reported too, before the error ends the run.
        current = [SOURCE]
        try:
            execute(current.append)
        except Exception as err:
            if self.outcome.report_dir is not None:
                raise  # the reports are written: what failed came after
            # A QSeriesError says what went wrong in its own words; a
            # failure of the system (a timeout, a full disk) by its kind.
            line = str(err) if isinstance(err, QSeriesError) else _describe(err)
            name = current[-1]
            self.outcome.groups.append(Group(name, (Result(name, FAIL, line),), 0.0))
            directory = self.request.report_dir
            if self.outcome.base is not None or directory is not None:
                directory = directory or self.default_report_dir()
                try:
                    self.write_reports(directory)
                    say(f"the reports of what ran are in {directory}")
                except atomic.WriteError as lost:
                    # The error that ended the run is the one to print.
                    say(f"no reports of what ran: {lost}")
            raise
        return self.outcome

    def report(self) -> None:
        """What the lab draws, then the reports of the run."""
        directory = self.request.report_dir or self.default_report_dir()
        if self.prover is not None and self.outcome.build is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self.prover.after(directory)
        self.write_reports(directory)

    def default_report_dir(self) -> Path:
        base = self.base()
        # Several series share a work dir: each has its reports folder,
        # named as the folder of its series.yaml.
        name = self.request.series_file.absolute().parent.name or "series"
        return (
            self.workdir.path
            / "reports"
            / name
            / f"{self.version.name}-{base.root.name}"
        )

    def write_reports(self, directory: Path) -> None:
        atomic.make_dirs(directory)
        run = self.outcome.to_report()
        texts = {
            "junit.xml": report.junit(run),
            "report.json": json.dumps(report.run_json(run, str(directory)), indent=2)
            + "\n",
            "summary.md": report.markdown(run),
            **self.outcome.tables,
        }
        # The reports of a run go together: all of them, or the old ones.
        atomic.write_all({directory / n: t.encode() for n, t in texts.items()})
        self.outcome.report_dir = directory


def targets_of(request: Request) -> set[str]:
    """The stages a request asks for: those it names, and the report
    when it writes one; with a QEMU given, no bisect (nothing of ours
    is built)."""
    targets = set(request.stages)
    if request.reports:
        targets.add(REPORT)
    if request.qemu is not None:
        targets.discard(BISECT)
    return targets


def ninja_steps(steps: int) -> str:
    """What a bisect step says its build ran (the bench reads it back)."""
    return f"({steps} ninja steps)"


# The result that says the control ran the tests chosen for the series.
CONTROL_SAME = "control: the same tests"


def _same_tests(series: Sequence[touched.BuildTest], control: Sequence[str]) -> Result:
    """Did the control run the tests chosen for the series?  Both are
    chosen from the same changed files, each on its own build; a test
    the series' build has and the control's has not (a meson.build of a
    patch the control leaves out) was not held to the control."""
    missing = [t.name for t in series if t.name not in control]
    if missing:
        return Result(
            CONTROL_SAME,
            FAIL,
            f"{len(missing)} of the series' tests did not run on the control",
            missing,
        )
    return Result(CONTROL_SAME, PASS, f"{len(series)} tests ran on both")


def _own_tests(tests: Sequence[touched.BuildTest], kept: set[str]) -> set[str]:
    """The tests the control's own patches (kept: the files they change)
    add or change: built or run from one of those files.  A test built
    from a file only the change touches is not one: it ran before the
    change and must pass without it."""
    return {t.name for t in tests if set(t.sources) & kept}


def _judge_control(results: list[Result], own: set[str]) -> list[Result]:
    """On the control, a test the series adds or changes must fail (the
    change it tests is missing); any other must pass, as on the series."""
    judged = []
    for r in results:
        name = f"control {r.name}"
        if r.name not in own:
            judged.append(Result(name, r.status, r.detail, r.items))
        elif r.status == FAIL and r.detail.startswith(touched.NOT_RUN):
            # A failure to start the test proves nothing of the change.
            judged.append(Result(name, FAIL, f"did not run on the control: {r.detail}"))
        elif r.status == FAIL:
            judged.append(
                Result(name, PASS, f"fails without the change, as it must: {r.detail}")
            )
        elif r.status == PASS:
            judged.append(
                Result(name, FAIL, "passed without the change: the test proves nothing")
            )
        else:
            judged.append(Result(name, FAIL, f"not run on the control: {r.detail}"))
    return judged


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _keepable(results: list[Result]) -> bool:
    """Check results worth keeping for the same inputs: none failed, and
    none made without the generation base for a reason of the moment (it
    did not download, or another base stood in for it: once it is back,
    the check must be made on it)."""
    return not any(
        r.status == FAIL
        or (r.status == SKIP and r.detail.startswith(check.NO_ORIGIN))
        or check.STAND_IN in r.detail
        for r in results
    )


def patch_mails(directory: Path) -> list[Mail]:
    """The mails of patches/vN; at least one must be a patch."""
    mails = [read_mail(p.absolute()) for p in sorted(directory.glob("*.patch"))]
    if all(m.is_cover for m in mails):
        raise UsageError(
            f"{directory} holds no patches", "run 'qseries generate' first"
        )
    return mails


def _results_from_json(data: dict[str, object]) -> list[Result] | None:
    rows = data["results"]
    if not isinstance(rows, list):
        return None
    status = {"pass": PASS, "fail": FAIL, "skip": SKIP}
    return [
        Result(
            str(r["name"]), status[str(r["status"])], str(r["detail"]), list(r["items"])
        )
        for r in rows
    ]


def run(request: Request, workdir: WorkDir) -> Outcome:
    pipeline = Pipeline(request, workdir)
    try:
        return pipeline.run()
    finally:
        pipeline.close()


def scratch_in_workdir(workdir: WorkDir) -> None:
    """Make the tests we start (qtests, QEMUs) keep their files and
    sockets in the work dir rather than in the system's /tmp.

    WORKDIR/tmp/tests is emptied first: a test case that fails aborts
    before it can remove its scratch directories.
    """
    scratch = workdir.path / "tmp" / "tests"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    os.environ["TMPDIR"] = str(scratch)
