"""Helpers and fixtures for the publishing tests (imported by conftest.py's publishing block).

Every test builds a real site with the real command line into a temporary project (a copy
of the repository's ``templates/`` plus posts and a ``site.toml`` chosen by the test) and
reads the files that build wrote. Nothing is mocked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from raypress.cli import main
from raypress.theme import THEME_PATH

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates"
EXAMPLE_POSTS = REPO / "posts"
SITE_URL = "https://blog.example.org"
SITE_TITLE = "raypress test site"


@dataclass(frozen=True)
class BuildResult:
    """What one run of the command line did: exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    @property
    def problem_lines(self) -> list[str]:
        """stderr lines that report a problem (the final 'build failed' summary excluded)."""
        return [line for line in self.err_lines if not line.startswith("build failed:")]

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


def toml_value(value: Any) -> str:
    """A Python str/int/bool/float as a TOML value (enough for site.toml)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise TypeError(f"no TOML for {value!r}")


def eject(root: Path, name: str) -> Path:
    """Copy the built-in theme's template ``name`` into the site's templates/ (as a user
    does before editing it); returns the copy."""
    target = root / "templates" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(THEME_PATH / name, target)
    return target


def post_text(body: str = "Some words.\n", **front: Any) -> str:
    """A post file: YAML front matter from ``front`` (values written as given) + body."""
    lines = ["---", *(f"{key}: {value}" for key, value in front.items()), "---", ""]
    return "\n".join(lines) + "\n" + body


class Project:
    """A temporary raypress project: templates/, posts/, site.toml; built in-process."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]):
        self.root = root
        self._capsys = capsys
        shutil.copytree(TEMPLATES, root / "templates")
        (root / "posts").mkdir()
        self.configure(title=SITE_TITLE, url=SITE_URL)

    # -- inputs --------------------------------------------------------------------------
    def configure(self, **values: Any) -> Path:
        """Write site.toml with exactly ``values`` (an empty call writes an empty file)."""
        text = "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items())
        return self.write("site.toml", text)

    def write(self, relative: str, content: str | bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def post(self, name: str, content: str | bytes) -> Path:
        """Write ``posts/<name>``."""
        return self.write(f"posts/{name}", content)

    def add_example_posts(self) -> list[Path]:
        """Copy the repository's example posts into this project."""
        return [
            Path(shutil.copy2(path, self.root / "posts" / path.name))
            for path in sorted(EXAMPLE_POSTS.glob("*.md"))
        ]

    # -- building ------------------------------------------------------------------------
    def build(self, *args: str, execute: bool = False) -> BuildResult:
        """``raypress build --root ROOT *args`` in this process; its exit code and output.
        Snippets are not run (``--no-exec``) unless ``execute``: these tests are about
        publishing; execution has its own tests."""
        self._capsys.readouterr()
        flags = [] if execute else ["--no-exec"]
        code = main(["build", "--root", str(self.root), *flags, *args])
        captured = self._capsys.readouterr()
        return BuildResult(code, captured.out, captured.err)

    def build_ok(self, *args: str) -> BuildResult:
        result = self.build(*args)
        assert result.code == 0, str(result)
        assert result.err == "", str(result)
        return result

    # -- output --------------------------------------------------------------------------
    @property
    def site(self) -> Path:
        return self.root / "_site"

    def page(self, relative: str) -> str:
        """The text of ``_site/<relative>`` (``a/b/`` means ``a/b/index.html``)."""
        if relative.endswith("/") or relative == "":
            relative += "index.html"
        return (self.site / relative.lstrip("/")).read_text(encoding="utf-8")

    def files(self) -> list[str]:
        """Every file under _site/, as sorted POSIX paths relative to it."""
        return sorted(
            p.relative_to(self.site).as_posix() for p in self.site.rglob("*") if p.is_file()
        )

    def tree(self) -> dict[str, bytes]:
        """The whole _site/ folder: relative path -> bytes (to compare builds byte for byte)."""
        return {name: (self.site / name).read_bytes() for name in self.files()}

    def stats(self) -> dict[str, tuple[int, int]]:
        """relative path -> (inode, mtime_ns) of every file under _site/."""
        found = {}
        for name in self.files():
            stat = (self.site / name).stat()
            found[name] = (stat.st_ino, stat.st_mtime_ns)
        return found

    def leftovers(self) -> list[str]:
        """Folders beside _site/ that a build may leave when it goes wrong (_site.tmp-*, ...)."""
        return sorted(
            p.name for p in self.root.iterdir() if p.name.startswith("_site") and p.name != "_site"
        )


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Project:
    """An empty project with the repository's theme and a site.toml (title and url set)."""
    return Project(tmp_path / "project", capsys)


@pytest.fixture
def make_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[[str], Project]]:
    """A factory for several projects in one test: ``make_project("name")``."""

    def make(name: str) -> Project:
        return Project(tmp_path / name, capsys)

    yield make


# -- subprocesses ------------------------------------------------------------------------


def run_command(
    args: list[str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a real process (no shell) with the test's Python environment; capture output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYPRESS_")}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def python_command(*args: str) -> list[str]:
    return [sys.executable, *args]


# -- HTML ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    tag: str
    attribute: str
    value: str


class PageParser(HTMLParser):
    """Collects every href/src, every id, and the text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[Link] = []
        self.ids: set[str] = set()
        self.navs: list[list[str]] = []  # hrefs inside each <nav>
        self.text_parts: list[str] = []
        self._nav_depth = 0
        self._skip_text = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "nav":
            self._nav_depth += 1
            self.navs.append([])
        if tag in ("script", "style"):
            self._skip_text += 1
        if values.get("id"):
            self.ids.add(str(values["id"]))
        for attribute in ("href", "src"):
            value = values.get(attribute)
            if value is not None:
                self.links.append(Link(tag, attribute, value))
                if attribute == "href" and self._nav_depth:
                    self.navs[-1].append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav" and self._nav_depth:
            self._nav_depth -= 1
        if tag in ("script", "style") and self._skip_text:
            self._skip_text -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip_text:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())


def parse_page(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


def hrefs(html: str) -> list[str]:
    return [link.value for link in parse_page(html).links if link.attribute == "href"]
