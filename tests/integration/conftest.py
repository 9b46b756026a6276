"""The QMP tests need a built QEMU, the fake VFIO library and the wire
of the version under test.

`make integration-tests` builds both for the newest version with `qseries
build --series vN --json`, whose output (the QEMU binary, the fake, the
version and its series.yaml) it names in QSERIES_BUILD_JSON, and sets
QSERIES_REQUIRE_QEMU=1, so that these tests fail rather than skip when
something is missing.  A plain `pytest` run skips them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from qseries.core import generators, series
from qseries.labs.vfio_migration.plan import Wire, plan_of

BUILD_JSON = "QSERIES_BUILD_JSON"


def _missing(why: str) -> None:
    if os.environ.get("QSERIES_REQUIRE_QEMU") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def built() -> dict[str, str]:
    """What `qseries build --json` said, read from QSERIES_BUILD_JSON."""
    name = os.environ.get(BUILD_JSON)
    if not name or not Path(name).is_file():
        _missing(f"{BUILD_JSON} names no file; run 'make integration-tests'")
    assert name is not None
    data: dict[str, str] = json.loads(Path(name).read_text())
    return data


def _existing(built: dict[str, str], key: str) -> Path:
    path = Path(built.get(key, ""))
    if not path.is_file():
        _missing(f"{os.environ[BUILD_JSON]}: {key} {str(path)!r} is not a file")
    return path


@pytest.fixture(scope="session")
def qemu(built: dict[str, str]) -> Path:
    return _existing(built, "qemu")


@pytest.fixture(scope="session")
def fake(built: dict[str, str]) -> Path:
    return _existing(built, "fake")


@pytest.fixture(scope="session")
def wire(built: dict[str, str]) -> Wire:
    """What the version under test sends on QMP (series.yaml)."""
    path = _existing(built, "series_file")
    return plan_of(series.load(path, generators.specs()).version(built["version"])).wire


@pytest.fixture(scope="session")
def busybox(real_workdir: Path) -> Path:
    """The guest's shell (busybox-static of the kernel kit), to run the
    guest's scenario script on this host."""
    from qseries.ground.workdir import WorkDir, WorkDirLock
    from qseries.labs.vfio_migration import kernel

    with WorkDirLock(real_workdir, "pytest: the kernel kit's busybox") as lock:
        lock.acquire(True)
        return kernel.kernel_kit(WorkDir(real_workdir)).busybox


def run_guest_script_here(
    script: str,
    busybox: Path,
    qemu: Path,
    fake: Path,
    flags: str,
    tmp: Path,
    mdevs: int = 2,
) -> str:
    """Run a guest scenario script on this host, in the guest's shell
    (busybox ash), with what /init gives it (RUN, RESULTS, QEMU,
    QEMU_DATA, MDEV0...), each mdev a device directory of the fake,
    which is preloaded; what it wrote to RESULTS."""
    run = tmp / "run"
    run.mkdir()
    results = tmp / "results.txt"
    env = {
        **os.environ,
        "RUN": str(run),
        "RESULTS": str(results),
        "QEMU": str(qemu),
        "QEMU_DATA": str(qemu.parent / "pc-bios"),
        "LD_PRELOAD": str(fake),
        "FAKEVFIO_MIGRATION_FLAGS": flags,
    }
    for i in range(mdevs):
        device = tmp / f"d{i}"
        device.mkdir()
        # Only the group number counts: the link may dangle.
        (device / "iommu_group").symlink_to(f"../../../kernel/iommu_groups/{4242 + i}")
        env[f"MDEV{i}"] = str(device)
    (tmp / "scenario.sh").write_text(script)
    subprocess.run(
        [str(busybox), "sh", str(tmp / "scenario.sh")],
        env=env,
        check=True,
        timeout=300,
    )
    return results.read_text()
