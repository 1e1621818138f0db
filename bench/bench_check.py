"""Does ``check`` pass honest output and fail real regressions? Both, measured.

    python bench/bench_check.py                      # false alarms, then mutations
    python bench/bench_check.py --runs 3 --skip-mutations
    python bench/bench_check.py --skip-false-alarms --only posts/2025-10-27-using-the-ray-library.md

**False alarms.** The Ray documentation pages converted by ``bench/convert_ray_docs.py``
(``bench/ray_docs/posts``, no ``compare:`` option anywhere) go into a fresh site;
``build.py check --update`` records them, then ``build.py check --twice`` runs ``--runs``
times, each a separate process as CI would run it. Every failing snippet is a false
alarm: nothing changed but the run.

**Regressions caught.** For every snippet of the example posts and the tutorial posts,
one constant or operator of its code is mutated (``100`` -> ``101``, ``+`` -> ``-``,
``<`` -> ``<=``; chosen at random, seeded by the snippet, among those its code has), and
the post runs with that change. The original post runs twice as well.

* A mutation is *visible* when a reader would see the output change: the mutated run
  differs from both original runs in something the two original runs agree on (a line of
  a kind both show equally often, a word, a number both print the same), or a number the
  originals print with noise lands outside twice that noise, or the snippet's status
  changes. Timings are measurements, not results: a mutation that only changes how long
  something took (``time.sleep(0.5)`` -> ``0.6``) is counted apart. Process ids, Ray ids,
  addresses and temporary paths are not output a reader reads, nor is the order in which
  parallel tasks printed.
* It is *caught* when ``check``'s comparison (``commands.check.compare_post``, the
  snippet's code taken as unchanged) fails the post against a record made from the first
  original run.

The rate caught / visible is printed, and every visible mutation it missed. Prints
figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import os
import random
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raypress.commands.check import compare_post, output_text  # noqa: E402
from raypress.config import load_config  # noqa: E402
from raypress.execution import ExecutionSettings, execute_posts  # noqa: E402
from raypress.execution.model import PostExecution, PostRun, SnippetResult  # noqa: E402
from raypress.execution.ray_logs import SYSTEM_NOTE  # noqa: E402
from raypress.freeze.inputs import Inputs, source_hash  # noqa: E402
from raypress.freeze.normalise import normalise  # noqa: E402
from raypress.freeze.records import Record, SnippetPlace  # noqa: E402
from raypress.freeze.run_plan import plan_runs  # noqa: E402
from raypress.publish.parse_cache import BuildCache, parse_bodies  # noqa: E402
from raypress.publish.reading import available_layouts, markdown_settings, read_posts  # noqa: E402

WORK = ROOT / "bench" / "_work" / "check"
TUTORIALS = ROOT / "bench" / "ray_docs" / "posts"
EXAMPLES = ROOT / "posts"
_NUMBER = re.compile(r"(?<![\w<.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w>])")
_SWAPS = {
    ast.Add: "-",
    ast.Sub: "+",
    ast.Mult: "+",
    ast.Div: "*",
    ast.FloorDiv: "/",
    ast.Mod: "//",
    ast.Pow: "*",
    ast.Lt: "<=",
    ast.LtE: "<",
    ast.Gt: ">=",
    ast.GtE: ">",
    ast.Eq: "!=",
    ast.NotEq: "==",
}
_SYMBOLS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}


# --- false alarms ---------------------------------------------------------------------


def false_alarms(runs: int, jobs: int) -> int:
    """``check --twice`` ``runs`` times on the tutorial posts; the number of failed snippets."""
    site = WORK / "false-alarms"
    make_site(site, sorted(TUTORIALS.glob("*.md")))
    print(f"False alarms: {len(list((site / 'posts').glob('*.md')))} tutorial posts in {site}")
    began = time.perf_counter()
    update = cli(site, "check", "--update", "--jobs", str(jobs))
    print(f"  check --update: exit {update.returncode} in {time.perf_counter() - began:.0f} s")
    if update.returncode != 0:
        print(_tail(update.stdout + update.stderr))
    total = 0
    for attempt in range(1, runs + 1):
        report = site / f"junit-{attempt}.xml"
        began = time.perf_counter()
        result = cli(site, "check", "--twice", "--jobs", str(jobs), "--junit-xml", str(report))
        failures = junit_failures(report)
        total += len(failures)
        load = os.getloadavg()[0]
        print(
            f"  check --twice, run {attempt}: exit {result.returncode}, {len(failures)} failed "
            f"snippets in {time.perf_counter() - began:.0f} s (load {load:.1f})"
        )
        for name, message in failures:
            print(f"    {name}: {message}")
    return total


def junit_failures(report: Path) -> list[tuple[str, str]]:
    try:
        tree = ET.parse(report)
    except (OSError, ET.ParseError):
        return [("(no report)", "check did not write its JUnit report")]
    found = []
    for case in tree.iter("testcase"):
        failure = case.find("failure")
        if failure is not None:
            name = f"{case.get('classname')}: {case.get('name')}"
            found.append((name, failure.get("message", "")))
    return found


def make_site(site: Path, posts: list[Path]) -> None:
    shutil.rmtree(site, ignore_errors=True)
    (site / "posts").mkdir(parents=True)
    for post in posts:
        shutil.copyfile(post, site / "posts" / post.name)
    (site / "site.toml").write_text('title = "bench_check"\n')


def cli(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RAYPRESS_"))}
    return subprocess.run(
        [sys.executable, str(ROOT / "build.py"), *args, "--root", str(site)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


# --- mutations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    post: str
    index: int  # snippet
    line: int  # post line of the mutated code
    description: str  # "100 -> 101"
    source: str  # the snippet's mutated code


def mutation_of(post: str, index: int, code_line: int, source: str) -> Mutation | None:
    """One mutation of a constant or operator of ``source`` (seeded choice), or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def position(lineno: int, col: int) -> int:
        return offsets[lineno - 1] + len(lines[lineno - 1].encode()[:col].decode(errors="ignore"))

    candidates: list[tuple[int, int, str, str]] = []  # start, end, old, new
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            start = position(node.lineno, node.col_offset)
            end = position(node.end_lineno or node.lineno, node.end_col_offset or 0)
            old = source[start:end]
            value = node.value
            new = str(value + 1) if isinstance(value, int) else repr(value * 2 if value else 1.0)
            candidates.append((start, end, old, new))
        pairs: list[tuple[ast.AST, ast.AST, type]] = []
        if isinstance(node, ast.BinOp):
            pairs.append((node.left, node.right, type(node.op)))
        elif isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                pairs.append((left, right, type(op)))
                left = right
        for left, right, op in pairs:
            if op not in _SWAPS:
                continue
            gap_start = position(left.end_lineno or 1, left.end_col_offset or 0)  # type: ignore[attr-defined]
            gap_end = position(right.lineno, right.col_offset)  # type: ignore[attr-defined]
            gap = source[gap_start:gap_end]
            symbol = _SYMBOLS[op]
            found = re.search(rf"(?<![*/<>=!]){re.escape(symbol)}(?![*/=])", gap)
            if found:
                at = gap_start + found.start()
                candidates.append((at, at + len(symbol), symbol, _SWAPS[op]))
    if not candidates:
        return None
    chooser = random.Random(f"{post}:{index}")
    start, end, old, new = chooser.choice(sorted(candidates))
    mutated = source[:start] + new + source[end:]
    line = code_line + source[:start].count("\n")
    return Mutation(post, index, line, f"{old} -> {new}", mutated)


def reader_view(result: SnippetResult | None) -> str:
    """What a reader reads of a snippet: its output, without ids, pids, addresses, temporary
    paths and timings, task lines in a fixed order; progress reports kept whole."""
    if result is None:
        return "[not run]\n"
    head = f"[status] {result.status}\n"
    if result.error is not None:
        head += f"[error] {result.error.type}: {result.error.message}\n"
    body = ""
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        if text:
            body += f"[{name}]\n{text}"
    if result.value is not None:
        body += f"[value]\n{result.value}\n"
    for image in result.images:
        body += f"[image] {source_hash(image.data.hex())}\n"
    notes = [n for n in result.notes if not n.startswith(SYSTEM_NOTE)]  # shown on the page
    if notes:
        body += "[notes]\n" + "\n".join(notes) + "\n"
    return head + normalise(body, "strict", progress=False)


def visible(first: str, second: str, mutated: str) -> bool:
    """Whether ``mutated`` differs from two original runs in what they agree on."""
    if mutated in (first, second):
        return False
    groups = [_by_shape(text) for text in (first, second, mutated)]
    for shape in set(groups[0]) | set(groups[2]):
        a, b, m = (group.get(shape, []) for group in groups)
        if len(a) == len(b):
            if len(m) != len(a):
                return True  # a kind of line both originals show equally often
            if any(_differs(x, y, z) for x, y, z in zip(a, b, m, strict=True)):
                return True
        elif a and b and m and _differs(a[-1], b[-1], m[-1]):
            return True  # a report of varying length: where it ended
    return False


def _by_shape(text: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for line in text.split("\n"):
        groups[_NUMBER.sub("#", line)].append(line)
    return groups


def _differs(a: str, b: str, m: str) -> bool:
    """Whether line ``m`` differs from ``a`` and ``b`` (same shape) beyond their noise."""
    for x, y, z in zip(_NUMBER.findall(a), _NUMBER.findall(b), _NUMBER.findall(m), strict=True):
        if x == y:
            if z != x:
                return True
            continue
        fx, fy, fz = float(x), float(y), float(z)
        if abs(fz - (fx + fy) / 2) > 2 * abs(fx - fy):
            return True
    return False


def mutations(jobs: int, only: set[str]) -> None:
    site = WORK / "mutations"
    posts = sorted(EXAMPLES.glob("*.md")) + sorted(TUTORIALS.glob("*.md"))
    make_site(site, posts)
    config = dataclasses.replace(load_config(site), jobs=jobs)
    cache = BuildCache(config.cache_path)
    all_posts, problems = read_posts(config, available_layouts(config), cache)
    bodies, more, _ = parse_bodies(
        all_posts, markdown_settings(config), BuildCache(config.cache_path), 1, 30
    )
    runs = [r for r in plan_runs(all_posts, bodies, config) if not only or r.post in only]
    if problems or more:
        print("problems reading the posts:", *problems, *more, sep="\n  ")
    chosen: list[Mutation] = []
    skipped = 0
    for run in runs:
        for snippet in run.snippets:
            if not snippet.options.eval:
                continue
            found = mutation_of(run.post, snippet.index, snippet.code_line, snippet.source)
            if found is None:
                skipped += 1
            else:
                chosen.append(found)
    print(
        f"\nMutations: {len(chosen)} snippets of {len(runs)} posts mutated "
        f"({skipped} have no constant or operator); jobs {jobs}, load {os.getloadavg()[0]:.1f}"
    )
    settings = ExecutionSettings(jobs=jobs, snippet_timeout=180.0)
    began = time.perf_counter()
    originals = execute_posts(runs + runs, settings)
    first = {r.post: r for r in originals[: len(runs)]}
    second = {r.post: r for r in originals[len(runs) :]}
    print(f"  originals, twice: {time.perf_counter() - began:.0f} s")
    by_post = {r.post: r for r in runs}
    mutated_runs = [mutated_run(by_post[m.post], m) for m in chosen]
    began = time.perf_counter()
    outcomes = execute_posts(mutated_runs, settings, progress=_dot)
    print(f"\n  mutated runs: {time.perf_counter() - began:.0f} s (load {os.getloadavg()[0]:.1f})")
    judge(chosen, outcomes, first, second, bodies)


def mutated_run(run: PostRun, mutation: Mutation) -> PostRun:
    snippets = tuple(
        dataclasses.replace(s, source=mutation.source) if s.index == mutation.index else s
        for s in run.snippets
    )
    return dataclasses.replace(run, snippets=snippets)


def _dot(_: PostExecution) -> None:
    print(".", end="", flush=True)


def record_of(execution: PostExecution, body: object) -> Record:
    snippets = body.snippets  # type: ignore[attr-defined]
    return Record(
        post=execution.post,
        inputs=Inputs(snippets=(), inline="", post=""),
        installed=(),
        execution=execution,
        places=tuple(
            SnippetPlace(s.line, s.code_line, len(s.source.splitlines()), source_hash(s.source))
            for s in snippets
        ),
        inline_lines=tuple(i.line for i in body.inline),  # type: ignore[attr-defined]
    )


def judge(
    chosen: list[Mutation],
    outcomes: list[PostExecution],
    first: dict[str, PostExecution],
    second: dict[str, PostExecution],
    bodies: dict[str, object],
) -> None:
    visible_count = caught = timing_only = invisible_caught = 0
    misses: list[str] = []
    strict: list[str] = []
    for mutation, outcome in zip(chosen, outcomes, strict=True):
        a, b = first[mutation.post], second[mutation.post]
        if a.status != "ok" or b.status != "ok":
            continue  # the original itself fails: nothing to compare with
        seen = any(
            visible(reader_view(x), reader_view(y), reader_view(z))
            for x, y, z in _snippet_triples(a, b, outcome)
        ) or _inline_changed(a, b, outcome)
        body = bodies[mutation.post]
        items = compare_post(body, outcome, record_of(a, body))  # type: ignore[arg-type]
        failed = any(item.failed for item in items)
        if not seen and _timing_changed(a, outcome):
            timing_only += 1
        if seen:
            visible_count += 1
            caught += failed
            if not failed:
                misses.append(_describe_miss(mutation, a, outcome))
        elif failed:
            invisible_caught += 1
            noisy = any(
                reader_view(x) != reader_view(y) for x, y, _ in _snippet_triples(a, b, outcome)
            )
            why = "the originals differ between their two runs" if noisy else "timing or notes"
            strict.append(_describe_miss(mutation, a, outcome) + f"\n    ({why})")
    rate = 100.0 * caught / visible_count if visible_count else 0.0
    print(
        f"\n{len(chosen)} mutations: {visible_count} change what a reader sees, "
        f"{len(chosen) - visible_count} do not ({timing_only} of those change only timings)"
    )
    print(f"caught by check: {caught} of {visible_count} visible = {rate:.1f}% (target: 95%)")
    print(f"check failed on {invisible_caught} mutations a reader would not see (noise or timing)")
    for line in strict:
        print(line)
    if misses:
        print("\nmissed:")
        for miss in misses:
            print(miss)
    print(f"\nload average at end: {os.getloadavg()}")


def _snippet_triples(
    a: PostExecution, b: PostExecution, m: PostExecution
) -> Iterator[tuple[SnippetResult, SnippetResult, SnippetResult | None]]:
    mutated = {r.index: r for r in m.snippets}
    for x, y in zip(a.snippets, b.snippets, strict=True):
        if x.status != "skipped":
            yield x, y, mutated.get(x.index)


def _inline_changed(a: PostExecution, b: PostExecution, m: PostExecution) -> bool:
    for x, y, z in zip(a.inline, b.inline, m.inline, strict=False):
        texts = [normalise(r.text or r.error or "") for r in (x, y, z)]
        if texts[0] == texts[1] and texts[2] != texts[0]:
            return True
    return False


def _timing_changed(a: PostExecution, m: PostExecution) -> bool:
    for x, z in zip(a.snippets, m.snippets, strict=False):
        if x.stdout != z.stdout and normalise(x.stdout) == normalise(z.stdout):
            return True
    return False


def _describe_miss(mutation: Mutation, a: PostExecution, m: PostExecution) -> str:
    where = f"{mutation.post}:{mutation.line}: snippet {mutation.index + 1}"
    lines = [f"  {where}: {mutation.description}"]
    for x, z in zip(a.snippets, m.snippets, strict=False):
        before, after = output_text(x), output_text(z)
        if before != after:
            lines.append(f"    snippet {x.index + 1}, record: {_short(before)}")
            lines.append(f"    snippet {x.index + 1}, mutated: {_short(after)}")
    return "\n".join(lines)


def _short(text: str, limit: int = 160) -> str:
    text = text.replace("\n", " | ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="check --twice runs (default 3)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--skip-false-alarms", action="store_true")
    parser.add_argument("--skip-mutations", action="store_true")
    parser.add_argument("--only", action="append", default=[], help="mutate only this post")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    if not args.skip_false_alarms:
        total = false_alarms(args.runs, args.jobs)
        print(f"false alarms in {args.runs} runs of check --twice: {total} failed snippets")
    if not args.skip_mutations:
        mutations(args.jobs, set(args.only))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
