"""The kernel kit's pure parts: its data, the kernel chosen from an index,
the headers' Makefile, the .modinfo of a module and the vermagic check,
the insmod order; and the one line each bad input ends with."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from qseries.ground.errors import EXIT_USAGE
from qseries.labs.vfio_migration.kernel import (
    HeadersMismatch,
    KernelError,
    KernelVersionError,
    check_depends,
    check_vermagic,
    choose_abi,
    fix_headers_makefile,
    insmod_order,
    last_lines,
    listed_abis,
    load_spec,
    modinfo,
    module_field,
    parse_madison,
    version_in,
)

SPEC = load_spec()

# `apt-cache madison` of the images, as the private index answers it:
# bookworm's own 6.1, two 6.12 ABIs of bookworm-backports (one with two
# uploads), and a 6.12 seen in another suite only.
MADISON = """\
linux-image-6.12.9+deb12-amd64-unsigned | 6.12.9-1~bpo12+1 | \
http://deb.debian.org/debian bookworm-backports/main amd64 Packages
linux-image-6.12.38+deb12-amd64-unsigned | 6.12.38-1~bpo12+9 | \
http://deb.debian.org/debian bookworm-backports/main amd64 Packages
linux-image-6.12.38+deb12-amd64-unsigned | 6.12.38-1~bpo12+10 | \
http://deb.debian.org/debian bookworm-backports/main amd64 Packages
linux-image-6.12.40+deb13-amd64-unsigned | 6.12.40-1 | \
http://deb.debian.org/debian trixie/main amd64 Packages
linux-image-6.1.0-37-amd64-unsigned | 6.1.140-1 | \
http://deb.debian.org/debian bookworm/main amd64 Packages
busybox-static | 1:1.35.0-4+b3 | \
copy:///tmp/archive bookworm/main amd64 Packages
N: not a line of the index
"""


def test_the_data_names_debian_packages() -> None:
    assert (SPEC.suite, SPEC.series, SPEC.flavour) == (
        "bookworm-backports",
        "6.12",
        "amd64",
    )
    assert (SPEC.busybox_suite, SPEC.busybox_package) == ("bookworm", "busybox-static")
    assert SPEC.suites == ("bookworm-backports", "bookworm")
    abi = "6.12.95+deb12"
    assert [SPEC.name(role, abi) for role in SPEC.ROLES] == [
        "linux-image-6.12.95+deb12-amd64-unsigned",
        "linux-headers-6.12.95+deb12-amd64",
        "linux-headers-6.12.95+deb12-common",
        "linux-kbuild-6.12.95+deb12",
        "linux-source-6.12",
    ]
    assert SPEC.version(abi) == "6.12.95+deb12-amd64"
    assert SPEC.modules == ("vfio", "vfio_iommu_type1", "mdev")
    assert SPEC.mtty == "samples/vfio-mdev/mtty.c"
    assert SPEC.image_prefix() == "linux-image-6.12."


def test_malformed_data_is_one_line() -> None:
    with pytest.raises(KernelError, match=r"kernel\.yaml .* is malformed"):
        load_spec("kernel: {suite: x}\nbusybox: {}\n")


def test_the_index_text_is_read() -> None:
    rows = parse_madison(MADISON)
    assert len(rows) == 6
    assert (rows[0].package, rows[0].version, rows[0].suite) == (
        "linux-image-6.12.9+deb12-amd64-unsigned",
        "6.12.9-1~bpo12+1",
        "bookworm-backports",
    )
    assert rows[-1].suite == "bookworm"  # a local archive's URI too


def test_the_newest_abi_of_the_suite_is_chosen() -> None:
    listed = listed_abis(parse_madison(MADISON), SPEC)
    # Only bookworm-backports' 6.12s, each at its newest upload; 6.12.38
    # is newer than 6.12.9, and +10 than +9 (Debian's order, not the
    # strings').
    assert listed == {
        "6.12.9+deb12": "6.12.9-1~bpo12+1",
        "6.12.38+deb12": "6.12.38-1~bpo12+10",
    }
    assert choose_abi(listed, None, SPEC) == "6.12.38+deb12"
    for pin in ("6.12.9+deb12-amd64", "6.12.9+deb12", "6.12.9"):
        assert choose_abi(listed, pin, SPEC) == "6.12.9+deb12"


def test_a_kernel_not_in_the_index_is_one_line_naming_those_listed() -> None:
    """Bad input: a kernel version not in Debian's index (what qseries
    prints for QSERIES_KERNEL=6.12.99, exit 2)."""
    listed = listed_abis(parse_madison(MADISON), SPEC)
    with pytest.raises(KernelVersionError) as err:
        choose_abi(listed, "6.12.99", SPEC)
    assert str(err.value) == (
        "kernel 6.12.99 is not in Debian's index (bookworm-backports lists: "
        "6.12.38+deb12-amd64, 6.12.9+deb12-amd64); pass one of those to "
        "--kernel (or QSERIES_KERNEL), or neither for the newest"
    )
    assert err.value.exit_code == EXIT_USAGE
    # A kernel of another suite is not taken either.
    with pytest.raises(KernelVersionError):
        choose_abi(listed, "6.12.40+deb13-amd64", SPEC)
    with pytest.raises(KernelVersionError, match=r"lists no Linux 6\.12 image"):
        choose_abi({}, None, SPEC)


def test_the_version_of_each_package() -> None:
    rows = parse_madison(MADISON)
    image = "linux-image-6.12.38+deb12-amd64-unsigned"
    assert version_in(rows, image, "bookworm-backports", None) == "6.12.38-1~bpo12+10"
    assert version_in(rows, image, "bookworm-backports", "6.12.38-1~bpo12+9") == (
        "6.12.38-1~bpo12+9"
    )
    assert version_in(rows, image, "bookworm-backports", "6.12.38-2") is None
    assert version_in(rows, image, "bookworm", None) is None
    assert version_in(rows, "busybox-static", "bookworm", None) == "1:1.35.0-4+b3"


def test_the_headers_makefile_points_at_the_unpacked_common() -> None:
    root = Path("/work/kernel/6.12.95+deb12-amd64/headers")
    text = (
        "include /usr/src/linux-headers-6.12.95+deb12-common/Makefile\n"
        "-include /usr/src/linux-headers-6.12.95+deb12-common/extra.mk\n"
        "# see /usr/src/linux-headers-6.12.95+deb12-common\n"
        "KBUILD := /usr/src/elsewhere\n"
    )
    assert fix_headers_makefile(text, root) == (
        f"include {root}/usr/src/linux-headers-6.12.95+deb12-common/Makefile\n"
        f"-include {root}/usr/src/linux-headers-6.12.95+deb12-common/extra.mk\n"
        "# see /usr/src/linux-headers-6.12.95+deb12-common\n"
        "KBUILD := /usr/src/elsewhere\n"
    )
    fixed = fix_headers_makefile(text, root)
    assert fix_headers_makefile(fixed, root) == fixed  # once only


def module(tmp_path: Path, name: str, info: str) -> Path:
    """A real ELF object, made by gcc, whose .modinfo holds info."""
    source = tmp_path / f"{name}.c"
    source.write_text(
        'static const char info[] __attribute__((section(".modinfo"), used)) = '
        f'"{info}";\n'
        "int function(void) { return 1; }\n"
    )
    subprocess.run(
        ["gcc", "-c", "-o", str(tmp_path / f"{name}.ko"), str(source)], check=True
    )
    return tmp_path / f"{name}.ko"


def test_modinfo_is_read_from_the_object(tmp_path: Path) -> None:
    ko = module(
        tmp_path,
        "mtty",
        "vermagic=6.12.95+deb12-amd64 SMP preempt mod_unload \\0depends=mdev,vfio"
        "\\0alias=a\\0alias=b",
    )
    info = modinfo(ko.read_bytes())
    assert info["vermagic"] == ["6.12.95+deb12-amd64 SMP preempt mod_unload "]
    assert info["alias"] == ["a", "b"]
    assert module_field(ko, "depends") == "mdev,vfio"
    assert module_field(ko, "license") == ""
    with pytest.raises(ValueError, match="not a 64-bit"):
        modinfo(b"#!/bin/sh\n")
    (tmp_path / "bad.ko").write_text("text")
    with pytest.raises(KernelError, match="not a kernel module"):
        module_field(tmp_path / "bad.ko", "vermagic")
    # An object without the section is not a module either.
    plain = tmp_path / "plain.c"
    plain.write_text("int x;\n")
    subprocess.run(["gcc", "-c", "-o", str(tmp_path / "p.o"), str(plain)], check=True)
    with pytest.raises(ValueError, match=r"no \.modinfo"):
        modinfo((tmp_path / "p.o").read_bytes())


def test_headers_that_do_not_match_the_image_are_one_line(tmp_path: Path) -> None:
    """Bad input: headers that do not match the image (mtty.ko's vermagic
    is not the image modules')."""
    image = "6.12.95+deb12-amd64 SMP preempt mod_unload modversions "
    ko = module(tmp_path, "mtty", "vermagic=6.12.94+deb12-amd64 SMP preempt")
    with pytest.raises(HeadersMismatch) as err:
        check_vermagic(module_field(ko, "vermagic"), image, ko, "linux-headers-X")
    assert str(err.value) == (
        f"{ko} was built for '6.12.94+deb12-amd64 SMP preempt' but the image's "
        "modules are '6.12.95+deb12-amd64 SMP preempt mod_unload modversions': "
        "linux-headers-X does not match the kernel image; the archive may be "
        "between two uploads: try again later, or pin another kernel with "
        "--kernel (or QSERIES_KERNEL)"
    )
    assert err.value.exit_code == EXIT_USAGE
    check_vermagic(image, image, ko, "linux-headers-X")  # the same: no error


def test_modules_load_after_what_they_depend_on() -> None:
    wanted = ["vfio", "vfio_iommu_type1", "mdev"]
    assert insmod_order(wanted, {"vfio_iommu_type1": ["vfio"]}) == wanted
    order = insmod_order(
        wanted, {"vfio": ["iommufd", "irqbypass"], "iommufd": ["irqbypass"]}
    )
    assert order == ["irqbypass", "iommufd", "vfio", "vfio_iommu_type1", "mdev"]
    with pytest.raises(KernelError, match="depend on it"):
        insmod_order(["a"], {"a": ["b"], "b": ["a"]})


def test_mtty_needs_only_what_the_kit_loads(tmp_path: Path) -> None:
    loaded = [tmp_path / "vfio.ko", tmp_path / "mdev.ko"]
    check_depends(module(tmp_path, "mtty", "depends=mdev,vfio"), loaded)
    with pytest.raises(KernelError, match=r"mtty2\.ko depends on iommufd, which"):
        check_depends(module(tmp_path, "mtty2", "depends=mdev,iommufd"), loaded)


def test_a_build_log_in_one_line(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text(
        "$ make -C headers M=mtty modules\n"
        "make: Entering directory '/headers'\n"
        "  CC [M]  mtty.o\n"
        "mtty.c:10:5: error: 'x' undeclared\n"
        "mtty.c:11:5: error: 'y' undeclared\n"
        "make[2]: *** [mtty.o] Error 1\n"
        "make: Leaving directory '/headers'\n"
    )
    assert last_lines(log) == "mtty.c:10:5: error: 'x' undeclared"
    log.write_text("$ make\n  CC [M]  mtty.o\nKilled\n")
    assert last_lines(log) == "CC [M]  mtty.o | Killed"
    assert last_lines(tmp_path / "none.log") == "no output"
