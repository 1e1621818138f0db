"""The record of a post's results in ``snippets/``: its JSON format, read and written safely.

``snippets/<post>.json`` (``<post>`` is the post's path under posts/ without ``.md``) is
JSON with sorted keys and two-space indents, one block per snippet, text as lists of
lines, so a reviewer sees in a diff which output line changed. Images live beside it in
``snippets/<post>.images/<sha256>.<ext>`` and the record names them by hash. Every file
is written to a temporary file and renamed into place, images first and the record last,
so an interrupted build leaves the old record or the new one, never a mix.

Reading is strict: anything unexpected (invalid JSON, merge-conflict markers, a missing
field, a missing or altered image) raises :class:`RecordError` with a message that names
the place, and the caller runs the post again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from raypress import __version__
from raypress.config import Config
from raypress.execution.model import (
    IMAGE_EXTENSIONS,
    Environment,
    ErrorInfo,
    Image,
    InlineResult,
    PostExecution,
    RepeatStats,
    SnippetResult,
    SnippetStatus,
)
from raypress.freeze.inputs import Inputs
from raypress.paths import atomic_write

FORMAT = 1
_STATUSES = frozenset(get_args(SnippetStatus))
_POST_STATUSES = frozenset({"ok", "failed", "died", "timed-out"})
_CONFLICT = re.compile(r"^(<<<<<<<|=======$|>>>>>>>)", re.M)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class RecordError(Exception):
    """A record that cannot be used, with the reason (the post is run again)."""


@dataclass(frozen=True, slots=True)
class SnippetPlace:
    """Where a snippet was in the post when its record was made (to move line numbers)."""

    line: int
    code_line: int
    lines: int  # lines of code
    source_sha256: str


@dataclass(frozen=True, slots=True)
class Record:
    """A post's results as frozen in ``snippets/``."""

    post: str
    inputs: Inputs
    installed: tuple[tuple[str, str], ...]  # installed versions of the imported packages
    execution: PostExecution
    places: tuple[SnippetPlace, ...]  # per snippet, in order
    inline_lines: tuple[int, ...]  # per inline expression


@dataclass(frozen=True, slots=True)
class RecordFiles:
    """The files of one post's record."""

    json: Path
    script: Path
    images: Path  # folder

    def display(self, config: Config) -> str:
        return self.json.relative_to(config.root).as_posix()


def record_files(config: Config, source: str) -> RecordFiles:
    """Where the record of the post at ``source`` (``posts/x.md``) lives."""
    prefix = config.posts_dir.strip("/") + "/"
    stem = source.removeprefix(prefix)
    stem = stem[: stem.rindex(".")] if "." in stem.rsplit("/", 1)[-1] else stem
    base = str(config.snippets_path / stem)
    return RecordFiles(Path(base + ".json"), Path(base + ".py"), Path(base + ".images"))


def image_name(image: Image) -> str:
    """The file name of an image: its content hash and an extension from its type."""
    digest = hashlib.sha256(image.data).hexdigest()
    return f"{digest}.{IMAGE_EXTENSIONS.get(image.mime, 'bin')}"


# --- writing ----------------------------------------------------------------------------


def write_record(files: RecordFiles, record: Record, script: str | None) -> None:
    """Write the images, the script and then the record, each atomically; then remove
    images the record no longer names."""
    wanted: set[str] = set()
    for result in record.execution.snippets:
        for image in result.images:
            name = image_name(image)
            wanted.add(name)
            write_if_changed(files.images / name, image.data)
    if script is not None:
        write_if_changed(files.script, script.encode())
    atomic_write(files.json, dumps(record).encode())
    if files.images.is_dir():
        for path in files.images.iterdir():
            if path.name not in wanted:
                with contextlib.suppress(OSError):
                    path.unlink()
        with contextlib.suppress(OSError):
            files.images.rmdir()  # only when empty


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically write ``data`` unless ``path`` already holds it; True when written."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write(path, data)
    return True


def dumps(record: Record) -> str:
    """The record as diff-friendly JSON."""
    execution = record.execution
    environment = execution.environment
    data = {
        "format": FORMAT,
        "generator": f"raypress {__version__}",
        "post": record.post,
        "inputs": {
            "digest": record.inputs.digest,
            "snippets": list(record.inputs.snippets),
            "inline": record.inputs.inline,
            "post": record.inputs.post,
            "files": dict(record.inputs.files),
        },
        "environment": {
            "python": environment.python,
            "platform": environment.platform,
            "cpu": environment.cpu,
            "cpu_count": environment.cpu_count,
            "packages": dict(environment.packages),
            "installed": dict(record.installed),
            "ray_version": environment.ray_version,
            "ray_cluster_cpus": environment.ray_cluster_cpus,
            **({"node": environment.node} if environment.node else {}),
        },
        "run": {
            "status": execution.status,
            "started_at": execution.started_at,
            "wall_s": _seconds(execution.wall_s),
        },
        "snippets": [
            _snippet_json(result, place)
            for result, place in zip(execution.snippets, record.places, strict=True)
        ],
        "inline": [
            {"index": r.index, "line": line, "text": r.text, "error": r.error}
            for r, line in zip(execution.inline, record.inline_lines, strict=True)
        ],
    }
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _snippet_json(result: SnippetResult, place: SnippetPlace) -> dict[str, Any]:
    error = result.error
    repeat = result.repeat
    return {
        "index": result.index,
        "line": place.line,
        "code_line": place.code_line,
        "code_lines": place.lines,
        "source_sha256": place.source_sha256,
        "status": result.status,
        "stdout": _lines(result.stdout),
        "stderr": _lines(result.stderr),
        "value": None if result.value is None else _lines(result.value),
        "value_html": None if result.value_html is None else _lines(result.value_html),
        "images": [_image_json(image) for image in result.images],
        "error": None
        if error is None
        else {
            "type": error.type,
            "message": _lines(error.message),
            "traceback": _lines(error.traceback),
            "line": error.line,
        },
        "wall_s": _seconds(result.wall_s),
        "cpu_s": _seconds(result.cpu_s),
        "repeat": None
        if repeat is None
        else {
            "n": repeat.n,
            "median_s": _seconds(repeat.median_s),
            "min_s": _seconds(repeat.min_s),
            "max_s": _seconds(repeat.max_s),
            "stdev_s": _seconds(repeat.stdev_s),
        },
        "truncated": result.truncated,
        "notes": list(result.notes),
    }


def _image_json(image: Image) -> dict[str, str]:
    name = image_name(image)
    return {"sha256": name.split(".")[0], "file": name, "mime": image.mime, "alt": image.alt}


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _seconds(value: float) -> float:
    return float(f"{value:.4g}")


# --- reading ----------------------------------------------------------------------------


def read_record(files: RecordFiles, post: str) -> Record | None:
    """The record of ``post``, or None when it has none; RecordError when it is unusable."""
    try:
        raw = files.json.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RecordError(f"cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError("is not UTF-8 text") from None
    conflict = _CONFLICT.search(text)
    if conflict:
        line = text.count("\n", 0, conflict.start()) + 1
        raise RecordError(f"has merge-conflict markers (line {line})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return parse_record(data, post, files.images)


def parse_record(data: Any, post: str, images: Path) -> Record:
    """Validate decoded JSON and build the Record; RecordError names what is wrong."""
    top = _Reader(data, "")
    version = top.int("format")
    if version != FORMAT:
        raise RecordError(f"has format {version}, this raypress reads format {FORMAT}")
    if top.str("post") != post:
        raise RecordError(f"is the record of {top.str('post')}, not of {post}")
    inputs = top.object("inputs")
    environment = top.object("environment")
    run = top.object("run")
    snippets = [_snippet(item, images) for item in top.objects("snippets")]
    inline = top.objects("inline")
    status = run.str("status")
    if status not in _POST_STATUSES:
        raise RecordError(f"run.status: unknown status {status!r}")
    execution = PostExecution(
        post=post,
        status=status,  # type: ignore[arg-type]
        snippets=tuple(result for result, _ in snippets),
        inline=tuple(
            InlineResult(i.int("index"), i.optional_str("text"), i.optional_str("error"))
            for i in inline
        ),
        environment=Environment(
            python=environment.str("python"),
            platform=environment.str("platform"),
            cpu=environment.str("cpu"),
            cpu_count=environment.int("cpu_count"),
            packages=environment.pairs("packages"),
            ray_version=environment.optional_str("ray_version"),
            ray_cluster_cpus=environment.optional_number("ray_cluster_cpus"),
            node=environment.optional_str("node") if "node" in environment.data else None,
        ),
        started_at=run.str("started_at"),
        wall_s=run.number("wall_s"),
    )
    indices = [r.index for r in execution.snippets]
    if indices != list(range(len(indices))):
        raise RecordError("snippets: indices must be 0, 1, 2, ... in order")
    record = Record(
        post=post,
        inputs=Inputs(
            snippets=tuple(inputs.str_list("snippets")),
            inline=inputs.str("inline"),
            post=inputs.str("post"),
            files=inputs.pairs("files"),
        ),
        installed=environment.pairs("installed"),
        execution=execution,
        places=tuple(place for _, place in snippets),
        inline_lines=tuple(i.int("line") for i in inline),
    )
    if record.inputs.digest != inputs.str("digest"):
        raise RecordError("inputs.digest does not match the inputs (edited by hand?)")
    if len(record.inputs.snippets) != len(record.places):
        raise RecordError("inputs.snippets and snippets differ in length")
    return record


def _snippet(item: _Reader, images: Path) -> tuple[SnippetResult, SnippetPlace]:
    status = item.str("status")
    if status not in _STATUSES:
        raise RecordError(f"{item.where}status: unknown status {status!r}")
    error = item.optional_object("error")
    repeat = item.optional_object("repeat")
    result = SnippetResult(
        index=item.int("index"),
        status=status,  # type: ignore[arg-type]
        stdout=item.text("stdout"),
        stderr=item.text("stderr"),
        value=item.optional_text("value"),
        value_html=item.optional_text("value_html"),
        images=tuple(_image(i, images) for i in item.objects("images")),
        error=None
        if error is None
        else ErrorInfo(
            type=error.str("type"),
            message=error.text("message"),
            traceback=error.text("traceback"),
            line=error.optional_int("line"),
        ),
        wall_s=item.number("wall_s"),
        cpu_s=item.number("cpu_s"),
        repeat=None
        if repeat is None
        else RepeatStats(
            n=repeat.int("n"),
            median_s=repeat.number("median_s"),
            min_s=repeat.number("min_s"),
            max_s=repeat.number("max_s"),
            stdev_s=repeat.number("stdev_s"),
        ),
        truncated=item.bool("truncated"),
        notes=tuple(item.str_list("notes")),
    )
    place = SnippetPlace(
        line=item.int("line"),
        code_line=item.int("code_line"),
        lines=item.int("code_lines"),
        source_sha256=item.str("source_sha256"),
    )
    return result, place


def _image(item: _Reader, folder: Path) -> Image:
    digest, name = item.str("sha256"), item.str("file")
    if not _SHA256.match(digest) or not name.startswith(digest + ".") or "/" in name:
        raise RecordError(f"{item.where}file: {name!r} is not named by its sha256")
    path = folder / name
    try:
        data = path.read_bytes()
    except OSError:
        raise RecordError(f"image {path.name} is missing from {folder.name}/") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise RecordError(f"image {folder.name}/{name} does not match its hash")
    return Image(mime=item.str("mime"), data=data, alt=item.str("alt"))


class _Reader:
    """Typed access to one JSON object; every mistake raises RecordError naming the field."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise RecordError(f"{where or 'the top level'} must be an object")
        self.data = data
        self.where = where

    def _get(self, key: str) -> Any:
        if key not in self.data:
            raise RecordError(f"{self.where}{key} is missing")
        return self.data[key]

    def _wrong(self, key: str, kind: str) -> RecordError:
        return RecordError(f"{self.where}{key} must be {kind}, not {self.data[key]!r:.60}")

    def str(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        return value

    def optional_str(self, key: str) -> str | None:
        return None if self._get(key) is None else self.str(key)

    def int(self, key: str) -> int:
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._wrong(key, "an integer")
        return value

    def optional_int(self, key: str) -> int | None:
        return None if self._get(key) is None else self.int(key)

    def number(self, key: str) -> float:
        value = self._get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise self._wrong(key, "a non-negative number")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self._get(key) is None else self.number(key)

    def bool(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false")
        return value

    def str_list(self, key: str) -> list[str]:
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._wrong(key, "a list of strings")
        return value

    def text(self, key: str) -> str:
        return "".join(self.str_list(key))

    def optional_text(self, key: str) -> str | None:
        return None if self._get(key) is None else self.text(key)

    def pairs(self, key: str) -> tuple[tuple[str, str], ...]:
        value = self._get(key)
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._wrong(key, "an object of strings")
        return tuple(sorted(value.items()))

    def object(self, key: str) -> _Reader:
        return _Reader(self._get(key), f"{self.where}{key}.")

    def optional_object(self, key: str) -> _Reader | None:
        return None if self._get(key) is None else self.object(key)

    def objects(self, key: str) -> list[_Reader]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self._wrong(key, "a list")
        return [_Reader(item, f"{self.where}{key}[{i}].") for i, item in enumerate(value)]
