"""qseries ci gitlab: the generated .gitlab-ci.yml is valid for GitLab's
schema and for what the schema cannot see, follows series.yaml, and its
check job really runs (gitlab-ci-local, shell executor)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from qseries.core import generators
from qseries.core import series as series_mod
from qseries.ground.errors import TemplateError, UsageError
from qseries.pipeline import ci

from ..conftest import GIT_ENV, REPO, RunCli, git

GITLAB_CI_LOCAL = "4.60.1"
IN_CI = os.environ.get("CI") == "true"


def load(path: Path = REPO / "series.yaml") -> series_mod.Series:
    return series_mod.load(path, generators.specs())


def parsed(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def needed(what: str) -> None:
    """A tool the test needs is missing: CI installs it, so fail there."""
    if IN_CI:
        pytest.fail(f"{what} is missing (CI=true, where it must be installed)")
    pytest.skip(f"{what} is missing")


# --- the pipeline follows series.yaml ---------------------------------------


def test_a_check_job_per_version_and_a_reproduce_job_per_base() -> None:
    series = load()
    bases = ci.default_bases(series)
    doc = parsed(ci.gitlab_yaml(series))
    jobs = ci.jobs(doc)
    assert set(bases) == {v.name for v in series.versions.values()}
    cells = [(v, b) for v, wanted in bases.items() for b in wanted]
    assert set(jobs) == {ci.check_job(v) for v in bases} | {
        ci.reproduce_job(v, b) for v, b in cells
    }
    for version, wanted in bases.items():
        check = jobs[ci.check_job(version)]
        assert check["stage"] == "check"
        assert check["script"] == [
            f".venv/bin/qseries check --series {version}"
            + (f" --base-version {b}" if b else "")
            for b in wanted
        ]
    for version, base in cells:
        job = jobs[ci.reproduce_job(version, base)]
        assert job["stage"] == "test"
        assert job["needs"] == [ci.check_job(version)]
        (command,) = job["script"]
        assert command.startswith(f".venv/bin/qseries reproduce --series {version}")
        assert ("--base-version" in command) == (base is not None)
        report = ci.report_dir(version, base)
        assert f'--report-dir "$CI_PROJECT_DIR/{report}"' in command
        artifacts = job["artifacts"]
        assert artifacts["when"] == "always"
        assert artifacts["expire_in"]
        assert artifacts["reports"]["junit"] == f"{report}/junit.xml"
        assert artifacts["paths"] == [f"{report}/"]
    template = doc[".qseries_job_template"]
    assert template["image"] == "debian:12"
    assert "make bootstrap" in template["before_script"]
    assert doc["variables"]["QSERIES_WORKDIR"] == "$CI_PROJECT_DIR/.work"
    assert template["cache"]["paths"] == [".work/"]
    assert ci.problems(doc) == []


def test_the_newest_version_also_runs_on_its_backport_base() -> None:
    series = load()
    newest = series.version(None)
    bases = ci.default_bases(series)
    old = ci.backport_base(newest)
    for version in series.versions.values():
        expected = [None, old] if version is newest and old else [None]
        assert bases[version.name] == expected
    if old is not None:
        assert newest.base.lower is not None
        assert old == newest.base.lower.feature_release()


def test_bases_come_from_series_yaml(series_copy: Path) -> None:
    text = series_copy.read_text()
    newest = load(series_copy).version(None)
    # Every version's range starting at its target: no backport job.
    text = re.sub(r'base: ">=[0-9.]+, <', 'base: ">=10.2, <', text)
    series_copy.write_text(text)
    narrowed = load(series_copy)
    assert all(b == [None] for b in ci.default_bases(narrowed).values())
    jobs = ci.jobs(parsed(ci.gitlab_yaml(narrowed)))
    assert not [j for j in jobs if "-on-" in j]
    # A range reaching back to 9.2 makes the newest a backport there.
    series_copy.write_text(text.replace('base: ">=10.2, <', 'base: ">=9.2, <'))
    wide = load(series_copy)
    assert ci.default_bases(wide)[newest.name] == [None, "9.2"]
    assert ci.reproduce_job(newest.name, "9.2") in ci.jobs(parsed(ci.gitlab_yaml(wide)))


def test_explicit_bases() -> None:
    series = load()
    newest = series.version(None).name
    doc = parsed(ci.gitlab_yaml(series, {newest: ["1:10.0.13+ds-0+deb13u1"]}))
    (check,) = [j for j in ci.jobs(doc) if j.startswith("check-")]
    assert ci.jobs(doc)[check]["script"] == [
        f".venv/bin/qseries check --series {newest} "
        "--base-version 1:10.0.13+ds-0+deb13u1"
    ]
    assert ci.problems(doc) == []


@pytest.mark.parametrize(
    ("bases", "message"),
    [
        ({"v99": [None]}, "no version 'v99'"),
        ({"NEWEST": ["10.0; rm -rf /"]}, "is not a version"),
        ({"NEWEST": []}, "no base"),
        ({"NEWEST": [None, None]}, "a base twice"),
    ],
)
def test_bad_bases_are_refused(
    bases: dict[str, list[str | None]], message: str
) -> None:
    series = load()
    newest = series.version(None).name
    bases = {newest if k == "NEWEST" else k: v for k, v in bases.items()}
    with pytest.raises(UsageError, match=re.escape(message)):
        ci.gitlab_yaml(series, bases)


# --- GitLab's schema, offline ----------------------------------------------


@functools.cache
def offline() -> tuple[str, ...]:
    """A prefix that runs a command without network ('unshare -n', as
    root), or nothing where that cannot be done."""
    if shutil.which("unshare") and os.geteuid() == 0:
        probe = subprocess.run(["unshare", "-n", "true"], check=False)
        if probe.returncode == 0:
            return ("unshare", "-n")
    return ()


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "check-jsonschema"
    if not tool.exists():
        needed("check-jsonschema (pip install check-jsonschema)")
    return subprocess.run(
        [*offline(), str(tool), "--builtin-schema", "vendor.gitlab-ci", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_pipeline_matches_gitlab_schema(tmp_path: Path) -> None:
    path = tmp_path / ".gitlab-ci.yml"
    assert ci.write_gitlab(load(), path)
    proc = check_jsonschema(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok -- validation done" in proc.stdout


def _rename_script(doc: dict[str, Any], job: str) -> None:
    doc[job]["scripts"] = doc[job].pop("script")


def _bad_when(doc: dict[str, Any], job: str) -> None:
    doc[job]["artifacts"]["when"] = "sometimes"


def _missing_need(doc: dict[str, Any], job: str) -> None:
    doc[job]["needs"] = ["check-v0"]


def _stray_report(doc: dict[str, Any], job: str) -> None:
    doc[job]["artifacts"]["reports"]["junit"] = "elsewhere/junit.xml"


def _unknown_stage(doc: dict[str, Any], job: str) -> None:
    doc[job]["stage"] = "deploy"


@pytest.mark.parametrize(
    ("breakage", "schema", "ours"),
    [
        (_rename_script, "'scripts' was unexpected", None),
        (_bad_when, "'sometimes' is not one of", None),
        (_missing_need, None, "needs 'check-v0', which is not a job"),
        (_stray_report, None, "JUnit report elsewhere/junit.xml is not an artifact"),
        (_unknown_stage, None, "stage 'deploy' is not in stages"),
    ],
)
def test_a_broken_pipeline_is_rejected(
    tmp_path: Path,
    breakage: Any,
    schema: str | None,
    ours: str | None,
) -> None:
    """What GitLab's schema catches, it catches; the rest, ci.problems()
    does."""
    doc = parsed(ci.gitlab_yaml(load()))
    job = next(j for j in ci.jobs(doc) if j.startswith("reproduce-"))
    breakage(doc, job)
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = check_jsonschema(path)
    if schema is None:
        assert proc.returncode == 0, proc.stdout
    else:
        assert proc.returncode == 1
        assert schema in proc.stdout
    found = ci.problems(doc)
    assert found == ([f"{job}: {ours}"] if ours else [])


def test_a_template_that_breaks_the_pipeline_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = (ci.TEMPLATE_DIR / ci.GITLAB_TEMPLATE).read_text()
    broken = template.replace("    - {{ cell.needs }}", "    - no-such-job")
    assert broken != template
    (tmp_path / ci.GITLAB_TEMPLATE).write_text(broken)
    monkeypatch.setattr(ci, "TEMPLATE_DIR", tmp_path)
    with pytest.raises(TemplateError, match="which is not a job"):
        ci.gitlab_yaml(load())


# --- writing the file ------------------------------------------------------


def test_write_gitlab(tmp_path: Path) -> None:
    series = load()
    path = tmp_path / "ci" / ".gitlab-ci.yml"
    assert ci.write_gitlab(series, path) is True
    assert path.read_text() == ci.gitlab_yaml(series)
    assert ci.write_gitlab(series, path) is False  # already up to date
    path.write_text("# mine\n")
    with pytest.raises(UsageError, match="differs from the generated pipeline"):
        ci.write_gitlab(series, path)
    assert path.read_text() == "# mine\n"
    assert ci.write_gitlab(series, path, force=True) is True
    assert path.read_text() == ci.gitlab_yaml(series)
    with pytest.raises(UsageError, match="is a directory"):
        ci.write_gitlab(series, tmp_path)
    assert sorted(p.name for p in path.parent.iterdir()) == [".gitlab-ci.yml"]


def test_the_command_writes_prints_and_refuses(run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yml"
    proc = run_cli("ci", "gitlab", "--output", str(path))
    assert (proc.returncode, proc.stdout) == (0, f"{path} written\n"), proc.stderr
    assert path.read_text() == ci.gitlab_yaml(load())
    proc = run_cli("ci", "gitlab", "--output", str(path))
    assert proc.stdout == f"{path} is up to date\n"
    proc = run_cli("ci", "gitlab", "--stdout")
    assert proc.stdout == path.read_text()
    path.write_text("# mine\n")
    proc = run_cli("ci", "gitlab", "--output", str(path))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"qseries: error: {path} exists and differs")
    assert len(proc.stderr.splitlines()) == 1
    assert path.read_text() == "# mine\n"


# --- a real run: gitlab-ci-local, shell executor ---------------------------


def gitlab_ci_local(tools: Path) -> Path:
    """gitlab-ci-local from npm, installed once into tools/ (or the one
    $GITLAB_CI_LOCAL names, if it is the right version)."""
    for tool in ("node", "npm", "rsync"):
        if shutil.which(tool) is None:
            needed(tool)
    given = os.environ.get("GITLAB_CI_LOCAL")
    prefix = tools / f"gitlab-ci-local-{GITLAB_CI_LOCAL}"
    binary = (
        Path(given) if given else prefix / "node_modules" / ".bin" / "gitlab-ci-local"
    )

    def version() -> str:
        proc = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        return proc.stdout.strip()

    if binary.exists() and version() == GITLAB_CI_LOCAL:
        return binary
    if given:
        pytest.fail(f"GITLAB_CI_LOCAL={given} is not gitlab-ci-local {GITLAB_CI_LOCAL}")
    prefix.mkdir(parents=True, exist_ok=True)
    # npm builds re2 (a dependency) with node-gyp when it cannot download
    # a prebuilt binary: this takes a minute.
    subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            "--no-save",
            f"gitlab-ci-local@{GITLAB_CI_LOCAL}",
        ],
        check=True,
        capture_output=True,
        timeout=1200,
    )
    assert version() == GITLAB_CI_LOCAL
    return binary


def snapshot(dest: Path) -> Path:
    """The repository as it is now (tracked and new files, not ignored
    ones) as a one-commit git repository: gitlab-ci-local wants one."""
    listed = git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in sorted(set(listed.split("\0")) - {""}):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "snapshot")
    return dest


@pytest.mark.qemu
def test_the_check_job_runs_in_gitlab_ci_local(
    tmp_path: Path, real_workdir: Path, real_base: dict[str, object]
) -> None:
    """The newest version's check job, run by gitlab-ci-local on this
    machine: `make bootstrap` in a copy of the repository, then qseries
    check on the base that real_base downloaded (its work dir is passed
    as QSERIES_WORKDIR, so the job reuses it)."""
    binary = gitlab_ci_local(real_workdir / "tools")
    repo = snapshot(tmp_path / "repo")
    series = load(repo / "series.yaml")
    newest = series.version(None).name
    # The whole pipeline must parse (gitlab-ci-local validates it and
    # its needs); the job run is the newest version on its default base.
    ci.write_gitlab(series, repo / ".gitlab-ci.yml", force=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV")
    }
    common = [str(binary), "--no-color", "--home", str(tmp_path / "home")]
    listed = subprocess.run(
        [*common, "--list"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for job in ci.jobs(parsed((repo / ".gitlab-ci.yml").read_text())):
        assert job in listed.stdout

    ci.write_gitlab(series, repo / ".gitlab-ci.yml", force=True, bases={newest: [None]})
    git(repo, "add", ".gitlab-ci.yml")
    git(repo, "commit", "-q", "-m", "the pipeline, one cell")
    job = ci.check_job(newest)
    proc = subprocess.run(
        [
            *common,
            "--force-shell-executor",
            "--shell-isolation",
            "--concurrency",
            "1",
            "--variable",
            f"QSERIES_WORKDIR={real_workdir}",
            job,
        ],
        cwd=repo,
        env={**env, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert f"{job} $ make bootstrap" in log
    assert re.search(rf"{job} > all \d+ checks passed", log), log[-4000:]
    assert re.search(rf"PASS +{job}", log), log[-2000:]
    # It ran in gitlab-ci-local's copy of the tree, with its own venv.
    assert (repo / ".gitlab-ci-local" / "builds" / job / ".venv" / "bin").is_dir()


def test_a_committed_pipeline_is_up_to_date() -> None:
    """Like patches/: a .gitlab-ci.yml in the repository is what
    `qseries ci gitlab` writes from series.yaml now."""
    path = REPO / ".gitlab-ci.yml"
    if not path.exists():
        pytest.skip("no .gitlab-ci.yml committed")
    assert path.read_text() == ci.gitlab_yaml(load()), "run: qseries ci gitlab"
