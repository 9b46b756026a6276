"""Paths with commas, quotes or 100+ characters: the work dir, TMPDIR.

libqtest starts QEMU with `sh -c "exec QEMU ARGS"`, its socket paths
($TMPDIR/qtest-PID.sock) unquoted in ARGS, in option values whose commas
it does not double, and bound in a sun_path of 108 bytes.  qseries runs
each qtest in a private scratch directory, with TMPDIR="." and QEMU
linked there, so that none of it depends on the work dir's path.  Where
QEMU's configure refuses the path (a blank or a colon), qseries says so
before any work, in one line, exit 2.
"""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest

from qseries.core import generators, series
from qseries.core.results import PASS
from qseries.ground.workdir import WorkDir
from qseries.labs.vfio_migration import vfiotest
from qseries.labs.vfio_migration.plan import plan_of
from qseries.qemu import build, testing

from ..conftest import REPO, RunCli

SUN_PATH_MAX = 107
# A directory no shell, QEMU option list or sun_path would take as is.
AWKWARD = "a,b'c\"d $x" + "-" + "l" * 100


def awkward_tmp(tmp_path: Path) -> Path:
    path = tmp_path / AWKWARD / "tmp"
    path.mkdir(parents=True)
    return path


@pytest.mark.parametrize("command", build.COMMANDS_THAT_BUILD)
@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ("with blank", "a blank (' ') in its path: QEMU's configure refuses it"),
        ("with:colon", "a colon in its path: QEMU's configure refuses it"),
        ('with"quote', "a quote (\") in its path: QEMU's build breaks on it"),
        ("with'quote", "a quote (') in its path: QEMU's build breaks on it"),
    ],
)
def test_a_work_dir_configure_refuses_is_refused_first(
    run_cli: RunCli, tmp_path: Path, command: str, bad: str, what: str
) -> None:
    workdir = tmp_path / bad / "work"
    proc = run_cli(command, workdir=workdir)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == (
        f"qseries: error: the work dir {workdir} has {what}; pass --workdir "
        "(or set QSERIES_WORKDIR to) a path without blanks, colons or quotes"
    )
    # Before any work: not even the work dir (or its lock) was made.
    assert not workdir.exists()


def test_commands_that_do_not_build_take_such_a_work_dir(
    run_cli: RunCli, tmp_path: Path
) -> None:
    proc = run_cli("ci", "gitlab", "--stdout", workdir=tmp_path / "with blank")
    assert proc.returncode == 0, proc.stderr


def test_build_dir_refuses_what_configure_refuses(tmp_path: Path) -> None:
    with pytest.raises(build.BuildPathError) as caught:
        build.check_build_paths(WorkDir(tmp_path / "a\tb"))
    assert caught.value.exit_code == 2
    assert "a blank ('\\t')" in str(caught.value)
    # Commas and length are no trouble (sockets and shell commands are
    # qseries' to keep short and quoted).
    build.check_build_paths(WorkDir(tmp_path / ("a,b-" + "l" * 100)))


def fake_qtest(path: Path, body: str) -> Path:
    """A stand-in qtest: records what libqtest would see, then runs body."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            {
              echo "cwd=$(pwd)"
              echo "tmpdir=$TMPDIR"
              echo "qemu=$QTEST_QEMU_BINARY"
              echo "resolved=$(readlink -f "$QTEST_QEMU_BINARY")"
            } > "$RECORD"
            """
        )
        + body
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def recorded(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_a_qtest_runs_in_a_short_private_dir_whatever_tmpdir_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = awkward_tmp(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp))
    record = tmp_path / "record"
    monkeypatch.setenv("RECORD", str(record))
    qemu = tmp_path / AWKWARD / "build" / "qemu-system-x86_64"
    qemu.parent.mkdir()
    qemu.write_text("")
    # What libqtest and the qtest make in TMPDIR, and a passing case.
    binary = fake_qtest(
        tmp_path / "qtest",
        'mkdir ./vfio-x && touch ./qtest-1.sock && echo "ok 1 /x/a"\n',
    )
    run = testing.run_case(binary, qemu, None, "/x/a", timeout=30)
    assert run.passed, run.output
    seen = recorded(record)
    assert seen["tmpdir"] == "."
    assert seen["qemu"] == "./qemu-system-x86_64"
    assert seen["resolved"] == str(qemu)
    scratch = Path(seen["cwd"])
    assert scratch.parent == tmp
    # libqtest's socket: the scratch dir's name is what sun_path holds.
    assert len(os.fsencode(f"{seen['tmpdir']}/qtest-4194304.sock")) < SUN_PATH_MAX
    # A case that passed leaves nothing behind.
    assert not scratch.exists()
    assert list(tmp.iterdir()) == []


def test_a_failed_case_keeps_its_scratch_and_names_it_absolutely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = awkward_tmp(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("RECORD", str(tmp_path / "record"))
    binary = fake_qtest(
        tmp_path / "qtest",
        textwrap.dedent(
            """\
            mkdir ./vfio-x && echo "begin" > ./vfio-x/fakevfio.log
            echo "# source fake VFIO log: ./vfio-x/fakevfio.log"
            echo "# destination device log: ./vfio-x/fakevfio.log"
            echo "not ok 1 /x/a"
            exit 1
            """
        ),
    )
    run = testing.run_case(binary, Path("/bin/true"), None, "/x/a", timeout=30)
    assert not run.passed
    scratch = Path(recorded(tmp_path / "record")["cwd"])
    log = scratch / "vfio-x" / "fakevfio.log"
    assert vfiotest.evidence(run) == [
        f"source fake VFIO log: {log}",
        f"destination device log: {log}",
    ]
    assert log.read_text() == "begin\n"


def test_listing_and_qemus_qtests_leave_no_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = awkward_tmp(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("RECORD", str(tmp_path / "record"))
    body = 'touch ./qtest-1.sock; echo "/x/a"; echo "ok 1 /x/a"\n'
    qtests = tmp_path / "build" / "tests" / "qtest"
    binary = fake_qtest(qtests / "vfio-test", body)
    for name in testing.QEMU_QTESTS:
        fake_qtest(qtests / name, body)
    assert testing.list_cases(binary, Path("/bin/true"), None) == ["/x/a"]
    results = testing.qemu_qtests(tmp_path / "build", Path("/bin/true"), timeout=30)
    assert [r.status for r in results] == [PASS] * len(testing.QEMU_QTESTS)
    assert list(tmp.iterdir()) == []


def test_qemus_runner_gets_a_short_tmpdir_relative_to_the_build_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = awkward_tmp(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp))
    builddir = tmp_path / AWKWARD / "build" / "debian-x"
    meson = builddir / "pyvenv" / "bin" / "meson"
    record = tmp_path / "record"
    monkeypatch.setenv("RECORD", str(record))
    fake_qtest(
        meson,
        textwrap.dedent(
            """\
            echo "in-tmpdir=$(cd "$TMPDIR" && pwd)" >> "$RECORD"
            mkdir -p meson-logs
            cat > meson-logs/qseries-vfio-migration-events-test.junit.xml <<EOF
            <testsuites><testsuite name="qemu:qtest-x86_64/vfio-migration-events-test">
            <testcase name="/x/a"/></testsuite></testsuites>
            EOF
            """
        ),
    )
    plan = plan_of(
        series.load(REPO / "series.yaml", generators.specs()).version("v2")
    ).test
    result = testing.qemu_runner(builddir, plan.qtest, timeout=30)
    assert result.status == PASS, result
    seen = recorded(record)
    assert seen["cwd"] == str(builddir)
    assert not seen["tmpdir"].startswith("/")
    assert len(seen["tmpdir"]) + len("/qtest-4194304.sock") < SUN_PATH_MAX
    assert Path(seen["in-tmpdir"]).parent == tmp
    assert list(tmp.iterdir()) == []
