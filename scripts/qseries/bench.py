"""bench: the figures behind the README's performance claims.

Nothing here is a test: it measures and prints.  Ratios compare runs made
in the same invocation, on the same machine, so that a noisy machine
shifts both sides alike.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import build as build_mod
from . import demo, testing
from .gitutil import Git
from .series import Wire
from .source import BaseTree, WorkDir, say
from .vm import FakeVfioVM


@dataclass
class Figures:
    values: dict[str, float | int | str]

    def add(self, key: str, value: float | int | str) -> None:
        self.values[key] = value
        say(f"bench: {key} = {value}")


def _timed(fn: Callable[[], object]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def _ninja(builddir: Path, targets: list[str]) -> tuple[float, int]:
    started = time.monotonic()
    proc = subprocess.run(
        ["ninja", *targets], cwd=builddir, capture_output=True, text=True, check=True
    )
    steps = len([line for line in proc.stdout.splitlines() if line.startswith("[")])
    return time.monotonic() - started, steps


def cold_build(base: BaseTree, commit: str, workdir: WorkDir, figures: Figures) -> None:
    """A build from scratch in a throw-away build dir of its own."""
    tree = build_mod.checkout(base, commit, workdir)
    builddir = workdir.path / "bench" / "cold"
    shutil.rmtree(builddir, ignore_errors=True)
    log = workdir.sub("logs") / "bench-cold.log"
    log.write_text("")
    started = time.monotonic()
    build_mod.configure(tree, builddir, sys.executable, log)
    configured = time.monotonic() - started
    code, steps = build_mod.run_logged(
        ["ninja", build_mod.QEMU_TARGET],
        builddir,
        log,
        build_mod.Progress("bench cold build"),
    )
    if code != 0:
        raise build_mod.BuildError("cold build failed", f"see {log}")
    figures.add("cold_configure_s", round(configured, 1))
    figures.add("cold_build_s", round(time.monotonic() - started, 1))
    figures.add("cold_build_steps", steps)
    shutil.rmtree(builddir, ignore_errors=True)


def incremental(
    base: BaseTree,
    control: str,
    series: str,
    workdir: WorkDir,
    targets: list[str],
    qtest: str,
    fake: Path | None,
    figures: Figures,
) -> None:
    """qseries build + test of the qtest, against bare git checkout + ninja +
    one run of the qtest binary; both toggle from the control to the series."""
    build_mod.build(base, control, workdir, targets)
    started = time.monotonic()
    built = build_mod.build(base, series, workdir, targets)
    testing.series_qtest(built.qtest(qtest), built.qemu, fake)
    tool = time.monotonic() - started
    figures.add("incremental_steps", built.steps)
    figures.add("incremental_build_and_qtest_s", round(tool, 2))

    build_mod.build(base, control, workdir, targets)
    tree = built.tree
    started = time.monotonic()
    Git(tree).run("checkout", "--quiet", "--force", "--detach", series)
    _ninja(built.builddir, targets)
    env = {**os.environ, "QTEST_QEMU_BINARY": str(built.qemu)}
    if fake is not None:
        env["QTEST_VFIO_FAKE"] = str(fake)
    subprocess.run(
        [str(built.qtest(qtest)), "--tap"], env=env, capture_output=True, check=True
    )
    bare = time.monotonic() - started
    figures.add("bare_build_and_qtest_s", round(bare, 2))
    figures.add("incremental_ratio", round(tool / bare, 3))


async def _stop_cont(vm: FakeVfioVM, cycles: int) -> list[float]:
    times = []
    for _ in range(cycles):
        started = time.monotonic()
        await vm.cmd("stop")
        await vm.cmd("cont")
        times.append(time.monotonic() - started)
    return times


def stop_cont_ratio(
    patched: Path,
    unpatched: Path,
    fake: Path,
    cycles: int,
    tmpdir: Path,
    figures: Figures,
) -> None:
    async def run(qemu: Path) -> list[float]:
        vm = FakeVfioVM(qemu, fake, tmpdir, "bench")
        try:
            await vm.start()
            await _stop_cont(vm, 10)  # warm up
            return await _stop_cont(vm, cycles)
        finally:
            await vm.close()

    # Interleave rounds so that drifts in machine load hit both alike.
    rounds = 4
    patched_times: list[float] = []
    unpatched_times: list[float] = []
    for _ in range(rounds):
        unpatched_times += asyncio.run(run(unpatched))
        patched_times += asyncio.run(run(patched))
    p = statistics.median(patched_times)
    u = statistics.median(unpatched_times)
    figures.add("stop_cont_cycles", len(patched_times))
    figures.add("stop_cont_patched_median_ms", round(p * 1000, 3))
    figures.add("stop_cont_unpatched_median_ms", round(u * 1000, 3))
    figures.add("stop_cont_ratio", round(p / u, 3))


def prepare_lead(
    patched: Path,
    fake: Path,
    wire: Wire,
    delay_ms: int,
    tmpdir: Path,
    figures: Figures,
    runs: int = 5,
) -> None:
    """Lead of the prepare notice over the completion of the switchover's
    quiesce (PRE_COPY -> PRE_COPY_P2P, with delay_ms injected), as a QMP
    client hears them, over live migrations; and QEMU timestamp -> client
    latency."""
    leads: list[float] = []
    latencies: list[float] = []
    for i in range(runs):
        lead = asyncio.run(
            demo.switchover_lead(patched, fake, tmpdir, delay_ms, wire, i)
        )
        leads.append(lead.lead_s)
        latencies += lead.latencies_ms
    figures.add("prepare_delay_injected_ms", delay_ms)
    figures.add("prepare_lead_runs", runs)
    figures.add("prepare_lead_median_ms", round(statistics.median(leads) * 1000, 2))
    figures.add("prepare_lead_min_ms", round(min(leads) * 1000, 2))
    figures.add(
        "qemu_to_client_latency_median_ms", round(statistics.median(latencies), 3)
    )


def qtest_seconds(binary: Path, qemu: Path, fake: Path | None) -> float:
    return _timed(lambda: testing.series_qtest(binary, qemu, fake))
