"""The build with execution, end to end: the real command line, the real ``_site/`` files.

Snippets really run (a fork server and per-post sessions; a real Ray cluster for the Ray
posts). The repository's example posts, the Ray ones included, are built once for this
module by a subprocess (``python -m raypress build``), watched for the raylet it starts;
everything else is a small non-Ray project built in-process with ``raypress.cli.main``.
Nothing is mocked.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest_publishing import (
    EXAMPLE_POSTS,
    SITE_URL,
    TEMPLATES,
    BuildResult,
    Project,
    parse_page,
    toml_value,
)

SEED = EXAMPLE_POSTS / "2025-10-27-using-the-ray-library.md"
SEED_URL = "/2025/10/27/using-the-ray-library/"
TASKS_URL = "/2025/11/03/ray-tasks-vs-actors/"
# A formatted duration as the pages show it: 2-3 significant digits and a unit.
DURATION = r"\d+(?:\.\d+)? (?:ns|µs|ms|s)"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
# Parts of a snippet's <figure>, by (tag, class): what their text is collected as.
PARTS = {
    ("div", "highlight"): "code",
    ("pre", "stdout"): "stdout",
    ("pre", "stderr"): "stderr",
    ("pre", "result"): "result",
    ("pre", "error"): "error",
    ("div", "result-html"): "html",
    ("div", "snippet-output"): "output",
    ("p", "notice"): "notice",
    ("span", "timing"): "timing",
    ("figcaption", "snippet-meta"): "caption",
}


# -- reading pages ---------------------------------------------------------------------------


@dataclass
class SnippetFigure:
    """One ``<figure class="snippet ...">`` of a page: its classes, attributes and parts."""

    classes: set[str]
    attrs: dict[str, str]
    parts: dict[str, str] = field(default_factory=dict)  # "stdout" -> its text, ...
    elements: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # inside it

    def has(self, part: str) -> bool:
        return part in self.parts

    def text(self, part: str) -> str:
        return self.parts.get(part, "")

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [
            attrs
            for name, attrs in self.elements
            if name == tag and (cls is None or cls in attrs.get("class", "").split())
        ]

    @property
    def timing_title(self) -> str:
        spans = self.find("span", "timing")
        return spans[0].get("title", "") if spans else ""

    def __str__(self) -> str:
        return f"<figure {self.attrs}> {self.parts}"


class PageScan(HTMLParser):
    """Every element of a page (tag, attributes) and its snippet figures."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.figures: list[SnippetFigure] = []
        self._stack: list[tuple[str, str | None]] = []  # open elements inside a figure
        self._figure: SnippetFigure | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.elements.append((tag, values))
        classes = values.get("class", "").split()
        if tag == "figure" and "snippet" in classes and self._figure is None:
            self._figure = SnippetFigure(set(classes), values)
            self.figures.append(self._figure)
            self._stack = []
            return
        if self._figure is None:
            return
        self._figure.elements.append((tag, values))
        if tag in VOID_TAGS:
            return
        part = next((PARTS[(tag, c)] for c in classes if (tag, c) in PARTS), None)
        if part is not None:
            self._figure.parts.setdefault(part, "")
        self._stack.append((tag, part))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if self._figure is not None and tag not in VOID_TAGS and self._stack:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if self._figure is None:
            return
        if tag == "figure" and not any(t == "figure" for t, _ in self._stack):
            self._figure = None
            return
        while self._stack:  # tolerate unclosed children, as browsers do
            name, _ = self._stack.pop()
            if name == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._figure is None:
            return
        for _, part in self._stack:
            if part is not None:
                self._figure.parts[part] += data

    def tags(self, name: str) -> list[dict[str, str]]:
        return [attrs for tag, attrs in self.elements if tag == name]


def scan(html: str) -> PageScan:
    parser = PageScan()
    parser.feed(html)
    parser.close()
    return parser


def page_path(site: Path, url: str) -> Path:
    """The file of a site URL (``/a/b/`` is ``a/b/index.html``)."""
    relative = url.split("#", 1)[0].lstrip("/")
    if relative == "" or relative.endswith("/"):
        relative += "index.html"
    return site / relative


def read_page(site: Path, url: str) -> str:
    return page_path(site, url).read_text(encoding="utf-8")


def figures_of(site: Path, url: str) -> list[SnippetFigure]:
    return scan(read_page(site, url)).figures


def figure_with_code(figures: list[SnippetFigure], code: str) -> SnippetFigure:
    """The one figure whose displayed code contains ``code``."""
    found = [f for f in figures if code in f.text("code")]
    assert len(found) == 1, f"{len(found)} figures show {code!r}: {[str(f) for f in figures]}"
    return found[0]


def line_of(text: str, needle: str) -> int:
    """The 1-based line of ``text`` that is exactly ``needle``."""
    return text.splitlines().index(needle) + 1


def execution_footer(html: str) -> str:
    match = re.search(r'<section class="execution"[^>]*>(.*?)</section>', html, re.DOTALL)
    assert match, "the page has no execution footer"
    return parse_page(match.group(1)).text


def timings_rows(site: Path) -> dict[str, str]:
    """Row id -> the row's HTML on /timings/."""
    html = read_page(site, "/timings/")
    return dict(re.findall(r'<tr id="([^"]+)"[^>]*>(.*?)</tr>', html, re.DOTALL))


def python_fences(path: Path) -> list[tuple[int, int, str]]:
    """(fence line, first code line, code) of each ```python fence of a Markdown file: read
    here independently of raypress's parser."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fences, i = [], 0
    while i < len(lines):
        opening = re.match(r"^```\s*(\w+)", lines[i])
        if opening:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            if opening.group(1) == "python":
                fences.append((i + 1, i + 2, "\n".join(lines[i + 1 : end]) + "\n"))
            i = end
        i += 1
    return fences


def post(title: str, date: str, body: str, **front: object) -> str:
    """A post file: front matter (title, date and ``front``) and ``body``."""
    lines = ["---", f"title: {title}", f"date: {date}"]
    lines += [f"{key}: {value}" for key, value in front.items()]
    return "\n".join([*lines, "---", "", body.strip("\n"), ""])


def fence(code: str, *options: str) -> str:
    """A ```python fence with ``#|`` option lines."""
    head = "".join(f"#| {option}\n" for option in options)
    return f"```python\n{head}{code.strip(chr(10))}\n```\n"


def run(project: Project, *args: str) -> BuildResult:
    """``raypress build`` of ``project`` with execution on (in-process, the real CLI)."""
    return project.build(*args, execute=True)


def problem_lines(result: BuildResult, source: str) -> list[str]:
    return [line for line in result.err_lines if line.startswith(source + ":")]


# -- raylet processes ------------------------------------------------------------------------


def raylet_pids() -> set[int]:
    """``pgrep -f raylet``, without this process and its parents (their command lines may
    mention the word)."""
    found = subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True, check=False)
    mine = {os.getpid(), *ancestors(os.getpid())}
    return {int(pid) for pid in found.stdout.split()} - mine


def ancestors(pid: int) -> list[int]:
    """The parent, grandparent, ... of ``pid`` (as far as /proc tells)."""
    chain: list[int] = []
    while pid > 1 and len(chain) < 64:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after "(comm) state"
        chain.append(pid)
    return chain


@dataclass
class WatchedBuild:
    """A build run as a subprocess, and the raylets seen while it ran."""

    result: BuildResult
    root: Path
    seconds: float
    started_at: datetime
    before: set[int]  # raylets before the build
    after: set[int]  # raylets once it exited
    own: set[int]  # raylets seen during the build that descended from the build process

    @property
    def site(self) -> Path:
        return self.root / "_site"


def watched_build(root: Path, *args: str, timeout: float = 600) -> WatchedBuild:
    """``python -m raypress build --root ROOT *args`` in a subprocess, polling for raylet
    processes that descend from it while it runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAYPRESS_", "RAY_"))}
    before = raylet_pids()
    started_at = datetime.now(UTC)
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "raypress", "build", "--root", str(root), *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    own: set[int] = set()
    try:
        deadline = start + timeout
        while process.poll() is None:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"build of {root} still running after {timeout} s")
            own |= {pid for pid in raylet_pids() - before if process.pid in ancestors(pid)}
            time.sleep(0.05)
        out, err = process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    seconds = time.perf_counter() - start
    result = BuildResult(process.returncode, out, err)
    return WatchedBuild(result, root, seconds, started_at, before, raylet_pids(), own)


def new_project_dir(root: Path, posts: list[Path]) -> Path:
    """A project folder with the theme, ``posts`` and a site.toml."""
    root.mkdir(parents=True)
    shutil.copytree(TEMPLATES, root / "templates")
    (root / "posts").mkdir()
    for path in posts:
        shutil.copy2(path, root / "posts" / path.name)
    (root / "site.toml").write_text(
        f"title = {toml_value('execution test site')}\nurl = {toml_value(SITE_URL)}\n",
        encoding="utf-8",
    )
    return root


# -- the example posts, Ray included: built once -----------------------------------------------


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> WatchedBuild:
    """The repository's example posts (the seed post and the other Ray posts), built once
    with execution by the real command line in a subprocess."""
    posts = sorted(EXAMPLE_POSTS.glob("*.md"))
    root = new_project_dir(tmp_path_factory.mktemp("examples") / "site", posts)
    return watched_build(root)


@pytest.mark.slow
def test_examples_build_runs_every_post_on_a_cluster_of_its_own(examples: WatchedBuild) -> None:
    result = examples.result
    assert result.code == 0, str(result)
    assert result.err == "", str(result)
    for path in sorted(EXAMPLE_POSTS.glob("*.md")):
        ran = re.search(
            rf"^ran posts/{re.escape(path.name)}: (\d+) snippets? in \S+ \S+ \[ok\]",
            result.out,
            re.MULTILINE,
        )
        assert ran, f"no 'ran ... [ok]' line for {path.name}\n{result}"
        runnable = [f for f in python_fences(path) if "#| eval: false" not in f[2]]
        assert int(ran.group(1)) == len(runnable), ran.group(0)
    # a fresh cluster per Ray post, of the shape its ray.init asks for
    ray_posts = [p for p in EXAMPLE_POSTS.glob("*.md") if "import ray" in p.read_text()]
    started = re.findall(r"Ray cluster \((.*?)\) at \S+, started in", result.out)
    assert sorted(started) == sorted(
        "num_cpus=4" if re.search(r"num_cpus\s*=\s*4", p.read_text()) else "Ray's defaults"
        for p in ray_posts
    ), result.out
    assert "ran the snippets of 4 post(s)" in result.out


@pytest.mark.slow
def test_examples_build_started_a_raylet_and_stopped_it(examples: WatchedBuild) -> None:
    """The control for the no-cluster test below: a Ray build's raylet is seen descending
    from the build, and it is gone when the build has exited (the cluster is stopped)."""
    assert examples.own, "no raylet descending from the build was seen while it ran"
    still_running = examples.own & raylet_pids()
    assert not still_running, f"raylets of the finished build still running: {still_running}"


@pytest.mark.slow
def test_seed_post_shows_the_real_ray_results(examples: WatchedBuild) -> None:
    figures = figures_of(examples.site, SEED_URL)
    shown = figure_with_code(figures, "ray_results\n")  # the bare-expression snippet
    out = shown.text("result")
    assert out.startswith("Out:"), str(shown)
    assert out.strip().endswith("]"), out
    values = [int(v) for v in re.findall(r"(?:np\.int64\()?(\d+)\)?(?=[,\]])", out)]
    assert values == [i * i for i in range(100)], out
    assert "9801" in out and ("np.int64(9801)" in out or "9801]" in out)


@pytest.mark.slow
def test_seed_post_has_a_wall_time_for_every_snippet(examples: WatchedBuild) -> None:
    fences = python_fences(SEED)
    figures = figures_of(examples.site, SEED_URL)
    assert [int(f.attrs["data-line"]) for f in figures] == [line for line, _, _ in fences]
    for figure in figures:
        assert figure.classes == {"snippet"}, str(figure)  # not failed, not "not-run"
        assert re.fullmatch(DURATION, figure.text("timing")), str(figure)
        assert re.fullmatch(
            rf"wall time {DURATION} \(CPU time {DURATION}\)", figure.timing_title
        ), str(figure)
        assert not figure.has("error"), str(figure)
    # the timing is real: the snippet that waits for 100 tasks is not faster than a µs
    get = next(f for f in figures if f.attrs.get("data-label") == "get")
    assert not get.text("timing").endswith(("ns", "µs")), str(get)
    # what ray.init(num_cpus = 4) ran on is on the page, by the snippet and in the footer
    init = figure_with_code(figures, "ray.init(num_cpus = 4)")
    assert "ran on a fresh cluster of 4 CPUs, 0 GPUs, as asked" in init.text("notice")
    footer = execution_footer(read_page(examples.site, SEED_URL))
    assert "asked for num_cpus=4 and ran on a fresh cluster of 4 CPUs" in footer


@pytest.mark.slow
def test_seed_post_inline_expressions_are_the_labelled_snippets_times(
    examples: WatchedBuild,
) -> None:
    html = read_page(examples.site, SEED_URL)
    assert "inline-expression" not in html
    assert "{python}" not in html
    text = parse_page(html).text
    match = re.search(
        rf"this took ({DURATION}) to stage the 100 calls, and ({DURATION}) for ray\.get", text
    )
    assert match, text[-600:]
    badges = {
        f.attrs["data-label"]: f.text("timing")
        for f in figures_of(examples.site, SEED_URL)
        if "data-label" in f.attrs
    }
    assert (match.group(1), match.group(2)) == (badges["staging"], badges["get"])


@pytest.mark.slow
def test_seed_post_footer_says_what_it_was_measured_on(examples: WatchedBuild) -> None:
    html = read_page(examples.site, SEED_URL)
    footer = execution_footer(html)
    assert f"Python {platform.python_version()}" in footer, footer
    assert f"Ray {version('ray')}" in footer, footer
    cpus = os.cpu_count()
    assert f"({cpus} CPU{'s' if cpus != 1 else ''})" in footer, footer
    stamp = re.search(r'<section class="execution"[^>]*>.*?<time datetime="([^"]+)"', html, re.S)
    assert stamp, "no measurement date in the footer"
    measured = datetime.fromisoformat(stamp.group(1))
    earliest = examples.started_at.replace(microsecond=0) - timedelta(seconds=1)
    assert earliest <= measured <= datetime.now(UTC), (measured, examples.started_at)


@pytest.mark.slow
def test_seed_post_links_its_code_as_a_percent_script(examples: WatchedBuild) -> None:
    page = scan(read_page(examples.site, SEED_URL))
    downloads = [a["href"] for a in page.tags("a") if "download" in a]
    scripts = [href for href in downloads if href.endswith(".py")]
    assert len(scripts) == 1, downloads
    assert [h for h in downloads if h.endswith(".ipynb")], downloads  # and the notebook
    href = scripts[0]
    assert href.startswith(SEED_URL) and href.endswith(".py"), href
    script_file = page_path(examples.site, href)
    assert script_file.is_file(), href
    script = script_file.read_text(encoding="utf-8")
    compile(script, str(script_file), "exec")  # valid Python
    fences = python_fences(SEED)
    cells = [line for line in script.splitlines() if re.match(r"# %%(?! \[markdown\])", line)]
    assert len(cells) == len(fences), script
    for line, _, code in fences:  # every snippet, with its place in the post
        assert f"# posts/{SEED.name}:{line}\n" in script
        body = "".join(c + "\n" for c in code.splitlines() if not c.startswith("#|"))
        assert body in script, body
    assert "#|" not in script


@pytest.mark.slow
def test_timings_page_lists_every_example_post_with_links_back(examples: WatchedBuild) -> None:
    rows = timings_rows(examples.site)
    assert len(rows) == len(list(EXAMPLE_POSTS.glob("*.md"))), list(rows)
    seed_html = read_page(examples.site, SEED_URL)
    reports = [
        a["href"] for a in scan(seed_html).tags("a") if a.get("href", "").startswith("/timings/")
    ]
    assert len(reports) == 1, reports
    row_id = reports[0].split("#", 1)[1]
    assert row_id in rows, (reports, list(rows))
    row = rows[row_id]
    links = re.findall(r'href="([^"]+)"', row)
    assert SEED_URL in links, row
    assert any(link.startswith(SEED_URL + "#snippet-") for link in links), row  # the slowest
    cells = [parse_page(c).text for c in re.findall(r"<td>(.*?)</td>", row, re.DOTALL)]
    assert cells[1] == str(len(python_fences(SEED))), cells
    assert re.fullmatch(DURATION, cells[2]), cells
    assert cells[4] == "0", cells
    for html in rows.values():  # every row links to a page that exists, none failed
        url = re.search(r'<td><a href="([^"]+)"', html)
        assert url and page_path(examples.site, url.group(1)).is_file(), html
        assert "<strong>" not in html, html


@pytest.mark.slow
def test_ray_task_output_lands_in_its_snippet_cleanly(examples: WatchedBuild) -> None:
    figures = figures_of(examples.site, TASKS_URL)
    task = figure_with_code(figures, "where_am_i")
    match = re.search(
        r"^\(where_am_i pid=(\d+)\) task 'hello' running in worker pid (\d+)$",
        task.text("stdout"),
        re.MULTILINE,
    )
    assert match, str(task)
    assert match.group(1) == match.group(2)  # the attribution names the worker that printed
    for path in sorted(examples.site.rglob("index.html")):
        html = path.read_text(encoding="utf-8")
        assert "\x1b[" not in html, path
        assert "[repeated" not in html, path  # Ray's log deduplication
        assert not re.search(r"\bINFO\b.*(?:worker|ray)", html), path


# -- non-Ray posts, built in-process ----------------------------------------------------------

FAILING_BODY = (
    "Before the failure.\n\n"
    + fence('print("before " + "the failure")')
    + "\nThen:\n\n"
    + fence("y = 2\n1/0")
    + "\n"
    + fence('print("after " + "the failure")')
)


def test_failing_snippet_fails_the_build_but_the_site_is_written(project: Project) -> None:
    failing = post("Failing", "2025-01-01", FAILING_BODY)
    project.post("2025-01-01-failing.md", failing)
    project.post("2025-01-02-fine.md", post("Fine", "2025-01-02", fence('print("fine " + "too")')))
    line = line_of(failing, "1/0")
    source = "posts/2025-01-01-failing.md"

    result = run(project)
    assert result.code == 1, str(result)
    problems = problem_lines(result, source)
    assert len(problems) == 1, str(result)
    assert problems[0].startswith(f"{source}:{line}: "), problems
    assert "ZeroDivisionError: division by zero" in problems[0], problems
    assert "the site was built" in result.err

    figures = figures_of(project.site, "/2025/01/01/failing/")
    before, failed, after = figures
    assert before.text("stdout") == "before the failure\n", str(before)
    assert "failed" in failed.classes, str(failed)
    error = failed.text("error")
    assert f'File "{source}", line {line}' in error, error
    assert error.rstrip().endswith("ZeroDivisionError: division by zero"), error
    assert "raypress" not in error.replace(source, ""), error  # trimmed to the post's frames
    assert after.classes == {"snippet", "not-run"}, str(after)
    assert not after.has("timing") and not after.has("output"), str(after)
    assert "after the failure" not in project.page("2025/01/01/failing/")
    # everything else was built, the failing post is flagged on /timings/
    assert figures_of(project.site, "/2025/01/02/fine/")[0].text("stdout") == "fine too\n"
    assert (project.site / "2025/01/01/failing/failing.py").is_file()
    assert 'class="failed"' in project.page("timings/")

    again = run(project)  # a failure is never "up to date": the next build fails again
    assert again.code == 1, str(again)
    assert "up to date" not in again.out, str(again)
    assert problem_lines(again, source) == problems, str(again)


def test_expected_exception_passes_and_the_post_goes_on(project: Project) -> None:
    body = (
        fence('raise ValueError("expected " + "boom")', "error: true")
        + "\n"
        + fence('print("still " + "running")')
    )
    project.post("2025-01-01-expected.md", post("Expected", "2025-01-01", body))
    result = run(project)
    assert result.code == 0, str(result)
    assert result.err == "", str(result)
    raised, following = figures_of(project.site, "/2025/01/01/expected/")
    assert "ValueError: expected boom" in raised.text("error"), str(raised)
    assert "failed" not in raised.classes, str(raised)
    assert raised.has("timing")
    assert following.text("stdout") == "still running\n", str(following)
    script = (project.site / "2025/01/01/expected/expected.py").read_text(encoding="utf-8")
    assert 'tags=["raises-exception"]' in script, script


def test_expected_exception_that_is_not_raised_fails_the_build(project: Project) -> None:
    text = post("Quiet", "2025-01-01", fence("x = 1", "error: true"))
    project.post("2025-01-01-quiet.md", text)
    result = run(project)
    assert result.code == 1, str(result)
    problems = problem_lines(result, "posts/2025-01-01-quiet.md")
    assert len(problems) == 1, str(result)
    assert problems[0].startswith(f"posts/2025-01-01-quiet.md:{line_of(text, '```python')}:")
    assert "error: true" in problems[0], problems
    (figure,) = figures_of(project.site, "/2025/01/01/quiet/")
    assert "failed" in figure.classes, str(figure)


def test_output_is_escaped_and_html_output_sanitised(project: Project) -> None:
    payload = "</pre><script>alert(1)</script>"
    body = (  # split strings: the payloads themselves appear only in the output
        fence('print("</pre><scr" + "ipt>alert(1)</script>")')
        + "\n"
        + fence('import sys\nprint("<scr" + "ipt>alert(2)</script>", file=sys.stderr)')
        + "\n"
        + fence('"<scr" + "ipt>alert(3)</script>"')
        + "\n"
        + fence(
            "class Evil:\n"
            "    def _repr_html_(self):\n"
            "        return ('<b>bold</b><script>alert(4)</script>'\n"
            '                \'<img src="x.png" onerror="alert(5)">\')\n'
            "Evil()"
        )
    )
    project.post("2025-01-01-evil.md", post("Evil", "2025-01-01", body))
    theme = project.build()  # --no-exec: the theme's own script elements
    assert theme.code == 0, str(theme)
    scripts = scan(project.page("2025/01/01/evil/")).tags("script")
    # the default theme's own: the post's JSON-LD and the copy button of its code blocks
    assert [s.get("type") or s.get("src") for s in scripts] == [
        "application/ld+json",
        "/assets/copy-code.js",
    ], scripts
    theme_scripts = len(scripts)

    result = run(project)
    assert result.code == 0, str(result)
    html = project.page("2025/01/01/evil/")
    page = scan(html)
    assert len(page.tags("script")) == theme_scripts, [a for t, a in page.elements]
    handlers = [(t, k) for t, attrs in page.elements for k in attrs if k.startswith("on")]
    assert handlers == [], handlers
    out, err, value, rich = page.figures
    assert out.text("stdout") == payload + "\n", str(out)
    assert err.text("stderr") == "<script>alert(2)</script>\n", str(err)
    assert "<script>alert(3)</script>" in value.text("result"), str(value)
    assert "bold" in rich.text("html") and rich.find("b"), str(rich)
    assert "alert(4)" not in rich.text("html"), str(rich)
    assert parse_page(html).text.count(payload) == 1  # shown as text, once (code is spans)


def test_echo_output_and_eval_options(project: Project) -> None:
    body = (
        fence('print("HID" + "DEN-CODE")', "echo: false")
        + "\n"
        + fence('print("NO-" + "OUTPUT")\n"NO-" + "VALUE"', "output: false")
        + "\n"
        + fence('print("NEV" + "ER-RUN")', "eval: false")
    )
    project.post("2025-01-01-options.md", post("Options", "2025-01-01", body))
    result = run(project)
    assert result.code == 0, str(result)
    html = project.page("2025/01/01/options/")
    hidden, quiet, shown = scan(html).figures
    # echo: false: no code, the output
    assert not hidden.has("code") and html.count("HID") == 1, str(hidden)  # the output
    assert hidden.text("stdout") == "HIDDEN-CODE\n", str(hidden)
    assert hidden.has("timing")
    # output: false: the code and its time, no output
    assert "NO-" in quiet.text("code") and quiet.has("timing"), str(quiet)
    assert not quiet.has("output") and "NO-OUTPUT" not in html and "NO-VALUE" not in html
    # eval: false: the code, not run, no output, no time
    assert shown.classes == {"snippet", "not-run"}, str(shown)
    assert "NEV" in shown.text("code") and not shown.has("timing") and not shown.has("output")
    assert "NEVER-RUN" not in html
    assert "#|" not in html  # options are stripped from the displayed code
    assert "ran posts/2025-01-01-options.md: 2 snippets" in result.out, result.out


def test_front_matter_execute_false_runs_nothing_for_that_post(project: Project) -> None:
    project.post(
        "2025-01-01-shown.md",
        post("Shown", "2025-01-01", fence('print("EXE" + "CUTED")\n1/0'), execute="false"),
    )
    project.post("2025-01-02-ran.md", post("Ran", "2025-01-02", fence('print("r" + "an")')))
    result = run(project)
    assert result.code == 0, str(result)  # its 1/0 never ran
    assert "ran the snippets of 1 post(s)" in result.out, result.out
    html = project.page("2025/01/01/shown/")
    (figure,) = scan(html).figures
    assert "EXE" in figure.text("code") and not figure.has("output") and not figure.has("timing")
    assert "EXECUTED" not in html
    assert '<section class="execution"' not in html
    timings = project.page("timings/")
    assert 'id="post-2025-01-01-shown"' not in timings
    assert re.search(r'Not run in this build.*href="/2025/01/01/shown/"', timings, re.DOTALL)
    assert figures_of(project.site, "/2025/01/02/ran/")[0].text("stdout") == "ran\n"


@pytest.mark.parametrize("how", ["--no-exec", "execute = false"])
def test_no_exec_runs_nothing_at_all(project: Project, how: str) -> None:
    project.post("2025-01-01-a.md", post("A", "2025-01-01", fence('print("A" + "RAN")\n1/0')))
    project.post("2025-01-02-b.md", post("B", "2025-01-02", fence("import ray\nray.init()")))
    if how == "--no-exec":
        result = project.build()  # the fixture's build passes --no-exec
    else:
        project.configure(title="t", url=SITE_URL, execute=False)
        result = run(project)
    assert result.code == 0, str(result)
    assert result.err == "", str(result)
    assert "ran " not in result.out and "Ray cluster" not in result.out, result.out
    for path in project.site.rglob("*.html"):
        html = path.read_text(encoding="utf-8")
        assert 'class="timing"' not in html and "snippet-output" not in html, path
        assert '<section class="execution"' not in html, path
    assert "No post's snippets were run" in project.page("timings/")
    # the code is still published
    assert (project.site / "2025/01/01/a/a.py").is_file()


def test_matplotlib_figure_is_a_png_beside_the_page(project: Project) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(3, 2))\n"
        "_ = ax.plot([0, 1, 2], [0, 1, 4])"
    )
    project.post("2025-01-01-plot.md", post("Plot", "2025-01-01", fence(code)))
    result = run(project)
    assert result.code == 0, str(result)
    (figure,) = figures_of(project.site, "/2025/01/01/plot/")
    images = figure.find("img", "figure")
    assert len(images) == 1, str(figure)
    src = images[0]["src"]
    assert "/" not in src and images[0].get("alt"), images
    data = (project.site / "2025/01/01/plot" / src).read_bytes()
    assert data.startswith(PNG_SIGNATURE), data[:16]
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width > 50 and height > 50, (width, height)


def test_snippet_timeout_kills_it_and_the_build_goes_on(project: Project) -> None:
    body = (
        fence('print("start" + "ed")')
        + "\n"
        + fence("while True:\n    pass", "timeout: 1")
        + "\n"
        + fence('print("never" + "-printed")')
    )
    text = post("Loop", "2025-01-01", body)
    project.post("2025-01-01-loop.md", text)
    project.post("2025-01-02-other.md", post("Other", "2025-01-02", fence('print("oth" + "er")')))
    start = time.perf_counter()
    result = run(project)
    seconds = time.perf_counter() - start
    assert result.code == 1, str(result)
    assert seconds < 30, seconds
    problems = problem_lines(result, "posts/2025-01-01-loop.md")
    loop_fence = [i + 1 for i, t in enumerate(text.splitlines()) if t == "```python"][1]
    assert len(problems) == 1 and problems[0].startswith(f"posts/2025-01-01-loop.md:{loop_fence}:")
    assert "timed out" in problems[0], problems
    started, looping, never = figures_of(project.site, "/2025/01/01/loop/")
    assert started.text("stdout") == "started\n"
    assert "timed-out" in looping.classes, str(looping)
    assert "timed out after 1 s" in looping.text("notice"), str(looping)
    assert "not-run" in never.classes and not never.has("timing"), str(never)
    assert "never-printed" not in project.page("2025/01/01/loop/")
    assert figures_of(project.site, "/2025/01/02/other/")[0].text("stdout") == "other\n"


def test_timeouts_from_the_cli_front_matter_and_snippet(project: Project) -> None:
    """``--timeout`` is the default; a post's ``timeout:`` and a snippet's beat it."""
    project.post(
        "2025-01-01-cli.md", post("Cli", "2025-01-01", fence("import time\ntime.sleep(60)"))
    )
    project.post(
        "2025-01-02-front.md",
        post("Front", "2025-01-02", fence("import time\ntime.sleep(3)"), timeout=1),
    )
    project.post(
        "2025-01-03-longer.md",
        post("Longer", "2025-01-03", fence("import time\ntime.sleep(1.5)", "timeout: 20")),
    )
    start = time.perf_counter()
    result = run(project, "--timeout", "1", "--jobs", "3")
    assert time.perf_counter() - start < 30
    assert result.code == 1, str(result)
    assert "timed out after 1 s" in " ".join(problem_lines(result, "posts/2025-01-01-cli.md"))
    assert "timed out after 1 s" in " ".join(problem_lines(result, "posts/2025-01-02-front.md"))
    assert problem_lines(result, "posts/2025-01-03-longer.md") == [], str(result)
    (longer,) = figures_of(project.site, "/2025/01/03/longer/")
    assert longer.classes == {"snippet"} and longer.text("timing").endswith(" s"), str(longer)


def test_output_cap_from_the_config(project: Project) -> None:
    project.configure(title="t", url=SITE_URL, output_cap_bytes=1000)
    project.post("2025-01-01-big.md", post("Big", "2025-01-01", fence('print("x" * 50_000)')))
    result = run(project)
    assert result.code == 0, str(result)
    (figure,) = figures_of(project.site, "/2025/01/01/big/")
    assert 0 < figure.text("stdout").count("x") <= 1000, len(figure.text("stdout"))
    assert "trunc" in figure.text("notice").lower(), str(figure)


def test_build_without_ray_posts_starts_no_cluster(tmp_path: Path) -> None:
    """No post to run imports ray (one mentions it in prose and strings, one imports it but
    is not executed, one has it in an eval: false fence): no Ray cluster, no raylet."""
    root = new_project_dir(tmp_path / "site", [])
    numpy_post = fence("import numpy as np\nx = np.arange(10)") + "\n" + fence("print(x.sum())")
    (root / "posts/2025-01-01-numpy.md").write_text(
        post("NumPy", "2025-01-01", "Not about ray.\n\n" + numpy_post), encoding="utf-8"
    )
    (root / "posts/2025-01-02-words.md").write_text(
        post("Words", "2025-01-02", fence('print("import ray")\nray = "a ray of light"')),
        encoding="utf-8",
    )
    (root / "posts/2025-01-03-off.md").write_text(
        post("Off", "2025-01-03", fence("import ray\nray.init()"), execute="false"),
        encoding="utf-8",
    )
    (root / "posts/2025-01-04-shown.md").write_text(
        post(
            "Shown",
            "2025-01-04",
            fence("import ray\nray.init()", "eval: false") + "\n" + fence("print(1)"),
        ),
        encoding="utf-8",
    )
    build = watched_build(root)
    assert build.result.code == 0, str(build.result)
    assert "Ray cluster" not in build.result.out + build.result.err, str(build.result)
    assert "ran the snippets of 3 post(s)" in build.result.out, build.result.out
    assert build.own == set(), f"raylets started by a build without Ray posts: {build.own}"
    # (`pgrep -f raylet` before and after alone would blame other builds on this machine;
    # every raylet a build starts descends from it while it runs, and the polling sees it)
    assert not (build.after - build.before) & build.own
    page = figures_of(build.site, "/2025/01/01/numpy/")
    assert page[1].text("stdout") == "45\n", str(page[1])


def test_shell_command_fenced_as_python_suggests_bash(project: Project) -> None:
    pip = post("Pip", "2025-01-01", "Install it:\n\n" + fence("pip install ray"))
    project.post("2025-01-01-pip.md", pip)
    project.post("2025-01-02-typo.md", post("Typo", "2025-01-02", fence("def broken(:\n    pass")))
    result = run(project)
    assert result.code == 1, str(result)
    (problem,) = problem_lines(result, "posts/2025-01-01-pip.md")
    assert problem.startswith(f"posts/2025-01-01-pip.md:{line_of(pip, 'pip install ray')}:")
    assert "SyntaxError" in problem and "bash" in problem, problem
    (figure,) = figures_of(project.site, "/2025/01/01/pip/")
    assert "failed" in figure.classes and "bash" in figure.text("notice"), str(figure)
    assert "SyntaxError" in figure.text("error"), str(figure)
    # a real syntax error in Python code is not taken for a shell command
    (typo,) = problem_lines(result, "posts/2025-01-02-typo.md")
    assert "SyntaxError" in typo and "bash" not in typo, typo


def test_snippets_read_files_beside_the_post(project: Project) -> None:
    project.write("posts/numbers.txt", "1\n2\n3\n")
    code = 'print(sum(int(line) for line in open("numbers.txt")))'
    project.post("2025-01-01-data.md", post("Data", "2025-01-01", fence(code)))
    result = run(project)
    assert result.code == 0, str(result)
    (figure,) = figures_of(project.site, "/2025/01/01/data/")
    assert figure.text("stdout") == "6\n", str(figure)


def test_failing_inline_expression_fails_the_build(project: Project) -> None:
    body = "Good: `{python} 6 * 7`. Bad: `{python} undefined_name + 1`.\n\n" + fence("x = 1")
    text = post("Inline", "2025-01-01", body)
    project.post("2025-01-01-inline.md", text)
    result = run(project)
    assert result.code == 1, str(result)
    (problem,) = problem_lines(result, "posts/2025-01-01-inline.md")
    assert problem.startswith(f"posts/2025-01-01-inline.md:{line_of(text, body.splitlines()[0])}:")
    assert "NameError" in problem, problem
    html = project.page("2025/01/01/inline/")
    assert '<span class="inline-result">42</span>' in html
    assert re.search(
        r'<code class="inline-expression failed"[^>]*>undefined_name \+ 1</code>', html
    )


# -- bugs found while writing these tests: these fail until raypress is fixed ------------------


@pytest.mark.parametrize(
    ("args", "config"),
    [
        (("--timeout", "0"), {}),
        (("--timeout", "-1"), {}),
        ((), {"snippet_timeout": 0}),
        ((), {"post_timeout": -5}),
    ],
    ids=["cli-0", "cli-negative", "config-snippet-0", "config-post-negative"],
)
def test_non_positive_build_timeouts_are_refused(
    project: Project, args: tuple[str, ...], config: dict[str, int]
) -> None:
    """A post's ``timeout:`` and a snippet's ``#| timeout:`` must be positive (checked with
    file:line); the build-wide ones are not checked: every snippet then "timed out after
    -1 s" (or 0 s) at once. They should be refused before anything runs."""
    project.configure(title="t", url=SITE_URL, **config)
    project.post("2025-01-01-a.md", post("A", "2025-01-01", fence('print("hello")')))
    result = run(project, *args)
    assert result.code != 0, str(result)
    assert "ran posts/" not in result.out, str(result)
    assert "timed out after" not in result.err, str(result)
    assert "timeout" in result.err, str(result)


def test_interrupted_and_uncompiled_snippets_claim_no_measured_zero(project: Project) -> None:
    """A snippet killed by its timeout burned a second of CPU, yet its badge's title says
    "CPU time 0.00 ns"; a snippet that did not even compile shows a "0.00 ns" wall time.
    Neither was measured: the page should not show a zero as if it had been."""
    body = fence("while True:\n    pass", "timeout: 1")
    project.post("2025-01-01-busy.md", post("Busy", "2025-01-01", body))
    project.post("2025-01-02-pip.md", post("Pip", "2025-01-02", fence("pip install ray")))
    result = run(project)
    assert result.code == 1, str(result)
    (busy,) = figures_of(project.site, "/2025/01/01/busy/")
    assert "CPU time 0.00 ns" not in busy.timing_title, busy.timing_title
    (pip,) = figures_of(project.site, "/2025/01/02/pip/")
    assert pip.text("timing") != "0.00 ns", str(pip)


def test_timings_page_does_not_call_prose_only_posts_not_run(project: Project) -> None:
    """/timings/ lists under "Not run in this build" every post without an execution, so
    a post with no code at all is listed as if its snippets had been skipped."""
    project.post("2025-01-01-code.md", post("Code", "2025-01-01", fence("x = 1")))
    project.post("2025-01-02-prose.md", post("Prose", "2025-01-02", "Only words here.\n"))
    project.post("2025-01-03-off.md", post("Off", "2025-01-03", fence("x = 2"), execute="false"))
    result = run(project)
    assert result.code == 0, str(result)
    timings = project.page("timings/")
    not_run = timings.split('id="not-run"', 1)[1]
    assert 'href="/2025/01/03/off/"' in not_run  # skipped on purpose: listed
    assert 'href="/2025/01/02/prose/"' not in not_run, not_run  # nothing to run


def _fork_servers_of_this_process() -> list[str]:
    """The command lines of this process's children that are sandboxes or fork servers."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue  # ended meanwhile
            if "forkserver" in argv or "bwrap" in argv or "sandbox_launch" in argv:
                found.append(argv)
    return found


def _posts_that_may_run(project: Project) -> None:
    """Posts of which only ``code`` and ``tilde`` will run: an inline expression alone, a
    bash fence, ``execute: false`` and ``eval: false`` run nothing."""
    project.post("2025-01-01-code.md", post("Code", "2025-01-01", fence("print(1)")))
    project.post("2025-01-02-tilde.md", "---\ntitle: T\n---\n\n~~~ {python}\nx = 1\n~~~\n")
    project.post("2025-01-03-inline.md", "---\ntitle: I\n---\n\nIt is `{python} 6 * 7`.\n")
    project.post("2025-01-04-bash.md", post("Bash", "2025-01-04", "```bash\nls\n```"))
    project.post("2025-01-05-off.md", post("Off", "2025-01-05", fence("1"), execute="false"))
    project.post("2025-01-06-shown.md", post("Shown", "2025-01-06", fence("1", "eval: false")))


def test_the_engine_starts_early_only_for_posts_that_will_run(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A guess from the raw files (see freeze/early_engine.py): a post that executes, with a
    Python fence not marked ``eval: false`` and no record yet (or --rerun) starts the
    engine while the posts are parsed; no other (an inline expression alone runs nothing)."""
    from raypress.commands.build import available_layouts
    from raypress.config import load_config
    from raypress.freeze.early_engine import modules_to_warm, will_run
    from raypress.freeze.run_plan import execution_settings
    from raypress.publish.posts import read_post

    _posts_that_may_run(project)
    config = load_config(project.root)
    layouts = available_layouts(config)
    posts = [read_post(p, config, layouts) for p in sorted((project.root / "posts").iterdir())]

    def names(rerun: bool | frozenset[str] = False) -> list[str]:
        settings = execution_settings(config, None)
        return [Path(p.source).stem[11:] for p in will_run(posts, config, settings, rerun)]

    assert names() == ["code", "tilde"]
    assert modules_to_warm(posts) == []
    project.post("2025-01-07-np.md", post("NP", "2025-01-07", fence("import numpy as np\n1")))
    project.post("2025-01-08-mpl.md", "---\ntitle: M\n---\n\n> from matplotlib import x\n")
    project.post("2025-01-09-prose.md", "---\ntitle: P\n---\n\nWe never import numpy here.\n")
    more = [read_post(project.root / "posts" / n, config, layouts) for n in (
        "2025-01-07-np.md", "2025-01-08-mpl.md", "2025-01-09-prose.md")]  # fmt: skip
    assert modules_to_warm(more) == ["matplotlib", "numpy"]  # warmed while parsing
    assert project.build("--quiet", execute=True).code == 0  # records now exist
    assert names() == []  # a rebuild starts no engine before it knows it needs one
    assert names(frozenset({"posts/2025-01-01-code.md"})) == ["code"]
    assert names(True) == ["code", "tilde"]
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # sessions go to that cluster
    assert names(True) == []


def test_the_command_line_guesses_from_the_raw_files_alone(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line's guess (``files_to_run``, before any parsing): the same posts as
    ``will_run``, front matter read only for lines that keep a post from running."""
    from raypress.config import load_config
    from raypress.freeze.early_engine import files_to_run
    from raypress.freeze.run_plan import execution_settings
    from raypress.publish.posts import find_post_files

    _posts_that_may_run(project)
    project.post("2025-01-07-draft.md", post("D", "2025-01-07", fence("1"), draft="true"))
    project.post("2025-01-08-unpub.md", post("U", "2025-01-08", fence("1"), published="False"))
    project.post("2025-01-09-body.md", post("B", "2025-01-09", "execute: false\n\n" + fence("1")))
    crlf = post("C", "2025-01-10", fence("1"), execute="false  # shown only")
    project.post("2025-01-10-crlf.md", crlf.replace("\n", "\r\n"))

    def names(rerun: bool | frozenset[str] = False, **overrides: object) -> list[str]:
        config = load_config(project.root, **overrides)
        paths, _ = find_post_files(config)
        files = files_to_run(config, execution_settings(config, None), rerun, paths)
        return [Path(f.source).stem[11:] for f in files]

    assert names() == ["code", "tilde", "body"]  # a body line is not front matter
    assert names(drafts=True) == ["code", "tilde", "draft", "unpub", "body"]
    assert names(execute=False) == []  # --no-exec
    assert names(executor="ray") == []  # sessions on a cluster: connected when known
    assert project.build("--quiet", execute=True).code == 0  # records now exist
    assert names() == []
    assert names(frozenset({"posts/2025-01-01-code.md"})) == ["code"]
    assert names(True) == ["code", "tilde", "body"]
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert names(True) == []


_WHEN_THE_ENGINE_STARTS = """
import sys
from raypress.freeze import early_engine
from raypress.cli import main

started = []
class Watched(early_engine.EarlyEngine):
    def __init__(self, *args, **kwargs):
        started.append("raypress.publish.markdown" in sys.modules)
        super().__init__(*args, **kwargs)
early_engine.EarlyEngine = Watched
code = main(["build", "--quiet", "--root", sys.argv[1]])
print(code, started)
"""


def test_the_command_line_starts_the_engine_before_the_build_imports_markdown(
    project: Project, tmp_path: Path
) -> None:
    """The fork server boots while the build imports its libraries: one engine, started
    before Markdown is imported, runs the post; a build with nothing to run starts none,
    and so does one whose records are current."""
    project.post("2025-01-01-code.md", post("Code", "2025-01-01", fence("print(1)")))
    script = tmp_path / "watch.py"
    script.write_text(_WHEN_THE_ENGINE_STARTS)

    def started() -> str:
        done = subprocess.run(
            [sys.executable, str(script), str(project.root)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.stderr == "", done.stderr
        return done.stdout.strip()

    assert started() == "0 [False]"
    assert figures_of(project.site, "/2025/01/01/code/")[0].text("stdout") == "1\n"
    project.post("2025-01-02-prose.md", post("Prose", "2025-01-02", "No code.\n"))
    assert started() == "0 []"  # the new post runs nothing, the other has its record


def test_an_engine_started_early_is_stopped_when_the_build_stops_before_running(
    project: Project,
) -> None:
    """A template error is found while the posts are parsed, after the engine started:
    nothing runs, the build fails, and no sandbox or fork server outlives it."""
    project.post("2025-01-01-code.md", post("Code", "2025-01-01", fence("print(1)")))
    project.write("templates/post.html", "{% if %}broken{% endif %}")
    result = project.build(execute=True)
    assert result.code != 0 and "post.html" in result.out + result.err, str(result)
    assert not (project.root / "snippets").exists()  # nothing ran, nothing recorded
    assert _fork_servers_of_this_process() == []


def test_a_cold_build_with_an_early_engine_matches_a_rerun(project: Project) -> None:
    """The engine started early (cold: no records) and the one started after parsing
    (--rerun with records) give the same pages, modules warmed per run included."""
    project.post(
        "2025-01-01-numpy.md",
        post("NumPy", "2025-01-01", fence("import numpy as np\nprint(np.arange(4).sum())")),
    )
    project.post("2025-01-02-plain.md", post("Plain", "2025-01-02", fence("print('plain')")))
    assert project.build("--quiet", execute=True).code == 0
    cold = figures_of(project.site, "/2025/01/01/numpy/")[0].text("stdout")
    plain = figures_of(project.site, "/2025/01/02/plain/")[0].text("stdout")
    assert (cold, plain) == ("6\n", "plain\n")
    assert _fork_servers_of_this_process() == []
    assert project.build("--quiet", "--rerun", execute=True).code == 0
    assert figures_of(project.site, "/2025/01/01/numpy/")[0].text("stdout") == cold
