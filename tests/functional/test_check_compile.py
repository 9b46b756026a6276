"""check's "compile": the C files of a series built with the base's ninja."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ..conftest import REPO, RunCli, copy_series, git

C_PATCH = "v1-0002-vfio-migration-Emit-VFIO_MIGRATION_PREPARE-before.patch"
BROKEN = "vfio_migration_send_event(vbasedev, new_state, true)"
FROM = "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"


def v1(args: tuple[str, ...]) -> tuple[str, ...]:
    """These tests check v1 unless told which version."""
    return args if "--series" in args or "--mbox" in args else ("--series", "v1", *args)


def check(
    run_cli: RunCli, workdir: Path | None, *args: str, series: Path | None = None
) -> tuple[int, dict[str, dict]]:  # type: ignore[type-arg]
    first = ["--series-file", str(series)] if series else []
    proc = run_cli(*first, "check", "--json", *v1(args), workdir=workdir)
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    return proc.returncode, {r["name"]: r for r in data["results"]}


def series_with_templates(tmp_path: Path) -> Path:
    """series.yaml and every template it renders, copied to edit them."""
    return copy_series(tmp_path / "series")


def new_line_of(patch: Path, file: str, text: str) -> int:
    """The line of the patched file where the patch's added line holding
    text ends up, counted from the hunk headers."""
    current, line = "", 0
    for row in patch.read_text().splitlines():
        if row.startswith("+++ "):
            current = row.removeprefix("+++ b/")
        elif m := re.match(r"@@ -\d+(?:,\d+)? \+(\d+)", row):
            line = int(m[1])
        elif current == file and row[:1] in (" ", "+"):
            if row.startswith("+") and text in row:
                return line
            line += 1
    raise AssertionError(f"{text!r} is not added to {file} by {patch.name}")


def test_mini_tree_without_configure_skips_compile(
    run_cli: RunCli, mini_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = run_cli(
        "generate", "--series", "v1", "--tree", str(mini_tree), "--output", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    _, results = check(run_cli, None, "--tree", str(mini_tree), "--output", str(out))
    assert results["apply"]["status"] == "pass"
    assert results["compile"]["status"] == "skip"
    assert "has no configure script" in results["compile"]["detail"]


@pytest.mark.qemu
def test_template_rendering_invalid_c_fails_compile(
    run_cli: RunCli, real_workdir: Path, tmp_path: Path
) -> None:
    series = series_with_templates(tmp_path)
    template = series.parent / "hw" / "vfio" / "migration-v1.c.j2"
    text = template.read_text()
    good = "vfio_migration_send_event(vbasedev, {{ new_state }}, true);"
    assert good in text
    template.write_text(text.replace(good, good.removesuffix(";")))
    out = tmp_path / "out"
    proc = run_cli(
        "--series-file", str(series), "generate", "--series", "v1",
        "--output", str(out),
        workdir=real_workdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    line = new_line_of(out / "v1" / C_PATCH, "hw/vfio/migration.c", BROKEN)

    code, results = check(run_cli, real_workdir, "--output", str(out), series=series)
    assert code == 1
    compile_ = results.pop("compile")
    assert compile_["status"] == "fail", compile_
    assert compile_["detail"] == "hw/vfio/migration.c does not compile"
    first = compile_["items"][0]
    assert first.startswith(f"hw/vfio/migration.c:{line}: error: expected ';'"), (
        compile_
    )
    assert compile_["items"][-1].startswith("the whole log is ")
    assert {n: r["status"] for n, r in results.items()} == dict.fromkeys(
        results, "pass"
    )


@pytest.mark.qemu
def test_c_file_outside_the_configuration_is_named(
    run_cli: RunCli, real_workdir: Path, tmp_path: Path
) -> None:
    source = run_cli("source", "--json", workdir=real_workdir)
    assert source.returncode == 0, source.stderr
    root = Path(json.loads(source.stdout)["root"])
    # The series itself, so that the build files stay as the other checks
    # leave them (no meson regeneration), then a patch to an Arm-only file.
    tail = git(root, "show", "HEAD:hw/arm/virt.c").splitlines()[-3:]
    count = len(git(root, "show", "HEAD:hw/arm/virt.c").splitlines())
    extra = "\n".join(
        [
            "From: qseries developers <qseries-devel@example.org>",
            "Subject: [PATCH v1 4/4] hw/arm/virt: Add a note",
            "",
            "Signed-off-by: qseries developers <qseries-devel@example.org>",
            "---",
            "diff --git a/hw/arm/virt.c b/hw/arm/virt.c",
            "--- a/hw/arm/virt.c",
            "+++ b/hw/arm/virt.c",
            f"@@ -{count - 2},3 +{count - 2},4 @@",
            *(f" {line}" for line in tail),
            "+/* An Arm board: not in x86_64-softmmu */",
            "",
        ]
    )
    patches = sorted((REPO / "patches" / "v1").glob("v1-000[1-9]-*.patch"))
    mbox = tmp_path / "series.mbox"
    mbox.write_text("".join(p.read_text() for p in patches) + FROM + extra)
    _, results = check(run_cli, real_workdir, "--mbox", str(mbox))
    assert results["apply"]["detail"].startswith("4 patch(es) applied"), results
    compile_ = results["compile"]
    assert compile_["status"] == "pass", compile_
    assert compile_["detail"].startswith("hw/vfio/migration.c, tests/qtest/")
    assert compile_["items"] == ["hw/arm/virt.c: not compiled in this configuration"]
