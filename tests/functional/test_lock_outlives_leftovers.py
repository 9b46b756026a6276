"""A run that fails ends what it left running before it lets go of the
work dir's lock: the next run never shares the work dir with them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..conftest import REPO

# Left running by the --qemu program: it ignores SIGTERM (so that ending
# it takes qseries' grace period) and notes if it ever finds the work
# dir's lock free while it is alive.
POLLER = """\
import fcntl, os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
lock, ready, marker = sys.argv[1:]
fd = os.open(lock, os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    open(marker, "w").write("free before the program ran\\n")
    sys.exit(1)
except BlockingIOError:
    open(ready, "w").close()
while True:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        time.sleep(0.01)
        continue
    open(marker, "w").write("the lock was free while a leftover ran\\n")
    sys.exit(0)
"""


def test_a_failed_run_ends_its_leftovers_under_the_lock(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    poller = tmp_path / "poller.py"
    poller.write_text(POLLER)
    ready, marker = tmp_path / "ready", tmp_path / "marker"
    (tmp_path / "bin").mkdir()
    program = tmp_path / "bin" / "qemu-system-x86_64"
    program.write_text(
        "#!/bin/sh\n"
        f"cd / && env -i setsid '{sys.executable}' '{poller}' "
        f"'{workdir / 'lock'}' '{ready}' '{marker}' </dev/null >/dev/null 2>&1 &\n"
        f"while [ ! -e '{ready}' ] && [ ! -e '{marker}' ]; do sleep 0.05; done\n"
        "exit 1\n"
    )
    program.chmod(0o755)
    args = ["test", "--series", "v2", "--qemu", str(program), "--no-bisect"]
    proc = subprocess.run(
        [sys.executable, "-m", "qseries", *args, "--no-mutations"],
        cwd=REPO,
        env={**os.environ, "QSERIES_WORKDIR": str(workdir)},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert ready.exists(), proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(
        f"qseries: error: --qemu {program}"
    ), proc.stderr
    assert not marker.exists(), marker.read_text()
