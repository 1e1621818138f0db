"""Ctrl-C and kill during a build never leave a corrupt record in snippets/.

Real ``python -m raypress build --rerun`` processes, in their own process group (as a
terminal's Ctrl-C reaches the whole foreground group), are sent SIGINT or SIGKILL at
several moments while posts run and their records are written; every record left is
then read back strictly, and the next build succeeds from them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_freeze import Site

from raypress.config import load_config
from raypress.freeze.records import read_record, record_files

pytestmark = pytest.mark.slow

POSTS = 6
SNIPPET = "import time\ntime.sleep(0.1)\nprint('post {i} snippet {k}', 'x' * 2000)"


def build_process(root: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYPRESS_")}
    return subprocess.Popen(
        [sys.executable, "-m", "raypress", "build", "--rerun", "--jobs", "2", "--root", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


def records_are_valid(site: Site) -> int:
    """Read every record strictly (RecordError fails the test); how many there are."""
    config = load_config(site.root)
    count = 0
    for i in range(POSTS):
        source = f"posts/2025-01-{i + 10:02d}-post-{i}.md"
        if read_record(record_files(config, source), source) is not None:
            count += 1
    return count


@pytest.fixture
def busy_site(tmp_path: Path) -> Site:
    site = Site(tmp_path / "project")
    for i in range(POSTS):
        fences = [SNIPPET.format(i=i, k=k) for k in range(3)]
        site.post(f"2025-01-{i + 10:02d}-post-{i}.md", *fences)
    report, ran_posts, _ = site.build()
    assert report.ok and len(ran_posts) == POSTS
    return site


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGKILL], ids=["int", "kill"])
def test_interrupted_builds_leave_every_record_valid(busy_site: Site, signal_number: int) -> None:
    for delay in (0.4, 0.7, 0.9, 1.1, 1.3, 1.6):
        process = build_process(busy_site.root)
        time.sleep(delay)
        if process.poll() is None:
            os.killpg(process.pid, signal_number)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"the build did not stop within 60 s of signal {signal_number}")
        assert records_are_valid(busy_site) == POSTS, f"after {delay} s"
    leftovers = [p for p in (busy_site.root / "snippets").iterdir() if p.name.startswith(".")]
    for path in leftovers:  # interrupted writes: ignored, then removed once old
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    report, ran_posts, _ = busy_site.build()
    assert report.ok and ran_posts == set()  # every record is current: nothing runs
    assert not [p for p in (busy_site.root / "snippets").iterdir() if p.name.startswith(".")]
