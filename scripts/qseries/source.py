"""QEMU base trees: Debian's source package, a user's checkout, a git URL.

Every base ends up as a git repository inside the work dir, checked out
at its base commit.  A user's own checkout is only ever read: qseries
clones it and never writes to it, its index or its refs.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import SourceError, ToolError, UsageError
from .gitutil import Git
from .versions import (
    QemuVersion,
    VersionRange,
    compare_debian,
    upstream_of_debian,
)

APT_SOURCES = Path("/etc/apt")
DEBIAN_SUITES = ("sid", "trixie")
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LISTS_MAX_AGE = 24 * 3600
MARKER = "qseries-base.json"

BASE_NAME = "Debian qemu source package"
BASE_EMAIL = "qemu@packages.debian.org"


def say(message: str) -> None:
    """Progress for people, on stderr."""
    print(f"qseries: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class BaseTree:
    """A QEMU tree checked out at its base commit."""

    kind: str  # "debian", "tree" or "git"
    root: Path
    commit: str
    version: str  # the tree's VERSION file
    label: str  # for people: "Debian qemu 1:10.2.2+ds-1"
    debian_version: str | None = None

    @property
    def qemu_version(self) -> QemuVersion:
        return QemuVersion.parse(self.version)

    def describe(self) -> str:
        return f"QEMU {self.version} ({self.label})"

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = asdict(self)
        data["root"] = str(self.root)
        return data


@dataclass(frozen=True)
class SourceSpec:
    """Which base to use, as the command line says."""

    base_version: str | None = None
    tree: Path | None = None
    git_url: str | None = None
    git_ref: str | None = None
    refresh: bool = False

    def __post_init__(self) -> None:
        kinds = [self.base_version, self.tree, self.git_url]
        if sum(k is not None for k in kinds) > 1:
            raise UsageError(
                "--base-version, --tree and --git exclude each other",
                "pass only one of them",
            )
        if (self.git_url is None) != (self.git_ref is None):
            raise UsageError("--git and --ref go together", "pass both")


class WorkDir:
    """The one directory qseries writes to (besides the patches/ it makes)."""

    def __init__(self, path: Path):
        self.path = path.expanduser().absolute()

    @classmethod
    def default(cls, option: str | None) -> WorkDir:
        value = option or os.environ.get("QSERIES_WORKDIR")
        if value:
            return cls(Path(value))
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return cls(Path(cache) / "qseries")

    def sub(self, *parts: str) -> Path:
        path = self.path.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


def _run(
    argv: Sequence[str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except FileNotFoundError:
        raise ToolError(
            f"{argv[0]} is not installed",
            "run 'make bootstrap' (or see README) to install what qseries needs",
        ) from None


def _apt_entries(etc: Path) -> list[tuple[str, list[str]]]:
    """(URI, suites) of the system's binary package sources, in order."""
    entries: list[tuple[str, list[str]]] = []
    legacy = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for path in legacy:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m:
                entries.append((m[1], [m[2]]))
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([\w-]+):\s*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split():
                for uri in fields.get("URIs", "").split():
                    entries.append((uri, fields.get("Suites", "").split()))
    return entries


def system_mirror(etc: Path = APT_SOURCES) -> str:
    """The Debian archive the system's apt already uses (read, never changed)."""
    for uri, suites in _apt_entries(etc):
        if uri.rstrip("/").endswith("/debian") and not any(
            s.endswith("-security") for s in suites
        ):
            return uri.rstrip("/")
    raise SourceError(
        f"no Debian archive found in {etc}/sources.list*",
        "set QSERIES_DEBIAN_MIRROR to a Debian mirror URL",
    )


class Apt:
    """apt-get and apt-cache with a private configuration in the work dir."""

    def __init__(self, workdir: WorkDir, mirror: str | None = None):
        self.root = workdir.sub("apt")
        self.mirror = (
            mirror or os.environ.get("QSERIES_DEBIAN_MIRROR") or system_mirror()
        )
        self.sources = self.root / "sources.list"
        (self.root / "sources.list.d").mkdir(exist_ok=True)
        (self.root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.root / "cache" / "archives" / "partial").mkdir(
            parents=True, exist_ok=True
        )
        keyring = (
            f" [signed-by={DEBIAN_KEYRING}]" if Path(DEBIAN_KEYRING).exists() else ""
        )
        text = "".join(
            f"deb-src{keyring} {self.mirror} {suite} main\n" for suite in DEBIAN_SUITES
        )
        if not self.sources.exists() or self.sources.read_text() != text:
            self.sources.write_text(text)
            for old in (self.root / "lists").glob("*_Sources*"):
                old.unlink()

    def options(self) -> list[str]:
        opts = {
            "Dir::Etc::SourceList": str(self.sources),
            "Dir::Etc::SourceParts": str(self.root / "sources.list.d"),
            "Dir::State::Lists": str(self.root / "lists"),
            "Dir::Cache": str(self.root / "cache"),
            "Debug::NoLocking": "1",
        }
        if os.geteuid() == 0:
            # _apt cannot write into the work dir; download as ourselves.
            opts["APT::Sandbox::User"] = "root"
        return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]

    def update(self, refresh: bool) -> None:
        lists = list((self.root / "lists").glob("*_Sources*"))
        fresh = (
            lists
            and min(p.stat().st_mtime for p in lists) > time.time() - LISTS_MAX_AGE
        )
        if fresh and not refresh:
            return
        say(f"reading the qemu source package index ({', '.join(DEBIAN_SUITES)})")
        proc = _run(["apt-get", *self.options(), "update"])
        # apt-get update exits 0 when a mirror is unreachable; the lists tell.
        if proc.returncode != 0 or not list((self.root / "lists").glob("*_Sources*")):
            raise SourceError(
                f"apt-get update failed: {_last_line(proc.stderr or proc.stdout)}",
                f"check that {self.mirror} is reachable",
            )

    def source_versions(self, package: str) -> list[str]:
        proc = _run(["apt-cache", *self.options(), "showsrc", package])
        if proc.returncode != 0:
            raise SourceError(
                f"apt-cache showsrc {package} failed: {_last_line(proc.stderr)}"
            )
        versions = set()
        for stanza in proc.stdout.split("\n\n"):
            fields = dict(re.findall(r"^([\w-]+): (.*)$", stanza, re.M))
            if fields.get("Package") == package and "Version" in fields:
                versions.add(fields["Version"])
        return versions_newest_first(versions)

    def download(self, package: str, version: str, dest: Path) -> Path | None:
        """Download a source package into dest; None if it is not fetchable."""
        dsc = dest / f"{package}_{version.split(':', 1)[-1]}.dsc"
        done = dest / "complete"
        if done.exists() and dsc.exists():
            return dsc
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        proc = _run(
            [
                "apt-get",
                *self.options(),
                "source",
                "--download-only",
                f"{package}={version}",
            ],
            cwd=dest,
        )
        if proc.returncode != 0 or not dsc.exists():
            shutil.rmtree(dest, ignore_errors=True)
            say(
                f"{package} {version} is listed but did not download "
                f"({_last_line(proc.stderr)})"
            )
            return None
        done.write_text(version + "\n")
        return dsc


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")]
    return (errors or lines or ["no output"])[0 if errors else -1]


def versions_newest_first(versions: set[str] | list[str]) -> list[str]:
    from functools import cmp_to_key

    return sorted(versions, key=cmp_to_key(compare_debian), reverse=True)


def select_versions(
    available: list[str], base_range: VersionRange, exact: str | None
) -> list[str]:
    """The candidates to try, best first."""
    if exact is not None:
        chosen = [
            v
            for v in available
            if v == exact
            or v.split(":", 1)[-1] == exact
            or str(upstream_of_debian(v)) == exact
            or str(upstream_of_debian(v)).startswith(exact + ".")
        ]
        if not chosen:
            raise SourceError(
                f"no qemu source package matches --base-version {exact}",
                "listed: " + ", ".join(available),
            )
        return chosen
    chosen = [v for v in available if upstream_of_debian(v) in base_range]
    if not chosen:
        raise SourceError(
            f"no qemu source package in the base range '{base_range}'",
            "listed: " + ", ".join(available) + "; pass --base-version",
        )
    return chosen


def _changelog_date(tree: Path) -> str:
    """The date of the newest debian/changelog entry, for the base commit."""
    changelog = tree / "debian" / "changelog"
    for line in changelog.read_text(errors="replace").splitlines():
        m = re.match(r" -- .+?>  (.+)$", line)
        if m:
            stamp = email.utils.parsedate_to_datetime(m[1])
            return stamp.isoformat()
    raise SourceError(f"{changelog}: no dated entry")


def _commit_all(root: Path, message: str, date: str) -> str:
    g = Git(root)
    g.run("init", "--quiet", "--initial-branch=qseries-base")
    g.run("add", "--all", "--force", ".")
    env = {
        "GIT_AUTHOR_NAME": BASE_NAME,
        "GIT_AUTHOR_EMAIL": BASE_EMAIL,
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_NAME": BASE_NAME,
        "GIT_COMMITTER_EMAIL": BASE_EMAIL,
        "GIT_COMMITTER_DATE": date,
    }
    g.run("commit", "--quiet", "--no-verify", "-m", message, env=env)
    return g.rev("HEAD")


def _read_marker(root: Path) -> BaseTree | None:
    marker = root / ".git" / MARKER
    try:
        data = json.loads(marker.read_text())
        base = BaseTree(**{**data, "root": root})
    except (OSError, ValueError, TypeError):
        return None
    # A cache is only reused when it is what the marker says it is.
    if Git(root).try_run("rev-parse", "HEAD") != base.commit:
        return None
    return base


def _write_marker(base: BaseTree) -> None:
    (base.root / ".git" / MARKER).write_text(json.dumps(base.to_json(), indent=1))


def _version_file(g: Git, commit: str) -> str:
    try:
        return g.show(commit, "VERSION").strip()
    except ToolError:
        raise SourceError(
            f"{g.path} at {commit[:12]} has no VERSION file",
            "is it a QEMU tree?",
        ) from None


def debian_base(
    workdir: WorkDir, base_range: VersionRange, exact: str | None, refresh: bool
) -> BaseTree:
    apt = Apt(workdir)
    apt.update(refresh)
    available = apt.source_versions("qemu")
    if not available:
        raise SourceError("the Debian index lists no qemu source package")
    candidates = select_versions(available, base_range, exact)
    for i, version in enumerate(candidates):
        safe = re.sub(r"[^\w.+-]", "_", version)
        root = workdir.path / "trees" / f"debian-{safe}"
        cached = _read_marker(root)
        if cached is not None:
            return cached
        dsc = apt.download("qemu", version, workdir.sub("debian", safe))
        if dsc is None:
            if i + 1 < len(candidates):
                say(f"falling back to qemu {candidates[i + 1]}")
            continue
        return _unpack(dsc, root, version)
    raise SourceError(
        "no qemu source package could be downloaded: tried " + ", ".join(candidates),
        "check the network, or pass --tree PATH",
    )


def _unpack(dsc: Path, root: Path, version: str) -> BaseTree:
    say(f"unpacking qemu {version} with dpkg-source -x")
    shutil.rmtree(root, ignore_errors=True)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    proc = _run(["dpkg-source", "--no-check", "-x", str(dsc), str(tmp)])
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SourceError(
            f"dpkg-source -x {dsc.name} failed: {_last_line(proc.stderr)}",
            "install dpkg-dev",
        )
    say("committing the base tree")
    commit = _commit_all(
        tmp, f"QEMU {version} from Debian's qemu source package", _changelog_date(tmp)
    )
    tmp.rename(root)
    base = BaseTree(
        kind="debian",
        root=root,
        commit=commit,
        version=(root / "VERSION").read_text().strip(),
        label=f"Debian qemu {version}",
        debian_version=version,
    )
    _write_marker(base)
    return base


def tree_base(workdir: WorkDir, path: Path) -> BaseTree:
    """A clone of the user's checkout at its HEAD; the checkout is only read."""
    path = path.expanduser().absolute()
    user = Git(path)
    top = user.try_run("rev-parse", "--show-toplevel")
    if top is None:
        raise SourceError(
            f"--tree {path} is not a git checkout", "pass a QEMU git tree"
        )
    status = user.run(
        "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"
    )
    if status.strip():
        first = status.splitlines()[0][3:]
        raise SourceError(
            f"--tree {path} has uncommitted changes (e.g. {first})",
            "qseries uses the committed HEAD only: commit or stash them first",
        )
    head = user.rev("HEAD")
    key = hashlib.sha256(str(Path(top)).encode()).hexdigest()[:12]
    root = workdir.path / "trees" / f"tree-{key}"
    # The label goes into mails: the commit, not where the checkout lives.
    return _clone_at(root, str(Path(top)), head, "HEAD", f"git {head[:12]}", "tree")


def git_base(workdir: WorkDir, url: str, ref: str) -> BaseTree:
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    root = workdir.path / "trees" / f"git-{key}"
    return _clone_at(root, url, None, ref, f"{url} {ref}", "git")


def _clone_at(
    root: Path, url: str, commit: str | None, ref: str, label: str, kind: str
) -> BaseTree:
    if not (root / ".git").is_dir():
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        say(f"cloning {url}")
        Git(root.parent).run("clone", "--quiet", "--no-checkout", "--", url, str(root))
    g = Git(root)
    if commit is None or g.try_run("cat-file", "-e", f"{commit}^{{commit}}") is None:
        say(f"fetching {ref} from {url}")
        g.run("fetch", "--quiet", "--", url, ref)
        commit = commit or g.rev("FETCH_HEAD")
    g.run("checkout", "--quiet", "--force", "--detach", commit)
    version = _version_file(g, commit)
    base = BaseTree(kind=kind, root=root, commit=commit, version=version, label=label)
    _write_marker(base)
    return base


def get_base(workdir: WorkDir, spec: SourceSpec, base_range: VersionRange) -> BaseTree:
    if spec.tree is not None:
        return tree_base(workdir, spec.tree)
    if spec.git_url is not None and spec.git_ref is not None:
        return git_base(workdir, spec.git_url, spec.git_ref)
    return debian_base(workdir, base_range, spec.base_version, spec.refresh)
