"""The import bench (pipeline/importbench.py) on the small checkout with
a few more C files: each size's import, generate, git format-patch and
git am are timed, and the goal line is given.  About 10 s."""

from __future__ import annotations

from pathlib import Path

from qseries.ground.workdir import WorkDir
from qseries.pipeline import importbench
from qseries.qemu.source import tree_base

from ..conftest import git


def test_the_import_figures_for_each_size(mini_tree: Path, tmp_path: Path) -> None:
    for k in range(4):
        (mini_tree / "util").mkdir(exist_ok=True)
        (mini_tree / "util" / f"f{k}.c").write_text(f"int f{k}(void);\n")
    git(mini_tree, "add", "-A")
    git(mini_tree, "commit", "-q", "-m", "more C files")
    workdir = WorkDir(tmp_path / "work")
    base = tree_base(workdir, mini_tree)
    figures = importbench.run(base, workdir, sizes=(2, 4))
    for n in (2, 4):
        for key in ("import", "import_generate", "git_format_patch", "git_am"):
            assert float(figures[f"{key}_k{n}_s"]) > 0, key
        per = float(figures[f"import_generate_k{n}_s"]) / n
        assert abs(float(figures[f"import_generate_k{n}_per_patch_s"]) - per) < 0.002
    assert figures["import_generate_s"] == figures["import_generate_k4_s"]
    assert float(figures["import_per_patch_ratio"]) > 0
    assert str(figures["import_goal"]).startswith(
        "import + generate of 4 patches <= 5 s: "
    )
    # Nothing is left in the work dir's scratch.
    assert not list((tmp_path / "work" / "tmp").glob("bench-import-*"))
