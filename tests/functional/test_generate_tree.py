"""generate and source on a small QEMU-like checkout given with --tree."""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import REPO, RunCli, git, tree_snapshot


def generate(run_cli: RunCli, tree: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return run_cli(
        "generate", "--series", "v1", "--tree", str(tree), "--output", str(out), *extra
    )


def test_generate_is_byte_identical_and_leaves_tree_alone(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    before = tree_snapshot(mini_tree)
    out = tmp_path / "out"
    first = generate(run_cli, mini_tree, out)
    assert first.returncode == 0, first.stderr
    files = sorted((out / "v1").iterdir())
    assert [f.name for f in files] == [
        "v1-0000-cover-letter.patch",
        "v1-0001-qapi-vfio-Add-VFIO_MIGRATION_PREPARE-event.patch",
        "v1-0002-vfio-migration-Emit-VFIO_MIGRATION_PREPARE-before.patch",
        "v1-0003-tests-qtest-Add-vfio-migration-prepare-test.patch",
    ]
    data = {f.name: f.read_bytes() for f in files}
    second = generate(run_cli, mini_tree, out)
    assert second.returncode == 0, second.stderr
    assert "is up to date" in second.stdout
    assert {f.name: f.read_bytes() for f in (out / "v1").iterdir()} == data
    assert tree_snapshot(mini_tree) == before

    patch = data[
        "v1-0002-vfio-migration-Emit-VFIO_MIGRATION_PREPARE-before.patch"
    ].decode()
    assert patch.startswith("From 0000000000000000000000000000000000000000 ")
    assert (
        "Subject: [PATCH v1 2/3] vfio/migration: Emit VFIO_MIGRATION_PREPARE" in patch
    )
    assert "Date: Fri, 27 Nov 2026 09:00:00 +0000" in patch
    assert "\nSigned-off-by: qseries developers <qseries-devel@example.org>\n" in patch
    assert "+    vfio_migration_send_event(vbasedev, new_state, true);" in patch
    cover = data["v1-0000-cover-letter.patch"].decode()
    assert "*** SUBJECT HERE ***" not in cover and "*** BLURB HERE ***" not in cover
    assert "Subject: [PATCH v1 0/3] vfio/migration: Announce" in cover
    assert "\nBased on QEMU 10.2.50, git " in cover
    # A git base is named by its commit too, for b4 and patchew.
    assert "\nbase-commit: " in cover


def test_generate_json(run_cli: RunCli, mini_tree: Path, tmp_path: Path) -> None:
    proc = generate(run_cli, mini_tree, tmp_path / "out", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["version"] == "v1"
    assert data["base"]["kind"] == "tree"
    assert data["base"]["version"] == "10.2.50"
    assert len(data["files"]) == 4


def test_dirty_tree_is_refused_and_untouched(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    migration = mini_tree / "hw" / "vfio" / "migration.c"
    migration.write_text(migration.read_text() + "/* local change */\n")
    git(mini_tree, "add", "VERSION")  # the index must survive too
    (mini_tree / "VERSION").write_text("10.2.51\n")
    git(mini_tree, "stash", "list")
    before = tree_snapshot(mini_tree)
    proc = generate(run_cli, mini_tree, tmp_path / "out")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "has uncommitted changes" in lines[0]
    assert "Traceback" not in proc.stderr
    assert tree_snapshot(mini_tree) == before
    assert not (tmp_path / "out").exists()


def test_not_a_checkout(run_cli: RunCli, tmp_path: Path) -> None:
    # Not tmp_path itself: the work dir, tmp_path/work, is never in a --tree.
    (tmp_path / "plain").mkdir()
    proc = run_cli("source", "--tree", str(tmp_path / "plain"))
    assert proc.returncode == 2
    assert "is not a git checkout" in proc.stderr


def test_missing_anchor_is_one_line_and_writes_nothing(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    migration = mini_tree / "hw" / "vfio" / "migration.c"
    migration.write_text(
        migration.read_text().replace("int vfio_migration_set_state(", "int vfio_set(")
    )
    git(mini_tree, "commit", "-q", "-am", "rename")
    proc = generate(run_cli, mini_tree, tmp_path / "out")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("qseries: error: hw/vfio/migration.c of QEMU 10.2.50")
    assert "vfio_migration_set_state()" in lines[-1]
    assert all(line.startswith("qseries: ") for line in lines)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "v1").exists()


def test_template_error_is_one_line_exit_2(
    run_cli: RunCli, mini_tree: Path, series_copy: Path, tmp_path: Path
) -> None:
    template = series_copy.parent / "hw" / "vfio" / "migration-v1.c.j2"
    template.write_text(template.read_text().replace("{{ new_state }}", "{{ nope }}"))
    proc = run_cli(
        "--series-file",
        str(series_copy),
        "generate",
        "--series",
        "v1",
        "--tree",
        str(mini_tree),
        "--output",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"qseries: error: {template}:")
    assert "'nope' is undefined" in last


def test_debug_shows_traceback(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    proc = run_cli("--debug", "source", "--tree", str(tmp_path / "plain"))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert "is not a git checkout" in proc.stderr


def test_source_json_for_tree(run_cli: RunCli, mini_tree: Path) -> None:
    proc = run_cli("source", "--tree", str(mini_tree), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["commit"] == git(mini_tree, "rev-parse", "HEAD").strip()
    assert Path(data["root"]) != mini_tree
    assert (Path(data["root"]) / "VERSION").read_text() == "10.2.50\n"


def test_conflicting_base_options(run_cli: RunCli, mini_tree: Path) -> None:
    proc = run_cli("source", "--tree", str(mini_tree), "--base-version", "10.0")
    assert proc.returncode == 2
    assert "exclude each other" in proc.stderr


def test_repo_layout() -> None:
    for name in (
        "patches",
        "qapi",
        "hw",
        "scripts/qseries",
        "tests",
        "series.yaml",
        "README.md",
        "Makefile",
        ".ci/run",
    ):
        assert (REPO / name).exists(), name


def test_compose_control_and_series(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    from qseries.ground.workdir import WorkDir
    from qseries.qemu.build import compose
    from qseries.qemu.source import tree_base
    from qseries.qemu.testing import is_test_patch

    out = tmp_path / "out"
    assert generate(run_cli, mini_tree, out).returncode == 0
    patches = sorted(p for p in (out / "v1").glob("*.patch") if "-0000-" not in p.name)
    control = [p for p in patches if is_test_patch(p)]
    assert [p.name for p in control] == [
        "v1-0003-tests-qtest-Add-vfio-migration-prepare-test.patch"
    ]
    workdir = WorkDir(tmp_path / "work")
    base = tree_base(workdir, mini_tree)
    root = base.root

    def changed(commit: str) -> list[str]:
        return git(root, "diff", "--name-only", base.commit, commit).split()

    assert changed(compose(base, control, workdir)) == [
        "MAINTAINERS",
        "tests/qtest/meson.build",
        "tests/qtest/vfio-migration-prepare-test.c",
    ]
    full = compose(base, patches, workdir)
    assert "hw/vfio/migration.c" in changed(full)
    assert "qapi/vfio.json" in changed(full)
    assert compose(base, patches, workdir) == full  # the same commit again
    assert compose(base, [], workdir) == base.commit


def test_inherited_git_dir_cannot_touch_the_tree(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    # git exports GIT_DIR to hooks: qseries run from one must still leave
    # the user's repository alone.
    before = tree_snapshot(mini_tree)
    proc = run_cli(
        "generate",
        "--series",
        "v1",
        "--tree",
        str(mini_tree),
        "--output",
        str(tmp_path / "out"),
        env={"GIT_DIR": str(mini_tree / ".git"), "GIT_WORK_TREE": str(mini_tree)},
    )
    assert proc.returncode == 0, proc.stderr
    assert tree_snapshot(mini_tree) == before


def test_cover_names_the_commit_not_the_checkout(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert generate(run_cli, mini_tree, out).returncode == 0
    cover = (out / "v1" / "v1-0000-cover-letter.patch").read_text()
    head = git(mini_tree, "rev-parse", "HEAD").strip()
    assert f"\nBased on QEMU 10.2.50, git {head[:12]}\n" in cover
    assert f"\nbase-commit: {head}\n" in cover
    assert str(tmp_path) not in cover


def test_stale_worktree_is_made_anew(mini_tree: Path, tmp_path: Path) -> None:
    import shutil

    from qseries.ground.workdir import WorkDir
    from qseries.qemu.build import checkout
    from qseries.qemu.source import tree_base

    workdir = WorkDir(tmp_path / "work")
    base = tree_base(workdir, mini_tree)
    tree = checkout(base, base.commit, workdir)
    shutil.rmtree(base.root)  # the base repository is made anew
    base = tree_base(workdir, mini_tree)
    assert checkout(base, base.commit, workdir) == tree
    assert (tree / "VERSION").read_text() == "10.2.50\n"


def test_unreachable_mirror_is_one_clear_line(run_cli: RunCli) -> None:
    proc = run_cli(
        "source",
        "--refresh",
        env={"QSERIES_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"},
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("qseries: error: apt-get update failed")
    assert "check that http://127.0.0.1:9/debian is reachable" in last
    assert "Traceback" not in proc.stderr


def test_unwritable_output_is_one_line(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = generate(run_cli, mini_tree, blocker / "out")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"qseries: error: {blocker}")
