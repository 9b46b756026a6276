"""qseries as a user installs it: a wheel in a fresh venv, run anywhere.

The wheel is built from a copy of the checkout, installed (not
editable) into a venv of its own, and the copy's scripts/ removed: the
installed qseries then generates and checks every series of the
repository from a directory that has nothing to do with either.  What
it reads of its own (the devices file, the CI template, the fake's
sources, the lab's scenarios) must come from the installed package.
With labs/ deleted from the install, a series with no lab still runs
every stage: generate, check, build and its chosen tests.

The venv gets qseries' dependencies from the project's venv (a .pth
line naming its site-packages), not from PyPI: installing them afresh
would cost minutes and the network on every `make check`, and proves
nothing about qseries.  Only the wheel's build backend (setuptools, in
pip's isolated build) and meson (which QEMU's configure must find in
the venv itself) may come from pip's cache or PyPI.  The checks
configure the shared build dir with this venv's Python, so the next
build there configures it again (with ccache, about a minute).  The two
tests share one install for that reason too: the second, with labs/
deleted, then finds the build dir configured by the same Python with
the lab's devices, more than its series needs, which serves it as it
is (qemu/build.py); an install of its own would configure and build
QEMU once more.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Installed:
    """A copy of the checkout, its wheel installed into a new venv and its
    scripts/ removed."""

    checkout: Path
    venv: Path
    env: dict[str, str]
    shipped: set[str]  # the package's files as the copy had them
    site: Path  # the venv's site-packages, where the package is
    # The build dirs' configure stamps as the checks of every series left
    # them, once they ran.
    checked: dict[Path, str] = field(default_factory=dict)

    def qseries(self) -> str:
        return str(self.venv / "bin" / "qseries")


@pytest.fixture(scope="module")
def installed_copy(
    real_workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Installed:
    """One install for the module's tests (see the module's docstring)."""
    root = tmp_path_factory.mktemp("wheel")
    checkout = root / "checkout"
    shutil.copytree(REPO, checkout, ignore=NOT_COPIED)
    package = checkout / "scripts" / "qseries"
    shipped = {
        str(p.relative_to(package.parent))
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["QSERIES_WORKDIR"] = str(real_workdir)
    venv = install(checkout, root, env)
    shutil.rmtree(checkout / "scripts")
    site = Path(run([str(venv / "bin" / "python"), "-c", PURELIB], root, env).strip())
    return Installed(checkout, venv, env, shipped, site)


def stamps(workdir: str) -> dict[Path, str]:
    """The configure stamp of each build dir of the work dir."""
    found = Path(workdir, "build").glob("*/qseries-configure.json")
    return {p.parent: p.read_text() for p in found}


def test_the_wheel_generates_and_checks_every_series_from_anywhere(
    installed_copy: Installed, real_base: dict[str, object], tmp_path: Path
) -> None:
    checkout, env = installed_copy.checkout, installed_copy.env
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    python = str(installed_copy.venv / "bin" / "python")
    site = installed_copy.site
    assert Path(run([python, "-c", WHERE], elsewhere, env).strip()).is_relative_to(site)
    installed = installed_files(site)
    assert set(DATA) <= installed
    shipped = installed_copy.shipped
    assert shipped <= installed, sorted(shipped - installed)

    qseries = installed_copy.qseries()
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
    installed_copy.checked.update(stamps(installed_copy.env["QSERIES_WORKDIR"]))


def test_without_labs_a_series_with_no_lab_runs_and_one_with_a_lab_says_so(
    installed_copy: Installed, real_base: dict[str, object], tmp_path: Path
) -> None:
    """The installed package with labs/ deleted: a series with no lab
    generates, checks, builds and passes its chosen tests as before; the
    VFIO series is refused in one line naming the lab it needs.

    After the test above, the base's build dir is configured by this
    install's Python with the lab's devices: the build uses it as it is
    (a device more than the series needs costs nothing; configuring
    without it would rebuild QEMU).  Run alone, it configures the build
    dir for this Python and builds QEMU there first: from half a minute
    to a few minutes more, as ccache holds that configuration's objects
    or not.  labs/ is moved aside and put back after, so the test above
    may run in any order."""
    labs = installed_copy.site / "qseries" / "labs"
    aside = tmp_path / "labs-aside"
    shutil.move(labs, aside)
    try:
        without_labs(installed_copy, tmp_path)
    finally:
        shutil.move(aside, labs)
    assert (labs / "__init__.py").is_file()


def without_labs(installed: Installed, tmp_path: Path) -> None:
    checkout, env, qseries = installed.checkout, installed.env, installed.qseries()
    python = f"--python={installed.venv / 'bin' / 'python'}"
    before = stamps(env["QSERIES_WORKDIR"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fixture = ["-C", str(checkout / "series" / "yank-doc")]
    out = tmp_path / "out"
    run([qseries, *fixture, "generate", "--output", str(out)], elsewhere, env)
    assert patches(out) == patches(checkout / "series" / "yank-doc" / "patches")
    results = json.loads(run([qseries, *fixture, "check", "--json"], elsewhere, env))
    assert results["passed"], results

    built = json.loads(run([qseries, *fixture, "build", "--json"], elsewhere, env))
    assert Path(built["qemu"]).is_file(), built
    builddir = Path(built["builddir"])
    stamp = json.loads((builddir / "qseries-configure.json").read_text())
    assert python in stamp["args"]
    tested = json.loads(run([qseries, *fixture, "test", "--json"], elsewhere, env))
    names = {r["name"] for r in tested["results"]}
    # The tests chosen for a qapi/ change: those of the built schema.
    schema = ("qmp-cmd-test", "qmp-test", "device-introspect-test")
    assert {f"qtest-x86_64/{name}" for name in schema} <= names, names
    for result in tested["results"]:
        assert result["status"] == "pass", result
    assert tested["passed"], tested
    if installed.checked:
        # The checks above configured it for this install, with the lab's
        # devices: the check, build and test here used it as it was.
        assert before[builddir] == installed.checked[builddir]
        assert stamps(env["QSERIES_WORKDIR"])[builddir] == before[builddir]
        assert "CONFIG_VFIO_PCI=y" in stamp["devices"]

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
