"""qseries trailers: review tags from a mailed thread, collected with b4
(offline), written into series.yaml under the version they were given
on; a patch that changed since it was mailed keeps them out."""

from __future__ import annotations

import difflib
import email
import email.policy
import json
import shutil
import time
from pathlib import Path

from qseries.core import generators, series

from ..conftest import REPO, RunCli, copy_series

POLICY = email.policy.default.clone(linesep="\n")
COVER_ID = "<cover.v2@qemu-dev.net>"
REVIEW = "Reviewed-by: Reviewer Person <rev@qemu-dev.net>"
TESTED = "Tested-by: Tester Person <test@qemu-dev.net>"
# The committed mails, which the copy of series.yaml has no copy of.
COMMITTED = ("--output", str(REPO / "patches"))


def reply(to: str, subject: str, tag: str, mid: str) -> str:
    return (
        "From mboxrd@z Thu Jan  1 00:00:00 1970\n"
        f"From: {tag.split(': ', 1)[1]}\n"
        "To: qemu-devel@nongnu.org\n"
        f"Subject: Re: {subject}\n"
        "Date: Sun, 29 Nov 2026 10:00:00 +0000\n"
        f"Message-Id: {mid}\n"
        f"In-Reply-To: {to}\n"
        f"References: {COVER_ID} {to}\n\n"
        "> quoted text\n\nLooks right.\n\n"
        f"{tag}\n"
    )


def thread(tmp_path: Path, mails: Path, *replies: str) -> Path:
    """The v2 mails as a mailed thread (Message-Ids, replies threaded)."""
    out = []
    for i, path in enumerate(sorted(mails.glob("v2-*.patch"))):
        msg = email.message_from_string(path.read_text(), policy=POLICY)
        del msg["Message-Id"]
        msg["Message-Id"] = COVER_ID if i == 0 else f"<p{i}.v2@qemu-dev.net>"
        if i:
            msg["In-Reply-To"] = COVER_ID
            msg["References"] = COVER_ID
        text = msg.as_string(policy=POLICY)
        out.append("From mboxrd@z Thu Jan  1 00:00:00 1970\n" + text)
    mbox = tmp_path / "thread.mbox"
    mbox.write_text("\n".join([*out, *replies]))
    return mbox


def test_tags_go_to_their_patches_with_the_change_shown(
    run_cli: RunCli, tmp_path: Path
) -> None:
    path = copy_series(tmp_path / "s")
    mbox = thread(
        tmp_path,
        REPO / "patches" / "v2",
        reply("<p2.v2@qemu-dev.net>", "[PATCH v2 2/3] x", REVIEW, "<r1@q>"),
        reply(COVER_ID, "[PATCH v2 0/3] x", TESTED, "<r2@q>"),
    )
    before = path.read_text()
    proc = run_cli(
        "--series-file", str(path), "trailers", "--mbox", str(mbox), *COMMITTED
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"--- {path}\n+++ {path}\n")
    loaded = series.load(path, generators.specs())
    v2 = loaded.version("v2")
    # A tag on the cover letter counts for every patch, as b4 has it.
    assert [p.trailers for p in v2.patches] == [
        (TESTED,),
        (REVIEW, TESTED),
        (TESTED,),
    ]
    assert all(p.trailers == () for p in loaded.version("v1").patches)
    # Only trailers lines were added, and the rest is as it was.
    added = [line[1:] for line in proc.stdout.splitlines()[2:] if line.startswith("+")]
    assert len(added) == 3 and all("trailers: [" in a for a in added)
    removed = [
        line
        for line in proc.stdout.splitlines()[2:]
        if line.startswith("-") and not line.startswith("---")
    ]
    assert removed == []
    assert [ln for ln in path.read_text().splitlines() if "trailers:" not in ln] == (
        before.splitlines()
    )
    # Again: nothing new.
    proc = run_cli(
        "--series-file", str(path), "trailers", "--mbox", str(mbox), *COMMITTED
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "v2: no new trailers to copy\n"


def test_a_patch_that_changed_since_keeps_its_tags_out(
    run_cli: RunCli, tmp_path: Path
) -> None:
    path = copy_series(tmp_path / "s")
    mailed = tmp_path / "mailed"
    shutil.copytree(REPO / "patches" / "v2", mailed)
    (p2,) = mailed.glob("v2-0002-*.patch")
    # As mailed, patch 2 differed from what is committed now.
    text = p2.read_text()
    assert "can act in the meantime." in text
    p2.write_text(text.replace("can act in the meantime.", "can act meanwhile."))
    mbox = thread(
        tmp_path,
        mailed,
        reply("<p2.v2@qemu-dev.net>", "[PATCH v2 2/3] x", REVIEW, "<r1@q>"),
    )
    proc = run_cli(
        "--series-file", str(path), "trailers", "--mbox", str(mbox), *COMMITTED
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "qseries: v2 patch 2 'vfio/migration: Announce the move to PRE_COPY_P2P' "
        f"changed since it was mailed: not copied: {REVIEW}"
    ) in proc.stderr.splitlines()
    loaded = series.load(path, generators.specs())
    assert loaded.version("v2").patches[1].trailers == ()
    assert proc.stdout == "v2: no new trailers to copy\n"


def test_a_crlf_series_yaml_keeps_its_bytes_but_the_added_line(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """trailers edits the lines it adds to and no other: a CRLF file
    stays CRLF, the new line included."""
    path = copy_series(tmp_path / "s")
    before = path.read_bytes().replace(b"\n", b"\r\n")
    path.write_bytes(before)
    mbox = thread(
        tmp_path,
        REPO / "patches" / "v2",
        reply("<p2.v2@qemu-dev.net>", "[PATCH v2 2/3] x", REVIEW, "<r1@q>"),
    )
    proc = run_cli(
        "--series-file", str(path), "trailers", "--mbox", str(mbox), *COMMITTED
    )
    assert proc.returncode == 0, proc.stderr
    after = path.read_bytes()
    old, new = before.split(b"\r\n"), after.split(b"\r\n")
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    changes = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    assert len(changes) == 1 and changes[0][0] == "insert", changes
    _, _, _, j1, j2 = changes[0]
    assert [line.strip() for line in new[j1:j2]] == [f'trailers: ["{REVIEW}"]'.encode()]
    assert b"\n" not in after.replace(b"\r\n", b"")
    assert len(after) == len(before) + len(new[j1]) + 2
    assert series.load(path, generators.specs()).version("v2").patches[1].trailers == (
        REVIEW,
    )


def test_a_tag_given_for_someone_else_is_listed_not_copied(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """Joe's reply says Ann tested the patch: b4 takes a tag only from
    the person it names, so trailers says who gave it for whom and
    leaves series.yaml as it is."""
    path = copy_series(tmp_path / "s")
    ann = "Tested-by: Ann Tester <ann@qemu-dev.net>"
    joe = reply("<p2.v2@qemu-dev.net>", "[PATCH v2 2/3] x", ann, "<j1@q>").replace(
        f"From: {ann.split(': ', 1)[1]}\n", "From: Joe User <joe@qemu-dev.net>\n"
    )
    mbox = thread(tmp_path, REPO / "patches" / "v2", joe)
    before = path.read_bytes()
    proc = run_cli(
        "--series-file", str(path), "trailers", "--mbox", str(mbox), *COMMITTED
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        f"qseries: v2: not copied: '{ann}': the reply from Joe User "
        "<joe@qemu-dev.net> gives it for someone else (b4 takes a tag only from "
        "the person it names; add it by hand once they confirm it)"
    ) in proc.stderr.splitlines()
    assert proc.stdout == "v2: no new trailers to copy\n"
    assert path.read_bytes() == before
    proc = run_cli(
        "--series-file", str(path), "trailers", "--json", "--mbox", str(mbox),
        *COMMITTED,
    )  # fmt: skip
    assert json.loads(proc.stdout)["for_others"] == [
        {"tag": ann, "from": "Joe User <joe@qemu-dev.net>"}
    ]


def test_a_reply_that_makes_b4_spin_is_left_out_and_the_rest_copied(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """A Tested-by of 5,000 letters keeps b4 0.16 busy for minutes: the
    mail probe gives it its own limit, names it and leaves it out; the
    other reply's tag is copied."""
    path = copy_series(tmp_path / "s")
    spinning = f"Tested-by: {'A' * 5000} <a@b.net>"
    mbox = thread(
        tmp_path,
        REPO / "patches" / "v2",
        reply(COVER_ID, "[PATCH v2 0/3] x", spinning, "<spin@q>"),
        reply("<p2.v2@qemu-dev.net>", "[PATCH v2 2/3] x", REVIEW, "<r1@q>"),
    )
    lines = mbox.read_text().splitlines()
    at = next(n for n, line in enumerate(lines, 1) if "<spin@q>" in line)
    at = max(n for n in range(1, at) if lines[n - 1].startswith("From mboxrd@z"))
    started = time.monotonic()
    proc = run_cli(
        "--series-file", str(path), "trailers", "--mbox", str(mbox), *COMMITTED,
        env={"QSERIES_MAIL_TIME_LIMIT": "1"},
    )  # fmt: skip
    assert time.monotonic() - started < 30
    assert proc.returncode == 0, proc.stderr
    assert (
        f"qseries: --mbox {mbox}:{at}: left out <spin@q> 'Re: [PATCH v2 0/3] x' "
        f"(a line of {len(spinning):,} characters; mail allows 998): it was not "
        "read within 1 s"
    ) in proc.stderr.splitlines()
    loaded = series.load(path, generators.specs())
    assert [p.trailers for p in loaded.version("v2").patches] == [(), (REVIEW,), ()]
