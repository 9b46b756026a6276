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
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..conftest import RunCli, copy_series
from ..debian_archive import Archive

GEN = "1:10.2.2+ds-1"  # the generation base
REUPLOAD = "1:10.2.2+ds-2"  # the same QEMU, uploaded again
TRIXIE = "1:10.0.13+ds-0+deb13u1"
NEWER = "1:10.2.3+ds-1"
NEXT = "1:11.0.0+ds-1"  # above the range '>=10.0, <11' of v1 and v2
LATER = "1:11.1.3+ds-1"  # listed in sid, its files not (yet, or any more) there
OLD = "1:9.2.0+ds-1"  # below both ranges


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

    def generate(self, version: str = "v2") -> None:
        code, _, err = self(
            "generate", "--series", version, "--output", str(self.out), workdir="gen"
        )
        assert code == 0, err
        cover = next((self.out / version).glob("*-0000-cover-letter.patch"))
        assert f"Based on QEMU 10.2.2, Debian {GEN}" in cover.read_text()

    def check(
        self, workdir: str = "fresh", *options: str, version: str = "v2"
    ) -> tuple[dict[str, dict[str, Any]], str]:
        """The results by name, and stderr (a fresh work dir by default)."""
        code, out, err = self(
            "check",
            *options,
            "--series",
            version,
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
    run.archive.add(OLD)
    run.archive.publish({"sid": [NEXT], "trixie": [OLD]})
    code, out, err = run("source", "--series", "v1", workdir="fresh")
    assert code != 0
    assert out == ""
    errors = [line for line in err.splitlines() if "error" in line]
    assert errors == [
        "qseries: error: no qemu source package in the base range '>=10.0, <11'; "
        f"listed: {NEXT}, {OLD}; pass --base-version"
    ], err


def gone(archive: Archive, version: str) -> None:
    """Still listed, but its .dsc answers 'not found' (a 404 on a mirror)."""
    name = f"qemu_{version.split(':', 1)[-1]}.dsc"
    (archive.pool / name).unlink()


def test_sid_drops_10_2_and_every_version_keeps_a_base(run: Run) -> None:
    """Sid lists only 11.1 (its files not there), trixie its 10.0.x: each
    version gets trixie's 10.0.x, a backport, and passes what the tiny
    tree can check."""
    run.generate("v1")
    run.archive.add(LATER)
    run.archive.publish({"sid": [LATER], "trixie": [TRIXIE]})
    gone(run.archive, LATER)
    for version in ("v1", "v2"):
        results, err = run.check(version=version)
        assert said(err, "above the base range") == [
            f"qseries: qemu {LATER} is listed, above the base range '>=10.0, <11': "
            "not used (--base-version picks one)"
        ]
        assert said(err, "did not download") == []
        assert results["base"]["detail"] == f"QEMU 10.0.13 (Debian qemu {TRIXIE})"
        for name in ("mails", "apply", "fresh", "maintainers", "signoff"):
            assert results[name]["status"] == "pass", (version, results[name])
        assert results["fresh"]["detail"].startswith(
            f"equal to a fresh generate on QEMU 10.0.13 (Debian qemu {TRIXIE}), "
            f"in place of the generation base Debian qemu {GEN}, which is no "
            "longer in the archive"
        )


def test_a_listed_base_that_does_not_download_is_passed_over_in_one_line(
    run: Run,
) -> None:
    run.archive.add(NEWER, newer_tree)
    run.archive.publish({"sid": [NEWER, GEN], "trixie": [TRIXIE]})
    gone(run.archive, NEWER)
    code, out, err = run("source", "--series", "v2", "--json", workdir="fresh")
    assert code == 0, err
    assert json.loads(out)["debian_version"] == GEN
    (line,) = said(err, NEWER)
    assert line.startswith(f"qseries: qemu {NEWER} is listed but did not download (")
    assert line.endswith(f"): trying qemu {GEN}")
    # Every one gone: one line each, then the error naming them all.
    gone(run.archive, GEN)
    gone(run.archive, TRIXIE)
    code, out, err = run("source", "--series", "v2", workdir="fresh2")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert [line for line in lines if "did not download" in line] == lines[-4:-1]
    assert lines[-1] == (
        "qseries: error: no qemu source package could be downloaded: tried "
        f"{NEWER}, {GEN}, {TRIXIE}; check the network, or pass --tree PATH"
    )


def test_the_matrix_shows_v2_already_in_a_qemu_that_merged_it(run: Run) -> None:
    """Once 11.x downloads, its row says the series is in it: a SKIP of a
    base above the range, not a conflict."""
    patches = sorted((run.out / "v2").glob("v2-000[1-9]-*.patch"))

    def merged(tree: Path) -> None:
        for patch in patches:
            subprocess.run(
                ["git", "apply", str(patch)], cwd=tree, check=True, capture_output=True
            )

    run.archive.add(NEXT, merged)
    run.archive.publish({"sid": [NEXT, GEN], "trixie": [TRIXIE]})
    code, out, err = run(
        "matrix", "--json", "--series", "v2", "--output", str(run.out),
        "--no-bisect", "--no-mutations", "--no-control", "--no-faults",
        workdir="fresh",
    )  # fmt: skip
    assert code in (0, 1) and out, err
    rows = {r["base"]: r for r in json.loads(out)["bases"]}
    # The tiny trees cannot be built: the bases in range fail after check.
    assert list(rows) == [f"Debian {v}" for v in (NEXT, GEN, TRIXIE)]
    row = rows[f"Debian {NEXT}"]
    assert (row["verdict"], row["required"]) == ("already in this base", False)
    assert row["detail"] == "already in this base: every patch applies in reverse"
    assert Path(row["report_dir"], "junit.xml").is_file()
    assert rows[f"Debian {GEN}"]["verdict"] == "FAIL"
