"""touched: MAINTAINERS matching, the build's tests from meson's
introspection, the choice of tests for a change, --tests and the
reading of meson's test log, on small inputs of the real formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qseries.core.results import FAIL, PASS, SKIP
from qseries.qemu import touched
from qseries.qemu.touched import Build, BuildTest, FilePattern


def pattern(written: str, *dirs: str) -> FilePattern:
    return FilePattern.parse(written, lambda p: p in dirs)


@pytest.mark.parametrize(
    ("written", "path", "matches"),
    [
        # MAINTAINERS' own examples: a trailing "/" takes all below ...
        ("drivers/net/", "drivers/net/a.c", True),
        ("drivers/net/", "drivers/net/ipv6/b.c", True),
        # ... "dir/*" what is in it, not below ...
        ("drivers/net/*", "drivers/net/a.c", True),
        ("drivers/net/*", "drivers/net/ipv6/b.c", False),
        # ... and "*/net/*" a net directory at the top of any directory.
        ("*/net/*", "drivers/net/a.c", True),
        ("*/net/*", "x/drivers/net/a.c", False),
        # "." is a dot, "?" one character, "[hc]" a class.
        ("hw/vfio/pci.c", "hw/vfio/pci.c", True),
        ("hw/vfio/pci.c", "hw/vfio/pcixc", False),
        ("hw/char/sclp*.[hc]", "hw/char/sclpconsole.c", True),
        ("hw/char/sclp*.[hc]", "hw/char/sclpconsole.o", False),
        ("tests/qtest/rtas?test.c", "tests/qtest/rtas-test.c", True),
        # A prefix with as many "/" as the pattern (get_maintainer.pl).
        ("hw/vfio/pci.c", "hw/vfio/pci.c.inc", True),
        ("tests/qtest/npcm*", "tests/qtest/npcm7xx_pwm-test.c", True),
        ("hw/vfio/*", "hw/vfio-user/x.c", False),
        # A catch-all of the top level: "*" every file there, "*/" all.
        ("*", "MAINTAINERS", True),
        ("*", "hw/vfio/pci.c", False),
        ("*/", "hw/vfio/pci.c", True),
    ],
)
def test_patterns_match_as_get_maintainer_does(
    written: str, path: str, matches: bool
) -> None:
    assert pattern(written).matches(path) is matches


def test_a_pattern_that_names_a_directory_takes_all_below_it() -> None:
    assert pattern("hw/vfio", "hw/vfio").matches("hw/vfio/migration.c")
    # Without the tree's word, "hw/vfio" is a file of that name.
    assert not pattern("hw/vfio").matches("hw/vfio/migration.c")


def test_an_invalid_regular_expression_matches_nothing() -> None:
    assert not pattern("hw/(oops").matches("hw/(oops")


MAINTAINERS = """\
QEMU Maintainers
================

Descriptions of section entries:

\tF: Files and directories with wildcard patterns.
\t   F:\tdrivers/net/\tall files in and below drivers/net
\tX: Files and directories that are NOT maintained

General Project Administration
------------------------------
M: Someone <someone@example.org>

All patches CC here
L: qemu-devel@nongnu.org
F: *
F: */

VFIO
M: A Maintainer <a@example.org>
S: Supported
F: hw/vfio/*
F: include/hw/vfio/

F: qapi/vfio.json

QMP
M: Markus <m@example.org>
S: Supported
F: monitor/qmp*
F: qapi/control.json
F: tests/qtest/qmp-test.c
F: tests/qtest/qmp-cmd-test.c

qtest
M: Q <q@example.org>
S: Maintained
F: system/qtest.c
F: tests/qtest/
X: tests/qtest/migration-*

Network devices
M: N <n@example.org>
S: Odd Fixes
F: hw/net/
F: tests/qtest/virtio-net-test.c
F: tests/qtest/e1000e-test.c

Virtio net
M: V <v@example.org>
F: hw/virtio/net.c
F: tests/qtest/virtio-net-test.c
"""


def sections() -> tuple[touched.Section, ...]:
    return touched.read_maintainers(MAINTAINERS, lambda p: False)


def test_sections_are_runs_of_tagged_lines_named_by_the_line_before() -> None:
    found = sections()
    assert [s.name for s in found] == [
        "General Project Administration",
        "All patches CC here",
        "VFIO",
        "QMP",
        "qtest",
        "Network devices",
        "Virtio net",
    ]
    # A blank line inside a section does not end it.
    vfio = found[2]
    assert [f.written for f in vfio.files] == [
        "hw/vfio/*",
        "include/hw/vfio/",
        "qapi/vfio.json",
    ]
    assert (
        vfio.line
        == MAINTAINERS.splitlines().index("M: A Maintainer <a@example.org>") + 1
    )


def test_an_excluded_file_is_not_the_sections() -> None:
    qtest = next(s for s in sections() if s.name == "qtest")
    assert qtest.covers("tests/qtest/qom-test.c")
    assert not qtest.covers("tests/qtest/migration-test.c")
    assert not qtest.covers("hw/vfio/pci.c")


def qtest(name: str, *sources: str, suite: str = "qtest") -> BuildTest:
    return BuildTest(
        name=f"{suite}-x86_64/{name}" if suite == "qtest" else name,
        suites=(suite, f"{suite}-x86_64") if suite == "qtest" else (suite,),
        sources=sources or (f"tests/qtest/{name}.c",),
        targets=(f"tests/qtest/{name}", "qemu-system-x86_64"),
        timeout=60,
    )


BUILD = Build(
    Path("/build"),
    (
        qtest("qom-test"),
        qtest("qmp-test"),
        qtest("qmp-cmd-test"),
        qtest("device-introspect-test"),
        qtest("migration-test", "tests/qtest/migration-test.c"),
        qtest("qos-test", "tests/qtest/qos-test.c", "tests/qtest/e1000e-test.c"),
        BuildTest(
            "QAPI schema regression tests",
            ("qapi-schema", "qapi-frontend"),
            ("tests/qapi-schema/test-qapi.py", "tests/qapi-schema/alternate-any.json"),
            (),
            30,
        ),
        BuildTest(
            "ptimer-test",
            ("unit",),
            ("tests/unit/ptimer-test.c", "hw/core/ptimer.c"),
            ("tests/unit/ptimer-test",),
            30,
        ),
        BuildTest(
            "fp-test-mulAdd",
            ("softfloat-slow", "slow"),
            ("tests/fp/fp-test.c", "fpu/softfloat.c"),
            ("tests/fp/fp-test",),
            30,
        ),
    ),
    {"tests/qtest/libqtest.c": "qos"},
)


def choose(*changed: str) -> touched.Choice:
    return touched.choose_in(changed, BUILD, sections(), touched.load_mapping())


SCHEMA_TESTS = [
    "qtest-x86_64/qmp-cmd-test",
    "qtest-x86_64/qmp-test",
    "qtest-x86_64/device-introspect-test",
]


def test_a_qapi_module_chooses_the_tests_of_the_built_schema() -> None:
    choice = choose("qapi/misc.json")
    assert choice.names == SCHEMA_TESTS
    assert "QAPI schema regression tests" not in choice.names
    assert choice.tests[0].reasons == (
        "qapi/misc.json changed: tests that exercise the built QAPI schema",
    )
    assert choice.unmapped == ()
    assert choose("qapi/misc.json", "./qapi/misc.json").unmapped == ()
    # Not below qapi/ (MAINTAINERS' "*" stops at a "/").
    assert choose("qapi/sub/x.json").names == []


def test_a_qtest_source_chooses_that_qtest_only() -> None:
    choice = choose("tests/qtest/qmp-cmd-test.c")
    assert choice.names == ["qtest-x86_64/qmp-cmd-test"]
    assert choice.tests[0].reasons == (
        "tests/qtest/qmp-cmd-test.c changed: the test is built or run from it",
    )
    # A file a test is built from, wherever it is.
    assert choose("./hw/core/ptimer.c").names == ["ptimer-test"]


def test_a_device_file_chooses_the_qtests_its_sections_list() -> None:
    choice = choose("hw/net/e1000e.c")
    assert choice.names == ["qtest-x86_64/qos-test"]
    (reason,) = choice.tests[0].reasons
    assert reason == (
        "hw/net/e1000e.c changed: MAINTAINERS' Network devices covers it and "
        "lists tests/qtest/e1000e-test.c"
    )
    # virtio-net-test.c is listed too, but is no source of this build.
    assert "virtio-net" not in " ".join(choice.lines())


def test_a_directory_of_qtests_respects_the_sections_exclusions() -> None:
    names = choose("system/qtest.c").names
    assert "qtest-x86_64/qom-test" in names
    assert "qtest-x86_64/migration-test" not in names  # X: tests/qtest/migration-*


def test_reasons_of_several_files_merge_in_the_order_first_chosen() -> None:
    choice = choose("monitor/qmp.c", "qapi/control.json")
    assert choice.names == SCHEMA_TESTS[1::-1] + SCHEMA_TESTS[2:]
    assert choice.tests[0].reasons == (
        "monitor/qmp.c changed: MAINTAINERS' QMP covers it and lists "
        "tests/qtest/qmp-test.c",
        "qapi/control.json changed: tests that exercise the built QAPI schema",
        "qapi/control.json changed: MAINTAINERS' QMP covers it and lists "
        "tests/qtest/qmp-test.c",
    )
    assert choice.targets == [
        "qemu-system-x86_64",
        "tests/qtest/device-introspect-test",
        "tests/qtest/qmp-cmd-test",
        "tests/qtest/qmp-test",
    ]


def test_nothing_found_is_said_with_the_reason() -> None:
    cases = {
        "hw/vfio/migration.c": "its MAINTAINERS sections (All patches CC here, "
        "VFIO) list no qtest",
        "hw/virtio/net.c": "its MAINTAINERS sections (All patches CC here, "
        "Virtio net) list tests/qtest/virtio-net-test.c (Virtio net), which "
        "no qtest of the build is built from",
        "docs/about/index.rst": "not code, and no test is built or run from it",
        "tests/qtest/libqtest.c": "it goes into the library qos",
        "tests/qtest/new-test.c": "no test of the build is built or run from it",
        "bogus/x.c": "no MAINTAINERS section covers it",
    }
    for path, why in cases.items():
        if path == "bogus/x.c":
            choice = touched.choose_in([path], BUILD, (), touched.load_mapping())
        else:
            choice = choose(path)
        assert choice.names == [], path
        (line,) = choice.unmapped
        assert line.startswith(f"{path}: ") and why in line, line
        assert choice.lines()[0].startswith("no test chosen")


def test_suites_left_out_by_default_are_not_chosen() -> None:
    assert choose("fpu/softfloat.c").names == []


def test_the_mapping_is_the_packages_data() -> None:
    mapping = touched.load_mapping()
    (rule,) = mapping.paths
    assert rule.match.written == "qapi/*.json"
    assert rule.tests == ("qmp-cmd-test", "qmp-test", "device-introspect-test")
    with pytest.raises(touched.MappingError, match="schema_version 2"):
        touched.load_mapping("schema_version: 2\n")
    with pytest.raises(touched.MappingError, match="KeyError"):
        touched.load_mapping("schema_version: 1\npaths: []\n")


def test_tests_named_by_the_user() -> None:
    choice = touched.parse_tests("qmp-test, qtest-x86_64/qom-test", BUILD)
    assert choice.names == ["qtest-x86_64/qmp-test", "qtest-x86_64/qom-test"]
    assert choice.tests[0].reasons == ("named with --tests",)
    with pytest.raises(touched.UnknownTest) as err:
        touched.parse_tests("qmp-test,qmp-tset", BUILD)
    assert err.value.exit_code == 2
    assert "no test 'qmp-tset' (did you mean qmp-test?)" in err.value.message
    assert err.value.hint is not None and "test -C /build --list" in err.value.hint
    for bad in ("", "qmp-test,,qom-test"):
        with pytest.raises(touched.UnknownTest):
            touched.parse_tests(bad, BUILD)


def test_the_control_must_have_run_the_series_tests() -> None:
    """The series' chosen tests against those the control ran: one the
    control did not run is a failure, named."""
    from qseries.pipeline.stages import _same_tests

    chosen = choose("tests/qtest/qmp-test.c", "tests/qtest/qmp-cmd-test.c").tests
    tests = [c.test for c in chosen]
    both = _same_tests(tests, [t.name for t in tests])
    assert both.status == PASS and both.detail == "2 tests ran on both"
    short = _same_tests(tests, ["qtest-x86_64/qmp-test"])
    assert short.status == FAIL
    assert short.items == ["qtest-x86_64/qmp-cmd-test"]


def test_the_controls_own_tests_are_those_of_its_test_patches() -> None:
    """A test built from a file the change touches is no test of the
    control's: it ran before the change, and must pass without it."""
    from qseries.pipeline.stages import _own_tests

    unit = qtest("test-cutils", "tests/unit/test-cutils.c", "util/cutils.c")
    added = qtest("qom-type-info-test")
    kept = {"tests/qtest/qom-type-info-test.c", "tests/qtest/meson.build"}
    assert _own_tests([unit, added], kept) == {added.name}
    assert _own_tests([unit, added], {"util/cutils.c"}) == {unit.name}


def test_a_test_patch_is_one_of_a_qtest_or_of_tests_only(tmp_path: Path) -> None:
    from qseries.qemu.testing import is_test_patch

    def patch(*files: str) -> Path:
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.patch"
        path.write_text("".join(f"diff --git a/{f} b/{f}\n" for f in files))
        return path

    assert is_test_patch(patch("MAINTAINERS", "tests/qtest/x-test.c"))
    assert is_test_patch(patch("tests/unit/test-x.c", "tests/unit/meson.build"))
    assert is_test_patch(patch("tests/qtest/libqos/x.c"))
    assert not is_test_patch(patch("hw/x.c", "tests/unit/test-x.c"))
    assert not is_test_patch(patch("qapi/x.json"))
    assert not is_test_patch(patch())


def write_info(builddir: Path, source: str) -> None:
    """A meson-info directory in the form meson 1.x writes (the fields
    touched.py reads, from the QEMU build's own files)."""
    info = builddir / "meson-info"
    info.mkdir(parents=True)
    b = str(builddir)
    (info / "meson-info.json").write_text(
        json.dumps({"directories": {"source": source, "build": b}})
    )
    tests = [
        {
            "cmd": [f"{b}/tests/qtest/qmp-test", "--tap", "-k"],
            "env": {"QTEST_QEMU_BINARY": "./qemu-system-x86_64"},
            "name": "qtest-x86_64/qmp-test",
            "timeout": 60,
            "suite": ["qemu:qtest", "qemu:qtest-x86_64"],
            "protocol": "tap",
            "depends": ["7134ae4@@qmp-test@exe", "qemu-system-x86_64@exe"],
        },
        {
            "cmd": [
                f"{b}/pyvenv/bin/python3",
                f"{b}/../../src/tests/qapi-schema/test-qapi.py",
                f"{b}/../../src/tests/qapi-schema/alternate-any.json",
            ],
            "name": "QAPI schema regression tests",
            "timeout": 30,
            "suite": ["qemu:qapi-schema", "qemu:qapi-frontend"],
            "depends": [],
        },
    ]
    targets = [
        {
            "name": "qmp-test",
            "id": "7134ae4@@qmp-test@exe",
            "type": "executable",
            "filename": [f"{b}/tests/qtest/qmp-test"],
            "target_sources": [
                {"language": "c", "sources": [f"{source}/tests/qtest/qmp-test.c"]},
                {"linker": ["gcc"], "parameters": []},
            ],
        },
        {
            "name": "qemu-system-x86_64",
            "id": "qemu-system-x86_64@exe",
            "type": "executable",
            "filename": [f"{b}/qemu-system-x86_64"],
            "target_sources": [{"sources": [f"{source}/system/main.c"]}],
        },
        {
            "name": "qos",
            "id": "cfbe5e0@@qos@sta",
            "type": "static library",
            "filename": [f"{b}/tests/qtest/libqos/libqos.a"],
            "target_sources": [{"sources": [f"{source}/tests/qtest/libqtest.c"]}],
        },
    ]
    (info / "intro-tests.json").write_text(json.dumps(tests))
    (info / "intro-targets.json").write_text(json.dumps(targets))


def test_the_build_is_read_from_meson_info(tmp_path: Path) -> None:
    builddir = tmp_path / "build" / "q"
    write_info(builddir, str(tmp_path / "src"))
    build = touched.read_build(builddir)
    qmp, schema = build.tests
    assert qmp == BuildTest(
        "qtest-x86_64/qmp-test",
        ("qtest", "qtest-x86_64"),
        ("tests/qtest/qmp-test.c",),
        ("qemu-system-x86_64", "tests/qtest/qmp-test"),
        60.0,
    )
    assert schema.sources == (
        "tests/qapi-schema/test-qapi.py",
        "tests/qapi-schema/alternate-any.json",
    )
    assert schema.targets == ()
    assert build.libraries == {"tests/qtest/libqtest.c": "qos"}


def test_a_build_dir_without_introspection_is_refused(tmp_path: Path) -> None:
    with pytest.raises(touched.IntrospectionError, match="not configured by meson"):
        touched.read_build(tmp_path)
    write_info(tmp_path / "b", "/src")
    (tmp_path / "b" / "meson-info" / "intro-tests.json").write_text("[{}]")
    with pytest.raises(touched.IntrospectionError, match="unexpected form"):
        touched.read_build(tmp_path / "b")


# Lines of meson's JSON test log (BUILDDIR/meson-logs/LOGBASE.json), as
# meson 1.12 wrote them for QEMU's qtests (stdout shortened).
LOG_PASS = {
    "name": "qtest+qtest-x86_64 - qemu:qtest-x86_64/qmp-test",
    "stdout": "1..4\nok 1 /x86_64/qmp/protocol\nok 2 /x86_64/qmp/oob\n"
    "ok 3 /x86_64/qmp/preconfig\nok 4 /x86_64/qmp/missing-any-arg\n",
    "result": "OK",
    "duration": 0.49,
    "returncode": 0,
}
LOG_FAIL = {
    "name": "qtest+qtest-x86_64 - qemu:qtest-x86_64/qom-test",
    "stdout": "1..2\nok 1 /x86_64/qom/none\n"
    "**\nERROR:../tests/qtest/qom-test.c:99:test_machine: assertion failed: (x)\n"
    "not ok 2 /x86_64/qom/pc - ERROR:../tests/qtest/qom-test.c:99\n",
    "stderr": "Bail out! ERROR:../tests/qtest/qom-test.c:99\n",
    "result": "FAIL",
    "duration": 2.5,
    "returncode": 1,
}
LOG_SKIP = {
    "name": "qtest+qtest-x86_64 - qemu:qtest-x86_64/cdrom-test",
    "stdout": "1..0 # SKIP no cdrom device here\n",
    "result": "SKIP",
    "duration": 0.1,
    "returncode": 77,
}


def test_results_are_read_from_mesons_json_log(tmp_path: Path) -> None:
    log = tmp_path / "qseries-touched.json"
    log.write_text(
        "".join(json.dumps(e) + "\n" for e in (LOG_PASS, LOG_FAIL, LOG_SKIP))
    )
    entries = touched._entries(log)
    assert sorted(entries) == [
        "qtest-x86_64/cdrom-test",
        "qtest-x86_64/qmp-test",
        "qtest-x86_64/qom-test",
    ]
    text = tmp_path / "qseries-touched.txt"
    ok = touched._verdict(qtest("qmp-test"), entries["qtest-x86_64/qmp-test"], text)
    assert (ok.status, ok.detail, ok.items) == (PASS, "4 cases, 0.5 s", [])
    bad = touched._verdict(qtest("qom-test"), entries["qtest-x86_64/qom-test"], text)
    assert (bad.status, bad.detail) == (FAIL, "fail (exit 1) after 2.5 s")
    assert bad.items == [
        "ERROR:../tests/qtest/qom-test.c:99:test_machine: assertion failed: (x)",
        "not ok 2 /x86_64/qom/pc - ERROR:../tests/qtest/qom-test.c:99",
        "Bail out! ERROR:../tests/qtest/qom-test.c:99",
        f"log: {text}",
    ]
    skip = touched._verdict(
        qtest("cdrom-test"), entries["qtest-x86_64/cdrom-test"], text
    )
    assert (skip.status, skip.detail) == (
        SKIP,
        "skipped by the test: no cdrom device here",
    )
