"""The diff kind through generate: hunks applied with git onto the
patch's index (a new file, a deleted one, a binary one), a later change
reading what the diff wrote, and a moved base named by patch, file and
hunk."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..conftest import RunCli, git

BINARY = bytes(range(256)) * 4
LONG = "".join(f"line {i}\n" for i in range(1, 41))

SERIES = """\
schema: 2
versions:
  v1:
    author: "A U Thor <author@example.org>"
    date: "2026-01-02T03:04:05+00:00"
    target: "10.2"
    cover:
      subject: "misc: Carry a diff"
      body: "Cover text."
    patches:
      - subject: "misc: Apply the hunks and edit their new file"
        body: "Body."
        changes:
          - kind: diff
            patch: hunks.diff
          - kind: c-edit
            file: other/new.c
            function: answer
            replace: "return 41;"
            code: "    return 42;\\n"
          - kind: carry
            file: other/gone.txt
            mode: delete
"""


def base_tree(mini_tree: Path) -> Path:
    """The small checkout with a file to delete and a binary one."""
    (mini_tree / "other").mkdir()
    (mini_tree / "other" / "old.txt").write_text("to be deleted\n")
    (mini_tree / "other" / "gone.txt").write_text("deleted by carry\n")
    (mini_tree / "other" / "long.txt").write_text(LONG)
    (mini_tree / "other" / "logo.bin").write_bytes(BINARY)
    git(mini_tree, "add", "-A")
    git(mini_tree, "commit", "-q", "-m", "more files")
    return mini_tree


def make_series(tmp_path: Path, tree: Path) -> Path:
    """series.yaml and hunks.diff, made by git from edits of a clone."""
    edited = tmp_path / "edited"
    shutil.copytree(tree, edited)
    maint = edited / "MAINTAINERS"
    maint.write_text(maint.read_text().replace("F: other/\n", "F: other/\nF: more/\n"))
    (edited / "other" / "old.txt").unlink()
    (edited / "other" / "new.c").write_text("int answer(void)\n{\n    return 41;\n}\n")
    (edited / "other" / "logo.bin").write_bytes(BINARY[::-1])
    # Two hunks far apart in one file.
    long = edited / "other" / "long.txt"
    long.write_text(
        LONG.replace("line 2\n", "line two\n").replace("line 38\n", "line 38b\n")
    )
    git(edited, "add", "-A")
    diff = git(edited, "diff", "--cached", "--binary", "--full-index")
    assert "GIT binary patch" in diff and "deleted file mode" in diff
    root = tmp_path / "series"
    root.mkdir()
    (root / "hunks.diff").write_text(diff + "\n")
    (root / "series.yaml").write_text(SERIES)
    return root / "series.yaml"


def generate(run_cli: RunCli, series: Path, tree: Path, out: Path):  # type: ignore[no-untyped-def]
    return run_cli(
        "--series-file",
        str(series),
        "generate",
        "--series",
        "v1",
        "--tree",
        str(tree),
        "--output",
        str(out),
    )


def tip_file(workdir: Path, path: str) -> bytes | None:
    """path in the generated commit (refs/qseries/v1 of the work dir's
    clone of the tree), None if it has none."""
    (clone,) = (workdir / "trees").glob("tree-*")
    ran = subprocess.run(
        ["git", "-C", str(clone), "show", f"refs/qseries/v1:{path}"],
        capture_output=True,
        check=False,
    )
    return ran.stdout if ran.returncode == 0 else None


def test_hunks_applied_with_git_and_read_by_the_next_change(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    tree = base_tree(mini_tree)
    series = make_series(tmp_path, tree)
    proc = generate(run_cli, series, tree, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    work = tmp_path / "work"
    assert tip_file(work, "other/old.txt") is None
    assert tip_file(work, "other/gone.txt") is None
    assert (
        tip_file(work, "other/long.txt")
        == LONG.replace("line 2\n", "line two\n")
        .replace("line 38\n", "line 38b\n")
        .encode()
    )
    assert tip_file(work, "other/logo.bin") == BINARY[::-1]
    assert tip_file(work, "other/new.c") == b"int answer(void)\n{\n    return 42;\n}\n"
    assert b"F: other/\nF: more/\n" in (tip_file(work, "MAINTAINERS") or b"")
    (mail,) = (tmp_path / "out" / "v1").glob("v1-0001-*.patch")
    text = mail.read_text()
    assert text.count("deleted file mode 100644") == 2
    assert "+    return 42;" in text and "return 41" not in text
    # The binary hunk is mailed as it is, so that git am of the mails
    # rebuilds the same file.
    assert "GIT binary patch" in text
    clone = tmp_path / "am"
    git(tmp_path, "clone", "-q", str(tree), str(clone))
    git(
        clone,
        "am",
        "-q",
        *map(str, sorted((tmp_path / "out" / "v1").glob("v1-000[1-9]-*"))),
    )
    assert (clone / "other" / "logo.bin").read_bytes() == BINARY[::-1]


def test_a_moved_base_names_the_patch_file_and_hunk(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    tree = base_tree(mini_tree)
    series = make_series(tmp_path, tree)
    # The base moves on: the lines around the second hunk of long.txt are
    # not what they were.
    long = tree / "other" / "long.txt"
    long.write_text(LONG.replace("line 37\n", "line 37 moved\n"))
    git(tree, "commit", "-q", "-am", "moved")
    proc = generate(run_cli, series, tree, tmp_path / "out")
    assert proc.returncode == 1, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, proc.stderr
    diff = (series.parent / "hunks.diff").read_text()
    section = diff[diff.index("diff --git a/other/long.txt") :]
    section = section.split("\ndiff --git")[0]
    hunks = [
        ln.split(" @@")[0] + " @@"
        for ln in section.splitlines()
        if ln.startswith("@@ ")
    ]
    assert len(hunks) == 2 and hunks[1].startswith("@@ -35,"), hunks
    assert (
        "qseries: error: patch 1/1 'misc: Apply the hunks and edit their new "
        f"file': other/long.txt: hunk {hunks[1]} does not apply on QEMU 10.2.50"
    ) in errors[0], errors[0]
    assert "Traceback" not in proc.stderr


def test_a_deleted_file_the_base_lacks(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    tree = base_tree(mini_tree)
    series = make_series(tmp_path, tree)
    git(tree, "rm", "-q", "other/old.txt")
    git(tree, "commit", "-q", "-m", "gone already")
    proc = generate(run_cli, series, tree, tmp_path / "out")
    assert proc.returncode == 1, proc.stderr
    assert "other/old.txt: is changed by the patch but the base has no such file" in (
        proc.stderr
    ), proc.stderr
