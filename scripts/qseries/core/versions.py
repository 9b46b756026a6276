"""QEMU and Debian version numbers.

QEMU releases are MAJOR.MINOR.MICRO with three feature releases a year
(x.0, x.1, x.2).  A tree whose VERSION has MICRO >= 50 is development
towards the next feature release; MICRO >= 90 marks its release
candidates, which are already frozen for features.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from ..ground.errors import QSeriesError

#: Feature releases per major version: x.0, x.1 and x.2.
MINORS_PER_MAJOR = 3


class VersionError(QSeriesError):
    """A version or a version range cannot be parsed."""


@total_ordering
@dataclass(frozen=True)
class QemuVersion:
    major: int
    minor: int
    micro: int = 0

    @classmethod
    def parse(cls, text: str) -> QemuVersion:
        m = re.fullmatch(r"\s*(\d+)(?:\.(\d+)(?:\.(\d+))?)?\s*", text)
        if not m:
            raise VersionError(
                f"'{text}' is not a QEMU version", "write it as MAJOR[.MINOR[.MICRO]]"
            )
        return cls(int(m[1]), int(m[2] or 0), int(m[3] or 0))

    def _key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.micro)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, QemuVersion):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.micro}"

    def feature_release(self) -> str:
        """MAJOR.MINOR, the form QAPI's 'Since:' uses."""
        return f"{self.major}.{self.minor}"

    def _following(self) -> QemuVersion:
        if self.minor + 1 < MINORS_PER_MAJOR:
            return QemuVersion(self.major, self.minor + 1)
        return QemuVersion(self.major + 1, 0)

    def next_feature_release(self) -> QemuVersion:
        """The first feature release that can carry a change made on this base.

        A release or stable tree (10.2.x) is followed by the next feature
        release (11.0); so is a development tree (10.2.50).  A release
        candidate tree (10.2.90 = 11.0-rc0) is frozen: new features go to
        the release after it.
        """
        nxt = self._following()
        if self.micro >= 90:
            nxt = nxt._following()
        return nxt


@dataclass(frozen=True)
class VersionRange:
    """A half-open range such as '>=10.2, <11'."""

    text: str
    lower: QemuVersion | None
    upper: QemuVersion | None

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        lower = upper = None
        for part in (p.strip() for p in text.split(",")):
            m = re.fullmatch(r"(>=|<)\s*(\S+)", part)
            if not m:
                raise VersionError(
                    f"'{text}' is not a version range",
                    "write it like '>=10.2, <11'",
                )
            version = QemuVersion.parse(m[2])
            if (lower if m[1] == ">=" else upper) is not None:
                raise VersionError(
                    f"'{text}' gives '{m[1]}' twice", "write it like '>=10.2, <11'"
                )
            if m[1] == ">=":
                lower = version
            else:
                upper = version
        return cls(text, lower, upper)

    def __contains__(self, version: object) -> bool:
        if not isinstance(version, QemuVersion):
            return False
        if self.lower is not None and version < self.lower:
            return False
        return not (self.upper is not None and version >= self.upper)

    def __str__(self) -> str:
        return self.text


def upstream_of_debian(version: str) -> QemuVersion:
    """The QEMU version inside a Debian version: 1:10.2.2+ds-1 -> 10.2.2."""
    text = version.split(":", 1)[-1]
    text = re.split(r"[+~-]", text, maxsplit=1)[0]
    return QemuVersion.parse(text)


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    """Debian policy 5.6.12 comparison of an upstream or revision part."""
    while a or b:
        ma = re.match(r"[^0-9]*", a)
        mb = re.match(r"[^0-9]*", b)
        sa = ma.group(0) if ma else ""
        sb = mb.group(0) if mb else ""
        a, b = a[len(sa) :], b[len(sb) :]
        for i in range(max(len(sa), len(sb))):
            ca = _order(sa[i]) if i < len(sa) else 0
            cb = _order(sb[i]) if i < len(sb) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        ma = re.match(r"[0-9]*", a)
        mb = re.match(r"[0-9]*", b)
        da = ma.group(0) if ma else ""
        db = mb.group(0) if mb else ""
        a, b = a[len(da) :], b[len(db) :]
        na, nb = int(da or 0), int(db or 0)
        if na != nb:
            return -1 if na < nb else 1
    return 0


def compare_debian(a: str, b: str) -> int:
    """Compare two Debian versions: negative, zero or positive."""

    def split(v: str) -> tuple[int, str, str]:
        epoch = 0
        if ":" in v:
            e, v = v.split(":", 1)
            epoch = int(e)
        upstream, _, revision = v.rpartition("-") if "-" in v else (v, "", "")
        return epoch, upstream, revision

    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)
