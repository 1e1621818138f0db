"""Frozen results: a post's snippets run again only when what their results depend on changed.

``plan_freeze`` decides, per post with snippets to run, between its record in
``snippets/`` (:mod:`raypress.freeze.records`) and a fresh run: a record is reused when the
post's :class:`~raypress.freeze.inputs.Inputs` are those it was made from, its run succeeded,
and the environment still matches (same Python, same installed version of every package
the post imported). ``save_record`` writes a finished run's record; ``remove_stale``
deletes the records of posts that no longer exist.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from raypress.config import Config
from raypress.errors import Problem
from raypress.execution.model import ErrorInfo, PostExecution
from raypress.freeze.inputs import (
    FileHashes,
    Inputs,
    InstalledVersions,
    post_inputs,
    python_version,
)
from raypress.freeze.inputs import source_hash as _source_hash
from raypress.freeze.records import (
    Record,
    RecordError,
    SnippetPlace,
    read_record,
    record_files,
    write_if_changed,
    write_record,
)
from raypress.paths import display_path
from raypress.publish.jupytext_script import post_script
from raypress.publish.markdown import ParsedBody
from raypress.publish.posts import POST_SUFFIXES, Post

SAVED_STATUSES = frozenset({"ok", "failed"})  # runs that finished: worth a record
_TEMP_AGE_S = 300.0  # leftovers of an interrupted write older than this are removed

Rerun = bool | frozenset[str]  # True: every post; a set: these posts (``posts/x.md``)


@dataclass(frozen=True, slots=True)
class FreezePlan:
    """For each post with snippets to run: its record's results, or why it must run."""

    reused: dict[str, PostExecution]  # post -> results from its record (lines moved)
    reasons: dict[str, str]  # post -> why it runs now (only when executing)
    # post -> its record's results, for a post that runs now: shown instead when the run
    # fails for a reason outside the post (a lost node), since such a run is not saved
    previous: dict[str, PostExecution]
    inputs: dict[str, Inputs]  # post -> its current inputs (for the new record)
    unrecorded: dict[str, str]  # post -> why it is shown without outputs (--no-exec)
    notes: tuple[str, ...]  # unusable records, for the console
    problems: tuple[Problem, ...]  # declared deps files that are missing or outside
    watched: tuple[str, ...]  # files outside posts/ whose contents are inputs


def plan_freeze(
    posts: Sequence[Post],
    bodies: dict[str, ParsedBody],
    config: Config,
    rerun: Rerun = False,
    versions: InstalledVersions | None = None,
) -> FreezePlan:
    """Decide, for each of ``posts`` (all with snippets to run), record or run."""
    versions = versions or InstalledVersions()
    hashes = FileHashes()
    reused: dict[str, PostExecution] = {}
    previous: dict[str, PostExecution] = {}
    reasons: dict[str, str] = {}
    all_inputs: dict[str, Inputs] = {}
    unrecorded: dict[str, str] = {}
    notes: list[str] = []
    problems: list[Problem] = []
    watched: set[str] = set()
    posts_folder = config.posts_path.resolve()
    for post in posts:
        body = bodies[post.source]
        inputs, input_problems, read = post_inputs(post, body, config, hashes)
        problems += input_problems
        watched.update(str(p) for p in read if not p.is_relative_to(posts_folder))
        all_inputs[post.source] = inputs
        if config.execute and (rerun is True or (rerun and post.source in rerun)):
            reasons[post.source] = "--rerun"
            continue
        files = record_files(config, post.source)
        why = ""
        try:
            record = read_record(files, post.source)
        except RecordError as exc:
            then = "re-running the post" if config.execute else "showing it without outputs"
            notes.append(f"{files.display(config)}: {exc}; {then}")
            record, why = None, "its record is unusable"
        if record is None:
            why = why or f"no record in {config.snippets_dir}/"
        else:
            why = ", ".join(inputs.changes(record.inputs))
            if not why and config.execute:
                if record.execution.status != "ok":
                    why = "its last run failed"
                else:
                    why = ", ".join(environment_changes(record, versions))
        if not why:
            assert record is not None
            reused[post.source] = relocated(record, body)
        elif config.execute:
            reasons[post.source] = why
            if record is not None and len(record.places) == len(body.snippets):
                previous[post.source] = relocated(record, body)
        else:
            unrecorded[post.source] = why
    return FreezePlan(
        reused,
        reasons,
        previous,
        all_inputs,
        unrecorded,
        tuple(notes),
        tuple(problems),
        tuple(sorted(watched)),
    )


def environment_changes(record: Record, versions: InstalledVersions) -> list[str]:
    """How this environment differs from the record's: ``numpy 2.3.1 → 2.4.0``, ..."""
    changes = []
    recorded = record.execution.environment.python
    if recorded and recorded != python_version():
        changes.append(f"Python {recorded} → {python_version()}")
    for name, version in record.installed:
        now = versions(name)
        if now != version:
            changes.append(f"{name} {version or '?'} → {now or 'not installed'}")
    return changes


def relocated(record: Record, body: ParsedBody) -> PostExecution:
    """The record's results with post line numbers moved to where the snippets are now
    (prose added above a snippet moves its traceback's lines, not its results)."""
    moves = [
        (place.code_line, place.lines, snippet.code_line)
        for place, snippet in zip(record.places, body.snippets, strict=False)
        if place.code_line != snippet.code_line
    ]
    execution = record.execution
    if not moves:
        return execution

    def move(line: int | None) -> int | None:
        if line is None:
            return None
        for old, count, new in moves:
            if old <= line < old + max(count, 1):
                return line - old + new
        return line

    frame = re.compile(rf'(File "{re.escape(record.post)}", line )(\d+)')

    def move_text(text: str) -> str:
        return frame.sub(lambda m: f"{m.group(1)}{move(int(m.group(2)))}", text)

    snippets = tuple(
        result
        if result.error is None
        else replace(
            result,
            error=ErrorInfo(
                result.error.type,
                result.error.message,
                move_text(result.error.traceback),
                move(result.error.line),
            ),
        )
        for result in execution.snippets
    )
    return replace(execution, snippets=snippets)


def should_save(execution: PostExecution, body: ParsedBody) -> bool:
    """A run that finished (its snippets passed or failed; no timeout, no dead session)."""
    return execution.status in SAVED_STATUSES and len(execution.snippets) == len(body.snippets)


def save_record(
    config: Config,
    post: Post,
    body: ParsedBody,
    inputs: Inputs,
    execution: PostExecution,
    versions: InstalledVersions,
    script: str | None,
) -> str:
    """Write the record of a finished run (and the post's script); its display path."""
    record = Record(
        post=post.source,
        inputs=inputs,
        installed=tuple((name, versions(name)) for name, _ in execution.environment.packages),
        execution=execution,
        places=tuple(
            SnippetPlace(s.line, s.code_line, len(s.source.splitlines()), _source_hash(s.source))
            for s in body.snippets
        ),
        inline_lines=tuple(i.line for i in body.inline),
    )
    files = record_files(config, post.source)
    write_record(files, record, script)
    return files.display(config)


def refresh_script(config: Config, post: Post, script: str) -> bool:
    """Rewrite the post's script in snippets/ if it is missing or out of date."""
    return write_if_changed(record_files(config, post.source).script, script.encode())


def remove_stale(config: Config, sources: Collection[str]) -> list[str]:
    """Delete the records (and scripts, images) of posts whose file was removed, and
    leftovers of interrupted writes. Returns what was removed, as paths from the project
    root.

    A record is removed only when it is not among ``sources`` (every post file read,
    drafts included) *and* the post file it names is gone from the disk: finding fewer
    posts for any other reason (a folder that could not be read, a changed ``posts_dir``)
    never deletes a record.
    """
    folder = config.snippets_path
    if not folder.is_dir():
        return []
    keep = {record_files(config, source).json.with_suffix("") for source in sources}
    keep |= {stem for stem in _record_stems(folder) if _post_exists(config, stem)}
    removed: list[str] = []
    now = time.time()
    for current, dirs, names in os.walk(folder):
        here = Path(current)
        for name in sorted(dirs):
            path = here / name
            if name.endswith(".images") and path.with_suffix("") not in keep and _ours(path):
                shutil.rmtree(path, ignore_errors=True)
                dirs.remove(name)
                removed.append(display_path(path, config.root) + "/")
        for name in sorted(names):
            path = here / name
            leftover = name.startswith(".") and _is_old(path, now)
            stale = path.suffix in (".json", ".py") and path.with_suffix("") not in keep
            if leftover or (stale and not here.name.endswith(".images") and _ours(path)):
                try:
                    path.unlink()
                except OSError:
                    continue
                removed.append(display_path(path, config.root))
    return removed


def recorded_posts(config: Config) -> int:
    """How many post records ``snippets/`` holds."""
    folder = config.snippets_path
    if not folder.is_dir():
        return 0
    return sum(
        1
        for stem in _record_stems(folder)
        if stem.with_suffix(".json").is_file() and _ours(stem.with_suffix(".json"))
    )


def _record_stems(folder: Path) -> set[Path]:
    """The record paths (without suffix) found in snippets/: records, scripts, images."""
    stems: set[Path] = set()
    for current, dirs, names in os.walk(folder):
        here = Path(current)
        stems |= {here / d[: -len(".images")] for d in dirs if d.endswith(".images")}
        stems |= {(here / n).with_suffix("") for n in names if n.endswith((".json", ".py"))}
    return stems


def _post_exists(config: Config, stem: Path) -> bool:
    """True when the post file of a record still exists: the one its JSON names, or a
    post file at the place its path mirrors (``snippets/x`` for ``posts/x.md``)."""
    try:
        data = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        named = data.get("post") if isinstance(data, dict) else None
    except (OSError, ValueError):
        named = None
    relative = stem.relative_to(config.snippets_path)
    candidates = [config.posts_path / f"{relative}{suffix}" for suffix in POST_SUFFIXES]
    if isinstance(named, str) and named and "\x00" not in named:
        candidates.append(config.root / named)
    return any(_exists(path) for path in candidates)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return True  # cannot tell: keep the record


def _ours(path: Path) -> bool:
    """True for what raypress writes in snippets/ (never a user's file that happens to be
    there): records, Jupytext scripts of posts, folders of images named by hash."""
    try:
        if path.is_dir():
            return all(re.fullmatch(r"[0-9a-f]{64}\.\w+", p.name) for p in path.iterdir())
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    if path.suffix == ".json":
        return b'"format"' in head or b'"generator": "raypress' in head or not head.strip()
    return head.startswith(b"# ---\n# jupyter:") and b"# Source: " in head


def _is_old(path: Path, now: float) -> bool:
    try:
        return now - path.stat().st_mtime > _TEMP_AGE_S
    except OSError:
        return False


def save_run(
    result: PostExecution,
    posts: list[Post],
    bodies: dict[str, ParsedBody],
    frozen: FreezePlan,
    config: Config,
    versions: InstalledVersions,
    saved: list[str],
) -> str | None:
    """Write the record of a post that just ran, if its run finished; a warning if not."""
    post = next(p for p in posts if p.source == result.post)
    body = bodies[post.source]
    if not should_save(result, body):
        status = result.status
        return f"{post.source}: the run did not finish ({status}); its record was not updated"
    try:
        saved.append(
            save_record(
                config,
                post,
                body,
                frozen.inputs[post.source],
                result,
                versions,
                post_script(post, body, config),
            )
        )
    except OSError as exc:
        return f"{post.source}: cannot write its record in {config.snippets_dir}/: {exc}"
    return None


def tidy_snippets(
    config: Config,
    posts: list[Post],
    bodies: dict[str, ParsedBody],
    frozen: FreezePlan,
    saved: list[str],
    sources: list[str],
) -> list[str]:
    """After a build: refresh the scripts of reused records, remove records of posts that
    are not among ``sources`` (every post file); what was done, for the console."""
    notes = [f"wrote {len(saved)} record(s) in {config.snippets_dir}/"] if saved else []
    if config.execute:
        for post in posts:
            if post.source in frozen.reused:
                with contextlib.suppress(OSError):  # a copy for reviewers; the site has its own
                    refresh_script(config, post, post_script(post, bodies[post.source], config))
    removed = remove_stale(config, sources)
    notes += [f"removed {path} (its post no longer exists)" for path in removed]
    notes += [
        f"{source}: not executed ({reason}); shown without outputs"
        for source, reason in sorted(frozen.unrecorded.items())
    ]
    return notes


def orphaned_records(config: Config) -> list[Problem]:
    """A problem when no post was found but snippets/ holds records: almost surely a
    wrong posts folder, and a build that went on would delete every record and page."""
    count = recorded_posts(config)
    if not count:
        return []
    return [
        Problem(
            config.posts_dir,
            None,
            f"no posts found in {config.posts_dir}/, but {config.snippets_dir}/ holds the "
            f"records of {count} post(s); nothing was built or removed",
            "check posts_dir, or delete the records yourself if the posts are gone for good",
        )
    ]
