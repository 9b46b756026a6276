"""series.yaml: the series as data, loaded and validated.

The file is composed into YAML nodes with PyYAML's SafeLoader (no object
construction at all), then checked against the schema below.  Every
problem is reported as ``series.yaml:LINE: key.path: what is wrong``.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import getaddresses
from pathlib import Path
from typing import TypeVar

import yaml

from ..ground.errors import SeriesFileError
from . import lab as lab_mod
from .generators import BadKey, Generator
from .lab import LabSpec
from .versions import QemuVersion, VersionError, VersionRange

DEFAULT_BASE_RANGE = ">=10.2, <11"
# The version of series.yaml's schema this qseries writes and reads
# (1: before 'schema:' and 'lab:' existed; its lab is the one installed
# lab that says it reads such files).
SCHEMA = 2
SCHEMAS = (1, 2)

T = TypeVar("T")
# The kinds of change a series may use, by name (generators.specs()).
GeneratorSpecs = Mapping[str, Generator]

_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"

# A version number: v1 ... v9999 (enough for any series, and short
# enough that int() never meets a number too long to convert).
VERSION_NUMBER = "[1-9][0-9]{0,3}"

# Names for the control characters people meet; others go by code point.
_CONTROL_NAMES = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab"}


@dataclass(frozen=True)
class Identity:
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


@dataclass(frozen=True)
class Change:
    """One change of a patch: a kind of change and its keys."""

    kind: str
    params: Mapping[str, str]
    line: int
    generator: Generator  # the kind's, as the loader was given it


@dataclass(frozen=True)
class Patch:
    subject: str
    body: str
    generator: str  # the first change's kind
    trailers: tuple[str, ...]
    line: int
    params: Mapping[str, str] = field(default_factory=dict)  # the first change's
    # Applied in order, each to the files as the ones before it left them.
    changes: tuple[Change, ...] = ()
    # A patch of its own author (an imported one): its trailers are then
    # its whole trailer block as written, Signed-off-by lines included.
    author: Identity | None = None
    date: datetime | None = None  # its author date; the version's otherwise
    message_id: str | None = None  # the Message-Id it was mailed with
    # Trailers collected from replies (b4), after the ones it was mailed with.
    collected: tuple[str, ...] = ()


@dataclass(frozen=True)
class Version:
    number: int
    author: Identity
    date: datetime
    base: VersionRange
    target: QemuVersion
    since_override: str | None
    cover_subject: str
    cover_body: str
    changelog: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    patches: tuple[Patch, ...]
    line: int
    # The Message-Id its cover letter was sent with, once it was: the
    # next version's mails reply to it.
    message_id: str | None = None
    # What the series' lab read of this version (its 'lab:' keys), for
    # the lab's stages; None for a series with no lab.
    lab: object = None
    # The commit it was written on (a git base): with --tree, the base.
    base_commit: str | None = None

    @property
    def name(self) -> str:
        return f"v{self.number}"

    @property
    def since(self) -> str:
        """The QEMU release the series targets, for QAPI 'Since:'."""
        if self.since_override is not None:
            return self.since_override
        return self.target.next_feature_release().feature_release()


@dataclass(frozen=True)
class Series:
    path: Path
    subject_prefix: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    versions: dict[int, Version] = field(default_factory=dict)
    lab: str | None = None  # the lab that proves it (series.yaml's 'lab:')
    schema: int = SCHEMA

    def version(self, name: str | None) -> Version:
        """Version 'vN' (or 'N'); the newest one when name is None."""
        if name is None:
            return self.versions[max(self.versions)]
        m = re.fullmatch(rf"v?({VERSION_NUMBER})", name)
        if not m or int(m[1]) not in self.versions:
            known = ", ".join(f"v{n}" for n in sorted(self.versions))
            shown = name if len(name) <= 20 else name[:17] + "..."
            raise SeriesFileError(
                self.path, None, f"no version '{shown}'", f"it has: {known}"
            )
        return self.versions[int(m[1])]


class _Reader:
    """Typed access to YAML nodes, with errors at the node's line."""

    def __init__(self, path: Path):
        self.path = path

    def fail(
        self, node: yaml.Node, where: str, message: str, hint: str | None = None
    ) -> SeriesFileError:
        prefix = f"{where}: " if where else ""
        return SeriesFileError(
            self.path, node.start_mark.line + 1, prefix + message, hint
        )

    def mapping(
        self,
        node: yaml.Node,
        where: str,
        required: Iterable[str],
        optional: Iterable[str],
    ) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, where, "expected a mapping")
        required = list(required)
        allowed = set(required) | set(optional)
        out: dict[str, yaml.Node] = {}
        for key_node, value in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise self.fail(key_node, where, "keys must be strings")
            if key in out:
                raise self.fail(key_node, where, f"duplicate key '{key}'")
            if key not in allowed:
                raise self.fail(
                    key_node,
                    where,
                    f"unknown key '{key}'; expected one of: "
                    + ", ".join(sorted(allowed)),
                )
            out[key] = value
        for key in required:
            if key not in out:
                raise self.fail(node, where, f"missing required key '{key}'")
        return out

    def string(self, node: yaml.Node, where: str, nonempty: bool = True) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
            raise self.fail(node, where, "expected a string (quote it if needed)")
        value = str(node.value)
        if nonempty and not value.strip():
            raise self.fail(node, where, "must not be empty")
        return value

    def pattern(self, node: yaml.Node, where: str) -> str:
        """A string that is a regular expression."""
        text = self.string(node, where)
        try:
            re.compile(text)
        except re.error as err:
            raise self.fail(node, where, f"bad pattern: {err}") from None
        return text

    def strings(
        self, node: yaml.Node, where: str, header: bool = False
    ) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, where, "expected a list of strings")
        read = self.header if header else self.string
        return tuple(read(item, f"{where}[{i}]") for i, item in enumerate(node.value))

    def header(self, node: yaml.Node, where: str) -> str:
        """A string that ends up in a mail header: one line, no control
        characters (a line break would start a header of its own)."""
        value = self.string(node, where)
        for i, char in enumerate(value.strip()):
            if unicodedata.category(char) == "Cc":
                name = _CONTROL_NAMES.get(char, f"U+{ord(char):04X}")
                raise self.fail(
                    node,
                    where,
                    f"contains {name} at character {i + 1}; it goes into a "
                    "mail header, which must be one line",
                )
        return value

    def parsed(
        self, node: yaml.Node, where: str, parse: Callable[[str], T], expected: str
    ) -> T:
        text = self.string(node, where)
        try:
            return parse(text)
        except (ValueError, VersionError):
            # Escaped, so that a line break in the value keeps the error
            # one line: '<a@b>\nBcc: x' rather than two.
            shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
            raise self.fail(node, where, f"'{shown}' is not {expected}") from None


def _identity(text: str) -> Identity:
    m = re.fullmatch(r"\s*([^<>]+?)\s*<([^<>@\s]+@[^<>@\s]+)>\s*", text)
    if not m:
        raise ValueError(text)
    return Identity(m[1], m[2])


def _date(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(text)
    return value


# The dates git records in a commit (found with git 2.39.5's commit-tree
# and GIT_COMMITTER_DATE in ISO 8601): it refuses a year before 1970 or
# after 2099 as written, in the date's own zone ('1969-12-31T23:59:59
# +00:00', '2100-01-01T00:00:00+01:00': "invalid date format") but
# takes '2099-12-31T23:59:59-14:00' (4102495199 -1400); it misreads
# year 0001 as 2001 (978307200); and an instant before the epoch written
# as 1970 in a zone east of UTC ('1970-01-01T00:00:00+01:00') becomes
# 18446744073709548016, a wrapped negative number.
GIT_YEARS = (1970, 2099)


def _git_date(r: _Reader, node: yaml.Node, where: str) -> datetime:
    """A date with a time zone that git can record as it is written."""
    value = r.parsed(node, where, _date, "an ISO 8601 date with a time zone")
    first, last = GIT_YEARS
    if not first <= value.year <= last or value.timestamp() < 0:
        raise r.fail(
            node,
            where,
            f"'{r.string(node, where)}' is outside the dates git can record "
            f"(the years {first} to {last} as written, none before "
            f"{first}-01-01T00:00:00+00:00)",
        )
    return value


def _quoted(text: str, limit: int = 80) -> str:
    """A value for a one-line message: quoted, control characters escaped."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def _relative(text: str) -> bool:
    """Is text a path below a folder, written from it: relative, without
    '..', '.', empty parts or control characters (a NUL included)?"""
    if any(unicodedata.category(c) == "Cc" for c in text):
        return False
    parts = text.split("/")
    return all(part not in ("", ".", "..") for part in parts)


def _tree_path(r: _Reader, node: yaml.Node, where: str) -> str:
    """A path in QEMU's tree, from its top."""
    value = r.string(node, where)
    if not _relative(value):
        raise r.fail(
            node,
            where,
            f"{_quoted(value)} is not a path inside the QEMU tree",
            "give it from the top of the tree, like 'qom/object.c'",
        )
    return value


def _qtest_name(r: _Reader, node: yaml.Node, where: str) -> str:
    """A qtest's name: its source is tests/qtest/NAME.c."""
    value = r.string(node, where)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", value):
        raise r.fail(
            node,
            where,
            f"{_quoted(value)} is not a qtest name (its source is "
            "tests/qtest/NAME.c inside the QEMU tree)",
            "use letters, digits, '-' and '_'",
        )
    return value


def _inside(r: _Reader, node: yaml.Node, where: str, name: str) -> Path:
    """The file `name` beside series.yaml, refused when it is not there:
    written with '..' or from '/', or a symlink (itself or a folder on
    the way) that leads out of series.yaml's folder."""
    folder = r.path.parent
    if not _relative(name):
        raise r.fail(
            node,
            where,
            f"{_quoted(name)} is not a path inside the series' folder {folder}",
            "a series may only use files beside series.yaml; name them from there",
        )
    real = Path(os.path.realpath(folder / name))
    if not real.is_relative_to(os.path.realpath(folder)):
        raise r.fail(
            node,
            where,
            f"{_quoted(name)} leads to {real} through a symlink, outside the "
            f"series' folder {folder}",
            "a series may only use files beside series.yaml",
        )
    return folder / name


def _series_file(r: _Reader, node: yaml.Node, where: str) -> str:
    """A file beside series.yaml, named from its folder."""
    value = r.string(node, where)
    _inside(r, node, where, value)
    return value


def _since(text: str) -> str:
    QemuVersion.parse(text)
    if text.count(".") != 1:
        raise ValueError(text)
    return text


def _message_id(text: str) -> str:
    if not re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", text):
        raise ValueError(text)
    return text


def _optional_message_id(
    r: _Reader, keys: dict[str, yaml.Node], where: str
) -> str | None:
    if "message-id" not in keys:
        return None
    return r.parsed(
        keys["message-id"],
        f"{where}.message-id",
        _message_id,
        "a Message-Id like '<id@host>'",
    )


def _trailer(text: str) -> str:
    if not re.fullmatch(r"[A-Z][A-Za-z-]*: \S.*", text):
        raise ValueError(text)
    return text


def _identity_at(r: _Reader, node: yaml.Node, where: str) -> Identity:
    r.header(node, where)
    return r.parsed(node, where, _identity, "'Name <email>'")


def _addresses(
    r: _Reader, keys: dict[str, yaml.Node], key: str, where: str
) -> tuple[str, ...]:
    """A to/cc list: each entry one line and one address."""
    if key not in keys:
        return ()
    path = f"{where}.{key}" if where else key
    values = r.strings(keys[key], path, header=True)
    for i, value in enumerate(values):
        found = [a for _, a in getaddresses([value]) if a]
        if len(found) != 1 or "@" not in found[0]:
            raise r.fail(
                keys[key].value[i],
                f"{path}[{i}]",
                f"'{value}' is not one mail address like 'Name <user@host>'",
            )
    return values


def _params(
    r: _Reader,
    node: yaml.Node,
    where: str,
    generator: Generator,
    own: tuple[str, ...] = (),
) -> dict[str, str]:
    """A change's keys, as its kind takes them (`own`: keys of the change
    itself, such as 'kind', which are not the kind's)."""
    keys = r.mapping(node, where, [*own, *generator.params], [*generator.optional])
    params = {
        key: r.string(value, f"{where}.{key}")
        for key, value in keys.items()
        if key not in own
    }
    for key in generator.paths:
        if key in params:
            params[key] = _tree_path(r, keys[key], f"{where}.{key}")
    try:
        generator.check(params)
    except BadKey as err:
        at = keys.get(err.key or "", node)
        raise r.fail(at, f"{where}.{err.key}" if err.key else where, str(err)) from None
    except ValueError as err:
        raise r.fail(node, where, str(err)) from None
    templates, verbatim = generator.reads(params)
    for name in (*templates, *verbatim):
        # At the key that names the file, or else the one (the longest)
        # that the name is made of: a qtest's name, for its source.
        named = next((k for k, v in params.items() if v == name), None) or max(
            (k for k, v in params.items() if v in name),
            key=lambda k: len(params[k]),
            default=None,
        )
        if named is None:
            _inside(r, node, where, name)
        else:
            _inside(r, keys[named], f"{where}.{named}", name)
    return params


def _kind(
    r: _Reader, node: yaml.Node, where: str, generators: GeneratorSpecs, word: str
) -> Generator:
    name = r.string(node, where)
    if name not in generators:
        raise r.fail(
            node,
            where,
            f"unknown {word} '{name}'; known: " + ", ".join(sorted(generators)),
        )
    return generators[name]


def _changes(
    r: _Reader, node: yaml.Node, where: str, generators: GeneratorSpecs
) -> tuple[Change, ...]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise r.fail(node, where, "expected a non-empty list of changes")
    out = []
    for i, item in enumerate(node.value):
        at = f"{where}[{i}]"
        if not isinstance(item, yaml.MappingNode):
            raise r.fail(item, at, "expected a mapping with 'kind' and its keys")
        kind_node = next(
            (
                v
                for k, v in item.value
                if isinstance(k, yaml.ScalarNode) and k.value == "kind"
            ),
            None,
        )
        if kind_node is None:
            raise r.fail(item, at, "missing required key 'kind'")
        generator = _kind(r, kind_node, f"{at}.kind", generators, "kind")
        params = _params(r, item, at, generator, own=("kind",))
        out.append(Change(generator.name, params, item.start_mark.line + 1, generator))
    return tuple(out)


def _patch(
    r: _Reader, node: yaml.Node, where: str, generators: GeneratorSpecs
) -> Patch:
    keys = r.mapping(
        node,
        where,
        ["subject", "body"],
        ["generator", "with", "changes", "trailers", *PATCH_OWN],
    )
    if ("generator" in keys) == ("changes" in keys):
        raise r.fail(
            node,
            where,
            "give either 'generator' (one change, its keys under 'with:') "
            "or 'changes' (a list of changes)",
        )
    trailers = _trailers(r, keys, "trailers", where)
    collected = _trailers(r, keys, "collected", where)
    if "changes" in keys:
        if "with" in keys:
            raise r.fail(
                keys["with"], f"{where}.with", "goes with 'generator', not 'changes'"
            )
        changes = _changes(r, keys["changes"], f"{where}.changes", generators)
    else:
        generator = _kind(
            r, keys["generator"], f"{where}.generator", generators, "generator"
        )
        if "with" in keys:
            params = _params(r, keys["with"], f"{where}.with", generator)
        elif generator.params:
            raise r.fail(
                node,
                where,
                f"generator '{generator.name}' needs 'with:' "
                + ", ".join(generator.params),
            )
        else:
            params = {}
        line = node.start_mark.line + 1
        changes = (Change(generator.name, params, line, generator),)
    return Patch(
        subject=r.header(keys["subject"], f"{where}.subject").strip(),
        # An imported patch may have no body: a subject and its trailers.
        body=r.string(keys["body"], f"{where}.body", "author" not in keys).strip("\n")
        + "\n",
        generator=changes[0].kind,
        trailers=trailers,
        line=node.start_mark.line + 1,
        params=changes[0].params,
        changes=changes,
        author=(
            _identity_at(r, keys["author"], f"{where}.author")
            if "author" in keys
            else None
        ),
        date=_git_date(r, keys["date"], f"{where}.date") if "date" in keys else None,
        message_id=_optional_message_id(r, keys, where),
        collected=collected,
    )


# A patch's keys of its own, besides what it changes (an imported patch
# has them all).
PATCH_OWN = ["author", "date", "message-id", "collected"]


def _trailers(
    r: _Reader, keys: dict[str, yaml.Node], key: str, where: str
) -> tuple[str, ...]:
    if key not in keys:
        return ()
    node = keys[key]
    if not isinstance(node, yaml.SequenceNode):
        raise r.fail(node, f"{where}.{key}", "expected a list")
    return tuple(
        r.parsed(t, f"{where}.{key}[{i}]", _trailer, "a 'Tag: value' trailer")
        for i, t in enumerate(node.value)
    )


def _commit_id(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{40}", text):
        raise ValueError(text)
    return text


def _compose_beside(r: _Reader, node: yaml.Node, where: str) -> tuple[Path, yaml.Node]:
    """The YAML file named by a key of series.yaml, beside it."""
    name = r.string(node, where)
    path = _inside(r, node, where, name)
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except OSError as err:
        raise r.fail(node, where, f"cannot read {name}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise r.fail(node, where, f"{name} is not UTF-8") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise SeriesFileError(
            path, mark.line + 1 if mark else None, f"invalid YAML: {err.problem}"
        ) from None
    if root is None:
        raise SeriesFileError(path, 1, "the file is empty")
    return path, root


def _choice(r: _Reader, node: yaml.Node, where: str, choices: tuple[str, ...]) -> str:
    """A string that must be one of choices."""
    value = r.string(node, where)
    if value not in choices:
        raise r.fail(node, where, f"'{value}' is not one of: " + ", ".join(choices))
    return value


def _flag(r: _Reader, node: yaml.Node, where: str) -> bool:
    if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL:
        raise r.fail(node, where, "expected true or false")
    return str(node.value).lower() in ("true", "yes", "on")


def _version(
    r: _Reader,
    number: int,
    node: yaml.Node,
    generators: GeneratorSpecs,
    lab: LabSpec | None = None,
    schema: int = SCHEMA,
) -> Version:
    where = f"versions.v{number}"
    required = ["author", "date", "cover", "patches"]
    optional = [
        "base",
        "target",
        "since",
        "changelog",
        "to",
        "cc",
        "message-id",
        "base-commit",
    ]
    if lab is not None and schema == 1:
        # Before 'lab:', a version held its lab's keys itself.
        required += lab.version_keys[0]
        optional += lab.version_keys[1]
    elif lab is not None:
        required.append("lab")
    elif isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "lab":
                raise r.fail(
                    key_node,
                    f"{where}.lab",
                    "the series names no lab to read it",
                    "name it at the top of series.yaml ('lab: NAME')",
                )
    keys = r.mapping(node, where, required, optional)
    lab_data: object = None
    if lab is not None and schema == 1:
        names = (*lab.version_keys[0], *lab.version_keys[1])
        lab_data = lab.parse_version(
            r, {k: v for k, v in keys.items() if k in names}, where
        )
    elif lab is not None:
        lab_keys = r.mapping(
            keys["lab"], f"{where}.lab", lab.version_keys[0], lab.version_keys[1]
        )
        lab_data = lab.parse_version(r, lab_keys, f"{where}.lab")
    base = VersionRange.parse(DEFAULT_BASE_RANGE)
    if "base" in keys:
        base = r.parsed(
            keys["base"],
            f"{where}.base",
            VersionRange.parse,
            "a range like '>=10.2, <11'",
        )
    if "target" in keys:
        target = r.parsed(
            keys["target"], f"{where}.target", QemuVersion.parse, "a QEMU version"
        )
    elif base.lower is not None:
        target = base.lower
    else:
        raise r.fail(node, where, "needs 'target' when 'base' has no lower bound")
    cover = r.mapping(keys["cover"], f"{where}.cover", ["subject", "body"], [])
    patches_node = keys["patches"]
    if not isinstance(patches_node, yaml.SequenceNode) or not patches_node.value:
        raise r.fail(patches_node, f"{where}.patches", "expected a non-empty list")
    return Version(
        number=number,
        author=_identity_at(r, keys["author"], f"{where}.author"),
        date=_git_date(r, keys["date"], f"{where}.date"),
        base=base,
        target=target,
        since_override=(
            r.parsed(keys["since"], f"{where}.since", _since, "a release like '11.0'")
            if "since" in keys
            else None
        ),
        cover_subject=r.header(cover["subject"], f"{where}.cover.subject").strip(),
        cover_body=r.string(cover["body"], f"{where}.cover.body").strip("\n") + "\n",
        changelog=(
            r.strings(keys["changelog"], f"{where}.changelog")
            if "changelog" in keys
            else ()
        ),
        to=_addresses(r, keys, "to", where),
        cc=_addresses(r, keys, "cc", where),
        patches=tuple(
            _patch(r, p, f"{where}.patches[{i}]", generators)
            for i, p in enumerate(patches_node.value)
        ),
        line=node.start_mark.line + 1,
        message_id=_optional_message_id(r, keys, where),
        lab=lab_data,
        base_commit=(
            r.parsed(
                keys["base-commit"],
                f"{where}.base-commit",
                _commit_id,
                "a full commit id (40 hex digits)",
            )
            if "base-commit" in keys
            else None
        ),
    )


def load(path: Path, generators: GeneratorSpecs) -> Series:
    """Load and validate series.yaml; raise SeriesFileError on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SeriesFileError(
            path, None, "no such file", "pass --series-file PATH"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SeriesFileError(path, None, f"cannot read: {err}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise SeriesFileError(
            path, line, f"invalid YAML: {err.problem or err.context}"
        ) from None
    except yaml.reader.ReaderError as err:
        # A character YAML does not allow: name it and where it is.
        line = text.count("\n", 0, err.position) + 1
        raise SeriesFileError(
            path, line, f"invalid YAML: character {err.character!r} is not allowed"
        ) from None
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "error"
        raise SeriesFileError(path, None, f"invalid YAML: {first}") from None
    if root is None:
        raise SeriesFileError(path, 1, "the file is empty")
    r = _Reader(path)
    keys = r.mapping(
        root, "", ["versions"], ["subject-prefix", "to", "cc", "schema", "lab"]
    )
    versions_node = keys["versions"]
    if not isinstance(versions_node, yaml.MappingNode) or not versions_node.value:
        raise r.fail(versions_node, "versions", "expected a mapping of v1, v2, ...")
    schema = 1
    if "schema" in keys:
        node = keys["schema"]
        text = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
        if not text.isdigit() or int(text) not in SCHEMAS[1:]:
            raise r.fail(
                keys["schema"],
                "schema",
                f"'{text}' is not a schema this qseries reads",
                f"it reads {', '.join(map(str, SCHEMAS[1:]))} (and files without "
                "'schema:', of before it)",
            )
        schema = int(text)
    lab = _lab(r, keys, versions_node, schema)
    if lab is not None:
        taken = sorted(set(generators) & set(lab.kinds))
        if taken:
            raise r.fail(
                keys.get("lab", root),
                "lab",
                f"the lab '{lab.name}' has kinds of the core's names: "
                + ", ".join(taken),
                "a lab's kinds need names of their own",
            )
        # A file of schema 1 names the kinds of then, which the lab that
        # reads such files keeps (some with their old names).
        generators = {
            **generators,
            **lab.kinds,
            **(lab.legacy_kinds if schema == 1 else {}),
        }
    versions: dict[int, Version] = {}
    for key_node, value in versions_node.value:
        m = re.fullmatch(rf"v({VERSION_NUMBER})", str(key_node.value))
        if not m:
            raise r.fail(
                key_node, "versions", f"'{key_node.value}' is not a version like 'v1'"
            )
        number = int(m[1])
        if number in versions:
            raise r.fail(key_node, "versions", f"duplicate version 'v{number}'")
        versions[number] = _version(r, number, value, generators, lab, schema)
    return Series(
        path=path,
        subject_prefix=(
            r.header(keys["subject-prefix"], "subject-prefix")
            if "subject-prefix" in keys
            else "PATCH"
        ),
        to=_addresses(r, keys, "to", ""),
        cc=_addresses(r, keys, "cc", ""),
        versions=versions,
        lab=lab.name if lab is not None else None,
        schema=schema,
    )


def _lab(
    r: _Reader, keys: dict[str, yaml.Node], versions: yaml.MappingNode, schema: int
) -> LabSpec | None:
    """The lab series.yaml names; in a file of schema 1, the installed lab
    that reads such files, when a version holds its keys."""
    if "lab" in keys:
        if schema == 1:
            raise r.fail(keys["lab"], "lab", "goes with 'schema: 2' or later")
        name = r.string(keys["lab"], "lab")
        try:
            return lab_mod.load(name)
        except lab_mod.UnknownLab as err:
            raise r.fail(keys["lab"], "lab", err.message, err.hint) from None
    if schema != 1:
        return None
    legacy = lab_mod.legacy()
    if legacy is None:
        return None
    names = {*legacy.version_keys[0], *legacy.version_keys[1]}
    for _, version in versions.value:
        if isinstance(version, yaml.MappingNode) and any(
            isinstance(k, yaml.ScalarNode) and k.value in names
            for k, _ in version.value
        ):
            return legacy
    return None


# What a lab's parser of its keys uses (see core/lab.py).
Reader = _Reader
choice = _choice
compose_beside = _compose_beside
flag = _flag
qtest_name = _qtest_name
series_file = _series_file
tree_path = _tree_path
