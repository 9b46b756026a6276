"""Read events from a QEMU tree's QAPI schema with a base tree's QAPI code.

Run as a script in a subprocess (each QEMU tree brings its own
scripts/qapi package, which must not mix with another tree's):

    python -I qapi_probe.py CODE TREE EVENT...

CODE is the base tree whose scripts/qapi is imported; TREE holds the
schema, the series' patches applied.  The code never comes from TREE:
a series may change scripts/qapi, and would then run its own code.

It prints JSON: for each EVENT its members (name and type), the text
documenting each member, its 'Since:' section and the C function that
sends it; for each enum a member's type names, its values, the text
documenting each value and each value's C constant; under "definitions",
every definition the schema's files make (not the implicit types QEMU
derives from them), with its kind, file:line, whether it is documented
and its 'Since:'; or the error QEMU's QAPI code raised, with its
file:line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def describe_enum(enum: Any) -> dict[str, Any]:
    from qapi.common import c_enum_const  # type: ignore[import-not-found]

    docs: dict[str, str] = {}
    if enum.doc is not None:
        for arg, section in enum.doc.args.items():
            docs[arg] = section.text.strip()
    return {
        "values": [m.name for m in enum.members],
        "docs": docs,
        "constants": {
            m.name: c_enum_const(enum.name, m.name, enum.prefix) for m in enum.members
        },
        "where": f"{enum.info.fname}:{enum.info.line}" if enum.info else None,
    }


def describe(schema: Any, name: str) -> dict[str, Any] | None:
    from qapi.common import c_name

    event = schema.lookup_entity(name)
    if event is None or event.meta != "event":
        return None
    enums = {}
    members = []
    if event.arg_type is not None:
        members = [
            {"name": m.name, "type": m.type.name, "optional": bool(m.optional)}
            for m in event.arg_type.members
        ]
        for m in event.arg_type.members:
            if m.type.meta == "enum":
                enums[m.type.name] = describe_enum(m.type)
    doc = event.doc
    docs: dict[str, str] = {}
    since = None
    if doc is not None:
        for arg, section in doc.args.items():
            docs[arg] = section.text.strip()
        since_section = getattr(doc, "since", None)
        if since_section is not None:
            since = since_section.text.strip()
    return {
        "members": members,
        "docs": docs,
        "since": since,
        "where": f"{event.info.fname}:{event.info.line}" if event.info else None,
        "function": "qapi_event_send_" + c_name(name.lower()),
        "enums": enums,
    }


def definitions(schema: Any) -> dict[str, dict[str, Any]]:
    """Every definition of the schema's own files."""
    out: dict[str, dict[str, Any]] = {}
    for ent in getattr(schema, "_entity_list", []):
        info = getattr(ent, "info", None)
        name = getattr(ent, "name", None)
        if info is None or not isinstance(name, str) or ent.is_implicit():
            continue
        doc = getattr(ent, "doc", None)
        since = getattr(doc, "since", None) if doc is not None else None
        out[name] = {
            "meta": ent.meta,
            "where": f"{info.fname}:{info.line}",
            "documented": doc is not None,
            "since": since.text.strip() if since is not None else None,
        }
    return out


def main(argv: list[str]) -> int:
    code = Path(argv[1]).resolve()
    tree = Path(argv[2]).resolve()
    sys.path.insert(0, str(code / "scripts"))
    from qapi.error import QAPIError  # type: ignore[import-not-found]
    from qapi.schema import QAPISchema  # type: ignore[import-not-found]

    try:
        schema = QAPISchema(str(tree / "qapi" / "qapi-schema.json"))
    except QAPIError as err:
        print(json.dumps({"error": str(err).strip()}))
        return 0
    events = {name: describe(schema, name) for name in argv[3:]}
    print(json.dumps({"events": events, "definitions": definitions(schema)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
