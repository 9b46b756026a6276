"""The work dir: trees that never start git's background gc, a run that
never walks a work dir inside the checkout, and `qseries clean`.

The Debian base comes from a local archive (tests/debian_archive.py)
through QSERIES_DEBIAN_MIRROR=file://ARCHIVE, as in test_moving_base.py.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from ..conftest import RunCli, copy_series, git
from ..debian_archive import Archive

GEN = "1:10.2.2+ds-1"
TRIXIE = "1:10.0.13+ds-0+deb13u1"


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    archive = Archive(tmp_path / "archive", tmp_path / "packages")
    archive.add(GEN)
    archive.add(TRIXIE)
    archive.publish({"sid": [GEN], "trixie": [TRIXIE]})
    return archive


def qseries(
    run_cli: RunCli, archive: Archive, series: Path, workdir: Path, *args: str
) -> tuple[int, str, str]:
    proc = run_cli(
        "--series-file",
        str(series),
        *args,
        workdir=workdir,
        env={"QSERIES_DEBIAN_MIRROR": archive.url},
    )
    return proc.returncode, proc.stdout, proc.stderr


def fetched_tree(
    run_cli: RunCli, archive: Archive, tmp_path: Path
) -> tuple[Path, Path]:
    """A copy of the series and the base tree `qseries source` made for it."""
    series = copy_series(tmp_path / "series")
    code, out, err = qseries(
        run_cli, archive, series, tmp_path / "w", "source", "--json"
    )
    assert code == 0, err
    return series, Path(json.loads(out)["root"])


def assert_no_gc(tree: Path) -> None:
    assert git(tree, "config", "--local", "gc.auto").strip() == "0"
    assert git(tree, "config", "--local", "maintenance.auto").strip() == "false"


def test_a_base_tree_is_packed_and_runs_no_gc(
    run_cli: RunCli, archive: Archive, tmp_path: Path
) -> None:
    _, tree = fetched_tree(run_cli, archive, tmp_path)
    assert_no_gc(tree)
    counts = dict(
        line.split(": ") for line in git(tree, "count-objects", "-v").splitlines()
    )
    assert counts["count"] == "0" and int(counts["in-pack"]) > 0, counts


def test_a_tree_of_an_older_qseries_gets_the_setting_on_its_next_use(
    run_cli: RunCli, archive: Archive, tmp_path: Path
) -> None:
    series, tree = fetched_tree(run_cli, archive, tmp_path)
    # As an older qseries left it: no setting, objects loose.
    git(tree, "config", "--local", "--unset", "gc.auto")
    git(tree, "config", "--local", "--unset", "maintenance.auto")
    git(tree, "commit", "-q", "--allow-empty", "-m", "loose")
    git(tree, "reset", "-q", "--hard", "HEAD~1")
    code, _, err = qseries(run_cli, archive, series, tmp_path / "w", "source")
    assert code == 0, err
    assert_no_gc(tree)


def test_check_with_the_work_dir_inside_the_checkout_while_it_changes(
    run_cli: RunCli, archive: Archive, tmp_path: Path
) -> None:
    """Directories come and go under the work dir (as git's gc makes them
    go under a tree's .git) during a real `qseries check`: it does not
    notice, as it never walks there."""
    checkout = tmp_path / "checkout"
    series = copy_series(checkout)
    workdir = checkout / ".work"
    code, _, err = qseries(
        run_cli, archive, series, workdir, "generate", "--series", "v2"
    )
    assert code == 0, err
    stop = threading.Event()
    rounds = [0]

    def churn() -> None:
        while not stop.is_set():
            for name in ("churn", "tmp/churn"):
                for i in range(200):
                    deep = workdir / name / str(i) / "a" / "b"
                    deep.mkdir(parents=True, exist_ok=True)
                    (deep / "f").write_text("x")
                shutil.rmtree(workdir / name, ignore_errors=True)
            rounds[0] += 1

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        code, out, err = qseries(
            run_cli, archive, series, workdir, "check", "--series", "v2", "--json"
        )
    finally:
        stop.set()
        thread.join()
    assert rounds[0] > 0, "the directories did change during the run"
    assert code in (0, 1) and out, err
    assert "No such file or directory" not in err
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert results["apply"]["status"] == "pass", results["apply"]
    assert results["fresh"]["status"] == "pass", results["fresh"]


def test_clean_through_the_cli(
    run_cli: RunCli, archive: Archive, tmp_path: Path
) -> None:
    series = copy_series(tmp_path / "series")
    work = tmp_path / "w"
    for version in (TRIXIE, GEN):
        code, _, err = qseries(
            run_cli, archive, series, work, "source", "--base-version", version
        )
        assert code == 0, err
    trees = sorted(p.name for p in (work / "trees").iterdir())
    assert len(trees) == 2
    older = f"debian-{TRIXIE.replace(':', '_')}"
    # A dry run says what would go, and removes nothing.
    code, out, err = qseries(
        run_cli, archive, series, work, "clean", "--keep-bases", "1", "--dry-run"
    )
    assert code == 0, err
    assert f"would remove {work / 'trees' / older} (" in out
    assert sorted(p.name for p in (work / "trees").iterdir()) == trees
    code, out, err = qseries(
        run_cli, archive, series, work, "clean", "--keep-bases", "1", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["dry_run"] is False
    paths = {r["path"] for r in data["removed"]}
    assert str(work / "trees" / older) in paths
    assert all(r["bytes"] > 0 and older in r["why"] for r in data["removed"])
    assert [p.name for p in (work / "trees").iterdir()] == [
        f"debian-{GEN.replace(':', '_')}"
    ]
    code, out, err = qseries(run_cli, archive, series, work, "clean", "--all")
    assert code == 0, err
    # The marker stays: the work dir is still one.
    left = sorted(p.name for p in work.iterdir())
    assert left in ([".qseries-workdir", "lock"], [".qseries-workdir", "lock", "runs"])


@pytest.mark.parametrize(
    "args",
    [
        ("clean", "--all", "--keep-bases", "1"),
        ("clean", "--keep-bases", "-1"),
        ("clean", "--keep-bases", "two"),
    ],
)
def test_clean_bad_usage_exits_2(
    run_cli: RunCli, tmp_path: Path, args: tuple[str, ...]
) -> None:
    proc = run_cli(*args, workdir=tmp_path / "w")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
