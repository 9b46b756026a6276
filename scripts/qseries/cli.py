"""The qseries command line."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from .ground import proc
from .ground.errors import EXIT_FAILED, QSeriesError, UsageError
from .pipeline import clean as clean_mod
from .pipeline import commands, graph, importing, views
from .pipeline import lab as lab_mod
from .pipeline.stages import Request
from .qemu.source import SourceSpec

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


def _request(args: argparse.Namespace, **more: object) -> Request:
    """The typed request of a command line."""
    fields: dict[str, object] = {
        "series_file": args.series_file,
        "spec": _spec(args) if hasattr(args, "base_version") else SourceSpec(),
        "version": getattr(args, "series", None),
        "patches_root": getattr(args, "output", None),
        "command": args.command_name,
    }
    return Request(**(fields | more))  # type: ignore[arg-type]


def req_source(args: argparse.Namespace) -> Request:
    return _request(args)


def req_generate(args: argparse.Namespace) -> Request:
    return _request(args)


def req_check(args: argparse.Namespace) -> Request:
    return _request(args, mbox=args.mbox, stages=frozenset({graph.CHECK}))


def req_diff(args: argparse.Namespace) -> Request:
    return _request(args, options=commands.Diff(args.old, args.new))


def req_export(args: argparse.Namespace) -> Request:
    return _request(args, options=commands.Export(args.repo, args.branch))


def req_send(args: argparse.Namespace) -> Request:
    return _request(args, options=commands.Send(args.sender, args.really_send))


def req_trailers(args: argparse.Namespace) -> Request:
    return _request(args, options=commands.Trailers(args.mbox))


def req_build(args: argparse.Namespace) -> Request:
    return _request(args, options=commands.Build(args.what))


def _bisect(args: argparse.Namespace) -> list[str]:
    """The stages --no-bisect leaves in."""
    return [graph.BISECT] if args.bisect else []


def req_test(args: argparse.Namespace) -> Request:
    lab_stages, options = lab_mod.choose(args.series_file, args, "test")
    if args.control:
        stages = [graph.CONTROL, *lab_stages]
    else:
        stages = [graph.TEST, *lab_stages, *_bisect(args)]
    return _request(
        args, stages=frozenset(stages), qemu=args.qemu, lab=options, tests=args.tests
    )


def _reproduce_stages(
    args: argparse.Namespace, command: str
) -> tuple[frozenset[str], dict[str, object]]:
    control = [graph.CONTROL] if args.control else []
    lab_stages, options = lab_mod.choose(args.series_file, args, command)
    stages = [graph.CHECK, graph.TEST, *control, *lab_stages, *_bisect(args)]
    return frozenset(stages), options


def req_reproduce(args: argparse.Namespace) -> Request:
    stages, options = _reproduce_stages(args, "reproduce")
    return _request(
        args,
        mbox=args.mbox,
        stages=stages,
        reports=True,
        reuse=True,
        report_dir=args.report_dir.absolute() if args.report_dir else None,
        lab=options,
        tests=args.tests,
        options=commands.Reproduce(args.keep_bases),
    )


def req_clean(args: argparse.Namespace) -> Request:
    return _request(
        args, options=commands.Clean(args.all, args.keep_bases, args.dry_run)
    )


def req_matrix(args: argparse.Namespace) -> Request:
    stages, options = _reproduce_stages(args, "matrix")
    how = commands.Matrix(stages, tuple(args.trees), args.debian, args.refresh)
    return _request(args, lab=options, options=how)


def req_ci_gitlab(args: argparse.Namespace) -> Request:
    how = commands.CiGitlab(args.output, args.force, args.stdout)
    return _request(args, patches_root=None, options=how)


def req_bench(args: argparse.Namespace) -> Request:
    lab_stages, options = lab_mod.choose(args.series_file, args, "bench")
    how = commands.Bench(
        frozenset([graph.TEST, *lab_stages]),
        args.skip_cold,
        args.reproduce,
        args.json_file,
    )
    return _request(args, lab=options, options=how)


def req_import(args: argparse.Namespace) -> Request:
    if args.mbox is None and (args.tree is None or args.range is None):
        raise UsageError(
            "import needs --tree PATH --range BASE..TOPIC, or --mbox FILE",
            "name the branch of your checkout, or the mailed thread",
        )
    if args.mbox is not None and args.range is not None:
        raise UsageError(
            "--range reads a branch and --mbox a thread", "give one of the two"
        )
    how = importing.Import(args.to, args.tree, args.range, args.mbox)
    return _request(args, series_file=args.to / "series.yaml", options=how)


def req_init(args: argparse.Namespace) -> Request:
    how = importing.Init(args.to)
    return _request(args, series_file=args.to / "series.yaml", options=how)


def req_b4_check(args: argparse.Namespace) -> Request:
    how = commands.B4Check(args.per_patch, args.tree)
    return _request(args, spec=SourceSpec(tree=args.tree), options=how)


def _add_stage_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-bisect",
        dest="bisect",
        action="store_false",
        help="skip building the tree after each patch of the series",
    )


def _add_tests_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tests",
        metavar="NAMES",
        help="for a series with no lab: run these of QEMU's tests (comma "
        "separated, as meson names them: qmp-test or qtest-x86_64/qmp-test) "
        "instead of those the change touches",
    )


class _Once(argparse.Action):
    """An option given at most once: a second --series would otherwise
    quietly win over the first."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        old = getattr(namespace, self.dest, None)
        if old is not None:
            # Refused by _check_options, in qseries' one line.
            repeated = getattr(namespace, "repeated", None) or []
            repeated.append(f"{option_string} given twice ({old}, then {values})")
            namespace.repeated = repeated
        setattr(namespace, self.dest, values)


def _check_options(args: argparse.Namespace) -> None:
    """Refuse options that argparse takes but that would not all be
    heeded: a repeated --series (the last would win), and ci gitlab's
    --output beside --stdout (which writes no file)."""
    repeated = getattr(args, "repeated", None)
    if repeated:
        raise UsageError(repeated[0], "give it once")
    if getattr(args, "stdout", False) and getattr(args, "output", None) is not None:
        raise UsageError(
            "--stdout prints the pipeline and writes no file, so --output "
            f"{args.output} would go unheeded",
            "drop one of the two",
        )


def _directory(text: str) -> Path:
    """-C's directory, which must be one (argparse refuses others, exit 2)."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is not a directory")
    return Path(text)


def _count(text: str) -> int:
    """A number of things, 0 or more (argparse refuses others, exit 2)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"'{text}' is not a number 0 or more")
    return int(text)


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
        "-C",
        dest="series_dir",
        type=_directory,
        metavar="SERIESDIR",
        help="the series in SERIESDIR: SERIESDIR/series.yaml, or a relative "
        "--series-file taken from there (as git -C)",
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
        "--plan",
        action="store_true",
        help="print the stages the command would run, in order, and run none",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="fail at once, rather than wait, when another run holds the work dir",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        summary: str,
        func: Callable[[argparse.Namespace], Request],
        output: str | None = "read",
        base: bool = True,
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
        if base:
            _add_base_options(p)
        p.set_defaults(request=func, command_name=name)
        return p

    p = command(
        "source", "get a QEMU base tree and print where it is", req_source, output=None
    )
    p.add_argument(
        "--series", action=_Once, metavar="vN", help="version whose base range applies"
    )

    p = command(
        "generate", "generate patches/vN from series.yaml", req_generate, output="write"
    )
    p.add_argument(
        "--series", action=_Once, metavar="vN", help="version (default: newest)"
    )

    p = command("check", "check a series with QEMU's own checkers", req_check)
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--series", action=_Once, metavar="vN", help="patches/vN (default: newest)"
    )
    what.add_argument("--mbox", type=Path, metavar="FILE", help="a mailed series")

    p = command("diff", "git range-diff between two versions", req_diff, output=None)
    p.add_argument("old", metavar="vA", help="the older version")
    p.add_argument("new", metavar="vB", help="the newer version")

    p = command(
        "export",
        "the series as commits on a new branch of your repository",
        req_export,
        output=None,
    )
    p.add_argument(
        "--series", action=_Once, metavar="vN", help="version (default: newest)"
    )
    p.add_argument(
        "--repo", type=Path, required=True, metavar="DIR", help="a git repository"
    )
    p.add_argument(
        "--branch", required=True, metavar="NAME", help="a branch it does not have"
    )

    p = command("send", "git send-email of the generated mails (a dry run)", req_send)
    p.add_argument(
        "--series", action=_Once, metavar="vN", help="patches/vN (default: newest)"
    )
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
        req_trailers,
    )
    p.add_argument(
        "--mbox", type=Path, required=True, metavar="FILE", help="the thread"
    )

    p = command("build", "configure and build QEMU with the series", req_build)
    p.add_argument(
        "--series", action=_Once, metavar="vN", help="patches/vN (default: newest)"
    )
    p.add_argument(
        "--what",
        choices=WHAT,
        default="series",
        help="the whole series (default), only its qtest (the negative "
        "control), or the bare base",
    )

    p = command("test", "prove the event order on real QEMU processes", req_test)
    p.add_argument(
        "--series", action=_Once, metavar="vN", help="patches/vN (default: newest)"
    )
    p.add_argument(
        "--control",
        action="store_true",
        help="run on the base with only the series' test patches: a test "
        "the series adds must fail there, for lack of the change",
    )
    p.add_argument(
        "--qemu",
        type=Path,
        metavar="PATH",
        help="test this QEMU binary instead of the one built",
    )
    _add_tests_option(p)
    _add_stage_options(p)
    lab_mod.add_options(p, "test")

    p = command(
        "reproduce",
        "the whole pipeline, source to reports: check, bisect, build, test",
        req_reproduce,
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--series", action=_Once, metavar="vN", help="patches/vN (default: newest)"
    )
    what.add_argument("--mbox", type=Path, metavar="FILE", help="a mailed series")
    p.add_argument(
        "--report-dir",
        type=Path,
        metavar="DIR",
        help="where the reports go (default: WORKDIR/reports/SERIES/vN-BASE, "
        "SERIES the folder of series.yaml)",
    )
    _add_tests_option(p)
    _add_stage_options(p)
    p.add_argument(
        "--no-control",
        dest="control",
        action="store_false",
        help="skip the negative control (the tests on the base without the change)",
    )
    lab_mod.add_options(p, "reproduce")
    p.add_argument(
        "--keep-bases",
        type=_count,
        default=clean_mod.KEEP_BASES,
        metavar="N",
        help="keep the trees and builds of the N bases used last (default "
        f"{clean_mod.KEEP_BASES}); older ones are removed at the end",
    )

    p = command(
        "import",
        "a series folder from a branch of your checkout or a mailed thread",
        req_import,
        output=None,
        base=False,
    )
    p.add_argument(
        "--tree",
        type=Path,
        metavar="PATH",
        help="your QEMU git checkout (read only); with --mbox: the checkout "
        "that has the thread's base-commit",
    )
    p.add_argument("--range", metavar="BASE..TOPIC", help="the commits, with --tree")
    p.add_argument("--mbox", type=Path, metavar="FILE", help="a mailed thread (b4)")
    p.add_argument(
        "--to",
        type=Path,
        required=True,
        metavar="SERIESDIR",
        help="the series folder: new, or one import wrote (adds a version)",
    )

    p = command(
        "init",
        "write a commented series.yaml to start a series by hand",
        req_init,
        output=None,
        base=False,
    )
    p.add_argument("to", type=Path, metavar="SERIESDIR", help="a new folder")

    p = command(
        "clean",
        "remove what the work dir keeps of bases no longer used",
        req_clean,
        output=None,
        base=False,
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--all",
        action="store_true",
        help="remove all that qseries made in the work dir (not the lock, "
        "not files it did not make)",
    )
    how.add_argument(
        "--keep-bases",
        type=_count,
        default=clean_mod.KEEP_BASES,
        metavar="N",
        help="keep the N bases used last, if in a version's range (default "
        f"{clean_mod.KEEP_BASES})",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what would go; remove nothing"
    )

    p = command(
        "matrix",
        "reproduce on every base of the version (Debian's QEMU lines, --tree)",
        req_matrix,
        base=False,
    )
    p.add_argument(
        "--series", action=_Once, metavar="vN", help="patches/vN (default: newest)"
    )
    p.add_argument(
        "--tree",
        dest="trees",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="a QEMU git checkout to add to the bases (repeatable; read only)",
    )
    p.add_argument(
        "--no-debian",
        dest="debian",
        action="store_false",
        help="only the --tree bases, not Debian's",
    )
    p.add_argument(
        "--refresh", action="store_true", help="re-read the Debian package index now"
    )
    _add_stage_options(p)
    p.add_argument(
        "--no-control",
        dest="control",
        action="store_false",
        help="skip the negative control",
    )
    lab_mod.add_options(p, "matrix")

    p = sub.add_parser("ci", help="CI pipelines that run the matrix")
    targets = p.add_subparsers(dest="ci_target", required=True, metavar="TARGET")
    g = targets.add_parser(
        "gitlab",
        help="write .gitlab-ci.yml: check each version, then reproduce it on "
        "each of its bases, one job each",
    )
    g.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="where to write (default: .gitlab-ci.yml beside series.yaml)",
    )
    g.add_argument("--force", action="store_true", help="replace a different file")
    g.add_argument(
        "--stdout", action="store_true", help="print it instead (no --output)"
    )
    g.set_defaults(request=req_ci_gitlab, command_name="ci gitlab")

    p = command(
        "bench", "measure check and bisect per patch, and a lab's figures", req_bench
    )
    p.add_argument(
        "--series", action=_Once, metavar="vN", help="patches/vN (default: newest)"
    )
    p.add_argument(
        "--skip-cold",
        action="store_true",
        help="skip the cold builds (about 4 minutes each on 2 cores)",
    )
    p.add_argument(
        "--reproduce",
        action="store_true",
        help="also reproduce cold (an empty work dir) against the same steps "
        "by hand, and warm after a template edit against bare ninja + qtest",
    )
    lab_mod.add_options(p, "bench")
    p.add_argument(
        "--json-file",
        type=Path,
        metavar="FILE",
        help="where to write the figures (default: WORKDIR/bench.json)",
    )

    p = command(
        "b4-check",
        "b4 review's check command: a message on stdin, a JSON verdict out",
        req_b4_check,
        output=None,
        base=False,
    )
    p.add_argument(
        "--per-patch",
        action="store_true",
        help="check the one patch on stdin (checkpatch, the mail's checks); "
        "without it: import the series, check, build and test it",
    )
    p.add_argument(
        "--tree",
        type=Path,
        default=Path("."),
        metavar="PATH",
        help="the reviewer's QEMU checkout, read only (default: the current "
        "directory, where b4 runs the command)",
    )
    return parser


def _describe(err: BaseException) -> str:
    """An error of the system in words: the path(s) it met and its cause,
    without Python's '[Errno N]'."""
    if isinstance(err, OSError) and err.strerror:
        where = " -> ".join(str(n) for n in (err.filename, err.filename2) if n)
        return f"{where}: {err.strerror}" if where else err.strerror
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


def _checkouts(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The user's checkouts the command was given, which qseries only reads."""
    found = [
        ("--tree", getattr(args, "tree", None)),
        ("--repo", getattr(args, "repo", None)),
    ]
    found += [("--tree", tree) for tree in getattr(args, "trees", [])]
    return [(option, path) for option, path in found if path is not None]


def main(argv: Sequence[str] | None = None) -> int:
    # Whatever the locale says the terminal takes (PYTHONIOENCODING=ascii,
    # LC_ALL=C), a name with an accent must not end the run.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.series_dir is not None:
        args.series_file = args.series_dir / args.series_file
    # SIGTERM unwinds as Ctrl-C does.  What our children leave running
    # stays ours (a subreaper) and is ended when the run ends, however it
    # ends: only what this run started, as main may run in-process.
    proc.on_sigterm_raise()
    proc.become_subreaper()
    before = set(proc.descendants())
    code = EXIT_BUG
    try:
        _check_options(args)
        request: Request = args.request(args)
        if args.plan:
            shown = commands.plan(request)
            print(shown.json_text() if getattr(args, "json", False) else shown.text())
            return 0
        json_out = getattr(args, "json", False)

        def show(view: views.View) -> None:
            print(view.json_text() if json_out else view.text())

        session = commands.Session(
            workdir=args.workdir,
            checkouts=_checkouts(args),
            output=getattr(args, "output", None) or getattr(args, "to", None),
            wait=not args.no_wait,
            shown=[getattr(args, "qemu", None)],
            output_option="--to" if getattr(args, "to", None) else "--output",
        )
        code = commands.run_in_workdir(request, session, before, show)
        return code
    except BrokenPipeError:
        # Whoever read our output (`--json | head`) has what it wanted.
        _quiet_stdout()
        code = EXIT_PIPE
        return code
    except QSeriesError as err:
        if args.debug:
            traceback.print_exc()
        print(f"qseries: error: {err}", file=sys.stderr)
        code = err.exit_code
        return code
    except (OSError, proc.SubprocessError, RuntimeError, TimeoutError) as err:
        # Failures of the system rather than of qseries' input: still one
        # line, with what failed.
        if args.debug:
            traceback.print_exc()
        print(f"qseries: error: {_describe(err)}", file=sys.stderr)
        code = EXIT_FAILED
        return code
    except (KeyboardInterrupt, proc.Terminated) as err:
        # A second signal must not cut the cleanup short; the line comes
        # once every child is gone.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        proc.kill_descendants(exclude=before)
        interrupted = isinstance(err, KeyboardInterrupt)
        print(
            f"qseries: {'interrupted' if interrupted else 'terminated'}",
            file=sys.stderr,
        )
        code = 130 if interrupted else 143
        return code
    except Exception as err:  # a bug: still one line, the traceback on demand
        if args.debug:
            traceback.print_exc()
        print(
            f"qseries: internal error: {type(err).__name__}: {_describe(err)}; "
            "this is a bug in qseries: rerun with --debug and report it",
            file=sys.stderr,
        )
        return EXIT_BUG
    finally:
        # The last resort: what ran before the lock was taken.
        proc.kill_descendants(exclude=before)


if __name__ == "__main__":
    sys.exit(main())
