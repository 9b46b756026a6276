"""The inputs of a series' results: what a cached result depends on.

They are the files series.yaml names (itself, the mutations and fault
scenarios, the templates and the files its patches take verbatim), the
templates those include (none that a symlink leads out of the series'
folder), and qseries' own package, found from the package rather than
from a checkout.  Nothing else is read: the checkout around series.yaml
is never walked, so a work dir inside it (where git may be packing
objects at the time) or any other big directory there costs nothing and
changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from . import lab as lab_mod
from .series import Series
from .templates import Templates, inside

PACKAGE = "qseries"


def series_files(series: Series) -> list[tuple[str, Path]]:
    """The files the series names, and what its templates include, as
    (name beside series.yaml, path); those that do not exist are left
    out (generating says so)."""
    root = series.path.parent
    templates: set[str] = set()
    named: set[Path] = {series.path}
    lab = lab_mod.load(series.lab) if series.lab else None
    for version in series.versions.values():
        for name in lab.reads(version.lab) if lab else ():
            named.add(root / name)
        for patch in version.patches:
            for change in patch.changes:
                rendered, verbatim = change.generator.reads(change.params)
                templates.update(rendered)
                named.update(root / name for name in verbatim)
    named.update(Templates(root).closure(sorted(templates)))
    found = []
    for path in sorted(named):
        # A symlink out of the series' folder is refused when the series
        # is loaded or rendered; its target is never read here.
        if path.is_file() and (path == series.path or inside(root, path)):
            try:
                name = str(path.relative_to(root))
            except ValueError:
                name = str(path)
            found.append((name, path))
    return found


def package_files() -> list[tuple[str, bytes]]:
    """qseries' own files (its modules and any data it carries), by name
    inside the package; compiled caches are not its files."""
    return sorted(_walk(resources.files(PACKAGE), ""))


def _walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, bytes]]:
    for item in folder.iterdir():
        name = f"{prefix}{item.name}"
        if item.is_dir():
            if item.name != "__pycache__" and not item.name.startswith("."):
                yield from _walk(item, name + "/")
        elif item.is_file() and not item.name.endswith((".pyc", ".pyo")):
            yield name, item.read_bytes()
