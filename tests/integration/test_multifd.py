"""Device state over multifd channels, on the version's QEMU and the fake.

Four fake devices per side, each saving 8 MiB (so several 1 MiB packets
per device, free to arrive out of order over four channels), migrated
with `x-migration-multifd-transfer=on` and the multifd capability:
QEMU's own trace must show a save thread and a load thread per device
(the multifd path, not the main stream), every device's state must be
loaded as it was saved, and each device's VFIO_MIGRATION events must
follow the transitions the fake logged for it, on both sides.  Then what
the save threads change about STOP_COPY: they run it for all devices at
once when the devices were stopped without pre-copy, while after
pre-copy the main loop has already moved them there one by one.  And
the device option without the capability is refused, as QEMU says; a
state size the fake cannot take is ignored, with its message.

Where the devices' state is big (more than a channel's socket holds,
about 220 KiB), the save threads must not be queuing it while the
migration thread syncs the RAM channels, or QEMU 10.2.2 can deadlock
(see multifd.py): the 8 MiB runs go without pre-copy, with the save
threads' own STOP→STOP_COPY taking SLOW_MS, and the pre-copy run saves
STATE_SMALL bytes per device.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from qseries.labs.vfio_migration import multifd
from qseries.labs.vfio_migration.vm import FakeVfioVM, read_log, socket_path

from .conftest import _missing

DEVICES = 4
STATE_SIZE = 8 << 20
FLAGS = "stop_copy,p2p,pre_copy"
# Without pre-copy: each save thread moves its device to STOP_COPY.
NO_PRE_COPY = "stop_copy,p2p"
# Far below what a channel's socket holds (see the docstring).
STATE_SMALL = 16 << 10
# Long enough that two transitions overlap only when run together.
SLOW_MS = 400
# The longest a whole run may take (migrate itself waits 60 s at most).
RUN_TIMEOUT = 180.0


@pytest.fixture(autouse=True)
def _capable(qemu: Path) -> None:
    """Every base qseries builds (10.0 to 10.x) can: under
    QSERIES_REQUIRE_QEMU a QEMU that cannot fails, else it skips."""
    reason = multifd.supported(qemu)
    if reason is not None:
        _missing(reason)


def _pair(
    qemu: Path,
    fake: Path,
    tmp: Path,
    flags: str = FLAGS,
    delay: str | None = None,
    trace: bool = False,
    state_size: str = str(STATE_SIZE),
) -> tuple[FakeVfioVM, FakeVfioVM, str]:
    env = {"FAKEVFIO_MIGRATION_FLAGS": flags, "FAKEVFIO_STATE_SIZE": state_size}
    src_args = ["-trace", "vfio_save_complete_precopy_thread_start"] if trace else []
    dst_args = ["-trace", "vfio_load_bufs_thread_start"] if trace else []
    src = FakeVfioVM(
        qemu,
        fake,
        tmp,
        "source",
        {**env, **({"FAKEVFIO_DELAY": delay} if delay else {})},
        src_args,
        devices=DEVICES,
        device_options=multifd.DEVICE_OPTIONS,
    )
    dst = FakeVfioVM(
        qemu,
        fake,
        tmp,
        "destination",
        env,
        [*dst_args, "-incoming", "defer"],
        devices=DEVICES,
        device_options=multifd.DEVICE_OPTIONS,
    )
    return src, dst, f"unix:{socket_path(tmp / 'mig.sock')}"


def _traced(vm: FakeVfioVM, point: str) -> list[str]:
    """The devices (QEMU's names: the sysfs dirs') a trace point named."""
    return re.findall(rf"^{point}\s+\((\S+)\)", vm.stderr(), re.M)


def _groups(vm: FakeVfioVM) -> dict[str, int]:
    return {device: vm.group_of(device) for device in vm.devices}


def test_four_devices_migrate_over_multifd(
    qemu: Path, fake: Path, tmp_path: Path
) -> None:
    async def run() -> None:
        src, dst, uri = _pair(
            qemu,
            fake,
            tmp_path,
            NO_PRE_COPY,
            f"STOP>STOP_COPY={SLOW_MS}",
            trace=True,
        )
        async with src, dst:
            since = time.time_ns() // 1000
            done = await multifd.migrate(src, dst, uri, multifd.channels_for(DEVICES))
            assert done.completed, done
            names = sorted(src.device_dir(i).name for i in range(DEVICES))
            # One save thread and one load thread per device.
            assert sorted(_traced(src, "vfio_save_complete_precopy_thread_start")) == (
                names
            )
            assert sorted(_traced(dst, "vfio_load_bufs_thread_start")) == names
            # The last completions come a little after the status.
            await dst.wait_for(
                lambda evs: all(
                    [e.state for e in multifd.completions(evs, d)][-1:] == ["running"]
                    for d in dst.devices
                ),
                timeout=10,
            )
            await src.wait_for(
                lambda evs: all(
                    [e.state for e in multifd.completions(evs, d)][-1:] == ["stop"]
                    for d in src.devices
                ),
                timeout=10,
            )
            saved = multifd.read_streams(src.log)
            loaded = multifd.read_streams(dst.log)
            assert multifd.stream_problems(saved, loaded, _groups(dst).values()) == []
            assert {s.size for s in saved} == {STATE_SIZE}
            src_log, dst_log = read_log(src.log), read_log(dst.log)
            assert (
                multifd.order_problems(src.events, src_log, _groups(src), since) == []
            )
            assert (
                multifd.order_problems(dst.events, dst_log, _groups(dst), since) == []
            )
            # What the destination says of each device, under load threads.
            for device in dst.devices:
                said = [e.state for e in multifd.completions(dst.events, device)]
                assert said == ["resuming", "running-p2p", "running"], device

    asyncio.run(run())


@pytest.mark.parametrize(
    ("flags", "arc", "size", "at_once"),
    [
        # Stopped without pre-copy: each save thread moves its device.
        (NO_PRE_COPY, "STOP>STOP_COPY", STATE_SIZE, True),
        # After pre-copy: the main loop's stop handler, device by device;
        # the save threads then queue at once (hence the small state).
        (FLAGS, "PRE_COPY_P2P>STOP_COPY", STATE_SMALL, False),
    ],
)
def test_who_moves_the_devices_to_stop_copy(
    qemu: Path,
    fake: Path,
    tmp_path: Path,
    flags: str,
    arc: str,
    size: int,
    at_once: bool,
) -> None:
    async def run() -> None:
        src, dst, uri = _pair(
            qemu, fake, tmp_path, flags, f"{arc}={SLOW_MS}", state_size=str(size)
        )
        async with src, dst:
            done = await multifd.migrate(src, dst, uri, multifd.channels_for(DEVICES))
            assert done.completed, done
            saved = multifd.read_streams(src.log)
            assert {s.size for s in saved} == {size}
            spans = multifd.spans(read_log(src.log), "STOP_COPY")
            assert sorted(spans) == sorted(_groups(src).values())
            assert all(end - begin >= SLOW_MS * 1000 for begin, end in spans.values())
            assert multifd.together(spans) is at_once, spans
            assert multifd.one_after_another(spans) is not at_once, spans

    # A stalled migration fails here rather than hanging the suite.
    asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT))


def test_the_device_option_alone_is_refused(
    qemu: Path, fake: Path, tmp_path: Path
) -> None:
    async def run() -> None:
        src, dst, uri = _pair(qemu, fake, tmp_path)
        async with src, dst:
            done = await multifd.migrate(
                src, dst, uri, multifd.channels_for(DEVICES), capability=False
            )
            assert (done.source, done.destination) == ("failed", "failed"), done
            assert multifd.UNSUPPORTED in str(done.error), done
            assert multifd.UNSUPPORTED in str(done.destination_error), done
            assert multifd.read_streams(src.log) == []

    asyncio.run(run())


def test_a_bad_state_size_is_ignored_and_said(
    qemu: Path, fake: Path, tmp_path: Path
) -> None:
    async def run() -> None:
        src, dst, uri = _pair(qemu, fake, tmp_path, state_size="8M")
        async with src, dst:
            done = await multifd.migrate(src, dst, uri, multifd.channels_for(DEVICES))
            assert done.completed, done
            said = "fakevfio: FAKEVFIO_STATE_SIZE: not a size in bytes '8M' ignored"
            assert said in src.stderr()
            saved = multifd.read_streams(src.log)
            loaded = multifd.read_streams(dst.log)
            assert multifd.stream_problems(saved, loaded, _groups(dst).values()) == []
            assert {s.size for s in saved} == {65536}

    asyncio.run(run())
