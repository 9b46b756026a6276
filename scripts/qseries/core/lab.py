"""Labs, as the core sees them: found by name, never imported by name.

A lab proves what one kind of series does (a device to run it on,
scenarios, expectations).  A series names its lab in series.yaml
(`lab: NAME`); the lab lives in the package `qseries.labs.<NAME>` (a
'-' in the name is a '_' in the package's) and exports `LAB`, an object
with the attributes of `LabSpec` below (and of the pipeline's
`ProvingLab`, for the stages it adds).  This is how QEMU's qapi-gen
loads a backend: by its name, through importlib, so that the core
carries no list of labs and runs with none installed.

What the core needs of a lab is small: the kinds of change it adds,
and the keys it reads in a version of series.yaml.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..ground.errors import UsageError

if TYPE_CHECKING:
    import yaml

    from .generators import Generator

LABS_PACKAGE = "qseries.labs"
NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


class LabSpec(Protocol):
    """What series.yaml's loader asks of a lab."""

    name: str
    # Kinds of change only this lab's series use, by name.
    kinds: Mapping[str, Generator]
    # The keys of a version's 'lab:' mapping: required, optional.
    version_keys: tuple[tuple[str, ...], tuple[str, ...]]
    # Whether the lab reads series files written before labs had names
    # (no 'schema:' key), whose versions held its keys themselves; and
    # the kinds of change such files name (by the names of then).
    legacy: bool
    legacy_kinds: Mapping[str, Generator]

    def parse_version(
        self, r: Any, keys: Mapping[str, yaml.Node], where: str
    ) -> object:
        """The version's lab data from its keys (r is the core's
        series.Reader: errors at a node's line)."""
        ...

    def reads(self, data: object) -> tuple[str, ...]:
        """The files beside series.yaml that a version's lab data names
        (what results depend on, and what a copy of the series takes)."""
        ...


class UnknownLab(UsageError):
    pass


def installed() -> list[str]:
    """The names of the labs this installation has."""
    try:
        package = importlib.import_module(LABS_PACKAGE)
    except ImportError:
        return []
    return sorted(
        m.name.replace("_", "-")
        for m in pkgutil.iter_modules(package.__path__)
        if m.ispkg
    )


def load(name: str) -> LabSpec:
    """The lab called name; a one-line error naming the installed ones."""
    have = installed()
    if not NAME.fullmatch(name) or name not in have:
        raise UnknownLab(
            f"no lab '{name}' in this installation of qseries",
            "installed: " + (", ".join(have) if have else "none"),
        )
    try:
        module = importlib.import_module(f"{LABS_PACKAGE}.{name.replace('-', '_')}")
        lab: LabSpec = module.LAB
    except (ImportError, AttributeError) as err:
        raise UnknownLab(
            f"the lab '{name}' does not load: {err}", "reinstall qseries"
        ) from None
    return lab


def legacy() -> LabSpec | None:
    """The installed lab that reads series files of before 'schema:'."""
    for name in installed():
        lab = load(name)
        if lab.legacy:
            return lab
    return None
