"""A fourth series, written in a temporary directory as data only (a
series.yaml and a template, no Python and no lab), carried through
generate and check on the real QEMU base; and the same series with its
QAPI documentation broken, which check must refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import RunCli

pytestmark = pytest.mark.qemu

SERIES = """\
# A series of no lab, in data only: a QAPI event and a C comment.
schema: 2
versions:
  v1:
    author: "A U Thor <author@example.org>"
    date: "2026-12-01T09:00:00+00:00"
    base: ">=10.2, <11"
    target: "10.2"
    cover:
      subject: "monitor: Document quit, add a test event"
      body: |
        A small series in data only, carried by the generic kinds.
    patches:
      - subject: "qapi/misc: Add X_TEST_NOTICE event"
        generator: qapi
        with:
          file: qapi/misc.json
          add: definitions
          template: qapi/notice.json.j2
          after: query-name
        body: |
          Add an event, documented, for the test of the qapi kind.
      - subject: "monitor: Say why quit powers off"
        changes:
          - kind: c-edit
            file: monitor/qmp-cmds.c
            function: qmp_quit
            before: "shutdown_action = SHUTDOWN_ACTION_POWEROFF;"
            code: "    /* A quit ends the guest as a power off would. */\\n"
        body: |
          Say in qmp_quit() what quitting does.
"""

TEMPLATE = """\
##
# @X_TEST_NOTICE:
#
# Emitted by no code yet: an event of a series written as data only.
#
# @reason: why the notice is sent
#
# Since: {{ since }}
##
{ 'event': 'X_TEST_NOTICE',
  'data': { 'reason': 'str' } }
"""


def write_series(root: Path, template: str = TEMPLATE) -> Path:
    (root / "qapi").mkdir(parents=True)
    (root / "qapi" / "notice.json.j2").write_text(template)
    (root / "series.yaml").write_text(SERIES)
    return root / "series.yaml"


def carry(
    run_cli: RunCli, workdir: Path, series: Path, out: Path
) -> tuple[int, dict[str, dict]]:  # type: ignore[type-arg]
    base = ("--series", "v1", "--base-version", "10.2.2", "--output", str(out))
    made = run_cli("--series-file", str(series), "generate", *base, workdir=workdir)
    assert made.returncode == 0, made.stderr
    proc = run_cli(
        "--series-file", str(series), "check", "--json", *base, workdir=workdir
    )
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    return proc.returncode, {r["name"]: r for r in data["results"]}


def test_a_series_in_data_only_generates_and_checks(
    run_cli: RunCli, real_workdir: Path, tmp_path: Path
) -> None:
    series = write_series(tmp_path / "series")
    code, results = carry(run_cli, real_workdir, series, tmp_path / "out")
    failed = {n: r for n, r in results.items() if r["status"] != "pass"}
    assert code == 0 and not failed, failed
    for name in ("apply", "qapi", "checkpatch", "compile", "fresh", "maintainers"):
        assert results[name]["status"] == "pass", name
    mails = sorted(p.name for p in (tmp_path / "out" / "v1").iterdir())
    assert mails == [
        "v1-0000-cover-letter.patch",
        "v1-0001-qapi-misc-Add-X_TEST_NOTICE-event.patch",
        "v1-0002-monitor-Say-why-quit-powers-off.patch",
    ]
    qapi = (tmp_path / "out" / "v1" / mails[1]).read_text()
    assert "+# Since: 11.0\n" in qapi and "+{ 'event': 'X_TEST_NOTICE',\n" in qapi


def test_its_broken_documentation_is_refused_by_check(
    run_cli: RunCli, real_workdir: Path, tmp_path: Path
) -> None:
    # QEMU's QAPI parser wants every member documented: the generator
    # places the event all the same, and check says what is wrong.
    broken = TEMPLATE.replace("# @reason: why the notice is sent\n#\n", "")
    series = write_series(tmp_path / "series", broken)
    code, results = carry(run_cli, real_workdir, series, tmp_path / "out")
    assert code == 1
    assert results["qapi"]["status"] == "fail", results["qapi"]
    assert "reason" in json.dumps(results["qapi"]), results["qapi"]
