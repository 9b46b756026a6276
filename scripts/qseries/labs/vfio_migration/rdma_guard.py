#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""rdma_guard: mask a migrating VFIO device's RDMA timeouts in time.

A management application that keeps the RDMA connections of a VFIO
device alive across a live migration must mask their timeouts (tens of
ms) before the device quiesces, because quiescing can take hundreds of
ms.  Hearing QEMU's VFIO_MIGRATION event for the quiesced state is too
late: QEMU sends it once the transition has finished.  The prepare
notice of the series is sent just before QEMU asks the device to change
state, and QEMU does not wait for the consumer: the consumer acts while
the transition runs.

This consumer understands both versions of the notice by itself:

  v1: VFIO_MIGRATION_PREPARE(device-state=X)          notice for X
  v2: VFIO_MIGRATION(device-state="X-prepare")        notice for X
  both: VFIO_MIGRATION(device-state=Y)                completion (Y)

With --mask-on notice (the default) it masks the timeout when it hears
the notice for the quiesce state (pre-copy-p2p unless told otherwise)
and unmasks on the next completion.  If that completion is for another
state, the transition failed (QEMU reports the state it recovered to,
"running" after a device reset): it unmasks and says so.  With
--mask-on completion it does what a consumer could do without the
series: mask on VFIO_MIGRATION(quiesce state), unmask on the next
VFIO_MIGRATION.

The RDMA link is simulated (there is no RDMA here): the device is taken
to be silent on its connections from the moment it starts the quiesce
transition until that transition returns, which the fake VFIO library
(fakevfio/ of this lab) logs as "begin" and "transition" records.  A watchdog
drops the link when the device has been silent, while the timeout was
not masked, for longer than the timeout.  See examples/README.md.

A VM with several devices gets one guard and one link per device
(--device and --group given once per device): QEMU quiesces the devices
one after another, so each link is masked on its own device's notice,
matched by device-id or QOM path, and unmasked on its own completion.

This file uses only the standard library and the qemu.qmp package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qemu.qmp import EventListener, QMPClient
from qemu.qmp.protocol import Runstate

QUIESCE_STATE = "pre-copy-p2p"
PREPARE_EVENT = "VFIO_MIGRATION_PREPARE"
STATE_EVENT = "VFIO_MIGRATION"
PREPARE_SUFFIX = "-prepare"

Kind = Literal["notice", "completion"]
MaskOn = Literal["notice", "completion"]


def now_us() -> int:
    """CLOCK_REALTIME in microseconds: the clock of the fake's log."""
    return time.time_ns() // 1000


def kernel_state(qapi_state: str) -> str:
    """'pre-copy-p2p' -> 'PRE_COPY_P2P', as the fake VFIO library logs it."""
    return qapi_state.upper().replace("-", "_")


@dataclass(frozen=True)
class VfioEvent:
    """One VFIO migration event, as this consumer understands it."""

    kind: Kind
    state: str  # the state announced (notice) or reached (completion)
    device: str | None
    received_us: int  # CLOCK_REALTIME when the consumer got it
    qemu_us: int  # QEMU's timestamp of the event
    qom_path: str | None = None

    def of(self, device: str) -> bool:
        """The event is device's, named by its id or its QOM path."""
        return device in (self.device, self.qom_path)

    def __str__(self) -> str:
        return f"{self.kind}({self.state})"


def classify(message: Mapping[str, Any], received_us: int) -> VfioEvent | None:
    """A QMP event as a notice, a completion, or None (not a VFIO one)."""
    name = message.get("event")
    data = message.get("data") or {}
    state = data.get("device-state")
    if not isinstance(state, str) or name not in (PREPARE_EVENT, STATE_EVENT):
        return None
    kind: Kind = "completion"
    if name == PREPARE_EVENT:
        kind = "notice"
    elif state.endswith(PREPARE_SUFFIX):
        kind, state = "notice", state[: -len(PREPARE_SUFFIX)]
    stamp = message.get("timestamp") or {}
    qemu_us = int(stamp.get("seconds", 0)) * 1_000_000 + int(
        stamp.get("microseconds", 0)
    )
    device = data.get("device-id")
    return VfioEvent(kind, state, device, received_us, qemu_us, data.get("qom-path"))


def first_drop(
    start_us: int,
    end_us: int,
    toggles: list[tuple[int, bool]],
    timeout_us: int,
) -> int | None:
    """When a link silent over [start_us, end_us] times out, or None.

    toggles are (time, masked) changes of the mask, in time order; the
    mask starts unmasked.  The link times out once it has been silent and
    unmasked for longer than timeout_us without a break.
    """
    masked = False
    for at, value in toggles:
        if at > start_us:
            break
        masked = value
    run_start = start_us
    for at, value in toggles:
        if at <= start_us or at > end_us or value == masked:
            continue
        if value and at - run_start > timeout_us:
            return run_start + timeout_us
        if not value:
            run_start = at
        masked = value
    if not masked and end_us - run_start > timeout_us:
        return run_start + timeout_us
    return None


class SimulatedRdmaLink:
    """An RDMA connection of the device, reduced to a timeout.

    It tails the fake VFIO library's log: a "begin" record for a request
    to enter the quiesce state starts a silence of the device, the
    "transition" record that ends the request ends it.  (A log without
    "begin" records still gives the silence, from the "transition"
    record's begin time, but only once the request has returned.)
    While a silence lasts, a watchdog checks every poll interval whether
    the device has been silent and unmasked for longer than the timeout;
    if so the link drops, for good.
    """

    def __init__(
        self,
        fake_log: Path,
        timeout_ms: float,
        quiesce_state: str = QUIESCE_STATE,
        group: int | None = None,
        poll_ms: float = 2.0,
        say: Callable[[str], None] | None = None,
    ):
        self.fake_log = fake_log
        self.timeout_us = int(timeout_ms * 1000)
        self.target = kernel_state(quiesce_state)
        self.group = group
        self.poll_s = poll_ms / 1000
        self.say = say or (lambda _line: None)
        self.toggles: list[tuple[int, bool]] = []
        self.silences: list[tuple[int, int | None]] = []  # (begin, end or None)
        self.dropped_at_us: int | None = None  # when the timeout expired
        self.detected_at_us: int | None = None  # when the watchdog saw it
        self.dropped = asyncio.Event()
        self._offset = 0
        self._partial = b""

    @property
    def masked(self) -> bool:
        return bool(self.toggles) and self.toggles[-1][1]

    def mask(self, at_us: int | None = None) -> None:
        self._toggle(True, at_us)

    def unmask(self, at_us: int | None = None) -> None:
        self._toggle(False, at_us)

    def _toggle(self, masked: bool, at_us: int | None) -> None:
        if self.masked != masked:
            self.toggles.append((now_us() if at_us is None else at_us, masked))

    def poll(self) -> None:
        """Read what the fake logged since the last call, then check."""
        try:
            with self.fake_log.open("rb") as log:
                log.seek(self._offset)
                chunk = log.read()
        except FileNotFoundError:
            chunk = b""
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._record(line.decode(errors="replace").split())
        self.check(now_us())

    def _record(self, f: list[str]) -> None:
        if len(f) < 5 or f[0] not in ("begin", "transition") or f[3] != self.target:
            return
        if self.group is not None and f[1] != str(self.group):
            return
        begin = int(f[4])
        if f[0] == "begin":
            self.silences.append((begin, None))
            self.say(f"link: device silent since {begin} ({f[2]} -> {f[3]} began)")
            return
        if len(f) < 7:
            return
        end = int(f[5])
        if self.silences and self.silences[-1][1] is None:
            self.silences[-1] = (self.silences[-1][0], end)
        else:  # no "begin" record: learn the silence only now
            self.silences.append((begin, end))
        self.say(
            f"link: device answers again after {(end - begin) / 1000:.1f} ms "
            f"({f[2]} -> {f[3]} {f[6]})"
        )

    def check(self, at_us: int) -> None:
        if self.dropped_at_us is not None:
            return
        for begin, end in self.silences:
            drop = first_drop(
                begin, at_us if end is None else end, self.toggles, self.timeout_us
            )
            if drop is not None:
                self.dropped_at_us = drop
                self.detected_at_us = at_us
                self.dropped.set()
                self.say(
                    f"link: DROPPED: device silent and unmasked for "
                    f"{self.timeout_us / 1000:g} ms"
                )
                return

    async def run(self) -> None:
        """Watch until cancelled."""
        while True:
            self.poll()
            await asyncio.sleep(self.poll_s)


@dataclass
class GuardReport:
    """What the guard heard and did; times are CLOCK_REALTIME us."""

    events: list[VfioEvent] = field(default_factory=list)
    masked_us: list[int] = field(default_factory=list)
    unmasked_us: list[int] = field(default_factory=list)
    notice: VfioEvent | None = None  # notice of the quiesce state
    completion: VfioEvent | None = None  # what followed it (or the bare one)
    failures: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def resolved(self) -> bool:
        """The quiesce episode is over: its completion (or failure) came."""
        return self.completion is not None


class RdmaGuard:
    """Feeds on QMP events, masks and unmasks the link's timeout."""

    def __init__(
        self,
        link: SimulatedRdmaLink | None = None,
        device: str | None = None,
        quiesce_state: str = QUIESCE_STATE,
        mask_on: MaskOn = "notice",
        say: Callable[[str], None] | None = None,
    ):
        self.link = link
        self.device = device
        self.quiesce_state = quiesce_state
        self.mask_on = mask_on
        self.say = say or (lambda _line: None)
        self.report = GuardReport()
        self.pending: VfioEvent | None = None  # what the mask waits for
        self.resolved = asyncio.Event()

    def feed(self, message: Mapping[str, Any], received_us: int | None = None) -> None:
        event = classify(message, now_us() if received_us is None else received_us)
        if event is None or (self.device and not event.of(self.device)):
            return
        self.report.events.append(event)
        self.say(f"heard {event}")
        if event.kind == "notice":
            self._notice(event)
        else:
            self._completion(event)

    @property
    def links(self) -> list[SimulatedRdmaLink]:
        return [self.link] if self.link else []

    def _mask(self, at_us: int, why: str) -> None:
        self.report.masked_us.append(at_us)
        if self.link:
            self.link.mask(at_us)
        self.say(f"MASK the RDMA timeout ({why})")

    def _unmask(self, at_us: int, why: str) -> None:
        self.report.unmasked_us.append(at_us)
        if self.link:
            self.link.unmask(at_us)
        self.say(f"UNMASK the RDMA timeout ({why})")

    def _notice(self, event: VfioEvent) -> None:
        if event.state != self.quiesce_state or self.pending is not None:
            return
        self.report.notice = event
        if self.mask_on == "notice":
            self.pending = event
            self._mask(now_us(), f"{event.state} is about to start")

    def _completion(self, event: VfioEvent) -> None:
        pending = self.pending
        if pending is not None:
            self.pending = None
            if pending.kind == "completion":  # --mask-on completion
                self._unmask(now_us(), f"device moved on to {event.state}")
                return
            self.report.completion = event
            if event.state == pending.state:
                self._unmask(now_us(), f"{event.state} reached")
            else:
                failure = (
                    f"transition to {pending.state} failed: the device "
                    f"reported {event.state} instead"
                )
                self.report.failures.append(failure)
                self._unmask(now_us(), failure)
            self.resolved.set()
            return
        if event.state != self.quiesce_state or self.report.completion:
            return
        self.report.completion = event
        if self.mask_on == "completion":
            self.pending = event
            self._mask(now_us(), f"{event.state} reached")
        elif self.report.notice is None:
            problem = (
                f"no prepare notice before VFIO_MIGRATION({event.state}): "
                "this QEMU does not announce the transition"
            )
            self.report.problems.append(problem)
            self.say(problem)
        self.resolved.set()


class DeviceGuards:
    """One guard per device, each with its own link, fed by one monitor.

    Every event goes to the guard of its device (device-id or QOM path);
    the events of a device that has no guard are ignored.
    """

    def __init__(self, guards: Sequence[RdmaGuard]):
        names = [g.device for g in guards]
        if not names or None in names or len(set(names)) != len(names):
            raise ValueError(f"one guard per named device, got {names}")
        self.guards = list(guards)

    @property
    def links(self) -> list[SimulatedRdmaLink]:
        return [link for g in self.guards for link in g.links]

    def feed(self, message: Mapping[str, Any], received_us: int | None = None) -> None:
        at = now_us() if received_us is None else received_us
        for guard in self.guards:
            guard.feed(message, at)

    async def all_resolved(self) -> None:
        for guard in self.guards:
            await guard.resolved.wait()


async def connect(client: QMPClient, socket: str, timeout: float = 30.0) -> None:
    """Connect, waiting for QEMU to create the socket."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.connect(socket)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def watch(
    socket: str,
    guard: RdmaGuard | DeviceGuards,
    stop: asyncio.Event | None = None,
    connected: asyncio.Event | None = None,
) -> None:
    """Feed guard with the events of the QMP socket, and run its link,
    until stop is set or QEMU closes the connection."""
    client = QMPClient("rdma-guard")
    listener = EventListener((PREPARE_EVENT, STATE_EVENT))
    client.register_listener(listener)
    await connect(client, socket)
    if connected is not None:
        connected.set()
    tasks: list[asyncio.Task[Any]] = []
    try:

        async def pump() -> None:
            async for message in listener:
                guard.feed(message, now_us())

        async def gone() -> None:
            while client.runstate == Runstate.RUNNING:
                await client.runstate_changed()

        tasks.append(asyncio.create_task(pump()))
        tasks.append(asyncio.create_task(gone()))
        for link in guard.links:
            tasks.append(asyncio.create_task(link.run()))
        if stop is not None:
            tasks.append(asyncio.create_task(stop.wait()))
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await client.disconnect()
        for link in guard.links:
            link.poll()  # the last records, written before QEMU went


def verdict(guard: RdmaGuard | DeviceGuards) -> tuple[int, str]:
    """Exit code and one line: 0 link kept, 1 link dropped, 2 unknown;
    for several devices, the worst (dropped, then unknown) and a part of
    the line each."""
    if isinstance(guard, DeviceGuards):
        each = [(verdict(g), g.device) for g in guard.guards]
        codes = [code for (code, _), _ in each]
        worst = 1 if 1 in codes else max(codes)
        return worst, "; ".join(f"{device}: {line}" for (_, line), device in each)
    r = guard.report
    why = "; ".join(r.failures + r.problems)
    why = f" ({why})" if why else ""
    if guard.link is not None and guard.link.dropped_at_us is not None:
        return 1, f"RDMA link DROPPED{why}"
    if not r.resolved:
        return 2, f"no {guard.quiesce_state} transition seen{why}"
    if guard.link is None:
        return 0, f"{guard.quiesce_state} episode handled (no link simulated){why}"
    return 0, f"RDMA link kept{why}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Mask a simulated RDMA timeout around a VFIO device's "
        "quiesce transition, on QEMU's prepare notice."
    )
    parser.add_argument("--qmp", required=True, help="QEMU's QMP unix socket")
    parser.add_argument(
        "--device",
        action="append",
        default=[],
        help="a vfio-pci device's id or QOM path (default: any); once per "
        "device to guard several, each with its own link",
    )
    parser.add_argument("--timeout-ms", type=float, default=50.0)
    parser.add_argument("--mask-on", choices=("notice", "completion"), default="notice")
    parser.add_argument("--quiesce-state", default=QUIESCE_STATE)
    parser.add_argument(
        "--fake-log",
        type=Path,
        help="FAKEVFIO_LOG of the QEMU: simulate the RDMA link from it",
    )
    parser.add_argument(
        "--group",
        type=int,
        action="append",
        default=[],
        help="the device's IOMMU group; with several devices, once per "
        "--device, in the same order",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="exit once the quiesce transition is over (else: when QEMU quits)",
    )
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(f"[{now_us() / 1e6:.6f}] {line}", flush=True)

    devices: list[str | None] = list(args.device) or [None]
    groups: list[int | None] = list(args.group) or [None]
    if len(devices) > 1 and args.fake_log is not None and len(groups) != len(devices):
        parser.error(
            f"{len(devices)} devices with --fake-log need as many --group "
            f"(got {len(args.group)}), one per --device in the same order"
        )
    if len(devices) == 1 and len(groups) > 1:
        parser.error(f"{len(groups)} --group for one device: give one")

    def guard_of(device: str | None, group: int | None) -> RdmaGuard:
        def speak(line: str) -> None:
            say(f"{device}: {line}" if len(devices) > 1 else line)

        link = None
        if args.fake_log is not None:
            link = SimulatedRdmaLink(
                args.fake_log, args.timeout_ms, args.quiesce_state, group, say=speak
            )
        return RdmaGuard(link, device, args.quiesce_state, args.mask_on, speak)

    if len(devices) == 1:
        guard: RdmaGuard | DeviceGuards = guard_of(devices[0], groups[0])
    else:
        if len(groups) != len(devices):
            groups = [None] * len(devices)
        guard = DeviceGuards(
            [guard_of(d, g) for d, g in zip(devices, groups, strict=True)]
        )

    async def resolved() -> None:
        if isinstance(guard, DeviceGuards):
            await guard.all_resolved()
        else:
            await guard.resolved.wait()

    async def run() -> None:
        stop = asyncio.Event()

        async def until_over() -> None:
            await resolved()
            # Let the link see the end of the silence (and a late drop).
            await asyncio.sleep(max(0.2, 2 * args.timeout_ms / 1000))
            stop.set()

        waiter = asyncio.create_task(until_over()) if args.once else None
        try:
            await watch(args.qmp, guard, stop)
        finally:
            if waiter is not None:
                waiter.cancel()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    code, line = verdict(guard)
    say(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
