"""The command line: ``build.py [build] [options]``; ``python -m raypress`` and ``raypress`` too."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from raypress import __version__
from raypress.config import EXECUTORS, load_config
from raypress.errors import SourceError
from raypress.freeze.build_stamp import current_stamp
from raypress.terminal import printable

if TYPE_CHECKING:
    from raypress.commands.build import BuildReport
    from raypress.commands.check import CheckReport
    from raypress.config import Config

COMMANDS = ("build", "serve", "check", "new", "theme")


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The entry point of ``raypress``, ``python -m raypress`` and ``build.py``: main(),
    then the process exits without tearing the interpreter down (freeing every module
    and object took 30 to 40 ms after a one-post build). By then the command has stopped
    everything it started; the exit handlers still run and the console is flushed. While
    another thread is alive, the interpreter exits as usual (it waits for that thread)."""
    code = main(argv)
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()  # what the interpreter would run at exit (logging's, Ray's)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: Python's own exit status for it
            code = code or 120
    os._exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``timeout`` and a cancelled CI job send): stop as Ctrl-C does."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 1 problems in the input, 2 usage,
    130 interrupted, 143 terminated)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in (*COMMANDS, "-h", "--help", "--version"):
        args.insert(0, "build")
    parser = _parser(_prog())
    options = parser.parse_args(args)
    if options.command == "serve":  # serve handles its signals itself
        return options.run(options)
    previous = _stop_on_signals()
    try:
        return options.run(options)
    except Terminated:
        print("terminated; everything the command had started was stopped", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted; everything the command had started was stopped", file=sys.stderr)
        return 130
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _stop_on_signals() -> dict[int, object]:
    """SIGINT and SIGTERM raise in the main thread, so every ``finally`` and ``with`` on the
    way out stops the processes and removes the folders the command made (parse workers,
    sessions, the fork server, Ray). A second signal is ignored while that clean-up runs."""

    def stop(number: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated if number == signal.SIGTERM else KeyboardInterrupt

    previous = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    for number in previous:
        signal.signal(number, stop)
    return previous


def _prog() -> str:
    """The command as it was typed: ``raypress``, ``build.py`` or ``python -m raypress``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "raypress"
    return "python -m raypress" if name == "__main__.py" else name


def _parser(prog: str = "raypress") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="raypress: build a blog whose Python snippets really run.",
    )
    parser.add_argument("--version", action="version", version=f"raypress {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build the site into the output folder")
    _add_site_options(build_parser)
    build_parser.add_argument(
        "--rerun",
        nargs="?",
        const="",
        action="append",
        metavar="POST",
        help="run the snippets even if their record in snippets/ is current: every post, "
        "or this post file (repeatable)",
    )
    build_parser.set_defaults(run=_run_build)
    _add_check_parser(commands)
    _add_serve_parser(commands)
    _add_new_parser(commands)
    _add_theme_parser(commands)
    return parser


def _add_site_options(parser: argparse.ArgumentParser, writes_site: bool = True) -> None:
    """The flags every command shares; ``writes_site``: also those about the output."""
    parser.add_argument("--root", type=Path, default=Path(), help="project folder (default: .)")
    parser.add_argument(
        "--config",
        type=Path,
        help="config file (default: site.toml, then [tool.raypress] in pyproject.toml)",
    )
    if writes_site:
        parser.add_argument("--output", dest="output_dir", help="output folder (default: _site)")
        parser.add_argument("--baseurl", help="serve under this sub-path, e.g. /blog")
        parser.add_argument("--url", help="the site's public URL, e.g. https://example.org")
    parser.add_argument("--drafts", action="store_true", default=None, help="include drafts")
    parser.add_argument(
        "--future", action="store_true", default=None, help="include posts dated in the future"
    )
    parser.add_argument("--jobs", "-j", type=int, help="parallel workers (default: CPUs)")
    if writes_site:
        parser.add_argument(
            "--no-exec",
            dest="execute",
            action="store_false",
            default=None,
            help="show snippets without running them",
        )
    parser.add_argument(
        "--timeout",
        dest="snippet_timeout",
        type=int,
        help="seconds a snippet may run (default 300)",
    )
    parser.add_argument(
        "--ray-address",
        help="run every post's session on this existing Ray cluster: host:port of its "
        "GCS, or ray://host:port (Ray Client) (default: RAY_ADDRESS, else a cluster of the "
        "build's own)",
    )
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="where sessions run: local (this machine, the default) or ray (on the nodes "
        "of a Ray cluster; implied by --ray-address)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print problems only")


def _add_serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``serve``: build, serve on loopback, rebuild on save, reload the browser."""
    parser = commands.add_parser(
        "serve", help="preview the site: rebuild on every save, reload the browser"
    )
    _add_site_options(parser)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=_port, default=8000, help="port to listen on (default: 8000; 0: any free)"
    )
    parser.add_argument("--no-drafts", dest="drafts", action="store_false", help="leave drafts out")
    parser.add_argument(
        "--no-future", dest="future", action="store_false", help="leave future posts out"
    )
    parser.set_defaults(run=_run_serve, drafts=True, future=True)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number")
    return value


def _run_serve(options: argparse.Namespace) -> int:
    from raypress.commands.serve import ServeOptions, serve

    given = _config_overrides(options)
    return serve(
        ServeOptions(options.root, options.config, given, options.host, options.port, options.quiet)
    )


_CONFIG_FLAGS = (
    "output_dir",
    "baseurl",
    "url",
    "drafts",
    "future",
    "jobs",
    "execute",
    "snippet_timeout",
    "ray_address",
    "executor",
)


def _config_overrides(options: argparse.Namespace) -> dict[str, object]:
    """The configuration keys this command's flags set (flags it lacks or left unset: none)."""
    values = {key: getattr(options, key, None) for key in _CONFIG_FLAGS}
    return {key: value for key, value in values.items() if value is not None}


def _run_build(options: argparse.Namespace) -> int:
    try:
        config = load_config(options.root, options.config, **_config_overrides(options))
    except SourceError as exc:
        print(exc.problem, file=sys.stderr)
        return 1
    started = time.perf_counter()
    now = datetime.now(config.zone)
    try:
        rerun = _rerun(options.rerun, config.root)
    except SourceError as exc:
        print(exc.problem, file=sys.stderr)
        return 1
    stamp = None if rerun else current_stamp(config, now)
    if stamp is not None:
        if not options.quiet:
            print(
                f"{config.output_dir}/ is up to date ({stamp.posts} posts, {stamp.pages} files; "
                f"checked in {time.perf_counter() - started:.2f}s)"
            )
        return 0
    try:
        with _live_status(options.quiet) as (log, events):
            report = _build_with_early_engine(config, now, rerun, log, events)
    except KeyboardInterrupt as stop:
        verb = "terminated" if isinstance(stop, Terminated) else "interrupted"
        print(
            f"{verb}; the records of the posts that finished running are in {config.snippets_dir}/",
            file=sys.stderr,
        )
        return 143 if isinstance(stop, Terminated) else 130
    print_report(report, config.output_dir, quiet=options.quiet)
    return report.exit_status


def _build_with_early_engine(
    config: Config, now: datetime, rerun: bool | frozenset[str], log: Any, events: Any
) -> BuildReport:
    """build(), with the engine started first when the raw post files say that something
    will run: its fork server starts on another core while this process imports the
    build's libraries (``freeze.early_engine``). It is stopped on every way out."""
    from raypress.freeze.early_engine import EarlyEngine, start_from_files
    from raypress.freeze.run_plan import execution_settings

    early: list[EarlyEngine] = []
    try:
        start_from_files(config, execution_settings(config, log, events), rerun, early)
        from raypress.commands.build import build  # Markdown, Pygments, Jinja2

        executor = early[0] if early else None
        return build(config, now, log=log, rerun=rerun, events=events, executor=executor)
    finally:
        for engine in early:
            engine.close()


def _rerun(values: list[str] | None, root: Path) -> bool | frozenset[str]:
    """``--rerun`` as build() takes it: True (alone), or the named posts' paths."""
    if not values:
        return False
    if "" in values:
        return True
    posts = set()
    for value in values:
        path = Path(value).resolve()
        if not path.is_file():
            raise SourceError(value, None, "--rerun: no such post file")
        try:
            posts.add(path.relative_to(root).as_posix())
        except ValueError:
            raise SourceError(value, None, "--rerun: the post is not in this project") from None
    return frozenset(posts)


def _add_check_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``check``: run every post afresh and compare its outputs with snippets/ (for CI)."""
    parser = commands.add_parser(
        "check", help="re-run every post and compare its outputs with its record (for CI)"
    )
    _add_site_options(parser, writes_site=False)
    parser.add_argument("posts", nargs="*", metavar="POST", help="only these post files")
    parser.add_argument(
        "--update", action="store_true", help="rewrite the records instead of failing"
    )
    parser.add_argument(
        "--twice", action="store_true", help="run each post twice; report output that varies"
    )
    parser.add_argument(
        "--slowdown",
        type=float,
        metavar="N",
        help="warn when a snippet is N times slower than its record (default 3)",
    )
    parser.add_argument("--fail-on-slowdown", action="store_true", help="make slow snippets errors")
    parser.add_argument("--junit-xml", type=Path, metavar="PATH", help="write a JUnit report")
    parser.add_argument(
        "--require-isolation",
        action="store_true",
        help="fail unless snippets run in the full sandbox (for CI running strangers' code)",
    )
    parser.set_defaults(run=_run_check)


def _run_check(options: argparse.Namespace) -> int:
    try:
        config = load_config(options.root, options.config, **_config_overrides(options))
        posts = _rerun(options.posts, config.root) if options.posts else frozenset()
    except SourceError as exc:
        print(exc.problem, file=sys.stderr)
        return 1
    if options.slowdown is not None and options.slowdown <= 1:
        print("--slowdown must be more than 1", file=sys.stderr)
        return 2
    named = posts if isinstance(posts, frozenset) else frozenset()
    with _live_status(options.quiet) as (log, events):
        report = _check_with_early_engine(config, options, named, log, events)
    from raypress.commands.check_report import console_lines, github_annotations, write_junit

    for line, is_error in console_lines(report):
        if is_error or not options.quiet or line.startswith(report.summary):
            text = "\n".join(printable(part) for part in line.split("\n"))  # diffs keep lines
            print(text, file=sys.stderr if is_error else sys.stdout, flush=True)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in github_annotations(report):
            print(line)
    if options.junit_xml is not None:
        write_junit(report, options.junit_xml)
    return report.exit_status


def _check_with_early_engine(
    config: Config, options: argparse.Namespace, named: frozenset[str], log: Any, events: Any
) -> CheckReport:
    """check(), with the engine started first, as :func:`_build_with_early_engine` does:
    every post file with a Python fence to run (or just the ``named`` ones) will run."""
    import dataclasses

    from raypress.freeze.early_engine import EarlyEngine, start_from_files
    from raypress.freeze.run_plan import execution_settings

    early: list[EarlyEngine] = []
    try:
        executed = dataclasses.replace(config, execute=True)  # as check() runs the posts
        settings = execution_settings(executed, log, events, options.require_isolation)
        start_from_files(executed, settings, True, early, only=named)
        from raypress.commands.check import CheckOptions, check  # Markdown, Pygments

        check_options = CheckOptions(
            update=options.update,
            twice=options.twice,
            slowdown=options.slowdown,
            fail_on_slowdown=options.fail_on_slowdown,
            posts=named,
            require_isolation=options.require_isolation,
        )
        executor = early[0] if early else None
        return check(config, check_options, log=log, events=events, executor=executor)
    finally:
        for engine in early:
            engine.close()


@contextlib.contextmanager
def _live_status(quiet: bool) -> Iterator[tuple[Any, Any]]:
    """The console while posts run: (log, events) for build and check; (None, None) when
    ``quiet``. A live status on a terminal, plain lines and heartbeats elsewhere."""
    if quiet:
        yield None, None
        return
    from raypress.commands.live_status import LiveStatus

    with LiveStatus(sys.stdout) as status:
        yield status.log, status.event


def _log(line: str) -> None:
    print(printable(line, multiline=True), flush=True)


def print_report(report: BuildReport, output_dir: str, quiet: bool = False) -> None:
    """Problems to stderr, one line each; a one-line summary to stdout."""
    for problem in report.problems + report.execution_problems + report.infrastructure_problems:
        print(problem, file=sys.stderr)
    for warning in report.warnings:
        print(printable(f"warning: {warning}"), file=sys.stderr)
    if not quiet:
        for note in report.notes:
            print(printable(note))
    if report.execution_problems and not report.problems:
        count = len(report.execution_problems)
        print(
            f"{count} snippet problem{'s' if count != 1 else ''}: the site was built with the "
            f"errors shown on its pages; exit status 1",
            file=sys.stderr,
        )
    if report.problems:
        count = len(report.problems)
        print(
            f"build failed: {count} problem{'s' if count != 1 else ''}; "
            f"{output_dir}/ left as it was",
            file=sys.stderr,
        )
        return
    if report.infrastructure_problems and report.write is None:
        print(f"build failed: nothing ran; {output_dir}/ left as it was", file=sys.stderr)
        return
    if quiet:
        return
    skipped = []
    if report.drafts_skipped:
        skipped.append(f"{report.drafts_skipped} draft(s) skipped (--drafts)")
    if report.future_skipped:
        skipped.append(f"{report.future_skipped} future post(s) skipped (--future)")
    write = report.write
    if report.up_to_date:
        print(
            f"{output_dir}/ is up to date ({report.posts} posts, {report.pages} files; "
            f"checked in {report.seconds:.2f}s)"
        )
        return
    changes = (
        "no changes"
        if write is None or not write.changed
        else (f"{write.written} written, {write.linked} unchanged, {write.removed} removed")
    )
    if report.reused:
        skipped.insert(0, f"{report.reused} post(s) from snippets/")
    if report.executed:
        skipped.insert(0, f"ran the snippets of {report.executed} post(s)")
    extra = f"; {'; '.join(skipped)}" if skipped else ""
    print(
        f"built {report.posts} posts, {report.pages} files into {output_dir}/ "
        f"in {report.seconds:.2f}s ({changes}){extra}"
    )


def _add_new_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``new SITE``: a starter blog; ``new post TITLE``: a post file."""
    parser = commands.add_parser(
        "new",
        help='create a starter blog in a folder, or a post: new post "Title"',
        description="raypress new SITE: a starter blog (posts/, snippets/, site.toml, "
        ".gitignore, a GitHub Actions workflow). raypress new post TITLE: "
        "posts/YYYY-MM-DD-title.md with front matter.",
    )
    parser.add_argument("target", metavar="SITE|post", help="a folder, or the word post")
    parser.add_argument("title", nargs="?", help="the post's title (with post)")
    parser.add_argument("--root", type=Path, default=Path(), help="project folder (default: .)")
    parser.add_argument("--config", type=Path, help="config file (with post)")
    parser.add_argument("--force", action="store_true", help="overwrite files that exist")
    parser.set_defaults(run=_run_new)


def _run_new(options: argparse.Namespace) -> int:
    from raypress.commands.new import WORKFLOW, new_post, new_site

    try:
        if options.target == "post":
            if not options.title:
                print(
                    'new post needs a title: raypress new post "My title" (for a site in a '
                    "folder named post: raypress new ./post)",
                    file=sys.stderr,
                )
                return 2
            config = load_config(options.root, options.config)
            path = new_post(config, options.title, datetime.now(config.zone), options.force)
            print(f"wrote {path.relative_to(config.root)}")
            return 0
        if options.title:
            print(
                f"unexpected {options.title!r}: raypress new SITE takes one folder", file=sys.stderr
            )
            return 2
        folder = options.root / options.target
        created = new_site(folder, datetime.now(), options.force)
    except SourceError as exc:
        print(exc.problem, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{exc.filename}: error: {exc.strerror}", file=sys.stderr)
        return 1
    shown = options.target.rstrip("/") or "."
    print(f"created a raypress blog in {shown}/:")
    for name in created.files:
        print(f"  {name}")
    print(
        f"next:\n  cd {shown}\n  raypress build    # runs the example post, writes _site/\n"
        f"  raypress serve    # preview at http://127.0.0.1:8000/\n"
        f"On GitHub, {WORKFLOW} checks pull requests and publishes the site to Pages."
    )
    return 0


def _add_theme_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``theme list``, ``theme eject [NAME ...]``: the built-in theme's files."""
    parser = commands.add_parser("theme", help="list the built-in theme, or copy it out to edit")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the theme's files, and which the site overrides")
    eject = actions.add_parser(
        "eject",
        help="copy theme files into the site's templates/ (all, or those named)",
        description="Copy files of the built-in theme into the site's templates folder, "
        "where they override the theme's. NAME: post.html, post, partials/footer.html, "
        "assets, ... (default: every file).",
    )
    eject.add_argument("names", nargs="*", metavar="NAME")
    eject.add_argument("--force", action="store_true", help="replace files that exist")
    for sub in (listing, eject):
        sub.add_argument("--root", type=Path, default=Path(), help="project folder (default: .)")
        sub.add_argument("--config", type=Path, help="config file")
        sub.set_defaults(run=_run_theme)


def _run_theme(options: argparse.Namespace) -> int:
    from raypress.commands.theme import eject, select, theme_files

    try:
        config = load_config(options.root, options.config)
        if options.action == "list":
            for item in theme_files(config):
                mark = f"  (overridden by {config.templates_dir}/)" if item.overridden else ""
                print(f"{item.name}{mark}")
            return 0
        copied = eject(config, select(config, options.names), options.force)
    except SourceError as exc:
        print(exc.problem, file=sys.stderr)
        return 1
    for path in copied:
        print(
            f"copied {path.relative_to(config.root) if path.is_relative_to(config.root) else path}"
        )
    print(f"{len(copied)} file(s) of the theme copied; yours now override the theme's")
    return 0
