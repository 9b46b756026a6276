"""The README and docs/ against the code they describe.

The README is the short start and the map; docs/ holds the reference.
These tests keep both true as the code moves: every command and option
is in docs/commands.md, every module of a floor is on the README's map,
every module path and link the prose names exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from qseries import cli

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
PACKAGE = REPO / "scripts" / "qseries"
# The floors of the package, as the README's map lists them; labs are
# mapped in their own page of docs/.
FLOORS = ("ground", "core", "qemu", "mail", "reports", "pipeline")


def prose() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command line the cli accepts, nested ones (ci gitlab) too."""
    stack = [("", cli.build_parser())]
    while stack:
        prefix, parser = stack.pop()
        for name, sub in subparsers(parser).items():
            full = f"{prefix} {name}".strip()
            nested = subparsers(sub)
            if nested:
                stack.append((full, sub))
            else:
                yield full, sub


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        opt
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    }


def test_every_command_and_option_is_in_commands_md() -> None:
    text = (DOCS / "commands.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in text.splitlines()
        if line.startswith("| `")
    }
    # The base tree's options: one table, and the commands that take them.
    section = text.split("## Options, command by command", 1)[1]
    base_rows = {
        opt
        for key in rows
        if key.startswith("--")
        for opt in re.findall(r"--[\w-]+", key)
    }
    base_commands = set(re.findall(r"`([a-z ]+)`", section.split("| option |", 1)[0]))
    missing: list[str] = []
    seen = list(commands())
    assert len(seen) >= 14, seen
    for name, parser in seen:
        row = rows.get(name) or rows.get(f"{name} vA vB")
        if row is None:
            missing.append(f"{name}: no row in the options table")
            continue
        for opt in sorted(options(parser)):
            documented = f"`{opt}" in row or (
                opt in base_rows and name in base_commands
            )
            if not documented:
                missing.append(f"{name}: {opt}")
    for opt in sorted(options(cli.build_parser())):
        if f"`{opt}" not in text.split("## The commands", 1)[0]:
            missing.append(f"global: {opt}")
    assert not missing, missing


def floor_modules(floor: str) -> list[str]:
    here = PACKAGE / floor
    names = {p.stem for p in here.glob("*.py") if p.stem != "__init__"}
    names |= {p.parent.name for p in here.glob("*/__init__.py")}
    return sorted(names)


def test_the_readme_maps_every_module_of_every_floor() -> None:
    text = README.read_text()
    missing = [
        f"{floor}/{name}"
        for floor in FLOORS
        for name in floor_modules(floor)
        if f"`{name}`" not in text.split(f"**{floor}**", 1)[-1].split("\n- **", 1)[0]
    ]
    assert not missing, missing
    for lab in (p.parent for p in (PACKAGE / "labs").glob("*/__init__.py")):
        assert f"`{lab.name}/`" in text, lab.name


def test_every_lab_module_is_in_the_docs() -> None:
    docs = " ".join(p.read_text() for p in DOCS.glob("*.md"))
    missing = [
        str(path.relative_to(PACKAGE))
        for lab in (p.parent for p in (PACKAGE / "labs").glob("*/__init__.py"))
        for path in sorted(lab.iterdir())
        if path.suffix in (".py", ".sh", ".yaml") and path.stem != "__init__"
        if f"`{path.name}`" not in docs
    ]
    assert not missing, missing


def test_module_paths_in_the_prose_exist() -> None:
    stale: list[str] = []
    for page in prose():
        text = page.read_text()
        for path in re.findall(r"scripts/qseries/[\w/.-]*\w", text):
            if not (REPO / path).exists():
                stale.append(f"{page.name}: {path}")
        for module in re.findall(r"python -m (qseries[\w.]*)", text):
            if importlib.util.find_spec(module) is None:
                stale.append(f"{page.name}: -m {module}")
    assert not stale, stale


def slug(heading: str) -> str:
    """The anchor GitHub makes of a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+ (.+)$", page.read_text(), re.M)}


@pytest.mark.parametrize("page", prose(), ids=lambda p: p.name)
def test_links_resolve(page: Path) -> None:
    broken: list[str] = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        anchored = not anchor or dest.suffix != ".md" or anchor in anchors(dest)
        if not dest.exists() or not anchored:
            broken.append(target)
    assert not broken, broken


def test_slug_matches_githubs_anchors() -> None:
    assert slug("The kernel's mtty device") == "the-kernels-mtty-device"
    assert slug("What goes, and when") == "what-goes-and-when"
    assert slug("## `Since:`".lstrip("# ")) == "since"
