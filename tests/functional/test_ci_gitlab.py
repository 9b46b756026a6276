"""qseries ci gitlab: the generated .gitlab-ci.yml is valid for GitLab's
schema and for what the schema cannot see, follows series.yaml, and its
check job really runs (gitlab-ci-local, shell executor)."""

from __future__ import annotations

import functools
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from qseries import cli
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


# --- a series in a subfolder of the repository -----------------------------

SUBFOLDER_SERIES = ("series/yank-doc", "series/qom-type-info")


def selected(command: str) -> Path:
    """The series file a job's qseries command line reads, as qseries'
    own parser takes it, from the project's root (GitLab's $CI_PROJECT_DIR)."""
    argv = shlex.split(command)
    assert argv[0] == ".venv/bin/qseries"
    args = cli.build_parser().parse_args(argv[1:])
    path: Path = args.series_file
    if args.series_dir is not None:
        path = args.series_dir / path
    return (REPO / path).resolve()


def scripts(doc: dict[str, Any]) -> list[str]:
    return [line for body in ci.jobs(doc).values() for line in body["script"]]


@pytest.mark.parametrize("folder", SUBFOLDER_SERIES)
def test_a_series_in_a_subfolder_is_what_its_jobs_run(
    monkeypatch: pytest.MonkeyPatch, folder: str
) -> None:
    """Its jobs name it with -C (from the repository's top, where GitLab
    runs them), and their names, template and reports carry its folder."""
    series = load(REPO / folder / "series.yaml")
    where = ci.place(series)
    label = folder.replace("/", ":")
    assert where == ci.Place(folder, "series.yaml")
    assert where.label == label
    doc = parsed(ci.gitlab_yaml(series))
    bases = ci.default_bases(series)
    cells = [(v, b) for v, wanted in bases.items() for b in wanted]
    jobs = ci.jobs(doc)
    assert set(jobs) == {f"{label}:check-{v}" for v in bases} | {
        f"{label}:{ci.reproduce_job(v, b)}" for v, b in cells
    }
    monkeypatch.chdir(REPO)  # -C is checked against the current directory
    for line in scripts(doc):
        assert line.startswith(f".venv/bin/qseries -C {folder} "), line
        assert selected(line) == (REPO / folder / "series.yaml").resolve()
    template = f".qseries_job_template:{label}"
    assert set(doc) == {"stages", "variables", template, *jobs}
    for version, base in cells:
        job = jobs[ci.reproduce_job(version, base, where)]
        plain = ci.report_dir(version, base).removeprefix("qseries-reports/")
        report = f"qseries-reports/{folder}/{plain}"
        assert report == ci.report_dir(version, base, where)
        assert job["needs"] == [ci.check_job(version, where)]
        assert job["extends"] == template
        assert f'--report-dir "$CI_PROJECT_DIR/{report}"' in job["script"][0]
        assert job["artifacts"]["paths"] == [f"{report}/"]
        assert job["artifacts"]["reports"]["junit"] == f"{report}/junit.xml"
    assert ci.problems(doc) == []


def test_the_root_series_keeps_its_plain_pipeline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    series = load()
    assert ci.place(series) == ci.Place()
    assert ci.place(series).label is None
    doc = parsed(ci.gitlab_yaml(series))
    monkeypatch.chdir(REPO)
    for line in scripts(doc):
        assert line.startswith(".venv/bin/qseries check ") or line.startswith(
            ".venv/bin/qseries reproduce "
        ), line
        assert selected(line) == (REPO / "series.yaml").resolve()


def pipelines() -> dict[str, dict[str, Any]]:
    """The root series' pipeline and each subfolder series', parsed, by
    the path each is written to in a repository that has them all."""
    out = {"qseries.gitlab-ci.yml": parsed(ci.gitlab_yaml(load()))}
    for folder in SUBFOLDER_SERIES:
        text = ci.gitlab_yaml(load(REPO / folder / "series.yaml"))
        out[f"{folder}/.gitlab-ci.yml"] = parsed(text)
    return out


def test_the_pipelines_of_several_series_do_not_clash() -> None:
    """Included side by side by the root file, the series' pipelines
    share only stages and variables, with the same values; their jobs,
    templates, cache keys and report folders are all distinct."""
    docs = list(pipelines().values())
    merged: dict[str, Any] = {}
    for doc in docs:
        for key, value in doc.items():
            if key in merged:
                assert key in ("stages", "variables"), f"{key} is in two files"
                assert merged[key] == value, key
            merged[key] = value
    assert ci.problems(merged) == []
    names = [job for doc in docs for job in ci.jobs(doc)]
    assert len(names) == len(set(names))
    # Cache keys are per job name ($CI_JOB_NAME): as distinct as they.
    for doc in docs:
        (template,) = [k for k in doc if k.startswith(".")]
        assert doc[template]["cache"]["key"] == "qseries-$CI_JOB_NAME"
    reports = [
        body["artifacts"]["paths"][0]
        for doc in docs
        for body in ci.jobs(doc).values()
        if "artifacts" in body
    ]
    for a, b in itertools.combinations(reports, 2):
        assert not a.startswith(b) and not b.startswith(a), (a, b)


def test_subfolder_pipelines_match_gitlab_schema(tmp_path: Path) -> None:
    for name, doc in pipelines().items():
        path = tmp_path / name.replace("/", "_")
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        proc = check_jsonschema(path)
        assert proc.returncode == 0, name + ": " + proc.stdout + proc.stderr


def test_a_root_file_includes_several_series(
    tmp_path: Path, real_workdir: Path
) -> None:
    """gitlab-ci-local reads a root .gitlab-ci.yml that includes the
    three series' pipelines, each where `qseries ci gitlab` writes it, and
    lists every job of each."""
    binary = gitlab_ci_local(real_workdir / "tools")
    repo = tmp_path / "repo"
    files = pipelines()
    repo.mkdir()
    assert ci.write_gitlab(load(), repo / "qseries.gitlab-ci.yml")
    for folder in SUBFOLDER_SERIES:
        series = load(REPO / folder / "series.yaml")
        assert ci.write_gitlab(series, repo / folder / ".gitlab-ci.yml")
    root = {"include": [{"local": name} for name in files]}
    (repo / ".gitlab-ci.yml").write_text(yaml.safe_dump(root, sort_keys=False))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "three series")
    listed = subprocess.run(
        [str(binary), "--no-color", "--home", str(tmp_path / "home"), "--list"],
        cwd=repo,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    # One line per job, after a header: as many jobs as the files have
    # together (a name in two files would be one job, merged).
    shown = [line.split()[0] for line in listed.stdout.splitlines()[1:] if line]
    expected = [job for doc in files.values() for job in ci.jobs(doc)]
    assert sorted(shown) == sorted(expected), listed.stdout


def test_outside_git_the_root_is_where_the_pipeline_is_written(
    tmp_path: Path,
) -> None:
    series_dir = tmp_path / "project" / "series" / "yank-doc"
    shutil.copytree(REPO / "series" / "yank-doc", series_dir)
    series = load(series_dir / "series.yaml")
    # Beside series.yaml (the default, and --stdout): the series is the root.
    assert ci.place(series) == ci.Place()
    assert ci.gitlab_yaml(series) == ci.gitlab_yaml(
        series, output=series_dir / ".gitlab-ci.yml"
    )
    # At the project's top: the jobs go down to the series.
    top = tmp_path / "project" / ".gitlab-ci.yml"
    assert ci.place(series, top) == ci.Place("series/yank-doc")
    assert ci.write_gitlab(series, top)
    assert "qseries -C series/yank-doc check" in top.read_text()
    # Elsewhere, the jobs could not reach it.
    with pytest.raises(UsageError, match=r"is not under .*, where the pipeline is"):
        ci.write_gitlab(series, tmp_path / "elsewhere" / ".gitlab-ci.yml")
    assert not (tmp_path / "elsewhere").exists()


def test_in_git_the_root_is_the_top_of_the_repository(tmp_path: Path) -> None:
    project = tmp_path / "project"
    series_dir = project / "a" / "b.c"
    shutil.copytree(REPO / "series" / "yank-doc", series_dir)
    git(project, "init", "-q", "-b", "main")
    series = load(series_dir / "series.yaml")
    for output in (None, project / ".gitlab-ci.yml", tmp_path / "out.yml"):
        assert ci.place(series, output) == ci.Place("a/b.c")
    # Another file name than series.yaml is passed, and named in the jobs.
    other = series_dir / "other.yaml"
    shutil.copy(series_dir / "series.yaml", other)
    where = ci.place(load(other))
    assert where == ci.Place("a/b.c", "other.yaml")
    doc = parsed(ci.gitlab_yaml(load(other)))
    for line in scripts(doc):
        assert line.startswith(".venv/bin/qseries -C a/b.c --series-file other.yaml ")
    assert all(job.startswith("a:b.c:other.yaml:") for job in ci.jobs(doc))
    assert ci.problems(doc) == []


@pytest.mark.parametrize("folder", ["with blank", "-dash", ".hidden", "it's"])
def test_a_folder_a_job_cannot_name_is_refused(tmp_path: Path, folder: str) -> None:
    series_dir = tmp_path / "project" / folder
    shutil.copytree(REPO / "series" / "yank-doc", series_dir)
    series = load(series_dir / "series.yaml")
    with pytest.raises(UsageError, match=re.escape(f"'{folder}' cannot name")):
        ci.gitlab_yaml(series, output=tmp_path / "project" / ".gitlab-ci.yml")


def test_the_command_renders_a_subfolder_series(
    run_cli: RunCli, tmp_path: Path
) -> None:
    proc = run_cli("-C", "series/yank-doc", "ci", "gitlab", "--stdout")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ci.gitlab_yaml(load(REPO / "series/yank-doc/series.yaml"))
    assert "\n    - .venv/bin/qseries -C series/yank-doc check --series v1\n" in (
        proc.stdout
    )
    path = tmp_path / "pipeline.yml"
    proc = run_cli("-C", "series/yank-doc", "ci", "gitlab", "--output", str(path))
    assert proc.returncode == 0, proc.stderr
    assert path.read_text() == ci.gitlab_yaml(
        load(REPO / "series/yank-doc/series.yaml"), output=path
    )
    assert "-C series/yank-doc" in path.read_text()


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
