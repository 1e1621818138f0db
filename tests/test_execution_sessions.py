"""The execution engine without Ray: real fork-server sessions, capture, limits, failures."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import pickle
import re
import sys
from pathlib import Path

import pytest
from conftest_execution import ROOT, make_run
from serve_process import descendants

from raypress.execution import (
    ExecutionSettings,
    InlineExpression,
    PostExecution,
    PostRun,
    execute_posts,
)
from raypress.execution.model import SnippetOptions
from raypress.execution.pool import Executor
from raypress.execution.session_env import base_env


def run_one(executor: Executor, run: PostRun) -> PostExecution:
    (result,) = executor.run([run])
    return result


def test_snippets_share_one_main_namespace_and_show_output_value_and_time(
    executor: Executor,
) -> None:
    run = make_run(
        "basics",
        "x = 41\nprint('hello', x)",
        "import sys\nprint('oops', file=sys.stderr)\nx + 1",
        "class Point:\n    pass\n"
        "import pickle\n__name__, type(pickle.loads(pickle.dumps(Point())))",
    )
    result = run_one(executor, run)
    assert result.status == "ok", result.problems
    first, second, third = result.snippets
    assert (first.stdout, first.stderr, first.value) == ("hello 41\n", "", None)
    assert (second.stdout, second.stderr, second.value) == ("", "oops\n", "42")
    assert third.value == "('__main__', <class '__main__.Point'>)"
    assert all(s.wall_s > 0 and s.cpu_s >= 0 for s in result.snippets)
    assert result.environment.python and result.environment.cpu_count >= 1


def test_output_of_c_code_subprocesses_and_threads_is_captured(executor: Executor) -> None:
    run = make_run(
        "fd-level",
        "import ctypes, os, subprocess, threading\n"
        "os.system('echo from-shell')\n"
        "subprocess.run(['sh', '-c', 'echo from-sub; echo sub-err >&2'])\n"
        "t = threading.Thread(target=lambda: print('from-thread')); t.start(); t.join()\n"
        "ctypes.CDLL(None).printf(b'from-C\\n')",
        "print('second')",
    )
    first, second = run_one(executor, run).snippets
    assert first.stdout.split() == ["from-shell", "from-sub", "from-thread", "from-C"]
    assert first.stderr == "sub-err\n"
    assert second.stdout == "second\n"


def test_an_exception_stops_the_post_with_a_traceback_on_post_lines(executor: Executor) -> None:
    run = make_run(
        "boom",
        "def divide(a, b):\n    return a / b",
        "print('before')\ndivide(1, 0)",
        "print('never')",
        first_line=30,
    )
    result = run_one(executor, run)
    assert [s.status for s in result.snippets] == ["ok", "error", "not-run"]
    error = result.snippets[1].error
    assert error is not None
    # the innermost frame in the post, as Python's traceback ends
    assert (error.type, error.message, error.line) == ("ZeroDivisionError", "division by zero", 32)
    assert 'File "posts/boom.md", line 37, in <module>' in error.traceback
    assert 'File "posts/boom.md", line 32, in divide' in error.traceback
    assert "return a / b" in error.traceback  # the post's own source lines are shown
    assert "raypress" not in error.traceback  # the session's frames are trimmed
    assert result.snippets[1].stdout == "before\n"
    assert result.status == "failed"
    assert [str(p) for p in result.problems] == [
        "posts/boom.md:32: error: ZeroDivisionError: division by zero"
    ]


def test_expected_errors_pass_and_a_missing_one_fails(executor: Executor) -> None:
    expect = SnippetOptions(error=True)
    run = make_run(
        "expected", "raise ValueError('as planned')", "x = 1", options={0: expect, 1: expect}
    )
    result = run_one(executor, run)
    assert [s.status for s in result.snippets] == ["expected-error", "missing-expected-error"]
    assert result.snippets[0].error is not None
    assert result.status == "failed"
    assert "raised no exception" in result.problems[0].message


def test_a_shell_command_in_a_python_fence_gets_a_hint(executor: Executor) -> None:
    result = run_one(executor, make_run("shell", "pip install ray", first_line=14))
    (problem,) = result.problems
    assert (problem.line, problem.message) == (15, "SyntaxError: invalid syntax")
    assert "bash" in (problem.hint or "") and "eval: false" in (problem.hint or "")


def test_input_reads_eof(executor: Executor) -> None:
    (snippet,) = run_one(executor, make_run("stdin", "input('name? ')")).snippets
    assert snippet.status == "error"
    assert snippet.error is not None and snippet.error.type == "EOFError"


def test_eval_false_is_skipped_and_hidden_setup_code_still_runs(executor: Executor) -> None:
    run = make_run(
        "options",
        "secret = 'from setup'",
        "raise SystemExit('not run')",
        "secret",
        options={0: SnippetOptions(echo=False), 1: SnippetOptions(eval=False)},
        inline=(InlineExpression(0, 50, "secret", 1),),  # after the skipped snippet
    )
    result = run_one(executor, run)
    assert [s.status for s in result.snippets] == ["ok", "skipped", "ok"]
    assert result.snippets[2].value == "'from setup'"
    assert result.inline[0].text == "from setup"


def test_repeat_reports_median_and_spread(executor: Executor) -> None:
    run = make_run(
        "repeat", "print('once'); sum(range(1000))", options={0: SnippetOptions(repeat=5)}
    )
    (snippet,) = run_one(executor, run).snippets
    assert snippet.repeat is not None and snippet.repeat.n == 5
    assert snippet.repeat.min_s <= snippet.repeat.median_s <= snippet.repeat.max_s
    assert snippet.wall_s == snippet.repeat.median_s
    assert snippet.stdout == "once\n"  # the output of the first run only
    assert snippet.value == "499500"


def test_session_dies_with_os_exit_or_a_segfault_and_others_still_run(executor: Executor) -> None:
    runs = [
        make_run("exit", "print('bye', flush=True)\nimport os\nos._exit(3)", "print('never')"),
        make_run("segv", "import ctypes\nctypes.string_at(0)"),
        make_run("fine", "print('fine')"),
    ]
    exited, segv, fine = executor.run(runs)
    assert exited.status == "died"
    assert [s.status for s in exited.snippets] == ["died", "not-run"]
    assert exited.snippets[0].stdout == "bye\n"
    assert "exited with status 3" in exited.snippets[0].notes[0]
    assert segv.status == "died"
    assert "SIGSEGV" in segv.snippets[0].notes[0]
    assert "SIGSEGV" in str(segv.problems[0])
    assert fine.status == "ok" and fine.snippets[0].stdout == "fine\n"


def test_a_timeout_kills_the_session_and_keeps_the_output_so_far(executor: Executor) -> None:
    run = make_run(
        "slow",
        "print('started', flush=True)\nimport subprocess\n"
        "child = subprocess.Popen(['sleep', '300'])\nwhile True:\n    pass",
        "print('never')",
        options={0: SnippetOptions(timeout=1)},
    )
    result = run_one(executor, run)
    assert result.status == "timed-out"
    slow, later = result.snippets
    assert (slow.status, later.status) == ("timed-out", "not-run")
    assert slow.stdout == "started\n"
    assert slow.notes[0] == "timed out after 1 s"
    assert 1 <= slow.wall_s < 5
    assert "timed out after 1 s" in str(result.problems[0])


def test_the_post_timeout_applies_to_the_whole_post(tmp_path: Path) -> None:
    run = make_run("long", "import time\ntime.sleep(0.6)", "time.sleep(0.6)", "time.sleep(5)")
    (result,) = execute_posts([run], ExecutionSettings(jobs=1, post_timeout=1.5))
    assert [s.status for s in result.snippets] == ["ok", "ok", "timed-out"]
    assert "the post's limit of 1.5 s" in result.snippets[2].notes[0]


@pytest.mark.slow
def test_a_1_gb_print_is_capped_while_capturing(executor: Executor) -> None:
    run = make_run("huge", "print('x' * 10**9)", "print('still here')")
    result = run_one(executor, run)
    big, after = result.snippets
    assert big.status == "ok" and big.truncated
    assert len(big.stdout.encode()) <= 100_000
    assert "1.0 GB printed" in big.notes[0]
    assert after.stdout == "still here\n"


def test_output_that_looks_like_html_stays_text_and_html_values_are_kept_raw(
    executor: Executor,
) -> None:
    """The result keeps the HTML as the snippet made it: the page sanitises it unless the
    site trusts snippet output (tests/test_rich_output.py checks the pages)."""
    run = make_run(
        "html",
        "print('</pre><script>alert(1)</script>')",
        "class Rich:\n"
        "    def _repr_html_(self):\n"
        "        return '<b>bold</b><script>alert(1)</script><img src=x onerror=alert(2)>'\n"
        "Rich()",
    )
    text, rich = run_one(executor, run).snippets
    assert text.stdout == "</pre><script>alert(1)</script>\n"  # escaping is the renderer's job
    assert rich.value_html is not None
    assert rich.value_html == "<b>bold</b><script>alert(1)</script><img src=x onerror=alert(2)>"
    assert rich.value is not None and rich.value.startswith("<__main__.Rich object")


def test_a_matplotlib_figure_left_open_becomes_a_png(executor: Executor) -> None:
    run = make_run(
        "figure",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.title('A line')\nplt.show()",
        "len(plt.get_fignums())",
    )
    figure, after = run_one(executor, run).snippets
    (image,) = figure.images
    assert image.mime == "image/png" and image.data.startswith(b"\x89PNG")
    assert image.alt == "A line"
    assert figure.stderr == ""  # plt.show() under the session's backend says nothing
    assert after.value == "0"  # saved figures are closed


def test_ansi_colour_codes_are_removed(executor: Executor) -> None:
    (snippet,) = run_one(executor, make_run("ansi", "print('\\x1b[1;31mred\\x1b[0m')")).snippets
    assert snippet.stdout == "red\n"


def test_inline_expressions_and_elapsed(executor: Executor) -> None:
    inline = (
        InlineExpression(0, 5, "'before'", -1),
        InlineExpression(1, 20, "n * 2", 0),
        InlineExpression(2, 40, "elapsed('staging')", 1),
        InlineExpression(3, 41, "elapsed(0)", 1),
        InlineExpression(4, 42, "undefined_name", 1),
    )
    run = make_run(
        "inline",
        "n = 21",
        "import time\ntime.sleep(0.01)",
        options={1: SnippetOptions(label="staging")},
        inline=inline,
    )
    result = run_one(executor, run)
    texts = [r.text for r in result.inline]
    assert texts[:2] == ["before", "42"]
    assert re.fullmatch(r"\d+(\.\d+)? ms", texts[2] or ""), texts[2]
    assert re.fullmatch(r"\d+(\.\d+)? (ns|µs|ms)", texts[3] or ""), texts[3]
    assert result.inline[4].error == "NameError: name 'undefined_name' is not defined"
    assert result.status == "failed"
    assert result.problems[0].line == 42


def test_the_session_sees_only_allowed_environment_and_a_fresh_folder(
    executor: Executor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAYPRESS_TEST_SECRET_TOKEN", "hunter2")
    tmp_path.chmod(0o755)  # a checkout's mode: the sandbox's own user reads it
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    settings = ExecutionSettings(jobs=1, project_root=tmp_path)
    with Executor(settings) as engine:  # reads the environment at start
        run = make_run(
            "sandbox",
            "import os\nsorted(k for k in os.environ if 'SECRET' in k)",
            "open('data.csv').read()",
            "os.getcwd() != os.path.dirname(__file__), os.listdir('.')",
            "open('out.txt', 'w').write('ok')",
            folder=tmp_path,
        )
        result = run_one(engine, run)
    assert result.status == "ok", result.problems
    env, data, where, _ = result.snippets
    assert env.value == "[]"
    assert data.value == "'a,b\\n1,2\\n'"
    assert where.value == "(True, ['data.csv'])"
    assert not (tmp_path / "out.txt").exists()  # written to the session's own folder


@pytest.mark.skipif(os.geteuid() != 0, reason="read-only post folder needs a mount namespace")
def test_the_post_folder_is_read_only(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)  # writable by anyone: only the read-only mount protects it
    (tmp_path / "data.csv").write_text("x\n")
    (tmp_path / "data.csv").chmod(0o666)
    run = make_run("readonly", "open('data.csv', 'a').write('more')", folder=tmp_path)
    with Executor(ExecutionSettings(jobs=1), [run]) as engine:
        (snippet,) = run_one(engine, run).snippets
    assert snippet.error is not None and "Read-only file system" in snippet.error.message
    assert (tmp_path / "data.csv").read_text() == "x\n"


def test_the_memory_ceiling_raises_memoryerror() -> None:
    run = make_run("memory", "block = bytearray(1 << 30)")
    (result,) = execute_posts([run], ExecutionSettings(jobs=1, memory_limit_bytes=512 << 20))
    assert result.snippets[0].error is not None
    assert result.snippets[0].error.type == "MemoryError"


def test_results_keep_order_report_progress_and_serialise(executor: Executor) -> None:
    runs = [make_run(f"order-{i}", f"import numpy\nprint({i})") for i in range(6)]
    seen: list[str] = []
    results = execute_posts(runs, ExecutionSettings(jobs=3), progress=lambda r: seen.append(r.post))
    assert [r.post for r in results] == [r.post for r in runs]
    assert sorted(seen) == sorted(r.post for r in runs)
    assert [r.snippets[0].stdout for r in results] == [f"{i}\n" for i in range(6)]
    assert results[0].environment.packages[0][0] == "numpy"
    assert pickle.loads(pickle.dumps(results)) == results
    json.dumps(dataclasses.asdict(results[0]))  # JSON-friendly (images aside: bytes)


def test_a_snippet_cannot_start_a_ray_cluster_when_ray_is_unused(executor: Executor) -> None:
    assert executor.clusters is None  # no post asked for a cluster


def test_snippets_get_no_network_inside_the_loopback_namespace(executor: Executor) -> None:
    if not executor.isolated_network:
        pytest.skip("this machine allows no network namespace (Ray then uses a token)")
    run = make_run(
        "offline",
        "import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=2)",
        options={0: SnippetOptions(error=True)},
    )
    (snippet,) = run_one(executor, run).snippets
    assert snippet.status == "expected-error"
    assert snippet.error is not None and "unreachable" in snippet.error.message


def test_a_shell_hint_is_also_a_note_on_the_page(executor: Executor) -> None:
    (snippet,) = run_one(executor, make_run("shell-note", "pip install numpy")).snippets
    assert any("```bash" in note for note in snippet.notes)


def test_a_daemon_holding_the_output_pipes_does_not_hang_the_post(executor: Executor) -> None:
    run = make_run(
        "daemon",
        "import subprocess\nsubprocess.Popen(['setsid', 'sleep', '30'])\nprint('started')",
        "print('next')",
    )
    result = run_one(executor, run)
    assert result.status == "ok"
    assert [s.stdout for s in result.snippets] == ["started\n", "next\n"]
    assert result.wall_s < 10


def test_a_forked_child_that_returns_does_not_run_the_rest_of_the_post(
    executor: Executor,
) -> None:
    run = make_run(
        "fork", "import os\npid = os.fork()\nif pid:\n    os.waitpid(pid, 0)", "print('once')"
    )
    result = run_one(executor, run)
    assert result.status == "ok"
    assert result.snippets[1].stdout == "once\n"


def _fork_server_threads(engine: Executor) -> int:
    """How many threads the fork server of ``engine`` has (it runs below its launcher)."""
    (server,) = [
        pid
        for pid in descendants(engine.server.process.pid)
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3]
        == [b"-m", b"raypress.execution.forkserver"]
    ]
    return len(list(Path(f"/proc/{server}/task").iterdir()))


def test_the_fork_server_keeps_no_blas_threads_and_sessions_start_their_own() -> None:
    """NumPy's OpenBLAS starts worker threads at import that spin idle for about 0.1 s of
    a core each: the fork server stops them once warm and stays single-threaded, and a
    session still gets them at its first BLAS call, as any NumPy program does."""
    settings = ExecutionSettings(jobs=1, snippet_timeout=60, project_root=ROOT)
    with Executor(settings) as engine:
        assert engine.server.warm(["numpy"]).result(timeout=120).error is None
        assert _fork_server_threads(engine) == 1
        run = make_run(
            "blas",
            "import os\nimport numpy as np\n"
            "before = len(os.listdir('/proc/self/task'))\n"
            "a = np.ones((400, 400))\n(a @ a).sum()\n"
            "(before, len(os.listdir('/proc/self/task')), os.cpu_count())",
        )
        result = run_one(engine, run)
        assert result.status == "ok", result.problems
        before, after, cpus = ast.literal_eval(result.snippets[0].value or "")
        assert after > before if cpus > 1 else after == before


def test_each_session_is_in_a_memory_cgroup_of_its_own_from_its_first_line(
    executor: Executor,
) -> None:
    """A session is moved into its post's memory cgroup while it sets itself up, and runs
    nothing of the post's before it is in (``session_ns``)."""
    if executor.cgroup is None:
        pytest.skip("this machine gives the build no memory cgroup")
    first_line = (
        "[line.split(':', 2)[2] for line in open('/proc/self/cgroup').read().splitlines()"
        " if line.split(':')[1] in ('memory', '')]"
    )
    results = executor.run([make_run(f"cgroup-{n}", first_line) for n in (1, 2)])
    places = []
    for result in results:
        assert result.status == "ok", result.problems
        (place,) = [p for p in ast.literal_eval(result.snippets[0].value or "") if p != "/"]
        assert re.fullmatch(rf"/{executor.cgroup.path.name}/s\d+", place), place
        places.append(place)
    assert places[0] != places[1]


def test_python_by_name_is_the_builds_python_when_path_lacks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snippet running ``python`` by name gets the build's interpreter, whose folder goes
    first on PATH when PATH lacks it (a virtual environment used without activating it;
    pyenv's shims live in the builder's home, which the sandbox does not show)."""
    folder = str(Path(sys.executable).parent)
    elsewhere = [p for p in os.environ["PATH"].split(":") if p and p != folder]
    monkeypatch.setenv("PATH", ":".join([str(tmp_path), *elsewhere]))
    with Executor(ExecutionSettings(jobs=1, project_root=ROOT)) as engine:
        run = make_run(
            "python-by-name",
            "import os, subprocess\n"
            "code = 'import sys; print(sys.executable)'\n"
            "where = subprocess.check_output(['python', '-c', code])\n"
            "os.environ['PATH'].split(':')[:2], os.path.dirname(where.decode().strip())",
        )
        result = run_one(engine, run)
    assert result.status == "ok", result.problems
    first_two, python_folder = ast.literal_eval(result.snippets[0].value or "")
    assert first_two == [folder, str(tmp_path)] and python_folder == folder


def test_the_session_path_keeps_the_builders_order() -> None:
    """PATH already holding the interpreter's folder is left as it is."""
    folder = str(Path(sys.executable).parent)
    kept = base_env({"PATH": f"/usr/bin:{folder}:/bin"}, "/pkg")["PATH"]
    assert kept == f"/usr/bin:{folder}:/bin"
    added = base_env({"PATH": "/usr/bin::/bin"}, "/pkg", "/opt/venv/bin/python")["PATH"]
    assert added == "/opt/venv/bin:/usr/bin:/bin"
    assert base_env({}, "/pkg", "/opt/venv/bin/python")["PATH"] == "/opt/venv/bin"
