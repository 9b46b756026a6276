"""mbox.read_series: a mailed thread, read with b4 (offline), into the
ordered mails of one version of series.yaml; what b4 does not refuse is
a one-line UsageError naming the patch and the line of the mbox.

The committed patches/v1 and patches/v2 are the mails; no QEMU tree is
needed to read them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qseries.core import generators, series
from qseries.core.mail import MailedSeries
from qseries.ground.errors import QSeriesError, UsageError
from qseries.ground.workdir import WorkDir
from qseries.mail import mbox

from ..conftest import REPO

SERIES = series.load(REPO / "series.yaml", generators.specs())
SEP = "From mboxrd@z Thu Jan  1 00:00:00 1970\n"
REVIEW = "Reviewed-by: Rev Person <rev@qseries.test>"
TESTED = "Tested-by: Test Person <test@qseries.test>"


def committed(version: str) -> list[str]:
    """patches/vN as git format-patch wrote them: cover letter, 1/3..3/3."""
    return [p.read_text() for p in sorted((REPO / "patches" / version).glob("*"))]


def msgid(version: str, n: int) -> str:
    return f"<{version}.{n}@qseries.test>"


def threaded(version: str) -> list[str]:
    """The version as mailed: Message-Ids, patches replying to the cover."""
    out = []
    for n, mail in enumerate(committed(version)):
        rest = mail.split("\n", 1)[1]
        ids = f"Message-Id: {msgid(version, n)}\n"
        if n:
            ids += f"In-Reply-To: {msgid(version, 0)}\n"
        out.append(f"{SEP}{ids}{rest}")
    return out


def reply(to: str, tag: str, mid: str) -> str:
    return (
        f"{SEP}From: {tag.split(': ', 1)[1]}\nSubject: Re: [PATCH] x\n"
        f"Date: Sun, 29 Nov 2026 10:00:00 +0000\nMessage-Id: {mid}\n"
        f"In-Reply-To: {to}\n\n> quoted\n\nLooks right.\n\n{tag}\n"
    )


def write(tmp_path: Path, parts: list[str], lead: str = "") -> Path:
    path = tmp_path / "thread.mbox"
    path.write_text(lead + "".join(p if p.endswith("\n") else p + "\n" for p in parts))
    return path


def read(tmp_path: Path, path: Path) -> MailedSeries:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return mbox.read_series(path, SERIES, WorkDir(tmp_path / "work"), scratch)


def error(tmp_path: Path, path: Path) -> str:
    with pytest.raises(UsageError) as raised:
        read(tmp_path, path)
    text = str(raised.value)
    assert "\n" not in text
    prefix = f"--mbox {path}"
    assert text.startswith(prefix), text
    return text.removeprefix(prefix)


def line_of(path: Path, text: str, after: int = 0) -> int:
    lines = path.read_text().splitlines()
    return next(n for n, t in enumerate(lines, 1) if n > after and t.startswith(text))


def test_a_thread_in_any_order_with_its_reviews(tmp_path: Path) -> None:
    cover, p1, p2, p3 = threaded("v2")
    path = write(
        tmp_path,
        [
            reply(msgid("v2", 0), TESTED, "<r2@t>"),
            p3,
            p1,
            reply(msgid("v2", 2), REVIEW, "<r1@t>"),
            p2,
            cover,
        ],
    )
    mailed = read(tmp_path, path)
    assert mailed.version.name == "v2"
    assert mailed.cover is not None and mailed.cover.numbered == "0/3"
    assert [m.numbered for m in mailed.patches] == ["1/3", "2/3", "3/3"]
    assert mailed.trailers == ((TESTED,), (REVIEW, TESTED), (TESTED,))
    assert mailed.collected[1] == f"2/3: {REVIEW}"
    assert mailed.said == ()
    # The mails git am takes carry the trailers; To and Cc are the sent ones.
    assert REVIEW in mailed.patches[1].body
    assert "Alex Williamson" in mailed.patches[0].header("To")
    assert [m.numbered for m in mailed.mails] == ["0/3", "1/3", "2/3", "3/3"]


def test_git_format_patch_output_without_message_ids(tmp_path: Path) -> None:
    mails = committed("v1")
    # The same mail twice is one mail.
    mailed = read(tmp_path, write(tmp_path, [*mails, mails[2]]))
    assert (mailed.version.name, len(mailed.patches)) == ("v1", 3)


def test_the_newest_version_is_taken(tmp_path: Path) -> None:
    mailed = read(tmp_path, write(tmp_path, [*threaded("v2"), *threaded("v1")]))
    assert mailed.version.name == "v2"
    assert mailed.said == ("b4 took v2, the newest; the mbox has v1 too",)


def test_an_incomplete_newest_version_gives_way(tmp_path: Path) -> None:
    v2 = threaded("v2")
    path = write(tmp_path, [*threaded("v1"), v2[0], v2[1], v2[3]])
    mailed = read(tmp_path, path)
    assert mailed.version.name == "v1"
    assert mailed.said == ("v2 lacks patch 2/3; took v1, the newest complete version",)


def test_a_reply_not_from_the_tags_address_is_said(tmp_path: Path) -> None:
    other = reply(msgid("v2", 1), REVIEW, "<r1@t>").replace(
        "From: Rev Person <rev@qseries.test>", "From: Someone <else@qseries.test>"
    )
    mailed = read(tmp_path, write(tmp_path, [*threaded("v2"), other]))
    assert mailed.trailers == ((), (), ())
    assert mailed.said == (
        f"b4 left out '{REVIEW}': the reply from Someone <else@qseries.test> "
        "gives it for someone else",
    )


def test_missing_patch(tmp_path: Path) -> None:
    v2 = threaded("v2")
    path = write(tmp_path, [v2[0], v2[1], v2[3]])
    assert error(tmp_path, path) == (
        ": [PATCH v2 2/3] is missing (b4 found 1/3, 3/3 of v2); "
        "add the mail of patch 2/3 to the mbox"
    )


def test_duplicate_names_both_lines(tmp_path: Path) -> None:
    v2 = threaded("v2")
    other = v2[2].replace(msgid("v2", 2), "<other@t>").replace("Announce", "Tell")
    path = write(tmp_path, [*v2, other])
    first = line_of(path, "From ", line_of(path, "Subject: [PATCH v2 1/3]"))
    second = line_of(path, "From ", line_of(path, "Subject: [PATCH v2 3/3]"))
    assert error(tmp_path, path).startswith(
        f":{second}: [PATCH v2 2/3] vfio/migration: Tell the move to PRE_COPY_P2P: "
        f"a second, different mail claims patch 2/3 of v2 (the first is at line "
        f"{first}); "
    )


def test_quoted_patch_line_counts_blank_lines_and_crlf(tmp_path: Path) -> None:
    v1 = committed("v1")
    head, body = v1[2].split("\n\n", 1)
    quoted = head + "\n\n" + "".join(f"> {line}\n" for line in body.splitlines())
    path = tmp_path / "thread.mbox"
    text = "\n\n" + "".join([v1[0], v1[1], quoted, v1[3]])
    path.write_bytes(text.replace("\n", "\r\n").encode())
    line = 1 + text.splitlines().index(
        next(t for t in text.splitlines() if t.startswith("> diff --git"))
    )
    assert error(tmp_path, path).startswith(
        f":{line}: [PATCH v1 2/3] vfio/migration: Emit VFIO_MIGRATION_PREPARE "
        "before state changes: its diff is quoted ('> diff --git'), as in a reply;"
    )


def test_wrapped_patch_names_the_line_of_the_mbox(tmp_path: Path) -> None:
    v2 = threaded("v2")
    lines = v2[2].splitlines()
    at = next(n for n, t in enumerate(lines) if t.startswith("@@ ") and len(t) > 60)
    lines[at : at + 1] = [lines[at][:60], lines[at][60:]]
    path = write(tmp_path, [v2[0], v2[1], "\n".join(lines), v2[3]])
    m = re.fullmatch(
        r":(\d+): \[PATCH v2 2/3\] [^;]*: corrupt patch \(lines "
        r"wrapped or whitespace-damaged\?\); .*",
        error(tmp_path, path),
    )
    assert m
    broken = line_of(path, lines[at + 1], line_of(path, "Subject: [PATCH v2 2/3]"))
    assert int(m[1]) == broken


def test_n_beyond_m(tmp_path: Path) -> None:
    v2 = threaded("v2")
    odd = v2[3].replace("[PATCH v2 3/3]", "[PATCH v2 4/3]")
    path = write(tmp_path, [*v2[:3], odd])
    line = line_of(path, "From ", line_of(path, "Subject: [PATCH v2 2/3]"))
    assert error(tmp_path, path).startswith(
        f":{line}: [PATCH v2 4/3] tests/qtest: Add vfio-migration-events-test: "
        "patch 4 of 3, n is beyond M in its n/M;"
    )


def test_no_patch(tmp_path: Path) -> None:
    path = write(tmp_path, [threaded("v2")[0], reply(msgid("v2", 0), REVIEW, "<r>")])
    assert error(tmp_path, path) == (
        ": no patch in it (2 mails, none a '[PATCH n/M]' with a diff); "
        "give the series' mails, e.g. from 'git format-patch --stdout'"
    )


def test_a_version_series_yaml_lacks(tmp_path: Path) -> None:
    path = write(
        tmp_path, [m.replace("[PATCH v2 ", "[PATCH v9 ") for m in threaded("v2")]
    )
    assert error(tmp_path, path) == (
        ": its mails are v9, series.yaml has no v9; it has: v1, v2"
    )


def test_the_same_mbox_read_twice_into_one_scratch(tmp_path: Path) -> None:
    path = write(tmp_path, threaded("v1"))
    assert read(tmp_path, path).patches[0].path != read(tmp_path, path).patches[0].path


ODD = [
    ("bad charset", "Content-Type: text/plain; charset=x-bogus\n"),
    ("unknown-8bit subject", "Subject: =?unknown-8bit?q?=FF=FE?=\n"),
    ("empty Message-Id", "Message-Id: <>\n"),
    ("bad address", "To: a@[192.168.0.1\n"),
    ("a NUL in a header", "X-Odd: a\x00b\n"),
    ("no boundary", "Content-Type: multipart/mixed\n"),
    ("base64 that is not", "Content-Transfer-Encoding: base64\n"),
    ("a long header", "X-Long: " + "a" * 20000 + "\n"),
    ("an unclosed subject", "Subject: [PATCH v2 2/3\n"),
    ("n/0", "Subject: [PATCH v2 1/0] x\n"),
    ("a huge version", "Subject: [PATCH v99999999999999999999 1/3] x\n"),
    ("bad bytes", "From: \udcff\udcfe <a@b>\n"),
]


@pytest.mark.parametrize(("what", "header"), ODD, ids=[w for w, _ in ODD])
def test_odd_headers_end_in_a_qseries_error_or_a_series(
    tmp_path: Path, what: str, header: str
) -> None:
    v2 = threaded("v2")
    sep, rest = v2[2].split("\n", 1)
    v2[2] = f"{sep}\n{header}{rest}"
    path = tmp_path / "thread.mbox"
    path.write_bytes("".join(v2).encode("utf-8", "surrogateescape"))
    try:
        mailed = read(tmp_path, path)
    except QSeriesError as err:
        assert err.exit_code == 2, err
        assert "\n" not in str(err)
    else:
        assert mailed.version.name == "v2"


def test_what_b4_refuses_is_named(tmp_path: Path) -> None:
    """b4 refuses a mail with unicode control characters (as in "Trojan
    Source"); the error names the mail and what b4 saw."""
    v2 = threaded("v2")
    v2[2] = v2[2].replace("\n+", "\n+/* \u202e */", 1)
    path = write(tmp_path, v2)
    line = line_of(path, "From ", line_of(path, "Subject: [PATCH v2 1/3]"))
    assert error(tmp_path, path).startswith(
        f":{line}: [PATCH v2 2/3] vfio/migration: Announce the move to "
        "PRE_COPY_P2P: b4 cannot read it (Message contains suspicious unicode "
        "control characters!, Char: RIGHT-TO-LEFT OVERRIDE (0x202e)); "
    )
