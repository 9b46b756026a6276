"""Generators: each turns base files into the files of one patch.

A generator is a pure function of the files it reads (from the tree the
patch applies to) and of templates; it returns the new contents.  It finds
what it edits by C or QAPI structure, not by line numbers, and it refuses
(AnchorError naming the function and the base) rather than write a file
it is not sure about.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import csource
from .errors import AnchorError
from .templates import Templates

Reader = Callable[[str], str]


@dataclass(frozen=True)
class Context:
    since: str  # the QAPI 'Since:' of new definitions
    base: str  # a description of the base, for messages
    templates: Templates


@dataclass(frozen=True)
class Generator:
    name: str
    summary: str
    files: tuple[str, ...]
    apply: Callable[[Reader, Context], dict[str, str]]


QAPI_FILE = "qapi/vfio.json"
QAPI_TEMPLATE = "qapi/vfio.json.j2"
PREPARE_EVENT = "VFIO_MIGRATION_PREPARE"
COMPLETION_EVENT = "VFIO_MIGRATION"

MIGRATION_FILE = "hw/vfio/migration.c"
MIGRATION_TEMPLATE = "hw/vfio/migration.c.j2"


def _qapi_prepare_event(read: Reader, ctx: Context) -> dict[str, str]:
    text = read(QAPI_FILE)
    if not re.search(rf"'event':\s*'{COMPLETION_EVENT}'", text):
        raise AnchorError(
            f"{QAPI_FILE} of {ctx.base} has no {COMPLETION_EVENT} event",
            "the series needs a base of QEMU 9.1 or later",
        )
    if re.search(rf"'event':\s*'{PREPARE_EVENT}'", text):
        raise AnchorError(
            f"{QAPI_FILE} of {ctx.base} already defines {PREPARE_EVENT}",
            "is the series applied already?",
        )
    event = ctx.templates.render(
        QAPI_TEMPLATE,
        event=PREPARE_EVENT,
        completion=COMPLETION_EVENT,
        since=ctx.since,
    )
    return {QAPI_FILE: text.rstrip("\n") + "\n\n" + event.strip("\n") + "\n"}


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


def _vfio_migration_prepare(read: Reader, ctx: Context) -> dict[str, str]:
    ed = _Editor(read(MIGRATION_FILE), MIGRATION_FILE, ctx)

    def fragment(name: str, **context: str) -> str:
        return ctx.templates.macro(MIGRATION_TEMPLATE, name, **context)

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

    edits = sorted(
        [
            (early[1], early[1], fragment("prepare_call", new_state="new_state")),
            (*record_send, fragment("completion_call")),
            (*helper_send, fragment("send_event_call")),
            (*helper_local, ""),
            (*helper.params, fragment("send_event_params")),
        ],
        reverse=True,
    )
    for start, end, new in edits:
        ed.replace((start, end), new)
    return {MIGRATION_FILE: ed.text}


QTEST_NAME = "vfio-migration-prepare-test"
QTEST_FILE = f"tests/qtest/{QTEST_NAME}.c"
QTEST_MESON = "tests/qtest/meson.build"
QTEST_LIST = "qtests_i386"
QTEST_CONFIG = "CONFIG_VFIO_PCI"
MAINTAINERS = "MAINTAINERS"
MAINTAINERS_SECTION = "VFIO"


def _qtest(read: Reader, ctx: Context) -> dict[str, str]:
    """Add our qtest to the tree, its meson entry and its MAINTAINERS line."""
    try:
        read(QTEST_FILE)
    except AnchorError:
        pass
    else:
        raise AnchorError(
            f"{QTEST_FILE} exists in {ctx.base} already",
            "is the series applied already?",
        )
    meson = read(QTEST_MESON)
    m = re.search(rf"^{QTEST_LIST} = \\\n", meson, re.M)
    if not m:
        raise AnchorError(
            f"{QTEST_MESON} of {ctx.base} has no '{QTEST_LIST} = \\' list",
            "the generator does not know this base",
        )
    entry = (
        f"  (config_all_devices.has_key('{QTEST_CONFIG}') ? "
        f"['{QTEST_NAME}'] : []) + \\\n"
    )
    meson = meson[: m.end()] + entry + meson[m.end() :]

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
    maint = maint[:at] + f"F: {QTEST_FILE}\n" + maint[at:]
    return {
        QTEST_FILE: ctx.templates.read(QTEST_FILE),
        QTEST_MESON: meson,
        MAINTAINERS: maint,
    }


GENERATORS: dict[str, Generator] = {
    g.name: g
    for g in (
        Generator(
            "qapi-vfio-prepare-event",
            f"append {PREPARE_EVENT} to {QAPI_FILE}",
            (QAPI_FILE,),
            _qapi_prepare_event,
        ),
        Generator(
            "vfio-migration-prepare",
            f"send {PREPARE_EVENT} before each device state change",
            (MIGRATION_FILE,),
            _vfio_migration_prepare,
        ),
        Generator(
            "qtest-vfio-migration-prepare",
            f"add {QTEST_FILE}, which proves the event order on a fake device",
            (QTEST_FILE, QTEST_MESON, MAINTAINERS),
            _qtest,
        ),
    )
}
