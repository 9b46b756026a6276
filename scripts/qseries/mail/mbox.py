"""mbox: a series as it was mailed, read with b4.

`check --mbox FILE` takes a thread as it comes from a list archive or a
mail client: a cover letter and replies, the patches in any order,
"[PATCH v2 1/3]" subjects, several versions in one file.  b4 (`b4 am`,
offline) does the reading: it picks the newest version, orders its
patches, collects the review trailers the replies carry and writes the
result as an mbox that `git am` takes, with the cover letter beside it.

Before b4 sees the thread, each mail is read alone under a time limit
(mailprobe): a reply that would make b4 spin is named and left out.

qseries adds what b4 does not do or does not say in a way a check can
use, each as a one-line error (exit 2) naming the patch and, where there
is one, the line of the mbox:

- mails without a Message-Id (`git format-patch --stdout`) get one, as
  b4 refuses a mailbox in which no mail has one;
- a newest version that lacks a patch (b4 takes it anyway, "Thread
  incomplete") gives way to the newest complete one, or is an error;
- two different mails that both claim n/M of the version (b4 takes the
  second as an extra patch);
- a patch that comes only quoted ("> diff --git", copied from a reply);
- a diff that git cannot parse (lines wrapped or whitespace-damaged by
  a mail client), which b4 passes on as it is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ..core.mail import MailedSeries, diff_errors, read_mail
from ..core.series import Series, Version
from ..ground.console import say
from ..ground.errors import UsageError
from ..ground.gitutil import Git
from ..ground.workdir import WorkDir
from . import mailprobe
from .mailprobe import b4_run

if TYPE_CHECKING:
    from ..core.mail import Mail

HINT = "give the series' mails, e.g. from 'git format-patch --stdout'"
# What b4 am says about the version it picked (b4 0.14 to 0.16).
B4_MISSING = re.compile(r"ERROR: missing \[(\d+)/(\d+)\]")
# A tag of a reply not from the person it names, and the reply's sender.
B4_IGNORED = re.compile(r"^ +! Trailer: (.*)\n +Msg From: (.*)$", re.M)
B4_NONE = ("No patches found.", "Unable to find revision", "All patches in series")
QUOTED_DIFF = re.compile(rb"^>[> ]*diff --git ", re.M)
TRAILER = re.compile(r"^[A-Za-z][\w-]*: \S.*$")
# How git apply names a place in what it reads.
GIT_LINE = re.compile(r" ?(?:at line (\d+)|\(line (\d+)\))")


@dataclass(frozen=True)
class Sent:
    """One mail of the mbox as the user gave it, with b4's reading of its
    subject."""

    line: int  # the line of the mbox the mail starts on
    mail: Mail  # git mailsplit's copy, read
    msgid: str  # its Message-Id without <>, or the one qseries gave it
    given_id: bool  # qseries gave it the Message-Id (it had none)
    subject: str  # the whole subject, whitespace folded
    reply: bool  # "Re: ..." and the like
    revision: int
    counter: int  # n of n/M (0: the cover letter)
    expected: int  # M of n/M
    unnumbered: bool  # its subject has no n/M (b4 takes it for 1/1)

    @property
    def numbered(self) -> str:
        return f"{self.counter}/{self.expected}"

    def mbox_line(self, line: int) -> int:
        """The line of the mbox that is line `line` of the mail's file."""
        return self.line + line - 1

    @property
    def named(self) -> str:
        """How errors name it: its subject, "[PATCH v2 2/3] qom: Do it"."""
        return self.subject or f"the mail at line {self.line}"


@dataclass(frozen=True)
class Thread:
    """One version of a mailed thread, as b4 picked and ordered it."""

    revision: int
    cover: Mail | None  # as sent, if the thread has one
    patches: tuple[Mail, ...]  # b4's copies, 1/M first, trailers added
    sent: tuple[Sent | None, ...]  # each patch as it was sent
    trailers: tuple[tuple[str, ...], ...]  # per patch: what b4 added
    said: tuple[str, ...]
    left_out: tuple[str, ...]


def read_series(
    mbox: Path, series: Series, workdir: WorkDir, scratch: Path
) -> MailedSeries:
    """The version of the mbox to check: b4's newest complete one, its
    patches in order with the trailers the replies gave them.  Every
    problem with the mails is a UsageError of one line."""
    thread = read_thread(mbox, workdir, scratch)
    version = _version(f"--mbox {mbox}", series, thread.revision)
    return MailedSeries(
        version,
        thread.cover,
        thread.patches,
        thread.trailers,
        thread.said,
        thread.left_out,
    )


def read_thread(mbox: Path, workdir: WorkDir, scratch: Path) -> Thread:
    """b4's newest complete version of the thread in the mbox."""
    what = f"--mbox {mbox}"
    # A directory of its own: a caller may read the same mbox twice.
    scratch = Path(tempfile.mkdtemp(prefix="mbox-", dir=scratch))
    sent, left_out = _index(mbox, scratch, workdir)
    versions = sorted({s.revision for s in sent if _is_series_mail(s)})
    given = scratch / "b4-input.mbox"
    _write_for_b4(sent, given)
    picked = _b4_am(mbox, given, sent, None, workdir, scratch)
    if picked is None:
        _no_patch(what, sent)
    said: list[str] = []
    if len(versions) > 1:
        others = ", ".join(f"v{v}" for v in versions if v != picked.revision)
        said.append(
            f"b4 took v{picked.revision}, the newest; the mbox has {others} too"
        )
    _refuse_numbering(what, picked, sent)
    if picked.missing:
        _refuse_unread(what, picked, sent)
        _refuse_other_totals(what, picked, sent)
        complete = _newest_complete(
            mbox, given, sent, picked, versions, workdir, scratch
        )
        if complete is None:
            _missing(what, picked, sent, versions)
        said = [
            f"v{picked.revision} lacks patch {picked.missing[0]}; took "
            f"v{complete.revision}, the newest complete version"
        ]
        picked = complete
        _refuse_numbering(what, picked, sent)
    said += [
        f"b4 left out '{tag}': the reply from {sender} gives it for someone else"
        for tag, sender in B4_IGNORED.findall(picked.output)
    ]
    by_id = {s.msgid: s for s in reversed(sent)}
    patches: list[Mail] = []
    originals: list[Sent | None] = []
    trailers: list[tuple[str, ...]] = []
    for mail in picked.mails:
        original = by_id.get(_message_id(mail))
        _refuse_damage(what, mail, original)
        patches.append(_as_sent(mail, original))
        originals.append(original)
        trailers.append(_added_trailers(mail, original))
    cover = picked.cover
    if cover is not None:
        cover = _as_sent(cover, by_id.get(_message_id(cover)))
    return Thread(
        picked.revision,
        cover,
        tuple(patches),
        tuple(originals),
        tuple(trailers),
        tuple(said),
        tuple(left_out),
    )


def for_b4(mbox: Path, workdir: WorkDir, scratch: Path) -> Path:
    """The mails of --mbox FILE as one mbox for b4 (in scratch), but those
    the mail probe leaves out (it says which)."""
    scratch = Path(tempfile.mkdtemp(prefix="mbox-", dir=scratch))
    sent, _ = _index(mbox, scratch, workdir)
    given = scratch / "b4-input.mbox"
    _write_for_b4(sent, given)
    return given


# -- the mbox as given -------------------------------------------------------


def _mbox_files(mbox: Path, scratch: Path) -> tuple[list[Path], int]:
    """git mailsplit of --mbox FILE into scratch, and the line of the
    mbox the first mail starts on; bad input is a UsageError."""
    what = f"--mbox {mbox}"
    if not mbox.exists():
        raise UsageError(f"{what}: no such file")
    if mbox.is_dir():
        raise UsageError(f"{what}: is a directory", "give a mailbox file")
    if not mbox.is_file():
        raise UsageError(
            f"{what}: is not a regular file (a pipe or a device?)",
            "save the mails to a file first",
        )
    if not os.access(mbox, os.R_OK):
        raise UsageError(f"{what}: cannot be read (permission denied)")
    if (size := mbox.stat().st_size) > mailprobe.MBOX_BYTES:
        raise UsageError(
            f"{what}: {size:,} bytes, more than the {mailprobe.MBOX_BYTES:,} "
            "qseries reads",
            "give the version's mails and their replies, not a whole archive",
        )
    data = mbox.read_bytes()
    if not data:
        raise UsageError(f"{what}: no mails in it (the file is empty)", HINT)
    outdir = scratch / "mbox"
    outdir.mkdir()
    # -b: a file that does not start with "From " is one mail.
    Git(scratch).run("mailsplit", "-b", f"-o{outdir}", str(mbox.absolute()))
    files = sorted(outdir.iterdir())
    if not files:
        raise UsageError(f"{what}: no mails in it", HINT)
    # git mailsplit skips the white space the file starts with.
    blank = data[: len(data) - len(data.lstrip())]
    return files, blank.count(b"\n") + 1


def _index(mbox: Path, scratch: Path, workdir: WorkDir) -> tuple[list[Sent], list[str]]:
    """Every mail of the mbox, in the order given, with where it starts,
    but those the mail probe leaves out: a line for each of these."""
    import b4  # b4's reading of subjects; slow to import, so only here

    files, line = _mbox_files(mbox, scratch)
    left_out = {o.index: o.why for o in mailprobe.probe(files, workdir)}
    decoded = scratch / "mbox-decoded"
    decoded.mkdir()
    sent: list[Sent] = []
    skipped: list[str] = []
    for i, path in enumerate(files):
        data = path.read_bytes()
        if i in left_out:
            skipped.append(
                f"--mbox {mbox}:{line}: left out {mailprobe.described(data)}: "
                f"{left_out[i]}"
            )
            say(skipped[-1])
            line += data.count(b"\n")
            continue
        mail = read_mail(path, decoded, f"the mail at line {line}")
        subject = _subject(mail)
        parsed = b4.LoreSubject(subject)
        msgid = _message_id(mail)
        sent.append(
            Sent(
                line=line,
                mail=mail,
                msgid=msgid or _made_id(data),
                given_id=not msgid,
                subject=subject,
                reply=parsed.reply,
                revision=parsed.revision,
                counter=parsed.counter,
                expected=parsed.expected,
                unnumbered=parsed.counters_inferred,
            )
        )
        line += data.count(b"\n")
    if not any(s.mail.header("From") or s.mail.header("Subject") for s in sent):
        raise UsageError(
            f"--mbox {mbox}: no mails in it (no From: or Subject: header)", HINT
        )
    return sent, skipped


def _subject(mail: Mail) -> str:
    """The (first) Subject, as b4 reads it, whitespace folded."""
    try:
        value = str(mail.message.get("Subject") or "")
    except Exception:  # the email package's parser fails in many ways
        value = mail.header("Subject")
    return " ".join(value.split())


def _message_id(mail: Mail) -> str:
    """The mail's Message-Id without <>, or "" when it has none that
    Python's email package (b4's reader) can parse."""
    try:
        value = str(mail.message.get("Message-Id") or "")
    except Exception:  # the email package's parser fails in many ways
        return ""
    msgid = _clean_id(value)
    return msgid if re.fullmatch(r"[^<>\s]+@[^<>\s]+", msgid) else ""


def _clean_id(value: str) -> str:
    m = re.search(r"<([^<>\s]+)>", value)
    return m[1] if m else value.strip().strip("<>")


def _made_id(data: bytes) -> str:
    """A Message-Id for a mail without one; the same mail twice gets the
    same, so that b4 takes it once."""
    return f"{hashlib.sha256(data).hexdigest()[:20]}@qseries.invalid"


def _is_series_mail(sent: Sent) -> bool:
    """A mail of the series itself: a patch or a cover letter, no reply."""
    return not sent.reply and (
        sent.counter == 0 or b"\ndiff --git " in sent.mail.text.read_bytes()
    )


def _write_for_b4(sent: list[Sent], path: Path) -> None:
    """The mails as one mbox for b4: each under a "From " line, with a
    Message-Id that parses (b4 needs one, and fails on a bad one), its
    own "From " lines quoted, as mboxrd does, so that Python's mailbox
    module does not split there."""
    with path.open("wb") as out:
        for s in sent:
            lines = s.mail.path.read_bytes().splitlines(keepends=True)
            if lines and lines[0].startswith(b"From "):
                lines = lines[1:]
            out.write(b"From qseries@z Thu Jan  1 00:00:00 1970\n")
            if s.given_id:
                out.write(f"Message-Id: <{s.msgid}>\n".encode())
                lines = _without_header(lines, b"message-id")
            for line in lines:
                if line.startswith(b"From "):
                    line = b">" + line
                out.write(line if line.endswith(b"\n") else line + b"\n")
            out.write(b"\n")


def _without_header(lines: list[bytes], name: bytes) -> list[bytes]:
    """The lines of a mail without header `name` (lower case) and its
    continuation lines."""
    kept: list[bytes] = []
    skipping = False
    for i, line in enumerate(lines):
        if line in (b"\n", b"\r\n"):
            return kept + lines[i:]
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.lower().startswith(name + b":")
        if not skipping:
            kept.append(line)
    return kept


# -- b4 -----------------------------------------------------------------------


@dataclass(frozen=True)
class Picked:
    """What one `b4 am` made of the mbox."""

    revision: int
    mails: tuple[Mail, ...]  # the .mbx, split, in b4's order
    cover: Mail | None
    missing: tuple[str, ...]  # "2/3", as b4 reports them
    output: str  # what b4 said


def _b4_am(
    mbox: Path,
    given: Path,
    sent: list[Sent],
    revision: int | None,
    workdir: WorkDir,
    scratch: Path,
) -> Picked | None:
    """b4 am of the prepared mbox, of one revision or b4's choice; None
    when b4 finds no patch (of that revision)."""
    name = f"b4-v{revision}" if revision else "b4"
    out = scratch / name
    args = ["am", "--no-partial-reroll", "-m", str(given), "-o", str(out)]
    if revision is not None:
        args += ["-v", str(revision)]
    ran = b4_run(args, workdir, scratch)
    said = (ran.stdout + ran.stderr).strip()
    if ran.returncode != 0:
        _b4_refused(f"--mbox {mbox}", said, ran.returncode, sent)
    found = sorted(out.glob("*.mbx")) if out.is_dir() else []
    if any(line.startswith(B4_NONE) for line in said.splitlines()) or not found:
        return None
    split, decoded = scratch / f"{name}-mails", scratch / f"{name}-decoded"
    split.mkdir()
    decoded.mkdir()
    Git(scratch).run("mailsplit", f"-o{split}", str(found[0]))
    mails = tuple(read_mail(p, decoded) for p in sorted(split.iterdir()))
    covers = sorted(out.glob("*.cover"))
    cover = read_mail(covers[0], decoded) if covers else None
    if not mails:
        return None
    return Picked(
        revision=revision or _revision_of(mails, sent),
        mails=mails,
        cover=cover,
        missing=tuple(f"{n}/{m}" for n, m in B4_MISSING.findall(said)),
        output=said,
    )


def _b4_refused(what: str, said: str, returncode: int, sent: list[Sent]) -> NoReturn:
    """b4 failed on the mbox: what it said, with the mail it names."""
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    why = lines[-1] if lines else f"exit {returncode}"
    if "Traceback (most recent call last):" not in said:
        # b4 refuses a mail with "WARNING: ...", then says what it saw.
        warned = [line for line in lines if line.startswith(("CRITICAL:", "ERROR:"))]
        warned += [line for line in lines if "suspicious" in line]
        if warned:
            why = warned[-1].split(": ", 1)[-1]
            why += "".join(f", {line}" for line in lines if line.startswith("Char:"))
    subject = next((s.split(":", 1)[1] for s in lines if s.startswith("Subject:")), "")
    named = next((s for s in sent if s.subject == " ".join(subject.split())), None)
    where = f"{what}:{named.line}: {named.named}" if named and subject else what
    raise UsageError(
        f"{where}: b4 cannot read it ({why})",
        "give the mails as the list archive has them",
    )


def _newest_complete(
    mbox: Path,
    given: Path,
    sent: list[Sent],
    picked: Picked,
    versions: list[int],
    workdir: WorkDir,
    scratch: Path,
) -> Picked | None:
    """The newest other version b4 finds complete, if any."""
    for revision in sorted(versions, reverse=True):
        if revision == picked.revision:
            continue
        other = _b4_am(mbox, given, sent, revision, workdir, scratch)
        if other is not None and not other.missing:
            return other
    return None


def _revision_of(mails: tuple[Mail, ...], sent: list[Sent]) -> int:
    """The version b4 took: the one most of its mails say they are (b4
    says which only when the mbox has several)."""
    said = [s.revision if (s := _sent_of(m, sent)) else m.version for m in mails]
    return max(set(said), key=lambda v: (said.count(v), v))


# -- what b4 does not refuse ---------------------------------------------------


def _no_patch(what: str, sent: list[Sent]) -> NoReturn:
    """b4 found no patch: a quoted one is named, else none is there."""
    for s in sent:
        _refuse_quoted(what, s)
    raise UsageError(
        f"{what}: no patch in it ({_count(len(sent), 'mail')}, none a "
        "'[PATCH n/M]' with a diff)",
        HINT,
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _refuse_quoted(what: str, s: Sent) -> None:
    m = QUOTED_DIFF.search(s.mail.path.read_bytes())
    if m is None:
        return
    line = s.mbox_line(s.mail.path.read_bytes()[: m.start()].count(b"\n") + 1)
    raise UsageError(
        f"{what}:{line}: {s.named}: its diff is quoted ('> diff --git'), as in a reply",
        "give the mail as it was sent, not a reply to it",
    )


def _sent_of(mail: Mail, sent: list[Sent]) -> Sent | None:
    msgid = _message_id(mail)
    return next((s for s in sent if s.msgid == msgid), None)


def _refuse_numbering(what: str, picked: Picked, sent: list[Sent]) -> None:
    """What b4 takes in its stride but a check cannot: two different
    mails that claim the same n/M (b4 takes the second for one more
    patch), a patch without n/M among numbered ones, an n beyond M.
    (Mails that disagree on M fail the mails check.)"""
    mine = [s for m in picked.mails if (s := _sent_of(m, sent)) is not None]
    seen: dict[tuple[int, int], Sent] = {}
    for s in mine:
        first = seen.setdefault((s.counter, s.expected), s)
        if first is not s:
            a, b = sorted((first, s), key=lambda x: x.line)
            raise UsageError(
                f"{what}:{b.line}: {b.named}: a second, different mail "
                f"claims patch {s.numbered} of v{s.revision} (the first is "
                f"at line {a.line})",
                "keep the one that was sent last, delete the other",
            )
    for s in mine:
        if s.unnumbered and len(mine) > 1:
            raise UsageError(
                f"{what}:{s.line}: {s.named}: b4 finds no 'n/M' in its subject, "
                f"the other patches of v{picked.revision} have one",
                "give the mails as they were sent",
            )
        if s.counter > s.expected:
            raise UsageError(
                f"{what}:{s.line}: {s.named}: patch {s.counter} of "
                f"{s.expected}, n is beyond M in its n/M",
                "give the mails as they were sent",
            )


def _missing(
    what: str, picked: Picked, sent: list[Sent], versions: list[int]
) -> NoReturn:
    """The newest version lacks a patch and no other is complete."""
    number = picked.missing[0]
    have = [
        s.numbered for mail in picked.mails if (s := _sent_of(mail, sent)) is not None
    ]
    others = [f"v{v}" for v in versions if v != picked.revision]
    also = f"; {', '.join(others)} not complete either" if others else ""
    raise UsageError(
        f"{what}: [PATCH v{picked.revision} {number}] is missing (b4 found "
        f"{', '.join(have) or 'none'} of v{picked.revision}{also})",
        f"add the mail of patch {number} to the mbox",
    )


def _refuse_other_totals(what: str, picked: Picked, sent: list[Sent]) -> None:
    """Mails of an incomplete version that disagree on M: b4's idea of
    what is missing is then no help."""
    mine = [s for m in picked.mails if (s := _sent_of(m, sent)) is not None]
    if picked.cover is not None and (c := _sent_of(picked.cover, sent)) is not None:
        mine.insert(0, c)
    totals = sorted({s.expected for s in mine})
    if len(totals) < 2:
        return
    usual = max(totals, key=lambda t: (sum(s.expected == t for s in mine), -t))
    odd = next(s for s in mine if s.expected != usual)
    raise UsageError(
        f"{what}:{odd.line}: {odd.named}: says the series has {odd.expected} "
        f"patch(es), the other mails of v{odd.revision} say {usual}",
        "give the mails of one posting of the series",
    )


def _refuse_unread(what: str, picked: Picked, sent: list[Sent]) -> None:
    """A missing patch of the version that the mbox has, but quoted or
    in a form b4 finds no diff in."""
    for number in picked.missing:
        n, m = (int(x) for x in number.split("/"))
        for s in sent:
            if (s.revision, s.counter, s.expected) != (picked.revision, n, m):
                continue
            _refuse_quoted(what, s)
            if not s.reply:
                raise UsageError(
                    f"{what}:{s.line}: {s.named}: b4 finds no diff in it "
                    "(its Content-Type or Content-Transfer-Encoding?)",
                    "give the mail as it was sent",
                )


def _version(what: str, series: Series, revision: int) -> Version:
    if revision not in series.versions:
        known = ", ".join(f"v{n}" for n in sorted(series.versions))
        raise UsageError(
            f"{what}: its mails are v{revision}, {series.path.name} has no v{revision}",
            f"it has: {known}",
        )
    return series.versions[revision]


def _refuse_damage(what: str, mail: Mail, original: Sent | None) -> None:
    """A diff git cannot read (b4 passes it on as it is): named with the
    line of the mbox where git stopped."""
    errors = diff_errors(mail.text)
    if errors is None:
        return
    problem = errors[0] if errors else "git apply cannot read its diff"
    where = what
    named = original.named if original else f"patch {mail.numbered}"
    m = GIT_LINE.search(problem)
    if original is not None:
        line = _line_in_sent(mail, original, int(m[1] or m[2])) if m else None
        where = f"{what}:{line or original.line}"
        if line is not None:  # the place is in `where`, not git's line
            problem = GIT_LINE.sub("", problem).replace("  ", " ").rstrip(" :")
        elif m:
            problem += " of b4's copy"
    if problem.startswith("corrupt patch") or "fragment without header" in problem:
        problem += " (lines wrapped or whitespace-damaged?)"
    raise UsageError(
        f"{where}: {named}: {problem}",
        "give the mail as it was sent (the list archive's raw message), "
        "not as a mail client shows or forwards it",
    )


def _line_in_sent(mail: Mail, original: Sent, line: int) -> int | None:
    """The mbox line of line `line` of b4's copy of a mail: b4 keeps the
    diff as it was, so both agree from the first "diff --git" on.  None
    for a mail whose body was encoded (its lines are not the mbox's)."""
    if original.mail.decoded is not None:
        return None
    theirs = _diff_start(mail.text.read_bytes())
    mine = _diff_start(original.mail.path.read_bytes())
    if theirs is None or mine is None or line < theirs:
        return None
    return original.mbox_line(mine + line - theirs)


def _diff_start(data: bytes) -> int | None:
    for n, line in enumerate(data.split(b"\n"), 1):
        if line.startswith(b"diff --git "):
            return n
    return None


# -- the mails to check ------------------------------------------------------


def _as_sent(mail: Mail, original: Sent | None) -> Mail:
    """b4's copy with the addresses of the mail as sent (b4 drops To and
    Cc, which the maintainers check reads), and what did not parse."""
    if original is None:
        return mail
    headers = {
        **mail.headers,
        "To": original.mail.header("To"),
        "Cc": original.mail.header("Cc"),
    }
    return dataclasses.replace(
        mail, headers=headers, bad_headers=original.mail.bad_headers
    )


def _message_lines(body: str) -> list[str]:
    """The lines of a commit message: the body up to "---" or the diff."""
    lines: list[str] = []
    for line in body.splitlines():
        if line == "---" or line.startswith("diff --git "):
            break
        lines.append(line.rstrip())
    return lines


def _added_trailers(mail: Mail, original: Sent | None) -> tuple[str, ...]:
    """The trailers in b4's copy that the mail as sent did not have."""
    had = set(_message_lines(original.mail.body)) if original else set()
    return tuple(
        line
        for line in _message_lines(mail.body)
        if TRAILER.match(line) and line not in had
    )
