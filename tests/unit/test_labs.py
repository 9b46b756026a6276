"""Labs: named in series.yaml, loaded by name, their options their own.

The core loads a lab through core/lab.py only; a series with no lab
is a series like any other, and an option of a lab is refused for a
series of another lab or of none.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qseries.core import generators, lab, series
from qseries.core.results import FAIL, PASS, SKIP, Result
from qseries.ground.errors import SeriesFileError
from qseries.labs.vfio_migration.plan import VersionPlan, plan_of
from qseries.pipeline.stages import _judge_control
from qseries.qemu import touched

from ..conftest import REPO, RunCli

LABLESS = """\
schema: 2
{lab}
versions:
  v1:
    author: "A U Thor <author@example.org>"
    date: "2026-12-06T15:00:00+00:00"
    base: ">=10.2, <11"
    cover:
      subject: "qom: Say more"
      body: "Why."
    patches:
      - subject: "qom: Say more"
        body: "Why."
        changes:
          - kind: diff
            patch: change.diff
"""


def write(tmp_path: Path, lab_line: str = "") -> Path:
    (tmp_path / "change.diff").write_text("")
    path = tmp_path / "series.yaml"
    path.write_text(LABLESS.format(lab=lab_line))
    return path


def test_installed_labs_are_found_by_name() -> None:
    assert "vfio-migration" in lab.installed()
    found = lab.load("vfio-migration")
    assert found.name == "vfio-migration"
    assert "vfio-migration-notice" in found.kinds


def test_a_series_with_no_lab_has_none(tmp_path: Path) -> None:
    loaded = series.load(write(tmp_path), generators.specs())
    assert loaded.lab is None and loaded.schema == 2
    assert loaded.version(None).lab is None


@pytest.mark.parametrize("name", ["no-such-lab", "../vfio_migration", "Vfio"])
def test_an_unknown_lab_is_one_line_at_its_line(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, f"lab: {name!r}")
    with pytest.raises(SeriesFileError) as err:
        series.load(path, generators.specs())
    text = str(err.value)
    assert f"series.yaml:2: lab: no lab '{name}' in this installation" in text
    assert "installed: vfio-migration" in text and "\n" not in text


def test_a_lab_wants_its_keys_under_lab(tmp_path: Path) -> None:
    path = write(tmp_path, "lab: vfio-migration")
    with pytest.raises(
        SeriesFileError, match=r"versions.v1: missing required key 'lab'"
    ):
        series.load(path, generators.specs())


def test_the_vfio_series_names_its_lab_and_keeps_its_keys_there() -> None:
    loaded = series.load(REPO / "series.yaml", generators.specs())
    assert loaded.lab == "vfio-migration" and loaded.schema == 2
    for version in loaded.versions.values():
        assert isinstance(version.lab, VersionPlan)
    assert plan_of(loaded.version("v2")).wire.notice_state == "pre-copy-p2p-prepare"


def test_a_schema_the_loader_does_not_know_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.write_text(path.read_text().replace("schema: 2", "schema: 3"))
    with pytest.raises(SeriesFileError, match=r"series.yaml:1: schema: '3' is not"):
        series.load(path, generators.specs())


def test_an_option_of_a_lab_is_refused_for_a_series_with_none(
    run_cli: RunCli, tmp_path: Path
) -> None:
    path = write(tmp_path)
    for args in (["test", "--device", "kernel"], ["test", "--faults"]):
        proc = run_cli("--series-file", str(path), *args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "is an option of the vfio-migration lab" in lines[0]
        assert "has no lab" in lines[0]


def test_the_series_fixtures_have_no_lab() -> None:
    for name in ("qom-type-info", "yank-doc"):
        loaded = series.load(REPO / "series" / name / "series.yaml", generators.specs())
        assert loaded.lab is None, name


def test_the_control_fails_the_series_own_tests_and_passes_the_others() -> None:
    results = [
        Result("qtest-x86_64/new-test", FAIL, "error (exit -6)"),
        Result("qtest-x86_64/qmp-test", PASS, "4 cases"),
        Result("qtest-x86_64/changed-test", PASS, "3 cases"),
        Result("qtest-x86_64/skipped-test", SKIP, "skipped by the test"),
        Result("qtest-x86_64/broken-test", FAIL, "error"),
        Result("qtest-x86_64/unrun-test", FAIL, f"{touched.NOT_RUN} (exit 1, 0.1 s)"),
    ]
    own = {
        "qtest-x86_64/new-test",
        "qtest-x86_64/changed-test",
        "qtest-x86_64/skipped-test",
        "qtest-x86_64/unrun-test",
    }
    judged = {r.name: r for r in _judge_control(results, own)}
    assert judged["control qtest-x86_64/new-test"].status == PASS
    assert "fails without the change" in judged["control qtest-x86_64/new-test"].detail
    assert judged["control qtest-x86_64/qmp-test"].status == PASS
    assert judged["control qtest-x86_64/changed-test"].status == FAIL
    assert "proves nothing" in judged["control qtest-x86_64/changed-test"].detail
    assert judged["control qtest-x86_64/skipped-test"].status == FAIL
    assert judged["control qtest-x86_64/broken-test"].status == FAIL
    unrun = judged["control qtest-x86_64/unrun-test"]
    assert unrun.status == FAIL and unrun.detail.startswith(
        "did not run on the control"
    )


def test_a_series_file_of_before_labs_loads_with_the_lab_that_reads_them(
    tmp_path: Path,
) -> None:
    """schema 1 (no 'schema:'; this repository's series.yaml as it was
    on 2026-12-05): its versions hold the lab's keys, its generators have
    their names of then, and it loads as the lab that reads such files
    reads it, to the same patches and plans as today's file."""
    for sub in ("qapi", "hw", "mutations", "faults", "tests/qtest", "tests/fakevfio"):
        shutil.copytree(REPO / sub, tmp_path / sub)
    shutil.copy(
        REPO / "tests" / "fixtures" / "series-schema1.yaml", tmp_path / "series.yaml"
    )
    old = series.load(tmp_path / "series.yaml", generators.specs())
    assert old.lab == "vfio-migration" and old.schema == 1
    today = series.load(REPO / "series.yaml", generators.specs())
    for number, version in old.versions.items():
        assert plan_of(version) == plan_of(today.versions[number])
        assert [p.subject for p in version.patches] == [
            p.subject for p in today.versions[number].patches
        ]


def test_a_lab_whose_import_fails_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "qseries_labs_broken"
    monkeypatch.setattr(lab, "installed", lambda: ["broken-lab"])
    with pytest.raises(lab.UnknownLab, match=r"the lab 'broken-lab' does not load: "):
        lab.load("broken-lab")
    assert not broken.exists()


def test_tests_is_refused_for_a_series_of_a_lab(run_cli: RunCli) -> None:
    proc = run_cli("--series-file", str(REPO / "series.yaml"), "test", "--tests", "x")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "--tests is for a series with no lab" in line
