"""Snippets: the runnable Python fences of a post, and their `#|` options.

A fence whose info string names Python (``python``, ``py``, ``python3``) becomes a
:class:`Snippet`. Options follow Quarto's convention: YAML in ``#|`` comment lines at
the top of the fence. They keep the fence valid Python and are stripped from the
displayed source.
"""

from __future__ import annotations

import functools
from typing import Any

from raypress.errors import SourceError
from raypress.execution.model import COMPARE_MODES, FIGURE_FORMATS, SnippetOptions
from raypress.publish.front_matter import bad_scalar, safe_load, yaml_error_place

PYTHON_LANGUAGES = frozenset({"python", "py", "python3"})
OPTION_PREFIX = "#|"


_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "label": (str,),
    "eval": (bool,),
    "echo": (bool,),
    "output": (bool,),
    "error": (bool,),
    "timeout": (int, float),
    "repeat": (int,),
    "deps": (list, str),
    "compare": (str,),
    # display options, named as Quarto names them
    "code-fold": (bool, str),
    "code-summary": (str,),
    "output-lines": (int, bool),
}
# Figure options, with Quarto's names (``fig-cap``) for SnippetOptions fields (``fig_cap``)
_FIGURE_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "fig-cap": (str, list),  # a list: one per figure
    "fig-alt": (str, list),
    "fig-format": (str,),
    "fig-dpi": (int,),
}
_OPTION_TYPES.update(_FIGURE_OPTION_TYPES)


MAX_TIMEOUT_S = 7 * 24 * 3600  # a week: larger values overflow the clocks that enforce them
MAX_REPEAT = 10_000


def is_python(language: str) -> bool:
    """True for the fence languages that raypress runs."""
    return language.lower() in PYTHON_LANGUAGES


def split_options(code: str) -> tuple[list[str], str]:
    """Split the leading ``#|`` lines of a fence from the code that follows them."""
    lines = code.splitlines(keepends=True)
    option_lines: list[str] = []
    for line in lines:
        if not line.lstrip().startswith(OPTION_PREFIX):
            break
        option_lines.append(line.lstrip()[len(OPTION_PREFIX) :])
    return option_lines, "".join(lines[len(option_lines) :])


@functools.lru_cache(maxsize=256)
def _load_yaml(text: str) -> Any:
    """``yaml.safe_load``, once per distinct option text (most fences repeat a few, such as
    ``eval: false``); the result is only read, never changed."""
    return safe_load(text)


def parse_options(option_lines: list[str], path: str, first_line: int) -> SnippetOptions:
    """Parse ``#|`` option lines (already stripped of the prefix) into SnippetOptions.

    ``first_line`` is the post line of the first option line; errors name it.
    Raises SourceError for invalid YAML, unknown keys and values of the wrong type.
    """
    if not option_lines:
        return SnippetOptions()
    text = "".join(line if line.endswith("\n") else line + "\n" for line in option_lines)
    import yaml  # here: the command line starts the engine before YAML is imported

    try:
        data = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark, problem = yaml_error_place(exc, text)
        line = first_line + min(mark.line if mark is not None else 0, len(option_lines) - 1)
        raise SourceError(
            path,
            line,
            f"snippet options are not valid YAML ({problem})",
            "write options as `#| key: value`, one per line",
        ) from None
    except (ValueError, OverflowError) as exc:  # a timestamp that is no date: 2024-13-45
        offset, value = bad_scalar(text)
        raise SourceError(
            path,
            first_line + offset,
            f"snippet option value {value!r} is invalid ({exc})",
            "quote the value: `#| label: '2024-13-45'`",
        ) from None
    if data is None:
        return SnippetOptions()
    if not isinstance(data, dict):
        raise SourceError(
            path, first_line, "snippet options must be `key: value` pairs", "e.g. `#| eval: false`"
        )
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}  # the post line of each option, for errors
    for key, value in data.items():
        line = lines[str(key)] = first_line + _line_of_key(option_lines, str(key))
        expected = _OPTION_TYPES.get(str(key))
        if expected is None:
            known = ", ".join(sorted(_OPTION_TYPES))
            raise SourceError(
                path, line, f"unknown snippet option {key!r}", f"known options: {known}"
            )
        wrong_bool = isinstance(value, bool) and bool not in expected
        if wrong_bool or not isinstance(value, expected):
            names = " or ".join(t.__name__ for t in expected)
            raise SourceError(
                path, line, f"snippet option {key!r} must be {names}, not {value!r}", None
            )
        values[str(key).replace("-", "_")] = value
        lines[str(key).replace("-", "_")] = line
    return _validated(values, path, lines)


def _validated(values: dict[str, Any], path: str, lines: dict[str, int]) -> SnippetOptions:
    """Check option values; ``lines`` gives the post line of each option for errors."""
    if "deps" in values:
        deps = values["deps"]
        deps = [deps] if isinstance(deps, str) else deps
        if not all(isinstance(d, str) for d in deps):
            raise SourceError(
                path, lines["deps"], "snippet option 'deps' must list file names", None
            )
        values["deps"] = tuple(deps)
    timeout = values.get("timeout")
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT_S:  # NaN fails this too
        raise SourceError(
            path,
            lines["timeout"],
            f"snippet option 'timeout' must be positive seconds (at most {MAX_TIMEOUT_S:,}), "
            f"not {timeout!r}",
            None,
        )
    if "compare" in values and values["compare"] not in COMPARE_MODES:
        raise SourceError(
            path,
            lines["compare"],
            f"snippet option 'compare' must be one of {', '.join(COMPARE_MODES)}, "
            f"not {values['compare']!r}",
            "loose: numbers and spacing may vary; none: the output is not compared",
        )
    for key in ("fig_cap", "fig_alt"):
        if isinstance(values.get(key), list):
            if not all(isinstance(v, str) for v in values[key]):
                raise SourceError(
                    path, lines[key], f"snippet option {key.replace('_', '-')!r} must be text", None
                )
            values[key] = tuple(values[key])
    if "fig_format" in values and values["fig_format"] not in FIGURE_FORMATS:
        raise SourceError(
            path,
            lines["fig_format"],
            f"snippet option 'fig-format' must be one of {', '.join(FIGURE_FORMATS)}, "
            f"not {values['fig_format']!r}",
            "png and webp are saved at twice the resolution; svg is vector output",
        )
    if "fig_dpi" in values and not 10 <= values["fig_dpi"] <= 1000:
        raise SourceError(
            path, lines["fig_dpi"], "snippet option 'fig-dpi' must be between 10 and 1000", None
        )
    if "repeat" in values and not 1 <= values["repeat"] <= MAX_REPEAT:
        raise SourceError(
            path,
            lines["repeat"],
            f"snippet option 'repeat' must be at least 1 (and at most {MAX_REPEAT:,})",
            None,
        )
    _validate_display(values, path, lines)
    return SnippetOptions(**values)


def code_fold_default(value: Any, path: str, line: int) -> bool | str:
    """A post's ``code-fold:`` front matter (the default of its snippets), checked."""
    return _code_fold(value, path, line, "'code-fold'")


def _code_fold(value: Any, path: str, line: int, name: str) -> bool | str:
    if value is True or value is False or value == "show":
        return value
    raise SourceError(
        path,
        line,
        f"{name} must be true, false or show, not {value!r}",
        "true: the code is folded away; show: folded, but open",
    )


def _validate_display(values: dict[str, Any], path: str, lines: dict[str, int]) -> None:
    """``code-fold: true|false|show`` and ``output-lines: N|false`` (Quarto's spellings)."""
    if "code_fold" in values:
        _code_fold(values["code_fold"], path, lines["code_fold"], "snippet option 'code-fold'")
    if "output_lines" in values:
        limit = values["output_lines"]
        if limit is True or limit < 0:
            raise SourceError(
                path,
                lines["output_lines"],
                f"snippet option 'output-lines' must be a number of lines or false, not {limit!r}",
                "longer outputs are folded after that many lines; false never folds",
            )
        values["output_lines"] = int(limit)  # false: 0, never fold


def _line_of_key(option_lines: list[str], key: str) -> int:
    for offset, line in enumerate(option_lines):
        if line.strip().startswith(f"{key}:") or line.strip().startswith(f"{key} :"):
            return offset
    return 0
