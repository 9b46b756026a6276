"""Every command of qseries, as the stages it asks for (graph.py) and
the view of what they found (views.py).

A command runs through the one Pipeline (stages.py): the stages it
names, and those they need, in the graph's order.  What is particular
to a command is only its options (a small typed record below), the
step of the stage named after it, and which view it shows.  The
command line builds a Request and calls `run`; `plan` says what `run`
would execute, without running it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ..core import generators
from ..core import series as series_mod
from ..ground import atomic, proc, runs
from ..ground import sandbox as sandbox_mod
from ..ground.console import say
from ..ground.errors import UsageError
from ..ground.workdir import (
    WorkDir,
    WorkDirLock,
    check_directory,
    check_output,
    check_workdir,
    first_existing,
    prepare,
)
from ..mail import handoff
from ..mail import trailers as trailers_mod
from ..qemu import build as build_mod
from ..qemu import generate as gen
from ..qemu import testing
from ..reports import report
from . import b4check, ci, graph, importing, views
from . import bench as bench_mod
from . import clean as clean_mod
from . import lab as lab_mod
from . import matrix as matrix_mod
from .graph import BUILD, Stage
from .stages import (
    Outcome,
    Pipeline,
    Request,
    options,
    patch_mails,
    scratch_in_workdir,
    targets_of,
)

# -- the options of each command -------------------------------------------


@dataclass(frozen=True)
class Diff:
    old: str
    new: str


@dataclass(frozen=True)
class Export:
    repo: Path
    branch: str


@dataclass(frozen=True)
class Send:
    sender: str | None
    really: bool


@dataclass(frozen=True)
class Trailers:
    mbox: Path


@dataclass(frozen=True)
class Build:
    what: str  # series, control or base


@dataclass(frozen=True)
class Reproduce:
    keep_bases: int


@dataclass(frozen=True)
class Clean:
    everything: bool
    keep_bases: int
    dry_run: bool


@dataclass(frozen=True)
class Matrix:
    stages: frozenset[str]  # what runs on each base
    trees: tuple[Path, ...]
    debian: bool
    refresh: bool


@dataclass(frozen=True)
class Bench:
    stages: frozenset[str]  # what the measured runs run
    skip_cold: bool
    reproduce: bool
    json_file: Path | None


@dataclass(frozen=True)
class CiGitlab:
    output: Path | None
    force: bool
    stdout: bool


@dataclass(frozen=True)
class B4Check:
    per_patch: bool
    tree: Path  # the reviewer's checkout, where b4 runs the command


# -- the commands ------------------------------------------------------------

Runner = Callable[[Request, WorkDir], views.View]


@dataclass(frozen=True)
class Command:
    name: str
    run: Runner


def _run(
    request: Request,
    workdir: WorkDir,
    steps: Mapping[str, Callable[[Pipeline], object]],
) -> tuple[Pipeline, dict[str, object]]:
    """The request's stages on one Pipeline; the products of the steps
    given here (by stage name)."""
    run = Pipeline(request, workdir)
    products: dict[str, object] = {}

    def bind(name: str, step: Callable[[Pipeline], object]) -> Callable[[], object]:
        def call() -> object:
            products[name] = step(run)
            return products[name]

        return call

    try:
        run.run({name: bind(name, step) for name, step in steps.items()})
    finally:
        run.close()
    return run, products


def _own_stage(
    request: Request,
    workdir: WorkDir,
    name: str,
    step: Callable[[Pipeline], views.View],
) -> views.View:
    """Run the request, whose own stage name's step makes the view."""
    _, products = _run(request, workdir, {name: step})
    view = products.get(name)
    if view is None:
        raise RuntimeError(f"qseries {request.command}: its stage {name} did not run")
    return view  # type: ignore[return-value]


def source(request: Request, workdir: WorkDir) -> views.View:
    run, _ = _run(request, workdir, {})
    assert run.outcome.base is not None
    return views.Source(run.outcome.base)


def patches_dir(request: Request, version: series_mod.Version) -> Path:
    root = request.patches_root or request.series_file.parent / "patches"
    return root / version.name


def check_patches_dest(dest: Path) -> None:
    """Refuse an --output that cannot hold DIR/vN before any work is done."""
    blocker = first_existing(dest)
    if not blocker.is_dir():
        raise UsageError(
            f"{blocker} is a file, not a directory",
            "pass --output a directory (qseries writes DIR/vN/*.patch)",
        )


def generate(request: Request, workdir: WorkDir) -> views.View:
    series = series_mod.load(request.series_file, generators.specs())
    version = series.version(request.version)
    dest = patches_dir(request, version)
    check_patches_dest(dest)

    def step(run: Pipeline) -> views.Generate:
        base = run.base()
        say(f"generating {version.name} on {base.describe()}")
        result, tmp = gen.generate(run.series, version, base, workdir)
        installed = gen.install(tmp, dest, version)
        for name in installed.foreign:
            say(f"left alone in {dest}: {name} (not written by qseries)")
        return views.Generate(version.name, base, result, installed, dest)

    return _own_stage(request, workdir, "generate", step)


def check(request: Request, workdir: WorkDir) -> views.View:
    run, _ = _run(request, workdir, {})
    return views.Checks(run.outcome.results)


def diff(request: Request, workdir: WorkDir) -> views.View:
    versions = options(request, Diff)

    def step(run: Pipeline) -> views.RangeDiff:
        old = run.series.version(versions.old)
        new = run.series.version(versions.new)
        base = run.base()
        say(f"comparing {old.name} with {new.name} on {base.describe()}")
        text = handoff.range_diff(
            run.series, old, new, base, workdir, sys.stdout.isatty()
        )
        return views.RangeDiff(old.name, new.name, base, text)

    # Both versions are known before any base is fetched.
    series = series_mod.load(request.series_file, generators.specs())
    series.version(versions.old)
    # The newer version's base is the one both are compared on.
    request = replace(request, version=versions.new)
    return _own_stage(request, workdir, "range-diff", step)


def export(request: Request, workdir: WorkDir) -> views.View:
    target = options(request, Export)
    handoff.check_target(target.repo, target.branch)

    def step(run: Pipeline) -> views.Export:
        base = run.base()
        done = handoff.export(
            run.series, run.version, base, workdir, target.repo, target.branch
        )
        return views.Export(run.version.name, base, done)

    return _own_stage(request, workdir, "export", step)


def send(request: Request, workdir: WorkDir) -> views.View:
    how = options(request, Send)

    def step(run: Pipeline) -> views.Send:
        version = run.version
        mails = patch_mails(run.patches_dir())
        sender = how.sender or str(version.author)
        sent = handoff.send(
            run.series, version, mails, sender, how.really, workdir.sub("tmp")
        )
        return views.Send(version.name, len(mails), sent)

    return _own_stage(request, workdir, "send", step)


def trailers(request: Request, workdir: WorkDir) -> views.View:
    thread = options(request, Trailers)

    def step(run: Pipeline) -> views.Trailers:
        collected, text = trailers_mod.update(
            run.series,
            thread.mbox,
            workdir,
            lambda version: patches_dir(request, version),
        )
        name = collected.version.name
        for patch in collected.patches:
            if patch.changed and patch.new:
                say(
                    f"{name} patch {patch.number} '{patch.subject}' changed since "
                    f"it was mailed: not copied: {', '.join(patch.new)}"
                )
        for tag, sender in collected.for_others:
            say(
                f"{name}: not copied: '{tag}': the reply from {sender} gives it "
                "for someone else (b4 takes a tag only from the person it "
                "names; add it by hand once they confirm it)"
            )
        return views.Trailers(collected, text)

    return _own_stage(request, workdir, "trailers", step)


def build(request: Request, workdir: WorkDir) -> views.View:
    what = options(request, Build).what

    def step(run: Pipeline) -> views.Built:
        built = run.build(what)
        # What the series' lab builds besides (for the fake device's lab,
        # what the QMP tests run on).
        products = run.prover.products() if run.prover else {}
        return views.Built(run.version.name, request.series_file, built, products)

    return _own_stage(request, workdir, BUILD, step)


def test(request: Request, workdir: WorkDir) -> views.View:
    if request.qemu is not None:
        testing.check_qemu(request.qemu)
    scratch_in_workdir(workdir)
    run, _ = _run(request, workdir, {})
    return views.Checks(run.outcome.results, tests=True)


def reproduce(request: Request, workdir: WorkDir) -> views.View:
    keep = options(request, Reproduce).keep_bases
    scratch_in_workdir(workdir)
    said: list[str] = []

    def bound(run: Pipeline) -> None:
        clean_mod.bound(workdir, keep)
        said.append(clean_mod.size_line(workdir))

    run, _ = _run(request, workdir, {"bound": bound})
    outcome = run.outcome
    directory = outcome.report_dir
    assert directory is not None
    lines = [report.table(outcome.results, tests=True), ""]
    for phase in outcome.phases:
        reused = f"  (reused {phase.reused})" if phase.reused else ""
        lines.append(f"{phase.name:<24} {phase.seconds:7.1f} s{reused}")
    lines += outcome.facts
    verdict = "passed" if outcome.passed else "FAILED"
    lines.append(f"{outcome.to_report().title}: {verdict}; reports in {directory}")
    return views.Reproduced(
        lines, (directory / "report.json").read_text(), outcome.passed, said
    )


def clean(request: Request, workdir: WorkDir) -> views.View:
    how = options(request, Clean)
    found: list[views.Cleaned] = []

    def step() -> None:
        series = None
        if request.series_file.exists():
            series = series_mod.load(request.series_file, generators.specs())
        elif not how.everything:
            say(f"no {request.series_file}: bases are kept by last use only")
        removals = clean_mod.plan(
            workdir, how.keep_bases, series, everything=how.everything
        )
        if not how.dry_run:
            clean_mod.remove(removals)
        total = sum(r.bytes for r in removals)
        done = "would remove" if how.dry_run else "removed"
        lines = [
            f"{done} {r.path} ({clean_mod.human(r.bytes)}): {r.why}" for r in removals
        ]
        lines.append(f"{done} {len(removals)} paths, {clean_mod.human(total)}")
        size = clean_mod.size_line(workdir)
        lines.append(size.replace(" (qseries clean removes more)", ""))
        found.append(
            views.Cleaned(
                how.dry_run,
                [r.to_json() for r in removals],
                lines,
                total,
                clean_mod.disk_usage(workdir.path),
            )
        )

    # The one command with no series to read: the work dir is its input.
    graph.execute(graph.GENERIC.order({"clean"}), {"clean": step})
    return found[0]


def matrix(request: Request, workdir: WorkDir) -> views.View:
    how = options(request, Matrix)
    scratch_in_workdir(workdir)
    if not how.debian and not how.trees:
        raise UsageError("--no-debian leaves no base", "add --tree PATH")

    def step(run: Pipeline) -> views.Matrix:
        version = run.version
        trees = [t.absolute() for t in how.trees]
        targets = matrix_mod.bases(workdir, version, trees, how.refresh, how.debian)
        each = replace(request, stages=how.stages, reports=True, reuse=True)
        rows = matrix_mod.run(each, workdir, targets)
        return views.Matrix(
            version.name,
            matrix_mod.passed(rows),
            rows,
            matrix_mod.table(version.name, rows),
        )

    return _own_stage(request, workdir, "matrix", step)


def bench(request: Request, workdir: WorkDir) -> views.View:
    how = options(request, Bench)
    scratch_in_workdir(workdir)

    def step(run: Pipeline) -> views.Lines:
        measured = replace(request, stages=how.stages)
        # Any series' figures (check and bisect per patch), then its lab's.
        figures: dict[str, object] = dict(bench_mod.run(measured, workdir))
        if run.lab is not None:
            figures |= run.lab.bench(
                measured, workdir, cold=not how.skip_cold, reproduce=how.reproduce
            )
        out = how.json_file or workdir.path / "bench.json"
        atomic.write_text(out, json.dumps(figures, indent=2, sort_keys=True) + "\n")
        width = max(len(k) for k in figures)
        lines = [f"{key:<{width}}  {value}" for key, value in figures.items()]
        lines.append(f"written to {out}")
        return views.Lines(lines, figures)

    return _own_stage(request, workdir, "bench", step)


def ci_gitlab(request: Request, workdir: WorkDir) -> views.View:
    how = options(request, CiGitlab)

    def step(run: Pipeline) -> views.View:
        if how.stdout:
            return views.Raw(ci.gitlab_yaml(run.series))
        path = how.output or request.series_file.parent / ".gitlab-ci.yml"
        changed = ci.write_gitlab(run.series, path, force=how.force)
        line = f"{path} written" if changed else f"{path} is up to date"
        return views.Lines([line], {"path": str(path), "changed": changed})

    return _own_stage(request, workdir, "ci-gitlab", step)


def b4_check(request: Request, workdir: WorkDir) -> views.View:
    how = options(request, B4Check)
    scratch_in_workdir(workdir)
    found: list[b4check.Verdict] = []

    def run_series(one: Request) -> Outcome:
        """The imported series generated, checked, built and tested."""

        def write(run: Pipeline) -> None:
            _, tmp = gen.generate(run.series, run.version, run.base(), workdir)
            gen.install(tmp, patches_dir(one, run.version), run.version)

        run, _ = _run(one, workdir, {"generate": write})
        return run.outcome

    def step() -> None:
        # What b4 gives: the message on stdin, B4_TRACKING_FILE.
        data = sys.stdin.buffer.read()
        found.append(
            b4check.answer(request, workdir, how.tree, how.per_patch, data, run_series)
        )

    # No series to read at first: the one b4 gives is imported.
    graph.execute(graph.GENERIC.order({"b4-check"}), {"b4-check": step})
    return views.B4Verdict(found[0])


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("source", source),
        Command("generate", generate),
        Command("check", check),
        Command("diff", diff),
        Command("export", export),
        Command("send", send),
        Command("trailers", trailers),
        Command("build", build),
        Command("test", test),
        Command("reproduce", reproduce),
        Command("clean", clean),
        Command("matrix", matrix),
        Command("bench", bench),
        Command("ci gitlab", ci_gitlab),
        Command("b4-check", b4_check),
        Command("import", importing.run_import),
        Command("init", importing.run_init),
    )
}

# The stage each command asks for besides those its request names.
OWN_STAGE = {
    "source": graph.SOURCE,
    "generate": "generate",
    "diff": "range-diff",
    "export": "export",
    "send": "send",
    "trailers": "trailers",
    "build": BUILD,
    "reproduce": "bound",
    "clean": "clean",
    "matrix": "matrix",
    "bench": "bench",
    "ci gitlab": "ci-gitlab",
    "b4-check": "b4-check",
    "import": "import",
    "init": "init",
}


def request_for(request: Request) -> Request:
    """The request with the stage of its command added."""
    own = OWN_STAGE.get(request.command)
    if own is None:
        return request
    return replace(request, stages=request.stages | {own})


def run(request: Request, workdir: WorkDir) -> views.View:
    """Run request.command."""
    command = COMMANDS.get(request.command)
    if command is None:
        raise UsageError(f"no command '{request.command}'")
    return command.run(request_for(request), workdir)


def plan(request: Request) -> views.Plan:
    """What run(request) would execute, in order (nothing is run): with
    the stages of the series' lab, where it names one."""
    lab_stages: tuple[Stage, ...] = ()
    # b4-check has no series.yaml: it imports the series b4 gives;
    # import and init write one.
    if request.command not in ("b4-check", "import", "init") and (
        request.command != "clean" or request.series_file.exists()
    ):
        series = series_mod.load(request.series_file, generators.specs())
        if series.lab is not None:
            lab_stages = lab_mod.load(series.lab).stages
    request = request_for(request)
    order = graph.GENERIC.with_lab(lab_stages).order(targets_of(request))
    return views.Plan(
        request.command, [(s.name, s.summary, s.needs, s.lab) for s in order]
    )


@dataclass(frozen=True)
class Session:
    """Where and how a command runs: the work dir asked for (None: the
    default), the user's checkouts it was given (read only), its
    --output, whether to wait for another run's lock, and the paths
    the sandbox must show (a --qemu binary)."""

    workdir: str | None
    checkouts: list[tuple[str, Path]]
    output: Path | None
    wait: bool
    shown: list[Path | None]
    output_option: str = "--output"  # how the command line names it


def run_in_workdir(
    request: Request,
    session: Session,
    before: set[int],
    show: Callable[[views.View], None],
) -> int:
    """Run the request in its work dir, under the work dir's lock, as a
    recorded run, with the series' code sandboxed; show its view; end
    what it left running.  before: the processes that were there first
    (what the run must not end).  The view's exit code."""
    workdir = WorkDir.default(session.workdir)
    # Nothing is written before the work dir and --output are known
    # to be places qseries may write.
    checkouts = session.checkouts
    check_workdir(workdir.path, checkouts)
    check_directory(workdir.path, "--workdir")
    check_output(session.output, workdir.path, checkouts, session.output_option)
    if request.command in build_mod.COMMANDS_THAT_BUILD:
        build_mod.check_build_paths(workdir)
    prepare(workdir.path, say)
    name = f"qseries {request.command}"
    with WorkDirLock(workdir.path, name) as lock:
        lock.acquire(wait=session.wait, notify=say)
        # What a killed run left is ended first; this run is recorded
        # for the next one, should it be killed.  The series' code runs
        # sandboxed, the home and the user's checkouts hidden from it
        # (sandbox.py).
        try:
            with (
                runs.recorded(workdir.path, name, say, lab_mod.throwaway()),
                sandbox_mod.for_run(
                    workdir.path,
                    [p for _, p in checkouts],
                    say,
                    shown=session.shown,
                ),
            ):
                view = run(request, workdir)
                show(view)
                sys.stdout.flush()
                runs.end_leftovers(before, say)
        finally:
            # A run that failed or was stopped: what it left ends
            # before the lock is free for the next run.
            proc.kill_descendants(exclude=before)
    return view.exit_code
