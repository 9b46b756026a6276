"""check: prove a series against a real QEMU tree with QEMU's own tools.

Each check returns a Result; one failing check does not stop the others,
except that nothing can be checked in a tree the series does not apply
to.

QEMU's checkers (checkpatch.pl, get_maintainer.pl, the QAPI code) run
from the base tree as it was before the series: a series is untrusted
input, and one that rewrote scripts/checkpatch.pl would otherwise write
its own verdict and run its code here.  They read the series' patches,
and for QAPI the patched schema; a series that changes a checker is
checked with the base's copy, and the result says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Protocol

from ..core.mail import Mail, MailedSeries, diff_errors, load_mails
from ..core.results import FAIL, PASS, SKIP, Result
from ..core.series import Series, Version
from ..core.versions import upstream_of_debian
from ..ground.console import say, say_once
from ..ground.errors import QSeriesError, SourceError, ToolError, UsageError
from ..ground.gitutil import Git, git_argv, git_env
from ..ground.proc import CommandTimeout, Ran, run_bounded
from ..ground.workdir import WorkDir
from . import build as build_mod
from . import generate as gen
from . import qapi_probe
from .source import BaseTree, SourceSpec, debian_upload, get_base

SUBJECT_MAX = 76
# Time limits: a git command on one mail, and QEMU's scripts (checkpatch
# and get_maintainer on a whole series, qapi-gen on the whole schema).
GIT_STEP_TIMEOUT = 120.0
SCRIPT_TIMEOUT = 600.0
COMMITTER = {
    "GIT_COMMITTER_NAME": "qseries check",
    "GIT_COMMITTER_EMAIL": "qseries@localhost",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+00:00",
}

# The files of a QEMU tree that the checks run or that configure what
# runs: always taken from the base, never from the series.  (MAINTAINERS
# is the base's too, as generate reads it, but a series that adds a file
# changes it as a matter of course: that is not reported.)
CHECKER_FILES = (
    "scripts/checkpatch.pl",
    "scripts/get_maintainer.pl",
    ".get_maintainer.conf",
    "scripts/qapi-gen.py",
)
CHECKER_DIRS = ("scripts/qapi/",)
# Which check each checker file belongs to, for the line that reports it.
CHECKER_OF = {
    "scripts/checkpatch.pl": "checkpatch",
    "scripts/get_maintainer.pl": "maintainers",
    ".get_maintainer.conf": "maintainers",
}


def check_mails(mails: list[Mail], version: str) -> Result:
    """The mails are one whole series: all of version `version`, numbered
    1..M once each (0/M is the cover letter), every patch with a sound diff.

    The numbers come from the subjects, "[PATCH vN n/M]"; a lone mail
    without them counts as 1/1.
    """
    items = [f"{m.name}: cannot parse {h}" for m in mails for h in m.bad_headers]
    items += [
        f"{m.name}: is v{m.version}, not {version}"
        for m in mails
        if f"v{m.version}" != version
    ]
    lone = len(mails) == 1 and mails[0].index is None
    numbered: list[tuple[int, int, Mail]] = []
    for mail in mails:
        index = (1, 1) if lone else mail.index
        if index is None:
            items.append(f"{mail.name}: its subject has no 'n/M' numbering")
        else:
            numbered.append((*index, mail))
    totals = sorted({m for _, m, _ in numbered})
    if len(totals) > 1:
        items.append(f"the mails disagree on M in n/M: {totals}")
    total = max(totals, default=0)
    seen = Counter(n for n, _, _ in numbered)
    items += [f"mail {n}/{total} appears {k} times" for n, k in seen.items() if k > 1]
    items += [f"{mail.name}: n is beyond M" for n, m, mail in numbered if n > m]
    items += [
        f"patch {n}/{total} is missing" for n in range(1, total + 1) if not seen[n]
    ]
    for n, _, mail in numbered:
        damage = _damage(mail) if n >= 1 else None
        if damage:
            items.append(f"{mail.name}: {damage}")
    if items:
        return Result("mails", FAIL, "the mails are not one whole series", items)
    return Result("mails", PASS, f"{version}, patches 1..{total}, every diff sound")


def _damage(mail: Mail) -> str | None:
    """What is wrong with the diff of a patch mail, if anything."""
    if mail.is_cover:
        lines = mail.text.read_bytes().decode("utf-8", "replace").splitlines()
        quoted = [
            n for n, t in enumerate(lines, 1) if re.match(r">[> ]*diff --git ", t)
        ]
        if quoted:
            return (
                f"its diff is quoted ('> diff --git' at line {quoted[0]}); "
                "give the mail as sent, not a reply"
            )
        return "has no diff"
    errors = diff_errors(mail.text)
    if errors is None:
        return None
    what = errors[0] if errors else "git apply cannot read it"
    if what.startswith("corrupt patch at line"):
        what += " (lines wrapped or whitespace-damaged?)"
    return what


def is_checker(path: str) -> bool:
    """Whether a path of a QEMU tree is code or configuration of a checker
    that qseries runs from the tree.  (git refuses a path with '..'.)"""
    if ".." in path.split("/"):
        return False
    return path in CHECKER_FILES or path.startswith(CHECKER_DIRS)


# The paths a diff names: "diff --git a/X b/Y", "--- a/X", "+++ b/Y"
# (a tab ends a path with spaces), renames and copies; git quotes a path
# with unusual characters.
DIFF_PATH = re.compile(
    r"^(?:diff --git (?P<a>\S+) (?P<b>\S+)"
    r"|(?:---|\+\+\+) (?P<side>[^\t\n]+)\t?"
    r"|(?:rename|copy) (?:from|to) (?P<moved>.+))$",
    re.M,
)


def _unquote(path: str) -> str:
    if len(path) > 1 and path[0] == path[-1] == '"':
        raw = path[1:-1].encode("latin-1", "backslashreplace")
        return raw.decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
    return path


def changed_paths(body: str) -> set[str]:
    """The paths of a QEMU tree that the diff of a mail body touches."""
    found: set[str] = set()
    # What comes before the first diff is the message: not read.
    start = ("\n" + body).find("\ndiff --git ")
    if start < 0:
        return found
    for m in DIFF_PATH.finditer(body, start):
        if m["moved"]:
            found.add(_unquote(m["moved"]))
            continue
        for side in (m["a"], m["b"], m["side"]):
            side = _unquote(side or "")
            if side.startswith(("a/", "b/")):
                found.add(side[2:])
    return found


def changed_checkers(patches: list[Mail], base: Path) -> dict[str, list[str]]:
    """For each check, a line for every checker file a patch changes:
    the check ran the copy of the base (a tree at base) instead."""
    notes: dict[str, list[str]] = {}
    for mail in patches:
        for path in sorted(p for p in changed_paths(mail.body) if is_checker(p)):
            if (base / path).is_file():
                how = "checked with the base's copy, not the series'"
            else:
                how = "the base has none; the series' copy is not run"
            check = CHECKER_OF.get(path, "qapi")
            notes.setdefault(check, []).append(f"{mail.name} changes {path}: {how}")
    return notes


def checkout_for_check(base: BaseTree, workdir: WorkDir) -> Path:
    """A worktree of the base in the work dir, reset to the base commit."""
    g = Git(base.root)
    tree = workdir.path / "work" / f"check-{base.root.name}"
    if (tree / ".git").exists() and Git(tree).try_run("rev-parse", "--git-dir"):
        wt = Git(tree)
        wt.try_run("am", "--abort")
        wt.run("checkout", "--quiet", "--force", "--detach", base.commit)
        wt.run("clean", "-q", "-f", "-d", "-x")
    else:
        shutil.rmtree(tree, ignore_errors=True)
        g.run("worktree", "prune")
        tree.parent.mkdir(parents=True, exist_ok=True)
        say(f"checking out {base.describe()} for the check")
        g.run(
            "worktree", "add", "--quiet", "--force", "--detach", str(tree), base.commit
        )
    return tree


def check_apply(
    tree: Path,
    patches: list[Mail],
    origin: BaseTree | None = None,
    origin_gone: str = "",
) -> Result:
    """git am, patch by patch.

    On a base other than the one the series was generated on (a
    backport), a patch whose context differs is retried with a 3-way
    merge, as a maintainer would: `git am -3`, with the objects of the
    generation base at hand so that git finds the preimages.  When that
    base is gone (origin_gone says so), there are no preimages to merge
    with: the patch is retried with one line of context, and the result
    says so, for a human to review.
    """
    g = Git(tree)
    # A base that merged the series already (a newer QEMU): some patches
    # would apply again (an event appended twice), so ask first.
    if already_applied(g, patches):
        return Result(
            "apply",
            SKIP,
            ALREADY,
            [f"{m.numbered} '{m.subject}' applies in reverse" for m in patches],
        )
    merged: list[str] = []
    for i, mail in enumerate(patches):
        try:
            g.run("am", "--quiet", "--no-3way", str(mail.path), env=COMMITTER)
            continue
        except QSeriesError:
            g.try_run("am", "--abort")
        out = _am_failure(g, mail)
        if origin is not None:
            env = {
                **COMMITTER,
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(
                    origin.root / ".git" / "objects"
                ),
            }
            try:
                g.run("am", "--quiet", "--3way", str(mail.path), env=env)
                merged.append(
                    f"{mail.numbered}: {out}; merged 3-way with the "
                    f"blobs of {origin.describe()}"
                )
                continue
            except QSeriesError:
                g.try_run("am", "--abort")
        elif origin_gone:
            try:
                g.run(
                    "am", "--quiet", "--no-3way", "-C1", str(mail.path), env=COMMITTER
                )
                merged.append(
                    f"{mail.numbered}: {out}; applied with 1 line of context, "
                    f"as the generation base {origin_gone}: review it"
                )
                continue
            except QSeriesError:
                g.try_run("am", "--abort")
        return Result(
            "apply",
            FAIL,
            f"patch {mail.numbered} '{mail.subject}' does not apply",
            [out]
            + [f"not tried: {m.numbered} '{m.subject}'" for m in patches[i + 1 :]],
        )
    how = "git am" + (
        (" (-C1 for some)" if origin_gone else " (-3 for some)") if merged else ""
    )
    return Result("apply", PASS, f"{len(patches)} patch(es) applied with {how}", merged)


ALREADY = "already in this base: every patch applies in reverse"
# How a result begins whose skip is of the moment (a download failed):
# a later run can do better, so it is not kept for the same inputs.
NO_ORIGIN = "cannot get the generation base"


def _bounded(
    argv: list[str],
    env: dict[str, str],
    timeout: float,
    cwd: Path | None = None,
    keep: tuple[str, ...] = (),
) -> Ran:
    """argv through the runner; a time limit that runs out, or a program
    that is not there, is an error."""
    try:
        ran = run_bounded(argv, env, timeout, cwd, keep=keep)
    except FileNotFoundError:
        raise ToolError(f"{argv[0]} is not installed", "run 'make bootstrap'") from None
    if ran.timed_out:
        raise CommandTimeout(argv, timeout)
    return ran


def _apply_check(g: Git, mail: Mail, *how: str) -> Ran:
    """git apply --check of one mail in g's worktree, changing nothing."""
    return _bounded(
        git_argv("apply", "--check", *how, str(mail.path)),
        git_env(),
        GIT_STEP_TIMEOUT,
        g.path,
    )


def already_applied(g: Git, patches: list[Mail]) -> bool:
    """Does the base contain the series already (a newer QEMU that merged
    it)?  The patches, last first, must apply in reverse one after the
    other, each on what undoing the later ones left: in a private index,
    so that the worktree, its index and HEAD stay as they are."""
    # The private index lives in the worktree's git dir: a run killed
    # here leaves one file that the next read-tree overwrites, in a place
    # that goes with the tree.
    gitdir = Path(g.run("rev-parse", "--absolute-git-dir"))
    index = gitdir / "qseries-reverse-index"
    env = {**git_env(), "GIT_INDEX_FILE": str(index)}

    def git(*args: str) -> bool:
        ran = _bounded(
            git_argv(*args), env, GIT_STEP_TIMEOUT, g.path, ("GIT_INDEX_FILE",)
        )
        return ran.returncode == 0

    try:
        if not git("read-tree", "HEAD"):
            return False
        return all(
            git("apply", "--cached", "--reverse", str(mail.path))
            for mail in reversed(patches)
        )
    finally:
        index.unlink(missing_ok=True)


def _am_failure(g: Git, mail: Mail) -> str:
    """Which file and hunk of mail fails, from git apply --check."""
    proc = _apply_check(g, mail, "--verbose")
    m = re.search(r"error: patch failed: (\S+):(\d+)", proc.stderr)
    if m:
        return f"{m[1]}: the hunk at line {m[2]} does not match the base"
    m = re.search(
        r"error: (\S+): (does not exist in index|No such file.*)", proc.stderr
    )
    if m:
        return f"{m[1]}: {m[2]}"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    return lines[0] if lines else "git am failed"


def _python(scratch: Path) -> list[str]:
    """Python for QEMU's Python code.  Its bytecode goes to scratch, and
    only bytecode from there is read: none is written into the base, and
    a __pycache__ found beside the base's code (whoever put it there) is
    never run."""
    return [sys.executable, "-X", f"pycache_prefix={scratch / 'pycache'}"]


def _python_env() -> dict[str, str]:
    """No module path but the one the script gives."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def _probe(
    tree: Path, code: Path, names: list[str], workdir: WorkDir
) -> dict[str, Any]:
    """QEMU's own QAPI code, the base's (code), run on the schema of tree
    (see qapi_probe)."""
    with tempfile.TemporaryDirectory(dir=workdir.sub("tmp")) as scratch:
        probe = _bounded(
            [
                *_python(Path(scratch)),
                "-I",
                qapi_probe.__file__,
                str(code),
                str(tree),
                *names,
            ],
            _python_env(),
            SCRIPT_TIMEOUT,
            code,
        )
    if probe.returncode != 0:
        tail = probe.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"crash": tail[0]}
    result: dict[str, Any] = json.loads(probe.stdout)
    return result


QapiOutcome = tuple[str, str, list[str], str]  # where, C symbol, problems, summary


class QapiJudge(Protocol):
    """A lab's reading of the QAPI the series defines (core/lab.py)."""

    def names(self, version: Version) -> list[str]:
        """The events whose members, docs and enums it reads."""
        ...

    def judge(self, version: Version, events: dict[str, Any]) -> Result | QapiOutcome:
        """A failed result, or (where, the C symbol qapi-gen must make,
        problems, summary)."""
        ...


def check_qapi(
    tree: Path,
    version: Version,
    workdir: WorkDir,
    *,
    code: Path,
    judge: QapiJudge | None = None,
) -> Result:
    """The patched schema, read with QEMU's QAPI code (the base's, code):
    it must accept the whole schema, docs included, and qapi-gen.py must
    generate it.  Every definition the series adds must be documented and
    say it is new since the release the series targets.  A lab's judge
    reads the definitions its series is about besides."""
    names = judge.names(version) if judge else []
    data = _probe(tree, code, names, workdir)
    if "crash" in data:
        return Result("qapi", FAIL, f"QEMU's QAPI code crashed: {data['crash']}")
    if "error" in data:
        return Result(
            "qapi",
            FAIL,
            "QEMU's QAPI code rejects the schema",
            data["error"].splitlines(),
        )
    before = _probe(code, code, [], workdir)
    if "definitions" in before:
        added = _added(
            _relative(before["definitions"], code),
            _relative(data["definitions"], tree),
            version,
        )
    else:
        # Without the base's own schema there is nothing to tell new
        # definitions from old ones by.
        added = (["the base's schema could not be read: new definitions unknown"], [])
    symbol: str | None = None
    summary = "QEMU's QAPI code accepts the schema, docs included"
    failed = "what the series adds to the schema is not right"
    problems: list[str] = []
    if judge is not None:
        outcome = judge.judge(version, data["events"])
        if isinstance(outcome, Result):
            return outcome
        where, symbol, problems, summary = outcome
        failed = f"{summary.split(';')[0]} at {where}"
    problems += added[1]
    gen_problem = _qapi_gen(tree, workdir, symbol, code=code)
    if gen_problem:
        problems.append(gen_problem)
    if problems:
        return Result("qapi", FAIL, failed, [*problems, *added[0]])
    return Result("qapi", PASS, f"{summary}; qapi-gen.py ok", added[0])


def _changes_qapi(patches: list[Mail]) -> bool:
    """Whether a patch changes a file of QEMU's QAPI schema."""
    return any(
        path.startswith("qapi/") and path.endswith(".json")
        for mail in patches
        for path in changed_paths(mail.body)
    )


def _relative(definitions: dict[str, Any], tree: Path) -> dict[str, Any]:
    """The definitions with their file:line relative to the tree."""
    top = f"{tree.absolute()}/"
    return {
        name: {**d, "where": d["where"].removeprefix(top)}
        for name, d in definitions.items()
    }


def _added(
    before: dict[str, Any], after: dict[str, Any], version: Version
) -> tuple[list[str], list[str]]:
    """The definitions the series adds, as lines, and what is wrong with
    them: no doc comment, or a 'Since:' other than the target's."""
    lines, problems = [], []
    for name in sorted(set(after) - set(before), key=lambda n: after[n]["where"]):
        d = after[name]
        lines.append(f"new {d['meta']} {name} at {d['where']}, Since: {d['since']}")
        if not d["documented"]:
            problems.append(f"{d['meta']} {name} at {d['where']} has no doc comment")
        elif d["since"] != version.since:
            problems.append(
                f"{d['meta']} {name} at {d['where']}: Since: is {d['since']!r}, "
                f"the series records {version.since!r}"
            )
    return lines, problems


def _qapi_gen(
    tree: Path, workdir: WorkDir, symbol: str | None, *, code: Path
) -> str | None:
    """Run the base's (code's) qapi-gen.py on the whole schema of tree, as
    the build does, and look for symbol (a lab's) in the headers it
    generates."""
    with tempfile.TemporaryDirectory(dir=workdir.sub("tmp")) as out:
        proc = _bounded(
            [
                *_python(Path(out)),
                str(code / "scripts" / "qapi-gen.py"),
                "-o",
                out,
                "-b",
                str(tree / "qapi" / "qapi-schema.json"),
            ],
            _python_env(),
            SCRIPT_TIMEOUT,
            code,
        )
        if proc.returncode != 0:
            return (
                "qapi-gen.py: " + (proc.stderr.strip().splitlines() or ["failed"])[-1]
            )
        headers = sorted(Path(out).rglob("*.h"))
        if not headers:
            return "qapi-gen.py generated no header"
        if symbol is not None and not any(symbol in h.read_text() for h in headers):
            return f"qapi-gen.py did not generate {symbol}"
    return None


def run_perl(base: Path, script: str, args: list[str], workdir: WorkDir) -> Ran:
    """One of the base tree's perl scripts, run from the base's top (where
    they look for MAINTAINERS and the marks of a QEMU tree)."""
    return _bounded(
        ["perl", str(base / "scripts" / script), *args],
        gen.perl_env(workdir),
        SCRIPT_TIMEOUT,
        base,
    )


def check_checkpatch(base: Path, patches: list[Mail], workdir: WorkDir) -> Result:
    """The base's checkpatch.pl on each patch mail."""
    items: list[str] = []
    bad = 0
    for mail in patches:
        proc = run_perl(base, "checkpatch.pl", ["--no-color", str(mail.text)], workdir)
        m = re.search(r"total: (\d+) errors, (\d+) warnings", proc.stdout)
        if not m:
            bad += 1
            items.append(
                f"{mail.numbered}: checkpatch.pl gave no verdict "
                f"(exit {proc.returncode})"
            )
            continue
        errors, warnings = int(m[1]), int(m[2])
        if errors or warnings:
            bad += 1
            items.append(f"{mail.numbered}: {errors} errors, {warnings} warnings")
            items.extend(
                "  " + line
                for line in proc.stdout.splitlines()
                if line.startswith(("ERROR:", "WARNING:"))
            )
    if bad:
        return Result("checkpatch", FAIL, f"{bad} patch(es) not clean", items)
    return Result("checkpatch", PASS, f"{len(patches)} patch(es): 0 errors, 0 warnings")


def _commit_to_build(
    base: BaseTree, tree: Path, workdir: WorkDir, origin: BaseTree | None
) -> str:
    """The commit git am made in tree, as one whose objects the base's
    repository holds. After a 3-way merge with origin's objects at hand
    (origin given), some blobs may be in origin's repository only: the
    diff is read with them at hand and committed anew."""
    head = Git(tree).run("rev-parse", "HEAD")
    if origin is None:
        return head
    env = {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(origin.root / ".git" / "objects")}
    diff = Git(tree).run(
        "diff", "--binary", "--full-index", base.commit, head, env=env, strip=False
    )
    with tempfile.TemporaryDirectory(dir=workdir.sub("tmp")) as tmp:
        patch = Path(tmp) / "series.diff"
        patch.write_text(diff)
        return build_mod.compose(base, [patch], workdir)


def check_compile(
    base: BaseTree, tree: Path, workdir: WorkDir, origin: BaseTree | None = None
) -> Result:
    """Build the object of every C file the series adds or changes, with
    the base's own configure, meson and ninja (and its -Werror), at the
    commit git am made in tree (with origin's objects, if it merged)."""
    if not (tree / "configure").is_file():
        return Result(
            "compile", SKIP, f"{base.describe()} has no configure script to build with"
        )
    try:
        commit = _commit_to_build(base, tree, workdir, origin)
        files = build_mod.changed_c_files(tree, base.commit, commit)
        if not files:
            return Result("compile", SKIP, "the series adds or changes no C file")
        done = build_mod.compile_objects(base, commit, workdir, files)
    except QSeriesError as err:
        return Result("compile", FAIL, f"could not build: {err}")
    unbuilt = [f"{f}: not compiled in this configuration" for f in done.unbuilt]
    if not done.ok:
        shown = build_mod.ERRORS_SHOWN
        errors = [*done.errors[:shown]]
        if len(done.errors) > shown:
            errors.append(f"... {len(done.errors) - shown} more")
        what = ", ".join(done.failed) or "the series"
        return Result(
            "compile",
            FAIL,
            f"{what} does not compile",
            [*errors, *unbuilt, f"the whole log is {done.log}"],
        )
    if not done.compiled:
        return Result(
            "compile",
            SKIP,
            "no C file of the series is built in this configuration",
            unbuilt,
        )
    return Result(
        "compile",
        PASS,
        f"{', '.join(done.compiled)} compile (ninja, {done.steps} steps)",
        unbuilt,
    )


def _addresses(values: list[str]) -> list[tuple[str, str]]:
    return [(n, a.lower()) for n, a in getaddresses(values) if a]


def check_signoff(patches: list[Mail]) -> Result:
    items = []
    for mail in patches:
        author = _addresses([mail.header("From")])
        sobs = [
            (n.strip(), a.strip().lower())
            for n, a in re.findall(
                r"^Signed-off-by: (.*?) <(.*?)>\s*$", mail.body, re.M
            )
        ]
        if not author:
            items.append(f"{mail.numbered}: no From: header")
        elif author[0] not in sobs:
            who = f"{author[0][0]} <{author[0][1]}>"
            items.append(f"{mail.numbered}: no 'Signed-off-by: {who}' (the author)")
    if items:
        return Result("signoff", FAIL, "Signed-off-by does not match the author", items)
    return Result("signoff", PASS, "every patch is signed off by its author")


SUBJECT_RE = re.compile(r"[\w./+-]+(?:, ?[\w./+-]+)*: [A-Z\d\"'(].*")


def check_subjects(patches: list[Mail]) -> Result:
    items = []
    for mail in patches:
        if not SUBJECT_RE.fullmatch(mail.subject):
            items.append(f"{mail.numbered}: '{mail.subject}' is not 'area: Summary'")
        if len(mail.subject) > SUBJECT_MAX:
            items.append(
                f"{mail.numbered}: subject has {len(mail.subject)} characters,"
                f" more than {SUBJECT_MAX}"
            )
    if items:
        return Result("subject", FAIL, "subjects do not follow QEMU's style", items)
    return Result("subject", PASS, f"'area: Summary', at most {SUBJECT_MAX} characters")


def named_generation_base(cover: Mail | None) -> str | None:
    """The Debian version of the base a cover letter says the series was
    generated on ('Based on QEMU 10.2.2, Debian 1:10.2.2+ds-1'), if any."""
    if cover is None:
        return None
    m = re.search(
        r"^(?:Based on QEMU \S+, Debian (\S+)|Base: QEMU \S+ \(Debian qemu (\S+)\))$",
        cover.body,
        re.M,
    )
    return (m[1] or m[2]) if m else None


# In the detail of a result made on what stands in for a generation base
# Debian no longer has (or that did not download this time).
STAND_IN = "in place of the generation base"


@dataclass(frozen=True)
class Origin:
    """The base the mails were generated on, or what stands in for it when
    Debian no longer has it (`gone` says why; `named` is the upload)."""

    base: BaseTree | None
    named: str = ""
    gone: str = ""

    @property
    def exact(self) -> bool:
        return self.base is not None and not self.gone

    def stand_in(self) -> str:
        """'QEMU 10.0.13 (Debian qemu ...), in place of the generation base
        Debian qemu 1:10.2.2+ds-1, which is no longer in the archive'."""
        assert self.base is not None
        return (
            f"{self.base.describe()}, {STAND_IN} "
            f"Debian qemu {self.named}, which {self.gone}"
        )

    def older_than_named(self) -> bool:
        """Whether the stand-in is an older QEMU than the generation base
        (a backport), or the same one: its MAINTAINERS is no newer."""
        assert self.base is not None
        try:
            return self.base.qemu_version <= upstream_of_debian(self.named)
        except QSeriesError:
            return False


def _relation(check_base: BaseTree, named: str) -> str:
    """How the base checked stands to the generation base."""
    try:
        qemu = upstream_of_debian(named)
    except QSeriesError:
        return "another base"
    if check_base.qemu_version < qemu:
        return "a backport"
    if check_base.qemu_version > qemu:
        return "a newer base"
    return "another upload of the same QEMU"


def find_origin(
    cover: Mail | None, check_base: BaseTree, workdir: WorkDir, version: Version
) -> Origin:
    """The base the committed patches say they were generated on.

    When Debian no longer has it (a +ds-2 upload replaced it; sid moved
    to the next QEMU), another upload of the same QEMU stands in if there
    is one, else the base being checked, and a line says so.
    """
    named = named_generation_base(cover)
    if named is not None:
        if check_base.debian_version == named:
            return Origin(check_base)
        found = debian_upload(workdir, named)
        if isinstance(found, BaseTree):
            say_once(
                f"{version.name} was generated on {found.describe()}; checking it "
                f"on {check_base.describe()}, {_relation(check_base, named)}: "
                "fresh and maintainers are checked on the generation base"
            )
            return Origin(found)
        if found.same_qemu is not None:
            stand_in = found.same_qemu
            instead = (
                f"Debian qemu {stand_in.debian_version}, the same QEMU "
                f"{stand_in.version}, stands in for it"
            )
        else:
            stand_in = check_base
            instead = (
                f"no other upload of QEMU {upstream_of_debian(named)} is listed "
                f"({', '.join(found.listed) or 'nothing'}): checking on "
                f"{check_base.describe()} as {_relation(check_base, named)}, "
                "fresh without the base's context and line numbers"
            )
        say_once(
            f"the generation base of {version.name}, Debian qemu {named}, "
            f"{found.why}; {instead}"
        )
        return Origin(stand_in, named, found.why)
    m = re.search(r"^base-commit: ([0-9a-f]{40})$", cover.body if cover else "", re.M)
    if m and m[1] == check_base.commit:
        return Origin(check_base)
    return Origin(None)


def generation_base(
    cover: Mail | None, check_base: BaseTree, workdir: WorkDir, version: Version
) -> BaseTree | None:
    """The base the committed patches were generated on, or the upload of
    the same QEMU (or the base checked) that stands in for it."""
    return find_origin(cover, check_base, workdir, version).base


# Lines of a mail that depend on the base, not on the series: the base
# named in the cover letter, the diffstat, and in diffs the index lines,
# the hunk headers and the context.
DIFFSTAT = re.compile(r" \S.* \| +(?:\d+|Bin)\b.*| \d+ files? changed\b.*")


def without_base(text: str) -> list[str]:
    """A mail without what depends on its base (see DIFFSTAT) and without
    To/Cc (get_maintainer.pl on the base: the maintainers check's)."""
    head, _, body = text.partition("\n\n")
    kept: list[str] = []
    skipping = False
    for line in head.split("\n"):
        if line[:1] not in (" ", "\t"):
            skipping = line.lower().startswith(("to:", "cc:"))
        if not skipping:
            kept.append(line)
    in_diff = False
    for line in body.split("\n"):
        in_diff = in_diff or line.startswith("diff --git ")
        if in_diff and line.startswith((" ", "index ", "@@")):
            continue
        if not in_diff and (line.startswith(gen.BASE_LINE) or DIFFSTAT.fullmatch(line)):
            continue
        kept.append(line)
    return kept


def _without_base_line(data: bytes) -> bytes:
    return re.sub(rb"(?m)^Based on .*$", b"", data)


def check_fresh(
    series: Series,
    version: Version,
    mails: list[Mail],
    origin: Origin,
    why: str,
    workdir: WorkDir,
) -> Result:
    """Regenerate on the base the mails name and compare bytes; when that
    base is gone, on what stands in for it, and compare what the series
    (not the base) decides: messages, headers but To/Cc, changed lines."""
    base = origin.base
    if base is None:
        return Result("fresh", SKIP, why)
    _, outdir = gen.generate(series, version, base, workdir)
    try:
        fresh = {p.name: p.read_bytes() for p in outdir.glob("*.patch")}
        committed = {m.path.name: m.path.read_bytes() for m in mails}
    finally:
        shutil.rmtree(outdir, ignore_errors=True)
    items = [f"{n}: missing" for n in sorted(set(fresh) - set(committed))]
    items += [
        f"{n}: not generated any more" for n in sorted(set(committed) - set(fresh))
    ]
    both = sorted(set(fresh) & set(committed))
    if origin.exact:
        items[:0] = [
            f"{n}: differs from a fresh generate"
            for n in both
            if fresh[n] != committed[n]
        ]
        if items:
            return Result(
                "fresh", FAIL, f"{version.name} is stale: run 'qseries generate'", items
            )
        return Result("fresh", PASS, f"equal to a fresh generate on {base.describe()}")
    items[:0] = [
        f"{n}: its messages or changed lines differ from a fresh generate"
        for n in both
        if without_base(fresh[n].decode("utf-8", "replace"))
        != without_base(committed[n].decode("utf-8", "replace"))
    ]
    if items:
        return Result(
            "fresh",
            FAIL,
            f"{version.name} differs from a fresh generate on {origin.stand_in()}: "
            f"run 'qseries generate' to move it there",
            items,
        )
    if all(
        _without_base_line(fresh[n]) == _without_base_line(committed[n]) for n in both
    ):
        how = "byte for byte but the 'Based on' line"
    else:
        how = (
            "in every message, header and changed line (context, line numbers, "
            "index lines and diffstat come from the base; To/Cc are the "
            "maintainers check's)"
        )
    return Result(
        "fresh", PASS, f"equal to a fresh generate on {origin.stand_in()}, {how}"
    )


def _get_maintainer(
    base: Path, patches: list[Mail], workdir: WorkDir
) -> tuple[list[str], list[str]]:
    """What the base's get_maintainer.pl names for the patches from the
    base's MAINTAINERS, and its error."""
    proc = run_perl(
        base,
        "get_maintainer.pl",
        ["--no-git-fallback", "--no-rolestats", *[str(m.text) for m in patches]],
        workdir,
    )
    wanted = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0:
        return [], proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    return wanted, proc.stderr.strip().splitlines()[-1:]


def check_maintainers(
    base: Path,
    patches: list[Mail],
    headers: bool,
    workdir: WorkDir,
    where: str = "",
    by_name: bool = False,
) -> Result:
    """get_maintainer.pl's list; with headers, the mails' To/Cc must hold it.

    where names the tree when it is not the base checked (the generation
    base, or what stands in for it).  by_name: a person the mails address
    at another address counts (a stand-in older than the generation base
    has an older MAINTAINERS); the difference is listed.
    """
    wanted, error = _get_maintainer(base, patches, workdir)
    on = f" on {where}" if where else ""
    if not wanted:
        return Result("maintainers", FAIL, f"get_maintainer.pl named nobody{on}", error)
    if not headers:
        return Result(
            "maintainers", PASS, "on this base get_maintainer.pl names:", wanted
        )
    missing: list[str] = []
    moved: list[str] = []
    for mail in patches:
        have = _addresses([mail.header("To"), mail.header("Cc")])
        addresses = {a for _, a in have}
        names = {n.strip().lower(): a for n, a in have if n.strip()}
        for w in wanted:
            parsed = _addresses([w])
            if not parsed or parsed[0][1] in addresses:
                continue
            name = parsed[0][0].strip().lower()
            if by_name and name in names:
                note = (
                    f"{parsed[0][0]}: <{parsed[0][1]}> in that MAINTAINERS, "
                    f"<{names[name]}> in the mails"
                )
                if note not in moved:
                    moved.append(note)
                continue
            missing.append(f"{mail.numbered}: {w}")
    if missing:
        return Result(
            "maintainers",
            FAIL,
            f"To/Cc lacks what get_maintainer.pl names{on}",
            missing + moved,
        )
    return Result(
        "maintainers",
        PASS,
        f"To/Cc include every address get_maintainer.pl names{on}"
        + ("; a person at another address counts" if moved else ""),
        wanted + moved,
    )


def run_checks(
    series: Series,
    version: Version,
    spec: SourceSpec,
    workdir: WorkDir,
    patches_dir: Path | None,
    mbox: Path | None,
    mailed: MailedSeries | None = None,
    judge: QapiJudge | None = None,
) -> list[Result]:
    """The checks of patches/vN (patches_dir), or of the version of a
    mailed thread that b4 picks (mbox; `version` is then the one b4
    found; mailed is what b4 made of it, read by the caller)."""
    scratch = Path(tempfile.mkdtemp(prefix="check-", dir=workdir.sub("tmp")))
    try:
        if mbox is None:
            assert patches_dir is not None
            mails = load_mails(patches_dir, scratch)
            return _run_checks(
                series, version, spec, workdir, patches_dir, mails, judge
            )
        if mailed is None:
            raise ValueError("run_checks: an mbox comes with what b4 made of it")
        results = _run_checks(
            series, mailed.version, spec, workdir, None, mailed.mails, judge
        )
        for result in results:
            if result.name == "mails":
                result.items[:0] = [
                    *mailed.left_out,
                    *mailed.said,
                    *(f"b4 collected {t}" for t in mailed.collected),
                ]
        return results
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_checks(
    series: Series,
    version: Version,
    spec: SourceSpec,
    workdir: WorkDir,
    patches_dir: Path | None,
    mails: list[Mail],
    judge: QapiJudge | None = None,
) -> list[Result]:
    numbering = check_mails(mails, version.name)
    patches = [m for m in mails if not m.is_cover]
    if not patches:
        if not numbering.ok:
            return [numbering]
        raise UsageError("the series has no patches with a diff")
    base = get_base(workdir, spec, version.base, version.base_commit)
    say(f"checking {len(patches)} patch(es) on {base.describe()}")
    tree = checkout_for_check(base, workdir)
    results = [Result("base", PASS, base.describe(), [f"commit {base.commit}"])]
    results.append(numbering)
    cover = next((m for m in mails if m.is_cover), None)
    why = "the base the patches were generated on is not known here"
    try:
        origin = find_origin(cover, base, workdir, version)
    except SourceError as err:
        origin, why = Origin(None), f"{NO_ORIGIN}: {err}"
    merge_with = origin.base if origin.base not in (None, base) else None
    gone = f"Debian qemu {origin.named} {origin.gone}" if origin.gone else ""
    applied = check_apply(tree, patches, merge_with, "" if merge_with else gone)
    results.append(applied)
    steps: list[Callable[[], Result]] = []
    if applied.detail == ALREADY:
        results += [
            Result(n, SKIP, "the series is already in this base")
            for n in ("qapi", "checkpatch", "compile")
        ]
    elif applied.ok:
        steps += [
            lambda: (
                check_qapi(tree, version, workdir, code=base.root, judge=judge)
                if judge is not None or _changes_qapi(patches)
                else Result("qapi", SKIP, "the series changes no QAPI schema file")
            ),
            lambda: check_checkpatch(base.root, patches, workdir),
            lambda: check_compile(base, tree, workdir, merge_with),
        ]
    else:
        why_not = "the series does not apply"
        results += [Result(n, SKIP, why_not) for n in ("qapi", "checkpatch", "compile")]
    steps += [lambda: check_signoff(patches), lambda: check_subjects(patches)]
    if patches_dir is not None:
        steps.append(lambda: check_fresh(series, version, mails, origin, why, workdir))
    # The To/Cc headers were computed on the base the series was generated
    # on: they are checked there, whatever base is checked (a backport can
    # have other maintainers).  When Debian no longer has that base, on
    # what stands in for it; a person whose address an older MAINTAINERS
    # gives differently still counts.  A base that merged the series
    # needs no mails.
    if applied.detail == ALREADY:
        results_after = [
            Result("maintainers", SKIP, "the series is already in this base")
        ]
    else:
        results_after = []
        steps.append(lambda: _maintainers(patches, base, origin, workdir))
    for step in steps:
        results.append(step())
    results += results_after
    # The checks ran the base's checkers; a series that changes one is
    # told so where the checker's verdict is.
    for check, notes in changed_checkers(patches, base.root).items():
        for result in results:
            if result.name == check and result.status != SKIP:
                result.items.extend(notes)
    return results


def _maintainers(
    patches: list[Mail], base: BaseTree, origin: Origin, workdir: WorkDir
) -> Result:
    """The maintainers check, with get_maintainer.pl and MAINTAINERS of
    the base (the generation base when known), never the patched tree."""
    if origin.base is None:
        return check_maintainers(base.root, patches, False, workdir)
    where = "" if origin.base == base else origin.base.describe()
    if origin.gone:
        where = origin.stand_in()
    return check_maintainers(
        origin.base.root,
        patches,
        True,
        workdir,
        where,
        by_name=bool(origin.gone) and origin.older_than_named(),
    )
