"""The sandbox the series' code runs in: what it hides, what it allows,
and the run that goes on without it when bwrap cannot be used.

Each check runs a real command through proc with untrusted=True, once
sandboxed and, where it shows the test can tell, once without: what the
sandbox forbids must work outside it.  The home and tree are made in
/var/tmp, not under pytest's /tmp, which the sandbox replaces whole:
a hidden directory there would pass unhidden.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qseries.ground import proc, sandbox
from qseries.ground.workdir import WorkDir
from qseries.labs.vfio_migration import vfiotest
from qseries.qemu import build, testing
from qseries.qemu.build import BuildError

from ..conftest import REPO

BWRAP = shutil.which("bwrap")
needs_bwrap = pytest.mark.skipif(BWRAP is None, reason="bubblewrap is not installed")


@dataclass
class Place:
    """A home with a work dir in it (as ~/.cache/qseries is), and a tree."""

    root: Path
    home: Path
    tree: Path
    workdir: Path
    said: list[str]
    run: sandbox.RunSandbox


@pytest.fixture
def place() -> Iterator[Place]:
    root = Path(tempfile.mkdtemp(prefix="qseries-sandbox-", dir="/var/tmp"))
    home, tree = root / "home", root / "tree"
    workdir = home / ".cache" / "qseries"
    for d in (workdir, tree):
        d.mkdir(parents=True)
    (home / "secret").write_text("home secret\n")
    (tree / "VERSION").write_text("tree secret\n")
    said: list[str] = []
    run = sandbox.RunSandbox(workdir, [home, tree], said.append)
    before = proc.sandbox()
    proc.set_sandbox(run)
    try:
        yield Place(root, home, tree, workdir, said, run)
    finally:
        proc.set_sandbox(before)
        shutil.rmtree(root, ignore_errors=True)


def python(code: str, untrusted: bool, cwd: Path | None = None) -> proc.Ran:
    return proc.run_bounded(
        [sys.executable, "-c", code], os.environ, 30, cwd=cwd, untrusted=untrusted
    )


READ = "import sys; print(open(sys.argv[1]).read(), end='')"


def read(path: Path, untrusted: bool) -> proc.Ran:
    return proc.run_bounded(
        [sys.executable, "-c", READ, str(path)], os.environ, 30, untrusted=untrusted
    )


@needs_bwrap
def test_the_home_and_the_tree_are_hidden(place: Place) -> None:
    for secret, text in (
        (place.home / "secret", "home"),
        (place.tree / "VERSION", "tree"),
    ):
        assert read(secret, untrusted=False).stdout == f"{text} secret\n"
        hidden = read(secret, untrusted=True)
        assert hidden.returncode != 0 and "No such file" in hidden.stderr, hidden
    assert place.said == []  # the sandbox was used: no line about it


@needs_bwrap
def test_the_work_dir_is_writable_and_seen_outside(place: Place) -> None:
    out = place.workdir / "build" / "built.o"
    ran = python(f"open({str(out)!r}, 'w').write('object')", True, cwd=place.workdir)
    assert ran.returncode == 0, ran.stderr
    assert out.read_text() == "object"


@needs_bwrap
@pytest.mark.parametrize(
    "name",
    [
        # The base's checkpatch.pl checks the next series.
        "trees/debian-1/scripts/checkpatch.pl",
        # git, run by qseries, follows a worktree's .git file.
        "work/build-debian-1/.git",
        # perl and b4 read their configuration from the work dir's home.
        "home/.get_maintainer.conf",
        # A cached check result is shown again as it is.
        "cache/checks/v2.json",
        # The next run ends the processes a record names.
        "runs/1.json",
    ],
)
def test_the_series_writes_only_where_qseries_trusts_nothing(
    place: Place, name: str
) -> None:
    """Outside build/, tmp/, cache/ccache and bench/, the work dir is
    read-only to the series' code: what qseries runs or believes later
    outside the sandbox is not the series' to plant or change."""
    target = place.workdir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("qseries'\n")
    code = f"open({str(target)!r}, 'w').write('forged')"
    ran = python(code, True, cwd=place.workdir)
    assert ran.returncode != 0 and "Read-only file system" in ran.stderr, ran
    assert target.read_text() == "qseries'\n"
    beside = target.parent / "planted"
    ran = python(f"open({str(beside)!r}, 'w')", True, cwd=place.workdir)
    assert ran.returncode != 0 and not beside.exists(), ran
    assert python(code, False).returncode == 0  # outside, it could


@needs_bwrap
@pytest.mark.parametrize("name", sandbox.WRITABLE)
def test_the_series_writes_its_builds_and_scratch(place: Place, name: str) -> None:
    out = place.workdir / name / "made-by-the-series"
    ran = python(f"open({str(out)!r}, 'w').write('x')", True, cwd=place.workdir)
    assert ran.returncode == 0, ran.stderr
    assert out.read_text() == "x"


@needs_bwrap
def test_the_series_cannot_signal_what_runs_outside(place: Place) -> None:
    """A pid namespace of its own: `kill -9 -1` from the series' tests
    would otherwise reach every process of the user (root, in CI)."""
    outside = subprocess.Popen(["sleep", "60"])
    try:
        code = (
            "import os, signal, sys\n"
            "try:\n"
            f"    os.kill({outside.pid}, signal.SIGKILL)\n"
            "except ProcessLookupError:\n"
            "    sys.exit('no such process')\n"
        )
        ran = python(code, True)
        assert ran.returncode != 0 and "no such process" in ran.stderr, ran
        assert outside.poll() is None
    finally:
        outside.kill()
        outside.wait()


@needs_bwrap
def test_the_users_secrets_stay_outside(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The series' code gets what builds and tests need of the user's
    environment, and what qseries sets for it; not a CI token."""
    monkeypatch.setenv("CI_JOB_TOKEN", "glpat-secret")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    code = "import os; print(sorted(os.environ))"
    env = {**os.environ, "QTEST_QEMU_BINARY": "/q", "MINE": "set by qseries"}
    ran = proc.run_bounded([sys.executable, "-c", code], env, 30, untrusted=True)
    seen = ran.stdout
    assert "CI_JOB_TOKEN" not in seen
    for kept in ("PATH", "LC_ALL", "QTEST_QEMU_BINARY", "MINE", "QSERIES_RUN"):
        assert kept in seen or kept == "QSERIES_RUN", (kept, seen)
    plain = proc.run_bounded([sys.executable, "-c", code], env, 30)
    assert "CI_JOB_TOKEN" in plain.stdout  # trusted commands: as before


@needs_bwrap
def test_the_system_is_read_only(place: Place) -> None:
    target = Path("/usr/local") / f"qseries-sandbox-test-{os.getpid()}"
    try:
        ran = python(f"open({str(target)!r}, 'w')", True)
        assert ran.returncode != 0 and "Read-only file system" in ran.stderr, ran
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


@needs_bwrap
def test_tmp_is_private(place: Place) -> None:
    """A file the series leaves in /tmp is nobody else's to find."""
    name = f"/tmp/qseries-sandbox-test-{os.getpid()}"
    try:
        code = f"open({name!r}, 'w').write('x'); print(open({name!r}).read())"
        ran = python(code, True)
        assert ran.returncode == 0 and ran.stdout == "x\n", ran
        assert not Path(name).exists()
    finally:
        Path(name).unlink(missing_ok=True)


@needs_bwrap
def test_no_network(place: Place) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = (
            "import socket, sys\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
            "except OSError as err:\n"
            "    sys.exit(f'refused: {err}')\n"
            "print('connected')\n"
        )
        assert python(code, untrusted=False).stdout == "connected\n"
        ran = python(code, untrusted=True)
    assert ran.returncode != 0 and "refused" in ran.stderr, ran


@needs_bwrap
def test_no_way_out_through_our_processes(place: Place) -> None:
    """Not our root, environment or memory: /proc/PID/root of a process
    outside would be the whole file system.  Our pids are not even seen
    (a pid namespace of its own); were they, the user namespace would
    still refuse all three."""
    ours = Path(f"/proc/{os.getpid()}")
    through_root = ours / "root" / place.home.relative_to("/") / "secret"
    assert read(through_root, untrusted=False).stdout == "home secret\n"
    for path in (through_root, ours / "environ", ours / "mem"):
        ran = read(path, untrusted=True)
        assert ran.returncode != 0, ran
        assert "Permission denied" in ran.stderr or "No such file" in ran.stderr


@needs_bwrap
def test_no_unix_sockets_in_run(place: Place) -> None:
    """A daemon's socket in /run (docker's, a session bus) is not there."""
    if not os.access("/run", os.W_OK):
        pytest.skip("/run is not writable here")
    path = Path(f"/run/qseries-sandbox-test-{os.getpid()}.sock")
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(path)!r})\n"
        "except OSError as err:\n"
        "    sys.exit(f'refused: {err}')\n"
        "print('connected')\n"
    )
    with socket.socket(socket.AF_UNIX) as server:
        try:
            server.bind(str(path))
            server.listen()
            assert python(code, untrusted=False).stdout == "connected\n"
            ran = python(code, untrusted=True)
        finally:
            path.unlink(missing_ok=True)
    assert ran.returncode != 0 and "refused" in ran.stderr, ran


@needs_bwrap
def test_network_and_pid_namespaces_of_its_own(place: Place) -> None:
    """The command is in another net and pid namespace.  A child pid
    namespace is still seen from ours: the run's cleanup finds and
    signals sandboxed processes by the pids it sees."""
    code = (
        "import os\n"
        "print(os.readlink('/proc/self/ns/net'), os.readlink('/proc/self/ns/pid'))"
    )
    net, pid = python(code, untrusted=True).stdout.split()
    assert net != os.readlink("/proc/self/ns/net")
    assert pid != os.readlink("/proc/self/ns/pid")


@needs_bwrap
def test_a_hidden_tree_inside_the_work_dir_stays_hidden(place: Place) -> None:
    """Mounts go parents first: the work dir's bind does not show a tree
    given below it."""
    inner = place.workdir / "trees" / "mine"
    inner.mkdir(parents=True)
    (inner / "VERSION").write_text("inner secret\n")
    run = sandbox.RunSandbox(place.workdir, [place.home, inner], place.said.append)
    proc.set_sandbox(run)
    assert read(inner / "VERSION", untrusted=True).returncode != 0
    assert read(place.home / "secret", untrusted=True).returncode != 0


@needs_bwrap
def test_the_venv_and_package_in_a_hidden_home_stay_visible(place: Place) -> None:
    """A home that holds qseries' checkout and its Python: the Python
    and the folder qseries is imported from are bound back read-only, so
    that meson and the build's Python still run; the rest of the
    checkout stays hidden (nothing in the sandbox reads it)."""
    run = sandbox.RunSandbox(
        place.workdir, [REPO, Path(sys.prefix).resolve()], place.said.append
    )
    proc.set_sandbox(run)
    ran = python("import qseries, sys; print(sys.prefix)", True)
    assert ran.returncode == 0, ran.stderr
    target = sandbox.PACKAGE_PARENT / f"qseries-sandbox-test-{os.getpid()}"
    try:
        denied = python(f"open({str(target)!r}, 'w')", True)
        assert "Read-only file system" in denied.stderr, denied
    finally:
        target.unlink(missing_ok=True)
    if sandbox.PACKAGE_PARENT.is_relative_to(REPO):  # an editable install
        assert read(REPO / "pyproject.toml", untrusted=True).returncode != 0


def test_a_missing_program_is_still_file_not_found(place: Place) -> None:
    with pytest.raises(FileNotFoundError):
        proc.run_bounded(["qseries-no-such-program"], os.environ, 5, untrusted=True)


def test_without_bwrap_one_line_and_the_command_runs(place: Place) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    assert shutil.which("bwrap", path=env["PATH"]) is None
    run = sandbox.RunSandbox(place.workdir, [place.home], place.said.append, env)
    proc.set_sandbox(run)
    for _ in range(2):
        ran = read(place.home / "secret", untrusted=True)
        assert ran.returncode == 0 and ran.stdout == "home secret\n"
    assert place.said == [
        "running the series' code without a sandbox: bwrap is not on PATH; "
        "install bubblewrap (apt-get install bubblewrap) to run it sandboxed"
    ]


def test_switched_off(place: Place) -> None:
    env = {**os.environ, sandbox.SWITCH: "off"}
    run = sandbox.RunSandbox(place.workdir, [place.home], place.said.append, env)
    proc.set_sandbox(run)
    assert read(place.home / "secret", untrusted=True).returncode == 0
    assert place.said == [
        "running the series' code without a sandbox: QSERIES_SANDBOX=off; "
        "unset QSERIES_SANDBOX to run it sandboxed"
    ]


# Run in a user namespace that may make no more (bwrap's own
# --disable-userns), as a non-root user: bwrap is there, but cannot make
# the namespaces it needs, as on a machine where unprivileged user
# namespaces are refused.
REFUSED = """
import os, sys
from pathlib import Path
from qseries.qemu import build, testing
from qseries.ground import proc, sandbox
from qseries.qemu.build import BuildError
from qseries.ground.workdir import WorkDir
run = sandbox.RunSandbox(Path(sys.argv[1]), [Path(sys.argv[2])], print)
proc.set_sandbox(run)
ran = proc.run_bounded([sys.executable, "-c", "print('ran')"], os.environ, 30,
                       untrusted=True)
print(ran.stdout, end="")
"""


@needs_bwrap
def test_user_namespaces_refused_one_line_and_the_command_runs(place: Place) -> None:
    assert BWRAP is not None
    outer = [
        *(BWRAP, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"),
        *("--bind", str(place.root), str(place.root)),
        *("--unshare-user", "--uid", "1000", "--gid", "1000", "--disable-userns"),
        "--",
    ]
    argv = [sys.executable, "-c", REFUSED, str(place.workdir), str(place.home)]
    ran = subprocess.run(
        [*outer, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stderr
    line, output = ran.stdout.splitlines()
    assert line.startswith(
        "running the series' code without a sandbox: bwrap fails here "
        "(bwrap: Creating new namespace failed"
    ), line
    assert line.endswith(
        "; let bwrap make user namespaces (README.md: 'The series' code is "
        "untrusted') to run it sandboxed"
    )
    assert output == "ran"


# -- the call sites that run the series' code ------------------------------

NET = "readlink /proc/self/ns/net"


def ours() -> str:
    return os.readlink("/proc/self/ns/net")


@needs_bwrap
def test_configure_runs_sandboxed(place: Place) -> None:
    """The series' configure (and the meson.build it runs)."""
    tree = place.workdir / "work" / "tree"
    tree.mkdir(parents=True)
    script = tree / "configure"
    script.write_text(f"#!/bin/sh\n{NET} > netns\n: > build.ninja\n")
    script.chmod(0o755)
    builddir = place.workdir / "build" / "tree"
    build.configure(tree, builddir, sys.executable, place.workdir / "log")
    assert (builddir / "netns").read_text().strip() not in ("", ours())


@needs_bwrap
def test_what_configure_leaves_in_the_build_dir_is_not_written_through(
    place: Place,
) -> None:
    """The series' configure leaves links where qseries writes its stamp
    after it: qseries, outside the sandbox, must not write through them
    (a file of the user's home at the end of one)."""
    victim = place.root / "victim"
    victim.write_text("the user's\n")
    tree = place.workdir / "work" / "tree"
    tree.mkdir(parents=True)
    script = tree / "configure"
    script.write_text(
        "#!/bin/sh\n: > build.ninja\n"
        + "".join(
            f"ln -s {victim} {name}\n"
            for name in ("qseries-configure.json", "qseries-configure.tmp")
        )
    )
    script.chmod(0o755)
    builddir = place.workdir / "build" / "tree"
    build.configure(tree, builddir, sys.executable, place.workdir / "log")
    assert victim.read_text() == "the user's\n"
    stamp = builddir / "qseries-configure.json"
    assert not stamp.is_symlink() and '"tree"' in stamp.read_text()


@needs_bwrap
def test_the_fake_device_builds_in_the_sandbox(place: Place) -> None:
    """The fake's build dir is in build/, the series' to write: a
    build.ninja planted there runs sandboxed, not as qseries."""
    wd = WorkDir(place.workdir)
    sources = vfiotest.fake_sources(wd)
    builddir = vfiotest.fake_builddir(sources, wd)
    builddir.mkdir(parents=True)
    (builddir / "build.ninja").write_text(
        "rule net\n  command = " + NET + " > netns\nbuild netns: net\ndefault netns\n"
    )
    with pytest.raises(BuildError):
        vfiotest.build_fake(sources, wd)  # no fake library: the planted rule ran
    assert (builddir / "netns").read_text().strip() not in ("", ours())


@needs_bwrap
def test_a_command_killed_by_a_signal_says_so_as_if_run_directly(
    place: Place,
) -> None:
    """bwrap, the init of the sandbox's pid namespace, exits 128+N when
    its command dies of signal N: callers still see Popen's -N (a QEMU
    that aborts, as a fault scenario expects, is 'killed by signal 6')."""
    abort = "import os, signal; os.kill(os.getpid(), signal.SIGABRT)"
    assert python(abort, False).returncode == -signal.SIGABRT
    assert python(abort, True).returncode == -signal.SIGABRT
    assert python("raise SystemExit(3)", True).returncode == 3

    async def started() -> int:
        child = await proc.start_async(
            [sys.executable, "-c", abort], os.environ, 30, untrusted=True
        )
        code = await child.wait()
        assert child.returncode == code
        return code

    assert asyncio.run(started()) == -signal.SIGABRT
    log = place.workdir / "tmp" / "log"
    argv = [sys.executable, "-c", abort]
    code = proc.run_streaming(argv, os.environ, 30, place.workdir, log, untrusted=True)
    assert code == -signal.SIGABRT


# A qtest that lists one case and, run, says which net namespace it is in.
QTEST = f"""#!/bin/sh
case "$1" in
  -l) echo /x/a ;;
  *) echo '1..1'; echo "# vm events: $({NET})"; echo 'ok 1 /x/a' ;;
esac
"""


@needs_bwrap
def test_the_series_qtest_runs_sandboxed(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listed, run all in one run (--tap) and a case alone."""
    monkeypatch.setenv("TMPDIR", str(place.workdir))
    binary = place.workdir / "build" / "events-test"
    binary.parent.mkdir(parents=True)
    binary.write_text(QTEST)
    binary.chmod(0o755)
    runs = vfiotest.series_qtest(binary, Path("/bin/true"), None)
    alone = testing.run_case(binary, Path("/bin/true"), None, "/x/a")
    for run in (*runs, alone):
        assert run.passed, run.output
        (net,) = run.events
        assert net.startswith("vm events: net:[") and net != f"vm events: {ours()}"


@needs_bwrap
def test_a_run_hides_home_and_trees_but_shows_the_qemu_given(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    """for_run, as the command line uses it: HOME and --tree hidden, the
    directory of `test --qemu PATH` seen even inside the home."""
    qemu = place.home / "qemu" / "build" / "qemu-system-x86_64"
    qemu.parent.mkdir(parents=True)
    qemu.write_text("#!/bin/sh\necho QEMU emulator version 10.2.2\n")
    qemu.chmod(0o755)
    monkeypatch.setenv("HOME", str(place.home))
    with sandbox.for_run(place.workdir, [place.tree], place.said.append, [qemu]):
        ran = proc.run_bounded([str(qemu)], os.environ, 30, untrusted=True)
        assert ran.stdout == "QEMU emulator version 10.2.2\n", ran
        assert read(place.home / "secret", untrusted=True).returncode != 0
        assert read(place.tree / "VERSION", untrusted=True).returncode != 0
    assert place.said == []


# A command that cleans up on SIGTERM, taking its time, as ninja does
# (it stops its compilers and removes their half-written outputs).
CLEANS_UP = """
import signal, sys, time
def stop(*_):
    time.sleep(0.5)
    open(sys.argv[1], "w").write("cleaned up")
    sys.exit(1)
signal.signal(signal.SIGTERM, stop)
open(sys.argv[1] + ".started", "w").close()
time.sleep(60)
"""


@needs_bwrap
def test_a_time_limit_stops_the_command_with_sigterm(place: Place) -> None:
    """The group's SIGTERM reaches bwrap and the command at once; bwrap
    going first must not turn it into a SIGKILL of the command."""
    done = place.workdir / "tmp" / "done"
    argv = [sys.executable, "-c", CLEANS_UP, str(done)]
    ran = proc.run_bounded(argv, os.environ, 2, untrusted=True)
    assert ran.timed_out and Path(f"{done}.started").exists()
    assert done.read_text() == "cleaned up"


@needs_bwrap
def test_a_stop_from_asyncio_lets_the_command_clean_up(place: Place) -> None:
    """As a QEMU of the QMP checks is stopped (Started.stop; no pipe to
    it, as to a QEMU: asyncio's wait() would wait for the pipe's end)."""
    done = place.workdir / "tmp" / "done"

    async def run() -> int:
        started = await proc.start_async(
            [sys.executable, "-c", CLEANS_UP, str(done)],
            os.environ,
            60,
            untrusted=True,
        )
        while not Path(f"{done}.started").exists():
            await asyncio.sleep(0.02)
        return await started.stop()

    asyncio.run(run())
    assert done.read_text() == "cleaned up"
