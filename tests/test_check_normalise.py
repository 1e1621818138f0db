"""The normalisation rules of ``check`` (README "Comparing outputs"), one by one."""

from __future__ import annotations

import pytest

from raypress.freeze.normalise import normalise


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "(where_am_i pid=12345) task ran in worker pid 12345\n",
            "(where_am_i pid=<pid>) task ran in worker pid <pid>\n",
        ),
        ("(f pid=77, ip=10.0.0.5) hi\n", "(f pid=<pid>, ip=<ip>) hi\n"),
        ("driver pid: 4242 / PID=17\n", "driver pid: <pid> / PID=<pid>\n"),
        ("sum 4950 (f pid=4950)\nsum 4950\n", "sum <pid> (f pid=<pid>)\nsum 4950\n"),
        (
            "ObjectRef(c8ef45ccd0112571ffffffffffffffffffffffff0100000001000000)\n",
            "ObjectRef(<id>)\n",
        ),
        ("ActorID(4598b4dd8d7b5ce3a384275801000000) JobID(01000000)", "ActorID(<id>) JobID(<id>)"),
        ("Actor(Box, 4598b4dd8d7b5ce3a384275801000000)", "Actor(Box, <id>)"),
        ("<object object at 0x7f8db2251c00>", "<object object at <addr>>"),
        ("0xff and 0x1234567 stay", "0xff and 0x1234567 stay"),
        ("wrote /tmp/raypress-x1/001-post/work/out.csv, done", "wrote <tmp>, done"),
        (
            'File "/home/a/.venv/lib/python3.11/site-packages/ray/worker.py", line 3',
            'File "<site-packages>/ray/worker.py", line 3',
        ),
        ("/usr/lib/python3.11/json/decoder.py", "<stdlib>/json/decoder.py"),
        (
            "12.3 ms, 0.84 s, 2.1s, 5 µs, 3 seconds, 1,5 min",
            "<duration>, <duration>, <duration>, <duration>, <duration>, <duration>",
        ),
        ("8 sums, 25 MB, 3x faster, s3 bucket", "8 sums, 25 MB, 3x faster, s3 bucket"),
        ("[1, 2, 3] 328350 True\n", "[1, 2, 3] 328350 True\n"),
    ],
)
def test_strict_rules(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_loose_replaces_numbers_spacing_and_line_order() -> None:
    first = "loops   1234 ms  17x faster\nerror 3e-08 at (201, 201)\nb line\n"
    second = "error 2.5e-08 at (5, 5)\nloops 999 ms 15x faster   \nb line\n"
    assert normalise(first, "loose") == normalise(second, "loose")
    assert normalise(first, "loose") != normalise(first.replace("b line", "c line"), "loose")
    assert "float64" in normalise("dtype float64 25MB", "loose")


def test_none_compares_nothing() -> None:
    assert normalise("anything 1", "none") == normalise("else 2", "none") == ""
