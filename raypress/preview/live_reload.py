"""Live reload for ``serve``: what the browser is told after each rebuild, and the script
that listens. Nothing here is ever written into the output folder: the server injects
the script into the HTML it sends.

The server keeps one :class:`LiveState` (site version, the build's problems) in a
:class:`Hub`. Every served page carries the version it was made from and the problems
that concern it; the script opens a Server-Sent Events stream and reloads the page when
the stream announces another version, so a rebuild between the page load and the
stream's start is not missed. Problems are shown in an overlay naming ``posts/FILE.md:LINE``.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field

from raypress.errors import Problem

EVENTS_PATH = "/__raypress/events"  # reserved URL of the event stream (outside the baseurl)
KEEPALIVE_S = 15.0
_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class LiveState:
    """What pages are served with: the version of the site and the current problems.

    ``problems`` concern every page (the input is broken: the previous site is served);
    ``page_problems`` maps an output file (``2025/10/27/slug/index.html``) to the failed
    snippets of the post it shows.
    """

    version: str
    problems: tuple[Problem, ...] = ()
    page_problems: dict[str, tuple[Problem, ...]] = field(default_factory=dict)
    soft: bool = False  # only posts changed: pages may swap their body instead of reloading


@dataclass(frozen=True, slots=True)
class Running:
    """What runs now, for the pages' status box (``running posts/x.md snippet 3 of 8
    (line 42)``), and how many seconds it has run."""

    what: str
    seconds: float


class Hub:
    """The current :class:`LiveState`, and a way to wait until it changes."""

    def __init__(self) -> None:
        self.boot = secrets.token_hex(4)  # a restarted server is another version
        self.counter = 0
        self.state = LiveState(f"{self.boot}-0")
        self.closed = False
        self.changed = threading.Condition()
        self.running: tuple[Running, ...] = ()  # posts and snippets running now
        self.running_serial = 0

    def set_running(self, running: tuple[Running, ...]) -> None:
        """Tell the pages what runs now (empty: nothing)."""
        with self.changed:
            if running != self.running:
                self.running = running
                self.running_serial += 1
                self.changed.notify_all()

    def wait_any(
        self, seen: str, seen_running: int, timeout: float
    ) -> tuple[LiveState | None, tuple[int, tuple[Running, ...]] | None]:
        """The state once its version is not ``seen``, and what runs once it is not
        ``seen_running`` (each None when unchanged, on timeout, or when closed)."""
        with self.changed:
            self.changed.wait_for(
                lambda: (
                    self.closed or self.state.version != seen or self.running_serial != seen_running
                ),
                timeout,
            )
            if self.closed:
                return None, None
            state = self.state if self.state.version != seen else None
            moved = self.running_serial != seen_running
            return state, (self.running_serial, self.running) if moved else None

    def publish(
        self,
        problems: tuple[Problem, ...],
        page_problems: dict[str, tuple[Problem, ...]],
        soft: bool = False,
    ) -> LiveState:
        """Announce a new version of the site (after a rebuild, good or bad)."""
        with self.changed:
            self.counter += 1
            version = f"{self.boot}-{self.counter}"
            self.state = LiveState(version, problems, page_problems, soft)
            self.changed.notify_all()
            return self.state

    def wait(self, seen: str, timeout: float) -> LiveState | None:
        """The state once its version is not ``seen``; None on timeout or when closed."""
        with self.changed:
            self.changed.wait_for(lambda: self.closed or self.state.version != seen, timeout)
            if self.closed or self.state.version == seen:
                return None
            return self.state

    def close(self) -> None:
        """Wake every stream so that its thread ends."""
        with self.changed:
            self.closed = True
            self.changed.notify_all()


def event(state: LiveState) -> bytes:
    """One Server-Sent Event announcing ``state``'s version."""
    data = json.dumps({"version": state.version, "soft": state.soft})
    return f"event: build\ndata: {data}\n\n".encode()


def running_event(running: tuple[Running, ...]) -> bytes:
    """One Server-Sent Event saying what runs now (the pages' status box)."""
    data = json.dumps([{"what": r.what, "seconds": round(r.seconds, 1)} for r in running])
    return f"event: running\ndata: {data}\n\n".encode()


def inject(html: bytes, state: LiveState, output_file: str | None) -> bytes:
    """``html`` with the live-reload script (and this page's problems) before ``</body>``."""
    data = {
        "version": state.version,
        "events": EVENTS_PATH,
        "problems": [_problem(p, False) for p in state.problems]
        + [_problem(p, True) for p in state.page_problems.get(output_file or "", ())],
    }
    payload = json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e")
    snippet = (
        f'<script type="application/json" id="raypress-live">{payload}</script>'
        f"<script data-raypress>{CLIENT_JS}</script>"
    ).encode()
    ends = list(_BODY_END.finditer(html))
    if not ends:
        return html + snippet
    at = ends[-1].start()
    return html[:at] + snippet + html[at:]


def _problem(problem: Problem, on_this_page: bool) -> dict[str, str | int | None]:
    """A problem for the overlay; ``line`` when it is a line of this page's post."""
    where = f"{problem.path}:{problem.line}" if problem.line else problem.path
    message = str(problem).removeprefix(f"{where}: ")
    return {"where": where, "message": message, "line": problem.line if on_this_page else None}


CLIENT_JS = """
(() => {
  const overlayId = "raypress-error-overlay";
  const state = (doc) => JSON.parse(doc.getElementById("raypress-live").textContent);
  // scripts that would not run again after a swap; JSON-LD is data, and the theme's
  // data-swap-safe scripts set themselves up again on "raypress:updated"
  const ownScripts = (doc) => [...doc.scripts].filter((s) => s.id !== "raypress-live" &&
    !s.hasAttribute("data-raypress") && !s.hasAttribute("data-swap-safe") &&
    s.type !== "application/ld+json");
  const assets = (doc) => [...doc.head.querySelectorAll(
    "link[rel~='stylesheet'],style,script:not([type='application/ld+json'])")]
    .map((element) => element.outerHTML).join("\\n");
  let live = state(document);
  function showProblems(problems) {
    document.getElementById(overlayId)?.remove();
    if (!problems.length) return;
    const box = document.createElement("div");
    box.id = overlayId;
    box.setAttribute("role", "alert");
    box.style.cssText = "position:fixed;inset:0 0 auto 0;z-index:2147483647;max-height:60vh;" +
      "overflow:auto;margin:0;padding:1rem 3rem 1rem 1.25rem;background:#2b0d0d;color:#ffe9e9;" +
      "border-bottom:4px solid #e5484d;font:14px/1.5 ui-monospace,SFMono-Regular,Menlo,monospace;" +
      "box-shadow:0 4px 24px rgba(0,0,0,.5);white-space:pre-wrap";
    const title = document.createElement("strong");
    title.textContent = problems.length === 1 ? "raypress: 1 problem" :
      `raypress: ${problems.length} problems`;
    box.append(title);
    for (const problem of problems) {
      const line = document.createElement("div");
      const where = document.createElement("code");
      where.className = "raypress-where";
      where.style.cssText = "color:#ffb3b3;font-weight:bold";
      where.textContent = problem.where;
      const figure = problem.line && [...document.querySelectorAll("figure.snippet[data-line]")]
        .filter((f) => Number(f.dataset.line) <= problem.line).pop();
      if (figure) {  // the snippet the line belongs to: a click shows it
        where.style.cursor = "pointer";
        where.title = "Show the snippet";
        where.onclick = () => figure.scrollIntoView({ block: "center" });
      }
      line.append(where, " ", problem.message);
      box.append(line);
    }
    const close = document.createElement("button");
    close.type = "button";
    close.textContent = "\\u00d7";
    close.setAttribute("aria-label", "Dismiss");
    close.style.cssText = "position:absolute;top:.5rem;right:.75rem;font-size:1.5rem;" +
      "background:none;border:0;color:inherit;cursor:pointer";
    close.onclick = () => box.remove();
    box.append(close);
    document.body.append(box);
  }
  // A post edit swaps the page's body in place (no flash, scroll kept); anything else,
  // or a page with scripts of its own, is reloaded whole.
  async function refresh(soft) {
    if (soft && !ownScripts(document).length) {
      try {
        const response = await fetch(location.href, { cache: "no-store" });
        const type = response.headers.get("Content-Type") || "";
        const doc = type.startsWith("text/html") &&
          new DOMParser().parseFromString(await response.text(), "text/html");
        if (doc && doc.getElementById("raypress-live") && !ownScripts(doc).length &&
            assets(doc) === assets(document)) {
          document.title = doc.title;
          document.body.replaceWith(doc.body);
          live = state(document);
          showProblems(live.problems);
          document.dispatchEvent(new CustomEvent("raypress:updated", { detail: live.version }));
          return;
        }
      } catch (error) {
        console.debug("raypress: reloading the whole page", error);
      }
    }
    stream.close();
    location.reload();
  }
  // While posts run: "running posts/x.md snippet 3 of 8 (line 42)… 12 s", bottom right.
  const statusId = "raypress-status";
  let statusTimer = null;
  function showRunning(running) {
    clearInterval(statusTimer);
    document.getElementById(statusId)?.remove();
    if (!running.length) return;
    const box = document.createElement("div");
    box.id = statusId;
    box.setAttribute("role", "status");
    box.style.cssText = "position:fixed;right:1rem;bottom:1rem;z-index:2147483646;" +
      "max-width:min(42rem,90vw);padding:.6rem .9rem;border-radius:8px;background:#0d1b2a;" +
      "color:#e6f1ff;border-left:4px solid #3b82f6;box-shadow:0 4px 18px rgba(0,0,0,.35);" +
      "font:13px/1.5 ui-monospace,SFMono-Regular,Menlo,monospace";
    const received = performance.now();
    const lines = running.map((item) => {
      const line = document.createElement("div");
      line.className = "raypress-running";
      box.append(line);
      return [line, item];
    });
    const draw = () => {
      const extra = (performance.now() - received) / 1000;
      for (const [line, item] of lines) {
        line.textContent = `${item.what}\u2026 ${Math.floor(item.seconds + extra)} s`;
      }
    };
    draw();
    statusTimer = setInterval(draw, 1000);
    document.body.append(box);
  }
  showProblems(live.problems);
  const stream = new EventSource(live.events);
  stream.addEventListener("running", (message) => showRunning(JSON.parse(message.data)));
  let queue = Promise.resolve();
  stream.addEventListener("build", (message) => {
    const data = JSON.parse(message.data);
    queue = queue.then(() => data.version === live.version || refresh(data.soft));
  });
  addEventListener("pagehide", () => stream.close());
})();
""".strip()
