from __future__ import annotations

from pathlib import Path

import pytest

from qseries.core.versions import VersionRange
from qseries.ground.errors import SourceError, UsageError
from qseries.ground.workdir import WorkDir
from qseries.qemu.source import SourceSpec, select_versions, versions_newest_first

LISTED = [
    "1:10.0.13+ds-0+deb13u1",
    "1:11.1.3+ds-1",
    "1:10.2.2+ds-1",
    "1:11.1.2+ds-3",
]


def test_newest_first() -> None:
    assert versions_newest_first(LISTED) == [
        "1:11.1.3+ds-1",
        "1:11.1.2+ds-3",
        "1:10.2.2+ds-1",
        "1:10.0.13+ds-0+deb13u1",
    ]


def test_range_picks_candidates_best_first() -> None:
    listed = versions_newest_first(LISTED)
    assert select_versions(listed, VersionRange.parse(">=10.2, <11"), None) == [
        "1:10.2.2+ds-1"
    ]
    assert select_versions(listed, VersionRange.parse(">=10.0"), None) == listed


@pytest.mark.parametrize(
    "exact", ["10.0", "10.0.13", "10.0.13+ds-0+deb13u1", "1:10.0.13+ds-0+deb13u1"]
)
def test_exact_version_forms(exact: str) -> None:
    chosen = select_versions(LISTED, VersionRange.parse(">=10.2, <11"), exact)
    assert chosen == ["1:10.0.13+ds-0+deb13u1"]


def test_nothing_matches() -> None:
    with pytest.raises(SourceError, match="no qemu source package matches"):
        select_versions(LISTED, VersionRange.parse(">=10.2, <11"), "9.2")
    with pytest.raises(SourceError, match="in the base range '>=12'"):
        select_versions(LISTED, VersionRange.parse(">=12"), None)


def test_spec_exclusive_options() -> None:
    with pytest.raises(UsageError):
        SourceSpec(base_version="10.0", tree=Path("."))
    with pytest.raises(UsageError, match="--git and --ref go together"):
        SourceSpec(git_url="https://example.org/qemu.git")


def test_workdir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QSERIES_WORKDIR", str(tmp_path / "w"))
    assert WorkDir.default(None).path == tmp_path / "w"
    assert WorkDir.default(str(tmp_path / "x")).path == tmp_path / "x"
    monkeypatch.delenv("QSERIES_WORKDIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert WorkDir.default(None).path == tmp_path / "cache" / "qseries"


def test_system_mirror_from_deb822_and_legacy(tmp_path: Path) -> None:
    from qseries.qemu.source import system_mirror

    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert system_mirror(etc) == "http://mirror.example/debian"
    (etc / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://legacy.example/debian bookworm main\n"
    )
    assert system_mirror(etc) == "http://legacy.example/debian"
    empty = tmp_path / "none"
    empty.mkdir()
    with pytest.raises(SourceError, match="QSERIES_DEBIAN_MIRROR"):
        system_mirror(empty)
