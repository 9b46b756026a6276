"""check on broken input: mboxes that are not a whole, sound series, and
--mbox arguments that are not mailboxes at all.

A mailed series is read with b4: a thread with its replies, the patches
in any order, several versions in one file.  What the mails cannot give
(no patch, a missing or duplicate patch, a quoted or mangled diff) is an
error of one line that names the patch and the line of the mbox, exit 2.

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


def generated(run_cli: RunCli, tree: Path, out: Path, version: str) -> list[str]:
    """The mails of a version generated on tree: cover letter, then 1/3..3/3."""
    proc = run_cli(
        "generate", "--series", version, "--tree", str(tree), "--output", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    return [p.read_text() for p in sorted((out / version).glob("*.patch"))]


@pytest.fixture
def mails(run_cli: RunCli, mini_tree: Path, tmp_path: Path) -> list[str]:
    """v1 generated on the small tree, as git format-patch writes it (no
    Message-Id)."""
    return generated(run_cli, mini_tree, tmp_path / "out", "v1")


@pytest.fixture
def mails_v2(run_cli: RunCli, mini_tree: Path, tmp_path: Path) -> list[str]:
    return generated(run_cli, mini_tree, tmp_path / "out", "v2")


def msgid(version: str, n: int) -> str:
    return f"<{version}.{n}@qseries.test>"


def threaded(mails: list[str], version: str) -> list[str]:
    """The mails as sent: each with a Message-Id, the patches replying
    to the cover letter (mail 0)."""
    out = []
    for n, mail in enumerate(mails):
        first, rest = mail.split("\n", 1)
        ids = f"Message-Id: {msgid(version, n)}\n"
        if n:
            cover = msgid(version, 0)
            ids += f"In-Reply-To: {cover}\nReferences: {cover}\n"
        out.append(f"{first}\n{ids}{rest}")
    return out


def reply(to: str, subject: str, text: str, tag: str, mid: str) -> str:
    """A review reply to the mail with Message-Id `to`."""
    return (
        "From mboxrd@z Thu Jan  1 00:00:00 1970\n"
        f"From: {tag.split(': ', 1)[1]}\n"
        "To: qemu-devel@nongnu.org\n"
        f"Subject: Re: {subject}\n"
        "Date: Sun, 29 Nov 2026 10:00:00 +0000\n"
        f"Message-Id: {mid}\n"
        f"In-Reply-To: {to}\n"
        f"References: {to}\n\n"
        f"{text}\n{tag}\n"
    )


def write_mbox(tmp_path: Path, parts: list[str]) -> Path:
    mbox = tmp_path / "series.mbox"
    mbox.write_text("".join(p if p.endswith("\n") else p + "\n" for p in parts))
    return mbox


def line_of(mbox: Path, text: str, after: int = 0) -> int:
    """The number of the first line of mbox, after line `after`, that
    starts with text."""
    lines = mbox.read_text().splitlines()
    return next(n for n, t in enumerate(lines, 1) if n > after and t.startswith(text))


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


def mbox_error(run_cli: RunCli, tree: Path, mbox: Path, work: Path) -> str:
    """What check says of a bad mbox: one line, exit 2, nothing left."""
    proc = run_cli("check", "--tree", str(tree), "--mbox", str(mbox), workdir=work)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    no_leftovers(work)
    prefix = f"qseries: error: --mbox {mbox}"
    assert lines[0].startswith(prefix), lines[0]
    return lines[0].removeprefix(prefix)


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


def test_any_order_with_cover_letter_and_review_replies(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    """b4 orders the patches and gives each the trailers of the replies
    (a tag on the cover letter counts for every patch)."""
    cover, p1, p2, p3 = threaded(mails, "v1")
    review = "Reviewed-by: Rev Person <rev@qseries.test>"
    tested = "Tested-by: Test Person <test@qseries.test>"
    mbox = write_mbox(
        tmp_path,
        [
            p3,
            reply(msgid("v1", 2), "[PATCH v1 2/3] x", "> quoted\n", review, "<r1@t>"),
            p1,
            cover,
            p2,
            reply(msgid("v1", 0), "[PATCH v1 0/3] x", "Works.\n", tested, "<r2@t>"),
        ],
    )
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    assert results["mails"]["status"] == "pass", results["mails"]
    assert results["mails"]["items"] == [
        f"b4 collected 1/3: {tested}",
        f"b4 collected 2/3: {review}",
        f"b4 collected 2/3: {tested}",
        f"b4 collected 3/3: {tested}",
    ]
    assert results["apply"]["status"] == "pass", results["apply"]
    no_leftovers(tmp_path / "work")


def test_several_versions_the_newest_is_checked(
    run_cli: RunCli,
    mini_tree: Path,
    mails: list[str],
    mails_v2: list[str],
    tmp_path: Path,
) -> None:
    mbox = write_mbox(tmp_path, [*threaded(mails, "v1"), *threaded(mails_v2, "v2")])
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    assert results["mails"]["status"] == "pass", results["mails"]
    assert results["mails"]["detail"].startswith("v2, patches 1..3")
    assert results["mails"]["items"] == ["b4 took v2, the newest; the mbox has v1 too"]
    assert results["apply"]["status"] == "pass", results["apply"]


def test_an_incomplete_newest_version_gives_way(
    run_cli: RunCli,
    mini_tree: Path,
    mails: list[str],
    mails_v2: list[str],
    tmp_path: Path,
) -> None:
    v2 = threaded(mails_v2, "v2")
    mbox = write_mbox(tmp_path, [*threaded(mails, "v1"), v2[0], v2[1], v2[3]])
    _, results, stderr = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    said = "v2 lacks patch 2/3; took v1, the newest complete version"
    assert f"qseries: {said}\n" in stderr
    assert results["mails"]["status"] == "pass", results["mails"]
    assert results["mails"]["detail"].startswith("v1, patches 1..3")
    assert results["mails"]["items"] == [said]


def test_missing_patch_is_an_error(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    mbox = write_mbox(tmp_path, [mails[0], mails[1], mails[3]])
    assert mbox_error(run_cli, mini_tree, mbox, tmp_path / "work") == (
        ": [PATCH v1 2/3] is missing (b4 found 1/3, 3/3 of v1); "
        "add the mail of patch 2/3 to the mbox"
    )


def test_no_complete_version_is_an_error(
    run_cli: RunCli,
    mini_tree: Path,
    mails: list[str],
    mails_v2: list[str],
    tmp_path: Path,
) -> None:
    v1, v2 = threaded(mails, "v1"), threaded(mails_v2, "v2")
    mbox = write_mbox(tmp_path, [*v1[:3], v2[0], v2[1], v2[3]])
    assert mbox_error(run_cli, mini_tree, mbox, tmp_path / "work") == (
        ": [PATCH v2 2/3] is missing (b4 found 1/3, 3/3 of v2; v1 not complete "
        "either); add the mail of patch 2/3 to the mbox"
    )


def test_no_patch_is_an_error(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    mbox = write_mbox(tmp_path, [mails[0]])
    assert mbox_error(run_cli, mini_tree, mbox, tmp_path / "work") == (
        ": no patch in it (1 mail, none a '[PATCH n/M]' with a diff); "
        "give the series' mails, e.g. from 'git format-patch --stdout'"
    )


def quoted(mail: str) -> str:
    """The mail as a reply quotes it, under its own headers."""
    head, body = mail.split("\n\n", 1)
    return (
        head
        + "\n\nOn Friday, someone wrote:\n"
        + "".join("> " + line for line in body.splitlines(keepends=True))
    )


def test_quoted_patch_is_named_with_its_line(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    mbox = write_mbox(tmp_path, [mails[0], mails[1], quoted(mails[2]), mails[3]])
    line = line_of(mbox, "> diff --git ")
    assert mbox_error(run_cli, mini_tree, mbox, tmp_path / "work") == (
        f":{line}: [PATCH v1 2/3] vfio/migration: Emit VFIO_MIGRATION_PREPARE "
        "before state changes: its diff is quoted ('> diff --git'), as in a "
        "reply; give the mail as it was sent, not a reply to it"
    )


def test_a_reply_that_quotes_a_patch_is_no_patch(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    """A review quoting the whole patch, beside the patch: b4 takes the
    patch, and the reply is a reply."""
    sent = threaded(mails, "v1")
    body = sent[2].split("\n\n", 1)[1]
    review = reply(
        msgid("v1", 2),
        "[PATCH v1 2/3] vfio/migration: Emit",
        "".join("> " + line for line in body.splitlines(keepends=True)),
        "Acked-by: Ack Person <ack@qseries.test>",
        "<r3@t>",
    )
    mbox = write_mbox(tmp_path, [*sent, review])
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    assert results["mails"]["status"] == "pass", results["mails"]
    assert results["mails"]["items"] == [
        "b4 collected 2/3: Acked-by: Ack Person <ack@qseries.test>"
    ]


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
    error = mbox_error(run_cli, mini_tree, mbox, tmp_path / "work")
    m = re.fullmatch(
        r":(\d+): \[PATCH v1 2/3\] vfio/migration: Emit [^:]*: corrupt patch "
        r"\(lines wrapped or whitespace-damaged\?\); give the mail "
        r"as it was sent \(the list archive's raw message\), not as a mail "
        r"client shows or forwards it",
        error,
    )
    assert m, error
    # The line named is the first one the wrapping broke, or the next.
    start = len(mails[0].splitlines()) + len(mails[1].splitlines())
    first = next(
        n
        for n, (a, b) in enumerate(
            zip(wrapped.splitlines(), mails[2].splitlines(), strict=False), 1
        )
        if a != b
    )
    assert int(m[1]) in (start + first, start + first + 1)


def test_whitespace_damaged_patch_is_named_with_its_line(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    # A client that strips the leading space of context lines.
    message, diff = mails[2].split("\ndiff --git ", 1)
    damaged = message + "\ndiff --git " + re.sub(r"^ (?=\S)", "", diff, flags=re.M)
    assert damaged != mails[2]
    mbox = write_mbox(tmp_path, [mails[0], mails[1], damaged, mails[3]])
    error = mbox_error(run_cli, mini_tree, mbox, tmp_path / "work")
    m = re.match(
        r":(\d+): \[PATCH v1 2/3\] vfio/migration: Emit [^:]*: corrupt patch", error
    )
    assert m, error
    # The line named has lost its leading space.
    line = mbox.read_text().splitlines()[int(m[1]) - 1]
    assert not line.startswith((" ", "+", "-", "@", "diff", "index")), line


def test_duplicate_is_an_error(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    other = mails[2].replace(
        "Emit VFIO_MIGRATION_PREPARE", "Send VFIO_MIGRATION_PREPARE"
    )
    mbox = write_mbox(tmp_path, [mails[0], mails[1], mails[2], other, mails[3]])
    first = line_of(mbox, "From ", line_of(mbox, "Subject: [PATCH v1 1/3]"))
    second = line_of(mbox, "From ", first)
    assert mbox_error(run_cli, mini_tree, mbox, tmp_path / "work") == (
        f":{second}: [PATCH v1 2/3] vfio/migration: Send VFIO_MIGRATION_PREPARE "
        "before state changes: a second, different mail claims patch 2/3 of v1 "
        f"(the first is at line {first}); keep the one that was sent last, "
        "delete the other"
    )


def test_the_same_mail_twice_is_one_mail(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    mbox = write_mbox(tmp_path, [mails[0], mails[1], mails[2], mails[2], mails[3]])
    _, results, _ = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work")
    assert results["mails"]["status"] == "pass", results["mails"]


def test_other_total(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    """A "4/4" after 1/3..3/3: b4 takes four patches; the mails check
    says they disagree on M."""
    fourth = mails[3].replace("[PATCH v1 3/3]", "[PATCH v1 4/4]")
    mbox = write_mbox(tmp_path, [*mails, fourth])
    proc = run_cli(
        "check", "--json", "--tree", str(mini_tree), "--mbox", str(mbox),
        workdir=tmp_path / "work",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    results = {r["name"]: r for r in json.loads(proc.stdout)["results"]}
    assert results["mails"]["items"] == ["the mails disagree on M in n/M: [3, 4]"]
    # A "3/4" instead of 3/3: b4 waits for a fourth patch, which is no
    # help; the mail that disagrees is named.
    other = mails[3].replace("[PATCH v1 3/3]", "[PATCH v1 3/4]")
    mbox = write_mbox(tmp_path, [mails[0], mails[1], mails[2], other])
    line = line_of(mbox, "From ", line_of(mbox, "Subject: [PATCH v1 2/3]"))
    assert mbox_error(run_cli, mini_tree, mbox, tmp_path / "work") == (
        f":{line}: [PATCH v1 3/4] tests/qtest: Add vfio-migration-prepare-test: "
        "says the series has 4 patch(es), the other mails of v1 say 3; give "
        "the mails of one posting of the series"
    )


def test_mail_of_another_version(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    """A v2 2/3 among v1's mails: v2 is the newest, but it has 2/3 only,
    and v1 lacks 2/3."""
    v2 = mails[2].replace("[PATCH v1 2/3]", "[PATCH v2 2/3]")
    mbox = write_mbox(tmp_path, [mails[0], mails[1], v2, mails[3]])
    assert mbox_error(run_cli, mini_tree, mbox, tmp_path / "work") == (
        ": [PATCH v2 1/3] is missing (b4 found 2/3 of v2; v1 not complete "
        "either); add the mail of patch 1/3 to the mbox"
    )


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


# A trailer that makes b4 0.16 spin: minutes for 5,000 letters.
SPINNING = f"Tested-by: {'A' * 5000} <a@qseries.test>"


def test_a_reply_that_makes_b4_spin_is_left_out_and_named(
    run_cli: RunCli, mini_tree: Path, mails: list[str], tmp_path: Path
) -> None:
    """The mail probe gives each mail its own time limit: the spinning
    reply is named by its line, Message-Id and subject, and left out;
    the series and the other reply are checked as usual."""
    cover, p1, p2, p3 = threaded(mails, "v1")
    review = "Reviewed-by: Rev Person <rev@qseries.test>"
    spin = reply(msgid("v1", 0), "[PATCH v1 0/3] x", "Works.\n", SPINNING, "<s@t>")
    good = reply(msgid("v1", 2), "[PATCH v1 2/3] x", "> quoted\n", review, "<r1@t>")
    mbox = write_mbox(tmp_path, [cover, p1, p2, p3, spin, good])
    at = line_of(mbox, "From mboxrd@z", after=line_of(mbox, "Subject: [PATCH v1 3/3]"))
    env = {"QSERIES_MAIL_TIME_LIMIT": "1"}
    _, results, stderr = check_mbox(run_cli, mini_tree, mbox, tmp_path / "work", env)
    said = (
        f"--mbox {mbox}:{at}: left out <s@t> 'Re: [PATCH v1 0/3] x' (a line of "
        f"{len(SPINNING):,} characters; mail allows 998): it was not read within 1 s"
    )
    assert stderr.splitlines().count(f"qseries: {said}") == 1, stderr
    assert results["mails"]["status"] == "pass", results["mails"]
    assert results["mails"]["items"] == [said, f"b4 collected 2/3: {review}"]
    assert results["apply"]["status"] == "pass", results["apply"]
    no_leftovers(tmp_path / "work")


def test_an_mbox_too_large_to_read_is_refused(run_cli: RunCli, tmp_path: Path) -> None:
    mbox = tmp_path / "archive.mbox"
    with mbox.open("wb") as f:
        f.truncate(256 * 2**20 + 1)  # sparse: no disk space taken
    assert usage_error(run_cli, tmp_path, mbox) == (
        f"qseries: error: --mbox {mbox}: 268,435,457 bytes, more than the "
        "268,435,456 qseries reads; give the version's mails and their replies, "
        "not a whole archive"
    )
