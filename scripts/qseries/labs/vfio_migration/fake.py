"""The lab's scenarios on the fake device, from Python.

The same steps as the guest script runs on mtty (scenarios.py), through
FakeVfioVM and qemu.qmp: each QEMU is started paused (the destination
with -incoming), the steps are sent and waited for, and once nothing
has been said for QUIET_S every QEMU is quit and waited for, so that its
record holds what it said up to its exit, cleanup included.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from qemu.qmp import QMPError, Runstate

from .scenarios import (
    NO_DIRTY_TRACKING,
    QmpEvent,
    Scenario,
    ScenarioRun,
    Side,
    Step,
    event_of,
)
from .vm import FakeVfioVM, socket_path

# As the guest script's QUIET_TENTHS: both drivers quit after as long a quiet.
QUIET_S = 0.5
WAIT_S = 30.0
QUIT_S = 10.0


def _matches(event: QmpEvent, step: Step) -> bool:
    return event.name == step.wait and all(
        str(event.data.get(k)) == v for k, v in step.data
    )


def _said(vm: FakeVfioVM) -> list[QmpEvent]:
    return [e for e in (event_of(m) for m in vm.messages) if e is not None]


async def _settle(vms: Sequence[FakeVfioVM]) -> None:
    last = -1
    quiet_since = time.monotonic()
    while True:
        now = sum(len(vm.messages) for vm in vms)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_S:
            return
        await asyncio.sleep(0.02)


async def _quit(vm: FakeVfioVM) -> str | None:
    """Quit QEMU and read what it said until its QMP stream ended."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(vm.cmd("quit"), QUIT_S)
    assert vm.proc is not None
    try:
        await asyncio.wait_for(vm.proc.wait(), QUIT_S)
    except TimeoutError:
        return f"{vm.name}: still running {QUIT_S:.0f} s after quit"
    deadline = time.monotonic() + QUIT_S
    while vm.client.runstate == Runstate.RUNNING and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    while not vm.listener.empty():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0)
    return None


async def _steps(
    scenario: Scenario, vms: dict[str, FakeVfioVM], uri: str
) -> str | None:
    for vm in vms.values():
        await vm.cmd(
            "migrate-set-capabilities",
            capabilities=[{"capability": "events", "state": True}],
        )
    for step in scenario.steps:
        vm = vms[step.vm]
        if step.run is not None:
            try:
                if step.run == "migrate":
                    await vm.cmd("migrate", uri=uri)
                else:
                    await vm.cmd(step.run)
            except QMPError as err:
                return f"{step.describe()} failed: {err}"
        else:
            deadline = time.monotonic() + WAIT_S
            while sum(_matches(e, step) for e in _said(vm)) < step.nth:
                assert vm.proc is not None
                if vm.proc.returncode is not None:
                    return f"{step.vm}: QEMU exited before its {step.describe()}"
                if time.monotonic() > deadline:
                    return f"{step.vm}: no {step.describe()} after {WAIT_S:.0f} s"
                await asyncio.sleep(0.01)
    return None


async def run_scenario(
    scenario: Scenario, qemu: Path, fake: Path, tmpdir: Path, flags: str
) -> ScenarioRun:
    scratch = Path(tempfile.mkdtemp(prefix="lab-", dir=tmpdir))
    uri = f"unix:{socket_path(scratch / 'mig.sock')}"
    env = {"FAKEVFIO_MIGRATION_FLAGS": flags}
    vms: dict[str, FakeVfioVM] = {}
    error: str | None = None
    try:
        for vm in sorted(scenario.vms, key=lambda v: v != "destination"):
            args = ["-incoming", uri] if vm == "destination" else ["-S"]
            machine = FakeVfioVM(
                qemu, fake, scratch, vm, env, args, device_options=NO_DIRTY_TRACKING
            )
            await machine.__aenter__()
            vms[vm] = machine
        try:
            error = await _steps(scenario, vms, uri)
        except QMPError as err:
            error = f"QMP failed: {err}"
        await _settle(list(vms.values()))
        for vm in scenario.vms:  # in the order the guest script quits them
            stopped = await _quit(vms[vm])
            error = error or stopped  # the first error says the most
        sides = tuple(
            Side(vm, tuple(_said(vms[vm])), vms[vm].stderr()) for vm in scenario.vms
        )
    finally:
        for machine in vms.values():
            await machine.close(failed=error is not None)
    if error is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return ScenarioRun(scenario.name, sides, error)


def run(
    scenarios: Sequence[Scenario], qemu: Path, fake: Path, tmpdir: Path, flags: str
) -> list[ScenarioRun]:
    """Each scenario on the fake, one after the other."""
    tmpdir.mkdir(parents=True, exist_ok=True)

    async def all_of() -> list[ScenarioRun]:
        return [await run_scenario(s, qemu, fake, tmpdir, flags) for s in scenarios]

    return asyncio.run(all_of())
