"""A local Debian archive of tiny `qemu` source packages, for the tests.

Each package is the fixture tree tests/fixtures/qemu-mini with its VERSION
set, a debian/ directory and a stand-in scripts/get_maintainer.pl, built
with dpkg-source -b (format 3.0 (quilt): one upstream tarball serves every
Debian revision of a QEMU version).  The archive lists them per suite
(sid, trixie) in Sources indexes made with dpkg-scansources, with
unsigned Release files: qseries reads it with
QSERIES_DEBIAN_MIRROR=file://DIR, which it marks [trusted=yes].
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GET_MAINTAINER = FIXTURES / "debian-archive" / "get_maintainer.pl"

# What a package's tree may be changed with: (tree) -> None.
Edit = Callable[[Path], None]


def _run(cwd: Path, *argv: str) -> str:
    return subprocess.run(
        list(argv), cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def upstream(version: str) -> str:
    """1:10.2.2+ds-1 -> 10.2.2+ds (the orig tarball's version)."""
    return version.split(":", 1)[-1].rsplit("-", 1)[0]


class Archive:
    """A deb-src archive under root: pool/ holds the packages, dists/ lists
    them per suite.  Publish again after a change: apt sees only dists/."""

    def __init__(self, root: Path, build: Path):
        self.root = root
        self.build = build
        self.pool = root / "pool" / "main" / "q" / "qemu"
        self.pool.mkdir(parents=True, exist_ok=True)
        self.build.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    def add(self, version: str, edit: Edit | None = None) -> None:
        """Build the qemu source package `version` into the pool."""
        up = upstream(version)
        qemu = re.split(r"[+~]", up, maxsplit=1)[0]
        work = self.build / re.sub(r"[^\w.+-]", "_", version)
        shutil.rmtree(work, ignore_errors=True)
        src = work / f"qemu-{qemu}"
        shutil.copytree(FIXTURES / "qemu-mini", src)
        (src / "VERSION").write_text(f"{qemu}\n")
        (src / "scripts").mkdir()
        shutil.copy(GET_MAINTAINER, src / "scripts" / "get_maintainer.pl")
        if edit is not None:
            edit(src)
        orig = work / f"qemu_{up}.orig.tar.xz"
        if (self.pool / orig.name).exists():
            # Another revision of the same upstream version: its tarball.
            shutil.copy(self.pool / orig.name, orig)
        else:
            _run(work, "tar", "-cJf", orig.name, "--sort=name", src.name)
        debian = src / "debian"
        (debian / "source").mkdir(parents=True)
        (debian / "source" / "format").write_text("3.0 (quilt)\n")
        (debian / "control").write_text(
            "Source: qemu\nMaintainer: Test <test@example.org>\n\n"
            "Package: qemu-test\nArchitecture: all\nDescription: test\n test\n"
        )
        (debian / "changelog").write_text(
            f"qemu ({version}) unstable; urgency=medium\n\n  * Test.\n\n"
            " -- Test <test@example.org>  Thu, 01 Jan 2026 00:00:00 +0000\n"
        )
        _run(work, "dpkg-source", "-b", src.name)
        for built in work.glob("qemu_*"):
            if not (self.pool / built.name).exists():
                shutil.copy(built, self.pool / built.name)

    def publish(self, suites: dict[str, list[str]]) -> None:
        """List these versions in each suite (and nothing else)."""
        scanned = _run(self.root, "dpkg-scansources", "pool", "/dev/null")
        stanzas = {
            re.search(r"^Version: (\S+)$", s, re.M)[1]: s.strip() + "\n"  # type: ignore[index]
            for s in re.split(r"\n\s*\n", scanned)
            if s.strip()
        }
        shutil.rmtree(self.root / "dists", ignore_errors=True)
        for suite, versions in suites.items():
            text = "\n".join(stanzas[v] for v in versions)
            dists = self.root / "dists" / suite
            (dists / "main" / "source").mkdir(parents=True)
            (dists / "main" / "source" / "Sources").write_text(text)
            data = text.encode()
            (dists / "Release").write_text(
                f"Suite: {suite}\nCodename: {suite}\nComponents: main\n"
                "Date: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n"
                f" {hashlib.sha256(data).hexdigest()} {len(data)} "
                "main/source/Sources\n"
            )
