"""No process of a successful run outlives it.

Counted by pid after exit 0: no process whose environment carries the
run's marker (QSERIES_RUN=...@WORKDIR) or whose working directory is in
the work dir, and none of the processes a test planted.  Two ways a run
left some: a commit that starts git's detached `gc --auto` (here through
a user's environment asking git for an eager gc), and a QEMU wrapper
(`test --qemu WRAPPER`) that starts `setsid sleep &` before it execs
QEMU, as any code a series or a user hands qseries may do, some with
an empty environment: the run's marker, which runs.recorded ends the
run's processes by, is gone from those.
"""

from __future__ import annotations

import json
import os
import random
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from qseries.ground import proc

from ..conftest import REPO, RunCli, copy_series
from ..debian_archive import Archive

GEN = "1:10.2.2+ds-1"
TRIXIE = "1:10.0.13+ds-0+deb13u1"


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _live(pid: int) -> bool:
    fields = proc.stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def left_of(workdir: Path) -> list[str]:
    """Every live process of a run in workdir: its marker in the
    environment, or its working directory in the work dir."""
    marker = re.compile(rf"{proc.RUN_VARIABLE}=.*@{re.escape(str(workdir))}")
    inside = (str(workdir), str(workdir.resolve()))
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        marked = any(
            marker.fullmatch(v.decode(errors="replace")) for v in _environ(pid)
        )
        cwd = _cwd(pid)
        in_workdir = any(cwd == d or cwd.startswith(d + "/") for d in inside)
        if (marked or in_workdir) and _live(pid):
            found.append(f"{pid} {' '.join(_cmdline(pid))} (cwd {cwd})")
    return found


def planted(argv: list[str]) -> list[int]:
    """The live processes whose command line is argv."""
    return [
        int(e)
        for e in os.listdir("/proc")
        if e.isdigit() and _cmdline(int(e)) == argv and _live(int(e))
    ]


def test_source_on_a_new_workdir_leaves_no_process(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """A base tree's commit starts no `git gc --auto`, even when the
    environment asks git for an eager one (gc.auto=1 over ~600 new
    objects, maintenance.auto=true over the tree's own config): git runs
    the pre-auto-gc hook before it detaches, so the hook's record says
    whether a gc was started at all."""

    def many_files(tree: Path) -> None:
        for i in range(600):
            (tree / f"extra-{i}.txt").write_text(f"{i}\n")

    archive = Archive(tmp_path / "archive", tmp_path / "packages")
    archive.add(GEN, many_files)
    archive.add(TRIXIE)
    archive.publish({"sid": [GEN], "trixie": [TRIXIE]})
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    record = tmp_path / "gc-started"
    hook = hooks / "pre-auto-gc"
    hook.write_text(f'#!/bin/sh\necho "$PWD" >> {record}\n')
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    series = copy_series(tmp_path / "series")
    workdir = tmp_path / "new-workdir"
    ran = run_cli(
        "--series-file", str(series), "source", "--json",
        workdir=workdir,
        env={
            "QSERIES_DEBIAN_MIRROR": archive.url,
            "GIT_CONFIG_PARAMETERS": "'gc.auto'='1' 'maintenance.auto'='true' "
            f"'core.hookspath'='{hooks}'",
        },
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert (Path(json.loads(ran.stdout)["root"]) / "extra-599.txt").exists()
    assert left_of(workdir) == []
    assert not record.exists(), f"git gc --auto started in {record.read_text()}"
    assert "left running" not in ran.stderr, ran.stderr


@pytest.mark.qemu
def test_a_forking_qemu_wrapper_leaves_no_process(
    real_workdir: Path, tmp_path: Path
) -> None:
    """`test --qemu WRAPPER`, the wrapper starting six `setsid sleep`
    (out of QEMU's session and group), three of them with an empty
    environment (no run marker), each time it is run, then exec'ing the
    built QEMU: after exit 0 none of them runs, and one line said how
    many were ended."""
    # Without the sandbox: it gives the series' code a /tmp of its own,
    # where this wrapper (in tmp_path) is not.  It shares qseries' pid
    # namespace, so what it runs is ended the same way.
    env = {
        **os.environ,
        "QSERIES_WORKDIR": str(real_workdir),
        "QSERIES_SANDBOX": "off",
    }

    def qseries(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "qseries", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=1800,
        )

    built = qseries("build", "--series", "v2", "--json")
    assert built.returncode == 0, built.stderr[-3000:]
    qemu = json.loads(built.stdout)["qemu"]
    # The real QEMU under a name that does not say its target: refused
    # before any build (a qtest would list no case).
    link = tmp_path / "qemu-wrapper"
    link.symlink_to(qemu)
    named = qseries("test", "--series", "v2", "--qemu", str(link))
    assert (named.returncode, named.stderr.splitlines()[-1:]) == (
        2,
        [
            f"qseries: error: --qemu {link}: a qtest takes the target from the "
            "file's name, which must end in -system-ARCH; name it (or a link "
            "to it) qemu-system-x86_64"
        ],
    ), named.stderr
    # A command line no other process has: sleep's argument is unique.
    sleep = ["sleep", f"1000.{random.randrange(10**8):08d}"]
    runs = tmp_path / "wrapper-runs"
    # libqtest takes the target from the name: qemu-system-ARCH.
    (tmp_path / "bin").mkdir()
    wrapper = tmp_path / "bin" / "qemu-system-x86_64"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"echo run >> '{runs}'\n"
        "for i in 1 2 3; do\n"
        f"  setsid {' '.join(sleep)} </dev/null >/dev/null 2>&1 &\n"
        f"  env -i setsid {' '.join(sleep)} </dev/null >/dev/null 2>&1 &\n"
        "done\n"
        f"exec '{qemu}' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    try:
        ran = qseries(
            "test", "--series", "v2", "--qemu", str(wrapper),
            "--no-bisect", "--no-mutations",
        )  # fmt: skip
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        started = 6 * len(runs.read_text().splitlines())
        assert started >= 6
        assert planted(sleep) == []
        assert (
            f"qseries: ended {started} processes this run left running: "
            f"sleep ({started})"
        ) in ran.stderr.splitlines(), ran.stderr[-3000:]
    finally:
        for pid in planted(sleep):
            os.kill(pid, 9)
