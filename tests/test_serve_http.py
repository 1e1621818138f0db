"""``serve``'s HTTP side against a real server on a free port: routing, content types,
traversal attempts, symlinks, Host and Origin checks, the 404 page, the baseurl, and the
live-reload script (injected into served HTML only, never into the files)."""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from raypress.errors import Problem
from raypress.preview.http_server import (
    DevServer,
    HostCheck,
    Served,
    Snapshot,
    content_type,
    resolve,
)
from raypress.preview.live_reload import EVENTS_PATH, Hub

SECRET = "TOP-SECRET-CONTENT"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An output folder beside a secret file that must never be served."""
    (tmp_path / "secret.txt").write_text(SECRET)
    root = tmp_path / "_site"
    files = {
        "index.html": "<!doctype html><html><body><h1>Home</h1></body></html>",
        "404.html": "<!doctype html><html><body><h1>Page not found</h1></body></html>",
        "2025/01/02/hello/index.html": "<html><body><p>Hello post</p></BODY></html>",
        "assets/style.css": "body { color: red }",
        "assets/app.js": "console.log(1)",
        "assets/favicon.svg": "<svg xmlns='http://www.w3.org/2000/svg'/>",
        "assets/figure.png": "\x89PNG",
        "feed.xml": "<feed/>",
        "2025/01/02/hello/hello.py": "print('hi')",
        "data.unknownext": "x",
        "fragment.html": "<p>no body tag</p>",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


class Client:
    """Raw HTTP/1.1 requests (paths sent exactly as given) to a running DevServer."""

    def __init__(self, server: DevServer) -> None:
        self.server = server
        self.port = server.port

    def get(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            given = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
            for key, value in given.items():
                if value is not None:
                    connection.putheader(key, value)
            connection.endheaders()
            response = connection.getresponse()
            body = b"" if method == "HEAD" else response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            connection.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Served], Client]]:
    """Start a DevServer (port 0) over what the test gives; stopped afterwards."""
    servers: list[DevServer] = []

    def start(served: Served, hub: Hub | None = None) -> Client:
        server = DevServer("127.0.0.1", 0, lambda: served, hub or Hub())
        server.start()
        servers.append(server)
        return Client(server)

    yield start
    for server in servers:
        server.stop()


# -- routing and content ---------------------------------------------------------------


def test_pages_folders_and_redirects(site: Path, serve: Callable[[Served], Client]) -> None:
    client = serve(Served(site))
    status, headers, body = client.get("/")
    assert status == 200 and b"<h1>Home</h1>" in body
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, _ = client.get("/2025/01/02/hello?x=1")
    assert status == 302 and headers["location"] == "/2025/01/02/hello/?x=1"
    status, _, body = client.get("/2025/01/02/hello/")
    assert status == 200 and b"Hello post" in body
    status, _, body = client.get("/2025/01/02/hello/index.html")
    assert status == 200 and b"Hello post" in body
    status, _, _ = client.get("/", method="POST")
    assert status == 501  # http.server's answer to a method it does not handle


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/favicon.svg", "image/svg+xml"),
        ("/assets/figure.png", "image/png"),
        ("/feed.xml", "application/xml"),
        ("/2025/01/02/hello/hello.py", "text/x-python; charset=utf-8"),
        ("/data.unknownext", "application/octet-stream"),
    ],
)
def test_content_types(
    site: Path, serve: Callable[[Served], Client], path: str, expected: str
) -> None:
    status, headers, body = serve(Served(site)).get(path)
    assert status == 200
    assert headers["content-type"] == expected
    assert b"raypress-live" not in body  # only HTML gets the script
    assert int(headers["content-length"]) == len(body)


def test_missing_paths_get_the_sites_404_page(
    site: Path, serve: Callable[[Served], Client]
) -> None:
    client = serve(Served(site))
    status, headers, body = client.get("/no/such/page/")
    assert status == 404
    assert headers["content-type"].startswith("text/html")
    assert b"Page not found" in body and b"raypress-live" in body
    (site / "404.html").unlink()
    status, _, body = client.get("/nothing")
    assert status == 404 and body == b"Not found\n"


def test_head_etag_and_not_modified(site: Path, serve: Callable[[Served], Client]) -> None:
    client = serve(Served(site))
    status, headers, body = client.get("/assets/style.css", method="HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == "19"
    status, _, body = client.get("/assets/style.css", {"If-None-Match": headers["etag"]})
    assert status == 304 and body == b""
    assert headers["cache-control"] == "no-cache"


def test_script_injected_into_served_html_only(
    site: Path, serve: Callable[[Served], Client]
) -> None:
    client = serve(Served(site))
    _, _, body = client.get("/2025/01/02/hello/")
    text = body.decode()
    assert text.index('id="raypress-live"') < text.index("</BODY>")  # before </body>, any case
    assert EVENTS_PATH in text and "EventSource" in text
    _, _, body = client.get("/fragment.html")
    assert body.startswith(b"<p>no body tag</p>") and b"raypress-live" in body  # appended
    on_disk = [p.read_bytes() for p in site.rglob("*") if p.is_file()]
    assert not any(b"raypress" in data for data in on_disk)


def test_problems_are_shown_on_their_page_and_escaped(
    site: Path, serve: Callable[[Served], Client]
) -> None:
    hub = Hub()
    failed = Problem("posts/2025-01-02-hello.md", 12, "ZeroDivisionError: </script><b>")
    hub.publish((), {"2025/01/02/hello/index.html": (failed,)})
    client = serve(Served(site), hub)

    def problems(path: str) -> list[dict[str, str]]:
        text = client.get(path)[2].decode()
        start = text.index('id="raypress-live">') + len('id="raypress-live">')
        payload = text[start : text.index("</script>", start)]
        assert "<" not in payload  # nothing in the data can close the script element
        return json.loads(payload)["problems"]

    assert problems("/2025/01/02/hello/") == [
        {
            "where": "posts/2025-01-02-hello.md:12",
            "message": "error: ZeroDivisionError: </script><b>",
            "line": 12,
        }
    ]
    assert problems("/") == []
    broken = Problem("posts/x.md", 3, "malformed YAML")
    hub.publish((broken,), {})
    assert [p["where"] for p in problems("/")] == ["posts/x.md:3"]


# -- safety --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/../../../../etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/%252e%252e/secret.txt",  # double encoding: decoded once, a literal name
        "/%252e%252e%252fsecret.txt",
        "/..%5csecret.txt",
        "/..\\secret.txt",
        "/.%2e/secret.txt",
        "/%c0%ae%c0%ae/secret.txt",  # overlong UTF-8
        "/secret.txt%00.html",
        "//etc/passwd",
        "/etc/passwd",
        "/%2fetc%2fpasswd",
        "/assets/./../../secret.txt",
    ],
)
def test_traversal_is_refused(site: Path, serve: Callable[[Served], Client], path: str) -> None:
    status, _, body = serve(Served(site)).get(path)
    assert status in (400, 403, 404)
    assert SECRET.encode() not in body and b"root:" not in body


def test_absolute_form_request_target_is_refused(
    site: Path, serve: Callable[[Served], Client]
) -> None:
    status, _, _ = serve(Served(site)).get("http://127.0.0.1/../secret.txt")
    assert status == 400


def test_symlinks_leading_outside_are_refused(
    site: Path, serve: Callable[[Served], Client]
) -> None:
    (site / "leak.txt").symlink_to(site.parent / "secret.txt")
    (site / "etc").symlink_to("/etc")
    (site / "up").symlink_to("..")
    (site / "alias.css").symlink_to("assets/style.css")  # inside the site: fine
    client = serve(Served(site))
    for path in ("/leak.txt", "/etc/passwd", "/up/secret.txt", "/etc/"):
        status, _, body = client.get(path)
        assert status == 403, path
        assert SECRET.encode() not in body and b"root:" not in body
    status, _, body = client.get("/alias.css")
    assert status == 200 and body == b"body { color: red }"


def test_a_fifo_is_not_served(site: Path, serve: Callable[[Served], Client]) -> None:
    os.mkfifo(site / "pipe.html")
    status, _, _ = serve(Served(site)).get("/pipe.html")
    assert status == 404


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:{port}", True),
        ("localhost:{port}", True),
        ("LOCALHOST.:{port}", True),
        ("[::1]:{port}", True),
        ("evil.example:{port}", False),  # DNS rebinding: a name that is not ours
        ("evil.example", False),
        ("127.0.0.1:1", False),
        ("127.0.0.1", False),
        ("", False),
        (None, False),
        ("127.0.0.1.evil.example:{port}", False),
        ("::1:{port}", False),
    ],
)
def test_host_header_is_checked(
    site: Path, serve: Callable[[Served], Client], host: str | None, allowed: bool
) -> None:
    client = serve(Served(site))
    value = None if host is None else host.format(port=client.port)
    connection = http.client.HTTPConnection("127.0.0.1", client.port, timeout=10)
    connection.putrequest("GET", "/", skip_host=True)
    if value is not None:
        connection.putheader("Host", value)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert (response.status == 200) is allowed, (value, response.status)
    if not allowed:
        assert response.status == 403 and b"Home" not in body


def test_host_check_on_all_interfaces_allows_addresses_not_names() -> None:
    check = HostCheck("0.0.0.0", 8000)
    assert check.allows("192.168.1.20:8000")
    assert check.allows(f"{socket.gethostname()}:8000")
    assert not check.allows("attacker.example:8000")
    assert HostCheck("myhost.lan", 80).allows("myhost.lan:80")


def _stream(client: Client, headers: dict[str, str]) -> tuple[int, http.client.HTTPResponse]:
    connection = http.client.HTTPConnection("127.0.0.1", client.port, timeout=10)
    connection.putrequest("GET", EVENTS_PATH, skip_host=True)
    for key, value in {"Host": f"127.0.0.1:{client.port}", **headers}.items():
        connection.putheader(key, value)
    connection.endheaders()
    response = connection.getresponse()
    return response.status, response


def _event(response: http.client.HTTPResponse) -> dict[str, object]:
    lines = []
    while (line := response.fp.readline().decode().rstrip("\n")) or not lines:
        if line and not line.startswith(":"):
            lines.append(line)
    assert lines[0] == "event: build"
    return json.loads(lines[1].removeprefix("data: "))


def test_event_stream_announces_each_rebuild(site: Path, serve: Callable[[Served], Client]) -> None:
    hub = Hub()
    client = serve(Served(site), hub)
    status, response = _stream(client, {"Origin": f"http://127.0.0.1:{client.port}"})
    assert status == 200 and response.getheader("Content-Type") == "text/event-stream"
    first = _event(response)
    assert first["version"] == hub.state.version
    hub.publish((), {}, soft=True)
    second = _event(response)
    assert second == {"version": hub.state.version, "soft": True}
    assert second["version"] != first["version"]
    response.close()


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:1"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_event_stream_refuses_other_origins(
    site: Path, serve: Callable[[Served], Client], headers: dict[str, str]
) -> None:
    status, response = _stream(serve(Served(site)), headers)
    assert status == 403
    response.close()


# -- baseurl and the in-memory snapshot ---------------------------------------------------


def test_baseurl_sub_path(site: Path, serve: Callable[[Served], Client]) -> None:
    client = serve(Served(site, "/blog"))
    status, _, body = client.get("/blog/")
    assert status == 200 and b"<h1>Home</h1>" in body
    assert client.get("/blog/2025/01/02/hello/")[0] == 200
    for path, location in (("/", "/blog/"), ("/blog", "/blog/"), ("/blog/2025", "/blog/2025/")):
        status, headers, _ = client.get(path)
        assert (status, headers["location"]) == (302, location)
    status, _, body = client.get("/2025/01/02/hello/")  # outside the sub-path
    assert status == 404 and b"Page not found" in body
    assert client.get("/blogger/")[0] == 404
    assert client.get("/blog/../secret.txt")[0] == 404


def test_snapshot_is_served_from_memory(
    site: Path, tmp_path: Path, serve: Callable[[Served], Client]
) -> None:
    style = tmp_path / "style-source.css"
    style.write_text("p { margin: 0 }")
    snapshot = Snapshot.of(
        [
            ("index.html", b"<html><body>memory home</body></html>"),
            ("404.html", b"<html><body>memory 404</body></html>"),
            ("2025/01/02/hello/index.html", b"<html><body>memory post</body></html>"),
        ],
        [("assets/style.css", style)],
    )
    client = serve(Served(site, "", snapshot, static_roots=(tmp_path,)))
    assert b"memory home" in client.get("/")[2]
    assert client.get("/2025/01/02/hello")[0] == 302
    assert b"memory post" in client.get("/2025/01/02/hello/")[2]
    status, headers, body = client.get("/assets/style.css")
    assert (status, body) == (200, b"p { margin: 0 }")
    assert headers["content-type"] == "text/css; charset=utf-8"
    status, _, body = client.get("/assets/app.js")  # in the folder, not in the snapshot
    assert status == 404 and b"memory 404" in body
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/2025/../../secret.txt"):
        status, _, body = client.get(path)
        assert status == 404 and SECRET.encode() not in body


def test_resolve_is_pure() -> None:
    served = Served(Path("/nonexistent-site"), "/blog")
    assert resolve("/blog/a/../b", served).kind == "missing"
    assert resolve("relative", served).kind == "bad"
    assert resolve("/blog/%ff", served).kind == "bad"
    assert content_type("x.HTML") == "text/html; charset=utf-8"


def test_a_file_swapped_for_a_symlink_while_serving_is_refused(
    site: Path, tmp_path: Path, serve: Callable[[Served], Client]
) -> None:
    """The request is resolved against the output folder when it comes: a file replaced
    by a symlink to something outside after the server started (or after the build
    vetted it) is never followed."""
    project = tmp_path / "project"
    (project / "static").mkdir(parents=True)
    static = project / "static" / "notes.txt"
    static.write_text("public notes")
    snapshot = Snapshot.of([("index.html", b"<html><body>home</body></html>")],
                           [("notes.txt", static)])  # fmt: skip
    from_memory = serve(Served(site, "", snapshot, static_roots=(project,)))
    from_folder = serve(Served(site))
    assert from_memory.get("/notes.txt")[:3:2] == (200, b"public notes")
    assert from_folder.get("/assets/style.css")[0] == 200
    static.unlink()
    static.symlink_to(site.parent / "secret.txt")
    (site / "assets" / "style.css").unlink()
    (site / "assets" / "style.css").symlink_to("/etc/passwd")
    for client, path in ((from_memory, "/notes.txt"), (from_folder, "/assets/style.css")):
        status, _, body = client.get(path)
        assert status == 403, path
        assert SECRET.encode() not in body and b"root:" not in body


def test_the_opened_file_is_what_is_checked(tmp_path: Path) -> None:
    from raypress.preview.http_server import opened_within

    inside, outside = tmp_path / "site", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    (outside / "secret").write_text(SECRET)
    (inside / "page").symlink_to(outside / "secret")  # swapped in after any path check
    with (inside / "page").open("rb") as handle:
        assert not opened_within(handle.fileno(), (str(inside),))
        assert opened_within(handle.fileno(), (str(outside),))
