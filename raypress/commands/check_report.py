"""How ``check`` reports: console lines and diffs, GitHub Actions annotations, JUnit XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from raypress.commands.check import CheckReport, Issue, Item
from raypress.execution.model import format_duration
from raypress.paths import atomic_write

_MAX_ANNOTATION = 4000  # characters of a diff kept in one annotation
_NOT_XML = re.compile(r"[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")


def console_lines(report: CheckReport) -> Iterator[tuple[str, bool]]:
    """``(line, is_error)`` for the console: each issue headed ``posts/x.md:LINE``, its
    diff below; the summary last."""
    for problem in report.problems + report.infrastructure:
        yield str(problem), True
    for item in report.items:
        for issue in item.issues:
            yield _issue_heading(item, issue), True
            if issue.diff:
                yield issue.diff.rstrip("\n"), True
    for path in report.updated:
        yield f"updated {path}", False
    if report.problems and not report.items:
        yield "check failed: the posts have problems; nothing was run", True
        return
    if report.infrastructure and not report.items:
        yield "check failed: nothing ran (exit status 2: run it again)", True
        return
    yield report.summary + _timing(report), False


def _timing(report: CheckReport) -> str:
    own = format_duration(report.snippet_seconds)
    return f" in {format_duration(report.seconds)} (the snippets' own time: {own})"


def github_annotations(report: CheckReport) -> Iterator[str]:
    """Workflow commands that GitHub Actions shows on the lines of the pull request."""
    for problem in report.problems + report.infrastructure:
        yield _annotation("error", problem.path, problem.line, problem.message)
    for item in report.items:
        for issue in item.issues:
            text = f"{item.name}: {issue.message}"
            if issue.diff:
                text += "\n" + issue.diff[:_MAX_ANNOTATION]
            yield _annotation(issue.kind, item.post, item.line, text)


def _annotation(kind: str, path: str, line: int | None, message: str) -> str:
    where = f"file={_property(path)}" + (f",line={line}" if line else "")
    title = f",title={_property('raypress check')}"
    return f"::{kind} {where}{title}::{_data(message)}"


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def write_junit(report: CheckReport, path: Path) -> None:
    """A JUnit XML report: a test suite per post, a test case per snippet."""
    root = ET.Element(
        "testsuites",
        name="raypress check",
        tests=str(len(report.items)),
        failures=str(report.count("failed")),
        skipped=str(report.count("skipped")),
        errors="0",
        time=f"{report.seconds:.3f}",
    )
    suites: dict[str, list[Item]] = {}
    for item in report.items:
        suites.setdefault(item.post, []).append(item)
    for problem in report.problems:
        suites.setdefault(problem.path, [])
    for post, items in suites.items():
        suite = ET.SubElement(
            root,
            "testsuite",
            name=post,
            tests=str(len(items)),
            failures=str(sum(1 for i in items if i.outcome == "failed")),
            skipped=str(sum(1 for i in items if i.outcome == "skipped")),
            errors="0",
            time=f"{sum(i.seconds for i in items):.3f}",
        )
        for problem in (p for p in report.problems if p.path == post):
            case = ET.SubElement(suite, "testcase", classname=post, name="input", file=post)
            error = ET.SubElement(case, "error", message=_clean(problem.message))
            error.text = _clean(str(problem))
        for item in items:
            _testcase(suite, item)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    data = ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
    atomic_write(path, data, durable=False)


def _testcase(suite: ET.Element, item: Item) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        classname=item.post,
        name=_clean(f"{item.name} (line {item.line})"),
        file=item.post,
        line=str(item.line),
        time=f"{item.seconds:.6f}",
    )
    errors = [i for i in item.issues if i.kind == "error"]
    warnings = [i for i in item.issues if i.kind == "warning"]
    if errors:
        failure = ET.SubElement(case, "failure", message=_clean(errors[0].message))
        failure.text = _clean("\n\n".join(_issue_text(item, i) for i in errors))
    elif item.skipped:
        ET.SubElement(case, "skipped", message=_clean(item.skipped))
    if warnings:
        output = "\n".join(_issue_text(item, i) for i in warnings)
        ET.SubElement(case, "system-out").text = _clean(output)


def _issue_heading(item: Item, issue: Issue) -> str:
    return f"{item.post}:{item.line}: {issue.kind}: {item.name}: {issue.message}"


def _issue_text(item: Item, issue: Issue) -> str:
    return _issue_heading(item, issue) + ("\n" + issue.diff if issue.diff else "")


def _clean(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (control codes from output)."""
    return _NOT_XML.sub("\ufffd", text)
