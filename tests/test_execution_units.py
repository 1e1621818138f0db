"""Unit tests of the execution engine's pure parts: capture splitting, text, formats."""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from raypress.execution import format_duration
from raypress.execution.bytecode import write_missing_bytecode
from raypress.execution.capture import SegmentedStream, clean_text, marker, new_marker_prefix
from raypress.execution.imports import top_level_imports
from raypress.execution.protocol import (
    Finished,
    RayRelease,
    SnippetStarted,
    decode_event,
    encode_event,
)
from raypress.execution.tracebacks import console_message, looks_like_shell


def feed_in_pieces(stream: SegmentedStream, data: bytes, size: int) -> None:
    for start in range(0, len(data), size):
        stream.feed(data[start : start + size])


@pytest.mark.parametrize("piece", [1, 3, 7, 64, 10_000])
def test_markers_split_output_into_phases_whatever_the_reads(piece: int) -> None:
    prefix = new_marker_prefix()
    data = b"one\n" + marker(prefix, 0) + b"two\ntwo\n" + marker(prefix, 1) + b"tail"
    stream = SegmentedStream(prefix, cap=1000)
    feed_in_pieces(stream, data, piece)
    stream.finish()
    assert bytes(stream.take(0).kept) == b"one\n"
    assert bytes(stream.take(1).kept) == b"two\ntwo\n"
    assert bytes(stream.take(2).kept) == b"tail"


def test_cap_keeps_the_head_and_counts_the_rest() -> None:
    prefix = new_marker_prefix()
    stream = SegmentedStream(prefix, cap=10)
    feed_in_pieces(stream, b"x" * 1000 + marker(prefix, 0) + b"after", 333)
    first = stream.take(0)
    assert bytes(first.kept) == b"x" * 10
    assert first.total == 1000
    stream.finish()
    assert bytes(stream.take(1).kept) == b"after"


def test_a_forged_marker_with_another_nonce_is_plain_output() -> None:
    stream = SegmentedStream(new_marker_prefix(), cap=1000)
    forged = marker(new_marker_prefix(), 0)
    stream.feed(b"a" + forged + b"b")
    stream.finish()
    assert bytes(stream.take(0).kept) == b"a" + forged + b"b"


def test_clean_text_strips_ansi_and_resolves_carriage_returns() -> None:
    raw = b"\x1b[31mred\x1b[0m plain\n10%\r50%\r100%\nend\x00\n"
    assert clean_text(raw) == "red plain\n100%\nend\n"
    assert clean_text(b"tab\there\r\n") == "tab\there\n"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (8.5e-7, "850 ns"),
        (1.234e-5, "12.3 µs"),
        (0.00123, "1.23 ms"),
        (0.9996, "1.00 s"),
        (12.34, "12.3 s"),
        (125, "2 min 5 s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("source", "shell"),
    [
        ("pip install ray\n", True),
        ("# comment\n$ ls -l\n", True),
        ("!pip install numpy\n", True),
        ("import ray\n", False),
        ("print('pip install')\n", False),
    ],
)
def test_looks_like_shell(source: str, shell: bool) -> None:
    assert looks_like_shell(source) is shell


def test_console_message_names_a_ray_task_errors_cause() -> None:
    message = 'ray::f() (pid=1, ip=127.0.0.2)\n  File "posts/x.md", line 3\nZeroDivisionError: oops'
    assert console_message("ray.exceptions.RayTaskError(ZeroDivisionError)", message) == (
        "RayTaskError(ZeroDivisionError): oops"
    )
    assert console_message("ValueError", "bad\nmore") == "ValueError: bad"


def test_imports_are_read_from_syntax_even_when_broken() -> None:
    assert top_level_imports("import numpy as np\nfrom ray.util import x\n") == {"numpy", "ray"}
    assert "ray" in top_level_imports("pip install ray\nimport ray\n")


def test_session_events_round_trip_as_json() -> None:
    for event in (
        SnippetStarted(index=2, seq=5),
        Finished(packages=[["numpy", "2.0"]]),
        RayRelease(),
    ):
        decoded = decode_event(encode_event(event))
        assert decoded == event and type(decoded) is type(event)
    with pytest.raises(ValueError, match="unknown"):
        decode_event(b'{"type": "Pickle"}')
    assert pickle.loads(pickle.dumps(SnippetStarted(1, 1))) == SnippetStarted(1, 1)


def test_the_fork_servers_bytecode_is_written_when_missing_or_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    module = tmp_path / "session_module.py"
    module.write_text("VALUE = 1\n")
    assert write_missing_bytecode((str(tmp_path),)) == 1
    assert write_missing_bytecode((str(tmp_path),)) == 0  # current: nothing to do
    module.write_text("VALUE = 22\n")  # an edit (another size)
    assert write_missing_bytecode((str(tmp_path),)) == 1
    # Python itself takes the written file as the module's current bytecode
    imported = subprocess.run(
        [sys.executable, "-B", "-v", "-c", "import session_module; print(session_module.VALUE)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout == "22\n"
    assert f"code object from '{importlib.util.cache_from_source(str(module))}'" in imported.stderr
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # PYTHONDONTWRITEBYTECODE, -B
    module.write_text("VALUE = 333\n")
    assert write_missing_bytecode((str(tmp_path),)) == 0


def test_absl_raw_lines_on_stderr_become_notes_not_output() -> None:
    """A driver's core worker writes absl's raw lines (a contended mutex) straight to the
    snippet's stderr; they are the runtime's, so `check` must not compare them."""
    from raypress.execution.capture import Segment
    from raypress.execution.ray_logs import SYSTEM_NOTE
    from raypress.execution.results import outputs_of

    err = b"a warning of the program\n[mutex.cc : 452] RAW: Lock blocking 0x55d4 @ 0x7f01\n"
    out = b"result\n"
    pieces = [(Segment(bytearray(out), len(out)), Segment(bytearray(err), len(err)), None)]
    outputs, notes, cut = outputs_of(pieces, cap=1 << 20)
    assert [(o.name, o.text) for o in outputs] == [  # type: ignore[union-attr]
        ("stdout", "result\n"),
        ("stderr", "a warning of the program\n"),
    ]
    assert notes == [f"{SYSTEM_NOTE}driver): [mutex.cc : 452] RAW: Lock blocking 0x55d4 @ 0x7f01"]
    assert not cut


def test_a_session_not_moved_into_its_cgroup_runs_nothing(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """``session_ns``: the intermediate moves the session into its memory cgroup, then
    lets it go on; when the move fails, the session stops before any of the post's code."""
    from raypress.execution import session_ns

    admitted, admit = os.pipe()
    read_only = os.open(os.devnull, os.O_RDONLY)  # the "cgroup.procs" write fails
    try:
        session_ns._admit(os.getpid(), read_only, admit)
    finally:
        os.close(read_only)
    assert "could not join its memory cgroup" in capfd.readouterr().err
    with pytest.raises(OSError, match="not moved into its memory cgroup"):
        session_ns._await_admission(admitted)

    admitted, admit = os.pipe()
    session_ns._admit(os.getpid(), None, admit)  # no cgroup on this machine: goes on
    session_ns._await_admission(admitted)
