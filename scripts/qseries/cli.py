"""The qseries command line."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from . import check, generators, report
from . import generate as gen
from . import series as series_mod
from .errors import EXIT_USAGE, QSeriesError
from .source import BaseTree, SourceSpec, WorkDir, get_base, say


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


def _spec(args: argparse.Namespace) -> SourceSpec:
    return SourceSpec(
        base_version=args.base_version,
        tree=args.tree,
        git_url=args.git_url,
        git_ref=args.git_ref,
        refresh=args.refresh,
    )


def _load(args: argparse.Namespace) -> series_mod.Series:
    return series_mod.load(args.series_file, set(generators.GENERATORS))


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
    base: BaseTree = get_base(workdir, _spec(args), version.base)
    say(f"generating {version.name} on {base.describe()}")
    result, tmp = gen.generate(series, version, base, workdir)
    dest = _patches_dir(args, version)
    changes = gen.install(tmp, dest)
    if args.json:
        _print_json(
            {
                "version": version.name,
                "base": base.to_json(),
                "tip": result.tip,
                "directory": str(dest),
                "files": [f.name for f in result.files],
                "changed": changes,
                "to": list(result.to),
                "cc": list(result.cc),
            }
        )
    else:
        for f in result.files:
            print(dest / f.name)
        print(
            f"{len(changes)} file(s) changed in {dest}"
            if changes
            else f"{dest} is up to date"
        )
    return 0


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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("source", help="get a QEMU base tree and print where it is")
    p.add_argument("--series", metavar="vN", help="version whose base range applies")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_base_options(p)
    p.set_defaults(func=cmd_source)

    p = sub.add_parser("generate", help="generate patches/vN from series.yaml")
    p.add_argument("--series", metavar="vN", help="version (default: newest)")
    p.add_argument(
        "--output", type=Path, metavar="DIR", help="write DIR/vN instead of patches/vN"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_base_options(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("check", help="check a series with QEMU's own checkers")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--series", metavar="vN", help="patches/vN (default: newest)")
    what.add_argument("--mbox", type=Path, metavar="FILE", help="a mailed series")
    p.add_argument(
        "--output", type=Path, metavar="DIR", help="read DIR/vN instead of patches/vN"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_base_options(p)
    p.set_defaults(func=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        workdir = WorkDir.default(args.workdir)
        code: int = args.func(args, workdir)
        return code
    except QSeriesError as err:
        if args.debug:
            traceback.print_exc()
        print(f"qseries: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("qseries: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
