"""Session side: a Ray driver that cannot see the raylet's process finds its node anyway.

``ray.init(address)`` picks the node to attach to among the raylets it finds by scanning
the machine's processes. A sandboxed session has a PID namespace of its own, so it sees
none; :func:`patch_node_discovery` makes Ray ask the cluster's GCS for its live nodes
instead when the scan finds nothing (Ray then picks the one on the session's address,
as it always does).
"""

from __future__ import annotations

from types import ModuleType


def patch_node_discovery(ray: ModuleType, address: str) -> None:
    """Make ``ray._private.services.find_node_ids`` fall back to the GCS's node list."""
    services = ray._private.services
    scan = getattr(services, "_raypress_process_scan", None) or services.find_node_ids

    def find_node_ids() -> list[str]:
        found = scan()
        return found if found else _live_nodes(ray, address)

    services._raypress_process_scan = scan
    services.find_node_ids = find_node_ids


def _live_nodes(ray: ModuleType, address: str) -> list[str]:
    from ray._raylet import GcsClient
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    try:
        nodes = GcsClient(address=address).get_all_node_info(
            timeout=10, state_filter=GcsNodeInfo.GcsNodeState.ALIVE
        )
    except Exception:
        return []
    return [_hex(info.node_id) for info in nodes.values()]


def _hex(node_id: object) -> str:
    return node_id.hex() if isinstance(node_id, bytes) else str(node_id.hex())  # type: ignore[attr-defined]
