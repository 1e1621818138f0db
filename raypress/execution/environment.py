"""What a post's outputs were measured on: interpreter, machine, imported package versions."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raypress.execution.model import Environment


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """The parts of an Environment that are the same for every session of a build."""

    python: str
    platform: str
    cpu: str
    cpu_count: int
    isolation: str = ""  # "" when full; else "reduced — …"


def machine_info() -> MachineInfo:
    """Describe this interpreter and machine."""
    import platform  # not at the top: sessions import this module, and only the build needs it

    return MachineInfo(
        python=platform.python_version(),
        platform=platform.platform(terse=True),
        cpu=cpu_model(),
        cpu_count=os.cpu_count() or 1,
    )


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 7B13"), or the architecture when unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def package_versions(names: set[str]) -> tuple[tuple[str, str], ...]:
    """Versions of the imported, non-standard top-level packages among ``names``."""
    found = []
    for name in sorted(names):
        module = sys.modules.get(name)
        if module is None or name in sys.stdlib_module_names or name.startswith("_"):
            continue
        version = getattr(module, "__version__", None)
        if not isinstance(version, str):
            import importlib.metadata  # slow to import: only when a module has no __version__

            try:
                version = importlib.metadata.version(name)
            except (importlib.metadata.PackageNotFoundError, ValueError):
                continue
        found.append((name, version))
    return tuple(found)


def environment(
    machine: MachineInfo,
    packages: tuple[tuple[str, str], ...],
    ray_version: str | None,
    ray_cluster_cpus: float | None,
    isolation: str = "",
    ray_requested: str | None = None,
    ray_given: str | None = None,
) -> Environment:
    """Assemble an Environment (build side); ``isolation``: "" when full, else what the
    machine could not give ("reduced — …")."""
    from raypress.execution.model import Environment  # the fork server never needs it

    return Environment(
        python=machine.python,
        platform=machine.platform,
        cpu=machine.cpu,
        cpu_count=machine.cpu_count,
        packages=packages,
        ray_version=ray_version,
        ray_cluster_cpus=ray_cluster_cpus,
        isolation=isolation or machine.isolation,
        ray_requested=ray_requested,
        ray_given=ray_given,
    )
