"""A base that moves: Debian drops or replaces the upload a series was
generated on, or lists newer ones.

Each test generates v2 (of a copy of series.yaml) on a local archive
(tests/debian_archive.py) whose sid has 1:10.2.2+ds-1, then changes
what the archive lists and runs `qseries check` in a new work dir (a
fresh machine), through QSERIES_DEBIAN_MIRROR=file://ARCHIVE.  The tiny
trees have no QAPI scripts or checkpatch.pl, so those checks fail here;
what is asserted is the base, apply, fresh, maintainers and what
qseries says on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ..conftest import RunCli, copy_series
from ..debian_archive import Archive

GEN = "1:10.2.2+ds-1"  # the generation base
REUPLOAD = "1:10.2.2+ds-2"  # the same QEMU, uploaded again
TRIXIE = "1:10.0.13+ds-0+deb13u1"
NEWER = "1:10.2.3+ds-1"
NEXT = "1:11.0.0+ds-1"  # above v2's range '>=10.0, <11'


def older_tree(tree: Path) -> None:
    """10.0.x: the maintainer at an older address, the code moved down."""
    maintainers = tree / "MAINTAINERS"
    maintainers.write_text(
        maintainers.read_text().replace(
            "maintainer@example.org", "maintainer@old.example.org"
        )
    )
    code = tree / "hw" / "vfio" / "migration.c"
    code.write_text("/* An older tree. */\n" + code.read_text())


def newcomer(tree: Path) -> None:
    """An older tree whose VFIO section names a maintainer more."""
    older_tree(tree)
    maintainers = tree / "MAINTAINERS"
    maintainers.write_text(
        maintainers.read_text().replace(
            "S: Supported", "M: C Newcomer <newcomer@example.org>\nS: Supported", 1
        )
    )


def newer_tree(tree: Path) -> None:
    code = tree / "hw" / "vfio" / "migration.c"
    code.write_text("/* A newer tree. */\n\n" + code.read_text())


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    archive = Archive(tmp_path / "archive", tmp_path / "packages")
    archive.add(GEN)
    archive.add(TRIXIE, older_tree)
    archive.publish({"sid": [GEN], "trixie": [TRIXIE]})
    return archive


class Run:
    """qseries on the archive, with the copy of series.yaml."""

    def __init__(self, run_cli: RunCli, archive: Archive, series: Path, tmp: Path):
        self.run_cli = run_cli
        self.archive = archive
        self.series = series
        self.tmp = tmp
        self.out = tmp / "out"

    def __call__(self, *args: str, workdir: str) -> tuple[int, str, str]:
        proc = self.run_cli(
            "--series-file",
            str(self.series),
            *args,
            workdir=self.tmp / workdir,
            env={"QSERIES_DEBIAN_MIRROR": self.archive.url},
        )
        return proc.returncode, proc.stdout, proc.stderr

    def generate(self) -> None:
        code, _, err = self(
            "generate", "--series", "v2", "--output", str(self.out), workdir="gen"
        )
        assert code == 0, err
        cover = next((self.out / "v2").glob("*-0000-cover-letter.patch"))
        assert f"Based on QEMU 10.2.2, Debian {GEN}" in cover.read_text()

    def check(
        self, workdir: str = "fresh", *options: str
    ) -> tuple[dict[str, dict[str, Any]], str]:
        """The results by name, and stderr (a fresh work dir by default)."""
        code, out, err = self(
            "check",
            *options,
            "--series",
            "v2",
            "--output",
            str(self.out),
            "--json",
            workdir=workdir,
        )
        assert code in (0, 1) and out, err
        results = {r["name"]: r for r in json.loads(out)["results"]}
        return results, err


@pytest.fixture
def run(run_cli: RunCli, archive: Archive, tmp_path: Path) -> Run:
    run = Run(run_cli, archive, copy_series(tmp_path / "series"), tmp_path)
    run.generate()
    return run


def said(err: str, text: str) -> list[str]:
    """The lines of stderr that contain text."""
    return [line for line in err.splitlines() if text in line]


def stale(series: Path) -> None:
    """Edit the series after its patches were generated."""
    text = series.read_text()
    edited = text.replace("Add pre-copy-p2p-prepare, a prepare state", "Add it", 1)
    assert edited != text
    series.write_text(edited)


def test_reupload_of_the_same_qemu_stands_in(run: Run) -> None:
    run.archive.add(REUPLOAD)
    run.archive.publish({"sid": [REUPLOAD], "trixie": [TRIXIE]})
    results, err = run.check()
    line = (
        f"qseries: the generation base of v2, Debian qemu {GEN}, is no longer in "
        f"the archive; Debian qemu {REUPLOAD}, the same QEMU 10.2.2, stands in for it"
    )
    assert said(err, "generation base") == [line]
    assert results["base"]["detail"] == f"QEMU 10.2.2 (Debian qemu {REUPLOAD})"
    assert results["apply"]["status"] == "pass"
    fresh = results["fresh"]
    assert fresh["status"] == "pass", fresh
    assert fresh["detail"] == (
        f"equal to a fresh generate on QEMU 10.2.2 (Debian qemu {REUPLOAD}), in "
        f"place of the generation base Debian qemu {GEN}, which is no longer in "
        "the archive, byte for byte but the 'Based on' line"
    )
    maintainers = results["maintainers"]
    assert maintainers["status"] == "pass", maintainers
    assert maintainers["detail"] == (
        "To/Cc include every address get_maintainer.pl names on QEMU 10.2.2 "
        f"(Debian qemu {REUPLOAD}), in place of the generation base Debian qemu "
        f"{GEN}, which is no longer in the archive"
    )


def test_stale_series_fails_on_the_reupload(run: Run) -> None:
    run.archive.add(REUPLOAD)
    run.archive.publish({"sid": [REUPLOAD], "trixie": [TRIXIE]})
    stale(run.series)
    results, _ = run.check()
    fresh = results["fresh"]
    assert fresh["status"] == "fail"
    assert fresh["detail"].startswith(
        f"v2 differs from a fresh generate on QEMU 10.2.2 (Debian qemu {REUPLOAD}), "
        f"in place of the generation base Debian qemu {GEN}"
    )
    assert fresh["detail"].endswith("run 'qseries generate' to move it there")
    assert fresh["items"] == [
        "v2-0001-qapi-vfio-Add-pre-copy-p2p-prepare-migration-stat.patch: its "
        "messages or changed lines differ from a fresh generate"
    ]


def test_sid_moved_on_checks_trixie_as_a_backport(run: Run) -> None:
    run.archive.add(NEXT)
    run.archive.publish({"sid": [NEXT], "trixie": [TRIXIE]})
    results, err = run.check()
    assert said(err, "above the base range") == [
        f"qseries: qemu {NEXT} is listed, above the base range '>=10.0, <11': "
        "not used (--base-version picks one)"
    ]
    assert said(err, "generation base") == [
        f"qseries: the generation base of v2, Debian qemu {GEN}, is no longer in "
        f"the archive; no other upload of QEMU 10.2.2 is listed ({NEXT}, {TRIXIE}):"
        f" checking on QEMU 10.0.13 (Debian qemu {TRIXIE}) as a backport, fresh "
        "without the base's context and line numbers"
    ]
    assert results["base"]["detail"] == f"QEMU 10.0.13 (Debian qemu {TRIXIE})"
    # MAINTAINERS differs around the hunk, and no generation base's blobs
    # are at hand for a 3-way merge: one line of context, said so.
    apply = results["apply"]
    assert apply["status"] == "pass", apply
    assert apply["detail"] == "3 patch(es) applied with git am (-C1 for some)"
    assert len(apply["items"]) == 1
    assert apply["items"][0].startswith("3/3: MAINTAINERS: the hunk at line")
    assert apply["items"][0].endswith(
        f"applied with 1 line of context, as the generation base Debian qemu "
        f"{GEN} is no longer in the archive: review it"
    )
    fresh = results["fresh"]
    assert fresh["status"] == "pass", fresh
    assert fresh["detail"].startswith(
        f"equal to a fresh generate on QEMU 10.0.13 (Debian qemu {TRIXIE}), in "
        f"place of the generation base Debian qemu {GEN}, which is no longer in "
        "the archive, in every message, header and changed line"
    )
    maintainers = results["maintainers"]
    assert maintainers["status"] == "pass", maintainers
    assert maintainers["detail"].startswith(
        "To/Cc include every address get_maintainer.pl names on QEMU 10.0.13"
    )
    assert maintainers["items"] == [
        "A Maintainer <maintainer@old.example.org>",
        "A Maintainer: <maintainer@old.example.org> in that MAINTAINERS, "
        "<maintainer@example.org> in the mails",
    ]


def test_backport_stand_in_still_fails_what_is_wrong(run: Run, tmp_path: Path) -> None:
    """On the stand-in, a stale series and a maintainer the mails lack fail."""
    trixie = Archive(tmp_path / "archive2", tmp_path / "packages2")
    trixie.add(NEXT)
    trixie.add(TRIXIE, newcomer)
    trixie.publish({"sid": [NEXT], "trixie": [TRIXIE]})
    run.archive = trixie
    stale(run.series)
    results, _ = run.check()
    assert results["fresh"]["status"] == "fail"
    assert results["fresh"]["items"] == [
        "v2-0001-qapi-vfio-Add-pre-copy-p2p-prepare-migration-stat.patch: its "
        "messages or changed lines differ from a fresh generate"
    ]
    maintainers = results["maintainers"]
    assert maintainers["status"] == "fail"
    assert maintainers["detail"].startswith(
        "To/Cc lacks what get_maintainer.pl names on QEMU 10.0.13"
    )
    assert "1/3: C Newcomer <newcomer@example.org>" in maintainers["items"]


def test_newer_uploads_are_said_and_the_generation_base_still_counts(
    run: Run,
) -> None:
    run.archive.add(NEWER, newer_tree)
    run.archive.add(NEXT)
    run.archive.publish({"sid": [NEXT, NEWER, GEN], "trixie": [TRIXIE]})
    results, err = run.check()
    assert said(err, "above the base range") == [
        f"qseries: qemu {NEXT} is listed, above the base range '>=10.0, <11': "
        "not used (--base-version picks one)"
    ]
    assert said(err, "generated on") == [
        f"qseries: v2 was generated on QEMU 10.2.2 (Debian qemu {GEN}); checking "
        f"it on QEMU 10.2.3 (Debian qemu {NEWER}), a newer base: fresh and "
        "maintainers are checked on the generation base"
    ]
    assert results["base"]["detail"] == f"QEMU 10.2.3 (Debian qemu {NEWER})"
    assert results["apply"]["status"] == "pass"
    assert results["fresh"]["status"] == "pass"
    assert results["fresh"]["detail"] == (
        f"equal to a fresh generate on QEMU 10.2.2 (Debian qemu {GEN})"
    )
    maintainers = results["maintainers"]
    assert maintainers["status"] == "pass"
    assert maintainers["detail"] == (
        "To/Cc include every address get_maintainer.pl names on QEMU 10.2.2 "
        f"(Debian qemu {GEN})"
    )


def test_a_work_dir_that_has_the_generation_base_keeps_it(run: Run) -> None:
    run.archive.add(NEXT)
    run.archive.publish({"sid": [NEXT], "trixie": [TRIXIE]})
    # Where it was generated; --refresh, or the day-old index still lists it.
    results, err = run.check("gen", "--refresh")
    assert said(err, "is no longer in the archive") == []
    assert said(err, "generated on") == [
        f"qseries: v2 was generated on QEMU 10.2.2 (Debian qemu {GEN}); checking "
        f"it on QEMU 10.0.13 (Debian qemu {TRIXIE}), a backport: fresh and "
        "maintainers are checked on the generation base"
    ]
    assert results["fresh"]["detail"] == (
        f"equal to a fresh generate on QEMU 10.2.2 (Debian qemu {GEN})"
    )
    assert results["apply"]["detail"] == "3 patch(es) applied with git am (-3 for some)"


def test_no_base_in_range_is_one_line(run: Run) -> None:
    run.archive.add(NEXT)
    run.archive.publish({"sid": [NEXT], "trixie": [TRIXIE]})
    code, out, err = run("source", "--series", "v1", workdir="fresh")
    assert code != 0
    assert out == ""
    errors = [line for line in err.splitlines() if "error" in line]
    assert errors == [
        "qseries: error: no qemu source package in the base range '>=10.2, <11'; "
        f"listed: {NEXT}, {TRIXIE}; pass --base-version"
    ], err
