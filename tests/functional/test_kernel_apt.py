"""The kernel kit through real apt, dpkg-deb, tar and make, on a small
local archive of kernel packages (tests/kernel_archive.py): what it
fetches, unpacks and builds, what a second call reuses, what an
interrupted one redoes, and the one line each failure ends with."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest

from qseries.ground.errors import EXIT_USAGE
from qseries.ground.workdir import WorkDir
from qseries.labs.vfio_migration import kernel
from qseries.labs.vfio_migration.kernel import (
    HeadersMismatch,
    KernelDownloadError,
    KernelKit,
    KernelVersionError,
    ModuleBuildError,
    MttySourceMissing,
    kernel_kit,
    kernel_version,
)
from qseries.qemu.source import NoSpaceError

from ..kernel_archive import (
    BUSYBOX_VERSION,
    MTTY_C,
    PACKAGE_VERSION,
    VERMAGIC,
    VERSION,
    KernelArchive,
)


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KernelArchive:
    made = KernelArchive(tmp_path / "archive", tmp_path / "build")
    made.build()
    monkeypatch.setenv("QSERIES_DEBIAN_MIRROR", made.url)
    monkeypatch.delenv("QSERIES_KERNEL", raising=False)
    return made


def one_line(err: pytest.ExceptionInfo[kernel.KernelError]) -> str:
    text = str(err.value)
    assert "\n" not in text and err.value.hint
    assert err.value.exit_code == EXIT_USAGE
    return text


def test_a_kit_from_the_archive(archive: KernelArchive, tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "work")
    kit = kernel_kit(workdir)
    home = workdir.path / "kernel" / VERSION
    assert (kit.version, kit.package_version) == (VERSION, PACKAGE_VERSION)
    assert kit.vmlinuz == home / "image" / "boot" / f"vmlinuz-{VERSION}"
    # Decompressed, in insmod order; irqbypass, which nothing wanted
    # depends on, is left out.
    assert [m.name for m in kit.modules] == [
        "vfio.ko",
        "vfio_iommu_type1.ko",
        "mdev.ko",
    ]
    assert all(m.read_bytes()[:4] == b"\x7fELF" for m in kit.modules)
    assert kernel.module_field(kit.mtty, "vermagic") == VERMAGIC
    assert kit.mtty_source_sha256 == hashlib.sha256(MTTY_C.encode()).hexdigest()
    assert kit.busybox.read_bytes() == Path("/bin/true").read_bytes()
    # The headers' Makefile includes the -common copy in the work dir.
    makefile = home / "headers" / "usr" / "src" / f"linux-headers-{VERSION}"
    assert f"include {home}/headers/usr/src/" in (makefile / "Makefile").read_text()
    # The packages are those of the archive, byte for byte.
    debs = sorted(p.name for p in (home / "debs").iterdir())
    assert f"busybox-static_{BUSYBOX_VERSION.replace(':', '_')}.deb" in debs
    assert len(debs) == 6
    assert not list(workdir.path.rglob("*.partial"))


def test_a_second_call_reuses_every_step(
    archive: KernelArchive, tmp_path: Path
) -> None:
    workdir = WorkDir(tmp_path / "work")
    kit = kernel_kit(workdir)
    built = kit.mtty.stat().st_mtime_ns
    # The archive goes: a warm call needs its index no more than its files.
    shutil.rmtree(archive.root / "pool")
    started = time.monotonic()
    again = kernel_kit(workdir)
    assert again == kit
    assert kit.mtty.stat().st_mtime_ns == built
    assert time.monotonic() - started < 5


def test_an_interrupted_step_is_redone(archive: KernelArchive, tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "work")
    kit = kernel_kit(workdir)
    home = workdir.path / "kernel" / VERSION
    # As a run killed in the build and in an unpack leaves it: the
    # results under their temporary names, the kit's stamp not written.
    (home / "kit.json").unlink()
    (home / "mtty").rename(home / "mtty.partial")
    (home / "image").rename(home / "image.partial")
    (home / "debs" / "busybox-static.partial").mkdir()
    # and as something else removing files of a step that was done.
    (home / "busybox" / "bin" / "busybox").unlink()
    headers = (home / "headers").stat().st_ino
    shutil.rmtree(archive.root / "pool")  # nothing is downloaded again
    again = kernel_kit(workdir)
    assert again == kit
    assert kit.mtty.is_file() and kit.vmlinuz.is_file() and kit.busybox.is_file()
    assert not list(workdir.path.rglob("*.partial"))
    # The steps that were done are not done again.
    assert (home / "headers").stat().st_ino == headers


def test_a_pinned_kernel_not_in_the_index(
    archive: KernelArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = WorkDir(tmp_path / "work")
    with pytest.raises(KernelVersionError) as err:
        kernel_kit(workdir, version="6.12.99")
    assert one_line(err).startswith(
        f"kernel 6.12.99 is not in Debian's index (bookworm-backports lists: {VERSION})"
    )
    monkeypatch.setenv("QSERIES_KERNEL", "6.1.0-99-amd64")
    with pytest.raises(KernelVersionError, match=r"kernel 6\.1\.0-99-amd64 is not"):
        kernel_kit(workdir)
    # The same from the index alone, before anything is fetched.
    with pytest.raises(KernelVersionError, match=r"kernel 6\.1\.0-99-amd64 is not"):
        kernel_version(workdir)
    assert not (workdir.path / "kernel" / VERSION).exists()
    monkeypatch.delenv("QSERIES_KERNEL")
    assert kernel_version(workdir) == (VERSION, PACKAGE_VERSION)
    # The pin names a listed kernel in any of its forms.
    for pin in (VERSION, VERSION.removesuffix("-amd64"), "6.12.9"):
        assert kernel_version(workdir, version=pin) == (VERSION, PACKAGE_VERSION)
        assert kernel_kit(workdir, version=pin).version == VERSION


def test_headers_that_do_not_match_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = KernelArchive(
        tmp_path / "archive",
        tmp_path / "build",
        headers_vermagic=f"{VERSION} SMP mod_unload ",
    )
    made.build()
    monkeypatch.setenv("QSERIES_DEBIAN_MIRROR", made.url)
    workdir = WorkDir(tmp_path / "work")
    with pytest.raises(HeadersMismatch) as err:
        kernel_kit(workdir)
    assert f"was built for '{VERSION} SMP mod_unload' but the image's modules are" in (
        one_line(err)
    )
    assert f"linux-headers-{VERSION} does not match the kernel image" in str(err.value)
    # Nothing of the build is taken for done.
    assert not (workdir.path / "kernel" / VERSION / "mtty").exists()
    assert not (workdir.path / "kernel" / VERSION / "kit.json").exists()


def test_a_source_tarball_without_mtty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = KernelArchive(tmp_path / "archive", tmp_path / "build", mtty_c=None)
    made.build()
    monkeypatch.setenv("QSERIES_DEBIAN_MIRROR", made.url)
    with pytest.raises(MttySourceMissing) as err:
        kernel_kit(WorkDir(tmp_path / "work"))
    assert one_line(err).startswith(
        "linux-source-6.12.tar.xz of linux-source-6.12_"
        f"{PACKAGE_VERSION}.deb has no samples/vfio-mdev/mtty.c"
    )


def test_an_image_without_its_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = KernelArchive(tmp_path / "archive", tmp_path / "build", vmlinuz=False)
    made.build()
    monkeypatch.setenv("QSERIES_DEBIAN_MIRROR", made.url)
    workdir = WorkDir(tmp_path / "work")
    with pytest.raises(kernel.KernelError) as err:
        kernel_kit(workdir)
    assert one_line(err).startswith(
        f"linux-image-{VERSION}-unsigned_{PACKAGE_VERSION}.deb holds no "
        f"boot/vmlinuz-{VERSION}"
    )
    assert not (workdir.path / "kernel" / VERSION / "image").exists()


def test_a_failed_build_names_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = KernelArchive(
        tmp_path / "archive",
        tmp_path / "build",
        common_makefile="modules:\n\t@echo 'mtty.c:1: error: no such thing'; false\n",
    )
    made.build()
    monkeypatch.setenv("QSERIES_DEBIAN_MIRROR", made.url)
    workdir = WorkDir(tmp_path / "work")
    with pytest.raises(ModuleBuildError) as err:
        kernel_kit(workdir)
    log = workdir.path / "kernel" / VERSION / "mtty-build.log"
    text = one_line(err)
    assert f"the build of mtty.ko for {VERSION} failed (" in text
    assert "mtty.c:1: error: no such thing" in text
    assert text.endswith(f"its output is in {log}; {err.value.hint}")
    assert "error: no such thing" in log.read_text()


def test_a_package_that_does_not_download(
    archive: KernelArchive, tmp_path: Path
) -> None:
    workdir = WorkDir(tmp_path / "work")
    archive.deb("linux-source-6.12").unlink()  # listed, but gone
    with pytest.raises(KernelDownloadError) as err:
        kernel_kit(workdir)
    assert one_line(err).startswith(
        f"linux-source-6.12 {PACKAGE_VERSION} did not download from {archive.url}"
    )
    # What did download before it is kept (the image, both headers and
    # kbuild); nothing half-downloaded is.
    debs = workdir.path / "kernel" / VERSION / "debs"
    assert len(list(debs.glob("linux-*.deb"))) == 4
    assert not list(debs.glob("*.partial"))


def test_no_space_is_said_before_a_cold_kit(
    archive: KernelArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel, "KIT_SPACE", 2**62)
    with pytest.raises(NoSpaceError, match=r"not enough space in .* kernel kit"):
        kernel_kit(WorkDir(tmp_path / "work"))


def test_the_kit_is_what_the_guest_imports() -> None:
    fields = list(KernelKit.__dataclass_fields__)
    assert fields == [
        "version",
        "package_version",
        "vmlinuz",
        "modules",
        "mtty",
        "mtty_source_sha256",
        "busybox",
    ]
