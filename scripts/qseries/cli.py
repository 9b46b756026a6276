"""The qseries command line."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from .core import generators
from .core import series as series_mod
from .core.results import passed
from .ground import atomic, proc, runs
from .ground import sandbox as sandbox_mod
from .ground.console import say
from .ground.errors import EXIT_FAILED, QSeriesError, UsageError
from .ground.workdir import (
    WorkDir,
    WorkDirLock,
    check_directory,
    check_output,
    check_workdir,
    first_existing,
    prepare,
)
from .mail import handoff
from .mail import trailers as trailers_mod
from .pipeline import bench as bench_mod
from .pipeline import ci
from .pipeline import clean as clean_mod
from .pipeline import lab as lab_mod
from .pipeline import matrix as matrix_mod
from .pipeline import stages as pipeline
from .qemu import build as build_mod
from .qemu import generate as gen
from .qemu import testing
from .qemu.source import BaseTree, SourceSpec, get_base
from .reports import report

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


def _request(
    args: argparse.Namespace, *stages: str, **more: object
) -> pipeline.Request:
    """The typed request of a command line."""
    return pipeline.Request(
        series_file=args.series_file,
        spec=_spec(args),
        version=getattr(args, "series", None),
        mbox=getattr(args, "mbox", None),
        patches_root=getattr(args, "output", None),
        stages=frozenset(stages),
        **more,  # type: ignore[arg-type]
    )


def cmd_check(args: argparse.Namespace, workdir: WorkDir) -> int:
    outcome = pipeline.run(_request(args, pipeline.CHECK), workdir)
    results = outcome.results
    if args.json:
        _print_json(report.to_json(results))
    else:
        print(report.table(results))
    return 0 if passed(results) else 1


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
    mails = pipeline.patch_mails(_patches_dir(args, version))
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


def cmd_trailers(args: argparse.Namespace, workdir: WorkDir) -> int:
    series = _load(args)
    collected, diff = trailers_mod.update(
        series, args.mbox, workdir, lambda version: _patches_dir(args, version)
    )
    for patch in collected.patches:
        if patch.changed and patch.new:
            say(
                f"{collected.version.name} patch {patch.number} '{patch.subject}' "
                f"changed since it was mailed: not copied: {', '.join(patch.new)}"
            )
    for tag, sender in collected.for_others:
        say(
            f"{collected.version.name}: not copied: '{tag}': the reply from "
            f"{sender} gives it for someone else (b4 takes a tag only from the "
            "person it names; add it by hand once they confirm it)"
        )
    if args.json:
        _print_json(
            {
                "version": collected.version.name,
                "for_others": [
                    {"tag": tag, "from": sender} for tag, sender in collected.for_others
                ],
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
    run = pipeline.Pipeline(_request(args), workdir)
    built = run.build(args.what)
    # What the series' lab builds besides (for the fake device's lab,
    # what the QMP tests run on).
    products = run.prover.products() if run.prover else {}
    if args.json:
        _print_json(
            {
                **built.to_json(),
                **{name: str(path) for name, path in products.items()},
                "version": run.version.name,
                "series_file": str(run.request.series_file.absolute()),
            }
        )
    else:
        print(f"qemu:  {built.qemu}")
        for name, path in products.items():
            print(f"{name + ':':<6} {path}")
        print(f"steps: {built.steps} ninja steps in {built.seconds:.1f} s")
        print(f"log:   {built.log}")
    return 0


def _chosen_stages(args: argparse.Namespace) -> list[str]:
    """The stages --no-bisect leaves in."""
    return [pipeline.BISECT] if args.bisect else []


def _lab_choice(
    args: argparse.Namespace, command: str
) -> tuple[list[str], dict[str, object]]:
    """The stages and options the series' lab takes from the command line.
    An option of a lab the series does not name is refused."""
    series = _load(args)
    given: dict[str, list[tuple[str, str, object]]] = getattr(args, "lab_options", {})
    for name, dests in given.items():
        if name == series.lab:
            continue
        for dest, flag, default in dests:
            if getattr(args, dest, default) != default:
                where = f"names lab '{series.lab}'" if series.lab else "has no lab"
                raise UsageError(
                    f"{flag} is an option of the {name} lab; {args.series_file} "
                    f"{where}",
                    f"drop {flag}",
                )
    if series.lab is None:
        return [], {}
    if getattr(args, "tests", None) is not None:
        raise UsageError(
            f"--tests is for a series with no lab; {args.series_file} names "
            f"lab '{series.lab}', whose proof chooses its tests",
            "drop --tests",
        )
    return lab_mod.load(series.lab).choose(args, command)


def _test_stages(args: argparse.Namespace) -> tuple[list[str], dict[str, object]]:
    lab_stages, options = _lab_choice(args, "test")
    if args.control:
        return [pipeline.CONTROL, *lab_stages], options
    return [pipeline.TEST, *lab_stages, *_chosen_stages(args)], options


def cmd_test(args: argparse.Namespace, workdir: WorkDir) -> int:
    if args.qemu is not None:
        testing.check_qemu(args.qemu)
    pipeline.scratch_in_workdir(workdir)
    stages, options = _test_stages(args)
    request = _request(args, *stages, qemu=args.qemu, lab=options, tests=args.tests)
    results = pipeline.run(request, workdir).results
    if args.json:
        _print_json(report.to_json(results))
    else:
        print(report.table(results, tests=True))
    return 0 if passed(results) else 1


def cmd_reproduce(args: argparse.Namespace, workdir: WorkDir) -> int:
    pipeline.scratch_in_workdir(workdir)
    stages, options = _reproduce_stages(args, "reproduce")
    request = _request(
        args,
        *stages,
        reports=True,
        reuse=True,
        report_dir=args.report_dir.absolute() if args.report_dir else None,
        lab=options,
        tests=args.tests,
    )
    outcome = pipeline.run(request, workdir)
    directory = outcome.report_dir
    assert directory is not None
    if args.json:
        print((directory / "report.json").read_text(), end="")
        return 0 if outcome.passed else 1
    print(report.table(outcome.results, tests=True))
    print()
    for phase in outcome.phases:
        reused = f"  (reused {phase.reused})" if phase.reused else ""
        print(f"{phase.name:<24} {phase.seconds:7.1f} s{reused}")
    for fact in outcome.facts:
        print(fact)
    verdict = "passed" if outcome.passed else "FAILED"
    print(f"{outcome.to_report().title}: {verdict}; reports in {directory}")
    _bound_workdir(args, workdir)
    return 0 if outcome.passed else 1


def _bound_workdir(args: argparse.Namespace, workdir: WorkDir) -> None:
    """After a reproduce: older bases go, and the last line is the work
    dir's size (on stderr with --json, whose stdout is the report)."""
    sys.stdout.flush()
    clean_mod.bound(workdir, args.keep_bases)
    line = clean_mod.size_line(workdir)
    if args.json:
        say(line)
    else:
        print(line)


def cmd_clean(args: argparse.Namespace, workdir: WorkDir) -> int:
    series = _load(args) if args.series_file.exists() else None
    if series is None and not args.all:
        say(f"no {args.series_file}: bases are kept by last use only")
    removals = clean_mod.plan(workdir, args.keep_bases, series, everything=args.all)
    if not args.dry_run:
        clean_mod.remove(removals)
    total = sum(r.bytes for r in removals)
    if args.json:
        _print_json(
            {
                "dry_run": args.dry_run,
                "removed": [r.to_json() for r in removals],
                "bytes": total,
                "workdir_bytes": clean_mod.disk_usage(workdir.path),
            }
        )
        return 0
    done = "would remove" if args.dry_run else "removed"
    for r in removals:
        print(f"{done} {r.path} ({clean_mod.human(r.bytes)}): {r.why}")
    print(f"{done} {len(removals)} paths, {clean_mod.human(total)}")
    print(clean_mod.size_line(workdir).replace(" (qseries clean removes more)", ""))
    return 0


def _reproduce_stages(
    args: argparse.Namespace, command: str
) -> tuple[list[str], dict[str, object]]:
    control = [pipeline.CONTROL] if args.control else []
    lab_stages, options = _lab_choice(args, command)
    stages = [pipeline.CHECK, pipeline.TEST, *control, *lab_stages]
    return stages + _chosen_stages(args), options


def cmd_matrix(args: argparse.Namespace, workdir: WorkDir) -> int:
    pipeline.scratch_in_workdir(workdir)
    stages, options = _reproduce_stages(args, "matrix")
    request = pipeline.Request(
        series_file=args.series_file,
        spec=SourceSpec(),
        version=args.series,
        patches_root=args.output,
        stages=frozenset(stages),
        reports=True,
        reuse=True,
        lab=options,
    )
    version = _load(args).version(args.series)
    trees = [t.absolute() for t in args.trees]
    if not args.debian and not trees:
        raise UsageError("--no-debian leaves no base", "add --tree PATH")
    targets = matrix_mod.bases(workdir, version, trees, args.refresh, args.debian)
    rows = matrix_mod.run(request, workdir, targets)
    if args.json:
        _print_json(
            {
                "version": version.name,
                "passed": matrix_mod.passed(rows),
                "bases": [r.to_json() for r in rows],
            }
        )
    else:
        print(matrix_mod.table(version.name, rows))
    return 0 if matrix_mod.passed(rows) else 1


def cmd_ci_gitlab(args: argparse.Namespace, workdir: WorkDir) -> int:
    series = _load(args)
    if args.stdout:
        print(ci.gitlab_yaml(series), end="")
        return 0
    path: Path = args.output or args.series_file.parent / ".gitlab-ci.yml"
    changed = ci.write_gitlab(series, path, force=args.force)
    print(f"{path} written" if changed else f"{path} is up to date")
    return 0


def cmd_bench(args: argparse.Namespace, workdir: WorkDir) -> int:
    stages, options = _lab_choice(args, "bench")
    series = _load(args)
    pipeline.scratch_in_workdir(workdir)
    request = _request(args, pipeline.TEST, *stages, lab=options)
    # Any series' figures (check and bisect per patch), then its lab's.
    figures: dict[str, object] = dict(bench_mod.run(request, workdir))
    if series.lab is not None:
        figures |= lab_mod.load(series.lab).bench(
            request, workdir, cold=not args.skip_cold, reproduce=args.reproduce
        )
    out = args.json_file or workdir.path / "bench.json"
    atomic.write_text(out, json.dumps(figures, indent=2, sort_keys=True) + "\n")
    if args.json:
        _print_json(figures)
        return 0
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(f"written to {out}")
    return 0


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


def _add_lab_options(p: argparse.ArgumentParser, command: str) -> None:
    """Each installed lab's options of the command, and which they are
    (a series of another lab, or of none, refuses them)."""
    given: dict[str, list[tuple[str, str, object]]] = {}
    for lab in lab_mod.installed():
        before = {id(a) for a in p._actions}
        lab.add_options(p, command)
        given[lab.name] = [
            (a.dest, a.option_strings[0], a.default)
            for a in p._actions
            if id(a) not in before
        ]
    p.set_defaults(lab_options=given)


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
        "--no-wait",
        action="store_true",
        help="fail at once, rather than wait, when another run holds the work dir",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        summary: str,
        func: Callable[..., int],
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
        p.set_defaults(func=func)
        return p

    p = command(
        "source", "get a QEMU base tree and print where it is", cmd_source, output=None
    )
    p.add_argument(
        "--series", action=_Once, metavar="vN", help="version whose base range applies"
    )

    p = command(
        "generate", "generate patches/vN from series.yaml", cmd_generate, output="write"
    )
    p.add_argument(
        "--series", action=_Once, metavar="vN", help="version (default: newest)"
    )

    p = command("check", "check a series with QEMU's own checkers", cmd_check)
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--series", action=_Once, metavar="vN", help="patches/vN (default: newest)"
    )
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
    p.add_argument(
        "--series", action=_Once, metavar="vN", help="version (default: newest)"
    )
    p.add_argument(
        "--repo", type=Path, required=True, metavar="DIR", help="a git repository"
    )
    p.add_argument(
        "--branch", required=True, metavar="NAME", help="a branch it does not have"
    )

    p = command("send", "git send-email of the generated mails (a dry run)", cmd_send)
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
        cmd_trailers,
    )
    p.add_argument(
        "--mbox", type=Path, required=True, metavar="FILE", help="the thread"
    )

    p = command("build", "configure and build QEMU with the series", cmd_build)
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

    p = command("test", "prove the event order on real QEMU processes", cmd_test)
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
    _add_lab_options(p, "test")

    p = command(
        "reproduce",
        "the whole pipeline, source to reports: check, bisect, build, test",
        cmd_reproduce,
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
    _add_lab_options(p, "reproduce")
    p.add_argument(
        "--keep-bases",
        type=_count,
        default=clean_mod.KEEP_BASES,
        metavar="N",
        help="keep the trees and builds of the N bases used last (default "
        f"{clean_mod.KEEP_BASES}); older ones are removed at the end",
    )

    p = command(
        "clean",
        "remove what the work dir keeps of bases no longer used",
        cmd_clean,
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
        cmd_matrix,
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
    _add_lab_options(p, "matrix")

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
    g.set_defaults(func=cmd_ci_gitlab)

    p = command(
        "bench", "measure check and bisect per patch, and a lab's figures", cmd_bench
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
    _add_lab_options(p, "bench")
    p.add_argument(
        "--json-file",
        type=Path,
        metavar="FILE",
        help="where to write the figures (default: WORKDIR/bench.json)",
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


def _leftover_names(pids: Sequence[int]) -> str:
    """'sleep (108), git (1)': the programs of pids, most frequent first."""
    names: dict[str, int] = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip() or "?"
        except OSError:
            name = "?"
        names[name] = names.get(name, 0) + 1
    ranked = sorted(names.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{name} ({count})" for name, count in ranked[:5])
    return shown + (", ..." if len(ranked) > 5 else "")


def _end_leftovers(before: set[int]) -> None:
    """End what a run that returned left running, under the work dir's
    lock, and name it in one line.  Its descendants, as qseries is their
    subreaper: those that dropped the run's marker from their
    environment (`env -i`) included, which runs.recorded, going by the
    marker, does not find.

    Nothing qseries starts is meant to outlive its command: what does is
    a bug (a detached `git gc --auto`) or the doing of code qseries runs
    (a QEMU wrapper's `setsid sleep &`).  The exit code stays the
    command's: its verdict holds, and once the line is said nothing of
    the run is left to clean up.
    """
    left = proc.descendants(exclude=before)
    if not left:
        return
    names = _leftover_names(left)
    ended = proc.kill_descendants(exclude=before)
    count = len(set(ended) | set(left))
    say(
        f"ended {count} process{'es' if count != 1 else ''} this run left "
        f"running: {names}"
    )


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
        workdir = WorkDir.default(args.workdir)
        # Nothing is written before the work dir and --output are known
        # to be places qseries may write.
        checkouts = _checkouts(args)
        check_workdir(workdir.path, checkouts)
        check_directory(workdir.path, "--workdir")
        check_output(getattr(args, "output", None), workdir.path, checkouts)
        if args.command in build_mod.COMMANDS_THAT_BUILD:
            build_mod.check_build_paths(workdir)
        prepare(workdir.path, say)
        with WorkDirLock(workdir.path, f"qseries {args.command}") as lock:
            lock.acquire(wait=not args.no_wait, notify=say)
            # What a killed run left is ended first; this run is recorded
            # for the next one, should it be killed.
            # The series' code runs sandboxed, the home and the user's
            # checkouts hidden from it (sandbox.py).
            try:
                with (
                    runs.recorded(workdir.path, f"qseries {args.command}", say),
                    sandbox_mod.for_run(
                        workdir.path,
                        [p for _, p in checkouts],
                        say,
                        shown=[getattr(args, "qemu", None)],
                    ),
                ):
                    code = int(args.func(args, workdir))
                    sys.stdout.flush()
                    _end_leftovers(before)
            finally:
                # A run that failed or was stopped: what it left ends
                # before the lock is free for the next run.
                proc.kill_descendants(exclude=before)
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
