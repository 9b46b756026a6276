from __future__ import annotations

import itertools

import pytest

from qseries.core.versions import (
    QemuVersion,
    VersionError,
    VersionRange,
    compare_debian,
    upstream_of_debian,
)


@pytest.mark.parametrize(
    ("base", "since"),
    [
        ("10.2.2", "11.0"),  # a release: the next feature release
        ("10.0.13", "10.1"),  # a stable backport base
        ("10.1.0", "10.2"),
        ("10.2.50", "11.0"),  # development towards 11.0
        ("11.0.50", "11.1"),
        ("10.1.90", "11.0"),  # 10.2.0-rc0 is frozen: the release after it
        ("10.2.91", "11.1"),  # 11.0.0-rc1
    ],
)
def test_next_feature_release(base: str, since: str) -> None:
    assert QemuVersion.parse(base).next_feature_release().feature_release() == since


def test_parse_and_order() -> None:
    assert QemuVersion.parse("11") == QemuVersion(11, 0, 0)
    assert QemuVersion.parse("10.2") < QemuVersion.parse("10.2.1")
    with pytest.raises(VersionError):
        QemuVersion.parse("ten")


def test_range() -> None:
    r = VersionRange.parse(">=10.2, <11")
    assert QemuVersion.parse("10.2.2") in r
    assert QemuVersion.parse("10.2.50") in r
    assert QemuVersion.parse("10.1.9") not in r
    assert QemuVersion.parse("11.0.0") not in r
    with pytest.raises(VersionError):
        VersionRange.parse("~10.2")
    with pytest.raises(VersionError, match="twice"):
        VersionRange.parse(">=10.2, >=9")


def test_debian_versions() -> None:
    assert upstream_of_debian("1:10.2.2+ds-1") == QemuVersion(10, 2, 2)
    assert upstream_of_debian("1:10.0.13+ds-0+deb13u1") == QemuVersion(10, 0, 13)
    ordered = [
        "1:10.0.13+ds-0+deb13u1",
        "1:10.2.2~rc1+ds-1",
        "1:10.2.2+ds-1",
        "1:10.2.2+ds-1.1",
        "1:11.1.2+ds-3",
        "1:11.1.3+ds-1",
    ]
    for a, b in itertools.pairwise(ordered):
        assert compare_debian(a, b) < 0, (a, b)
        assert compare_debian(b, a) > 0, (a, b)
    assert compare_debian("1:10.2.2+ds-1", "1:10.2.2+ds-1") == 0
    assert compare_debian("2:1.0-1", "1:99.0-1") > 0
