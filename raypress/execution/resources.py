"""What a post's session asks for (front matter ``resources``) against what there is.

A request no node can meet fails the post at once, with a problem on its front-matter
line, instead of waiting in Ray's queue until the snippet timeout. On the build machine
(sessions run locally) the "node" is this machine: its CPUs, memory and NVIDIA GPUs, and
no custom resources.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

# front-matter names -> Ray's resource names
RAY_NAMES = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}


def ray_resources(request: Sequence[tuple[str, float]]) -> dict[str, float]:
    """A front-matter request in Ray's names (``num_gpus`` -> ``GPU``)."""
    return {RAY_NAMES.get(name, name): amount for name, amount in request}


def this_machine() -> dict[str, float]:
    """The resources of the build machine, in Ray's names (GPUs as Ray counts them)."""
    from raypress.execution.ray_pool import machine_gpus, machine_memory

    return {
        "CPU": float(os.cpu_count() or 1),
        "GPU": float(machine_gpus()),
        "memory": float(machine_memory()),
    }


def unmet(
    request: Sequence[tuple[str, float]], nodes: Sequence[Mapping[str, float]], where: str
) -> str | None:
    """Why no node among ``nodes`` (each a mapping of Ray resource totals) can hold the
    request, or None when one can. ``where`` names the nodes in the message."""
    wanted = {k: v for k, v in ray_resources(request).items() if v > 0}
    if not wanted or any(all(node.get(k, 0.0) >= v for k, v in wanted.items()) for node in nodes):
        return None
    asked = ", ".join(f"{name}: {amount:g}" for name, amount in request if amount > 0)
    largest = {k: max((node.get(k, 0.0) for node in nodes), default=0.0) for k in wanted}
    have = ", ".join(f"{k}: {_amount(k, v)}" for k, v in largest.items())
    return f"the post asks for {{{asked}}} for its session, more than {where} has ({have})"


def _amount(name: str, value: float) -> str:
    return f"{value / (1 << 30):.1f} GiB" if name == "memory" else f"{value:g}"
