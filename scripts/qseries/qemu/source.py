"""QEMU base trees: Debian's source package, a user's checkout, a git URL.

Every base ends up as a git repository inside the work dir, checked out
at its base commit.  A user's own checkout is only ever read: qseries
clones it and never writes to it, its index or its refs.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from ..core.versions import (
    QemuVersion,
    VersionRange,
    compare_debian,
    upstream_of_debian,
)
from ..ground.console import say, say_once
from ..ground.errors import EXIT_USAGE, QSeriesError, SourceError, ToolError, UsageError
from ..ground.gitutil import CorruptRepoError, Git
from ..ground.proc import Ran, run_bounded
from ..ground.workdir import WorkDir

APT_SOURCES = Path("/etc/apt")
DEBIAN_SUITES = ("sid", "trixie")
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LISTS_MAX_AGE = 24 * 3600
MARKER = "qseries-base.json"
# Written (to a temporary name, then renamed) only once a step is complete:
# an interrupted apt-get update or download leaves no stamp behind.
UPDATED_STAMP = "updated.json"
DOWNLOADED_STAMP = "complete"

# Time limits of the external commands, in seconds.  apt's own network
# timeouts (APT_NETWORK_OPTIONS) make a stalled mirror fail well before.
APT_UPDATE_TIMEOUT = 10 * 60
APT_SOURCE_TIMEOUT = 30 * 60
APT_CACHE_TIMEOUT = 2 * 60
DPKG_SOURCE_TIMEOUT = 15 * 60
GIT_CLONE_TIMEOUT = 30 * 60
# git fast-import of a whole QEMU tree (about 10 s on 2 cores).
IMPORT_TIMEOUT = 15 * 60
APT_NETWORK_OPTIONS = {
    "Acquire::http::Timeout": "60",
    "Acquire::https::Timeout": "60",
    "Acquire::Retries": "2",
}

# Free space wanted before a step starts: the index (two Sources lists,
# about 50 MB), and a Debian base (40 MB download, 460 MB tree and git).
INDEX_SPACE = 200 * 2**20
BASE_SPACE = 700 * 2**20

BASE_NAME = "Debian qemu source package"
BASE_EMAIL = "qemu@packages.debian.org"


class Unavailable(SourceError):
    """The Debian index lists the base, but it cannot be downloaded."""


class TreeOptionError(SourceError):
    """--tree names something that is not a usable QEMU checkout."""

    exit_code = EXIT_USAGE


class NoSpaceError(SourceError):
    """The disk of the work dir is full."""


def no_space(where: Path, doing: str) -> NoSpaceError:
    return NoSpaceError(
        f"no space left on device in {where} ({doing})",
        "free some space there, or pass --workdir DIR on a disk with room",
    )


def need_space(where: Path, wanted: int, doing: str) -> None:
    """Fail at once, rather than halfway, when the disk cannot hold a step."""
    free = shutil.disk_usage(where).free
    if free < wanted:
        raise NoSpaceError(
            f"not enough space in {where} for {doing}: "
            f"{free // 2**20} MB free, about {wanted // 2**20} MB needed",
            "free some space there, or pass --workdir DIR on a disk with room",
        )


def write_stamp(path: Path, data: dict[str, object]) -> None:
    """Write a completion stamp atomically: whole, or not at all."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_stamp(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


SourceFiles = dict[str, tuple[str, int]]  # file name: (sha256, size)


def mismatched_files(directory: Path, files: SourceFiles) -> list[str]:
    """The files of a source package that are missing or differ from the index.

    The sizes are compared first, so that a truncated file costs no hashing.
    """
    bad = []
    for name, (sha256, size) in sorted(files.items()):
        path = directory / name
        try:
            if path.stat().st_size != size or sha256_of(path) != sha256:
                bad.append(name)
        except OSError:
            bad.append(name)
    return bad


def parse_showsrc(text: str, package: str) -> dict[str, SourceFiles]:
    """Version: files with their sha256, from `apt-cache showsrc` output."""
    versions: dict[str, SourceFiles] = {}
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([\w-]+):[ \t]*(.*)$", stanza, re.M))
        if fields.get("Package") != package or "Version" not in fields:
            continue
        block = re.search(
            r"^Checksums-Sha256:[ \t]*\n((?:[ \t]+\S.*\n?)+)", stanza, re.M
        )
        files: SourceFiles = {}
        for line in block[1].splitlines() if block else []:
            parts = line.split()
            if len(parts) == 3 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
                files[parts[2]] = (parts[0], int(parts[1]))
        versions.setdefault(fields["Version"], {}).update(files)
    return versions


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

    def based_on(self) -> str:
        """The base in the words of a cover letter: 'QEMU 10.2.2, Debian
        1:10.2.2+ds-1', or 'QEMU 10.2.50, git 55040f89068b'."""
        if self.kind == "debian" and self.debian_version:
            return f"QEMU {self.version}, Debian {self.debian_version}"
        return f"QEMU {self.version}, {self.label}"

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


def _command_name(argv: Sequence[str]) -> str:
    """'apt-get update', 'dpkg-source -x': the program and what it does."""
    words = [argv[0]]
    args = iter(argv[1:])
    for arg in args:
        if arg == "-o":
            next(args, None)
        elif arg == "-x" or not arg.startswith("-"):
            words.append(arg)
            break
    return " ".join(words)


def _run(
    argv: Sequence[str],
    cwd: Path | None = None,
    *,
    timeout: float,
    workdir: Path,
) -> Ran:
    """Run a command with a time limit; its children go when it goes.

    A full disk (ENOSPC in the command's output) is reported as such,
    naming the work dir, whatever the command's exit code.
    """
    name = _command_name(argv)
    try:
        ran = run_bounded(argv, {**os.environ, "LC_ALL": "C"}, timeout, cwd)
    except FileNotFoundError:
        hint = "run 'make bootstrap' (or see README) to install what qseries needs"
        if argv[0] == "dpkg-source":
            hint = "install dpkg-dev (apt-get install dpkg-dev)"
        raise ToolError(f"{argv[0]} is not installed", hint) from None
    if ran.timed_out:
        raise ToolError(
            f"{name} did not finish within its time limit of {timeout:g} s",
            "check the network and the free space of the work dir, then retry",
        )
    if os.strerror(errno.ENOSPC) in ran.stderr + ran.stdout:
        raise no_space(workdir, f"{name} failed")
    return ran


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


def local_archive(mirror: str) -> Path | None:
    """The directory of a local archive (a file: or copy: URI), else None."""
    url = urllib.parse.urlparse(mirror)
    if url.scheme not in ("file", "copy"):
        return None
    if url.netloc or not url.path.startswith("/"):
        raise UsageError(
            f"QSERIES_DEBIAN_MIRROR={mirror}: a local archive needs an absolute path",
            "write it as file:///path/to/archive",
        )
    return Path(urllib.parse.unquote(url.path))


def _signed(archive: Path, suites: Sequence[str] = DEBIAN_SUITES) -> bool:
    """Whether a local archive has signed Release files for these suites."""
    return all(
        (archive / "dists" / suite / "InRelease").is_file()
        or (archive / "dists" / suite / "Release.gpg").is_file()
        for suite in suites
    )


def list_options(local: Path | None, suites: Sequence[str] = DEBIAN_SUITES) -> str:
    """The [options] of a sources.list line: the Debian keyring signs,
    but an unsigned local archive is one the user made and named."""
    if local is not None and not _signed(local, suites):
        return " [trusted=yes]"
    if Path(DEBIAN_KEYRING).exists():
        return f" [signed-by={DEBIAN_KEYRING}]"
    return ""


def private_apt_options(root: Path, sources: Path) -> list[str]:
    """apt's -o options for a configuration of its own under root: the
    sources, lists and cache there, not the system's."""
    opts = {
        "Dir::Etc::SourceList": str(sources),
        "Dir::Etc::SourceParts": str(root / "sources.list.d"),
        "Dir::State::Lists": str(root / "lists"),
        "Dir::Cache": str(root / "cache"),
        "Debug::NoLocking": "1",
        **APT_NETWORK_OPTIONS,
    }
    if os.geteuid() == 0:
        # _apt cannot write into the work dir; download as ourselves.
        opts["APT::Sandbox::User"] = "root"
    return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]


class Apt:
    """apt-get and apt-cache with a private configuration in the work dir.

    The archive is QSERIES_DEBIAN_MIRROR, else the Debian mirror the
    system's apt uses.  A local archive (file:///DIR) is read with apt's
    copy: method, so that the downloads are copies in the work dir, not
    links into DIR; if its Release files are unsigned, it is marked
    [trusted=yes] (the sha256 of its Sources still check every file).
    """

    def __init__(self, workdir: WorkDir, mirror: str | None = None):
        self.workdir = workdir.path
        self.root = workdir.sub("apt")
        self.mirror = (
            mirror or os.environ.get("QSERIES_DEBIAN_MIRROR") or system_mirror()
        )
        self.local = local_archive(self.mirror)
        if self.local is not None and not (self.local / "dists").is_dir():
            raise SourceError(
                f"{self.mirror} is not a Debian archive (no {self.local}/dists)",
                "set QSERIES_DEBIAN_MIRROR to a directory with dists/ and pool/",
            )
        uri = self.mirror
        if self.local is not None:
            uri = "copy://" + urllib.parse.quote(str(self.local))
        self.sources = self.root / "sources.list"
        self.stamp = self.root / UPDATED_STAMP
        self._index: dict[str, dict[str, SourceFiles]] = {}
        (self.root / "sources.list.d").mkdir(exist_ok=True)
        (self.root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.root / "cache" / "archives" / "partial").mkdir(
            parents=True, exist_ok=True
        )
        options = self.source_options()
        text = "".join(
            f"deb-src{options} {uri} {suite} main\n" for suite in DEBIAN_SUITES
        )
        if not self.sources.exists() or self.sources.read_text() != text:
            self.stamp.unlink(missing_ok=True)
            self.sources.write_text(text)
            for old in (self.root / "lists").glob("*_Sources*"):
                old.unlink()

    def source_options(self) -> str:
        """The [options] of our deb-src lines (list_options)."""
        return list_options(self.local)

    def options(self) -> list[str]:
        return private_apt_options(self.root, self.sources)

    def is_fresh(self) -> bool:
        """Whether a complete update of these sources is less than a day old.

        Only the stamp counts, never the lists' mtimes: an update that was
        interrupted halfway leaves new lists but no stamp.
        """
        data = read_stamp(self.stamp)
        if data is None or data.get("sources") != self.sources.read_text():
            return False
        when = data.get("time")
        return isinstance(when, (int, float)) and 0 <= time.time() - when < (
            LISTS_MAX_AGE
        )

    def clean_partial(self) -> None:
        """Drop what an interrupted apt run left half-downloaded."""
        for partial in (
            self.root / "lists" / "partial",
            self.root / "cache" / "archives" / "partial",
        ):
            for leftover in partial.iterdir():
                _remove(leftover)
        for tmp in self.root.glob("*.tmp"):
            tmp.unlink()

    def update(self, refresh: bool) -> None:
        if self.is_fresh() and not refresh:
            return
        self.clean_partial()
        self.stamp.unlink(missing_ok=True)
        need_space(self.root, INDEX_SPACE, "the package index")
        say(f"reading the qemu source package index ({', '.join(DEBIAN_SUITES)})")
        proc = _run(
            ["apt-get", *self.options(), "update"],
            timeout=APT_UPDATE_TIMEOUT,
            workdir=self.workdir,
        )
        # apt-get update exits 0 when a mirror is unreachable; the lists tell.
        lists = self.root / "lists"
        missing = [
            suite
            for suite in DEBIAN_SUITES
            if not list(lists.glob(f"*_dists_{suite}_main_source_Sources*"))
        ]
        if proc.returncode != 0 or missing:
            raise SourceError(
                f"apt-get update failed: {_last_line(proc.stderr or proc.stdout)}",
                f"check that {self.mirror} is reachable",
            )
        write_stamp(
            self.stamp, {"time": time.time(), "sources": self.sources.read_text()}
        )

    def index(self, package: str) -> dict[str, SourceFiles]:
        """Each listed version of a source package, with its files' sha256."""
        if package not in self._index:
            proc = _run(
                ["apt-cache", *self.options(), "showsrc", package],
                timeout=APT_CACHE_TIMEOUT,
                workdir=self.workdir,
            )
            if proc.returncode != 0:
                raise SourceError(
                    f"apt-cache showsrc {package} failed: {_last_line(proc.stderr)}"
                )
            self._index[package] = parse_showsrc(proc.stdout, package)
        return self._index[package]

    def source_versions(self, package: str) -> list[str]:
        return versions_newest_first(list(self.index(package)))

    def download(self, package: str, version: str, dest: Path) -> Path:
        """Download a source package into dest; its .dsc.

        Unavailable when the index lists it but its files cannot be had
        (404: the archive moved on since the index was read, or the
        mirror has not caught up).  Every file is checked against the
        sha256 of the index (which apt verified against the archive's
        signed InRelease), also when the download is reused; a file that
        differs is fetched once more.
        """
        files = self.index(package).get(version, {})
        dscs = [name for name in files if name.endswith(".dsc")]
        if len(dscs) != 1:
            raise SourceError(
                f"the index lists no sha256 of the files of {package} {version}",
                "run qseries source --refresh",
            )
        dsc = dest / dscs[0]
        stamp = dest / DOWNLOADED_STAMP
        if (read_stamp(stamp) or {}).get("version") == version:
            bad = mismatched_files(dest, files)
            if not bad:
                return dsc
            say(
                f"the cached {bad[0]} differs from the index's sha256: "
                "downloading it again"
            )
        for attempt in (1, 2):
            _remove(dest)
            dest.mkdir(parents=True)
            need_space(dest, BASE_SPACE, f"qemu {version}")
            proc = _run(
                [
                    "apt-get",
                    *self.options(),
                    "source",
                    "--download-only",
                    f"{package}={version}",
                ],
                cwd=dest,
                timeout=APT_SOURCE_TIMEOUT,
                workdir=self.workdir,
            )
            # apt names the file in the URL it failed to fetch, %-encoded.
            output = urllib.parse.unquote(proc.stderr + proc.stdout)
            if "Hash Sum mismatch" in output:
                bad = [name for name in sorted(files) if name in output] or ["a file"]
            elif proc.returncode != 0 or not dsc.exists():
                _remove(dest)
                raise Unavailable(
                    f"{package} {version} is listed but did not download "
                    f"({_last_line(proc.stderr)})"
                )
            else:
                bad = mismatched_files(dest, files)
            if not bad:
                write_stamp(stamp, {"version": version, "files": sorted(files)})
                return dsc
            if attempt == 1:
                say(
                    f"{bad[0]} of {package} {version} differs from the index's "
                    "sha256: downloading it once more"
                )
        _remove(dest)
        raise SourceError(
            f"{package} {version}: {bad[0]} from {self.mirror} does not match "
            "the sha256 of the signed package index, twice",
            "the mirror or the network is broken: try again later, or set "
            "QSERIES_DEBIAN_MIRROR to another mirror",
        )


def _remove(path: Path) -> None:
    """Remove a file or a whole directory, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:") or " error: " in line]
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


# A repository qseries makes runs no git maintenance of its own: git's
# background `gc --auto` (which a commit of QEMU's 38,000 loose objects
# starts) deletes object directories while qseries reads the tree.
QUIET_GIT = (("gc.auto", "0"), ("maintenance.auto", "false"))
# Packing a tree's objects once: no deltas, which would cost a minute of
# CPU and save little on one snapshot.
PACK = ("repack", "-d", "-q", "--window=0")


def quiet_git(root: Path, fresh: bool = False) -> None:
    """No background gc in root's repository (and its worktrees, which
    share its config).  fresh: it was just made, so its loose objects
    are packed once.  A repository an older qseries made only gets the
    setting: a gc that qseries started may still be running there, and
    a repack beside it could lose objects."""
    g = Git(root)
    if not fresh and g.try_run("config", "--local", "--get", "gc.auto") == "0":
        return
    for key, value in QUIET_GIT:
        g.run("config", "--local", key, value)
    if fresh and re.search(r"^count: [1-9]", g.run("count-objects", "-v"), re.M):
        g.run(*PACK)


def _quoted(path: bytes) -> bytes:
    """A path as git fast-import reads it: as it is, or C-quoted when it
    starts with a quote or holds a line feed."""
    if not path.startswith(b'"') and b"\n" not in path:
        return path
    out = path.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b'"' + out.replace(b"\n", b"\\n") + b'"'


def _tree_files(root: Path) -> list[tuple[bytes, bytes, Path]]:
    """Every file and symbolic link under root but .git (the path from
    root, git's mode, the file), sorted: what `git add --all --force .`
    would stage."""
    found = []
    top = os.fsencode(root)
    for here, dirs, files in os.walk(top):
        # git keeps no .git of any depth (a nested one is another
        # repository): a source package should have none.
        dirs[:] = [d for d in dirs if d != b".git"]
        links = [d for d in dirs if os.path.islink(os.path.join(here, d))]
        for name in [*files, *links]:
            full = os.path.join(here, name)
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                kind = b"120000"
            elif stat.S_ISREG(mode):
                kind = b"100755" if mode & stat.S_IXUSR else b"100644"
            else:
                continue  # a fifo or a socket: git does not keep them
            found.append((os.path.relpath(full, top), kind, Path(os.fsdecode(full))))
    return sorted(found)


def _write_import(root: Path, out: BinaryIO, message: str, date: str) -> None:
    """The fast-import stream of one commit of root's files, as git add
    and git commit by BASE_NAME on date would make it."""
    stamp = datetime.datetime.fromisoformat(date)
    when = f"{int(stamp.timestamp())} {stamp.strftime('%z') or '+0000'}"
    who = f"{BASE_NAME} <{BASE_EMAIL}> {when}".encode()
    text = (message + "\n").encode()
    out.write(b"commit HEAD\nauthor %s\ncommitter %s\n" % (who, who))
    out.write(b"data %d\n%s\n" % (len(text), text))
    for path, kind, full in _tree_files(root):
        data = (
            os.fsencode(os.readlink(full)) if kind == b"120000" else full.read_bytes()
        )
        out.write(b"M %s inline %s\ndata %d\n" % (kind, _quoted(path), len(data)))
        out.write(data)
        out.write(b"\n")
    out.write(b"done\n")


def _commit_all(root: Path, message: str, date: str) -> str:
    """Commit every file of root, as git add --all --force and git commit
    would (the same commit id), through git fast-import: one pack
    written once, rather than 38,000 loose objects packed afterwards
    (about half the time on 2 cores)."""
    g = Git(root)
    g.run("init", "--quiet", "--initial-branch=qseries-base")
    for key, value in QUIET_GIT:
        g.run("config", "--local", key, value)
    # Named so that clean_leftovers removes it after a killed run.
    stream = root.with_name(f"{root.name}.fast-import.partial")
    try:
        with open(stream, "wb") as out:
            _write_import(root, out, message, date)
        # Light compression: CPU saved for a pack a little larger.  (One
        # snapshot: fast-import finds no deltas to make.)
        g.run(
            *("-c", "pack.compression=1", "fast-import", "--quiet", "--done"),
            stdin_path=stream,
            timeout=IMPORT_TIMEOUT,
        )
    finally:
        stream.unlink(missing_ok=True)
    # The index, as git add leaves it: the tree, with the files' stats.
    g.run("read-tree", "HEAD")
    g.run("update-index", "-q", "--refresh")
    quiet_git(root, fresh=True)
    return g.rev("HEAD")


def _read_marker(root: Path) -> BaseTree | None:
    marker = root / ".git" / MARKER
    try:
        data = json.loads(marker.read_text())
        base = BaseTree(**{**data, "root": root})
    except (OSError, ValueError, TypeError):
        return None
    # A cache is only reused when it is what the marker says it is, and
    # when git can still read it back.
    g = Git(root)
    try:
        if g.rev("HEAD") != base.commit or _version_at(g, base.commit) != base.version:
            return None
    except CorruptRepoError as err:
        say(f"the cached base tree {root} has corrupt git objects: making it again")
        say(f"(git said: {err.message})")
        _remove(root)
        return None
    except ToolError:
        return None
    quiet_git(root)
    # The marker's time is the base's last use: `qseries clean` and
    # reproduce keep the bases used last.
    with contextlib.suppress(OSError):
        os.utime(marker)
    return base


def _write_marker(base: BaseTree) -> None:
    (base.root / ".git" / MARKER).write_text(json.dumps(base.to_json(), indent=1))


def _version_at(g: Git, commit: str) -> str | None:
    """The VERSION file at commit, or None if there is none.

    CorruptRepoError when git cannot read the objects: that is not the
    same as a missing file.
    """
    listing = g.run("ls-tree", "--name-only", commit, "--", "VERSION")
    if listing.strip() != "VERSION":
        return None
    return g.show(commit, "VERSION").strip()


def clean_leftovers(workdir: WorkDir) -> None:
    """Remove what an interrupted run left half-made in the work dir.

    Runs under the work dir's lock: nothing else is writing there.
    """
    trees = workdir.path / "trees"
    if trees.is_dir():
        for pattern in ("*.partial", "*.tmp-extract.*", "*.orig.tar.*"):
            # dpkg-source extracts next to its target, and copies the
            # upstream tarball there.
            for leftover in trees.glob(pattern):
                _remove(leftover)
    downloads = workdir.path / "debian"
    if downloads.is_dir():
        for dest in downloads.iterdir():
            if not (dest / DOWNLOADED_STAMP).is_file():
                _remove(dest)


def _safe(version: str) -> str:
    """A Debian version as a file name: 1_10.2.2+ds-1."""
    return re.sub(r"[^\w.+-]", "_", version)


def _tree_path(workdir: WorkDir, version: str) -> Path:
    return workdir.path / "trees" / f"debian-{_safe(version)}"


def _fetch_first(workdir: WorkDir, apt: Apt, candidates: list[str]) -> BaseTree | None:
    """The first of candidates that is cached or downloads, unpacked.

    Each one that does not download is passed over with one line: the
    index may list an upload whose files are gone, or not there yet.
    """
    for i, version in enumerate(candidates):
        root = _tree_path(workdir, version)
        cached = _read_marker(root)
        if cached is not None:
            return cached
        try:
            dsc = apt.download("qemu", version, workdir.sub("debian", _safe(version)))
        except Unavailable as err:
            nxt = candidates[i + 1] if i + 1 < len(candidates) else None
            say(f"{err.message}: trying qemu {nxt}" if nxt else err.message)
            continue
        return _unpack(dsc, root, version, workdir)
    return None


def _prepared_apt(workdir: WorkDir, refresh: bool, apt: Apt | None) -> Apt:
    clean_leftovers(workdir)
    apt = apt or Apt(workdir)
    apt.clean_partial()
    apt.update(refresh)
    return apt


def above_range(available: list[str], base_range: VersionRange) -> list[str]:
    """The listed versions too new for the range (a QEMU the series is not
    written for: it may have merged it, or moved the code it changes)."""
    upper = base_range.upper
    return [
        v for v in available if upper is not None and upstream_of_debian(v) >= upper
    ]


def debian_base(
    workdir: WorkDir,
    base_range: VersionRange,
    exact: str | None,
    refresh: bool,
    apt: Apt | None = None,
) -> BaseTree:
    apt = _prepared_apt(workdir, refresh, apt)
    available = apt.source_versions("qemu")
    if not available:
        raise SourceError("the Debian index lists no qemu source package")
    candidates = select_versions(available, base_range, exact)
    if exact is None:
        above = above_range(available, base_range)
        if above:
            say_once(
                f"qemu {', '.join(above)} {'is' if len(above) == 1 else 'are'} "
                f"listed, above the base range '{base_range}': not used "
                "(--base-version picks one)"
            )
    base = _fetch_first(workdir, apt, candidates)
    if base is None:
        raise Unavailable(
            "no qemu source package could be downloaded: tried "
            + ", ".join(candidates),
            "check the network, or pass --tree PATH",
        )
    return base


@dataclass(frozen=True)
class GoneBase:
    """A Debian upload that cannot be had any more, and what stands in."""

    named: str  # the Debian version asked for: 1:10.2.2+ds-1
    why: str  # "is no longer in the archive", "is listed but did not download"
    same_qemu: BaseTree | None  # another upload of the same QEMU version
    listed: tuple[str, ...]  # what the archive lists now


def debian_upload(
    workdir: WorkDir, named: str, apt: Apt | None = None
) -> BaseTree | GoneBase:
    """The Debian upload `named` (a generation base), from the work dir or
    the archive; when it cannot be had, another upload of the same QEMU
    version (a +ds-2 of the same 10.2.2) stands in for it, if one does."""
    cached = _read_marker(_tree_path(workdir, named))
    if cached is not None:
        return cached
    apt = _prepared_apt(workdir, False, apt)
    available = apt.source_versions("qemu")
    if named in available:
        found = _fetch_first(workdir, apt, [named])
        if found is not None:
            return found
        why = "is listed but did not download"
    else:
        why = "is no longer in the archive"
    try:
        qemu = upstream_of_debian(named)
        same = [v for v in available if v != named and upstream_of_debian(v) == qemu]
    except QSeriesError:
        same = []
    return GoneBase(named, why, _fetch_first(workdir, apt, same), tuple(available))


def _unpack(dsc: Path, root: Path, version: str, workdir: WorkDir) -> BaseTree:
    say(f"unpacking qemu {version} with dpkg-source -x")
    tmp = root.with_name(root.name + ".partial")
    _remove(root)
    _remove(tmp)
    root.parent.mkdir(parents=True, exist_ok=True)
    # dpkg-source checks the files against the .dsc's checksums, and the
    # .dsc was checked against the signed index.  It cannot check the
    # uploader's signature without Debian's maintainer keyring and says so.
    proc = _run(
        ["dpkg-source", "-x", str(dsc), str(tmp)],
        cwd=root.parent,
        timeout=DPKG_SOURCE_TIMEOUT,
        workdir=workdir.path,
    )
    for copy in root.parent.glob("*.orig.tar.*"):
        copy.unlink()
    if proc.returncode != 0:
        _remove(tmp)
        raise SourceError(
            f"dpkg-source -x {dsc} failed: {_last_line(proc.stderr or proc.stdout)}",
            "run that command by hand to see all of its output",
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


def tree_base(workdir: WorkDir, path: Path, commit: str | None = None) -> BaseTree:
    """A clone of the user's checkout at its HEAD, or at commit (the
    series' base-commit) when given; the checkout is only read.

    What is wrong with --tree is said in terms of the path as given.
    """
    given = f"--tree {path}"
    path = path.expanduser().absolute()
    if not path.exists():
        raise TreeOptionError(
            f"{given}: no such directory", "pass the path of a QEMU git checkout"
        )
    if not path.is_dir():
        raise TreeOptionError(
            f"{given}: is a file, not a directory",
            "pass the path of a QEMU git checkout",
        )
    if not os.access(path, os.R_OK | os.X_OK):
        raise TreeOptionError(
            f"{given}: cannot be read (permission denied)",
            "pass a QEMU git checkout you can read",
        )
    user = Git(path)
    top = user.try_run("rev-parse", "--show-toplevel")
    if top is None:
        raise TreeOptionError(
            f"{given}: is not a git checkout", "pass a QEMU git checkout"
        )
    if Path(top).resolve() != path.resolve():
        # qseries takes the whole checkout's HEAD, not one directory of it.
        raise TreeOptionError(
            f"{given}: is not the top of its git checkout ({top})",
            "pass the top directory of a QEMU git checkout",
        )
    user = Git(Path(top))
    if (
        commit is not None
        and user.try_run("cat-file", "-e", f"{commit}^{{commit}}") is None
    ):
        raise TreeOptionError(
            f"{given}: has no commit {commit[:12]} (the base-commit of the series "
            "or the thread)",
            "fetch that commit into the checkout, or pass another --tree",
        )
    try:
        head = commit or user.rev("HEAD")
    except CorruptRepoError as err:
        raise _corrupt_tree(given, top, err) from None
    except ToolError:
        raise TreeOptionError(
            f"{given}: has no commit yet", "commit the QEMU tree first"
        ) from None
    try:
        version = _version_at(user, head)
    except CorruptRepoError as err:
        raise _corrupt_tree(given, top, err) from None
    if version is None:
        at = f"commit {head[:12]}" if commit else f"HEAD {head[:12]}"
        raise TreeOptionError(
            f"{given}: not a QEMU tree (no VERSION file at {at})",
            "pass a QEMU git checkout",
        )
    status = ""
    if commit is None:
        # What is not committed is not the base (a named commit is).
        status = user.run(
            "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"
        )
    if status.strip():
        first = status.splitlines()[0][3:]
        raise SourceError(
            f"{given} has uncommitted changes (e.g. {first})",
            "qseries uses the committed HEAD only: commit or stash them first",
        )
    key = hashlib.sha256(str(Path(top)).encode()).hexdigest()[:12]
    root = workdir.path / "trees" / f"tree-{key}"
    # The label goes into mails: the commit, not where the checkout lives.
    try:
        # A named commit the cached clone lacks is fetched by its id.
        ref = commit or "HEAD"
        return _clone_at(root, top, head, ref, f"git {head[:12]}", "tree")
    except CorruptRepoError as err:
        raise _corrupt_tree(given, top, err) from None


def _corrupt_tree(given: str, top: str, err: CorruptRepoError) -> SourceError:
    return SourceError(
        f"{given}: git cannot read its objects ({err.message.split(': ', 1)[-1]})",
        f"run 'git fsck' in {top}",
    )


def git_base(workdir: WorkDir, url: str, ref: str) -> BaseTree:
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    root = workdir.path / "trees" / f"git-{key}"
    return _clone_at(root, url, None, ref, f"{url} {ref}", "git")


def _clone_at(
    root: Path, url: str, commit: str | None, ref: str, label: str, kind: str
) -> BaseTree:
    """root as a clone of url, checked out at commit (or at ref, fetched).

    A cached clone whose git objects are corrupt is cloned again.
    """
    fresh = not (root / ".git").is_dir()
    if fresh:
        _remove(root)
        tmp = root.with_name(root.name + ".partial")
        _remove(tmp)
        root.parent.mkdir(parents=True, exist_ok=True)
        say(f"cloning {url}")
        # --no-hardlinks: a local clone must not share the inodes of the
        # user's objects, or our git would touch their files.
        Git(root.parent).run(
            "clone",
            "--quiet",
            "--no-checkout",
            "--no-hardlinks",
            "--",
            url,
            str(tmp),
            timeout=GIT_CLONE_TIMEOUT,
        )
        tmp.rename(root)
    g = Git(root)
    try:
        # Before a fetch, which may start git's gc too.
        quiet_git(root, fresh)
        if (
            commit is None
            or g.try_run("cat-file", "-e", f"{commit}^{{commit}}") is None
        ):
            say(f"fetching {ref} from {url}")
            g.run("fetch", "--quiet", "--", url, ref, timeout=GIT_CLONE_TIMEOUT)
            commit = commit or g.rev("FETCH_HEAD")
        g.run("checkout", "--quiet", "--force", "--detach", commit)
        version = _version_at(g, commit)
    except CorruptRepoError as err:
        if fresh:
            raise
        say(f"the cached clone {root} has corrupt git objects: cloning it again")
        say(f"(git said: {err.message})")
        _remove(root)
        return _clone_at(root, url, commit, ref, label, kind)
    if version is None:
        raise SourceError(
            f"{label} ({url}) has no VERSION file at {commit[:12]}",
            "is it a QEMU tree?",
        )
    base = BaseTree(kind=kind, root=root, commit=commit, version=version, label=label)
    _write_marker(base)
    return base


def get_base(
    workdir: WorkDir,
    spec: SourceSpec,
    base_range: VersionRange,
    commit: str | None = None,
) -> BaseTree:
    """The base: with --tree, its HEAD or the series' base-commit."""
    try:
        if spec.tree is not None:
            return tree_base(workdir, spec.tree, commit)
        if spec.git_url is not None and spec.git_ref is not None:
            return git_base(workdir, spec.git_url, spec.git_ref)
        return debian_base(workdir, base_range, spec.base_version, spec.refresh)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise no_space(
                workdir.path, f"writing {err.filename or 'a file'}"
            ) from None
        raise
