"""The pieces of a moving base: what `fresh` compares on a stand-in for
the generation base, the local archive of QSERIES_DEBIAN_MIRROR, and
the versions above a range."""

from __future__ import annotations

from pathlib import Path

import pytest

from qseries.core.versions import VersionRange
from qseries.ground.errors import UsageError
from qseries.ground.workdir import WorkDir
from qseries.qemu.check import without_base
from qseries.qemu.source import DEBIAN_SUITES, Apt, above_range, local_archive

MAIL = """\
From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: A <a@example.org>
Date: Sat, 28 Nov 2026 09:00:00 +0000
Subject: [PATCH v2 1/1] vfio: Do it
To: A Maintainer <{to}>,
 qemu-devel@nongnu.org

Why.

Signed-off-by: A <a@example.org>
---
 hw/vfio/migration.c | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/hw/vfio/migration.c b/hw/vfio/migration.c
index {index}
--- a/hw/vfio/migration.c
+++ b/hw/vfio/migration.c
@@ -{line},3 +{line},3 @@ static void {function}(void)
 {context}
-    old();
+    {new}();
 }}
"""


def mail(**changes: str) -> str:
    values = {
        "to": "maintainer@example.org",
        "index": "4c06e3db936a..7648e2e4bb54 100644",
        "line": "67",
        "function": "f",
        "context": "{",
        "new": "new",
        **changes,
    }
    return MAIL.format(**values)


def test_without_base_ignores_what_the_base_decides() -> None:
    base = without_base(mail())
    other_base = mail(
        to="maintainer@old.example.org",
        index="fbff46cfc35e..0e852f14d01a 100644",
        line="65",
        function="g",
        context="{ /* older */",
    )
    assert without_base(other_base) == base
    assert not any(line.startswith(("To:", "index ", "@@", " ")) for line in base)


def test_without_base_keeps_what_the_series_decides() -> None:
    base = without_base(mail())
    assert without_base(mail(new="newer")) != base
    assert without_base(mail().replace("Why.", "Why not.")) != base
    assert without_base(mail().replace("vfio: Do it", "vfio: Do")) != base


def test_without_base_drops_the_based_on_line_and_diffstat() -> None:
    cover = (
        "Subject: [PATCH v2 0/1] x\n\nBlurb.\n\nBased on QEMU 10.2.2, Debian "
        "1:10.2.2+ds-1\n\nA (1):\n  vfio: Do it\n\n hw/vfio/migration.c | 2 +-\n"
        " 1 file changed, 1 insertion(+), 1 deletion(-)\n"
    )
    other = cover.replace("10.2.2+ds-1", "10.0.13+ds-0+deb13u1").replace(
        "10.2.2,", "10.0.13,"
    )
    assert without_base(other) == without_base(cover)
    assert "A (1):" in without_base(cover)


def test_local_archive() -> None:
    assert local_archive("file:///srv/debian") == Path("/srv/debian")
    assert local_archive("copy:///srv/my%20debian") == Path("/srv/my debian")
    assert local_archive("http://deb.debian.org/debian") is None
    with pytest.raises(UsageError) as err:
        local_archive("file://srv/debian")
    assert "needs an absolute path" in str(err.value)


def _archive(root: Path, signed: bool) -> Path:
    for suite in DEBIAN_SUITES:
        (root / "dists" / suite).mkdir(parents=True)
        if signed:
            (root / "dists" / suite / "InRelease").write_text("signed\n")
    return root


def test_unsigned_local_archive_is_trusted_and_copied(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "archive", signed=False)
    apt = Apt(WorkDir(tmp_path / "work"), mirror=f"file://{archive}")
    assert apt.sources.read_text() == "".join(
        f"deb-src [trusted=yes] copy://{archive} {suite} main\n"
        for suite in DEBIAN_SUITES
    )


def test_signed_local_archive_is_not_trusted_blindly(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "archive", signed=True)
    apt = Apt(WorkDir(tmp_path / "work"), mirror=f"file://{archive}")
    assert "trusted=yes" not in apt.sources.read_text()
    assert f"copy://{archive} sid main" in apt.sources.read_text()


def test_local_archive_without_dists_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(Exception) as err:
        Apt(WorkDir(tmp_path / "work"), mirror=f"file://{tmp_path}/nothing")
    assert str(err.value) == (
        f"file://{tmp_path}/nothing is not a Debian archive (no "
        f"{tmp_path}/nothing/dists); set QSERIES_DEBIAN_MIRROR to a directory "
        "with dists/ and pool/"
    )


def test_above_range() -> None:
    listed = ["1:11.1.3+ds-1", "1:11.0.0+ds-1", "1:10.2.3+ds-1", "1:10.0.13+ds-0"]
    assert above_range(listed, VersionRange.parse(">=10.0, <11")) == listed[:2]
    assert above_range(listed, VersionRange.parse(">=10.0")) == []
