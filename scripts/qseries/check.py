"""check: prove a series against a real QEMU tree with QEMU's own tools.

Each check returns a Result; one failing check does not stop the others,
except that nothing can be checked in a tree the series does not apply
to.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

from . import generate as gen
from . import qapi_probe
from .errors import QSeriesError, SourceError, ToolError, UsageError
from .generators import COMPLETION_EVENT, PREPARE_EVENT
from .gitutil import Git
from .report import FAIL, PASS, SKIP, Result
from .series import Series, Version
from .source import (
    BaseTree,
    SourceSpec,
    WorkDir,
    debian_base,
    get_base,
    say,
)

SUBJECT_MAX = 76
COMMITTER = {
    "GIT_COMMITTER_NAME": "qseries check",
    "GIT_COMMITTER_EMAIL": "qseries@localhost",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+00:00",
}


@dataclass(frozen=True)
class Mail:
    path: Path
    message: EmailMessage
    subject: str  # without the [PATCH ...] prefix
    numbered: str  # "1/2", for messages

    @property
    def is_cover(self) -> bool:
        return "\ndiff --git " not in "\n" + self.body

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        if isinstance(payload, bytes):
            return payload.decode("utf-8", errors="replace")
        return str(self.message.get_payload())


def read_mail(path: Path) -> Mail:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    raw = " ".join(str(message.get("Subject", "")).split())
    m = re.match(r"\[[^\]]*?(\d+/\d+)?\]\s*(.*)", raw)
    subject = m[2] if m else raw
    numbered = m[1] if m and m[1] else path.name
    return Mail(path, message, subject, numbered)


def load_mails(patches: Path | None, mbox: Path | None, workdir: WorkDir) -> list[Mail]:
    if mbox is not None:
        if not mbox.is_file():
            raise UsageError(f"--mbox {mbox}: no such file")
        outdir = Path(tempfile.mkdtemp(prefix="mbox-", dir=workdir.sub("tmp")))
        Git(workdir.path).run("mailsplit", "-b", f"-o{outdir}", str(mbox.absolute()))
        files = sorted(outdir.iterdir())
    else:
        assert patches is not None
        files = sorted(patches.glob("*.patch"))
        if not files:
            raise UsageError(
                f"{patches} holds no patches", "run 'qseries generate' first"
            )
    return [read_mail(f.absolute()) for f in files]


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
    tree: Path, patches: list[Mail], origin: BaseTree | None = None
) -> Result:
    """git am, patch by patch.

    On a base other than the one the series was generated on (a
    backport), a patch whose context differs is retried with a 3-way
    merge, as a maintainer would: `git am -3`, with the objects of the
    generation base at hand so that git finds the preimages.
    """
    g = Git(tree)
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
        return Result(
            "apply",
            FAIL,
            f"patch {mail.numbered} '{mail.subject}' does not apply",
            [out]
            + [f"not tried: {m.numbered} '{m.subject}'" for m in patches[i + 1 :]],
        )
    how = "git am" + (" (-3 for some)" if merged else "")
    return Result("apply", PASS, f"{len(patches)} patch(es) applied with {how}", merged)


def _am_failure(g: Git, mail: Mail) -> str:
    """Which file and hunk of mail fails, from git apply --check."""
    proc = subprocess.run(
        ["git", "apply", "--check", "--verbose", str(mail.path)],
        cwd=g.path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
    )
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


def check_qapi(tree: Path, version: Version, workdir: WorkDir) -> Result:
    probe = subprocess.run(
        [
            sys.executable,
            qapi_probe.__file__,
            str(tree),
            PREPARE_EVENT,
            COMPLETION_EVENT,
        ],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if probe.returncode != 0:
        tail = probe.stderr.strip().splitlines()[-1:] or ["no output"]
        return Result("qapi", FAIL, f"QEMU's QAPI code crashed: {tail[0]}")
    data = json.loads(probe.stdout)
    if "error" in data:
        return Result(
            "qapi",
            FAIL,
            "QEMU's QAPI code rejects the schema",
            data["error"].splitlines(),
        )
    events = data["events"]
    prepare, completion = events[PREPARE_EVENT], events[COMPLETION_EVENT]
    if prepare is None:
        return Result("qapi", FAIL, f"the patched schema has no {PREPARE_EVENT} event")
    problems: list[str] = []
    if completion is None:
        problems.append(f"the schema has no {COMPLETION_EVENT} to compare with")
    elif prepare["members"] != completion["members"]:
        problems.append(
            f"members {prepare['members']} differ from {COMPLETION_EVENT}'s "
            f"{completion['members']}"
        )
    for member in prepare["members"]:
        if not prepare["docs"].get(member["name"]):
            problems.append(f"member '{member['name']}' is not documented")
    if prepare["since"] != version.since:
        problems.append(
            f"Since: is {prepare['since']!r}, the series records {version.since!r}"
        )
    gen_problem = _qapi_gen(tree, workdir)
    if gen_problem:
        problems.append(gen_problem)
    if problems:
        return Result("qapi", FAIL, f"{PREPARE_EVENT} at {prepare['where']}", problems)
    names = ", ".join(m["name"] for m in prepare["members"])
    return Result(
        "qapi",
        PASS,
        f"{PREPARE_EVENT}({names}) matches {COMPLETION_EVENT}, documented, "
        f"Since: {prepare['since']}; qapi-gen.py ok",
    )


def _qapi_gen(tree: Path, workdir: WorkDir) -> str | None:
    """Run the tree's qapi-gen.py on the whole schema, as the build does."""
    with tempfile.TemporaryDirectory(dir=workdir.sub("tmp")) as out:
        proc = subprocess.run(
            [
                sys.executable,
                str(tree / "scripts" / "qapi-gen.py"),
                "-o",
                out,
                "-b",
                str(tree / "qapi" / "qapi-schema.json"),
            ],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            return (
                "qapi-gen.py: " + (proc.stderr.strip().splitlines() or ["failed"])[-1]
            )
        events = Path(out, "qapi-events-vfio.h")
        if events.exists() and "qapi_event_send_vfio_migration_prepare" not in (
            events.read_text()
        ):
            return "qapi-gen.py did not generate qapi_event_send_vfio_migration_prepare"
    return None


def run_perl(
    tree: Path, script: str, args: list[str], workdir: WorkDir
) -> subprocess.CompletedProcess[str]:
    """One of the tree's perl scripts, run from the tree's top."""
    try:
        return subprocess.run(
            ["perl", str(tree / "scripts" / script), *args],
            cwd=tree,
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            env=gen.perl_env(workdir),
        )
    except FileNotFoundError:
        raise ToolError("perl is not installed", "run 'make bootstrap'") from None


def check_checkpatch(tree: Path, patches: list[Mail], workdir: WorkDir) -> Result:
    items: list[str] = []
    bad = 0
    for mail in patches:
        proc = run_perl(tree, "checkpatch.pl", ["--no-color", str(mail.path)], workdir)
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


def _addresses(values: list[str]) -> list[tuple[str, str]]:
    return [(n, a.lower()) for n, a in getaddresses(values) if a]


def check_signoff(patches: list[Mail]) -> Result:
    items = []
    for mail in patches:
        author = _addresses([str(mail.message.get("From", ""))])
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


def generation_base(
    cover: Mail | None, check_base: BaseTree, workdir: WorkDir, version: Version
) -> BaseTree | None:
    """The base the committed patches say they were generated on."""
    if cover is None:
        return None
    m = re.search(r"^Base: QEMU \S+ \(Debian qemu (\S+)\)$", cover.body, re.M)
    if m:
        if check_base.debian_version == m[1]:
            return check_base
        return debian_base(workdir, version.base, m[1], refresh=False)
    m = re.search(r"^base-commit: ([0-9a-f]{40})$", cover.body, re.M)
    if m and m[1] == check_base.commit:
        return check_base
    return None


def check_fresh(
    series: Series,
    version: Version,
    mails: list[Mail],
    base: BaseTree | None,
    why: str,
    workdir: WorkDir,
) -> Result:
    """Regenerate on the base the mails name (base) and compare bytes."""
    if base is None:
        return Result("fresh", SKIP, why)
    _, outdir = gen.generate(series, version, base, workdir)
    try:
        fresh = {p.name: p.read_bytes() for p in outdir.glob("*.patch")}
        committed = {m.path.name: m.path.read_bytes() for m in mails}
    finally:
        shutil.rmtree(outdir, ignore_errors=True)
    items = [
        f"{n}: differs from a fresh generate"
        for n in sorted(fresh)
        if n in committed and fresh[n] != committed[n]
    ]
    items += [f"{n}: missing" for n in sorted(set(fresh) - set(committed))]
    items += [
        f"{n}: not generated any more" for n in sorted(set(committed) - set(fresh))
    ]
    if items:
        return Result(
            "fresh", FAIL, f"{version.name} is stale: run 'qseries generate'", items
        )
    return Result("fresh", PASS, f"equal to a fresh generate on {base.describe()}")


def check_maintainers(
    tree: Path, patches: list[Mail], headers: bool, workdir: WorkDir
) -> Result:
    """get_maintainer.pl's list; with headers, the mails' To/Cc must hold it."""
    proc = run_perl(
        tree,
        "get_maintainer.pl",
        ["--no-git-fallback", "--no-rolestats", *[str(m.path) for m in patches]],
        workdir,
    )
    wanted = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not wanted:
        return Result(
            "maintainers",
            FAIL,
            "get_maintainer.pl named nobody",
            proc.stderr.strip().splitlines()[-1:],
        )
    if not headers:
        return Result(
            "maintainers", PASS, "on this base get_maintainer.pl names:", wanted
        )
    missing = []
    for mail in patches:
        have = {
            a
            for _, a in _addresses(
                [str(mail.message.get("To", "")), str(mail.message.get("Cc", ""))]
            )
        }
        missing += [
            f"{mail.numbered}: {w}"
            for w in wanted
            if _addresses([w]) and _addresses([w])[0][1] not in have
        ]
    if missing:
        return Result(
            "maintainers", FAIL, "To/Cc lacks what get_maintainer.pl names", missing
        )
    return Result(
        "maintainers",
        PASS,
        "To/Cc include every address get_maintainer.pl names",
        wanted,
    )


def run_checks(
    series: Series,
    version: Version,
    spec: SourceSpec,
    workdir: WorkDir,
    patches_dir: Path | None,
    mbox: Path | None,
) -> list[Result]:
    mails = load_mails(patches_dir, mbox, workdir)
    try:
        return _run_checks(series, version, spec, workdir, patches_dir, mails)
    finally:
        if mbox is not None and mails:
            shutil.rmtree(mails[0].path.parent, ignore_errors=True)


def _run_checks(
    series: Series,
    version: Version,
    spec: SourceSpec,
    workdir: WorkDir,
    patches_dir: Path | None,
    mails: list[Mail],
) -> list[Result]:
    patches = [m for m in mails if not m.is_cover]
    if not patches:
        raise UsageError("the series has no patches with a diff")
    base = get_base(workdir, spec, version.base)
    say(f"checking {len(patches)} patch(es) on {base.describe()}")
    tree = checkout_for_check(base, workdir)
    results = [Result("base", PASS, base.describe(), [f"commit {base.commit}"])]
    cover = next((m for m in mails if m.is_cover), None)
    why = "the base the patches were generated on is not known here"
    try:
        origin = generation_base(cover, base, workdir, version)
    except SourceError as err:
        origin, why = None, f"cannot get the generation base: {err}"
    applied = check_apply(tree, patches, origin if origin != base else None)
    results.append(applied)
    steps: list[Callable[[], Result]] = []
    if applied.ok:
        steps += [
            lambda: check_qapi(tree, version, workdir),
            lambda: check_checkpatch(tree, patches, workdir),
        ]
    else:
        results += [
            Result(n, SKIP, "the series does not apply") for n in ("qapi", "checkpatch")
        ]
    steps += [lambda: check_signoff(patches), lambda: check_subjects(patches)]
    if patches_dir is not None:
        steps.append(lambda: check_fresh(series, version, mails, origin, why, workdir))
    # The To/Cc headers were computed on the base the series was generated
    # on; another base (a backport) can have other maintainers.
    steps.append(lambda: check_maintainers(tree, patches, origin == base, workdir))
    for step in steps:
        results.append(step())
    return results
