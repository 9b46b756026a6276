"""A local Debian archive of tiny kernel packages, for the kernel kit's tests.

The packages have the names and layout of Debian's (kernel.yaml): an
image with boot/vmlinuz and the VFIO modules as .ko.xz, headers whose
Makefile includes the -common one by its absolute /usr/src path, a
kbuild, a linux-source tarball holding samples/vfio-mdev/mtty.c, and a
busybox-static.  The modules are real ELF objects made by gcc, whose
.modinfo section carries a vermagic and the modules they depend on.
The "kbuild" of the -common headers is a few lines of make: `make -C
HEADERS M=DIR modules` compiles DIR/mtty.c into DIR/mtty.ko with gcc,
giving it the vermagic the headers stand for, so the kit's own steps
(fetch, unpack, Makefile fix, build, vermagic check) all run for real.

Built with dpkg-deb -b and indexed with dpkg-scanpackages, per suite,
with unsigned Release files: read with QSERIES_DEBIAN_MIRROR=file://DIR.
"""

from __future__ import annotations

import hashlib
import lzma
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

ABI = "6.12.9+deb12"
VERSION = f"{ABI}-amd64"
PACKAGE_VERSION = "6.12.9-1~bpo12+1"
VERMAGIC = f"{VERSION} SMP preempt mod_unload modversions "
BUSYBOX_VERSION = "1:1.35.0-4+b3"
KERNEL_SUITE = "bookworm-backports"
BUSYBOX_SUITE = "bookworm"

MTTY_C = """\
/* Not Linux's mtty: a stand-in whose object carries a .modinfo. */
static const char mtty_info[] __attribute__((section(".modinfo"), used)) =
    "vermagic=" VERMAGIC "\\0depends=mdev,vfio\\0name=mtty";
"""

# The -common headers' Makefile: a kbuild of one rule.
COMMON_MAKEFILE = """\
modules:
\tgcc -c -DVERMAGIC='"$(HEADERS_VERMAGIC)"' -o $(M)/mtty.ko $(M)/mtty.c
"""


def run(cwd: Path, *argv: str) -> str:
    return subprocess.run(
        list(argv), cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def module_object(work: Path, name: str, vermagic: str, depends: str) -> bytes:
    """A relocatable ELF object with the .modinfo of a kernel module."""
    source = work / f"{name}.c"
    source.write_text(
        'static const char info[] __attribute__((section(".modinfo"), used)) = '
        f'"vermagic={vermagic}\\0depends={depends}\\0name={name}";\n'
    )
    run(work, "gcc", "-c", "-o", f"{name}.o", source.name)
    return (work / f"{name}.o").read_bytes()


@dataclass
class KernelArchive:
    """The archive under root; build() makes and indexes its packages."""

    root: Path
    work: Path
    headers_vermagic: str = VERMAGIC
    mtty_c: str | None = MTTY_C  # None: a source tarball without it
    common_makefile: str = COMMON_MAKEFILE
    vmlinuz: bool = True  # False: an image without its kernel

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    def _deb(self, name: str, version: str, tree: Path, suite: str) -> None:
        (tree / "DEBIAN").mkdir(parents=True, exist_ok=True)
        (tree / "DEBIAN" / "control").write_text(
            f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
            "Maintainer: Test <test@example.org>\nDescription: test\n test\n"
        )
        pool = self.root / "pool" / suite
        pool.mkdir(parents=True, exist_ok=True)
        safe = version.replace(":", "%3a")
        run(
            self.work,
            "dpkg-deb",
            "--root-owner-group",
            "-Zxz",
            "-b",
            str(tree),
            str(pool / f"{name}_{safe}_amd64.deb"),
        )

    def _tree(self, name: str) -> Path:
        tree = self.work / "trees" / name
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        return tree

    def build(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        k = KERNEL_SUITE
        image = self._tree("image")
        (image / "boot").mkdir()
        if self.vmlinuz:
            (image / "boot" / f"vmlinuz-{VERSION}").write_bytes(b"not a kernel\n")
        vfio = image / "lib" / "modules" / VERSION / "kernel" / "drivers" / "vfio"
        (vfio / "mdev").mkdir(parents=True)
        for path, name, depends in (
            (vfio / "vfio.ko.xz", "vfio", ""),
            (vfio / "vfio_iommu_type1.ko.xz", "vfio_iommu_type1", "vfio"),
            (vfio / "mdev" / "mdev.ko.xz", "mdev", ""),
            (vfio / "irqbypass.ko.xz", "irqbypass", ""),
        ):
            data = module_object(self.work, name, VERMAGIC, depends)
            path.write_bytes(lzma.compress(data, format=lzma.FORMAT_XZ))
        self._deb(f"linux-image-{ABI}-amd64-unsigned", PACKAGE_VERSION, image, k)

        headers = self._tree("headers")
        amd64 = headers / "usr" / "src" / f"linux-headers-{VERSION}"
        amd64.mkdir(parents=True)
        (amd64 / "Makefile").write_text(
            f"HEADERS_VERMAGIC := {self.headers_vermagic}\n"
            f"include /usr/src/linux-headers-{ABI}-common/Makefile\n"
        )
        self._deb(f"linux-headers-{VERSION}", PACKAGE_VERSION, headers, k)

        common = self._tree("common")
        directory = common / "usr" / "src" / f"linux-headers-{ABI}-common"
        directory.mkdir(parents=True)
        (directory / "Makefile").write_text(self.common_makefile)
        self._deb(f"linux-headers-{ABI}-common", PACKAGE_VERSION, common, k)

        kbuild = self._tree("kbuild")
        scripts = kbuild / "usr" / "lib" / f"linux-kbuild-{ABI}" / "scripts"
        scripts.mkdir(parents=True)
        (scripts / "README").write_text("kbuild\n")
        self._deb(f"linux-kbuild-{ABI}", PACKAGE_VERSION, kbuild, k)

        source = self._tree("source")
        src = source / "usr" / "src"
        src.mkdir(parents=True)
        tree = self.work / "linux-source-6.12"
        shutil.rmtree(tree, ignore_errors=True)
        (tree / "samples" / "vfio-mdev").mkdir(parents=True)
        (tree / "README").write_text("Linux\n")
        if self.mtty_c is not None:
            (tree / "samples" / "vfio-mdev" / "mtty.c").write_text(self.mtty_c)
        with tarfile.open(src / "linux-source-6.12.tar.xz", "w:xz") as tar:
            tar.add(tree, arcname=tree.name)
        self._deb("linux-source-6.12", PACKAGE_VERSION, source, k)

        busybox = self._tree("busybox")
        (busybox / "bin").mkdir()
        shutil.copy("/bin/true", busybox / "bin" / "busybox")
        self._deb("busybox-static", BUSYBOX_VERSION, busybox, BUSYBOX_SUITE)
        self.publish()

    def publish(self) -> None:
        """A Packages index and an unsigned Release file per suite."""
        for suite in (KERNEL_SUITE, BUSYBOX_SUITE):
            text = run(self.root, "dpkg-scanpackages", "-m", f"pool/{suite}")
            dists = self.root / "dists" / suite
            binary = dists / "main" / "binary-amd64"
            binary.mkdir(parents=True, exist_ok=True)
            (binary / "Packages").write_text(text)
            data = text.encode()
            (dists / "Release").write_text(
                f"Suite: {suite}\nCodename: {suite}\nComponents: main\n"
                "Architectures: amd64\n"
                "Date: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n"
                f" {hashlib.sha256(data).hexdigest()} {len(data)} "
                "main/binary-amd64/Packages\n"
            )

    def deb(self, name: str) -> Path:
        """The pool's file of package name."""
        (found,) = self.root.glob(f"pool/*/{name}_*.deb")
        return found
