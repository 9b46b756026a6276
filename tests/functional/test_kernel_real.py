"""The kernel kit from Debian's real archive: Linux 6.12 of
bookworm-backports, mtty.ko built against its headers (fetched once
into the shared work dir, about 280 MB; found there after that)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from qseries.ground.workdir import WorkDir, WorkDirLock
from qseries.labs.vfio_migration.kernel import kernel_kit, module_field

pytestmark = pytest.mark.qemu


def test_the_real_kit(real_workdir: Path) -> None:
    workdir = WorkDir(real_workdir)
    with WorkDirLock(workdir.path, "pytest: the kernel kit") as lock:
        lock.acquire(True, lambda line: print(line, file=sys.stderr))
        kit = kernel_kit(workdir)
    assert kit.version.startswith("6.12.") and kit.version.endswith("+deb12-amd64")
    assert kit.package_version.startswith(kit.version.split("+")[0] + "-")
    assert kit.vmlinuz.read_bytes()[0x202:0x206] == b"HdrS"  # a bzImage
    assert [m.name for m in kit.modules][-3:] == [
        "vfio.ko",
        "vfio_iommu_type1.ko",
        "mdev.ko",
    ]
    # mtty.ko loads into this image: the modules' vermagic, and what it
    # depends on is loaded before it.
    vermagic = module_field(kit.modules[0], "vermagic")
    assert vermagic.startswith(kit.version + " ")
    assert module_field(kit.mtty, "vermagic") == vermagic
    assert set(module_field(kit.mtty, "depends").split(",")) <= {
        m.name.removesuffix(".ko") for m in kit.modules
    }
    source = kit.mtty.parent / "mtty.c"
    assert hashlib.sha256(source.read_bytes()).hexdigest() == kit.mtty_source_sha256
    assert b"VFIO_DEVICE_STATE_PRE_COPY_P2P" in source.read_bytes()
    assert kit.busybox.stat().st_size > 500_000
