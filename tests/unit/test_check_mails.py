"""Reading mails and checking that they form one whole series."""

from __future__ import annotations

import base64
from pathlib import Path

from qseries.core.mail import read_mail
from qseries.qemu.check import check_mails

from ..conftest import REPO

PATCH = (
    REPO / "patches" / "v1" / "v1-0001-qapi-vfio-Add-VFIO_MIGRATION_PREPARE-event.patch"
)


def mail(tmp_path: Path, name: str, subject: str, text: str | None = None) -> Path:
    """The committed patch 1/3 under another subject."""
    data = text if text is not None else PATCH.read_text()
    path = tmp_path / name
    path.write_text(
        data.replace(
            "Subject: [PATCH v1 1/3] qapi/vfio: Add",
            f"Subject: {subject} qapi/vfio: Add",
        )
    )
    return path


def test_subject_prefixes(tmp_path: Path) -> None:
    rfc = read_mail(mail(tmp_path, "a", "[RFC PATCH v3 2/5]"))
    assert (rfc.version, rfc.index, rfc.numbered) == (3, (2, 5), "2/5")
    assert rfc.subject == "qapi/vfio: Add VFIO_MIGRATION_PREPARE event"
    plain = read_mail(mail(tmp_path, "b", "[PATCH]"))
    assert (plain.version, plain.index, plain.numbered) == (1, None, "b")


def test_lone_unnumbered_patch_is_one_of_one(tmp_path: Path) -> None:
    result = check_mails([read_mail(mail(tmp_path, "a", "[PATCH]"))], "v1")
    assert result.ok, result
    assert result.detail == "v1, patches 1..1, every diff sound"


def test_unnumbered_mail_among_others(tmp_path: Path) -> None:
    mails = [
        read_mail(mail(tmp_path, "a", "[PATCH v1 1/2]")),
        read_mail(mail(tmp_path, "b", "[PATCH v1]")),
    ]
    result = check_mails(mails, "v1")
    assert result.items == [
        "b 'qapi/vfio: Add VFIO_MIGRATION_PREPARE event': "
        "its subject has no 'n/M' numbering",
        "patch 2/2 is missing",
    ]


def test_numbered_mail_without_diff(tmp_path: Path) -> None:
    text = PATCH.read_text().split("\ndiff --git ")[0].split("\n---\n")[0] + "\n"
    result = check_mails([read_mail(mail(tmp_path, "a", "[PATCH 1/1]", text))], "v1")
    assert result.items == [
        "patch 1/1 'qapi/vfio: Add VFIO_MIGRATION_PREPARE event': has no diff"
    ]


def test_base64_body_is_decoded_for_the_perl_scripts(tmp_path: Path) -> None:
    one = mail(tmp_path, "one", "[PATCH 1/1]")
    head, body = one.read_bytes().split(b"\n\n", 1)
    encoded = tmp_path / "encoded"
    encoded.write_bytes(
        head
        + b"\nContent-Type: text/plain; charset=utf-8"
        + b"\nContent-Transfer-Encoding:\n base64\n\n"  # folded, too
        + base64.encodebytes(body)
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    decoded = read_mail(encoded, scratch)
    assert decoded.text != encoded
    assert decoded.text.read_bytes() == (
        head
        + b"\nContent-Type: text/plain; charset=utf-8"
        + b"\nContent-Transfer-Encoding: 8bit\n\n"
        + body
    )
    assert check_mails([decoded], "v1").ok
    # A mail in 8 bits is read as it is.
    assert read_mail(PATCH, scratch).text == PATCH
