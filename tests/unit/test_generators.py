from __future__ import annotations

import re
from pathlib import Path

import pytest

from qseries import generators
from qseries.errors import AnchorError, TemplateError
from qseries.templates import Templates

from ..conftest import FIXTURES, REPO

MINI = FIXTURES / "qemu-mini"


def ctx(root: Path = REPO) -> generators.Context:
    return generators.Context(since="11.0", base="QEMU test", templates=Templates(root))


def reader(files: dict[str, str]) -> generators.Reader:
    return lambda path: files[path]


def mini_files() -> dict[str, str]:
    return {
        p: (MINI / p).read_text()
        for p in (generators.QAPI_FILE, generators.MIGRATION_FILE)
    }


def migration(files: dict[str, str] | None = None) -> str:
    gen = generators.GENERATORS["vfio-migration-prepare"]
    out = gen.apply(reader(files or mini_files()), ctx())
    return out[generators.MIGRATION_FILE]


def body_of(text: str, name: str) -> str:
    from qseries.csource import find_function

    fn = find_function(text, name)
    return text[fn.body[0] : fn.body[1]]


def test_prepare_after_early_return_and_before_ioctl() -> None:
    setter = body_of(migration(), "vfio_migration_set_state")
    early = setter.index("return 0;\n    }")
    prepare = setter.index("vfio_migration_send_event(vbasedev, new_state, true);")
    ioctl = setter.index("ioctl(")
    assert early < prepare < ioctl
    assert setter.count("vfio_migration_send_event(") == 1


def test_completion_keeps_its_place_with_the_new_state() -> None:
    record = body_of(migration(), "vfio_migration_set_device_state")
    assert re.search(
        r"migration->device_state = state;\n"
        r"    vfio_migration_send_event\(vbasedev, state, false\);\n",
        record,
    )
    # The recovery path still records (and so announces) the recover state.
    setter = body_of(migration(), "vfio_migration_set_state")
    assert "vfio_migration_set_device_state(vbasedev, recover_state);" in setter


def test_helper_takes_state_and_prepare_flag() -> None:
    text = migration()
    assert (
        "static void vfio_migration_send_event(VFIODevice *vbasedev,\n"
        "                                      enum vfio_device_mig_state state,\n"
        "                                      bool prepare)\n{" in text
    )
    helper = body_of(text, "vfio_migration_send_event")
    assert "migration->" not in helper
    assert "qapi_event_send_vfio_migration_prepare(dev->id, qom_path," in helper
    assert helper.index("migration_events") < helper.index("if (prepare)")
    # The forward declaration (not a definition) is left alone.
    assert "static void vfio_migration_send_event(VFIODevice *vbasedev);" in text


def test_nothing_else_changes() -> None:
    before = mini_files()[generators.MIGRATION_FILE]
    after = migration()
    assert after.startswith(
        before[: before.index("static void vfio_migration_send_event(")]
    )
    assert 'state_name = "{ not a brace } ( nor a paren";' in after


@pytest.mark.parametrize(
    ("old", "new", "function"),
    [
        (
            "vfio_migration_set_state(VFIODevice",
            "vfio_mig_set_state(VFIODevice",
            "vfio_migration_set_state",
        ),
        (
            "static void vfio_migration_send_event(VFIODevice *vbasedev)\n{",
            "static void vfio_send_event(VFIODevice *vbasedev)\n{",
            "vfio_migration_send_event",
        ),
        (
            "    if (new_state == migration->device_state) {\n"
            "        return 0;\n    }\n",
            "",
            "vfio_migration_set_state",
        ),
        (
            "    vfio_migration_send_event(vbasedev);\n",
            "",
            "vfio_migration_set_device_state",
        ),
    ],
)
def test_missing_anchor_names_function_and_base(
    old: str, new: str, function: str
) -> None:
    files = mini_files()
    assert old in files[generators.MIGRATION_FILE]
    files[generators.MIGRATION_FILE] = files[generators.MIGRATION_FILE].replace(
        old, new
    )
    with pytest.raises(AnchorError) as info:
        migration(files)
    message = str(info.value)
    assert function in message
    assert "QEMU test" in message
    assert "\n" not in message


def test_ioctl_before_early_return_is_refused() -> None:
    files = mini_files()
    text = files[generators.MIGRATION_FILE]
    early = (
        "    if (new_state == migration->device_state) {\n        return 0;\n    }\n"
    )
    text = text.replace(early, "")
    text = text.replace("    return 0;\n}\n", early + "    return 0;\n}\n")
    files[generators.MIGRATION_FILE] = text
    with pytest.raises(AnchorError, match="ioctl comes before the early return"):
        migration(files)


def test_qapi_event_appended_with_since() -> None:
    gen = generators.GENERATORS["qapi-vfio-prepare-event"]
    files = mini_files()
    out = gen.apply(reader(files), ctx())[generators.QAPI_FILE]
    assert out.startswith(files[generators.QAPI_FILE].rstrip("\n") + "\n\n##\n")
    assert "# @VFIO_MIGRATION_PREPARE:\n" in out
    assert "# Since: 11.0\n" in out
    assert "{ 'event': 'VFIO_MIGRATION_PREPARE'," in out
    assert ".. qmp-example::" in out
    assert "recovered to" in out
    for line in out.splitlines():
        if (
            line.startswith("#")
            and "qmp-example" not in line
            and '"timestamp"' not in line
        ):
            assert len(line) <= 70, line
    # Applying twice is refused, not duplicated.
    with pytest.raises(AnchorError, match="already defines"):
        gen.apply(reader({generators.QAPI_FILE: out}), ctx())


def test_qapi_needs_the_completion_event() -> None:
    gen = generators.GENERATORS["qapi-vfio-prepare-event"]
    with pytest.raises(AnchorError, match="has no VFIO_MIGRATION event"):
        gen.apply(
            reader({generators.QAPI_FILE: "{ 'enum': 'X', 'data': [] }\n"}), ctx()
        )


def test_template_undefined_variable_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "qapi").mkdir()
    text = (REPO / generators.QAPI_TEMPLATE).read_text()
    text = text.replace("# Since: {{ since }}", "# Since: {{ sinse }}")
    (tmp_path / generators.QAPI_TEMPLATE).write_text(text)
    line = text.splitlines().index("# Since: {{ sinse }}") + 1
    gen = generators.GENERATORS["qapi-vfio-prepare-event"]
    with pytest.raises(TemplateError) as info:
        gen.apply(reader(mini_files()), ctx(tmp_path))
    assert str(info.value) == (
        f"{tmp_path / generators.QAPI_TEMPLATE}:{line}: "
        "template error: 'sinse' is undefined"
    )


def test_template_undefined_in_macro(tmp_path: Path) -> None:
    (tmp_path / "hw" / "vfio").mkdir(parents=True)
    text = (REPO / generators.MIGRATION_TEMPLATE).read_text()
    text = text.replace("{{ new_state }}", "{{ old_state }}")
    (tmp_path / generators.MIGRATION_TEMPLATE).write_text(text)
    gen = generators.GENERATORS["vfio-migration-prepare"]
    with pytest.raises(
        TemplateError, match=r"migration.c.j2:\d+: .*'old_state' is undefined"
    ):
        gen.apply(reader(mini_files()), ctx(tmp_path))


def qtest_files() -> dict[str, str]:
    files = mini_files()
    for path in (generators.QTEST_MESON, generators.MAINTAINERS):
        files[path] = (MINI / path).read_text()
    return files


def qtest_reader(files: dict[str, str]) -> generators.Reader:
    def read(path: str) -> str:
        if path not in files:
            raise AnchorError(f"{path} is missing", "test")
        return files[path]

    return read


def test_qtest_added_with_meson_entry_and_maintainers() -> None:
    gen = generators.GENERATORS["qtest-vfio-migration-prepare"]
    out = gen.apply(qtest_reader(qtest_files()), ctx())
    assert out[generators.QTEST_FILE] == (REPO / generators.QTEST_FILE).read_text()
    assert out[generators.QTEST_MESON].startswith(
        "# A minimal stand-in for QEMU's tests/qtest/meson.build, for unit tests.\n"
        "qtests_i386 = \\\n"
        "  (config_all_devices.has_key('CONFIG_VFIO_PCI') ? "
        "['vfio-migration-prepare-test'] : []) + \\\n"
        "  ['boot-order-test']\n"
    )
    assert (
        "F: hw/vfio/*\nF: tests/qtest/vfio-migration-prepare-test.c\n"
        "F: qapi/vfio.json\n\nOther\n" in out[generators.MAINTAINERS]
    )


def test_qtest_refuses_an_existing_test_and_unknown_bases() -> None:
    gen = generators.GENERATORS["qtest-vfio-migration-prepare"]
    files = qtest_files()
    files[generators.QTEST_FILE] = "/* already here */\n"
    with pytest.raises(AnchorError, match="exists in QEMU test already"):
        gen.apply(qtest_reader(files), ctx())
    files = qtest_files()
    files[generators.MAINTAINERS] = "Nothing\n"
    with pytest.raises(AnchorError, match="no 'VFIO' section"):
        gen.apply(qtest_reader(files), ctx())
    files = qtest_files()
    files[generators.QTEST_MESON] = "qtests = []\n"
    with pytest.raises(AnchorError, match="no 'qtests_i386"):
        gen.apply(qtest_reader(files), ctx())


def test_template_runtime_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "qapi").mkdir()
    text = (REPO / generators.QAPI_TEMPLATE).read_text() + "{{ 1 // 0 }}\n"
    (tmp_path / generators.QAPI_TEMPLATE).write_text(text)
    gen = generators.GENERATORS["qapi-vfio-prepare-event"]
    with pytest.raises(TemplateError) as info:
        gen.apply(reader(mini_files()), ctx(tmp_path))
    line = len(text.splitlines())
    assert str(info.value).startswith(f"{tmp_path / generators.QAPI_TEMPLATE}:{line}: ")
    assert "by zero" in str(info.value)
