"""The import fixture on Debian's real QEMU: three commits made on the base
tree (a QAPI addition, a C change by another author, a new file with its
MAINTAINERS line), imported from the branch and from its mailed thread,
regenerated into the same mails, and checked with QEMU's own checkers.
About 60 s on 2 cores with the base tree in the work dir (check compiles
one file)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from ..conftest import RunCli, git, tree_snapshot
from .test_import import commit, mails, normal

pytestmark = pytest.mark.qemu

EVENT = """
##
# @X_IMPORT_NOTICE:
#
# Emitted when the import fixture says so.
#
# @reason: why it was emitted
#
# Since: 11.0
##
{ 'event': 'X_IMPORT_NOTICE',
  'data': { 'reason': 'str' } }
"""
ANCHOR = (
    "{ 'event': 'RTC_CHANGE',\n  'data': { 'offset': 'int', 'qom-path': 'str' } }\n"
)
PAGE = (
    ".. SPDX-License-Identifier: GPL-2.0-or-later\n\n"
    "Import fixture\n==============\n\nA page that exists only in the fixture.\n"
)


@pytest.fixture
def branch(real_base: dict[str, object], tmp_path: Path) -> tuple[Path, str]:
    """A checkout of the real base with the three commits on 'topic'."""
    tree = tmp_path / "qemu"
    # Shares the base's objects, read only; its own commits are its own.
    subprocess.run(
        ["git", "clone", "-q", "--shared", str(real_base["root"]), str(tree)],
        check=True,
    )
    base = git(tree, "rev-parse", "HEAD").strip()
    git(tree, "checkout", "-q", "-b", "topic")
    misc = tree / "qapi" / "misc.json"
    text = misc.read_text()
    assert ANCHOR in text
    misc.write_text(text.replace(ANCHOR, ANCHOR + EVENT))
    commit(
        tree,
        "qapi/misc: Add X_IMPORT_NOTICE event\n\n"
        "The import fixture needs an event of its own.\n\n"
        "Signed-off-by: Ada Lovelace <ada@example.org>",
    )
    c = tree / "monitor" / "qmp-cmds.c"
    quit_ = "void qmp_quit(Error **errp)\n{\n"
    assert quit_ in c.read_text()
    c.write_text(
        c.read_text().replace(
            quit_, quit_ + "    /* A quit ends the guest as a power-off would. */\n"
        )
    )
    commit(
        tree,
        "monitor: Say why quit powers off\n\n"
        "Signed-off-by: Grace Hopper <grace@example.org>\n"
        "Reviewed-by: Ada Lovelace <ada@example.org>\n"
        "Signed-off-by: Ada Lovelace <ada@example.org>",
        name="Grace Hopper",
        email="grace@example.org",
        date="2026-12-02T11:30:00-05:00",
    )
    (tree / "docs" / "devel" / "import-fixture.rst").write_text(PAGE)
    maintainers = tree / "MAINTAINERS"
    text = maintainers.read_text()
    assert "F: docs/devel/qapi*\n" in text
    maintainers.write_text(
        text.replace(
            "F: docs/devel/qapi*\n",
            "F: docs/devel/qapi*\nF: docs/devel/import-fixture.rst\n",
            1,
        )
    )
    git(tree, "add", "docs/devel/import-fixture.rst")
    commit(
        tree,
        "docs/devel: Add the import fixture's page\n\n"
        "A page that exists only in the fixture.\n\n"
        "Signed-off-by: Ada Lovelace <ada@example.org>",
        date="2026-12-03T08:00:00+00:00",
    )
    return tree, base


def as_generated(tree: Path, rng: str, out: Path) -> list[Path]:
    """git format-patch of the range with the options generate uses on
    QEMU's tree (its order file; the fixture has no binary hunk)."""
    return mails(tree, rng, out, "-Oscripts/git.orderfile", binary=False)


def thread_of(tree: Path, base: str, path: Path) -> Path:
    """The mbox of base..topic as git send-email would mail it."""
    path.write_text(
        git(
            tree,
            "format-patch",
            "--stdout",
            "--cover-letter",
            "--thread",
            f"--base={base}",
            f"{base}..topic",
        )
    )
    return path


def generated(
    run_cli: RunCli, workdir: Path, series: Path, out: Path, *tree: str
) -> list[Path]:
    proc = run_cli(
        "--series-file",
        str(series),
        "generate",
        "--output",
        str(out),
        *tree,
        workdir=workdir,
    )
    assert proc.returncode == 0, proc.stderr
    return sorted(p for p in (out / "v1").glob("*.patch") if "-0000-" not in p.name)


def test_the_fixture_imported_both_ways_regenerates_and_checks(
    run_cli: RunCli,
    real_workdir: Path,
    branch: tuple[Path, str],
    tmp_path: Path,
) -> None:
    tree, base = branch
    before = tree_snapshot(tree)
    want = as_generated(tree, f"{base}..topic", tmp_path / "want")

    from_branch = tmp_path / "from-branch"
    proc = run_cli(
        "import",
        "--tree",
        str(tree),
        "--range",
        f"{base}..topic",
        "--to",
        str(from_branch),
        workdir=real_workdir,
    )
    assert proc.returncode == 0, proc.stderr
    assert tree_snapshot(tree) == before

    # The thread names its base-commit: the Debian base's own commit, so
    # no --tree is needed.
    mbox = tmp_path / "thread.mbox"
    thread_of(tree, base, mbox)
    from_thread = tmp_path / "from-thread"
    proc = run_cli(
        "import",
        "--mbox",
        str(mbox),
        "--to",
        str(from_thread),
        "--json",
        workdir=real_workdir,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["base_commit"] == base

    got_branch = generated(
        run_cli,
        real_workdir,
        from_branch / "series.yaml",
        tmp_path / "b",
        "--tree",
        str(tree),
    )
    got_thread = generated(
        run_cli, real_workdir, from_thread / "series.yaml", tmp_path / "t"
    )
    for made in (got_branch, got_thread):
        assert len(made) == len(want) == 3
        for got, expected in zip(made, want, strict=True):
            assert normal(got.read_bytes()) == normal(expected.read_bytes()), got.name

    # The branch's base is the Debian base's own commit: its check runs
    # there, where the work dir's check build is warm (with --tree it is
    # a clone of its own, built afresh).
    proc = run_cli("-C", str(from_branch), "generate", workdir=real_workdir)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("-C", str(from_branch), "check", "--json", workdir=real_workdir)
    results = {r["name"]: r["status"] for r in json.loads(proc.stdout)["results"]}
    assert proc.returncode == 0, (results, proc.stderr)
    assert results["qapi"] == "pass" and results["checkpatch"] == "pass", results
    assert tree_snapshot(tree) == before


def test_a_thread_on_a_base_no_fetched_base_carries_names_it(
    run_cli: RunCli,
    real_workdir: Path,
    branch: tuple[Path, str],
    tmp_path: Path,
) -> None:
    tree, _ = branch
    # Based on the branch's first commit: a commit only this checkout has.
    first = git(tree, "rev-parse", "topic~2").strip()
    mbox = tmp_path / "thread.mbox"
    thread_of(tree, first, mbox)
    dest = tmp_path / "series"
    proc = run_cli(
        "import", "--mbox", str(mbox), "--to", str(dest), workdir=real_workdir
    )
    assert proc.returncode == 2, proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("qseries: error")]
    assert f"based on commit {first[:12]}" in line
    assert re.search(rf"pass --tree with a QEMU checkout that has {first[:12]}", line)
    assert not dest.exists()
    # With the checkout that has it, the same thread imports.
    proc = run_cli(
        "import",
        "--mbox",
        str(mbox),
        "--tree",
        str(tree),
        "--to",
        str(dest),
        workdir=real_workdir,
    )
    assert proc.returncode == 0, proc.stderr
