"""A QEMU process with one fake vfio-pci device, driven with qemu.qmp.

Used by the qmp checks, the fault matrix and the benchmark: QEMU is
started with the fake VFIO library preloaded, a temporary sysfs device
directory, and a QMP socket; every event is recorded with QEMU's own
timestamp and the time the client received it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from qemu.qmp import ConnectError, EventListener, QMPClient

from ...ground.proc import Started, start_async
from .plan import Wire

# sun_path holds 108 bytes, the terminating NUL among them.
SUN_PATH_MAX = 107
# Directories holding sockets whose paths are too long, open: see
# socket_path().
_SOCKET_DIRS: dict[Path, int] = {}


def socket_path(path: Path) -> str:
    """A name for the unix socket `path` that fits in sun_path, for this
    process and for the QEMUs it starts (which inherit socket_fds()).

    A short path is itself.  A longer one (a work dir deep in a home
    directory) goes through an open descriptor of its directory,
    /proc/self/fd/N/NAME: the socket stays where it belongs, in the work
    dir, and every process holding descriptor N reaches it.
    """
    name = str(path)
    if len(os.fsencode(name)) <= SUN_PATH_MAX:
        return name
    directory = path.parent.absolute()
    if directory not in _SOCKET_DIRS:
        _SOCKET_DIRS[directory] = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    short = f"/proc/self/fd/{_SOCKET_DIRS[directory]}/{path.name}"
    if len(os.fsencode(short)) > SUN_PATH_MAX:
        raise ValueError(f"socket name {path.name!r} is too long")
    return short


def socket_fds() -> tuple[int, ...]:
    """The descriptors socket_path() opened: the QEMUs must inherit them."""
    return tuple(_SOCKET_DIRS.values())


def forget_socket_dir(directory: Path) -> None:
    """Close the descriptor of a directory whose sockets are gone."""
    fd = _SOCKET_DIRS.pop(directory.absolute(), None)
    if fd is not None:
        os.close(fd)


def quoted(value: str) -> str:
    """A value for a QEMU option list: commas doubled."""
    return value.replace(",", ",,")


DEVICE_ID = "vfio0"
# The IOMMU group of the first device; the next ones count up.
FIRST_GROUP = 4242
START_TIMEOUT = 30.0
# How long a QEMU may live: a test's lives seconds, a benchmark's minutes;
# one nobody stops (a hung client) is stopped then.
LIFETIME = 3600.0
NOTICE = "notice"
DONE = "done"
# A VFIO device's migration states, as the kernel (and the fake) names them.
KERNEL_STATES = (
    "STOP",
    "RUNNING",
    "STOP_COPY",
    "RESUMING",
    "RUNNING_P2P",
    "PRE_COPY",
    "PRE_COPY_P2P",
)


@dataclass(frozen=True)
class Event:
    name: str
    state: str | None  # device-state of VFIO events
    qemu_us: int  # QEMU's timestamp (CLOCK_REALTIME, us)
    received_us: int  # when the client got it (CLOCK_REALTIME, us)
    received_mono: float  # when the client got it (monotonic, s)
    # What the version's wire makes of it: NOTICE (of `subject`, the
    # state announced), DONE (`subject` reached), or None.
    kind: str | None = None
    subject: str | None = None
    device: str | None = None  # device-id of VFIO events

    def label(self) -> str:
        return f"{self.kind} {self.subject}"


@dataclass(frozen=True)
class Transition:
    """One MIG_DEVICE_STATE request, as the fake device logged it."""

    source: str
    target: str
    begin_us: int
    end_us: int
    result: str
    group: int = FIRST_GROUP


@dataclass(frozen=True)
class LogRecord:
    """One record of the fake's log that tells what a device did: a
    MIG_DEVICE_STATE request ('transition', with its result) or a reset
    ('reset', result 'ok' or the errno of a failed reset)."""

    kind: str
    group: int
    source: str | None
    target: str | None
    begin_us: int
    end_us: int
    result: str


def read_log(path: Path) -> list[LogRecord]:
    """The transitions and resets of the fake's log, in order."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    out: list[LogRecord] = []
    for line in lines:
        f = line.split()
        try:
            if len(f) == 7 and f[0] == "transition":
                out.append(
                    LogRecord(f[0], int(f[1]), f[2], f[3], int(f[4]), int(f[5]), f[6])
                )
            elif len(f) == 3 and f[0] == "reset":
                t = int(f[2])
                out.append(LogRecord("reset", int(f[1]), None, None, t, t, "ok"))
            elif len(f) == 4 and f[0] == "reset-failed":
                t = int(f[2])
                out.append(LogRecord("reset", int(f[1]), None, None, t, t, f[3]))
        except ValueError:
            continue  # a record cut short by a killed QEMU
    return out


def kernel_state(qapi_state: str) -> str:
    return qapi_state.upper().replace("-", "_")


class FakeVfioVM:
    """One QEMU with the fake device.  Use it as an async context manager:
    on the way out it stops QEMU, and it deletes its scratch directory
    only if the block succeeded.  When the block raised, the fake's log
    and QEMU's stderr stay, and their paths are printed and added to the
    exception as a note."""

    def __init__(
        self,
        qemu: Path,
        fake: Path,
        tmpdir: Path,
        name: str = "vm",
        fake_env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        wire: Wire | None = None,
        devices: int = 1,
        migration_events: bool = True,
        device_options: str = "",
    ):
        self.qemu = qemu
        self.devices = [DEVICE_ID if i == 0 else f"vfio{i}" for i in range(devices)]
        self.migration_events = migration_events
        # More properties of each vfio-pci device ("name=value,...").
        self.device_options = device_options
        self.wire = wire
        self.fake = fake
        self.name = name
        self.fake_env = dict(fake_env or {})
        self.args = list(args)
        # Keep it short: the QMP socket path must fit in sun_path.
        tmpdir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmpdir))
        self.log = self.dir / "fakevfio.log"
        self.qmp_path = self.dir / "qmp.sock"
        self.stderr_path = self.dir / "stderr.log"
        self.events: list[Event] = []
        # Every event as QEMU sent it, in order.
        self.messages: list[dict[str, Any]] = []
        self.client = QMPClient(name)
        self.listener = EventListener()
        self.proc: Started | None = None
        self._pump: asyncio.Task[None] | None = None

    def device_dir(self, index: int) -> Path:
        return self.dir / ("device" if index == 0 else f"device{index}")

    def group_of(self, device: str) -> int:
        """The IOMMU group (the fake's name for it) of a device id."""
        return FIRST_GROUP + self.devices.index(device)

    def command_line(self) -> list[str]:
        events = "on" if self.migration_events else "off"
        devices: list[str] = []
        for i, name in enumerate(self.devices):
            devices += [
                "-device",
                f"vfio-pci,id={name},sysfsdev={quoted(str(self.device_dir(i)))},"
                f"enable-migration=on,migration-events={events}"
                + (f",{self.device_options}" if self.device_options else ""),
            ]
        return [
            str(self.qemu),
            "-machine",
            "q35",
            "-accel",
            "qtest",
            "-nodefaults",
            "-display",
            "none",
            "-m",
            "64M",
            *devices,
            "-qmp",
            f"unix:{quoted(socket_path(self.qmp_path))},server=on,wait=off",
            *self.args,
        ]

    async def start(self) -> None:
        for i in range(len(self.devices)):
            device = self.device_dir(i)
            device.mkdir()
            # Only the group number counts: the link may dangle.
            (device / "iommu_group").symlink_to(
                f"../../../kernel/iommu_groups/{FIRST_GROUP + i}"
            )
        env = {
            **os.environ,
            **self.fake_env,
            "LD_PRELOAD": str(self.fake),
            "FAKEVFIO_LOG": str(self.log),
        }
        with self.stderr_path.open("wb") as err:
            self.proc = await start_async(
                self.command_line(),
                env,
                LIFETIME,
                stderr=err,
                pass_fds=socket_fds(),
                keep=("LD_PRELOAD",),
                untrusted=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.qmp_path.exists():
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.name}: QEMU exited: {self.stderr()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name}: no QMP socket after {START_TIMEOUT} s"
                )
            await asyncio.sleep(0.01)
        # QEMU creates the socket file when it binds, and accepts only
        # once it listens: a connect in between is refused, so retry.
        while True:
            try:
                await self.client.connect(socket_path(self.qmp_path))
                break
            except (ConnectError, OSError) as err:
                if self.proc.returncode is not None:
                    raise RuntimeError(
                        f"{self.name}: QEMU exited: {self.stderr()}"
                    ) from err
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name}: QMP refused: {err}") from None
                await asyncio.sleep(0.01)
        self.client.register_listener(self.listener)
        self._pump = asyncio.create_task(self._record())

    async def _record(self) -> None:
        async for message in self.listener:
            received_us = time.time_ns() // 1000
            mono = time.monotonic()
            self.messages.append(dict(message))
            stamp = cast(dict[str, Any], message.get("timestamp") or {})
            data = cast(dict[str, Any], message.get("data") or {})
            name = str(message["event"])
            state = data.get("device-state")
            kind = self.wire.classify(name, state) if self.wire else None
            self.events.append(
                Event(
                    name=name,
                    state=state,
                    kind=kind[0] if kind else None,
                    subject=kind[1] if kind else None,
                    qemu_us=int(stamp.get("seconds", 0)) * 1_000_000
                    + int(stamp.get("microseconds", 0)),
                    received_us=received_us,
                    received_mono=mono,
                    device=data.get("device-id"),
                )
            )

    async def cmd(self, name: str, **arguments: Any) -> Any:
        return await self.client.execute(name, arguments or None)

    async def wait_for(
        self, predicate: Callable[[list[Event]], bool], timeout: float = 60.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: events so far: {self.vfio_events()}")
            await asyncio.sleep(0.005)

    def vfio_events(self) -> list[str]:
        """The notices and completions, in order ('notice X', 'done Y');
        every event carrying a device-state without a wire."""
        if self.wire is None:
            return [f"{e.name}({e.state})" for e in self.events if e.state]
        return [e.label() for e in self.events if e.kind]

    def transitions(self) -> list[Transition]:
        return [
            Transition(
                str(r.source), str(r.target), r.begin_us, r.end_us, r.result, r.group
            )
            for r in read_log(self.log)
            if r.kind == "transition"
        ]

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace").strip()
        except FileNotFoundError:
            return ""

    async def migrate(self, uri: str, timeout: float = 60.0) -> str:
        await self.cmd("migrate", uri=uri)
        deadline = time.monotonic() + timeout
        while True:
            info = await self.cmd("query-migrate")
            status = str(info.get("status"))
            if status in ("completed", "failed", "cancelled"):
                return status
            if time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.01)

    def evidence(self) -> str:
        """One line naming the files that tell what this VM did."""
        return f"kept {self.name}: fake log {self.log}, QEMU stderr {self.stderr_path}"

    async def close(self, failed: bool = False) -> None:
        """Stop QEMU; delete the scratch directory unless failed."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.cmd("quit"), 5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
            await self.proc.stop()
        with contextlib.suppress(Exception):
            await self.client.disconnect()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump
        forget_socket_dir(self.dir)
        if failed:
            print(self.evidence(), file=sys.stderr, flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    async def __aenter__(self) -> FakeVfioVM:
        try:
            await self.start()
        except BaseException as error:
            await self.close(failed=True)
            error.add_note(self.evidence())
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close(failed=error is not None)
        if error is not None:
            error.add_note(self.evidence())
