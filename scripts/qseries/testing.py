"""test: run the series' qtest, QEMU's own qtests and our QMP tests.

The qtest is the one the series adds to QEMU; it needs the fake VFIO
device (tests/fakevfio here), built with our own meson.build.  The
negative control runs the same tests on a build with the qtest but
without the change: they must fail, and for the stated reason (no
VFIO_MIGRATION_PREPARE event), not for any other.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .build import BuildError, Progress, run_logged
from .errors import ToolError
from .report import FAIL, PASS, SKIP, Result
from .source import WorkDir, say

SERIES_QTEST = "vfio-migration-prepare-test"
QEMU_QTESTS = ("qmp-test", "qmp-cmd-test", "device-introspect-test")
FAKE_LIBRARY = "libfakevfio.so"
QTEST_TIMEOUT = 300
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


def build_fake(repo: Path, workdir: WorkDir) -> Path:
    """Build tests/fakevfio with the repository's meson.build."""
    builddir = workdir.path / "build" / "qseries-c"
    log = workdir.sub("logs") / "build-qseries-c.log"
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
) -> subprocess.CompletedProcess[str]:
    """A qtest binary, pointed at qemu (and at the fake, if given)."""
    return subprocess.run(
        [str(binary), *args],
        env=_env(qemu, fake),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=timeout,
    )


def list_cases(binary: Path, qemu: Path, fake: Path | None) -> list[str]:
    proc = _run_qtest(binary, ["-l"], qemu, fake, 60)
    return [line.strip() for line in proc.stdout.splitlines() if line.startswith("/")]


ERROR_LINE = re.compile(r"(ERROR:.*|.*assertion failed.*|Bail out!.*)")


def run_case(binary: Path, qemu: Path, fake: Path | None, path: str) -> CaseRun:
    started = time.monotonic()
    try:
        proc = _run_qtest(binary, ["--tap", "-p", path], qemu, fake, QTEST_TIMEOUT)
        output = proc.stdout + proc.stderr
        passed = (
            proc.returncode == 0
            and re.search(r"^ok \d+ ", proc.stdout, re.M) is not None
        )
    except subprocess.TimeoutExpired as err:
        partial = err.stdout.decode(errors="replace") if err.stdout else ""
        output = f"timed out after {QTEST_TIMEOUT} s\n{partial}"
        passed = False
    events = tuple(m[1] for m in re.finditer(r"^# (\w+ events: .*)$", output, re.M))
    errors = [m[1] for m in ERROR_LINE.finditer(output)]
    return CaseRun(
        path,
        passed,
        time.monotonic() - started,
        events,
        errors[0] if errors else ("" if passed else output.strip()[-300:]),
        output,
    )


def series_qtest(binary: Path, qemu: Path, fake: Path) -> list[CaseRun]:
    cases = list_cases(binary, qemu, fake)
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
            results.append(Result(run.path, FAIL, run.error, list(run.events)))
    return results


def no_prepare_reason(run: CaseRun) -> bool:
    """Did the case fail because QEMU sent no VFIO_MIGRATION_PREPARE?"""
    seen = [line.split(": ", 1)[1] for line in run.events]
    return (
        bool(seen)
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


def qemu_qtests(builddir: Path, qemu: Path) -> list[Result]:
    results = []
    for name in QEMU_QTESTS:
        binary = builddir / "tests" / "qtest" / name
        if not binary.exists():
            results.append(Result(name, FAIL, f"{binary} was not built"))
            continue
        say(f"qtest {name}")
        started = time.monotonic()
        proc = _run_qtest(binary, ["--tap", "-k"], qemu, None, 900)
        ok = len(re.findall(r"^ok ", proc.stdout, re.M))
        bad = re.findall(r"^not ok .*$", proc.stdout, re.M)
        if proc.returncode == 0 and not bad:
            results.append(
                Result(name, PASS, f"{ok} cases, {time.monotonic() - started:.1f} s")
            )
        else:
            results.append(Result(name, FAIL, f"exit {proc.returncode}", bad[:10]))
    return results


def qmp_tests(
    repo: Path, qemu: Path, fake: Path, control: bool, scratch: Path
) -> Result:
    """Our pytest tests with the qemu.qmp client (timing of the events)."""
    env = {
        **os.environ,
        "QSERIES_QEMU": str(qemu),
        "QSERIES_FAKEVFIO": str(fake),
        "QSERIES_REQUIRE_QEMU": "1",
    }
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run(
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
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=900,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else "no output"
    figures = [line for line in lines if line.startswith(("PASSED", "FAILED", "ERROR"))]
    figures += [line.strip() for line in lines if "lead" in line and "ms" in line][:5]
    name = "qmp timing (qemu.qmp)"
    if control:
        reason = "no VFIO_MIGRATION_PREPARE" in proc.stdout
        if proc.returncode != 0 and reason:
            return Result(
                f"control {name}", PASS, "fails as it must: " + summary, figures
            )
        return Result(
            f"control {name}",
            FAIL,
            "did not fail for lack of PREPARE: " + summary,
            figures,
        )
    if proc.returncode == 0 and "skipped" not in summary:
        return Result(name, PASS, summary, figures)
    return Result(name, FAIL, summary, figures + lines[-15:])


def skip(name: str, why: str) -> Result:
    return Result(name, SKIP, why)


@dataclass(frozen=True)
class Mutation:
    """A deliberate break of the change, which the qtest must catch."""

    name: str
    what: str
    edits: tuple[tuple[str, str], ...]  # (old, new) text in migration.c

    def apply(self, text: str) -> str:
        for old, new in self.edits:
            if old not in text:
                raise ToolError(f"mutation {self.name}: '{old.strip()}' not found")
            text = text.replace(old, new, 1)
        return text


MIGRATION_FILE = "hw/vfio/migration.c"
_PREPARE = "\n    vfio_migration_send_event(vbasedev, new_state, true);\n"
_EARLY = "    if (new_state == migration->device_state) {\n"
_RECORD_NEW = "    vfio_migration_set_device_state(vbasedev, new_state);\n"

MUTATIONS = (
    Mutation(
        "prepare-after-ioctl",
        "PREPARE sent once the device has changed state",
        ((_PREPARE, "\n"), (_RECORD_NEW, _PREPARE.lstrip("\n") + _RECORD_NEW)),
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
    ),
    Mutation(
        "prepare-for-no-op",
        "PREPARE sent before the early return for an unchanged state",
        ((_PREPARE, "\n"), (_EARLY, _PREPARE.lstrip("\n") + _EARLY)),
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
    ),
)


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
            runs = [
                run_case(binary, qemu, fake, case)
                for case in list_cases(binary, qemu, fake)
            ]
            caught = [r for r in runs if not r.passed]
            if caught:
                results.append(
                    Result(
                        f"mutation {mutation.name}",
                        PASS,
                        f"caught: {mutation.what}",
                        [f"{r.path}: {r.error}" for r in caught],
                    )
                )
            else:
                results.append(
                    Result(
                        f"mutation {mutation.name}",
                        FAIL,
                        f"no test failed: {mutation.what}",
                    )
                )
    finally:
        Git(tree).run("checkout", "--quiet", "--", MIGRATION_FILE)
        code, _ = run_logged(["ninja", qemu.name], builddir, log, None)
        if code != 0:
            raise BuildError("rebuilding after the mutations failed", f"see {log}")
    return results
