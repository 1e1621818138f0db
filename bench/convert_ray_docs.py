"""Convert pages of Ray's documentation into raypress posts, as a new user would copy them.

    python bench/convert_ray_docs.py                       # bench/ray_docs/source -> posts
    python bench/convert_ray_docs.py SOURCE_DIR OUT_DIR    # e.g. a ray checkout's doc/source

The pages (``PAGES`` below) are Sphinx reStructuredText, MyST Markdown and Jupyter
notebooks from ``ray-project/ray``'s ``doc/source`` (copies in ``bench/ray_docs/source``,
notebooks with their outputs stripped). Each becomes ``OUT_DIR/<date>-<slug>.md``:

* every code block the page shows becomes a fence, in the order the reader sees them:
  ``literalinclude`` resolved (``start-after``/``end-before`` markers, as Sphinx does),
  ``code-block``/``testcode``/``{testcode}``, notebook code cells. Python blocks are
  ``python`` fences, other languages keep theirs, example outputs are ``text`` fences;
* a shell command (a notebook's ``! pip install ray``) is a ``python`` fence marked
  ``#| eval: false``, as the reader sees it in the notebook;
* what the page does not show is left out: ``:hide:`` doctest blocks, empty cells;
  a block the page shows but its own doctest never runs (``:skipif: True``, "the
  following snippet will fail") is kept, marked ``#| eval: false``;
* the prose is kept, Sphinx roles and directives reduced to Markdown (``:ref:`x <y>```
  -> x, ``.. note::`` -> a quote, figures and tables of contents dropped).

No code is edited: only fences are chosen. The posts' front matter says where each page
came from.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "bench" / "ray_docs" / "source"
OUT = ROOT / "bench" / "ray_docs" / "posts"
REPO = "https://github.com/ray-project/ray/blob/master/doc/source/"

# (page, date): the converted pages, one post per day.
PAGES = (
    ("ray-core/walkthrough.rst", "2025-12-01"),
    ("ray-core/examples/monte_carlo_pi.md", "2025-12-02"),
    ("ray-core/examples/gentle_walkthrough.ipynb", "2025-12-03"),
    ("ray-core/examples/map_reduce.ipynb", "2025-12-04"),
    ("ray-core/examples/progress_bar.ipynb", "2025-12-05"),
    ("ray-core/patterns/ray-get-loop.rst", "2025-12-06"),
    ("ray-core/patterns/too-fine-grained-tasks.rst", "2025-12-07"),
    ("ray-core/patterns/pipelining.rst", "2025-12-08"),
    ("ray-core/patterns/global-variables.rst", "2025-12-09"),
    ("ray-core/actors/task-orders.md", "2025-12-10"),
    ("ray-core/actors/concurrency_group_api.md", "2025-12-11"),
)

_ROLE = re.compile(r":(?:ref|doc|class|meth|mod|attr|obj|data|term):`([^`<]*?)\s*(?:<[^>]*>)?`")
_CODE_ROLE = re.compile(r":(?:func|meth|class)?:?`([^`<]*?)\s*<[^>]*>`")
_MYST_ROLE = re.compile(r"\{(?:ref|doc|func|class|meth|mod)\}`([^`<]*?)\s*(?:<[^>]*>)?`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<([^>]+)>`__?")
_SHELL = re.compile(r"^\s*[!%]")


@dataclass
class Block:
    """A fence: its language, code and raypress options."""

    language: str
    code: str
    options: tuple[str, ...] = ()

    def render(self) -> str:
        code = self.code.strip("\n")
        head = "".join(f"#| {option}\n" for option in self.options)
        return f"```{self.language}\n{head}{code}\n```\n"


def convert(page: str, source: Path) -> tuple[str, str]:
    """(title, Markdown body) of one page."""
    path = source / page
    if path.suffix == ".ipynb":
        return notebook(path)
    if path.suffix == ".md":
        return myst(path)
    return rst(path)


# --- notebooks ------------------------------------------------------------------------


def notebook(path: Path) -> tuple[str, str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    parts: list[str] = []
    for cell in cells:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            parts.append(text.strip("\n") + "\n")
        elif cell["cell_type"] == "code" and text.strip():
            shell = _SHELL.match(text) is not None
            options = ("eval: false",) if shell else ()
            parts.append(Block("python", text, options).render())
    body = "\n".join(parts)
    return _title(body), _drop_title(body)


# --- MyST Markdown --------------------------------------------------------------------


_FENCE = re.compile(r"^(`{3,}|:{3,})\{?([\w-]*)\}?\s*(.*)$")


def myst(path: Path) -> tuple[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0] == "---":
        end = lines.index("---", 1)
        lines = lines[end + 1 :]
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if re.fullmatch(r"\(.+\)=", line.strip()):
            i += 1
            continue
        if fence is None:
            out.append(_inline(line))
            i += 1
            continue
        marker, name, argument = fence.groups()
        close = marker[0] * len(marker)
        j = i + 1
        while j < len(lines) and lines[j].strip() != close:
            j += 1
        inner = lines[i + 1 : j]
        i = j + 1
        options, content = _myst_options(inner)
        out.append(_directive(name, argument, options, "\n".join(content), path))
    body = "\n".join(out)
    return _title(body), _drop_title(body)


def _myst_options(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    index = 0
    while index < len(lines) and re.match(r"^:[\w-]+:", lines[index]):
        key, _, value = lines[index][1:].partition(":")
        options[key] = value.strip()
        index += 1
    return options, lines[index:]


def _directive(name: str, argument: str, options: dict[str, str], content: str, page: Path) -> str:
    """Markdown for one directive (MyST or reST, already parsed)."""
    if name == "literalinclude":
        return Block(options.get("language", "python"), _include(page, argument, options)).render()
    if name in ("testcode", "code-block", "code", "sourcecode", ""):
        if "hide" in options:
            return ""
        language = "python" if name == "testcode" else (argument or "text")
        language = {"python3": "python", "bash": "bash", "shell": "bash"}.get(language, language)
        skip = options.get("skipif", "").strip() == "True"
        return Block(language, content, ("eval: false",) if skip else ()).render()
    if name in ("testoutput", "text", "console"):
        return Block("text", content).render()
    if name in ("python", "py", "java", "c++", "cpp", "bash", "sh", "yaml", "json"):
        return Block(name, content).render()  # an ordinary fence with a language
    if name in ("note", "tip", "warning", "important", "hint", "caution"):
        text = _inline(content.strip())
        return "\n".join(f"> {line}" if line else ">" for line in text.splitlines()) + "\n"
    if name in ("tab-item",):
        return f"**{argument}**\n\n" + _myst_nested(content, page)
    if name in ("tab-set",):
        return _myst_nested(content, page)
    return ""  # raw HTML, images, grids, toctrees: not part of what a reader copies


def _myst_nested(content: str, page: Path) -> str:
    tmp = page.with_name(page.name)  # nested directives resolve includes like the page
    lines = content.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            out.append(_inline(lines[i]))
            i += 1
            continue
        marker, name, argument = fence.groups()
        close = marker[0] * len(marker)
        j = i + 1
        while j < len(lines) and lines[j].strip() != close:
            j += 1
        options, inner = _myst_options(lines[i + 1 : j])
        out.append(_directive(name, argument, options, "\n".join(inner), tmp))
        i = j + 1
    return "\n".join(out) + "\n"


# --- reStructuredText -----------------------------------------------------------------

_DIRECTIVE = re.compile(r"^(\s*)\.\. ([\w-]+)::\s*(.*)$")
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")


def rst(path: Path) -> tuple[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out = _rst_lines(lines, path, level={})
    body = "\n".join(out)
    return _title(body), _drop_title(body)


def _rst_lines(lines: list[str], page: Path, level: dict[str, int]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"^\s*\.\. _[^:]+:\s*$", line):  # a label
            i += 1
            continue
        directive = _DIRECTIVE.match(line)
        if directive:
            indent, name, argument = directive.groups()
            j = i + 1
            block: list[str] = []
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > len(indent)):
                block.append(lines[j])
                j += 1
            i = j
            out.append(_rst_directive(name, argument, block, page, level))
            continue
        if i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]) and line.strip():
            char = lines[i + 1].strip()[0]
            depth = level.setdefault(char, len(level) + 1)
            out.append("#" * depth + " " + _inline(line.strip()))
            i += 2
            continue
        out.append(_inline(line))
        i += 1
    return out


def _rst_directive(
    name: str, argument: str, block: list[str], page: Path, level: dict[str, int]
) -> str:
    text = textwrap.dedent("\n".join(block))
    options: dict[str, str] = {}
    body_lines = text.splitlines()
    while body_lines and (not body_lines[0].strip() or re.match(r"^:[\w-]+:", body_lines[0])):
        if body_lines[0].strip():
            key, _, value = body_lines[0].strip()[1:].partition(":")
            options[key] = value.strip()
        body_lines.pop(0)
    content = "\n".join(body_lines)
    if name in ("tab-set",):
        return "\n".join(_rst_lines(content.splitlines(), page, level)) + "\n"
    if name == "tab-item":
        nested = "\n".join(_rst_lines(content.splitlines(), page, level))
        return f"**{argument}**\n\n{nested}\n"
    if name in ("code-block", "code", "sourcecode") and not content.strip():
        # a block whose code follows the directive line without a blank line: the
        # indented lines were read as options (Sphinx shows them as code)
        content = "\n".join(b.strip() for b in block if b.strip())
    return _directive(name, argument, options, content, page)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


# --- shared ---------------------------------------------------------------------------


def _include(page: Path, target: str, options: dict[str, str]) -> str:
    text = (page.parent / target).read_text(encoding="utf-8")
    start, end = options.get("start-after"), options.get("end-before")
    if start:
        text = text.split(start, 1)[1].split("\n", 1)[1]
    if end:
        text = text.split(end, 1)[0].rsplit("\n", 1)[0]
    return text


def _inline(line: str) -> str:
    line = _MYST_ROLE.sub(lambda m: f"`{m[1]}`" if "(" in m[1] else m[1], line)
    line = _RST_LINK.sub(lambda m: f"[{m[1]}]({m[2]})", line)
    line = _ROLE.sub(lambda m: m[1], line)
    line = _CODE_ROLE.sub(lambda m: f"`{m[1]}`", line)
    return line.replace("``", "`")


def _title(body: str) -> str:
    for line in body.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return "Untitled"


def _drop_title(body: str) -> str:
    """The body without its first ``# `` heading, runs of blank prose lines made one
    (never inside a fence: code keeps every line)."""
    lines = body.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("# "):
            del lines[index]
            break
    out: list[str] = []
    in_fence = False
    for line in lines:
        if line.startswith("```"):
            in_fence = not in_fence
        if not in_fence and not line.strip() and out and not out[-1].strip():
            continue
        out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else SOURCE
    out = Path(argv[1]) if len(argv) > 1 else OUT
    out.mkdir(parents=True, exist_ok=True)
    for page, date in PAGES:
        title, body = convert(page, source)
        slug = re.sub(r"[^a-z0-9]+", "-", Path(page).stem.lower()).strip("-")
        front = (
            f"---\ntitle: {json.dumps(title, ensure_ascii=False)}\ndate: {date}\n"
            f"tags: [ray, ray-docs]\nsource: {REPO}{page}\n---\n\n"
        )
        target = out / f"{date}-{slug}.md"
        target.write_text(front + body, encoding="utf-8")
        print(f"{page} -> {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
