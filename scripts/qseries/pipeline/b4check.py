"""qseries as a check command of `b4 review` (b4 0.16): `qseries b4-check`.

b4 runs the commands a reviewer names in git config
(b4.review-series-check-cmd, b4.review-perpatch-check-cmd) in their
QEMU checkout, one message on stdin: for a series check the cover
letter (or the one patch), for a per-patch check each patch in turn.
When b4 tracks the series, B4_TRACKING_FILE names a JSON copy of its
tracking data: the change-id, whose review branch b4/review/<change-id>
holds the series on its base-commit (its last commit is b4's own, with
no change), and the blob of the thread b4 keeps in the checkout.  b4
reads back a JSON list of {tool, status: pass|warn|fail, summary, url,
details}; anything else it turns into a failure of its own.

A series check imports the series (the review branch where the
checkout has it, else the thread b4 keeps, else the message itself
when it is the one patch) into a series directory of the work dir,
never into the checkout, and runs it as any series: generate, check,
build, and the tests the change touches with their control (a lab's
proof where the series names one), with the reports.  A per-patch
check runs only the checks of that one mail, with the base's checkers:
its diff, checkpatch.pl, Signed-off-by, subject, To/Cc.  Each answers
one entry, whose url is the report; whatever goes wrong (bad input
included) is that entry's failure, in one line.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path

from ..core.mail import Mail, diff_errors, read_mail
from ..core.results import FAIL, SKIP, Result
from ..core.versions import VersionRange
from ..ground import proc
from ..ground.console import say
from ..ground.errors import QSeriesError, UsageError
from ..ground.gitutil import Git
from ..ground.workdir import WorkDir
from ..mail import importer
from ..qemu import check as check_mod
from ..qemu.source import MARKER, BaseTree, SourceSpec, debian_upload, get_base
from . import graph
from .stages import Outcome, Request

TOOL = "qseries"
TRACKING = "B4_TRACKING_FILE"
REVIEW_BRANCH = "b4/review/"
# Where a series check keeps what it imports, and its reports (per
# series: the change-id, or the message's Message-Id).
FOLDER = "b4-check"
# What a series check runs on the imported series (with the reports).
SERIES_STAGES = frozenset({"generate", graph.CHECK, graph.CONTROL, graph.TEST})
# The base a thread names (git format-patch --base).
BASE_COMMIT = re.compile(rb"^base-commit: ([0-9a-f]{40})$", re.M)


@dataclass(frozen=True)
class Verdict:
    """The one entry b4 reads back."""

    status: str  # pass, warn or fail
    summary: str
    url: str = ""
    details: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "tool": TOOL,
            "status": self.status,
            "summary": self.summary,
            "url": self.url,
            "details": self.details,
        }


@dataclass(frozen=True)
class Tracked:
    """What b4's tracking file says of the series (those of its keys
    qseries reads)."""

    change_id: str
    base_commit: str | None
    first_patch: str | None
    thread_blob: str | None


def read_tracking(environ: dict[str, str]) -> Tracked | None:
    """The tracked series B4_TRACKING_FILE names, if b4 gave one."""
    name = environ.get(TRACKING)
    if not name:
        return None
    where = f"{TRACKING}={name}"
    try:
        data = json.loads(Path(name).read_text())
    except OSError as err:
        raise UsageError(
            f"{where}: cannot be read ({err.strerror})", "run qseries from b4 review"
        ) from None
    except ValueError:
        raise UsageError(
            f"{where}: is not JSON", "it is b4's tracking data: run from b4 review"
        ) from None
    series = data.get("series") if isinstance(data, dict) else None
    if not isinstance(series, dict) or not isinstance(series.get("change-id"), str):
        raise UsageError(
            f"{where}: has no series.change-id", "it is b4's tracking data"
        )

    def text(key: str) -> str | None:
        value = series.get(key)
        return value if isinstance(value, str) and value else None

    return Tracked(
        series["change-id"],
        text("base-commit"),
        text("first-patch-commit"),
        text("thread-blob"),
    )


def parse_message(data: bytes) -> EmailMessage:
    """The message b4 gave on stdin; refused when it is none."""
    if not data.strip():
        raise UsageError(
            "no message on stdin", "b4 gives one: run qseries b4-check from b4 review"
        )
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    if not message.get("Subject") and not message.get("Message-Id"):
        raise UsageError(
            "stdin is not a mail (no Subject, no Message-Id)",
            "b4 gives the message to check: run qseries b4-check from b4 review",
        )
    return message


def series_key(tracked: Tracked | None, message: EmailMessage, data: bytes) -> str:
    """The folder name of a series in the work dir: its change-id, or a
    digest of its Message-Id (of the bytes when it has none)."""
    if tracked is not None:
        safe = "".join(
            c if c.isalnum() or c in "-_." else "_" for c in tracked.change_id
        )
        if safe.strip("._"):
            return safe[:80]
    ident = str(message.get("Message-Id") or "").strip().encode() or data
    return "msg-" + hashlib.sha256(ident).hexdigest()[:16]


def _has_diff(message: EmailMessage) -> bool:
    """Is the message a patch (its body decoded, as git am reads it)?"""
    if message.is_multipart():
        return False
    payload = message.get_payload(decode=True)
    body = payload if isinstance(payload, bytes) else b""
    return b"\ndiff --git " in b"\n" + body


# -- the base ------------------------------------------------------------------


def cached_debian(workdir: WorkDir, commit: str | None) -> str | None:
    """The Debian version of a base tree of the work dir whose commit is
    commit (its trees are committed deterministically: a branch made on
    one carries that commit as its base), if there is one."""
    trees = workdir.path / "trees"
    if commit is None or not trees.is_dir():
        return None
    for tree in sorted(trees.glob("debian-*")):
        try:
            data = json.loads((tree / ".git" / MARKER).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("commit") == commit:
            debian = data.get("debian_version")
            if isinstance(debian, str) and debian:
                return debian
    return None


def spec_for(workdir: WorkDir, spec: SourceSpec, commit: str | None) -> SourceSpec:
    """The base to run on: the work dir's Debian tree of that commit
    when it has one (its build directory is warm), else the base the
    command was given (the reviewer's checkout)."""
    debian = cached_debian(workdir, commit)
    if debian is not None and spec.base_version is None and spec.git_url is None:
        return SourceSpec(base_version=debian)
    return spec


def checkers_base(workdir: WorkDir, spec: SourceSpec, commit: str | None) -> BaseTree:
    """The tree whose checkers a per-patch check runs."""
    debian = cached_debian(workdir, commit)
    if debian is not None:
        found = debian_upload(workdir, debian)
        if isinstance(found, BaseTree):
            return found
    return get_base(workdir, spec, _ANY, commit)


# Any QEMU version: a per-patch check names no version of a series.
_ANY = VersionRange.parse(">=0")


# -- the series ----------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """Where the series to import is: a range of the checkout, or an mbox."""

    what: str  # said in the verdict
    rng: str | None = None
    mbox: Path | None = None


def find_series(
    topdir: Path,
    tracked: Tracked | None,
    message: EmailMessage,
    data: bytes,
    scratch: Path,
) -> Found:
    """The review branch, else the thread b4 keeps, else the message."""
    git = Git(topdir)
    if tracked is not None:
        branch = REVIEW_BRANCH + tracked.change_id
        tip = git.try_run("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
        if tip is not None:
            # The branch's last commit is b4's tracking commit: the series
            # is below it, from the first patch b4 applied.
            start = (
                f"{tracked.first_patch}~1"
                if tracked.first_patch
                else tracked.base_commit
            )
            if start is None:
                raise UsageError(
                    f"{TRACKING}: names neither first-patch-commit nor base-commit "
                    f"of {branch}",
                    "let b4 track the series again",
                )
            base = git.rev(start)
            top = git.rev(f"{tip}~1")
            return Found(f"branch {branch}", rng=f"{base}..{top}")
        blob = tracked.thread_blob
        if blob is not None and git.try_run("cat-file", "-e", blob) is not None:
            mbox = scratch / "thread.mbox"
            mbox.write_text(git.run("cat-file", "blob", blob, strip=False))
            return Found(f"the thread b4 keeps ({blob[:12]})", mbox=mbox)
    if _has_diff(message):
        mbox = scratch / "message.mbox"
        head = (
            b""
            if data.startswith(b"From ")
            else b"From b4-check Thu Jan  1 00:00:00 1970\n"
        )
        mbox.write_bytes(head + data)
        return Found("the message", mbox=mbox)
    raise UsageError(
        "only the cover letter is at hand: b4 tracks no review branch or "
        "thread of this series",
        "track the series in b4 review (b4 keeps its branch and thread), then "
        "run the check again",
    )


def import_series(
    workdir: WorkDir, topdir: Path, found: Found, dest: Path
) -> importer.Imported:
    """The series, imported afresh into dest (what an earlier check of the
    same series left there goes first: dest is qseries' own)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if found.rng is not None:
        return importer.import_branch(workdir, topdir, found.rng, dest)
    assert found.mbox is not None
    # A thread based on a tree the work dir has is imported on it; any
    # other on the reviewer's checkout (which import then clones).
    named = BASE_COMMIT.search(found.mbox.read_bytes())
    commit = named[1].decode() if named else None
    tree = None if cached_debian(workdir, commit) is not None else topdir
    return importer.import_mbox(workdir, found.mbox, dest, tree=tree)


def verdict_of(
    results: Sequence[Result], facts: Sequence[str], url: str, said: str
) -> Verdict:
    """One entry for the run: fail when anything failed, else pass.  The
    summary says what ran on what, and names the first failure (or
    counts what passed); the details are every result, as the list of
    findings b4 review's TUI shows one by one."""
    failed = [r for r in results if r.status == FAIL]
    skipped = sum(r.status == SKIP for r in results)
    findings = [
        {
            "status": {FAIL: "fail", SKIP: "skip"}.get(r.status, "pass"),
            "state": r.status.lower(),
            "context": r.name,
            "description": "\n    ".join([r.detail, *r.items]),
        }
        for r in results
    ]
    findings += [
        {"status": "pass", "state": "note", "context": "run", "description": f}
        for f in facts
    ]
    details = json.dumps(findings, indent=1)
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        summary = (
            f"{len(failed)} of {len(results)} failed: {first.name}: "
            f"{first.detail}{more}"
        )
        return Verdict("fail", f"{said}: {summary}", url, details)
    if not results:
        return Verdict("fail", f"{said}: nothing was checked", url, details)
    counts = f"{len(results) - skipped} passed, {skipped} skipped"
    note = f"; {facts[0]}" if facts else ""
    return Verdict("pass", f"{said}: {counts}{note}", url, details)


def series_check(
    request: Request,
    workdir: WorkDir,
    topdir: Path,
    data: bytes,
    environ: dict[str, str],
    run_series: Callable[[Request], Outcome],
) -> Verdict:
    """Import the series, then check, build and test it with the reports."""
    message = parse_message(data)
    tracked = read_tracking(environ)
    key = series_key(tracked, message, data)
    dest = workdir.path / "work" / FOLDER / key
    with tempfile.TemporaryDirectory(dir=workdir.sub("tmp")) as tmp:
        found = find_series(topdir, tracked, message, data, Path(tmp))
        say(f"b4-check: importing {found.what}")
        imported = import_series(workdir, topdir, found, dest)
    for note in imported.notes:
        say(f"b4-check: {note}")
    report_dir = workdir.path / "reports" / FOLDER / key
    one = replace(
        request,
        series_file=imported.series_file,
        spec=spec_for(workdir, request.spec, imported.base_commit),
        version=imported.version,
        stages=SERIES_STAGES,
        reports=True,
        report_dir=report_dir,
        patches_root=dest / "patches",
    )
    try:
        outcome = run_series(one)
    except QSeriesError as err:
        # The run's reports say what ran before it stopped, where it
        # wrote them.
        url = _url(report_dir) if (report_dir / "summary.md").is_file() else ""
        return Verdict("fail", f"{imported.version} of {found.what}: {err}", url)
    said = f"{imported.version} of {found.what} on " + (
        outcome.base.describe() if outcome.base else "its base"
    )
    url = _url(outcome.report_dir) if outcome.report_dir else ""
    return verdict_of(outcome.results, outcome.facts, url, said)


def _url(directory: Path) -> str:
    return (directory / "summary.md").absolute().as_uri()


# -- one patch -----------------------------------------------------------------


def patch_checks(mail: Mail, base: BaseTree, workdir: WorkDir) -> list[Result]:
    """The checks of one patch mail that need no other: its diff, and
    the base's checkpatch.pl and get_maintainer.pl on it."""
    if mail.is_cover:
        return [Result("mail", SKIP, "a mail with no diff: nothing to check")]
    errors = diff_errors(mail.text)
    if errors is not None:
        first = errors[0] if errors else "git apply cannot read its diff"
        return [Result("mail", FAIL, f"{mail.name}: {first}")]
    results = [Result("mail", "pass", f"{mail.name}: its diff is sound")]
    results.append(check_mod.check_checkpatch(base.root, [mail], workdir))
    results.append(check_mod.check_signoff([mail]))
    results.append(check_mod.check_subjects([mail]))
    results.append(check_mod.check_maintainers(base.root, [mail], True, workdir))
    return results


def patch_check(
    request: Request, workdir: WorkDir, data: bytes, environ: dict[str, str]
) -> Verdict:
    parse_message(data)
    tracked = read_tracking(environ)
    base = checkers_base(
        workdir, request.spec, tracked.base_commit if tracked else None
    )
    with tempfile.TemporaryDirectory(dir=workdir.sub("tmp")) as tmp:
        path = Path(tmp) / "patch.mbox"
        path.write_bytes(data)
        mail = read_mail(path, Path(tmp), label="patch")
        results = patch_checks(mail, base, workdir)
        where = f"{mail.name} with the checkers of {base.describe()}"
    verdict = verdict_of(results, [], "", where)
    return verdict


# -- the command ------------------------------------------------------------------


def answer(
    request: Request,
    workdir: WorkDir,
    topdir: Path,
    per_patch: bool,
    data: bytes,
    run_series: Callable[[Request], Outcome],
    environ: dict[str, str] | None = None,
) -> Verdict:
    """The verdict b4 reads; qseries' own errors are a failed verdict."""
    env = dict(os.environ if environ is None else environ)
    try:
        if per_patch:
            return patch_check(request, workdir, data, env)
        return series_check(request, workdir, topdir, data, env, run_series)
    except QSeriesError as err:
        return Verdict("fail", str(err))
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        return Verdict("fail", f"{where}{err.strerror or err}")
    except (proc.SubprocessError, RuntimeError, TimeoutError) as err:
        return Verdict("fail", f"{type(err).__name__}: {err}")
