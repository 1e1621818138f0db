"""A deterministic benchmark corpus: N blog posts in raypress's layout and in Pelican's.

Each post has ~800 words of prose (headings, bullet and numbered lists, links, inline
code, emphasis) and four code fences of 15-30 lines: two Python, one Bash and one other
language (YAML, JSON, TOML, SQL, JavaScript, Rust, Go or a Dockerfile). The text comes
from a seeded RNG over a fixed vocabulary, so it reads like (repetitive) prose and the
same seed always gives byte-identical files. Post ``i`` depends only on the seed and
``i``, so the first 200 posts of a 1,000-post corpus are the 200-post corpus.

Layout written by :func:`write_corpus` under ``OUT``::

    OUT/raypress/site.toml            config (title, url, author)
    OUT/raypress/templates/           a copy of the repository's templates/
    OUT/raypress/posts/YYYY-MM-DD-slug.md   YAML front matter: title, date, tags
    OUT/pelican/pelicanconf.py        default theme, python-markdown + codehilite
    OUT/pelican/content/slug.md       Pelican headers: Title, Date, Tags, Slug

Python fences start with ``#| eval: false`` so that, once raypress executes snippets,
this benchmark still measures publishing and not Ray (``runnable=True`` leaves it out).
The line is a comment for Pelican and is stripped from raypress's display.

Command line: ``python bench/corpus.py OUT [--posts 1000] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
DEFAULT_SEED = 1
DEFAULT_WORDS = 800
NEWEST = datetime(2025, 6, 30, 9, 0, tzinfo=UTC)  # post 0; post i is i days older

# --------------------------------------------------------------------------- vocabulary


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


NOUNS = _words(
    "cache worker process thread array buffer scheduler queue function value result "
    "request file index record batch pipeline task actor object reference matrix vector "
    "loop iterator generator decorator module package test benchmark profile lock event "
    "callback session cluster node partition shard key column row table query transaction "
    "log metric snapshot checkpoint stream socket handler template parser token config "
    "option flag default error exception trace timeout retry budget latency throughput "
    "memory disk core machine container image build release version branch commit review "
    "dataset sample histogram estimate baseline heuristic interface contract boundary"
)
VERBS = _words(
    "read write parse cache store return call schedule copy share split merge sort filter "
    "map reduce measure profile serialise load update check skip retry block release "
    "allocate spawn join collect render compile validate hash compare batch stream "
    "inspect replace wrap trace"
)
ADJECTIVES = _words(
    "small large slow fast cheap expensive shared local remote immutable mutable lazy "
    "eager stateless stateful naive careful obvious subtle hidden typical common rare "
    "stale fresh whole partial parallel sequential concurrent warm cold hot default "
    "explicit implicit noisy stable predictable surprising tiny generous strict loose"
)
ADVERBS = _words(
    "quickly slowly twice once eventually immediately silently explicitly safely rarely "
    "usually often always never lazily eagerly quietly cheaply reliably"
)
PHRASES = (
    "in place",
    "in order",
    "in bulk",
    "on demand",
    "at start-up",
    "per request",
    "behind the scenes",
    "in the hot loop",
    "on every call",
    "at the end",
)
PREPOSITIONS = _words("into from across between inside behind before after through without over")
TRANSITIONS = (
    "However,",
    "In other words,",
    "Put differently,",
    "On the other hand,",
    "As a rule,",
    "For example,",
    "In my experience,",
    "Surprisingly,",
    "Of course,",
    "In practice,",
    "Still,",
    "Even so,",
    "At this point,",
    "Again,",
    "To be fair,",
)
OPENERS = (
    "This post looks at",
    "Today I want to talk about",
    "A reader asked me about",
    "Last week I spent too long on",
    "Here is a short tour of",
    "Let's take apart",
)
TOPICS = (
    "NumPy",
    "Ray",
    "asyncio",
    "pytest",
    "Pygments",
    "Jinja2",
    "SQLite",
    "pandas",
    "multiprocessing",
    "dataclasses",
    "the GIL",
    "pathlib",
    "functools",
    "CPython",
)
TAGS = _words(
    "python numpy ray performance testing asyncio databases tooling profiling caching "
    "parallelism packaging debugging design notes data cli web memory io typing "
    "benchmarks tutorials"
)
OTHER_LANGUAGES = ("yaml", "json", "toml", "sql", "javascript", "rust", "go", "dockerfile")


def _plural(noun: str) -> str:
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _articles(text: str) -> str:
    """ "a explicit lock" -> "an explicit lock"."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def _third(verb: str) -> str:
    return _plural(verb)


def _gerund(verb: str) -> str:
    if verb.endswith("e") and not verb.endswith("ee"):
        return verb[:-1] + "ing"
    if verb in ("map", "skip", "split", "ship", "stop"):
        return verb + verb[-1] + "ing"
    return verb + "ing"


# ------------------------------------------------------------------------------- prose


class Writer:
    """Sentences, paragraphs, lists and code for one post, from one seeded RNG."""

    def __init__(self, rng: random.Random, topic: str):
        self.rng = rng
        self.topic = topic
        self.words = 0  # prose words produced so far
        self.links = 0

    # small pieces
    def n(self) -> str:
        return self.rng.choice(NOUNS)

    def ns(self) -> str:
        return _plural(self.n())

    def v(self) -> str:
        return self.rng.choice(VERBS)

    def a(self) -> str:
        return self.rng.choice(ADJECTIVES)

    def adv(self) -> str:
        r = self.rng.random()
        return self.rng.choice(PHRASES) if r < 0.3 else self.rng.choice(ADVERBS)

    def det(self) -> str:
        return self.rng.choice(("the", "the", "a", "each", "every", "one", "that", "this"))

    def np_(self) -> str:
        """A noun phrase, sometimes with an adjective, sometimes inline code."""
        r = self.rng.random()
        if r < 0.08:
            return f"`{self.ident()}`"
        if r < 0.45:
            return f"{self.det()} {self.a()} {self.n()}"
        if r < 0.6:
            return f"{self.a()} {self.ns()}"
        return f"{self.det()} {self.n()}"

    def ident(self) -> str:
        r = self.rng.random()
        if r < 0.35:
            return f"{self.v()}_{self.n()}()"
        if r < 0.55:
            return f"{self.n()}.{self.v()}()"
        if r < 0.7:
            return f"self.{self.n()}"
        if r < 0.85:
            return f"{self.n()}_{self.n()}"
        return f"--{self.n()}-{self.v()}"

    def link(self, text: str) -> str:
        self.links += 1
        slug = "-".join(text.lower().replace("`", "").split())
        host = self.rng.choice(("docs.example.org", "example.com", "blog.example.net"))
        return f"[{text}](https://{host}/{slug}/)"

    def sentence(self) -> str:
        rng = self.rng
        pattern = rng.randrange(14)
        if pattern == 0:
            s = (
                f"{self.np_()} {_third(self.v())} {self.np_()} {rng.choice(PREPOSITIONS)} "
                f"{self.np_()}"
            )
        elif pattern == 1:
            s = f"when you {self.v()} {self.np_()}, {self.np_()} {_third(self.v())} {self.adv()}"
        elif pattern == 2:
            s = (
                f"this is why {self.np_()} should {self.v()} {self.np_()} {self.adv()} "
                f"instead of {_gerund(self.v())} it"
            )
        elif pattern == 3:
            s = (
                f"`{self.ident()}` {_third(self.v())} {self.np_()} "
                f"{rng.choice(PREPOSITIONS)} {self.np_()}"
            )
        elif pattern == 4:
            s = (
                f"if {self.np_()} is {self.a()}, {self.np_()} {_third(self.v())} "
                f"{self.np_()} and nobody notices"
            )
        elif pattern == 5:
            s = (
                f"most of the time goes into {_gerund(self.v())} {self.np_()}, "
                f"not into {_gerund(self.v())} it"
            )
        elif pattern == 6:
            s = (
                f"the {self.a()} part is that {self.np_()} never {_third(self.v())} "
                f"{self.np_()} {self.adv()}"
            )
        elif pattern == 7:
            s = (
                f"{self.topic} {_third(self.v())} {self.np_()} for you, so "
                f"{self.np_()} can stay {self.a()}"
            )
        elif pattern == 8:
            s = (
                f"you can {self.v()} {self.np_()} with `{self.ident()}`, which "
                f"{_third(self.v())} {self.np_()} {self.adv()}"
            )
        elif pattern == 9:
            s = (
                f"{self.np_()} and {self.np_()} both {self.v()} {self.np_()}, "
                f"but only one of them is *{self.a()}*"
            )
        elif pattern == 10:
            s = f"nothing here {_third(self.v())} {self.np_()} unless {self.np_()} asks for it"
        elif pattern == 11:
            s = (
                f"the **{self.a()} {self.n()}** {_third(self.v())} "
                f"{rng.randint(2, 64)} {self.ns()} per {self.n()}"
            )
        elif pattern == 12:
            s = (
                f"see {self.link(f'the {self.n()} notes')} for why {self.np_()} "
                f"{_third(self.v())} {self.np_()}"
            )
        else:
            s = (
                f"it took me a while to see that {self.np_()} "
                f"{_third(self.v())} {self.np_()} {self.adv()}"
            )
        if rng.random() < 0.2:
            s = f"{rng.choice(TRANSITIONS)} {s}"
        s = _articles(s[0].upper() + s[1:] + ".")
        self.words += len(s.split())
        return s

    def paragraph(self, sentences: int | None = None) -> str:
        count = sentences or self.rng.randint(3, 6)
        return " ".join(self.sentence() for _ in range(count))

    def bullets(self) -> str:
        items = []
        for _ in range(self.rng.randint(3, 6)):
            r = self.rng.random()
            if r < 0.35:
                item = f"**{self.n().capitalize()}**: {self.sentence()}"
                self.words += 1
            elif r < 0.6:
                item = _articles(f"`{self.ident()}` {_third(self.v())} {self.np_()} {self.adv()}.")
                self.words += len(item.split())
            else:
                item = self.sentence()
            items.append(f"- {item}")
        return "\n".join(items)

    def numbered(self) -> str:
        items = []
        for number in range(1, self.rng.randint(3, 5) + 1):
            item = _articles(
                f"{self.v().capitalize()} {self.np_()} {self.rng.choice(PREPOSITIONS)} "
                f"{self.np_()}."
            )
            if self.rng.random() < 0.4:
                item += " " + self.sentence()
            self.words += len(item.split())
            items.append(f"{number}. {item}")
        return "\n".join(items)

    def quote(self) -> str:
        return "> " + self.sentence()

    def heading(self, level: int) -> str:
        r = self.rng.random()
        if r < 0.3:
            text = f"{_gerund(self.v()).capitalize()} {self.a()} {self.ns()}"
        elif r < 0.55:
            text = f"Why the {self.n()} is {self.a()}"
        elif r < 0.8:
            text = f"{self.a().capitalize()} {self.ns()} and `{self.ident()}`"
        else:
            text = f"What {self.topic} does with {self.ns()}"
        text = _articles(text)
        self.words += len(text.split())
        return "#" * level + " " + text


# -------------------------------------------------------------------------------- code


def _fill(template: str, values: dict[str, object]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(values[m.group(1)]), template)


PYTHON_TEMPLATES = (
    """from dataclasses import dataclass, field


@dataclass
class {{Noun}}Stats:
    name: str
    count: int = 0
    total: float = 0.0
    samples: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.samples.append(value)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


stats = {{Noun}}Stats("{{noun}}")
for value in [{{numbers}}]:
    stats.add(value)
print(f"{stats.name}: n={stats.count} mean={stats.mean:.3f}")
""",
    """import numpy as np

rng = np.random.default_rng({{seed}})
{{noun}}s = rng.normal(size=({{rows}}, {{cols}}))
labels = rng.integers(0, {{groups}}, size={{rows}})


def {{verb}}_loop(values, labels):
    out = np.zeros({{groups}})
    for row, label in zip(values, labels):
        out[label] += row.sum()
    return out


def {{verb}}_vectorised(values, labels):
    return np.bincount(labels, weights=values.sum(axis=1), minlength={{groups}})


expected = {{verb}}_loop({{noun}}s, labels)
got = {{verb}}_vectorised({{noun}}s, labels)
assert np.allclose(expected, got)
print(got[:5].round(2))
print(f"{{{noun}}s.nbytes / 1e6:.1f} MB in, {got.nbytes} bytes out")
""",
    """import time
from functools import lru_cache


@lru_cache(maxsize={{size}})
def {{verb}}_{{noun}}(key: int) -> int:
    time.sleep(0.001)
    return key * {{mult}} % {{mod}}


def run(keys):
    started = time.perf_counter()
    total = sum({{verb}}_{{noun}}(k) for k in keys)
    elapsed = time.perf_counter() - started
    return total, elapsed


keys = [i % {{distinct}} for i in range({{count}})]
total, elapsed = run(keys)
info = {{verb}}_{{noun}}.cache_info()
print(f"total={total} hits={info.hits} misses={info.misses}")
print(f"{elapsed * 1000:.1f} ms for {len(keys)} calls")
""",
    '''from collections.abc import Iterable, Iterator


def read_{{noun}}s(lines: Iterable[str]) -> Iterator[dict]:
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        yield {"line": number, "key": key.strip(), "value": value.strip()}


def only_{{adj}}(records: Iterable[dict]) -> Iterator[dict]:
    return (r for r in records if r["value"] and r["key"] != "{{skip}}")


lines = """
# {{noun}} settings
{{settings}}
""".splitlines()

for record in only_{{adj}}(read_{{noun}}s(lines)):
    print(record["line"], record["key"], "->", record["value"])
''',
    """import ray

ray.init(num_cpus={{cpus}}, ignore_reinit_error=True)


@ray.remote
def {{verb}}_chunk(chunk):
    return sum(x * x for x in chunk)


@ray.remote
class {{Noun}}Counter:
    def __init__(self):
        self.seen = 0

    def add(self, n):
        self.seen += n
        return self.seen


data = list(range({{count}}))
chunks = [data[i : i + {{size}}] for i in range(0, len(data), {{size}})]
refs = [{{verb}}_chunk.remote(c) for c in chunks]
counter = {{Noun}}Counter.remote()
for size in map(len, chunks):
    counter.add.remote(size)
print(len(refs), "tasks,", ray.get(counter.add.remote(0)), "items")
print(sum(ray.get(refs)))
""",
    '''import functools
import random
import time


class {{Noun}}Error(RuntimeError):
    """Raised when a {{noun}} cannot be used yet."""


def retry(times: int = {{retries}}, delay: float = {{delay}}):
    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            for attempt in range(1, times + 1):
                try:
                    return func(*args, **kwargs)
                except {{Noun}}Error as exc:
                    print(f"attempt {attempt} of {times} failed: {exc}")
                    time.sleep(delay * attempt)
            raise {{Noun}}Error(f"{func.__name__}: gave up after {times} attempts")
        return wrapper
    return decorate


@retry()
def {{verb}}_{{noun}}(name: str) -> str:
    if random.random() < {{p}}:
        raise {{Noun}}Error(f"{name} is busy")
    return name.upper()
''',
    """import asyncio


async def fetch_{{noun}}(name: str, delay: float) -> str:
    await asyncio.sleep(delay)
    return f"{name}: done after {delay:.2f}s"


async def main() -> None:
    names = [{{names}}]
    tasks = [
        asyncio.create_task(fetch_{{noun}}(name, {{step}} * i))
        for i, name in enumerate(names)
    ]
    for finished in asyncio.as_completed(tasks):
        print(await finished)
    results = await asyncio.gather(*tasks)
    print(len(results), "results, first:", results[0])


asyncio.run(main())
""",
    """import json
from collections import Counter, defaultdict

events = [
{{events}}
]

by_kind = Counter(event["kind"] for event in events)
per_{{noun}} = defaultdict(list)
for event in events:
    per_{{noun}}[event["{{noun}}"]].append(event["ms"])

print(json.dumps(by_kind.most_common(3)))
for name, times in sorted(per_{{noun}}.items()):
    print(f"{name:>10}: {len(times)} events, worst {max(times)} ms")
""",
)

BASH_HEADERS = (
    "#!/usr/bin/env bash\nset -euo pipefail\n",
    "# run from the project root\nset -eu\n",
)
BASH_BLOCKS = (
    "python -m venv .venv\nsource .venv/bin/activate\npip install --upgrade pip\n"
    'pip install "numpy>=1.26" "ray[default]>=2.40"\n',
    'for n in 1 2 4 8; do\n  echo "workers=$n"\n'
    '  python bench.py --workers "$n" --size {{size}} | tee "results/run-$n.txt"\ndone\n',
    'mkdir -p results logs\nexport OMP_NUM_THREADS=1\nexport {{NOUN}}_DIR="$PWD/data"\n',
    'git fetch origin\ngit switch -c "{{noun}}-{{verb}}" origin/main\ngit log --oneline -n 5\n',
    'find data -name "*.parquet" -size +{{size}}k -print0 \\\n'
    "  | xargs -0 -n 8 python tools/{{verb}}_{{noun}}.py --out results/\n",
    "time python -m pytest -q -x tests/test_{{noun}}.py\n"
    "python -m cProfile -s cumtime {{verb}}.py > logs/profile.txt\nhead -n 30 logs/profile.txt\n",
    "ray start --head --num-cpus={{cpus}}\npython driver.py --{{noun}}s {{count}}\nray stop\n",
    "du -sh data/* | sort -h | tail -n 5\nwc -l logs/*.log\n"
    'grep -c "{{noun}} {{verb}}" logs/*.log || true\n',
    'curl -fsSL "https://example.org/{{noun}}.csv" -o data/{{noun}}.csv\n'
    "sha256sum data/{{noun}}.csv\ncolumn -s, -t < data/{{noun}}.csv | head\n",
)

OTHER_TEMPLATES = {
    "yaml": """# {{noun}} pipeline settings
name: {{noun}}-{{verb}}
version: {{major}}.{{minor}}
workers:
  count: {{cpus}}
  memory: {{memory}}Gi
  restart: on-failure
stages:
  - name: read
    input: data/{{noun}}s/*.parquet
    batch_size: {{size}}
  - name: {{verb}}
    parallel: true
    timeout: {{timeout}}s
  - name: write
    output: results/{{noun}}s/
    compress: zstd
logging:
  level: info
  format: "%(asctime)s %(levelname)s %(message)s"
""",
    "json": """{
  "name": "{{noun}}-{{verb}}",
  "version": "{{major}}.{{minor}}.0",
  "workers": {{cpus}},
  "batch_size": {{size}},
  "timeout_s": {{timeout}},
  "stages": [
    {"name": "read", "input": "data/{{noun}}s"},
    {"name": "{{verb}}", "parallel": true},
    {"name": "write", "output": "results/{{noun}}s"}
  ],
  "retry": {
    "attempts": {{retries}},
    "backoff": "exponential",
    "max_delay_s": {{timeout}}
  },
  "tags": ["{{tag1}}", "{{tag2}}"],
  "debug": false
}
""",
    "toml": """[project]
name = "{{noun}}-{{verb}}"
version = "{{major}}.{{minor}}.0"
requires-python = ">=3.11"
dependencies = [
    "numpy>=1.26",
    "ray>={{major}}.{{minor}}",
]

[tool.{{noun}}]
workers = {{cpus}}
batch_size = {{size}}
timeout = {{timeout}}
output = "results/{{noun}}s"

[tool.pytest.ini_options]
addopts = ["-q", "--strict-markers"]
testpaths = ["tests"]
""",
    "sql": """-- the {{adj}} {{noun}}s of the last {{days}} days
WITH recent AS (
    SELECT {{noun}}_id, kind, duration_ms, created_at
    FROM events
    WHERE created_at >= date('now', '-{{days}} days')
),
per_{{noun}} AS (
    SELECT {{noun}}_id,
           count(*) AS n,
           avg(duration_ms) AS mean_ms,
           max(duration_ms) AS worst_ms
    FROM recent
    GROUP BY {{noun}}_id
)
SELECT p.{{noun}}_id, p.n, round(p.mean_ms, 1) AS mean_ms, p.worst_ms
FROM per_{{noun}} AS p
JOIN {{noun}}s AS t ON t.id = p.{{noun}}_id
WHERE p.n >= {{count}}
ORDER BY p.worst_ms DESC
LIMIT {{size}};
""",
    "javascript": """// {{verb}} {{noun}}s in the browser, {{size}} at a time
const BATCH = {{size}};

async function {{verb}}{{Noun}}s(urls) {
  const results = [];
  for (let i = 0; i < urls.length; i += BATCH) {
    const batch = urls.slice(i, i + BATCH);
    const responses = await Promise.all(batch.map((url) => fetch(url)));
    for (const response of responses) {
      if (!response.ok) {
        throw new Error(`${response.url}: ${response.status}`);
      }
      results.push(await response.json());
    }
  }
  return results;
}

{{verb}}{{Noun}}s(["/api/{{noun}}s/1", "/api/{{noun}}s/2"])
  .then((items) => console.log(items.length, "{{noun}}s"))
  .catch((error) => console.error(error));
""",
    "rust": """use std::collections::HashMap;

#[derive(Debug, Clone)]
struct {{Noun}} {
    id: u32,
    weight: f64,
}

fn {{verb}}_{{noun}}s(items: &[{{Noun}}]) -> HashMap<u32, f64> {
    let mut totals = HashMap::new();
    for item in items {
        *totals.entry(item.id % {{groups}}).or_insert(0.0) += item.weight;
    }
    totals
}

fn main() {
    let items: Vec<{{Noun}}> = (0..{{count}})
        .map(|i| {{Noun}} { id: i, weight: f64::from(i) * 0.5 })
        .collect();
    let totals = {{verb}}_{{noun}}s(&items);
    println!("{} groups, {:?}", totals.len(), totals.get(&0));
}
""",
    "go": """package main

import (
	"fmt"
	"sync"
)

func {{verb}}{{Noun}}(id int, results chan<- int, wg *sync.WaitGroup) {
	defer wg.Done()
	results <- id * {{mult}} % {{mod}}
}

func main() {
	results := make(chan int, {{count}})
	var wg sync.WaitGroup
	for i := 0; i < {{count}}; i++ {
		wg.Add(1)
		go {{verb}}{{Noun}}(i, results, &wg)
	}
	wg.Wait()
	close(results)
	total := 0
	for r := range results {
		total += r
	}
	fmt.Println("total:", total)
}
""",
    "dockerfile": """FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY {{noun}}/ {{noun}}/
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    {{NOUN}}_WORKERS={{cpus}}
RUN useradd --create-home app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER app
WORKDIR /home/app
EXPOSE {{port}}
HEALTHCHECK CMD python -c "import {{noun}}" || exit 1
CMD ["python", "-m", "{{noun}}", "--port", "{{port}}"]
""",
}


class Coder:
    """Code fences of realistic size (15-30 lines), varied by the post's RNG."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def values(self) -> dict[str, object]:
        rng = self.rng
        noun = rng.choice(NOUNS)
        words = rng.sample(NOUNS, 6)
        return {
            "noun": noun,
            "Noun": noun.capitalize(),
            "NOUN": noun.upper(),
            "verb": rng.choice(VERBS),
            "adj": rng.choice(ADJECTIVES),
            "seed": rng.randint(0, 9999),
            "rows": rng.choice((1_000, 10_000, 100_000)),
            "cols": rng.choice((8, 16, 32, 64)),
            "groups": rng.randint(3, 12),
            "size": rng.choice((16, 32, 64, 128, 256, 512)),
            "mult": rng.randint(3, 97),
            "mod": rng.choice((101, 997, 1009, 65537)),
            "distinct": rng.randint(10, 200),
            "count": rng.choice((100, 500, 1_000, 5_000)),
            "cpus": rng.choice((2, 4, 8)),
            "retries": rng.randint(2, 6),
            "delay": rng.choice((0.05, 0.1, 0.25)),
            "p": rng.choice((0.1, 0.2, 0.3)),
            "step": rng.choice((0.01, 0.02, 0.05)),
            "major": rng.randint(1, 3),
            "minor": rng.randint(0, 40),
            "memory": rng.choice((2, 4, 8, 16)),
            "timeout": rng.choice((30, 60, 120, 300)),
            "days": rng.choice((7, 14, 30, 90)),
            "port": rng.choice((8000, 8080, 8265, 9000)),
            "tag1": rng.choice(TAGS),
            "tag2": rng.choice(TAGS),
            "skip": rng.choice(words),
            "numbers": ", ".join(f"{rng.uniform(0, 100):.1f}" for _ in range(rng.randint(4, 9))),
            "names": ", ".join(f'"{w}"' for w in words[: rng.randint(3, 6)]),
            "settings": "\n".join(
                f"{w} = {rng.choice(('on', 'off', '', str(rng.randint(1, 999))))}"
                for w in words[: rng.randint(3, 6)]
            ),
            "events": "\n".join(
                f'    {{"kind": "{rng.choice(VERBS)}", "{noun}": "{rng.choice(words)}", '
                f'"ms": {rng.randint(1, 900)}}},'
                for _ in range(rng.randint(4, 12))
            ),
        }

    def python(self, index: int, runnable: bool) -> str:
        code = _fill(PYTHON_TEMPLATES[index % len(PYTHON_TEMPLATES)], self.values())
        return ("" if runnable else "#| eval: false\n") + code

    def bash(self) -> str:
        values = self.values()
        lines = self.rng.choice(BASH_HEADERS)
        blocks = list(BASH_BLOCKS)
        self.rng.shuffle(blocks)
        for block in blocks:
            if lines.count("\n") >= 15:
                break
            lines += "\n" + _fill(block, values)
        return lines

    def other(self, language: str) -> str:
        return _fill(OTHER_TEMPLATES[language], self.values())


# ------------------------------------------------------------------------------- posts


@dataclass(frozen=True, slots=True)
class PostSpec:
    """One generated post, independent of either generator's file format."""

    index: int
    title: str
    slug: str
    date: datetime
    tags: tuple[str, ...]
    body: str  # Markdown, no front matter
    words: int  # prose words (code not counted)

    @property
    def raypress_name(self) -> str:
        return f"{self.date:%Y-%m-%d}-{self.slug}.md"


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def make_post(
    index: int, seed: int = DEFAULT_SEED, words: int = DEFAULT_WORDS, runnable: bool = False
) -> PostSpec:
    """Post ``index`` of the corpus for ``seed`` (independent of how many posts there are)."""
    rng = random.Random(f"raypress-bench:{seed}:{index}")
    topic = rng.choice(TOPICS)
    w = Writer(rng, topic)
    c = Coder(rng)
    title = rng.choice(
        (
            f"{_gerund(w.v()).capitalize()} {w.a()} {w.ns()} with {topic}",
            f"Why {w.ns()} are {w.a()} in {topic}",
            f"{topic} and the {w.a()} {w.n()}",
            f"Notes on {w.a()} {w.ns()}",
            f"A {w.a()} {w.n()} for {topic}",
        )
    )
    title = _articles(title[0].upper() + title[1:])
    slug = f"{_slugify(title)}-{index + 1}"
    when = NEWEST - timedelta(days=index, hours=rng.randint(0, 8), minutes=rng.randrange(0, 60, 5))
    tags = tuple(rng.sample(TAGS, rng.randint(2, 4)))

    python_templates = rng.sample(range(len(PYTHON_TEMPLATES)), 2)
    other = OTHER_LANGUAGES[rng.randrange(len(OTHER_LANGUAGES))]
    fences = [
        ("python", c.python(python_templates[0], runnable)),
        ("bash", c.bash()),
        ("python", c.python(python_templates[1], runnable)),
        (other, c.other(other)),
    ]
    rng.shuffle(fences[1:])  # the first section always opens with Python

    # Sections: intro, then one per fence, then a conclusion. Prose is added round-robin
    # to the sections until the post reaches its word budget.
    opener = f"{rng.choice(OPENERS)} {w.a()} {w.ns()} in {topic}. " + w.paragraph(3)
    sections: list[list[str]] = [[opener, "<!--more-->", w.paragraph()]]
    for number, (language, code) in enumerate(fences):
        section = [w.heading(2), w.paragraph(), f"```{language}\n{code}```"]
        if number == 1:
            section += [w.heading(3), w.bullets()]
        elif number == 2:
            section += [w.numbered()]
        elif number == 3 and rng.random() < 0.5:
            section += [w.quote()]
        section.append(w.paragraph())
        sections.append(section)
    sections.append(["## Wrapping up", w.paragraph(), w.bullets()])
    target = int(words * rng.uniform(0.92, 1.08))
    turn = 0
    while w.words + 60 < target:  # stop near the target, not one paragraph past it
        where = 1 + turn % (len(sections) - 1)
        sections[where].insert(-1, w.paragraph())
        turn += 1
    if w.links == 0:
        sections[-1].append(f"More in {w.link(f'the {topic} documentation')}.")
    body = "\n\n".join(block for section in sections for block in section) + "\n"
    return PostSpec(index, title, slug, when, tags, body, w.words)


def make_posts(
    count: int, seed: int = DEFAULT_SEED, words: int = DEFAULT_WORDS, runnable: bool = False
) -> list[PostSpec]:
    """Posts 0..count-1 (post 0 is the newest)."""
    return [make_post(i, seed, words, runnable) for i in range(count)]


# ----------------------------------------------------------------------------- writers


def _yaml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def raypress_text(post: PostSpec) -> str:
    tags = ", ".join(post.tags)
    return (
        "---\n"
        f"title: {_yaml_string(post.title)}\n"
        f"date: {post.date:%Y-%m-%d %H:%M:%S} +00:00\n"
        f"tags: [{tags}]\n"
        "---\n\n" + post.body
    )


def pelican_text(post: PostSpec) -> str:
    return (
        f"Title: {post.title}\n"
        f"Date: {post.date:%Y-%m-%d %H:%M}\n"
        f"Tags: {', '.join(post.tags)}\n"
        f"Slug: {post.slug}\n"
        "\n" + post.body.replace("<!--more-->\n\n", "")
    )


SITE_TOML = """# raypress benchmark corpus (generated by bench/corpus.py)
title = "raypress bench corpus"
description = "Generated posts for bench/bench_build.py."
author = "Bench Author"
url = "https://example.org"
"""

PELICANCONF = """# Pelican settings for the raypress benchmark corpus (written by bench/corpus.py).
# Comparable to raypress's output: posts, paginated index (10 per page), tag, category,
# author and archive pages, one local Atom feed; Markdown through python-markdown with
# codehilite (Pygments), the default theme. No blogroll, social or external feed links.
AUTHOR = "Bench Author"
SITENAME = "raypress bench corpus"
SITEURL = "https://example.org"
PATH = "content"
TIMEZONE = "UTC"
DEFAULT_LANG = "en"
RELATIVE_URLS = False
DELETE_OUTPUT_DIRECTORY = True
DEFAULT_PAGINATION = 10

FEED_ALL_ATOM = "feeds/all.atom.xml"
CATEGORY_FEED_ATOM = None
TRANSLATION_FEED_ATOM = None
AUTHOR_FEED_ATOM = None
AUTHOR_FEED_RSS = None
LINKS = ()
SOCIAL = ()

MARKDOWN = {
    "extension_configs": {
        "markdown.extensions.codehilite": {"css_class": "highlight"},
        "markdown.extensions.extra": {},
        "markdown.extensions.meta": {},
    },
    "output_format": "html5",
}
"""


@dataclass(frozen=True, slots=True)
class Corpus:
    root: Path
    posts: tuple[PostSpec, ...]

    @property
    def raypress_root(self) -> Path:
        return self.root / "raypress"

    @property
    def pelican_root(self) -> Path:
        return self.root / "pelican"

    def raypress_post(self, index: int) -> Path:
        return self.raypress_root / "posts" / self.posts[index].raypress_name

    @property
    def words(self) -> int:
        return sum(p.words for p in self.posts)

    @property
    def raypress_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.raypress_root / "posts").iterdir())


def write_raypress(posts: list[PostSpec], root: Path, templates: Path = TEMPLATES) -> None:
    """A raypress project: site.toml, templates/ (copied), posts/."""
    folder = root / "posts"
    folder.mkdir(parents=True)
    (root / "site.toml").write_text(SITE_TOML, encoding="utf-8")
    shutil.copytree(templates, root / "templates")
    for post in posts:
        (folder / post.raypress_name).write_text(raypress_text(post), encoding="utf-8")


def write_pelican(posts: list[PostSpec], root: Path) -> None:
    """A Pelican project: pelicanconf.py and content/*.md."""
    folder = root / "content"
    folder.mkdir(parents=True)
    (root / "pelicanconf.py").write_text(PELICANCONF, encoding="utf-8")
    for post in posts:
        (folder / f"{post.slug}.md").write_text(pelican_text(post), encoding="utf-8")


def write_corpus(
    out: Path,
    count: int,
    seed: int = DEFAULT_SEED,
    words: int = DEFAULT_WORDS,
    runnable: bool = False,
    pelican: bool = True,
) -> Corpus:
    """(Re)create ``out`` holding the corpus in both layouts; returns what was written."""
    out = out.resolve()
    if out.exists():
        shutil.rmtree(out)
    posts = make_posts(count, seed, words, runnable)
    write_raypress(posts, out / "raypress")
    if pelican:
        write_pelican(posts, out / "pelican")
    return Corpus(out, tuple(posts))


def edit_post(path: Path, revision: int) -> None:
    """Edit one post's prose the way an author would: a sentence added to a paragraph
    in the middle of the body (not the excerpt); ``revision`` makes each edit distinct."""
    text = path.read_text(encoding="utf-8")
    blocks = text.split("\n\n")
    prose = [
        i
        for i, block in enumerate(blocks)
        if block[:1].isalpha()
        and block.endswith(".")
        and "\n" not in block
        and len(block) > 200
        and i > len(blocks) // 3
    ]
    where = prose[len(prose) // 2]
    blocks[where] += f" Edit {revision}: I measured this again and the numbers held up."
    path.write_text("\n\n".join(blocks), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to (re)create")
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--words", type=int, default=DEFAULT_WORDS, help="prose words per post")
    parser.add_argument(
        "--runnable", action="store_true", help="leave out '#| eval: false' in Python fences"
    )
    args = parser.parse_args(argv)
    corpus = write_corpus(args.out, args.posts, args.seed, args.words, args.runnable)
    print(
        f"{len(corpus.posts)} posts, {corpus.words / len(corpus.posts):.0f} prose words each "
        f"on average, {corpus.raypress_bytes / 1e6:.1f} MB: {corpus.raypress_root} "
        f"and {corpus.pelican_root}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
