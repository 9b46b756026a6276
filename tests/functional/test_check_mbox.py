"""check on broken input: mboxes that are not a whole, sound series, and
--mbox arguments that are not mailboxes at all.

The small QEMU-like tree has no scripts/, so qapi, checkpatch and
maintainers fail there: these tests look at the mails and apply checks,
and at what qseries says on stderr.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from ..conftest import RunCli, git


@pytest.fixture
def mails(run_cli: RunCli, mini_tree: Path, tmp_path: Path) -> list[str]:
    """The series generated on the small tree: cover letter, then 1/3..3/3."""
    out = tmp_path / "out"
    proc = run_cli(
        "generate", "--series", "v1", "--tree", str(mini_tree), "--output", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    return [p.read_text() for p in sorted((out / "v1").glob("*.patch"))]


def write_mbox(tmp_path: Path, parts: list[str]) -> Path:
    mbox = tmp_path / "series.mbox"
    mbox.write_text("".join(p if p.endswith("\n") else p + "\n" for p in parts))
    return mbox


def check_mbox(
    run_cli: RunCli,
    tree: Path,
    mbox: Path,
    work: Path,
    env: dict[str, str] | None = None,
) -> tuple[int, dict[str, dict], str]:  # type: ignore[type-arg]
    proc = run_cli(
        "check",
        "--json",
        "--tree",
        str(tree),
        "--mbox",
        str(mbox),
        workdir=work,
        env=env,
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    return proc.returncode, {r["name"]: r for r in data["results"]}, proc.stderr


def no_leftovers(work: Path) -> None:
    """No scratch file of the check is left in WORKDIR/tmp."""
    tmp = work / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir()), list(tmp.iterdir())


def test_whole_series_passes_the_mails_check(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    mbox = write_mbox(tmp_path, mails)
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    assert results["mails"]["status"] == "pass", results["mails"]
    assert results["apply"]["status"] == "pass"
    no_leftovers(tmp_path / "work")


def test_missing_patch_fails(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    mbox = write_mbox(tmp_path, [mails[0], mails[1], mails[3]])
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    assert results["mails"]["status"] == "fail"
    assert results["mails"]["items"] == ["patch 2/3 is missing"]


def test_quoted_patch_is_not_taken_for_a_cover_letter(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    head, body = mails[2].split("\n\n", 1)
    reply = (
        head
        + "\n\nOn Friday, someone wrote:\n"
        + "".join("> " + line for line in body.splitlines(keepends=True))
    )
    mbox = write_mbox(tmp_path, [mails[0], mails[1], reply, mails[3]])
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    assert results["mails"]["status"] == "fail"
    [item] = results["mails"]["items"]
    assert item.startswith("patch 2/3 'vfio/migration: Emit VFIO_MIGRATION_PREPARE")
    assert re.search(r": its diff is quoted \('> diff --git' at line \d+\)", item)


def wrap(mail: str, width: int = 72) -> str:
    """What a mail client that wraps long lines does to a patch."""
    lines = []
    for line in mail.splitlines():
        while len(line) > width and not line.startswith(("From", "Subject")):
            lines.append(line[:width])
            line = line[width:]
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_wrapped_patch_is_named_with_its_line(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    wrapped = wrap(mails[2])
    mbox = write_mbox(tmp_path, [mails[0], mails[1], wrapped, mails[3]])
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    [item] = results["mails"]["items"]
    m = re.search(r"^patch 2/3 '[^']*': corrupt patch at line (\d+) ", item)
    assert m, item
    # The line named is the first one the wrapping broke.
    first = next(
        n
        for n, (a, b) in enumerate(
            zip(wrapped.splitlines(), mails[2].splitlines(), strict=False), 1
        )
        if a != b
    )
    assert int(m[1]) in (first, first + 1)
    assert results["apply"]["status"] == "fail"


def test_whitespace_damaged_patch_is_named(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    # A client that strips the leading space of context lines.
    message, diff = mails[2].split("\ndiff --git ", 1)
    damaged = message + "\ndiff --git " + re.sub(r"^ (?=\S)", "", diff, flags=re.M)
    assert damaged != mails[2]
    mbox = write_mbox(tmp_path, [mails[0], mails[1], damaged, mails[3]])
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    [item] = results["mails"]["items"]
    assert re.match(r"patch 2/3 '[^']*': corrupt patch at line \d+ ", item), item


def test_duplicate_and_other_total(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    other = mails[3].replace("[PATCH v1 3/3]", "[PATCH v1 3/4]")
    mbox = write_mbox(tmp_path, [mails[0], mails[1], mails[2], mails[2], other])
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    assert results["mails"]["items"] == [
        "the mails disagree on M in n/M: [3, 4]",
        "mail 2/4 appears 2 times",
        "patch 4/4 is missing",
    ]


def test_mail_of_another_version(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    v2 = mails[2].replace("[PATCH v1 2/3]", "[PATCH v2 2/3]")
    mbox = write_mbox(tmp_path, [mails[0], mails[1], v2, mails[3]])
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    [item] = results["mails"]["items"]
    assert re.fullmatch(r"patch 2/3 '[^']*': is v2, not v1", item), item


def test_series_dir_with_a_mail_of_another_version(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out" / "v1"
    path = next(out.glob("v1-0003-*.patch"))
    path.write_text(path.read_text().replace("[PATCH v1 3/3]", "[PATCH v2 3/3]"))
    proc = run_cli(
        "check",
        "--json",
        "--series",
        "v1",
        "--tree",
        str(mini_tree),
        "--output",
        str(out.parent),
    )
    assert proc.returncode == 1, proc.stderr
    results = {r["name"]: r for r in json.loads(proc.stdout)["results"]}
    [item] = results["mails"]["items"]
    assert re.fullmatch(r"patch 3/3 '[^']*': is v2, not v1", item), item


def test_mbox_of_a_version_series_yaml_lacks(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    mbox = write_mbox(tmp_path, [m.replace("[PATCH v1 ", "[PATCH v7 ") for m in mails])
    work = tmp_path / "work"
    proc = run_cli("check", "--tree", str(mini_tree), "--mbox", str(mbox), workdir=work)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"qseries: error: --mbox {mbox}: its mails are v7, series.yaml has no v7; "
        "it has: v1, v2"
    ]
    no_leftovers(work)


def test_malformed_address_header_is_named(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    bad = mails[1].replace("\nDate: ", "\nTo: a@[192.168.0.1\nDate: ", 1)
    mbox = write_mbox(tmp_path, [mails[0], bad, mails[2], mails[3]])
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    assert results["mails"]["items"] == [
        "patch 1/3 'qapi/vfio: Add VFIO_MIGRATION_PREPARE event': "
        "cannot parse To: 'a@[192.168.0.1'"
    ]
    no_leftovers(tmp_path / "work")


def usage_error(run_cli: RunCli, tmp_path: Path, mbox: Path) -> str:
    work = tmp_path / "work"
    proc = run_cli("check", "--mbox", str(mbox), workdir=work)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    no_leftovers(work)
    return lines[0]


def test_mbox_that_is_a_directory(run_cli: RunCli, tmp_path: Path) -> None:
    assert usage_error(run_cli, tmp_path, tmp_path) == (
        f"qseries: error: --mbox {tmp_path}: is a directory; give a mailbox file"
    )


def test_mbox_that_is_a_pipe(run_cli: RunCli, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert usage_error(run_cli, tmp_path, fifo) == (
        f"qseries: error: --mbox {fifo}: is not a regular file (a pipe or a "
        "device?); save the mails to a file first"
    )


HINT = "give the series' mails, e.g. from 'git format-patch --stdout'"


def test_empty_mbox(run_cli: RunCli, tmp_path: Path) -> None:
    mbox = tmp_path / "empty.mbox"
    mbox.write_text("")
    assert usage_error(run_cli, tmp_path, mbox) == (
        f"qseries: error: --mbox {mbox}: no mails in it (the file is empty); {HINT}"
    )


def test_mbox_without_mails(run_cli: RunCli, tmp_path: Path) -> None:
    mbox = tmp_path / "notes.txt"
    mbox.write_text("some notes\nnot a mail\n")
    assert usage_error(run_cli, tmp_path, mbox) == (
        f"qseries: error: --mbox {mbox}: no mails in it "
        f"(no From: or Subject: header); {HINT}"
    )


def test_am_failure_ignores_the_users_git_config(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    # A context line of patch 2 differs from the base in whitespace only:
    # git am fails, and the check must name the hunk whatever the user's
    # git configuration says about whitespace.
    migration = mini_tree / "hw" / "vfio" / "migration.c"
    text = migration.read_text()
    new = text.replace("\n    qom_path = object_", "\n    qom_path  = object_", 1)
    assert new != text
    migration.write_text(new)
    git(mini_tree, "commit", "-q", "-am", "whitespace")
    mbox = write_mbox(tmp_path, mails)
    gitconfig = tmp_path / "user.gitconfig"
    gitconfig.write_text("[apply]\n\tignoreWhitespace = change\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(gitconfig.read_text())
    user = {"GIT_CONFIG_GLOBAL": str(gitconfig), "HOME": str(home)}
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work", env=user)
    apply = results["apply"]
    assert apply["status"] == "fail"
    assert apply["detail"].startswith("patch 2/3 ")
    assert re.fullmatch(
        r"hw/vfio/migration\.c: the hunk at line \d+ does not match the base",
        apply["items"][0],
    ), apply["items"]


def test_a_base_that_has_the_series_already_says_so(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    """On a newer base that merged the series (its patches apply in
    reverse), check says 'already in this base' instead of failing."""
    merged = tmp_path / "merged"
    git(tmp_path, "clone", "-q", str(mini_tree), str(merged))
    out = tmp_path / "out" / "v1"
    for patch in sorted(out.glob("v1-000[1-9]-*.patch")):
        git(merged, "am", "-q", str(patch))
    proc = run_cli(
        "check", "--json", "--series", "v1", "--tree", str(merged),
        "--output", str(out.parent),
    )  # fmt: skip
    results = {r["name"]: r for r in json.loads(proc.stdout)["results"]}
    assert results["apply"]["status"] == "skip", results["apply"]
    assert results["apply"]["detail"] == (
        "already in this base: every patch applies in reverse"
    )
    assert results["compile"]["detail"] == "the series is already in this base"
    # On the base itself, the same mails apply as usual.
    proc = run_cli(
        "check", "--json", "--series", "v1", "--tree", str(mini_tree),
        "--output", str(out.parent),
    )  # fmt: skip
    results = {r["name"]: r for r in json.loads(proc.stdout)["results"]}
    assert results["apply"]["status"] == "pass"
