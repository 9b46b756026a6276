"""Real boots of the guest that runs the kernel's mtty device
(labs/vfio_migration/guest.py): Debian's kernel in Debian's
qemu-system-x86, the QEMU under test inside it on an mdev.

The kernel kit is fetched (and mtty.ko built) into the tests' real work
dir the first time; the QEMU under test is the one `make
integration-tests` built (conftest.py).  The guests share one work dir
of their own, so that whether KVM works is tried once.  Each boot takes
a few seconds under TCG.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from qseries.core import generators, series
from qseries.ground.workdir import WorkDir, WorkDirLock
from qseries.labs.vfio_migration import guest, kernel

from .conftest import _missing


@pytest.fixture(scope="session")
def kit(real_workdir: Path, qemu: Path, built: dict[str, str]) -> kernel.KernelKit:
    """The kernel kit, fetched only for a run that has the QEMU under
    test and Debian's QEMU to boot it (a plain pytest run skips without
    them, `make integration-tests` fails).  The guest does not depend on
    the version: it boots once per `make integration-tests`, with the
    newest version's QEMU."""
    newest = series.load(Path(built["series_file"]), generators.specs()).version(None)
    if built.get("version") != newest.name:
        pytest.skip(f"the guest is booted with {newest.name}'s QEMU only")
    if not guest.OUTER_QEMU.is_file():
        _missing(f"{guest.OUTER_QEMU} is missing (Debian's qemu-system-x86)")
    # Under the work dir's lock, as a qseries command makes it: another
    # run may be making the same kit there.
    with WorkDirLock(real_workdir, "pytest tests/integration/test_guest.py") as lock:
        lock.acquire(wait=True)
        return kernel.kernel_kit(WorkDir(real_workdir))


@pytest.fixture(scope="session")
def guests(tmp_path_factory: pytest.TempPathFactory) -> WorkDir:
    return WorkDir(tmp_path_factory.mktemp("guests"))


# The QMP of one QEMU on the first mdev, through a FIFO (busybox's nc
# has no unix sockets); its output and its exit status to the results.
QMP_SCRIPT = r"""
cd /tmp
mkfifo qmp.in
trap "" PIPE
DEVICE=vfio-pci,sysfsdev=$MDEV0,id=dev0,enable-migration=on,migration-events=on
DEVICE=$DEVICE,x-device-dirty-page-tracking=off
"$QEMU" -machine q35 -accel qtest -nodefaults -display none -m 64M \
  -L "$QEMU_DATA" -qmp stdio -device "$DEVICE" <qmp.in >"$RESULTS" 2>&1 &
exec 3>qmp.in
echo '{"execute": "qmp_capabilities"}' >&3
echo '{"execute": "query-status"}' >&3
echo '{"execute": "quit"}' >&3
wait $!
echo "qemu exited $?" >"$RESULTS"
echo "mdev1 $MDEV1" >"$RESULTS"
exit 7
"""


def test_qemu_on_an_mdev_answers_qmp_in_the_guest(
    kit: kernel.KernelKit, qemu: Path, guests: WorkDir
) -> None:
    run = guest.run_in_guest(kit, qemu, QMP_SCRIPT, guests, "qmp", mdevs=2)
    assert run.accel in ("kvm", "tcg")
    assert '{"return": {"status": "running", "running": true}}\n' in run.results
    assert "qemu exited 0\n" in run.results
    assert f"mdev1 /sys/bus/mdev/devices/{guest.mdev_uuid(1)}\n" in run.results
    assert "\r" not in run.results
    assert run.status == 7
    assert run.console.is_file() and "qseries-guest: done" in run.console.read_text()
    assert run.init_seconds is not None and 0 < run.init_seconds < run.seconds


def _pids_of(marker: str) -> list[int]:
    """The live processes whose command line holds marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if marker.encode() in cmdline and state[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def test_a_guest_that_hangs_is_stopped_whole(
    kit: kernel.KernelKit, qemu: Path, guests: WorkDir
) -> None:
    initrd = str(guests.path / "kernel" / "guest" / "hang" / "initramfs.cpio.gz")
    failed: list[BaseException] = []

    def run() -> None:
        try:
            guest.run_in_guest(kit, qemu, "sleep 600\n", guests, "hang", 0, 10.0)
        except BaseException as err:
            failed.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    seen: set[int] = set()
    while thread.is_alive():
        seen.update(_pids_of(initrd))
        time.sleep(0.1)
    thread.join()
    assert seen, "the outer QEMU was never seen running"
    (err,) = failed
    assert isinstance(err, guest.GuestError)
    message = str(err)
    assert "\n" not in message
    assert "did not power off within 10 s" in message
    assert str(guests.path / "kernel" / "guest" / "hang" / "console.log") in message
    alive = [pid for pid in seen if Path(f"/proc/{pid}").exists()]
    assert not alive, f"left running: {alive}"


def _copied(kit: kernel.KernelKit, where: Path, **changes: object) -> guest.GuestKit:
    where.mkdir(parents=True, exist_ok=True)
    modules = tuple(Path(shutil.copy(m, where)) for m in kit.modules)
    fields: dict[str, object] = {"modules": modules, **changes}
    return dataclasses.replace(kit, **fields)  # type: ignore[arg-type]


def test_a_module_that_fails_to_load_is_one_line(
    kit: kernel.KernelKit, qemu: Path, guests: WorkDir, tmp_path: Path
) -> None:
    broken = _copied(kit, tmp_path)
    (tmp_path / "vfio_iommu_type1.ko").write_bytes(b"\x7fELF not a module")
    with pytest.raises(guest.GuestSetupError) as caught:
        guest.run_in_guest(broken, qemu, "echo never >$RESULTS\n", guests, "badko")
    message = str(caught.value)
    assert "\n" not in message
    assert "guest badko: insmod vfio_iommu_type1.ko failed" in message
    assert str(guests.path / "kernel" / "guest" / "badko" / "console.log") in message
    assert caught.value.exit_code == 2


def test_no_mtty_type_is_one_line(
    kit: kernel.KernelKit, qemu: Path, guests: WorkDir, tmp_path: Path
) -> None:
    bare = _copied(kit, tmp_path, mtty=None)
    with pytest.raises(guest.GuestSetupError) as caught:
        guest.run_in_guest(bare, qemu, "echo never >$RESULTS\n", guests, "nomtty", 1)
    message = str(caught.value)
    assert "\n" not in message
    assert "no mdev type mtty-1" in message
    assert caught.value.exit_code == 2


def test_a_guest_that_panics_names_the_panic(
    kit: kernel.KernelKit, qemu: Path, guests: WorkDir
) -> None:
    with pytest.raises(guest.GuestError) as caught:
        guest.run_in_guest(
            kit, qemu, "echo c >/proc/sysrq-trigger\n", guests, "panic", 0, 60.0
        )
    message = str(caught.value)
    assert "\n" not in message
    assert "ended before its script did" in message
    assert "Kernel panic - not syncing: sysrq triggered crash" in message
