"""touched: QEMU's own tests that a change touches, and their run.

A series with no lab is proved by the tests QEMU already has.  Which
ones is decided from the files the series changes, by three rules, none
of which names a file of QEMU in code:

1. a changed file that a test of the build is built or run from (meson's
   introspection of the build dir: intro-tests.json, intro-targets.json)
   chooses that test;
2. a changed file that touched.yaml maps (qapi/*.json: the tests that
   exercise the built schema) chooses the tests it lists;
3. a changed code file outside the tests chooses the qtests that
   QEMU's MAINTAINERS lists (F: tests/qtest/...) in the sections that
   cover the file, matched as get_maintainer.pl matches them.

Only tests the build has are chosen, each with the reasons it was; a
change no rule maps chooses nothing, and says why.  The tests run with
QEMU's own runner (`meson test --no-rebuild`) in the build dir, once
the caller has built the ninja targets they need (Choice.targets).
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..core.results import FAIL, PASS, SKIP, Result
from ..ground.console import say
from ..ground.errors import QSeriesError, UsageError
from ..ground.proc import run_bounded

MAPPING_FILE = "touched.yaml"
SCHEMA_VERSION = 1
# What meson's introspection writes into a configured build dir.
INFO_DIR = "meson-info"
# The name of the log files of a run, in BUILDDIR/meson-logs.
LOGBASE = "qseries-touched"
# Added to the sum of the tests' own time limits (meson stops each test
# at its own): meson's start and its reports.
RUN_SLACK = 60.0
FAILING_LINES = 10


class IntrospectionError(QSeriesError):
    """A build dir's meson introspection is missing or unreadable."""


class MappingError(QSeriesError):
    """touched.yaml does not say what touched.py reads from it."""


class UnknownTest(UsageError):
    """--tests names a test the build does not have."""


# -- the build's tests, from meson's introspection ---------------------------


@dataclass(frozen=True)
class BuildTest:
    """One test of meson's intro-tests.json."""

    name: str  # as meson names it: "qtest-x86_64/qmp-test"
    suites: tuple[str, ...]  # without the project: ("qtest", "qtest-x86_64")
    sources: tuple[str, ...]  # files of the source tree it is built or run from
    targets: tuple[str, ...]  # ninja targets it needs, relative to the build dir
    timeout: float

    @property
    def short(self) -> str:
        """The name without its suite directory: "qmp-test"."""
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Build:
    """What the tests of a configured build dir are built from."""

    builddir: Path
    tests: tuple[BuildTest, ...]
    # A source of a static library, which introspection does not tie to
    # the tests that link it: the library's name, for a reason.
    libraries: Mapping[str, str] = field(default_factory=dict)

    def named(self, name: str) -> list[BuildTest]:
        """The tests called name: a full meson name, or a short one
        (every target's test of that name)."""
        exact = [t for t in self.tests if t.name == name]
        return exact or [t for t in self.tests if t.short == name]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntrospectionError(
            f"{path}: no such file; the build dir is not configured by meson",
            "configure and build QEMU first (qseries build)",
        ) from None
    except (OSError, ValueError) as err:
        raise IntrospectionError(
            f"{path}: unreadable meson introspection ({err})",
            "configure the build dir again (meson setup --reconfigure)",
        ) from None


def _in_tree(path: str, source: str) -> str | None:
    """path relative to the build's source dir, None if outside it."""
    rel = posixpath.relpath(path, source)
    return None if rel == ".." or rel.startswith("../") else rel


def _suite(name: str) -> str:
    """A suite without its project: "qemu:qtest" -> "qtest"."""
    return name.split(":", 1)[1] if ":" in name else name


def read_build(builddir: Path) -> Build:
    """The tests of builddir, from the JSON files meson's introspection
    left in BUILDDIR/meson-info (reading them starts no process)."""
    info = builddir / INFO_DIR
    meta = _read_json(info / "meson-info.json")
    try:
        source = posixpath.normpath(str(meta["directories"]["source"]))
        tests = _read_json(info / "intro-tests.json")
        targets = _read_json(info / "intro-targets.json")
        by_file: dict[str, dict[str, Any]] = {}
        by_id: dict[str, dict[str, Any]] = {}
        libraries: dict[str, str] = {}
        for target in targets:
            by_id[target["id"]] = target
            for name in target.get("filename", []):
                by_file[posixpath.normpath(name)] = target
            if target["type"] in ("static library", "shared library"):
                for rel in _target_sources(target, source):
                    libraries.setdefault(rel, target["name"])
        found = []
        for test in tests:
            cmd = [str(a) for a in test["cmd"]]
            sources: list[str] = []
            target = by_file.get(posixpath.normpath(cmd[0])) if cmd else None
            if target is not None:
                sources.extend(_target_sources(target, source))
            # What the command names from the tree: a script, its inputs.
            for arg in cmd:
                named = _in_tree(arg, source) if arg.startswith("/") else None
                if named is not None and named not in sources:
                    sources.append(named)
            needs = []
            for dep in test.get("depends", []):
                for name in by_id.get(dep, {}).get("filename", []):
                    rel = os.path.relpath(name, builddir.absolute())
                    if not rel.startswith(".."):
                        needs.append(rel)
            found.append(
                BuildTest(
                    name=str(test["name"]),
                    suites=tuple(_suite(str(s)) for s in test["suite"]),
                    sources=tuple(sources),
                    targets=tuple(sorted(set(needs))),
                    timeout=float(test.get("timeout") or 0),
                )
            )
    except (KeyError, TypeError, IndexError) as err:
        raise IntrospectionError(
            f"{info}: meson introspection of an unexpected form (no {err})",
            "configure the build dir again with the meson QEMU brings",
        ) from None
    return Build(builddir, tuple(found), libraries)


def _target_sources(target: Mapping[str, Any], source: str) -> list[str]:
    found = []
    for group in target.get("target_sources", []):
        for path in group.get("sources", []):
            rel = _in_tree(str(path), source)
            if rel is not None:
                found.append(rel)
    return found


# -- MAINTAINERS -----------------------------------------------------------

# A line of a section: one character, a colon (get_maintainer.pl's test).
TAG = re.compile(r"^(.):\s*(.*)")
UNDERLINE = re.compile(r"^[-=\s]+$")


# What a converted pattern's literal start ends at.
REGEX_META = re.compile(r"[\\.*?+|^$()\[\]{}]")


@functools.cache
def _regex(value: str) -> re.Pattern[str] | None:
    try:
        return re.compile(value)
    except re.error:
        return None


@dataclass(frozen=True)
class FilePattern:
    """An F: or X: pattern, matched as get_maintainer.pl does: "." is
    literal, "*" any run of characters, "?" one; a directory (by a
    trailing "/", or because the tree has one of that name) takes
    everything below it; anything else must match a prefix of the path
    with as many "/" as the pattern."""

    written: str
    value: str  # the regular expression get_maintainer.pl makes of it
    start: str  # its literal start
    slashes: int
    directory: bool

    @classmethod
    def parse(cls, written: str, is_dir: Callable[[str], bool]) -> FilePattern:
        value = written.replace(".", "\\.").replace("*", ".*").replace("?", ".")
        if is_dir(value) and not value.endswith("/"):
            value += "/"
        start = REGEX_META.split(value, 1)[0]
        return cls(written, value, start, value.count("/"), value.endswith("/"))

    def matches(self, path: str) -> bool:
        # Most patterns fail on their literal start: compiled only if not.
        if not path.startswith(self.start):
            return False
        regex = _regex(self.value)
        if regex is None or regex.match(path) is None:
            return False
        return self.directory or path.count("/") == self.slashes


@dataclass(frozen=True)
class Section:
    name: str
    line: int  # of its first tagged line
    files: tuple[FilePattern, ...]  # F:
    excluded: tuple[FilePattern, ...]  # X:

    def covers(self, path: str) -> bool:
        """Is path this section's (no X: matches it, an F: does)?"""
        if any(x.matches(path) for x in self.excluded):
            return False
        return any(f.matches(path) for f in self.files)


def read_maintainers(text: str, is_dir: Callable[[str], bool]) -> tuple[Section, ...]:
    """The sections of a MAINTAINERS file.

    A section is a run of tagged lines ("F: ..."); blank lines do not end
    it, any other line does and names the next one (a line of only "-"
    or "=" underlines a heading and names nothing).  is_dir says whether
    a pattern names a directory of the tree.
    """
    sections = []
    name, start = "", 0
    files: list[FilePattern] = []
    excluded: list[FilePattern] = []
    tagged = False

    def close() -> None:
        if tagged:
            sections.append(Section(name, start, tuple(files), tuple(excluded)))

    for number, line in enumerate(text.splitlines(), 1):
        m = TAG.match(line)
        if m is None:
            if line.strip():
                close()
                tagged, files, excluded = False, [], []
                if not UNDERLINE.match(line):
                    name = line.strip()
            continue
        if not tagged:
            tagged, start = True, number
        if m[1] == "F":
            files.append(FilePattern.parse(m[2], is_dir))
        elif m[1] == "X":
            excluded.append(FilePattern.parse(m[2], is_dir))
    close()
    return tuple(sections)


def tree_maintainers(tree: Path) -> tuple[Section, ...]:
    """The sections of tree/MAINTAINERS; none if the tree has no such file."""
    path = tree / "MAINTAINERS"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ()
    except OSError as err:
        raise IntrospectionError(
            f"{path}: cannot be read ({err.strerror or err})",
            "pass a QEMU source tree",
        ) from None
    return read_maintainers(text, lambda p: os.path.isdir(os.path.join(tree, p)))


# -- the mapping: touched.yaml -----------------------------------------------


@dataclass(frozen=True)
class PathRule:
    match: FilePattern
    why: str
    tests: tuple[str, ...]


@dataclass(frozen=True)
class Rules:
    """What touched.yaml says."""

    paths: tuple[PathRule, ...]
    tests_under: str  # MAINTAINERS' F: lines under it name tests
    qtest_suites: frozenset[str]
    code_suffixes: tuple[str, ...]
    tests_dirs: tuple[str, ...]
    skip_suites: frozenset[str]


def _no_directory(pattern: str) -> bool:
    """touched.yaml's patterns name a directory by a trailing "/" only."""
    return False


def load_mapping(text: str | None = None) -> Rules:
    """touched.yaml: the package's own, or text."""
    where = MAPPING_FILE
    if text is None:
        text = (resources.files(__package__ or "") / MAPPING_FILE).read_text("utf-8")
    try:
        data = yaml.safe_load(text)
        if data.get("schema_version") != SCHEMA_VERSION:
            raise MappingError(
                f"{where}: schema_version {data.get('schema_version')!r}, "
                f"not {SCHEMA_VERSION}",
                "reinstall qseries",
            )
        rules = tuple(
            PathRule(
                FilePattern.parse(str(r["match"]), _no_directory),
                str(r["why"]),
                tuple(str(t) for t in r["tests"]),
            )
            for r in data.get("paths") or []
        )
        maint = data["maintainers"]
        return Rules(
            paths=rules,
            tests_under=str(maint["tests_under"]),
            qtest_suites=frozenset(str(s) for s in maint["suites"]),
            code_suffixes=tuple(str(s) for s in maint["suffixes"]),
            tests_dirs=tuple(str(d) for d in data["tests_dirs"]),
            skip_suites=frozenset(str(s) for s in data.get("skip_suites") or []),
        )
    except (yaml.YAMLError, AttributeError, KeyError, TypeError) as err:
        raise MappingError(
            f"{where}: not the mapping touched.py reads ({type(err).__name__}: {err})",
            "reinstall qseries",
        ) from None


# -- choosing ----------------------------------------------------------------


@dataclass(frozen=True)
class Chosen:
    test: BuildTest
    reasons: tuple[str, ...]

    def line(self) -> str:
        return f"{self.test.name}  ({'; '.join(self.reasons)})"


@dataclass(frozen=True)
class Choice:
    """The tests chosen for a change, in the order they were first
    chosen, and a line for each changed file that chose none."""

    tests: tuple[Chosen, ...]
    unmapped: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [c.test.name for c in self.tests]

    @property
    def targets(self) -> list[str]:
        """The ninja targets the chosen tests need built."""
        return sorted({t for c in self.tests for t in c.test.targets})

    def lines(self) -> list[str]:
        """What is printed: each test with its reasons, then the files
        that chose nothing, with why."""
        if not self.tests:
            head = ["no test chosen: none of the build's is touched by the change"]
        else:
            head = [f"{_count(len(self.tests), 'test')} chosen:"]
        return [
            *head,
            *(f"  {c.line()}" for c in self.tests),
            *(f"  not mapped: {u}" for u in self.unmapped),
        ]


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


class _Picks:
    """Tests in the order first chosen, each with its reasons."""

    def __init__(self) -> None:
        self.order: list[BuildTest] = []
        self.reasons: dict[str, list[str]] = {}

    def add(self, test: BuildTest, reason: str) -> None:
        if test.name not in self.reasons:
            self.order.append(test)
            self.reasons[test.name] = []
        if reason not in self.reasons[test.name]:
            self.reasons[test.name].append(reason)

    def choice(self, unmapped: Iterable[str]) -> Choice:
        return Choice(
            tuple(Chosen(t, tuple(self.reasons[t.name])) for t in self.order),
            tuple(unmapped),
        )


def _code(path: str, mapping: Rules) -> bool:
    return path.endswith(mapping.code_suffixes)


def _maintained_tests(
    path: str,
    sections: Sequence[Section],
    qtests: Sequence[BuildTest],
    mapping: Rules,
) -> tuple[list[tuple[BuildTest, str]], list[str], list[str]]:
    """The qtests the sections covering path name, each with its reason;
    the names of those sections; the test patterns they name that no
    qtest of the build is built from."""
    found, covering, missing = [], [], []
    for section in sections:
        if not section.covers(path):
            continue
        covering.append(section.name)
        for pattern in section.files:
            if not pattern.written.startswith(mapping.tests_under):
                continue
            hits = [
                (test, source)
                for test in qtests
                for source in test.sources
                if pattern.matches(source)
                and not any(x.matches(source) for x in section.excluded)
            ]
            if not hits:
                missing.append(f"{pattern.written} ({section.name})")
            seen = set()
            for test, source in hits:
                if test.name in seen:
                    continue  # one reason for each test and pattern
                seen.add(test.name)
                via = "" if source == pattern.written else f", as {source}"
                found.append(
                    (
                        test,
                        f"{path} changed: MAINTAINERS' {section.name} covers it "
                        f"and lists {pattern.written}{via}",
                    )
                )
    return found, covering, missing


def choose_in(
    changed: Sequence[str],
    build: Build,
    sections: Sequence[Section],
    mapping: Rules,
) -> Choice:
    """The tests of build that the changed files (paths in QEMU's tree)
    touch, by the three rules of this module's docstring."""
    runnable = [t for t in build.tests if not set(t.suites) & mapping.skip_suites]
    qtests = [t for t in runnable if set(t.suites) & mapping.qtest_suites]
    picks = _Picks()
    unmapped = []
    for path in dict.fromkeys(posixpath.normpath(p) for p in changed):
        before = len(picks.order), sum(map(len, picks.reasons.values()))
        for test in runnable:
            if path in test.sources:
                picks.add(test, f"{path} changed: the test is built or run from it")
        for rule in mapping.paths:
            if rule.match.matches(path):
                for name in rule.tests:
                    for test in qtests:
                        if test.short == name:
                            picks.add(test, f"{path} changed: {rule.why}")
        why = []
        is_test = path.startswith(mapping.tests_dirs)
        if not is_test and _code(path, mapping):
            found, covering, missing = _maintained_tests(
                path, sections, qtests, mapping
            )
            for test, reason in found:
                picks.add(test, reason)
            if not covering:
                why.append("no MAINTAINERS section covers it")
            elif not found:
                named = ", ".join(covering)
                if missing:
                    why.append(
                        f"its MAINTAINERS sections ({named}) list "
                        f"{', '.join(missing)}, which no qtest of the build "
                        "is built from"
                    )
                else:
                    why.append(f"its MAINTAINERS sections ({named}) list no qtest")
        elif is_test:
            library = build.libraries.get(path)
            if library is not None:
                why.append(
                    f"it goes into the library {library}, which meson's "
                    "introspection does not tie to the tests that link it"
                )
            else:
                why.append("no test of the build is built or run from it")
        else:
            why.append("not code, and no test is built or run from it")
        after = len(picks.order), sum(map(len, picks.reasons.values()))
        if after == before:
            unmapped.append(f"{path}: {'; '.join(why)}")
    return picks.choice(unmapped)


def choose(changed: Sequence[str], tree: Path, builddir: Path) -> Choice:
    """The tests of the build in builddir that the changed files touch,
    with the MAINTAINERS of tree (the QEMU source the change is on)."""
    return choose_in(
        changed, read_build(builddir), tree_maintainers(tree), load_mapping()
    )


def show(choice: Choice) -> None:
    for line in choice.lines():
        say(line)


# -- --tests -----------------------------------------------------------------


def meson_of(builddir: Path) -> str:
    """The meson that configured builddir: QEMU's, in its pyvenv; else
    the one installed with qseries."""
    for meson in (
        builddir / "pyvenv" / "bin" / "meson",
        Path(sys.executable).with_name("meson"),
    ):
        if meson.exists():
            return str(meson)
    return "meson"


def parse_tests(text: str, build: Build) -> Choice:
    """The tests a user names with --tests ("qmp-test,qom-test"): full
    meson names, or short ones standing for every target's test of that
    name.  A name the build does not have is refused."""
    picks = _Picks()
    names = [n.strip() for n in text.split(",")]
    if not any(names):
        raise UnknownTest(
            "--tests names no test", "give test names separated by commas"
        )
    for name in names:
        if not name:
            raise UnknownTest(
                f"--tests {text!r}: an empty name", "separate names by one comma"
            )
        found = build.named(name)
        if not found:
            known = sorted({n for t in build.tests for n in (t.short, t.name)})
            close = difflib.get_close_matches(name, known, n=1)
            near = f" (did you mean {close[0]}?)" if close else ""
            raise UnknownTest(
                f"--tests: the build in {build.builddir} has no test {name!r}{near}",
                f"list its tests with: {meson_of(build.builddir)} test -C "
                f"{build.builddir} --list",
            )
        for test in found:
            picks.add(test, "named with --tests")
    return picks.choice(())


# -- running -----------------------------------------------------------------

# How a result of a test that meson did not run (or not to its end) starts.
NOT_RUN = "meson test did not run it"
ERROR_LINE = re.compile(r"^(not ok .*|.*ERROR:.*|.*assertion failed.*|Bail out!.*)$")
TAP_OK = re.compile(r"^ok \d+", re.M)
TAP_SKIP = re.compile(r"#\s*SKIP\s*(.*)$", re.M | re.I)


def _verdict(test: BuildTest, entry: Mapping[str, Any], log: Path) -> Result:
    """A test's Result from its line of meson's JSON test log."""
    output = f"{entry.get('stdout') or ''}{entry.get('stderr') or ''}"
    result = str(entry.get("result", ""))
    seconds = float(entry.get("duration") or 0)
    cases = len(TAP_OK.findall(output))
    if result == "OK":
        return Result(test.name, PASS, f"{cases} cases, {seconds:.1f} s")
    if result == "SKIP":
        skipped = TAP_SKIP.search(output)
        why = skipped[1].strip() if skipped and skipped[1].strip() else "no reason"
        return Result(test.name, SKIP, f"skipped by the test: {why}")
    bad = [m[1] for m in map(ERROR_LINE.match, output.splitlines()) if m]
    if not bad:
        bad = output.strip().splitlines()[-5:]
    return Result(
        test.name,
        FAIL,
        f"{result.lower()} (exit {entry.get('returncode')}) after {seconds:.1f} s",
        [*bad[:FAILING_LINES], f"log: {log}"],
    )


def _entries(path: Path) -> dict[str, dict[str, Any]]:
    """meson's JSON test log: one object a line, named
    "SUITES - PROJECT:NAME"; by NAME."""
    found: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return found
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        name = str(entry.get("name", ""))
        found[name.split(" - ", 1)[-1].split(":", 1)[-1]] = entry
    return found


def run_tests(
    build: Build,
    tests: Sequence[BuildTest],
    *,
    jobs: int | None = None,
    timeout_multiplier: float = 1.0,
    scratch: Path | None = None,
) -> list[Result]:
    """Run tests with QEMU's runner in the build dir, built beforehand
    (Choice.targets): `meson test --no-rebuild`, which gives each test
    its environment and time limit from the build's definition, as
    QEMU's CI does; one Result per test, from meson's JSON log.

    scratch (default: a new directory in $TMPDIR) is the tests' TMPDIR,
    named relative to the build dir: libqtest's socket paths stay short.
    """
    if not tests:
        return []
    builddir = build.builddir.absolute()
    logs = builddir / "meson-logs"
    jsonlog, textlog = logs / f"{LOGBASE}.json", logs / f"{LOGBASE}.txt"
    jsonlog.unlink(missing_ok=True)
    own = scratch is None
    where = os.environ.get("TMPDIR") or None
    tmp = Path(tempfile.mkdtemp(prefix="touched-", dir=where)) if own else scratch
    assert tmp is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTEST_")}
    env["TMPDIR"] = os.path.relpath(tmp.absolute(), builddir)
    argv = [
        meson_of(builddir),
        "test",
        "-C",
        str(builddir),
        "--no-rebuild",
        "--logbase",
        LOGBASE,
        "--timeout-multiplier",
        f"{timeout_multiplier:g}",
        *(["--num-processes", str(jobs)] if jobs else []),
        *(t.name for t in tests),
    ]
    limit = sum(t.timeout or 600 for t in tests) * timeout_multiplier + RUN_SLACK
    say(f"meson test: {_count(len(tests), 'test')} in {builddir}")
    started = time.monotonic()
    try:
        ran = run_bounded(argv, env, limit, cwd=builddir, untrusted=True)
    finally:
        if own:
            shutil.rmtree(tmp, ignore_errors=True)
    entries = _entries(jsonlog)
    results = []
    for test in tests:
        entry = entries.get(test.name)
        if entry is not None:
            results.append(_verdict(test, entry, textlog))
        elif ran.timed_out:
            results.append(
                Result(
                    test.name,
                    FAIL,
                    f"{NOT_RUN} to its end within {limit:g} s",
                    [f"log: {textlog}"],
                )
            )
        else:
            tail = (ran.stdout + ran.stderr).strip().splitlines()[-3:]
            results.append(
                Result(
                    test.name,
                    FAIL,
                    f"{NOT_RUN} (exit {ran.returncode}, "
                    f"{time.monotonic() - started:.1f} s)",
                    tail,
                )
            )
    return results
