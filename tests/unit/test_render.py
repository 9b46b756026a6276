"""The renderer: the series' templates rendered by a child of qseries,
under limits of memory and CPU time, with the errors of in-process
rendering."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from qseries.core import render
from qseries.core.templates import CPU_VARIABLE, MEMORY_VARIABLE, Limits, Templates
from qseries.ground import proc
from qseries.ground.errors import TemplateError, UsageError

SMALL = Limits(memory_mib=256, cpu_seconds=1)


def folder(tmp_path: Path, text: str) -> Path:
    (tmp_path / "t.j2").write_text(text)
    return tmp_path


def test_the_child_renders_as_the_parent_would(tmp_path: Path) -> None:
    root = folder(tmp_path, "{{ event }}!\n")
    (root / "m.j2").write_text("{% macro m() %}<{{ since }}>{% endmacro %}")
    here = Templates(root)
    with render.limited(root, SMALL) as there:
        assert there.render("t.j2", event="E") == here.render("t.j2", event="E")
        assert there.macro("m.j2", "m", since="11.0") == "<11.0>"
        assert there.has_macro("m.j2", "m") and not there.has_macro("m.j2", "n")
        child = there.child.proc.pid
        assert child in proc.descendants()
    # The renderer does not outlive its context.
    assert child not in proc.descendants()


def test_a_template_error_comes_back_as_it_is(tmp_path: Path) -> None:
    root = folder(tmp_path, "line 1\n{{ nope }}\n")
    with pytest.raises(TemplateError) as here:
        Templates(root).render("t.j2")
    with render.limited(root, SMALL) as there, pytest.raises(TemplateError) as info:
        there.render("t.j2")
    assert str(info.value) == str(here.value)
    assert str(info.value).startswith(f"{root / 't.j2'}:2: template error: ")
    assert info.value.exit_code == 2


def test_memory_is_limited_and_named_at_the_line(tmp_path: Path) -> None:
    root = folder(tmp_path, "fine\n\n{{ 'a' * 3000000000 }}\n")
    with render.limited(root, SMALL) as there, pytest.raises(TemplateError) as info:
        there.render("t.j2")
    assert str(info.value) == (
        f"{root / 't.j2'}:3: rendering went over its memory limit of 256 MiB; "
        "templates may use 256 MiB of memory and 1 s of CPU time "
        f"({MEMORY_VARIABLE}, {CPU_VARIABLE})"
    )


def test_cpu_time_is_limited_and_named_at_the_line(tmp_path: Path) -> None:
    (tmp_path / "inner.j2").write_text(
        "x\n{% for i in range(100000) %}{% for j in range(100000) %}"
        "{% endfor %}{% endfor %}\n"
    )
    root = folder(
        tmp_path, "a\n{% macro m() %}{% endmacro %}{% include 'inner.j2' %}\n"
    )
    started = time.monotonic()
    with render.limited(root, SMALL) as there, pytest.raises(TemplateError) as info:
        there.has_macro("t.j2", "m")
    assert time.monotonic() - started < 10
    assert str(info.value).startswith(
        f"{tmp_path / 'inner.j2'}:2: rendering went over its CPU time limit of 1 s"
    )


def test_the_limits_come_from_the_environment() -> None:
    assert render.limits_from({}) == Limits(
        render.DEFAULT_MEMORY_MIB, render.DEFAULT_CPU_SECONDS
    )
    assert render.limits_from({MEMORY_VARIABLE: "512", CPU_VARIABLE: "3"}) == Limits(
        512, 3
    )
    for name, value in (
        (CPU_VARIABLE, "0"),
        (CPU_VARIABLE, "1.5"),
        (MEMORY_VARIABLE, "64"),
        (MEMORY_VARIABLE, "9" * 30),
    ):
        with pytest.raises(UsageError, match=f"{name}="):
            render.limits_from({name: value})


def test_the_child_runs_under_its_limits(tmp_path: Path) -> None:
    root = folder(tmp_path, "x\n")
    with render.limited(root, Limits(memory_mib=300, cpu_seconds=7)) as there:
        there.render("t.j2")  # answered: the limits are set by now
        limits = Path(f"/proc/{there.child.proc.pid}/limits").read_text()
    rows = {line[:26].strip(): line[26:].split() for line in limits.splitlines()}
    assert rows["Max address space"][:2] == [str(300 << 20)] * 2
    assert rows["Max cpu time"][:2] == ["7", str(7 + render.CPU_GRACE)]


def test_a_conversation_answers_a_line_per_line() -> None:
    with proc.start_conversation(["cat"], os.environ, 5.0) as child:
        assert child.ask("one") == "one"
        assert child.ask('{"two": 2}') == '{"two": 2}'
    assert child.proc.returncode is not None


def test_a_renderer_that_does_not_answer_is_stopped_and_named(tmp_path: Path) -> None:
    root = folder(tmp_path, "x\n")
    started = time.monotonic()
    with proc.start_conversation(["sleep", "60"], os.environ, 0.5) as child:
        silent = render.LimitedTemplates(root, SMALL, child)
        with pytest.raises(TemplateError) as info:
            silent.render("t.j2")
    assert time.monotonic() - started < 10
    assert str(info.value).startswith(
        f"{root / 't.j2'}: rendering did not end within 0.5 s; templates may use"
    )
    assert child.proc.pid not in proc.descendants()
