"""The HTTP side of ``serve``: the output folder over HTTP, safely, plus the reload stream.

* What is served is the last build's output: in memory (:class:`Snapshot`, handed over
  by the build before it writes the output folder, so pages reload without waiting for
  the disk), else the output folder itself (before the first build of the session).
  Either is replaced whole, so a request gets the old version or the new, never half.
* A request's path is decoded once; ``.``/``..`` segments, NUL, backslashes and control
  characters are refused. Only regular files whose real path lies inside the output
  folder (or, for the snapshot's static files, inside the project or the theme) are
  served, and that is checked on the file as opened, at request time: a file swapped for
  a symlink while serving is refused, never followed.
* ``/x`` naming a folder redirects to ``/x/``, which serves ``x/index.html``; missing
  files get the site's ``404.html`` with status 404; the site lives under ``baseurl``.
* A request whose ``Host`` is not this server (DNS rebinding) is refused, and the event
  stream also refuses cross-origin pages (``Origin``, ``Sec-Fetch-Site``).
* HTML pages get the live-reload script on the way out (:mod:`raypress.preview.live_reload`).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import mimetypes
import os
import posixpath
import re
import socket
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Literal
from urllib.parse import unquote, urlsplit

from raypress.preview.live_reload import (
    EVENTS_PATH,
    KEEPALIVE_S,
    Hub,
    event,
    inject,
    running_event,
)

CONTENT_TYPES = MappingProxyType(
    {
        ".html": "text/html; charset=utf-8",
        ".htm": "text/html; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".mjs": "text/javascript; charset=utf-8",
        ".json": "application/json",
        ".map": "application/json",
        ".xml": "application/xml",
        ".txt": "text/plain; charset=utf-8",
        ".md": "text/markdown; charset=utf-8",
        ".py": "text/x-python; charset=utf-8",
        ".csv": "text/csv; charset=utf-8",
        ".svg": "image/svg+xml",
        ".png": "image/png",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".gif": "image/gif",
        ".webp": "image/webp",
        ".avif": "image/avif",
        ".ico": "image/x-icon",
        ".woff": "font/woff",
        ".woff2": "font/woff2",
        ".ttf": "font/ttf",
        ".otf": "font/otf",
        ".pdf": "application/pdf",
        ".wasm": "application/wasm",
        ".mp4": "video/mp4",
        ".webm": "video/webm",
        ".mp3": "audio/mpeg",
    }
)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")
_CHUNK = 1 << 16


# The search index is made after the pages are handed over (a preview does not wait for
# it): until the build has written it, the output folder serves the previous one.
WRITTEN_LATER = "pagefind/"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A build's output in memory: generated files by their path in the site, static
    files by their source (vetted by the build), and every folder that holds a file."""

    files: Mapping[str, bytes]
    static: Mapping[str, str]
    folders: frozenset[str]

    @classmethod
    def of(cls, files: Iterable[tuple[str, bytes]], static: Iterable[tuple[str, Path]]) -> Snapshot:
        generated = dict(files)
        sources = {path: str(source) for path, source in static}
        folders = set()
        for path in (*generated, *sources):
            while "/" in path:
                path = path.rsplit("/", 1)[0]
                folders.add(path)
        return cls(generated, sources, frozenset(folders))


@dataclass(frozen=True, slots=True)
class Served:
    """What is served: the output folder (or the last build's snapshot of it) and the
    sub-path the site lives under."""

    folder: Path
    baseurl: str = ""
    snapshot: Snapshot | None = None
    static_roots: tuple[Path, ...] = ()  # where the snapshot's static files may really be


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a request path leads."""

    kind: Literal["file", "redirect", "missing", "forbidden", "bad"]
    file: str | None = None  # the file to send
    data: bytes | None = None  # or these bytes (a page of the snapshot)
    relative: str | None = None  # what was found, relative to the site's root
    location: str | None = None  # for a redirect
    within: tuple[str, ...] = ()  # real folders the opened file must lie in


def content_type(name: str) -> str:
    """The Content-Type for a file name (a fixed table, then Python's guess)."""
    suffix = posixpath.splitext(name)[1].lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def resolve(target: str, served: Served) -> Resolved:
    """Map a request target (``/blog/a/b/?q``) to a file of the output folder, safely."""
    if not target.startswith("/") or target.startswith("//"):
        return Resolved("bad")
    parts = urlsplit(target)
    raw, query = parts.path, f"?{parts.query}" if parts.query else ""
    base = served.baseurl
    if base:
        if raw in ("/", base):
            return Resolved("redirect", location=f"{base}/{query}")
        if not raw.startswith(base + "/"):
            return Resolved("missing")
        raw = raw[len(base) :]
    try:
        path = unquote(raw, errors="strict")  # decoded once: "%252e" stays "%2e"
    except UnicodeDecodeError:
        return Resolved("bad")
    segments = path.split("/")
    if _UNSAFE.search(path) or any(s in (".", "..") for s in segments):
        return Resolved("missing")
    relative = "/".join(s for s in segments if s)
    if served.snapshot is not None:
        found = _in_snapshot(served.snapshot, relative, raw.endswith("/"), f"{base}{raw}/{query}")
        if found.kind != "missing" or not relative.startswith(WRITTEN_LATER):
            roots = tuple(os.path.realpath(r) for r in served.static_roots)
            return replace(found, within=roots) if found.file is not None else found
    top = os.path.realpath(served.folder)
    real = _inside(top, relative)
    if real is None:
        return Resolved("forbidden")
    if os.path.isdir(real):  # noqa: PTH112 - plain strings, as realpath gives them
        if not raw.endswith("/"):
            return Resolved("redirect", location=f"{base}{raw}/{query}")
        relative = f"{relative}/index.html".lstrip("/")
        real = _inside(top, relative)
        if real is None:
            return Resolved("forbidden")
    if not os.path.isfile(real):  # noqa: PTH113
        return Resolved("missing")
    return Resolved("file", file=real, relative=relative, within=(top,))


def _in_snapshot(snapshot: Snapshot, relative: str, slash: bool, redirect: str) -> Resolved:
    if relative and relative not in snapshot.folders:
        return _snapshot_file(snapshot, relative)
    if not slash:
        return Resolved("redirect", location=redirect)
    return _snapshot_file(snapshot, f"{relative}/index.html".lstrip("/"))


def _snapshot_file(snapshot: Snapshot, relative: str) -> Resolved:
    if relative in snapshot.files:
        return Resolved("file", data=snapshot.files[relative], relative=relative)
    if relative in snapshot.static:
        return Resolved("file", file=snapshot.static[relative], relative=relative)
    return Resolved("missing")


def opened_within(fd: int, folders: tuple[str, ...]) -> bool:
    """True when the file open on ``fd`` is a regular file inside one of ``folders`` (real
    paths): the check that holds whatever was swapped on the way to opening it."""
    try:
        real = str(Path(f"/proc/self/fd/{fd}").readlink())
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False
    return regular and any(real == f or real.startswith(f.rstrip("/") + "/") for f in folders)


def _inside(top: str, relative: str) -> str | None:
    """The real path of ``top/relative``; None when symlinks lead outside ``top``."""
    real = os.path.realpath(os.path.join(top, relative))  # noqa: PTH118 - plain strings
    if real != top and not real.startswith(top + os.sep):
        return None
    return real


@dataclass(frozen=True, slots=True)
class HostCheck:
    """Which ``Host`` headers name this server: its own name and port, loopback names and
    IP literals (a DNS rebinding attack needs a domain name that is not ours)."""

    host: str
    port: int

    def allows(self, header: str | None) -> bool:
        value = (header or "").strip().lower()
        if value.startswith("["):  # [::1]:8000
            name, _, rest = value[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
        else:
            name, colon, port = value.partition(":")
            port = port if colon and ":" not in port else None
        if not name or port != str(self.port):
            return False
        name = name.rstrip(".")
        if name in (self.host.lower().strip("[]"), "localhost") or name.endswith(".localhost"):
            return True
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(name)
            return True
        return not is_loopback(self.host) and name == socket.gethostname().lower()


def is_loopback(host: str) -> bool:
    """True when ``host`` (a name or an address) is only reachable from this machine."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


class DevServer(ThreadingHTTPServer):
    """A threading HTTP server for one site (``source`` says what it is now)."""

    daemon_threads = True

    def __init__(self, host: str, port: int, source: Callable[[], Served], hub: Hub) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host.strip("[]"), port), Handler)
        self.source = source  # what to serve, asked again for every request
        self.hub = hub
        self.hosts = HostCheck(host, self.server_address[1])
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self.thread = threading.Thread(target=self.serve_forever, args=(0.1,), name="raypress-http")
        self.thread.daemon = True
        self.thread.start()

    def stop(self) -> None:
        """Stop accepting requests, end the event streams, close the socket."""
        self.hub.close()
        if self.thread is not None:
            self.shutdown()
            self.thread.join(timeout=5)
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    """GET and HEAD of the output folder's files; the event stream."""

    server: DevServer
    protocol_version = "HTTP/1.1"
    server_version = "raypress"

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a rebuild line per save is what the console shows."""

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            super().handle()

    def _respond(self, body: bool) -> None:
        if not self.server.hosts.allows(self.headers.get("Host")):
            self._text(
                HTTPStatus.FORBIDDEN,
                f"Host {self.headers.get('Host')!r} is not this server (DNS rebinding "
                f"protection): open http://{self.server.hosts.host}:{self.server.port}/\n",
                body,
            )
            return
        if urlsplit(self.path).path == EVENTS_PATH:
            self._events(body)
            return
        served = self.server.source()
        found = resolve(self.path, served)
        if found.kind == "file":
            self._file(HTTPStatus.OK, found, body)
        elif found.kind == "redirect":
            assert found.location is not None
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", found.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif found.kind == "forbidden":
            self._text(HTTPStatus.FORBIDDEN, "Forbidden: outside the site\n", body)
        elif found.kind == "bad":
            self._text(HTTPStatus.BAD_REQUEST, "Bad request\n", body)
        else:
            self._not_found(served, body)

    def _not_found(self, served: Served, body: bool) -> None:
        page = resolve(f"{served.baseurl}/404.html", served)
        if page.kind == "file":
            self._file(HTTPStatus.NOT_FOUND, replace(page, relative=None), body)
        else:
            self._text(HTTPStatus.NOT_FOUND, "Not found\n", body)

    def _file(self, status: HTTPStatus, found: Resolved, body: bool) -> None:
        """Send a found file: the snapshot's bytes, or a file opened now (its content
        stays what it was when opened, whatever a rebuild does meanwhile)."""
        name = found.relative or found.file or "404.html"
        kind = content_type(name)
        html = kind.startswith("text/html")
        state = self.server.hub.state
        with contextlib.ExitStack() as stack:
            if found.data is not None:
                data: bytes | None = found.data
                size, modified = len(found.data), None
                tag = hashlib.sha256(found.data).hexdigest()[:20]
            else:
                try:
                    handle = stack.enter_context(open(found.file or "", "rb"))  # noqa: PTH123
                except OSError:
                    self._text(HTTPStatus.NOT_FOUND, "Not found\n", body)
                    return
                if not opened_within(handle.fileno(), found.within):
                    self._text(HTTPStatus.FORBIDDEN, "Forbidden: outside the site\n", body)
                    return
                stat = os.fstat(handle.fileno())
                size, modified, data = stat.st_size, stat.st_mtime, None
                tag = f"{stat.st_ino:x}-{stat.st_size:x}-{stat.st_mtime_ns:x}"
            tag = f'"{tag}-{state.version}"' if html else f'"{tag}"'
            if status == HTTPStatus.OK and self.headers.get("If-None-Match") == tag:
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.send_header("ETag", tag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if html:
                data = inject(data if data is not None else handle.read(), state, found.relative)
                size = len(data)
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(size))
            if modified is not None:
                self.send_header("Last-Modified", formatdate(modified, usegmt=True))
            self.send_header("ETag", tag)
            self._common_headers()
            self.end_headers()
            if not body:
                return
            if data is not None:
                self.wfile.write(data)
                return
            while chunk := handle.read(_CHUNK):
                self.wfile.write(chunk)

    def _text(self, status: HTTPStatus, text: str, body: bool) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self._common_headers()
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _common_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")  # revalidate: every rebuild may change it
        self.send_header("X-Content-Type-Options", "nosniff")

    def _events(self, body: bool) -> None:
        origin = self.headers.get("Origin")
        fetch_site = self.headers.get("Sec-Fetch-Site")
        same_origin = origin is None or origin.lower() == f"http://{self.headers['Host']}".lower()
        if not same_origin or fetch_site not in (None, "same-origin", "none"):
            self._text(HTTPStatus.FORBIDDEN, "Forbidden: cross-origin event stream\n", body)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if not body:
            return
        hub = self.server.hub
        state, serial = hub.state, hub.running_serial
        self.wfile.write(event(state) + (running_event(hub.running) if hub.running else b""))
        self.wfile.flush()
        while not hub.closed:
            newer, running = hub.wait_any(state.version, serial, KEEPALIVE_S)
            if running is not None:
                serial = running[0]
                self.wfile.write(running_event(running[1]))
            if newer is not None:
                state = newer
                self.wfile.write(event(state))
            if newer is None and running is None and not hub.closed:
                self.wfile.write(b": keep-alive\n\n")
            self.wfile.flush()
