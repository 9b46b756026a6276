"""The qtest kind, generic: the meson list and the MAINTAINERS section are
the change's data; on QEMU's real meson.build and MAINTAINERS."""

from __future__ import annotations

from pathlib import Path

import pytest

from qseries.core.generators import qtest
from qseries.ground.errors import AnchorError

from .kinds import apply, qemu_tree, reader, text

pytestmark = pytest.mark.qemu

NAME = "x-answer-test"


def series_dir(tmp_path: Path) -> Path:
    root = tmp_path / "series"
    (root / "tests" / "qtest").mkdir(parents=True)
    (root / "tests" / "qtest" / f"{NAME}.c").write_text(
        "int main(void) { return 0; }\n"
    )
    return root


def test_entry_in_the_named_list_and_lines_in_the_named_section(
    tmp_path: Path,
) -> None:
    tree = qemu_tree()
    params = {
        "qtest": NAME,
        "condition": "config_all_devices.has_key('CONFIG_ISA_TESTDEV')",
        "meson-list": "qtests_i386",
        "maintainers-section": "QAPI Schema",
        "maintainers-before": "qga/qapi-schema.json",
    }
    out = apply("qtest", params, reader(tree), series_dir(tmp_path))
    assert text(out, f"tests/qtest/{NAME}.c") == "int main(void) { return 0; }\n"
    meson = text(out, qtest.QTEST_MESON)
    assert (
        "qtests_i386 = \\\n  (config_all_devices.has_key('CONFIG_ISA_TESTDEV') ? "
        f"['{NAME}'] : []) + \\\n" in meson
    )
    maint = text(out, qtest.MAINTAINERS)
    assert (
        f"F: qapi/*.json\nF: tests/qtest/{NAME}.c\nF: qga/qapi-schema.json\n" in maint
    )
    before = (tree / qtest.MAINTAINERS).read_text()
    assert len(maint) == len(before) + len(f"F: tests/qtest/{NAME}.c\n")


def test_without_a_section_maintainers_is_left_alone(tmp_path: Path) -> None:
    tree = qemu_tree()
    root = series_dir(tmp_path)
    params = {"qtest": NAME, "condition": "true", "meson-list": "qtests_generic"}
    with pytest.raises(AnchorError, match="no 'qtests_generic = \\\\' list"):
        # qtests_generic is a plain list in QEMU: not a list this kind edits.
        apply("qtest", params, reader(tree), root)
    out = apply("qtest", {**params, "meson-list": "qtests_i386"}, reader(tree), root)
    assert qtest.MAINTAINERS not in out


def test_an_unknown_section_is_refused(tmp_path: Path) -> None:
    tree = qemu_tree()
    params = {"qtest": NAME, "condition": "true", "maintainers-section": "No Such"}
    with pytest.raises(AnchorError, match="MAINTAINERS of QEMU test has no 'No Such'"):
        apply("qtest", params, reader(tree), series_dir(tmp_path))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"qtest": "a/b"}, "is not a qtest name"),
        ({"helper": "h.c"}, "a helper also needs: helper-file"),
        ({"maintainers-before": "x"}, "needs 'maintainers-section'"),
        ({"meson-list": "a b"}, "meson variable name"),
    ],
)
def test_keys_are_checked_when_loaded(params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        qtest.KIND.check({"qtest": NAME, "condition": "true", **params})
