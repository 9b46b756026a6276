"""The VFIO lab's folders in the work dir, as clean finds them through
the lab interface: which kernel kits go, what --all takes, and the
kernel bench's scratch a killed run leaves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qseries.ground import runs
from qseries.ground.workdir import MADE, WorkDir
from qseries.labs.vfio_migration import LAB, kbench, kernel, workdir
from qseries.pipeline import clean
from qseries.pipeline import lab as lab_mod
from qseries.pipeline.stages import Request
from qseries.qemu.source import SourceSpec


def make_kernel(work: Path, version: str, used: float | None) -> Path:
    """A kernel kit's directory (kernel.py's layout), used at `used`;
    None: a kit not complete yet (no kit.json)."""
    home = work / "kernel" / version
    (home / "debs").mkdir(parents=True)
    (home / "debs" / "linux-image.deb").write_bytes(b"d" * 10_000)
    (home / "mtty").mkdir()
    (home / "mtty" / "mtty.ko").write_bytes(b"k" * 1000)
    if used is not None:
        stamp = home / kernel.KIT_STAMP
        stamp.write_text("{}\n")
        os.utime(stamp, (used, used))
    return home


def test_the_lab_is_asked_by_clean() -> None:
    assert LAB.name in [lab.name for lab in lab_mod.installed()]


def test_kernels_but_the_one_used_last_go(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "w")
    old = make_kernel(work.path, "6.12.9+deb12-amd64", used=1000)
    new = make_kernel(work.path, "6.12.95+deb12-amd64", used=3000)
    unfinished = make_kernel(work.path, "6.12.38+deb12-amd64", used=None)
    # A kit's use is its stamp's time, not its directory's.
    os.utime(old, (9000, 9000))
    os.utime(new, (100, 100))
    os.utime(unfinished, (500, 500))
    apt = work.path / "kernel" / "apt"
    (apt / "lists").mkdir(parents=True)
    half = work.path / "kernel" / "6.12.96+deb12-amd64.partial"
    half.mkdir()
    guests = work.path / "kernel" / "guest"
    (guests / "series").mkdir(parents=True)  # newer than every kit: no kit
    assert [p for p, _ in workdir.kernels(work)] == [new, old, unfinished]
    # The installed labs are clean's by default: the VFIO lab among them.
    removals = clean.plan(work, keep=2)
    assert [(r.path, r.why) for r in removals] == [
        (old, "kernel 6.12.9+deb12-amd64 is not the one used last"),
        (unfinished, "kernel 6.12.38+deb12-amd64 is not the one used last"),
        (half, "left half-made by an interrupted run"),
    ]
    assert clean.plan(work, keep=2, labs=[lab_mod.load(LAB.name)]) == removals
    assert removals[0].bytes >= 11_000
    clean.remove(removals)
    assert sorted(p.name for p in (work.path / "kernel").iterdir()) == [
        "6.12.95+deb12-amd64",
        "apt",
        "guest",
    ]
    # A kit used since is the one kept.
    again = make_kernel(work.path, "6.12.9+deb12-amd64", used=4000)
    assert [r.path for r in clean.plan(work, keep=2)] == [new]
    # keep=None keeps any number, kernels too.
    assert clean.plan(work, keep=None) == []
    assert again.is_dir()


def test_all_takes_the_kernel_folder_when_the_lab_is_installed(
    tmp_path: Path,
) -> None:
    work = WorkDir(tmp_path / "w")
    make_kernel(work.path, "6.12.95+deb12-amd64", used=1000)
    (work.path / "logs").mkdir()
    (work.path / "lock").write_text("pid 1: qseries clean\n")
    removals = clean.plan(work, everything=True)
    assert [(r.path.name, r.why) for r in removals] == [
        ("kernel", "everything goes (--all)"),
        ("logs", "everything goes (--all)"),
    ]
    # The core does not name it: the lab does.
    assert "kernel" not in MADE
    assert lab_mod.made() == ("kernel",)
    assert lab_mod.made([]) == ()


def test_the_lab_knows_the_kernel_kit_layout(tmp_path: Path) -> None:
    """The package index workdir.py keeps apart from the kits is where
    kernel.py's apt keeps it."""
    work = WorkDir(tmp_path / "w")
    apt = kernel.BinaryApt(work, ["bookworm"], mirror="http://deb.debian.org/debian")
    assert apt.root == work.path / workdir.MADE[0] / workdir.KERNEL_APT
    assert workdir.MADE == (kernel.KERNEL_DIR,)


def test_a_killed_kernel_bench_leaves_no_scratch_behind() -> None:
    """The next run removes what a killed bench left (runs.clean_dead),
    as the lab names its scratch for the run's record."""
    named = lab_mod.throwaway()
    assert kbench.STAGE_DIR in named and kbench.HAND_DIR in named
    assert set(runs.THROWAWAY) <= set(named)
    assert kbench.STAGE_DIR not in runs.THROWAWAY
    assert lab_mod.throwaway([]) == runs.THROWAWAY


def test_every_command_records_the_labs_scratch_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command's run record names the installed labs' scratch folders
    too, so that the next run removes them if this one is killed."""
    from qseries.pipeline import commands

    recorded = runs.recorded
    seen: list[tuple[str, ...]] = []

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(tuple(args[3]))  # type: ignore[arg-type]
        return recorded(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runs, "recorded", spy)
    request = Request(
        series_file=tmp_path / "series.yaml",
        spec=SourceSpec(),
        command="clean",
        options=commands.Clean(everything=False, keep_bases=2, dry_run=True),
    )
    session = commands.Session(str(tmp_path / "work"), [], None, True, [])
    assert commands.run_in_workdir(request, session, set(), lambda view: None) == 0
    assert seen == [tuple(lab_mod.throwaway())]
    assert set(workdir.THROWAWAY) <= set(seen[0])
