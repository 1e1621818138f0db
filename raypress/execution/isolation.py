"""What isolation this machine can give a build's sessions, found once per build.

The full sandbox needs three things: bubblewrap (``bwrap``) and user namespaces for the
build's sandbox and the sessions' nested namespaces, and a memory cgroup that the build
can create (cgroup v2 ``memory.max`` under a delegated subtree, or the cgroup v1 memory
controller) so a session's ceiling counts shared and mapped memory. When the build runs
as root the sandbox also runs under an unprivileged user id of its own; otherwise under
the builder's. Whatever is missing is named in :attr:`Isolation.missing`; the build says
so once, every page's footer says ``isolation: reduced — …`` and
``check --require-isolation`` fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

# Sandboxed processes of a root build run as one of these user ids (none exists on a
# normal machine; each build draws its own, so two builds never share one).
SANDBOX_UID_BASE = 2_000_000_000  # below 2**31: bwrap prints ids as signed ints
SANDBOX_UID_SPAN = 100_000_000


@dataclass(frozen=True, slots=True)
class Isolation:
    """How the build's sessions are isolated."""

    bwrap: str | None  # bubblewrap's path; None: no sandbox around the fork server
    uid: int  # the sandbox's user and group id (outside it as inside it)
    gid: int
    cgroup: CgroupPlace | None  # where the build's memory cgroup goes; None: RLIMIT_DATA only
    missing: tuple[str, ...]  # what this machine could not give

    @property
    def full(self) -> bool:
        """True when nothing is missing."""
        return not self.missing

    def describe(self) -> str:
        """``isolation: full`` or ``isolation: reduced — <what is missing>``."""
        if self.full:
            return "isolation: full"
        return "isolation: reduced — " + "; ".join(self.missing)

    def with_missing(self, problem: str, keep_sandbox: bool = True) -> Isolation:
        """The same, with one more missing piece (and without bubblewrap if it failed)."""
        return Isolation(
            self.bwrap if keep_sandbox else None,
            self.uid,
            self.gid,
            self.cgroup,
            (*self.missing, problem),
        )


@dataclass(frozen=True, slots=True)
class CgroupPlace:
    """A folder under which this process may create memory cgroups."""

    version: int  # 1 or 2
    parent: Path  # the folder the build's own cgroup is created in


def probe(sandbox: str = "auto") -> Isolation:
    """What this machine gives (``sandbox``: "auto", "required" or "off")."""
    root = os.geteuid() == 0
    uid = SANDBOX_UID_BASE + secrets.randbelow(SANDBOX_UID_SPAN) if root else os.geteuid()
    gid = uid if root else os.getegid()
    missing: list[str] = []
    bwrap = None
    if sandbox == "off":
        missing.append("the sandbox is turned off")
    else:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            missing.append("bubblewrap is not installed (Debian: apt install bubblewrap)")
        elif not user_namespaces_allowed():
            bwrap = None
            missing.append("user namespaces are disabled on this machine")
    place = cgroup_place()
    if place is None:
        missing.append(
            "no memory cgroup this build may create: the memory ceiling is RLIMIT_DATA, "
            "which does not count shared or mapped memory"
        )
    return Isolation(bwrap, uid, gid, place, tuple(missing))


def user_namespaces_allowed() -> bool:
    """False when the kernel forbids (unprivileged) user namespaces."""
    for name, least in (
        ("/proc/sys/user/max_user_namespaces", 3),  # the build's, a session's, its child
        ("/proc/sys/kernel/unprivileged_userns_clone", 1),  # Debian's older switch
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", None),  # Ubuntu's
    ):
        try:
            value = int(Path(name).read_text().strip())
        except (OSError, ValueError):
            continue
        if least is None and value != 0:
            return False
        if least is not None and value < least:
            return False
    return True


def cgroup_place(
    proc_cgroup: Path = Path("/proc/self/cgroup"), mountinfo: Path = Path("/proc/self/mountinfo")
) -> CgroupPlace | None:
    """Where this process may create memory cgroups: under its own cgroup v1 memory
    cgroup, or in cgroup v2 under its cgroup's parent (or its own, when that is the root)
    when the memory controller is delegated there. None when neither is writable."""
    try:
        lines = proc_cgroup.read_text().splitlines()
        mounts = mountinfo.read_text().splitlines()
    except OSError:
        return None
    own: dict[str, str] = {}
    for line in lines:
        number, controllers, path = [*line.split(":", 2), "", ""][:3]
        for controller in controllers.split(",") if number != "0" else [""]:
            own[controller] = path
    v1 = _mount_point(mounts, "cgroup", "memory")
    if v1 is not None and "memory" in own:
        folder = Path(v1 + own["memory"])
        if _writable(folder) and (folder / "memory.limit_in_bytes").exists():
            return CgroupPlace(1, folder)
    v2 = _mount_point(mounts, "cgroup2", None)
    if v2 is not None and "" in own:
        here = Path(v2 + own[""])
        for folder in (here, here.parent) if own[""] != "/" else (here,):
            if _memory_delegated(folder):
                return CgroupPlace(2, folder)
    return None


def _mount_point(mounts: list[str], fstype: str, option: str | None) -> str | None:
    """The mount point of a cgroup file system (with ``option`` among its super options)."""
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] != fstype:
            continue
        if option is None or option in tail[2].split(","):
            return fields[4].replace("\\040", " ")
    return None


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _memory_delegated(folder: Path) -> bool:
    """cgroup v2: children of ``folder`` get the memory controller and we may make them."""
    try:
        enabled = (folder / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False
    return "memory" in enabled and _writable(folder)
