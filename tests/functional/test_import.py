"""qseries import: a series from a branch or a mailed thread, regenerated
into the same mails; a second import as the next version; what import
refuses, in one line and with nothing written.  On the small checkout
(tests/fixtures/qemu-mini): about 40 s in all.  The real base's fixture
(three commits on Debian's QEMU, imported both ways, then `check`) is in
test_import_real.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ..conftest import GIT_ENV, RunCli, git, tree_snapshot

NOTICE = """
##
# @X_IMPORT_NOTICE:
#
# Emitted when the import test says so.
#
# @reason: why
#
# Since: 11.0
##
{ 'event': 'X_IMPORT_NOTICE',
  'data': { 'reason': 'str' } }
"""


def commit(tree: Path, message: str, **who: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": who.get("name", "Ada Lovelace"),
        "GIT_AUTHOR_EMAIL": who.get("email", "ada@example.org"),
        "GIT_AUTHOR_DATE": who.get("date", "2026-12-01T10:00:00+01:00"),
    }
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=Ada Lovelace",
            "-c",
            "user.email=ada@example.org",
            "commit",
            "-q",
            "-a",
            "-m",
            message,
        ],
        cwd=tree,
        env={**os.environ, **env},
        check=True,
    )
    return git(tree, "rev-parse", "HEAD").strip()


def make_topic(tree: Path) -> str:
    """Three commits on the tree's HEAD: a QAPI addition, a C change by
    someone else with a trailer block of three, a new text file with a
    binary one.  Returns the base commit."""
    base = git(tree, "rev-parse", "HEAD").strip()
    git(tree, "checkout", "-q", "-b", "topic")
    qapi = tree / "qapi" / "vfio.json"
    qapi.write_text(qapi.read_text() + NOTICE)
    commit(
        tree,
        "qapi/vfio: Add X_IMPORT_NOTICE event\n\nAn event of the import test."
        "\n\nSigned-off-by: Ada Lovelace <ada@example.org>",
    )
    c = tree / "hw" / "vfio" / "migration.c"
    c.write_text(c.read_text().replace("{\n", "{\n    /* imported */\n", 1))
    commit(
        tree,
        "vfio/migration: Say it was imported\n\nOne comment.\n\n"
        "Signed-off-by: Grace Hopper <grace@example.org>\n"
        "Reviewed-by: Ada Lovelace <ada@example.org>\n"
        "Signed-off-by: Ada Lovelace <ada@example.org>",
        name="Grace Hopper",
        email="grace@example.org",
        date="2026-12-02T11:30:00-05:00",
    )
    (tree / "docs").mkdir(exist_ok=True)
    (tree / "docs" / "imported.rst").write_text("Imported\n========\n\nA page.\n")
    (tree / "tests" / "data").mkdir(parents=True, exist_ok=True)
    (tree / "tests" / "data" / "table.bin").write_bytes(bytes(range(256)) * 3)
    git(tree, "add", "docs/imported.rst", "tests/data/table.bin")
    commit(
        tree,
        "docs: Add a page and a table\n\nSigned-off-by: Ada Lovelace <ada@example.org>",
        date="2026-12-03T08:00:00+00:00",
    )
    return base


def mails(
    tree: Path, rng: str, out: Path, *extra: str, binary: bool = True
) -> list[Path]:
    """git format-patch of the range, as qseries' generate formats (it
    mails binary hunks when the series carries some)."""
    git(
        tree,
        "format-patch",
        "-q",
        "--zero-commit",
        "--no-signature",
        "--abbrev=12",
        "--stat=80",
        "--binary" if binary else "--no-binary",
        "-o",
        str(out),
        *extra,
        rng,
    )
    return sorted(out.glob("0*.patch"))


def normal(data: bytes) -> bytes:
    """A mail without what generate adds: the recipients, the vN."""
    text = data.decode()
    text = re.sub(r"^(To|Cc): .*\n(?:[ \t].*\n)*", "", text, flags=re.M)
    return re.sub(
        r"^Subject: \[PATCH v\d+ ", "Subject: [PATCH ", text, flags=re.M
    ).encode()


@pytest.fixture
def topic(mini_tree: Path) -> tuple[Path, str]:
    return mini_tree, make_topic(mini_tree)


def imported(run_cli: RunCli, *args: str) -> subprocess.CompletedProcess[str]:
    proc = run_cli("import", *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def regenerate(run_cli: RunCli, series: Path, tree: Path, out: Path) -> list[Path]:
    proc = run_cli(
        "--series-file",
        str(series),
        "generate",
        "--tree",
        str(tree),
        "--output",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    return sorted(
        p for p in (out.iterdir().__next__()).glob("*.patch") if "-0000-" not in p.name
    )


def test_a_branch_regenerates_the_same_mails_and_the_tree_is_untouched(
    run_cli: RunCli, topic: tuple[Path, str], tmp_path: Path
) -> None:
    tree, base = topic
    before = tree_snapshot(tree)
    dest = tmp_path / "series"
    done = imported(
        run_cli,
        "--tree",
        str(tree),
        "--range",
        f"{base}..topic",
        "--to",
        str(dest),
        "--json",
    )
    assert tree_snapshot(tree) == before  # index, refs, objects, files
    data = json.loads(done.stdout)
    assert data["version"] == "v1" and data["patches"] == 3
    assert data["base_commit"] == base
    loaded = yaml.safe_load((dest / "series.yaml").read_text())
    patches = loaded["versions"]["v1"]["patches"]
    # The QAPI addition is placed by the qapi kind; the new text file is
    # carried; the C change and the binary table are git's own diff.
    assert [c["kind"] for c in patches[0]["changes"]] == ["qapi"]
    assert [c["kind"] for c in patches[1]["changes"]] == ["diff"]
    assert sorted(c["kind"] for c in patches[2]["changes"]) == ["carry", "diff"]
    assert patches[1]["author"] == "Grace Hopper <grace@example.org>"
    assert (
        patches[1]["trailers"][0] == "Signed-off-by: Grace Hopper <grace@example.org>"
    )
    diff = next(c for c in patches[2]["changes"] if c["kind"] == "diff")
    assert b"GIT binary patch" in (dest / diff["patch"]).read_bytes()

    made = regenerate(run_cli, dest / "series.yaml", tree, tmp_path / "out")
    want = mails(tree, f"{base}..topic", tmp_path / "orig")
    assert len(made) == len(want) == 3
    for got, expected in zip(made, want, strict=True):
        assert normal(got.read_bytes()) == normal(expected.read_bytes()), got.name
    assert tree_snapshot(tree) == before


def reply(to_msgid: str, subject: str, trailer: str) -> str:
    return (
        "From nobody Mon Sep 17 00:00:00 2001\n"
        "From: Linus Reviewer <linus@example.org>\n"
        f"Subject: Re: {subject}\n"
        "Date: Fri, 04 Dec 2026 09:00:00 +0000\n"
        "Message-ID: <reply-1@example.org>\n"
        f"In-Reply-To: {to_msgid}\n"
        f"References: {to_msgid}\n"
        "\n"
        "Looks right.\n\n"
        f"{trailer}\n"
    )


def thread(tree: Path, base: str, path: Path, *extra: str) -> Path:
    out = git(
        tree,
        "format-patch",
        "--stdout",
        "--zero-commit",
        "--no-signature",
        "--abbrev=12",
        "--stat=80",
        "--binary",
        "--cover-letter",
        "--thread",
        *extra,
        f"{base}..topic",
    )
    path.write_text(out)
    return path


def test_a_thread_keeps_message_ids_and_the_collected_trailers_apart(
    run_cli: RunCli, topic: tuple[Path, str], tmp_path: Path
) -> None:
    tree, base = topic
    mbox = thread(tree, base, tmp_path / "thread.mbox", f"--base={base}")
    text = mbox.read_text()
    ids = re.findall(r"^Message-ID: (<[^>]+>)$", text, re.M | re.I)
    subject = re.findall(r"^Subject: (\[PATCH 2/3\] .*)$", text, re.M)[0]
    mbox.write_text(
        text + reply(ids[2], subject, "Reviewed-by: Linus Reviewer <linus@example.org>")
    )
    dest = tmp_path / "series"
    imported(run_cli, "--mbox", str(mbox), "--tree", str(tree), "--to", str(dest))
    version = yaml.safe_load((dest / "series.yaml").read_text())["versions"]["v1"]
    assert version["base-commit"] == base
    assert version["message-id"] == ids[0]
    assert version["cover"]["subject"] == "*** SUBJECT HERE ***"
    patches = version["patches"]
    assert [p["message-id"] for p in patches] == ids[1:]
    assert patches[1]["collected"] == [
        "Reviewed-by: Linus Reviewer <linus@example.org>"
    ]
    assert "Reviewed-by: Linus Reviewer" not in " ".join(patches[1]["trailers"])
    assert "collected" not in patches[0]

    made = regenerate(run_cli, dest / "series.yaml", tree, tmp_path / "out")
    want = mails(tree, f"{base}..topic", tmp_path / "orig")
    for i, (got, expected) in enumerate(zip(made, want, strict=True)):
        expected_bytes = normal(expected.read_bytes())
        if i == 1:  # as b4 am gives it: the collected trailer after the others
            expected_bytes = expected_bytes.replace(
                b"Signed-off-by: Ada Lovelace <ada@example.org>\n---",
                b"Signed-off-by: Ada Lovelace <ada@example.org>\n"
                b"Reviewed-by: Linus Reviewer <linus@example.org>\n---",
            )
        assert normal(got.read_bytes()) == expected_bytes, got.name


def test_a_second_import_adds_v2_and_diff_shows_the_change(
    run_cli: RunCli, topic: tuple[Path, str], tmp_path: Path
) -> None:
    tree, base = topic
    dest = tmp_path / "series"
    imported(
        run_cli, "--tree", str(tree), "--range", f"{base}..topic", "--to", str(dest)
    )
    first = (dest / "series.yaml").read_text()
    git(tree, "checkout", "-q", "-b", "topic2", "topic")
    c = tree / "hw" / "vfio" / "migration.c"
    c.write_text(c.read_text().replace("/* imported */", "/* imported again */"))
    commit(
        tree, "vfio/migration: Reword\n\nSigned-off-by: Ada Lovelace <ada@example.org>"
    )
    done = imported(
        run_cli, "--tree", str(tree), "--range", f"{base}..topic2", "--to", str(dest)
    )
    assert "as v2 into" in done.stdout
    text = (dest / "series.yaml").read_text()
    assert text.startswith(first)  # v1 as it was, v2 after it
    assert set(yaml.safe_load(text)["versions"]) == {"v1", "v2"}
    shown = run_cli(
        "--series-file",
        str(dest / "series.yaml"),
        "diff",
        "v1",
        "v2",
        "--tree",
        str(tree),
    )
    assert shown.returncode == 0, shown.stderr
    assert re.search(
        r"^-:  -+ > 4:  \w+ vfio/migration: Reword$", shown.stdout, re.M
    ), shown.stdout
    assert re.search(
        r"^1:  \w+ = 1:  \w+ qapi/vfio: Add X_IMPORT_NOTICE event$", shown.stdout, re.M
    )


def refused(run_cli: RunCli, dest: Path, *args: str) -> str:
    before = sorted(p for p in dest.parent.rglob("*")) if dest.parent.exists() else []
    had = {p: p.read_bytes() for p in before if p.is_file()}
    proc = run_cli("import", *args, "--to", str(dest))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("qseries: error:")]
    assert len(lines) == 1, proc.stderr
    after = {p: p.read_bytes() for p in dest.parent.rglob("*") if p.is_file()}
    assert after == had  # nothing written
    return lines[0]


def test_bad_branches_are_refused_in_one_line_with_nothing_written(
    run_cli: RunCli, topic: tuple[Path, str], tmp_path: Path
) -> None:
    tree, base = topic
    dest = tmp_path / "out" / "series"
    (tmp_path / "out").mkdir()
    line = refused(run_cli, dest, "--tree", str(tree), "--range", f"{base}..nosuch")
    assert "has no commit 'nosuch'" in line
    git(tree, "checkout", "-q", "-b", "side", base)
    (tree / "docs").mkdir(exist_ok=True)
    (tree / "docs" / "side.rst").write_text("side\n")
    git(tree, "add", "docs/side.rst")
    commit(tree, "docs: Side\n\nSigned-off-by: Ada Lovelace <ada@example.org>")
    git(tree, "checkout", "-q", "topic")
    git(tree, "merge", "-q", "--no-edit", "side")
    line = refused(run_cli, dest, "--tree", str(tree), "--range", f"{base}..topic")
    assert "is a merge" in line
    git(tree, "checkout", "-q", "-b", "empty", base)
    git(
        tree, "commit", "-q", "--allow-empty", "-m", "Nothing\n\nSigned-off-by: A <a@b>"
    )
    line = refused(run_cli, dest, "--tree", str(tree), "--range", f"{base}..empty")
    assert "changes no file" in line
    foreign = tmp_path / "out" / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    line = refused(run_cli, foreign, "--tree", str(tree), "--range", f"{base}..topic~1")
    assert "holds files import did not write" in line


def test_bad_threads_are_refused_in_one_line_with_nothing_written(
    run_cli: RunCli, topic: tuple[Path, str], tmp_path: Path
) -> None:
    tree, base = topic
    (tmp_path / "out").mkdir()
    dest = tmp_path / "out" / "series"
    whole = thread(tree, base, tmp_path / "whole.mbox")
    parts = re.split(r"(?m)^(?=From 0{40} )", whole.read_text())
    incomplete = tmp_path / "incomplete.mbox"
    incomplete.write_text("".join(p for p in parts if "[PATCH 2/3]" not in p))
    line = refused(run_cli, dest, "--mbox", str(incomplete), "--tree", str(tree))
    assert "2/3" in line
    # A tree where the C change's hunk no longer fits.
    git(tree, "checkout", "-q", "-b", "moved", base)
    c = tree / "hw" / "vfio" / "migration.c"
    c.write_text(c.read_text().replace("{\n", "{\n    /* moved on */\n", 1))
    commit(tree, "moved\n\nSigned-off-by: A <a@b.org>")
    line = refused(run_cli, dest, "--mbox", str(whole), "--tree", str(tree))
    assert "patch 2/3 'vfio/migration: Say it was imported'" in line
    assert "hw/vfio/migration.c" in line and "does not apply" in line


def test_init_writes_a_skeleton_that_generate_takes(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "mine"
    proc = run_cli("init", str(dest))
    assert proc.returncode == 0, proc.stderr
    text = (dest / "series.yaml").read_text()
    assert text.startswith("# A series of qseries")
    proc = run_cli(
        "-C",
        str(dest),
        "generate",
        "--tree",
        str(mini_tree),
        "--output",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 0, proc.stderr
    [patch] = (tmp_path / "out" / "v1").glob("v1-0001-*.patch")
    mail = patch.read_text()
    assert "+++ b/docs/devel/my-change.rst" in mail
    assert "Signed-off-by: Your Name <you@example.org>" in mail
    again = run_cli("init", str(dest))
    assert again.returncode == 2
    assert "exists and is not an empty folder" in again.stderr


def regenerated_tree(workdir: Path) -> str:
    """The tree id of the newest generate's tip, in the work dir's clone."""
    [clone] = (workdir / "trees").glob("tree-*")
    return git(clone, "rev-parse", "refs/qseries/v1^{tree}").strip()


def test_odd_content_regenerates_the_same_tree(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    """A file added, removed and added again; CRLF lines; a file that is
    not UTF-8; a message in Latin-1: the same tree, the same subjects."""
    tree = mini_tree
    base = git(tree, "rev-parse", "HEAD").strip()
    git(tree, "checkout", "-q", "-b", "odd")
    f = tree / "docs" / "again.txt"
    f.parent.mkdir(exist_ok=True)
    f.write_text("one\n")
    git(tree, "add", "docs/again.txt")
    commit(tree, "docs: Add again.txt\n\nSigned-off-by: Ada Lovelace <ada@example.org>")
    git(tree, "rm", "-q", "docs/again.txt")
    commit(tree, "docs: Remove it\n\nSigned-off-by: Ada Lovelace <ada@example.org>")
    f.parent.mkdir(exist_ok=True)  # git rm took the empty folder
    f.write_text("two\n")
    (tree / "docs" / "crlf.txt").write_bytes(b"a\r\nb\r\n")
    (tree / "docs" / "latin1.txt").write_bytes(b"caf\xe9\n")
    git(tree, "add", "docs")
    commit(tree, "docs: Add them all\n\nSigned-off-by: Ada Lovelace <ada@example.org>")
    (tree / "docs" / "crlf.txt").write_bytes(b"a\r\nc\r\n")
    (tree / "docs" / "latin1.txt").write_bytes(b"na\xefve\n")
    (tree / "msg").write_bytes(
        b"docs: Caf\xe9 changes\n\nSigned-off-by: Ada Lovelace <ada@example.org>\n"
    )
    subprocess.run(
        [
            "git",
            "-c",
            "i18n.commitEncoding=ISO-8859-1",
            "commit",
            "-q",
            "-a",
            "-F",
            "msg",
        ],
        cwd=tree,
        env={**os.environ, **GIT_ENV},
        check=True,
    )
    (tree / "msg").unlink()
    dest = tmp_path / "series"
    done = imported(
        run_cli, "--tree", str(tree), "--range", f"{base}..odd", "--to", str(dest)
    )
    assert "docs/latin1.txt: not UTF-8 text, carried as a binary hunk" in done.stdout
    loaded = yaml.safe_load((dest / "series.yaml").read_text())
    assert loaded["versions"]["v1"]["patches"][3]["subject"] == "docs: Café changes"
    work = tmp_path / "work"
    regenerate(run_cli, dest / "series.yaml", tree, tmp_path / "out")
    assert regenerated_tree(work) == git(tree, "rev-parse", "odd^{tree}").strip()


def test_a_base_commit_the_cached_clone_lacks_is_fetched(
    run_cli: RunCli, topic: tuple[Path, str], tmp_path: Path
) -> None:
    """The work dir's clone of --tree was made at an older HEAD; the
    series names a newer base-commit, on a branch that is not HEAD."""
    tree, base = topic
    git(tree, "checkout", "-q", "master")
    first = imported(
        run_cli,
        "--tree",
        str(tree),
        "--range",
        f"{base}..topic",
        "--to",
        str(tmp_path / "one"),
    )
    assert first.returncode == 0
    regenerate(run_cli, tmp_path / "one" / "series.yaml", tree, tmp_path / "o1")
    git(tree, "checkout", "-q", "-b", "newer", "master")
    (tree / "NEWS").write_text("news\n")
    git(tree, "add", "NEWS")
    commit(tree, "NEWS: Start it\n\nSigned-off-by: Ada Lovelace <ada@example.org>")
    newer = git(tree, "rev-parse", "HEAD").strip()
    git(tree, "checkout", "-q", "-b", "later")
    (tree / "NEWS").write_text("news\nmore\n")
    commit(tree, "NEWS: More\n\nSigned-off-by: Ada Lovelace <ada@example.org>")
    git(tree, "checkout", "-q", "master")  # HEAD is neither
    dest = tmp_path / "two"
    imported(run_cli, "--tree", str(tree), "--range", "newer..later", "--to", str(dest))
    made = regenerate(run_cli, dest / "series.yaml", tree, tmp_path / "o2")
    assert len(made) == 1
    assert (
        f"base-commit: {newer}"
        in (tmp_path / "o2" / "v1" / "v1-0000-cover-letter.patch").read_text()
    )


def test_a_thread_by_an_author_with_a_comma_in_the_name(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    base = git(mini_tree, "rev-parse", "HEAD").strip()
    git(mini_tree, "checkout", "-q", "-b", "topic")
    c = mini_tree / "hw" / "vfio" / "migration.c"
    c.write_text(c.read_text() + "/* by a comma */\n")
    commit(
        mini_tree,
        "vfio: A comma\n\nSigned-off-by: Lovelace, Ada <ada@example.org>",
        name="Lovelace, Ada",
    )
    mbox = thread(mini_tree, base, tmp_path / "t.mbox", f"--base={base}")
    dest = tmp_path / "series"
    imported(run_cli, "--mbox", str(mbox), "--tree", str(mini_tree), "--to", str(dest))
    patch = yaml.safe_load((dest / "series.yaml").read_text())["versions"]["v1"][
        "patches"
    ][0]
    assert patch["author"] == "Lovelace, Ada <ada@example.org>"


def test_to_inside_the_checkout_is_refused_by_its_name(
    run_cli: RunCli, topic: tuple[Path, str]
) -> None:
    tree, base = topic
    proc = run_cli(
        "import",
        "--tree",
        str(tree),
        "--range",
        f"{base}..topic",
        "--to",
        str(tree / "series"),
    )
    assert proc.returncode == 2
    assert f"--to {tree / 'series'} is inside --tree {tree}" in proc.stderr
    assert not (tree / "series").exists()
