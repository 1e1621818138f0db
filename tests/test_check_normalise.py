"""The normalisation rules of ``check`` (README "Comparing outputs"), one by one."""

from __future__ import annotations

import pytest

from raypress.commands.check import output_text, suggestion
from raypress.execution.model import DisplayOutput, SnippetResult, StreamOutput
from raypress.freeze.normalise import normalise, same


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "(where_am_i pid=12345) task ran in worker pid 12345\n",
            "(where_am_i pid=<pid>) task ran in worker pid <pid>\n",
        ),
        ("(f pid=77, ip=10.0.0.5) hi\n", "(f pid=<pid>) hi\n"),  # the node is Ray's choice
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
        ("8 sums, 25 MB, 3x faster, s3 bucket", "8 sums, 25 MB, <factor>x faster, s3 bucket"),
        ("8 sums, 25 MB, 3x more, s3 bucket", "8 sums, 25 MB, 3x more, s3 bucket"),
        ("duration = 4.0149290561676025\n", "duration = <duration>\n"),
        ("per task overhead (ms) = 0.4739549160003662", "per task overhead (ms) = <duration>"),
        ("Running 1000000 tests took 1.4935967922210693", "Running 1000000 tests took <duration>"),
        ("wall clock 0.25 after 3 rounds", "wall clock <duration> after 3 rounds"),
        ("loss 0.25 after 3 rounds", "loss 0.25 after 3 rounds"),  # no word of time: a value
        ("started 2025-11-26 04:55:19", "started 2025-11-26 <duration>"),
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


def test_a_progress_bar_keeps_only_where_it_ended() -> None:
    fast = "100%|██████████| 6/6 [00:02<00:00,  2.35it/s]\n"
    slow = "100%|██████████| 6/6 [00:11<00:00,  1.85s/it]\n"
    assert normalise(fast) == normalise(slow)
    assert normalise(fast) != normalise(fast.replace("6/6", "5/6").replace("100%", " 83%"))


def test_a_polling_loop_may_print_more_or_fewer_lines() -> None:
    quick = "Progress: 0%\nProgress: 100%\nEstimated value of π is: 3.1412202\n"
    slow = "".join(f"Progress: {p}%\n" for p in (0, 0, 15, 28, 40, 55, 70, 85, 100))
    slow += "Estimated value of π is: 3.1412202\n"
    assert normalise(quick) == normalise(slow)
    assert "<progress>\nProgress: 100%\n" in normalise(slow)
    stuck = slow.replace("Progress: 100%", "Progress: 90%")
    assert normalise(stuck) != normalise(quick)  # where it ended is compared


def test_repeated_lines_without_progress_keep_their_count() -> None:
    assert normalise("1\n1\n1\n1\n") != normalise("1\n1\n1\n1\n1\n")
    assert normalise("0\n1\n2\n3\n") != normalise("0\n1\n2\n")  # an enumeration, not progress
    going_down = "Progress: 50%\nProgress: 20%\n"  # not one report: both lines are kept
    assert normalise(going_down).count("Progress") == 2


def test_lines_of_tasks_and_actors_may_come_in_any_order() -> None:
    first = "driver\n(task_1 pid=11) a\n(ThreadedActor pid=12) one\n(ThreadedActor pid=12) two\n"
    second = "driver\n(ThreadedActor pid=40) two\n(task_1 pid=41) a\n(ThreadedActor pid=40) one\n"
    assert normalise(first) == normalise(second)
    assert normalise(first) != normalise(first.replace("driver", "driver 2"))
    assert normalise(first) != normalise(first.replace(") one", ") three"))


@pytest.mark.parametrize(
    ("record", "run", "match"),
    [
        ("Estimated value of π is: 3.1412202\n", "Estimated value of π is: 3.1416908\n", True),
        ("3.143024\n", "3.1411\n", True),
        ("pi ~ 3.1412\n", "pi ~ 2.3559\n", False),  # a different estimate, not noise
        ("mean 3.14\n", "mean 3.15\n", False),  # 3 digits: printed to be exact
        ("count 1000003\n", "count 1000004\n", False),  # integers are exact
        ("1000000.0\n", "1001000.0\n", False),  # whole numbers printed as floats too
        ("mean 0.4987123\n", "mean 0.4989456\n", True),
        ("3.1412202 and 7\n", "3.1416908 and 8\n", False),
        ("a 3.1412202\nb\n", "a 3.1416908\n", False),
    ],
)
def test_estimates_may_differ_in_their_noise(record: str, run: str, match: bool) -> None:
    assert same(normalise(record), normalise(run)) is match


def test_the_hint_names_the_option_that_would_fix_the_difference() -> None:
    def result(stdout: str) -> SnippetResult:
        return SnippetResult(0, "ok", outputs=(StreamOutput("stdout", stdout),))

    numbers = (result("speed 17 units\n"), result("speed 15 units\n"))
    lines = (result("a\nb\n"), result("a\nb\nc\n"))
    assert suggestion(*numbers, "strict") == "loose"
    assert suggestion(*lines, "strict") == "none"
    assert suggestion(*numbers, "loose") == "none"


def test_a_value_compares_the_same_whatever_the_order_of_its_types() -> None:
    """A record read back may list a value's MIME types in another order than the run
    that made it (RayContext: HTML and text): that is no difference."""
    plain, html = ("text/plain", "RayContext(...)"), ("text/html", "<table></table>")
    first = SnippetResult(0, "ok", outputs=(DisplayOutput((plain, html), result=True),))
    second = SnippetResult(0, "ok", outputs=(DisplayOutput((html, plain), result=True),))
    changed = SnippetResult(0, "ok", outputs=(DisplayOutput((html,), result=True),))
    assert output_text(first) == output_text(second)
    assert output_text(first) != output_text(changed)


def test_where_ray_ran_is_environment_not_output() -> None:
    """The notes on what ray.init ran on, and its share of the time, differ between the
    build's own clusters and a user's cluster; other notes are still compared."""
    here = (
        "ray.init(num_cpus=4): ran on a fresh cluster of 4 CPUs, 0 GPUs, as asked",
        "this time includes 4.1 s in ray.init (raypress starting this post's own cluster)",
    )
    there = (
        "ray.init(num_cpus=4): ran on the cluster at 10.0.0.1:6379, which has 64 CPUs",
        "this time includes 0.3 s in ray.init (connecting to the cluster)",
    )
    local = SnippetResult(0, "ok", outputs=(StreamOutput("stdout", "x\n"),), notes=here)
    remote = SnippetResult(0, "ok", outputs=(StreamOutput("stdout", "x\n"),), notes=there)
    other = SnippetResult(0, "ok", outputs=(StreamOutput("stdout", "x\n"),), notes=("cut",))
    assert output_text(local) == output_text(remote)
    assert output_text(local) != output_text(other)
