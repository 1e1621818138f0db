"""The project's own promises: README commands, CI entry point, lint."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_section = readme.split("\n## ", 2)[1]
    assert first_section.startswith("Quick start")
    blocks = re.findall(r"```sh\n(.*?)```", first_section, flags=re.DOTALL)
    return [
        line
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_readme_first_section_gives_exactly_two_commands() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert commands[0].endswith("build.py")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = _quick_start_commands()[1]
    runnable = [line for line in ci.splitlines() if line and not line.startswith("#")]
    assert runnable[-1] == test_command


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "concise", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_file_holds_a_merge_conflict_marker() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], capture_output=True, cwd=ROOT, check=False
    ).stdout.split(b"\0")
    marker = re.compile(rb"^(<{7} |={7}$|>{7} )", re.MULTILINE)
    found = []
    for name in filter(None, listed):
        path = ROOT / name.decode()
        if path.is_file() and path.stat().st_size < 2_000_000:
            data = path.read_bytes()
            if b"\0" not in data and marker.search(data):
                found.append(name.decode())
    assert not found, found


def test_the_theme_css_parses_without_errors() -> None:
    """A stray brace or marker silently drops every rule after it in a browser."""
    import tinycss2  # comes with CairoSVG (test extra)

    for sheet in sorted((ROOT / "raypress" / "theme").rglob("*.css")):
        rules = tinycss2.parse_stylesheet(
            sheet.read_text(encoding="utf-8"), skip_comments=True, skip_whitespace=True
        )
        errors = [(r.source_line, r.message) for r in rules if r.type == "error"]
        assert not errors, (sheet.name, errors)
        for rule in rules:  # a rule that swallowed the rest of the file holds other rules
            if rule.type == "qualified-rule":
                body = tinycss2.serialize(rule.content)
                assert "{" not in body, (sheet.name, rule.source_line)
