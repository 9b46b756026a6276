"""Bad inputs, each run for real, against the table in docs/bad-inputs.md.

Every case sets up one bad input in a scratch directory (a broken
series.yaml, a template that escapes its folder, a mail-header injection,
a --tree that is not a tree, ...), runs qseries on it as a user would,
and compares the last line qseries prints on stderr and its exit code
with the table.  The table is written from these runs:

    .venv/bin/python -m tests.functional.test_bad_inputs --write

Paths under the scratch directory are shown as TMP.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..conftest import FIXTURES, GIT_ENV, REPO, copy_series, git

TABLE = REPO / "docs" / "bad-inputs.md"
BEGIN = "<!-- cases: begin (written by tests/functional/test_bad_inputs.py) -->"
END = "<!-- cases: end -->"
MIN_CASES = 30


@dataclass(frozen=True)
class Case:
    id: str
    what: str  # the bad input, for people
    setup: Callable[[Path], list[str]]  # prepares TMP, returns qseries' argv
    env: dict[str, str] = field(default_factory=dict)
    # For a check that reports the bad input as a FAIL (exit 1) rather than
    # an error: the line of stdout holding this text, not stderr's last.
    pick: str | None = None
    # A command qseries runs under, e.g. one that mounts a file system in
    # a mount namespace of its own: `qseries ...` is its "$@".
    prefix: tuple[str, ...] = ()
    # For a bad input qseries gets past (exit 0), saying what it left out
    # or refused: stderr's last line says so.
    handled: bool = False


CASES: list[Case] = []


def case(
    id: str,
    what: str,
    pick: str | None = None,
    prefix: tuple[str, ...] = (),
    handled: bool = False,
    **env: str,
) -> Callable[[Callable[[Path], list[str]]], Callable[[Path], list[str]]]:
    def register(setup: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
        CASES.append(Case(id, what, setup, env, pick, prefix, handled))
        return setup

    return register


# -- helpers for the setups ------------------------------------------------


def series(tmp: Path, edit: Callable[[str], str] | None = None) -> str:
    """A copy of series.yaml and its templates in TMP/s; returns the path."""
    dest = tmp / "s"
    if not dest.exists():
        copy_series(dest)
    if edit is not None:
        path = dest / "series.yaml"
        text = path.read_text()
        changed = edit(text)
        assert changed != text, "the case's edit did not apply"
        path.write_text(changed)
    return "s/series.yaml"


def replace(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new, 1)


def template(tmp: Path, old: str, new: str) -> str:
    series(tmp)
    path = tmp / "s" / "hw" / "vfio" / "migration-v1.c.j2"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return "s/series.yaml"


def tree(tmp: Path) -> str:
    """The small QEMU-like checkout, committed, in TMP/tree."""
    dest = tmp / "tree"
    if not dest.exists():
        shutil.copytree(FIXTURES / "qemu-mini", dest)
        git(dest, "init", "-q", "-b", "master")
        git(dest, "add", "-A")
        git(dest, "commit", "-q", "-m", "base")
    return "tree"


def generate(tmp: Path, edit: Callable[[str], str] | None = None) -> list[str]:
    return [
        "--series-file",
        series(tmp, edit),
        "generate",
        "--series",
        "v1",
        "--tree",
        tree(tmp),
        "--output",
        "out",
    ]


def version(argv: list[str], name: str) -> list[str]:
    """argv with its --series value replaced (--series may be given once)."""
    at = argv.index("--series") + 1
    return [*argv[:at], name, *argv[at + 1 :]]


# -- series.yaml -----------------------------------------------------------


@case("series-missing", "--series-file names no file")
def _(tmp: Path) -> list[str]:
    return ["--series-file", "none.yaml", "source"]


@case("series-invalid-yaml", "series.yaml is not YAML (an unclosed quote)")
def _(tmp: Path) -> list[str]:
    return generate(tmp, replace("subject-prefix: PATCH", 'subject-prefix: "PATCH'))


@case("series-empty", "series.yaml is empty")
def _(tmp: Path) -> list[str]:
    return generate(tmp, lambda text: "# nothing\n")


@case("series-unknown-key", "an unknown key in a version")
def _(tmp: Path) -> list[str]:
    return generate(tmp, replace("    target:", "    targte:"))


@case("series-missing-author", "a version without its author")
def _(tmp: Path) -> list[str]:
    return generate(tmp, lambda t: re.sub(r"\n    author: [^\n]*", "", t, count=1))


@case("series-bad-author", "an author without an address")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp, replace("<qseries-devel@example.org>", "qseries-devel-example.org")
    )


@case("series-date-no-zone", "a date without a time zone")
def _(tmp: Path) -> list[str]:
    return generate(tmp, replace('"2026-11-27T09:00:00+00:00"', '"2026-11-27T09:00"'))


@case("series-bad-range", "a base range that is not a range")
def _(tmp: Path) -> list[str]:
    return generate(tmp, replace('base: ">=10.0, <11"', 'base: "10.0 to 11"'))


@case("series-unknown-generator", "a patch names a generator that does not exist")
def _(tmp: Path) -> list[str]:
    return generate(tmp, replace("generator: qapi\n", "generator: qapi-nope\n"))


@case("series-bad-trailer", "a trailer that is not 'Tag: value'")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp,
        replace(
            "        generator: qapi\n",
            "        generator: qapi\n        trailers: ['reviewed by me']\n",
        ),
    )


@case("series-duplicate-version", "the same version twice")
def _(tmp: Path) -> list[str]:
    return generate(tmp, lambda t: t + "  v1:\n    author: x\n")


@case("series-huge-version", "--series with 5,000 digits")
def _(tmp: Path) -> list[str]:
    return version(generate(tmp), "v" + "9" * 5000)


@case("series-unknown-version", "--series names a version the file lacks")
def _(tmp: Path) -> list[str]:
    return version(generate(tmp), "v7")


@case("faults-unknown-invariant", "a fault plan names an invariant qseries lacks")
def _(tmp: Path) -> list[str]:
    return generate(tmp, replace("invariants: [exact]", "invariants: [exactly]"))


@case("faults-bad-run", "a fault scenario whose run qseries does not know")
def _(tmp: Path) -> list[str]:
    argv = generate(tmp)
    scenarios = tmp / "s" / "faults" / "scenarios.yaml"
    text = scenarios.read_text()
    scenarios.write_text(text.replace("run: cancel", "run: unplug", 1))
    return argv


@case("faults-table-of-some-cases", "--write-table with only some fault cases")
def _(tmp: Path) -> list[str]:
    return [
        "--series-file",
        series(tmp),
        "test",
        "--faults",
        "--fault",
        "cancel",
        "--write-table",
    ]


@case("faults-unknown-case", "--fault names no case (a '>' the shell took)")
def _(tmp: Path) -> list[str]:
    return [
        "--series-file",
        series(tmp),
        "test",
        "--fault",
        "migrate-precopy/source/RUNNING",
    ]


@case("mutation-case-and-fault", "a mutation names a qtest case and a fault case")
def _(tmp: Path) -> list[str]:
    argv = generate(tmp)
    mutations = tmp / "s" / "mutations" / "v1.yaml"
    text = mutations.read_text()
    mutations.write_text(
        text.replace("  case: /failure\n", "  case: /failure\n  fault: stop-cont\n", 1)
    )
    return argv


# -- mail headers ------------------------------------------------------------


@case("header-cover-subject", "a line break in cover.subject (a Bcc: header)")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp,
        replace(
            'subject: "vfio/migration: Announce device state changes before they '
            'start"',
            'subject: "vfio/migration: Announce\\nBcc: victim@example.com"',
        ),
    )


@case("header-patch-subject", "a carriage return in a patch subject")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp,
        replace(
            '"qapi/vfio: Add VFIO_MIGRATION_PREPARE event"',
            '"qapi/vfio: Add\\rBcc: victim@example.com"',
        ),
    )


@case("header-to", "a line break inside a To entry")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp,
        replace(
            "    target:",
            '    to: ["Maint <m@example.org>\\nBcc: victim@example.com"]\n    target:',
        ),
    )


@case("header-cc-not-address", "a Cc entry that is not an address")
def _(tmp: Path) -> list[str]:
    return generate(tmp, replace("    target:", '    cc: ["qemu-devel"]\n    target:'))


@case("header-subject-prefix", "a control character in subject-prefix")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp, replace("subject-prefix: PATCH", 'subject-prefix: "PATCH\\x07"')
    )


@case("header-author", "a line break in the author")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp,
        replace(
            '"qseries developers <qseries-devel@example.org>"',
            '"qseries developers\\nBcc: v@example.com <qseries-devel@example.org>"',
        ),
    )


# -- templates ---------------------------------------------------------------


@case("template-undefined", "a template uses an undefined variable")
def _(tmp: Path) -> list[str]:
    template(tmp, "{{ new_state }}", "{{ nope }}")
    return generate(tmp)


@case("template-syntax", "a template with a syntax error")
def _(tmp: Path) -> list[str]:
    template(tmp, "{% endmacro %}", "{% endmacr %}")
    return generate(tmp)


@case("template-escape", "a template includes a file outside its folder")
def _(tmp: Path) -> list[str]:
    template(
        tmp,
        "{% macro prepare_call() %}",
        "{% include '../../../etc/passwd' %}{% macro prepare_call() %}",
    )
    return generate(tmp)


@case("template-python", "a template reaches for Python objects")
def _(tmp: Path) -> list[str]:
    template(
        tmp,
        "{% macro prepare_call() %}",
        "{{ ''.__class__.__mro__ }}{% macro prepare_call() %}",
    )
    return generate(tmp)


# -- options and places ------------------------------------------------------


@case("output-is-file", "--output names a file")
def _(tmp: Path) -> list[str]:
    (tmp / "out").write_text("")
    return generate(tmp)


@case("workdir-is-file", "--workdir names a file")
def _(tmp: Path) -> list[str]:
    (tmp / "wd").write_text("")
    return ["--workdir", "wd", *generate(tmp)]


@case("workdir-blank", "a work dir with a blank in its path, for a build")
def _(tmp: Path) -> list[str]:
    return ["--workdir", "my work", "--series-file", series(tmp), "build"]


@case("workdir-colon", "a work dir with a colon in its path, for a test")
def _(tmp: Path) -> list[str]:
    return ["--workdir", "w:1", "--series-file", series(tmp), "test"]


@case("base-version-malformed", "--base-version that is no version")
def _(tmp: Path) -> list[str]:
    return ["--series-file", series(tmp), "source", "--base-version", "ten"]


@case("base-options-conflict", "--tree together with --base-version")
def _(tmp: Path) -> list[str]:
    return [*generate(tmp), "--base-version", "10.2"]


@case("git-without-ref", "--git without --ref")
def _(tmp: Path) -> list[str]:
    return ["--series-file", series(tmp), "source", "--git", "file:///nowhere"]


@case("tree-not-git", "--tree names a directory that is not a git checkout")
def _(tmp: Path) -> list[str]:
    (tmp / "plain").mkdir()
    return ["--series-file", series(tmp), "source", "--tree", "plain"]


@case("tree-missing", "--tree names no path (a typo)")
def _(tmp: Path) -> list[str]:
    return ["--series-file", series(tmp), "source", "--tree", "qemu-typo"]


@case("tree-is-file", "--tree names a file")
def _(tmp: Path) -> list[str]:
    (tmp / "afile").write_text("")
    return ["--series-file", series(tmp), "source", "--tree", "afile"]


@case("tree-unborn", "--tree is a repository with no commit yet")
def _(tmp: Path) -> list[str]:
    (tmp / "unborn").mkdir()
    git(tmp / "unborn", "init", "-q")
    return ["--series-file", series(tmp), "source", "--tree", "unborn"]


@case("tree-not-qemu", "--tree is a git checkout of something else")
def _(tmp: Path) -> list[str]:
    other = tmp / "other"
    other.mkdir()
    (other / "README").write_text("not QEMU\n")
    git(other, "init", "-q")
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", "other")
    return ["--series-file", series(tmp), "source", "--tree", "other"]


@case("tree-dirty", "--tree has uncommitted changes")
def _(tmp: Path) -> list[str]:
    argv = generate(tmp)
    (tmp / "tree" / "VERSION").write_text("10.2.51\n")
    return argv


@case("anchor-missing", "the base lacks the function a generator edits")
def _(tmp: Path) -> list[str]:
    argv = generate(tmp)
    migration = tmp / "tree" / "hw" / "vfio" / "migration.c"
    migration.write_text(
        migration.read_text().replace("int vfio_migration_set_state(", "int vfio_set(")
    )
    git(tmp / "tree", "commit", "-q", "-am", "rename")
    return argv


# -- mailed series -------------------------------------------------------------


def check_mbox(tmp: Path, mbox: str) -> list[str]:
    return ["--series-file", series(tmp), "check", "--tree", tree(tmp), "--mbox", mbox]


@case("mbox-missing", "--mbox names no file")
def _(tmp: Path) -> list[str]:
    return check_mbox(tmp, "series.mbox")


@case("mbox-directory", "--mbox names a directory")
def _(tmp: Path) -> list[str]:
    (tmp / "mails").mkdir()
    return check_mbox(tmp, "mails")


@case("mbox-pipe", "--mbox names a pipe")
def _(tmp: Path) -> list[str]:
    os.mkfifo(tmp / "fifo")
    return check_mbox(tmp, "fifo")


@case("mbox-empty", "--mbox names an empty file")
def _(tmp: Path) -> list[str]:
    (tmp / "empty.mbox").write_text("")
    return check_mbox(tmp, "empty.mbox")


@case("mbox-no-mails", "--mbox names a text without mail headers")
def _(tmp: Path) -> list[str]:
    (tmp / "notes.mbox").write_text("just some notes\nabout the series\n")
    return check_mbox(tmp, "notes.mbox")


def mailed(tmp: Path, edit: Callable[[list[str]], list[str]]) -> list[str]:
    """The series generated on the small tree, edited, as one mbox."""
    argv = generate(tmp)
    env = {**os.environ, **GIT_ENV, "QSERIES_WORKDIR": str(tmp / "work")}
    env["PYTHONPATH"] = str(REPO / "scripts")
    subprocess.run(
        [sys.executable, "-m", "qseries", *argv],
        cwd=tmp,
        env=env,
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    mails = [p.read_text() for p in sorted((tmp / "out" / "v1").glob("*.patch"))]
    (tmp / "series.mbox").write_text("".join(edit(mails)))
    return check_mbox(tmp, "series.mbox")


@case("mbox-patch-missing", "a mailed series lacks patch 2 of 3")
def _(tmp: Path) -> list[str]:
    return mailed(tmp, lambda m: [m[0], m[1], m[3]])


@case("mbox-patch-quoted", "patch 2 comes quoted, as in a reply")
def _(tmp: Path) -> list[str]:
    def quote(mails: list[str]) -> list[str]:
        head, _, body = mails[2].partition("\n\n")
        quoted = "".join(f"> {line}\n" for line in body.splitlines())
        return [mails[0], mails[1], f"{head}\n\n{quoted}", mails[3]]

    return mailed(tmp, quote)


@case("mbox-patch-duplicate", "two different mails claim patch 2 of 3")
def _(tmp: Path) -> list[str]:
    def twice(mails: list[str]) -> list[str]:
        other = mails[2].replace("Emit VFIO_MIGRATION_PREPARE", "Send it")
        return [mails[0], mails[1], mails[2], other, mails[3]]

    return mailed(tmp, twice)


@case("mbox-patch-wrapped", "a mail client wrapped patch 2's long lines")
def _(tmp: Path) -> list[str]:
    def wrap(mails: list[str]) -> list[str]:
        head, _, body = mails[2].partition("\n\n")
        lines = []
        for line in body.splitlines():
            while len(line) > 72:
                lines.append(line[:72])
                line = line[72:]
            lines.append(line)
        return [mails[0], mails[1], head + "\n\n" + "\n".join(lines) + "\n", mails[3]]

    return mailed(tmp, wrap)


@case("mbox-bad-address", "a To: header that does not parse", pick="cannot parse")
def _(tmp: Path) -> list[str]:
    def damage(mails: list[str]) -> list[str]:
        first = mails[1].replace("\nSubject: ", "\nTo: a@[192.168.0.1\nSubject: ", 1)
        return [mails[0], first, *mails[2:]]

    return mailed(tmp, damage)


# -- hand-off: diff, export, send, trailers ---------------------------------


@case("diff-unknown-version", "qseries diff names a version the file lacks")
def _(tmp: Path) -> list[str]:
    return ["--series-file", series(tmp), "diff", "v1", "v7", "--tree", tree(tmp)]


def user_repo(tmp: Path) -> str:
    repo = tmp / "mine"
    if not repo.exists():
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        git(repo, "commit", "-q", "--allow-empty", "-m", "mine")
    return "mine"


@case("export-existing-branch", "export to a branch the repository has")
def _(tmp: Path) -> list[str]:
    return [
        "--series-file", series(tmp), "export", "--tree", tree(tmp),
        "--repo", user_repo(tmp), "--branch", "main",
    ]  # fmt: skip


@case("export-not-a-repository", "export into a directory that is no repository")
def _(tmp: Path) -> list[str]:
    (tmp / "plain").mkdir(exist_ok=True)
    return [
        "--series-file", series(tmp), "export", "--tree", tree(tmp),
        "--repo", "plain", "--branch", "v2",
    ]  # fmt: skip


@case("export-bad-branch", "export to a branch name git refuses")
def _(tmp: Path) -> list[str]:
    return [
        "--series-file", series(tmp), "export", "--tree", tree(tmp),
        "--repo", user_repo(tmp), "--branch", "a..b",
    ]  # fmt: skip


def committed(tmp: Path) -> str:
    """A copy of the committed patches/v2, in TMP/out."""
    if not (tmp / "out" / "v2").exists():
        shutil.copytree(REPO / "patches" / "v2", tmp / "out" / "v2")
    return "out"


@case("send-placeholder", "send as the committed author, a placeholder address")
def _(tmp: Path) -> list[str]:
    return ["--series-file", series(tmp), "send", "--output", committed(tmp)]


@case("send-not-signed-off", "send as someone who signed off no patch")
def _(tmp: Path) -> list[str]:
    return [
        "--series-file", series(tmp), "send", "--output", committed(tmp),
        "--from", "joe@qemu-dev.net",
    ]  # fmt: skip


@case("trailers-empty-mbox", "trailers from an empty mbox")
def _(tmp: Path) -> list[str]:
    (tmp / "empty.mbox").write_text("")
    return ["--series-file", series(tmp), "trailers", "--mbox", "empty.mbox"]


# -- work dir, --output and --tree (hostile input) ---------------------------


def in_tmpfs(script: str) -> tuple[str, ...]:
    """A prefix that runs qseries in a mount namespace of its own, where
    script (run in TMP) has mounted a small tmpfs on TMP/disk: the mount
    goes when qseries does.  It needs root."""
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh")


def mountpoint(tmp: Path) -> None:
    """TMP/disk for in_tmpfs; skipped, with the reason, where mounting is
    not allowed, but never in CI (which runs as root)."""
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("mounting a tmpfs needs root (CI runs these as root)")
    (tmp / "disk").mkdir()


TMPFS_READ_ONLY = 'mount -t tmpfs -o size=64k,ro tmpfs disk && exec "$@"'
# 16 KB, filled by a file before qseries starts.
TMPFS_FULL = (
    "mount -t tmpfs -o size=16k tmpfs disk"
    ' && { cat /dev/zero >disk/fill 2>/dev/null; exec "$@"; }'
)


def source(tmp: Path, *more: str) -> list[str]:
    return ["--series-file", series(tmp), "source", "--tree", tree(tmp), *more]


@case("workdir-root", "--workdir / (the root directory)")
def _(tmp: Path) -> list[str]:
    return ["--workdir", "/", *source(tmp)]


@case("workdir-empty", '--workdir "" (the empty string)')
def _(tmp: Path) -> list[str]:
    return ["--workdir", "", *source(tmp)]


@case("workdir-checkout", "--workdir at the user's own checkout (non-empty)")
def _(tmp: Path) -> list[str]:
    argv = source(tmp)
    return ["--workdir", "s", *argv]


@case("workdir-tree", "--workdir at the --tree checkout itself")
def _(tmp: Path) -> list[str]:
    return ["--workdir", "tree", *source(tmp)]


@case("workdir-inside-tree", "--workdir a new directory inside --tree")
def _(tmp: Path) -> list[str]:
    return ["--workdir", "tree/.work", *source(tmp)]


@case("workdir-inside-repo", "--workdir a new directory inside export's --repo")
def _(tmp: Path) -> list[str]:
    (tmp / "repo").mkdir()
    git(tmp / "repo", "init", "-q")
    argv = ["--series-file", series(tmp), "export", "--tree", tree(tmp)]
    return ["--workdir", "repo/w", *argv, "--repo", "repo", "--branch", "v1"]


@case("workdir-symlink-loop", "--workdir a symbolic link to itself")
def _(tmp: Path) -> list[str]:
    (tmp / "loop").symlink_to("loop")
    return ["--workdir", "loop", *source(tmp)]


@case("workdir-proc", "--workdir /proc/self")
def _(tmp: Path) -> list[str]:
    return ["--workdir", "/proc/self", *source(tmp)]


@case("workdir-long-name", "--workdir with a name of 300 characters")
def _(tmp: Path) -> list[str]:
    return ["--workdir", "w" * 300, *source(tmp)]


@case(
    "workdir-readonly",
    "--workdir on a read-only file system",
    prefix=in_tmpfs(TMPFS_READ_ONLY),
)
def _(tmp: Path) -> list[str]:
    mountpoint(tmp)
    return ["--workdir", "disk/work", *source(tmp)]


@case("workdir-full-disk", "--workdir on a full disk", prefix=in_tmpfs(TMPFS_FULL))
def _(tmp: Path) -> list[str]:
    mountpoint(tmp)
    return ["--workdir", "disk/work", *source(tmp)]


@case("output-in-workdir", "generate --output inside the work dir's base tree")
def _(tmp: Path) -> list[str]:
    return [*generate(tmp)[:-1], "work/trees/patches"]


@case("output-in-tree", "generate --output inside the --tree checkout")
def _(tmp: Path) -> list[str]:
    return [*generate(tmp)[:-1], "tree/patches"]


@case("tree-subdir", "--tree a QEMU tree that is a subdirectory of a checkout")
def _(tmp: Path) -> list[str]:
    outer = tmp / "outer"
    shutil.copytree(FIXTURES / "qemu-mini", outer / "qemu")
    git(outer, "init", "-q", "-b", "master")
    git(outer, "add", "-A")
    git(outer, "commit", "-q", "-m", "a QEMU tree among other things")
    return ["--series-file", series(tmp), "source", "--tree", "outer/qemu"]


# (end of section: work dir, --output and --tree (hostile input))


# -- series paths, dates and templates (hostile input) -----------------------


def symlink(tmp: Path, link: str, target: str | Path) -> None:
    """TMP/s/LINK made a symlink to target (what was there goes)."""
    path = tmp / "s" / link
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


@case("template-symlink-include", "a template includes a symlink to /etc/passwd")
def _(tmp: Path) -> list[str]:
    template(
        tmp,
        "{% macro prepare_call() %}",
        "{% include 'hw/vfio/pw.j2' %}{% macro prepare_call() %}",
    )
    symlink(tmp, "hw/vfio/pw.j2", "/etc/passwd")
    return generate(tmp)


@case("template-dir-symlink", "a template includes from a folder symlinked to /etc")
def _(tmp: Path) -> list[str]:
    template(
        tmp,
        "{% macro prepare_call() %}",
        "{% include 'hw/etc/passwd' %}{% macro prepare_call() %}",
    )
    symlink(tmp, "hw/etc", "/etc")
    return generate(tmp)


@case("series-template-symlink", "the folder of a patch's template leads outside")
def _(tmp: Path) -> list[str]:
    series(tmp)
    shutil.copytree(tmp / "s" / "hw" / "vfio", tmp / "elsewhere")
    symlink(tmp, "hw/vfio", tmp / "elsewhere")
    return generate(tmp)


@case("series-qtest-symlink", "the qtest's source is a symlink to /etc/shadow")
def _(tmp: Path) -> list[str]:
    series(tmp)
    symlink(tmp, "tests/qtest/vfio-migration-prepare-test.c", "/etc/shadow")
    return generate(tmp)


@case("series-mutations-symlink", "the mutations file is a symlink to /etc/passwd")
def _(tmp: Path) -> list[str]:
    series(tmp)
    symlink(tmp, "mutations/v1.yaml", "/etc/passwd")
    return generate(tmp)


@case("template-memory", "a template asks for a string of 3 GB")
def _(tmp: Path) -> list[str]:
    template(
        tmp,
        "{% macro prepare_call() %}",
        "{{ 'a' * 3000000000 }}{% macro prepare_call() %}",
    )
    return generate(tmp)


@case(
    "template-time",
    "a template loops 10^10 times (QSERIES_TEMPLATE_CPU=1)",
    QSERIES_TEMPLATE_CPU="1",
)
def _(tmp: Path) -> list[str]:
    template(
        tmp,
        "{% macro prepare_call() %}",
        "{% for i in range(100000) %}{% for j in range(100000) %}"
        "{% endfor %}{% endfor %}{% macro prepare_call() %}",
    )
    return generate(tmp)


@case("series-date-0001", "a date in year 1, which git would take for 2001")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp, replace("2026-11-27T09:00:00+00:00", "0001-01-01T00:00:00+00:00")
    )


@case("series-date-1969", "a date before 1970")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp, replace("2026-11-27T09:00:00+00:00", "1969-12-31T23:59:59+00:00")
    )


@case("series-date-2100", "a date after 2099")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp, replace("2026-11-27T09:00:00+00:00", "2100-01-01T00:00:00+00:00")
    )


@case("series-path-outside", "helper-file goes up out of the QEMU tree")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp, replace("helper-file: tests/qtest/vfio-fake.c", "helper-file: ../x.c")
    )


@case("series-path-absolute", "helper-file is an absolute path")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp, replace("helper-file: tests/qtest/vfio-fake.c", "helper-file: /etc/x")
    )


@case("series-path-nul", "helper-file holds a NUL character")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp,
        replace(
            "helper-file: tests/qtest/vfio-fake.c",
            'helper-file: "tests/qtest/x\\0.c"',
        ),
    )


@case("series-qtest-outside", "a qtest name that climbs out of tests/qtest")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp,
        replace(
            "qtest: vfio-migration-prepare-test\n          condition",
            "qtest: ../../../etc/x\n          condition",
        ),
    )


@case("series-mutation-file", "a mutation edits a file outside the QEMU tree")
def _(tmp: Path) -> list[str]:
    argv = generate(tmp)
    path = tmp / "s" / "mutations" / "v1.yaml"
    text = path.read_text()
    path.write_text(text.replace("file: hw/vfio/migration.c", "file: /etc/passwd", 1))
    return argv


@case("series-template-absolute", "a patch's template is an absolute path")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp,
        replace("template: hw/vfio/migration-v1.c.j2", "template: /etc/passwd"),
    )


# (end of section: series paths, dates and templates (hostile input))


# -- mail input: b4, trailers, message-id (hostile input) --------------------


def reply_mail(to: str, sender: str, subject: str, mid: str, body: str) -> str:
    return (
        "From mboxrd@z Thu Jan  1 00:00:00 1970\n"
        f"From: {sender}\nTo: qemu-devel@nongnu.org\nSubject: Re: {subject}\n"
        f"Date: Sun, 29 Nov 2026 10:00:00 +0000\nMessage-Id: {mid}\n"
        f"In-Reply-To: {to}\nReferences: {to}\n\n{body}\n"
    )


@case(
    "mail-spinning-reply",
    "a reply whose 5,000-letter Tested-by makes b4 spin for minutes",
    pick="left out",
    QSERIES_MAIL_TIME_LIMIT="1",
)
def _(tmp: Path) -> list[str]:
    tag = f"Tested-by: {'A' * 5000} <a@b.net>"
    spin = reply_mail("<c@x>", "A <a@b.net>", "[PATCH 0/3] x", "<spin@x>", tag)
    return mailed(tmp, lambda mails: [*mails, spin])


@case("mail-message-id-newline", "a message-id in series.yaml with a line break")
def _(tmp: Path) -> list[str]:
    base = '    base: ">=10.0, <11"\n'
    return generate(
        tmp, replace(base, base + '    message-id: "<c@x>\\nBcc: evil@x.net"\n')
    )


@case(
    "mail-trailer-for-another",
    "a reply from Joe gives a Tested-by for Ann",
    handled=True,
)
def _(tmp: Path) -> list[str]:
    mails = []
    for n, path in enumerate(sorted((REPO / "patches" / "v2").glob("*.patch"))):
        first, rest = path.read_text().split("\n", 1)
        ids = f"Message-Id: <p{n}@x>\n" + ("In-Reply-To: <p0@x>\n" if n else "")
        mails.append(f"{first}\n{ids}{rest}\n")
    joe = reply_mail(
        "<p2@x>", "Joe <joe@x.net>", "[PATCH v2 2/3] x", "<joe@x>",
        "Ann ran it.\n\nTested-by: Ann <ann@x.net>",
    )  # fmt: skip
    (tmp / "thread.mbox").write_text("".join([*mails, joe]))
    return [
        "--series-file", series(tmp), "trailers", "--mbox", "thread.mbox",
        "--output", committed(tmp),
    ]  # fmt: skip


# (end of section: mail input: b4, trailers, message-id (hostile input))


# -- writing files whole (hostile input) -------------------------------------

_SMALL_DISK: list[Path] = []


def small_disk() -> Path:
    """An empty 16 KB tmpfs, outside any case's TMP (whose removal must not
    meet a mount point): mounted once per process, emptied for each case,
    unmounted when the process ends.  Mounting needs root; CI is root."""
    import atexit

    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("mounting a 16 KB tmpfs needs root")
    if not _SMALL_DISK:
        where = Path(tempfile.mkdtemp(prefix="qseries-small-disk-"))
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(where)],
            check=True,
            capture_output=True,
        )
        atexit.register(_unmount, where)
        _SMALL_DISK.append(where)
    for left in _SMALL_DISK[0].iterdir():
        if left.is_dir() and not left.is_symlink():
            shutil.rmtree(left)
        else:
            left.unlink()
    return _SMALL_DISK[0]


def _unmount(where: Path) -> None:
    subprocess.run(["umount", str(where)], check=False, capture_output=True)
    where.rmdir()


@case("write-full-disk", "--output on a disk too small for the mails (16 KB)")
def _(tmp: Path) -> list[str]:
    (tmp / "out").symlink_to(small_disk())
    return generate(tmp)


# (end of section: writing files whole (hostile input))


# -- commands and processes (hostile input) ----------------------------------
@case("cmd-qemu-missing", "test --qemu names no file (checked before any build)")
def _(tmp: Path) -> list[str]:
    return ["--series-file", series(tmp), "test", "--qemu", "qemu-typo"]


@case("cmd-qemu-dir", "test --qemu names a directory")
def _(tmp: Path) -> list[str]:
    (tmp / "bin").mkdir()
    return ["--series-file", series(tmp), "test", "--qemu", "bin"]


@case("cmd-qemu-not-qemu", "test --qemu names a program that is no QEMU")
def _(tmp: Path) -> list[str]:
    script = tmp / "not-qemu"
    script.write_text("#!/bin/sh\necho 'not-qemu 1.0'\n")
    script.chmod(0o755)
    return ["--series-file", series(tmp), "test", "--qemu", "not-qemu"]


@case("cmd-export-full-ref", "export --branch given as a full ref name")
def _(tmp: Path) -> list[str]:
    return [
        "--series-file", series(tmp), "export", "--tree", tree(tmp),
        "--repo", user_repo(tmp), "--branch", "refs/heads/master",
    ]  # fmt: skip


@case("cmd-export-at", "export --branch @ (git's name of HEAD)")
def _(tmp: Path) -> list[str]:
    return [
        "--series-file", series(tmp), "export", "--tree", tree(tmp),
        "--repo", user_repo(tmp), "--branch", "@",
    ]  # fmt: skip


@case("cmd-series-twice", "--series given twice")
def _(tmp: Path) -> list[str]:
    return ["--series-file", series(tmp), "source", "--series", "v1", "--series", "v2"]


@case("cmd-ci-stdout-output", "ci gitlab --stdout with --output")
def _(tmp: Path) -> list[str]:
    return ["--series-file", series(tmp), "ci", "gitlab", "--stdout", "--output", "F"]


@case(
    "cmd-ci-out-of-root",
    "ci gitlab --output in a folder that does not hold the series (no git)",
)
def _(tmp: Path) -> list[str]:
    return ["--series-file", series(tmp), "ci", "gitlab", "--output", "ci/p.yml"]


@case("cmd-ci-folder-blank", "ci gitlab for a series in a folder with a blank")
def _(tmp: Path) -> list[str]:
    copy_series(tmp / "my s")
    return ["-C", "my s", "ci", "gitlab", "--output", ".gitlab-ci.yml"]


# (end of section: commands and processes (hostile input))


# -- checkers and the sandbox (hostile input) --------------------------------


def forged_checkpatch(touched: Path) -> str:
    """A diff that adds a scripts/checkpatch.pl (the small tree has none)
    giving a clean verdict and touching a file: appended to patch 3."""
    script = [
        "#!/usr/bin/env perl",
        f"open(my $t, '>', '{touched}') and close($t);",
        'print "total: 0 errors, 0 warnings, 1 lines checked\\n";',
    ]
    return (
        "diff --git a/scripts/checkpatch.pl b/scripts/checkpatch.pl\n"
        "new file mode 100755\n"
        "--- /dev/null\n"
        "+++ b/scripts/checkpatch.pl\n"
        f"@@ -0,0 +1,{len(script)} @@\n" + "".join(f"+{line}\n" for line in script)
    )


@case(
    "checker-forged-checkpatch",
    "patch 3 of a mailed thread adds its own scripts/checkpatch.pl",
    pick="changes scripts/checkpatch.pl",
)
def _(tmp: Path) -> list[str]:
    def forge(mails: list[str]) -> list[str]:
        evil = mails[3].rstrip("\n") + "\n" + forged_checkpatch(tmp / "forged-ran")
        return [*mails[:3], evil]

    return mailed(tmp, forge)


# (end of section: checkers and the sandbox (hostile input))


# -- kernel device (issue 19) ---


@case("device-kernel-with-faults", "--faults asked of the kernel device")
def _(tmp: Path) -> list[str]:
    return ["--series-file", series(tmp), "test", "--device", "kernel", "--faults"]


@case("device-kernel-for-fake", "--kernel given with --device fake")
def _(tmp: Path) -> list[str]:
    return ["--series-file", series(tmp), "test", "--kernel", "6.12.1+deb12"]


@case("bench-repeat-zero", "bench --repeat 0: no run of the scenarios to measure")
def _(tmp: Path) -> list[str]:
    return ["--series-file", series(tmp), "bench", "--repeat", "0"]


# The kernel device's archive: a small local Debian archive of the kernel
# packages (tests/kernel_archive.py), named to qseries by the case's
# prefix, relative to the case's directory.
WITH_ARCHIVE = (
    "sh",
    "-c",
    'QSERIES_DEBIAN_MIRROR="file://$PWD/archive" exec "$@"',
    "sh",
)


def kernel_archive(tmp: Path, **options: Any) -> None:
    from ..kernel_archive import KernelArchive

    KernelArchive(tmp / "archive", tmp / "archive-build", **options).build()


@case(
    "device-kernel-not-listed",
    "--kernel names a version Debian's index does not list",
    prefix=WITH_ARCHIVE,
)
def _(tmp: Path) -> list[str]:
    kernel_archive(tmp)
    return [
        "--series-file",
        series(tmp),
        "test",
        "--device",
        "kernel",
        "--kernel",
        "6.12.99",
    ]


# (end of section: kernel device)


# -- labs and kinds of change (issue 20) ---


@case("lab-unknown", "series.yaml names a lab this qseries does not have")
def _(tmp: Path) -> list[str]:
    return generate(tmp, replace("lab: vfio-migration", "lab: no-such-lab"))


@case("lab-not-named", "a version has 'lab:' keys, but the series names no lab")
def _(tmp: Path) -> list[str]:
    return generate(tmp, replace("lab: vfio-migration\n", ""))


@case("schema-unknown", "series.yaml says a schema this qseries does not read")
def _(tmp: Path) -> list[str]:
    return generate(tmp, replace("schema: 2", "schema: 7"))


@case("kind-unknown", "a change of a kind no generator has")
def _(tmp: Path) -> list[str]:
    return generate(
        tmp, replace("generator: vfio-migration-notice", "generator: notice")
    )


@case("lab-option-without-lab", "an option of a lab for a series with no lab")
def _(tmp: Path) -> list[str]:
    shutil.copytree(REPO / "series" / "yank-doc", tmp / "fixture")
    return ["--series-file", "fixture/series.yaml", "test", "--device", "kernel"]


# (end of section: labs and kinds of change)


# -- import ------------------------------------------------------------------


def topic(tmp: Path) -> str:
    """The small checkout with a branch 'topic' of one C change on
    master; returns the checkout's folder name."""
    name = tree(tmp)
    dest = tmp / name
    c = dest / "hw" / "vfio" / "migration.c"
    git(dest, "checkout", "-q", "-b", "topic")
    c.write_text(c.read_text().replace("{\n", "{\n    /* topic */\n", 1))
    git(dest, "commit", "-q", "-a", "-m", "vfio: Topic\n\nSigned-off-by: A <a@b.org>")
    return name


def topic_mbox(tmp: Path, *extra: str) -> str:
    name = topic(tmp)
    text = git(
        tmp / name,
        "format-patch",
        "--stdout",
        "--cover-letter",
        *extra,
        "master..topic",
    )
    (tmp / "thread.mbox").write_text(text)
    return "thread.mbox"


@case("import-range-missing", "import --range names a commit the checkout lacks")
def _(tmp: Path) -> list[str]:
    name = topic(tmp)
    return ["import", "--tree", name, "--range", "master..nosuch", "--to", "s"]


@case("import-merge", "import --range holds a merge commit")
def _(tmp: Path) -> list[str]:
    name = topic(tmp)
    dest = tmp / name
    git(dest, "checkout", "-q", "-b", "side", "master")
    (dest / "side.txt").write_text("side\n")
    git(dest, "add", "side.txt")
    git(dest, "commit", "-q", "-m", "side")
    git(dest, "checkout", "-q", "topic")
    git(dest, "merge", "-q", "--no-edit", "side")
    return ["import", "--tree", name, "--range", "master..topic", "--to", "s"]


@case("import-empty-patch", "import --range holds a commit that changes no file")
def _(tmp: Path) -> list[str]:
    name = topic(tmp)
    git(tmp / name, "commit", "-q", "--allow-empty", "-m", "Nothing at all")
    return ["import", "--tree", name, "--range", "master..topic", "--to", "s"]


@case(
    "import-base-unknown",
    "import --mbox of a thread whose base-commit the --tree checkout lacks",
)
def _(tmp: Path) -> list[str]:
    mbox = topic_mbox(tmp, "--base=master")
    master = git(tmp / "tree", "rev-parse", "master").strip()
    text = (tmp / mbox).read_text().replace(master, "1" * 40)
    (tmp / mbox).write_text(text)
    return ["import", "--mbox", mbox, "--tree", "tree", "--to", "s"]


@case("import-mbox-incomplete", "import --mbox of a thread that lacks a patch")
def _(tmp: Path) -> list[str]:
    name = topic(tmp)
    dest = tmp / name
    (dest / "docs.txt").write_text("docs\n")
    git(dest, "add", "docs.txt")
    git(dest, "commit", "-q", "-m", "docs: Add\n\nSigned-off-by: A <a@b.org>")
    text = git(dest, "format-patch", "--stdout", "--cover-letter", "master..topic")
    parts = re.split(r"(?m)^(?=From [0-9a-f]{40} )", text)
    (tmp / "thread.mbox").write_text("".join(p for p in parts if "2/2]" not in p))
    return ["import", "--mbox", "thread.mbox", "--tree", name, "--to", "s"]


@case(
    "import-does-not-apply", "import --mbox of a patch that does not apply to its base"
)
def _(tmp: Path) -> list[str]:
    mbox = topic_mbox(tmp)
    dest = tmp / "tree"
    git(dest, "checkout", "-q", "master")
    c = dest / "hw" / "vfio" / "migration.c"
    c.write_text(c.read_text().replace("{\n", "{\n    /* moved on */\n", 1))
    git(dest, "commit", "-q", "-a", "-m", "moved on")
    return ["import", "--mbox", mbox, "--tree", "tree", "--to", "s"]


@case("import-bad-author", "import --range holds a commit whose author has no address")
def _(tmp: Path) -> list[str]:
    name = topic(tmp)
    dest = tmp / name
    (dest / "more.txt").write_text("more\n")
    git(dest, "add", "more.txt")
    git(dest, "commit", "-q", "--author", "Nobody <nowhere>", "-m", "more")
    return ["import", "--tree", name, "--range", "master..topic", "--to", "s"]


@case(
    "import-foreign-dir", "import --to a folder that holds files import did not write"
)
def _(tmp: Path) -> list[str]:
    name = topic(tmp)
    (tmp / "s").mkdir()
    (tmp / "s" / "notes.txt").write_text("mine\n")
    return ["import", "--tree", name, "--range", "master..topic", "--to", "s"]


# -- running the cases -------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    line: str
    exit: int


def run_case(c: Case, tmp: Path) -> Outcome:
    argv = c.setup(tmp)
    env = {
        **os.environ,
        **GIT_ENV,
        "QSERIES_WORKDIR": str(tmp / "work"),
        "PYTHONPATH": str(REPO / "scripts"),
        **c.env,
    }
    proc = subprocess.run(
        [*c.prefix, sys.executable, "-m", "qseries", *argv],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines() or ["(nothing)"]
    if c.pick is not None:
        lines = [
            " ".join(line.split())
            for line in proc.stdout.splitlines()
            if c.pick in line
        ] or ["(no such line)"]
    line = lines[-1].replace(str(tmp), "TMP").replace(str(REPO), "REPO")
    return Outcome(line, proc.returncode)


def command_of(c: Case) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        argv = c.setup(Path(scratch))
    shown = [a if len(a) < 40 else a[:20] + "..." for a in argv]
    return "qseries " + " ".join(shown)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table_rows(outcomes: dict[str, Outcome]) -> list[str]:
    rows = [
        "| case | bad input | command | what qseries prints | exit |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in CASES:
        o = outcomes[c.id]
        rows.append(
            f"| {c.id} | {_cell(c.what)} | `{_cell(command_of(c))}` "
            f"| `{_cell(o.line)}` | {o.exit} |"
        )
    return rows


def read_table() -> dict[str, Outcome]:
    text = TABLE.read_text()
    body = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    found: dict[str, Outcome] = {}
    for row in body.strip().splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        line = cells[3].strip("`").replace("\\|", "|")
        found[cells[0]] = Outcome(line, int(cells[4]))
    return found


def test_every_case_is_in_the_table_and_nothing_else() -> None:
    assert len(CASES) >= MIN_CASES
    assert len({c.id for c in CASES}) == len(CASES)
    assert sorted(read_table()) == sorted(c.id for c in CASES)


def test_the_findings_without_a_row_name_tests_that_exist() -> None:
    """The table after the cases points at the tests that prove what
    prints nothing: each must be a test of this repository."""
    after = TABLE.read_text().split(END, 1)[1]
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", after)
    assert named
    for path, name in named:
        assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), (
            f"{path}::{name}"
        )


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_case_prints_what_the_table_says(c: Case, tmp_path: Path) -> None:
    outcome = run_case(c, tmp_path)
    want = read_table()[c.id]
    assert outcome == want
    if c.handled:
        # Got past: the run goes on and names what it did not take.
        assert outcome.exit == 0
        assert outcome.line != "(nothing)"
        assert not outcome.line.startswith("qseries: error: ")
    elif c.pick is None:
        # A bad input is one line: what, where and what to do.
        assert outcome.line.startswith("qseries: error: ")
        assert outcome.exit in (1, 2)
    else:
        # A flaw of the series itself: a failed check, named in its table.
        assert outcome.exit == 1


def write_table() -> None:
    outcomes = {}
    for c in CASES:
        with tempfile.TemporaryDirectory() as scratch:
            outcomes[c.id] = run_case(c, Path(scratch))
    text = TABLE.read_text()
    start = text.index(BEGIN) + len(BEGIN)
    text = (
        text[:start]
        + "\n"
        + "\n".join(table_rows(outcomes))
        + "\n"
        + text[text.index(END) :]
    )
    TABLE.write_text(text)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.functional.test_bad_inputs --write")
    write_table()
