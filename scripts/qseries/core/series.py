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
from .versions import QemuVersion, VersionError, VersionRange

DEFAULT_BASE_RANGE = ">=10.2, <11"

T = TypeVar("T")
# A generator's required and optional 'with:' keys, by generator name.
GeneratorSpecs = Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]
PRELOADS = ("env", "beside")
# The folders beside series.yaml that a series reads (templates, the
# mutations and fault plans, the qtests and the fake device they carry):
# what a copy of a series must take along.
SERIES_DATA = ("qapi", "hw", "mutations", "faults", "tests/qtest", "tests/fakevfio")

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
class Patch:
    subject: str
    body: str
    generator: str
    trailers: tuple[str, ...]
    line: int
    params: Mapping[str, str] = field(default_factory=dict)  # its 'with:'


@dataclass(frozen=True)
class Wire:
    """How a version of the series speaks on QMP: what a client sees."""

    completion: str  # the event sent once a device changed state
    notice_event: str  # the event that carries the prepare notice
    # When the notice is a value of device-state (sent with notice_event)
    # rather than an event of its own: that value, and the state it
    # announces.
    notice_state: str | None = None
    announces: str | None = None

    def classify(self, event: str, state: str | None) -> tuple[str, str] | None:
        """('notice', announced state), ('done', state), or None for an
        event that is neither."""
        if state is None:
            return None
        if self.notice_state is None:
            if event == self.notice_event:
                return ("notice", state)
        elif event == self.notice_event and state == self.notice_state:
            return ("notice", self.announces or state)
        if event == self.completion:
            return ("done", state)
        return None

    def describe_notice(self) -> str:
        if self.notice_state is None:
            return self.notice_event
        return f"{self.notice_event}({self.notice_state})"


@dataclass(frozen=True)
class Mutation:
    """A deliberate break of the change, which the version's qtest must
    catch: in the case whose path ends with `case`, on an error line
    matching `reason`."""

    name: str
    what: str
    file: str  # the QEMU file edited
    edits: tuple[tuple[str, str], ...]  # (old, new) text
    case: str
    reason: str
    # Caught by this case of the fault matrix ('SCENARIO/SIDE/FROM>TO')
    # rather than by the qtest: its failure must match `reason`.
    fault: str | None = None


# Runs of the fault matrix (faults/scenarios.yaml).
SCENARIO_RUNS = ("stop-cont", "migrate", "cancel")
SIDES = ("source", "destination")
# What a version's events are held to under faults; see faults.py.
INVARIANTS = ("exact", "paired")


@dataclass(frozen=True)
class Scenario:
    """One scenario of the fault matrix."""

    name: str
    what: str
    run: str  # one of SCENARIO_RUNS
    flags: str  # FAKEVFIO_MIGRATION_FLAGS
    devices: int = 1
    events: bool = True
    each_arc: bool = True
    fail: tuple[tuple[str, str], ...] = ()  # (side, FAKEVFIO_FAIL rules)
    reset_fails: tuple[tuple[str, str], ...] = ()  # (side, errno)
    exits: tuple[tuple[str, str], ...] = ()  # (side, why QEMU ends)


@dataclass(frozen=True)
class FaultPlan:
    """The fault matrix of a version: scenarios, the invariants its events
    must keep, and the table of a real run kept in the repository."""

    scenarios: tuple[Scenario, ...]
    invariants: tuple[str, ...]
    table: str  # path beside series.yaml
    scenarios_file: str = ""  # where the scenarios are, beside series.yaml


@dataclass(frozen=True)
class TestPlan:
    """How a version is tested: its qtest and what the runs must show."""

    qtest: str  # the qtest's name (tests/qtest/NAME.c)
    # 'env': the qtest loads the fake VFIO library from QTEST_VFIO_FAKE,
    # which qseries builds; 'beside': the patch carries the fake and the
    # qtest finds it next to its own binary.
    preload: str
    targets: tuple[str, ...]  # more ninja targets the qtest needs
    # Cases that pass on the base too (the negative control expects
    # every other case to fail for lack of the notice).
    base_passes: tuple[str, ...]
    # Matches a notice in the events the qtest prints ("# source events:
    # ..."), so that the control can tell "no notice" from other failures.
    notice_pattern: str
    mutations: tuple[Mutation, ...]
    faults: FaultPlan | None = None
    mutations_file: str = ""  # where the mutations are, beside series.yaml


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
    wire: Wire
    test: TestPlan
    # The Message-Id its cover letter was sent with, once it was: the
    # next version's mails reply to it.
    message_id: str | None = None

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


# The keys of a patch's 'with:' that name files, in every generator:
# files beside series.yaml that qseries reads, places in QEMU's tree
# that the patch writes, and qtest names (tests/qtest/NAME.c, in the
# tree and beside series.yaml).
SERIES_FILE_PARAMS = ("template", "meson-template", "helper")
TREE_PATH_PARAMS = ("helper-file",)
QTEST_PARAMS = ("qtest",)


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
            "give it from the top of the tree, like 'hw/vfio/migration.c'",
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
    spec: tuple[tuple[str, ...], tuple[str, ...]],
) -> dict[str, str]:
    keys = r.mapping(node, where, spec[0], spec[1])
    params = {}
    for key, value in keys.items():
        at = f"{where}.{key}"
        if key in SERIES_FILE_PARAMS:
            params[key] = _series_file(r, value, at)
        elif key in TREE_PATH_PARAMS:
            params[key] = _tree_path(r, value, at)
        elif key in QTEST_PARAMS:
            # Its source is taken from beside series.yaml.
            params[key] = _qtest_name(r, value, at)
            _inside(r, value, at, f"tests/qtest/{params[key]}.c")
        else:
            params[key] = r.string(value, at)
    return params


def _patch(
    r: _Reader, node: yaml.Node, where: str, generators: GeneratorSpecs
) -> Patch:
    keys = r.mapping(
        node, where, ["subject", "generator", "body"], ["trailers", "with"]
    )
    generator = r.string(keys["generator"], f"{where}.generator")
    if generator not in generators:
        raise r.fail(
            keys["generator"],
            f"{where}.generator",
            f"unknown generator '{generator}'; known: " + ", ".join(sorted(generators)),
        )
    trailers: tuple[str, ...] = ()
    if "trailers" in keys:
        if not isinstance(keys["trailers"], yaml.SequenceNode):
            raise r.fail(keys["trailers"], f"{where}.trailers", "expected a list")
        trailers = tuple(
            r.parsed(t, f"{where}.trailers[{i}]", _trailer, "a 'Tag: value' trailer")
            for i, t in enumerate(keys["trailers"].value)
        )
    spec = generators[generator]
    if "with" in keys:
        params = _params(r, keys["with"], f"{where}.with", spec)
    elif spec[0]:
        raise r.fail(
            node, where, f"generator '{generator}' needs 'with:' " + ", ".join(spec[0])
        )
    else:
        params = {}
    return Patch(
        subject=r.header(keys["subject"], f"{where}.subject").strip(),
        body=r.string(keys["body"], f"{where}.body").strip("\n") + "\n",
        generator=generator,
        trailers=trailers,
        line=node.start_mark.line + 1,
        params=params,
    )


def _wire(r: _Reader, node: yaml.Node, where: str) -> Wire:
    keys = r.mapping(
        node, where, ["completion", "notice-event"], ["notice-state", "announces"]
    )
    if ("notice-state" in keys) != ("announces" in keys):
        raise r.fail(node, where, "'notice-state' and 'announces' go together")
    return Wire(
        completion=r.string(keys["completion"], f"{where}.completion"),
        notice_event=r.string(keys["notice-event"], f"{where}.notice-event"),
        notice_state=(
            r.string(keys["notice-state"], f"{where}.notice-state")
            if "notice-state" in keys
            else None
        ),
        announces=(
            r.string(keys["announces"], f"{where}.announces")
            if "announces" in keys
            else None
        ),
    )


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


def _mutations(r: _Reader, node: yaml.Node, where: str) -> tuple[Mutation, ...]:
    """The mutations file named by 'mutations:', beside series.yaml."""
    path, root = _compose_beside(r, node, where)
    mr = _Reader(path)
    if not isinstance(root, yaml.SequenceNode) or not root.value:
        raise SeriesFileError(path, 1, "expected a non-empty list of mutations")
    out = []
    for i, item in enumerate(root.value):
        at = f"[{i}]"
        keys = mr.mapping(
            item, at, ["name", "what", "file", "edits", "reason"], ["case", "fault"]
        )
        if ("case" in keys) == ("fault" in keys):
            raise mr.fail(item, at, "give either 'case' (a qtest case) or 'fault'")
        edits_node = keys["edits"]
        if not isinstance(edits_node, yaml.SequenceNode) or not edits_node.value:
            raise mr.fail(edits_node, f"{at}.edits", "expected a non-empty list")
        edits = []
        for j, edit in enumerate(edits_node.value):
            pair = mr.mapping(edit, f"{at}.edits[{j}]", ["old", "new"], [])
            edits.append(
                (
                    mr.string(pair["old"], f"{at}.edits[{j}].old"),
                    mr.string(pair["new"], f"{at}.edits[{j}].new", nonempty=False),
                )
            )
        reason = mr.pattern(keys["reason"], f"{at}.reason")
        out.append(
            Mutation(
                name=mr.string(keys["name"], f"{at}.name"),
                what=mr.string(keys["what"], f"{at}.what"),
                file=_tree_path(mr, keys["file"], f"{at}.file"),
                edits=tuple(edits),
                case=mr.string(keys["case"], f"{at}.case") if "case" in keys else "",
                reason=reason,
                fault=(
                    mr.string(keys["fault"], f"{at}.fault") if "fault" in keys else None
                ),
            )
        )
    names = [m.name for m in out]
    for i, m in enumerate(out):
        if names.index(m.name) != i:
            raise mr.fail(root.value[i], f"[{i}].name", f"duplicate '{m.name}'")
    return tuple(out)


def _choice(r: _Reader, node: yaml.Node, where: str, choices: tuple[str, ...]) -> str:
    """A string that must be one of choices."""
    value = r.string(node, where)
    if value not in choices:
        raise r.fail(node, where, f"'{value}' is not one of: " + ", ".join(choices))
    return value


def _sides(r: _Reader, node: yaml.Node, where: str) -> tuple[tuple[str, str], ...]:
    keys = r.mapping(node, where, [], SIDES)
    return tuple((side, r.string(keys[side], f"{where}.{side}")) for side in keys)


def _flag(r: _Reader, node: yaml.Node, where: str) -> bool:
    if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL:
        raise r.fail(node, where, "expected true or false")
    return str(node.value).lower() in ("true", "yes", "on")


def _scenario(r: _Reader, node: yaml.Node, where: str) -> Scenario:
    keys = r.mapping(
        node,
        where,
        ["name", "what", "run", "flags"],
        ["devices", "events", "each-arc", "fail", "reset-fails", "exits"],
    )
    run = _choice(r, keys["run"], f"{where}.run", SCENARIO_RUNS)
    devices = 1
    if "devices" in keys:
        node_ = keys["devices"]
        text = str(node_.value) if isinstance(node_, yaml.ScalarNode) else ""
        if not text.isdigit() or not 1 <= int(text) <= 4:
            raise r.fail(keys["devices"], f"{where}.devices", "expected 1 to 4")
        devices = int(text)
    name = r.string(keys["name"], f"{where}.name")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise r.fail(keys["name"], f"{where}.name", "use lower case, digits and '-'")
    each_arc = (
        _flag(r, keys["each-arc"], f"{where}.each-arc") if "each-arc" in keys else True
    )
    fail = _sides(r, keys["fail"], f"{where}.fail") if "fail" in keys else ()
    if each_arc and fail:
        raise r.fail(node, where, "'fail' goes with 'each-arc: false'")
    return Scenario(
        name=name,
        what=r.string(keys["what"], f"{where}.what"),
        run=run,
        flags=r.string(keys["flags"], f"{where}.flags"),
        devices=devices,
        events=_flag(r, keys["events"], f"{where}.events")
        if "events" in keys
        else True,
        each_arc=each_arc,
        fail=fail,
        reset_fails=(
            _sides(r, keys["reset-fails"], f"{where}.reset-fails")
            if "reset-fails" in keys
            else ()
        ),
        exits=_sides(r, keys["exits"], f"{where}.exits") if "exits" in keys else (),
    )


def _faults(r: _Reader, node: yaml.Node, where: str) -> FaultPlan:
    keys = r.mapping(node, where, ["scenarios", "invariants", "table"], [])
    path, root = _compose_beside(r, keys["scenarios"], f"{where}.scenarios")
    fr = _Reader(path)
    top = fr.mapping(root, "", ["scenarios"], [])
    items = top["scenarios"]
    if not isinstance(items, yaml.SequenceNode) or not items.value:
        raise fr.fail(items, "scenarios", "expected a non-empty list")
    scenarios = tuple(
        _scenario(fr, item, f"scenarios[{i}]") for i, item in enumerate(items.value)
    )
    names = [s.name for s in scenarios]
    for i, scenario in enumerate(scenarios):
        if names.index(scenario.name) != i:
            raise fr.fail(
                items.value[i], f"scenarios[{i}].name", f"duplicate '{scenario.name}'"
            )
    invariants = r.strings(keys["invariants"], f"{where}.invariants")
    for i, name in enumerate(invariants):
        if name not in INVARIANTS:
            raise r.fail(
                keys["invariants"].value[i],
                f"{where}.invariants[{i}]",
                f"unknown invariant '{name}'; known: " + ", ".join(INVARIANTS),
            )
    if not invariants:
        raise r.fail(keys["invariants"], f"{where}.invariants", "name at least one")
    return FaultPlan(
        scenarios=scenarios,
        invariants=invariants,
        table=_series_file(r, keys["table"], f"{where}.table"),
        scenarios_file=r.string(keys["scenarios"], f"{where}.scenarios"),
    )


def _test_plan(r: _Reader, node: yaml.Node, where: str) -> TestPlan:
    keys = r.mapping(
        node,
        where,
        ["qtest", "preload", "notice-pattern", "mutations"],
        ["targets", "base-passes", "faults"],
    )
    pattern = r.pattern(keys["notice-pattern"], f"{where}.notice-pattern")
    preload = _choice(r, keys["preload"], f"{where}.preload", PRELOADS)
    return TestPlan(
        qtest=_qtest_name(r, keys["qtest"], f"{where}.qtest"),
        preload=preload,
        targets=(
            r.strings(keys["targets"], f"{where}.targets") if "targets" in keys else ()
        ),
        base_passes=(
            r.strings(keys["base-passes"], f"{where}.base-passes")
            if "base-passes" in keys
            else ()
        ),
        notice_pattern=pattern,
        mutations=_mutations(r, keys["mutations"], f"{where}.mutations"),
        faults=_faults(r, keys["faults"], f"{where}.faults")
        if "faults" in keys
        else None,
        mutations_file=r.string(keys["mutations"], f"{where}.mutations"),
    )


def _version(
    r: _Reader, number: int, node: yaml.Node, generators: GeneratorSpecs
) -> Version:
    where = f"versions.v{number}"
    keys = r.mapping(
        node,
        where,
        ["author", "date", "cover", "patches", "wire", "test"],
        ["base", "target", "since", "changelog", "to", "cc", "message-id"],
    )
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
        wire=_wire(r, keys["wire"], f"{where}.wire"),
        message_id=(
            r.parsed(
                keys["message-id"],
                f"{where}.message-id",
                _message_id,
                "a Message-Id like '<id@host>'",
            )
            if "message-id" in keys
            else None
        ),
        test=_test_plan(r, keys["test"], f"{where}.test"),
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
    keys = r.mapping(root, "", ["versions"], ["subject-prefix", "to", "cc"])
    versions_node = keys["versions"]
    if not isinstance(versions_node, yaml.MappingNode) or not versions_node.value:
        raise r.fail(versions_node, "versions", "expected a mapping of v1, v2, ...")
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
        versions[number] = _version(r, number, value, generators)
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
    )
