"""What a post's ``ray.init(...)`` asks of its cluster, and how to say it on the page.

A :class:`ClusterShape` is the part of ``ray.init``'s arguments that sizes a local
cluster: ``num_cpus``, ``num_gpus``, ``resources`` and ``object_store_memory``. The
session builds one from the call it intercepts (:func:`shape_from_kwargs`), the build
process predicts one from the post's source before the call happens
(:func:`predict_shape`, so the cluster can be starting while earlier snippets run), and
both sides print resources the same way (:func:`describe_resources`). Imported by the
fork server: standard library only.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SHAPE_ARGS = ("num_cpus", "num_gpus", "resources", "object_store_memory")
OBJECT_STORE_MINIMUM = 75 * 1024 * 1024  # Ray's own floor (ray_constants)
_UNITS = (("GB", 1e9), ("MB", 1e6), ("kB", 1e3))
_PREDEFINED = {"CPU", "GPU", "memory", "object_store_memory"}


class ShapeError(ValueError):
    """``ray.init``'s resource arguments are not something a cluster can be started with."""


@dataclass(frozen=True, slots=True)
class ClusterShape:
    """The resources a cluster is started with; None: Ray's own default."""

    num_cpus: int | None = None
    num_gpus: int | None = None
    resources: tuple[tuple[str, float], ...] = ()  # custom resources, sorted by name
    object_store_memory: int | None = None  # bytes

    def requested(self) -> str:
        """The arguments as the post wrote them: ``num_cpus=4`` (or "Ray's defaults")."""
        parts = []
        if self.num_cpus is not None:
            parts.append(f"num_cpus={self.num_cpus}")
        if self.num_gpus is not None:
            parts.append(f"num_gpus={self.num_gpus}")
        if self.resources:
            parts.append(f"resources={dict(self.resources)!r}")
        if self.object_store_memory is not None:
            parts.append(f"object_store_memory={self.object_store_memory}")
        return ", ".join(parts) or "Ray's defaults"

    def start_args(self) -> list[str]:
        """``ray start`` flags for this shape (flags left out take Ray's defaults)."""
        args = []
        if self.num_cpus is not None:
            args.append(f"--num-cpus={self.num_cpus}")
        if self.num_gpus is not None:
            args.append(f"--num-gpus={self.num_gpus}")
        if self.resources:
            args.append(f"--resources={json.dumps(dict(self.resources), sort_keys=True)}")
        if self.object_store_memory is not None:
            args.append(f"--object-store-memory={self.object_store_memory}")
        return args

    def to_json(self) -> dict[str, Any]:
        return {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "resources": [[name, amount] for name, amount in self.resources],
            "object_store_memory": self.object_store_memory,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterShape:
        """Inverse of :meth:`to_json`; ShapeError when malformed (it comes from a session)."""
        try:
            return shape_from_kwargs(
                {
                    "num_cpus": data["num_cpus"],
                    "num_gpus": data["num_gpus"],
                    "resources": {str(k): v for k, v in data["resources"]},
                    "object_store_memory": data["object_store_memory"],
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ShapeError(f"malformed cluster shape: {exc}") from None


def shape_from_kwargs(kwargs: Mapping[str, Any]) -> ClusterShape:
    """The shape ``ray.init(**kwargs)`` asks for (other keys ignored); ShapeError if invalid."""
    num_cpus = _count(kwargs.get("num_cpus"), "num_cpus")
    num_gpus = _count(kwargs.get("num_gpus"), "num_gpus")
    resources = kwargs.get("resources")
    pairs: list[tuple[str, float]] = []
    if resources is not None:
        if not isinstance(resources, Mapping):
            raise ShapeError(f"resources must be a dict, not {type(resources).__name__}")
        for name, amount in resources.items():
            if not isinstance(name, str) or not name:
                raise ShapeError(f"resources: {name!r} is not a resource name")
            if name in _PREDEFINED:
                raise ShapeError(
                    f"resources: use num_cpus, num_gpus or object_store_memory, not {name!r}"
                )
            if isinstance(amount, bool) or not isinstance(amount, int | float):
                raise ShapeError(f"resources[{name!r}] must be a number")
            if not math.isfinite(amount) or amount < 0:
                raise ShapeError(f"resources[{name!r}] must be a non-negative number")
            pairs.append((name, float(amount)))
    store = kwargs.get("object_store_memory")
    if store is not None:
        if isinstance(store, bool) or not isinstance(store, int):
            raise ShapeError("object_store_memory must be a whole number of bytes")
        if store < OBJECT_STORE_MINIMUM:
            raise ShapeError(
                f"object_store_memory={store} is below Ray's minimum of "
                f"{OBJECT_STORE_MINIMUM} bytes ({size_text(OBJECT_STORE_MINIMUM)})"
            )
    return ClusterShape(num_cpus, num_gpus, tuple(sorted(pairs)), store)


def _count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ShapeError(f"{name} must be a whole number, not {value!r}")
    if value < 0:
        raise ShapeError(f"{name} must not be negative")
    return value


def predict_shape(sources: Iterable[str]) -> ClusterShape | None:
    """The shape of the first ``ray.init(...)`` call in ``sources`` whose resource
    arguments are literals; None when there is none (or it cannot be known before it runs)."""
    for source in sources:
        if "init" not in source:
            continue
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _is_ray_init(node.func):
                return _literal_shape(node)
    return None


def _is_ray_init(func: ast.expr) -> bool:
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "init"
        and isinstance(func.value, ast.Name)
        and func.value.id == "ray"
    )


def _literal_shape(call: ast.Call) -> ClusterShape | None:
    kwargs: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:  # ray.init(**config): unknown until it runs
            return None
        if keyword.arg in SHAPE_ARGS:
            try:
                kwargs[keyword.arg] = ast.literal_eval(keyword.value)
            except ValueError:
                return None
    if call.args and not (
        isinstance(call.args[0], ast.Constant) and call.args[0].value in (None, "auto", "local")
    ):
        return None
    try:
        return shape_from_kwargs(kwargs)
    except ShapeError:
        return None


def describe_resources(resources: Mapping[str, float]) -> str:
    """``4 CPUs, 0 GPUs, special: 2`` from Ray's ``cluster_resources()`` (memory left out:
    Ray sizes it from what the machine has free at the moment it starts)."""
    cpus = resources.get("CPU", 0.0)
    gpus = resources.get("GPU", 0.0)
    parts = [_plural(cpus, "CPU"), _plural(gpus, "GPU")]
    for name, amount in sorted(resources.items()):
        if name in _PREDEFINED or name.startswith("node:") or name.startswith("accelerator_"):
            continue
        parts.append(f"{name}: {_number(amount)}")
    return ", ".join(parts)


def _plural(amount: float, unit: str) -> str:
    return f"{_number(amount)} {unit}{'' if amount == 1 else 's'}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def size_text(size: float) -> str:
    """Bytes for a message: ``2.1 GB``."""
    for unit, scale in _UNITS:
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} bytes"
