"""Which directory may be a work dir, its marker, and adopting an old one.

The checks run before qseries writes anything, so each refusal here is
also checked to leave the directory as it was.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import qseries
from qseries.ground import runs
from qseries.ground.errors import EXIT_FAILED, EXIT_USAGE, UsageError
from qseries.ground.workdir import (
    ADOPTABLE,
    MADE,
    MARKER_NAME,
    WorkDir,
    WorkDirRefused,
    check_output,
    check_workdir,
    prepare,
)
from qseries.pipeline import clean

from ..conftest import REPO

# What the default work dir of the machine the marker was written on,
# ~/.cache/qseries, held from the qseries before it: it must be adopted.
OLD_CACHE = (
    "apt",
    "bench",
    "build",
    "cache",
    "debian",
    "home",
    "lock",
    "logs",
    "reports",
    "runs",
    "tmp",
    "trees",
    "work",
)


def listing(root: Path) -> list[tuple[str, int]]:
    """Every path under root with its size: what a refusal must not change."""
    return sorted(
        (str(p.relative_to(root)), p.lstat().st_size) for p in root.rglob("*")
    )


def test_a_new_directory_is_made_and_marked(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    check_workdir(root)
    said: list[str] = []
    prepare(root, said.append)
    assert os.listdir(root) == [MARKER_NAME]
    assert "qseries work dir" in (root / MARKER_NAME).read_text()
    assert said == []


def test_an_empty_directory_is_marked(tmp_path: Path) -> None:
    check_workdir(tmp_path)
    said: list[str] = []
    prepare(tmp_path, said.append)
    assert os.listdir(tmp_path) == [MARKER_NAME]
    assert said == []


def test_a_work_dir_of_an_older_qseries_is_adopted(tmp_path: Path) -> None:
    for name in OLD_CACHE:
        (tmp_path / name).mkdir()
    # The lock is a file, the run's command in it.
    (tmp_path / "lock").rmdir()
    (tmp_path / "lock").write_text("qseries build\n")
    before = listing(tmp_path)
    check_workdir(tmp_path)
    assert listing(tmp_path) == before
    said: list[str] = []
    prepare(tmp_path, said.append)
    assert said == [
        f"adopted {tmp_path} as a work dir: it holds only what qseries makes"
    ]
    assert (tmp_path / MARKER_NAME).is_file()
    # Marked, it is a work dir whatever it holds, and is not adopted again.
    (tmp_path / "notes.txt").write_text("mine\n")
    check_workdir(tmp_path)
    prepare(tmp_path, said.append)
    assert len(said) == 1


def test_names_qseries_makes_without_its_lock_are_refused(tmp_path: Path) -> None:
    """build/ and tmp/ are anyone's names: without the lock file every
    older qseries run wrote, the directory is not adopted (`clean --all`
    would remove that build/)."""
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "main.o").write_text("the user's\n")
    (tmp_path / "tmp").mkdir()
    before = listing(tmp_path)
    with pytest.raises(WorkDirRefused) as err:
        check_workdir(tmp_path)
    assert err.value.exit_code == EXIT_USAGE
    assert err.value.message == (
        f"the work dir {tmp_path} is not a qseries work dir: it is not empty and "
        f"has no {MARKER_NAME}, nor the lock file of an older qseries "
        "(it holds build, tmp)"
    )
    assert listing(tmp_path) == before
    # A directory named lock is not the lock file either.
    (tmp_path / "lock").mkdir()
    with pytest.raises(WorkDirRefused):
        check_workdir(tmp_path)
    assert not (tmp_path / MARKER_NAME).exists()


def test_everything_qseries_makes_is_adoptable() -> None:
    assert set(MADE) | set(clean.KEEP_ALWAYS) | {runs.RUNS_DIR} <= ADOPTABLE


def test_lost_and_found_alone_is_an_empty_file_system(tmp_path: Path) -> None:
    (tmp_path / "lost+found").mkdir()
    check_workdir(tmp_path)
    said: list[str] = []
    prepare(tmp_path, said.append)
    assert (tmp_path / MARKER_NAME).is_file()
    assert said == []


def test_a_directory_with_other_files_is_refused_untouched(tmp_path: Path) -> None:
    (tmp_path / "trees").mkdir()
    (tmp_path / "README.md").write_text("a project\n")
    (tmp_path / "src").mkdir()
    before = listing(tmp_path)
    with pytest.raises(WorkDirRefused) as err:
        check_workdir(tmp_path)
    assert err.value.exit_code == EXIT_USAGE
    assert "(it holds README.md, src)" in err.value.message
    assert "trees" not in err.value.message
    assert listing(tmp_path) == before


def test_the_qseries_checkout_is_refused() -> None:
    with pytest.raises(WorkDirRefused, match="is not a qseries work dir"):
        check_workdir(REPO)


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/", "is the root directory"),
        ("/proc/self", "is under /proc, a kernel file system"),
        ("/sys/kernel/qseries", "is under /sys, a kernel file system"),
        ("/dev/shm/qseries", "is under /dev, a kernel file system"),
    ],
)
def test_system_places_are_refused(path: str, says: str) -> None:
    with pytest.raises(WorkDirRefused, match=says):
        check_workdir(Path(path))


def test_a_symbolic_link_to_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").symlink_to("/")
    with pytest.raises(WorkDirRefused, match="is the root directory"):
        check_workdir(tmp_path / "root")


@pytest.mark.parametrize("where", ["loop", "loop/work"])
def test_a_symbolic_link_loop_is_refused(tmp_path: Path, where: str) -> None:
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(WorkDirRefused, match="loop of symbolic links"):
        check_workdir(tmp_path / where)


def test_a_name_too_long_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkDirRefused, match="a name of 300 characters"):
        check_workdir(tmp_path / ("w" * 300) / "work")
    deep = tmp_path.joinpath(*["d" * 200] * 25)
    with pytest.raises(WorkDirRefused, match="too long for Linux"):
        check_workdir(deep)
    assert os.listdir(tmp_path) == []


def test_the_tree_and_what_is_inside_it_are_refused(tmp_path: Path) -> None:
    tree = tmp_path / "qemu"
    (tree / "hw").mkdir(parents=True)
    trees = [("--tree", tree)]
    with pytest.raises(
        WorkDirRefused, match=r"qemu is --tree .*qemu; keep the work dir"
    ):
        check_workdir(tree, trees)
    with pytest.raises(WorkDirRefused, match="is inside --tree"):
        check_workdir(tree / "hw" / "work", trees)
    # A symbolic link from elsewhere into the tree is the tree.
    (tmp_path / "link").symlink_to(tree / "hw")
    with pytest.raises(WorkDirRefused, match="is inside --tree"):
        check_workdir(tmp_path / "link" / "work", trees)
    with pytest.raises(WorkDirRefused, match="is inside --repo"):
        check_workdir(tree / "w", [("--repo", tree)])
    check_workdir(tmp_path / "work", trees)
    assert not (tree / "hw" / "work").exists()


def test_output_inside_the_work_dir_or_a_tree_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    base = work / "trees" / "debian-1_10.2.2+ds-1"
    base.mkdir(parents=True)
    tree = tmp_path / "qemu"
    tree.mkdir()
    trees = [("--tree", tree)]
    for output in (work, work / "out", base / "patches"):
        with pytest.raises(WorkDirRefused, match="is inside the work dir") as err:
            check_output(output, work, trees)
        assert err.value.exit_code == EXIT_USAGE
    with pytest.raises(WorkDirRefused, match="is inside --tree"):
        check_output(tree / "patches", work, trees)
    (tmp_path / "link").symlink_to(base)
    with pytest.raises(WorkDirRefused, match="is inside the work dir"):
        check_output(tmp_path / "link" / "v1", work, trees)
    check_output(tmp_path / "patches", work, trees)
    check_output(None, work, trees)


def test_an_empty_workdir_option_is_refused_an_empty_variable_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QSERIES_WORKDIR", str(tmp_path / "w"))
    with pytest.raises(UsageError, match="--workdir is empty"):
        WorkDir.default("")
    monkeypatch.setenv("QSERIES_WORKDIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert WorkDir.default(None).path == tmp_path / "cache" / "qseries"


NAMESPACE = ("unshare", "--mount", "--propagation", "private")
# In a mount namespace of its own, on a 16 KB tmpfs that a file filled:
# making a work dir there, then taking the lock of one marked before.
FULL_DISK = """
import os, sys
from pathlib import Path
from qseries.ground.workdir import WorkDirError, WorkDirLock, prepare
disk = Path(sys.argv[1])
try:
    prepare(disk / "new" / "work")
except WorkDirError as err:
    print(err.exit_code, err)
print(sorted(os.listdir(disk)))
try:
    prepare(disk / "old")
except WorkDirError as err:
    print(err.exit_code, err)
print(sorted(os.listdir(disk / "old")))
try:
    WorkDirLock(disk / "marked", "qseries test").acquire(wait=False)
except WorkDirError as err:
    print(err.exit_code, err)
"""


def test_a_full_disk_is_named_and_leaves_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("mounting a tmpfs needs root (CI runs this as root)")
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is not installed")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        'mount -t tmpfs -o size=16k tmpfs "$1" && mkdir "$1/marked"'
        ' && touch "$1/marked/.qseries-workdir" && mkdir -p "$1/old/trees"'
        ' && { cat /dev/zero >"$1/fill" 2>/dev/null; exec "$2" -c "$3" "$1"; }'
    )
    proc = subprocess.run(
        [*NAMESPACE, "sh", "-c", script, "sh", str(disk), sys.executable, FULL_DISK],
        capture_output=True,
        text=True,
        check=False,
        # The qseries under test, wherever it was imported from.
        env={**os.environ, "PYTHONPATH": str(Path(qseries.__file__).parent.parent)},
    )
    assert proc.returncode == 0, proc.stderr
    made, left, marked, old, lock = proc.stdout.splitlines()
    assert made == (
        f"{EXIT_FAILED} cannot make the work dir {disk}/new/work: No space left "
        "on device; free some space there, or pass --workdir DIR on a disk "
        "with room"
    )
    assert left == "['fill', 'marked', 'old']"  # new/work went again
    assert marked.startswith(f"{EXIT_FAILED} cannot mark the work dir {disk}/old: ")
    assert old == "['trees']"  # no marker cut short
    assert lock.startswith(
        f"{EXIT_FAILED} cannot write the lock {disk}/marked/lock: No space left"
    )
