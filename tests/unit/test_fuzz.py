"""Fuzzing with hypothesis: whatever series.yaml or an mbox holds, only
qseries' own errors come out (one line, a file and line where known),
never a Python exception of another kind."""

from __future__ import annotations

import email.utils
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qseries.core import generators, series
from qseries.ground.errors import QSeriesError
from qseries.ground.workdir import WorkDir
from qseries.mail import mbox

from ..conftest import REPO, copy_series

TEXT = (REPO / "series.yaml").read_text()
LINES = TEXT.splitlines(keepends=True)


def only_our_errors(action: Callable[[], object]) -> None:
    try:
        action()
    except QSeriesError as err:
        assert str(err).strip(), "an error must say something"
        assert "\n" not in str(err).strip(), f"more than one line: {err!r}"


# -- series.yaml --------------------------------------------------------------

# Edits that keep most of the file, so that the loader gets deep into it.
line_edit = st.one_of(
    st.tuples(st.just("drop"), st.integers(0, len(LINES) - 1), st.just("")),
    st.tuples(st.just("swap"), st.integers(0, len(LINES) - 1), st.text(max_size=40)),
    st.tuples(
        st.just("insert"),
        st.integers(0, len(LINES)),
        st.sampled_from(
            [
                "  bogus: 1\n",
                "    base: '>=99'\n",
                "    wire: []\n",
                "      generator: nope\n",
                "- x\n",
                "\t\n",
                "&a [*a]\n",
                "key: !!python/object:os.system\n",
                "    test: {qtest: 7}\n",
                "    date: yesterday\n",
                "\ufeff\x00\n",
            ]
        ),
    ),
    st.tuples(
        st.just("replace"),
        st.integers(0, len(LINES) - 1),
        st.sampled_from(["", "~", "null", "[]", "{}", "1", "'", '"', "- ", ": :"]),
    ),
)


def edited(edits: list[tuple[str, int, str]]) -> str:
    lines = list(LINES)
    for how, at, text in edits:
        at = min(at, len(lines) - 1) if lines else 0
        if how == "drop" and lines:
            del lines[at]
        elif how == "swap" and lines:
            lines[at] = text + "\n"
        elif how == "insert":
            lines.insert(at, text)
        elif how == "replace" and lines:
            head, sep, _ = lines[at].partition(": ")
            lines[at] = f"{head}{sep or ': '}{text}\n"
    return "".join(lines)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(line_edit, min_size=1, max_size=4))
def test_any_edit_of_series_yaml_is_our_error(
    edits: list[tuple[str, int, str]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = copy_series(Path(tmp) / "s")
        path.write_text(edited(edits), encoding="utf-8")
        only_our_errors(lambda: series.load(path, generators.specs()))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_as_series_yaml_are_our_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "series.yaml"
        path.write_bytes(data)
        only_our_errors(lambda: series.load(path, generators.specs()))


# -- mboxes -------------------------------------------------------------------

SERIES = series.load(REPO / "series.yaml", generators.specs())
PATCHES = sorted((REPO / "patches" / "v1").glob("*.patch"))

header_value = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "=?utf-8?q?=E2=80=94?=",
            "=?bogus?b?////?=",
            "=?utf-8?b?not base64?=",
            "[PATCH v1 2/3]",
            "[PATCH v99 1/1] x",
            "[PATCH 0/0]",
            "[PATCH v1 3/2] x",
            "[PATCH v-1 a/b]",
            "<>",
            "<@>",
            "\udcff",
        ]
    ),
)
mail_edit = st.tuples(
    st.integers(0, len(PATCHES) - 1),
    st.sampled_from(
        [
            "Subject",
            "From",
            "Message-Id",
            "In-Reply-To",
            "Content-Transfer-Encoding",
            "Content-Type",
            "Date",
            "To",
        ]
    ),
    header_value,
)


def mbox_text(edits: list[tuple[int, str, str]], order: list[int]) -> str:
    mails = [p.read_text() for p in PATCHES]
    for index, name, value in edits:
        head, sep, body = mails[index].partition("\n\n")
        lines = [line for line in head.splitlines() if not line.startswith(f"{name}:")]
        value = value.replace("\n", " ").replace("\r", " ")
        lines.insert(1, f"{name}: {value}")
        mails[index] = "\n".join(lines) + sep + body
    chosen = [mails[i % len(mails)] for i in order] or mails[:1]
    date = email.utils.formatdate(0)
    return "".join(
        m if m.startswith("From ") else f"From fuzz {date}\n{m}" for m in chosen
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(mail_edit, max_size=3),
    st.lists(st.integers(0, 6), min_size=1, max_size=6),
)
def test_any_mbox_is_read_or_our_error(
    tmp_path: Path, edits: list[tuple[int, str, str]], order: list[int]
) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        where = Path(tmp)
        path = where / "thread.mbox"
        path.write_text(mbox_text(edits, order), encoding="utf-8", errors="replace")
        workdir = WorkDir(where / "work")
        only_our_errors(lambda: mbox.read_series(path, SERIES, workdir, where))
