from __future__ import annotations

from pathlib import Path

import pytest

from qseries.core import series
from qseries.core.generators import specs
from qseries.ground.errors import SeriesFileError
from qseries.labs.vfio_migration.plan import plan_of

from ..conftest import REPO, RunCli

NAMES = specs()
QAPI = "file: q.json, add: event-like, event: E, like: F"

GOOD = """\
subject-prefix: PATCH
versions:
  v1:
    author: "A U Thor <author@example.org>"
    date: "2026-01-02T03:04:05+00:00"
    cover:
      subject: "x: Cover"
      body: "Cover text."
    patches:
      - subject: "qapi/vfio: Add it"
        generator: qapi
        body: "Body."
        with: {file: q.json, add: event-like, event: E, like: F, template: t.j2}
    wire: {completion: F, notice-event: E}
    test:
      qtest: q-test
      preload: env
      notice-pattern: "prepare"
      mutations: m.yaml
  v2:
    author: "A U Thor <author@example.org>"
    date: "2026-02-02T03:04:05+00:00"
    base: ">=10.0, <10.1"
    since: "10.2"
    changelog: ["Reworded"]
    cover:
      subject: "x: Cover"
      body: "Cover text."
    patches:
      - subject: "qapi/vfio: Add it"
        generator: qapi
        body: "Body."
        trailers: ["Reviewed-by: R <r@example.org>"]
        with: {file: q.json, add: event-like, event: E, like: F, template: t.j2}
    wire: {completion: F, notice-event: F, notice-state: s-prepare, announces: s}
    test:
      qtest: q-test
      preload: beside
      notice-pattern: "s-prepare"
      mutations: m.yaml
"""

MUTATIONS = """\
- name: m
  what: "a break"
  file: hw/x.c
  edits:
    - {old: "a", new: "b"}
  case: /x
  reason: "assertion failed"
"""


def write(tmp_path: Path, text: str, mutations: str = MUTATIONS) -> Path:
    path = tmp_path / "series.yaml"
    path.write_text(text)
    (tmp_path / "m.yaml").write_text(mutations)
    return path


def test_repository_series_loads() -> None:
    s = series.load(REPO / "series.yaml", NAMES)
    v1 = s.version("v1")
    assert v1.since == "11.0"
    assert [p.generator for p in v1.patches] == [
        "qapi",
        "vfio-migration-notice",
        "qtest",
    ]
    v2 = s.version("v2")
    assert v2.since == "11.0"
    assert plan_of(v2).wire.classify("VFIO_MIGRATION", "pre-copy-p2p-prepare") == (
        "notice",
        "pre-copy-p2p",
    )
    assert plan_of(v2).wire.classify("VFIO_MIGRATION", "stop") == ("done", "stop")
    assert plan_of(v1).wire.classify("VFIO_MIGRATION_PREPARE", "stop") == (
        "notice",
        "stop",
    )
    assert [m.name for m in plan_of(v2).test.mutations] == [
        "prepare-after-ioctl",
        "prepare-every-transition",
        "prepare-as-completion",
        "no-completion-on-recovery",
        "no-completion-on-reset",
    ]


def test_versions_since_and_defaults(tmp_path: Path) -> None:
    s = series.load(write(tmp_path, GOOD), NAMES)
    assert s.version(None).number == 2
    v1, v2 = s.version("v1"), s.version("2")
    assert str(v1.base) == series.DEFAULT_BASE_RANGE
    assert v1.since == "11.0"  # target = base's lower bound 10.2
    assert v2.since == "10.2"  # recorded override
    assert v2.patches[0].trailers == ("Reviewed-by: R <r@example.org>",)
    with pytest.raises(SeriesFileError, match="no version 'v3'"):
        s.version("v3")


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("    cover:\n", "    cover: [\n", None, "invalid YAML"),
        (
            "subject-prefix: PATCH",
            "subject-prefix: PATCH\ncolour: red",
            2,
            "unknown key 'colour'",
        ),
        (
            '        body: "Body."\n        with',
            "        with",
            10,
            "missing required key 'body'",
        ),
        (
            'date: "2026-01-02T03:04:05+00:00"',
            "date: 2026-01-02",
            5,
            "versions.v1.date: expected a string",
        ),
        (
            'date: "2026-01-02T03:04:05+00:00"',
            'date: "yesterday"',
            5,
            "is not an ISO 8601 date",
        ),
        (
            'generator: qapi\n        body: "Body."\n        with',
            'generator: sed\n        body: "Body."\n        with',
            11,
            "unknown generator 'sed'",
        ),
        (
            'author: "A U Thor <author@example.org>"\n    date: "2026-01',
            'author: "nobody"\n    date: "2026-01',
            4,
            "'Name <email>'",
        ),
        ('since: "10.2"', 'since: "ten"', 24, "versions.v2.since"),
        ('["Reviewed-by: R <r@example.org>"]', '["looks good"]', 33, "trailer"),
        ("  v2:\n", "  version2:\n", 20, "is not a version like 'v1'"),
        (
            '    patches:\n      - subject: "qapi/vfio: Add it"\n        generator: '
            'qapi\n        body: "Body."\n        with: {file: q.json, '
            "add: event-like, event: E, like: F, template: t.j2}\n",
            "    patches: []\n",
            9,
            "non-empty list",
        ),
    ],
)
def test_errors_name_file_and_line(
    tmp_path: Path, old: str, new: str, line: int | None, message: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(SeriesFileError) as info:
        series.load(path, NAMES)
    text = str(info.value)
    assert message in text
    if line is not None:
        assert text.startswith(f"{path}:{line}: "), text
    assert "\n" not in text


def test_duplicate_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD.replace("subject-prefix: PATCH", "subject-prefix: A\nsubject-prefix: B"),
    )
    with pytest.raises(SeriesFileError, match=":2: duplicate key 'subject-prefix'"):
        series.load(path, NAMES)


def test_no_code_runs_from_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "!!python/object/apply:os.system ['true']\n")
    with pytest.raises(SeriesFileError):
        series.load(path, NAMES)


def test_cli_broken_series_is_one_line_exit_2(tmp_path: Path, run_cli: RunCli) -> None:
    path = write(tmp_path, GOOD.replace("    cover:\n", "    cover: [\n"))
    proc = run_cli("--series-file", str(path), "generate")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"qseries: error: {path}:")
    assert "Traceback" not in proc.stderr


def test_cli_missing_series_file(tmp_path: Path, run_cli: RunCli) -> None:
    proc = run_cli("--series-file", str(tmp_path / "nope.yaml"), "generate")
    assert proc.returncode == 2
    assert "nope.yaml: no such file" in proc.stderr


@pytest.mark.parametrize(
    ("old", "new", "mutations", "where", "message"),
    [
        (
            f"with: {{{QAPI}, template: t.j2}}\n    wire",
            f"with: {{{QAPI}}}\n    wire",
            MUTATIONS,
            "series.yaml:13:",
            "add: event-like needs: template",
        ),
        (
            f"with: {{{QAPI}, template: t.j2}}\n    wire",
            f"with: {{{QAPI}, template: t.j2, colour: red}}\n    wire",
            MUTATIONS,
            "series.yaml:13:",
            "unknown key 'colour'",
        ),
        (
            "    wire: {completion: F, notice-event: E}\n",
            "",
            MUTATIONS,
            "series.yaml:4:",
            "versions.v1: missing required key 'wire'",
        ),
        (
            "notice-state: s-prepare, announces: s}",
            "notice-state: s-prepare}",
            MUTATIONS,
            "series.yaml:35:",
            "'notice-state' and 'announces' go together",
        ),
        (
            "      preload: env\n",
            "      preload: ld\n",
            MUTATIONS,
            "series.yaml:17:",
            "'ld' is not one of: env, beside",
        ),
        (
            '      notice-pattern: "prepare"\n',
            '      notice-pattern: "(prepare"\n',
            MUTATIONS,
            "series.yaml:18:",
            "bad pattern",
        ),
        ("", "", "", "series.yaml:19:", "cannot read m.yaml"),
        (
            '    date: "2026-01-02T03:04:05+00:00"\n',
            '    date: "2026-01-02T03:04:05+00:00"\n    message-id: "x@y"\n',
            MUTATIONS,
            "series.yaml:6:",
            "versions.v1.message-id: 'x@y' is not a Message-Id like '<id@host>'",
        ),
        (
            # A line break in the value is shown escaped: the error is one line.
            '    date: "2026-01-02T03:04:05+00:00"\n',
            '    date: "2026-01-02T03:04:05+00:00"\n'
            '    message-id: "<a@b>\\nBcc: x@y"\n',
            MUTATIONS,
            "series.yaml:6:",
            "versions.v1.message-id: '<a@b>\\nBcc: x@y' is not a Message-Id",
        ),
        (
            "",
            "",
            MUTATIONS.replace("assertion failed", "(x"),
            "m.yaml:7:",
            "bad pattern",
        ),
        (
            "",
            "",
            MUTATIONS + MUTATIONS,
            "m.yaml:8:",
            "duplicate 'm'",
        ),
        ("", "", MUTATIONS.replace("  case: /x\n", ""), "m.yaml:1:", "'case'"),
        (
            '    date: "2026-01-02T03:04:05+00:00"\n',
            '    date: "2026-01-02T03:04:05+00:00"\n    base-commit: "abc123"\n',
            MUTATIONS,
            "series.yaml:6:",
            "versions.v1.base-commit: 'abc123' is not a full commit id",
        ),
        (
            '        body: "Body."\n        with',
            '        body: "Body."\n        author: "Nobody"\n        with',
            MUTATIONS,
            "series.yaml:13:",
            "versions.v1.patches[0].author: 'Nobody' is not 'Name <email>'",
        ),
        (
            '        body: "Body."\n        with',
            '        body: "Body."\n        collected: ["looks good"]\n        with',
            MUTATIONS,
            "series.yaml:13:",
            "versions.v1.patches[0].collected[0]: 'looks good' is not a 'Tag: value'",
        ),
        (
            '        body: "Body."\n        with',
            '        body: "Body."\n        date: "1969-12-31T00:00:00+00:00"\n'
            "        with",
            MUTATIONS,
            "series.yaml:13:",
            "versions.v1.patches[0].date:",
        ),
    ],
)
def test_version_data_errors_name_file_and_line(
    tmp_path: Path, old: str, new: str, mutations: str, where: str, message: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1), mutations)
    if not mutations:
        (tmp_path / "m.yaml").unlink()
    with pytest.raises(SeriesFileError) as info:
        series.load(path, NAMES)
    text = str(info.value)
    assert message in text, text
    assert text.startswith(f"{tmp_path}/{where} "), text
