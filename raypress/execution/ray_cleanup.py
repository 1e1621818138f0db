"""Session side: remove what a post's Ray jobs left on the build's cluster.

When a post ends (or, after a killed session, in a janitor session) its jobs' detached
actors are killed and their placement groups, detached or not, removed, so that nothing
a post reserved can starve a later one. The GCS tables (no dashboard needed) say which
job created what; unnamed detached actors have no handle a later driver could look up,
so one is rebuilt from the table entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType


def clean_up(ray: ModuleType, jobs: Sequence[str]) -> tuple[int, int]:
    """Kill the jobs' live detached actors and remove their placement groups (the driver
    must be connected); returns how many of each."""
    return kill_detached_actors(ray, jobs), remove_placement_groups(ray, jobs)


def kill_detached_actors(ray: ModuleType, jobs: Sequence[str]) -> int:
    """Kill the live detached actors created by ``jobs``."""
    from ray._private import state  # ray is imported by now
    from ray.core.generated import core_worker_pb2, gcs_pb2

    accessor = state.state._connect_and_get_accessor()
    core_worker = ray._private.worker.global_worker.core_worker
    killed = 0
    for job in jobs:
        for raw in accessor.get_actor_table(ray.JobID.from_hex(job), None):
            actor = gcs_pb2.ActorTableData.FromString(raw)
            if not actor.is_detached or actor.state == gcs_pb2.ActorTableData.DEAD:
                continue
            handle = core_worker_pb2.ActorHandle(
                actor_id=actor.actor_id,
                owner_id=actor.owner_address.worker_id,
                owner_address=actor.owner_address,
                creation_job_id=actor.job_id,
                actor_creation_task_function_descriptor=actor.function_descriptor,
                name=actor.name,
                ray_namespace=actor.ray_namespace,
                is_detached=True,
            )
            ray.kill(
                core_worker.deserialize_and_register_actor_handle(
                    handle.SerializeToString(), None, True
                ),
                no_restart=True,
            )
            killed += 1
    return killed


def remove_placement_groups(ray: ModuleType, jobs: Sequence[str]) -> int:
    """Remove the placement groups ``jobs`` created that are not removed yet."""
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    wanted = set(jobs)
    removed = 0
    for hex_id, entry in ray.util.placement_group_table().items():
        if entry.get("state") == "REMOVED" or _creator_job(ray, hex_id) not in wanted:
            continue
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(hex_id))))
        removed += 1
    return removed


def _creator_job(ray: ModuleType, hex_id: str) -> str:
    """The job that created a placement group (its id embeds the job's id, at the end)."""
    job_bytes = ray.JobID.size()
    return hex_id[-2 * job_bytes :]
