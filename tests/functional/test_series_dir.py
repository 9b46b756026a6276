"""-C SERIESDIR: the series of another directory, as git -C runs there."""

from __future__ import annotations

from pathlib import Path

from ..conftest import RunCli, copy_series


def patches(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.patch"))
    }


def test_dash_c_takes_the_series_of_that_directory(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    series = copy_series(tmp_path / "series")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tree = ("--tree", str(mini_tree))
    by_file, by_dir = tmp_path / "by-file", tmp_path / "by-dir"
    proc = run_cli(
        "--series-file", str(series), "generate", "--series", "v1", *tree,
        "--output", str(by_file), cwd=elsewhere,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        "-C", str(series.parent), "generate", "--series", "v1", *tree,
        "--output", str(by_dir), cwd=elsewhere,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert patches(by_dir) and patches(by_dir) == patches(by_file)
    assert not list(elsewhere.iterdir())


def test_dash_c_with_a_relative_series_file(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    """A relative --series-file is taken from SERIESDIR, not from the
    directory qseries runs in."""
    series = copy_series(tmp_path / "series")
    series.rename(series.with_name("other.yaml"))
    args = ("generate", "--series", "v1", "--tree", str(mini_tree))
    out = tmp_path / "out"
    proc = run_cli(
        "-C", str(series.parent), "--series-file", "other.yaml", *args,
        "--output", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert patches(out)
    proc = run_cli("--series-file", "other.yaml", *args, cwd=series.parent.parent)
    assert proc.returncode == 2, proc.stderr
    assert "other.yaml" in proc.stderr


def test_dash_c_needs_a_directory(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for given in (tmp_path / "missing", tmp_path / "file"):
        proc = run_cli("-C", str(given), "generate", cwd=tmp_path)
        assert proc.returncode == 2
        assert f"'{given}' is not a directory" in proc.stderr
        assert "Traceback" not in proc.stderr
