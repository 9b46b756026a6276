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
  it, a failed transition is reported and unmasked.

On the negative control (the base with only the test patch) every check
that needs the notice must fail, and for lack of it, not for any other
reason; the one that needs no notice must pass there too.

Running and judging are apart: the judges read what a run recorded, so
that they can be tested without QEMU.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ...core.results import FAIL, PASS, Result
from ...ground.console import say
from .demo import QUIESCE_ARC, QUIESCE_STATE, DemoResult, MaskOn, run_demo
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
FAIL_QUIESCE = f"{QUIESCE_ARC}=EIO:once"
CHECK_TIMEOUT = 120.0

TIMING = "qmp timing (qemu.qmp)"
KEEPS = "qmp consumer: masking on the notice keeps the link"
DROPS = "qmp consumer: masking on the completion drops the link"
REPORTS = "qmp consumer: a failed transition is reported"
# Which checks need the notice, and so must fail on the control.
NEEDS_NOTICE = {TIMING: True, KEEPS: True, DROPS: False, REPORTS: True}


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
) -> Finding:
    return Finding(
        name, NEEDS_NOTICE[name], False, detail, items, no_notice, figures or {}
    )


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


# -- running and judging the group -----------------------------------------


async def _bounded(
    name: str, run: Callable[[], Awaitable[Finding]], timeout: float
) -> Finding:
    """A check that hangs or cannot run is a failure naming why."""
    say(name)
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            return await run()
    except Exception as err:  # QEMU would not start, the guard stopped...
        if isinstance(err, TimeoutError) and limit.expired():
            return _failed(name, f"timed out after {timeout:g} s")
        first = str(err).splitlines()[0] if str(err) else ""
        detail = f"{type(err).__name__}: {first}".rstrip(": ")
        return _failed(name, detail, *getattr(err, "__notes__", ()))


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
