"""qseries as a user installs it: a wheel in a fresh venv, run anywhere.

The wheel is built from a copy of the checkout, installed (not
editable) into a venv of its own, and the copy's scripts/ removed: the
installed qseries then generates and checks every series of the
repository from a directory that has nothing to do with either.  What
it reads of its own (the devices file, the CI template, the fake's
sources, the lab's scenarios) must come from the installed package.

The venv gets qseries' dependencies from the project's venv (a .pth
line naming its site-packages), not from PyPI: installing them afresh
would cost minutes and the network on every `make check`, and proves
nothing about qseries.  Only the wheel's build backend (setuptools, in
pip's isolated build) and meson (which QEMU's configure must find in
the venv itself) may come from pip's cache or PyPI.  The checks
configure the shared build dir with this venv's Python, so the next
build there configures it again (with ccache, about a minute).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO

pytestmark = pytest.mark.qemu

# Not part of a checkout as a user clones it.
NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".work",
    "build",
    "__pycache__",
    "*.egg-info",
    ".*_cache",
    ".hypothesis",
)
# Data files qseries reads through importlib.resources, by installed path.
DATA = (
    "qseries/qemu/data/qseries-x86_64.mak",
    "qseries/pipeline/data/gitlab-ci.yml.j2",
    "qseries/labs/vfio_migration/fakevfio/fakevfio.c",
    "qseries/labs/vfio_migration/fakevfio/meson.build",
    "qseries/labs/vfio_migration/devices.mak",
)
COMMAND_TIMEOUT = 900
PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
WHERE = "import qseries; print(qseries.__file__)"


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"{argv}: {proc.stderr[-3000:]}"
    return proc.stdout


def series_files(root: Path) -> list[Path]:
    """Every series.yaml of the repository, but under hidden folders."""
    return sorted(
        p
        for p in root.rglob("series.yaml")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def installed_files(site: Path) -> set[str]:
    """The files the wheel installed, by the RECORD of its dist-info."""
    (record,) = site.glob("qseries-*.dist-info/RECORD")
    return {line.split(",", 1)[0] for line in record.read_text().splitlines()}


def install(checkout: Path, tmp_path: Path, env: dict[str, str]) -> Path:
    """A wheel of checkout, installed into a new venv; the venv."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    dist = tmp_path / "dist"
    run([*pip, "wheel", "--no-deps", "-w", str(dist), str(checkout)], tmp_path, env)
    (wheel,) = dist.glob("qseries-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = str(venv / "bin" / "python")
    site = Path(run([python, "-c", PURELIB], tmp_path, env).strip())
    (site / "qseries-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([*pip, "--python", python, "install", "--no-deps", str(wheel)], tmp_path, env)
    # QEMU's configure makes the build's pyvenv from the Python that
    # runs qseries and looks for meson in that venv's own site-packages
    # (a .pth line does not count): the one the project's venv has.
    meson = f"meson=={importlib.metadata.version('meson')}"
    install_meson = [*pip, "--python", python, "install", "--no-deps"]
    run([*install_meson, "--ignore-installed", meson], tmp_path, env)
    return venv


def patches(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.patch")}


def installed_copy(
    real_workdir: Path, tmp_path: Path
) -> tuple[Path, Path, dict[str, str], set[str]]:
    """A copy of the checkout, its wheel installed into a new venv and
    its scripts/ removed: (checkout, venv, environment, the package's
    files as the copy had them)."""
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO, checkout, ignore=NOT_COPIED)
    package = checkout / "scripts" / "qseries"
    shipped = {
        str(p.relative_to(package.parent))
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["QSERIES_WORKDIR"] = str(real_workdir)
    venv = install(checkout, tmp_path, env)
    shutil.rmtree(checkout / "scripts")
    return checkout, venv, env, shipped


def test_the_wheel_generates_and_checks_every_series_from_anywhere(
    real_workdir: Path, real_base: dict[str, object], tmp_path: Path
) -> None:
    checkout, venv, env, shipped = installed_copy(real_workdir, tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    python = str(venv / "bin" / "python")
    site = Path(run([python, "-c", PURELIB], elsewhere, env).strip())
    assert Path(run([python, "-c", WHERE], elsewhere, env).strip()).is_relative_to(site)
    installed = installed_files(site)
    assert set(DATA) <= installed
    assert shipped <= installed, sorted(shipped - installed)

    qseries = str(venv / "bin" / "qseries")
    found = series_files(checkout)
    assert checkout / "series.yaml" in found
    for series in found:
        name = str(series.parent.relative_to(checkout)).replace("/", "-")
        by_file = ["--series-file", str(series)]
        by_dir = ["-C", str(series.parent)]
        for version in yaml.safe_load(series.read_text())["versions"]:
            outs = [tmp_path / out / name for out in ("out", "out-C")]
            for args, out in zip((by_file, by_dir), outs, strict=True):
                generate = ["generate", "--series", version, "--output", str(out)]
                run([qseries, *args, *generate], elsewhere, env)
            assert patches(outs[0]), f"{series} {version}: no patches"
            assert patches(outs[0]) == patches(outs[1])
            check = [qseries, *by_file, "check", "--series", version, "--json"]
            results = json.loads(run(check, elsewhere, env))["results"]
            status = {r["name"]: r["status"] for r in results}
            assert status["apply"] == "pass", (series, version, results)
            assert "fail" not in status.values(), (series, version, results)
        pipeline = run([qseries, *by_dir, "ci", "gitlab", "--stdout"], elsewhere, env)
        assert pipeline.startswith("# Generated by `qseries ci gitlab`")
    assert not list(elsewhere.iterdir())


def test_without_labs_a_series_with_no_lab_runs_and_one_with_a_lab_says_so(
    real_workdir: Path, real_base: dict[str, object], tmp_path: Path
) -> None:
    """The installed package with labs/ deleted: a series with no lab
    generates and checks as before; the VFIO series is refused in one
    line naming the lab it needs.  (Its build and tests are not run here:
    without the lab's devices the build's configuration differs, and a
    build dir of its own would be a cold build of QEMU.)"""
    checkout, venv, env, _ = installed_copy(real_workdir, tmp_path)
    python = str(venv / "bin" / "python")
    site = Path(run([python, "-c", PURELIB], tmp_path, env).strip())
    shutil.rmtree(site / "qseries" / "labs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    qseries = str(venv / "bin" / "qseries")
    fixture = ["-C", str(checkout / "series" / "yank-doc")]
    out = tmp_path / "out"
    run([qseries, *fixture, "generate", "--output", str(out)], elsewhere, env)
    assert patches(out) == patches(checkout / "series" / "yank-doc" / "patches")
    results = json.loads(run([qseries, *fixture, "check", "--json"], elsewhere, env))
    assert results["passed"], results
    refused = subprocess.run(
        [qseries, "-C", str(checkout), "generate", "--output", str(out)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert "lab: no lab 'vfio-migration' in this installation of qseries" in line
    assert line.endswith("installed: none")
