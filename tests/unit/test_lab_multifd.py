"""The multifd module's parts that need no QEMU: the commands each side
gets, the reason a program that is not a QEMU 10 gives, and the checks
of the fake's save and load records and of each device's own order."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qseries.labs.vfio_migration import multifd
from qseries.labs.vfio_migration.vm import Event, LogRecord

GROUPS = {"vfio0": 4242, "vfio1": 4243}


def test_commands_turn_multifd_and_the_return_path_on() -> None:
    (caps, caps_args), (params, params_args) = multifd.commands(4)
    assert caps == "migrate-set-capabilities"
    assert {c["capability"]: c["state"] for c in caps_args["capabilities"]} == {
        "multifd": True,
        "return-path": True,
    }
    assert (params, params_args) == ("migrate-set-parameters", {"multifd-channels": 4})


@pytest.mark.parametrize("channels", [0, -1, 256])
def test_channels_out_of_qemus_range_are_refused(channels: int) -> None:
    with pytest.raises(ValueError, match="from 1 to 255"):
        multifd.commands(channels)


def test_a_channel_per_device_and_at_least_two() -> None:
    assert [multifd.channels_for(n) for n in (1, 2, 4, 16, 300)] == [2, 2, 4, 16, 255]


def test_device_option_names_the_property() -> None:
    assert multifd.DEVICE_OPTIONS == "x-migration-multifd-transfer=on"


def test_a_missing_program_cannot_do_it(tmp_path: Path) -> None:
    missing = tmp_path / "qemu-system-x86_64"
    reason = multifd.supported(missing)
    assert reason is not None and str(missing) in reason


def test_a_program_without_the_property_cannot_do_it() -> None:
    true = shutil.which("true")
    assert true is not None
    reason = multifd.supported(Path(true))
    assert reason is not None
    assert "no x-migration-multifd-transfer property" in reason
    assert "10.0" in reason


def test_a_program_that_fails_says_how() -> None:
    false = shutil.which("false")
    assert false is not None
    reason = multifd.supported(Path(false))
    assert reason is not None and "exited 1" in reason


LOG = """\
init 1 stop_copy,p2p,pre_copy
transition 4242 RUNNING PRE_COPY 10 20 ok
save 4242 65536 d106d2361c23772a
save 4243 65536 0ad07cba473fa083
load 4242 65536 d106d2361c23772a ok
load 4243 6553
"""


def test_save_and_load_records_are_read(tmp_path: Path) -> None:
    log = tmp_path / "fakevfio.log"
    log.write_text(LOG)
    assert multifd.read_streams(log) == [
        multifd.Stream("save", 4242, 65536, "d106d2361c23772a"),
        multifd.Stream("save", 4243, 65536, "0ad07cba473fa083"),
        multifd.Stream("load", 4242, 65536, "d106d2361c23772a", "ok"),
    ]
    assert multifd.read_streams(tmp_path / "none.log") == []


def _save(group: int, size: int = 100, checksum: str = "aa") -> multifd.Stream:
    return multifd.Stream("save", group, size, checksum)


def _load(
    group: int, size: int = 100, checksum: str = "aa", verdict: str = "ok"
) -> multifd.Stream:
    return multifd.Stream("load", group, size, checksum, verdict)


def test_every_device_loaded_as_saved_is_no_problem() -> None:
    saved = [_save(4242), _save(4243, checksum="bb")]
    loaded = [_load(4243, checksum="bb"), _load(4242)]
    assert multifd.stream_problems(saved, loaded, [4242, 4243]) == []


@pytest.mark.parametrize(
    ("saved", "loaded", "problem"),
    [
        ([_save(4242)], [_load(4242, verdict="bad")], "group 4242: load bad"),
        ([_save(4242)], [], "group 4242: 1 save and 0 load records"),
        ([_save(4242), _save(4242)], [_load(4242)], "2 save and 1 load"),
        ([_save(4242)], [_load(4242, checksum="bb")], "loaded 100 bytes bb"),
        ([_save(4242)], [_load(4242, size=50)], "loaded 50 bytes aa"),
    ],
)
def test_a_device_not_loaded_as_saved_is_named(
    saved: list[multifd.Stream], loaded: list[multifd.Stream], problem: str
) -> None:
    problems = multifd.stream_problems(saved, loaded, [4242])
    assert len(problems) == 1 and problem in problems[0], problems


def _event(device: str, state: str, us: int, name: str = "VFIO_MIGRATION") -> Event:
    return Event(name, state, us, us, 0.0, device=device)


def _move(
    group: int, target: str, begin: int, end: int, result: str = "ok"
) -> LogRecord:
    return LogRecord("transition", group, "X", target, begin, end, result)


# The destination of a migration: each device RESUMING, then RUNNING_P2P
# and RUNNING once the VM starts; the two devices' records interleave.
MOVES = [
    _move(4242, "RESUMING", 100, 110),
    _move(4243, "RESUMING", 120, 130),
    _move(4242, "RUNNING_P2P", 500, 510),
    _move(4243, "RUNNING_P2P", 520, 530),
    _move(4242, "RUNNING", 600, 610),
    _move(4243, "RUNNING", 620, 630),
]
EVENTS = [
    _event("vfio0", "resuming", 115),
    _event("vfio1", "resuming", 135),
    _event("vfio0", "running-p2p", 515),
    _event("vfio1", "running-p2p", 535),
    _event("vfio0", "running", 615),
    _event("vfio1", "running", 635),
]


def test_each_device_in_its_own_order_is_no_problem() -> None:
    assert multifd.order_problems(EVENTS, MOVES, GROUPS) == []


def test_notices_and_other_devices_are_no_completions() -> None:
    events = [
        _event("vfio0", "pre-copy-p2p-prepare", 1),  # v2's notice
        _event("vfio0", "pre-copy-p2p", 2, "VFIO_MIGRATION_PREPARE"),  # v1's
        _event("vfio1", "stop", 3),
        _event("vfio0", "pre-copy-p2p", 4),
    ]
    assert [e.qemu_us for e in multifd.completions(events, "vfio0")] == [4]


def test_events_out_of_the_devices_order_are_named() -> None:
    swapped = [*EVENTS]
    swapped[2], swapped[4] = (
        _event("vfio0", "running", 515),
        _event("vfio0", "running-p2p", 615),
    )
    problems = multifd.order_problems(swapped, MOVES, GROUPS)
    assert problems == [
        "vfio0: events ['RESUMING', 'RUNNING', 'RUNNING_P2P'], "
        "transitions ['RESUMING', 'RUNNING_P2P', 'RUNNING']"
    ]


def test_an_event_before_its_transition_ended_is_named() -> None:
    early = [_event("vfio0", "resuming", 105), *EVENTS[1:]]
    problems = multifd.order_problems(early, MOVES, GROUPS)
    assert problems == ["vfio0: resuming sent 5 us before its transition ended"]


def test_an_event_after_the_next_transition_began_is_named() -> None:
    late = [_event("vfio0", "resuming", 505), *EVENTS[1:]]
    problems = multifd.order_problems(late, MOVES, GROUPS)
    assert problems == [
        "vfio0: resuming sent after the transition to RUNNING_P2P began"
    ]


def test_a_lost_event_is_named() -> None:
    problems = multifd.order_problems(EVENTS[1:], MOVES, GROUPS)
    assert len(problems) == 1 and problems[0].startswith("vfio0: events ['RUNNING_P2P'")


def test_a_failed_transition_is_named() -> None:
    moves = [*MOVES[:-1], _move(4243, "RUNNING", 620, 630, "EIO")]
    problems = multifd.order_problems(EVENTS, moves, GROUPS)
    assert problems == ["vfio1: X>RUNNING EIO"]


def test_only_what_began_since_counts() -> None:
    before = [_move(4242, "RUNNING_P2P", 1, 2), _move(4242, "RUNNING", 3, 4)]
    assert multifd.order_problems(EVENTS, before + MOVES, GROUPS, since_us=50) == []
    assert multifd.order_problems(EVENTS, before + MOVES, GROUPS) != []


def test_transitions_at_once_and_one_after_another() -> None:
    records = [
        _move(4242, "STOP_COPY", 100, 500),
        _move(4243, "STOP_COPY", 110, 510),
        _move(4243, "STOP", 600, 610),
    ]
    spans = multifd.spans(records, "STOP_COPY")
    assert spans == {4242: (100, 500), 4243: (110, 510)}
    assert multifd.together(spans) and not multifd.one_after_another(spans)
    serial = {4242: (100, 500), 4243: (500, 900), 4244: (900, 1300)}
    assert multifd.one_after_another(serial) and not multifd.together(serial)
    assert not multifd.together({})
