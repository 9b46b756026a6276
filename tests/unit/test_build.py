from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from qseries.core import lab as lab_mod
from qseries.ground import pkgdata
from qseries.ground.console import Progress
from qseries.ground.proc import run_logged
from qseries.ground.workdir import WorkDir
from qseries.qemu import build


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_plain_lines_every_tenth() -> None:
    out = io.StringIO()
    p = Progress("ninja x", out)
    for i in range(1, 101):
        p.update(i, 100)
    lines = out.getvalue().splitlines()
    assert lines[0] == "qseries: ninja x 1/100"
    assert lines[-1] == "qseries: ninja x 100/100"
    assert len(lines) == 11


def test_progress_bar_on_a_terminal() -> None:
    out = Tty()
    p = Progress("ninja x", out)
    p.update(15, 30)
    p.update(30, 30)
    text = out.getvalue()
    assert "\rninja x [===============               ] 15/30" in text
    assert text.endswith("] 30/30\n")


def test_run_logged_counts_ninja_steps(tmp_path: Path) -> None:
    script = "for i in range(1, 4):\n    print(f'[{i}/3] step {i}')\n"
    log = tmp_path / "log"
    out = io.StringIO()
    code, steps = run_logged(
        [sys.executable, "-c", script], tmp_path, log, Progress("t", out)
    )
    assert (code, steps) == (0, 3)
    assert "[3/3] step 3" in log.read_text()
    assert "qseries: t 3/3" in out.getvalue()


def test_run_logged_failure_code(tmp_path: Path) -> None:
    code, steps = run_logged(
        [sys.executable, "-c", "raise SystemExit(3)"], tmp_path, tmp_path / "log", None
    )
    assert (code, steps) == (3, 0)


def test_failure_shows_log_tail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "build.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    err = build._fail("ninja", log)
    assert str(err) == f"ninja failed; the whole log is {log}"
    shown = capsys.readouterr().err.splitlines()
    assert shown[0] == f"  | line {100 - build.LOG_TAIL}"
    assert shown[-1] == "  | line 99"


def test_link_firmware(tmp_path: Path) -> None:
    seabios = tmp_path / "seabios"
    seabios.mkdir()
    (seabios / "bios-256k.bin").write_bytes(b"x")
    (seabios / "README").write_text("not firmware")
    builddir = tmp_path / "build"
    datadir = builddir / "qemu-bundle" / "usr" / "local" / "share" / "qemu"
    datadir.mkdir(parents=True)
    assert build.link_firmware(builddir, seabios) == 1
    assert (datadir / "bios-256k.bin").resolve() == seabios / "bios-256k.bin"
    assert not (datadir / "README").exists()
    assert build.link_firmware(builddir, seabios) == 0


def test_link_firmware_needs_a_configured_build(tmp_path: Path) -> None:
    with pytest.raises(build.BuildError, match="qemu-bundle"):
        build.link_firmware(tmp_path)


def test_build_errors_are_tree_relative(tmp_path: Path) -> None:
    tree = tmp_path / "work" / "build-q"
    builddir = tmp_path / "build" / "q"
    builddir.mkdir(parents=True)
    log = tmp_path / "compile.log"
    log.write_text(
        "[1/2] Compiling C object libsystem.a.p/hw_vfio_migration.c.o\n"
        "../../work/build-q/hw/vfio/migration.c: In function 'f':\n"
        "../../work/build-q/hw/vfio/migration.c:42:7: error: expected ';' "
        "before 'if'\n"
        "qapi/qapi-events-vfio.h:9:1: fatal error: x.h: No such file\n"
        "../../work/build-q/tests/qtest/meson.build:3:0: ERROR: Unknown variable\n"
        "FAILED: libsystem.a.p/hw_vfio_migration.c.o\n"
    )
    assert build.build_errors(log, tree, builddir) == [
        "hw/vfio/migration.c:42: error: expected ';' before 'if'",
        "qapi/qapi-events-vfio.h:9: error: x.h: No such file",
        "tests/qtest/meson.build:3: error: Unknown variable",
    ]


def test_build_errors_without_compiler_messages(tmp_path: Path) -> None:
    log = tmp_path / "compile.log"
    log.write_text("[1/2] Generating x\nFAILED: x.h\nboom\n")
    assert build.build_errors(log, tmp_path, tmp_path) == ["FAILED: x.h"]


def test_changed_c_files(tmp_path: Path) -> None:
    from ..conftest import git

    (tmp_path / "a.c").write_text("int a;\n")
    (tmp_path / "gone.c").write_text("int g;\n")
    (tmp_path / "h.h").write_text("\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "old")
    old = git(tmp_path, "rev-parse", "HEAD").strip()
    (tmp_path / "a.c").write_text("int a = 1;\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "new file.c").write_text("int n;\n")
    (tmp_path / "h.h").write_text("int h;\n")
    (tmp_path / "gone.c").unlink()
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "new")
    new = git(tmp_path, "rev-parse", "HEAD").strip()
    assert build.changed_c_files(tmp_path, old, new) == ["a.c", "sub/new file.c"]


def test_devices_file_has_q35_and_each_labs_devices() -> None:
    lines = build.devices_data().decode().splitlines()
    assert lines[: len(build.DEVICES.read_text().splitlines())] == (
        build.DEVICES.read_text().splitlines()
    )
    assert "CONFIG_Q35=y" in lines
    assert "CONFIG_VFIO_PCI=y" in lines  # the vfio-migration lab's
    assert "CONFIG_VFIO_PCI=y" not in build.DEVICES.read_text().splitlines()
    assert "--without-default-devices" in build.CONFIGURE_ARGS


def test_devices_file_without_labs_is_the_generic_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An installation without labs (labs/ deleted) builds the generic
    devices only."""
    monkeypatch.setattr(lab_mod, "installed", lambda: [])
    assert build.devices_data() == build.DEVICES.read_bytes()


def test_devices_arg_names_the_file_from_the_trees_folder(tmp_path: Path) -> None:
    tree = tmp_path / "work" / "build-q"
    folder = tree / "configs" / "devices" / "x86_64-softmmu"
    folder.mkdir(parents=True)
    devices = build.devices_file(tmp_path / "work")
    arg = build.devices_arg(tree, devices)
    option, name = arg.split("=", 1)
    assert option == "--with-devices-x86_64"
    # configure's test -f "$source_path/configs/devices/x86_64-softmmu/$name.mak"
    assert (folder / f"{name}.mak").resolve() == devices.resolve()
    # and meson's path, joined and normalized
    assert os.path.normpath(folder / f"{name}.mak") == str(devices)


def test_devices_file_is_a_copy_in_the_work_dir_named_by_its_content(
    tmp_path: Path,
) -> None:
    """configure gets a path of the work dir, the same while the file is
    (configure's options stay, whichever install of qseries runs), and
    another once it changes."""
    work = tmp_path / "work"
    devices = build.devices_file(work)
    assert devices.parent.parent == work / "data"
    assert devices.name == "qseries-x86_64.mak"
    assert devices.read_bytes() == build.devices_data()
    assert build.devices_file(work) == devices
    edited = tmp_path / "pkg" / "qseries-x86_64.mak"
    edited.parent.mkdir()
    # The same length: the content alone tells them apart.
    edited.write_bytes(build.DEVICES.read_bytes().replace(b"Q35=y", b"Q35=n"))
    other = build.devices_file(work, edited)
    assert other != devices and other.name == devices.name
    assert other.read_bytes() == build.devices_data(edited)
    assert devices.read_bytes() == build.devices_data()  # left as it was
    assert sorted(p.name for p in (work / "data").iterdir()) == sorted(
        [devices.parent.name, other.parent.name]
    )  # no half copy left beside them


def test_devices_file_missing_from_the_install(tmp_path: Path) -> None:
    with pytest.raises(build.BuildError, match="reinstall qseries"):
        build.devices_file(tmp_path / "work", tmp_path / "gone.mak")


def test_devices_arg_needs_the_file(tmp_path: Path) -> None:
    with pytest.raises(build.BuildError, match="missing"):
        build.devices_arg(tmp_path, tmp_path / "none.mak")


def _ccache_settings(cc: str) -> tuple[dict[str, str], list[str]]:
    words = cc.removeprefix("--cc=").split()
    assert words[0] == "env"
    settings = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    return settings, [w for w in words[1:] if "=" not in w]


def test_ccache_cc_keeps_the_cache_in_the_work_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CC", raising=False)
    workdir = WorkDir(tmp_path / "wd")
    cc = build.ccache_cc(workdir, "/usr/bin/ccache")
    assert cc is not None
    settings, command = _ccache_settings(cc)
    assert Path(settings["CCACHE_DIR"]).is_relative_to(workdir.path)
    assert settings["CCACHE_BASEDIR"] == str(workdir.path)
    assert settings["CCACHE_NOHASHDIR"] == "1"
    assert settings["CCACHE_DEPEND"] == "1"
    assert settings["CCACHE_MAXSIZE"] == build.CCACHE_MAX_SIZE
    assert settings["LC_ALL"] == "C"
    assert command == ["/usr/bin/ccache", "gcc"]
    monkeypatch.setenv("CC", "clang")
    assert str(build.ccache_cc(workdir, "/usr/bin/ccache")).endswith(" clang")


def test_ccache_cc_without_ccache_or_with_blanks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert build.ccache_cc(WorkDir(tmp_path)) is None
    assert build.ccache_cc(WorkDir(tmp_path / "a b"), "/usr/bin/ccache") is None


def test_configure_again_when_ccache_comes_or_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    script = tree / "configure"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > args\n: > build.ninja\n')
    script.chmod(0o755)
    builddir = tmp_path / "build"
    log = tmp_path / "log"
    workdir = WorkDir(tmp_path / "wd")
    found: list[str | None] = [None]
    monkeypatch.setattr(shutil, "which", lambda name: found[0])

    def configure(workdir: WorkDir | None = workdir) -> bool:
        return build.configure(tree, builddir, "python3", log, workdir)

    def stamped() -> list[str]:
        args: list[str] = json.loads((builddir / "qseries-configure.json").read_text())[
            "args"
        ]
        assert (builddir / "args").read_text().splitlines() == args
        return args

    assert configure()
    assert build.devices_arg(tree, build.devices_file(workdir.path)) in stamped()
    assert not any(a.startswith("--cc=") for a in stamped())
    assert not configure()
    found[0] = "/usr/bin/ccache"
    assert configure()
    assert any(a.startswith("--cc=env CCACHE_DIR=") for a in stamped())
    assert not configure()
    found[0] = None
    assert configure()
    assert not configure()
    # Without a work dir (bench's cold build, a build dir of its own): no
    # ccache, and the devices file beside the build dir.
    found[0] = "/usr/bin/ccache"
    assert configure()
    assert configure(None)
    assert not any(a.startswith("--cc=") for a in stamped())
    beside = build.devices_file(builddir.parent)
    assert build.devices_arg(tree, beside) in stamped()


def test_another_python_configures_anew(tmp_path: Path) -> None:
    """A build dir configured by one install of qseries (its venv's
    Python, which made the build's pyvenv) is configured anew for
    another: the sandbox would hide the first Python from the build."""
    tree = tmp_path / "tree"
    tree.mkdir()
    script = tree / "configure"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > args\n: > build.ninja\n')
    script.chmod(0o755)
    builddir = tmp_path / "build"
    first, second = tmp_path / "one" / "python", tmp_path / "two" / "python"
    for python in (first, second):
        python.parent.mkdir()
        python.write_text("#!/bin/sh\n")
        python.chmod(0o755)
    workdir = WorkDir(tmp_path / "wd")

    def configure(python: Path) -> bool:
        return build.configure(tree, builddir, str(python), tmp_path / "log", workdir)

    assert configure(first)
    assert not configure(first)
    assert configure(second)
    assert f"--python={second}" in (builddir / "args").read_text().splitlines()
    assert not configure(second)


def test_device_lines_are_the_settings_without_comments_or_blanks() -> None:
    text = "# a comment\n\nCONFIG_A=y\n  CONFIG_B = y  # why\n#CONFIG_C=y\nCONFIG_D=n\n"
    assert build.device_lines(text) == ["CONFIG_A=y", "CONFIG_B=y", "CONFIG_D=n"]
    generic = build.device_lines(build.DEVICES.read_text())
    assert generic[0] == "CONFIG_Q35=y" and all(
        line.startswith("CONFIG_") for line in generic
    )


def _fake_configure(tmp_path: Path) -> Path:
    """A tree whose configure records its arguments and makes a build.ninja."""
    tree = tmp_path / "tree"
    tree.mkdir()
    script = tree / "configure"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > args\n: > build.ninja\n')
    script.chmod(0o755)
    return tree


def test_a_build_with_more_devices_serves_a_run_with_fewer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build's devices are those of every lab installed when it was
    configured: a run with a lab fewer (labs/ deleted) builds in it as it
    is, and one with a device more than it has configures anew."""
    tree = _fake_configure(tmp_path)
    builddir = tmp_path / "build"
    workdir = WorkDir(tmp_path / "wd")
    installed = lab_mod.installed
    assert installed()  # the vfio-migration lab, whose devices.mak adds vfio-pci

    def configure(labs: bool) -> bool:
        monkeypatch.setattr(lab_mod, "installed", installed if labs else list)
        return build.configure(tree, builddir, "python3", tmp_path / "log", workdir)

    def stamped() -> dict[str, list[str]]:
        stamp: dict[str, list[str]] = json.loads(
            (builddir / "qseries-configure.json").read_text()
        )
        assert (builddir / "args").read_text().splitlines() == stamp["args"]
        return stamp

    assert configure(labs=False)
    assert stamped()["devices"] == build.device_lines(build.DEVICES.read_text())
    assert not configure(labs=False)
    assert configure(labs=True)  # a device more: vfio-pci
    with_labs = stamped()
    assert "CONFIG_VFIO_PCI=y" in with_labs["devices"]
    assert not configure(labs=True)
    assert not configure(labs=False)  # a lab fewer: served as it is
    assert stamped() == with_labs
    # The devices file the build was configured with is gone (meson
    # would read it again to regenerate): configured anew.
    name = next(a for a in with_labs["args"] if a.startswith(build.DEVICES_OPTION))
    folder = tree / "configs" / "devices" / "x86_64-softmmu"
    shutil.rmtree(Path(os.path.normpath(folder / name.split("=", 1)[1])).parent)
    assert configure(labs=False)
    assert "CONFIG_VFIO_PCI=y" not in stamped()["devices"]


def test_still_configured_wants_the_same_arguments_and_more_devices(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "tree"
    work = tmp_path / "work"
    needed = ["CONFIG_Q35=y", "CONFIG_PXB=y"]
    (tmp_path / "a.mak").write_text("CONFIG_Q35=y\nCONFIG_PXB=y\n")
    (tmp_path / "b.mak").write_text("CONFIG_Q35=y\nCONFIG_PXB=y\nCONFIG_VFIO_PCI=y\n")
    names = {}
    for file in ("a.mak", "b.mak"):
        names[file] = build.devices_arg(
            tree, pkgdata.place(work, file, (tmp_path / file).read_bytes())
        )
    args = ["--target-list=x86_64-softmmu", names["a.mak"], "--python=/v/python"]
    more = [*needed, "CONFIG_VFIO_PCI=y"]
    had = ["--target-list=x86_64-softmmu", names["b.mak"], "--python=/v/python"]

    def served(stamp: dict[str, object], tree: Path = tree) -> bool:
        return build._still_configured(stamp, tree, args, needed)

    assert served({"tree": str(tree), "args": args, "devices": needed})
    assert served({"tree": str(tree), "args": had, "devices": more})  # a superset
    assert not served({"tree": str(tree), "args": had, "devices": needed[:1]})
    assert not served({"tree": str(tree), "args": args, "devices": needed[:1]})
    # More devices, but a setting more that turns one off: not a superset.
    assert not served(
        {"tree": str(tree), "args": had, "devices": [*needed, "CONFIG_PCIE_PORT=n"]}
    )
    # Another argument than the devices one differs: configure anew.
    for other in (
        ["--target-list=x86_64-softmmu", names["b.mak"], "--python=/w/python"],
        ["--target-list=i386-softmmu", names["b.mak"], "--python=/v/python"],
        [*had, "--cc=env ccache gcc"],
        had[:2],
    ):
        assert not served({"tree": str(tree), "args": other, "devices": more})
    assert not served({"tree": str(tmp_path / "other"), "args": had, "devices": more})
    # A stamp of an older qseries (no devices): only the same arguments.
    assert not served({"tree": str(tree), "args": had})
    assert served({"tree": str(tree), "args": args})
    broken: object
    for broken in (None, [], {"tree": str(tree), "args": had, "devices": [1]}):
        assert not build._still_configured(broken, tree, args, needed)


# A configure that writes a build.ninja making an empty "QEMU", and the
# data dir the firmware is linked into.
FAKE_CONFIGURE = """#!/bin/sh
mkdir -p qemu-bundle/usr/share/qemu
printf 'rule stamp\\n  command = touch $out\\nbuild qemu-system-x86_64: stamp\\n' \\
  > build.ninja
"""


@pytest.mark.skipif(not build.SEABIOS_DIR.is_dir(), reason="needs Debian's seabios")
def test_build_of_a_tree_just_checked_out_does_not_check_it_out_again(
    tmp_path: Path,
) -> None:
    from qseries.qemu.source import BaseTree

    from ..conftest import git

    root = tmp_path / "qemu"
    root.mkdir()
    (root / "configure").write_text(FAKE_CONFIGURE)
    (root / "configure").chmod(0o755)
    (root / "file.c").write_text("int a;\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    commit = git(root, "rev-parse", "HEAD").strip()
    base = BaseTree("tree", root, commit, "10.2.50", "test")
    workdir = WorkDir(tmp_path / "work")
    tree = build.checkout(base, commit, workdir)
    # A change git checkout would undo shows whether it ran.
    (tree / "file.c").write_text("int changed;\n")
    built = build.build(base, commit, workdir, [build.QEMU_TARGET], tree=tree)
    assert built.tree == tree and built.qemu.exists()
    assert (tree / "file.c").read_text() == "int changed;\n"
    # Without the tree, build moves the worktree itself.
    build.build(base, commit, workdir, [build.QEMU_TARGET])
    assert (tree / "file.c").read_text() == "int a;\n"
