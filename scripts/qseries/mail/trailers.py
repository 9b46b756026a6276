"""trailers: the review tags a mailed version got, into series.yaml.

b4 (`b4 am`, offline) reads the thread: it finds the newest complete
version, orders its patches and gives each the Reviewed-by, Acked-by and
Tested-by that replies carried (a tag on the cover letter counts for
every patch).  qseries then writes them into series.yaml, under the
version the mails were, and shows the change.  A patch that changed
since it was mailed (its `git patch-id` differs from the committed
patches/vN) keeps its old tags out: they are reported, not copied.
So is a tag a reply gives for someone else (Joe's reply saying
"Tested-by: Ann"): b4 takes a tag only from the person it names.

The thread is read as `check --mbox` reads it (mbox.for_b4): a mail
that the mail probe finds too slow to read is named and left out.
series.yaml is edited in place: the lines that get tags change, every
other byte stays (CRLF included), and it is written whole or not at all.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import mailbox
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import yaml

from ..core.series import Series, Version
from ..ground import atomic
from ..ground.errors import ToolError, UsageError
from ..ground.gitutil import git_argv, git_env
from ..ground.proc import CommandTimeout, run_bounded
from ..ground.workdir import WorkDir
from . import mailprobe
from . import mbox as mbox_mod

TAGS = ("Reviewed-by", "Acked-by", "Tested-by")
TAG_LINE = re.compile(rf"^({'|'.join(TAGS)}): (\S.*)$", re.M)
# b4 am on a tag whose person is not the reply's sender (b4 0.14-0.16).
B4_FOREIGN = re.compile(r"^ +! Trailer: (.*)\n +Msg From: (.*)$", re.M)
SUBJECT = re.compile(r"\[[^\]]*?(?:\bv(\d+))?\s*(\d+)/(\d+)\]\s*(.*)", re.I)
PATCH_ID_TIMEOUT = 60.0


@dataclass(frozen=True)
class Tagged:
    """One patch of the mailed version and the tags it got."""

    number: int
    subject: str
    tags: tuple[str, ...]  # "Reviewed-by: Name <addr>", in b4's order
    new: tuple[str, ...]  # of those, the ones series.yaml lacks
    changed: bool  # the patch changed since it was mailed


@dataclass(frozen=True)
class Collected:
    version: Version
    patches: tuple[Tagged, ...]
    # Tags a reply gave for someone else, with its sender: b4 takes a tag
    # only from the person it names, so these are listed, not copied.
    for_others: tuple[tuple[str, str], ...] = ()


def _b4(args: list[str], workdir: WorkDir, cwd: Path) -> str:
    """b4 ARGS; its output, or a ToolError with its last line."""
    ran = mailprobe.b4_run(args, workdir, cwd)
    output = (ran.stdout + ran.stderr).strip()
    if ran.returncode != 0:
        last = output.splitlines()[-1] if output else f"exit {ran.returncode}"
        raise ToolError(f"b4 am failed: {last}")
    return output


def am_ready(mbox: Path, workdir: WorkDir, scratch: Path) -> tuple[Path, str]:
    """b4 am -m MBOX: the newest complete version, ordered, with its
    trailers; the path of the .mbx it wrote, and what b4 said.  Mails
    that the mail probe finds too slow to read are left out first."""
    if not mbox.is_file() or mbox.stat().st_size == 0:
        raise UsageError(f"--mbox {mbox}: no such file, or empty", "give a thread")
    given = mbox_mod.for_b4(mbox, workdir, scratch)
    out = scratch / "b4"
    said = _b4(["am", "-m", str(given), "-o", str(out)], workdir, scratch)
    found = sorted(out.glob("*.mbx"))
    if not found:
        raise UsageError(
            f"--mbox {mbox}: b4 found no complete series in it",
            "give the thread with every patch of a version",
        )
    return found[0], said


def given_for_others(said: str) -> tuple[tuple[str, str], ...]:
    """The tags b4 left out because the reply carrying them is not from
    the person they name: (tag, who sent it), from what b4 am said."""
    return tuple(
        (tag.strip(), sender.strip()) for tag, sender in B4_FOREIGN.findall(said)
    )


def _body(message: Message) -> str:
    payload = message.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(message.get_content_charset() or "utf-8", "replace")
    return str(message.get_payload())


def patch_id(text: str) -> str:
    argv = git_argv("patch-id", "--stable")
    try:
        proc = run_bounded(argv, git_env(), PATCH_ID_TIMEOUT, input=text)
    except FileNotFoundError:
        raise ToolError("git is not installed", "install git") from None
    if proc.timed_out:
        raise CommandTimeout(argv, PATCH_ID_TIMEOUT)
    return proc.stdout.split(" ", 1)[0]


def collect(
    series: Series, mbx: Path, patches_dir: Callable[[Version], Path]
) -> Collected:
    """The tags of each mailed patch, against series.yaml and the
    version's committed mails (in patches_dir(version))."""
    numbered: list[tuple[int, str, str, str]] = []  # n, subject, body, version
    total = 0
    for message in mailbox.mbox(str(mbx)):
        m = SUBJECT.search(" ".join(str(message["Subject"] or "").split()))
        if not m:
            continue
        numbered.append((int(m[2]), m[4], _body(message), m[1] or "1"))
        total = int(m[3])
    if not numbered:
        raise UsageError(f"{mbx.name}: no numbered patch", "give a mailed series")
    version = series.version(f"v{numbered[0][3]}")
    if total != len(version.patches):
        raise UsageError(
            f"the mailed {version.name} has {total} patches, series.yaml's has "
            f"{len(version.patches)}",
            "is the thread a version of this series?",
        )
    committed = {
        int(p.name.split("-")[1]): p
        for p in patches_dir(version).glob(
            f"{version.name}-[0-9][0-9][0-9][0-9]-*.patch"
        )
        if p.name.split("-")[1] != "0000"
    }
    tagged = []
    for n, subject, body, _ in sorted(numbered):
        tags = tuple(
            dict.fromkeys(f"{t}: {who.strip()}" for t, who in TAG_LINE.findall(body))
        )
        have = set(version.patches[n - 1].trailers)
        mine = committed.get(n)
        changed = mine is None or patch_id(mine.read_text()) != patch_id(body)
        new = tuple(t for t in tags if t not in have)
        tagged.append(Tagged(n, subject, tags, new, changed))
    return Collected(version, tuple(tagged))


def _patch_nodes(text: str, version: Version) -> list[yaml.MappingNode]:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    assert isinstance(root, yaml.MappingNode)
    versions = next(v for k, v in root.value if k.value == "versions")
    node = next(v for k, v in versions.value if k.value == version.name)
    patches = next(v for k, v in node.value if k.value == "patches")
    return list(patches.value)


def write(series: Series, collected: Collected) -> tuple[bytes, str]:
    """series.yaml with the new tags of every unchanged patch; returns the
    new bytes and the unified diff (empty when nothing is new).  Only the
    lines that get tags change: the others keep every byte, and a new
    line ends as the line after it does (CRLF in a CRLF file)."""
    raw = series.path.read_bytes()
    old = raw.decode("utf-8")
    nodes = _patch_nodes(old, collected.version)
    edits: list[tuple[int, int, str]] = []
    for patch in collected.patches:
        if not patch.new or patch.changed:
            continue
        node = nodes[patch.number - 1]
        merged = [*collected.version.patches[patch.number - 1].trailers, *patch.new]
        flow = json.dumps(merged, ensure_ascii=False)
        keys = {k.value: (k, v) for k, v in node.value}
        if "trailers" in keys:
            value = keys["trailers"][1]
            edits.append((value.start_mark.index, value.end_mark.index, flow))
        else:
            key = keys["generator"][0]
            line_start = old.rfind("\n", 0, key.start_mark.index) + 1
            line_end = old.find("\n", key.start_mark.index)
            eol = "\r\n" if old[line_end - 1 : line_end + 1] == "\r\n" else "\n"
            indent = " " * key.start_mark.column
            edits.append((line_start, line_start, f"{indent}trailers: {flow}{eol}"))
    new = old
    for start, end, text in sorted(edits, reverse=True):
        new = new[:start] + text + new[end:]
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            str(series.path),
            str(series.path),
        )
    )
    return (new.encode("utf-8") if new != old else raw), diff


def update(
    series: Series,
    mbox: Path,
    workdir: WorkDir,
    patches_dir: Callable[[Version], Path],
) -> tuple[Collected, str]:
    """Collect the thread's trailers (b4) and write the new ones into
    series.yaml; what was collected, and the change as a diff ('' when
    there is nothing new)."""
    with tempfile.TemporaryDirectory(dir=workdir.sub("tmp")) as tmp:
        mbx, said = am_ready(mbox, workdir, Path(tmp))
        collected = collect(series, mbx, patches_dir)
    collected = dataclasses.replace(collected, for_others=given_for_others(said))
    new, diff = write(series, collected)
    if diff:
        # Through a symlink to the file it names, as an editor would.
        atomic.write_bytes(series.path.resolve(), new)
    return collected, diff
