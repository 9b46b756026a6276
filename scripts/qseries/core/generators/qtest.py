"""qtest: a qtest added to the tree, with its meson entry and its
MAINTAINERS lines.

The test's source is tests/qtest/NAME.c beside series.yaml, put at the
same place in the tree.  Its entry goes first in a list of QEMU's
tests/qtest/meson.build ('meson-list:', qtests_i386 unless said), under
a meson condition; its F: lines go into the MAINTAINERS section the
change names, before the F: line it names (else at the section's end).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ...ground.errors import AnchorError
from . import BadKey, Context, Files, Generator, Reader, Reads, absent, exists

QTEST_MESON = "tests/qtest/meson.build"
QTEST_LIST = "qtests_i386"  # QEMU's list of x86 qtests
QTEST_LINE = 90  # longer entries of the list are split
QTEST_LOOP = "qtest_executables = {}\n"
QTEST_DEPENDS = "depends: [test_deps, qtest_emulator, emulator_modules]"
MAINTAINERS = "MAINTAINERS"
HELPER_KEYS = ("helper", "helper-file", "helper-module", "meson-template")


def qtest_file(name: str) -> str:
    """Where a qtest's source is, in QEMU's tree and beside series.yaml."""
    return f"tests/qtest/{name}.c"


def _check(params: Mapping[str, str]) -> None:
    name = params["qtest"]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise BadKey(
            f"'{shown}' is not a qtest name (its source is tests/qtest/NAME.c "
            "inside the QEMU tree); use letters, digits, '-' and '_'",
            "qtest",
        )
    given = [k for k in HELPER_KEYS if k in params]
    if given and len(given) != len(HELPER_KEYS):
        missing = [k for k in HELPER_KEYS if k not in params]
        raise ValueError("a helper also needs: " + ", ".join(missing))
    if "maintainers-before" in params and "maintainers-section" not in params:
        raise ValueError("'maintainers-before' needs 'maintainers-section'")
    if not re.fullmatch(r"[A-Za-z_]\w*", params.get("meson-list", QTEST_LIST)):
        raise BadKey("must be a meson variable name", "meson-list")


def _reads(params: Mapping[str, str]) -> Reads:
    templates = (params["meson-template"],) if "meson-template" in params else ()
    helper = (params["helper"],) if "helper" in params else ()
    return templates, (qtest_file(params["qtest"]), *helper)


def _apply(read: Reader, ctx: Context) -> Files:
    """With 'helper' (a C file beside series.yaml) and 'helper-file' (its
    place in QEMU's tree), the patch also carries a library that the
    qtest preloads into QEMU: built by QEMU's meson as a shared module
    where 'condition' holds, and a dependency of every qtest run, so that
    QEMU's own 'make check-qtest-*' builds it first."""
    name = ctx.param("qtest")
    condition = ctx.param("condition")
    path = qtest_file(name)
    added = {path: ctx.templates.read(path)}
    absent(read, path, ctx)
    meson = exists(read, QTEST_MESON, ctx)
    listed = ctx.get("meson-list", QTEST_LIST)
    m = re.search(rf"^{listed} = \\\n", meson, re.M)
    if not m:
        raise AnchorError(
            f"{QTEST_MESON} of {ctx.base} has no '{listed} = \\' list",
            "name another list with 'meson-list', or pick another base",
        )
    entry = f"  ({condition} ? ['{name}'] : []) + \\\n"
    if len(entry) > QTEST_LINE and " and " in condition:
        # As the list's other long entries do: one operand per line.
        first, rest = condition.split(" and ", 1)
        entry = f"  ({first} and \\\n   {rest} ? ['{name}'] : []) + \\\n"
    edits = [(m.end(), m.end(), entry)]
    if "helper" in ctx.params:
        helper_file = ctx.param("helper-file")
        absent(read, helper_file, ctx)
        added[helper_file] = ctx.templates.read(ctx.param("helper"))
        loop = meson.find(QTEST_LOOP)
        depends = meson.find(QTEST_DEPENDS)
        if loop < 0 or depends < loop:
            raise AnchorError(
                f"{QTEST_MESON} of {ctx.base} has no '{QTEST_LOOP.strip()}' "
                f"loop whose tests have '{QTEST_DEPENDS}'",
                "the qtest kind does not know this base; pick another one",
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
    out: Files = {**added, QTEST_MESON: meson}
    if "maintainers-section" in ctx.params:
        out[MAINTAINERS] = _maintainers(read, ctx, sorted(added))
    return out


def _maintainers(read: Reader, ctx: Context, paths: list[str]) -> str:
    section = ctx.param("maintainers-section")
    maint = exists(read, MAINTAINERS, ctx)
    m = re.search(rf"^{re.escape(section)}\n(?:[A-Z]: .*\n)+", maint, re.M)
    if not m:
        raise AnchorError(
            f"{MAINTAINERS} of {ctx.base} has no '{section}' section",
            "check 'maintainers-section', or pick another base",
        )
    # Before a line of the section whose neighbours change little between
    # releases, when the change names one: that keeps the hunk easy to
    # backport.
    at = m.end()
    if "maintainers-before" in ctx.params:
        found = maint[m.start() : m.end()].find(
            f"F: {ctx.param('maintainers-before')}\n"
        )
        if found >= 0:
            at = m.start() + found
    lines = "".join(f"F: {path}\n" for path in paths)
    return maint[:at] + lines + maint[at:]


KIND = Generator(
    "qtest",
    "add a qtest (and a library it preloads into QEMU)",
    _apply,
    ("qtest", "condition"),
    (
        *HELPER_KEYS,
        "meson-list",
        "maintainers-section",
        "maintainers-before",
    ),
    reads=_reads,
    paths=("helper-file",),
    check=_check,
)
