"""The work dir's bound, on a work dir made of real files: which bases
go, in what order, how much they take, and what a dry run leaves."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from qseries.core import generators
from qseries.core.series import load
from qseries.ground.workdir import WorkDir
from qseries.pipeline import clean
from qseries.qemu.source import MARKER

from ..conftest import REPO

# v1: '>=10.2, <11', v2: '>=10.0, <11'.
SERIES = load(REPO / "series.yaml", generators.specs())


def make_base(work: Path, debian: str, used: float, size: int = 10_000) -> str:
    """A Debian base's tree, worktrees, build, log and download, used at
    `used` (seconds since the epoch)."""
    safe = debian.replace(":", "_")
    name = f"debian-{safe}"
    tree = work / "trees" / name
    (tree / ".git").mkdir(parents=True)
    (tree / "VERSION").write_bytes(b"x" * size)
    marker = tree / ".git" / MARKER
    marker.write_text(
        json.dumps(
            {"version": debian.split(":")[1].split("+")[0], "debian_version": debian}
        )
    )
    os.utime(marker, (used, used))
    for path in (work / "work" / f"build-{name}", work / "work" / f"check-{name}"):
        path.mkdir(parents=True)
        (path / "file.c").write_bytes(b"y" * size)
    (work / "build" / name).mkdir(parents=True)
    (work / "build" / name / "qemu-system-x86_64").write_bytes(b"z" * size)
    (work / "logs").mkdir(exist_ok=True)
    (work / "logs" / f"build-{name}.log").write_text("log\n")
    (work / "debian" / safe).mkdir(parents=True)
    (work / "debian" / safe / "qemu.dsc").write_text("dsc\n")
    return name


def removed_bases(removals: list[clean.Removal]) -> set[str]:
    return {r.why.split()[1] for r in removals if r.why.startswith("base ")}


def test_bases_beyond_the_kept_go_by_last_use(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "w")
    old = make_base(work.path, "1:10.2.1+ds-1", used=1000)
    new = make_base(work.path, "1:10.2.2+ds-1", used=3000)
    mid = make_base(work.path, "1:10.0.13+ds-0+deb13u1", used=2000)
    assert [b.name for b in clean.bases(work)] == [new, mid, old]
    removals = clean.plan(work, keep=2)
    assert removed_bases(removals) == {old}
    paths = {r.path for r in removals}
    assert paths == set(clean.base_paths(work, old))
    assert work.path / "debian" / "1_10.2.1+ds-1" in paths
    assert work.path / "work" / f"check-{old}" in paths
    # Nothing was removed by planning; remove() does.
    assert all(p.exists() for p in paths)
    clean.remove(removals)
    assert not any(p.exists() for p in paths)
    assert (work.path / "trees" / new).is_dir() and (work.path / "build" / mid).is_dir()
    # keep=1: the middle one goes next.
    assert removed_bases(clean.plan(work, keep=1)) == {mid}


def test_sizes_are_what_the_files_take(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "w")
    make_base(work.path, "1:10.2.2+ds-1", used=2000)
    old = make_base(work.path, "1:10.2.1+ds-1", used=1000, size=1_000_000)
    removals = clean.plan(work, keep=1)
    tree = next(r for r in removals if r.path == work.path / "trees" / old)
    assert tree.bytes >= 1_000_000
    assert tree.bytes == clean.disk_usage(tree.path) < 1_100_000
    assert clean.human(tree.bytes).endswith("KiB") or "MiB" in clean.human(tree.bytes)


def test_a_base_out_of_every_range_goes_even_when_used_last(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "w")
    out = make_base(work.path, "1:9.2.0+ds-1", used=3000)  # below 10.0
    above = make_base(work.path, "1:11.0.0+ds-1", used=2500)  # not below 11
    inside = make_base(work.path, "1:10.0.13+ds-0+deb13u1", used=1000)
    removals = clean.plan(work, keep=2, series=SERIES)
    assert removed_bases(removals) == {out, above}
    assert all("in no version's range" in r.why for r in removals)
    assert inside not in removed_bases(removals)
    # Without the series (reproduce's bound), only last use counts.
    assert removed_bases(clean.plan(work, keep=2)) == {inside}


def test_what_a_gone_base_left_goes_too(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "w")
    name = make_base(work.path, "1:10.2.2+ds-1", used=1000)
    gone = work.path / "work" / "build-debian-1_10.1.0+ds-1"
    gone.mkdir()
    fake = work.path / "build" / "qseries-c-0123456789ab"  # not a base's
    fake.mkdir()
    removals = clean.plan(work, keep=2)
    assert [r.path for r in removals] == [gone]
    assert "whose tree is gone" in removals[0].why
    assert (work.path / "trees" / name).is_dir()


def test_all_keeps_the_lock_the_runs_and_what_qseries_did_not_make(
    tmp_path: Path,
) -> None:
    work = WorkDir(tmp_path / "w")
    make_base(work.path, "1:10.2.2+ds-1", used=1000)
    (work.path / "lock").write_text("pid 1: qseries clean\n")
    (work.path / "runs").mkdir()
    (work.path / "bench.json").write_text("{}\n")
    # A work dir named by mistake: the user's own files stay.
    (work.path / "notes.txt").write_text("mine\n")
    (work.path / "src").mkdir()
    # A lab's folder, with no lab installed: not qseries' to remove.
    (work.path / "kernel").mkdir()
    removals = clean.plan(work, everything=True, labs=[])
    assert {r.path.name for r in removals} == {
        "trees",
        "work",
        "build",
        "logs",
        "debian",
        "bench.json",
    }
    clean.remove(removals)
    assert sorted(p.name for p in work.path.iterdir()) == [
        "kernel",
        "lock",
        "notes.txt",
        "runs",
        "src",
    ]


def test_a_half_made_tree_is_no_base(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "w")
    make_base(work.path, "1:10.2.2+ds-1", used=1000)
    for name in ("debian-1_10.0.13.tmp-extract.x1", "debian-1_10.0.13.partial"):
        (work.path / "trees" / name).mkdir()
    assert [b.name for b in clean.bases(work)] == ["debian-1_10.2.2+ds-1"]


def test_json_shape(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "w")
    make_base(work.path, "1:10.2.2+ds-1", used=2000)
    make_base(work.path, "1:10.2.1+ds-1", used=1000)
    rows = [r.to_json() for r in clean.plan(work, keep=1)]
    assert rows and all(set(r) == {"path", "bytes", "why"} for r in rows)
    assert all(isinstance(r["bytes"], int) and r["bytes"] > 0 for r in rows)
    json.dumps(rows)


def test_reproduce_bound_says_each_removal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = WorkDir(tmp_path / "w")
    keep = [make_base(work.path, f"1:10.2.{n}+ds-1", used=1000 + n) for n in (3, 4)]
    old = make_base(work.path, "1:10.2.1+ds-1", used=10)
    removals = clean.bound(work)
    said = capsys.readouterr().err.splitlines()
    assert len(said) == len(removals) == 6  # tree, 2 worktrees, build, log, download
    assert said[0].startswith(f"qseries: removed {work.path}/") and old in said[0]
    assert all("not among the 2 used last" in line for line in said)
    assert sorted(p.name for p in (work.path / "trees").iterdir()) == sorted(keep)
    assert clean.size_line(work).startswith(f"the work dir {work.path} holds ")


def test_with_no_lab_clean_removes_only_the_cores(tmp_path: Path) -> None:
    """A copy of qseries without labs/: bases go as ever, and a folder
    it does not know (a lab's, of another installation) stays whole."""
    work = WorkDir(tmp_path / "w")
    make_base(work.path, "1:10.2.2+ds-1", used=2000)
    old = make_base(work.path, "1:10.2.1+ds-1", used=1000)
    for kit in ("6.12.9+deb12-amd64", "6.12.95+deb12-amd64", "6.12.96.partial"):
        (work.path / "kernel" / kit).mkdir(parents=True)
    removals = clean.plan(work, keep=1, labs=[])
    assert removed_bases(removals) == {old}
    assert all(r.why.startswith("base ") for r in removals)
    assert [r.path for r in clean.bound(work, keep=1, labs=[])] == [
        r.path for r in removals
    ]
    assert len(list((work.path / "kernel").iterdir())) == 3
