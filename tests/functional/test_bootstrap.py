"""The bootstrap alone makes a fresh Debian 12 able to run qseries.

A machine where a package happens to be installed hides its absence from
the bootstrap (git send-email needs Mail::Address, which is only a
Recommends of git-email, and the bootstrap installs without them).  So
this test makes a fresh Debian 12 with debootstrap (minbase, from the
Debian mirror this machine's apt uses), copies the working tree in, runs
scripts/bootstrap-debian.sh and `pip install .` there, and nothing else,
then runs each external tool qseries calls once, in the chroot.

Cost: 75 seconds on 2 cores (debootstrap 30 to 90, depending on the
mirror; the packages 22; the venv and pip 11; the tools 5), plus the
real QEMU tree if no other test fetched it yet, and a 0.9 GB chroot that
is removed afterwards, failed or not.  It needs root (chroot,
debootstrap, mounting /proc) and is skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ..conftest import GIT_ENV, REPO, git
from ..debian_archive import Archive

CODENAME = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
STEP_TIMEOUT = 600  # seconds; the whole test takes about 300
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHROOT = "fresh-debian"  # the chroot's directory in the test's tmp_path
BASE = "1:10.2.2+ds-1"  # the qemu source package of the local archive
# The fake device's sources, as the lab ships them (vfiotest builds them).
FAKE_SOURCES = "scripts/qseries/labs/vfio_migration/fakevfio"
# From QEMU's tree (the real base the other tests fetch): its perl
# checkers, its QAPI generator and schema, and what checkpatch.pl and
# get_maintainer.pl look for to know they run at the top of a QEMU tree.
QEMU_PARTS = [
    "scripts",
    "qapi",
    "docs",
    "linux-user",
    "system",
    "COPYING",
    "MAINTAINERS",
    "Makefile",
    "README.rst",
    "VERSION",
]
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
IN_CI = os.environ.get("CI") == "true"

# CI runs as root: there, not being root is a failure, not a skip, so
# that a missing Recommends can never pass unseen.
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not IN_CI, reason="debootstrap and chroot need root"
)

# What git send-email loads for a real SMTP server (see its send_message
# and smtp_auth_maybe), loaded the same way.
PERL_SMTP = r"""
use strict; use warnings; use version;
require Net::SMTP;
version->parse($Net::SMTP::VERSION) >= version->parse("2.34")
    or die "Net::SMTP $Net::SMTP::VERSION cannot do SSL itself\n";
require IO::Socket::SSL;
IO::Socket::SSL->import(qw/SSL_VERIFY_PEER SSL_VERIFY_NONE/);
require Authen::SASL;
Authen::SASL->import(qw(Perl));
my $sasl = Authen::SASL->new(mechanism => "PLAIN",
    callback => { user => "u", pass => "p" });
defined $sasl->client_new("smtp", "localhost")->client_start
    or die "no SASL PLAIN\n";
require Mail::Address;
require Email::Valid;
Email::Valid->address('a@example.org') or die "Email::Valid refuses\n";
require Term::ReadLine;
require Net::Domain;
print "loaded\n";
"""

# A program built the way QEMU and the fake are: meson, ninja, gcc
# through ccache, QEMU's libraries found as its meson.build finds them
# (pkg-config; libfdt, which has no .pc in Debian 12, by the compiler).
MESON_BUILD = """project('deps', 'c')
fdt = meson.get_compiler('c').find_library('fdt')
executable('deps', 'deps.c', dependencies: [
  dependency('glib-2.0'), dependency('pixman-1'), fdt])
"""
DEPS_C = r"""#include <glib.h>
#include <pixman.h>
#include <libfdt.h>
int main(void)
{
    char fdt[256];
    pixman_region32_t r;
    pixman_region32_init_rect(&r, 0, 0, 2, 3);
    g_assert(fdt_create_empty_tree(fdt, sizeof(fdt)) == 0);
    g_print("glib %u pixman %s fdt %d area %d\n", glib_major_version,
            pixman_version_string(), fdt_totalsize(fdt),
            pixman_region32_extents(&r)->x2 * pixman_region32_extents(&r)->y2);
    return 0;
}
"""


def debian_sources() -> list[tuple[str, str]]:
    """(URI, suite) of this machine's apt sources for Debian 12, its main
    suite first: the mirror that is reachable from here."""
    found: list[tuple[str, str]] = []
    files = [Path("/etc/apt/sources.list")]
    for where in sorted(Path("/etc/apt/sources.list.d").glob("*")):
        files.append(where)
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (m[1].lower(), m[2].split())
                    for m in re.finditer(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M)
                )
                if "deb" in fields.get("types", []):
                    found += [
                        (uri, suite)
                        for uri in fields.get("uris", [])
                        for suite in fields.get("suites", [])
                    ]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    found.append((words[1], words[2]))
    ours = [(u.rstrip("/"), s) for u, s in found if s.split("-")[0] == CODENAME]
    return sorted(dict.fromkeys(ours), key=lambda us: us[1] != CODENAME)


class Chroot:
    """A fresh Debian under root, and commands run in it."""

    def __init__(self, root: Path):
        self.root = root
        self.seconds: dict[str, float] = {}  # each step's, for the docstring

    def run(
        self,
        what: str,
        argv: Sequence[str],
        cwd: str = "/",
        env: dict[str, str] | None = None,
    ) -> str:
        """argv in the chroot with a clean environment; its stdout.  A
        failure names the step and ends with the command's last lines."""
        pairs = [
            f"{k}={v}"
            for k, v in {"PATH": PATH, "HOME": "/root", **(env or {})}.items()
        ]
        start = time.monotonic()
        proc = subprocess.run(
            ["chroot", str(self.root), "/usr/bin/env", "-i", "-C", cwd, *pairs, *argv],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        self.seconds[what] = round(time.monotonic() - start, 1)
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        assert proc.returncode == 0, (
            f"{what} failed on a fresh Debian after the bootstrap "
            f"(exit {proc.returncode}): {' '.join(argv)}\n{tail}"
        )
        return proc.stdout


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or under root, deepest first."""
    mine = str(root.resolve())
    points = [
        line.split()[4].encode().decode("unicode_escape")
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    ]
    inside = [p for p in points if p == mine or p.startswith(mine + "/")]
    return sorted(inside, key=len, reverse=True)


def _remove(root: Path) -> None:
    """Unmount what debootstrap or a step left mounted, then remove root;
    never remove through a mount (it could reach this machine's files)."""
    for point in _mounts_under(root):
        subprocess.run(["umount", "--lazy", point], check=False)
    left = _mounts_under(root)
    assert not left, f"still mounted, {root} kept: {left}"
    shutil.rmtree(root, ignore_errors=True)


def _sweep(base: Path) -> None:
    """Unmount what a killed earlier run left in its chroots, so that
    pytest can remove its old temporary directories."""
    for point in _mounts_under(base):
        if f"/{CHROOT}/" in point:
            subprocess.run(["umount", "--lazy", point], check=False)


@pytest.fixture
def fresh_debian(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chroot]:
    """A Debian 12 minbase made for this test, removed afterwards."""
    _sweep(tmp_path_factory.getbasetemp().parent)
    if shutil.which("debootstrap") is None:
        why = "debootstrap is not installed (`make test` installs it)"
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)
    sources = debian_sources() or [(DEFAULT_MIRROR, CODENAME)]
    root = tmp_path / CHROOT
    chroot = Chroot(root)
    try:
        start = time.monotonic()
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", CODENAME, str(root), sources[0][0]],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        assert proc.returncode == 0, f"debootstrap failed: {proc.stdout[-2000:]}"
        chroot.seconds["debootstrap"] = round(time.monotonic() - start, 1)
        # A machine has /proc, and qseries reads it (its runs' processes).
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        # dpkg without a sync per file: the same packages, installed in
        # half the time.
        (root / "etc" / "dpkg" / "dpkg.cfg.d" / "unsafe-io").write_text(
            "force-unsafe-io\n"
        )
        # The suites a fresh install lists (updates, security), as here.
        (root / "etc" / "apt" / "sources.list").write_text(
            "".join(f"deb {uri} {suite} main\n" for uri, suite in sources)
        )
        yield chroot
    finally:
        _remove(root)


def _copy_checkout(dest: Path) -> None:
    """The working tree as git sees it: tracked and untracked files, not
    the ignored ones (.venv, the work dir); edits not committed included."""
    listed = git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if not src.is_file() and not src.is_symlink():
            continue  # deleted in the working tree
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name, follow_symlinks=False)


def _toy_series(data: Path) -> None:
    """A one-patch series with Message-Ids (b4 threads by them), and the
    tree it applies to."""
    repo = data / "toy"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "master")
    (repo / "greeting").write_text("hello\n")
    git(repo, "add", "greeting")
    git(repo, "commit", "-q", "-m", "base")
    (repo / "greeting").write_text("hello\nworld\n")
    git(repo, "commit", "-q", "-a", "-s", "-m", "greeting: say whom")
    mbox = git(repo, "format-patch", "--thread", "--stdout", "-1")
    (data / "series.mbox").write_text(mbox)
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    shutil.rmtree(repo / ".git")


@pytest.mark.qemu
def test_the_bootstrap_alone_runs_every_tool_qseries_calls(
    fresh_debian: Chroot, real_base: dict[str, object], tmp_path: Path
) -> None:
    chroot = fresh_debian
    root = chroot.root
    # In: the working tree, a local Debian archive of a tiny qemu source
    # package, parts of QEMU's real tree, a toy series.
    _copy_checkout(root / "src")
    archive = Archive(root / "archive", tmp_path / "packages")
    archive.add(BASE)
    archive.publish({"sid": [BASE], "trixie": [BASE]})
    tree = Path(str(real_base["root"]))
    for part in QEMU_PARTS:
        if (tree / part).is_dir():
            shutil.copytree(tree / part, root / "qemu" / part, symlinks=True)
        else:
            shutil.copy2(tree / part, root / "qemu" / part)
    _toy_series(root / "data")
    (root / "data" / "deps").mkdir()
    (root / "data" / "deps" / "meson.build").write_text(MESON_BUILD)
    (root / "data" / "deps" / "deps.c").write_text(DEPS_C)

    # The bootstrap, and nothing else.
    chroot.run("the bootstrap", ["/src/scripts/bootstrap-debian.sh", "bootstrap"])
    chroot.run("python3 -m venv", ["python3", "-m", "venv", "/src/.venv"])
    # PyPI as this machine reaches it: through its certificate
    # authorities, which may include a proxy's.
    pip_env: dict[str, str] = {}
    if HOST_CA.is_file():
        shutil.copy(HOST_CA, root / "data" / "this-machine-ca.crt")
        pip_env["PIP_CERT"] = "/data/this-machine-ca.crt"
    chroot.run(
        "pip install .",
        ["/src/.venv/bin/python", "-m", "pip", "install", "--quiet", "."],
        cwd="/src",
        env=pip_env,
    )
    _every_tool(chroot)
    print("seconds:", chroot.seconds)


def _every_tool(chroot: Chroot) -> None:
    """Each external tool qseries calls, once, on the inputs."""
    root = chroot.root
    bin_ = "/src/.venv/bin"

    # qseries source: apt-get and apt-cache with the private
    # configuration, dpkg-source -x (xz), git.
    out = chroot.run(
        "qseries source",
        [f"{bin_}/qseries", "source", "--json"],
        cwd="/src",
        env={"QSERIES_DEBIAN_MIRROR": "file:///archive", "QSERIES_WORKDIR": "/work"},
    )
    assert json.loads(out)["debian_version"] == BASE

    # qseries send: git send-email on a real patch, then what it loads
    # for a real SMTP server (TLS, AUTH).
    (patch,) = (REPO / "patches" / "v2").glob("v2-0001-*.patch")
    mail = f"/src/patches/v2/{patch.name}"
    out = chroot.run(
        "git send-email",
        [
            "git",
            "send-email",
            "--dry-run",
            "--confirm=never",
            "--to=maintainer@example.org",
            "--from=Test <test@example.org>",
            "--smtp-server=smtp.example.org",
            "--smtp-encryption=tls",
            mail,
        ],
        cwd="/data",
        env=GIT_ENV,
    )
    assert "Result: OK" in out
    assert chroot.run("perl's SMTP modules", ["perl", "-e", PERL_SMTP]) == "loaded\n"

    # qseries check: QEMU's checkers and QAPI generator.
    out = chroot.run(
        "checkpatch.pl",
        ["perl", "scripts/checkpatch.pl", "--no-color", mail],
        cwd="/qemu",
    )
    assert re.search(r"total: 0 errors, 0 warnings", out), out
    out = chroot.run(
        "get_maintainer.pl",
        [
            "perl",
            "scripts/get_maintainer.pl",
            "--no-git-fallback",
            "--no-rolestats",
            mail,
        ],
        cwd="/qemu",
    )
    assert "@" in out
    chroot.run(
        "qapi-gen.py",
        [
            f"{bin_}/python",
            "scripts/qapi-gen.py",
            "-o",
            "/tmp/qapi",
            "-b",
            "qapi/qapi-schema.json",
        ],
        cwd="/qemu",
    )
    assert (root / "tmp" / "qapi" / "qapi-events-vfio.h").exists()

    # Building: meson, ninja, gcc through ccache, QEMU's libraries; the
    # fake device as testing.py builds it.
    build_env = {"CC": "ccache gcc", "CCACHE_DIR": "/work/ccache"}
    chroot.run(
        "meson setup", [f"{bin_}/meson", "setup", "build"], "/data/deps", build_env
    )
    chroot.run("ninja", ["ninja", "-C", "build"], "/data/deps", build_env)
    out = chroot.run("the program built", ["./build/deps"], "/data/deps")
    assert re.fullmatch(r"glib 2 pixman \S+ fdt \d+ area 6\n", out), out
    stats = chroot.run("ccache", ["ccache", "--print-stats"], env=build_env)
    assert re.search(r"^cache_miss\s+[1-9]", stats, re.M), stats
    chroot.run(
        "meson setup (the fake)",
        [f"{bin_}/meson", "setup", "/work/fakevfio", f"/src/{FAKE_SOURCES}"],
    )
    chroot.run("ninja (the fake)", ["ninja", "-C", "/work/fakevfio"])
    assert list((root / "work" / "fakevfio").rglob("libfakevfio.so"))

    # b4 (mbox check, trailers) offline; patch (bench's steps by hand).
    (root / "data" / "b4").mkdir()
    chroot.run(
        "b4 am",
        [f"{bin_}/b4", "--offline-mode", "am", "-m", "series.mbox", "-o", "b4"],
        cwd="/data",
    )
    assert list((root / "data" / "b4").glob("*.mbx"))
    chroot.run("patch", ["patch", "-p1", "-i", "../series.mbox"], cwd="/data/toy")
    assert (root / "data" / "toy" / "greeting").read_text() == "hello\nworld\n"

    # bwrap, which makes the sandbox the series' code runs in.
    assert chroot.run("bwrap", ["bwrap", "--version"]).startswith("bubblewrap ")

    # Debian's QEMU, the machine the kernel device's guest boots in, with
    # the option ROM its -kernel boot loads (qemu-system-data).
    outer = chroot.run("qemu", ["/usr/bin/qemu-system-x86_64", "--version"])
    assert outer.startswith("QEMU emulator version "), outer
    assert (root / "usr" / "share" / "qemu" / "linuxboot_dma.bin").is_file()


def test_a_killed_run_s_mounts_are_swept_by_the_next(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A run killed before its cleanup leaves /proc mounted in its chroot,
    and pytest could never remove that directory: the next run unmounts."""
    left = tmp_path / "earlier" / CHROOT / "proc"
    left.mkdir(parents=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(left)], check=True)
    try:
        assert _mounts_under(tmp_path) == [str(left)]
        _sweep(tmp_path_factory.getbasetemp().parent)
        assert _mounts_under(tmp_path) == []
    finally:
        _remove(tmp_path / "earlier")
    assert not (tmp_path / "earlier").exists()
