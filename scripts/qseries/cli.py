"""The qseries command line."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from . import bench as bench_mod
from . import build as build_mod
from . import check, generators, handoff, report, testing
from . import generate as gen
from . import series as series_mod
from . import trailers as trailers_mod
from .errors import EXIT_FAILED, QSeriesError, SourceError, UsageError
from .source import BaseTree, SourceSpec, WorkDir, get_base, say
from .workdir import WorkDirLock, check_directory, first_existing

# What `build` and `test` put on top of the base.
WHAT = ("series", "control", "base")


def _add_base_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("base tree (default: Debian's qemu source package)")
    g.add_argument(
        "--base-version",
        metavar="V",
        help="exactly this Debian qemu version (e.g. 10.0.13 or "
        "1:10.0.13+ds-0+deb13u1)",
    )
    g.add_argument(
        "--tree",
        type=Path,
        metavar="PATH",
        help="your QEMU git checkout (read only: qseries clones it)",
    )
    g.add_argument("--git", dest="git_url", metavar="URL", help="clone URL")
    g.add_argument("--ref", dest="git_ref", metavar="REF", help="with --git")
    g.add_argument(
        "--refresh", action="store_true", help="re-read the Debian package index now"
    )


# A Debian version (1:10.0.13+ds-0+deb13u1) or a QEMU version or prefix
# of one (10.0, 10.0.13).
BASE_VERSION = re.compile(r"(?:\d+:)?\d+(?:\.\d+){0,2}(?:[+~-][A-Za-z0-9.+~-]*)?")


def _spec(args: argparse.Namespace) -> SourceSpec:
    if args.base_version is not None and not BASE_VERSION.fullmatch(args.base_version):
        raise UsageError(
            f"--base-version {args.base_version!r} is not a version",
            "write it like 10.0, 10.0.13 or 1:10.0.13+ds-0+deb13u1",
        )
    return SourceSpec(
        base_version=args.base_version,
        tree=args.tree,
        git_url=args.git_url,
        git_ref=args.git_ref,
        refresh=args.refresh,
    )


def _load(args: argparse.Namespace) -> series_mod.Series:
    return series_mod.load(args.series_file, generators.specs())


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def cmd_source(args: argparse.Namespace, workdir: WorkDir) -> int:
    series = _load(args)
    version = series.version(args.series)
    base = get_base(workdir, _spec(args), version.base)
    if args.json:
        _print_json(base.to_json())
    else:
        print(f"base:   {base.describe()}")
        print(f"commit: {base.commit}")
        print(f"path:   {base.root}")
    return 0


def _patches_dir(args: argparse.Namespace, version: series_mod.Version) -> Path:
    root: Path = args.output or args.series_file.parent / "patches"
    return root / version.name


def cmd_generate(args: argparse.Namespace, workdir: WorkDir) -> int:
    series = _load(args)
    version = series.version(args.series)
    dest = _patches_dir(args, version)
    _check_output(dest)
    base: BaseTree = get_base(workdir, _spec(args), version.base)
    say(f"generating {version.name} on {base.describe()}")
    result, tmp = gen.generate(series, version, base, workdir)
    installed = gen.install(tmp, dest, version)
    changes = list(installed.changes)
    for name in installed.foreign:
        say(f"left alone in {dest}: {name} (not written by qseries)")
    if args.json:
        _print_json(
            {
                "version": version.name,
                "base": base.to_json(),
                "tip": result.tip,
                "directory": str(dest),
                "files": [f.name for f in result.files],
                "changed": changes,
                "foreign": list(installed.foreign),
                "to": list(result.to),
                "cc": list(result.cc),
            }
        )
    else:
        for f in result.files:
            print(dest / f.name)
        for change in changes:
            if change.startswith("removed "):
                print(change)
        print(
            f"{len(changes)} file(s) changed in {dest}"
            if changes
            else f"{dest} is up to date"
        )
    return 0


def _check_output(dest: Path) -> None:
    """Refuse an --output that cannot hold DIR/vN before any work is done."""
    blocker = first_existing(dest)
    if not blocker.is_dir():
        raise UsageError(
            f"{blocker} is a file, not a directory",
            "pass --output a directory (qseries writes DIR/vN/*.patch)",
        )


def cmd_check(args: argparse.Namespace, workdir: WorkDir) -> int:
    series = _load(args)
    version = series.version(args.series)
    spec = _spec(args)
    mbox = args.mbox
    patches = None if mbox else _patches_dir(args, version)
    results = check.run_checks(series, version, spec, workdir, patches, mbox)
    if args.json:
        _print_json(report.to_json(results))
    else:
        print(report.table(results))
    return 0 if report.passed(results) else 1


def _read_mails(
    args: argparse.Namespace, version: series_mod.Version
) -> list[check.Mail]:
    """The version's mails in patches/vN; at least one must be a patch."""
    directory = _patches_dir(args, version)
    mails = [check.read_mail(p.absolute()) for p in sorted(directory.glob("*.patch"))]
    if all(m.is_cover for m in mails):
        raise UsageError(
            f"{directory} holds no patches", "run 'qseries generate' first"
        )
    return mails


def _series_mails(
    args: argparse.Namespace, version: series_mod.Version
) -> tuple[check.Mail | None, list[Path]]:
    """The version's cover letter (if any) and its patches."""
    mails = _read_mails(args, version)
    patches = [m.path for m in mails if not m.is_cover]
    return next((m for m in mails if m.is_cover), None), patches


def _origin(
    cover: check.Mail | None,
    base: BaseTree,
    workdir: WorkDir,
    version: series_mod.Version,
) -> BaseTree | None:
    """The base the mails were generated on, so that a backport applies
    with its objects at hand; None when it cannot be had."""
    try:
        return check.generation_base(cover, base, workdir, version)
    except SourceError as err:
        say(f"applying without the generation base: {err}")
        return None


def _qtest_targets(tree: Path, version: series_mod.Version) -> list[str]:
    """QEMU and the qtests of this tree that test runs."""
    names = (version.test.qtest, *testing.QEMU_QTESTS)
    return [build_mod.QEMU_TARGET] + [
        f"tests/qtest/{n}"
        for n in names
        if (tree / "tests" / "qtest" / f"{n}.c").exists()
    ]


def _series_patches(
    args: argparse.Namespace, version: series_mod.Version
) -> list[Path]:
    return _series_mails(args, version)[1]


def _build(
    args: argparse.Namespace, workdir: WorkDir, what: str, qemu: bool = True
) -> tuple[BaseTree, build_mod.Build]:
    series = _load(args)
    version = series.version(args.series)
    base = get_base(workdir, _spec(args), version.base)
    cover, patches = _series_mails(args, version) if what != "base" else (None, [])
    if what == "control":
        patches = [p for p in patches if testing.adds_qtest(p)]
        if not patches:
            raise UsageError(f"{version.name} has no patch adding a qtest")
    commit = build_mod.compose(
        base, patches, workdir, _origin(cover, base, workdir, version)
    )
    tree = build_mod.checkout(base, commit, workdir)
    targets = _qtest_targets(tree, version)
    if not qemu:
        targets.remove(build_mod.QEMU_TARGET)
    if what != "base":
        targets += version.test.targets
    say(f"building the {what} of {version.name} on {base.describe()}")
    return base, build_mod.build(base, commit, workdir, targets)


def cmd_diff(args: argparse.Namespace, workdir: WorkDir) -> int:
    series = _load(args)
    old, new = series.version(args.old), series.version(args.new)
    base = get_base(workdir, _spec(args), new.base)
    say(f"comparing {old.name} with {new.name} on {base.describe()}")
    text = handoff.range_diff(series, old, new, base, workdir, sys.stdout.isatty())
    if args.json:
        _print_json(
            {
                "old": old.name,
                "new": new.name,
                "base": base.to_json(),
                "range-diff": text,
            }
        )
    else:
        print(text)
    return 0


def cmd_export(args: argparse.Namespace, workdir: WorkDir) -> int:
    series = _load(args)
    version = series.version(args.series)
    handoff.check_target(args.repo, args.branch)
    base = get_base(workdir, _spec(args), version.base)
    done = handoff.export(series, version, base, workdir, args.repo, args.branch)
    if args.json:
        _print_json(
            {
                "repo": str(done.repo),
                "branch": done.branch,
                "tip": done.tip,
                "commits": list(done.commits),
            }
        )
        return 0
    print(f"{version.name} on {base.describe()}: branch '{done.branch}' of {done.repo}")
    for line in done.commits:
        print(f"  {line}")
    return 0


def cmd_send(args: argparse.Namespace, workdir: WorkDir) -> int:
    series = _load(args)
    version = series.version(args.series)
    mails = _read_mails(args, version)
    sender = args.sender or str(version.author)
    sent = handoff.send(
        series, version, mails, sender, args.really_send, workdir.sub("tmp")
    )
    if args.json:
        _print_json(
            {
                "version": version.name,
                "really": sent.really,
                "from": sent.sender,
                "to": list(sent.to),
                "cc": list(sent.cc),
                "in-reply-to": sent.in_reply_to,
                "output": sent.output,
            }
        )
        return 0
    print(sent.output)
    how = "sent" if sent.really else "dry run (nothing sent; --really-send sends)"
    reply = f", in reply to {sent.in_reply_to}" if sent.in_reply_to else ""
    print(f"{version.name}: {len(mails)} mails from {sent.sender}{reply}: {how}")
    if sent.really:
        print(
            f"record the cover letter's Message-Id as versions.{version.name}."
            "message-id in series.yaml: the next version replies to it"
        )
    return 0


def _bisect(
    args: argparse.Namespace, workdir: WorkDir, version: series_mod.Version
) -> tuple[list[report.Result], str]:
    """The tree builds after each patch of the series but the last: that
    one is the series itself, which test builds next.  Returns the results
    and the name of the last step."""
    base = get_base(workdir, _spec(args), version.base)
    cover, patches = _series_mails(args, version)
    origin = _origin(cover, base, workdir, version)
    results = []
    for step in build_mod.bisect(
        base, patches, workdir, lambda tree: _qtest_targets(tree, version), origin
    ):
        mail = check.read_mail(step.patch)
        name = f"bisect {step.k}/{step.total}"
        if step.ok:
            results.append(
                report.Result(
                    name,
                    report.PASS,
                    f"builds after '{mail.subject}' ({step.steps} ninja steps)",
                )
            )
        else:
            results.append(
                report.Result(
                    name,
                    report.FAIL,
                    f"does not build after patch {step.k} '{mail.subject}'",
                    [*step.errors[: build_mod.ERRORS_SHOWN], f"log: {step.log}"],
                )
            )
    last = check.read_mail(patches[-1]).subject
    return results, f"bisect {len(patches)}/{len(patches)}: '{last}'"


def cmd_trailers(args: argparse.Namespace, workdir: WorkDir) -> int:
    series = _load(args)
    with tempfile.TemporaryDirectory(dir=workdir.sub("tmp")) as tmp:
        mbx = trailers_mod.am_ready(args.mbox, workdir, Path(tmp))
        collected = trailers_mod.collect(
            series, mbx, lambda version: _patches_dir(args, version)
        )
    new, diff = trailers_mod.write(series, collected)
    for patch in collected.patches:
        if patch.changed and patch.new:
            say(
                f"{collected.version.name} patch {patch.number} '{patch.subject}' "
                f"changed since it was mailed: not copied: {', '.join(patch.new)}"
            )
    if diff:
        series.path.write_text(new, encoding="utf-8")
    if args.json:
        _print_json(
            {
                "version": collected.version.name,
                "patches": [
                    {
                        "number": p.number,
                        "subject": p.subject,
                        "tags": list(p.tags),
                        "new": list(p.new),
                        "changed": p.changed,
                        "copied": bool(p.new) and not p.changed,
                    }
                    for p in collected.patches
                ],
                "diff": diff,
            }
        )
    elif diff:
        print(diff, end="")
    else:
        print(f"{collected.version.name}: no new trailers to copy")
    return 0


def cmd_build(args: argparse.Namespace, workdir: WorkDir) -> int:
    _, built = _build(args, workdir, args.what)
    if args.json:
        _print_json(built.to_json())
    else:
        print(f"qemu:  {built.qemu}")
        print(f"steps: {built.steps} ninja steps in {built.seconds:.1f} s")
        print(f"log:   {built.log}")
    return 0


def _scratch_in_workdir(workdir: WorkDir) -> None:
    """Make the tests we start (qtests, pytest) keep their files and
    sockets in the work dir rather than in the system's /tmp.

    WORKDIR/tmp/tests is emptied first: a test case that fails aborts
    before it can remove its scratch directories.
    """
    scratch = workdir.path / "tmp" / "tests"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    os.environ["TMPDIR"] = str(scratch)


def cmd_test(args: argparse.Namespace, workdir: WorkDir) -> int:
    _scratch_in_workdir(workdir)
    repo = args.series_file.absolute().parent
    fake = testing.build_fake(repo, workdir)
    what = "control" if args.control else "series"
    version = _load(args).version(args.series)
    plan = version.test
    bisecting = args.bisect and not args.control and args.qemu is None
    bisected, last = _bisect(args, workdir, version) if bisecting else ([], "")
    _, built = _build(args, workdir, what, qemu=args.qemu is None)
    if bisecting:
        name, subject = last.split(": ", 1)
        bisected.append(
            report.Result(
                name,
                report.PASS,
                f"builds after {subject}: the whole series ({built.steps} ninja steps)",
            )
        )
    qemu = args.qemu.absolute() if args.qemu else built.qemu
    binary = built.qtest(plan.qtest)
    # The fake qseries builds, for a qtest that takes it from the
    # environment; a patch that carries its own is found by its qtest.
    qtest_fake = fake if plan.preload == "env" else None
    say(f"testing {version.name}: {plan.qtest}")
    runs = testing.series_qtest(binary, qemu, qtest_fake)
    if args.control:
        results = testing.expect_control(runs, plan)
    else:
        results = bisected + testing.expect_pass(runs)
        if args.mutations and args.qemu is None:
            results += testing.run_mutations(
                plan, built.tree, built.builddir, qemu, qtest_fake, built.log
            )
        results += testing.qemu_qtests(built.builddir, qemu)
        if args.qemu is None:
            results.append(testing.qemu_runner(built.builddir, plan))
    results.append(
        testing.qmp_tests(
            repo,
            args.series_file.absolute(),
            version,
            qemu,
            fake,
            args.control,
            workdir.sub("tmp"),
        )
    )
    if args.json:
        _print_json(report.to_json(results))
    else:
        print(report.table(results, tests=True))
    return 0 if report.passed(results) else 1


def cmd_bench(args: argparse.Namespace, workdir: WorkDir) -> int:
    _scratch_in_workdir(workdir)
    series = _load(args)
    version = series.version(args.series)
    base = get_base(workdir, _spec(args), version.base)
    patches = _series_patches(args, version)
    control = build_mod.compose(
        base, [p for p in patches if testing.adds_qtest(p)], workdir
    )
    full = build_mod.compose(base, patches, workdir)
    repo = args.series_file.absolute().parent
    fake = testing.build_fake(repo, workdir)
    figures = bench_mod.Figures({"base": base.describe(), "series": version.name})
    plan = version.test
    targets = [build_mod.QEMU_TARGET, f"tests/qtest/{plan.qtest}", *plan.targets]
    qtest_fake = fake if plan.preload == "env" else None

    if not args.skip_cold:
        bench_mod.cold_build(base, full, workdir, figures)

    bench_mod.incremental(
        base, control, full, workdir, targets, plan.qtest, qtest_fake, figures
    )
    built = build_mod.build(base, control, workdir, targets)
    unpatched = built.builddir / f"{build_mod.QEMU_TARGET}-unpatched"
    unpatched.write_bytes(built.qemu.read_bytes())
    unpatched.chmod(0o755)
    built = build_mod.build(base, full, workdir, targets)
    figures.add(
        "qtest_run_s",
        round(
            bench_mod.qtest_seconds(built.qtest(plan.qtest), built.qemu, qtest_fake),
            2,
        ),
    )
    tmpdir = workdir.sub("tmp")
    bench_mod.prepare_lead(
        built.qemu, fake, version.wire, args.delay_ms, tmpdir, figures
    )
    bench_mod.stop_cont_ratio(built.qemu, unpatched, fake, args.cycles, tmpdir, figures)
    out = args.json_file or workdir.path / "bench.json"
    out.write_text(json.dumps(figures.values, indent=2, sort_keys=True) + "\n")
    if args.json:
        _print_json(figures.values)
        return 0
    width = max(len(k) for k in figures.values)
    for key, value in figures.values.items():
        print(f"{key:<{width}}  {value}")
    print(f"written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qseries",
        description="Carry a QEMU patch series from series.yaml to checked mails.",
    )
    parser.add_argument(
        "--series-file",
        type=Path,
        default=Path("series.yaml"),
        metavar="PATH",
        help="the series (default: ./series.yaml)",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="where qseries keeps trees and caches "
        "(default: $QSERIES_WORKDIR or ~/.cache/qseries)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show a traceback on errors"
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="fail at once, rather than wait, when another run holds the work dir",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, summary: str, func: Callable[..., int], output: str | None = "read"
    ) -> argparse.ArgumentParser:
        """A subcommand with the options all of them share."""
        p = sub.add_parser(name, help=summary)
        p.add_argument("--json", action="store_true", help="print JSON")
        if output:
            p.add_argument(
                "--output",
                type=Path,
                metavar="DIR",
                help=f"{output} DIR/vN instead of patches/vN",
            )
        _add_base_options(p)
        p.set_defaults(func=func)
        return p

    p = command(
        "source", "get a QEMU base tree and print where it is", cmd_source, output=None
    )
    p.add_argument("--series", metavar="vN", help="version whose base range applies")

    p = command(
        "generate", "generate patches/vN from series.yaml", cmd_generate, output="write"
    )
    p.add_argument("--series", metavar="vN", help="version (default: newest)")

    p = command("check", "check a series with QEMU's own checkers", cmd_check)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--series", metavar="vN", help="patches/vN (default: newest)")
    what.add_argument("--mbox", type=Path, metavar="FILE", help="a mailed series")

    p = command("diff", "git range-diff between two versions", cmd_diff, output=None)
    p.add_argument("old", metavar="vA", help="the older version")
    p.add_argument("new", metavar="vB", help="the newer version")

    p = command(
        "export",
        "the series as commits on a new branch of your repository",
        cmd_export,
        output=None,
    )
    p.add_argument("--series", metavar="vN", help="version (default: newest)")
    p.add_argument(
        "--repo", type=Path, required=True, metavar="DIR", help="a git repository"
    )
    p.add_argument(
        "--branch", required=True, metavar="NAME", help="a branch it does not have"
    )

    p = command("send", "git send-email of the generated mails (a dry run)", cmd_send)
    p.add_argument("--series", metavar="vN", help="patches/vN (default: newest)")
    p.add_argument(
        "--from",
        dest="sender",
        metavar="ID",
        help="'Name <addr>' to send as (default: the version's author); it "
        "must have signed off every patch",
    )
    p.add_argument(
        "--really-send", action="store_true", help="send, rather than a dry run"
    )

    p = command(
        "trailers",
        "copy review trailers from a mailed thread into series.yaml (b4)",
        cmd_trailers,
    )
    p.add_argument(
        "--mbox", type=Path, required=True, metavar="FILE", help="the thread"
    )

    p = command("build", "configure and build QEMU with the series", cmd_build)
    p.add_argument("--series", metavar="vN", help="patches/vN (default: newest)")
    p.add_argument(
        "--what",
        choices=WHAT,
        default="series",
        help="the whole series (default), only its qtest (the negative "
        "control), or the bare base",
    )

    p = command("test", "prove the event order on real QEMU processes", cmd_test)
    p.add_argument("--series", metavar="vN", help="patches/vN (default: newest)")
    p.add_argument(
        "--control",
        action="store_true",
        help="run on the base with only the test patch: the cases that "
        "need the prepare notice must fail for lack of it",
    )
    p.add_argument(
        "--qemu",
        type=Path,
        metavar="PATH",
        help="test this QEMU binary instead of the one built",
    )
    p.add_argument(
        "--no-bisect",
        dest="bisect",
        action="store_false",
        help="skip building the tree after each patch of the series",
    )
    p.add_argument(
        "--no-mutations",
        dest="mutations",
        action="store_false",
        help="skip the version's mutations (the change broken on purpose, to "
        "see the qtest fail)",
    )

    p = command("bench", "measure builds, test runs and event timing", cmd_bench)
    p.add_argument("--series", metavar="vN", help="patches/vN (default: newest)")
    p.add_argument(
        "--cycles",
        type=int,
        default=50,
        help="stop/cont cycles per round, 4 rounds each side (default 50)",
    )
    p.add_argument(
        "--delay-ms",
        type=int,
        default=300,
        help="delay injected into PRE_COPY>PRE_COPY_P2P for the lead of the "
        "prepare notice (default 300)",
    )
    p.add_argument(
        "--skip-cold",
        action="store_true",
        help="skip the cold build (about 3 minutes on 2 cores)",
    )
    p.add_argument(
        "--json-file",
        type=Path,
        metavar="FILE",
        help="where to write the figures (default: WORKDIR/bench.json)",
    )
    return parser


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    if isinstance(err, subprocess.TimeoutExpired):
        return f"{' '.join(map(str, err.cmd))[:200]} timed out after {err.timeout} s"
    if isinstance(err, subprocess.CalledProcessError):
        return f"{' '.join(map(str, err.cmd))[:200]} exited with {err.returncode}"
    return str(err) or type(err).__name__


# Exit codes beyond errors.py's: a reader that went away (as git does
# when killed by SIGPIPE) and a bug in qseries itself (sysexits' EX_SOFTWARE).
EXIT_PIPE = 141
EXIT_BUG = 70


def _quiet_stdout() -> None:
    """After a broken pipe: let Python's final flush of stdout go nowhere."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    # Whatever the locale says the terminal takes (PYTHONIOENCODING=ascii,
    # LC_ALL=C), a name with an accent must not end the run.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        workdir = WorkDir.default(args.workdir)
        check_directory(workdir.path, "--workdir")
        with WorkDirLock(workdir.path, f"qseries {args.command}") as lock:
            lock.acquire(wait=not args.no_wait, notify=say)
            code: int = args.func(args, workdir)
            sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Whoever read our output (`--json | head`) has what it wanted.
        _quiet_stdout()
        return EXIT_PIPE
    except QSeriesError as err:
        if args.debug:
            traceback.print_exc()
        print(f"qseries: error: {err}", file=sys.stderr)
        return err.exit_code
    except (OSError, subprocess.SubprocessError, RuntimeError, TimeoutError) as err:
        # Failures of the system rather than of qseries' input: still one
        # line, with what failed.
        if args.debug:
            traceback.print_exc()
        print(f"qseries: error: {_describe(err)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("qseries: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: still one line, the traceback on demand
        if args.debug:
            traceback.print_exc()
        print(
            f"qseries: internal error: {type(err).__name__}: {_describe(err)}; "
            "this is a bug in qseries: rerun with --debug and report it",
            file=sys.stderr,
        )
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
