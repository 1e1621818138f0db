"""raypress beside its peers on the shared yardstick, in one run: the table of issue 13.

Run by ``bench/bench_peers.sh``, which finds the yardstick (``../shared/bench/``) and the
Python with raypress. This script runs the yardstick's ``bench_peers.py`` once per tool
(raypress, Pelican, MkDocs + markdown-exec, MyST-NB, Hugo: each if it is installed) on
the same corpora, then measures what the yardstick has no scenario for, on the projects
it left behind: one prose edit in the 1,000-post site (each tool's build command, a
different post each time), ``raypress check`` against pytest-markdown-docs on the
executed posts, and the peak memory of a 1,000-post cold build summed over all of
raypress's processes. It prints a Markdown table (medians; raypress's CPU time beside its
wall time) and the command, machine and load averages to quote with it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ROWS = [  # (label, scenario or measurement)
    ("200 posts, render only, cold", "render200"),
    ("1,000 posts, render only, cold", "render1000"),
    ("1,000 posts, nothing changed", "render1000_rebuild"),
    ("1,000 posts, one prose edit", "edit1000"),
    ("20 posts × 4 NumPy snippets, cold", "exec_cold"),
    ("20 executed posts, nothing changed", "exec_rebuild"),
    ("`check` of the 20 × 4 snippets", "check20"),
    ("1 post, `print(1)`", "trivial1"),
    ("same post, no snippet", "empty1"),
    ("peak memory, 1,000 posts cold (all processes)", "rss1000"),
]
COLUMNS = [  # (tool, heading, scenarios it is run on)
    ("raypress", "raypress", ["render200", "render1000", "render1000_rebuild", "exec_cold",
                              "exec_rebuild", "trivial1", "empty1"]),
    # the same without the search index: Hugo and the others index nothing for search
    ("raypress-nosearch", "raypress, `search = false`", ["render200", "render1000",
                                                          "render1000_rebuild"]),
    ("hugo", "Hugo (Go)", ["render200", "render1000", "render1000_rebuild"]),
    ("pelican", "Pelican", ["render200", "render1000", "render1000_rebuild", "trivial1",
                            "empty1"]),
    ("mkdocs", "MkDocs + markdown-exec", ["render200", "render1000", "render1000_rebuild",
                                          "exec_cold", "exec_rebuild", "trivial1", "empty1"]),
    ("mystnb", "MyST-NB", ["render200", "exec_cold", "exec_rebuild", "trivial1", "empty1"]),
]  # fmt: skip
QUICK = {"render200", "trivial1", "empty1"}
SITE_TOML = 'posts_dir = "content"\\noutput_dir = "site"\\n'
SITE_TOML_NO_SEARCH = SITE_TOML + "search = false\\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--yardstick", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--venv-root", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="200-post and start-up rows only")
    parser.add_argument("--tool", action="append", help="only these columns (repeatable)")
    parser.add_argument("--wait-quiet", type=int, default=90, help="see bench_peers.py")
    options = parser.parse_args()
    yardstick = _load(options.yardstick / "bench_peers.py")
    options.work.mkdir(parents=True, exist_ok=True)
    results_path = options.work / "peers.jsonl"
    results_path.unlink(missing_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    loads = [_load_average()]
    raypress = f"{shlex.quote(sys.executable)} -m raypress"
    runners = _runners(options, raypress)
    cells: dict[tuple[str, str], str] = {}
    for tool, _, scenarios in COLUMNS:
        if options.tool and tool not in options.tool:
            continue
        wanted = [s for s in scenarios if not options.quick or s in QUICK]
        runner = runners.get(tool)
        if runner is None or not wanted:
            continue
        command = [
            sys.executable,
            str(options.yardstick / "bench_peers.py"),
            *runner,
            "--repeat",
            str(options.repeat),
            "--venv-root",
            str(options.venv_root),
            "--work",
            str(options.work),
            "--results",
            str(results_path),
            "--logs",
            str(options.work / "logs"),
            "--wait-quiet",
            str(options.wait_quiet),
        ]
        for scenario in wanted:
            command += ["--scenario", scenario]
        print("$", shlex.join(command), flush=True)
        subprocess.run(command, check=False)
        loads.append(_load_average())
    for line in results_path.read_text().splitlines() if results_path.exists() else []:
        record = json.loads(line)
        if record.get("ok") and record.get("median_s") is not None:
            ours = record["tool"].startswith("raypress")
            cpu = f" (CPU {record['cpu_s_median']:.2f} s)" if ours else ""
            cells[(record["tool"], record["scenario"])] = f"{record['median_s']:.2f} s{cpu}"
            if record["scenario"] == "render1000" and not ours:
                cells[(record["tool"], "rss1000")] = (
                    f"{record['max_rss_mb']:.0f} MB (largest process)"
                )
    if not options.quick:
        tools = yardstick_tools(yardstick, options, raypress)
        for tool, _, _ in COLUMNS:
            if tool in tools and (options.work / tool / "render1000_rebuild").is_dir():
                cells[(tool, "edit1000")] = _edits(yardstick, tools[tool], options)
        if "raypress" in tools:
            cells[("raypress", "rss1000")] = _tree_peak(yardstick, tools["raypress"], options)
            cells[("raypress", "check20")] = _check(yardstick, options, raypress)
            pmd = _pytest_markdown_docs(yardstick, options)
            if pmd:
                cells[("pmd", "check20")] = pmd
        loads.append(_load_average())
    _print_table(cells, options, started, loads)
    return 0


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_peers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runners(options: argparse.Namespace, raypress: str) -> dict[str, list[str]]:
    """bench_peers.py arguments for each tool that is installed."""
    runners = {
        "raypress": [
            "--tool", "custom", "--custom-name", "raypress", "--custom-format", "raypress",
            "--custom-cmd", f"test -f site.toml || printf '{SITE_TOML}' > site.toml; "
            f"{raypress} build --quiet",
            "--custom-clean", ".raypress-cache", "--custom-clean", "snippets",
        ],
        "raypress-nosearch": [
            "--tool", "custom", "--custom-name", "raypress-nosearch",
            "--custom-format", "raypress",
            "--custom-cmd", f"test -f site.toml || printf '{SITE_TOML_NO_SEARCH}' > site.toml; "
            f"{raypress} build --quiet",
            "--custom-clean", ".raypress-cache", "--custom-clean", "snippets",
        ],
    }  # fmt: skip
    for tool in ("pelican", "mkdocs", "mystnb"):
        if (options.venv_root / f"venv-{tool}").is_dir():
            runners[tool] = ["--tool", tool]
    if shutil.which("hugo"):
        hugo = options.yardstick / "hugo_site.sh"
        runners["hugo"] = ["--tool", "custom", "--custom-name", "hugo", "--custom-format", "md",
                           "--custom-cmd", f"bash {shlex.quote(str(hugo))}"]  # fmt: skip
    return runners


def yardstick_tools(yardstick: ModuleType, options: argparse.Namespace, raypress: str) -> dict:
    """The yardstick's Tool objects (commands, content folders) for the tools installed."""
    tools = {}
    for name, arguments in _runners(options, raypress).items():
        namespace = argparse.Namespace(
            venv_root=str(options.venv_root), work=str(options.work), custom_cmd=None,
            custom_format="md", custom_name=name, custom_clean=[], custom_version="",
        )  # fmt: skip
        if arguments[1] == "custom":
            namespace.custom_cmd = arguments[arguments.index("--custom-cmd") + 1]
            namespace.custom_format = arguments[arguments.index("--custom-format") + 1]
            namespace.custom_clean = [
                arguments[i + 1] for i, a in enumerate(arguments) if a == "--custom-clean"
            ]
            tools[name] = yardstick.Custom(namespace)
        else:
            tools[name] = yardstick.TOOLS[name](namespace)
    return tools


def _edits(yardstick: ModuleType, tool: Any, options: argparse.Namespace) -> str:
    """Median wall time of the tool's build after one prose edit, a different post each
    time, on the primed 1,000-post project bench_peers.py left."""
    project = str(options.work / tool.name / "render1000_rebuild")
    command, env = tool.cmd(project, "render1000_rebuild"), tool.env()
    log = options.work / "logs" / f"{tool.name}-edit.log"
    walls, cpus = [], []
    for number in range(options.repeat):
        post = Path(tool.content_dir(project)) / f"extra-{500 + number:04d}.md"
        with post.open("a", encoding="utf-8") as handle:
            handle.write(f"\nOne more sentence, written by edit {number + 1}.\n")
        if options.wait_quiet:
            yardstick.wait_quiet(options.wait_quiet)
        run = yardstick.timed(command, project, env, str(log), 600)
        if run["rc"] not in tool.ok_rc:
            return f"failed (see {log})"
        walls.append(run["wall"])
        cpus.append(run["cpu_s"] or 0)
    ours = tool.name.startswith("raypress")
    cpu = f" (CPU {statistics.median(cpus):.2f} s)" if ours else ""
    return f"{statistics.median(walls):.2f} s{cpu}"


def _tree_peak(yardstick: ModuleType, tool: Any, options: argparse.Namespace) -> str:
    """The peak, during a cold build of the 1,000-post project, of the memory raypress and
    every process it started hold together: their proportional set sizes (Pss: a page
    shared by n processes counts 1/n in each) summed, sampled every 10 ms from /proc."""
    project = options.work / tool.name / "render1000"
    if not project.is_dir():
        return "—"
    tool.clean_cold(str(project))
    process = subprocess.Popen(["bash", "-c", tool.args.custom_cmd], cwd=project, env=tool.env())
    peak, most = 0, 0
    while process.poll() is None:
        sizes = _tree_pss(process.pid)
        peak, most = max(peak, sum(sizes)), max(most, len(sizes))
        time.sleep(0.01)
    return f"{peak / 1024:.0f} MB ({most} processes)" if process.returncode == 0 else "failed"


def _tree_pss(root: int) -> list[int]:
    """Pss (kB) of ``root`` and each of its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):  # noqa: PTH208 - names only, fast
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    family = {root}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                changed = True
    sizes = []
    for pid in family:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    sizes.append(int(line.split()[1]))
        except OSError:
            continue
    return sizes


def _check(yardstick: ModuleType, options: argparse.Namespace, raypress: str) -> str:
    """``raypress check`` (every snippet run afresh, compared with its record) on the
    executed project bench_peers.py left with its records."""
    project = options.work / "raypress" / "exec_rebuild"
    if not (project / "snippets").is_dir():
        return "—"
    walls = []
    for _ in range(options.repeat):
        if options.wait_quiet:
            yardstick.wait_quiet(options.wait_quiet)
        run = yardstick.timed(
            ["bash", "-c", f"{raypress} check --quiet"],
            str(project),
            dict(os.environ),
            str(options.work / "logs" / "check.log"),
            600,
        )
        if run["rc"] != 0:
            return f"failed (see {options.work / 'logs' / 'check.log'})"
        walls.append(run["wall"])
    return f"{statistics.median(walls):.2f} s"


def _pytest_markdown_docs(yardstick: ModuleType, options: argparse.Namespace) -> str | None:
    """pytest-markdown-docs running the same 20 × 4 snippets in-process, if its venv
    ($VENV_ROOT/venv-pmd) exists."""
    venv = options.venv_root / "venv-pmd"
    if not (venv / "bin" / "pytest").exists():
        return None
    folder = options.work / "pmd"
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([sys.executable, str(options.yardstick / "make_corpus.py"), str(folder / "docs"),
                    "--format", "md", "--posts", "20", "--snippets", "4", "--extra", "0"],
                   check=True, capture_output=True)  # fmt: skip
    command = [str(venv / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "--markdown-docs",
               "docs"]  # fmt: skip
    walls = []
    for _ in range(options.repeat):
        if options.wait_quiet:
            yardstick.wait_quiet(options.wait_quiet)
        run = yardstick.timed(command, str(folder), dict(os.environ),
                              str(options.work / "logs" / "pmd.log"), 600)  # fmt: skip
        walls.append(run["wall"])
    return f"{statistics.median(walls):.2f} s (exit {run['rc']})"


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _print_table(
    cells: dict[tuple[str, str], str], options: argparse.Namespace, started: str, loads: list
) -> None:
    columns = [(tool, heading) for tool, heading, _ in COLUMNS]
    if any(tool == "pmd" for tool, _ in cells):
        columns.append(("pmd", "pytest-markdown-docs"))
    print()
    print(f"Measured {started} on {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"median of {options.repeat}; load average (1, 5, 15 min) at the start and after "
          f"each tool: {' | '.join(loads)}.")  # fmt: skip
    print("Command: `bash bench/bench_peers.sh" + (" --quick" if options.quick else "") + "`")
    print()
    print("| scenario | " + " | ".join(heading for _, heading in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for label, key in ROWS:
        if options.quick and key not in QUICK:
            continue
        row = [cells.get((tool, key), "—") for tool, _ in columns]
        print(f"| {label} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    sys.exit(main())
