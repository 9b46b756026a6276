"""Read events from a QEMU tree's QAPI schema with that tree's own QAPI code.

Run as a script in a subprocess (each QEMU tree brings its own
scripts/qapi package, which must not mix with another tree's):

    python qapi_probe.py TREE EVENT...

It prints JSON: for each EVENT its members (name and type), the text
documenting each member, and its 'Since:' section; or the error QEMU's
QAPI code raised, with its file:line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def describe(schema: Any, name: str) -> dict[str, Any] | None:
    event = schema.lookup_entity(name)
    if event is None or event.meta != "event":
        return None
    members = []
    if event.arg_type is not None:
        members = [
            {"name": m.name, "type": m.type.name, "optional": bool(m.optional)}
            for m in event.arg_type.members
        ]
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
    }


def main(argv: list[str]) -> int:
    tree = Path(argv[1]).resolve()
    sys.path.insert(0, str(tree / "scripts"))
    from qapi.error import QAPIError  # type: ignore[import-not-found]
    from qapi.schema import QAPISchema  # type: ignore[import-not-found]

    try:
        schema = QAPISchema(str(tree / "qapi" / "qapi-schema.json"))
    except QAPIError as err:
        print(json.dumps({"error": str(err).strip()}))
        return 0
    print(json.dumps({"events": {name: describe(schema, name) for name in argv[2:]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
