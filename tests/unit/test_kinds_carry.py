"""The carry kind: a file of the series put into the tree as it is, or
rendered; added, replaced or deleted, each refused where it cannot be."""

from __future__ import annotations

from pathlib import Path

import pytest

from qseries.core.generators import carry
from qseries.ground.errors import AnchorError, TemplateError

from .kinds import apply, qemu_tree, reader

DOC = "docs/devel/x-test.rst"


def series_dir(tmp_path: Path) -> Path:
    root = tmp_path / "series"
    root.mkdir()
    (root / "note.rst").write_text("A note, carried as it is.\n")
    (root / "note.rst.j2").write_text("{{ file }}: since {{ since }}, on {{ base }}.\n")
    return root


def test_a_file_added_verbatim(tmp_path: Path) -> None:
    root = series_dir(tmp_path)
    out = apply("carry", {"file": DOC, "source": "note.rst"}, reader(None), root)
    assert out == {DOC: "A note, carried as it is.\n"}


def test_a_file_rendered_from_a_template(tmp_path: Path) -> None:
    root = series_dir(tmp_path)
    out = apply("carry", {"file": DOC, "template": "note.rst.j2"}, reader(None), root)
    assert out == {DOC: f"{DOC}: since 11.0, on QEMU test.\n"}


@pytest.mark.qemu
def test_add_refuses_a_file_of_the_base_and_replace_takes_it(tmp_path: Path) -> None:
    tree = qemu_tree()
    root = series_dir(tmp_path)
    params = {"file": "docs/devel/index.rst", "source": "note.rst"}
    with pytest.raises(AnchorError, match="exists in QEMU test already"):
        apply("carry", params, reader(tree), root)
    out = apply("carry", {**params, "mode": "replace"}, reader(tree), root)
    assert out == {"docs/devel/index.rst": "A note, carried as it is.\n"}


def test_replace_and_delete_refuse_a_file_the_base_lacks(tmp_path: Path) -> None:
    root = series_dir(tmp_path)
    for params in (
        {"file": DOC, "source": "note.rst", "mode": "replace"},
        {"file": DOC, "mode": "delete"},
    ):
        with pytest.raises(AnchorError, match=f"{DOC} is missing in QEMU test"):
            apply("carry", params, reader(None), root)


def test_delete_gives_none_for_the_file(tmp_path: Path) -> None:
    out = apply("carry", {"file": DOC, "mode": "delete"}, reader(None, {DOC: "x\n"}))
    assert out == {DOC: None}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "exactly one of: source, template"),
        ({"source": "a", "template": "b"}, "exactly one of"),
        ({"source": "a", "mode": "move"}, "must be one of: add, replace, delete"),
        ({"source": "a", "mode": "delete"}, "takes no source"),
    ],
)
def test_keys_are_checked_when_loaded(params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        carry.KIND.check({"file": DOC, **params})


def test_a_file_that_is_not_text_is_refused_in_one_line(tmp_path: Path) -> None:
    root = series_dir(tmp_path)
    (root / "logo.bin").write_bytes(b"GIF89a\xff\xfe")
    with pytest.raises(TemplateError) as info:
        apply("carry", {"file": DOC, "source": "logo.bin"}, reader(None), root)
    assert str(info.value).startswith(f"{root / 'logo.bin'}: not UTF-8 text (byte 7)")
    assert "git diff --binary" in str(info.value)
