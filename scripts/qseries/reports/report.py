"""Results of checks, as a table for people and JSON for machines."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.results import FAIL, PASS, SKIP, Result, passed


def table(results: list[Result], tests: bool = False) -> str:
    """The results as a table; with tests, closed by 'N passed, N failed'."""
    width = max(len(r.name) for r in results)
    heading = "test" if tests else "check"
    lines = [f"{heading:<{width}}  result  detail"]
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.status:<6}  {r.detail}")
        lines.extend(f"{'':<{width}}          {item}" for item in r.items)
    failed = sum(not r.ok for r in results)
    lines.append("")
    if tests:
        skipped = sum(r.status == SKIP for r in results)
        passed = len(results) - failed - skipped
        lines.append(f"{passed} passed, {failed} failed, {skipped} skipped")
        return "\n".join(lines)
    lines.append(
        f"{failed} of {len(results)} checks failed"
        if failed
        else f"all {len(results)} checks passed"
    )
    return "\n".join(lines)


def to_json(results: list[Result]) -> dict[str, object]:
    return {
        "passed": passed(results),
        "results": [
            {
                "name": r.name,
                "status": r.status.lower(),
                "detail": r.detail,
                "items": r.items,
            }
            for r in results
        ],
    }


# -- the reports `qseries reproduce` writes ---------------------------------


@dataclass(frozen=True)
class Group:
    """Results of one stage (check, bisect, a test group), as one JUnit
    testsuite; seconds is the stage's wall time."""

    name: str
    results: tuple[Result, ...]
    seconds: float


@dataclass(frozen=True)
class Phase:
    """Wall time of one phase of a run (source, configure, build, a test
    group), with what it reused from an earlier run, if anything."""

    name: str
    seconds: float
    reused: str = ""


@dataclass(frozen=True)
class Run:
    """Everything a report says about one run of the pipeline."""

    title: str  # e.g. "v2 on QEMU 10.2.2 (Debian 1:10.2.2+ds-1)"
    version: str
    base: dict[str, object]
    groups: tuple[Group, ...]
    phases: tuple[Phase, ...]
    pictures: tuple[str, ...] = ()  # file names in the report directory
    facts: tuple[str, ...] = ()  # e.g. the prepare notice's lead

    @property
    def results(self) -> list[Result]:
        return [r for g in self.groups for r in g.results]

    @property
    def passed(self) -> bool:
        return passed(self.results)

    def counts(self) -> dict[str, int]:
        results = self.results
        return {
            "tests": len(results),
            "failures": sum(r.status == FAIL for r in results),
            "skipped": sum(r.status == SKIP for r in results),
        }


def _log_of(result: Result) -> str:
    """The log a result points at ('log: PATH' among its items), if any."""
    for item in result.items:
        if item.startswith(("log: ", "JUnit: ")):
            return item.split(": ", 1)[1]
    return ""


# What XML 1.0 cannot carry (control characters but tab and newlines).
_NOT_XML = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def junit(run: Run) -> str:
    """JUnit XML: a testsuite per group, a testcase per result, failures
    with their reason as the message and the items (the log path among
    them) as the text.  GitLab shows it in merge requests."""
    import xml.etree.ElementTree as ET

    counts = run.counts()
    root = ET.Element(
        "testsuites",
        name=f"qseries {run.title}",
        tests=str(counts["tests"]),
        failures=str(counts["failures"]),
        skipped=str(counts["skipped"]),
        time=f"{sum(g.seconds for g in run.groups):.3f}",
    )
    for group in run.groups:
        suite = ET.SubElement(
            root,
            "testsuite",
            name=group.name,
            tests=str(len(group.results)),
            failures=str(sum(r.status == FAIL for r in group.results)),
            skipped=str(sum(r.status == SKIP for r in group.results)),
            time=f"{group.seconds:.3f}",
        )
        for result in group.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"qseries.{run.version}.{group.name}",
                name=_xml(result.name),
            )
            text = _xml("\n".join(result.items))
            if result.status == FAIL:
                ET.SubElement(case, "failure", message=_xml(result.detail)).text = text
            elif result.status == SKIP:
                ET.SubElement(case, "skipped", message=_xml(result.detail))
            else:
                ET.SubElement(case, "system-out").text = _xml(
                    "\n".join([result.detail, *result.items])
                )
            log = _log_of(result)
            if log and result.status == FAIL:
                ET.SubElement(case, "system-err").text = f"log: {log}"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def run_json(run: Run, directory: str) -> dict[str, object]:
    return {
        "title": run.title,
        "version": run.version,
        "base": run.base,
        "passed": run.passed,
        **run.counts(),
        "directory": directory,
        "groups": [
            {
                "name": g.name,
                "seconds": round(g.seconds, 2),
                **to_json(list(g.results)),
            }
            for g in run.groups
        ],
        "phases": [
            {"name": p.name, "seconds": round(p.seconds, 2), "reused": p.reused}
            for p in run.phases
        ],
        "pictures": list(run.pictures),
        "facts": list(run.facts),
    }


def _md(text: str) -> str:
    """Text for a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(run: Run) -> str:
    """A summary that renders on GitLab (and anywhere else markdown does)."""
    counts = run.counts()
    verdict = "PASSED" if run.passed else "FAILED"
    ok = counts["tests"] - counts["failures"] - counts["skipped"]
    lines = [
        f"# qseries reproduce: {run.title}",
        "",
        f"**{verdict}**: {ok} passed, {counts['failures']} failed, "
        f"{counts['skipped']} skipped.",
        "",
    ]
    lines += [f"- {fact}" for fact in run.facts]
    if run.facts:
        lines.append("")
    lines += ["| stage | result | detail |", "|---|---|---|"]
    for group in run.groups:
        for r in group.results:
            mark = {PASS: "pass", FAIL: "**FAIL**", SKIP: "skip"}.get(
                r.status, r.status
            )
            lines.append(
                f"| {_md(group.name)} | {mark} | {_md(r.name)}: {_md(r.detail)} |"
            )
    failed = [r for r in run.results if r.status == FAIL]
    if failed:
        lines += ["", "## Failures", ""]
        for r in failed:
            lines += [f"### {r.name}", "", r.detail, ""]
            if r.items:
                lines += ["```", *r.items, "```", ""]
    lines += ["", "## Phases", "", "| phase | seconds | reused |", "|---|---:|---|"]
    for p in run.phases:
        lines.append(f"| {_md(p.name)} | {p.seconds:.1f} | {_md(p.reused) or '-'} |")
    lines.append(f"| total | {sum(p.seconds for p in run.phases):.1f} | |")
    for picture in run.pictures:
        lines += ["", f"![{picture}]({picture})"]
    return "\n".join(lines) + "\n"
