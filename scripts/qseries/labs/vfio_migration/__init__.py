"""The VFIO migration series' lab: its devices, scenarios and proof.

Two devices run the same scenarios: the user-space fake of the VFIO
interface (fakevfio.c, preloaded into QEMU), and the Linux kernel's own
mtty sample driver, in a guest booted for the purpose.  `LAB` is what
the core and the pipeline load by the lab's name (core/lab.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

    from ...core.generators import Generator
    from ...ground.workdir import WorkDir
    from ...pipeline.graph import Stage
    from ...pipeline.stages import Pipeline, Request
    from .lab import Prover


class VfioMigrationLab:
    """The lab, as core/lab.py's LabSpec and the pipeline's ProvingLab."""

    name = "vfio-migration"
    legacy = True  # series files of before 'schema:' were all this lab's

    @property
    def version_keys(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        from .plan import VERSION_KEYS

        return VERSION_KEYS

    @property
    def kinds(self) -> Mapping[str, Generator]:
        from .generators import KINDS

        return KINDS

    @property
    def legacy_kinds(self) -> Mapping[str, Generator]:
        from .generators import LEGACY_KINDS

        return LEGACY_KINDS

    @property
    def stages(self) -> tuple[Stage, ...]:
        from .lab import STAGES

        return STAGES

    @property
    def made(self) -> tuple[str, ...]:
        from .workdir import MADE

        return MADE

    @property
    def throwaway(self) -> tuple[str, ...]:
        from .workdir import THROWAWAY

        return THROWAWAY

    def workdir_removals(self, workdir: WorkDir) -> list[tuple[Path, str]]:
        from .workdir import removals

        return removals(workdir)

    def parse_version(
        self, r: Any, keys: Mapping[str, yaml.Node], where: str
    ) -> object:
        from .plan import parse_version

        return parse_version(r, keys, where)

    def reads(self, data: object) -> tuple[str, ...]:
        from .plan import VersionPlan

        assert isinstance(data, VersionPlan)
        test = data.test
        files = [test.mutations_file]
        if test.faults is not None:
            files.append(test.faults.scenarios_file)
        return tuple(f for f in files if f)

    def add_options(self, parser: argparse.ArgumentParser, command: str) -> None:
        from .lab import add_options

        add_options(parser, command)

    def choose(
        self, args: argparse.Namespace, command: str
    ) -> tuple[list[str], dict[str, object]]:
        from .lab import choose

        return choose(args, command)

    def prover(self, run: Pipeline) -> Prover:
        from .lab import Prover

        return Prover(run)

    def bench(
        self, request: Request, workdir: WorkDir, *, cold: bool, reproduce: bool
    ) -> dict[str, object]:
        from .bench import Plan, run

        options = request.lab
        plan = Plan(
            cycles=int(str(options["cycles"])),
            delay_ms=int(str(options["delay_ms"])),
            cold=cold,
            reproduce=reproduce,
            devices=frozenset(str(d) for d in options["devices"]),  # type: ignore[attr-defined]
            repeat=int(str(options["repeat"])),
            kernel=str(options["kernel"]) if options.get("kernel") else None,
            counts=options.get("counts"),  # type: ignore[arg-type]
            multifd=bool(options.get("multifd")),
        )
        return dict(run(request, workdir, plan).values)


LAB = VfioMigrationLab()
