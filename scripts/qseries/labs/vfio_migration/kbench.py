"""qseries bench on the kernel device: the figures of mtty in a guest.

Three kinds of figure (bench.py prints them with the others):

- one boot of the guest with the scenarios repeated, the guest's clock
  on every QMP line (STAMP=1): what a real quiesce of mtty costs (notice
  to completion, QEMU's timestamps), QMP delivery in the guest, and the
  boot (to /init, the scenarios, the whole run); under TCG, and again
  under KVM where KVM boots the guest (guest.choose_accel says);
- the kernel stage as reproduce runs it for one QEMU (the kernel kit,
  then KernelDevice.run: the initramfs, the boot, the scenarios), cold
  in a scratch work dir with an empty kernel dir, then warm;
- the same steps by hand: apt-get update and download, dpkg-deb -x,
  tar for mtty.c, make for mtty.ko, xz -d for the modules, cp into a
  tree, busybox cpio and gzip, the outer QEMU.  By hand, as for
  reproduce's by-hand side of QEMU, apt goes through the same private
  configuration, as qseries has no other.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ...ground.errors import QSeriesError
from ...ground.proc import run_bounded
from ...ground.workdir import WorkDir
from . import guest, kernel, measure, scenarios
from . import workdir as workdir_mod
from .device import KernelDevice
from .plan import Wire

Add = Callable[[str, "float | int | str"], None]
STEP_TIMEOUT = 30 * 60
BOOT_TIMEOUT = 120.0  # the boot and the set-up of the guest
SCENARIO_TIMEOUT = 30.0  # each scenario run (about 3 s under TCG)
# Scratch dirs in the work dir, removed at the end (workdir.THROWAWAY,
# which the lab gives runs.recorded: a killed run's go with the next).
STAGE_DIR = workdir_mod.STAGE_DIR
HAND_DIR = workdir_mod.HAND_DIR


class BenchError(QSeriesError):
    """A run the kernel bench measures did not do what it measures."""


def _failed(runs: list[scenarios.ScenarioRun], where: Path) -> None:
    for run in runs:
        if run.error is not None:
            raise BenchError(
                f"bench: scenario {run.scenario} on mtty: {run.error}",
                f"see the guest's console in {where}",
            )


def boots(
    qemu: Path,
    wire: Wire,
    workdir: WorkDir,
    repeat: int,
    add: Add,
    version: str | None = None,
) -> None:
    """The scenarios repeat times in one stamped boot, under TCG and,
    where it boots the guest, KVM: the quiesce, QMP delivery, the boot."""
    kit = kernel.kernel_kit(workdir, version=version)
    add("kernel", f"{kit.version} (mtty.c sha256 {kit.mtty_source_sha256[:12]})")
    chosen, script, mdevs = measure.repeated_script(scenarios.load().scenarios, repeat)
    best = guest.choose_accel(kit, workdir)
    verdict = guest.read_verdict(
        workdir.sub("kernel", "guest") / guest.VERDICTS,
        guest.verdict_key(kit.version, guest.host_facts()),
    )
    why = verdict.get("why") if verdict else "not tried"
    add("kernel_kvm", "boots the guest" if best == "kvm" else f"not used: {why}")
    for accel in ("tcg", "kvm") if best == "kvm" else ("tcg",):
        ran = guest.run_in_guest(
            kit,
            qemu,
            script,
            workdir,
            f"bench-{accel}",
            mdevs=mdevs,
            timeout=BOOT_TIMEOUT + SCENARIO_TIMEOUT * len(chosen),
            accel=accel,
        )
        runs = scenarios.read_results(ran.results, chosen)
        _failed(runs, ran.console)
        prefix = f"kernel_{accel}"
        add(f"{prefix}_repeat", repeat)
        if ran.init_seconds is not None:
            add(f"{prefix}_boot_to_init_s", round(ran.init_seconds, 2))
        for name, value in measure.figures(runs, wire, ran.results).items():
            add(f"{prefix}_{name}", value)
        add(f"{prefix}_whole_run_s", round(ran.seconds, 2))


def stage(qemu: Path, workdir: WorkDir, add: Add, version: str | None = None) -> None:
    """The kernel stage of reproduce for one QEMU, in a scratch work dir
    with an empty kernel dir (cold), then again (warm): the kit, then
    the device's run.  The scratch goes at the end; a failed run's stays
    (its guest's console) until the next bench."""
    scratch = WorkDir(workdir.path / STAGE_DIR)
    shutil.rmtree(scratch.path, ignore_errors=True)
    scratch.path.mkdir(parents=True)
    lab = scenarios.load()
    for run in ("cold", "warm"):
        started = time.monotonic()
        kernel.kernel_kit(scratch, version=version)
        kit_s = time.monotonic() - started
        device = KernelDevice(scratch, version).run(qemu, lab.scenarios, "bench")
        _failed(device.runs, scratch.path / "kernel" / "guest" / "bench")
        whole = time.monotonic() - started
        add(f"kernel_stage_{run}_kit_s", round(kit_s, 1))
        add(f"kernel_stage_{run}_device_s", round(whole - kit_s, 1))
        add(f"kernel_stage_{run}_s", round(whole, 1))
    shutil.rmtree(scratch.path, ignore_errors=True)


def by_hand(
    qemu: Path,
    workdir: WorkDir,
    add: Add,
    version: str | None = None,
) -> None:
    """The kernel stage's steps typed by hand in an empty directory, each
    timed.  The packages and versions are the kit's.  The directory goes
    at the end (a failed run's stays until the next bench)."""
    kit = kernel.kernel_kit(workdir, version=version)
    stamp = json.loads(
        (kernel.kernel_dir(workdir) / kit.version / kernel.KIT_STAMP).read_text()
    )
    spec = kernel.load_spec()
    abi = kit.version.removesuffix(f"-{spec.flavour}")
    hand = WorkDir(workdir.path / HAND_DIR)
    shutil.rmtree(hand.path, ignore_errors=True)
    hand.path.mkdir(parents=True)
    # The accelerator the tool's run chose (KVM tried once, remembered).
    accel = guest.choose_accel(kit, workdir)
    busybox_version = str(stamp["busybox_version"])
    _by_hand(qemu, kit, spec, abi, busybox_version, accel, hand, add)
    shutil.rmtree(hand.path, ignore_errors=True)


def _check(
    argv: list[str], cwd: Path | None = None, output: Path | None = None
) -> None:
    """A step by hand; output: where its stdout is kept (the console)."""
    ran = run_bounded(argv, kernel.build_env(), STEP_TIMEOUT, cwd)
    if output is not None:
        output.write_text(ran.stdout)
    if ran.timed_out or ran.returncode != 0:
        tail = (ran.stdout + ran.stderr).strip().splitlines()[-3:]
        raise BenchError(
            f"bench: {' '.join(argv[:3])} exited with {ran.returncode}",
            " | ".join(tail),
        )


def _by_hand(
    qemu: Path,
    kit: kernel.KernelKit,
    spec: kernel.KitSpec,
    abi: str,
    busybox_version: str,
    accel: str,
    hand: WorkDir,
    add: Add,
) -> None:
    steps: dict[str, float] = {}

    def step(name: str, fn: Callable[[], object]) -> None:
        started = time.monotonic()
        fn()
        steps[name] = time.monotonic() - started
        add(f"kernel_by_hand_{name}_s", round(steps[name], 1))

    root = hand.path
    names = {role: spec.name(role, abi) for role in kernel.KitSpec.ROLES}
    apt = kernel.BinaryApt(hand, spec.suites)
    debs = root / "debs"
    debs.mkdir()
    got: dict[str, Path] = {}

    def download() -> None:
        for name in names.values():
            got[name] = apt.download(name, kit.package_version, debs)
        got["busybox"] = apt.download(spec.busybox_package, busybox_version, debs)

    step("update", lambda: apt.update(True))
    step("download", download)

    def unpack() -> None:
        _check(["dpkg-deb", "-x", str(got[names["image"]]), str(root / "image")])
        for role in ("headers", "common", "kbuild"):
            _check(["dpkg-deb", "-x", str(got[names[role]]), str(root / "headers")])
        _check(["dpkg-deb", "-x", str(got["busybox"]), str(root / "busybox")])
        _check(["dpkg-deb", "-x", str(got[names["source"]]), str(root / "source")])
        tarball = next((root / "source" / "usr" / "src").glob("linux-source-*.tar*"))
        member = f"{tarball.name.split('.tar')[0]}/{spec.mtty}"
        _check(["tar", "-xf", str(tarball), "-C", str(root / "source"), member])

    step("unpack", unpack)
    tree = root / "headers" / "usr" / "src" / f"linux-headers-{kit.version}"
    module = root / "mtty"

    def build() -> None:
        # The edit a person makes to the headers' Makefile (sed -i).
        makefile = tree / "Makefile"
        makefile.write_text(
            kernel.fix_headers_makefile(makefile.read_text(), root / "headers")
        )
        module.mkdir()
        found = next((root / "source").glob(f"*/{spec.mtty}"))
        shutil.copyfile(found, module / "mtty.c")
        (module / "Makefile").write_text("obj-m := mtty.o\n")
        make = ["make", "-C", str(tree), f"M={module}"]
        _check([*make, "CONFIG_DEBUG_INFO_BTF_MODULES=", "modules"])

    step("module", build)
    modules: list[Path] = []

    def decompress() -> None:
        index = {
            p.name.split(".ko")[0]: p
            for p in (root / "image" / "lib" / "modules").rglob("*.ko.xz")
        }
        for name in (p.name.removesuffix(".ko") for p in kit.modules):
            _check(["xz", "-dk", str(index[name])])
            modules.append(index[name].with_suffix(""))

    step("modules_xz", decompress)
    initrd = root / "initramfs.cpio.gz"
    busybox = root / "busybox" / "bin" / "busybox"
    lab = scenarios.load()
    ours = replace(
        kit,
        vmlinuz=root / "image" / "boot" / f"vmlinuz-{kit.version}",
        modules=tuple(modules),
        mtty=module / "mtty.ko",
        busybox=busybox,
    )

    def initramfs() -> None:
        # What goes in is what the tool puts in (the same /init); by hand
        # it is copied into a tree and packed with cpio and gzip.
        entries = guest.initramfs_entries(
            ours,
            scenarios.guest_script(lab.scenarios),
            2,
            qemu,
            guest.libraries(qemu),
            guest.firmware_dir(qemu),
        )
        top = root / "initramfs"
        for entry in entries:
            where = top / entry.path.lstrip("/")
            if entry.mode & 0o170000 == 0o040000:
                where.mkdir(parents=True, exist_ok=True)
            elif entry.target is not None:
                where.symlink_to(entry.target)
            elif isinstance(entry.data, Path):
                shutil.copyfile(entry.data, where)
                where.chmod(entry.mode & 0o777)
            elif isinstance(entry.data, bytes):
                where.write_bytes(entry.data)
                where.chmod(entry.mode & 0o777)
            # /dev/console: the kernel's devtmpfs has it (by hand, no mknod).
        pack = 'find . | "$0" cpio -o -H newc | gzip -1 > "$1"'
        _check(["sh", "-c", pack, str(busybox), str(initrd)], cwd=top)

    step("initramfs", initramfs)
    results = root / "results.log"
    results.write_bytes(b"")
    argv = guest.outer_argv(accel, ours.vmlinuz, initrd, results)
    console = root / "console.log"
    step("boot_and_scenarios", lambda: _check(argv, cwd=root, output=console))
    said = results.read_bytes().decode("utf-8", errors="replace")
    _failed(scenarios.read_results(said, lab.scenarios), console)
    total = sum(steps.values())
    add("kernel_by_hand_s", round(total, 1))
    # Warm, by hand: the kit is there; a new initramfs and a boot.
    warm = steps["initramfs"] + steps["boot_and_scenarios"]
    add("kernel_by_hand_warm_s", round(warm, 1))


def cold_and_warm(
    qemu: Path, workdir: WorkDir, add: Add, version: str | None = None
) -> dict[str, float]:
    """The kernel stage, cold and warm, against the same steps by hand:
    the two ratios."""
    figures: dict[str, float] = {}

    def keep(name: str, value: float | int | str) -> None:
        if isinstance(value, (int, float)):
            figures[name] = float(value)
        add(name, value)

    stage(qemu, workdir, keep, version)
    by_hand(qemu, workdir, keep, version)
    ratios = stage_ratios(figures)
    for name, value in ratios.items():
        add(name, value)
    return ratios


def stage_ratios(figures: dict[str, float]) -> dict[str, float]:
    """The kernel stage against the same steps by hand, cold and warm."""
    return {
        "kernel_stage_cold_ratio": round(
            figures["kernel_stage_cold_s"] / figures["kernel_by_hand_s"], 3
        ),
        "kernel_stage_warm_ratio": round(
            figures["kernel_stage_warm_s"] / figures["kernel_by_hand_warm_s"], 3
        ),
    }
