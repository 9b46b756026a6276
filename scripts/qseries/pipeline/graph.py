"""The stages of qseries, declared as a graph.

Every command is a set of target stages; what it runs is those stages
and every stage they need, in an order where each comes after what it
needs (`Graph.order`).  `qseries --plan COMMAND` prints that order and
runs nothing.  A lab declares its stages here too: they run within the
generic stage they need, by the lab's own code (its Prover), and are
asked for by name like the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One step a command can run, and the steps it needs first."""

    name: str
    summary: str
    needs: tuple[str, ...] = ()
    # The lab that declares the stage (None: a generic one); a lab's
    # stage runs within the stage it needs, by the lab's code.
    lab: str | None = None


class GraphError(ValueError):
    """A graph that names a stage nobody declared, or goes round."""


class Graph:
    """Stages by name, each after those it needs."""

    def __init__(self, stages: Iterable[Stage]):
        self.stages: dict[str, Stage] = {}
        for stage in stages:
            if stage.name in self.stages:
                raise GraphError(f"stage '{stage.name}' is declared twice")
            self.stages[stage.name] = stage
        for stage in self.stages.values():
            unknown = [n for n in stage.needs if n not in self.stages]
            if unknown:
                raise GraphError(
                    f"stage '{stage.name}' needs undeclared {', '.join(unknown)}"
                )
        # Declaration order is the order stages run in: each must come
        # after what it needs, so that the order is plain to read.
        seen: set[str] = set()
        for stage in self.stages.values():
            later = [n for n in stage.needs if n not in seen]
            if later:
                raise GraphError(
                    f"stage '{stage.name}' is declared before {', '.join(later)}, "
                    "which it needs"
                )
            seen.add(stage.name)

    def __contains__(self, name: object) -> bool:
        return name in self.stages

    def with_lab(self, stages: Sequence[Stage]) -> Graph:
        """This graph and a lab's stages, each placed right after the
        last stage it needs (so that a plan reads in running order)."""
        placed = list(self.stages.values())
        for stage in stages:
            names = [s.name for s in placed]
            at = max((names.index(n) for n in stage.needs if n in names), default=-1)
            at += 1
            while at < len(placed) and placed[at].lab is not None:
                at += 1  # after the lab's stages placed there before
            placed.insert(at, stage)
        return Graph(placed)

    def closure(self, targets: Iterable[str]) -> set[str]:
        """The targets and every stage they need, transitively."""
        wanted: set[str] = set()
        todo = list(targets)
        while todo:
            name = todo.pop()
            if name not in self.stages:
                raise GraphError(f"no stage '{name}'")
            if name not in wanted:
                wanted.add(name)
                todo.extend(self.stages[name].needs)
        return wanted

    def order(self, targets: Iterable[str]) -> list[Stage]:
        """What running targets runs, each stage after what it needs."""
        wanted = self.closure(targets)
        return [s for s in self.stages.values() if s.name in wanted]


# The stage names the pipeline's code refers to.
SERIES = "series"
SOURCE = "source"
MAILS = "mails"
CHECK = "check"
BISECT = "bisect"
BUILD = "build"
CONTROL = "control"
TEST = "test"
REPORT = "report"

# The generic stages, in the order they run.
GENERIC = Graph(
    [
        Stage(SERIES, "read series.yaml and the version asked for"),
        Stage(SOURCE, "get the version's QEMU base tree", (SERIES,)),
        Stage("generate", "write patches/vN from the series", (SOURCE,)),
        Stage("range-diff", "git range-diff of two versions", (SOURCE,)),
        Stage("export", "the version as commits on a new branch", (SOURCE,)),
        Stage("trailers", "copy review trailers from a thread (b4)", (SERIES,)),
        Stage(MAILS, "read patches/vN, or the mailed series (b4)", (SERIES,)),
        Stage("send", "git send-email of the mails", (MAILS,)),
        Stage(
            CHECK,
            "apply, checkpatch, QAPI, get_maintainer, compile, per patch",
            (SOURCE, MAILS),
        ),
        Stage(BISECT, "build after each patch but the last", (SOURCE, MAILS)),
        # The bare base needs no mails: build reads them for the others.
        Stage(BUILD, "build the series, its control or the base", (SOURCE,)),
        Stage(
            CONTROL,
            "build the base with only the test patches; the tests must fail",
            (SOURCE, MAILS),
        ),
        Stage(
            TEST,
            "build the series; its lab's proof, or QEMU's tests it touches",
            (SOURCE, MAILS),
        ),
        Stage(REPORT, "write JUnit, JSON and markdown of what ran", (SOURCE,)),
        Stage("bound", "remove what the work dir keeps of older bases", (REPORT,)),
        Stage("matrix", "reproduce on every base of the version", (SERIES,)),
        Stage("bench", "measure check and bisect per patch, and the lab's", (SERIES,)),
        Stage("ci-gitlab", "render the GitLab CI pipeline of the series", (SERIES,)),
        Stage("clean", "remove what the work dir keeps of unused bases"),
        Stage("import", "a series folder from a branch or a mailed thread"),
        Stage("init", "a commented series.yaml to start a series by hand"),
        # b4 review's check command: it imports the series b4 gives and
        # runs generate, check, control, test and report on it.
        Stage("b4-check", "import what b4 review gives; check it, per patch or all"),
    ]
)


# Stages that run even once an earlier one stopped the run (the series
# is already in the base, or does not apply): what ran is reported.
ALWAYS = frozenset({REPORT, "bound"})


def execute(
    order: Sequence[Stage],
    steps: Mapping[str, Callable[[], object]],
    stopped: Callable[[], bool] = lambda: False,
    starting: Callable[[str], None] = lambda name: None,
) -> None:
    """Run the stages of order by their steps.  A lab's stage is run by
    the lab within the stage it needs; once stopped() says so, only the
    stages in ALWAYS run."""
    for stage in order:
        if stage.lab is not None:
            continue
        if stopped() and stage.name not in ALWAYS:
            continue
        step = steps.get(stage.name)
        if step is None:
            raise GraphError(f"nothing runs stage '{stage.name}' here")
        starting(stage.name)
        step()
