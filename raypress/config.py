"""Site configuration: one frozen Config, read from ``site.toml`` or ``[tool.raypress]``.

Every option has a default, so an empty (or missing) configuration builds. Command-line
flags override the file through :func:`load_config`'s keyword arguments.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from raypress.errors import SourceError

PERMALINK_STYLES = {  # Jekyll's
    "pretty": "/:categories/:year/:month/:day/:title/",
    "date": "/:categories/:year/:month/:day/:title:output_ext",
    "ordinal": "/:categories/:year/:y_day/:title:output_ext",
    "none": "/:categories/:title:output_ext",
}


EXECUTORS = ("local", "ray")  # where sessions run (the `executor` key)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a build needs to know besides the posts themselves."""

    root: Path = Path()
    title: str = "My raypress blog"
    description: str = ""
    author: str = ""
    url: str = ""  # e.g. "https://example.org", no trailing slash
    baseurl: str = ""  # e.g. "/blog" for a site served under a sub-path
    language: str = "en"
    timezone: str = "UTC"
    posts_dir: str = "posts"
    templates_dir: str = "templates"
    static_dir: str = "static"
    output_dir: str = "_site"
    cache_dir: str = ".raypress-cache"
    snippets_dir: str = "snippets"  # frozen results of the posts' snippets (committed)
    permalink: str = "pretty"
    posts_per_page: int = 10
    feed_entries: int = 20
    excerpt_separator: str = "<!--more-->"
    toc_min_headings: int = 3
    words_per_minute: int = 200
    markdown_html: bool = True  # raw HTML in posts (the author is trusted)
    typography: bool = True  # kramdown's: --- em dash, -- en dash, ... ellipsis, smart quotes
    relative_urls: bool = False  # every internal link relative: the site opens from disk
    pygments_style: str = "default"
    pygments_dark_style: str = "github-dark"
    max_post_bytes: int = 2_000_000
    render_timeout: int = 10  # seconds a big post's Markdown may take before it is refused
    drafts: bool = False
    future: bool = False
    jobs: int = 0  # 0: one per CPU
    # Execution of snippets
    execute: bool = True  # False (--no-exec): show code, run nothing
    snippet_timeout: int = 300  # seconds, unless a snippet or post says otherwise
    post_timeout: int = 0  # seconds for a whole post; 0: no limit beyond the snippets'
    memory_limit_mb: int = 4096  # per session (its own growth; Ray tasks are separate)
    output_cap_bytes: int = 100_000  # per snippet and stream; the rest is cut with a note
    post_output_cap_bytes: int = 5_000_000  # all a post shows: outputs, values, figures
    ray_address: str = ""  # an existing cluster ("" : RAY_ADDRESS, else one per post)
    executor: str = "local"  # where sessions run: "local", or "ray" (on a cluster's nodes)
    ray_num_cpus: int = 0  # CPUs of a post whose ray.init names none; 0: Ray's (the cores)
    ray_start_timeout: int = 120  # seconds a cluster's start may take, retries included
    check_slowdown: float = 3.0  # `check` warns when a snippet is this many times slower
    # Rich output
    figure_format: str = "png"  # matplotlib figures: png (2x), webp (2x, lossless) or svg
    trust_html_output: bool = False  # show snippets' HTML raw, scripts included (plotly...)
    repository_url: str = ""  # e.g. https://github.com/me/blog: Colab and Binder links
    repository_branch: str = "main"  # the branch those links open
    # Reading and sharing
    output_lines: int = 30  # outputs longer than this are folded ("show all"); 0: never
    image: str = ""  # default social-card image (site path or URL); "": the theme's icon
    twitter_site: str = ""  # the site's @account on X/Twitter, for twitter:site
    search: bool = True  # a Pagefind full-text index and the search page
    search_shard_size: int = 200  # posts per shard of the index (an edit re-indexes one)
    related_posts: int = 3  # posts sharing tags listed at the end of a post; 0: none

    @property
    def posts_path(self) -> Path:
        return self.root / self.posts_dir

    @property
    def templates_path(self) -> Path:
        return self.root / self.templates_dir

    @property
    def static_path(self) -> Path:
        return self.root / self.static_dir

    @property
    def output_path(self) -> Path:
        return self.root / self.output_dir

    @property
    def cache_path(self) -> Path:
        return self.root / self.cache_dir

    @property
    def snippets_path(self) -> Path:
        return self.root / self.snippets_dir

    @property
    def permalink_pattern(self) -> str:
        return PERMALINK_STYLES.get(self.permalink, self.permalink)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_FILE_KEYS = set(_FIELDS) - {"root", "drafts", "future"}


def load_config(root: Path, config_file: Path | None = None, **overrides: Any) -> Config:
    """Read the site configuration for the project at ``root``.

    Looks for ``site.toml`` first, then ``[tool.raypress]`` in ``pyproject.toml``;
    ``overrides`` (from the command line; None values ignored) win over both.
    Raises SourceError naming the file for unknown keys or values of the wrong type.
    """
    root = root.resolve()
    values: dict[str, Any] = {}
    source = _find_config_file(root, config_file)
    if source is not None:
        values = _read_table(source, root)
    given = {k: v for k, v in overrides.items() if v is not None}
    _check_ranges(given, "command line")
    _check_ranges(values, _display(source, root) if source else "command line")
    _check_executor(values, _display(source, root) if source else "command line")
    values.update(given)
    config = Config(root=root, **values)
    _check_values(config, _display(source, root) if source else "command line")
    return config


def _find_config_file(root: Path, config_file: Path | None) -> Path | None:
    if config_file is not None:
        return config_file if config_file.is_absolute() else root / config_file
    for candidate in (root / "site.toml", root / "pyproject.toml"):
        if candidate.is_file():
            return candidate
    return None


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def _read_table(path: Path, root: Path) -> dict[str, Any]:
    name = _display(path, root)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceError(name, None, "configuration file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(name, _toml_line(exc), f"invalid TOML: {exc}") from None
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("raypress", {})
        name += " [tool.raypress]"
    if not isinstance(data, dict):
        raise SourceError(name, None, "the raypress configuration must be a table")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _FILE_KEYS:
            known = ", ".join(sorted(_FILE_KEYS))
            raise SourceError(name, None, f"unknown option {key!r}", f"known options: {known}")
        expected = _FIELDS[key].type
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
        }[str(expected)]
        if not ok:
            raise SourceError(name, None, f"option {key!r} must be {expected}, not {value!r}")
        values[key] = value
    return values


def _toml_line(exc: Exception) -> int | None:
    """The line of a TOML error: ``lineno`` from Python 3.14, else from the message."""
    line = getattr(exc, "lineno", None)
    if line is None:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(found.group(1)) if found else None
    return line


def _check_executor(values: dict[str, Any], name: str) -> None:
    if values.get("executor", "local") not in EXECUTORS:
        raise SourceError(
            name,
            None,
            f"executor must be one of {', '.join(EXECUTORS)}, not {values['executor']!r}",
        )


# Allowed ranges of numeric options: (least, most, what it means). Out of range is an
# error naming the option; nothing is silently clamped, and no value may turn a limit off.
_WEEK = 7 * 24 * 3600
RANGES: dict[str, tuple[int | float, int | float, str]] = {
    "snippet_timeout": (1, _WEEK, "seconds"),
    "post_timeout": (0, _WEEK, "seconds, 0 for no limit beyond the snippets'"),
    "render_timeout": (1, 3600, "seconds"),
    "memory_limit_mb": (64, 1 << 20, "megabytes (64 MB to 1 TB)"),
    "output_cap_bytes": (1_000, 1 << 30, "bytes"),
    "post_output_cap_bytes": (1_000, 1 << 32, "bytes"),
    "jobs": (0, 1024, "workers, 0 for one per CPU"),
    "ray_num_cpus": (0, 1 << 16, "logical CPUs, 0 for Ray's default (the cores)"),
    "ray_start_timeout": (1, 3600, "seconds"),
    "max_post_bytes": (1, 1 << 31, "bytes"),
    "posts_per_page": (1, 100_000, "posts"),
    "feed_entries": (1, 100_000, "posts"),
    "toc_min_headings": (0, 1000, "headings"),
    "words_per_minute": (1, 100_000, "words"),
    "output_lines": (0, 1_000_000, "lines, 0 never to fold"),
    "related_posts": (0, 1000, "posts, 0 for none"),
    "search_shard_size": (1, 1_000_000, "posts"),
}
_FLAGS = {"snippet_timeout": "--timeout", "jobs": "--jobs"}


def _check_ranges(values: dict[str, Any], name: str) -> None:
    """Numeric options must lie in their range; one clear line for the first that does not."""
    for key, (least, most, unit) in RANGES.items():
        value = values.get(key)
        if value is None or isinstance(value, bool):
            continue
        if not isinstance(value, int | float) or value != value or not least <= value <= most:
            flag = f" ({_FLAGS[key]})" if name == "command line" and key in _FLAGS else ""
            raise SourceError(
                name, None, f"{key}{flag} must be {least} to {most:,} {unit}, not {value!r}"
            )


def _check_values(config: Config, name: str) -> None:
    if config.url.endswith("/"):
        raise SourceError(name, None, f"url {config.url!r} must not end with '/'")
    if config.baseurl and (not config.baseurl.startswith("/") or config.baseurl.endswith("/")):
        raise SourceError(
            name, None, f"baseurl {config.baseurl!r} must look like '/blog'", "or be empty"
        )
    if config.figure_format not in ("png", "svg", "webp"):
        raise SourceError(
            name, None, f"figure_format must be png, svg or webp, not {config.figure_format!r}"
        )
    if config.repository_url and not re.match(
        r"^https://github\.com/[\w.-]+/[\w.-]+$", config.repository_url
    ):
        raise SourceError(
            name,
            None,
            f"repository_url {config.repository_url!r} must look like https://github.com/OWNER/REPO",
            "Colab and Binder open notebooks from GitHub",
        )
    if config.post_output_cap_bytes < config.output_cap_bytes:
        raise SourceError(
            name,
            None,
            f"post_output_cap_bytes ({config.post_output_cap_bytes:,}) must be at least "
            f"output_cap_bytes ({config.output_cap_bytes:,})",
        )
    if not 1 < config.check_slowdown <= 1e6:
        raise SourceError(name, None, "check_slowdown must be more than 1 (a factor)")
    others = {config.posts_dir, config.templates_dir, config.static_dir, config.output_dir}
    snippets = config.snippets_dir.strip("/")
    if snippets in ("", ".") or snippets in {o.strip("/") for o in others}:
        raise SourceError(
            name,
            None,
            f"snippets_dir {config.snippets_dir!r} must be a folder of its own",
            "the default is 'snippets'",
        )
    if not config.permalink_pattern.startswith("/"):
        raise SourceError(
            name,
            None,
            f"permalink {config.permalink!r} must start with '/'",
            f"or be one of {', '.join(PERMALINK_STYLES)}",
        )
    try:
        config.zone  # noqa: B018 - validates the time zone name
    except (ZoneInfoNotFoundError, ValueError):
        raise SourceError(name, None, f"unknown timezone {config.timezone!r}") from None
