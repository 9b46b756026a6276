"""The kernel kit of the mtty device, from Debian's binary packages.

A guest that runs the kernel's mtty sample needs a kernel image, the
VFIO modules it loads mtty.ko into (vfio, vfio_iommu_type1, mdev),
mtty.ko itself, which Debian does not ship built, and a busybox for its
/init.  All of it comes from Debian's archive through apt with a private
configuration under WORKDIR/kernel (nothing is installed system-wide):
the image, its headers and kbuild, the linux-source tarball that holds
mtty.c, and busybox-static.  Which packages, from which suites, is data
(kernel.yaml).  mtty.ko is built once per kernel out of tree against
the unpacked headers, and checked against the image's modules by its
vermagic.

Each step leaves its result under a temporary name and renames it into
place when complete (a download, an unpacked package, the modules, the
build), so an interrupted run leaves nothing that a later one trusts; a
second run finds every step done and costs the index look-ups only.
"""

from __future__ import annotations

import errno
import lzma
import os
import re
import shutil
import struct
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cmp_to_key
from importlib import resources
from pathlib import Path

import yaml

from ...core.versions import compare_debian
from ...ground.console import say
from ...ground.errors import EXIT_USAGE, QSeriesError
from ...ground.proc import CommandTimeout, Ran, run_streaming
from ...ground.workdir import WorkDir
from ...qemu.source import (
    APT_UPDATE_TIMEOUT,
    LISTS_MAX_AGE,
    _last_line,
    _remove,
    _run,
    list_options,
    local_archive,
    need_space,
    private_apt_options,
    read_stamp,
    sha256_of,
    system_mirror,
    write_stamp,
)

DATA = "kernel.yaml"
KERNEL_DIR = "kernel"  # under the work dir
ENV_KERNEL = "QSERIES_KERNEL"
PARTIAL = ".partial"  # the suffix of a step's result before it is complete
STAMP = ".qseries-step.json"  # inside a step's result: what it was made from
KIT_STAMP = "kit.json"  # in a kernel's directory; its time is the last use
BUSYBOX = "bin/busybox"  # in busybox-static

# Time limits, in seconds.
APT_CACHE_TIMEOUT = 2 * 60
DOWNLOAD_TIMEOUT = 30 * 60
UNPACK_TIMEOUT = 10 * 60
BUILD_TIMEOUT = 10 * 60
# Free space wanted before a cold kit: about 280 MB of packages, 1.4 GB
# once unpacked (the image's modules, the source tarball unpacked for a
# moment), the index.
KIT_SPACE = 2500 * 2**20
# What a make of the caller (make check) passes down that would change
# this build: its job server and flags, and the variables kbuild reads.
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
KBUILD_VARIABLES = ("ARCH", "CROSS_COMPILE", "CC", "LLVM", "O", "KBUILD_OUTPUT")


class KernelError(QSeriesError):
    """The kernel kit cannot be had or built."""

    exit_code = EXIT_USAGE


class KernelVersionError(KernelError):
    """The kernel asked for is not in Debian's index."""


class KernelDownloadError(KernelError):
    """A package of the kit did not download."""


class HeadersMismatch(KernelError):
    """mtty.ko, built against the headers, would not load into the image."""


class MttySourceMissing(KernelError):
    """The linux-source tarball has no mtty.c."""


class ModuleBuildError(KernelError):
    """The out-of-tree build of mtty.ko failed."""


@dataclass(frozen=True)
class KernelKit:
    """What a guest needs to run mtty: all of it under WORKDIR/kernel."""

    # The kernel's version (uname -r, its ABI and flavour): 6.12.95+deb12-amd64.
    version: str
    # The Debian version of its linux-image package: 6.12.95-1~bpo12+1.
    package_version: str
    vmlinuz: Path  # the kernel image
    # vfio.ko, vfio_iommu_type1.ko, mdev.ko, decompressed, in insmod order
    # (each after the modules its modinfo 'depends:' names).
    modules: tuple[Path, ...]
    mtty: Path  # mtty.ko built out of tree against the matching headers
    mtty_source_sha256: str  # sha256 of the mtty.c it was built from
    busybox: Path  # busybox from busybox-static


@dataclass(frozen=True)
class KitSpec:
    """What kernel.yaml says: the suites, the series and the packages."""

    suite: str
    series: str
    flavour: str
    packages: Mapping[str, str]  # role: name pattern ({abi}, {series})
    modules: tuple[str, ...]
    mtty: str  # mtty.c's path inside the source tree
    busybox_suite: str
    busybox_package: str

    ROLES = ("image", "headers", "common", "kbuild", "source")

    def name(self, role: str, abi: str) -> str:
        return self.packages[role].format(abi=abi, series=self.series)

    def version(self, abi: str) -> str:
        """The kernel's own name for itself (uname -r): 6.12.95+deb12-amd64."""
        return f"{abi}-{self.flavour}"

    def image_prefix(self) -> str:
        """What every image package name of the series starts with."""
        before = self.packages["image"].split("{abi}")[0]
        return before.format(series=self.series) + self.series + "."

    def image_names(self) -> re.Pattern[str]:
        """The image packages of the series; the group abi is their ABI."""
        before, _, after = self.packages["image"].partition("{abi}")
        abi = re.escape(self.series) + r"\.[0-9][^-_\s]*"
        return re.compile(
            re.escape(before.format(series=self.series))
            + f"(?P<abi>{abi})"
            + re.escape(after.format(series=self.series))
        )

    @property
    def suites(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.suite, self.busybox_suite)))


def load_spec(text: str | None = None) -> KitSpec:
    """kernel.yaml (the package's, unless text is given)."""
    if text is None:
        text = resources.files(__package__).joinpath(DATA).read_text()
    data = yaml.safe_load(text)
    try:
        kernel, busybox = data["kernel"], data["busybox"]
        packages = {role: str(kernel["packages"][role]) for role in KitSpec.ROLES}
        if "{abi}" not in packages["image"]:
            raise KeyError("kernel.packages.image has no {abi}")
        return KitSpec(
            suite=str(kernel["suite"]),
            series=str(kernel["series"]),
            flavour=str(kernel["flavour"]),
            packages=packages,
            modules=tuple(str(m) for m in kernel["modules"]),
            mtty=str(kernel["mtty"]),
            busybox_suite=str(busybox["suite"]),
            busybox_package=str(busybox["package"]),
        )
    except (KeyError, TypeError) as err:
        raise KernelError(
            f"{DATA} of qseries.labs.vfio_migration is malformed ({err})",
            "reinstall qseries",
        ) from None


# -- the index ---------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    """One line of `apt-cache madison`: a version of a package in a suite."""

    package: str
    version: str
    suite: str


def parse_madison(text: str) -> list[Listed]:
    """`apt-cache madison` output: 'name | version | URI suite/main arch Packages'."""
    found = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 3 or not parts[2].endswith("Packages"):
            continue
        where = parts[2].split()
        if len(where) < 2:
            continue
        found.append(Listed(parts[0], parts[1], where[1].split("/")[0]))
    return found


def newest(versions: Sequence[str]) -> str:
    return max(versions, key=cmp_to_key(compare_debian))


def listed_abis(rows: Sequence[Listed], spec: KitSpec) -> dict[str, str]:
    """ABI: the newest version of its image package in the kernel's suite."""
    names = spec.image_names()
    found: dict[str, list[str]] = {}
    for row in rows:
        m = names.fullmatch(row.package)
        if m and row.suite == spec.suite:
            found.setdefault(m["abi"], []).append(row.version)
    return {abi: newest(versions) for abi, versions in found.items()}


def abis_newest_first(abis: Sequence[str]) -> list[str]:
    return sorted(abis, key=cmp_to_key(compare_debian), reverse=True)


def choose_abi(listed: Mapping[str, str], pinned: str | None, spec: KitSpec) -> str:
    """The ABI to use: the newest listed, or the one pinned (given as the
    kernel's version 6.12.95+deb12-amd64, its ABI 6.12.95+deb12, or its
    upstream version 6.12.95)."""
    ordered = abis_newest_first(list(listed))
    if pinned is None:
        if not ordered:
            raise KernelVersionError(
                f"Debian's index lists no Linux {spec.series} image in {spec.suite}",
                "check the mirror (QSERIES_DEBIAN_MIRROR), or the kernel "
                "series in kernel.yaml",
            )
        return ordered[0]
    for abi in ordered:
        if pinned in (abi, spec.version(abi), abi.split("+", 1)[0]):
            return abi
    versions = ", ".join(spec.version(abi) for abi in ordered) or "none"
    raise KernelVersionError(
        f"kernel {pinned} is not in Debian's index ({spec.suite} lists: {versions})",
        f"pass one of those to --kernel (or {ENV_KERNEL}), or neither for the newest",
    )


def version_in(
    rows: Sequence[Listed], package: str, suite: str, wanted: str | None
) -> str | None:
    """The version of package in suite: wanted if listed, else (wanted
    None) the newest; None if there is none."""
    versions = [r.version for r in rows if r.package == package and r.suite == suite]
    if wanted is not None:
        return wanted if wanted in versions else None
    return newest(versions) if versions else None


# -- modules ------------------------------------------------------------------


def modinfo(data: bytes) -> dict[str, list[str]]:
    """The .modinfo section of a kernel module (an ELF64 little-endian
    object): key: values, as `modinfo -F key` prints them."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF object")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        base = shoff + index * shentsize
        name, _ = struct.unpack_from("<II", data, base)
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name, offset, size

    _, names_at, _ = section(shstrndx)
    for index in range(shnum):
        name, offset, size = section(index)
        end = data.index(b"\0", names_at + name)
        if data[names_at + name : end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for entry in data[offset : offset + size].split(b"\0"):
                key, sep, value = entry.decode("utf-8", "replace").partition("=")
                if sep:
                    info.setdefault(key, []).append(value)
            return info
    raise ValueError("no .modinfo section")


def module_field(path: Path, key: str) -> str:
    """One field of a module's .modinfo ('' if it has none)."""
    try:
        return ",".join(modinfo(path.read_bytes()).get(key, []))
    except (OSError, ValueError, struct.error) as err:
        raise KernelError(
            f"{path}: not a kernel module ({err})",
            "remove it and run qseries again",
        ) from None


def check_vermagic(built: str, image: str, module: Path, headers: str) -> None:
    """mtty.ko loads only into a kernel of its own vermagic."""
    if built.strip() != image.strip():
        raise HeadersMismatch(
            f"{module} was built for '{built.strip()}' but the image's modules "
            f"are '{image.strip()}': {headers} does not match the kernel image",
            "the archive may be between two uploads: try again later, or pin "
            f"another kernel with --kernel (or {ENV_KERNEL})",
        )


def check_depends(module: Path, loaded: Sequence[Path]) -> None:
    """module's 'depends:' are all among the modules loaded before it."""
    names = {p.name.removesuffix(".ko") for p in loaded}
    field = module_field(module, "depends")
    missing = [d for d in field.split(",") if d and d.replace("-", "_") not in names]
    if missing:
        raise KernelError(
            f"{module.name} depends on {', '.join(missing)}, which the kit "
            f"does not load ({', '.join(sorted(names))})",
            "add them to kernel.modules in kernel.yaml",
        )


def insmod_order(
    wanted: Sequence[str], depends: Mapping[str, Sequence[str]]
) -> list[str]:
    """The modules to load, each after those it depends on, otherwise in
    the order wanted names them.  depends: a module's 'depends:' names."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise KernelError(f"the modules {name} depends on depend on it")
        visiting.add(name)
        for dep in depends.get(name, ()):
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def _module_index(image: Path, version: str) -> dict[str, Path]:
    """Module name (dashes as underscores): its file in the unpacked image."""
    root = image / "lib" / "modules" / version
    return {
        p.name.split(".ko")[0].replace("-", "_"): p
        for p in root.rglob("*.ko*")
        if p.name.endswith((".ko", ".ko.xz"))
    }


# -- the headers ---------------------------------------------------------------


def fix_headers_makefile(text: str, root: Path) -> str:
    """The headers' Makefile with its absolute includes of /usr/src/...
    pointed at the copy unpacked under root."""
    return re.sub(
        r"^(\s*-?include\s+)/usr/src/",
        lambda m: f"{m[1]}{root}/usr/src/",
        text,
        flags=re.M,
    )


# -- apt -----------------------------------------------------------------------


class BinaryApt:
    """apt-get and apt-cache on Debian's binary packages, with a private
    configuration under WORKDIR/kernel/apt (like source.Apt for the
    source packages): the mirror is QSERIES_DEBIAN_MIRROR, else the
    system's; a local archive (file:///DIR) is read with copy:."""

    def __init__(
        self, workdir: WorkDir, suites: Sequence[str], mirror: str | None = None
    ):
        self.workdir = workdir.path
        self.suites = tuple(suites)
        self.root = workdir.sub(KERNEL_DIR, "apt")
        self.mirror = (
            mirror or os.environ.get("QSERIES_DEBIAN_MIRROR") or system_mirror()
        )
        self.local = local_archive(self.mirror)
        uri = self.mirror
        if self.local is not None:
            if not (self.local / "dists").is_dir():
                raise KernelError(
                    f"{self.mirror} is not a Debian archive (no {self.local}/dists)",
                    "set QSERIES_DEBIAN_MIRROR to a directory with dists/ and pool/",
                )
            uri = "copy://" + urllib.parse.quote(str(self.local))
        self.sources = self.root / "sources.list"
        self.stamp = self.root / "updated.json"
        for sub in ("sources.list.d", "lists/partial", "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # list_options' [signed-by=...] or [trusted=yes], with the arch.
        extra = list_options(self.local, self.suites).strip().strip("[]")
        options = " ".join(["arch=amd64", *([extra] if extra else [])])
        text = "".join(f"deb [{options}] {uri} {suite} main\n" for suite in self.suites)
        if not self.sources.exists() or self.sources.read_text() != text:
            self.stamp.unlink(missing_ok=True)
            self.sources.write_text(text)
            for old in (self.root / "lists").glob("*_Packages*"):
                old.unlink()

    def options(self) -> list[str]:
        # No translations: only the package names and versions are read.
        return [
            *private_apt_options(self.root, self.sources),
            "-o",
            "Acquire::Languages=none",
        ]

    def run(self, argv: Sequence[str], timeout: float, cwd: Path | None = None) -> Ran:
        return _run(
            [argv[0], *self.options(), *argv[1:]],
            cwd,
            timeout=timeout,
            workdir=self.workdir,
        )

    def is_fresh(self) -> bool:
        """A complete update of these sources less than a day old."""
        data = read_stamp(self.stamp)
        if data is None or data.get("sources") != self.sources.read_text():
            return False
        when = data.get("time")
        return isinstance(when, (int, float)) and 0 <= time.time() - when < (
            LISTS_MAX_AGE
        )

    def update(self, refresh: bool) -> None:
        if self.is_fresh() and not refresh:
            return
        for partial in (self.root / "lists" / "partial").iterdir():
            _remove(partial)
        self.stamp.unlink(missing_ok=True)
        say(f"reading Debian's package index ({', '.join(self.suites)})")
        started = time.monotonic()
        ran = self.run(["apt-get", "update"], APT_UPDATE_TIMEOUT)
        lists = self.root / "lists"
        missing = [
            suite
            for suite in self.suites
            if not list(lists.glob(f"*_dists_{suite}_main_binary-amd64_Packages*"))
        ]
        if ran.returncode != 0 or missing:
            raise KernelDownloadError(
                f"apt-get update failed: {_last_line(ran.stderr or ran.stdout)}",
                f"check that {self.mirror} is reachable and has "
                f"{', '.join(missing or self.suites)}",
            )
        write_stamp(
            self.stamp, {"time": time.time(), "sources": self.sources.read_text()}
        )
        say(f"read the index in {time.monotonic() - started:.1f} s")

    def cache(self, *args: str) -> str:
        ran = self.run(["apt-cache", *args], APT_CACHE_TIMEOUT)
        if ran.returncode != 0:
            raise KernelError(
                f"apt-cache {args[0]} failed: {_last_line(ran.stderr)}",
                f"remove {self.stamp} to read the index again",
            )
        return ran.stdout

    def madison(self, packages: Sequence[str]) -> list[Listed]:
        return parse_madison(self.cache("madison", *packages)) if packages else []

    def download(self, package: str, version: str, dest: Path) -> Path:
        """dest/NAME.deb: package at version, downloaded (apt checks it
        against the sha256 of the signed index) and renamed into place
        once whole; reused when there."""
        deb = dest / f"{package}_{_safe(version)}.deb"
        if deb.is_file():
            return deb
        tmp = dest / f"{package}{PARTIAL}"
        _remove(tmp)
        tmp.mkdir(parents=True)
        ran = self.run(
            ["apt-get", "download", f"{package}={version}"],
            DOWNLOAD_TIMEOUT,
            cwd=tmp,
        )
        got = sorted(tmp.glob("*.deb"))
        if ran.returncode != 0 or len(got) != 1:
            _remove(tmp)
            raise KernelDownloadError(
                f"{package} {version} did not download from {self.mirror} "
                f"({_last_line(ran.stderr or ran.stdout)})",
                "check the network; if the archive moved on since the index "
                f"was read, remove {self.stamp} to read it again",
            )
        got[0].rename(deb)
        _remove(tmp)
        return deb


def _safe(version: str) -> str:
    """A Debian version as a file name: 1_1.35.0-4+b3."""
    return re.sub(r"[^\w.+~-]", "_", version)


# -- the steps -----------------------------------------------------------------


def _done(result: Path, made_from: Mapping[str, object]) -> bool:
    """Is result the complete outcome of a step made from made_from?"""
    return read_stamp(result / STAMP) == dict(made_from)


def _commit(tmp: Path, result: Path, made_from: Mapping[str, object]) -> None:
    """A step's result, complete in tmp, put in place with its stamp."""
    write_stamp(tmp / STAMP, dict(made_from))
    _remove(result)
    tmp.rename(result)


def _begin(result: Path) -> Path:
    tmp = result.with_name(result.name + PARTIAL)
    _remove(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _checked(ran_ok: bool, what: str, output: str) -> None:
    if not ran_ok:
        raise KernelError(
            f"{what} failed: {_last_line(output)}",
            "run that command by hand to see all of its output",
        )


def unpack(
    debs: Sequence[Path],
    result: Path,
    workdir: WorkDir,
    expect: Sequence[str],
    then: Callable[[Path], None] | None = None,
) -> Path:
    """The packages unpacked together (dpkg-deb -x) into result, which
    must then hold the paths expect names; then, if given, changes the
    unpacked tree (under its temporary name) before the step counts as
    done.  A result whose expected files went missing is unpacked again."""
    made_from = {"debs": [d.name for d in debs]}
    if _done(result, made_from) and all((result / e).exists() for e in expect):
        return result
    tmp = _begin(result)
    for deb in debs:
        ran = _run(
            ["dpkg-deb", "-x", str(deb), str(tmp)],
            timeout=UNPACK_TIMEOUT,
            workdir=workdir.path,
        )
        _checked(ran.returncode == 0, f"dpkg-deb -x {deb}", ran.stderr)
    missing = [e for e in expect if not (tmp / e).exists()]
    if missing:
        _remove(tmp)
        raise KernelError(
            f"{', '.join(d.name for d in debs)} holds no {missing[0]}",
            "check the package names in kernel.yaml",
        )
    if then is not None:
        then(tmp)
    _commit(tmp, result, made_from)
    return result


def decompressed_modules(
    image: Path, version: str, wanted: Sequence[str], result: Path
) -> tuple[Path, ...]:
    """The modules wanted, with what they depend on, decompressed into
    result, in insmod order."""
    made_from = {"image": str(image), "wanted": list(wanted)}
    done = _done_modules(read_stamp(result / STAMP), made_from, result)
    if done is not None:
        return tuple(result / f"{name}.ko" for name in done)
    index = _module_index(image, version)
    tmp = _begin(result)
    depends: dict[str, list[str]] = {}
    todo = list(wanted)
    while todo:
        name = todo.pop().replace("-", "_")
        if name in depends:
            continue
        if name not in index:
            _remove(tmp)
            raise KernelError(
                f"the kernel image {version} has no module {name}",
                "pin another kernel, or change the modules in kernel.yaml",
            )
        source = index[name]
        data = source.read_bytes()
        if source.name.endswith(".xz"):
            data = lzma.decompress(data)
        (tmp / f"{name}.ko").write_bytes(data)
        try:
            field = ",".join(modinfo(data).get("depends", []))
        except (ValueError, struct.error) as err:
            raise KernelError(f"{source}: not a kernel module ({err})") from None
        depends[name] = [d.replace("-", "_") for d in field.split(",") if d]
        todo.extend(depends[name])
    order = insmod_order([w.replace("-", "_") for w in wanted], depends)
    _commit(tmp, result, {**made_from, "order": order})
    return tuple(result / f"{name}.ko" for name in order)


def _done_modules(
    stamp: Mapping[str, object] | None, made_from: Mapping[str, object], result: Path
) -> list[str] | None:
    """The insmod order a complete earlier step stamped, else None."""
    if stamp is None or any(stamp.get(k) != v for k, v in made_from.items()):
        return None
    order = stamp.get("order")
    if not isinstance(order, list):
        return None
    names = [str(name) for name in order]
    return names if all((result / f"{n}.ko").is_file() for n in names) else None


def mtty_source(
    source_deb: Path, spec: KitSpec, result: Path, workdir: WorkDir
) -> Path:
    """result/mtty.c, taken from the linux-source tarball inside source_deb
    (which is unpacked for a moment and removed)."""
    made_from = {"deb": source_deb.name, "path": spec.mtty}
    if _done(result, made_from) and (result / "mtty.c").is_file():
        return result / "mtty.c"
    tmp = _begin(result)
    unpacked = tmp / "deb"
    ran = _run(
        ["dpkg-deb", "-x", str(source_deb), str(unpacked)],
        timeout=UNPACK_TIMEOUT,
        workdir=workdir.path,
    )
    _checked(ran.returncode == 0, f"dpkg-deb -x {source_deb}", ran.stderr)
    tarballs = sorted((unpacked / "usr" / "src").glob("linux-source-*.tar*"))
    if len(tarballs) != 1:
        _remove(tmp)
        raise MttySourceMissing(
            f"{source_deb.name} holds no linux-source tarball in /usr/src",
            "pin another kernel, or check the source package in kernel.yaml",
        )
    # Only mtty.c is taken out of the whole tree.
    ran = _run(
        [
            "tar",
            "-xf",
            str(tarballs[0]),
            "-C",
            str(tmp),
            "--wildcards",
            f"*/{spec.mtty}",
        ],
        timeout=UNPACK_TIMEOUT,
        workdir=workdir.path,
    )
    found = sorted(tmp.glob(f"*/{spec.mtty}"))
    if ran.returncode != 0 or len(found) != 1:
        _remove(tmp)
        raise MttySourceMissing(
            f"{tarballs[0].name} of {source_deb.name} has no {spec.mtty}",
            "pin a kernel whose source has the mtty sample, or correct "
            "kernel.mtty in kernel.yaml",
        )
    found[0].rename(tmp / "mtty.c")
    for entry in tmp.iterdir():
        if entry.name != "mtty.c":
            _remove(entry)
    _commit(tmp, result, made_from)
    return result / "mtty.c"


def build_env() -> dict[str, str]:
    """The build's environment: ours, less what a calling make or the
    user's kernel work would pass to kbuild."""
    skip = (*MAKE_VARIABLES, *KBUILD_VARIABLES)
    return {
        **{k: v for k, v in os.environ.items() if k not in skip},
        "LC_ALL": "C",
    }


def build_mtty(
    mtty_c: Path,
    headers: Path,
    version: str,
    image_vermagic: str,
    result: Path,
    log: Path,
) -> Path:
    """result/mtty.ko, built out of tree against the headers of version,
    and checked to carry the image's vermagic."""
    source_sha = sha256_of(mtty_c)
    made_from = {"mtty.c": source_sha, "headers": str(headers), "version": version}
    if _done(result, made_from) and (result / "mtty.ko").is_file():
        return result / "mtty.ko"
    tmp = _begin(result)
    shutil.copyfile(mtty_c, tmp / "mtty.c")
    (tmp / "Makefile").write_text("obj-m := mtty.o\n")
    tree = headers / "usr" / "src" / f"linux-headers-{version}"
    log.unlink(missing_ok=True)
    # Trusted, not in the run's sandbox: mtty.c is Debian's (its package
    # checked by apt against the signed index), the headers too, and
    # nothing of the series under test takes part in this build.
    # No pahole here: no BTF for the module (it loads without).
    argv = [
        "make",
        "-C",
        str(tree),
        f"M={tmp}",
        "CONFIG_DEBUG_INFO_BTF_MODULES=",
        "modules",
    ]
    try:
        code = run_streaming(argv, build_env(), BUILD_TIMEOUT, tmp, log)
    except FileNotFoundError:
        raise ModuleBuildError(
            "make is not installed",
            "install make and gcc (apt-get install build-essential)",
        ) from None
    except CommandTimeout:
        raise ModuleBuildError(
            f"the build of mtty.ko did not finish within {BUILD_TIMEOUT} s; "
            f"its output is in {log}",
            "look at what it was waiting for, then run again",
        ) from None
    built = tmp / "mtty.ko"
    if code != 0 or not built.is_file():
        raise ModuleBuildError(
            f"the build of mtty.ko for {version} failed "
            f"({last_lines(log)}); its output is in {log}",
            "is gcc installed, and does the compiler match the headers'?",
        )
    check_vermagic(module_field(built, "vermagic"), image_vermagic, built, tree.name)
    _commit(tmp, result, made_from)
    return result / "mtty.ko"


def last_lines(log: Path, count: int = 2) -> str:
    """What a failed build's log says in one line: its first error (the
    compiler's, which the rest follows from), else its last lines."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "no output"
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip()
        and not line.startswith("$ ")
        and not re.match(r"make(\[\d+\])?: (Entering|Leaving) directory", line)
    ]
    errors = [line for line in lines if re.search(r"\berror:", line, re.I)]
    return errors[0] if errors else " | ".join(lines[-count:]) or "no output"


def _fix_headers(unpacked: Path, final: Path, version: str) -> None:
    """Point the Makefile of the headers unpacked (to be moved to final)
    at the -common unpacked beside it."""
    makefile = unpacked / "usr" / "src" / f"linux-headers-{version}" / "Makefile"
    try:
        text = makefile.read_text()
    except OSError:
        raise KernelError(
            f"the unpacked headers have no {makefile}",
            "check the headers package name in kernel.yaml",
        ) from None
    fixed = fix_headers_makefile(text, final)
    if fixed != text:
        makefile.write_text(fixed)


# -- the kit -------------------------------------------------------------------


def kernel_dir(workdir: WorkDir) -> Path:
    return workdir.path / KERNEL_DIR


def clean_leftovers(workdir: WorkDir) -> None:
    """Remove what an interrupted run left half-made under WORKDIR/kernel
    (runs under the work dir's lock: nothing else writes there)."""
    root = kernel_dir(workdir)
    # Where the steps make their results: the kernel's directory, its
    # debs/ and the work dir's kernel/ itself (not inside what they made).
    for pattern in (f"*{PARTIAL}", f"*/*{PARTIAL}", f"*/debs/*{PARTIAL}"):
        for leftover in root.glob(pattern):
            _remove(leftover)


def kernel_kit(
    workdir: WorkDir, refresh: bool = False, version: str | None = None
) -> KernelKit:
    """The kit for the kernel pinned (version, else QSERIES_KERNEL), or the
    newest of the series Debian's index lists; fetched and built the
    first time, found in the work dir after that.  refresh: read the
    index again even if it is less than a day old.  Call it under the
    work dir's lock."""
    try:
        return _kernel_kit(workdir, refresh, version or os.environ.get(ENV_KERNEL))
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise KernelError(
                f"no space left on device in {workdir.path} (the kernel kit)",
                "free some space there, or pass --workdir DIR on a disk with room",
            ) from None
        raise


def kernel_version(
    workdir: WorkDir, refresh: bool = False, version: str | None = None
) -> tuple[str, str]:
    """The kernel kernel_kit would take (its version and its image
    package's), from the index alone: a pin Debian does not list fails
    here, before anything is downloaded or built."""
    spec = load_spec()
    apt = BinaryApt(workdir, spec.suites)
    apt.update(refresh)
    abi, package_version = _chosen(apt, spec, version or os.environ.get(ENV_KERNEL))
    return spec.version(abi), package_version


def _chosen(apt: BinaryApt, spec: KitSpec, pinned: str | None) -> tuple[str, str]:
    """The ABI and image package version to use, as the index lists them."""
    images = [
        name
        for name in apt.cache("pkgnames", spec.image_prefix()).split()
        if spec.image_names().fullmatch(name)
    ]
    listed = listed_abis(apt.madison(images), spec)
    abi = choose_abi(listed, pinned, spec)
    return abi, listed[abi]


def _kernel_kit(workdir: WorkDir, refresh: bool, pinned: str | None) -> KernelKit:
    spec = load_spec()
    clean_leftovers(workdir)
    apt = BinaryApt(workdir, spec.suites)
    apt.update(refresh)
    started = time.monotonic()

    abi, package_version = _chosen(apt, spec, pinned)
    version = spec.version(abi)

    names = {role: spec.name(role, abi) for role in KitSpec.ROLES}
    rows = apt.madison([*names.values(), spec.busybox_package])
    versions: dict[str, str] = {}
    for name in names.values():
        found = version_in(rows, name, spec.suite, package_version)
        if found is None:
            other = [r.version for r in rows if r.package == name] or ["not at all"]
            raise KernelVersionError(
                f"Debian's index lists {names['image']} at {package_version} but "
                f"{name} at {', '.join(other)}",
                "the archive is between two uploads: try again later, or pin "
                f"another kernel with --kernel (or {ENV_KERNEL})",
            )
        versions[name] = found
    busybox_version = version_in(rows, spec.busybox_package, spec.busybox_suite, None)
    if busybox_version is None:
        raise KernelVersionError(
            f"Debian's index lists no {spec.busybox_package} in {spec.busybox_suite}",
            "check the busybox suite in kernel.yaml",
        )
    versions[spec.busybox_package] = busybox_version

    home = kernel_dir(workdir) / version
    kit_stamp = home / KIT_STAMP
    kit = _read_kit(kit_stamp, package_version, busybox_version)
    if kit is not None:
        os.utime(kit_stamp)  # the last use, for qseries clean
        return kit

    # The packages in the kernel's own directory: qseries clean removes
    # a kernel with all it took.
    debs_dir = home / "debs"
    missing = [
        (name, ver)
        for name, ver in versions.items()
        if not (debs_dir / f"{name}_{_safe(ver)}.deb").is_file()
    ]
    if missing or not (home / "image").is_dir():
        need_space(kernel_dir(workdir), KIT_SPACE, f"the kernel kit {version}")
    debs_dir.mkdir(parents=True, exist_ok=True)
    if missing:
        say(
            f"downloading {len(missing)} packages of Linux {version} "
            f"({package_version}) from {apt.mirror}"
        )
    debs = {name: apt.download(name, ver, debs_dir) for name, ver in versions.items()}
    _said_time("downloaded", started, bool(missing))

    step = time.monotonic()
    say_step = not (home / "image").is_dir() or not (home / "headers").is_dir()
    vmlinuz = f"boot/vmlinuz-{version}"
    image = unpack([debs[names["image"]]], home / "image", workdir, [vmlinuz])
    headers = unpack(
        [debs[names[r]] for r in ("headers", "common", "kbuild")],
        home / "headers",
        workdir,
        [f"usr/src/linux-headers-{version}/Makefile"],
        then=lambda tmp: _fix_headers(tmp, home / "headers", version),
    )
    bb = unpack([debs[spec.busybox_package]], home / "busybox", workdir, [BUSYBOX])
    _said_time("unpacked the kernel, its headers and busybox", step, say_step)
    modules = decompressed_modules(image, version, spec.modules, home / "modules")

    step = time.monotonic()
    say_step = not (home / "mtty-source").is_dir()
    mtty_c = mtty_source(debs[names["source"]], spec, home / "mtty-source", workdir)
    source_sha = sha256_of(mtty_c)
    _said_time(f"took {spec.mtty} out of {names['source']}", step, say_step)

    step = time.monotonic()
    say_step = not (home / "mtty").is_dir()
    image_vermagic = module_field(modules[0], "vermagic")
    mtty = build_mtty(
        mtty_c,
        headers,
        version,
        image_vermagic,
        home / "mtty",
        home / "mtty-build.log",
    )
    _said_time(f"built mtty.ko for {version}", step, say_step)
    check_depends(mtty, modules)

    busybox = bb / BUSYBOX
    kit = KernelKit(
        version=version,
        package_version=package_version,
        vmlinuz=image / vmlinuz,
        modules=modules,
        mtty=mtty,
        mtty_source_sha256=source_sha,
        busybox=busybox,
    )
    write_stamp(kit_stamp, _kit_json(kit, busybox_version))
    say(f"the kernel kit {version} is in {home} ({time.monotonic() - started:.1f} s)")
    return kit


def _said_time(what: str, since: float, worth_saying: bool) -> None:
    if worth_saying:
        say(f"{what} in {time.monotonic() - since:.1f} s")


def _kit_json(kit: KernelKit, busybox_version: str) -> dict[str, object]:
    return {
        "version": kit.version,
        "package_version": kit.package_version,
        "vmlinuz": str(kit.vmlinuz),
        "modules": [str(m) for m in kit.modules],
        "mtty": str(kit.mtty),
        "mtty_source_sha256": kit.mtty_source_sha256,
        "busybox": str(kit.busybox),
        "busybox_version": busybox_version,
    }


def _read_kit(
    stamp: Path, package_version: str, busybox_version: str
) -> KernelKit | None:
    """The kit a complete earlier run made of these packages, if every
    file of it is still there."""
    data = read_stamp(stamp)
    if (
        data is None
        or data.get("package_version") != package_version
        or data.get("busybox_version") != busybox_version
    ):
        return None
    try:
        kit = KernelKit(
            version=str(data["version"]),
            package_version=str(data["package_version"]),
            vmlinuz=Path(str(data["vmlinuz"])),
            modules=tuple(Path(str(m)) for m in data["modules"]),  # type: ignore[attr-defined]
            mtty=Path(str(data["mtty"])),
            mtty_source_sha256=str(data["mtty_source_sha256"]),
            busybox=Path(str(data["busybox"])),
        )
    except (KeyError, TypeError):
        return None
    files = [kit.vmlinuz, *kit.modules, kit.mtty, kit.busybox]
    return kit if all(f.is_file() for f in files) else None
