"""What series.yaml names, held to where it may point: dates git can
record, paths inside the QEMU tree, files inside the series' folder
(symlinks included), and the templates and cache keys that read them."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from qseries.core import inputs, series
from qseries.core.generators import specs
from qseries.core.templates import Templates
from qseries.ground.errors import SeriesFileError, TemplateError

from ..conftest import GIT_ENV
from .test_series import GOOD, write

NAMES = specs()


def load(tmp_path: Path, old: str, new: str) -> series.Series:
    assert old in GOOD
    (tmp_path / "t.j2").write_text("{{ event }}\n")
    return series.load(write(tmp_path, GOOD.replace(old, new, 1)), NAMES)


def refused(tmp_path: Path, old: str, new: str) -> str:
    with pytest.raises(SeriesFileError) as info:
        load(tmp_path, old, new)
    text = str(info.value)
    assert "\n" not in text
    return text


DATE = "2026-01-02T03:04:05+00:00"
ACCEPTED = [
    "1970-01-01T00:00:00+00:00",
    "1970-01-01T01:00:00+01:00",  # the epoch, written east of UTC
    "2038-01-19T03:14:08+00:00",  # past 32 bits
    "2099-12-31T23:59:59+00:00",
    "2099-12-31T23:59:59-14:00",  # 2100 in UTC, 2099 as written
]
REFUSED = [
    "0001-01-01T00:00:00+00:00",  # git would record 2001
    "1969-12-31T23:59:59+00:00",
    "1970-01-01T00:59:59+01:00",  # before the epoch: git wraps it
    "2100-01-01T00:00:00+00:00",
    "2100-01-01T00:00:00+01:00",  # 2099 in UTC, 2100 as written
    "9999-12-31T00:00:00+00:00",
]


def commit_date(tmp_path: Path, when: str) -> str | None:
    """The committer time git records for when, None if git refuses it."""
    repo = tmp_path / "git"
    if not repo.exists():
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
    env = {**os.environ, **GIT_ENV, "GIT_COMMITTER_DATE": when}
    tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # the empty tree
    made = subprocess.run(
        ["git", "-C", str(repo), "commit-tree", tree, "-m", "x"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        return None
    body = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "commit", made.stdout.strip()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    committer = next(ln for ln in body.splitlines() if ln.startswith("committer "))
    return committer.rsplit(" ", 2)[1]


@pytest.mark.parametrize("when", ACCEPTED)
def test_an_accepted_date_is_the_one_git_records(tmp_path: Path, when: str) -> None:
    version = load(tmp_path, DATE, when).version("v1")
    assert version.date == datetime.fromisoformat(when)
    assert commit_date(tmp_path, when) == str(int(version.date.timestamp()))


@pytest.mark.parametrize("when", REFUSED)
def test_a_date_git_cannot_record_is_refused_at_its_line(
    tmp_path: Path, when: str
) -> None:
    text = refused(tmp_path, DATE, when)
    assert text.startswith(f"{tmp_path / 'series.yaml'}:5: versions.v1.date: ")
    assert f"'{when}' is outside the dates git can record" in text
    # What git makes of it: an error, or another time than written.
    recorded = commit_date(tmp_path, when)
    assert recorded != str(int(datetime.fromisoformat(when).timestamp()))


WITH = "with: {file: q.json, add: event-like, event: E, like: F, template: t.j2}"
QTEST = (
    WITH,
    "with: {qtest: q-test, condition: c, helper: h.c, helper-file: %s, "
    "helper-module: h, meson-template: t.j2}",
)


@pytest.mark.parametrize(
    "value", ["../x.c", "/etc/passwd", "a//b.c", "a/./b.c", '"a\\0b.c"', '"x\\n.c"']
)
def test_a_tree_path_outside_the_tree_is_refused(tmp_path: Path, value: str) -> None:
    (tmp_path / "tests" / "qtest").mkdir(parents=True)
    (tmp_path / "tests" / "qtest" / "q-test.c").write_text("")
    (tmp_path / "h.c").write_text("")
    old = 'generator: qapi\n        body: "Body."\n        with'
    new = 'generator: qtest\n        body: "Body."\n        with'
    text = GOOD.replace(old, new, 1).replace(QTEST[0], QTEST[1] % value, 1)
    path = write(tmp_path, text)
    with pytest.raises(SeriesFileError) as info:
        series.load(path, NAMES)
    message = str(info.value)
    assert message.startswith(
        f"{path}:13: versions.v1.patches[0].with.helper-file: "
    ), message
    assert "is not a path inside the QEMU tree" in message
    assert "\n" not in message
    # The same with a plain path loads.
    path.write_text(text.replace(value, "tests/qtest/h.c"))
    series.load(path, NAMES)


@pytest.mark.parametrize("name", ["../../etc/x", "a/b", "x.c", ".hidden", "a\\0"])
def test_a_qtest_name_is_a_name(tmp_path: Path, name: str) -> None:
    text = refused(
        tmp_path,
        "qtest: q-test\n      preload: env",
        f'qtest: "{name}"\n      preload: env',
    )
    assert "versions.v1.test.qtest: " in text
    assert "is not a qtest name" in text


def test_a_mutation_file_outside_the_tree_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, mutations=GOOD_MUTATIONS.replace("hw/x.c", "../x.c"))
    (tmp_path / "t.j2").write_text("")
    with pytest.raises(SeriesFileError) as info:
        series.load(path, NAMES)
    assert str(info.value).startswith(f"{tmp_path / 'm.yaml'}:3: [0].file: '../x.c'")


GOOD_MUTATIONS = """\
- name: m
  what: "a break"
  file: hw/x.c
  edits:
    - {old: "a", new: "b"}
  case: /x
  reason: "assertion failed"
"""


def test_a_template_symlinked_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_text("secret\n")
    path = write(root, GOOD)
    (root / "t.j2").symlink_to(outside)
    with pytest.raises(SeriesFileError) as info:
        series.load(path, NAMES)
    text = str(info.value)
    assert text.startswith(f"{path}:13: versions.v1.patches[0].with.template: ")
    assert f"'t.j2' leads to {outside} through a symlink" in text
    # A symlink that stays inside the folder is fine.
    (root / "t.j2").unlink()
    (root / "real.j2").write_text("{{ event }}\n")
    (root / "t.j2").symlink_to("real.j2")
    series.load(path, NAMES)


def test_a_folder_symlinked_out_is_refused_for_the_mutations(tmp_path: Path) -> None:
    root = tmp_path / "s"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "m.yaml").write_text(GOOD_MUTATIONS)
    root.mkdir()
    (root / "t.j2").write_text("")
    (root / "series.yaml").write_text(
        GOOD.replace("mutations: m.yaml", "mutations: d/m.yaml")
    )
    (root / "d").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(
        SeriesFileError, match=r"versions.v1.test.mutations: 'd/m.yaml' leads to"
    ):
        series.load(root / "series.yaml", NAMES)


def test_the_loader_refuses_an_include_through_a_symlink(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret\n")
    (root / "pw.j2").symlink_to(tmp_path / "secret.txt")
    (root / "etc").symlink_to(tmp_path)
    (root / "inner.j2").write_text("inner\n")
    (root / "same.j2").symlink_to("inner.j2")
    (root / "main.j2").write_text("a\n{% include 'same.j2' %}{% include which %}\n")
    templates = Templates(root)
    assert templates.render("main.j2", which="inner.j2") == "a\ninner\ninner\n"
    for which in ("pw.j2", "etc/secret.txt"):
        with pytest.raises(TemplateError) as info:
            templates.render("main.j2", which=which)
        text = str(info.value)
        assert f"main.j2:2: includes '{which}', which leads to " in text
        assert "secret" in text and "through a symlink" in text
    with pytest.raises(TemplateError, match=r"leads to .* through a symlink"):
        templates.render("pw.j2")
    with pytest.raises(TemplateError, match=r"leads to .* through a symlink"):
        templates.read("etc/secret.txt")


def test_the_cache_key_never_reads_a_file_symlinked_out(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret\n")
    (root / "main.j2").write_text("{% include which %}\n")
    (root / "part.j2").write_text("part\n")
    (root / "leak.j2").symlink_to(tmp_path / "secret.txt")
    found = Templates(root).closure(["main.j2"])
    assert root / "part.j2" in found
    assert root / "leak.j2" not in found
    (root / "t.j2").write_text("{% include which %}\n")
    loaded = series.load(write(root, GOOD), NAMES)
    names = [name for name, _ in inputs.series_files(loaded)]
    assert "part.j2" in names and "leak.j2" not in names
    # A file made a symlink out after the series was loaded is not read.
    (root / "m.yaml").unlink()
    (root / "m.yaml").symlink_to(tmp_path / "secret.txt")
    names = [name for name, _ in inputs.series_files(loaded)]
    assert "m.yaml" not in names and "series.yaml" in names
