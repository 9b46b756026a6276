"""qseries send: git send-email of the generated mails, a dry run unless
--really-send, from an identity that signed the patches off, threaded
under the previous version's cover letter when its Message-Id is known.

git send-email (Debian's git-email, which make check installs) runs for
real, with --dry-run: nothing leaves the machine."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ..conftest import REPO, RunCli, copy_series

JANE = "Jane Doe <jane@qemu-dev.net>"
PLACEHOLDER = "qseries developers <qseries-devel@example.org>"


def signed_by_jane(tmp_path: Path, *versions: str) -> Path:
    """The committed mails, as if the series' author were Jane."""
    out = tmp_path / "out"
    for name in versions:
        shutil.copytree(REPO / "patches" / name, out / name)
        for mail in (out / name).glob("*.patch"):
            mail.write_text(mail.read_text().replace(PLACEHOLDER, JANE))
    return out


def test_a_placeholder_identity_is_refused(run_cli: RunCli) -> None:
    proc = run_cli("send", "--series", "v2")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"qseries: error: cannot send as {PLACEHOLDER}: example.org is a "
        "placeholder domain, nobody can answer it or sign off with it; set the "
        "version's author in series.yaml, or pass --from"
    ]


def test_a_sender_who_did_not_sign_off_is_refused(
    run_cli: RunCli, tmp_path: Path
) -> None:
    out = signed_by_jane(tmp_path, "v1")
    proc = run_cli(
        "send", "--series", "v1", "--output", str(out),
        "--from", "Joe Bloggs <joe@qemu-dev.net>",
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "qseries: error: cannot send as Joe Bloggs <joe@qemu-dev.net>: patch 1/3 "
        "'qapi/vfio: Add VFIO_MIGRATION_PREPARE event' has no Signed-off-by: of "
        "joe@qemu-dev.net; send as the author who signed off, or regenerate the "
        "series"
    ]


def test_dry_run_sends_nothing_to_the_generated_recipients(
    run_cli: RunCli, tmp_path: Path
) -> None:
    out = signed_by_jane(tmp_path, "v1")
    proc = run_cli("send", "--series", "v1", "--output", str(out), "--from", JANE)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.count("Result: OK") == 4  # cover letter and 3 patches
    # Exactly the cover letter's To and Cc, nothing from the bodies.
    rcpt = set(re.findall(r"^RCPT TO:<(.+)>$", text, re.M))
    assert rcpt == {
        "alex@shazbot.org", "armbru@redhat.com", "clg@redhat.com",
        "eblake@redhat.com", "farosas@suse.de", "lvivier@redhat.com",
        "pbonzini@redhat.com", "qemu-devel@nongnu.org",
    }  # fmt: skip
    assert (
        "In-Reply-To"
        not in text.split("Subject: [PATCH v1 0/3]")[1].split("Result: OK")[0]
    )
    assert text.splitlines()[-1] == (
        f"v1: 4 mails from {JANE}: dry run (nothing sent; --really-send sends)"
    )


def test_next_version_replies_to_the_recorded_cover_letter(
    run_cli: RunCli, tmp_path: Path
) -> None:
    series = copy_series(tmp_path / "s")
    text = series.read_text()
    anchor = '    date: "2026-11-27T09:00:00+00:00"\n'
    assert anchor in text
    series.write_text(
        text.replace(anchor, anchor + '    message-id: "<v1-cover@qemu-dev.net>"\n')
    )
    out = signed_by_jane(tmp_path, "v2")
    proc = run_cli(
        "--series-file", str(series), "send", "--series", "v2",
        "--output", str(out), "--from", JANE,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cover = proc.stdout.split("Subject: [PATCH v2 0/3]")[1].split("Result: OK")[0]
    assert "\nIn-Reply-To: <v1-cover@qemu-dev.net>\n" in cover
    assert proc.stdout.splitlines()[-1].startswith(
        f"v2: 4 mails from {JANE}, in reply to <v1-cover@qemu-dev.net>: dry run"
    )
