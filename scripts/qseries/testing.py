"""test: run the series' qtest, QEMU's own qtests and our QMP tests.

The qtest is the one the series adds to QEMU; it needs the fake VFIO
device (tests/fakevfio here), built with our own meson.build.  The
negative control runs the same tests on a build with the qtest but
without the change: they must fail, and for the stated reason (no
VFIO_MIGRATION_PREPARE event), not for any other.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .build import BuildError, Progress, run_logged
from .errors import ToolError
from .proc import Ran, run_bounded
from .report import FAIL, PASS, SKIP, Result
from .source import WorkDir, say

SERIES_QTEST = "vfio-migration-prepare-test"
QEMU_QTESTS = ("qmp-test", "qmp-cmd-test", "device-introspect-test")
FAKE_LIBRARY = "libfakevfio.so"
QTEST_TIMEOUT = 300
LIST_TIMEOUT = 60
SUITE_TIMEOUT = 900
PYTEST_DIR = "tests/integration"


@dataclass(frozen=True)
class CaseRun:
    path: str
    passed: bool
    seconds: float
    events: tuple[str, ...]  # "source events: ..." lines the qtest printed
    error: str  # the first assertion or error line, if it failed
    output: str


def adds_qtest(patch: Path) -> bool:
    """Does the patch add a qtest (the part the negative control keeps)?"""
    text = patch.read_text(errors="replace")
    files = re.findall(r"^diff --git a/(\S+) ", text, re.M)
    return any(f.startswith("tests/qtest/") and f.endswith("-test.c") for f in files)


def fake_builddir(repo: Path, workdir: WorkDir) -> Path:
    """The build directory of the fake for this checkout of qseries.

    Each checkout gets its own, keyed by its absolute path: two checkouts
    sharing a work dir must not test each other's fakevfio.c.  Edits
    within one checkout are ninja's business.
    """
    key = hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:12]
    return workdir.path / "build" / f"qseries-c-{key}"


def build_fake(repo: Path, workdir: WorkDir) -> Path:
    """Build tests/fakevfio with the repository's meson.build."""
    builddir = fake_builddir(repo, workdir)
    log = workdir.sub("logs") / f"build-{builddir.name}.log"
    log.write_text("")
    if not (builddir / "build.ninja").exists():
        meson = Path(sys.executable).with_name("meson")
        argv = [
            str(meson) if meson.exists() else "meson",
            "setup",
            str(builddir),
            str(repo),
        ]
        code, _ = run_logged(argv, repo, log, None)
        if code != 0:
            raise BuildError("meson setup of tests/fakevfio failed", f"see {log}")
    code, _ = run_logged(["ninja"], builddir, log, Progress("ninja fakevfio"))
    if code != 0:
        raise BuildError("building tests/fakevfio failed", f"see {log}")
    library = next(builddir.rglob(FAKE_LIBRARY), None)
    if library is None:
        raise BuildError(f"the build made no {FAKE_LIBRARY}", f"see {log}")
    return library


def _env(qemu: Path, fake: Path | None) -> dict[str, str]:
    env = {**os.environ, "QTEST_QEMU_BINARY": str(qemu), "LC_ALL": "C"}
    env.pop("LD_PRELOAD", None)
    if fake is not None:
        env["QTEST_VFIO_FAKE"] = str(fake)
    return env


def _run_qtest(
    binary: Path, args: list[str], qemu: Path, fake: Path | None, timeout: float
) -> Ran:
    """A qtest binary, pointed at qemu (and at the fake, if given)."""
    return run_bounded([str(binary), *args], _env(qemu, fake), timeout)


class ListTimeout(Exception):
    """Listing a qtest's cases timed out."""


def list_cases(
    binary: Path, qemu: Path, fake: Path | None, timeout: float = LIST_TIMEOUT
) -> list[str]:
    """The case paths of a qtest binary; ListTimeout if it hangs."""
    ran = _run_qtest(binary, ["-l"], qemu, fake, timeout)
    if ran.timed_out:
        raise ListTimeout(f"{binary.name} -l timed out after {timeout:g} s")
    return [line.strip() for line in ran.stdout.splitlines() if line.startswith("/")]


ERROR_LINE = re.compile(r"(ERROR:.*|.*assertion failed.*|Bail out!.*)")


def run_case(
    binary: Path,
    qemu: Path,
    fake: Path | None,
    path: str,
    timeout: float = QTEST_TIMEOUT,
) -> CaseRun:
    started = time.monotonic()
    ran = _run_qtest(binary, ["--tap", "-p", path], qemu, fake, timeout)
    output = ran.stdout + ran.stderr
    if ran.timed_out:
        output = f"timed out after {timeout:g} s\n{output}"
    passed = (
        not ran.timed_out
        and ran.returncode == 0
        and re.search(r"^ok \d+ ", ran.stdout, re.M) is not None
    )
    events = tuple(m[1] for m in re.finditer(r"^# (\w+ events: .*)$", output, re.M))
    errors = [m[1] for m in ERROR_LINE.finditer(output)]
    if ran.timed_out:
        error = output.splitlines()[0]
    elif errors:
        error = errors[0]
    else:
        error = "" if passed else output.strip()[-300:]
    return CaseRun(path, passed, time.monotonic() - started, events, error, output)


def evidence(run: CaseRun) -> list[str]:
    """The scratch files a failed case left behind (the fake's logs)."""
    return [m[1] for m in re.finditer(r"^# (\w+ device log: .*)$", run.output, re.M)]


def series_qtest(
    binary: Path, qemu: Path, fake: Path, list_timeout: float = LIST_TIMEOUT
) -> list[CaseRun]:
    """Every case of the series' qtest, one process each.

    A hang while listing the cases becomes one failed run, so that the
    rest of the report is still made.
    """
    try:
        cases = list_cases(binary, qemu, fake, list_timeout)
    except ListTimeout as err:
        return [CaseRun(f"{binary.name} -l", False, list_timeout, (), str(err), "")]
    if not cases:
        raise ToolError(f"{binary.name} lists no test cases", "is the fake found?")
    runs = []
    for case in cases:
        say(f"qtest {case}")
        runs.append(run_case(binary, qemu, fake, case))
    return runs


def expect_pass(runs: Sequence[CaseRun]) -> list[Result]:
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


def no_prepare_reason(run: CaseRun) -> bool:
    """Did the case fail because QEMU sent no VFIO_MIGRATION_PREPARE?

    It must have stopped on one of the qtest's assertions (not on a
    crash or a timeout), after recording completion events, and not a
    single prepare event.
    """
    seen = [line.split(": ", 1)[1] for line in run.events]
    return (
        "assertion failed" in run.error
        and bool(seen)
        and any("done" in s for s in seen)
        and not any("prepare" in s for s in seen)
    )


def expect_control(runs: Sequence[CaseRun]) -> list[Result]:
    """On the unpatched base every case that needs a PREPARE must fail for
    lack of it; a case that expects no event at all must still pass."""
    results = []
    for run in runs:
        needs_prepare = not run.path.endswith("/no-op")
        if not needs_prepare:
            status = PASS if run.passed else FAIL
            detail = (
                "passes on the base too (no event either way)"
                if run.passed
                else run.error
            )
        elif run.passed:
            status, detail = FAIL, "passed without the change: the test proves nothing"
        elif no_prepare_reason(run):
            status, detail = PASS, "fails as it must: no VFIO_MIGRATION_PREPARE"
        else:
            status, detail = FAIL, f"fails for another reason: {run.error}"
        results.append(Result(f"control {run.path}", status, detail, list(run.events)))
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
        ran = _run_qtest(binary, ["--tap", "-k"], qemu, None, timeout)
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


NO_PREPARE = "no VFIO_MIGRATION_PREPARE"


def qmp_tests(
    repo: Path,
    qemu: Path,
    fake: Path,
    control: bool,
    scratch: Path,
    timeout: float = SUITE_TIMEOUT,
) -> Result:
    """Our pytest tests with the qemu.qmp client (timing of the events)."""
    env = {
        **os.environ,
        "QSERIES_QEMU": str(qemu),
        "QSERIES_FAKEVFIO": str(fake),
        "QSERIES_REQUIRE_QEMU": "1",
        # pytest cuts the reasons in its summary to the terminal's width.
        "COLUMNS": "1000",
    }
    env.pop("LD_PRELOAD", None)
    ran = run_bounded(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rA",
            f"--basetemp={scratch / 'qmp-tests'}",
            str(repo / PYTEST_DIR),
        ],
        env,
        timeout,
        cwd=repo,
    )
    lines = [line for line in ran.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else "no output"
    figures = [line for line in lines if line.startswith(("PASSED", "FAILED", "ERROR"))]
    figures += [line.strip() for line in lines if "lead" in line and "ms" in line][:5]
    figures += [line.strip() for line in lines if line.startswith("kept ")]
    name = "qmp timing (qemu.qmp)"
    if ran.timed_out:
        return Result(
            f"control {name}" if control else name,
            FAIL,
            f"timed out after {timeout:g} s",
            figures + lines[-15:],
        )
    if control:
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
        others = [line for line in failed if NO_PREPARE not in line]
        if ran.returncode != 0 and failed and not others:
            return Result(
                f"control {name}", PASS, "fails as it must: " + summary, figures
            )
        why = "failed for another reason" if others else "did not fail for lack of"
        return Result(
            f"control {name}",
            FAIL,
            f"{why} PREPARE: {summary}" if not others else f"{why}: {others[0]}",
            figures,
        )
    if ran.returncode == 0 and "skipped" not in summary:
        return Result(name, PASS, summary, figures)
    return Result(name, FAIL, summary, figures + lines[-15:])


def skip(name: str, why: str) -> Result:
    return Result(name, SKIP, why)


@dataclass(frozen=True)
class Mutation:
    """A deliberate break of the change, which the qtest must catch.

    It counts as caught only when a case whose path ends with `case`
    fails on an error line matching `reason`: a crash or a timeout
    proves nothing about the check meant to catch it.
    """

    name: str
    what: str
    edits: tuple[tuple[str, str], ...]  # (old, new) text in migration.c
    case: str  # the end of the path of the case that must catch it
    reason: str  # regular expression for that case's error line

    def apply(self, text: str) -> str:
        for old, new in self.edits:
            if old not in text:
                raise ToolError(f"mutation {self.name}: '{old.strip()}' not found")
            text = text.replace(old, new, 1)
        return text

    def catches(self, run: CaseRun) -> bool:
        return (
            not run.passed
            and run.path.endswith(self.case)
            and re.search(self.reason, run.error) is not None
        )


MIGRATION_FILE = "hw/vfio/migration.c"
_PREPARE = "\n    vfio_migration_send_event(vbasedev, new_state, true);\n"
_EARLY = "    if (new_state == migration->device_state) {\n"
_RECORD_NEW = "    vfio_migration_set_device_state(vbasedev, new_state);\n"
_SUCCESS_END = "    return 0;\n\nreset_device:\n"

MUTATIONS = (
    Mutation(
        "prepare-after-ioctl",
        "PREPARE sent once the device has changed state",
        ((_PREPARE, "\n"), (_RECORD_NEW, _PREPARE.lstrip("\n") + _RECORD_NEW)),
        "/stop-cont",
        r"assertion failed \(prep->time_us <= t->begin_us\)",
    ),
    Mutation(
        "prepare-old-state",
        "PREPARE announces the state the device leaves",
        (
            (
                _PREPARE,
                _PREPARE.replace("new_state, true", "migration->device_state, true"),
            ),
        ),
        "/stop-cont",
        r'assertion failed \(seen == expected\): \("prepare running, done stop"',
    ),
    Mutation(
        "prepare-for-no-op",
        "PREPARE sent before the early return for an unchanged state",
        ((_PREPARE, "\n"), (_EARLY, _PREPARE.lstrip("\n") + _EARLY)),
        "/no-op",
        r'assertion failed \(seen == expected\): \("prepare running" == ""\)',
    ),
    Mutation(
        "no-completion-on-recovery",
        "no VFIO_MIGRATION for the recovery and reset states",
        (
            (
                "    vfio_migration_set_device_state(vbasedev, recover_state);\n",
                "    migration->device_state = recover_state;\n",
            ),
            (
                "    vfio_migration_set_device_state(vbasedev,"
                " VFIO_DEVICE_STATE_RUNNING);\n\n    return ret;",
                "    vbasedev->migration->device_state = VFIO_DEVICE_STATE_RUNNING;\n"
                "\n    return ret;",
            ),
        ),
        "/failure",
        r"assertion failed \(m\.src->events->len >= 4\): \(3 >= 4\)",
    ),
    Mutation(
        "unannounced-transition",
        "a second, silent MIG_DEVICE_STATE request after each transition",
        (
            (
                _SUCCESS_END,
                "    ioctl(vbasedev->fd, VFIO_DEVICE_FEATURE, feature);\n"
                + _SUCCESS_END,
            ),
        ),
        "/stop-cont",
        r"assertion failed \((t->to == announced|next == transitions->len)\)",
    ),
)


def judge_mutation(mutation: Mutation, runs: Sequence[CaseRun]) -> Result:
    """PASS only if the case meant to catch the mutation failed as meant."""
    name = f"mutation {mutation.name}"
    failed = [r for r in runs if not r.passed]
    caught = [r for r in failed if mutation.catches(r)]
    items = [f"{r.path}: {r.error}" for r in failed]
    if caught:
        return Result(name, PASS, f"caught: {mutation.what}", items)
    if failed:
        first = failed[0]
        return Result(
            name,
            FAIL,
            f"failed for another reason: {first.path}: {first.error}",
            [f"expected {mutation.case}: /{mutation.reason}/", *items],
        )
    return Result(name, FAIL, f"no test failed: {mutation.what}")


def run_mutations(
    tree: Path, builddir: Path, qemu: Path, fake: Path, log: Path
) -> list[Result]:
    """Break the change in each way of MUTATIONS; the qtest must fail.

    The build tree is restored (git checkout, ninja) afterwards.
    """
    from .gitutil import Git

    source = tree / MIGRATION_FILE
    original = source.read_text()
    binary = builddir / "tests" / "qtest" / SERIES_QTEST
    results = []
    try:
        for mutation in MUTATIONS:
            say(f"mutation {mutation.name}: {mutation.what}")
            source.write_text(mutation.apply(original))
            code, _ = run_logged(["ninja", qemu.name], builddir, log, None)
            if code != 0:
                results.append(
                    Result(
                        f"mutation {mutation.name}", FAIL, f"does not build; see {log}"
                    )
                )
                continue
            try:
                cases = list_cases(binary, qemu, fake)
            except ListTimeout as err:
                results.append(Result(f"mutation {mutation.name}", FAIL, str(err)))
                continue
            runs = [run_case(binary, qemu, fake, case) for case in cases]
            results.append(judge_mutation(mutation, runs))
    finally:
        Git(tree).run("checkout", "--quiet", "--", MIGRATION_FILE)
        code, _ = run_logged(["ninja", qemu.name], builddir, log, None)
        if code != 0:
            raise BuildError("rebuilding after the mutations failed", f"see {log}")
    return results
