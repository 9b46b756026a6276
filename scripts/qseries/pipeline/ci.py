"""qseries ci gitlab: the series' matrix as a GitLab CI pipeline.

The matrix comes from series.yaml: every version on its default base
(the newest Debian qemu in its base range), and the newest version also
on the oldest QEMU line its range admits when that line is older than
the version's target: there the series is a backport, as `make
qemu-tests` tests it.  The pipeline's shape (stages, images, artifacts)
is the template data/gitlab-ci.yml.j2; this module only fills it in, and
checks what GitLab's schema cannot: that every `needs:` and `extends:`
names a job that exists, and that each JUnit report is an artifact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from ..core.series import Series, Version
from ..core.templates import Templates
from ..ground import atomic
from ..ground.errors import TemplateError, UsageError

# The template is package data, read where qseries is installed.
TEMPLATE_DIR: Traversable = resources.files("qseries.pipeline") / "data"
GITLAB_TEMPLATE = "gitlab-ci.yml.j2"

# Bases to run each version on, by version name ("v2"): a --base-version
# value, or None for the version's default base.
Bases = Mapping[str, Sequence[str | None]]

# What a --base-version may be (a Debian or QEMU version): it goes into
# job names, paths and shell commands unquoted.
_BASE = re.compile(r"[0-9][0-9A-Za-z.:+~-]*")

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


def check_job(version: str) -> str:
    return f"check-{version}"


def _label(version: str, base: str | None) -> str:
    return version if base is None else f"{version}-on-{base.replace(':', '_')}"


def reproduce_job(version: str, base: str | None) -> str:
    return f"reproduce-{_label(version, base)}"


def report_dir(version: str, base: str | None) -> str:
    """Where a reproduce job writes its reports, relative to the project."""
    return f"qseries-reports/{_label(version, base)}"


def _matrix(series: Series, bases: Bases) -> dict[str, Any]:
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
        checks.append({"job": check_job(name), "version": name, "bases": wanted})
        reproduces += [
            {
                "job": reproduce_job(name, base),
                "version": name,
                "base": base,
                "needs": check_job(name),
                "report": report_dir(name, base),
            }
            for base in wanted
        ]
    return {"checks": checks, "reproduces": reproduces}


def gitlab_yaml(series: Series, bases: Bases | None = None) -> str:
    """The .gitlab-ci.yml text for the series: a check job per version,
    then a reproduce job per (version, base) that needs it.  bases
    defaults to default_bases(series)."""
    matrix = _matrix(series, default_bases(series) if bases is None else bases)
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
    text = gitlab_yaml(series, bases)
    if path.is_dir():
        raise UsageError(f"{path} is a directory", "pass the file to write")
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
