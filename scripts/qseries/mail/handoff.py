"""handoff: the series, in the forms other tools take over from.

- range_diff: `git range-diff` between two versions, each committed on
  the same base by the generators (as `generate` does), so that a
  reviewer reads what changed patch by patch.
- export: the version's commits on a new branch of a repository the user
  names, for b4 prep or git-publish.  Only that branch is created: the
  repository's HEAD, index, working tree and other branches stay as they
  are, and an existing branch is refused.
- send: git send-email of the generated mails, a dry run unless asked,
  from an identity that signed the patches off.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path

from ..core.mail import Mail
from ..core.series import Series, Version
from ..ground.errors import ToolError, UsageError
from ..ground.gitutil import Git, git_argv
from ..ground.proc import run_bounded
from ..ground.workdir import WorkDir
from ..qemu import generate as gen
from ..qemu.source import BaseTree


def range_diff(
    series: Series,
    old: Version,
    new: Version,
    base: BaseTree,
    workdir: WorkDir,
    color: bool = False,
) -> str:
    """What changed from old to new, patch by patch."""
    old_tip = gen.build_commits(series, old, base, workdir)
    new_tip = gen.build_commits(series, new, base, workdir)
    return Git(base.root).run(
        "range-diff",
        "--color" if color else "--no-color",
        f"{base.commit}..{old_tip}",
        f"{base.commit}..{new_tip}",
    )


def check_branch_name(target: Git, branch: str) -> None:
    """Refuse a --branch that would not make refs/heads/BRANCH as the user
    means it: what git refuses as a branch name, what git takes for a
    name but expands (@{-1}), and the names git allows that mean
    something else: '@' and 'HEAD' (the current commit), a full ref
    name (refs/heads/x would become refs/heads/refs/heads/x) and an
    option's leading '-'."""
    if branch.startswith("refs/"):
        short = branch.removeprefix("refs/heads/")
        hint = (
            f"pass the branch's name, '{short}' (qseries makes refs/heads/NAME)"
            if short != branch and short
            else "pass a branch name, which qseries makes under refs/heads/"
        )
        raise UsageError(f"--branch {branch!r} is a full ref name", hint)
    if branch in ("@", "HEAD"):
        raise UsageError(
            f"--branch {branch!r} is git's name of the current commit, "
            "not a branch name",
            "pick another name",
        )
    if branch.startswith("-"):
        raise UsageError(
            f"--branch {branch!r} starts with '-', as an option does",
            "pick another name",
        )
    # check-ref-format --branch prints the name it would use: the same,
    # or git refuses it.
    said = target.try_run("check-ref-format", "--branch", branch)
    if said != branch or re.search(r"\s", branch):
        raise UsageError(
            f"--branch {branch!r} is not a valid branch name", "pick another name"
        )


def check_target(repo: Path, branch: str) -> tuple[Git, str]:
    """Refuse, before any work, a target that is not a repository or a
    branch that exists already or is not a valid name."""
    shown = str(repo)
    if not repo.is_dir():
        raise UsageError(f"--repo {shown} is not a directory", "name a git repository")
    target = Git(repo)
    if target.try_run("rev-parse", "--git-dir") is None:
        raise UsageError(
            f"--repo {shown} is not a git repository", "name a git repository"
        )
    check_branch_name(target, branch)
    ref = f"refs/heads/{branch}"
    if target.try_run("rev-parse", "--verify", "--quiet", ref) is not None:
        raise UsageError(
            f"--repo {shown} has a branch '{branch}' already",
            "pick a new branch name; qseries never moves an existing one",
        )
    return target, ref


@dataclass(frozen=True)
class Exported:
    repo: Path
    branch: str
    tip: str
    commits: tuple[str, ...]  # "sha subject", oldest first


def export(
    series: Series,
    version: Version,
    base: BaseTree,
    workdir: WorkDir,
    repo: Path,
    branch: str,
) -> Exported:
    """The version's commits on a new branch `branch` of `repo`."""
    target, ref = check_target(repo, branch)
    shown = str(repo)
    tip = gen.build_commits(series, version, base, workdir)
    source = f"refs/qseries/{version.name}"
    try:
        target.run(
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            str(base.root.resolve()),
            f"{source}:{ref}",
        )
    except ToolError as err:
        raise ToolError(f"exporting to {shown} failed: {err}") from None
    log = target.run("log", "--reverse", "--format=%h %s", f"{base.commit}..{ref}")
    return Exported(repo, branch, tip, tuple(log.splitlines()))


# Domains that name nobody (RFC 2606, RFC 6761): a sign-off with one is a
# placeholder, and a series sent from one could not be answered.
PLACEHOLDER_DOMAIN = re.compile(
    r"(^|\.)(example\.(com|net|org)|example|test|invalid|localhost)$", re.I
)
SEND_TIMEOUT = 300


@dataclass(frozen=True)
class Sent:
    really: bool
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    in_reply_to: str | None
    output: str  # what git send-email printed


def _address(identity: str) -> str:
    found = [a for _, a in getaddresses([identity]) if a]
    return found[0].lower() if len(found) == 1 else ""


def _recipients(header: str) -> tuple[str, ...]:
    """A To/Cc header's entries as 'Name <addr>', quoted where needed."""
    out = []
    for name, addr in getaddresses([header]):
        if not addr:
            continue
        if not name:
            out.append(addr)
        elif re.search(r'[,.;:"()<>\[\]@\\]', name):
            quoted = name.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'"{quoted}" <{addr}>')
        else:
            out.append(f"{name} <{addr}>")
    return tuple(out)


def check_sender(sender: str, mails: list[Mail]) -> None:
    """Refuse an identity that cannot sign off the series: no address, a
    placeholder domain, or one without a Signed-off-by in every patch."""
    address = _address(sender)
    if "@" not in address:
        raise UsageError(
            f"cannot send as {sender!r}: not one mail address",
            "pass --from 'Name <you@host>'",
        )
    domain = address.rsplit("@", 1)[1]
    if PLACEHOLDER_DOMAIN.search(domain):
        raise UsageError(
            f"cannot send as {sender}: {domain} is a placeholder domain, nobody "
            "can answer it or sign off with it",
            "set the version's author in series.yaml, or pass --from",
        )
    for mail in mails:
        if mail.is_cover:
            continue
        signers = re.findall(r"^Signed-off-by: (.+)$", mail.body, re.M)
        if address not in {_address(s) for s in signers}:
            raise UsageError(
                f"cannot send as {sender}: patch {mail.numbered} '{mail.subject}' "
                f"has no Signed-off-by: of {address}",
                "send as the author who signed off, or regenerate the series",
            )


def previous_message_id(series: Series, version: Version) -> str | None:
    """The recorded Message-Id of the newest earlier version, if any."""
    earlier = [v for n, v in series.versions.items() if n < version.number]
    if not earlier:
        return None
    return max(earlier, key=lambda v: v.number).message_id


def send(
    series: Series,
    version: Version,
    mails: list[Mail],
    sender: str,
    really: bool,
    scratch: Path,
) -> Sent:
    """git send-email of the version's mails: a dry run unless really.

    To and Cc are the ones generate wrote (get_maintainer.pl's, plus
    series.yaml's); nothing is added from the bodies (--suppress-cc=all).
    The mails thread under the cover letter, itself a reply to the
    previous version's cover letter when its Message-Id is recorded.
    """
    check_sender(sender, mails)
    cover = next((m for m in mails if m.is_cover), None)
    first = cover or mails[0]
    to = _recipients(first.header("To"))
    cc = _recipients(first.header("Cc"))
    if not to:
        raise UsageError(
            f"{first.path.name} has no To: header",
            "regenerate the series with 'qseries generate'",
        )
    reply = previous_message_id(series, version)
    argv = git_argv(
        "send-email",
        "--confirm=never",
        "--suppress-cc=all",
        "--thread",
        "--no-chain-reply-to",
        "--no-annotate",
        "--no-format-patch",
        "--8bit-encoding=UTF-8",
        "--transfer-encoding=8bit",
        f"--from={sender}",
        *(f"--to={a}" for a in to),
        *(f"--cc={a}" for a in cc),
    )
    if reply:
        argv.append(f"--in-reply-to={reply}")
    if not really:
        argv.append("--dry-run")
    argv += [str(m.path) for m in mails]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    ran = run_bounded(argv, env, SEND_TIMEOUT, cwd=scratch)
    output = (ran.stdout + ran.stderr).strip()
    if ran.timed_out:
        raise ToolError(f"git send-email did not finish within {SEND_TIMEOUT} s")
    if ran.returncode != 0:
        if "is not a git command" in output or ran.returncode == 127:
            raise ToolError(
                "git send-email is not installed", "install Debian's git-email"
            )
        last = output.splitlines()[-1] if output else f"exit {ran.returncode}"
        raise ToolError(f"git send-email failed: {last}")
    return Sent(really, sender, to, cc, reply, output)
