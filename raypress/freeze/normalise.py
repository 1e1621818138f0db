"""How ``check`` compares a snippet's output with its record: what may differ between two
honest runs of the same code, and what may not.

Both texts are first put in a canonical form (:func:`normalise`), then compared
(:func:`same`): equal canonical forms match, and in ``strict`` mode so do forms that
differ only in the noise of estimates (rule 9). The rules (the README's "Comparing
outputs" lists them too), strict (the default), in this order:

1. Process ids: in Ray's worker prefixes ``(name pid=1234, ip=10.0.0.5)`` the pid becomes
   ``<pid>`` and the ip goes (which node ran a task is Ray's scheduling, not the code's:
   ``(name pid=<pid>)``); a number right after the word ``pid`` (``pid 1234``,
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
   ``<duration>``: ``12.3 ms``, ``0.84 s``, ``2.1s``; so does a clock time ``00:03``.
6. Unit-less timings: on a line that speaks of time (``time``, ``took``, ``elapsed``,
   ``duration``, ``runtime``, ``latency``, ``overhead``, ``seconds``, ``wall``, …),
   every number with a fractional part becomes ``<duration>``:
   ``duration = 4.0149290561676025``. Progress-bar rates (``2.35it/s``, ``1.2s/it``)
   become ``<rate>``, and on a line that speaks of speed (``faster``, ``slower``,
   ``speed-up``) a factor such as ``15x`` becomes ``<factor>x``.
7. Progress: consecutive lines of the same shape (the same text once numbers are set
   aside) that report progress (a percentage, a fraction ``3/10``, or a word such as
   ``progress``, ``processed``, ``completed``, ``step``, ``epoch``) and whose numbers
   never go down are one progress report: only its last line is kept, after a
   ``<progress>`` line. How many lines a polling loop prints, and which percentages it
   happened to catch, vary; where it ended does not. (A line rewritten in place with
   ``\\r``, such as a tqdm bar, was already reduced to its final state when captured.)
8. Output of tasks and actors: the lines that carry a Ray worker prefix keep their
   place after the driver's own lines, but in sorted order: parallel tasks, and
   threads of one actor, print in an order no program controls.
9. Estimates (the comparison, not the canonical form): two outputs that differ only in
   numbers printed with 5 or more significant digits, each pair within 0.5% of each
   other, match: ``Estimated value of π is: 3.1412202`` and ``3.1416908``. A number
   printed with fewer digits, every integer, and every whole number printed as a float
   (``1000000.0``) must be equal.

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
_WORKER_LINE = re.compile(r"^\([^()\s]+ pid=<pid>\) ")
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
_CLOCK = re.compile(r"(?<![\w:])(?:\d+:)?\d\d:\d\d(?![\w:])")
_TIME_WORDS = re.compile(
    r"(?i)\b(?:time[sd]?|timing|took|takes?|taken|elapsed|duration|durations|runtime|"
    r"latency|overhead|wall|seconds?|secs?|ms|speed|throughput)\b"
)
_DECIMAL = re.compile(r"(?<![\w.<])[-+]?\d*\.\d+(?:[eE][-+]?\d+)?(?![\w.>])|\d+[eE][-+]?\d+")
_RATE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:it|s|B|kB|MB|GB)/(?:s|it)\b")
_SPEED_WORDS = re.compile(r"(?i)\b(?:faster|slower|speed-?ups?)\b")
_FACTOR = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?[x×](?!\w)")
_NUMBER = re.compile(
    r"(?<![\w<])[-+]?(?:\d[\d,_]*)?\.?\d+(?:[eE][-+]?\d+)?(?:[x×](?!\w)|(?![\w>]))"
)
_ANY_NUMBER = re.compile(r"(?<![\w<.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w>])")
_PROGRESS_WORDS = re.compile(
    r"(?i)\b(?:progress|processed|processing|completed?|done|finished|steps?|epochs?|"
    r"iterations?|iter|batch(?:es)?)\b"
)
_PERCENT = re.compile(r"\d\s?%")
_FRACTION = re.compile(r"(?<![\w/])\d+\s?/\s?\d+(?![\w/])")
_PID_WORD = re.compile(r"\b(?P<word>pid|PID)(?P<sep>\s*[:=]?\s*)\d+\b")
_SPACES = re.compile(r"[ \t]+")
_ESTIMATE_DIGITS = 5  # significant digits from which a printed number is an estimate
_ESTIMATE_TOLERANCE = 0.005  # relative


def normalise(text: str, mode: str = "strict", progress: bool = True) -> str:
    """``text`` with run-to-run noise replaced, as the module docstring describes
    (``progress=False`` leaves progress reports whole: for benchmarks that judge rule 7)."""
    if mode == "none":
        return ""
    text = _ray_workers(text)
    text = _RAY_IDS.sub(lambda m: f"{m['kind']}(<id>)", text)
    text = _ACTOR.sub(lambda m: f"Actor({m['name']}, <id>)", text)
    text = _ADDRESS.sub("<addr>", text)
    text = _temporary_paths(text)
    text = _INSTALLED.sub(_installed, text)
    text = _DURATION.sub("<duration>", text)
    text = _CLOCK.sub("<duration>", text)
    text = _RATE.sub("<rate>", text)
    text = "\n".join(_timing_line(line) for line in text.split("\n"))
    text = _reorder_workers(_collapse_progress(text) if progress else text)
    if mode == "loose":
        text = _NUMBER.sub("<n>", text)
        lines = sorted(_SPACES.sub(" ", line).rstrip() for line in text.splitlines())
        text = "\n".join(lines) + ("\n" if lines else "")
    return text


def same(before: str, after: str, mode: str = "strict") -> bool:
    """True when two canonical forms (:func:`normalise`) match: equal, or, in strict mode,
    differing only in estimates (rule 9)."""
    if before == after:
        return True
    if mode != "strict":
        return False
    old, new = before.split("\n"), after.split("\n")
    if len(old) != len(new):
        return False
    return all(a == b or _same_but_estimates(a, b) for a, b in zip(old, new, strict=True))


def _same_but_estimates(a: str, b: str) -> bool:
    if _ANY_NUMBER.sub("#", a) != _ANY_NUMBER.sub("#", b):
        return False
    for x, y in zip(_ANY_NUMBER.findall(a), _ANY_NUMBER.findall(b), strict=True):
        if x == y:
            continue
        if not _is_estimate(x) or not _is_estimate(y):
            return False  # integers, and whole numbers printed as floats, are exact
        if min(_significant(x), _significant(y)) < _ESTIMATE_DIGITS:
            return False
        fx, fy = float(x), float(y)
        if abs(fx - fy) > _ESTIMATE_TOLERANCE * max(abs(fx), abs(fy)):
            return False
    return True


def _is_estimate(number: str) -> bool:
    """A number printed with a fractional part that is not just ``.0`` (``1000000.0`` is
    Python printing an exact whole number)."""
    mantissa = re.split(r"[eE]", number)[0]
    return "." in mantissa and not re.search(r"\.0*$", mantissa)


def _significant(number: str) -> int:
    digits = re.split(r"[eE]", number.lstrip("+-"))[0].replace(".", "").lstrip("0")
    return len(digits)


def _timing_line(line: str) -> str:
    if _TIME_WORDS.search(line):
        line = _DECIMAL.sub("<duration>", line)
    if _SPEED_WORDS.search(line):
        line = _FACTOR.sub("<factor>x", line)
    return line


def _collapse_progress(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not _is_progress(line):
            out.append(line)
            index += 1
            continue
        end = index + 1
        while end < len(lines) and _continues(lines[end - 1], lines[end]):
            end += 1
        out += ["<progress>", lines[end - 1]]
        index = end
    return "\n".join(out)


def _is_progress(line: str) -> bool:
    if not _ANY_NUMBER.search(line):
        return False
    return bool(_PERCENT.search(line) or _FRACTION.search(line) or _PROGRESS_WORDS.search(line))


def _continues(previous: str, line: str) -> bool:
    """``line`` goes on ``previous``'s progress report: same shape, no number went down."""
    if _ANY_NUMBER.sub("#", previous) != _ANY_NUMBER.sub("#", line):
        return False
    before = [float(n) for n in _ANY_NUMBER.findall(previous)]
    after = [float(n) for n in _ANY_NUMBER.findall(line)]
    return all(b >= a for a, b in zip(before, after, strict=True))


def _reorder_workers(text: str) -> str:
    lines = text.split("\n")
    tail = [lines.pop()] if lines and lines[-1] == "" else []
    driver = [line for line in lines if not _WORKER_LINE.match(line)]
    workers = sorted(line for line in lines if _WORKER_LINE.match(line))
    return "\n".join(driver + workers + tail)


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
    return f"({match['name']} pid=<pid>)"


def _temporary_paths(text: str) -> str:
    roots = {"/tmp", "/var/tmp", "/dev/shm", tempfile.gettempdir().rstrip("/")}
    alternatives = "|".join(re.escape(r) for r in sorted(roots, key=len, reverse=True) if r)
    return re.sub(rf"(?<![\w/.])(?:{alternatives})(?:/[^\s'\"(),:;]*)?", "<tmp>", text)


def _installed(match: re.Match[str]) -> str:
    return "<site-packages>/" if "-packages/" in match.group(0) else "<stdlib>/"
