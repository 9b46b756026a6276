"""The VFIO series' qtest, its fake device, its control and its mutations.

The qtest is the one the version adds to QEMU, named in its test plan
(series.yaml); it needs the fake VFIO device, either the one qseries
builds from the lab's copy of fakevfio.c (passed in QTEST_VFIO_FAKE) or
the one the patch carries, which the qtest finds beside itself.  The
negative control runs the same tests on a build with the test patch but
without the change: the cases that need the notice must fail, and for
that reason (no prepare notice), not for any other.  The mutations are
deliberate breaks of the change that the qtest must catch.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ...core.results import FAIL, PASS, Result
from ...ground import pkgdata
from ...ground.console import Progress, say
from ...ground.errors import ToolError
from ...ground.proc import run_logged
from ...ground.workdir import WorkDir
from ...qemu.build import BuildError
from ...qemu.testing import (
    LIST_TIMEOUT,
    CaseRun,
    ListTimeout,
    list_cases,
    run_cases,
    skip,
)
from .plan import Mutation, TestPlan

# The variable through which a qtest of the series finds the fake.
FAKE_ENV = "QTEST_VFIO_FAKE"


def fake_env(fake: Path | None) -> dict[str, str] | None:
    """The environment that tells a qtest where the fake is."""
    return {FAKE_ENV: str(fake)} if fake is not None else None


FAKE_LIBRARY = "libfakevfio.so"


# The fake's C source and meson.build: package data of the lab.
FAKE_SOURCES = resources.files("qseries.labs.vfio_migration") / "fakevfio"


def fake_sources(workdir: WorkDir, sources: Traversable = FAKE_SOURCES) -> Path:
    """The fake's sources as a folder meson can read: their copy in the
    work dir, whose path changes with their content."""
    return pkgdata.materialize(workdir.path, sources)


def fake_builddir(sources: Path, workdir: WorkDir) -> Path:
    """The build directory of the fake whose sources are at sources.

    One per folder, keyed by its absolute path: a copy of fake_sources
    moves with the content, so two installs of qseries sharing a work
    dir never test each other's fakevfio.c.
    """
    key = hashlib.sha256(str(sources.resolve()).encode()).hexdigest()[:12]
    return workdir.path / "build" / f"qseries-c-{key}"


def build_fake(sources: Path, workdir: WorkDir) -> Path:
    """Build the fake with the meson.build of its sources (fake_sources)."""
    builddir = fake_builddir(sources, workdir)
    log = workdir.sub("logs") / f"build-{builddir.name}.log"
    log.write_text("")
    if not (builddir / "build.ninja").exists():
        meson = Path(sys.executable).with_name("meson")
        argv = [
            str(meson) if meson.exists() else "meson",
            "setup",
            str(builddir),
            str(sources),
        ]
        # Sandboxed though the fake is qseries' own: its build dir is in
        # build/, which the series' code may write, and a build.ninja
        # planted there would run what the series wants.
        code, _ = run_logged(argv, sources, log, None, untrusted=True)
        if code != 0:
            raise BuildError("meson setup of the fake device failed", f"see {log}")
    code, _ = run_logged(
        ["ninja"], builddir, log, Progress("ninja fakevfio"), untrusted=True
    )
    if code != 0:
        raise BuildError("building the fake device failed", f"see {log}")
    library = next(builddir.rglob(FAKE_LIBRARY), None)
    if library is None:
        raise BuildError(f"the build made no {FAKE_LIBRARY}", f"see {log}")
    return library


# v1's qtest says "source device log: PATH", v2's "source fake VFIO log: PATH".
EVIDENCE = re.compile(r"^# (\w+ (?:device|fake VFIO) log: .*)$", re.M)


def evidence(run: CaseRun) -> list[str]:
    """The scratch files a failed case left behind (the fake's logs)."""
    return [m[1] for m in EVIDENCE.finditer(run.output)]


def series_qtest(
    binary: Path, qemu: Path, fake: Path | None, list_timeout: float = LIST_TIMEOUT
) -> list[CaseRun]:
    """Every case of the series' qtest (run_cases says how).

    A hang while listing the cases becomes one failed run, so that the
    rest of the report is still made.
    """
    try:
        cases = list_cases(binary, qemu, fake_env(fake), list_timeout)
    except ListTimeout as err:
        return [CaseRun(f"{binary.name} -l", False, list_timeout, (), str(err), "")]
    if not cases:
        raise ToolError(f"{binary.name} lists no test cases", "is the fake found?")
    return run_cases(binary, qemu, fake_env(fake), cases)


def no_notice_reason(run: CaseRun, plan: TestPlan) -> bool:
    """Did the case fail because QEMU sent no prepare notice?

    It must have stopped on one of the qtest's assertions (not on a
    crash, a skip or a timeout), after recording events, and not a
    single one of them a notice (the plan's notice-pattern).
    """
    seen = [line.split(": ", 1)[1] for line in run.events if ": " in line]
    return (
        "assertion failed" in run.error
        and any(s.strip() for s in seen)
        and not any(re.search(plan.notice_pattern, s) for s in seen)
    )


def expect_control(runs: Sequence[CaseRun], plan: TestPlan) -> list[Result]:
    """On the base with only the test patch, every case that needs the
    notice must fail for lack of it; the plan's base-passes cases, which
    involve no notice, must pass there too."""
    results = []
    for run in runs:
        if any(run.path.endswith(case) for case in plan.base_passes):
            status = PASS if run.passed else FAIL
            detail = "passes on the base too (no notice involved)"
            results.append(
                Result(
                    f"control {run.path}",
                    status,
                    detail if run.passed else run.error,
                    list(run.events),
                )
            )
            continue
        if run.passed:
            status, detail = FAIL, "passed without the change: the test proves nothing"
        elif no_notice_reason(run, plan):
            status, detail = PASS, f"fails as it must: no prepare notice ({run.error})"
        else:
            status, detail = FAIL, f"fails for another reason: {run.error}"
        results.append(Result(f"control {run.path}", status, detail, list(run.events)))
    return results


def apply_mutation(mutation: Mutation, text: str) -> str:
    """The file's text with the mutation's edits, each made once."""
    for old, new in mutation.edits:
        if old not in text:
            raise ToolError(
                f"mutation {mutation.name}: {old.strip()!r} not found in "
                f"{mutation.file}",
                "the mutation does not fit the generated change; update it",
            )
        text = text.replace(old, new, 1)
    return text


def catches(mutation: Mutation, run: CaseRun) -> bool:
    """A failure counts only in the case meant to catch the mutation and
    on the reason given: a crash or a timeout proves nothing."""
    return (
        not run.passed
        and run.path.endswith(mutation.case)
        and re.search(mutation.reason, run.error) is not None
    )


def judge_mutation(mutation: Mutation, runs: Sequence[CaseRun]) -> Result:
    """PASS only if the case meant to catch the mutation failed as meant."""
    name = f"mutation {mutation.name}"
    failed = [r for r in runs if not r.passed]
    caught = [r for r in failed if catches(mutation, r)]
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


def _tree_source(tree: Path, name: str) -> Path:
    """tree/name, if each step down from tree is a directory and the last
    a regular file, none a symlink: the series' build runs in the tree
    and may leave a symlink where a source was, to a file of the user's
    that a write would replace."""
    path = tree
    parts = Path(name).parts
    for i, part in enumerate(parts):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except OSError as err:
            raise BuildError(
                f"{path}: {err.strerror}", "build the version again"
            ) from None
        last = i == len(parts) - 1
        if part == ".." or not (stat.S_ISREG(mode) if last else stat.S_ISDIR(mode)):
            if stat.S_ISLNK(mode):
                what = "a symlink"
            else:
                what = "not a regular file" if last else "not a directory"
            raise BuildError(
                f"{path} is {what} after the version's build; qseries does "
                "not write through it",
                "look for what the series' build does to its source tree",
            )
    return path


def _tree_read(tree: Path, name: str) -> str:
    fd = os.open(_tree_source(tree, name), os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, encoding="utf-8") as f:
        return f.read()


def _tree_write(tree: Path, name: str, text: str) -> None:
    """Write a source of the tree, following no symlink (_tree_source)."""
    path = _tree_source(tree, name)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def run_mutations(
    plan: TestPlan,
    tree: Path,
    builddir: Path,
    qemu: Path,
    fake: Path | None,
    log: Path,
    fault_check: Callable[[Mutation], Result] | None = None,
) -> list[Result]:
    """Break the change in each way of the plan's mutations; the qtest
    must catch each (or, for a mutation that names a fault case,
    fault_check, which runs that case of the fault matrix on the broken
    QEMU).  The build tree is restored (git checkout, ninja) afterwards."""
    from ...ground.gitutil import Git

    binary = builddir / "tests" / "qtest" / plan.qtest
    files = sorted({m.file for m in plan.mutations})
    originals = {name: _tree_read(tree, name) for name in files}
    results = []
    restore = ["checkout", "--quiet", "--", *files]
    try:
        for mutation in plan.mutations:
            say(f"mutation {mutation.name}: {mutation.what}")
            for name, text in originals.items():
                _tree_write(tree, name, text)
            broken = apply_mutation(mutation, originals[mutation.file])
            _tree_write(tree, mutation.file, broken)
            code, _ = run_logged(
                ["ninja", qemu.name], builddir, log, None, untrusted=True
            )
            if code != 0:
                results.append(
                    Result(
                        f"mutation {mutation.name}", FAIL, f"does not build; see {log}"
                    )
                )
                continue
            if mutation.fault is not None:
                if fault_check is None:
                    results.append(
                        skip(f"mutation {mutation.name}", "needs the fault matrix")
                    )
                else:
                    results.append(fault_check(mutation))
                continue
            try:
                cases = list_cases(binary, qemu, fake_env(fake))
            except ListTimeout as err:
                results.append(Result(f"mutation {mutation.name}", FAIL, str(err)))
                continue
            results.append(
                judge_mutation(mutation, run_cases(binary, qemu, fake_env(fake), cases))
            )
    except BaseException:
        # Interrupted or failed: the sources back as they were, fast; the
        # next build's ninja rebuilds what they changed.
        Git(tree).run(*restore)
        raise
    Git(tree).run(*restore)
    code, _ = run_logged(["ninja", qemu.name], builddir, log, None, untrusted=True)
    if code != 0:
        raise BuildError("rebuilding after the mutations failed", f"see {log}")
    return results
