"""The mail probe: each mail read alone, in a child, under a time limit;
a mail that spins or is too large is named and left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from qseries.ground.errors import UsageError
from qseries.ground.workdir import WorkDir
from qseries.mail import mailprobe

# b4 0.16's find_trailers backtracks on this for minutes.
SPINNING = f"Tested-by: {'A' * 5000} <a@b.net>"


def mail(path: Path, msgid: str, body: str) -> Path:
    path.write_text(
        "From: Someone <someone@qseries.test>\n"
        "Subject: Re: [PATCH v2 0/3] vfio:\n  a subject, folded\n"
        f"Message-Id: {msgid}\n\n{body}\n"
    )
    return path


def test_a_mail_that_spins_is_left_out_alone(tmp_path: Path) -> None:
    files = [
        mail(tmp_path / "1", "<ok1@t>", "Looks right.\n\nReviewed-by: R <r@t>"),
        mail(tmp_path / "2", "<spin@t>", SPINNING),
        mail(tmp_path / "3", "<ok2@t>", "Works.\n\nTested-by: T <t@t>"),
    ]
    work = WorkDir(tmp_path / "work")
    assert mailprobe.probe(files, work, limit=1) == [
        mailprobe.LeftOut(1, "it was not read within 1 s")
    ]
    # A parser that does not see the alarm: the child's own limit finds
    # the mail it was reading, and the probe goes on after it.
    assert mailprobe.probe(files, work, limit=600, child_limit=4) == [
        mailprobe.LeftOut(1, "the probe did not get past it within 4 s")
    ]


def test_a_mail_too_large_is_left_out_unread(tmp_path: Path) -> None:
    big = mail(tmp_path / "big", "<big@t>", "x" * mailprobe.MAIL_BYTES)
    small = mail(tmp_path / "small", "<s@t>", "fine")
    left = mailprobe.probe([small, big], WorkDir(tmp_path / "work"), limit=5)
    assert left == [
        mailprobe.LeftOut(1, f"{big.stat().st_size:,} bytes, more than the "
                          f"{mailprobe.MAIL_BYTES:,} read")
    ]  # fmt: skip


def test_too_many_mails_are_refused(tmp_path: Path) -> None:
    files = [tmp_path / f"{n}" for n in range(mailprobe.MAILS + 1)]
    for f in files:
        f.write_bytes(b"")
    with pytest.raises(UsageError, match=r"^5001 mails in one thread"):
        mailprobe.probe(files, WorkDir(tmp_path / "work"), limit=5)


def test_a_mail_is_described_from_its_raw_headers() -> None:
    data = (
        b"Message-Id: <a\x1b@t>\r\nSubject: Re: [PATCH] x\r\n\ty\r\n\r\n"
        + SPINNING.encode()
        + b"\r\n"
    )
    assert mailprobe.described(data) == (
        "<a\\x1b@t> 'Re: [PATCH] x y' "
        f"(a line of {len(SPINNING):,} characters; mail allows 998)"
    )
    assert mailprobe.described(b"From: x\n\nbody\n") == "(no Message-Id) (no subject)"


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_a_bad_time_limit_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(mailprobe.LIMIT_VARIABLE, value)
    with pytest.raises(UsageError, match="not a number of seconds"):
        mailprobe.time_limit()
