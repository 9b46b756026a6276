"""qmp: the version's notice as a management application hears it.

Two checks on real QEMUs with the fake device, through the official
qemu.qmp client (vm.py, demo.py), each judged into a report Result that
carries its figures:

- timing: with DELAY_MS injected into PRE_COPY -> PRE_COPY_P2P of a
  migration with P2P and pre-copy, the version's notice for
  pre-copy-p2p reaches the client at least MIN_LEAD_S before its
  completion, and the fake's log shows the transition began after
  QEMU's timestamp of the notice;
- the consumer (rdma_guard.py, run by demo.py): masking on the
  notice keeps the simulated RDMA link, masking on the completion drops
  it, a failed transition is reported and unmasked;
- the consumer with N devices (consumers()), each quiescing in turn:
  masking each link on its own device's notice keeps every link,
  masking on the completions drops every one.

On the negative control (the base with only the test patch) every check
that needs the notice must fail, and for lack of it, not for any other
reason; the one that needs no notice must pass there too.

Running and judging are apart: the judges read what a run recorded, so
that they can be tested without QEMU.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ...core.results import FAIL, PASS, Result
from ...ground.console import say
from .demo import (
    QUIESCE_ARC,
    QUIESCE_STATE,
    DemoResult,
    DevicesResult,
    MaskOn,
    run_demo,
    run_devices,
)
from .plan import Wire
from .vm import (
    DONE,
    NOTICE,
    Event,
    FakeVfioVM,
    Transition,
    forget_socket_dir,
    kernel_state,
    socket_path,
)

DELAY_MS = 500  # injected into the quiesce transition for the timing
MIN_LEAD_S = 0.495
FLAGS = {"FAKEVFIO_MIGRATION_FLAGS": "stop_copy,p2p,pre_copy"}
# The consumer: the quiesce takes DEMO_DELAY_MS, the link times out
# after DEMO_TIMEOUT_MS of silence; the margins leave a noisy machine room.
DEMO_DELAY_MS = 300
DEMO_TIMEOUT_MS = 50.0
# With N devices the guard must be in time N times per migration, so
# its link times out later; masking on a completion still comes too
# late, as QEMU sends it only once the device's DEMO_DELAY_MS are over.
DEVICES = 4
DEVICES_TIMEOUT_MS = 100.0
FAIL_QUIESCE = f"{QUIESCE_ARC}=EIO:once"
CHECK_TIMEOUT = 120.0

TIMING = "qmp timing (qemu.qmp)"
KEEPS = "qmp consumer: masking on the notice keeps the link"
DROPS = "qmp consumer: masking on the completion drops the link"
REPORTS = "qmp consumer: a failed transition is reported"
# The consumer with N devices; the names take N.
KEEPS_N = "qmp consumer, {n} devices: each link masked on its own notice is kept"
DROPS_N = "qmp consumer, {n} devices: masking on the completions drops every link"
# Which checks need the notice, and so must fail on the control.
NEEDS_NOTICE = {
    TIMING: True,
    KEEPS: True,
    DROPS: False,
    REPORTS: True,
    KEEPS_N: True,
    DROPS_N: False,
}


@dataclass(frozen=True)
class Finding:
    """One check as run, before the series or the control judges it.

    no_notice: it failed for lack of a prepare notice, everything the
    notice does not govern having gone as it should.
    """

    name: str
    needs_notice: bool
    passed: bool
    detail: str
    items: tuple[str, ...] = ()
    no_notice: bool = False
    figures: Mapping[str, float] = field(default_factory=dict)  # lead_ms...


def _failed(
    name: str,
    detail: str,
    *items: str,
    no_notice: bool = False,
    figures: Mapping[str, float] | None = None,
    needs_notice: bool | None = None,
) -> Finding:
    needs = NEEDS_NOTICE[name] if needs_notice is None else needs_notice
    return Finding(name, needs, False, detail, items, no_notice, figures or {})


# -- the timing ------------------------------------------------------------


def judge_timing(
    status: str,
    events: Sequence[Event],
    transitions: Sequence[Transition],
    delay_ms: int = DELAY_MS,
    min_lead_s: float = MIN_LEAD_S,
) -> Finding:
    """What the source's QMP client and the fake's log say of the
    notice for pre-copy-p2p: it came, right before its completion, at
    least min_lead_s ahead of it, and before the transition began."""
    heard = [e.label() for e in events if e.kind]
    said = f"source events: {', '.join(heard) or 'none'}"
    if status != "completed":
        return _failed(TIMING, f"the migration ended {status}", said)
    done = next(
        (e for e in events if e.kind == DONE and e.subject == QUIESCE_STATE), None
    )
    if done is None:
        return _failed(TIMING, f"no completion for {QUIESCE_STATE}", said)
    if not any(e.kind == NOTICE and e.subject == QUIESCE_STATE for e in events):
        return _failed(
            TIMING, f"no prepare notice for {QUIESCE_STATE}", said, no_notice=True
        )
    before = [e for e in events[: events.index(done)] if e.kind]
    notice = before[-1] if before else None
    if notice is None or notice.kind != NOTICE or notice.subject != QUIESCE_STATE:
        return _failed(
            TIMING,
            f"the notice for {QUIESCE_STATE} is not right before its completion",
            said,
        )
    target = kernel_state(QUIESCE_STATE)
    transition = next((t for t in transitions if t.target == target), None)
    if transition is None:
        return _failed(TIMING, f"the fake logged no transition to {target}", said)
    lead_ms = (done.received_mono - notice.received_mono) * 1000
    took_ms = (transition.end_us - transition.begin_us) / 1000
    numbers = {
        "lead_ms": round(lead_ms, 3),
        "qemu_lead_ms": (done.qemu_us - notice.qemu_us) / 1000,
        "began_after_notice_us": transition.begin_us - notice.qemu_us,
        "quiesce_ms": took_ms,
        "completion_after_end_us": done.qemu_us - transition.end_us,
    }
    figures = (
        f"lead {lead_ms:.1f} ms as the client received them (QEMU's timestamps "
        f"{(done.qemu_us - notice.qemu_us) / 1000:.1f} ms apart)",
        f"{target} began {transition.begin_us - notice.qemu_us} us after the "
        f"notice's timestamp and took {took_ms:.1f} ms ({delay_ms} ms injected)",
        f"the completion's timestamp is {done.qemu_us - transition.end_us} us "
        "after the transition ended",
        said,
    )
    wrong = []
    if lead_ms < min_lead_s * 1000:
        wrong.append(f"lead {lead_ms:.1f} ms < {min_lead_s * 1000:.0f} ms")
    if transition.begin_us < notice.qemu_us:
        wrong.append(f"{target} began before the notice's timestamp")
    if took_ms < delay_ms:
        wrong.append(f"{target} took {took_ms:.1f} ms < the {delay_ms} ms injected")
    if done.qemu_us < transition.end_us:
        wrong.append(f"the completion's timestamp precedes the end of {target}")
    if wrong:
        return _failed(TIMING, "; ".join(wrong), *figures, figures=numbers)
    return Finding(
        TIMING,
        NEEDS_NOTICE[TIMING],
        True,
        f"notice for {QUIESCE_STATE} {lead_ms:.1f} ms before its completion "
        f"(at least {min_lead_s * 1000:.0f} ms), sent before {target} began",
        figures,
        figures=numbers,
    )


class _Judged(Exception):
    """A failed judgement inside the VMs' block, so that they keep their
    files (the fake's log, QEMU's stderr) and name them."""

    def __init__(self, finding: Finding):
        super().__init__(finding.detail)
        self.finding = finding


async def timing(
    qemu: Path, fake: Path, wire: Wire, tmpdir: Path, delay_ms: int = DELAY_MS
) -> Finding:
    """One migration with delay_ms in the quiesce transition, judged."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    # A short directory of its own: the socket path must fit in sun_path.
    scratch = Path(tempfile.mkdtemp(prefix="timing-", dir=tmpdir))
    try:
        finding = await _timing(qemu, fake, wire, scratch, delay_ms)
    finally:
        forget_socket_dir(scratch)
    if finding.passed:
        shutil.rmtree(scratch, ignore_errors=True)
    return finding


async def _timing(
    qemu: Path, fake: Path, wire: Wire, tmpdir: Path, delay_ms: int
) -> Finding:
    uri = f"unix:{socket_path(tmpdir / 'mig.sock')}"
    slow = {**FLAGS, "FAKEVFIO_DELAY": f"{QUIESCE_ARC}={delay_ms}"}
    try:
        async with (
            FakeVfioVM(qemu, fake, tmpdir, "source", slow, wire=wire) as src,
            FakeVfioVM(
                qemu, fake, tmpdir, "destination", FLAGS, ["-incoming", uri], wire
            ),
        ):
            status = await src.migrate(uri)
            if status == "completed":
                # Not heard by then: the judge says what was.
                with contextlib.suppress(TimeoutError):
                    await src.wait_for(
                        lambda evs: any(
                            e.kind == DONE and e.subject == QUIESCE_STATE for e in evs
                        ),
                        timeout=10,
                    )
            finding = judge_timing(status, src.events, src.transitions(), delay_ms)
            if not finding.passed:
                raise _Judged(finding)
            return finding
    except _Judged as judged:
        kept = tuple(getattr(judged, "__notes__", ()))
        return replace(judged.finding, items=judged.finding.items + kept)


# -- the consumer ----------------------------------------------------------


def _when(result: DemoResult, us: int | None) -> str:
    """A time of the demo relative to the start of the device's silence."""
    if us is None:
        return "-"
    if not result.silences:
        return str(us)
    return f"{(us - result.silences[0][0]) / 1000:+.1f} ms"


def _completed_quiesce(name: str, result: DemoResult) -> Finding | None:
    """A failure if the migration or its quiesce did not complete."""
    explain = tuple(result.explain().splitlines())
    if result.migration != "completed":
        return _failed(name, f"the migration ended {result.migration}", *explain)
    if result.completion_state != QUIESCE_STATE:
        got = result.completion_state or "nothing"
        return _failed(name, f"the guard heard {got} for {QUIESCE_STATE}", *explain)
    return None


def judge_keeps(result: DemoResult) -> Finding:
    """Masking on the notice: the guard heard it and the link held."""
    explain = tuple(result.explain().splitlines())
    wrong = _completed_quiesce(KEEPS, result)
    if wrong is not None:
        return wrong
    if result.notice_us is None:
        return _failed(
            KEEPS,
            f"no prepare notice for {QUIESCE_STATE} reached the guard",
            *explain,
            no_notice=True,
        )
    if not result.silences:
        return _failed(KEEPS, "the fake logged no quiesce", *explain)
    if result.link_dropped:
        return _failed(
            KEEPS,
            f"the link dropped at {_when(result, result.dropped_at_us)}",
            *explain,
        )
    if not (result.masked_us and result.unmasked_us):
        return _failed(KEEPS, "the guard did not mask and unmask", *explain)
    if result.failures or result.problems:
        return _failed(KEEPS, (result.failures + result.problems)[0], *explain)
    return Finding(
        KEEPS,
        NEEDS_NOTICE[KEEPS],
        True,
        f"link kept through {result.delay_ms} ms of quiesce ({result.timeout_ms:g} ms "
        f"timeout): masked at {_when(result, result.masked_us[0])}, lead "
        f"{result.lead_ms:.1f} ms",
        explain,
        figures={"lead_ms": result.lead_ms or 0.0},
    )


def judge_drops(result: DemoResult) -> Finding:
    """Masking on the completion, all a consumer has without the series:
    the link drops before the mask.  Needs no notice."""
    explain = tuple(result.explain().splitlines())
    wrong = _completed_quiesce(DROPS, result)
    if wrong is not None:
        return wrong
    dropped, masked = result.dropped_at_us, result.masked_us
    if dropped is None:
        return _failed(DROPS, "the link held without the notice", *explain)
    if not masked or dropped >= masked[0]:
        return _failed(DROPS, "the guard masked before the drop", *explain)
    return Finding(
        DROPS,
        NEEDS_NOTICE[DROPS],
        True,
        f"link dropped at {_when(result, dropped)}, masked only at "
        f"{_when(result, masked[0])}",
        explain,
        figures={"dropped_before_mask_ms": (masked[0] - dropped) / 1000},
    )


def judge_reports(result: DemoResult) -> Finding:
    """A quiesce that fails: the migration fails, the guard masked on the
    notice, unmasked on the completion that says so, and reported it."""
    explain = tuple(result.explain().splitlines())
    if result.migration != "failed":
        return _failed(REPORTS, f"the migration ended {result.migration}", *explain)
    if result.notice_us is None:
        return _failed(
            REPORTS,
            f"no prepare notice for {QUIESCE_STATE} reached the guard",
            *explain,
            no_notice=True,
        )
    state = result.completion_state
    if state is None or state == QUIESCE_STATE:
        return _failed(
            REPORTS, f"the guard heard {state or 'nothing'} after the notice", *explain
        )
    if not (result.masked_us and result.unmasked_us) or result.completion_us is None:
        return _failed(REPORTS, "the guard did not mask and unmask", *explain)
    if result.unmasked_us[0] < result.completion_us:
        return _failed(REPORTS, "unmasked before the completion came", *explain)
    said = [f for f in result.failures if QUIESCE_STATE in f and state in f]
    if not said:
        return _failed(REPORTS, "the guard reported no failed transition", *explain)
    if result.link_dropped:
        return _failed(
            REPORTS,
            f"the link dropped at {_when(result, result.dropped_at_us)}",
            *explain,
        )
    return Finding(
        REPORTS, NEEDS_NOTICE[REPORTS], True, f"reported: {said[0]}", explain
    )


async def consumer(
    qemu: Path, fake: Path, tmpdir: Path, mask_on: MaskOn, fail: str | None = None
) -> DemoResult:
    """One run of the consumer's scenario (demo.py)."""
    return await run_demo(
        qemu,
        fake,
        tmpdir,
        mask_on=mask_on,
        delay_ms=DEMO_DELAY_MS,
        timeout_ms=DEMO_TIMEOUT_MS,
        fail=fail,
        label="guard",
    )


# -- the consumer with N devices --------------------------------------------


def _ms(us: int) -> float:
    return round(us / 1000, 3)


def _device_figures(d: DemoResult, origin_us: int | None) -> dict[str, float]:
    """A device's figures: the lead of its notice over its completion,
    when its link was masked and dropped (ms from its own silence), and
    when its silence began (ms from the first device's)."""
    out: dict[str, float] = {}
    if d.lead_ms is not None:
        out[f"{d.device}.lead_ms"] = round(d.lead_ms, 3)
    if not d.silences:
        return out
    begin = d.silences[0][0]
    if origin_us is not None:
        out[f"{d.device}.silent_from_ms"] = _ms(begin - origin_us)
    if d.masked_us:
        out[f"{d.device}.masked_at_ms"] = _ms(d.masked_us[0] - begin)
    if d.dropped_at_us is not None:
        out[f"{d.device}.dropped_at_ms"] = _ms(d.dropped_at_us - begin)
    return out


def _figures(result: DevicesResult) -> dict[str, float]:
    out: dict[str, float] = {"devices": len(result.devices)}
    for d in result.devices:
        out.update(_device_figures(d, result.origin_us))
    return out


def _per_device(result: DevicesResult, d: DemoResult) -> str:
    """One line of figures for a device, times from its own silence."""
    lead = "-" if d.lead_ms is None else f"{d.lead_ms:.1f} ms"
    masked = f"masked at {_when(d, d.masked_us[0])}" if d.masked_us else "never masked"
    fate = f"dropped at {_when(d, d.dropped_at_us)}" if d.link_dropped else "kept"
    began = "-"
    if d.silences and result.origin_us is not None:
        began = f"+{(d.silences[0][0] - result.origin_us) / 1000:.1f} ms"
    return (
        f"{d.device} (group {d.group}): silent from {began}, lead {lead}, "
        f"{masked}, link {fate}"
    )


def _items(result: DevicesResult) -> tuple[str, ...]:
    """A line of figures per device, in the order they quiesced, then
    the run's account."""
    order = result.in_silence_order()
    return tuple(_per_device(result, d) for d in order) + tuple(
        result.explain().splitlines()
    )


def _n_failed(
    name: str,
    result: DevicesResult,
    detail: str,
    no_notice: bool = False,
) -> Finding:
    return _failed(
        name.format(n=len(result.devices)),
        detail,
        *_items(result),
        no_notice=no_notice,
        figures=_figures(result),
        needs_notice=NEEDS_NOTICE[name],
    )


def _every_quiesce(name: str, result: DevicesResult) -> Finding | None:
    """A failure unless the migration completed and every device
    reached the quiesce state, its silence logged by the fake."""
    if result.migration != "completed":
        return _n_failed(name, result, f"the migration ended {result.migration}")
    if not result.devices:
        return _n_failed(name, result, "no device was guarded")
    for d in result.devices:
        if d.completion_state != QUIESCE_STATE:
            got = d.completion_state or "nothing"
            return _n_failed(
                name, result, f"{d.device}: the guard heard {got} for {QUIESCE_STATE}"
            )
        if not d.silences:
            return _n_failed(
                name,
                result,
                f"{d.device}: the fake logged no quiesce (group {d.group})",
            )
    return None


def _names(devices: Sequence[DemoResult]) -> str:
    return ", ".join(d.device for d in devices)


def judge_keeps_devices(result: DevicesResult, wire: Wire | None = None) -> Finding:
    """Masking each link on its own device's notice: every device's
    notice reached the guard, every link held, and each was masked only
    once the device before it had quiesced (on its own notice, not on
    the first one) and unmasked once its own device was done.  With a
    wire, each device's notice must be that version's."""
    wrong = _every_quiesce(KEEPS_N, result)
    if wrong is not None:
        return wrong
    n = len(result.devices)
    unheard = [d for d in result.devices if d.notice_us is None]
    if len(unheard) == n:
        return _n_failed(
            KEEPS_N,
            result,
            f"no prepare notice for {QUIESCE_STATE} reached the guard, "
            f"for any of the {n} devices",
            no_notice=True,
        )
    if unheard:
        return _n_failed(
            KEEPS_N,
            result,
            f"no prepare notice for {QUIESCE_STATE} reached the guard for "
            f"{_names(unheard)} (of {n})",
        )
    if wire is not None:
        for d in result.devices:
            kinds = [
                wire.classify(name, state or None)
                for name, _, state in (e.partition(" ") for e in d.events)
            ]
            if ("notice", QUIESCE_STATE) not in kinds:
                return _n_failed(
                    KEEPS_N,
                    result,
                    f"{d.device}: no {wire.describe_notice()} for {QUIESCE_STATE} "
                    "among its events",
                )
    dropped = [d for d in result.devices if d.link_dropped]
    if dropped:
        when = ", ".join(f"{d.device} at {_when(d, d.dropped_at_us)}" for d in dropped)
        return _n_failed(KEEPS_N, result, f"links dropped: {when}")
    for d in result.devices:
        if not (d.masked_us and d.unmasked_us):
            return _n_failed(KEEPS_N, result, f"{d.device}: not masked and unmasked")
        if d.failures or d.problems:
            return _n_failed(
                KEEPS_N, result, f"{d.device}: {(d.failures + d.problems)[0]}"
            )
        end = d.silences[0][1]
        if end is None or d.unmasked_us[0] < end:
            return _n_failed(
                KEEPS_N, result, f"{d.device}: unmasked before its quiesce ended"
            )
    order = result.in_silence_order()
    for before, after in itertools.pairwise(order):
        end = before.silences[0][1]
        assert end is not None  # checked above
        if after.masked_us[0] < end:
            return _n_failed(
                KEEPS_N,
                result,
                f"{after.device} was masked before {before.device}, quiescing "
                "before it, was done: not on its own notice",
            )
    leads = "/".join(f"{d.lead_ms:.1f}" for d in order if d.lead_ms is not None)
    masked = "/".join(_when(d, d.masked_us[0]) for d in order)
    return Finding(
        KEEPS_N.format(n=n),
        NEEDS_NOTICE[KEEPS_N],
        True,
        f"{n} links kept through {result.delay_ms} ms of quiesce each, one device "
        f"after another ({result.timeout_ms:g} ms timeout): masked at {masked} "
        f"of their silences, leads {leads} ms",
        _items(result),
        figures=_figures(result),
    )


def judge_drops_devices(result: DevicesResult) -> Finding:
    """Masking each link on its own device's completion, which QEMU sends
    once that device's transition is over: every link drops before its
    mask (a failure names those that held).  Needs no notice."""
    wrong = _every_quiesce(DROPS_N, result)
    if wrong is not None:
        return wrong
    n = len(result.devices)
    held = [d for d in result.devices if d.dropped_at_us is None]
    if held:
        return _n_failed(
            DROPS_N,
            result,
            f"the links of {_names(held)} (of {n}) held without the notice",
        )
    early = [
        d
        for d in result.devices
        if not d.masked_us or (d.dropped_at_us or 0) >= d.masked_us[0]
    ]
    if early:
        return _n_failed(
            DROPS_N, result, f"the guard masked {_names(early)} before the drop"
        )
    order = result.in_silence_order()
    dropped = "/".join(_when(d, d.dropped_at_us) for d in order)
    masked = "/".join(_when(d, d.masked_us[0]) for d in order)
    figures = _figures(result)
    for d in result.devices:
        assert d.dropped_at_us is not None
        figures[f"{d.device}.dropped_before_mask_ms"] = _ms(
            d.masked_us[0] - d.dropped_at_us
        )
    return Finding(
        DROPS_N.format(n=n),
        NEEDS_NOTICE[DROPS_N],
        True,
        f"all {n} links dropped, at {dropped} of their silences; masked only at "
        f"{masked}, on their completions",
        _items(result),
        figures=figures,
    )


async def consumers(
    qemu: Path,
    fake: Path,
    tmpdir: Path,
    devices: int = DEVICES,
    delay_ms: int = DEMO_DELAY_MS,
    wire: Wire | None = None,
    timeout: float = CHECK_TIMEOUT,
    timeout_ms: float = DEVICES_TIMEOUT_MS,
) -> list[Finding]:
    """The consumer with `devices` devices, each taking delay_ms to
    quiesce: masking on each device's own notice (judged with wire, if
    given), then masking on the completions; each run bounded."""

    async def run(mask_on: MaskOn) -> DevicesResult:
        return await run_devices(
            qemu,
            fake,
            tmpdir,
            devices,
            mask_on=mask_on,
            delay_ms=delay_ms,
            timeout_ms=timeout_ms,
            label=f"guards-{mask_on}",
        )

    async def keeps() -> Finding:
        return judge_keeps_devices(await run("notice"), wire)

    async def drops() -> Finding:
        return judge_drops_devices(await run("completion"))

    return [
        await _bounded(KEEPS_N.format(n=devices), keeps, timeout, KEEPS_N),
        await _bounded(DROPS_N.format(n=devices), drops, timeout, DROPS_N),
    ]


# -- running and judging the group -----------------------------------------


async def _bounded(
    name: str,
    run: Callable[[], Awaitable[Finding]],
    timeout: float,
    kind: str | None = None,
) -> Finding:
    """A check that hangs or cannot run is a failure naming why; kind is
    the name in NEEDS_NOTICE, when name is made from it."""
    say(name)
    needs = NEEDS_NOTICE[kind or name]
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            return await run()
    except Exception as err:  # QEMU would not start, the guard stopped...
        if isinstance(err, TimeoutError) and limit.expired():
            return _failed(name, f"timed out after {timeout:g} s", needs_notice=needs)
        first = str(err).splitlines()[0] if str(err) else ""
        detail = f"{type(err).__name__}: {first}".rstrip(": ")
        return _failed(name, detail, *getattr(err, "__notes__", ()), needs_notice=needs)


async def _run_all(
    qemu: Path, fake: Path, wire: Wire, tmpdir: Path, timeout: float
) -> list[Finding]:
    async def judged(
        judge: Callable[[DemoResult], Finding], mask_on: MaskOn, fail: str | None = None
    ) -> Finding:
        return judge(await consumer(qemu, fake, tmpdir, mask_on, fail))

    return [
        await _bounded(TIMING, lambda: timing(qemu, fake, wire, tmpdir), timeout),
        await _bounded(KEEPS, lambda: judged(judge_keeps, "notice"), timeout),
        await _bounded(DROPS, lambda: judged(judge_drops, "completion"), timeout),
        await _bounded(
            REPORTS, lambda: judged(judge_reports, "notice", FAIL_QUIESCE), timeout
        ),
    ]


def run_checks(
    qemu: Path, fake: Path, wire: Wire, tmpdir: Path, timeout: float = CHECK_TIMEOUT
) -> list[Finding]:
    """Every check, in turn, on real QEMUs; each bounded by timeout."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    findings = asyncio.run(_run_all(qemu, fake, wire, tmpdir, timeout))
    if not any(tmpdir.iterdir()):
        shutil.rmtree(tmpdir, ignore_errors=True)
    return findings


def expect_series(findings: Sequence[Finding]) -> list[Result]:
    """On the series every check passes."""
    return [
        Result(f.name, PASS if f.passed else FAIL, f.detail, list(f.items))
        for f in findings
    ]


def expect_control(findings: Sequence[Finding]) -> list[Result]:
    """On the control a check that needs the notice must fail for lack
    of it, and only for that; one that needs none must pass."""
    results = []
    for f in findings:
        name = f"control {f.name}"
        if not f.needs_notice:
            status = PASS if f.passed else FAIL
            detail = "passes on the base too (no notice involved)"
            results.append(
                Result(name, status, detail if f.passed else f.detail, list(f.items))
            )
        elif f.passed:
            detail = "passed without the change: the check proves nothing"
            results.append(Result(name, FAIL, detail, list(f.items)))
        elif f.no_notice:
            detail = f"fails as it must: {f.detail}"
            results.append(Result(name, PASS, detail, list(f.items)))
        else:
            detail = f"fails for another reason: {f.detail}"
            results.append(Result(name, FAIL, detail, list(f.items)))
    return results


def qmp(
    qemu: Path, fake: Path, wire: Wire, tmpdir: Path, control: bool
) -> list[Result]:
    """The qmp group of `qseries test`: the checks, judged for the series
    or for its negative control."""
    findings = run_checks(qemu, fake, wire, tmpdir)
    return expect_control(findings) if control else expect_series(findings)
