"""The declared stages (pipeline/graph.py) and every command as some of
them (pipeline/commands.py): what each command line runs, in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qseries import cli
from qseries.core.results import FAIL, PASS, Result
from qseries.ground.workdir import WorkDir
from qseries.pipeline import commands, graph, stages, views
from qseries.pipeline.graph import Graph, GraphError, Stage
from qseries.qemu.source import SourceSpec

from ..conftest import REPO

YANK = REPO / "series" / "yank-doc"


def planned(*argv: str) -> list[str]:
    """The stage names `qseries --plan ARGV` prints, in order."""
    args = cli.build_parser().parse_args(list(argv))
    if args.series_dir is not None:
        args.series_file = args.series_dir / args.series_file
    shown = commands.plan(args.request(args))
    data = json.loads(shown.json_text())
    assert isinstance(data, dict)
    return [s["name"] for s in data["stages"]]


def test_a_stage_needing_an_undeclared_one_is_refused() -> None:
    with pytest.raises(GraphError, match="needs undeclared nowhere"):
        Graph([Stage("a", "a", ("nowhere",))])


def test_a_stage_declared_before_what_it_needs_is_refused() -> None:
    with pytest.raises(GraphError, match="declared before b"):
        Graph([Stage("a", "a", ("b",)), Stage("b", "b")])


def test_a_stage_declared_twice_is_refused() -> None:
    with pytest.raises(GraphError, match="declared twice"):
        Graph([Stage("a", "a"), Stage("a", "again")])


def test_order_is_the_targets_and_what_they_need_in_running_order() -> None:
    g = Graph(
        [
            Stage("a", "a"),
            Stage("b", "b", ("a",)),
            Stage("c", "c"),
            Stage("d", "d", ("b", "c")),
        ]
    )
    assert [s.name for s in g.order({"d"})] == ["a", "b", "c", "d"]
    assert [s.name for s in g.order({"b"})] == ["a", "b"]
    with pytest.raises(GraphError, match="no stage 'e'"):
        g.order({"e"})


def test_a_labs_stages_run_right_after_what_they_need() -> None:
    g = Graph([Stage("a", "a"), Stage("b", "b", ("a",)), Stage("c", "c", ("b",))])
    lab = g.with_lab([Stage("x", "x", ("a",), "lab"), Stage("y", "y", ("a",), "lab")])
    assert list(lab.stages) == ["a", "x", "y", "b", "c"]


def test_execute_runs_each_step_once_in_order_and_leaves_the_labs_to_it() -> None:
    ran: list[str] = []
    order = graph.GENERIC.with_lab([Stage("lab-only", "x", ("test",), "lab")]).order(
        {"test", "lab-only", graph.REPORT}
    )
    steps = {s.name: (lambda n=s.name: ran.append(n)) for s in order if not s.lab}
    graph.execute(order, steps)
    assert ran == ["series", "source", "mails", "test", "report"]


def test_once_stopped_only_the_report_and_bound_run() -> None:
    ran: list[str] = []
    order = graph.GENERIC.order({"check", "test", graph.REPORT, "bound"})
    steps = {s.name: (lambda n=s.name: ran.append(n)) for s in order}
    graph.execute(order, steps, stopped=lambda: "check" in ran)
    assert ran == ["series", "source", "mails", "check", "report", "bound"]


def test_a_stage_without_a_step_is_an_error_not_a_silent_skip() -> None:
    order = graph.GENERIC.order({"source"})
    with pytest.raises(GraphError, match="nothing runs stage 'source'"):
        graph.execute(order, {"series": lambda: None})


def test_every_generic_stage_has_a_step(tmp_path: Path) -> None:
    """A stage is run by the Pipeline itself or by the command named
    after it: none is declared and left without code."""
    request = stages.Request(series_file=YANK / "series.yaml", spec=SourceSpec())
    run = stages.Pipeline(request, WorkDir(tmp_path / "work"))
    assert set(graph.GENERIC.stages) == set(commands.OWN_STAGE.values()) | set(
        run.steps()
    )


def test_every_command_of_the_command_line_runs_through_the_commands() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = set()
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        inner = [a for a in p._actions if a.dest == "ci_target"]
        if inner:
            names |= {f"{name} {t}" for t in inner[0].choices}
        else:
            names.add(name)
    assert names == set(commands.COMMANDS)


def test_what_each_command_line_runs() -> None:
    assert planned("check") == ["series", "source", "mails", "check"]
    assert planned("send") == ["series", "mails", "send"]
    assert planned("generate") == ["series", "source", "generate"]
    assert planned("diff", "v1", "v2") == ["series", "source", "range-diff"]
    assert planned("trailers", "--mbox", "x") == ["series", "trailers"]
    assert planned("clean") == ["clean"]
    assert planned("ci", "gitlab", "--stdout") == ["series", "ci-gitlab"]
    assert planned("build", "--what", "base") == ["series", "source", "build"]
    assert planned("-C", str(YANK), "test") == [
        "series",
        "source",
        "mails",
        "bisect",
        "test",
    ]
    assert planned("-C", str(YANK), "test", "--control") == [
        "series",
        "source",
        "mails",
        "control",
    ]
    assert planned("-C", str(YANK), "test", "--qemu", "/bin/true") == [
        "series",
        "source",
        "mails",
        "test",
    ]
    assert planned("-C", str(YANK), "reproduce", "--no-control", "--no-bisect") == [
        "series",
        "source",
        "mails",
        "check",
        "test",
        "report",
        "bound",
    ]


def test_a_labs_stages_are_in_the_plan_of_its_series_only() -> None:
    vfio = planned("reproduce", "--no-faults")
    assert vfio[vfio.index("test") + 1] == "mutations"
    assert "faults" not in vfio
    assert vfio[vfio.index("report") + 1] == "timeline"
    assert "mutations" not in planned("-C", str(YANK), "reproduce")


def test_the_plan_as_text_names_the_lab_and_the_stage_it_runs_within() -> None:
    args = cli.build_parser().parse_args(["test"])
    text = commands.plan(args.request(args)).text()
    assert text.splitlines()[0] == "qseries test runs:"
    (line,) = [x for x in text.splitlines() if x.strip().startswith("mutations")]
    assert line.endswith("[the vfio-migration lab, within test]")


def test_plan_prints_and_runs_nothing(tmp_path: Path) -> None:
    """--plan reads the series, never the work dir: none is made."""
    work = tmp_path / "work"
    code = cli.main(["--workdir", str(work), "--plan", "-C", str(YANK), "check"])
    assert code == 0
    assert not work.exists()


def test_a_checks_view_exits_1_on_a_failure_and_renders_both_ways() -> None:
    ok = views.Checks([Result("apply", PASS, "applies")])
    bad = views.Checks([Result("apply", PASS, "x"), Result("checkpatch", FAIL, "y")])
    assert ok.exit_code == 0 and bad.exit_code == 1
    assert json.loads(bad.json_text())["passed"] is False
    assert "checkpatch" in bad.text()


def test_a_request_names_a_stage_no_graph_declares() -> None:
    request = stages.Request(
        series_file=YANK / "series.yaml",
        spec=SourceSpec(),
        stages=frozenset({"no-such-stage"}),
    )
    with pytest.raises(ValueError, match="unknown stages"):
        stages.Pipeline(request, WorkDir(YANK / "never-made"))


def test_diff_refuses_an_unknown_version_before_fetching_a_base(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    code = cli.main(["--workdir", str(work), "-C", str(YANK), "diff", "v9", "v1"])
    assert code == 2
    assert not (work / "trees").exists() and not (work / "debian").exists()


def test_reproduce_json_says_the_lines_after_the_report_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    view = views.Reproduced(["table"], '{"passed": true}\n', True, ["work dir: 1 GiB"])
    assert view.text().splitlines()[-1] == "work dir: 1 GiB"
    assert view.json_text() == '{"passed": true}'
    assert "work dir: 1 GiB" in capsys.readouterr().err
