"""test: run QEMU's qtests, case by case or through QEMU's own runner.

A qtest binary is run in a scratch directory of its own, pointed at
the QEMU under test (with whatever a lab adds to its environment), its
cases listed and run one by one as TAP, each bounded; or as QEMU's CI
runs it, with `meson test` in the build directory.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.results import FAIL, PASS, SKIP, Result
from ..ground.console import say
from ..ground.errors import UsageError
from ..ground.proc import CommandTimeout, Ran, run_bounded, run_streaming

QEMU_QTESTS = ("qmp-test", "qmp-cmd-test", "device-introspect-test")
QTEST_TIMEOUT = 300
LIST_TIMEOUT = 60
SUITE_TIMEOUT = 900


@dataclass(frozen=True)
class CaseRun:
    path: str
    passed: bool
    seconds: float
    events: tuple[str, ...]  # "source events: ..." lines the qtest printed
    error: str  # the first assertion or error line, if it failed
    output: str


def patch_files(patch: Path) -> list[str]:
    """The files of QEMU's tree a patch mail changes."""
    text = patch.read_text(errors="replace")
    return re.findall(r"^diff --git a/(\S+) ", text, re.M)


def is_test_patch(patch: Path) -> bool:
    """Is the patch one of the series' tests (what the negative control
    keeps)?  One that adds or changes a qtest, or one that changes
    nothing but files under tests/ (a unit test, a qtest in a folder of
    its own, its meson.build)."""
    files = patch_files(patch)
    qtest = any(f.startswith("tests/qtest/") and f.endswith("-test.c") for f in files)
    return qtest or (bool(files) and all(f.startswith("tests/") for f in files))


# What `qemu-system-* --version` prints first; qemu-img and the user-mode
# emulators (qemu-x86_64) say "qemu-img version", "qemu-x86_64 version".
QEMU_VERSION_LINE = "QEMU emulator version"
VERSION_TIMEOUT = 20


def _said(ran: Ran) -> str:
    """What a command printed first, for a message: its first line on
    stdout, else its exit code and first line on stderr."""

    def first(text: str) -> str:
        line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        return line if len(line) <= 80 else line[:77] + "..."

    if first(ran.stdout):
        return f"printed '{first(ran.stdout)}'"
    err = f" ('{first(ran.stderr)}')" if first(ran.stderr) else ""
    return f"printed nothing and exited {ran.returncode}{err}"


def check_qemu(given: Path) -> None:
    """Refuse, before any build, a --qemu that is no QEMU system emulator:
    missing, a directory, not executable, a program whose --version (run
    bounded, like every command) does not say it is QEMU, or one whose
    name does not say its target, as libqtest needs."""
    hint = "pass the path of a QEMU system emulator (qemu-system-x86_64)"
    if not given.exists():
        raise UsageError(f"--qemu {given}: no such file", hint)
    if given.is_dir():
        raise UsageError(f"--qemu {given} is a directory, not a program", hint)
    if not given.is_file() or not os.access(given, os.X_OK):
        raise UsageError(f"--qemu {given} is not an executable file", hint)
    argv = [str(given.absolute()), "--version"]
    try:
        ran = run_bounded(argv, {**os.environ, "LC_ALL": "C"}, VERSION_TIMEOUT)
    except OSError as err:
        raise UsageError(
            f"--qemu {given} cannot be run: {err.strerror or err}", hint
        ) from None
    if ran.timed_out:
        raise UsageError(
            f"--qemu {given} did not answer --version within {VERSION_TIMEOUT} s",
            hint,
        )
    if QEMU_VERSION_LINE not in ran.stdout:
        raise UsageError(
            f"--qemu {given} is not a QEMU system emulator: its --version "
            f"{_said(ran)}, not '{QEMU_VERSION_LINE} ...'",
            hint,
        )
    # libqtest takes the target from QTEST_QEMU_BINARY's name
    # (qtest_get_arch): any other name makes a qtest list no case.
    if not re.fullmatch(r".*-system-[A-Za-z0-9_]+", given.name):
        raise UsageError(
            f"--qemu {given}: a qtest takes the target from the file's name, "
            "which must end in -system-ARCH",
            "name it (or a link to it) qemu-system-x86_64",
        )


def _env(qemu: str, extra: Mapping[str, str] | None, tmpdir: str) -> dict[str, str]:
    env = {
        **os.environ,
        "QTEST_QEMU_BINARY": qemu,
        "LC_ALL": "C",
        "TMPDIR": tmpdir,
    }
    env.pop("LD_PRELOAD", None)
    env.update(extra or {})
    return env


def scratch_dir(prefix: str) -> Path:
    """A new private directory for one test run, in $TMPDIR (which
    `qseries test` points into the work dir)."""
    # $TMPDIR as it is now: tempfile caches the one it saw first.
    where = os.environ.get("TMPDIR") or None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=where)).absolute()


def _run_qtest(
    binary: Path,
    args: list[str],
    qemu: Path,
    extra: Mapping[str, str] | None,
    timeout: float,
    scratch: Path,
) -> Ran:
    """A qtest binary, pointed at qemu (and at the extra, if given), run
    in scratch, a private directory that is also its TMPDIR.

    libqtest starts QEMU with `sh -c "exec QEMU ARGS"`, its QMP and
    qtest sockets ($TMPDIR/qtest-PID.sock) unquoted in ARGS and bound
    with a sun_path of 108 bytes.  So the qtest runs with TMPDIR=".",
    its scratch directory being its working directory (and QEMU's): the
    socket paths are short and need no quoting, whatever the work dir's
    path.  QEMU is named through a link there for the same reason; it
    finds its firmware from /proc/self/exe, the real binary.
    """
    env = _scratch_env(scratch, qemu, extra)
    return run_bounded(
        [str(binary.absolute()), *args], env, timeout, cwd=scratch, untrusted=True
    )


def _scratch_env(
    scratch: Path, qemu: Path, extra: Mapping[str, str] | None
) -> dict[str, str]:
    """The environment of a qtest run in scratch (see _run_qtest), with
    the link to qemu made there."""
    link = scratch / qemu.name
    if not link.is_symlink():
        link.symlink_to(qemu.absolute())
    return _env(f"./{qemu.name}", extra, ".")


def run_qtest(
    binary: Path,
    args: list[str],
    qemu: Path,
    extra: Mapping[str, str] | None,
    timeout: float,
) -> Ran:
    """A qtest binary run as _run_qtest does, in a scratch directory of
    its own that is removed afterwards (for a run whose output is all
    that counts: a listing, QEMU's own qtests, the benchmark's run)."""
    scratch = scratch_dir("qtest-")
    try:
        return _run_qtest(binary, args, qemu, extra, timeout, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _absolute_logs(output: str, scratch: Path) -> str:
    """The qtest's "... log: ./DIR/FILE" lines, relative to its scratch
    directory, with the absolute path."""
    return re.sub(r"(?m)^(# \w+ .*log: )\./", lambda m: f"{m[1]}{scratch}/", output)


class ListTimeout(Exception):
    """Listing a qtest's cases timed out."""


def list_cases(
    binary: Path,
    qemu: Path,
    extra: Mapping[str, str] | None,
    timeout: float = LIST_TIMEOUT,
) -> list[str]:
    """The case paths of a qtest binary; ListTimeout if it hangs."""
    ran = run_qtest(binary, ["-l"], qemu, extra, timeout)
    if ran.timed_out:
        raise ListTimeout(f"{binary.name} -l timed out after {timeout:g} s")
    return [line.strip() for line in ran.stdout.splitlines() if line.startswith("/")]


ERROR_LINE = re.compile(r"(ERROR:.*|.*assertion failed.*|Bail out!.*)")


def run_case(
    binary: Path,
    qemu: Path,
    extra: Mapping[str, str] | None,
    path: str,
    timeout: float = QTEST_TIMEOUT,
) -> CaseRun:
    started = time.monotonic()
    scratch = scratch_dir("qtest-")
    ran = _run_qtest(binary, ["--tap", "-p", path], qemu, extra, timeout, scratch)
    output = _absolute_logs(ran.stdout + ran.stderr, scratch)
    if ran.timed_out:
        output = f"timed out after {timeout:g} s\n{output}"
    skipped = re.search(r"^ok \d+ .*# SKIP(.*)$", ran.stdout, re.M)
    passed = (
        not ran.timed_out
        and ran.returncode == 0
        and re.search(r"^ok \d+ ", ran.stdout, re.M) is not None
        and skipped is None
    )
    events = _events(output)
    errors = [m[1] for m in ERROR_LINE.finditer(output)]
    if ran.timed_out:
        error = output.splitlines()[0]
    elif skipped is not None:
        error = f"skipped:{skipped[1]}"
    elif errors:
        error = errors[0]
    else:
        error = "" if passed else output.strip()[-300:]
    if passed:
        # A failed case keeps its scratch files: the evidence.
        shutil.rmtree(scratch, ignore_errors=True)
    return CaseRun(path, passed, time.monotonic() - started, events, error, output)


# A case's result line in GLib's TAP output: "ok 3 /x86_64/a/b # SKIP why".
TAP_RESULT = re.compile(r"^(?P<ok>ok|not ok) \d+ (?P<path>/\S*)(?P<rest>.*)$")


@dataclass(frozen=True)
class TapCase:
    """One case as the run of all cases reported it."""

    path: str
    passed: bool  # "ok", not skipped
    seconds: float  # from the previous result line (or the start) to its own
    output: str  # its lines: from after the previous result line to its own


def read_tap(lines: Sequence[tuple[float, str]], started: float) -> list[TapCase]:
    """The cases of a TAP run, from its output lines and the time each
    arrived; the lines before a result line are that case's."""
    found = []
    since, chunk = started, []
    for at, line in lines:
        chunk.append(line)
        m = TAP_RESULT.match(line.rstrip("\n"))
        if m is None:
            continue
        passed = m["ok"] == "ok" and "# SKIP" not in m["rest"]
        found.append(TapCase(m["path"], passed, at - since, "".join(chunk)))
        since, chunk = at, []
    return found


def run_cases(
    binary: Path,
    qemu: Path,
    extra: Mapping[str, str] | None,
    cases: Sequence[str],
    timeout: float = QTEST_TIMEOUT,
) -> list[CaseRun]:
    """The cases the binary lists, all in one run of it with --tap (as
    QEMU's runner and a person run it: one start of the binary, not one
    per case; `-p` would match a case's path as a prefix and run its
    sub-cases again), each read from its TAP line.

    A case that did not pass there (it failed or was skipped, or the run
    ended before it) runs again alone, as run_case does, so that its
    error and the files it leaves (the evidence) are those of a run of
    its own, as they were when every case ran alone.  If the run exited
    non-zero although every case passed, they all run alone: the failure
    is not any one case's.
    """
    say(f"qtest {binary.name}: {len(cases)} cases in one run")
    scratch = scratch_dir("qtest-")
    lines: list[tuple[float, str]] = []
    started = time.monotonic()
    try:
        env = _scratch_env(scratch, qemu, extra)
        try:
            code = run_streaming(
                [str(binary.absolute()), "--tap"],
                env,
                timeout,
                scratch,
                scratch / "tap.log",
                lambda line: lines.append((time.monotonic(), line)),
                untrusted=True,
            )
        except CommandTimeout:
            code = None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    tap = read_tap(lines, started)
    reported = {c.path: c for c in tap if c.passed}
    passed = set(reported) - {c.path for c in tap if not c.passed}
    if code != 0 and passed >= set(cases):
        passed = set()
    runs = []
    for case in cases:
        if case in passed:
            ok = reported[case]
            runs.append(
                CaseRun(case, True, ok.seconds, _events(ok.output), "", ok.output)
            )
        else:
            say(f"qtest {case}: again, alone")
            runs.append(run_case(binary, qemu, extra, case))
    return runs


def _events(output: str) -> tuple[str, ...]:
    """The "source events: ..." lines a qtest printed."""
    return tuple(m[1] for m in re.finditer(r"^# (\w+ events: .*)$", output, re.M))


def expect_pass(
    runs: Sequence[CaseRun],
    evidence: Callable[[CaseRun], list[str]] = lambda run: [],
) -> list[Result]:
    """Every case must pass; a failed one names what it left behind
    (evidence: the files a lab's device logged, say)."""
    results = []
    for run in runs:
        if run.passed:
            results.append(
                Result(run.path, PASS, f"{run.seconds:.1f} s", list(run.events))
            )
        else:
            results.append(
                Result(run.path, FAIL, run.error, [*run.events, *evidence(run)])
            )
    return results


def qemu_qtests(
    builddir: Path, qemu: Path, timeout: float = SUITE_TIMEOUT
) -> list[Result]:
    results = []
    for name in QEMU_QTESTS:
        binary = builddir / "tests" / "qtest" / name
        if not binary.exists():
            results.append(Result(name, FAIL, f"{binary} was not built"))
            continue
        say(f"qtest {name}")
        started = time.monotonic()
        ran = run_qtest(binary, ["--tap", "-k"], qemu, None, timeout)
        ok = len(re.findall(r"^ok ", ran.stdout, re.M))
        bad = re.findall(r"^not ok .*$", ran.stdout, re.M)
        if ran.timed_out:
            results.append(
                Result(
                    name,
                    FAIL,
                    f"timed out after {timeout:g} s ({ok} cases passed by then)",
                    bad[:10] + ran.stdout.strip().splitlines()[-5:],
                )
            )
        elif ran.returncode == 0 and not bad:
            results.append(
                Result(name, PASS, f"{ok} cases, {time.monotonic() - started:.1f} s")
            )
        else:
            results.append(Result(name, FAIL, f"exit {ran.returncode}", bad[:10]))
    return results


QEMU_SUITE = "qtest-x86_64"


def qemu_runner(
    builddir: Path,
    qtest: str,
    skipped_because: str | None = None,
    timeout: float = SUITE_TIMEOUT,
) -> Result:
    """A qtest as QEMU's own CI runs it: `meson test` in the patched
    build directory, from the JUnit report meson writes.

    A qtest that needs what QEMU's CI does not give it skips there: with
    skipped_because (why), that skip is what the result says.
    """
    name = f"QEMU's runner: {QEMU_SUITE}/{qtest}"
    meson = builddir / "pyvenv" / "bin" / "meson"
    logbase = f"qseries-{qtest}"
    junit = builddir / "meson-logs" / f"{logbase}.junit.xml"
    junit.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTEST_")}
    env.pop("LD_PRELOAD", None)
    # meson runs the test in the build dir (QEMU is ./qemu-system-*
    # there): a TMPDIR relative to it keeps libqtest's socket paths
    # short and free of characters its shell command would split.
    scratch = scratch_dir("runner-")
    env["TMPDIR"] = os.path.relpath(scratch, builddir.absolute())
    try:
        ran = run_bounded(
            [
                str(meson),
                "test",
                "--no-rebuild",
                "--logbase",
                logbase,
                "--suite",
                QEMU_SUITE,
                f"{QEMU_SUITE}/{qtest}",
            ],
            env,
            timeout,
            cwd=builddir,
            untrusted=True,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if ran.timed_out:
        return Result(name, FAIL, f"meson test timed out after {timeout:g} s")
    verdict = junit_verdict(junit, f"{QEMU_SUITE}/{qtest}")
    if verdict is None:
        tail = (ran.stdout + ran.stderr).strip().splitlines()[-3:]
        return Result(name, FAIL, f"{junit} does not list {qtest}", tail)
    status, cases = verdict
    items = [f"JUnit: {junit}", *cases]
    if status == "passed" and ran.returncode == 0:
        return Result(
            name, PASS, f"meson test: {len(cases)} cases passed, as in QEMU's CI", items
        )
    if status == "skipped" and skipped_because is not None:
        return Result(name, SKIP, f"skipped by QEMU's runner: {skipped_because}", items)
    return Result(name, FAIL, f"meson test: {status}", items)


def junit_verdict(path: Path, test: str) -> tuple[str, list[str]] | None:
    """What meson's JUnit report says of one test: passed, failed or
    skipped, and a line per case (a TAP test is a testsuite of its
    subtests); None when the report is missing or does not list it."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    cases = []
    # meson names a TAP test's suite "PROJECT.SUITES - PROJECT:TEST".
    for suite in root.iter("testsuite"):
        name = suite.get("name") or ""
        if name == test or name.endswith(f":{test}"):
            cases = list(suite.iter("testcase"))
    if not cases:
        # A test that ran no case (TAP "1..0") is one testcase of its own.
        cases = [
            c
            for c in root.iter("testcase")
            if c.get("name") == test or (c.get("name") or "").endswith(f":{test}")
        ]
    if not cases:
        return None
    lines, verdicts = [], set()
    for case in cases:
        if case.find("failure") is not None or case.find("error") is not None:
            verdict = "failed"
        elif case.find("skipped") is not None:
            verdict = "skipped"
        else:
            verdict = "passed"
        verdicts.add(verdict)
        lines.append(f"{case.get('name')}: {verdict}")
    for verdict in ("failed", "skipped"):
        if verdict in verdicts:
            return verdict, lines
    return "passed", lines


def skip(name: str, why: str) -> Result:
    return Result(name, SKIP, why)
