"""qseries trailers: review tags from a mailed thread, collected with b4
(offline), written into series.yaml under the version they were given
on; a patch that changed since it was mailed keeps them out."""

from __future__ import annotations

import email
import email.policy
import shutil
from pathlib import Path

from qseries import generators, series

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
