"""What legitimately varies between two runs of the same snippet, replaced by placeholders.

``check`` compares a snippet's output with its record after :func:`normalise` has been
applied to both. The rules (the README's "Comparing outputs" lists them too):

strict (the default), in this order:

1. Process ids: in Ray's worker prefixes ``(name pid=1234, ip=10.0.0.5)`` the pid becomes
   ``<pid>`` and the ip ``<ip>``; a number right after the word ``pid`` (``pid 1234``,
   ``pid: 1234``, ``PID=1234``) becomes ``<pid>``; and on a line that carries a worker
   prefix, that worker's pid becomes ``<pid>`` wherever it appears.
2. Ray ids: ``ObjectRef(…)``, ``ActorID(…)``, ``TaskID(…)``, ``JobID(…)``, ``NodeID(…)``,
   ``WorkerID(…)``, ``PlacementGroupID(…)``, ``ObjectID(…)`` and ``Actor(Name, …)`` keep
   their name, the hex id becomes ``<id>``.
3. Memory addresses: ``0x`` followed by 8 or more hex digits becomes ``<addr>``.
4. Temporary paths: a path under ``/tmp``, ``/var/tmp``, ``/dev/shm`` or the system's
   temporary folder becomes ``<tmp>``; a path into an installation
   (``…/site-packages/``, ``…/lib/python3.X/``) keeps only what follows that part,
   after ``<site-packages>/`` or ``<stdlib>/``.
5. Durations: a number followed by a time unit (``ns``, ``µs``, ``us``, ``ms``, ``s``,
   ``sec``, ``secs``, ``second(s)``, ``min``, ``minute(s)``, ``h``) becomes
   ``<duration>``: ``12.3 ms``, ``0.84 s``, ``2.1s``.

loose: strict, then every number (``-1.5e-08``, ``42``, ``3,125``) becomes ``<n>``, runs of
spaces and tabs become one space, trailing spaces go, and lines are sorted (the order in
which parallel tasks printed does not matter).

none: the output is not compared (the snippet must still run as its record says: no
unexpected exception, no missing expected one).
"""

from __future__ import annotations

import re
import tempfile

_RAY_PREFIX = re.compile(r"\((?P<name>[^()\s]+) pid=(?P<pid>\d+)(?P<ip>, ip=[0-9a-fA-F.:]+)?\)")
_RAY_IDS = re.compile(
    r"\b(?P<kind>ObjectRef|ClientObjectRef|ObjectID|ActorID|TaskID|JobID|NodeID|WorkerID|"
    r"PlacementGroupID)\((?P<quote>['\"]?)[0-9a-fA-F]+(?P=quote)\)"
)
_ACTOR = re.compile(r"\bActor\((?P<name>[\w.]+), [0-9a-fA-F]{16,}\)")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{8,}\b")
_INSTALLED = re.compile(
    r"(?:[^\s'\"(]*/)?(?:site-packages|dist-packages)/|(?:[^\s'\"(]*/)?lib/python3\.\d+/"
)
_DURATION = re.compile(
    r"(?<![\w.])[-+]?\d+(?:[.,]\d+)?(?:[eE][-+]?\d+)?\s?"
    r"(?:ns|µs|μs|us|ms|s|sec|secs|seconds?|min|minutes?|h)(?![\w/])"
)
_NUMBER = re.compile(
    r"(?<![\w<])[-+]?(?:\d[\d,_]*)?\.?\d+(?:[eE][-+]?\d+)?(?:[x×](?!\w)|(?![\w>]))"
)
_PID_WORD = re.compile(r"\b(?P<word>pid|PID)(?P<sep>\s*[:=]?\s*)\d+\b")
_SPACES = re.compile(r"[ \t]+")


def normalise(text: str, mode: str = "strict") -> str:
    """``text`` with run-to-run noise replaced, as the module docstring describes."""
    if mode == "none":
        return ""
    text = _ray_workers(text)
    text = _RAY_IDS.sub(lambda m: f"{m['kind']}(<id>)", text)
    text = _ACTOR.sub(lambda m: f"Actor({m['name']}, <id>)", text)
    text = _ADDRESS.sub("<addr>", text)
    text = _temporary_paths(text)
    text = _INSTALLED.sub(_installed, text)
    text = _DURATION.sub("<duration>", text)
    if mode == "loose":
        text = _NUMBER.sub("<n>", text)
        lines = sorted(_SPACES.sub(" ", line).rstrip() for line in text.splitlines())
        text = "\n".join(lines) + ("\n" if lines else "")
    return text


def _ray_workers(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        pids = {m["pid"] for m in _RAY_PREFIX.finditer(line)}
        line = _RAY_PREFIX.sub(_prefix, line)
        if pids:
            alternatives = "|".join(sorted(pids, key=len, reverse=True))
            line = re.sub(rf"(?<![\d.])(?:{alternatives})(?![\d.])", "<pid>", line)
        lines.append(line)
    return _PID_WORD.sub(lambda m: f"{m['word']}{m['sep']}<pid>", "\n".join(lines))


def _prefix(match: re.Match[str]) -> str:
    ip = ", ip=<ip>" if match["ip"] else ""
    return f"({match['name']} pid=<pid>{ip})"


def _temporary_paths(text: str) -> str:
    roots = {"/tmp", "/var/tmp", "/dev/shm", tempfile.gettempdir().rstrip("/")}
    alternatives = "|".join(re.escape(r) for r in sorted(roots, key=len, reverse=True) if r)
    return re.sub(rf"(?<![\w/.])(?:{alternatives})(?:/[^\s'\"(),:;]*)?", "<tmp>", text)


def _installed(match: re.Match[str]) -> str:
    return "<site-packages>/" if "-packages/" in match.group(0) else "<stdlib>/"
