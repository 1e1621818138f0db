"""The record of a post's results in ``snippets/``: its JSON format, read and written safely.

``snippets/<post>.json`` (``<post>`` is the post's path under posts/ without ``.md``) is
JSON with sorted keys and two-space indents, one block per snippet, text as lists of
lines, so a reviewer sees in a diff which output line changed. A snippet's ``outputs``
are in the order it showed them, as a notebook's: ``{"type": "stream", "name": "stdout",
"text": [...]}``, and ``{"type": "display"}`` or ``{"type": "result"}`` (the final
expression's value) with a MIME bundle ``data`` and its ``metadata``. Text types are
lists of lines, JSON types (plotly, Vega-Lite) JSON values; images, SVG and large JSON
live beside the record in ``snippets/<post>.images/<sha256>.<ext>``, named by hash
(``{"file": ..., "sha256": ...}``). Format 1 records (``stdout``, ``value``, ``images``
fields) still load. Every file
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
    BINARY_MIMES,
    IMAGE_EXTENSIONS,
    DisplayOutput,
    Environment,
    ErrorInfo,
    Image,
    InlineResult,
    Output,
    PostExecution,
    RepeatStats,
    SnippetResult,
    SnippetStatus,
    StreamOutput,
    stream_outputs,
)
from raypress.freeze.inputs import Inputs
from raypress.paths import atomic_write

FORMAT = 2
_READABLE = (1, 2)  # formats this raypress reads
_FILE_MIMES = BINARY_MIMES | {"image/svg+xml"}  # always in a file beside the record
_INLINE_JSON = 100_000  # characters: larger JSON values go to a file
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
    return data_file_name(image.mime, image.data)


def data_file_name(mime: str, data: bytes) -> str:
    """The file name of an output kept beside the record: its hash and an extension."""
    digest = hashlib.sha256(data).hexdigest()
    extension = "json" if mime.endswith("json") else IMAGE_EXTENSIONS.get(mime, "bin")
    return f"{digest}.{extension}"


def _file_value(mime: str, value: str | bytes) -> bytes | None:
    """The bytes of a MIME value kept in a file beside the record (None: kept inline)."""
    if mime in _FILE_MIMES:
        return value if isinstance(value, bytes) else value.encode()
    is_json = mime == "application/json" or mime.endswith("+json")
    if is_json and isinstance(value, str) and len(value) > _INLINE_JSON:
        return value.encode()
    return None


# --- writing ----------------------------------------------------------------------------


def write_record(files: RecordFiles, record: Record, script: str | None) -> None:
    """Write the images, the script and then the record, each atomically; then remove
    images the record no longer names."""
    wanted: set[str] = set()
    for result in record.execution.snippets:
        for output in result.displays:
            for mime, value in output.data:
                data = _file_value(mime, value)
                if data is not None:
                    name = data_file_name(mime, data)
                    wanted.add(name)
                    write_if_changed(files.images / name, data)
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
            **({"isolation": environment.isolation} if environment.isolation else {}),
            "ray_requested": environment.ray_requested,
            "ray_given": environment.ray_given,
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
        "outputs": [_output_json(output) for output in result.outputs],
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


def _output_json(output: Output) -> dict[str, Any]:
    if isinstance(output, StreamOutput):
        return {"type": "stream", "name": output.name, "text": _lines(output.text)}
    data: dict[str, Any] = {}
    for mime, value in output.data:
        stored = _file_value(mime, value)
        if stored is not None:
            name = data_file_name(mime, stored)
            data[mime] = {"file": name, "sha256": name.split(".")[0]}
        elif mime == "application/json" or mime.endswith("+json"):
            data[mime] = json.loads(value)
        else:
            data[mime] = _lines(value if isinstance(value, str) else value.decode())
    item: dict[str, Any] = {"type": "result" if output.result else "display", "data": data}
    if output.meta:
        item["metadata"] = output.meta
    return item


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
    if version not in _READABLE:
        raise RecordError(f"has format {version}, this raypress reads formats 1 and 2")
    if top.str("post") != post:
        raise RecordError(f"is the record of {top.str('post')}, not of {post}")
    inputs = top.object("inputs")
    environment = top.object("environment")
    run = top.object("run")
    snippets = [_snippet(item, images, version) for item in top.objects("snippets")]
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
            isolation=environment.str("isolation") if "isolation" in environment.data else "",
            ray_requested=environment.newer_str("ray_requested"),
            ray_given=environment.newer_str("ray_given"),
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


def _snippet(item: _Reader, images: Path, version: int) -> tuple[SnippetResult, SnippetPlace]:
    status = item.str("status")
    if status not in _STATUSES:
        raise RecordError(f"{item.where}status: unknown status {status!r}")
    error = item.optional_object("error")
    repeat = item.optional_object("repeat")
    if version == 1:
        outputs = _format1_outputs(item, images)
    else:
        outputs = tuple(_output(i, images) for i in item.objects("outputs"))
    result = SnippetResult(
        index=item.int("index"),
        status=status,  # type: ignore[arg-type]
        outputs=outputs,
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


def _format1_outputs(item: _Reader, images: Path) -> tuple[Output, ...]:
    """A format 1 snippet (stdout, stderr, value, value_html, images) as outputs."""
    outputs: list[Output] = list(stream_outputs(item.text("stdout"), item.text("stderr")))
    value, html = item.optional_text("value"), item.optional_text("value_html")
    if value is not None:
        data: tuple[tuple[str, str | bytes], ...] = (("text/plain", value),)
        if html is not None:
            data = (("text/html", html), *data)
        outputs.append(DisplayOutput(data, result=True))
    for entry in item.objects("images"):
        image = _image(entry, images)
        metadata = json.dumps({"alt": image.alt}) if image.alt else ""
        outputs.append(DisplayOutput(((image.mime, image.data),), metadata))
    return tuple(outputs)


def _output(item: _Reader, images: Path) -> Output:
    kind = item.str("type")
    if kind == "stream":
        name = item.str("name")
        if name not in ("stdout", "stderr"):
            raise RecordError(f"{item.where}name: must be stdout or stderr, not {name!r}")
        return StreamOutput(name, item.text("text"))  # type: ignore[arg-type]
    if kind not in ("display", "result"):
        raise RecordError(f"{item.where}type: unknown output type {kind!r}")
    bundle = item.object("data")
    data: list[tuple[str, str | bytes]] = []
    for mime in bundle.data:
        value = bundle.data[mime]
        if isinstance(value, dict) and "file" in value and "sha256" in value:
            raw = _stored_file(bundle.object(mime), images)
            data.append((mime, raw if mime in BINARY_MIMES else raw.decode("utf-8", "replace")))
        elif mime == "application/json" or mime.endswith("+json"):
            data.append((mime, json.dumps(value, sort_keys=True, ensure_ascii=False)))
        else:
            data.append((mime, bundle.text(mime)))
    metadata = item.data.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise RecordError(f"{item.where}metadata must be an object")
    text = json.dumps(metadata, sort_keys=True, ensure_ascii=False) if metadata else ""
    return DisplayOutput(tuple(data), text, kind == "result")


def _stored_file(item: _Reader, folder: Path) -> bytes:
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
    return data


def _image(item: _Reader, folder: Path) -> Image:
    data = _stored_file(item, folder)
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

    def newer_str(self, key: str) -> str | None:
        """A key records of older raypress versions lack (absent: None)."""
        return self.optional_str(key) if key in self.data else None

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
