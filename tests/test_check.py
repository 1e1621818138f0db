"""``build.py check``: real runs compared with real records, through the command line.

Small non-Ray projects are built in-process (``raypress.cli.main``) to make their
records, then changed the way a post's results really drift (a data file the post
reads without declaring it, a random number, a slower machine) and checked. Two tests
start a Ray cluster: a Ray post checked twice, and the repository's own posts checked by
a real ``python build.py check`` process (what CI runs through the README's test command).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_freeze import REPO, TASKS, Site

SUMMARY = re.compile(r"^(\d+) posts?, (\d+) snippets: (\d+) passed, (\d+) failed, (\d+) skipped")
ANNOTATION = re.compile(r"^::(error|warning) file=([^,:]+),line=(\d+),title=raypress check::(.*)$")


def fence_line(path: Path, needle: str) -> int:
    """The line of the opening fence of the snippet that contains ``needle``."""
    lines = path.read_text().splitlines()
    found = next(i for i, line in enumerate(lines) if needle in line)
    return next(i for i in range(found, -1, -1) if lines[i].startswith("```")) + 1


def summary(out: str) -> tuple[int, ...]:
    match = next(m for line in out.splitlines() if (m := SUMMARY.match(line)))
    return tuple(int(n) for n in match.groups())


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path / "project")


@pytest.fixture
def drifting(site: Site, capsys: pytest.CaptureFixture[str]) -> tuple[Site, Path]:
    """A post that reads mode.txt without declaring it, built with mode "a"."""
    (site.root / "posts" / "mode.txt").write_text("a\n")
    path = site.post(
        "2025-01-02-drift.md",
        "import pathlib\nmode = pathlib.Path('mode.txt').read_text().strip()\nprint('setup')",
        "print(f'the mode is {mode}')",
        "#| error: true\nif mode in 'ad':\n    raise ValueError('expected')",
        "if mode == 'c':\n    raise RuntimeError('unexpected')",
        "#| timeout: 1\nimport time\nif mode == 'd':\n    time.sleep(30)",
        "if mode == 'e':\n    import os\n    os._exit(3)",
    )
    site.post("2025-01-03-steady.md", "print('steady')")
    assert site.cli(capsys, "build")[0] == 0
    return site, path


def test_check_passes_when_outputs_match(
    drifting: tuple[Site, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    site, _ = drifting
    code, out, err = site.cli(capsys, "check")
    assert code == 0, err
    assert err == ""
    assert summary(out) == (2, 7, 7, 0, 0)
    assert "ran posts/2025-01-02-drift.md" in out  # records are ignored: everything ran


def test_check_catches_a_changed_output_with_its_file_and_line(
    drifting: tuple[Site, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    site, path = drifting
    (site.root / "posts" / "mode.txt").write_text("z\n")  # not declared: build reuses
    assert "ran posts/" not in site.cli(capsys, "build")[1]
    code, out, err = site.cli(capsys, "check")
    assert code == 1
    line = fence_line(path, "the mode is")
    where = f"posts/2025-01-02-drift.md:{line}"
    assert f"{where}: error: snippet 2: output differs from its record" in err, err
    assert f"--- {where} (record)\n+++ {where} (this run)\n" in err
    assert "-the mode is a\n+the mode is z\n" in err
    error_line = fence_line(path, "raise ValueError('expected')")
    assert (
        f"posts/2025-01-02-drift.md:{error_line}: error: snippet 3: was expected to raise "
        "(error: true) but did not"
    ) in err
    assert summary(out) == (2, 7, 5, 2, 0)


@pytest.mark.parametrize(
    ("mode", "needle", "message"),
    [
        ("c", "RuntimeError('unexpected')", "raised an exception: RuntimeError: unexpected"),
        ("d", "time.sleep(30)", "timed out"),
        ("e", "os._exit(3)", "its session died"),
    ],
    ids=["unexpected-exception", "timeout", "dead-session"],
)
def test_check_fails_on_failures(
    drifting: tuple[Site, Path],
    capsys: pytest.CaptureFixture[str],
    mode: str,
    needle: str,
    message: str,
) -> None:
    site, path = drifting
    (site.root / "posts" / "mode.txt").write_text(f"{mode}\n")
    code, _, err = site.cli(capsys, "check")
    assert code == 1
    line = fence_line(path, needle)
    where = f"posts/2025-01-02-drift.md:{line}"
    assert re.search(rf"^{where}: error: snippet \d: {message}", err, re.M), err


def test_no_record_and_changed_code_fail(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    path = site.post("2025-01-02-a.md", "print('a')", "print('b')")
    assert site.cli(capsys, "build")[0] == 0
    path.write_text(path.read_text().replace("print('b')", "print('B')"))
    new = site.post("2025-01-03-new.md", "print('new')")
    code, out, err = site.cli(capsys, "check")
    assert code == 1
    line = fence_line(path, "print('B')")
    assert f"posts/2025-01-02-a.md:{line}: error: snippet 2: its code changed since" in err
    line = fence_line(new, "print('new')")
    assert f"posts/2025-01-03-new.md:{line}: error: snippet 1: no record" in err
    assert summary(out) == (2, 3, 1, 2, 0)


def test_update_rewrites_the_records(
    drifting: tuple[Site, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    site, _ = drifting
    (site.root / "posts" / "mode.txt").write_text("z\n")
    code, out, err = site.cli(capsys, "check", "--update")
    assert code == 1  # the expected error that no longer happens is still an error...
    assert "was expected to raise" in err and "output differs" not in err
    assert "updated snippets/2025-01-02-drift.json" in out  # ...but the record is rewritten
    assert "the mode is z" in site.record_json("2025-01-02-drift.md").read_text()
    (site.root / "posts" / "mode.txt").write_text("a\n")
    assert site.cli(capsys, "check", "--update")[0] == 0
    assert site.cli(capsys, "check")[0] == 0


def test_twice_finds_nondeterministic_output_and_the_option_silences_it(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site.post(
        "2025-01-02-random.md",
        "import random\nprint('steady')",
        "print(random.random())",
        "x = 12.5\nprint(f'took {x} ms')",  # a duration: normalised, never flagged
    )
    site.cli(capsys, "build")
    code, out, err = site.cli(capsys, "check", "--twice")
    assert code == 1
    line = fence_line(path, "random.random()")
    assert (
        f"posts/2025-01-02-random.md:{line}: error: snippet 2: output differs between two "
        "runs; mark it `#| compare: loose`"
    ) in err
    assert f"--- posts/2025-01-02-random.md:{line} (first run)" in err
    assert "snippet 1:" not in err and "snippet 3:" not in err
    path.write_text(path.read_text().replace("print(random", "#| compare: loose\nprint(random"))
    code, out, err = site.cli(capsys, "check", "--twice")
    assert code == 0, err
    assert summary(out) == (1, 3, 3, 0, 0)


def test_compare_none_ignores_output_but_not_failures(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site.post("2025-01-02-a.md", "#| compare: none\nimport uuid\nprint(uuid.uuid4())")
    site.cli(capsys, "build")
    assert site.cli(capsys, "check", "--twice")[0] == 0
    path.write_text(path.read_text().replace("compare: none", "compare: sometimes"))
    code, _, err = site.cli(capsys, "build")
    assert code == 1
    line = fence_line(path, "import uuid")
    message = "error: snippet option 'compare' must be one of strict, loose, none"
    assert f"posts/2025-01-02-a.md:{line + 1}: {message}, not 'sometimes'" in err, err


def test_slowdown_is_a_warning_unless_asked_to_fail(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site.post("2025-01-02-slow.md", "import time\ntime.sleep(0.3)\nprint('done')")
    site.cli(capsys, "build")
    site.edit_record("2025-01-02-slow.md", lambda d: d["snippets"][0].update(wall_s=0.01))
    code, out, err = site.cli(capsys, "check")
    assert code == 0
    where = f"posts/2025-01-02-slow.md:{fence_line(path, 'sleep')}"
    assert re.search(rf"^{where}: warning: snippet 1: took .*× its record", err, re.M), err
    assert summary(out) == (1, 1, 1, 0, 0)
    assert site.cli(capsys, "check", "--fail-on-slowdown")[0] == 1
    code, _, err = site.cli(capsys, "check", "--slowdown", "1000")
    assert code == 0 and "warning" not in err
    (site.root / "site.toml").write_text(
        (site.root / "site.toml").read_text() + "check_slowdown = 1000\n"
    )
    code, _, err = site.cli(capsys, "check", "--fail-on-slowdown")
    assert code == 0 and "warning" not in err


def test_github_annotations_and_junit_xml_are_well_formed(
    drifting: tuple[Site, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    site, path = drifting
    site.post("2025-01-04-odd.md", "import sys\nsys.stdout.write('bell \\x07 % : , <&>\\n')")
    site.cli(capsys, "build")
    (site.root / "posts" / "mode.txt").write_text("z\n")
    site.edit_record(
        "2025-01-04-odd.md",
        lambda d: d["snippets"][0]["outputs"][0].update(text=["nul \u0000 %0A\n"]),
    )
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    report = tmp_path / "reports" / "junit.xml"
    code, out, _ = site.cli(capsys, "check", "--junit-xml", str(report))
    assert code == 1
    annotations = [line for line in out.splitlines() if line.startswith("::")]
    assert annotations and all(ANNOTATION.match(line) for line in annotations), annotations
    parsed = [ANNOTATION.match(line).groups() for line in annotations]  # type: ignore[union-attr]
    line = fence_line(path, "the mode is")
    drift = [p for p in parsed if p[1] == "posts/2025-01-02-drift.md" and p[2] == str(line)]
    assert drift and "output differs from its record" in drift[0][3]
    assert "%0A-the mode is a%0A+the mode is z" in drift[0][3]  # the diff, escaped
    odd = next(p for p in parsed if p[1] == "posts/2025-01-04-odd.md")
    assert "%250A" in odd[3] and "\n" not in odd[3]  # '%' escaped, no raw line breaks

    tree = ET.parse(report)  # well-formed, or this raises
    root = tree.getroot()
    passed, failed, skipped = summary(out)[2:]
    assert root.tag == "testsuites"
    assert int(root.get("tests")) == passed + failed + skipped  # type: ignore[arg-type]
    assert int(root.get("failures")) == failed == 3  # type: ignore[arg-type]
    suites = {suite.get("name"): suite for suite in root.iter("testsuite")}
    assert set(suites) == {
        "posts/2025-01-02-drift.md",
        "posts/2025-01-03-steady.md",
        "posts/2025-01-04-odd.md",
    }
    cases = {case.get("name"): case for case in suites["posts/2025-01-02-drift.md"]}
    failure = cases[f"snippet 2 (line {line})"].find("failure")
    assert failure is not None and "+the mode is z" in (failure.text or "")
    assert cases[f"snippet 2 (line {line})"].get("line") == str(line)
    odd_case = next(iter(suites["posts/2025-01-04-odd.md"]))
    assert odd_case.find("failure") is not None


def test_check_of_named_posts_only(
    drifting: tuple[Site, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    site, _ = drifting
    (site.root / "posts" / "mode.txt").write_text("z\n")
    steady = str(site.root / "posts" / "2025-01-03-steady.md")
    code, out, _ = site.cli(capsys, "check", steady)
    assert code == 0 and summary(out) == (1, 1, 1, 0, 0)


ENGINE_START_ORDER = """\
import sys
from raypress.freeze import early_engine

started = []
original = early_engine.EarlyEngine.__init__

def noting(self, settings, posts, root, started_list=None):
    to_run = sorted(p.source for p in posts if p.body)
    started.append((to_run, "raypress.commands.check" in sys.modules))
    original(self, settings, posts, root, started_list)

early_engine.EarlyEngine.__init__ = noting
from raypress.cli import main
code = main(sys.argv[1:])
print("ENGINES", started, code)
"""


def test_the_command_line_starts_the_engine_before_its_imports(
    drifting: tuple[Site, Path],
) -> None:
    """``check`` starts its fork server before importing Markdown and Pygments (a real
    process): with every post that has a snippet, or with the named posts alone."""

    def engines(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", ENGINE_START_ORDER, "check", "--quiet", *args],
            cwd=site.root,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return next(line for line in result.stdout.splitlines() if line.startswith("ENGINES"))

    site, _ = drifting
    (site.root / "posts" / "mode.txt").write_text("a\n")  # as recorded: both posts pass
    both = ["posts/2025-01-02-drift.md", "posts/2025-01-03-steady.md"]
    assert engines() == f"ENGINES [({both}, False)] 0"
    steady = str(site.root / "posts" / "2025-01-03-steady.md")
    assert engines(steady) == f"ENGINES [({both[1:]}, False)] 0"
    (site.root / "posts" / "2025-01-04-prose.md").write_text("---\ntitle: P\n---\n\nNo code.\n")
    prose = str(site.root / "posts" / "2025-01-04-prose.md")
    assert engines(prose) == "ENGINES [] 0"  # nothing to run: no engine at all


# -- Ray -------------------------------------------------------------------------------------

RAY_IDS = """\
import os
import ray

ray.init()

@ray.remote
def where(i):
    print(f"task {i} in pid {os.getpid()}")
    return os.getpid()

@ray.remote
class Box:
    def get(self):
        return 1

ref = where.remote(0)
box = Box.remote()
print(ref)
print(ray.get(ref) != os.getpid(), object())
print(box)
print(ray.get_runtime_context().get_job_id() != "", ray.get(box.get.remote()))
ref
"""


@pytest.mark.slow
def test_ray_pids_and_ids_are_no_false_failures(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.example(TASKS)
    site.post("2025-01-02-ray-ids.md", RAY_IDS)
    code, out, err = site.cli(capsys, "build")
    assert code == 0, err
    assert "ran posts/2025-01-02-ray-ids.md" in out and f"ran posts/{TASKS}" not in out
    record = site.record_json("2025-01-02-ray-ids.md").read_text()
    assert "ObjectRef(" in record and "pid=" in record and " at 0x" in record
    code, out, err = site.cli(capsys, "check", "--twice")  # each post run two times
    assert code == 0, err
    # the tasks post: 6 snippets and 2 inline expressions; the ray-ids post: 1 snippet
    assert summary(out) == (2, 9, 9, 0, 0)


@pytest.mark.slow
def test_the_repository_posts_pass_check(tmp_path: Path) -> None:
    """What CI proves on every change: `python build.py check` passes on the example posts
    with their committed records (a real process, its own Ray cluster)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYPRESS_")}
    env.pop("GITHUB_ACTIONS", None)
    report = tmp_path / "junit.xml"
    result = subprocess.run(
        [sys.executable, "build.py", "check", "--junit-xml", str(report)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    posts, snippets, passed, failed, skipped = summary(result.stdout)
    assert posts == len(list((REPO / "posts").glob("*.md"))) and failed == 0
    assert passed + skipped == snippets >= 30
    assert ET.parse(report).getroot().get("failures") == "0"
