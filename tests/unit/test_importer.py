"""The importer's readings of a commit message and a cover letter."""

from __future__ import annotations

from qseries.mail.importer import _cover_text, _prefix, split_message


def test_the_last_paragraph_of_trailers_is_the_trailer_block() -> None:
    subject, body, trailers = split_message(
        "area: Do it\n\nWhy.\n\nWhat.\n\nSigned-off-by: A <a@b.org>\n"
        "Reviewed-by: B <b@b.org>\n"
    )
    assert subject == "area: Do it"
    assert body == "Why.\n\nWhat."
    assert trailers == ("Signed-off-by: A <a@b.org>", "Reviewed-by: B <b@b.org>")


def test_a_last_paragraph_with_a_line_that_is_no_trailer_stays_body() -> None:
    message = "area: Do it\n\nWhy.\n\nSigned-off-by: A <a@b.org>\n[B: fixed a typo]\n"
    _, body, trailers = split_message(message)
    assert trailers == ()
    assert body == "Why.\n\nSigned-off-by: A <a@b.org>\n[B: fixed a typo]"


def test_no_body_and_a_subject_on_two_lines() -> None:
    subject, body, trailers = split_message(
        "area: A subject\nthat goes on\n\nSigned-off-by: A <a@b.org>"
    )
    assert subject == "area: A subject that goes on"
    assert body == ""
    assert trailers == ("Signed-off-by: A <a@b.org>",)
    assert split_message("area: Only a subject\n") == ("area: Only a subject", "", ())


def test_the_cover_blurb_ends_before_the_shortlog() -> None:
    body = (
        "Why the series.\n\nMore.\n\nAda Lovelace (2):\n  a: One\n  b: Two\n\n"
        " a.c | 1 +\n 1 file changed\n\nbase-commit: " + "1" * 40 + "\n-- \n2.39.5\n"
    )
    assert _cover_text(body) == "Why the series.\n\nMore."


def test_the_subject_prefix_without_version_and_counter() -> None:
    assert _prefix("[RFC PATCH v2 1/3] a: b") == "RFC PATCH"
    assert _prefix("[PATCH 0/3] a") == "PATCH"
    assert _prefix("no prefix") == "PATCH"
