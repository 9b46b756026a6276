"""A patch mail, as read from a file: the one mail model.

Every command that reads mails (check of patches/vN, check --mbox,
trailers, send) reads them into Mail.  A mail comes from strangers: a
header the email package cannot parse is kept as a bad header of that
mail rather than raised, and a base64 or quoted-printable body is decoded
into a copy, since QEMU's perl scripts read the file as it is.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import quopri
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from ..ground.errors import ToolError, UsageError
from ..ground.gitutil import git_argv, git_env
from ..ground.proc import CommandTimeout, run_bounded
from .series import Version

# git reading one mail's diff.
DIFF_TIMEOUT = 120.0

# Read from every mail once, so that a malformed one (the email package
# raises while parsing an address such as "a@[192.168.0.1") is reported
# as a property of that mail instead of escaping as a traceback.
HEADERS = ("From", "To", "Cc", "Subject")


CTE = "Content-Transfer-Encoding"


@dataclass(frozen=True)
class Mail:
    path: Path  # the mail as given: git am reads it
    message: EmailMessage
    subject: str  # without the [PATCH ...] prefix
    numbered: str  # "1/2", for messages
    version: int = 1  # the N of "[PATCH vN ...]"
    index: tuple[int, int] | None = None  # (n, M) of "[PATCH n/M]"
    headers: dict[str, str] = field(default_factory=dict)
    bad_headers: tuple[str, ...] = ()  # "To: 'a@[1.2.3.4'" for each one
    decoded: Path | None = None  # a copy with a base64/QP body decoded

    @property
    def is_cover(self) -> bool:
        return "\ndiff --git " not in "\n" + self.body

    @property
    def body(self) -> str:
        if self.decoded:
            body = self.decoded.read_bytes().partition(b"\n\n")[2]
            return body.decode("utf-8", errors="replace")
        payload = self.message.get_payload(decode=True)
        if isinstance(payload, bytes):
            return payload.decode("utf-8", errors="replace")
        return str(self.message.get_payload())

    @property
    def text(self) -> Path:
        """The mail as QEMU's perl scripts must read it: body decoded."""
        return self.decoded or self.path

    @property
    def name(self) -> str:
        """How reports name the mail: "patch 2/3 'qom: Do it'"."""
        what = f"patch {self.numbered}" if self.index else self.numbered
        return f"{what} '{self.subject}'"

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


def _read_headers(message: EmailMessage) -> tuple[dict[str, str], tuple[str, ...]]:
    headers: dict[str, str] = {}
    bad: list[str] = []
    for name in HEADERS:
        try:
            values = message.get_all(name) or []
            headers[name] = ", ".join(str(v) for v in values)
        except Exception:  # the email package's parser fails in many ways
            raw = [v for k, v in message.raw_items() if k.lower() == name.lower()]
            shown = " ".join(" ".join(raw).split())
            bad.append(f"{name}: {shown!r}")
            headers[name] = ""
    return headers, tuple(bad)


def _decoded_copy(path: Path, message: EmailMessage, scratch: Path) -> Path | None:
    """The mail with its base64 or quoted-printable body decoded, or None.

    git am decodes such mails itself, but checkpatch.pl and
    get_maintainer.pl read the file as it is and would see no diff.
    """
    raw = [v for k, v in message.raw_items() if k.lower() == CTE.lower()]
    cte = "".join("".join(raw).split()).lower()
    if cte not in ("base64", "quoted-printable") or message.is_multipart():
        return None
    data = path.read_bytes().replace(b"\r\n", b"\n")
    head_block, _, body = data.partition(b"\n\n")
    try:
        payload = (
            base64.b64decode(body) if cte == "base64" else quopri.decodestring(body)
        )
    except binascii.Error:
        return None  # git am will say what is wrong with it
    head = head_block.split(b"\n")
    kept: list[bytes] = []
    skipping = False
    for line in head:
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.lower().startswith(b"content-transfer-encoding:")
        if not skipping:
            kept.append(line)
    kept.append(CTE.encode() + b": 8bit")
    out = scratch / f"{path.name}.decoded"
    out.write_bytes(b"\n".join(kept) + b"\n\n" + payload)
    return out


def read_mail(path: Path, scratch: Path | None = None, label: str = "") -> Mail:
    """One mail; with scratch, an encoded body is decoded into a copy there."""
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    headers, bad = _read_headers(message)
    raw = " ".join(headers["Subject"].split())
    m = re.match(r"\[([^\]]*)\]\s*(.*)", raw)
    subject = m[2] if m else raw
    prefix = m[1] if m else ""
    v = re.search(r"(?:^|\s)v(\d+)(?:\s|$)", prefix)
    n = re.search(r"(?:^|\s)(\d+)/(\d+)(?:\s|$)", prefix)
    return Mail(
        path,
        message,
        subject,
        f"{n[1]}/{n[2]}" if n else label or path.name,
        version=int(v[1]) if v else 1,
        index=(int(n[1]), int(n[2])) if n else None,
        headers=headers,
        bad_headers=bad,
        decoded=_decoded_copy(path, message, scratch) if scratch else None,
    )


def load_mails(patches: Path, scratch: Path) -> list[Mail]:
    """The mails of patches/vN; scratch holds the copies made.  (An mbox
    is read with b4: mbox.read_series.)"""
    files = sorted(patches.glob("*.patch"))
    if not files:
        raise UsageError(f"{patches} holds no patches", "run 'qseries generate' first")
    return [read_mail(f.absolute(), scratch) for f in files]


def diff_errors(path: Path) -> list[str] | None:
    """What git apply --stat says is wrong with the diff of a mail
    (its error lines, without 'error: '), or None if it reads it."""
    argv = git_argv("apply", "--stat", str(path))
    try:
        proc = run_bounded(argv, git_env(), DIFF_TIMEOUT, Path("/"))
    except FileNotFoundError:
        raise ToolError("git is not installed", "run 'make bootstrap'") from None
    if proc.timed_out:
        raise CommandTimeout(argv, DIFF_TIMEOUT)
    if proc.returncode == 0:
        return None
    return [
        e.split(": ", 1)[1]
        for e in proc.stderr.splitlines()
        if e.startswith(("error: ", "fatal: "))
    ]


@dataclass(frozen=True)
class MailedSeries:
    """The mails of one version of an mbox, as b4 picked and ordered them."""

    version: Version
    cover: Mail | None  # b4's .cover
    patches: tuple[Mail, ...]  # b4's .mbx, 1/M first, trailers added
    trailers: tuple[tuple[str, ...], ...]  # per patch: what b4 added
    said: tuple[str, ...]  # which version b4 took, among which, and why
    left_out: tuple[str, ...] = ()  # mails the probe left out (said already)

    @property
    def mails(self) -> list[Mail]:
        """The cover letter, if any, then the patches."""
        return [*([self.cover] if self.cover else []), *self.patches]

    @property
    def collected(self) -> list[str]:
        """The trailers b4 collected from replies, "2/3: Reviewed-by: ..."."""
        return [
            f"{mail.numbered}: {tag}"
            for mail, tags in zip(self.patches, self.trailers, strict=True)
            for tag in tags
        ]
