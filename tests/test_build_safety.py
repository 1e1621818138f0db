"""The reliability bugs of issue 9, each as a test: data loss, hangs, unclosed fences, bad
limits, signals, unsafe output. Real builds (the command line, in-process or as a
subprocess), real sessions; nothing is mocked."""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest_publishing import Project
from serve_process import ServeProcess, alive, descendants, example_project

from raypress.execution import ExecutionSettings
from raypress.execution.model import PostRun, Snippet, SnippetOptions
from raypress.execution.pool import Executor
from raypress.execution.safe_svg import sanitize_svg
from raypress.preview.warm_executor import WarmExecution

REPO = Path(__file__).resolve().parents[1]


def fence(code: str, *options: str) -> str:
    lines = [f"#| {option}" for option in options]
    return "```python\n" + "\n".join([*lines, code.strip("\n")]) + "\n```\n"


def post(title: str, date: str, *parts: str) -> str:
    return f"---\ntitle: {title}\ndate: {date}\n---\n\nSome prose.\n\n" + "\n".join(parts)


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def built_with_records(project: Project) -> tuple[dict[str, bytes], dict[str, bytes]]:
    project.post("2025-01-01-one.md", post("One", "2025-01-01", fence("print('one')")))
    project.post("2025-01-02-two.md", post("Two", "2025-01-02", fence("print('two')")))
    result = project.build(execute=True)
    assert result.code == 0, str(result)
    return tree(project.root / "snippets"), tree(project.site)


# -- data loss ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["posts folder removed", "posts_dir misspelt"])
def test_a_missing_posts_folder_is_an_error_that_touches_nothing(
    project: Project, how: str
) -> None:
    records, pages = built_with_records(project)
    if how == "posts folder removed":
        shutil.rmtree(project.root / "posts")
        missing = "posts"
    else:
        project.configure(title="t", url="https://example.org", posts_dir="poosts")
        missing = "poosts"
    result = project.build(execute=True)
    assert result.code == 1
    assert len(result.problem_lines) == 1, str(result)
    assert result.problem_lines[0].startswith(f"{missing}: error: the posts folder")
    assert tree(project.root / "snippets") == records
    assert tree(project.site) == pages


def test_no_posts_where_records_exist_is_an_error(project: Project) -> None:
    records, pages = built_with_records(project)
    for path in (project.root / "posts").iterdir():
        path.unlink()
    result = project.build(execute=True)
    assert result.code == 1
    assert result.problem_lines == [
        "posts: error: no posts found in posts/, but snippets/ holds the records of 2 post(s); "
        "nothing was built or removed (check posts_dir, or delete the records yourself if the "
        "posts are gone for good)"
    ]
    assert tree(project.root / "snippets") == records
    assert tree(project.site) == pages


def test_records_go_only_when_their_post_file_is_gone(project: Project) -> None:
    records, _ = built_with_records(project)
    # fewer posts found for another reason: the posts folder is now another one
    (project.root / "drafts").mkdir()
    project.write("drafts/2025-01-03-three.md", post("Three", "2025-01-03", "no code\n"))
    project.configure(title="t", url="https://example.org", posts_dir="drafts")
    assert project.build(execute=True).code == 0
    assert set(records) <= set(tree(project.root / "snippets"))
    # a post file really removed: its record goes
    project.configure(title="t", url="https://example.org")
    (project.root / "posts" / "2025-01-02-two.md").unlink()
    result = project.build(execute=True)
    assert result.code == 0, str(result)
    assert "removed snippets/2025-01-02-two.json (its post no longer exists)" in result.out
    assert sorted(tree(project.root / "snippets")) == [
        "2025-01-01-one.json",
        "2025-01-01-one.py",
    ]


# -- hangs --------------------------------------------------------------------------------

DAEMON = """
import os, subprocess, time
subprocess.Popen(["sleep", "3600.{nonce}"], start_new_session=True)  # keeps our stdout
if os.fork() == 0:
    os.setsid()
    time.sleep(3600)
print("daemons started")
"""


def processes_with(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return [p for p in found if p in alive({p})]


def test_a_daemon_holding_its_descriptors_never_holds_the_build(project: Project) -> None:
    nonce = secrets.token_hex(4)
    project.post(
        "2025-01-01-daemon.md",
        post("Daemon", "2025-01-01", fence(DAEMON.format(nonce=nonce)), fence("print('next')")),
    )
    started = time.perf_counter()
    result = project.build(execute=True)
    assert result.code == 0, str(result)
    assert time.perf_counter() - started < 60
    record = json.loads((project.root / "snippets/2025-01-01-daemon.json").read_text())
    stdout = [
        "".join("".join(o["text"]) for o in s["outputs"] if o.get("name") == "stdout")
        for s in record["snippets"]
    ]
    assert stdout == ["daemons started\n", "next\n"]
    assert processes_with(f"3600.{nonce}") == []  # killed with the session


def test_a_daemon_never_stalls_serves_engine(tmp_path: Path) -> None:
    nonce = secrets.token_hex(4)
    source = DAEMON.format(nonce=nonce)
    snippet = Snippet("posts/d.md", 0, 1, 2, "python", source, SnippetOptions())
    run = PostRun("posts/d.md", REPO / "posts", (snippet,))
    warm = WarmExecution(lambda: ExecutionSettings(jobs=1, project_root=REPO))
    try:
        started = time.perf_counter()
        (result,) = warm.run([run])
        assert result.status == "ok", result.problems
        assert time.perf_counter() - started < 60
        assert processes_with(f"3600.{nonce}") == []
    finally:
        warm.close()


# -- unclosed fences ------------------------------------------------------------------------

UNCLOSED = """---
title: Unclosed
date: 2025-01-01
---

Before.

```python
print("in the fence")

The prose after it would be code: open("ran-the-prose", "w")
"""


def test_an_unclosed_fence_is_an_error_naming_its_line_and_runs_nothing(
    project: Project,
) -> None:
    project.post("2025-01-01-unclosed.md", UNCLOSED)
    result = project.build(execute=True)
    assert result.code == 1
    assert result.problem_lines == [
        "posts/2025-01-01-unclosed.md:8: error: this code fence (```) is never closed: the rest "
        "of the post would be code (and a python fence would run it) (add a closing ``` line)"
    ]
    assert "ran posts/" not in result.out
    assert not (project.root / "snippets").exists()


@pytest.mark.slow
def test_an_unclosed_fence_is_a_bad_save_in_serve(tmp_path: Path) -> None:
    root = example_project(tmp_path / "site")
    for old in (root / "posts").glob("*.md"):
        old.unlink()
    page = root / "posts" / "2025-01-01-page.md"
    page.write_text("---\ntitle: Page\ndate: 2025-01-01\n---\n\nFirst version.\n")
    server = ServeProcess(root)
    try:
        server.wait_for(r" started: 1 post", timeout=120)
        before = len(server.err)
        page.write_text(UNCLOSED)
        line = server.wait_for(r"never closed", after=before, timeout=120, err=True)
        assert line.startswith("posts/2025-01-01-page.md:8: error:")
        status, body = server.get("/2025/01/01/page/")
        assert status == 200 and "First version." in body  # the last good site is served
    finally:
        server.kill()


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("memory_limit_mb", -5),
        ("memory_limit_mb", 0),
        ("memory_limit_mb", 9223372036854775807),
        ("snippet_timeout", 0),
        ("snippet_timeout", 10**15),
        ("post_timeout", -1),
        ("jobs", -2),
        ("jobs", 1_000_000),
        ("output_cap_bytes", 0),
        ("post_output_cap_bytes", 10),
        ("render_timeout", 0),
    ],
)
def test_bad_limits_are_one_clear_line(project: Project, key: str, value: int) -> None:
    project.post("2025-01-01-one.md", post("One", "2025-01-01", fence("print(1)")))
    project.configure(title="t", **{key: value})
    result = project.build(execute=True)
    assert result.code == 1
    assert "Traceback" not in result.err
    assert len(result.err_lines) == 1, str(result)
    assert result.err_lines[0].startswith(f"site.toml: error: {key} must be"), str(result)


@pytest.mark.parametrize("flags", [("--jobs", "-3"), ("--timeout", "1000000000000")])
def test_bad_limits_on_the_command_line_are_one_clear_line(
    project: Project, flags: tuple[str, str]
) -> None:
    project.post("2025-01-01-one.md", post("One", "2025-01-01", fence("print(1)")))
    result = project.build(*flags, execute=True)
    assert result.code == 1 and len(result.err_lines) == 1, str(result)
    assert result.err_lines[0].startswith("command line: error:"), str(result)


# -- signals ------------------------------------------------------------------------------


def many_posts(root: Path, count: int) -> None:
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "posts").mkdir()
    (root / "site.toml").write_text('title = "many"\njobs = 2\n')
    body = ("Words and **more words** with `code`.\n\n" * 40) + (
        "```bash\necho hello\n```\n\n" * 10
    )
    for number in range(count):
        text = post(f"Post {number}", "2025-01-01", body)
        (root / "posts" / f"2025-01-01-post-{number:04d}.md").write_text(text)


def build_process(root: Path, temp: Path, *flags: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "raypress", "build", "--root", str(root), *flags]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def wait_for_children(process: subprocess.Popen[str], count: int, timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        below = alive(descendants(process.pid))
        if len(below) >= count:
            return below
        if process.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"never saw {count} children: {process.communicate()}")


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signal_while_parsing_leaves_no_worker_and_no_folder(
    tmp_path: Path, number: signal.Signals
) -> None:
    root, temp = tmp_path / "site", tmp_path / "tmp"
    temp.mkdir()
    many_posts(root, 600)
    build = build_process(root, temp, "--no-exec")
    workers = wait_for_children(build, 2, timeout=120)  # the parse workers
    build.send_signal(number)
    build.communicate(timeout=60)
    expected = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGKILL: -9}[number]
    assert build.returncode == expected
    deadline = time.monotonic() + 10
    while alive(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive(workers) == set()
    if number != signal.SIGKILL:  # a SIGKILLed process cannot remove anything
        assert list(temp.iterdir()) == []
        assert [p.name for p in root.iterdir() if p.name.startswith("_site")] == []


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_engine_starts_leaves_nothing(
    tmp_path: Path, number: signal.Signals
) -> None:
    """The command line starts the fork server before the build parses (a post to run and
    600 to parse): a signal then stops the build, the sandbox and its folders."""
    root, temp = tmp_path / "site", tmp_path / "tmp"
    temp.mkdir()
    many_posts(root, 600)
    (root / "posts" / "2025-01-02-code.md").write_text(post("Code", "2025-01-02", fence("1")))
    root.chmod(0o755)
    stages_before = set(Path("/tmp").glob("rps*"))
    build = build_process(root, temp)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and build.poll() is None:
        below = alive(descendants(build.pid))
        names = " ".join(Path(f"/proc/{p}/cmdline").read_text(errors="replace") for p in below)
        if "raypress.execution.forkserver" in names:
            break
        time.sleep(0.01)
    everything = alive(descendants(build.pid))
    assert everything, build.communicate()
    build.send_signal(number)
    out, err = build.communicate(timeout=60)
    assert build.returncode == {signal.SIGTERM: 143, signal.SIGINT: 130}[number], (out, err)
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while alive(everything) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive(everything) == set()
    assert list(temp.iterdir()) == []
    assert cgroups_of(build.pid) == []
    assert set(Path("/tmp").glob("rps*")) - stages_before == set()
    assert not (root / "snippets").exists()  # nothing ran


_RUN_WITH_AN_EXIT_HANDLER = """
import atexit, sys
from raypress.cli import run
atexit.register(lambda: print("the exit handlers ran"))
run(sys.argv[1:])
"""


def test_the_command_line_exits_with_its_status_output_and_exit_handlers(tmp_path: Path) -> None:
    """``run`` (the entry point) exits without tearing the interpreter down, after the
    exit handlers ran and the console was flushed (a pipe: block-buffered), with main's
    status: 0 for a build, 1 for a broken post, 2 for a usage error."""
    root = tmp_path / "site"
    many_posts(root, 1)
    script = tmp_path / "entry.py"
    script.write_text(_RUN_WITH_AN_EXIT_HANDLER)

    def entry(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), *args, "--root", str(root), "--no-exec"]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    done = entry("build")
    assert done.returncode == 0, done
    assert "built 1 posts" in done.stdout and done.stdout.endswith("the exit handlers ran\n")
    (root / "posts" / "2025-01-02-broken.md").write_text("---\ntitle: [\n---\n")
    done = entry("build")
    assert done.returncode == 1, done
    assert "2025-01-02-broken.md" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == "the exit handlers ran\n"
    assert entry("build", "--jobs", "x").returncode == 2  # argparse's own exit


RAY_AND_SLEEP = """---
title: Squares on Ray
date: 2025-01-01
---

```python
import ray
ray.init()
print(ray.get([ray.remote(lambda x: x * x).remote(i) for i in range(3)]))
```

```python
import time
time.sleep(300)
```
"""


def cgroups_of(pid: int) -> list[Path]:
    from raypress.execution.isolation import cgroup_place

    place = cgroup_place()
    if place is None:
        return []
    return list(place.parent.glob(f"raypress-{pid}-*"))


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signal_while_snippets_run_leaves_nothing(tmp_path: Path, number: int) -> None:
    root, temp = tmp_path / "site", tmp_path / "tmp"
    temp.mkdir()
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "posts").mkdir()
    (root / "posts" / "2025-01-01-ray.md").write_text(RAY_AND_SLEEP)
    root.chmod(0o755)
    stages_before = set(Path("/tmp").glob("rps*"))
    build = build_process(root, temp)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # the second snippet sleeps: Ray and the session up
        below = alive(descendants(build.pid))
        names = " ".join(Path(f"/proc/{p}/cmdline").read_text(errors="replace") for p in below)
        if "raylet" in names and names.count("raypress.execution.forkserver") >= 1:
            break
        time.sleep(0.5)
    time.sleep(8)
    everything = alive(descendants(build.pid))
    build.send_signal(number)
    out, err = build.communicate(timeout=60)
    expected = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGKILL: -9}[number]
    assert build.returncode == expected, (out, err)
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while alive(everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive(everything) == set()  # the sandbox dies with the build, even SIGKILLed
    if number == signal.SIGKILL:
        return  # a SIGKILLed build cannot remove its (empty) folders
    assert list(temp.iterdir()) == []
    assert cgroups_of(build.pid) == []
    assert set(Path("/tmp").glob("rps*")) - stages_before == set()


# -- unsafe output --------------------------------------------------------------------------

EVIL_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
    'onload="alert(1)"><script>alert(2)</script><rect width="10" height="10" fill="red" '
    'onclick="alert(3)"/><a xlink:href="javascript:alert(4)"><text>x</text></a>'
    '<foreignObject><body xmlns="http://www.w3.org/1999/xhtml"><script>alert(5)</script>'
    '</body></foreignObject><set attributeName="href" to="javascript:alert(6)"/>'
    '<use xlink:href="https://evil.example/x.svg#a"/><image href="https://evil.example/t.png"/>'
    "<style>@import url(https://evil.example/x.css);</style></svg>"
)
FORGE = """
import base64, json, os, socket, stat, struct
def is_socket(fd):
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
fd = next(fd for fd in range(3, 256) if is_socket(fd))  # the session's result channel
channel = socket.socket(fileno=fd)
def send(event):
    data = json.dumps(event).encode()
    channel.sendall(struct.pack("!I", len(data)) + data)
fake_png = base64.b64encode(b"<html><script>x</script>").decode()
for seq, bundle in enumerate(({{"image/svg+xml": {svg!r}}}, {{"image/png": fake_png}})):
    send({{"type": "Displayed", "index": 0, "seq": seq, "data": bundle, "metadata": {{}},
           "result": False}})
send({{"type": "SnippetDone", "index": 0, "seq": 2, "status": "ok", "error": None,
       "wall_s": 0.0, "cpu_s": 0.0, "runs": [0.0], "notes": []}})
send({{"type": "Finished", "packages": []}})
os._exit(0)
"""


def test_a_forged_svg_figure_is_sanitised_and_a_fake_png_dropped(executor: Executor) -> None:
    forged = FORGE.format(svg=EVIL_SVG)
    snippet = Snippet("posts/forge.md", 0, 1, 2, "python", forged, SnippetOptions())
    (result,) = executor.run([PostRun("posts/forge.md", REPO / "posts", (snippet,))])
    (image,) = result.snippets[0].images
    assert image.mime == "image/svg+xml"
    text = image.data.decode()
    for bad in ("script", "onload", "onclick", "javascript", "foreignObject", "alert", "evil"):
        assert bad not in text, text
    assert "<rect" in text and 'fill="red"' in text
    notes = result.snippets[0].notes
    assert "an output of type image/png was left out: its bytes are not image/png" in notes


def test_the_svg_sanitiser_refuses_what_it_cannot_parse() -> None:
    assert sanitize_svg(b"<svg") is None
    assert sanitize_svg(b"<html><script>x</script></html>") is None
    entity = b'<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg>&x;</svg>'
    assert sanitize_svg(entity) is None
    kept = sanitize_svg(b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1">'
                        b'<path d="M0 0L1 1" style="stroke: url(#g)"/></svg>')  # fmt: skip
    assert kept is not None and b'viewBox="0 0 1 1"' in kept and b"url(#g)" in kept


def test_a_post_cannot_print_more_than_its_output_cap(project: Project) -> None:
    chunk = "print('x' * 99_999)"
    project.post(
        "2025-01-01-loud.md", post("Loud", "2025-01-01", *(fence(chunk) for _ in range(120)))
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = project.build(execute=True)
    assert result.code == 0, str(result)
    page = project.site / "2025/01/01/loud/index.html"
    record = project.root / "snippets" / "2025-01-01-loud.json"
    assert page.stat().st_size < 6_000_000  # 12 MB printed, 5 MB shown (and the code)
    assert record.stat().st_size < 6_000_000
    assert "output cap was reached (post_output_cap_bytes)" in page.read_text()
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert growth_mb < 400


def test_control_characters_never_reach_the_console(tmp_path: Path) -> None:
    root = tmp_path / "site"
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "posts").mkdir()
    root.chmod(0o755)
    fake = "\x1b[2J\x1b[H\nbuilt 9 posts, 9 files into _site/ in 0.1s (no changes)\r\n"
    code = f"raise RuntimeError({fake!r} + 'build succeeded')"
    (root / "posts" / "2025-01-01-\x1b[31mred\x07.md").write_text(
        post("Evil", "2025-01-01", fence(code))
    )
    done = subprocess.run(
        [sys.executable, "-m", "raypress", "build", "--root", str(root)],
        capture_output=True,
        timeout=300,
        check=False,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 1, console
    assert b"\x1b" not in console and b"\r" not in console and b"\x07" not in console
    lines = console.decode().splitlines()
    assert not any(line.startswith(("built 9 posts", "build succeeded")) for line in lines)
    assert any("RuntimeError: \\x1b[2J\\x1b[H" in line for line in lines), lines
    assert any("\\x1b[31mred\\x07" in line for line in lines), lines
    assert re.search(r"built 1 posts?, ", console.decode())


# -- isolation required ---------------------------------------------------------------------


def test_check_require_isolation_fails_where_the_sandbox_is_incomplete(tmp_path: Path) -> None:
    """Without bubblewrap (not on PATH here) ``check --require-isolation`` refuses to run
    anything, in one line; a plain build says the isolation is reduced, once, and on the
    page."""
    root = example_project(tmp_path / "site")
    for old in (root / "posts").glob("*.md"):
        old.unlink()
    (root / "posts" / "2025-01-01-one.md").write_text(post("One", "2025-01-01", fence("1 + 1")))
    root.chmod(0o755)
    nowhere = tmp_path / "empty-path"
    nowhere.mkdir()
    env = {**os.environ, "PATH": str(nowhere)}
    command = [sys.executable, "-m", "raypress"]
    done = subprocess.run(
        [*command, "check", "--root", str(root), "--require-isolation"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done
    problems = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert problems == [
        "execution: error: --require-isolation: isolation: reduced — bubblewrap is not "
        "installed (Debian: apt install bubblewrap)"
    ], done.stderr
    assert "ran posts/" not in done.stdout
    built = subprocess.run(
        [*command, "build", "--root", str(root)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built
    said = [line for line in built.stdout.splitlines() if "isolation: reduced" in line]
    assert len(said) == 1 and "bubblewrap is not installed" in said[0]
    page = (root / "_site/2025/01/01/one/index.html").read_text()
    assert "isolation: reduced — bubblewrap is not installed" in page
