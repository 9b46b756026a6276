"""multifd: a FakeVfioVM pair whose devices' state goes over multifd channels.

Since QEMU 10.0 a vfio-pci device can hand its STOP_COPY state to the
multifd channels rather than to the main migration stream
(hw/vfio/migration-multifd.c, QEMU 10.2.2):

- the source spawns one save thread per device at the end of pre-copy
  (vfio_multifd_save_complete_precopy_thread).  The thread moves the
  device to STOP_COPY itself, unless the main loop's stop handler
  (vfio_vmstate_change) already did, as it does for a device in a
  PRE_COPY state; then it reads the data fd into numbered packets of at
  most the data buffer's size (1 MiB, less when MIG_DATA_SIZE says the
  state is smaller) and queues them, and last a packet of the device's
  config space flagged as such;
- the destination keeps the packets of each device, which come in any
  order over any channel, and a load thread per device, started when
  the source's switchover-start command arrives
  (vfio_multifd_switchover_start), writes them to the data fd in RESUMING
  in their order, then loads the config (under the BQL).  The incoming
  side waits for every load thread before the devices leave RESUMING;
- the main stream carries only an end-of-state marker per device, or,
  with x-migration-load-config-after-iter on (the default on ARM only),
  a marker telling the load thread that the config may now be loaded.

It needs the `multifd` capability with no mapped-ram and no multifd
compression (multifd_device_state_supported()), and the migration
object's send-switchover-start (on, except on machine types of 9.2 and
older).  A device asked for it (the property `on`, not `auto`) in a
migration without them fails its migration's setup, on either side
(vfio_multifd_setup()), with UNSUPPORTED.

And it needs the `return-path` capability too, though QEMU does not ask
for it: a save thread ends once its last packets are handed to the
channels' threads (multifd_queue_device_state), and nothing on the
source waits for those to be written before it completes and shuts the
channels down (multifd_send_terminate_threads: a job not yet started is
dropped, a write under way is cut).  The destination then waits for
ever for a device's missing packets, or fails on a channel cut
mid-packet ("Unexpected end-of-file before all data were read").  Seen
here on 10.2.2 in about one migration in ten, with 4 devices of 8 MiB
and with 8 devices of 64 KiB.  With the return path the source
completes only once the destination said it is done, which is after its
load threads had every packet.

And a device's state must not be big while pre-copy ran: QEMU 10.2.2
can deadlock when the save threads queue device state while the
migration thread syncs the channels for RAM.  The save threads are
spawned just before RAM's completion (savevm.c), whose walk of the dirty
bitmap ends in a sync (ram.c, find_dirty_block: a SYNC packet on every
channel, then RAM_SAVE_FLAG_MULTIFD_FLUSH on the main stream).  A
destination channel that read its SYNC waits for that flush before it
reads on (multifd.c, multifd_recv_thread), so device state sent after
the SYNC sits in the channel's socket, and once more than the socket
holds (about 220 KiB on a Unix socket here) is queued behind it, the
sending thread blocks in sendmsg.  Meanwhile the sync waits for a
"channel ready" token per channel (multifd_send_sync_main), the same
tokens the save threads take to queue a packet (multifd_send): when
they take them all, for channels that then block, the sync never ends,
the flush is never sent, and no side moves again.  After pre-copy the
devices are in STOP_COPY before their threads start, so the threads
queue at once, during RAM's completion; without pre-copy each thread
first moves its device there itself, which here takes longer than the
RAM sync.  Seen with 4 devices of 8 MiB over 4 channels after pre-copy:
in two CI runs, and here once in 205 migrations, most under load; never
in 420 with 16 KiB states after pre-copy, nor in 1,113 without pre-copy
(8 MiB, 1 MiB and 64 KiB states).  The lab's devices save 64 KiB each.

Here: the device option, the commands that turn multifd on (the same on
both sides; on the destination before migrate-incoming, so it is
started with `-incoming defer`), whether a QEMU can do it at all, a
migration with it, and the checks of what the devices and QEMU did: the
fake's save and load records, and each device's VFIO_MIGRATION events
against the transitions the fake logged for it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...ground.proc import run_bounded
from .vm import KERNEL_STATES, Event, FakeVfioVM, LogRecord, kernel_state

PROPERTY = "x-migration-multifd-transfer"
DEVICE_OPTIONS = f"{PROPERTY}=on"
CAPABILITY = "multifd"
# Keeps the source from shutting its channels before they are drained.
RETURN_PATH = "return-path"
CHANNELS = "multifd-channels"
# QEMU's bounds of multifd-channels.
MAX_CHANNELS = 255
# What QEMU says when a device asks for multifd transfer in a migration
# that cannot do it.
UNSUPPORTED = "Multifd device transfer requested but unsupported in the current config"
# The event QEMU sends once a device reached a state (every version).
COMPLETION = "VFIO_MIGRATION"
STATES = frozenset(KERNEL_STATES)
HELP_TIMEOUT = 60.0
FINAL = ("completed", "failed", "cancelled")


def channels_for(devices: int) -> int:
    """A channel per device, at least two (QEMU's default)."""
    return min(MAX_CHANNELS, max(2, devices))


def commands(channels: int) -> list[tuple[str, dict[str, Any]]]:
    """The QMP commands (name, arguments) that turn multifd on, for
    either side."""
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"multifd channels: from 1 to {MAX_CHANNELS}, not {channels}")
    return [
        (
            "migrate-set-capabilities",
            {
                "capabilities": [
                    {"capability": CAPABILITY, "state": True},
                    {"capability": RETURN_PATH, "state": True},
                ]
            },
        ),
        ("migrate-set-parameters", {CHANNELS: channels}),
    ]


def supported(qemu: Path) -> str | None:
    """Why this QEMU cannot send device state over multifd, or None when
    it can: its vfio-pci must have PROPERTY (QEMU 10.0 and later)."""
    argv = [str(qemu), "-device", "vfio-pci,help"]
    try:
        ran = run_bounded(argv, os.environ, HELP_TIMEOUT, untrusted=True)
    except OSError as err:
        return f"{qemu} cannot be run: {err.strerror or err}"
    if ran.timed_out:
        return f"{qemu} -device vfio-pci,help ran over {HELP_TIMEOUT:.0f} s"
    if ran.returncode != 0:
        said = (ran.stderr.strip().splitlines() or ["nothing"])[-1]
        return f"{qemu} -device vfio-pci,help exited {ran.returncode}: {said}"
    if PROPERTY not in ran.stdout:
        return (
            f"{qemu}'s vfio-pci has no {PROPERTY} property: device state "
            "over multifd needs QEMU 10.0 or later"
        )
    return None


async def enable(vm: FakeVfioVM, channels: int) -> None:
    """Multifd on in vm, with that many channels."""
    for name, arguments in commands(channels):
        await vm.cmd(name, **arguments)


@dataclass(frozen=True)
class Migrated:
    """How a migration ended on each side, and what each side said."""

    source: str
    destination: str
    error: str | None = None
    destination_error: str | None = None

    @property
    def completed(self) -> bool:
        return self.source == self.destination == "completed"


async def _final(vm: FakeVfioVM, deadline: float) -> tuple[str, str | None]:
    """vm's migration status once final (or at the deadline), and its error."""
    while True:
        info = await vm.cmd("query-migrate")
        status = str(info.get("status"))
        if status in FINAL or time.monotonic() > deadline:
            error = info.get("error-desc")
            return status, None if error is None else str(error)
        await asyncio.sleep(0.01)


async def migrate(
    src: FakeVfioVM,
    dst: FakeVfioVM,
    uri: str,
    channels: int,
    timeout: float = 60.0,
    *,
    capability: bool = True,
) -> Migrated:
    """Migrate src to dst (started with `-incoming defer`) on uri with
    multifd on both sides, once both sides' status is final.  A
    destination that fails stays up to say why.  capability=False leaves
    the capabilities off (the devices' option alone), the case QEMU
    refuses."""
    if capability:
        for vm in (src, dst):
            await enable(vm, channels)
    await dst.cmd("migrate-incoming", uri=uri, **{"exit-on-error": False})
    deadline = time.monotonic() + timeout
    await src.migrate(uri, timeout)
    source, error = await _final(src, deadline)
    destination, destination_error = await _final(dst, deadline)
    return Migrated(source, destination, error, destination_error)


# -- what the fake and QEMU said -------------------------------------------


@dataclass(frozen=True)
class Stream:
    """A device's saved ('save') or loaded ('load') state, as the fake
    logged it: payload bytes, checksum, and for a load the fake's verdict."""

    kind: str
    group: int
    size: int
    checksum: str
    verdict: str | None = None


def read_streams(path: Path) -> list[Stream]:
    """The save and load records of the fake's log, in order."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    out: list[Stream] = []
    for line in lines:
        f = line.split()
        try:
            if len(f) == 4 and f[0] == "save":
                out.append(Stream("save", int(f[1]), int(f[2]), f[3]))
            elif len(f) == 5 and f[0] == "load":
                out.append(Stream("load", int(f[1]), int(f[2]), f[3], f[4]))
        except ValueError:
            continue  # a record cut short by a killed QEMU
    return out


def stream_problems(
    saved: Sequence[Stream], loaded: Sequence[Stream], groups: Iterable[int]
) -> list[str]:
    """What is wrong with the devices' state, one line each: every group
    saved once on the source and loaded once on the destination, with
    the fake's verdict ok and the bytes and checksum it was saved with."""
    problems: list[str] = []
    for group in groups:
        save = [s for s in saved if s.kind == "save" and s.group == group]
        load = [s for s in loaded if s.kind == "load" and s.group == group]
        if len(save) != 1 or len(load) != 1:
            problems.append(
                f"group {group}: {len(save)} save and {len(load)} load records, "
                "not one each"
            )
            continue
        if load[0].verdict != "ok":
            problems.append(f"group {group}: load {load[0].verdict}")
        elif (load[0].size, load[0].checksum) != (save[0].size, save[0].checksum):
            problems.append(
                f"group {group}: loaded {load[0].size} bytes {load[0].checksum}, "
                f"saved {save[0].size} bytes {save[0].checksum}"
            )
    return problems


def completions(events: Sequence[Event], device: str) -> list[Event]:
    """A device's VFIO_MIGRATION events that name a state it reached
    (not v2's notice value, not v1's notice event), in order."""
    return [
        e
        for e in events
        if e.name == COMPLETION
        and e.device == device
        and e.state is not None
        and kernel_state(e.state) in STATES
    ]


def order_problems(
    events: Sequence[Event],
    records: Sequence[LogRecord],
    groups: Mapping[str, int],
    since_us: int = 0,
) -> list[str]:
    """What breaks each device's own order, one line each: its k-th
    completion names the target of the k-th transition the fake logged
    for its group, and was sent after that transition ended and before
    the next one began (QEMU's clock against the fake's, both
    CLOCK_REALTIME).  Nothing across devices.  Only what began at
    since_us or later counts: a QEMU that was not stopped (-S) moved its
    devices as it started, before a client could hear it."""
    problems: list[str] = []
    for device, group in groups.items():
        done = [e for e in completions(events, device) if e.qemu_us >= since_us]
        moves = [
            r
            for r in records
            if r.kind == "transition" and r.group == group and r.begin_us >= since_us
        ]
        failed = [r for r in moves if r.result != "ok"]
        if failed:
            problems.append(
                f"{device}: {failed[0].source}>{failed[0].target} {failed[0].result}"
            )
            continue
        said = [kernel_state(str(e.state)) for e in done]
        went = [str(r.target) for r in moves]
        if said != went:
            problems.append(f"{device}: events {said}, transitions {went}")
            continue
        for k, (event, move) in enumerate(zip(done, moves, strict=True)):
            if event.qemu_us < move.end_us:
                problems.append(
                    f"{device}: {event.state} sent {move.end_us - event.qemu_us} us "
                    "before its transition ended"
                )
            if k + 1 < len(moves) and event.qemu_us > moves[k + 1].begin_us:
                problems.append(
                    f"{device}: {event.state} sent after the transition to "
                    f"{moves[k + 1].target} began"
                )
    return problems


def spans(records: Sequence[LogRecord], target: str) -> dict[int, tuple[int, int]]:
    """Per group, the (begin, end) of its one transition to target."""
    return {
        r.group: (r.begin_us, r.end_us)
        for r in records
        if r.kind == "transition" and r.target == target
    }


def together(spans: Mapping[int, tuple[int, int]]) -> bool:
    """Did all these transitions run at once (an instant inside each)?"""
    return bool(spans) and max(b for b, _ in spans.values()) < min(
        e for _, e in spans.values()
    )


def one_after_another(spans: Mapping[int, tuple[int, int]]) -> bool:
    """Did each of these transitions begin once the one before had ended?"""
    ordered = sorted(spans.values())
    return all(a[1] <= b[0] for a, b in itertools.pairwise(ordered))
