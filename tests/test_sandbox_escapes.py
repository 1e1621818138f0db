"""Each escape of issue 9, as a snippet would try it: every one must fail.

A project of attack posts is built once for the module by the real command line (a
subprocess, as CI runs it), with a token in the builder's environment, a secret in its
``$HOME``, in the project's ``.git/config`` and in a loopback service on the machine.
Each post tries one family of escapes and prints what happened; the tests read the
posts' records and pages, and the machine, afterwards. The Ray escapes (another build's
cluster, placement groups) and the death of the fork server have tests of their own.

These tests need the full sandbox (bubblewrap, user namespaces, a memory cgroup). Where
the machine cannot give it they are skipped, unless ``RAYPRESS_REQUIRE_ISOLATION`` is set
(``.ci/run`` sets it: CI runs as root on a machine that can).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest_cluster import LocalCluster
from serve_process import alive, descendants

from raypress.execution import ExecutionSettings
from raypress.execution.isolation import probe
from raypress.execution.model import PostExecution, PostRun, Snippet, SnippetOptions
from raypress.execution.pool import Executor

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates"


def _require_full_isolation() -> None:
    isolation = probe()
    if not isolation.full:
        if os.environ.get("RAYPRESS_REQUIRE_ISOLATION"):
            pytest.fail(f"RAYPRESS_REQUIRE_ISOLATION is set but {isolation.describe()}")
        pytest.skip(isolation.describe())


@pytest.fixture(autouse=True)
def full_isolation() -> None:
    _require_full_isolation()


# -- the machine around the build --------------------------------------------------------


class LoopbackService:
    """A TCP service on the machine's 127.0.0.1 and an abstract Unix socket, both
    answering a secret; they count the connections they accepted."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.accepted = 0
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.unix_name = f"raypress-test-{secrets.token_hex(6)}"
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + self.unix_name)
        self.unix.listen()
        self.stopped = False
        for server in (self.tcp, self.unix):
            threading.Thread(target=self._serve, args=(server,), daemon=True).start()

    def _serve(self, server: socket.socket) -> None:
        server.settimeout(0.2)
        while not self.stopped:
            try:
                connection, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            with connection:
                connection.sendall(self.secret)

    def close(self) -> None:
        self.stopped = True
        self.tcp.close()
        self.unix.close()


@dataclass
class AttackedSite:
    """The attack project after its build."""

    root: Path
    home: Path
    tmp: Path
    secret: str
    service: LoopbackService
    result: subprocess.CompletedProcess[str]
    nonce: str

    def record(self, name: str) -> dict:
        return json.loads((self.root / "snippets" / f"{name}.json").read_text())

    def stdout(self, name: str) -> str:
        """Everything the post's snippets printed, from its record."""
        record = self.record(name)
        return "".join(
            "".join(output["text"])
            for snippet in record["snippets"]
            for output in snippet["outputs"]  # a KeyError, never "", if the format changes
            if output["type"] == "stream" and output["name"] == "stdout"
        )

    def page(self, name: str) -> str:
        date, slug = name[:10], name[11:]
        return (self.root / "_site" / date.replace("-", "/") / slug / "index.html").read_text()

    def everything_written(self) -> str:
        """Every byte of the site and the records, as text."""
        parts = []
        for folder in ("_site", "snippets"):
            for path in sorted((self.root / folder).rglob("*")):
                if path.is_file():
                    parts.append(path.read_bytes().decode("utf-8", "replace"))
        return "\n".join(parts)


def fence(code: str, *options: str) -> str:
    lines = [f"#| {option}" for option in options]
    return "```python\n" + "\n".join([*lines, code.strip("\n")]) + "\n```\n"


def post(title: str, date: str, *fences: str) -> str:
    return f"---\ntitle: {title}\ndate: {date}\n---\n\n" + "\n".join(fences)


IDENTITY = """
import ctypes, os
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\\t" in line)
print("uid", os.getuid(), os.geteuid(), "gid", os.getgid())
for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"):
    print(key, status[key].strip())
print("pid", os.getpid())
print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
try:
    os.setuid(0)
    print("setuid: ROOT")
except OSError as exc:
    print("setuid: blocked", type(exc).__name__)
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) == 0:
    print("unshare user: ALLOWED")
else:
    print("unshare user: blocked", os.strerror(ctypes.get_errno()))
"""

SECRETS = """
import glob, os
seen = []
for pattern in ("/proc/*/environ", "/proc/*/task/*/environ", "/proc/*/cmdline"):
    for path in glob.glob(pattern):
        try:
            seen.append(open(path, "rb").read().decode("utf-8", "replace"))
        except OSError as exc:
            print("blocked", path, type(exc).__name__)
print("environ:", dict(os.environ))
print("proc:", seen)
for path in ("{home}/.netrc", "/root/.netrc", "{root}/.git/config",
             os.path.join(os.path.dirname(os.path.dirname(__file__)), ".git", "config")):
    try:
        print("read", path, repr(open(path).read()))
    except OSError as exc:
        print("blocked", path, type(exc).__name__)
"""

WRITES = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
root = {root!r}
targets = {{
    "templates": root + "/templates/base.html",
    "template": root + "/templates/partials/footer.html",
    "snippets": root + "/snippets/evil.json",
    "posts": root + "/posts/evil.md",
    "config": root + "/site.toml",
    "builder home": {home!r} + "/evil",
    "machine tmp": {tmp!r} + "/evil-{nonce}",
    "private tmp": "/tmp/evil-{nonce}",
    "proc root": "/proc/1/root" + root + "/templates/base.html",
}}
for name, path in targets.items():
    try:
        with open(path, "a") as handle:
            handle.write("<script>INJECTED-{nonce}</script>")
        print(name, "WROTE")
    except OSError as exc:
        print(name, "blocked", type(exc).__name__)
MS_REMOUNT, MS_BIND = 0x20, 0x1000
if libc.mount(None, root.encode(), None, ctypes.c_ulong(MS_REMOUNT | MS_BIND), None) == 0:
    print("remount: READ-WRITE")
else:
    print("remount: blocked", os.strerror(ctypes.get_errno()))
if libc.unshare(0x10000000 | 0x00020000) == 0:
    print("unshare: ALLOWED")
else:
    print("unshare: blocked", os.strerror(ctypes.get_errno()))
for path in (os.path.expanduser("~/mine"), "/tmp/mine"):
    with open(path, "w") as handle:
        handle.write("private")
    print("private", path, open(path).read())
print("cwd", os.getcwd(), "home", os.environ["HOME"])
"""

NETWORK = """
import ctypes, glob, os, socket
libc = ctypes.CDLL(None, use_errno=True)

def attempt(name, family, address):
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(address)
            print(name, "REACHED", sock.recv(100))
    except OSError as exc:
        print(name, "blocked", type(exc).__name__)

def everywhere():
    attempt("loopback", socket.AF_INET, ("127.0.0.1", {port}))
    attempt("loopback6", socket.AF_INET6, ("::1", {port}))
    attempt("abstract", socket.AF_UNIX, "\\0{unix}")
    attempt("internet", socket.AF_INET, ("1.1.1.1", 53))

everywhere()
CLONE_NEWNET = 0x40000000
for path in sorted(set(glob.glob("/proc/*/ns/net") + glob.glob("/proc/*/task/*/ns/net"))):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        print("open", path, "blocked", type(exc).__name__)
        continue
    if libc.setns(fd, CLONE_NEWNET) == 0:
        print("setns", path, "entered")
        everywhere()
    else:
        print("setns", path, "blocked", os.strerror(ctypes.get_errno()))
"""

MEMORY = """
import mmap
block = mmap.mmap(-1, 600 << 20, mmap.MAP_SHARED)
for offset in range(0, len(block), 4096):
    block[offset] = 1
print("held 600 MB of shared memory")
"""

SLEEPER = """
import subprocess, time
child = subprocess.Popen(["sleep", "7.{nonce}"])
time.sleep(6)
print("slept")
"""

WATCHER = """
import glob, time
seen = []
deadline = time.time() + 5
while time.time() < deadline:
    for path in glob.glob("/proc/*/cmdline"):
        try:
            seen.append(open(path, "rb").read())
        except OSError:
            pass
    time.sleep(0.2)
print("saw sleeper:", any(b"{nonce}" in item for item in seen))
"""


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttackedSite]:
    """Build the attack project once (a subprocess, as CI would), with secrets around."""
    _require_full_isolation()
    base = tmp_path_factory.mktemp("attack")
    root, home, tmp = base / "project", base / "home", base / "tmp"
    for folder in (root, home, tmp):
        folder.mkdir()
    secret = "SECRET-" + secrets.token_hex(12)
    nonce = secrets.token_hex(6)
    (home / ".netrc").write_text(f"machine example.org password {secret}\n")
    (home / ".netrc").chmod(0o644)  # readable by anyone: only the sandbox may stop it
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    with (root / ".git" / "config").open("a") as handle:
        handle.write(f'[http]\n\textraheader = "AUTHORIZATION: basic {secret}"\n')
    import shutil

    shutil.copytree(TEMPLATES, root / "templates")
    (root / "site.toml").write_text('title = "attacks"\nmemory_limit_mb = 256\njobs = 2\n')
    service = LoopbackService(secret)
    values = {"root": str(root), "home": str(home), "tmp": str(tmp), "nonce": nonce}
    posts = {
        "2030-01-09-sleeper": SLEEPER.format(**values),
        "2030-01-08-watcher": WATCHER.format(**values),
        "2030-01-07-identity": IDENTITY,
        "2030-01-06-secrets": SECRETS.format(**values),
        "2030-01-05-writes": WRITES.format(**values),
        "2030-01-04-network": NETWORK.format(port=service.port, unix=service.unix_name),
        "2030-01-03-memory": MEMORY,
    }
    (root / "posts").mkdir()
    for name, code in posts.items():
        (root / "posts" / f"{name}.md").write_text(post(name, name[:10], fence(code)))
    env = {
        **os.environ,
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "GITHUB_TOKEN": secret,
        "RAYPRESS_TEST_SECRET": secret,
    }
    result = subprocess.run(
        [sys.executable, "-m", "raypress", "build", "--root", str(root), "--future"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        yield AttackedSite(root, home, tmp, secret, service, result, nonce)
    finally:
        service.close()


def lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


# -- 1. no root, no capabilities, its own PID namespace ----------------------------------


def test_sessions_run_without_root_or_capabilities(attacked: AttackedSite) -> None:
    out = attacked.stdout("2030-01-07-identity")
    uid = int(lines(out, "uid ")[0].split()[1])
    assert uid != 0
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert lines(out, key) == [f"{key} 0000000000000000"], out
    assert lines(out, "NoNewPrivs") == ["NoNewPrivs 1"]
    assert lines(out, "setuid:")[0].startswith("setuid: blocked")
    assert lines(out, "unshare user:")[0].startswith("unshare user: blocked")


def test_a_session_sees_no_process_but_its_own(attacked: AttackedSite) -> None:
    out = attacked.stdout("2030-01-07-identity")
    assert lines(out, "pid ") == ["pid 1"]
    assert lines(out, "pids ") == ["pids [1]"]  # not the build, the server or other posts
    # a post running at the same time, with a child whose command line is unique
    assert attacked.stdout("2030-01-09-sleeper") == "slept\n"
    assert attacked.stdout("2030-01-08-watcher") == "saw sleeper: False\n"


# -- secrets ------------------------------------------------------------------------------


def test_the_builders_secrets_reach_no_page_and_no_record(attacked: AttackedSite) -> None:
    assert attacked.result.returncode == 1, attacked.result.stderr  # the memory post dies
    out = attacked.stdout("2030-01-06-secrets")
    assert "environ:" in out and "read " not in out.replace("read /proc", "")
    assert attacked.secret not in attacked.everything_written()
    assert attacked.secret not in attacked.result.stdout + attacked.result.stderr
    assert lines(out, f"blocked {attacked.home}/.netrc") == [
        f"blocked {attacked.home}/.netrc FileNotFoundError"
    ]


# -- files --------------------------------------------------------------------------------


def test_snippets_templates_home_and_tmp_cannot_be_written(attacked: AttackedSite) -> None:
    out = attacked.stdout("2030-01-05-writes")
    for name in (
        "templates",
        "template",
        "snippets",
        "posts",
        "config",
        "builder home",
        "machine tmp",
    ):
        assert lines(out, name + " ")[0].startswith(f"{name} blocked"), out
    assert not list(attacked.home.glob("evil*")) and not list(attacked.tmp.glob("evil*"))
    assert lines(out, "private tmp") == ["private tmp WROTE"]  # its own /tmp...
    assert not Path(f"/tmp/evil-{attacked.nonce}").exists()  # ...not the machine's
    assert not (attacked.root / "snippets" / "evil.json").exists()
    assert not (attacked.root / "posts" / "evil.md").exists()
    assert not (attacked.root / "templates" / "base.html").exists()
    assert "INJECTED" not in (attacked.root / "templates/partials/footer.html").read_text()
    # its own $HOME and /tmp are writable, and private
    assert lines(out, "private /") == [
        "private /tmp/home/mine private",
        "private /tmp/mine private",
    ]
    assert lines(out, "cwd") == ["cwd /tmp/work home /tmp/home"]


def test_the_read_only_project_cannot_be_bypassed(attacked: AttackedSite) -> None:
    out = attacked.stdout("2030-01-05-writes")
    assert lines(out, "proc root")[0].startswith("proc root blocked"), out
    assert lines(out, "remount:")[0].startswith("remount: blocked"), out
    assert lines(out, "unshare:")[0].startswith("unshare: blocked"), out


def test_a_template_edited_by_a_snippet_never_reaches_a_page(attacked: AttackedSite) -> None:
    pages = list((attacked.root / "_site").rglob("*.html"))
    assert pages
    # (the attack's own page shows its code, escaped: &lt;script&gt;INJECTED-...)
    assert not any(f"<script>INJECTED-{attacked.nonce}" in p.read_text() for p in pages)


# -- network ------------------------------------------------------------------------------


def test_no_host_loopback_service_and_no_way_back_by_setns(attacked: AttackedSite) -> None:
    out = attacked.stdout("2030-01-04-network")
    assert "REACHED" not in out and "entered" not in out, out
    for name in ("loopback", "loopback6", "abstract", "internet"):
        assert lines(out, name + " ")[0].startswith(f"{name} blocked"), out
    assert lines(out, "setns")  # it found namespace files to try (its own)
    assert attacked.service.accepted == 0


# -- memory -------------------------------------------------------------------------------


def test_shared_memory_counts_against_the_ceiling(attacked: AttackedSite) -> None:
    page = attacked.page("2030-01-03-memory")
    outputs = re.findall(r'<pre class="stdout">(.*?)</pre>', page, re.S)
    assert not any("held" in output for output in outputs)
    assert "over its memory ceiling of 256 MB" in page
    assert any(
        line.startswith("posts/2030-01-03-memory.md:") and "memory ceiling" in line
        for line in attacked.result.stderr.splitlines()
    ), attacked.result.stderr


# -- Ray: another build's cluster, a post's placement groups ------------------------------


def ray_post(name: str, *sources: str, timeout: float | None = None) -> PostRun:
    snippets = tuple(
        Snippet(f"posts/{name}.md", i, 10 * i + 1, 10 * i + 2, "python", s, SnippetOptions())
        for i, s in enumerate(sources)
    )
    return PostRun(f"posts/{name}.md", REPO / "posts", snippets, uses_ray=True, timeout=timeout)


THIEF = """
import socket, subprocess, sys
try:
    socket.create_connection(({host!r}, {port}), timeout=3)
    print("gcs REACHED")
except OSError as exc:
    print("gcs blocked", type(exc).__name__)
try:
    socket.socket(socket.AF_UNIX).connect({raylet!r})
    print("raylet REACHED")
except OSError as exc:
    print("raylet blocked", type(exc).__name__)

def attempt(name, code):  # Ray ends a process that cannot reach its GCS: use children
    done = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True,
                          timeout=60)
    print(name, "REACHED" if "REACHED" in done.stdout else "blocked")

attempt("gcs client", "from ray._raylet import GcsClient\\n"
        "GcsClient(address={gcs!r}).get_all_node_info(timeout=5)\\nprint('REACHED')")
attempt("join", "import ray\\nray.init({gcs!r})\\n"
        "print('REACHED', ray.util.list_named_actors(all_namespaces=True))")
"""


@pytest.mark.slow
def test_another_builds_ray_cluster_is_out_of_reach() -> None:
    settings = ExecutionSettings(jobs=1, project_root=REPO, snippet_timeout=120)
    with Executor(settings) as first, Executor(settings) as second:
        (owner,) = first.run(
            [
                ray_post(
                    "owner",
                    "import ray\nray.init()\n"
                    "@ray.remote\nclass Vault:\n    def get(self):\n        return 'VAULT'\n"
                    "vault = Vault.options(name='vault', lifetime='detached').remote()\n"
                    "ray.get(vault.get.remote())\n"
                    "node = ray._private.worker.global_worker.node\n"
                    "print(node.gcs_address)\nprint(node.raylet_socket_name)",
                )
            ]
        )
        assert owner.status == "ok", owner.problems
        gcs, raylet = owner.snippets[0].stdout.split()
        host, port = gcs.rsplit(":", 1)
        assert not Path(raylet).exists()  # nothing of it on the machine's file system
        code = THIEF.format(host=host, port=port, raylet=raylet, gcs=gcs)
        (thief,) = second.run([ray_post("thief", code, timeout=150)])
        out = "".join(s.stdout for s in thief.snippets)
        assert "REACHED" not in out and "joined" not in out and "VAULT" not in out, out
        for attempt in ("gcs", "raylet", "gcs client", "join"):
            assert f"{attempt} blocked" in out, (out, thief.snippets)


GREEDY = (
    "import ray\nray.init()\ncpus = int(ray.cluster_resources()['CPU'])\n"
    "held = ray.util.placement_group([{'CPU': 1}] * cpus, lifetime='detached')\n"
    "plain = ray.util.placement_group([{'CPU': 0.5}])\n"
    "ray.get(held.ready(), timeout=60)\nprint('holding', cpus, flush=True)"
)
LATER = (
    "import ray\nray.init()\n@ray.remote(num_cpus=1)\ndef f():\n    return 'ran'\n"
    "ray.get(f.remote(), timeout=60)"
)


def _starve_then_run(engine: Executor) -> tuple[PostExecution, PostExecution]:
    """A post that holds every CPU in placement groups, one killed while holding them,
    then a post that needs a CPU; returns the first and the killed one."""
    greedy = engine.execute(ray_post("greedy", GREEDY))
    assert greedy.status == "ok", greedy.problems
    killed = engine.execute(
        ray_post("killed", GREEDY + "\nimport time\ntime.sleep(600)", timeout=20)
    )
    assert killed.status == "timed-out"
    later = engine.execute(ray_post("later", LATER))
    assert later.status == "ok", later.problems
    assert later.snippets[0].value == "'ran'"
    return greedy, killed


@pytest.mark.slow
def test_a_placement_group_never_starves_a_later_post() -> None:
    """On the build's own clusters: each post's cluster is fresh and stopped with it."""
    settings = ExecutionSettings(jobs=1, project_root=REPO, snippet_timeout=120)
    with Executor(settings) as engine:
        _starve_then_run(engine)


@pytest.mark.slow
def test_a_post_leaves_no_placement_group_on_an_external_cluster(
    two_node_cluster: LocalCluster,
) -> None:
    """On a shared cluster the session removes its groups; a janitor those of a killed one."""
    settings = ExecutionSettings(
        jobs=1, project_root=REPO, snippet_timeout=120, ray_address=two_node_cluster.address
    )
    with Executor(settings) as engine:
        greedy, _killed = _starve_then_run(engine)
    assert any("removed 2 placement group(s)" in m for m in greedy.messages), greedy.messages


# -- the fork server killed --------------------------------------------------------------


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_killing_the_fork_server_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "project"
    import shutil

    shutil.copytree(TEMPLATES, root / "templates")
    (root / "posts").mkdir(parents=True)
    root.chmod(0o755)
    (root / "site.toml").write_text('title = "killed"\njobs = 1\n')
    (root / "posts" / "2030-01-03-quick.md").write_text(
        post("quick", "2030-01-03", fence("print('quick done')"))
    )
    (root / "posts" / "2030-01-02-ray.md").write_text(
        post(
            "ray",
            "2030-01-02",
            fence("import ray, time\nray.init()\nprint('connected', flush=True)\ntime.sleep(600)"),
        )
    )
    build = subprocess.Popen(
        [sys.executable, "-m", "raypress", "build", "--root", str(root), "--future"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = None
    deadline = time.time() + 240
    while time.time() < deadline:  # wait for the Ray post's session: cluster up
        tree = descendants(build.pid)
        lines_ = {pid: command_line(pid) for pid in tree}
        if any("raylet" in line for line in lines_.values()) and len(tree) > 8:
            # the fork server itself: not bubblewrap (whose command line names it too), and
            # not one of its sessions (forks of it, with its command line)
            matches = {
                p
                for p, line in lines_.items()
                if "raypress.execution.forkserver" in line
                and Path(line.split(" ", 1)[0]).name != "bwrap"
            }
            server = next((p for p in matches if _parent(p) not in matches), None)
            if server is not None:
                time.sleep(5)  # the session connects
                break
        time.sleep(0.5)
    assert server is not None, "the build never started its Ray cluster"
    everything = descendants(build.pid)
    os.kill(server, signal.SIGKILL)
    out, err = build.communicate(timeout=60)
    assert build.returncode == 1, (out, err)
    assert "Traceback" not in out + err
    death = [line for line in err.splitlines() if "fork server" in line]
    assert len(death) == 1 and "killed by SIGKILL" in death[0], err
    assert "quick done" in (root / "_site/2030/01/03/quick/index.html").read_text()
    time.sleep(1)
    assert alive(everything) == set(), [command_line(p) for p in alive(everything)]


def _parent(pid: int) -> int | None:
    """The parent process of ``pid`` (None once it has ended)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_bubblewrap_starts_directly_when_nothing_needs_staging() -> None:
    """CI's Python lives under /usr: no staging launcher, bubblewrap run as the sandbox's
    user straight away (its files passed as descriptors). The same command the fork
    server is started with, here with a shell instead of Python."""
    from raypress.execution.build_sandbox import Launcher, Layout

    isolation = probe()
    with tempfile.TemporaryDirectory(dir="/tmp") as project:  # reachable by anyone
        Path(project).chmod(0o755)
        launcher = Launcher(isolation, Layout((project,), ()), None, None)
        script = "id -u; id -un; ls /; cat /proc/self/status"
        command = launcher.command(["/bin/sh", "-c", script])
        assert command.spec is None  # no launcher
        done = subprocess.run(
            command.argv,
            pass_fds=command.pass_fds,
            user=command.user,
            group=command.group,
            extra_groups=[] if command.user is not None else None,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for fd in command.pass_fds:
            os.close(fd)
    assert done.returncode == 0, done.stderr
    uid, name, *rest = done.stdout.splitlines()
    assert int(uid) == isolation.uid and (uid != "0" or os.geteuid() != 0)
    assert name == ("raypress" if os.geteuid() == 0 else name)
    assert "CapEff:\t0000000000000000" in done.stdout
    assert "NoNewPrivs:\t1" in done.stdout
    listing = rest[: rest.index("Name:\tcat")]  # the sandbox's / holds only what it shows
    assert not {"root", "home", "work", "var"} & set(listing), listing
