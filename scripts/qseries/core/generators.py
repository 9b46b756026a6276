"""Generators: each turns base files into the files of one patch.

A generator is a pure function of the files it reads (from the tree the
patch applies to) and of templates; it returns the new contents.  It finds
what it edits by C or QAPI structure, not by line numbers, and it refuses
(AnchorError naming the function and the base) rather than write a file
it is not sure about.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..ground.errors import AnchorError
from . import csource
from .templates import Templates

Reader = Callable[[str], str]


@dataclass(frozen=True)
class Context:
    since: str  # the QAPI 'Since:' of new definitions
    base: str  # a description of the base, for messages
    templates: Templates
    # The patch's 'with:' mapping in series.yaml: what the generator
    # edits is data of the version, not of the code.
    params: Mapping[str, str] = field(default_factory=dict)

    def param(self, name: str) -> str:
        return self.params[name]


@dataclass(frozen=True)
class Generator:
    name: str
    summary: str
    apply: Callable[[Reader, Context], dict[str, str]]
    params: tuple[str, ...] = ()  # required keys of 'with:'
    optional: tuple[str, ...] = ()  # optional keys of 'with:'
    # The files beside series.yaml a patch of this generator reads, from
    # its 'with:': (templates it renders, files it takes verbatim).  What
    # its results depend on, besides the base.
    reads: Callable[[Mapping[str, str]], tuple[tuple[str, ...], tuple[str, ...]]] = (
        lambda params: ((), ())
    )


QAPI_FILE = "qapi/vfio.json"
MIGRATION_FILE = "hw/vfio/migration.c"


def _qapi_event(read: Reader, ctx: Context) -> dict[str, str]:
    """Append a new event, shaped like an existing one, to qapi/vfio.json."""
    event, like = ctx.param("event"), ctx.param("like")
    text = read(QAPI_FILE)
    if not re.search(rf"'event':\s*'{re.escape(like)}'", text):
        raise AnchorError(
            f"{QAPI_FILE} of {ctx.base} has no {like} event",
            "the series needs a base of QEMU 9.1 or later",
        )
    if re.search(rf"'event':\s*'{re.escape(event)}'", text):
        raise AnchorError(
            f"{QAPI_FILE} of {ctx.base} already defines {event}",
            "is the series applied already?",
        )
    rendered = ctx.templates.render(
        ctx.param("template"), event=event, completion=like, since=ctx.since
    )
    return {QAPI_FILE: text.rstrip("\n") + "\n\n" + rendered.strip("\n") + "\n"}


QAPI_DOC_WIDTH = 70  # QEMU wraps QAPI doc comments at 70 columns


def _doc_lines(text: str, indent: str = "") -> str:
    """Text as '# ' doc comment lines, wrapped as QEMU wraps QAPI docs:
    at 70 columns, two spaces after a full stop kept, continuation lines
    indented by `indent`."""
    joined = re.sub(r"\.[ \t]*\n\s*", ".  ", text.strip())
    parts = re.split(r"( +)", re.sub(r"[ \t]*\n\s*", " ", joined))
    words = parts[0::2]
    gaps = ["  " if g.startswith("  ") else " " for g in parts[1::2]]
    lines: list[str] = []
    line = words[0]
    for gap, word in zip(gaps, words[1:], strict=True):
        if len("# " + line + gap + word) > QAPI_DOC_WIDTH:
            lines.append(line)
            line = indent + word
        else:
            line += gap + word
    lines.append(line)
    return "".join(f"# {ln}\n" for ln in lines)


def _qapi_enum_value(read: Reader, ctx: Context) -> dict[str, str]:
    """Add a value to an enum of qapi/vfio.json, with its documentation.

    The template gives two macros: 'intro', sentences added to the enum's
    opening paragraph, and 'member', the new value's description (the
    generator wraps both as QAPI docs are wrapped).
    """
    enum, value = ctx.param("enum"), ctx.param("value")
    template = ctx.param("template")
    text = read(QAPI_FILE)
    doc = re.search(
        rf"^##\n# @{re.escape(enum)}:\n#\n((?:# .*\n)+)#\n"
        rf"((?:# .*\n|#\n)*?)(#\n# Since: .*\n)##\n"
        rf"(\{{ 'enum': '{re.escape(enum)}',\n  'data': \[)([^\]]*)\]",
        text,
        re.M,
    )
    if doc is None:
        raise AnchorError(
            f"{QAPI_FILE} of {ctx.base} has no documented enum {enum} "
            "shaped as expected",
            "the generator does not know this base",
        )
    values = re.findall(r"'([^']+)'", doc[5])
    if value in values:
        raise AnchorError(
            f"{QAPI_FILE} of {ctx.base}: {enum} has '{value}' already",
            "is the series applied already?",
        )
    intro = "\n".join(line[2:] for line in doc[1].splitlines())
    addition = ctx.templates.macro(template, "intro", value=value, since=ctx.since)
    member = ctx.templates.macro(template, "member", value=value, since=ctx.since)
    new_doc = (
        _doc_lines(intro + "  " + addition.strip())
        + "#\n"
        + doc[2]
        + "#\n"
        + _doc_lines(f"@{value}: {member.strip()}", indent="    ")
        + doc[3]
    )
    data = doc[5].rstrip(" ")
    last = (doc[4] + data).rsplit("\n", 1)[-1]
    if len(f"{last}, '{value}' ] }}") > 80:
        pad = " " * (len(doc[4].rsplit("\n", 1)[-1]) + 1)
        data = f"{data},\n{pad}'{value}' "
    else:
        data = f"{data}, '{value}' "
    new_text = (
        text[: doc.start(1)] + new_doc + "##\n" + doc[4] + data + text[doc.end(5) :]
    )
    return {QAPI_FILE: new_text}


class _Editor:
    """Edits of one C file, each located inside a named function."""

    def __init__(self, text: str, path: str, ctx: Context):
        self.text = text
        self.path = path
        self.ctx = ctx

    def function(self, name: str) -> csource.Function:
        try:
            return csource.find_function(self.text, name)
        except csource.NotFound:
            raise AnchorError(
                f"{self.path} of {self.ctx.base} has no function {name}()",
                "the generator does not know this base; update it or pick another base",
            ) from None

    def code(
        self, fn: csource.Function, code: str, what: str, first: bool = False
    ) -> tuple[int, int]:
        """Whole lines holding `code` in fn's body."""
        start, end = fn.body
        try:
            m = csource.find_code(self.text, code, start, end, first)
        except csource.NotFound:
            raise AnchorError(
                f"{self.path} of {self.ctx.base}: {fn.name}() does not {what} "
                f"as expected ({code})",
                "the generator does not know this base; update it or pick another base",
            ) from None
        return csource.line_span(self.text, m)

    def replace(self, span: tuple[int, int], new: str) -> None:
        self.text = self.text[: span[0]] + new + self.text[span[1] :]


SEND_EVENT = "vfio_migration_send_event"
SET_DEVICE_STATE = "vfio_migration_set_device_state"
SET_STATE = "vfio_migration_set_state"
TO_QAPI_STATE = "mig_state_to_qapi_state"


def _vfio_migration_notice(read: Reader, ctx: Context) -> dict[str, str]:
    """Send a notice from vfio_migration_set_state() before the ioctl.

    The template's macros say what is sent and when: the send helper's
    new parameters and call, the completion call, the notice call placed
    after the early return, and optionally new parameters and a new case
    body for mig_state_to_qapi_state() (a notice carried as a state value
    rather than as an event of its own).
    """
    template = ctx.param("template")
    ed = _Editor(read(MIGRATION_FILE), MIGRATION_FILE, ctx)

    def fragment(name: str, **context: str) -> str:
        return ctx.templates.macro(template, name, **context)

    # Edits go from the end of the file to its start, so that offsets
    # found before an edit stay valid.  Find every anchor first: no
    # partial result is ever returned.
    helper = ed.function(SEND_EVENT)
    helper_local = ed.code(
        helper, "VFIOMigration *migration = vbasedev->migration;", "declare migration"
    )
    helper_send = ed.code(
        helper,
        "qapi_event_send_vfio_migration(dev->id, qom_path,"
        " mig_state_to_qapi_state(migration->device_state));",
        "send VFIO_MIGRATION",
    )
    ed.code(helper, "if (!vbasedev->migration_events) {", "check migration-events")
    rest = (
        ed.text[helper.body[0] : helper_local[0]]
        + ed.text[helper_local[1] : helper_send[0]]
        + ed.text[helper_send[1] : helper.body[1]]
    )
    if re.search(r"\bmigration\b", rest):
        raise AnchorError(
            f"{MIGRATION_FILE} of {ctx.base}: {SEND_EVENT}() uses 'migration' "
            "beyond the event call",
            "the generator does not know this base",
        )

    record = ed.function(SET_DEVICE_STATE)
    record_send = ed.code(record, f"{SEND_EVENT}(vbasedev);", "send the event")

    setter = ed.function(SET_STATE)
    params = ed.text[setter.params[0] : setter.params[1]]
    if not re.search(r"\bnew_state\b", params):
        raise AnchorError(
            f"{MIGRATION_FILE} of {ctx.base}: {SET_STATE}() has no new_state parameter",
            "the generator does not know this base",
        )
    early = ed.code(
        setter,
        "if (new_state == migration->device_state) { return 0; }",
        "return early for an unchanged state",
    )
    ioctl = ed.code(
        setter,
        "if (ioctl(vbasedev->fd, VFIO_DEVICE_FEATURE, feature)) {",
        "call the VFIO_DEVICE_FEATURE ioctl",
        first=True,
    )
    if ioctl[0] < early[1]:
        raise AnchorError(
            f"{MIGRATION_FILE} of {ctx.base}: in {SET_STATE}() the ioctl comes "
            "before the early return",
            "the generator does not know this base",
        )

    edits = [
        (early[1], early[1], fragment("prepare_call", new_state="new_state")),
        (*record_send, fragment("completion_call")),
        (*helper_send, fragment("send_event_call")),
        (*helper_local, ""),
        (*helper.params, fragment("send_event_params")),
    ]
    if ctx.templates.has_macro(template, "qapi_state_params"):
        mapper = ed.function(TO_QAPI_STATE)
        case = ctx.param("case")
        body = ed.code(
            mapper,
            f"case {case}: return {ctx.param('qapi-case')};",
            f"map {case}",
        )
        edits += [
            (*mapper.params, fragment("qapi_state_params")),
            (*body, fragment("qapi_state_case")),
        ]
    edits.sort(reverse=True)
    for start, end, new in edits:
        ed.replace((start, end), new)
    return {MIGRATION_FILE: ed.text}


QTEST_MESON = "tests/qtest/meson.build"
QTEST_LIST = "qtests_i386"
QTEST_LINE = 90  # longer entries of the list are split
QTEST_LOOP = "qtest_executables = {}\n"
QTEST_DEPENDS = "depends: [test_deps, qtest_emulator, emulator_modules]"
MAINTAINERS = "MAINTAINERS"
MAINTAINERS_SECTION = "VFIO"


def _absent(read: Reader, path: str, ctx: Context) -> None:
    try:
        read(path)
    except AnchorError:
        return
    raise AnchorError(
        f"{path} exists in {ctx.base} already", "is the series applied already?"
    )


def _qtest_file(name: str) -> str:
    """Where a qtest's source is, in QEMU's tree and beside series.yaml."""
    return f"tests/qtest/{name}.c"


def _template(params: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (params["template"],), ()


def _qtest_reads(
    params: Mapping[str, str],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    templates = (params["meson-template"],) if "meson-template" in params else ()
    helper = (params["helper"],) if "helper" in params else ()
    return templates, (_qtest_file(params["qtest"]), *helper)


def _qtest(read: Reader, ctx: Context) -> dict[str, str]:
    """Add a qtest to the tree, its meson entry and its MAINTAINERS lines.

    With 'helper' (a C file of this repository) and 'helper-file' (its
    place in QEMU's tree), the patch also carries a library that the qtest
    preloads into QEMU: built by QEMU's meson as a shared module where
    'condition' holds, and a dependency of every qtest run, so that
    QEMU's own 'make check-qtest-*' builds it first.
    """
    name = ctx.param("qtest")
    condition = ctx.param("condition")
    qtest_file = _qtest_file(name)
    added = {qtest_file: ctx.templates.read(qtest_file)}
    _absent(read, qtest_file, ctx)
    meson = read(QTEST_MESON)
    m = re.search(rf"^{QTEST_LIST} = \\\n", meson, re.M)
    if not m:
        raise AnchorError(
            f"{QTEST_MESON} of {ctx.base} has no '{QTEST_LIST} = \\' list",
            "the generator does not know this base",
        )
    entry = f"  ({condition} ? ['{name}'] : []) + \\\n"
    if len(entry) > QTEST_LINE and " and " in condition:
        # As the list's other long entries do: one operand per line.
        first, rest = condition.split(" and ", 1)
        entry = f"  ({first} and \\\n   {rest} ? ['{name}'] : []) + \\\n"
    edits = [(m.end(), m.end(), entry)]
    if "helper" in ctx.params:
        helper_file = ctx.param("helper-file")
        _absent(read, helper_file, ctx)
        added[helper_file] = ctx.templates.read(ctx.param("helper"))
        loop = meson.find(QTEST_LOOP)
        depends = meson.find(QTEST_DEPENDS)
        if loop < 0 or depends < loop:
            raise AnchorError(
                f"{QTEST_MESON} of {ctx.base} has no '{QTEST_LOOP.strip()}' "
                f"loop whose tests have '{QTEST_DEPENDS}'",
                "the generator does not know this base",
            )
        block = ctx.templates.render(
            ctx.param("meson-template"),
            condition=condition,
            module=ctx.param("helper-module"),
            source=helper_file.rsplit("/", 1)[-1],
        )
        at = depends + len(QTEST_DEPENDS) - 1
        edits += [
            (loop, loop, block.strip("\n") + "\n\n"),
            (at, at, ", qtest_preload_modules"),
        ]
    for start, end, new in sorted(edits, reverse=True):
        meson = meson[:start] + new + meson[end:]

    maint = read(MAINTAINERS)
    m = re.search(rf"^{MAINTAINERS_SECTION}\n(?:[A-Z]: .*\n)+", maint, re.M)
    if not m:
        raise AnchorError(
            f"{MAINTAINERS} of {ctx.base} has no '{MAINTAINERS_SECTION}' section",
            "the generator does not know this base",
        )
    # Next to the QAPI file of the section, whose neighbours have changed
    # least between releases: that keeps the hunk easy to backport.
    section = maint[m.start() : m.end()]
    neighbour = section.find(f"F: {QAPI_FILE}\n")
    at = m.start() + neighbour if neighbour >= 0 else m.end()
    lines = "".join(f"F: {path}\n" for path in sorted(added))
    maint = maint[:at] + lines + maint[at:]
    return {**added, QTEST_MESON: meson, MAINTAINERS: maint}


GENERATORS: dict[str, Generator] = {
    g.name: g
    for g in (
        Generator(
            "qapi-event",
            f"append an event shaped like another one to {QAPI_FILE}",
            _qapi_event,
            ("event", "like", "template"),
            reads=_template,
        ),
        Generator(
            "qapi-enum-value",
            f"add a documented value to an enum of {QAPI_FILE}",
            _qapi_enum_value,
            ("enum", "value", "template"),
            reads=_template,
        ),
        Generator(
            "vfio-migration-notice",
            f"send a notice from {MIGRATION_FILE} before a state change",
            _vfio_migration_notice,
            ("template",),
            ("case", "qapi-case"),
            reads=_template,
        ),
        Generator(
            "qtest",
            "add a qtest (and a library it preloads into QEMU)",
            _qtest,
            ("qtest", "condition"),
            ("helper", "helper-file", "helper-module", "meson-template"),
            reads=_qtest_reads,
        ),
    )
}


def specs() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Each generator's required and optional 'with:' keys, for series.yaml."""
    return {g.name: (g.params, g.optional) for g in GENERATORS.values()}
