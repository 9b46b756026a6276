"""touched against real builds: a small meson project whose tests pass,
fail and skip, run by the meson qseries installs; and QEMU's build and
tree in the work dir (skipped when that build is not there)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from qseries.core.results import FAIL, PASS, SKIP
from qseries.ground.workdir import WorkDir, WorkDirLock
from qseries.qemu import touched

MESON_BUILD = """\
project('touched-probe', [])
py = find_program('python3')
foreach t : ['pass', 'fail', 'skip']
  test(t, py, args: [files(t + '.py')], protocol: 'tap', suite: ['probe'],
       timeout: 30)
endforeach
test('slow', py, args: [files('pass.py')], protocol: 'tap', suite: ['slow'])
"""

SCRIPTS = {
    "pass.py": "print('1..2')\nprint('ok 1 /probe/a')\nprint('ok 2 /probe/b')\n",
    "fail.py": (
        "import sys\nprint('1..2')\nprint('ok 1 /probe/a')\n"
        "print('ERROR:fail.py:3:probe: assertion failed: (1 == 2)')\n"
        "print('not ok 2 /probe/b')\nsys.exit(1)\n"
    ),
    "skip.py": "print('1..0 # SKIP nothing to probe here')\n",
}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> touched.Build:
    """The probe project, configured by meson (no compiler needed)."""
    top = tmp_path_factory.mktemp("touched")
    src, builddir = top / "src", top / "build"
    src.mkdir()
    (src / "meson.build").write_text(MESON_BUILD)
    for name, text in SCRIPTS.items():
        (src / name).write_text(text)
    setup = subprocess.run(
        [touched.meson_of(builddir), "setup", str(builddir), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    return touched.read_build(builddir)


def test_the_probes_tests_are_read_and_chosen(probe: touched.Build) -> None:
    assert [t.name for t in probe.tests] == ["pass", "fail", "skip", "slow"]
    assert probe.tests[1].sources == ("fail.py",)
    mapping = touched.load_mapping()
    choice = touched.choose_in(["fail.py", "pass.py"], probe, (), mapping)
    # "slow" runs pass.py too, but its suite is left out by default.
    assert choice.names == ["fail", "pass"]


def test_the_chosen_tests_run_with_mesons_runner(
    probe: touched.Build, tmp_path: Path
) -> None:
    tests = list(probe.tests[:3])
    results = touched.run_tests(probe, tests, scratch=tmp_path)
    by_name = {r.name: r for r in results}
    assert [r.name for r in results] == ["pass", "fail", "skip"]
    assert by_name["pass"].status == PASS
    assert by_name["pass"].detail.startswith("2 cases, ")
    assert by_name["fail"].status == FAIL
    assert by_name["fail"].items[:2] == [
        "ERROR:fail.py:3:probe: assertion failed: (1 == 2)",
        "not ok 2 /probe/b",
    ]
    assert by_name["skip"].status == SKIP
    assert by_name["skip"].detail == "skipped by the test: nothing to probe here"


def test_a_test_meson_does_not_run_is_a_failure(probe: touched.Build) -> None:
    gone = touched.BuildTest("gone", ("probe",), (), (), 10)
    (result,) = touched.run_tests(probe, [gone])
    assert result.status == FAIL
    assert result.detail.startswith(touched.NOT_RUN)


# -- QEMU's build in the work dir ----------------------------------------

BASE = "debian-1_10.2.2+ds-1"


def work_dir() -> Path:
    """The work dir qseries uses by default."""
    return WorkDir.default(None).path


@pytest.fixture(scope="module")
def qemu() -> tuple[Path, Path]:
    """The tree and the configured, built build dir of the base."""
    work = work_dir()
    tree, builddir = work / "trees" / BASE, work / "build" / BASE
    for need in (tree / "MAINTAINERS", builddir / "meson-info" / "intro-tests.json"):
        if not need.is_file():
            pytest.skip(f"{need} is not there: build {BASE} with qseries first")
    return tree, builddir


@pytest.mark.qemu
def test_qemus_own_tests_are_chosen_from_the_real_tree(
    qemu: tuple[Path, Path],
) -> None:
    tree, builddir = qemu
    started = time.monotonic()
    schema = touched.choose(["qapi/misc.json"], tree, builddir)
    seconds = time.monotonic() - started
    assert seconds < 1.0
    assert schema.names == [
        "qtest-x86_64/qmp-cmd-test",
        "qtest-x86_64/qmp-test",
        "qtest-x86_64/device-introspect-test",
    ]
    assert "tests/qtest/qmp-cmd-test" in schema.targets
    assert "qemu-system-x86_64" in schema.targets
    itself = touched.choose(["tests/qtest/qmp-cmd-test.c"], tree, builddir)
    assert itself.names == ["qtest-x86_64/qmp-cmd-test"]
    # MAINTAINERS' VFIO section lists no qtest.
    vfio = touched.choose(["hw/vfio/migration.c"], tree, builddir)
    assert vfio.names == []
    assert "VFIO) list no qtest" in vfio.unmapped[0]
    # A section that lists a qtest of this build.
    qom = touched.choose(["hw/core/qdev.c"], tree, builddir)
    assert qom.names == ["qtest-x86_64/qom-test"]
    assert "MAINTAINERS' QOM covers it" in qom.tests[0].reasons[0]
    nobody = touched.choose(["docs/about/index.rst"], tree, builddir)
    assert nobody.names == [] and nobody.lines()[0].startswith("no test chosen")


def get_maintainer_sections(tree: Path, path: str) -> set[str]:
    """The sections QEMU's get_maintainer.pl says cover path: the first
    line of each block --sections prints."""
    out = subprocess.run(
        [
            "perl",
            "scripts/get_maintainer.pl",
            "--no-git-fallback",
            "--sections",
            "-f",
            path,
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return {block.splitlines()[0].strip() for block in out.split("\n\n") if block}


@pytest.mark.qemu
def test_sections_cover_what_get_maintainer_says(qemu: tuple[Path, Path]) -> None:
    tree, _ = qemu
    sections = touched.tree_maintainers(tree)
    files = sorted(
        str(p.relative_to(tree))
        for top in ("hw", "qapi", "tests/qtest", "system", "monitor", "migration")
        for p in (tree / top).rglob("*")
        if p.is_file()
    )
    # A spread of the tree, and the cases with exclusions and globs.
    sample = [
        *files[::60],
        "hw/vfio/migration.c",
        "system/qtest.c",
        "tests/qtest/migration-test.c",
        "tests/qtest/migration/framework.c",
        "tests/qtest/bios-tables-test.c",
        "hw/char/sclpconsole.c",
        "qapi/misc.json",
        "MAINTAINERS",
    ]
    assert len(sample) > 40
    for path in sample:
        mine = {s.name for s in sections if s.covers(path)}
        assert mine == get_maintainer_sections(tree, path), path


@pytest.mark.qemu
def test_a_qtest_of_the_real_build_runs(qemu: tuple[Path, Path]) -> None:
    _, builddir = qemu
    build = touched.read_build(builddir)
    choice = touched.parse_tests("qmp-test", build)
    if not all((builddir / t).is_file() for t in choice.targets):
        pytest.skip(f"{choice.targets} are not built in {builddir}")
    # meson writes its logs into the build dir: one run at a time.
    with WorkDirLock(work_dir(), "pytest: touched's qmp-test") as lock:
        lock.acquire(True)
        (result,) = touched.run_tests(build, [c.test for c in choice.tests])
    assert result.status == PASS, result
    assert result.detail.startswith("4 cases, ")
