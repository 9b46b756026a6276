"""Labs, as the pipeline and the command line see them.

A lab (core/lab.py says how one is found) adds to the generic stages:
options of its own on the commands that test, the stages they choose,
and, for each run, a Prover that takes over the proof of the series on
the lab's devices once the pipeline has built it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from ..core import generators
from ..core import lab as core_lab
from ..core import series as series_mod
from ..ground import runs
from ..ground.errors import UsageError

if TYPE_CHECKING:
    from ..ground.workdir import WorkDir
    from ..qemu.build import Build
    from ..qemu.check import QapiJudge
    from .graph import Stage
    from .stages import Pipeline, Request


class Prover(Protocol):
    """One run's proof of a version in a lab."""

    def first_steps(self) -> list[tuple[str, Callable[[], object]]]:
        """Steps that run before the base is got (to refuse early)."""
        ...

    def targets(self, tree: Path, what: str) -> list[str]:
        """The ninja targets the proof needs, besides QEMU."""
        ...

    def inputs(self) -> list[tuple[str, bytes]]:
        """What the check results depend on besides the series' files."""
        ...

    def qapi_judge(self) -> QapiJudge | None:
        """What the check stage asks of the QAPI the series defines."""
        ...

    def test(self, control: bool, built: Build, qemu: Path) -> None:
        """Prove the series (or its control) built, adding result groups."""
        ...

    def products(self) -> dict[str, Path]:
        """What the lab builds for its proof, by name (`qseries build`)."""
        ...

    def after(self, directory: Path) -> None:
        """With reports: what the lab draws or writes beside them."""
        ...


class ProvingLab(core_lab.LabSpec, Protocol):
    """A lab with the stages it adds to the pipeline."""

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The lab's stages (graph.py), each run within one it needs."""
        ...

    def add_options(self, parser: argparse.ArgumentParser, command: str) -> None: ...

    def choose(
        self, args: argparse.Namespace, command: str
    ) -> tuple[list[str], dict[str, object]]: ...

    def prover(self, run: Pipeline) -> Prover: ...

    def bench(
        self, request: Request, workdir: WorkDir, *, cold: bool, reproduce: bool
    ) -> dict[str, object]:
        """`qseries bench`: the lab's figures (cold: with the cold
        builds; reproduce: reproduce against the same steps by hand)."""
        ...

    # What the lab keeps in the work dir: the folders it makes at its
    # top (`clean --all` takes them), and the scratch folders its runs
    # make and remove at their end (a killed run's go with the next).
    @property
    def made(self) -> tuple[str, ...]: ...

    @property
    def throwaway(self) -> tuple[str, ...]: ...

    def workdir_removals(self, workdir: WorkDir) -> list[tuple[Path, str]]:
        """What `qseries clean` (and reproduce's bound) removes of what
        the lab keeps in its folders, each path with why it goes."""
        ...


def load(name: str) -> ProvingLab:
    return cast(ProvingLab, core_lab.load(name))


def installed() -> list[ProvingLab]:
    return [load(name) for name in core_lab.installed()]


def made(labs: Sequence[ProvingLab] | None = None) -> tuple[str, ...]:
    """The folders the labs (None: the installed ones) make at the top
    of a work dir, besides the core's (workdir.MADE)."""
    if labs is None:
        labs = installed()
    return tuple(sorted({name for lab in labs for name in lab.made}))


def throwaway(labs: Sequence[ProvingLab] | None = None) -> tuple[str, ...]:
    """The scratch folders a run makes and removes at its end: the
    core's (runs.THROWAWAY) and those of the labs (None: the installed
    ones), for runs.recorded."""
    if labs is None:
        labs = installed()
    extra = sorted({d for lab in labs for d in lab.throwaway} - set(runs.THROWAWAY))
    return (*runs.THROWAWAY, *extra)


def choose(
    series_file: Path, args: argparse.Namespace, command: str
) -> tuple[list[str], dict[str, object]]:
    """The stages and options the series' lab takes from a command line
    (its `choose`).  An option of a lab the series does not name is
    refused, and --tests, which chooses the tests of a series with no
    lab, for a series with one."""
    series = series_mod.load(series_file, generators.specs())
    given: dict[str, list[tuple[str, str, object]]] = getattr(args, "lab_options", {})
    for name, dests in given.items():
        if name == series.lab:
            continue
        for dest, flag, default in dests:
            if getattr(args, dest, default) != default:
                where = f"names lab '{series.lab}'" if series.lab else "has no lab"
                raise UsageError(
                    f"{flag} is an option of the {name} lab; {series_file} {where}",
                    f"drop {flag}",
                )
    if series.lab is None:
        return [], {}
    if getattr(args, "tests", None) is not None:
        raise UsageError(
            f"--tests is for a series with no lab; {series_file} names "
            f"lab '{series.lab}', whose proof chooses its tests",
            "drop --tests",
        )
    return load(series.lab).choose(args, command)


def add_options(p: argparse.ArgumentParser, command: str) -> None:
    """Each installed lab's options of the command, and which they are
    (choose refuses them for a series of another lab, or of none)."""
    given: dict[str, list[tuple[str, str, object]]] = {}
    for lab in installed():
        before = {id(a) for a in p._actions}
        lab.add_options(p, command)
        given[lab.name] = [
            (a.dest, a.option_strings[0], a.default)
            for a in p._actions
            if id(a) not in before
        ]
    p.set_defaults(lab_options=given)
