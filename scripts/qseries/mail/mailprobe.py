"""mailprobe: b4 and the mail parsers, bounded per mail.

A thread is input from strangers, and a reply can make a parser spin:
b4 0.16 takes minutes over one "Tested-by: <5000 letters> <a@b.net>"
(a regular expression of its find_trailers backtracks, the time grows
with the cube of the line), and Python's email package has had header
parsers of the same kind.  Given the whole thread, b4 would spin until
its time limit with no word of which mail is at fault.

So before b4 sees a thread, each mail is read alone, the ways b4 and
qseries read it (the email package's parsers, b4's LoreMessage with its
trailers and subject, qseries' read_mail), in a child process
with a time limit per mail: a SIGALRM in the child for each mail, and
the bounded runner's limit for the child as a whole in case a parser
does not see the signal.  A mail that does not finish in time, or that
is larger than a mail of a series has reason to be, is named and left
out, and the rest go on.  What is left out of a thread is, in practice,
a reply; a patch left out makes its version incomplete, which the
mbox reader then reports as such.

The run of `python -m qseries.mail.mailprobe` is that child.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ..core.mail import read_mail
from ..ground.errors import ToolError, UsageError
from ..ground.proc import Ran, run_bounded
from ..ground.workdir import WorkDir

# b4 am on a whole thread (after the probe, so the mails are known to
# read quickly one by one).
B4_TIMEOUT = 120
# How long one mail may take to read; QSERIES_MAIL_TIME_LIMIT changes it
# (a real mail takes milliseconds).
MAIL_TIME_LIMIT = 10.0
LIMIT_VARIABLE = "QSERIES_MAIL_TIME_LIMIT"
# What the child may take beyond the per-mail limits: Python starting,
# importing b4, the quick mails.
CHILD_ALLOWANCE = 30.0
# The largest mail read (a patch series' mails are well under 1 MB; a
# list's limit is lower still), the most mails in one thread, the
# largest mbox.
MAIL_BYTES = 16 * 2**20
MAILS = 5000
MBOX_BYTES = 256 * 2**20
# RFC 5322 2.1.1: a line of a mail is at most 998 characters.
LINE_LENGTH = 998


def b4_env(workdir: WorkDir) -> dict[str, str]:
    """The environment b4 runs in: this one without git's variables, with
    HOME and the caches in the work dir, so that b4 writes only there."""
    home = workdir.sub("home")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "HOME": str(home),
        "XDG_CACHE_HOME": str(workdir.sub("cache")),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }


def b4_run(args: list[str], workdir: WorkDir, cwd: Path) -> Ran:
    """b4 ARGS, from this Python's environment, offline, writing only
    into the work dir; a b4 that does not finish is a ToolError."""
    script = Path(sys.executable).with_name("b4")
    argv = (
        [str(script)] if script.exists() else [sys.executable, "-P", "-m", "b4.command"]
    )
    try:
        ran = run_bounded(
            [*argv, "--offline-mode", *args], b4_env(workdir), B4_TIMEOUT, cwd=cwd
        )
    except FileNotFoundError:
        raise ToolError("b4 is not installed", "run 'make bootstrap'") from None
    if ran.timed_out:
        raise ToolError(
            f"b4 did not finish within {B4_TIMEOUT} s (each mail alone read "
            "in time: the thread as a whole is too much for it)",
            "give a smaller part of the thread: the version's mails and their replies",
        )
    return ran


def time_limit() -> float:
    """The per-mail limit: QSERIES_MAIL_TIME_LIMIT or the default."""
    value = os.environ.get(LIMIT_VARIABLE)
    if value is None:
        return MAIL_TIME_LIMIT
    try:
        limit = float(value)
    except ValueError:
        limit = 0.0
    if not 0 < limit <= 3600:
        raise UsageError(
            f"{LIMIT_VARIABLE}={value!r}: not a number of seconds",
            "give a number between 0 and 3600, or unset it",
        )
    return limit


@dataclass(frozen=True)
class LeftOut:
    """A mail the probe left out, and why."""

    index: int  # of the files given
    why: str


def probe(
    files: Sequence[Path],
    workdir: WorkDir,
    limit: float | None = None,
    child_limit: float | None = None,
) -> list[LeftOut]:
    """The mails among files that are too large, or that the parsers do
    not read within limit seconds each; the others read in time.
    child_limit: the bound of one child (default: the limit of two mails
    and CHILD_ALLOWANCE)."""
    if len(files) > MAILS:
        raise UsageError(
            f"{len(files)} mails in one thread, more than the {MAILS} qseries reads",
            "give the version's mails and their replies, not a whole archive",
        )
    limit = time_limit() if limit is None else limit
    bound = CHILD_ALLOWANCE + 2 * limit if child_limit is None else child_limit
    out: list[LeftOut] = []
    todo: list[int] = []
    for i, path in enumerate(files):
        size = path.stat().st_size
        if size > MAIL_BYTES:
            out.append(LeftOut(i, f"{size:,} bytes, more than the {MAIL_BYTES:,} read"))
        else:
            todo.append(i)
    while todo:
        ran = _run_child([files[i] for i in todo], workdir, limit, bound)
        started: int | None = None
        finished: set[int] = set()
        for line in ran.stdout.splitlines():
            word, _, number = line.partition(" ")
            if word in ("start", "done", "slow") and number.isdigit():
                n = todo[int(number)]
                if word == "start":
                    started = n
                    continue
                finished.add(n)
                if word == "slow":
                    out.append(LeftOut(n, f"it was not read within {limit:g} s"))
        if not ran.timed_out:
            if ran.returncode != 0:
                last = ran.stderr.strip().splitlines() or [f"exit {ran.returncode}"]
                raise ToolError(f"the mail probe failed: {last[-1]}")
            break
        # The child as a whole ran out of time: the mail it was reading
        # is the culprit, and the probe goes on after it.
        if started is None:
            raise ToolError(
                f"the mail probe did not start within {bound:g} s",
                "is the machine overloaded? run qseries again",
            )
        if started not in finished:
            why = f"the probe did not get past it within {bound:g} s"
            out.append(LeftOut(started, why))
        todo = todo[todo.index(started) + 1 :]
    return sorted(out, key=lambda o: o.index)


def _run_child(
    files: Sequence[Path], workdir: WorkDir, limit: float, bound: float
) -> Ran:
    env = b4_env(workdir)
    # The package this module is in, wherever qseries runs from.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH")) if p
    )
    # -P: nothing of the directory it runs in comes before the package.
    argv = [sys.executable, "-P", "-m", "qseries.mail.mailprobe", f"{limit:g}"]
    return run_bounded(
        [*argv, *map(str, files)],
        env,
        bound,
        cwd=workdir.sub("tmp"),
    )


def described(data: bytes) -> str:
    """A mail in a line, from its raw headers (no parser that could
    spin): its Message-Id and subject, shortened and escaped."""
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]
    msgid = _raw_header(head, b"message-id")
    subject = _raw_header(head, b"subject")
    parts = [_shown(msgid, 60) if msgid else "(no Message-Id)"]
    parts.append(f"'{_shown(subject, 60)}'" if subject else "(no subject)")
    longest = max((len(line) for line in data.splitlines()), default=0)
    if longest > LINE_LENGTH:
        parts.append(f"(a line of {longest:,} characters; mail allows {LINE_LENGTH})")
    return " ".join(parts)


def _raw_header(head: bytes, name: bytes) -> str:
    """The first header `name` (lower case) of a header block, unfolded."""
    value: list[bytes] | None = None
    for line in head.splitlines():
        if value is not None:
            if line[:1] not in (b" ", b"\t"):
                break
            value.append(line.strip())
        elif line.lower().startswith(name + b":"):
            value = [line[len(name) + 1 :].strip()]
    return b" ".join(value).decode("utf-8", "replace") if value else ""


def _shown(text: str, width: int) -> str:
    """text on one line, control characters escaped, at most width long."""
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= width else text[: width - 3] + "..."


# -- the child ----------------------------------------------------------------


class _Slow(BaseException):
    """The mail's time ran out (not an Exception: parsers catch those)."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Slow


def _read(path: Path) -> None:
    """Read one mail as b4 and qseries do."""
    import b4

    with path.open("rb") as fh:
        message = b4.mailbox_email_factory(fh)
    lmsg = b4.LoreMessage(message)
    lmsg.attestors  # noqa: B018 (what b4 am checks of each patch, offline)
    mail = read_mail(path)
    b4.LoreSubject(" ".join(str(mail.message.get("Subject") or "").split()))


def main(argv: Sequence[str]) -> int:
    """mailprobe LIMIT FILE...: "start N", then "done N" or "slow N", for
    each file, as it goes."""
    import logging

    import b4  # before any mail, so that the imports count for none

    from ..core import mail as mail_model  # noqa: F401

    b4.logger.setLevel(logging.CRITICAL)
    b4.can_network = False  # as b4 --offline-mode
    limit, files = float(argv[0]), argv[1:]
    signal.signal(signal.SIGALRM, _alarm)
    for n, name in enumerate(files):
        print(f"start {n}", flush=True)
        try:
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                _read(Path(name))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Slow:
            print(f"slow {n}", flush=True)
            continue
        except Exception:  # refused later, by b4 or the reader, in its words
            pass
        print(f"done {n}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
