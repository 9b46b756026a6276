"""import: a series.yaml from a branch of a QEMU checkout or from a thread.

A branch is read, never written: its commits, their messages, authors,
dates and diffs, with git's plumbing.  A thread is read with b4 (the
newest complete version, the trailers replies gave apart), each mail
with `git mailinfo` as `git am` reads it, and its patches are applied
onto the base it names (in the work dir, with a private index) to give
the same commits a branch would.  From the commits, each patch becomes
its changes: `carry` for a new text file, `qapi` where a module only
gains definitions the kind places byte for byte (mail/import_qapi.py),
and `diff` (git's own, binary hunks included) for the rest.

What import writes goes into --to SERIESDIR whole or not at all: a
first import into a new or empty folder, a later one as the next
version of a series.yaml it wrote; any other file there is refused.
"""

from __future__ import annotations

import dataclasses
import email.utils
import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import yaml

from ..core import generators
from ..core import series as series_mod
from ..core.generators import diff as diff_kind
from ..core.series import Identity
from ..core.versions import QemuVersion, VersionRange
from ..ground import atomic
from ..ground.console import say
from ..ground.errors import QSeriesError, ToolError, UsageError
from ..ground.gitutil import GIT_TIMEOUT, Git, git_argv, git_env
from ..ground.proc import CommandTimeout, run_bounded
from ..ground.workdir import WorkDir
from ..qemu import source as source_mod
from ..qemu.source import BaseTree, SourceSpec
from . import import_qapi
from . import mbox as mbox_mod

# The first line of a series.yaml import writes: a later import adds a
# version to such a file only.
HEADER = "# Written by qseries import."
SERIES_FILE = "series.yaml"
# A line of a trailer block (git's own test is looser; this is the
# series.yaml loader's, so that what import writes loads).
TRAILER = re.compile(r"[A-Z][A-Za-z-]*: \S.*")
SHORTLOG = re.compile(r"^\S.* \(\d+\):$", re.M)
BASE_COMMIT = re.compile(r"^base-commit: ([0-9a-f]{40})$", re.M)
NEW_FILE_MODE = "100644"


class ImportError_(UsageError):
    """What import cannot take, in one line; nothing is written."""


@dataclass(frozen=True)
class Imported:
    series_file: Path
    version: str  # "v1"
    notes: tuple[str, ...]  # what import says about what it wrote
    base_commit: str | None
    patches: int = 0


@dataclass(frozen=True)
class Commit:
    """One patch as read: its message in parts, who and when, and what
    the thread adds (Message-Id, trailers from replies)."""

    sha: str
    subject: str
    body: str
    trailers: tuple[str, ...]
    author: Identity
    date: str  # ISO 8601 with its offset
    message_id: str | None = None
    collected: tuple[str, ...] = ()


@dataclass
class Written:
    """The files of one version, relative to SERIESDIR, before they are
    put in place; and what import says."""

    files: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- reading commits -------------------------------------------------------


def _git_date(seconds: str, offset: str) -> str:
    sign = -1 if offset.startswith("-") else 1
    delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])) * sign
    return datetime.fromtimestamp(int(seconds), timezone(delta)).isoformat()


def split_message(message: str) -> tuple[str, str, tuple[str, ...]]:
    """subject, body and trailer block of a commit message.  The subject
    is the first paragraph on one line (as format-patch mails it); the
    trailers are the last paragraph when each of its lines is one."""
    message = message.strip("\n")
    first, _, rest = message.partition("\n\n")
    subject = " ".join(line.strip() for line in first.split("\n"))
    rest = rest.strip("\n")
    if not rest:
        return subject, "", ()
    last = re.split(r"\n[ \t]*\n", rest)[-1]
    lines = last.split("\n")
    if all(TRAILER.fullmatch(line) for line in lines):
        return subject, rest[: len(rest) - len(last)].rstrip(), tuple(lines)
    return subject, rest, ()


def _identity(given: str, name: str, email_: str) -> Identity:
    ident = Identity(name.strip(), email_.strip())
    if (
        not ident.name
        or "<" in ident.name
        or ">" in ident.name
        or not re.fullmatch(r"[^<>@\s]+@[^<>@\s]+", ident.email)
        or any(unicodedata.category(c) == "Cc" for c in str(ident))
    ):
        raise ImportError_(
            f"{given}: the author '{name} <{email_}>' is not 'Name <email>'",
            "fix the author of that commit or mail",
        )
    return ident


def read_commit(g: Git, sha: str, given: str) -> Commit:
    """A commit's message and author, in UTF-8 whatever encoding the
    commit declares (git re-encodes them)."""
    out = g.run(
        "show",
        "-s",
        "--no-show-signature",
        "--encoding=UTF-8",
        "--date=format:%z",
        "--format=%an%x00%ae%x00%at%x00%ad%x00%B",
        sha,
        strip=False,
    )
    fields = out.split("\0", 4)
    if len(fields) != 5 or not re.fullmatch(r"[+-]\d{4}", fields[3]):
        raise ToolError(f"{given}: commit {sha[:12]} has no author line git reads")
    name, address, seconds, offset, message = fields
    where = f"{given}: commit {sha[:12]}"
    subject, body, trailers = split_message(message)
    return Commit(
        sha,
        _subject(subject, where),
        body,
        trailers,
        _identity(where, name, address),
        _checked_date(_git_date(seconds, offset), where),
    )


def _subject(subject: str, where: str) -> str:
    if not subject.strip() or any(unicodedata.category(c) == "Cc" for c in subject):
        raise ImportError_(
            f"{where}: its subject is empty or holds control characters",
            "give the commit a one-line subject",
        )
    return subject


def _checked_date(when: str, where: str) -> str:
    """A date git records as written (series.yaml's rule: 1970 to 2099)."""
    if not 1970 <= datetime.fromisoformat(when).year <= 2099:
        raise ImportError_(
            f"{where}: its date {when} is outside 1970..2099", "fix the date"
        )
    return when


def _commit_of(g: Git, name: str, given: str, what: str) -> str:
    if not name or name.startswith("-"):
        raise ImportError_(
            f"{given}: '{name}' is not a name of a commit", "write BASE..TOPIC"
        )
    sha = g.try_run("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
    if not sha:
        raise ImportError_(
            f"{given}: {what} has no commit '{name}'",
            "name a branch, tag or commit of that checkout",
        )
    return sha


def read_range(g: Git, rng: str, given: str, where: str) -> tuple[str, list[str]]:
    """The base and the commits of BASE..TOPIC, oldest first."""
    m = re.fullmatch(r"([^.]+(?:\.[^.]+)*)\.\.([^.]+(?:\.[^.]+)*)", rng)
    if not m:
        raise ImportError_(
            f"{given}: not a range BASE..TOPIC", "e.g. --range v10.2.0..my-topic"
        )
    base = _commit_of(g, m[1], given, where)
    topic = _commit_of(g, m[2], given, where)
    if g.try_run("merge-base", "--is-ancestor", base, topic) is None:
        raise ImportError_(
            f"{given}: {m[1]} is not an ancestor of {m[2]}",
            f"name the commit the topic starts from (git merge-base {m[1]} {m[2]})",
        )
    merges = g.run("rev-list", "--merges", f"{base}..{topic}").split()
    if merges:
        subject = g.run("log", "-1", "--format=%s", merges[0])
        raise ImportError_(
            f"{given}: commit {merges[0][:12]} '{subject}' is a merge",
            "import a linear range: rebase the topic onto its base first",
        )
    commits = g.run("rev-list", "--reverse", f"{base}..{topic}").split()
    if not commits:
        raise ImportError_(f"{given}: the range has no commits", "name BASE..TOPIC")
    return base, commits


# -- turning a commit into changes -----------------------------------------


@dataclass(frozen=True)
class Touched:
    path: str
    status: str  # git's letter: A, M, D, R, C, T
    new_mode: str
    new_blob: str


def touched(g: Git, sha: str) -> list[Touched]:
    out = g.run(
        "diff-tree",
        "-r",
        "-M",
        "--raw",
        "-z",
        "--no-commit-id",
        f"{sha}^",
        sha,
        strip=False,
    )
    fields = out.split("\0")
    found: list[Touched] = []
    i = 0
    while i < len(fields) - 1:
        meta = fields[i].lstrip(":").split()
        status = meta[4][0]
        if status in "RC":
            path = fields[i + 2]
            i += 3
        else:
            path = fields[i + 1]
            i += 2
        found.append(Touched(path, status, meta[1], meta[3]))
    return found


def _unused(out: Written, name: str) -> str:
    """name, or name with a number, so that no two files are one."""
    stem, dot, suffix = name.partition(".")
    found, n = name, 1
    while found in out.files:
        n += 1
        found = f"{stem}-{n}{dot}{suffix}"
    return found


def _slug(subject: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", subject).strip("-")[:52].rstrip("-") or "patch"


def _literal(path: str) -> str:
    return f":(exclude,literal){path}"


def _diff_bytes(
    g: Git, sha: str, excluded: list[str], scratch: Path, binary: tuple[str, ...] = ()
) -> bytes:
    """git's diff of the commit, binary hunks and full ids, but the
    files the other kinds carry; the files of `binary` as binary hunks."""
    out = scratch / "hunks.diff"
    config: list[str] = []
    if binary:
        # Attributes of qseries' own, in the work dir: the user's
        # repository is not written.
        attributes = scratch / "attributes"
        attributes.write_text("".join(f"/{p} -diff\n" for p in binary))
        config = ["-c", f"core.attributesFile={attributes}"]
    args = [
        *config,
        "diff-tree",
        "-p",
        "-M",
        "--binary",
        "--full-index",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        f"--output={out}",
        f"{sha}^",
        sha,
        "--",
    ]
    if excluded:
        args += [":(top)*", *(_literal(p) for p in excluded)]
    g.run(*args)
    data = out.read_bytes()
    out.unlink()
    return data


def _not_text(diff: bytes) -> tuple[str, ...]:
    """The files whose part of a diff is not UTF-8 text."""
    found = []
    for part in re.split(rb"^(?=diff --git )", diff, flags=re.M):
        m = re.match(rb"diff --git a/(\S+) b/(\S+)", part)
        if not m:
            continue
        try:
            part.decode("utf-8")
        except UnicodeDecodeError:
            found.append(m[2].decode("utf-8", errors="replace"))
    return tuple(found)


def _text(g: Git, rev: str) -> str | None:
    """A blob as text when it reads back as the same bytes (UTF-8, no
    NUL, no CR that reading would turn into a line end), else None."""
    text = g.run("cat-file", "blob", rev, strip=False)
    size = int(g.run("cat-file", "-s", rev))
    if "\ufffd" in text or "\0" in text or len(text.encode()) != size:
        return None
    return text


def changes_of(
    g: Git, commit: Commit, number: int, folder: str, out: Written, scratch: Path
) -> list[dict[str, str]]:
    """The changes of one commit, their files added to out."""
    files = touched(g, commit.sha)
    named = f"patch {number} '{commit.subject}'"
    if not files:
        raise ImportError_(
            f"{named} (commit {commit.sha[:12]}) changes no file",
            "drop the empty commit, or give it its change",
        )
    changes: list[dict[str, str]] = []
    carried: list[str] = []
    for t in files:
        if t.status == "A" and t.new_mode == NEW_FILE_MODE:
            text = _text(g, t.new_blob)
            if text is not None:
                source = f"{folder}/files/{number:04d}/{t.path}"
                out.files[source] = text.encode()
                changes.append({"kind": "carry", "file": t.path, "source": source})
                carried.append(t.path)
                continue
        if t.status == "M" and re.fullmatch(r"qapi/[^/]+\.json", t.path):
            old = _text(g, f"{commit.sha}^:{t.path}")
            new = _text(g, f"{commit.sha}:{t.path}")
            if old is None or new is None:
                continue
            made = import_qapi.as_qapi(t.path, old, new)
            if isinstance(made, str):
                out.notes.append(f"{named}: stays diff: {made}")
                continue
            for edit in made.edits:
                where, _, leaf = edit.params["template"].rpartition("/")
                template = _unused(out, f"{folder}/{where}/{number:04d}-{leaf}")
                out.files[template] = edit.template.encode()
                changes.append({"kind": "qapi", **edit.params, "template": template})
            carried.append(t.path)
    if len(carried) < len(files):
        hunks = _diff_bytes(g, commit.sha, carried, scratch)
        odd = _not_text(hunks)
        if odd and all(re.fullmatch(r"[\w./+-]+", p) for p in odd):
            # The diff kind carries text: a file that is not UTF-8 goes
            # as git's binary hunk (the same bytes in the tree; its mail
            # then shows a binary patch where git's showed text).
            hunks = _diff_bytes(g, commit.sha, carried, scratch, odd)
            out.notes.append(
                f"{named}: {', '.join(odd)}: not UTF-8 text, carried as a binary hunk"
            )
        if _not_text(hunks):
            raise ImportError_(
                f"{named} (commit {commit.sha[:12]}): its diff is not UTF-8 text",
                "qseries carries text diffs and git's binary hunks only",
            )
        patch = f"{folder}/{number:04d}-{_slug(commit.subject)}.diff"
        out.files[patch] = hunks
        changes.insert(0, {"kind": "diff", "patch": patch})
    return changes


def patch_entry(commit: Commit, changes: list[dict[str, str]]) -> dict[str, object]:
    entry: dict[str, object] = {
        "subject": commit.subject,
        "author": str(commit.author),
        "date": commit.date,
    }
    if commit.message_id:
        entry["message-id"] = commit.message_id
    entry["body"] = commit.body + "\n" if commit.body else ""
    if commit.trailers:
        entry["trailers"] = list(commit.trailers)
    if commit.collected:
        entry["collected"] = list(commit.collected)
    entry["changes"] = changes
    return entry


# -- the series dir --------------------------------------------------------


def _referenced(series: series_mod.Series) -> set[Path]:
    """The files the versions of a series name (what import wrote)."""
    found: set[Path] = set()
    for version in series.versions.values():
        for patch in version.patches:
            for change in patch.changes:
                templates, verbatim = change.generator.reads(change.params)
                for name in (*templates, *verbatim):
                    found.add((series.path.parent / name).resolve())
    return found


def _existing(dest: Path, given: str) -> series_mod.Series | None:
    """The series import wrote in dest before, None for a new folder;
    refused when dest holds anything else."""
    if not dest.exists():
        return None
    if not dest.is_dir():
        raise ImportError_(f"{given}: is a file", "name a folder for the series")
    present = [p for p in dest.rglob("*") if p.is_file() or p.is_symlink()]
    if not present:
        return None
    path = dest / SERIES_FILE
    if not path.is_file() or not path.read_text(
        encoding="utf-8", errors="replace"
    ).startswith(HEADER):
        raise ImportError_(
            f"{given}: holds files import did not write (e.g. {present[0]})",
            "import into a new folder",
        )
    series = series_mod.load(path, generators.specs())
    known = _referenced(series) | {path.resolve()}
    for p in sorted(present):
        if p.resolve() in known:
            continue
        if p.relative_to(dest).parts[0] == "patches" and p.suffix == ".patch":
            continue  # generate's mails
        raise ImportError_(
            f"{given}: holds a file import did not write: {p}",
            "move it elsewhere, or import into a new folder",
        )
    return series


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(data: object) -> str:
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100000,
        default_flow_style=False,
    )


def _version_text(number: int, version: dict[str, object]) -> str:
    text = _dump({"versions": {f"v{number}": version}})
    return text.split("\n", 1)[1]  # under the 'versions:' of the file


def _base_range(version: QemuVersion) -> str:
    return f">={version.major}.{version.minor}, <{version.major}.{version.minor + 1}"


def write_series(
    dest: Path,
    given: str,
    existing: series_mod.Series | None,
    version: dict[str, object],
    prefix: str,
    written: Written,
    wanted: int | None,
    scratch: Path,
) -> Path:
    """Put the version's files and series.yaml in place; all or nothing."""
    number = max(existing.versions) + 1 if existing else 1
    if wanted is not None and wanted > number:
        number = wanted  # a thread's own vN, when it is past what dest has
    folder = f"v{number}"
    files = {
        re.sub(r"^V/", f"{folder}/", name): data for name, data in written.files.items()
    }
    for entry in version["patches"]:  # type: ignore[attr-defined]
        for change in entry["changes"]:
            for key in ("patch", "source", "template"):
                if key in change:
                    change[key] = re.sub(r"^V/", f"{folder}/", change[key])
    head = _version_text(number, version)
    if existing is None:
        text = (
            f"{HEADER} A later import adds the next version below.\n"
            + _dump({"schema": 2, "subject-prefix": prefix})
            + "versions:\n"
            + head
        )
    else:
        old = existing.path.read_text(encoding="utf-8")
        text = old.rstrip("\n") + "\n" + head
    # Staged beside, loaded as qseries will load it, then put in place.
    stage = Path(tempfile.mkdtemp(prefix="import-", dir=scratch))
    for name, data in files.items():
        target = stage / name
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or ".git" in parts:
            raise ImportError_(
                f"{given}: a path of the series would leave its folder: {name!r}",
                "import a series whose files are paths inside QEMU's tree",
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (stage / SERIES_FILE).write_text(text, encoding="utf-8")
    try:
        series_mod.load(stage / SERIES_FILE, generators.specs())
    except QSeriesError as err:
        # What git took but a series cannot hold: named by its key
        # (versions.vN.patches[K].author), not by the staged file.
        said = str(err).split(": ", 1)[-1]
        raise ImportError_(
            f"{given}: what was read cannot be a series: {said}",
            "fix that commit or mail, then import again",
        ) from None
    if (dest / folder).exists():
        raise ImportError_(
            f"{given}: {dest / folder} exists already", "import into a new folder"
        )
    dest.mkdir(parents=True, exist_ok=True)
    placed = dest / folder
    if (stage / folder).exists():
        # Copied beside (the work dir may be another file system), then
        # renamed: the version's folder appears whole.
        partial = dest / f".{folder}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(stage / folder, partial)
        os.replace(partial, placed)
    try:
        atomic.write_text(dest / SERIES_FILE, text)
    except BaseException:
        shutil.rmtree(placed, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return dest / SERIES_FILE


# -- the two ways in -------------------------------------------------------


def _version_entry(
    author: Identity,
    date: str,
    base_version: str,
    base_commit: str | None,
    cover: tuple[str, str],
    patches: list[dict[str, object]],
    message_id: str | None = None,
) -> dict[str, object]:
    qv = QemuVersion.parse(base_version)
    entry: dict[str, object] = {
        "author": str(author),
        "date": date,
        "base": _base_range(qv),
        "target": base_version,
    }
    if base_commit:
        entry["base-commit"] = base_commit
    if message_id:
        entry["message-id"] = message_id
    entry["cover"] = {"subject": cover[0], "body": cover[1].rstrip("\n") + "\n"}
    entry["patches"] = patches
    return entry


def _patches(
    g: Git, commits: list[Commit], written: Written, scratch: Path
) -> list[dict[str, object]]:
    out = []
    for i, commit in enumerate(commits, 1):
        changes = changes_of(g, commit, i, "V", written, scratch)
        out.append(patch_entry(commit, changes))
    return out


def _scratch(workdir: WorkDir) -> Path:
    return Path(tempfile.mkdtemp(prefix="import-", dir=workdir.sub("tmp")))


def _signer(g: Git, sha: str, given: str) -> tuple[Identity, str]:
    """Who committed sha, and when: the maintainer of a branch."""
    head = g.run("cat-file", "commit", sha, strip=False).partition("\n\n")[0]
    m = re.search(r"^committer (.*) <(.*)> (\d+) ([+-]\d{4})$", head, re.M)
    if not m:
        raise ToolError(f"{given}: commit {sha[:12]} has no committer line git reads")
    return _identity(given, m[1], m[2]), _git_date(m[3], m[4])


def _qemu_version(g: Git, commit: str, given: str) -> str:
    text = g.try_run("show", f"{commit}:VERSION")
    try:
        QemuVersion.parse((text or "").strip())
    except ValueError:
        text = None
    if not text:
        raise ImportError_(
            f"{given}: not a QEMU tree (no VERSION file at {commit[:12]})",
            "import from a QEMU checkout",
        )
    return text.strip()


def _branch_cover(g: Git, topic: str, commits: list[Commit]) -> tuple[str, str, str]:
    """The cover from the branch's description (as git format-patch
    --cover-from-description reads it), or one made up, and a note."""
    described = g.try_run("config", "--get", f"branch.{topic}.description")
    if described and described.strip():
        subject, _, body = described.strip().partition("\n\n")
        if subject.strip() and "\n" not in subject.strip():
            return subject.strip(), body.strip() or subject.strip(), ""
    if len(commits) == 1:
        subject, body = commits[0].subject, commits[0].body or commits[0].subject
    else:
        subject = f"{topic}: {len(commits)} patches"
        body = "\n".join(f"- {c.subject}" for c in commits)
    return (
        subject,
        body,
        "the branch has no description (git branch --edit-description): "
        "the cover letter is made up; edit its subject and body",
    )


def import_branch(workdir: WorkDir, tree: Path, rng: str, dest: Path) -> Imported:
    """A series from BASE..TOPIC of the checkout tree (only read)."""
    given = f"--tree {tree}"
    top = Git(tree).try_run("rev-parse", "--show-toplevel") if tree.is_dir() else None
    if top is None:
        raise ImportError_(f"{given}: is not a git checkout", "pass a QEMU checkout")
    g = Git(Path(top))
    existing = _existing(dest, f"--to {dest}")
    base, shas = read_range(g, rng, f"--range {rng}", given)
    base_version = _qemu_version(g, base, f"--range {rng}")
    commits = [read_commit(g, sha, given) for sha in shas]
    scratch = _scratch(workdir)
    try:
        written = Written()
        patches = _patches(g, commits, written, scratch)
        topic = rng.split("..", 1)[1]
        subject, body, note = _branch_cover(g, topic, commits)
        if note:
            written.notes.append(note)
        author, date = _signer(g, shas[-1], given)
        version = _version_entry(
            author, date, base_version, base, (subject, body), patches
        )
        path = write_series(
            dest, f"--to {dest}", existing, version, "PATCH", written, None, scratch
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _imported(path, base, written, len(commits))


def _imported(path: Path, base: str | None, written: Written, n: int) -> Imported:
    series = series_mod.load(path, generators.specs())
    version = series.version(None)
    return Imported(path, version.name, tuple(written.notes), base, n)


# -- a thread --------------------------------------------------------------


def _prefix(subject: str) -> str:
    """'RFC PATCH' of '[RFC PATCH v2 1/3] ...'."""
    m = re.match(r"\s*\[([^\]]*)\]", subject)
    if not m:
        return "PATCH"
    words = [w for w in m[1].split() if not re.fullmatch(r"v\d+|\d+/\d+", w, re.I)]
    return " ".join(words) or "PATCH"


def _cover_text(body: str) -> str:
    """The blurb of a cover letter: before git's shortlog and diffstat,
    without the base-commit line and the signature."""
    m = SHORTLOG.search(body)
    text = body[: m.start()] if m else body
    text = BASE_COMMIT.sub("", text)
    text = re.split(r"^-- $", text, maxsplit=1, flags=re.M)[0]
    return text.strip()


def _sent_identity(mail_from: str, given: str) -> Identity:
    name, address = email.utils.parseaddr(mail_from)
    return _identity(given, name or address, address)


def _sent_date(value: str, given: str) -> str:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise ImportError_(
            f"{given}: its Date '{value}' is not a date", "fix the mail's Date header"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return _checked_date(when.isoformat(), given)


def _thread_base(
    workdir: WorkDir, what: str, tree: Path | None, base_commit: str | None
) -> BaseTree:
    """The base a thread names (its base-commit), from --tree or from
    the bases qseries fetches; refused when none carries it."""
    if tree is not None:
        return source_mod.tree_base(workdir, tree, base_commit)
    base = source_mod.get_base(
        workdir,
        SourceSpec(),
        VersionRange.parse(series_mod.DEFAULT_BASE_RANGE),
    )
    if base_commit is not None and base.commit != base_commit:
        raise ImportError_(
            f"{what}: the thread is based on commit {base_commit[:12]} "
            f"(its base-commit), which no base qseries fetches is: "
            f"{base.describe()} is {base.commit[:12]}",
            f"pass --tree with a QEMU checkout that has {base_commit[:12]}",
        )
    if base_commit is None:
        say(f"{what}: the thread names no base-commit: taking {base.describe()}")
    return base


def _apply_mail(
    base: BaseTree,
    index: Path,
    parent: str,
    mailfile: Path,
    scratch: Path,
    named: str,
    signer: dict[str, str],
) -> tuple[str, str]:
    """git am's reading of one mail, applied onto parent with a private
    index: the new commit and the mail's subject."""
    msg, patch = scratch / "msg", scratch / "patch"
    info = Git(scratch).run("mailinfo", str(msg), str(patch), stdin_path=mailfile)
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line)
    subject = fields.get("Subject", "").strip()
    if "diff --git " not in patch.read_text(encoding="utf-8", errors="replace"):
        raise ImportError_(f"{named} changes no file", "drop it from the thread")
    g = Git(base.root)
    env = {"GIT_INDEX_FILE": str(index)}
    g.run("read-tree", parent, env=env)
    argv = git_argv("apply", "--cached", "--whitespace=nowarn", str(patch))
    ran = run_bounded(
        argv, {**git_env(), **env}, GIT_TIMEOUT, cwd=base.root, keep=tuple(env)
    )
    if ran.timed_out:
        raise CommandTimeout(argv, GIT_TIMEOUT)
    if ran.returncode != 0:
        hunks = patch.read_text(encoding="utf-8", errors="replace")
        raise ImportError_(
            f"{named}: {diff_kind.conflict(hunks, ran.stderr)} on {base.describe()}",
            "pass --tree with a QEMU checkout at the commit the thread is based on",
        )
    tree = g.run("write-tree", env=env)
    # As git am takes them (a name with a comma, "Last, First", is one).
    author = _identity(named, fields.get("Author", ""), fields.get("Email", ""))
    when = _sent_date(fields.get("Date", ""), named)
    message = subject + "\n\n" + msg.read_text(encoding="utf-8", errors="replace")
    commit = g.run(
        "commit-tree",
        tree,
        "-p",
        parent,
        "-m",
        message.strip("\n"),
        env={
            **signer,
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_AUTHOR_DATE": when,
        },
    )
    return commit, subject


def import_mbox(
    workdir: WorkDir, mbox: Path, dest: Path, tree: Path | None = None
) -> Imported:
    """A series from the newest complete version of a mailed thread."""
    what = f"--mbox {mbox}"
    existing = _existing(dest, f"--to {dest}")
    scratch = _scratch(workdir)
    try:
        thread = mbox_mod.read_thread(mbox, workdir, scratch)
        firsts = [thread.cover, thread.patches[0]]
        base_commit = next(
            (
                m[1]
                for mail in firsts
                if mail is not None
                for m in [BASE_COMMIT.search(mail.body)]
                if m
            ),
            None,
        )
        base = _thread_base(workdir, what, tree, base_commit)
        head = thread.cover or thread.patches[0]
        signer_id = _sent_identity(head.header("From"), what)
        signer_date = _sent_date(str(head.message.get("Date", "")), what)
        signer = {
            "GIT_COMMITTER_NAME": signer_id.name,
            "GIT_COMMITTER_EMAIL": signer_id.email,
            "GIT_COMMITTER_DATE": signer_date,
        }
        parent = base.commit
        commits: list[Commit] = []
        n = len(thread.patches)
        g = Git(base.root)
        for i, (mail, sent, collected) in enumerate(
            zip(thread.patches, thread.sent, thread.trailers, strict=True), 1
        ):
            named = f"{what}: patch {i}/{n} '{mail.subject}'"
            mailfile = sent.mail.path if sent is not None else mail.path
            parent, _ = _apply_mail(
                base, scratch / "index", parent, mailfile, scratch, named, signer
            )
            commit = read_commit(g, parent, what)
            message_id = None
            if sent is not None and not sent.given_id:
                message_id = f"<{sent.msgid}>"
            commits.append(
                dataclasses.replace(
                    commit, message_id=message_id, collected=tuple(collected)
                )
            )
        written = Written()
        written.notes += thread.said
        patches = _patches(g, commits, written, scratch)
        if thread.cover is not None:
            cover = (thread.cover.subject, _cover_text(thread.cover.body))
        else:
            first = commits[0]
            cover = (first.subject, first.body or first.subject)
            written.notes.append(
                "the thread has no cover letter: the one written repeats patch 1; "
                "edit its subject and body"
            )
        cover_id = None
        if thread.cover is not None:
            found = re.search(
                r"<[^<>@\s]+@[^<>@\s]+>",
                thread.cover.header("Message-Id")
                or str(thread.cover.message.get("Message-Id", "")),
            )
            cover_id = found[0] if found else None
        version = _version_entry(
            signer_id,
            signer_date,
            base.version,
            base.commit if base.kind != "debian" else base_commit,
            cover,
            patches,
            cover_id,
        )
        sent_subject = thread.sent[0].subject if thread.sent[0] else ""
        path = write_series(
            dest,
            f"--to {dest}",
            existing,
            version,
            _prefix(sent_subject),
            written,
            thread.revision,
            scratch,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _imported(path, base_commit or base.commit, written, n)
