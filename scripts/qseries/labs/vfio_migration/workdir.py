"""What the lab keeps in the work dir, and when `qseries clean` takes it.

The kernel kit of the mtty device (kernel.py) takes one folder at the
top of the work dir, kernel/: one directory per kernel, kernel/VERSION,
with its packages, what they unpack to and the mtty.ko built for it;
its kit.json's time is its last use.  Beside the kits, kernel/apt is
their package index (kept) and kernel/guest the guests' files (the
initramfs, console logs, the KVM verdicts: no kit).  The kernel used
last stays; older ones go, and what an interrupted run left.

The kernel bench (kbench.py) makes two scratch folders under bench/ and
removes them at its end; a killed run's are removed by the next one
(ground/runs.py, which takes them from the lab).

The pipeline asks this through the lab's interface (pipeline/lab.py),
so the core's clean knows none of these names.
"""

from __future__ import annotations

from pathlib import Path

from ...ground.workdir import WorkDir
from .guest import GUEST_DIR
from .kernel import KERNEL_DIR, KIT_STAMP, PARTIAL

# The lab's folders at the top of the work dir (`clean --all` takes them).
MADE = (KERNEL_DIR,)
KERNEL_APT = "apt"  # kernel.BinaryApt's private configuration and index
KEEP_KERNELS = 1
# The kernel bench's scratch, removed at its end (and by the next run
# after a killed one).
STAGE_DIR = "bench/kernel-stage"
HAND_DIR = "bench/kernel-by-hand"
THROWAWAY = (STAGE_DIR, HAND_DIR)


def kernels(workdir: WorkDir) -> list[tuple[Path, float]]:
    """The kernel kits of the work dir with their last use, used last
    first; a kit not complete yet counts from its directory's time."""
    root = workdir.path / KERNEL_DIR
    found = []
    if root.is_dir():
        for entry in root.iterdir():
            if (
                not entry.is_dir()
                or entry.is_symlink()
                or entry.name in (KERNEL_APT, GUEST_DIR)
                or entry.name.endswith(PARTIAL)
            ):
                continue
            try:
                used = (entry / KIT_STAMP).stat().st_mtime
            except OSError:
                used = entry.stat().st_mtime
            found.append((entry, used))
    return sorted(found, key=lambda k: (-k[1], k[0].name))


def removals(workdir: WorkDir) -> list[tuple[Path, str]]:
    """The kernel kits beyond the KEEP_KERNELS used last, and what an
    interrupted kit left half-made at the top of kernel/, each with why."""
    old = [
        (path, f"kernel {path.name} is not the one used last")
        for path, _ in kernels(workdir)[KEEP_KERNELS:]
    ]
    root = workdir.path / KERNEL_DIR
    if root.is_dir():
        old += [
            (p, "left half-made by an interrupted run")
            for p in sorted(root.glob(f"*{PARTIAL}"))
        ]
    return old
