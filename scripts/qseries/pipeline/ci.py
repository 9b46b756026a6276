"""qseries ci gitlab: the series' matrix as a GitLab CI pipeline.

The matrix comes from series.yaml: every version on its default base
(the newest Debian qemu in its base range), and the newest version also
on the oldest QEMU line its range admits when that line is older than
the version's target: there the series is a backport, as `make
qemu-tests` tests it.  The pipeline's shape (stages, images, artifacts)
is the template data/gitlab-ci.yml.j2; this module only fills it in, and
checks what GitLab's schema cannot: that every `needs:` and `extends:`
names a job that exists, and that each JUnit report is an artifact.

GitLab runs every job at the top of the repository ($CI_PROJECT_DIR) and
reads only the .gitlab-ci.yml there.  A series kept in a subfolder is
therefore named in its jobs' commands (`qseries -C series/x`), and its
jobs, hidden template and reports carry that folder, so that the root
file can `include:` the pipelines of several series side by side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from ..core.series import Series, Version
from ..core.templates import Templates
from ..ground import atomic
from ..ground.errors import TemplateError, ToolError, UsageError
from ..ground.gitutil import Git

# The template is package data, read where qseries is installed.
TEMPLATE_DIR: Traversable = resources.files("qseries.pipeline") / "data"
GITLAB_TEMPLATE = "gitlab-ci.yml.j2"

# Bases to run each version on, by version name ("v2"): a --base-version
# value, or None for the version's default base.
Bases = Mapping[str, Sequence[str | None]]

# What a --base-version may be (a Debian or QEMU version): it goes into
# job names, paths and shell commands unquoted.
_BASE = re.compile(r"[0-9][0-9A-Za-z.:+~-]*")

# What a folder or file name on the way from the project's root to the
# series may be: it goes into job names, cache keys, paths and shell
# commands unquoted, and a job whose name starts with '.' is hidden.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# The series file `qseries -C DIR` reads when no --series-file is given.
SERIES_FILE = "series.yaml"
# The job template every job extends, for the series at the root.
JOB_TEMPLATE = ".qseries_job_template"
# What git says, whatever the user's language (LC_ALL=C), outside a repository.
_NOT_A_REPO = "not a git repository"

# Top-level keys of .gitlab-ci.yml that are not jobs.
_GLOBAL_KEYS = frozenset(
    {
        "default",
        "include",
        "stages",
        "variables",
        "workflow",
        "spec",
        "image",
        "services",
        "cache",
        "before_script",
        "after_script",
    }
)


@dataclass(frozen=True)
class Place:
    """Where a series is, seen from the project's root: its folder
    ('.' or 'series/x', with '/') and the name of its file."""

    folder: str = "."
    file: str = SERIES_FILE

    @property
    def label(self) -> str | None:
        """What the series' job names carry ('series:x'); None for
        ./series.yaml, whose pipeline keeps its plain names.  ':' joins
        the parts as no folder name may hold one."""
        parts = [] if self.folder == "." else self.folder.split("/")
        if self.file != SERIES_FILE:
            parts.append(self.file)
        return ":".join(parts) or None

    @property
    def options(self) -> list[str]:
        """qseries' options that select the series from the root."""
        out = [] if self.folder == "." else ["-C", self.folder]
        if self.file != SERIES_FILE:
            out += ["--series-file", self.file]
        return out

    @property
    def source(self) -> str:
        """The series file, from the root."""
        return self.file if self.folder == "." else f"{self.folder}/{self.file}"

    @property
    def template(self) -> str:
        return JOB_TEMPLATE if self.label is None else f"{JOB_TEMPLATE}:{self.label}"


def project_root(series_dir: Path, output: Path) -> Path:
    """The folder GitLab runs the jobs in: the top of the git repository
    holding the series; outside any repository, the folder the pipeline
    is written to."""
    try:
        top = Git(series_dir).run("rev-parse", "--show-toplevel", timeout=60)
    except ToolError as err:
        if _NOT_A_REPO not in str(err):
            raise
        return output.absolute().parent.resolve()
    return Path(top).resolve()


def place(series: Series, output: Path | None = None) -> Place:
    """Where the series is from the project's root (project_root), for a
    pipeline written to output (default: .gitlab-ci.yml beside it)."""
    here = series.path.absolute().resolve()
    written = output if output is not None else here.parent / ".gitlab-ci.yml"
    root = project_root(here.parent, written)
    try:
        folder = here.parent.relative_to(root).as_posix()
    except ValueError:
        raise UsageError(
            f"{series.path} is not under {root}, where the pipeline is written "
            "and its jobs run",
            "write the pipeline (--output) into a folder that holds the series, "
            "or keep the series in a git repository",
        ) from None
    found = Place(folder, here.name)
    for name in [*found.folder.split("/"), found.file]:
        if name != "." and not _NAME.fullmatch(name):
            raise UsageError(
                f"{found.source}: '{name}' cannot name a GitLab job or a path "
                "in a job's command",
                "rename it with letters, digits, '.', '_' and '-' only "
                "(not starting with '.' or '-')",
            )
    return found


def backport_base(version: Version) -> str | None:
    """The oldest QEMU line the version's range admits ('10.0'), when it
    is older than the line the version targets; else None."""
    lower = version.base.lower
    target = version.target
    if lower is None or (lower.major, lower.minor) >= (target.major, target.minor):
        return None
    return lower.feature_release()


def default_bases(series: Series) -> dict[str, list[str | None]]:
    """Every version on its default base; the newest one also on its
    backport base, if it has one."""
    out: dict[str, list[str | None]] = {
        series.versions[n].name: [None] for n in sorted(series.versions)
    }
    newest = series.version(None)
    old = backport_base(newest)
    if old is not None:
        out[newest.name].append(old)
    return out


def _named(job: str, where: Place) -> str:
    return job if where.label is None else f"{where.label}:{job}"


def check_job(version: str, where: Place = Place()) -> str:
    return _named(f"check-{version}", where)


def _label(version: str, base: str | None) -> str:
    return version if base is None else f"{version}-on-{base.replace(':', '_')}"


def reproduce_job(version: str, base: str | None, where: Place = Place()) -> str:
    return _named(f"reproduce-{_label(version, base)}", where)


def report_dir(version: str, base: str | None, where: Place = Place()) -> str:
    """Where a reproduce job writes its reports, relative to the project:
    under the series' folder (and file) when it is not ./series.yaml."""
    below = "" if where.label is None else where.label.replace(":", "/") + "/"
    return f"qseries-reports/{below}{_label(version, base)}"


def _matrix(series: Series, bases: Bases, where: Place) -> dict[str, Any]:
    known = {v.name for v in series.versions.values()}
    checks: list[dict[str, Any]] = []
    reproduces: list[dict[str, Any]] = []
    for name, wanted in bases.items():
        if name not in known:
            raise UsageError(
                f"no version '{name}' in {series.path}",
                "it has: " + ", ".join(sorted(known)),
            )
        if not wanted:
            raise UsageError(f"no base for {name}")
        for base in wanted:
            if base is not None and not _BASE.fullmatch(base):
                raise UsageError(
                    f"base {base!r} of {name} is not a version",
                    "write it like 10.0, 10.0.13 or 1:10.0.13+ds-0+deb13u1",
                )
        if len(set(wanted)) != len(wanted):
            raise UsageError(f"{name} lists a base twice")
        checks.append({"job": check_job(name, where), "version": name, "bases": wanted})
        reproduces += [
            {
                "job": reproduce_job(name, base, where),
                "version": name,
                "base": base,
                "needs": check_job(name, where),
                "report": report_dir(name, base, where),
            }
            for base in wanted
        ]
    series_data = {
        "label": where.label,
        "options": "".join(f" {o}" for o in where.options),
        "source": where.source,
        "template": where.template,
    }
    return {"checks": checks, "reproduces": reproduces, "series": series_data}


def gitlab_yaml(
    series: Series, bases: Bases | None = None, *, output: Path | None = None
) -> str:
    """The .gitlab-ci.yml text for the series: a check job per version,
    then a reproduce job per (version, base) that needs it.  bases
    defaults to default_bases(series); output is where the file goes
    (default: beside series.yaml), which matters outside git only (see
    project_root)."""
    wanted = default_bases(series) if bases is None else bases
    matrix = _matrix(series, wanted, place(series, output))
    with resources.as_file(TEMPLATE_DIR / GITLAB_TEMPLATE) as where:
        text = Templates(where.parent).render(where.name, **matrix)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise TemplateError(where, None, f"renders invalid YAML: {err}") from None
    found = problems(doc)
    expected = {c["job"] for c in matrix["checks"] + matrix["reproduces"]}
    missing = expected - set(jobs(doc))
    if missing:
        found.append("jobs missing: " + ", ".join(sorted(missing)))
    if found:
        raise TemplateError(where, None, "renders a bad pipeline: " + "; ".join(found))
    return text


def jobs(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The jobs of a parsed .gitlab-ci.yml (hidden '.templates' excluded)."""
    return {
        name: body
        for name, body in doc.items()
        if name not in _GLOBAL_KEYS
        and not name.startswith(".")
        and isinstance(body, Mapping)
    }


def _needs(body: Mapping[str, Any]) -> list[str]:
    out = []
    for need in body.get("needs") or []:
        if isinstance(need, str):
            out.append(need)
        elif isinstance(need, Mapping) and isinstance(need.get("job"), str):
            out.append(need["job"])
    return out


def _under(path: str, directory: str) -> bool:
    directory = directory.rstrip("/")
    return path == directory or path.startswith(directory + "/")


def problems(doc: object) -> list[str]:
    """What GitLab would refuse or lose that its JSON schema lets pass:
    a need, an extends or a stage that does not exist, a need on a later
    stage, a JUnit report that is not among the job's artifacts."""
    if not isinstance(doc, Mapping):
        return ["not a mapping of jobs"]
    out: list[str] = []
    stages = doc.get("stages") or ["build", "test", "deploy"]
    all_jobs = jobs(doc)
    templates = {
        k for k, v in doc.items() if k.startswith(".") and isinstance(v, Mapping)
    }

    def resolved(body: Mapping[str, Any], key: str) -> Any:
        """A key of the job or of what it extends (one level is enough here)."""
        if key in body:
            return body[key]
        parents = body.get("extends") or []
        for parent in [parents] if isinstance(parents, str) else parents:
            value = doc.get(parent)
            if isinstance(value, Mapping) and key in value:
                return value[key]
        return None

    for name, body in all_jobs.items():
        parents = body.get("extends") or []
        for parent in [parents] if isinstance(parents, str) else parents:
            if parent not in templates and parent not in all_jobs:
                out.append(f"{name}: extends '{parent}', which does not exist")
        stage = resolved(body, "stage") or "test"
        if stage not in stages:
            out.append(f"{name}: stage '{stage}' is not in stages")
        for need in _needs(body):
            if need == name:
                out.append(f"{name}: needs itself")
            elif need not in all_jobs:
                out.append(f"{name}: needs '{need}', which is not a job")
            else:
                their = resolved(all_jobs[need], "stage") or "test"
                both_known = their in stages and stage in stages
                if both_known and stages.index(their) > stages.index(stage):
                    out.append(f"{name}: needs '{need}' of a later stage")
        artifacts = resolved(body, "artifacts")
        if isinstance(artifacts, Mapping):
            junit = (artifacts.get("reports") or {}).get("junit")
            paths = artifacts.get("paths") or []
            for report in [junit] if isinstance(junit, str) else junit or []:
                if not any(_under(report, p) for p in paths):
                    out.append(f"{name}: JUnit report {report} is not an artifact")
    return out


def write_gitlab(
    series: Series, path: Path, *, force: bool = False, bases: Bases | None = None
) -> bool:
    """Write the pipeline to path.  False if path already holds exactly
    it; refuses (UsageError) to replace a different file unless force."""
    if path.is_dir():
        raise UsageError(f"{path} is a directory", "pass the file to write")
    text = gitlab_yaml(series, bases, output=path)
    try:
        old = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read {path}: {err}") from None
    if old == text:
        return False
    if old is not None and not force:
        raise UsageError(
            f"{path} exists and differs from the generated pipeline",
            "pass --force to replace it",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, text)
    return True
