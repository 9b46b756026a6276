"""The VFIO migration series' own kind of change.

vfio-migration-notice edits hw/vfio/migration.c: it sends a notice from
vfio_migration_set_state() before the ioctl that starts a transition.
Its anchors are particular to that file, so it lives with the lab; the
lab's KINDS are given to series.yaml's loader beside the core's.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from ...core import csource
from ...core.generators import (
    CORE,
    Context,
    Files,
    Generator,
    Reader,
    template_reads,
)
from ...ground.errors import AnchorError

MIGRATION_FILE = "hw/vfio/migration.c"


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


def _vfio_migration_notice(read: Reader, ctx: Context) -> Files:
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


NOTICE = Generator(
    "vfio-migration-notice",
    f"send a notice from {MIGRATION_FILE} before a state change",
    _vfio_migration_notice,
    ("template",),
    ("case", "qapi-case"),
    reads=template_reads,
)

KINDS: dict[str, Generator] = {NOTICE.name: NOTICE}


# -- series files of before schema 2 -----------------------------------------
#
# Before kinds took their file and section as keys, three generators had
# this series' ones built in.  A file without 'schema:' (series.yaml's
# loader gives it to the lab that says it reads such files) still names
# them: each is the core's kind with those keys filled in.

QAPI_FILE = "qapi/vfio.json"
MAINTAINERS_SECTION = "VFIO"


def _filled(kind: Generator, name: str, summary: str, **fixed: str) -> Generator:
    """kind, with fixed keys added to every change's own."""

    def keys(params: Mapping[str, str]) -> dict[str, str]:
        return {**fixed, **params}

    def apply(read: Reader, ctx: Context) -> Files:
        return kind.apply(read, dataclasses.replace(ctx, params=keys(ctx.params)))

    return Generator(
        name,
        summary,
        apply,
        tuple(k for k in kind.params if k not in fixed),
        tuple(k for k in kind.optional if k not in fixed),
        reads=lambda params: kind.reads(keys(params)),
        paths=kind.paths,
        check=lambda params: kind.check(keys(params)),
    )


LEGACY_KINDS: dict[str, Generator] = {
    g.name: g
    for g in (
        _filled(
            CORE["qapi"],
            "qapi-event",
            f"append an event shaped like another one to {QAPI_FILE}",
            file=QAPI_FILE,
            add="event-like",
        ),
        _filled(
            CORE["qapi"],
            "qapi-enum-value",
            f"add a documented value to an enum of {QAPI_FILE}",
            file=QAPI_FILE,
            add="enum-value",
        ),
        _filled(
            CORE["qtest"],
            "qtest",
            "add a qtest (and a library it preloads into QEMU)",
            **{
                "maintainers-section": MAINTAINERS_SECTION,
                "maintainers-before": QAPI_FILE,
            },
        ),
    )
}
