"""Watching a site's inputs for ``serve``, with watchfiles (inotify on Linux).

Two threads: one watches the source folders (posts/, templates/, static/) recursively,
the other the folders holding the configuration files, non-recursively (the project
root holds ``.venv`` and ``_site``, which must not be watched). When a source folder
appears or disappears, the recursive watch starts again with the folders that exist.
Editors' temporary files (``.swp``, ``~``, ``.#``) are ignored.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import watchfiles

STEP_MS = 15  # watchfiles yields once no new change came for this long


class _Either:
    """Set when any of the events is (watchfiles polls ``is_set``)."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class SourceWatcher:
    """Reports changed paths below ``folders`` and changes of ``files``."""

    def __init__(
        self,
        folders: Sequence[Path],
        files: Sequence[Path],
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.folders = tuple(p.absolute() for p in folders)
        self.files = tuple(p.absolute() for p in files)
        self.report = report or (lambda _message: None)
        self.changes: queue.Queue[set[Path]] = queue.Queue()
        self.stopping = threading.Event()
        self.restart = threading.Event()
        self.threads = [
            threading.Thread(
                target=self._keep, args=(self._watch_folders,), name="watch-sources", daemon=True
            ),
            threading.Thread(
                target=self._keep, args=(self._watch_files,), name="watch-config", daemon=True
            ),
        ]

    def watches(self, folders: Sequence[Path], files: Sequence[Path]) -> bool:
        """True when this watcher watches exactly these folders and files."""
        return (self.folders, self.files) == (
            tuple(p.absolute() for p in folders),
            tuple(p.absolute() for p in files),
        )

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def get(self, timeout: float) -> set[Path] | None:
        """The paths changed since the last call, waiting up to ``timeout`` for the first."""
        try:
            changed = set(self.changes.get(timeout=timeout))
        except queue.Empty:
            return None
        while True:
            try:
                changed |= self.changes.get_nowait()
            except queue.Empty:
                return changed

    def close(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(timeout=5)

    def _keep(self, watch: Callable[[], None]) -> None:
        """Run ``watch`` until the watcher stops, again after a failure (said once)."""
        said = False
        while not self.stopping.is_set():
            try:
                watch()
            except Exception as exc:  # e.g. the system's limit of inotify watches
                if not said:
                    self.report(f"warning: watching for changes failed ({exc}); retrying")
                    said = True
                self.stopping.wait(2.0)

    def _watch_folders(self) -> None:
        self.restart.clear()
        existing = [p for p in self.folders if p.is_dir()]
        if not existing:
            self.restart.wait(0.5)
            return
        for batch in watchfiles.watch(
            *existing,
            watch_filter=watchfiles.DefaultFilter(),
            step=STEP_MS,
            debounce=500,
            stop_event=_Either(self.stopping, self.restart),
            rust_timeout=1000,
            raise_interrupt=False,
            ignore_permission_denied=True,
        ):
            self.changes.put({Path(path) for _, path in batch})

    def _watch_files(self) -> None:
        parents = sorted({p.parent for p in (*self.files, *self.folders)})
        wanted = set(self.files) | set(self.folders)

        def interesting(_change: watchfiles.Change, path: str) -> bool:
            return Path(path) in wanted

        for batch in watchfiles.watch(
            *parents,
            watch_filter=interesting,
            step=STEP_MS,
            debounce=500,
            stop_event=self.stopping,
            rust_timeout=1000,
            raise_interrupt=False,
            recursive=False,
            ignore_permission_denied=True,
        ):
            paths = {Path(path) for _, path in batch}
            if paths & set(self.folders):
                self.restart.set()  # a source folder appeared or went away
            self.changes.put(paths)
