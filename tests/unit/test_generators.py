from __future__ import annotations

import re
from pathlib import Path

import pytest

from qseries.core import generators, series
from qseries.core.generators.qtest import MAINTAINERS, QTEST_MESON
from qseries.core.templates import Templates
from qseries.ground.errors import AnchorError, TemplateError
from qseries.labs.vfio_migration.generators import MIGRATION_FILE

from ..conftest import FIXTURES, REPO

MINI = FIXTURES / "qemu-mini"
SERIES = series.load(REPO / "series.yaml", generators.specs())
QAPI_TEMPLATE = "qapi/vfio-v1.json.j2"
MIGRATION_TEMPLATE = "hw/vfio/migration-v1.c.j2"
QTEST_FILE = "tests/qtest/vfio-migration-prepare-test.c"
QAPI_FILE = "qapi/vfio.json"


def ctx(root: Path = REPO, version: str = "v1", index: int = 0) -> generators.Context:
    """The context of patch `index` of `version`, with its 'with:' data."""
    return generators.Context(
        since="11.0",
        base="QEMU test",
        templates=Templates(root),
        params=SERIES.version(version).patches[index].params,
    )


def apply(
    index: int,
    read: generators.Reader,
    root: Path = REPO,
    version: str = "v1",
) -> dict[str, str]:
    patch = SERIES.version(version).patches[index]
    out = patch.changes[0].generator.apply(read, ctx(root, version, index))
    written = {path: text for path, text in out.items() if text is not None}
    assert written.keys() == out.keys()  # these kinds delete nothing
    return written


def reader(files: dict[str, str]) -> generators.Reader:
    return lambda path: files[path]


def mini_files() -> dict[str, str]:
    return {p: (MINI / p).read_text() for p in (QAPI_FILE, MIGRATION_FILE)}


def migration(files: dict[str, str] | None = None, version: str = "v1") -> str:
    out = apply(1, reader(files or mini_files()), version=version)
    return out[MIGRATION_FILE]


def body_of(text: str, name: str) -> str:
    from qseries.core.csource import find_function

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
    before = mini_files()[MIGRATION_FILE]
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
    assert old in files[MIGRATION_FILE]
    files[MIGRATION_FILE] = files[MIGRATION_FILE].replace(old, new)
    with pytest.raises(AnchorError) as info:
        migration(files)
    message = str(info.value)
    assert function in message
    assert "QEMU test" in message
    assert "\n" not in message


def test_ioctl_before_early_return_is_refused() -> None:
    files = mini_files()
    text = files[MIGRATION_FILE]
    early = (
        "    if (new_state == migration->device_state) {\n        return 0;\n    }\n"
    )
    text = text.replace(early, "")
    text = text.replace("    return 0;\n}\n", early + "    return 0;\n}\n")
    files[MIGRATION_FILE] = text
    with pytest.raises(AnchorError, match="ioctl comes before the early return"):
        migration(files)


def test_qapi_event_appended_with_since() -> None:
    files = mini_files()
    out = apply(0, reader(files))[QAPI_FILE]
    assert out.startswith(files[QAPI_FILE].rstrip("\n") + "\n\n##\n")
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
    with pytest.raises(AnchorError, match="is defined already"):
        apply(0, reader({QAPI_FILE: out}))


def test_qapi_needs_the_completion_event() -> None:
    with pytest.raises(AnchorError, match="no VFIO_MIGRATION event"):
        apply(0, reader({QAPI_FILE: "{ 'enum': 'X', 'data': [] }\n"}))


def test_template_undefined_variable_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "qapi").mkdir()
    text = (REPO / QAPI_TEMPLATE).read_text()
    text = text.replace("# Since: {{ since }}", "# Since: {{ sinse }}")
    (tmp_path / QAPI_TEMPLATE).write_text(text)
    line = text.splitlines().index("# Since: {{ sinse }}") + 1
    with pytest.raises(TemplateError) as info:
        apply(0, reader(mini_files()), tmp_path)
    assert str(info.value) == (
        f"{tmp_path / QAPI_TEMPLATE}:{line}: template error: 'sinse' is undefined"
    )


def test_template_undefined_in_macro(tmp_path: Path) -> None:
    (tmp_path / "hw" / "vfio").mkdir(parents=True)
    text = (REPO / MIGRATION_TEMPLATE).read_text()
    text = text.replace("{{ new_state }}", "{{ old_state }}")
    (tmp_path / MIGRATION_TEMPLATE).write_text(text)
    with pytest.raises(
        TemplateError, match=r"migration-v1.c.j2:\d+: .*'old_state' is undefined"
    ):
        apply(1, reader(mini_files()), tmp_path)


def qtest_files() -> dict[str, str]:
    files = mini_files()
    for path in (QTEST_MESON, MAINTAINERS):
        files[path] = (MINI / path).read_text()
    return files


def qtest_reader(files: dict[str, str]) -> generators.Reader:
    def read(path: str) -> str:
        if path not in files:
            raise AnchorError(f"{path} is missing", "test")
        return files[path]

    return read


def test_qtest_added_with_meson_entry_and_maintainers() -> None:
    out = apply(2, qtest_reader(qtest_files()))
    assert out[QTEST_FILE] == (REPO / QTEST_FILE).read_text()
    assert out[QTEST_MESON].startswith(
        "# A minimal stand-in for QEMU's tests/qtest/meson.build, for unit tests.\n"
        "qtests_i386 = \\\n"
        "  (config_all_devices.has_key('CONFIG_VFIO_PCI') ? "
        "['vfio-migration-prepare-test'] : []) + \\\n"
        "  ['boot-order-test']\n"
    )
    assert (
        "F: hw/vfio/*\nF: tests/qtest/vfio-migration-prepare-test.c\n"
        "F: qapi/vfio.json\n\nOther\n" in out[MAINTAINERS]
    )


def test_qtest_refuses_an_existing_test_and_unknown_bases() -> None:
    files = qtest_files()
    files[QTEST_FILE] = "/* already here */\n"
    with pytest.raises(AnchorError, match="exists in QEMU test already"):
        apply(2, qtest_reader(files))
    files = qtest_files()
    files[MAINTAINERS] = "Nothing\n"
    with pytest.raises(AnchorError, match="no 'VFIO' section"):
        apply(2, qtest_reader(files))
    files = qtest_files()
    files[QTEST_MESON] = "qtests = []\n"
    with pytest.raises(AnchorError, match="no 'qtests_i386"):
        apply(2, qtest_reader(files))


def test_template_runtime_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "qapi").mkdir()
    text = (REPO / QAPI_TEMPLATE).read_text() + "{{ 1 // 0 }}\n"
    (tmp_path / QAPI_TEMPLATE).write_text(text)
    with pytest.raises(TemplateError) as info:
        apply(0, reader(mini_files()), tmp_path)
    line = len(text.splitlines())
    assert str(info.value).startswith(f"{tmp_path / QAPI_TEMPLATE}:{line}: ")
    assert "by zero" in str(info.value)


# v2: the notice is a value of QapiVfioMigrationState, for PRE_COPY_P2P.


def test_v2_enum_value_documented_and_appended() -> None:
    files = mini_files()
    out = apply(0, reader(files), version="v2")[QAPI_FILE]
    assert "  'data': [ 'stop', 'running', 'pre-copy-p2p-prepare' ] }" in out
    doc = out[out.index("# @QapiVfioMigrationState:") : out.index("{ 'enum'")]
    assert "# Migration states.  Besides the states" in doc
    assert "# @pre-copy-p2p-prepare: The device is about to start moving" in doc
    assert "pre-copy-p2p state.  (since 11.0)\n" in doc
    # The new value is documented last, before Since:, in QAPI's shape.
    assert doc.index("@running:") < doc.index("@pre-copy-p2p-prepare:")
    assert doc.index("@pre-copy-p2p-prepare:") < doc.index("# Since: 9.1")
    for line in doc.splitlines():
        assert len(line) <= 70, line
        if line.startswith("#     "):
            continue
        assert not line.startswith("#  "), line
    # Everything else is left as it was.
    assert out.replace(doc, "") == files[QAPI_FILE].replace(
        files[QAPI_FILE][
            files[QAPI_FILE].index("# @QapiVfioMigrationState:") : files[
                QAPI_FILE
            ].index("{ 'enum'")
        ],
        "",
    ).replace("'running' ]", "'running', 'pre-copy-p2p-prepare' ]")
    with pytest.raises(AnchorError, match="has 'pre-copy-p2p-prepare' already"):
        apply(0, reader({QAPI_FILE: out}), version="v2")


def test_v2_enum_value_needs_the_documented_enum() -> None:
    with pytest.raises(AnchorError, match="no documented enum QapiVfioMigrationState"):
        apply(0, reader({QAPI_FILE: "{ 'enum': 'X' }\n"}), version="v2")


def test_v2_notice_only_before_pre_copy_p2p() -> None:
    text = migration(version="v2")
    setter = body_of(text, "vfio_migration_set_state")
    early = setter.index("return 0;\n    }")
    notice = setter.index(
        "    if (new_state == VFIO_DEVICE_STATE_PRE_COPY_P2P) {\n"
        "        vfio_migration_send_event(vbasedev, new_state, true);\n    }\n"
    )
    assert early < notice < setter.index("ioctl(")
    assert setter.count("vfio_migration_send_event(") == 1
    mapper = body_of(text, "mig_state_to_qapi_state")
    assert (
        "    case VFIO_DEVICE_STATE_PRE_COPY_P2P:\n"
        "        return prepare ? QAPI_VFIO_MIGRATION_STATE_PRE_COPY_P2P_PREPARE :\n"
        "                         QAPI_VFIO_MIGRATION_STATE_PRE_COPY_P2P;\n" in mapper
    )
    assert (
        "mig_state_to_qapi_state(enum vfio_device_mig_state state, bool prepare)"
        in text
    )
    helper = body_of(text, "vfio_migration_send_event")
    assert "mig_state_to_qapi_state(state, prepare)" in helper
    # No new event in v2.
    assert "prepare(" not in text.replace("mig_state_to_qapi_state(state, prepare)", "")


def test_v2_notice_needs_the_mapped_case() -> None:
    files = mini_files()
    files[MIGRATION_FILE] = files[MIGRATION_FILE].replace(
        "return QAPI_VFIO_MIGRATION_STATE_PRE_COPY_P2P;", "return 7;"
    )
    with pytest.raises(
        AnchorError, match="does not map VFIO_DEVICE_STATE_PRE_COPY_P2P"
    ):
        migration(files, version="v2")


def test_v2_qtest_carries_the_fake_and_builds_it_first() -> None:
    out = apply(2, qtest_reader(qtest_files()), version="v2")
    assert (
        out["tests/qtest/vfio-fake.c"]
        == (REPO / "tests" / "fakevfio" / "fakevfio.c").read_text()
    )
    meson = out[QTEST_MESON]
    assert (
        "qtests_i386 = \\\n  (host_os == 'linux' and \\\n"
        "   config_all_devices.has_key('CONFIG_VFIO_PCI') ? "
        "['vfio-migration-events-test'] : []) + \\\n" in meson
    )
    block = meson.index("qtest_preload_modules = []\n")
    assert block < meson.index("qtest_executables = {}\n")
    assert "shared_module(\n    'vfio-fake', 'vfio-fake.c',\n" in meson
    assert (
        "depends: [test_deps, qtest_emulator, emulator_modules, "
        "qtest_preload_modules]" in meson
    )
    assert (
        "F: tests/qtest/vfio-fake.c\nF: tests/qtest/vfio-migration-events-test.c\n"
        "F: qapi/vfio.json\n" in out[MAINTAINERS]
    )


def test_v2_qtest_needs_the_loop_with_depends() -> None:
    files = qtest_files()
    files[QTEST_MESON] = files[QTEST_MESON].replace(
        "depends: [test_deps", "depends: [other"
    )
    with pytest.raises(AnchorError, match=r"no 'qtest_executables = \{\}' loop"):
        apply(2, qtest_reader(files), version="v2")
