from __future__ import annotations

from pathlib import Path

import pytest

from qseries import series
from qseries.errors import SeriesFileError
from qseries.generators import GENERATORS

from ..conftest import REPO, RunCli

NAMES = set(GENERATORS)

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
        generator: qapi-vfio-prepare-event
        body: "Body."
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
        generator: qapi-vfio-prepare-event
        body: "Body."
        trailers: ["Reviewed-by: R <r@example.org>"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "series.yaml"
    path.write_text(text)
    return path


def test_repository_series_loads() -> None:
    s = series.load(REPO / "series.yaml", NAMES)
    v1 = s.version("v1")
    assert v1.since == "11.0"
    assert [p.generator for p in v1.patches] == [
        "qapi-vfio-prepare-event",
        "vfio-migration-prepare",
        "qtest-vfio-migration-prepare",
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
        ('        body: "Body."\n  v2', "  v2", 10, "missing required key 'body'"),
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
            'generator: qapi-vfio-prepare-event\n        body: "Body."\n  v2',
            'generator: sed\n        body: "Body."\n  v2',
            11,
            "unknown generator 'sed'",
        ),
        (
            'author: "A U Thor <author@example.org>"\n    date: "2026-01',
            'author: "nobody"\n    date: "2026-01',
            4,
            "'Name <email>'",
        ),
        ('since: "10.2"', 'since: "ten"', 17, "versions.v2.since"),
        ('["Reviewed-by: R <r@example.org>"]', '["looks good"]', 26, "trailer"),
        ("  v2:\n", "  version2:\n", 13, "is not a version like 'v1'"),
        (
            '    patches:\n      - subject: "qapi/vfio: Add it"\n        generator: '
            'qapi-vfio-prepare-event\n        body: "Body."\n  v2',
            "    patches: []\n  v2",
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
