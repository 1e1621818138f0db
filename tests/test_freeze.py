"""Frozen results in snippets/: real builds on temporary copies of the example posts.

Each test builds a temporary project (the repository's templates, some example posts with
their committed records, small posts of its own) with the real pipeline or command line
and asserts on what ran ("ran posts/x.md" lines, ``BuildReport.executed``) and on the
files in snippets/, never on time. Only one test here starts a Ray cluster.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from raypress.cli import main
from raypress.commands.build import BuildReport, build
from raypress.config import load_config
from raypress.freeze.records import RecordError, read_record, record_files

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "posts"
RECORDS = REPO / "snippets"
SEED = "2025-10-27-using-the-ray-library.md"
TASKS = "2025-11-03-ray-tasks-vs-actors.md"
ARRAYS = "2025-11-10-ray-put-and-large-arrays.md"
NUMPY = "2025-11-17-numpy-vectorisation.md"
SITE_TOML = 'title = "freeze tests"\nurl = "https://example.org"\n'
CONFLICT = '<<<<<<< HEAD\n  "format": 1,\n=======\n  "format": 1,\n>>>>>>> theirs'


# -- a temporary project ----------------------------------------------------------------------


class Site:
    """A temporary raypress project built in this process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.copytree(REPO / "templates", root / "templates")
        (root / "posts").mkdir()
        (root / "site.toml").write_text(SITE_TOML, encoding="utf-8")

    def example(self, name: str, record: bool = True) -> Path:
        """Copy an example post (and its committed record, script and images)."""
        target = Path(shutil.copy2(EXAMPLES / name, self.root / "posts" / name))
        if record:
            stem = Path(name).stem
            for path in RECORDS.glob(f"{stem}.*"):
                destination = self.root / "snippets" / path.name
                destination.parent.mkdir(exist_ok=True)
                if path.is_dir():
                    shutil.copytree(path, destination)
                else:
                    shutil.copy2(path, destination)
        return target

    def post(self, name: str, *fences: str, prose: str = "Some prose.") -> Path:
        """Write ``posts/<name>`` with a paragraph of ``prose`` before each fence."""
        body = "".join(f"{prose}\n\n```python\n{code.strip()}\n```\n\n" for code in fences)
        path = self.root / "posts" / name
        title = Path(name).stem[11:].replace("-", " ").title()
        path.write_text(f"---\ntitle: {title}\n---\n\n{body}", encoding="utf-8")
        return path

    def build(self, **overrides: object) -> tuple[BuildReport, set[str], list[str]]:
        """Build; the report, the posts that ran and every log line."""
        lines: list[str] = []
        rerun = overrides.pop("rerun", False)
        config = load_config(self.root, **overrides)
        report = build(config, log=lines.append, rerun=rerun)  # type: ignore[arg-type]
        assert not report.problems, report.problems
        return report, ran(lines), lines

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, "--root", str(self.root)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    def record_json(self, post: str) -> Path:
        return record_files(load_config(self.root), f"posts/{post}").json

    def edit_record(self, post: str, change: Callable[[dict], None]) -> None:
        path = self.record_json(post)
        data = json.loads(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")

    def page(self, post: str) -> str:
        """The built page of a post whose file name is ``YYYY-MM-DD-slug.md``."""
        year, month, day, slug = post[:4], post[5:7], post[8:10], Path(post).stem[11:]
        return (self.root / "_site" / year / month / day / slug / "index.html").read_text()

    def assert_records_valid(self) -> list[str]:
        """Every record under snippets/ reads cleanly; their post paths."""
        found = []
        for path in sorted((self.root / "snippets").rglob("*.json")):
            if path.name.startswith("."):
                continue
            source = f"posts/{path.relative_to(self.root / 'snippets').with_suffix('.md')}"
            files = record_files(load_config(self.root), source)
            assert read_record(files, source) is not None, path
            found.append(source)
        return found


def ran(lines: list[str]) -> set[str]:
    """The posts a build ran, from its "ran posts/x.md: ..." progress lines."""
    return {line.split(":")[0].removeprefix("ran ") for line in lines if line.startswith("ran ")}


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path / "project")


# -- reuse ---------------------------------------------------------------------------------


def test_committed_records_build_the_examples_without_running_anything(site: Site) -> None:
    for name in (SEED, TASKS, ARRAYS, NUMPY):
        site.example(name)
    report, ran_posts, _ = site.build()
    assert ran_posts == set() and report.executed == 0
    assert report.reused == 4 and report.ok
    seed = site.page(SEED)
    recorded = json.loads(site.record_json(SEED).read_text())
    assert "9801" in seed  # the squares, from the record
    staging = recorded["inline"][0]["text"]  # inline expressions come from the record too
    assert f'<span class="inline-result">{staging}</span>' in seed


def test_prose_only_edit_runs_nothing(site: Site) -> None:
    for name in (SEED, NUMPY):
        site.example(name)
    site.build()
    path = site.root / "posts" / NUMPY
    text = path.read_text()
    # new prose above every snippet: every line number moves, no code changes
    text = text.replace("## Pairwise distances", "A new paragraph.\n\nAnd another.\n\n## Pairwise")
    path.write_text(text.replace("everyday problems", "everyday (and common) problems"))
    seed = site.root / "posts" / SEED
    seed.write_text(seed.read_text().replace("Et voila!", "Et voilà, finally!"))
    report, ran_posts, _ = site.build()
    assert ran_posts == set() and report.executed == 0 and report.reused == 2
    assert "everyday (and common) problems" in site.page(NUMPY)
    assert "Et voilà, finally!" in site.page(SEED)
    assert 'data-line="' in site.page(NUMPY)


def test_code_edit_reruns_that_post_only(site: Site) -> None:
    site.example(SEED)  # a Ray post: it must not run (no cluster is started)
    site.example(NUMPY)
    site.post("2025-01-02-small.md", "print('small')")
    _, ran_first, _ = site.build()
    assert ran_first == {"posts/2025-01-02-small.md"}
    path = site.root / "posts" / NUMPY
    path.write_text(path.read_text().replace("rng.random((800, 3))", "rng.random((300, 3))"))
    report, ran_posts, lines = site.build()
    assert ran_posts == {f"posts/{NUMPY}"}, lines
    assert report.executed == 1 and report.reused == 2
    assert any("snippet 2 changed" in line for line in lines), lines
    assert "(300, 3)" in site.page(NUMPY)
    record = read_record(record_files(load_config(site.root), f"posts/{NUMPY}"), f"posts/{NUMPY}")
    assert record is not None and "(300, 3)" in record.execution.snippets[1].stdout
    assert not any("execution: Ray cluster" in line for line in lines)


def test_execution_options_rerun_display_options_do_not(site: Site) -> None:
    path = site.post("2025-01-02-opts.md", "print('hi')")
    site.build()
    path.write_text(path.read_text().replace("```python\n", "```python\n#| echo: false\n"))
    assert site.build()[1] == set()
    path.write_text(path.read_text().replace("#| echo: false\n", "#| label: hello\n"))
    assert site.build()[1] == set()
    path.write_text(path.read_text().replace("#| label: hello\n", "#| repeat: 2\n"))
    assert site.build()[1] == {"posts/2025-01-02-opts.md"}


def test_changed_package_version_reruns_exactly_the_posts_that_imported_it(site: Site) -> None:
    site.example(NUMPY)  # imports numpy
    site.post("2025-01-02-yaml.md", "import yaml\nprint(yaml.safe_load('a: 1'))")  # PyYAML
    site.post("2025-01-03-stdlib.md", "import json\nprint(json.dumps([1]))")
    site.build()
    site.build(rerun=True)  # every record now from this machine

    def bump(name: str) -> Callable[[dict], None]:
        def change(data: dict) -> None:
            if name in data["environment"]["installed"]:
                data["environment"]["installed"][name] = "0.0.1"

        return change

    for post in (NUMPY, "2025-01-02-yaml.md", "2025-01-03-stdlib.md"):
        site.edit_record(post, bump("numpy"))
    _, ran_posts, lines = site.build()
    assert ran_posts == {f"posts/{NUMPY}"}, lines
    assert any("numpy 0.0.1 → " in line for line in lines), lines
    for post in (NUMPY, "2025-01-02-yaml.md", "2025-01-03-stdlib.md"):
        site.edit_record(post, bump("yaml"))
    assert site.build()[1] == {"posts/2025-01-02-yaml.md"}
    assert site.build()[1] == set()


def test_changed_python_version_reruns(site: Site) -> None:
    site.post("2025-01-02-a.md", "print(1)")
    site.build()
    site.edit_record("2025-01-02-a.md", lambda d: d["environment"].update(python="3.0.0"))
    _, ran_posts, lines = site.build()
    assert ran_posts == {"posts/2025-01-02-a.md"}
    assert any("Python 3.0.0 → " in line for line in lines), lines


def test_declared_deps_and_local_modules_are_inputs(site: Site) -> None:
    posts = site.root / "posts"
    (posts / "data.txt").write_text("one\n")
    (posts / "helpers.py").write_text("from helpers_two import TWO\nONE = 1\n")
    (posts / "helpers_two.py").write_text("TWO = 2\n")
    site.post("2025-01-02-deps.md", "#| deps: [data.txt]\nprint(open('data.txt').read())")
    site.post("2025-01-03-module.md", "import helpers\nprint(helpers.ONE, helpers.TWO)")
    site.post("2025-01-04-plain.md", "print('plain')")
    site.build()
    (posts / "data.txt").write_text("two\n")
    _, ran_posts, lines = site.build()
    assert ran_posts == {"posts/2025-01-02-deps.md"}, lines
    assert any("posts/data.txt changed" in line for line in lines)
    (posts / "helpers_two.py").write_text("TWO = 22\n")  # imported by the imported module
    assert site.build()[1] == {"posts/2025-01-03-module.md"}
    assert "1 22" in site.page("2025-01-03-module.md")
    assert site.build()[1] == set()


def test_front_matter_deps_outside_the_project_is_refused(site: Site) -> None:
    path = site.post("2025-01-02-a.md", "print(1)")
    path.write_text(path.read_text().replace("---\n\n", "deps: [../../outside.txt]\n---\n\n", 1))
    report = build(load_config(site.root))
    assert [p.message for p in report.problems] == [
        "deps file '../../outside.txt' is outside the project"
    ]


# -- --rerun, --no-exec, stale records, corrupt records ---------------------------------------


def test_rerun_flags(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.post("2025-01-02-a.md", "print('a')")
    site.post("2025-01-03-b.md", "print('b')")
    assert site.cli(capsys, "build")[0] == 0
    code, out, _ = site.cli(capsys, "build", "--rerun", str(site.root / "posts/2025-01-03-b.md"))
    assert code == 0 and "ran posts/2025-01-03-b.md" in out and "ran posts/2025-01-02-a" not in out
    code, out, _ = site.cli(capsys, "build", "--rerun")
    assert code == 0 and out.count("ran posts/") == 2 and "(--rerun)" in out
    code, out, err = site.cli(capsys, "build", "--rerun", str(site.root / "posts/nope.md"))
    assert code == 1 and "no such post" in err


def test_no_exec_renders_records_and_marks_posts_without_one(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.example(TASKS)
    site.post("2025-01-02-new.md", "print('never run')")
    code, out, err = site.cli(capsys, "build", "--no-exec")
    assert code == 0 and err == ""
    assert "ran posts/" not in out
    assert "posts/2025-01-02-new.md: not executed (no record in snippets/)" in out
    assert "Not executed (no record)" in site.page("2025-01-02-new.md")
    tasks = site.page(TASKS)
    assert "Not executed" not in tasks and "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" in tasks
    assert not (site.root / "snippets" / "2025-01-02-new.json").exists()


def test_records_of_deleted_posts_are_removed_and_reported(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.post("2025-01-02-a.md", "print('a')")
    gone = site.post("2025-01-03-gone.md", "print('gone')")
    site.cli(capsys, "build")
    assert (site.root / "snippets" / "2025-01-03-gone.json").is_file()
    gone.unlink()
    (site.root / "snippets" / "notes.py").write_text("print('a file of my own')\n")
    (site.root / "snippets" / "data.json").write_text('{"mine": true}\n')
    code, out, _ = site.cli(capsys, "build")
    assert code == 0
    assert "removed snippets/2025-01-03-gone.json (its post no longer exists)" in out
    assert "removed snippets/2025-01-03-gone.py" in out
    assert sorted(p.name for p in (site.root / "snippets").iterdir()) == [
        "2025-01-02-a.json",
        "2025-01-02-a.py",
        "data.json",  # not written by raypress: never removed
        "notes.py",
    ]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda t: t.replace('  "format": 2,', CONFLICT), "has merge-conflict markers (line "),
        (lambda t: t[: len(t) // 2], "is not valid JSON (line "),
        (lambda t: t.replace('"status": "ok"', '"status": 7', 1), "run.status must be a string"),
        (
            lambda t: t.replace('"text": [', '"text": 5, "x": [', 1),
            "snippets[0].outputs[0].text must",
        ),
        (lambda t: "", "is not valid JSON"),
    ],
    ids=["conflict", "truncated", "wrong-type", "wrong-shape", "empty"],
)
def test_corrupt_record_is_reported_and_the_post_runs_again(
    site: Site, capsys: pytest.CaptureFixture[str], damage: Callable[[str], str], message: str
) -> None:
    site.post("2025-01-02-a.md", "print('a')")
    site.post("2025-01-03-b.md", "print('b')")
    site.cli(capsys, "build")
    path = site.record_json("2025-01-02-a.md")
    path.write_text(damage(path.read_text()))
    code, out, err = site.cli(capsys, "build")
    assert code == 0, err
    assert f"warning: snippets/2025-01-02-a.json: {message}" in err, err
    assert "; re-running the post" in err
    assert "ran posts/2025-01-02-a.md" in out and "ran posts/2025-01-03-b.md" not in out
    assert site.assert_records_valid() == ["posts/2025-01-02-a.md", "posts/2025-01-03-b.md"]


def test_missing_image_is_a_corrupt_record(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])"
    site.post("2025-01-02-plot.md", code)
    site.cli(capsys, "build")
    images = site.root / "snippets" / "2025-01-02-plot.images"
    (image,) = images.iterdir()
    record = json.loads(site.record_json("2025-01-02-plot.md").read_text())
    value, figure = record["snippets"][0]["outputs"]  # [Line2D], then the figure
    assert value["type"] == "result" and "Line2D" in "".join(value["data"]["text/plain"])
    assert figure["type"] == "display" and figure["data"]["image/png"]["file"] == image.name
    image.write_bytes(b"not the image")
    _, out, err = site.cli(capsys, "build")
    assert "does not match its hash; re-running the post" in err
    assert "ran posts/2025-01-02-plot.md" in out
    (images / image.name).unlink()
    files = record_files(load_config(site.root), "posts/2025-01-02-plot.md")
    with pytest.raises(RecordError, match=f"image {image.name} is missing"):
        read_record(files, "posts/2025-01-02-plot.md")


def test_failed_run_is_recorded_and_runs_again(site: Site) -> None:
    site.post("2025-01-02-bad.md", "print('before')", "1 / 0")
    report, ran_posts, _ = site.build()
    assert not report.ok and ran_posts == {"posts/2025-01-02-bad.md"}
    record = json.loads(site.record_json("2025-01-02-bad.md").read_text())
    assert record["run"]["status"] == "failed"
    report, ran_posts, lines = site.build()
    assert ran_posts == {"posts/2025-01-02-bad.md"} and not report.ok
    assert any("its last run failed" in line for line in lines)
    report = build(load_config(site.root, execute=False))  # --no-exec shows the record
    assert report.ok and "ZeroDivisionError" in site.page("2025-01-02-bad.md")


def test_record_format_is_sorted_and_one_snippet_per_block(site: Site) -> None:
    site.post("2025-01-02-a.md", "print('line 1')\nprint('line 2')", "x = 41\nx + 1")
    site.build()
    text = site.record_json("2025-01-02-a.md").read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    first, second = data["snippets"]
    assert first["outputs"] == [
        {"type": "stream", "name": "stdout", "text": ["line 1\n", "line 2\n"]}
    ]
    assert second["outputs"] == [{"type": "result", "data": {"text/plain": ["42"]}}]
    environment = data["environment"]
    assert environment["python"] and environment["cpu"] and environment["platform"]
    assert set(data["inputs"]) == {"digest", "snippets", "inline", "post", "files"}
    script = (site.root / "snippets" / "2025-01-02-a.py").read_text()
    assert script.startswith("# ---\n# jupyter:") and "# %%" in script


def test_up_to_date_after_a_build_that_wrote_records(site: Site) -> None:
    site.post("2025-01-02-a.md", "print('a')")
    site.build()
    report, ran_posts, _ = site.build()
    assert report.up_to_date and ran_posts == set()
    site.edit_record(
        "2025-01-02-a.md", lambda d: d["snippets"][0]["outputs"][0].update(text=["edited\n"])
    )
    report, ran_posts, _ = site.build()  # a changed record is an input: pages follow it
    assert not report.up_to_date and ran_posts == set()
    assert "edited" in site.page("2025-01-02-a.md")
