"""demo: the RDMA guard of rdma_guard.py on a real migration.

A source and a destination QEMU, each with the fake VFIO device; the
source's device has the P2P and pre-copy flags and takes delay_ms to
enter PRE_COPY_P2P, the first step of the switchover once the guest
stops.  The guard listens on a second QMP monitor of the source and
simulates an RDMA link of the device from the fake's log.  The source
migrates to the destination over a unix socket; the result tells
whether the link survived, and the lead of the prepare notice over the
completion event, as the guard saw them.

With several devices (run_devices, --devices N) every device takes
delay_ms, so QEMU quiesces them one after another; the guard keeps one
link per device, each silent while its own device quiesces, and masks
each on its own device's notice (or completion).

The guard is a module of this lab, shipped with it: it is also an
example for users (examples/README.md), so it imports nothing from
qseries and runs as a script on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from . import rdma_guard
from .vm import (
    DEVICE_ID,
    FIRST_GROUP,
    FakeVfioVM,
    forget_socket_dir,
    quoted,
    socket_path,
)

if TYPE_CHECKING:
    from .plan import Wire

GROUP = FIRST_GROUP  # the IOMMU group FakeVfioVM gives its (first) device
FLAGS = "stop_copy,p2p,pre_copy"
QUIESCE_STATE = "pre-copy-p2p"
QUIESCE_ARC = "PRE_COPY>PRE_COPY_P2P"
RESOLVE_TIMEOUT = 5.0

MaskOn = Literal["notice", "completion"]


def guard_module() -> ModuleType:
    """The guard (rdma_guard.py of this lab)."""
    return rdma_guard


@dataclass(frozen=True)
class DemoResult:
    """One run of the scenario; times are CLOCK_REALTIME microseconds."""

    mask_on: str
    delay_ms: int
    timeout_ms: float
    migration: str  # the source's final query-migrate status
    link_dropped: bool
    dropped_at_us: int | None  # when the simulated timeout expired
    silences: tuple[tuple[int, int | None], ...]  # device silent (from fake)
    masked_us: tuple[int, ...]
    unmasked_us: tuple[int, ...]
    notice_us: int | None  # guard received the prepare notice
    completion_us: int | None  # guard received the VFIO_MIGRATION after it
    notice_qemu_us: int | None  # QEMU's timestamps of those two events
    completion_qemu_us: int | None
    completion_state: str | None
    guard_events: tuple[str, ...]  # as the guard understood them
    events: tuple[str, ...]  # "NAME state" of the source's VFIO events
    failures: tuple[str, ...]  # failed transitions the guard reported
    problems: tuple[str, ...]  # e.g. "no prepare notice ..."
    device: str = DEVICE_ID  # the device (its id) guarded
    group: int = GROUP  # its IOMMU group, as the fake logs it

    @property
    def lead_ms(self) -> float | None:
        """Completion time - notice time, as the guard received them."""
        if self.notice_us is None or self.completion_us is None:
            return None
        return (self.completion_us - self.notice_us) / 1000

    def explain(self) -> str:
        """A few lines for a failed assertion or a person."""

        def rel(us: int | None) -> str:
            if us is None:
                return "-"
            if not self.silences:
                return f"{us}"
            return f"{(us - self.silences[0][0]) / 1000:+.1f} ms"

        silences = ", ".join(f"[{rel(b)}, {rel(e)}]" for b, e in self.silences)
        lead = "-" if self.lead_ms is None else f"{self.lead_ms:.1f} ms"
        fate = f"DROPPED at {rel(self.dropped_at_us)}" if self.link_dropped else "kept"
        lines = [
            f"mask on {self.mask_on}, {self.delay_ms} ms injected, "
            f"{self.timeout_ms:g} ms RDMA timeout, migration {self.migration}",
            f"link {fate}"
            f"; device silent {silences or 'never (no quiesce transition logged)'}",
            f"masked at {', '.join(map(rel, self.masked_us)) or 'never'}; "
            f"unmasked at {', '.join(map(rel, self.unmasked_us)) or 'never'}",
            f"notice at {rel(self.notice_us)}, completion "
            f"({self.completion_state or '-'}) at {rel(self.completion_us)}, "
            f"lead {lead}",
            f"guard heard: {' '.join(self.guard_events) or 'nothing'}",
            f"source events: {'; '.join(self.events) or 'none'}",
        ]
        lines += [f"failure: {f}" for f in self.failures]
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)


@dataclass(frozen=True)
class DevicesResult:
    """One guarded migration of several devices: each device's own
    result, in the order of the VM's devices (vfio0, vfio1, ...)."""

    mask_on: str
    delay_ms: int  # injected into each device's quiesce
    timeout_ms: float
    migration: str
    devices: tuple[DemoResult, ...]

    def in_silence_order(self) -> list[DemoResult]:
        """The devices in the order they went silent, which is the order
        QEMU quiesced them; those that never did, last."""
        never = 1 << 62
        return sorted(
            self.devices, key=lambda d: d.silences[0][0] if d.silences else never
        )

    @property
    def origin_us(self) -> int | None:
        """When the first device went silent."""
        first = [d.silences[0][0] for d in self.devices if d.silences]
        return min(first) if first else None

    def explain(self) -> str:
        """A line per device (times from the first silence), then each
        device's own account (times from its own silence)."""
        origin = self.origin_us

        def rel(us: int | None) -> str:
            if us is None:
                return "-"
            if origin is None:
                return str(us)
            return f"{(us - origin) / 1000:+.1f} ms"

        lines = [
            f"{len(self.devices)} devices, mask on {self.mask_on}, {self.delay_ms} ms "
            f"injected into each, {self.timeout_ms:g} ms RDMA timeout, migration "
            f"{self.migration}; times from the first device's silence:"
        ]
        for d in self.in_silence_order():
            silent = ", ".join(f"[{rel(b)}, {rel(e)}]" for b, e in d.silences)
            lead = "-" if d.lead_ms is None else f"{d.lead_ms:.1f} ms"
            fate = f"DROPPED at {rel(d.dropped_at_us)}" if d.link_dropped else "kept"
            masked = rel(d.masked_us[0]) if d.masked_us else "never"
            lines.append(
                f"  {d.device} (group {d.group}): silent {silent or 'never'}, "
                f"notice {rel(d.notice_us)}, masked {masked}, lead {lead}, "
                f"link {fate}"
            )
        for d in self.devices:
            lines.append(f"{d.device}, times from its own silence:")
            lines += [f"  {line}" for line in d.explain().splitlines()]
        return "\n".join(lines)


def _result(
    guard: Any,
    link: Any,
    src: FakeVfioVM,
    status: str,
    mask_on: str,
    delay_ms: int,
    timeout_ms: float,
) -> DemoResult:
    """What the guard of one device, and its link, saw and did."""
    device = str(guard.device)
    report = guard.report
    notice = report.notice
    completion = report.completion
    return DemoResult(
        mask_on=mask_on,
        delay_ms=delay_ms,
        timeout_ms=timeout_ms,
        migration=status,
        link_dropped=link.dropped_at_us is not None,
        dropped_at_us=None if link.dropped_at_us is None else int(link.dropped_at_us),
        silences=tuple(
            (int(b), None if e is None else int(e)) for b, e in link.silences
        ),
        masked_us=tuple(int(t) for t in report.masked_us),
        unmasked_us=tuple(int(t) for t in report.unmasked_us),
        notice_us=None if notice is None else int(notice.received_us),
        completion_us=None if completion is None else int(completion.received_us),
        notice_qemu_us=None if notice is None else int(notice.qemu_us),
        completion_qemu_us=None if completion is None else int(completion.qemu_us),
        completion_state=None if completion is None else str(completion.state),
        guard_events=tuple(str(e) for e in report.events),
        events=tuple(
            f"{e.name} {e.state}"
            for e in src.events
            if e.name.startswith("VFIO_")
            and (len(src.devices) == 1 or e.device == device)
        ),
        failures=tuple(str(f) for f in report.failures),
        problems=tuple(str(p) for p in report.problems),
        device=device,
        group=src.group_of(device),
    )


async def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def run_demo(
    qemu: Path,
    fake: Path,
    tmpdir: Path,
    *,
    mask_on: MaskOn = "notice",
    delay_ms: int = 300,
    timeout_ms: float = 50.0,
    fail: str | None = None,
    say: Callable[[str], None] | None = None,
    label: str = "demo",
) -> DemoResult:
    """Migrate a source with a slow quiesce transition, guarded.

    fail, if given, is an FAKEVFIO_FAIL value for the source's fake
    (e.g. "PRE_COPY>PRE_COPY_P2P=EIO:once"); the migration then fails.
    say, if given, gets the guard's running commentary; label names the
    run's scratch directory in tmpdir (deleted unless the run raised).
    """
    _, results = await _guarded(
        qemu, fake, tmpdir, 1, mask_on, delay_ms, timeout_ms, fail, say, label
    )
    return results[0]


async def run_devices(
    qemu: Path,
    fake: Path,
    tmpdir: Path,
    devices: int,
    *,
    mask_on: MaskOn = "notice",
    delay_ms: int = 300,
    timeout_ms: float = 50.0,
    fail: str | None = None,
    say: Callable[[str], None] | None = None,
    label: str = "devices",
) -> DevicesResult:
    """run_demo with `devices` fake devices on each side, every one of
    the source's taking delay_ms to quiesce, one guard and link each."""
    status, results = await _guarded(
        qemu, fake, tmpdir, devices, mask_on, delay_ms, timeout_ms, fail, say, label
    )
    return DevicesResult(mask_on, delay_ms, timeout_ms, status, tuple(results))


def _over(link: Any) -> bool:
    """The link dropped, or its device's last silence is over."""
    return link.dropped_at_us is not None or (
        bool(link.silences) and link.silences[-1][1] is not None
    )


async def _guarded(
    qemu: Path,
    fake: Path,
    tmpdir: Path,
    devices: int,
    mask_on: MaskOn,
    delay_ms: int,
    timeout_ms: float,
    fail: str | None,
    say: Callable[[str], None] | None,
    label: str,
) -> tuple[str, list[DemoResult]]:
    """The migration's final status and, per device, its guard's result."""
    rdma_guard = guard_module()
    tmpdir.mkdir(parents=True, exist_ok=True)
    # A short directory of its own: the socket path must fit in sun_path.
    scratch = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=tmpdir))
    guard_socket = socket_path(scratch / "guard.sock")
    uri = f"unix:{socket_path(scratch / 'mig.sock')}"
    src_env = {
        "FAKEVFIO_MIGRATION_FLAGS": FLAGS,
        "FAKEVFIO_DELAY": f"{QUIESCE_ARC}={delay_ms}",
    }
    if fail:
        src_env["FAKEVFIO_FAIL"] = fail
    dst_env = {"FAKEVFIO_MIGRATION_FLAGS": FLAGS}
    async with (
        FakeVfioVM(
            qemu,
            fake,
            tmpdir,
            "source",
            src_env,
            args=["-qmp", f"unix:{quoted(guard_socket)},server=on,wait=off"],
            devices=devices,
        ) as src,
        FakeVfioVM(
            qemu,
            fake,
            tmpdir,
            "destination",
            dst_env,
            ["-incoming", uri],
            devices=devices,
        ),
    ):
        guards = []
        for device in src.devices:
            speak = say
            if say is not None and devices > 1:
                speak = _prefixed(say, device)
            link = rdma_guard.SimulatedRdmaLink(
                src.log, timeout_ms, QUIESCE_STATE, src.group_of(device), say=speak
            )
            guards.append(
                rdma_guard.RdmaGuard(link, device, QUIESCE_STATE, mask_on, speak)
            )
        consumer = guards[0] if devices == 1 else rdma_guard.DeviceGuards(guards)
        stop = asyncio.Event()
        connected = asyncio.Event()
        watcher = asyncio.create_task(
            rdma_guard.watch(str(guard_socket), consumer, stop, connected)
        )
        try:
            ready = asyncio.create_task(connected.wait())
            await asyncio.wait(
                {ready, watcher}, timeout=30, return_when="FIRST_COMPLETED"
            )
            ready.cancel()
            if watcher.done():
                watcher.result()  # raises what stopped it
                raise RuntimeError("the guard stopped before the migration")
            if not connected.is_set():
                raise TimeoutError(f"the guard did not connect to {guard_socket}")
            status = await src.migrate(uri)
            # The guards hear the events on their own monitor, a little later.
            await _until(
                lambda: all(g.resolved.is_set() for g in guards), RESOLVE_TIMEOUT
            )
            # A silence is over once the fake logged the end of the request.
            await _until(lambda: all(_over(g.link) for g in guards), RESOLVE_TIMEOUT)
            await asyncio.sleep(0.05)
        finally:
            stop.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(watcher, 10)
        results = [
            _result(g, g.link, src, status, mask_on, delay_ms, timeout_ms)
            for g in guards
        ]
    forget_socket_dir(scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    return status, results


def _prefixed(say: Callable[[str], None], device: str) -> Callable[[str], None]:
    return lambda line: say(f"{device}: {line}")


@dataclass(frozen=True)
class Lead:
    """The notice's lead in one guarded migration, for `qseries bench`."""

    lead_s: float  # completion - notice, as the guard received them
    latencies_ms: list[float]  # QEMU's timestamp -> the guard, both events
    result: DemoResult


async def switchover_lead(
    qemu: Path,
    fake: Path,
    tmpdir: Path,
    delay_ms: int = 300,
    wire: Wire | None = None,
    run: int = 0,
) -> Lead:
    """Run the demo (mask on the notice) with delay_ms injected into the
    quiesce transition and return the lead of its prepare notice over
    its completion.  With a wire, the notice must be that version's.
    Raises RuntimeError when there is no notice, or a wrong one."""
    result = await run_demo(
        qemu, fake, tmpdir, delay_ms=delay_ms, mask_on="notice", label=f"lead{run}"
    )
    if result.lead_ms is None or result.notice_qemu_us is None:
        raise RuntimeError(f"no prepare notice and completion:\n{result.explain()}")
    if result.completion_state != QUIESCE_STATE:
        raise RuntimeError(f"the quiesce transition failed:\n{result.explain()}")
    if wire is not None:
        notices = [
            wire.classify(name, state or None)
            for name, _, state in (e.partition(" ") for e in result.events)
        ]
        if ("notice", QUIESCE_STATE) not in notices:
            raise RuntimeError(
                f"no {wire.describe_notice()} for {QUIESCE_STATE}:\n{result.explain()}"
            )
    assert result.notice_us is not None and result.completion_us is not None
    assert result.completion_qemu_us is not None
    latencies = [
        (result.notice_us - result.notice_qemu_us) / 1000,
        (result.completion_us - result.completion_qemu_us) / 1000,
    ]
    return Lead(result.lead_ms / 1000, latencies, result)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--qemu", type=Path, required=True)
    parser.add_argument("--fake", type=Path, required=True)
    parser.add_argument("--mask-on", choices=("notice", "completion"), default="notice")
    parser.add_argument("--delay-ms", type=int, default=300)
    parser.add_argument("--timeout-ms", type=float, default=50.0)
    parser.add_argument("--fail", help="FAKEVFIO_FAIL for the source")
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="fake devices per side, each taking --delay-ms (default 1)",
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(f"  {line}", flush=True)

    if args.devices < 1:
        parser.error(f"--devices {args.devices}: give 1 or more")
    with tempfile.TemporaryDirectory(prefix="qseries-demo-") as tmp:
        if args.devices > 1:
            several = asyncio.run(
                run_devices(
                    args.qemu,
                    args.fake,
                    Path(tmp),
                    args.devices,
                    mask_on=args.mask_on,
                    delay_ms=args.delay_ms,
                    timeout_ms=args.timeout_ms,
                    fail=args.fail,
                    say=say if args.verbose else None,
                )
            )
            print(several.explain())
            return 1 if any(d.link_dropped for d in several.devices) else 0
        result = asyncio.run(
            run_demo(
                args.qemu,
                args.fake,
                Path(tmp),
                mask_on=args.mask_on,
                delay_ms=args.delay_ms,
                timeout_ms=args.timeout_ms,
                fail=args.fail,
                say=say if args.verbose else None,
            )
        )
    print(result.explain())
    return 1 if result.link_dropped else 0


if __name__ == "__main__":
    sys.exit(main())
