"""The lab's devices: one interface, the fake and the kernel's mtty.

A device runs the lab's scenarios on one QEMU under test and returns
what each QEMU of each scenario said (scenarios.ScenarioRun), with the
facts a report names (the kernel, the sha256 of mtty.c, KVM or TCG) and
the files that tell more when something failed (the guest's console).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ...ground.workdir import WorkDir
from . import fake as fake_mod
from . import kscale
from .scenarios import (
    Scenario,
    ScenarioError,
    ScenarioRun,
    guest_script,
    read_results,
)

if TYPE_CHECKING:
    from .kernel import KernelKit

FAKE = "fake"
KERNEL = "kernel"
DEVICES = (FAKE, KERNEL)


# A finding on mtty (Linux 6.12): in one boot, the third migration
# through the same two mdevs fails on the destination ("load of
# migration failed: Bad file descriptor"), and every one after it.
MIGRATIONS_PER_BOOT = 2


def kernel_unavailable() -> str | None:
    """Why no guest can boot here for the kernel device (None: it can)."""
    if platform.machine() != "x86_64":
        return (
            f"the kernel device boots an amd64 guest, and this is {platform.machine()}"
        )
    from . import guest

    if not guest.OUTER_QEMU.is_file():
        return (
            f"no {guest.OUTER_QEMU} to boot the guest with "
            "(apt-get install qemu-system-x86)"
        )
    return None


@dataclass
class DeviceRun:
    device: str
    runs: list[ScenarioRun]
    seconds: float
    facts: list[str] = field(default_factory=list)
    evidence: list[Path] = field(default_factory=list)
    # mtty-1's available_instances once the run's mdevs were made (None:
    # not the kernel, or the guest said nothing of it).
    instances_left: int | None = None


class Device(Protocol):
    name: str

    def run(self, qemu: Path, scenarios: Sequence[Scenario], label: str) -> DeviceRun:
        """The scenarios on QEMU; label names the run (series, control)."""
        ...


class FakeDevice:
    """The user-space fake of the VFIO interface, preloaded into QEMU,
    with the migration flags mtty has."""

    name = FAKE

    def __init__(self, fake: Path, tmpdir: Path, flags: str):
        self.fake = fake
        self.tmpdir = tmpdir
        self.flags = flags

    def run(self, qemu: Path, scenarios: Sequence[Scenario], label: str) -> DeviceRun:
        started = time.monotonic()
        runs = fake_mod.run(scenarios, qemu, self.fake, self.tmpdir, self.flags)
        return DeviceRun(
            FAKE,
            runs,
            time.monotonic() - started,
            [f"fake device: FAKEVFIO_MIGRATION_FLAGS={self.flags}"],
        )


class KernelDevice:
    """Linux's mtty sample driver, in a guest booted for each run: the
    QEMU under test runs inside it, on mdevs of its own (one per device;
    as many devices per side as kscale.max_devices() allows)."""

    name = KERNEL

    def __init__(
        self,
        workdir: WorkDir,
        version: str | None = None,
        say: Callable[[str], None] | None = None,
    ):
        self.workdir = workdir
        self.version = version
        self.say = say
        self._kit: KernelKit | None = None

    def kit(self) -> KernelKit:
        """The kernel, its modules and mtty.ko: fetched and built once."""
        if self._kit is None:
            from .kernel import kernel_kit

            self._kit = kernel_kit(self.workdir, version=self.version)
        return self._kit

    def pinned(self) -> str:
        from .kernel import kernel_version

        version, package = kernel_version(self.workdir, version=self.version)
        return f"Linux {version} (Debian {package}), as pinned"

    def run(
        self,
        qemu: Path,
        scenarios: Sequence[Scenario],
        label: str,
        devices: int = 1,
    ) -> DeviceRun:
        """devices: how many vfio-pci devices each QEMU has, each its
        own mdev (refused, before anything runs, over mtty's ports)."""
        from .guest import run_in_guest

        kscale.check_devices(devices)
        migrating = [
            s.name for s in scenarios if any(t.run == "migrate" for t in s.steps)
        ]
        if len(migrating) > MIGRATIONS_PER_BOOT:
            raise ScenarioError(
                f"{len(migrating)} scenarios migrate ({', '.join(migrating)}), "
                f"and mtty takes {MIGRATIONS_PER_BOOT} per set of mdevs in one boot",
                "run them in more than one boot (the lab's scenarios.yaml)",
            )
        started = time.monotonic()
        kit = self.kit()
        if self.say is not None:
            per_side = f", {devices} devices per side" if devices > 1 else ""
            self.say(
                f"booting Linux {kit.version} with mtty for the {label} "
                f"({len(scenarios)} scenarios{per_side})"
            )
        # A directory of its own per run: the console log a report names
        # stays after the next run.
        name = f"{label}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        script = guest_script(scenarios, devices=devices) + kscale.INSTANCES_SCRIPT
        guest = run_in_guest(kit, qemu, script, self.workdir, name, mdevs=2 * devices)
        runs = read_results(guest.results, scenarios)
        left = kscale.instances_left(guest.results)
        facts = [
            f"kernel device: Linux {kit.version} (Debian {kit.package_version}), "
            f"mtty.c sha256 {kit.mtty_source_sha256}",
            f"kernel device, {label}: guest under {guest.accel.upper()}, "
            f"{guest.seconds:.1f} s boot to poweroff",
        ]
        if left is not None:
            facts.append(
                f"kernel device, {label}: {devices} "
                f"device{'s' if devices > 1 else ''} per side on "
                f"{2 * devices} mdevs of {kscale.MTTY_TYPE}, which had "
                f"{left} more to give"
            )
        return DeviceRun(
            KERNEL,
            runs,
            time.monotonic() - started,
            facts,
            [guest.console],
            instances_left=left,
        )
