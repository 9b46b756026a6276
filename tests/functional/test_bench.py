"""`qseries bench` on a series with no lab, on the real base: the check
and bisect figures of the generic bench.

It builds QEMU incrementally in the base's build dir (about 20 s when
that build dir is built), so it is skipped when the build dir is not
built yet: it never starts a cold QEMU build.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ..conftest import REPO, RunCli

pytestmark = pytest.mark.qemu


@pytest.fixture
def yank_doc(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "series" / "yank-doc", tmp_path / "yank-doc")
    return tmp_path / "yank-doc" / "series.yaml"


def test_bench_of_a_series_with_no_lab(
    run_cli: RunCli, real_workdir: Path, yank_doc: Path, tmp_path: Path
) -> None:
    source = run_cli(
        "--series-file", str(yank_doc), "source", "--json", workdir=real_workdir
    )
    assert source.returncode == 0, source.stderr
    root = Path(json.loads(source.stdout)["root"])
    builddir = real_workdir / "build" / root.name
    for need in (builddir / "build.ninja", builddir / "qemu-system-x86_64"):
        if not need.is_file():
            pytest.skip(f"{need} is not there: build {root.name} with qseries first")

    out = tmp_path / "bench.json"
    ran = run_cli(
        "--series-file",
        str(yank_doc),
        "bench",
        "--json-file",
        str(out),
        workdir=real_workdir,
    )
    assert ran.returncode == 0, ran.stderr
    figures = json.loads(out.read_text())
    assert figures["series"] == "v1"
    assert figures["patches"] == 1
    assert figures["check_passed"] == "True"
    # One patch: its check is the whole check, and the ratio is 1.
    assert figures["check_s"] > 0
    assert figures["check_k1_per_patch_s"] == figures["check_per_patch_s"]
    assert figures["check_per_patch_ratio"] == 1.0
    # From the base built, the patch to qapi/yank.json gives ninja work.
    assert figures["bisect_passed"] == "True"
    assert figures["bisect_k1_ninja_steps"] >= 1
    assert figures["bisect_per_patch_s"] > 0
    assert figures["bisect_ninja_steps_per_patch"] == figures["bisect_k1_ninja_steps"]
    # Every figure is printed too.
    for key in ("check_per_patch_s", "bisect_per_patch_s", "check_per_patch_ratio"):
        assert key in ran.stdout
