"""``build.py check``: run every post afresh and compare each snippet with its record.

Records are ignored for running: every post with snippets to run is executed in
parallel, as a build would. Each snippet's output (stdout, stderr, value, images, the
error it raised, notes) is compared with its record after :mod:`raypress.freeze.normalise`
removed what legitimately varies between runs, per the snippet's ``compare`` option.
A snippet fails when it raises unexpectedly, an expected error does not happen, it
times out, its session dies, its code changed since the record, or its output differs.
Snippets much slower than their record are warnings (errors with ``fail_on_slowdown``).
``twice`` runs each post two times and fails snippets whose output differs between the
runs; ``update`` rewrites the records instead of failing on differences.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from raypress.config import Config
from raypress.errors import Problem
from raypress.execution.model import (
    NOT_RUN,
    ExecutionSettings,
    InlineExpression,
    InlineResult,
    PostExecution,
    PostRun,
    ProgressEvent,
    Snippet,
    SnippetResult,
    StreamOutput,
    format_duration,
)
from raypress.execution.ray_logs import SYSTEM_NOTE
from raypress.freeze.early_engine import EarlyEngine, will_run
from raypress.freeze.inputs import FileHashes, Inputs, InstalledVersions, post_inputs, source_hash
from raypress.freeze.normalise import normalise, same
from raypress.freeze.plan import orphaned_records, relocated, save_record, should_save
from raypress.freeze.records import Record, RecordError, read_record, record_files
from raypress.freeze.run_plan import (
    describe,
    execute_runs,
    execution_settings,
    plan_runs,
    runnable,
)
from raypress.publish.jupytext_script import post_script
from raypress.publish.markdown import ParsedBody
from raypress.publish.parse_cache import BuildCache, parse_bodies
from raypress.publish.posts import Post
from raypress.publish.reading import (
    available_layouts,
    markdown_settings,
    read_posts,
    select_posts,
)

_RANDOM_ID = re.compile(  # element ids libraries draw afresh each run (altair, plotly)
    r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b"
)
SLOW_FLOOR_S = 0.05  # a snippet must also be this much slower than its record to be flagged
_FAILED = {
    "error": "raised an exception",
    "missing-expected-error": "was expected to raise (error: true) but did not",
    "timed-out": "timed out",
    "died": "its session died",
}


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """What ``check`` does besides comparing."""

    update: bool = False  # rewrite the records instead of failing on differences
    twice: bool = False  # run each post twice and report output that differs between runs
    slowdown: float | None = None  # None: the configuration's check_slowdown
    fail_on_slowdown: bool = False
    posts: frozenset[str] = frozenset()  # only these posts (``posts/x.md``); empty: all
    require_isolation: bool = False  # fail unless the machine gives the full sandbox


@dataclass(frozen=True, slots=True)
class Issue:
    """Something wrong with a checked item; ``diff`` is a unified diff when outputs differ."""

    kind: Literal["error", "warning"]
    message: str
    diff: str = ""
    against_record: bool = False  # the record is what differs (``update`` rewrites it)


@dataclass(frozen=True, slots=True)
class Item:
    """One checked snippet or inline expression."""

    post: str
    line: int
    name: str  # "snippet 3 (staging)", "inline expression 1"
    seconds: float = 0.0  # this run's wall time
    skipped: str | None = None  # why it was not checked
    issues: tuple[Issue, ...] = ()

    @property
    def failed(self) -> bool:
        return any(issue.kind == "error" for issue in self.issues)

    @property
    def outcome(self) -> Literal["passed", "failed", "skipped"]:
        if self.failed:
            return "failed"
        return "skipped" if self.skipped else "passed"


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What ``check`` found."""

    posts: int
    items: tuple[Item, ...]
    problems: tuple[Problem, ...] = ()  # in the input: nothing ran
    # posts that could not run for a reason outside them (an unreachable cluster, a lost
    # node): not checked, records untouched, exit status 2 so that CI can run it again
    infrastructure: tuple[Problem, ...] = ()
    updated: tuple[str, ...] = ()  # records rewritten (``update``)
    seconds: float = 0.0  # wall time of the whole check
    snippet_seconds: float = 0.0  # sum of the snippets' own wall times (every run)

    def count(self, outcome: str) -> int:
        return sum(1 for item in self.items if item.outcome == outcome)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def exit_status(self) -> int:
        """0: every post as recorded; 1: the posts' own problems; 2: only failures outside
        the posts, worth running again."""
        if self.problems or any(item.failed for item in self.items):
            return 1
        return 2 if self.infrastructure else 0

    @property
    def summary(self) -> str:
        return (
            f"{self.posts} post{'s' if self.posts != 1 else ''}, {len(self.items)} snippets: "
            f"{self.count('passed')} passed, {self.count('failed')} failed, "
            f"{self.count('skipped')} skipped"
        )


def check(
    config: Config,
    options: CheckOptions = CheckOptions(),
    log: Callable[[str], None] | None = None,
    events: Callable[[ProgressEvent], None] | None = None,
    executor: EarlyEngine | None = None,
) -> CheckReport:
    """Run every selected post afresh and compare it with its record; ``events`` hears
    what runs as it runs (a live status). ``executor``: an engine the command line
    started before this module was imported (else one starts while the posts are parsed,
    as build does); the caller closes it."""
    early: list[EarlyEngine] = [executor] if executor is not None else []
    try:
        return _check(config, options, log, events, early)
    finally:
        for engine in early:
            if engine is not executor:
                engine.close()


def _check(
    config: Config,
    options: CheckOptions,
    log: Callable[[str], None] | None,
    events: Callable[[ProgressEvent], None] | None,
    early: list[EarlyEngine],
) -> CheckReport:
    started = time.perf_counter()
    config = dataclasses.replace(config, execute=True)
    cache = BuildCache(config.cache_path)
    all_posts, problems = read_posts(config, available_layouts(config), cache)
    if not all_posts and not problems:
        problems += orphaned_records(config)
    if options.require_isolation:
        problems += isolation_problems()
    posts = select_posts(all_posts, config, datetime.now(config.zone))
    if options.posts:
        known = {p.source for p in all_posts}
        problems += [
            Problem(name, None, "no such post", "name a file under posts/, e.g. posts/x.md")
            for name in sorted(options.posts - known)
        ]
        posts = [p for p in posts if p.source in options.posts]
    settings = execution_settings(config, log, events, options.require_isolation)
    if not early and not problems and will_run(posts, config, settings, rerun=True):
        EarlyEngine(settings, posts, config.root, early)  # it joins `early`; shows every post
    bodies, parse_problems, _ = parse_bodies(
        posts, markdown_settings(config), cache, config.jobs, config.render_timeout
    )
    problems += parse_problems + [p for body in bodies.values() for p in body.problems]
    candidates = [p for p in posts if runnable(p, bodies.get(p.source))]
    inputs: dict[str, Inputs] = {}
    hashes = FileHashes()
    for post in candidates:
        inputs[post.source], input_problems, _ = post_inputs(
            post, bodies[post.source], config, hashes
        )
        problems += input_problems
    if problems:
        return CheckReport(0, (), tuple(problems), seconds=time.perf_counter() - started)

    runs = plan_runs(candidates, bodies, config)
    all_runs = runs + runs if options.twice else runs
    slowdown = options.slowdown or config.check_slowdown
    by_source = {post.source: post for post in candidates}
    # posts compared while the others still ran, with the result each was compared on
    compared: dict[str, tuple[PostExecution, list[Item]]] = {}

    def against_record(post: Post, fresh: PostExecution) -> list[Item]:
        record, unusable = (None, None) if options.update else _record(config, post)
        return compare_post(
            bodies[post.source], fresh, record, unusable, slowdown, options.fail_on_slowdown
        )

    def compare_now(fresh: PostExecution) -> None:
        if options.twice or options.update or fresh.status == "infrastructure":
            return  # compared once both runs are in; or not compared at all
        compared[fresh.post] = (fresh, against_record(by_source[fresh.post], fresh))

    results, machinery, unreachable = _execute(
        all_runs, settings, log, events, early[0] if early else None, compare_now
    )
    if unreachable:  # the cluster could not be used: nothing ran (exit status 2)
        seconds = time.perf_counter() - started
        return CheckReport(0, (), infrastructure=tuple(unreachable), seconds=seconds)
    if machinery and len(results) < len(all_runs):  # the sandbox could not start
        return CheckReport(0, (), tuple(machinery), seconds=time.perf_counter() - started)
    first = {r.post: r for r in results[: len(runs)]}
    second = {r.post: r for r in results[len(runs) :]}
    versions = InstalledVersions()
    items: list[Item] = []
    updated: list[str] = []
    infrastructure: list[Problem] = []
    for post in candidates:
        body = bodies[post.source]
        fresh = first[post.source]
        lost = [r for r in (fresh, second.get(post.source)) if r and r.status == "infrastructure"]
        if lost:
            infrastructure += lost[0].problems
            why = "not checked: " + "; ".join(p.message for p in lost[0].problems)
            items += [
                Item(post.source, s.line, snippet_name(s), skipped=why) for s in body.snippets
            ]
            continue
        early_result, found = compared.get(post.source, (None, []))
        if early_result is not fresh:  # not compared yet, or on another result
            found = against_record(post, fresh)
        if post.source in second:
            found = _with_instability(body, found, fresh, second[post.source])
        if options.update:
            found = [_without_record_issues(item) for item in found]
            if should_save(fresh, body):
                updated.append(
                    save_record(
                        config,
                        post,
                        body,
                        inputs[post.source],
                        fresh,
                        versions,
                        post_script(post, body, config),
                    )
                )
        items += found
    return CheckReport(
        posts=len(candidates),
        items=tuple(items),
        problems=tuple(machinery),  # the fork server died: its posts' items say so too
        infrastructure=tuple(infrastructure),
        updated=tuple(updated),
        seconds=time.perf_counter() - started,
        snippet_seconds=sum(s.wall_s for r in results for s in r.snippets),
    )


def isolation_problems() -> list[Problem]:
    """``--require-isolation``: a problem when this machine cannot give the full sandbox."""
    from raypress.execution.isolation import probe

    isolation = probe("required")
    if isolation.full:
        return []
    return [Problem("execution", None, f"--require-isolation: {isolation.describe()}")]


def compare_post(
    body: ParsedBody,
    fresh: PostExecution,
    record: Record | None,
    unusable: str | None = None,
    slowdown: float = 3.0,
    fail_on_slowdown: bool = False,
) -> list[Item]:
    """The checked items of one post: its snippets, then its inline expressions."""
    recorded = relocated(record, body).snippets if record is not None else ()
    missing = unusable or "no record (run `build.py` or `build.py check --update`)"
    results = {r.index: r for r in fresh.snippets}
    items: list[Item] = []
    for snippet in body.snippets:
        result = results.get(snippet.index)
        name = snippet_name(snippet)
        if not snippet.options.eval:
            items.append(Item(fresh.post, snippet.line, name, skipped="eval: false"))
            continue
        if result is None or result.status in NOT_RUN:
            why = "not run: an earlier snippet failed" if fresh.status != "ok" else "not run"
            items.append(Item(fresh.post, snippet.line, name, skipped=why))
            continue
        issues = _status_issues(result)
        if not issues:
            old = recorded[snippet.index] if snippet.index < len(recorded) else None
            assert record is None or old is None or old.index == snippet.index
            place = record.places[snippet.index] if old is not None and record else None
            if record is None:
                issues.append(Issue("error", missing, against_record=True))
            elif old is None or place is None or place.source_sha256 != source_hash(snippet.source):
                message = "its code changed since its record (run `build.py`)"
                issues.append(Issue("error", message, against_record=True))
            else:
                issues += _output_issues(snippet, old, result, fresh.post)
                issues += _timing_issues(old, result, slowdown, fail_on_slowdown)
        items.append(Item(fresh.post, snippet.line, name, result.wall_s, None, tuple(issues)))
    recorded_inline = record.execution.inline if record is not None else ()
    fresh_inline = {r.index: r for r in fresh.inline}
    for expression in body.inline:
        items.append(
            _inline_item(
                fresh.post,
                expression,
                fresh_inline.get(expression.index),
                recorded_inline[expression.index]
                if expression.index < len(recorded_inline)
                else None,
                record is not None,
                missing,
            )
        )
    if fresh.status in ("died", "timed-out") and not any(item.failed for item in items):
        message = "; ".join(p.message for p in fresh.problems) or f"the session {fresh.status}"
        items.append(Item(fresh.post, 1, "session", 0.0, None, (Issue("error", message),)))
    return items


def snippet_name(snippet: Snippet) -> str:
    label = snippet.options.label
    return f"snippet {snippet.index + 1}" + (f" ({label})" if label else "")


def output_text(result: SnippetResult, mode: str = "strict") -> str:
    """What a snippet showed, in order, as text in sections, each normalised for ``mode``:
    ``[stdout]``, ``[stderr]``, ``[value]`` (and ``[html]``) for the final expression,
    ``[display N]`` for other rich outputs (images by their hash, ``<image>`` when loose)."""
    sections: list[tuple[str, str]] = []
    number = 0
    for output in result.outputs:
        if isinstance(output, StreamOutput):
            sections.append((output.name, output.text))
            continue
        if output.result:
            header = "value"
        else:
            number += 1
            header = f"display {number}"
        for mime, data in sorted(output.data, key=lambda item: item[0]):  # records: any order
            if isinstance(data, bytes) or mime == "image/svg+xml":
                raw = data if isinstance(data, bytes) else data.encode()
                digest = "<image>" if mode == "loose" else source_hash_bytes(raw)
                sections.append((header, f"{mime} {digest}\n"))
            elif mime == "text/plain":
                sections.append((header, data))
            elif mime == "text/html" and output.result:
                sections.append(("html", _RANDOM_ID.sub("<uuid>", data)))
            else:
                sections.append((f"{header} {mime}", _RANDOM_ID.sub("<uuid>", data)))
    if result.error is not None:
        sections.append(("error", result.error.traceback))
    # Ray's own lines, and where ray.init ran (the run's environment, as in the footer)
    notes = [n for n in result.notes if not n.startswith(SYSTEM_NOTE) and not _WHERE.match(n)]
    if notes:
        sections.append(("notes", "\n".join(notes)))
    parts = []
    for header, text in sections:
        body = normalise(text, mode)
        parts.append(f"[{header}]\n{body}" + ("" if body.endswith("\n") or not body else "\n"))
    return "".join(parts)


_WHERE = re.compile(r"ray\.init\(.*\): ran on |this time includes .* in ray\.init \(")


def source_hash_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


def unified(old: str, new: str, where: str, labels: tuple[str, str]) -> str:
    """A unified diff of two texts, headed ``where`` (``posts/x.md:LINE``)."""
    lines = difflib.unified_diff(
        old.splitlines(),
        new.splitlines(),
        fromfile=f"{where} ({labels[0]})",
        tofile=f"{where} ({labels[1]})",
        lineterm="",
    )
    return "\n".join(lines) + "\n"


def _status_issues(result: SnippetResult) -> list[Issue]:
    failure = _FAILED.get(result.status)
    if failure is None:
        return []
    detail = ""
    if result.error is not None:
        lines = result.error.message.strip().splitlines() or [""]
        detail = f": {result.error.type}: {lines[-1].strip()}"
    notes = f" ({'; '.join(result.notes)})" if result.notes else ""
    return [Issue("error", f"{failure}{detail}{notes}")]


def _output_issues(
    snippet: Snippet, old: SnippetResult, new: SnippetResult, post: str
) -> list[Issue]:
    mode = snippet.options.compare
    if old.status != new.status:
        message = f"its record says {old.status}, this run {new.status}"
        return [Issue("error", message, against_record=True)]
    if mode == "none":
        return []
    before, after = output_text(old, mode), output_text(new, mode)
    if same(before, after, mode):
        return []
    diff = unified(before, after, f"{post}:{snippet.line}", ("record", "this run"))
    hint = f"; if it varies between runs, try `#| compare: {suggestion(old, new, mode)}`"
    return [Issue("error", f"output differs from its record{hint}", diff, against_record=True)]


def suggestion(old: SnippetResult, new: SnippetResult, mode: str) -> str:
    """The compare option that would make two outputs match, judged from their difference:
    ``loose`` when only numbers, spacing or line order differ, else ``none``."""
    if mode == "strict" and same(output_text(old, "loose"), output_text(new, "loose"), "loose"):
        return "loose"
    return "none"


def _timing_issues(
    old: SnippetResult, new: SnippetResult, slowdown: float, fail: bool
) -> list[Issue]:
    if old.wall_s <= 0 or new.wall_s <= slowdown * old.wall_s:
        return []
    if new.wall_s - old.wall_s < SLOW_FLOOR_S:
        return []
    message = (
        f"took {format_duration(new.wall_s)}, {new.wall_s / old.wall_s:.1f}× its record "
        f"({format_duration(old.wall_s)}; the limit is {slowdown:g}×)"
    )
    return [Issue("error" if fail else "warning", message)]


def _inline_item(
    post: str,
    expression: InlineExpression,
    new: InlineResult | None,
    old: InlineResult | None,
    has_record: bool,
    missing: str,
) -> Item:
    name = f"inline expression {expression.index + 1} `{expression.source.strip()}`"
    if new is None:
        return Item(post, expression.line, name, skipped="not evaluated")
    if new.error is not None or new.text is None:
        message = f"failed: {new.error or 'no value'}"
        return Item(post, expression.line, name, 0.0, None, (Issue("error", message),))
    if not has_record:
        issue = Issue("error", missing, against_record=True)
        return Item(post, expression.line, name, 0.0, None, (issue,))
    if old is None:
        issue = Issue("error", "it is not in the record (run `build.py`)", against_record=True)
        return Item(post, expression.line, name, 0.0, None, (issue,))
    before = normalise(old.text or old.error or "") + "\n"
    after = normalise(new.text) + "\n"
    if same(before, after):
        return Item(post, expression.line, name)
    diff = unified(before, after, f"{post}:{expression.line}", ("record", "this run"))
    issue = Issue("error", "its value differs from its record", diff, against_record=True)
    return Item(post, expression.line, name, 0.0, None, (issue,))


def _with_instability(
    body: ParsedBody, items: list[Item], first: PostExecution, second: PostExecution
) -> list[Item]:
    """``items`` with an error added to each snippet whose two runs differ."""
    again = {r.index: r for r in second.snippets}
    snippets = {snippet_name(s): s for s in body.snippets}
    firsts = {r.index: r for r in first.snippets}
    out = []
    for item in items:
        snippet = snippets.get(item.name)
        if snippet is not None and item.skipped is None and snippet.options.compare != "none":
            a, b = firsts.get(snippet.index), again.get(snippet.index)
            mode = snippet.options.compare
            texts = ("", "")
            if a is not None and b is not None:
                texts = (output_text(a, mode), output_text(b, mode))
            if not same(*texts, mode):
                option = suggestion(a, b, mode) if a is not None and b is not None else "none"
                diff = unified(*texts, f"{item.post}:{item.line}", ("first run", "second run"))
                issue = Issue(
                    "error",
                    f"output differs between two runs; mark it `#| compare: {option}`",
                    diff,
                )
                item = dataclasses.replace(item, issues=(*item.issues, issue))
        out.append(item)
    return out


def _without_record_issues(item: Item) -> Item:
    """With ``update``: differences from the record are what gets written, not failures."""
    return dataclasses.replace(
        item, issues=tuple(issue for issue in item.issues if not issue.against_record)
    )


def _record(config: Config, post: Post) -> tuple[Record | None, str | None]:
    files = record_files(config, post.source)
    try:
        record = read_record(files, post.source)
    except RecordError as exc:
        return None, f"{files.display(config)} {exc}"
    return record, None


def _execute(
    runs: list[PostRun],
    settings: ExecutionSettings,
    log: Callable[[str], None] | None,
    events: Callable[[ProgressEvent], None] | None = None,
    executor: EarlyEngine | None = None,
    finished: Callable[[PostExecution], None] | None = None,
) -> tuple[list[PostExecution], list[Problem], list[Problem]]:
    """Run the posts; ``finished`` hears each result as it comes in."""
    if events is not None and runs:
        events(ProgressEvent("posts-queued", count=len(runs)))

    def progress(result: PostExecution) -> None:
        if log:
            log(describe(result))
        if finished:
            finished(result)

    return execute_runs(runs, settings, progress, executor)
