"""A series that rewrites QEMU's checkers cannot forge its check.

The issue's thread: v1 as mailed, whose patch 3 also rewrites
scripts/checkpatch.pl (a clean summary, and a file touched on the way),
scripts/get_maintainer.pl (a made-up maintainer) and scripts/qapi (a
file touched on import), and adds a line with trailing whitespace.
`check --tree T --mbox` must give the verdicts of the base's own
scripts, never run the series' copies, and name the change.

The tree is the small QEMU-like one with the real checkpatch.pl,
get_maintainer.pl and QAPI code of Debian's QEMU, and the files they
look for at the top of a QEMU tree.
"""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qseries.core.results import PASS
from qseries.ground.workdir import WorkDir
from qseries.labs.vfio_migration.qapicheck import NoticeJudge
from qseries.qemu import check

from ..conftest import FIXTURES, RunCli, git
from .test_check_mbox import generated, threaded, write_mbox
from .test_check_qapi import SERIES, schema_tree

pytestmark = pytest.mark.qemu

FORGED_NAME = "Forged Maintainer <forged@evil.example>"
# What checkpatch.pl and get_maintainer.pl look for at a tree's top.
TOP_FILES = ("COPYING", "Makefile", "README.rst")
TOP_DIRS = ("docs", "linux-user", "system")


def tree_with_checkers(base_root: Path, dest: Path) -> Path:
    shutil.copytree(FIXTURES / "qemu-mini", dest)
    scripts = dest / "scripts"
    scripts.mkdir()
    for name in ("checkpatch.pl", "get_maintainer.pl", "qapi-gen.py"):
        shutil.copy(base_root / "scripts" / name, scripts)
    shutil.copytree(
        base_root / "scripts" / "qapi",
        scripts / "qapi",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in TOP_FILES:
        (dest / name).write_text(f"{name} of a small QEMU-like tree\n")
    for name in TOP_DIRS:
        (dest / name).mkdir()
        (dest / name / "README").write_text("kept\n")
    git(dest, "init", "-q", "-b", "master")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "base")
    return dest


def perl_forgery(touched: Path, prints: str) -> str:
    """Lines that make a perl script print `prints`, touch a file and
    stop before its own code runs."""
    return (
        "BEGIN {\n"
        f"\topen(my $t, '>', '{touched}') and close($t);\n"
        f'\tprint "{prints}\\n";\n'
        "\texit 0;\n"
        "}\n"
    )


def forged_diff(tree: Path, touched: Path) -> str:
    """The diff of the forged checkers, made in tree and undone there."""
    checkpatch = tree / "scripts" / "checkpatch.pl"
    lines = checkpatch.read_text().split("\n", 1)
    forgery = perl_forgery(
        touched / "checkpatch-ran", "total: 0 errors, 0 warnings, 1 lines checked"
    )
    # The error the real checkpatch.pl must find: trailing whitespace.
    forgery = forgery.replace("exit 0;\n", "exit 0; \n")
    checkpatch.write_text(lines[0] + "\n" + forgery + lines[1])
    maintainer = tree / "scripts" / "get_maintainer.pl"
    lines = maintainer.read_text().split("\n", 1)
    forged = FORGED_NAME.replace("@", "\\@")
    forgery = perl_forgery(touched / "get-maintainer-ran", forged)
    maintainer.write_text(lines[0] + "\n" + forgery + lines[1])
    init = tree / "scripts" / "qapi" / "__init__.py"
    init.write_text(
        init.read_text() + f"open({str(touched / 'qapi-ran')!r}, 'w').close()\n"
    )
    diff = git(tree, "diff")
    git(tree, "checkout", "--", ".")
    assert git(tree, "status", "--porcelain") == ""
    return diff


def test_forged_checkers_never_run(
    run_cli: RunCli, real_base: dict[str, object], tmp_path: Path
) -> None:
    tree = tree_with_checkers(Path(str(real_base["root"])), tmp_path / "qemu")
    work = tmp_path / "work"
    cover, p1, p2, p3 = threaded(generated(run_cli, tree, tmp_path / "out", "v1"), "v1")
    touched = tmp_path / "touched"
    touched.mkdir()
    evil = p3.rstrip("\n") + "\n" + forged_diff(tree, touched)
    mbox = write_mbox(tmp_path, [cover, p1, p2, evil])

    proc = run_cli(
        "check", "--json", "--tree", str(tree), "--mbox", str(mbox), workdir=work
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1, proc.stderr
    results = {r["name"]: r for r in json.loads(proc.stdout)["results"]}
    assert results["apply"]["status"] == "pass", results["apply"]
    assert sorted(p.name for p in touched.iterdir()) == []

    name = "patch 3/3 'tests/qtest: Add vfio-migration-prepare-test'"
    # checkpatch: the base's verdict on the whitespace the forgery adds.
    checkpatch = results["checkpatch"]
    assert checkpatch["status"] == "fail", checkpatch
    assert checkpatch["detail"] == "1 patch(es) not clean"
    assert any("trailing whitespace" in i for i in checkpatch["items"]), checkpatch
    assert checkpatch["items"][-1] == (
        f"{name} changes scripts/checkpatch.pl: "
        "checked with the base's copy, not the series'"
    )
    # maintainers: the base's get_maintainer.pl and MAINTAINERS, which the
    # mails' To/Cc were made with.
    maintainers = results["maintainers"]
    assert maintainers["status"] == "pass", maintainers
    assert "maintainer@example.org" in "\n".join(maintainers["items"])
    assert "forged@" not in proc.stdout
    assert maintainers["items"][-1] == (
        f"{name} changes scripts/get_maintainer.pl: "
        "checked with the base's copy, not the series'"
    )
    # qapi: the base's code (the small tree has no qapi-schema.json).
    assert results["qapi"]["items"][-1] == (
        f"{name} changes scripts/qapi/__init__.py: "
        "checked with the base's copy, not the series'"
    )


def test_which_files_are_checkers() -> None:
    for path in (
        "scripts/checkpatch.pl",
        "scripts/get_maintainer.pl",
        ".get_maintainer.conf",
        "scripts/qapi-gen.py",
        "scripts/qapi/schema.py",
        "scripts/qapi/backend/new.py",
    ):
        assert check.is_checker(path), path
    for path in (
        "MAINTAINERS",
        "scripts/checkpatch.pl.orig",
        "scripts/qapi-gen.pyc",
        "scripts/qapi",
        "scripts/qapi/../../MAINTAINERS",
        "tests/scripts/checkpatch.pl",
        "qapi/vfio.json",
        "hw/vfio/migration.c",
    ):
        assert not check.is_checker(path), path


def test_the_paths_a_diff_changes() -> None:
    body = (
        "Subject: x\n\n"
        "--- a/scripts/checkpatch.pl, in words before the diff\n"
        "diff --git a/scripts/checkpatch.pl b/scripts/checkpatch.pl\n"
        "--- a/scripts/checkpatch.pl\n"
        "+++ b/scripts/checkpatch.pl\n"
        "@@ -1 +1 @@\n"
        "-x\n"
        "+y\n"
        "diff --git a/old.py b/scripts/qapi/x.py\n"
        "similarity index 90%\n"
        "rename from old.py\n"
        "rename to scripts/qapi/x.py\n"
        "--- a/with space.c\t\n"
        'diff --git "a/docs/caf\\303\\251" "b/docs/caf\\303\\251"\n'
        "new file mode 100644\n"
        "--- /dev/null\n"
        '+++ "b/docs/caf\\303\\251"\n'
    )
    assert check.changed_paths(body) == {
        "scripts/checkpatch.pl",
        "old.py",
        "scripts/qapi/x.py",
        "docs/café",
        "with space.c",
    }


def test_bytecode_beside_the_base_code_is_never_run(
    real_base: dict[str, object], tmp_path: Path
) -> None:
    """Python runs a __pycache__ file in place of its source when the
    source's mtime and size match: one planted beside the base's QAPI
    code (by a build of the series, say) must not run in the check."""
    root = Path(str(real_base["root"]))
    tree = schema_tree(root, tmp_path, "v1")
    code = tmp_path / "base"
    shutil.copytree(
        root / "scripts" / "qapi",
        code / "scripts" / "qapi",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(root / "scripts" / "qapi-gen.py", code / "scripts")
    source = code / "scripts" / "qapi" / "common.py"
    real = source.read_bytes()
    touched = tmp_path / "bytecode-ran"
    forged = f"open({str(touched)!r}, 'w').close()\n".encode()
    source.write_bytes(forged + b"#" * (len(real) - len(forged) - 1) + b"\n")
    planted = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(source), cfile=str(planted), doraise=True)
    mtime = source.stat().st_mtime_ns
    source.write_bytes(real)
    os.utime(source, ns=(mtime, mtime))
    # The planted file is run by a plain import of the base's code.
    subprocess.run(
        [sys.executable, "-c", "import qapi.common"],
        cwd=code / "scripts",
        check=True,
    )
    assert touched.exists()
    touched.unlink()

    result = check.check_qapi(
        tree,
        SERIES.version("v1"),
        WorkDir(tmp_path / "work"),
        code=code,
        judge=NoticeJudge(),
    )
    assert result.status == PASS, result
    assert not touched.exists()
    assert [p.name for p in planted.parent.iterdir()] == [planted.name]
