"""The work dir's bound: what qseries removes once it is no longer used.

A base takes room in several places of the work dir: its tree
(trees/NAME), the worktrees made from it (work/build-NAME,
work/check-NAME), its build directory (build/NAME), its build logs and,
for a Debian base, the downloaded source package (debian/VERSION).  The
last use of a base is the time of its marker, which every run that uses
the base touches (source.py).  `reproduce` keeps the bases used last;
`qseries clean` also removes the bases no version's range holds, and
with --all everything but the lock and the records of runs.

A lab keeps its own things in the work dir, in folders of its own: it
names them and says what of them goes (pipeline/lab.py, `made` and
`workdir_removals`), and clean asks every lab installed.  With none
installed, clean knows only the core's folders.

Both run under the work dir's lock (cli.main takes it for every
command), so nothing removed here is in use.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.series import Series
from ..core.versions import QemuVersion, VersionError, upstream_of_debian
from ..ground.console import say
from ..ground.workdir import LOCK_NAME, MADE, WorkDir
from ..qemu.source import MARKER
from . import lab as lab_mod
from .lab import ProvingLab

KEEP_BASES = 2  # what reproduce keeps by default
# What --all leaves: the lock the run holds, and the records of runs
# (runs.py), this one's among them; it removes only what qseries makes
# (workdir.MADE and the labs' folders), so the marker of the work dir
# stays too.
KEEP_ALWAYS = (LOCK_NAME, "runs")
# Half-made trees that source.clean_leftovers removes: not bases.
LEFTOVERS = (".partial", ".tmp-extract.", ".orig.tar.")
DEBIAN_PREFIX = "debian-"


@dataclass(frozen=True)
class Removal:
    """One path to remove, its size on disk, and why it goes."""

    path: Path
    bytes: int
    why: str

    def to_json(self) -> dict[str, object]:
        return {"path": str(self.path), "bytes": self.bytes, "why": self.why}


@dataclass(frozen=True)
class Base:
    """A base tree found in the work dir."""

    name: str  # its directory under trees/
    last_used: float
    version: QemuVersion | None  # None: not known (no readable marker)


def disk_usage(path: Path) -> int:
    """Bytes path takes on disk, as du counts them (a file with several
    links once); what vanishes meanwhile counts for nothing."""
    seen: set[tuple[int, int]] = set()
    total = 0
    todo = [path]
    while todo:
        current = todo.pop()
        try:
            info = current.lstat()
        except OSError:
            continue
        if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
        total += info.st_blocks * 512
        if stat.S_ISDIR(info.st_mode):
            try:
                with os.scandir(current) as entries:
                    todo.extend(Path(e.path) for e in entries)
            except OSError:
                continue
    return total


def human(size: int) -> str:
    """1.6 GiB, 230 MiB, 12 KiB."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "bytes":
        return f"{size} bytes"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def _version(marker: Path) -> QemuVersion | None:
    try:
        data = json.loads(marker.read_text())
        debian = data.get("debian_version")
        if debian:
            return upstream_of_debian(str(debian))
        return QemuVersion.parse(str(data["version"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, VersionError):
        return None


def bases(workdir: WorkDir) -> list[Base]:
    """The base trees of the work dir, used last first."""
    trees = workdir.path / "trees"
    found = []
    if trees.is_dir():
        for tree in trees.iterdir():
            if not tree.is_dir() or any(m in tree.name for m in LEFTOVERS):
                continue
            marker = tree / ".git" / MARKER
            try:
                used = marker.stat().st_mtime
            except OSError:
                used = tree.stat().st_mtime
            found.append(Base(tree.name, used, _version(marker)))
    return sorted(found, key=lambda b: (-b.last_used, b.name))


def base_paths(workdir: WorkDir, name: str) -> list[Path]:
    """Where the base named `name` takes room, those that exist."""
    root = workdir.path
    paths = [
        root / "trees" / name,
        root / "trees" / f"{name}.partial",
        root / "work" / f"build-{name}",
        root / "work" / f"check-{name}",
        root / "build" / name,
        root / "logs" / f"build-{name}.log",
        root / "logs" / f"compile-{name}.log",
    ]
    if name.startswith(DEBIAN_PREFIX):
        paths.append(root / "debian" / name[len(DEBIAN_PREFIX) :])
    return [p for p in paths if p.exists() or p.is_symlink()]


def in_range(base: Base, series: Series) -> bool:
    """Does any version of the series take this base?"""
    return base.version is not None and any(
        base.version in v.base for v in series.versions.values()
    )


def _orphans(workdir: WorkDir, kept: set[str]) -> list[tuple[Path, str]]:
    """What a base left behind once its tree was gone: worktrees, build
    directories and downloads of no base tree here."""
    root = workdir.path
    found = []
    for folder, prefixes in (
        ("work", ("build-", "check-")),
        ("build", ("",)),
        ("debian", (DEBIAN_PREFIX,)),
    ):
        if not (root / folder).is_dir():
            continue
        for entry in sorted((root / folder).iterdir()):
            for prefix in prefixes:
                if folder == "debian":
                    name = prefix + entry.name
                elif entry.name.startswith(prefix):
                    name = entry.name[len(prefix) :]
                else:
                    continue
                if name.startswith(("debian-", "tree-", "git-")) and name not in kept:
                    found.append((entry, f"left by base {name}, whose tree is gone"))
                break
    return found


def plan(
    workdir: WorkDir,
    keep: int | None = KEEP_BASES,
    series: Series | None = None,
    everything: bool = False,
    labs: Sequence[ProvingLab] | None = None,
) -> list[Removal]:
    """What to remove: bases beyond the `keep` used last (None: any
    number), those in no version's range of series (if given), what a
    gone base left behind, and what each lab says of its folders; with
    everything, all that qseries and the labs made (MADE), never the
    lock, the runs' records or what they did not make.  labs: those
    asked (None: the installed ones)."""
    root = workdir.path
    if labs is None:
        labs = lab_mod.installed()
    if everything:
        if not root.is_dir():
            return []
        made = {*MADE, *lab_mod.made(labs)}
        return [
            Removal(p, disk_usage(p), "everything goes (--all)")
            for p in sorted(root.iterdir())
            if p.name in made
        ]
    removals: list[Removal] = []
    kept: set[str] = set()
    used = 0
    for base in bases(workdir):
        if series is not None and not in_range(base, series):
            why = f"base {base.name} is in no version's range of {series.path.name}"
        elif keep is not None and used >= keep:
            why = f"base {base.name} is not among the {keep} used last"
        else:
            kept.add(base.name)
            used += 1
            continue
        removals += [
            Removal(p, disk_usage(p), why) for p in base_paths(workdir, base.name)
        ]
    seen = {r.path for r in removals}
    removals += [
        Removal(p, disk_usage(p), why)
        for p, why in _orphans(workdir, kept)
        if p not in seen
    ]
    if keep is not None:
        for lab in labs:
            removals += [
                Removal(p, disk_usage(p), why)
                for p, why in lab.workdir_removals(workdir)
                if p not in seen
            ]
    return removals


def remove(removals: list[Removal]) -> None:
    for removal in removals:
        path = removal.path
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def bound(
    workdir: WorkDir,
    keep: int = KEEP_BASES,
    labs: Sequence[ProvingLab] | None = None,
) -> list[Removal]:
    """After a reproduce: keep the `keep` bases used last, one line for
    each path removed, and one for the size of the work dir."""
    removals = plan(workdir, keep, labs=labs)
    remove(removals)
    for r in removals:
        say(f"removed {r.path} ({human(r.bytes)}): {r.why}")
    return removals


def size_line(workdir: WorkDir) -> str:
    return (
        f"the work dir {workdir.path} holds {human(disk_usage(workdir.path))} "
        "(qseries clean removes more)"
    )
