"""The pure parts of the guest (labs/vfio_migration/guest.py): what the
initramfs holds and how it is archived, the loader's list of libraries,
the console's lines, and the KVM verdict remembered per kernel and host.
The boots themselves are in tests/integration/test_guest.py."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from qseries.ground.workdir import WorkDir
from qseries.labs.vfio_migration import guest


@dataclass(frozen=True)
class Kit:
    version: str
    vmlinuz: Path
    modules: tuple[Path, ...]
    mtty: Path | None
    busybox: Path


def make_kit(root: Path, mtty: bool = True) -> Kit:
    for name in ("vmlinuz", "vfio.ko", "vfio_iommu_type1.ko", "mdev.ko", "mtty.ko"):
        (root / name).write_bytes(f"<{name}>".encode())
    (root / "busybox").write_bytes(b"<busybox>")
    return Kit(
        "6.12.95+deb12-amd64",
        root / "vmlinuz",
        (root / "vfio.ko", root / "vfio_iommu_type1.ko", root / "mdev.ko"),
        root / "mtty.ko" if mtty else None,
        root / "busybox",
    )


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """A newc archive's members: name -> (mode, content, rdev), read by
    the format's own rules (a 110-byte header, name and data each padded
    to 4 bytes, TRAILER!!! last)."""
    members: dict[str, tuple[int, bytes, tuple[int, int]]] = {}
    at = 0
    while True:
        head = data[at : at + 110]
        assert head[:6] == b"070701", f"no newc header at {at}"
        fields = [int(head[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = (
            fields[1],
            fields[6],
            fields[9],
            fields[10],
            fields[11],
        )
        name = data[at + 110 : at + 110 + namesize - 1].decode()
        assert data[at + 110 + namesize - 1] == 0
        at += 110 + namesize
        at += -at % 4
        if name == "TRAILER!!!":
            assert at == len(data)
            return members
        members[name] = (mode, data[at : at + size], (rmaj, rmin))
        at += size
        at += -at % 4


def test_the_initramfs_holds_what_init_needs(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    qemu = tmp_path / "qemu-system-x86_64"
    qemu.write_bytes(b"<qemu>")
    lib = tmp_path / "libz.so.1"
    lib.write_bytes(b"<libz>")
    firmware = tmp_path / "fw"
    firmware.mkdir()
    (firmware / "bios-256k.bin").write_bytes(b"<bios>")
    entries = guest.initramfs_entries(
        kit, "echo hi >$RESULTS\n", 2, qemu, [lib], firmware
    )
    paths = [e.path for e in entries]
    # Every directory before what is in it, each once.
    assert len(paths) == len(set(paths))
    for i, path in enumerate(paths):
        parent = str(Path(path).parent)
        if parent != "/":
            assert parent in paths[:i], path
    out = io.BytesIO()
    guest.write_cpio(entries, out)
    members = read_cpio(out.getvalue())
    assert set(members) == {p.lstrip("/") for p in paths}
    mode, init, _ = members["init"]
    assert init.startswith(b"#!/bin/sh") and mode & 0o111
    assert members["bin/sh"][0] == stat.S_IFLNK | 0o777
    assert members["bin/sh"][1] == b"busybox"
    assert members["dev/console"][0] == stat.S_IFCHR | 0o600
    assert members["dev/console"][2] == (5, 1)
    assert members["scenario.sh"][1] == b"echo hi >$RESULTS\n"
    assert members["usr/local/bin/qemu-system-x86_64"][1] == b"<qemu>"
    assert members[str(lib).lstrip("/")][1] == b"<libz>"
    assert members["usr/share/qemu/bios-256k.bin"][1] == b"<bios>"
    modules = [p for p in paths if p.startswith(guest.MODULES_DIR + "/")]
    assert [Path(p).name for p in modules] == [
        "vfio.ko",
        "vfio_iommu_type1.ko",
        "mdev.ko",
        "mtty.ko",
    ]
    env = members["qseries-guest.env"][1].decode()
    assert f"MTTY={guest.MODULES_DIR}/mtty.ko\n" in env
    assert f'MODULES="{guest.MODULES_DIR}/vfio.ko ' in env
    assert "PROBE=0\n" in env


def test_a_probe_holds_init_and_busybox_only(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    entries = guest.initramfs_entries(kit, "", 0, None, probe=True)
    files = {e.path for e in entries if stat.S_ISREG(e.mode)}
    assert files == {"/init", "/bin/busybox", guest.ENV_FILE}
    env = next(e for e in entries if e.path == guest.ENV_FILE)
    assert isinstance(env.data, bytes) and b"PROBE=1\n" in env.data


def test_the_archive_is_gzip_and_the_same_for_the_same_inputs(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    entries = guest.initramfs_entries(kit, "", 0, None, probe=True)
    first, second = tmp_path / "a.cpio.gz", tmp_path / "b.cpio.gz"
    size = guest.build_initramfs(entries, first)
    guest.build_initramfs(entries, second)
    assert size == first.stat().st_size
    assert first.read_bytes() == second.read_bytes()
    assert "init" in read_cpio(gzip.decompress(first.read_bytes()))
    assert not list(tmp_path.glob("*.partial"))


def test_mdevs_and_mtty_in_the_env_file(tmp_path: Path) -> None:
    env = guest.env_file(make_kit(tmp_path), 3)
    uuids = [guest.mdev_uuid(i) for i in range(3)]
    assert len(set(uuids)) == 3
    assert f'MDEV_UUIDS="{" ".join(uuids)}"\n' in env
    # A kit without mtty.ko loads none: the guest then has no mtty type.
    bare = guest.env_file(make_kit(tmp_path, mtty=False), 1)
    assert "MTTY=\n" in bare
    assert "mtty.ko" not in bare


def test_a_module_name_init_cannot_load_is_refused(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    odd = tmp_path / "vfio ko; reboot.ko"
    odd.write_bytes(b"")
    bad = Kit(kit.version, kit.vmlinuz, (odd,), kit.mtty, kit.busybox)
    with pytest.raises(guest.GuestError, match="has a name /init cannot load"):
        guest.env_file(bad, 1)
    twice = Kit(kit.version, kit.vmlinuz, (kit.modules[0],) * 2, None, kit.busybox)
    with pytest.raises(guest.GuestError, match="share a name"):
        guest.module_names(twice)


LISTED = """\
\tlinux-vdso.so.1 (0x00007ffd1e5f3000)
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f0c2a9d4000)
\tlibglib-2.0.so.0 => /lib/x86_64-linux-gnu/libglib-2.0.so.0 (0x00007f0c2a)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0c28ee5000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0c2aa12000)
"""


def test_the_loader_list_gives_each_library_and_the_loader() -> None:
    found = guest.parse_loader_list(LISTED, Path("qemu"))
    assert found == [
        Path("/lib/x86_64-linux-gnu/libz.so.1"),
        Path("/lib/x86_64-linux-gnu/libglib-2.0.so.0"),
        Path("/lib/x86_64-linux-gnu/libc.so.6"),
        Path("/lib64/ld-linux-x86-64.so.2"),
    ]
    assert guest.parse_loader_list("\tstatically linked\n", Path("q")) == []


def test_a_library_not_found_is_named() -> None:
    text = LISTED + "\tlibpixman-1.so.0 => not found\n"
    with pytest.raises(guest.GuestError, match=r"qemu needs libpixman-1\.so\.0"):
        guest.parse_loader_list(text, Path("qemu"))


def test_the_libraries_of_a_real_program() -> None:
    found = guest.libraries(Path("/bin/true"))
    assert guest.LOADER in found
    assert any(p.name.startswith("libc.so") for p in found)
    assert all(p.is_file() for p in found)


def test_the_console_lines_that_mark_a_boot() -> None:
    boot = guest._Boot(time.monotonic() - 1.0)
    boot.line("[    0.1] something\n")
    assert boot.init_seconds is None
    boot.line("qseries-guest: init at 2.50 s\r\n")
    assert boot.init_seconds is not None and boot.init_seconds >= 1.0
    boot.line("qseries-guest: scenario exited 3\n")
    boot.line("qseries-guest: done\n")
    assert (boot.status, boot.done) == (3, True)
    # Under TCG a line of the guest's is only a line.
    boot.line("KVM internal error. Suberror: 1\n")
    assert boot.kvm_failure is None
    kvm = guest._Boot(time.monotonic(), kvm=True)
    with pytest.raises(guest._Stop):
        kvm.line("KVM internal error. Suberror: 1\n")
    assert kvm.kvm_failure == "KVM internal error. Suberror: 1"


def test_the_last_meaningful_console_line(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text(
        "$ qemu-system-x86_64 -kernel vmlinuz\n"
        "qseries-guest: init at 2.1 s\n"
        "[    3.0] Kernel panic - not syncing: Attempted to kill init!\r\n"
        "[    3.1] ---[ end Kernel panic ]---\n\n"
    )
    said = guest.last_meaningful(console)
    assert said == "[    3.0] Kernel panic - not syncing: Attempted to kill init!"
    console.write_text(
        "$ qemu -kernel vmlinuz\nlast words\n\n"
        "qseries: stopped after its time limit of 5 s\n"
    )
    assert guest.last_meaningful(console) == "last words"
    assert guest.last_meaningful(tmp_path / "none") == "(no console log)"


def test_the_outer_command_line(tmp_path: Path) -> None:
    tcg = guest.outer_argv("tcg", tmp_path / "k", tmp_path / "i", tmp_path / "r")
    assert tcg[:5] == [str(guest.OUTER_QEMU), "-accel", "tcg", "-cpu", "max"]
    assert "-no-reboot" in tcg and "-nodefaults" in tcg
    assert tcg[tcg.index("-append") + 1] == guest.CMDLINE
    kvm = guest.outer_argv("kvm", tmp_path / "k", tmp_path / "i", tmp_path / "r")
    assert kvm[1:5] == ["-accel", "kvm", "-cpu", "host"]
    with pytest.raises(guest.GuestError, match="comma"):
        guest.outer_argv("tcg", tmp_path / "a,b", tmp_path / "i", tmp_path / "r")


def test_the_verdict_is_kept_per_kernel_and_host(tmp_path: Path) -> None:
    facts = guest.host_facts()
    assert facts["host_kernel"] == os.uname().release
    key = guest.verdict_key("6.12.95+deb12-amd64", facts)
    assert key == guest.verdict_key("6.12.95+deb12-amd64", dict(facts))
    assert key != guest.verdict_key("6.12.96+deb12-amd64", facts)
    assert key != guest.verdict_key(
        "6.12.95+deb12-amd64", {**facts, "host_kernel": "other"}
    )
    path = tmp_path / guest.VERDICTS
    assert guest.read_verdict(path, key) is None
    guest.write_verdict(path, "other", {"usable": True, "why": "x", "seconds": 1})
    guest.write_verdict(path, key, {"usable": False, "why": "y", "seconds": 2})
    assert guest.read_verdict(path, key) == {
        "usable": False,
        "why": "y",
        "seconds": 2,
    }
    assert json.loads(path.read_text())["other"]["usable"] is True
    path.write_text("{not json")
    assert guest.read_verdict(path, key) is None


@pytest.mark.parametrize("usable", [True, False])
def test_a_kept_verdict_is_used_without_a_probe(
    tmp_path: Path, usable: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = WorkDir(tmp_path)
    kit = make_kit(tmp_path)
    root = workdir.sub("kernel", "guest")
    key = guest.verdict_key(kit.version, guest.host_facts())
    guest.write_verdict(
        root / guest.VERDICTS, key, {"usable": usable, "why": "kept", "seconds": 0}
    )
    assert guest.choose_accel(kit, workdir) == ("kvm" if usable else "tcg")
    # No probe ran: it would have built its initramfs.
    assert not (root / "kvm-probe").exists()
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and ("KVM" if usable else "TCG") in said


def test_no_kvm_device_means_tcg_without_a_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guest, "KVM_DEVICE", tmp_path / "no-kvm")
    verdict = guest.probe_kvm(make_kit(tmp_path), tmp_path / "probe")
    assert verdict["usable"] is False
    assert verdict["why"] == f"no {tmp_path / 'no-kvm'}"
    assert not (tmp_path / "probe").exists()


def test_a_guest_name_must_be_a_plain_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no plain file name"):
        guest.run_in_guest(
            make_kit(tmp_path), Path("/bin/true"), "", WorkDir(tmp_path), "../x"
        )
