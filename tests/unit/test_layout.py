"""The package's architecture, as README's map draws it.

Floors, each importing only from the floors below it: ground, core,
qemu, mail, reports, pipeline, labs, and the cli on top; no import
circle; nothing outside labs/ names the series a lab proves, nor
imports a lab (labs are loaded by name, core/lab.py).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ..conftest import REPO

PACKAGE = REPO / "scripts" / "qseries"
FLOORS = ("ground", "core", "qemu", "mail", "reports", "pipeline", "labs")
# The words of the VFIO series: its files, symbols, events and states.
SERIES_WORDS = re.compile(
    r"vfio|p2p|pre.copy|stop.copy|rdma|migration.events|fakevfio", re.I
)


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int:
    """ground 0 ... labs 6; the cli and the package's top 7."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in FLOORS:
        return FLOORS.index(parts[1])
    return len(FLOORS)


def _type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _statements(tree: ast.Module, top: bool) -> list[ast.stmt]:
    """The import statements of a module: at its top level only (what
    runs when it is imported), or anywhere; never those only a type
    checker reads."""
    if top:
        return [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    found: list[ast.stmt] = []
    pending: list[ast.AST] = [n for n in tree.body if not _type_checking(n)]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ImportFrom):
            found.append(node)
        pending.extend(
            c
            for c in ast.iter_child_nodes(node)
            if not (isinstance(c, ast.stmt) and _type_checking(c))
        )
    return found


def imports(path: Path, top: bool = False) -> set[str]:
    """The package's modules path imports (relative imports resolved);
    `from . import mod` imports mod, not the package it is in."""
    module = module_of(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in _statements(ast.parse(path.read_text()), top):
        assert isinstance(node, ast.ImportFrom)
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, *([node.module] if node.module else [])])
        elif (node.module or "").startswith("qseries"):
            target = str(node.module)
        else:
            continue
        names = {f"{target}.{a.name}" for a in node.names}
        submodules = {n for n in names if _is_module(n)}
        found |= submodules
        if names - submodules:
            found.add(target)
    return found


def _is_module(name: str) -> bool:
    parts = name.split(".")
    path = PACKAGE.parent.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph(top: bool = False) -> dict[str, set[str]]:
    modules = {module_of(p): p for p in PACKAGE.rglob("*.py")}
    return {
        m: {d for d in imports(p, top) if d in modules and d != m}
        for m, p in modules.items()
    }


def test_floors_import_only_from_below() -> None:
    upward = sorted(
        f"{m} imports {d}"
        for m, deps in graph().items()
        for d in deps
        if floor_of(d) > floor_of(m) and d.count(".") > 1
    )
    assert upward == []


def test_no_import_circle() -> None:
    """None among what modules import when they are imported (a lab's
    package imports its parts only when asked, by name)."""
    edges = graph(top=True)
    circles: list[list[str]] = []

    def visit(node: str, path: list[str], done: set[str]) -> None:
        for dep in sorted(edges[node]):
            if dep in path:
                circles.append([*path[path.index(dep) :], dep])
            elif dep not in done:
                done.add(dep)
                visit(dep, [*path, dep], done)

    for module in sorted(edges):
        visit(module, [module], {module})
    assert circles == []


def test_nothing_outside_labs_imports_a_lab() -> None:
    found = sorted(
        f"{m} imports {d}"
        for m, deps in graph().items()
        if not m.startswith("qseries.labs")
        for d in deps
        if d.startswith("qseries.labs.")
    )
    assert found == []


def test_nothing_outside_labs_names_the_vfio_series() -> None:
    named = sorted(
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in PACKAGE.rglob("*")
        if path.is_file()
        and "labs" not in path.relative_to(PACKAGE).parts
        and "__pycache__" not in path.parts
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if SERIES_WORDS.search(line)
    )
    assert named == []


def test_the_checks_see_what_they_look_for() -> None:
    """The scans above find what they must: an upward import, a circle
    and a name of the series, in modules written for the purpose."""
    assert floor_of("qseries.core.series") < floor_of("qseries.qemu.build")
    assert floor_of("qseries.cli") == len(FLOORS)
    assert SERIES_WORDS.search("hw/vfio/migration.c")
    assert SERIES_WORDS.search("PRE_COPY_P2P")
    assert not SERIES_WORDS.search("qom/object.c")
    deps = imports(PACKAGE / "pipeline" / "stages.py")
    assert "qseries.core.series" in deps and "qseries.qemu.build" in deps
