"""generate: apply the generators to a base, commit, and format the mails.

Commits are built without a checkout (a private index, blobs written
straight into the object store) and with fixed identities and dates, so
the same series.yaml, templates and base give the same commits and the
same patch files, byte for byte.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import textwrap
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path

from ..core import generators, render
from ..core.generators import diff as diff_kind
from ..core.series import Change, Series, Version
from ..core.templates import Templates
from ..ground import atomic
from ..ground.errors import AnchorError, ToolError, UsageError
from ..ground.gitutil import GIT_TIMEOUT, Git, git_argv, git_env
from ..ground.proc import CommandTimeout, run_bounded
from ..ground.workdir import WorkDir
from .source import BaseTree

BASE_LINE = "Based on "
COVER_WIDTH = 72  # the changelog's entries are wrapped as mail text is


@dataclass(frozen=True)
class Generated:
    version: Version
    base: BaseTree
    tip: str
    files: tuple[Path, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]


def commit_message(version: Version, index: int) -> str:
    """The patch's message: subject, body, then its trailers and those
    collected from replies.  A patch of its own author (an imported one)
    has its trailer block as written; otherwise the version's author
    signs it off first."""
    patch = version.patches[index]
    if patch.author is not None:
        trailers = [*patch.trailers, *patch.collected]
    else:
        sob = f"Signed-off-by: {version.author}"
        trailers = [sob, *(t for t in (*patch.trailers, *patch.collected) if t != sob)]
    parts = [patch.subject]
    if patch.body.strip():
        parts.append(patch.body.rstrip())
    if trailers:
        parts.append("\n".join(trailers))
    return "\n\n".join(parts) + "\n"


def _identity_env(version: Version, index: int) -> dict[str, str]:
    """Who wrote the patch and when (its own, or the version's), and who
    commits it (the version's author, at the version's date)."""
    patch = version.patches[index]
    author = patch.author or version.author
    when = (patch.date or version.date).isoformat()
    return {
        "GIT_AUTHOR_NAME": author.name,
        "GIT_AUTHOR_EMAIL": author.email,
        "GIT_AUTHOR_DATE": when,
        "GIT_COMMITTER_NAME": version.author.name,
        "GIT_COMMITTER_EMAIL": version.author.email,
        "GIT_COMMITTER_DATE": version.date.isoformat(),
    }


def _reader(
    g: Git, env: dict[str, str], base: BaseTree, kind: str
) -> generators.Reader:
    """Files as the patch's index holds them: the base, with what the
    patch's earlier changes wrote."""

    def read(path: str) -> str:
        try:
            return g.run("show", f":{path}", env=env, strip=False)
        except ToolError:
            raise AnchorError(
                f"{path} is missing in {base.describe()}",
                f"the change of kind '{kind}' needs it",
            ) from None

    return read


def _apply_hunks(
    g: Git,
    env: dict[str, str],
    hunks: str,
    base: BaseTree,
    version: Version,
    index: int,
) -> None:
    """git apply the hunks onto the index; a conflict names the patch,
    the file and the hunk."""
    argv = git_argv("apply", "--cached", "--whitespace=nowarn", "-")
    ran = run_bounded(
        argv,
        {**git_env(), **env},
        GIT_TIMEOUT,
        cwd=base.root,
        input=hunks,
        keep=tuple(env),
    )
    if ran.timed_out:
        raise CommandTimeout(argv, GIT_TIMEOUT)
    if ran.returncode != 0:
        patch = version.patches[index]
        raise AnchorError(
            f"patch {index + 1}/{len(version.patches)} '{patch.subject}': "
            f"{diff_kind.conflict(hunks, ran.stderr)} on {base.describe()}",
            "rebase its hunks onto this base, or pick another base",
        )


def _apply_change(
    g: Git,
    env: dict[str, str],
    change: Change,
    ctx: generators.Context,
    base: BaseTree,
    version: Version,
    index: int,
) -> None:
    """One change of a patch, onto the patch's index."""
    kind = change.generator
    ctx = dataclasses.replace(ctx, params=change.params)
    if kind.hunks is not None:
        _apply_hunks(g, env, kind.hunks(ctx), base, version, index)
        return
    new_files = kind.apply(_reader(g, env, base, kind.name), ctx)
    for path, text in sorted(new_files.items()):
        if text is None:
            g.run("update-index", "--force-remove", "--", path, env=env)
            continue
        staged = g.run("ls-files", "--stage", "--", path, env=env)
        mode = staged.split(" ", 1)[0] or "100644"
        blob = g.hash_blob(text)
        g.run("update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", env=env)


def build_commits(
    series: Series, version: Version, base: BaseTree, workdir: WorkDir
) -> str:
    """Commit each patch on top of the base; return the tip.  The
    templates are rendered by one child under limits (render.py)."""
    with render.limited(series.path.parent) as templates:
        return _build_commits(series, version, base, workdir, templates)


def _build_commits(
    series: Series,
    version: Version,
    base: BaseTree,
    workdir: WorkDir,
    templates: Templates,
) -> str:
    g = Git(base.root)
    ctx = generators.Context(
        since=version.since, base=base.describe(), templates=templates
    )
    parent = base.commit
    with tempfile.TemporaryDirectory(dir=workdir.sub("tmp")) as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        for i, patch in enumerate(version.patches):
            g.run("read-tree", parent, env=env)
            # In order: a later change reads what an earlier one wrote.
            for change in patch.changes:
                _apply_change(g, env, change, ctx, base, version, i)
            tree = g.run("write-tree", env=env)
            parent = g.run(
                "commit-tree",
                tree,
                "-p",
                parent,
                "-m",
                commit_message(version, i).rstrip("\n"),
                env=_identity_env(version, i),
            )
    g.run("update-ref", f"refs/qseries/{version.name}", parent)
    return parent


# get_maintainer.pl reads MAINTAINERS once per run: seconds, not minutes.
MAINTAINERS_TIMEOUT = 300.0


def perl_env(workdir: WorkDir) -> dict[str, str]:
    """The environment for QEMU's perl scripts: no personal configuration.

    get_maintainer.pl reads ~/.get_maintainer.conf: with the user's HOME,
    the To/Cc lines would depend on who runs qseries.
    """
    return {
        **os.environ,
        "HOME": str(workdir.sub("home")),
        "LC_ALL": "C.UTF-8",
        "PERL_HASH_SEED": "0",
        "PERL_PERTURB_KEYS": "0",
    }


def get_maintainers(
    base: BaseTree, patches: list[Path], workdir: WorkDir
) -> tuple[list[str], list[str]]:
    """To (maintainers) and Cc (reviewers, lists) for the patches, from the
    base's MAINTAINERS, as get_maintainer.pl reads them."""
    script = base.root / "scripts" / "get_maintainer.pl"
    if not script.exists():
        return [], []

    def run(*roles: str) -> list[str]:
        argv = [
            "perl",
            str(script),
            "--no-git-fallback",
            "--no-rolestats",
            *roles,
            *[str(p) for p in patches],
        ]
        try:
            proc = run_bounded(
                argv, perl_env(workdir), MAINTAINERS_TIMEOUT, cwd=base.root
            )
        except FileNotFoundError:
            raise ToolError("perl is not installed", "install perl") from None
        if proc.timed_out:
            raise CommandTimeout(argv, MAINTAINERS_TIMEOUT)
        if proc.returncode != 0:
            raise ToolError(
                f"get_maintainer.pl failed: {proc.stderr.strip().splitlines()[-1:]}"
            )
        found = {line.strip() for line in proc.stdout.splitlines() if line.strip()}
        # get_maintainer.pl's order varies with Perl's hash order.
        return sorted(
            found, key=lambda a: (getaddresses([a]) or [("", a)])[0][1].lower()
        )

    return run("--no-r", "--no-l"), run("--no-m")


def _unique(items: list[str], exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    out: list[str] = []
    for item in items:
        if item not in out and item not in exclude:
            out.append(item)
    return tuple(out)


def cover_blurb(version: Version, base: BaseTree) -> str:
    parts = [version.cover_body.rstrip()]
    if version.changelog:
        parts.append(
            f"Changes in {version.name}:\n"
            + "\n".join(
                textwrap.fill(
                    re.sub(r"\s*\n\s*", " ", entry.strip()),
                    width=COVER_WIDTH,
                    initial_indent="- ",
                    subsequent_indent="  ",
                    break_on_hyphens=False,
                    break_long_words=False,
                )
                for entry in version.changelog
            )
        )
    parts.append(f"{BASE_LINE}{base.based_on()}")
    return "\n\n".join(parts)


def _carries_binary(series: Series, version: Version) -> bool:
    for patch in version.patches:
        for change in patch.changes:
            if change.generator.hunks is None or "patch" not in change.params:
                continue
            hunks = series.path.parent / change.params["patch"]
            with open(hunks, "rb") as f:
                if any(line.startswith(b"GIT binary patch") for line in f):
                    return True
    return False


def format_patches(
    series: Series,
    version: Version,
    base: BaseTree,
    tip: str,
    outdir: Path,
    to: tuple[str, ...],
    cc: tuple[str, ...],
) -> list[Path]:
    g = Git(base.root)
    ident = {
        "GIT_COMMITTER_NAME": version.author.name,
        "GIT_COMMITTER_EMAIL": version.author.email,
    }
    args = [
        "format-patch",
        "--quiet",
        "--cover-letter",
        f"--reroll-count={version.number}",
        f"--subject-prefix={series.subject_prefix}",
        "--no-signature",
        "--zero-commit",
        "--no-thread",
        "--numbered",
        "--stat=80",
        # A series that carries binary hunks (a diff of git's binary
        # patches, e.g. ACPI tables under tests/data) mails them as they are.
        "--binary" if _carries_binary(series, version) else "--no-binary",
        "--abbrev=12",
        "-o",
        str(outdir),
    ]
    if base.kind != "debian":
        # A commit of a git base can be found by b4 and patchew; a Debian
        # base's commit exists only in our work dir, and the cover letter
        # names that base in words instead.
        args.append(f"--base={base.commit}")
    if (base.root / "scripts" / "git.orderfile").exists():
        args.append("-Oscripts/git.orderfile")
    args += [f"--to={addr}" for addr in to] + [f"--cc={addr}" for addr in cc]
    args += [f"{base.commit}..{tip}"]
    g.run(*args, env=ident)
    files = sorted(outdir.glob("*.patch"))
    cover = next(p for p in files if "-0000-cover-letter" in p.name)
    text = cover.read_text(encoding="utf-8")
    text = text.replace("*** SUBJECT HERE ***", version.cover_subject, 1)
    text = text.replace("*** BLURB HERE ***", cover_blurb(version, base), 1)
    # git dates the cover letter now; date it like the patches.
    date = version.date.strftime("%a, %d %b %Y %H:%M:%S %z")
    text = re.sub(r"^Date: .*$", f"Date: {date}", text, count=1, flags=re.M)
    cover.write_text(text, encoding="utf-8")
    return files


def generate(
    series: Series, version: Version, base: BaseTree, workdir: WorkDir
) -> tuple[Generated, Path]:
    """Generate the mails into a fresh directory inside the work dir."""
    tip = build_commits(series, version, base, workdir)
    outdir = Path(tempfile.mkdtemp(prefix=f"{version.name}-", dir=workdir.sub("tmp")))
    # Once without recipients, to ask get_maintainer.pl about the patches.
    files = format_patches(series, version, base, tip, outdir, (), ())
    to_auto, cc_auto = get_maintainers(
        base, [f for f in files if "-0000-" not in f.name], workdir
    )
    for f in files:
        f.unlink()
    to = _unique([*to_auto, *series.to, *version.to])
    cc = _unique([*cc_auto, *series.cc, *version.cc], exclude=to)
    files = format_patches(series, version, base, tip, outdir, to, cc)
    return Generated(version, base, tip, tuple(files), to, cc), outdir


# The first line of every mail qseries writes (git format-patch --zero-commit).
ZERO_FROM = b"From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"


def written_by_qseries(path: Path, version: Version) -> bool:
    """Is path a mail of this version that a generate wrote?

    Only such files are ever removed from an output directory: the name
    git format-patch gives (vN-NNNN-*.patch) and the zero-commit From line
    qseries asks it for, or the temporary name such a mail had while it
    was written (left by a generate that was killed).  Anything else
    there is the user's.
    """
    mail = rf"{version.name}-\d{{4}}-[\w.-]*\.patch"
    temporary = rf"\.{mail}\.\w+{re.escape(atomic.SUFFIX)}"
    if not re.fullmatch(f"{mail}|{temporary}", path.name):
        return False
    try:
        with path.open("rb") as f:
            return f.readline() == ZERO_FROM
    except OSError:
        return False


@dataclass(frozen=True)
class Installed:
    changes: tuple[str, ...]  # "wrote NAME", "removed NAME"
    foreign: tuple[str, ...]  # files left alone: not written by qseries


def install(generated_dir: Path, dest: Path, version: Version) -> Installed:
    """Make dest hold the generated files.

    The mails of a version go together (the cover letter's diffstat, the
    numbering): all of them are written, or, when one cannot be (a full
    disk), none, and dest keeps the old mails whole, or is not made.
    Stale mails of an earlier generate are removed once the new ones are
    in; any other file in dest (a user's notes.patch, say) is left alone
    and reported.
    """
    if dest.exists() and not dest.is_dir():
        raise UsageError(
            f"--output: {dest} is a file, not a directory",
            "pass a directory (qseries writes DIR/vN/*.patch)",
        )
    made = atomic.make_dirs(dest)
    try:
        new = {p.name: p.read_bytes() for p in generated_dir.glob("*.patch")}
    finally:
        shutil.rmtree(generated_dir, ignore_errors=True)
    stale: list[Path] = []
    foreign: list[str] = []
    for old in sorted(dest.iterdir()):
        if old.name in new:
            continue
        if old.is_file() and written_by_qseries(old, version):
            stale.append(old)
        else:
            foreign.append(old.name)
    writes = {
        dest / name: data
        for name, data in sorted(new.items())
        if not (dest / name).is_file() or (dest / name).read_bytes() != data
    }
    try:
        atomic.write_all(writes)
    except atomic.WriteError:
        atomic.remove_dirs(made)
        raise
    for old in stale:
        old.unlink()
    changed = [f"removed {old.name}" for old in stale]
    changed += [f"wrote {path.name}" for path in writes]
    return Installed(tuple(changed), tuple(foreign))
