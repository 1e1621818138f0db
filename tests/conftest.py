"""Shared pytest fixtures."""

# ---- raypress.execution: fork server and one Ray cluster per test session -------------
# (owned by the execution work; fixtures `executor` and `ray_executor`, helpers in
# tests/conftest_execution.py)
# ---- multi-node Ray: `ray start` nodes on loopback addresses, stopped by process group ---
# (fixture `two_node_cluster`; `local_cluster(...)` for other shapes; tests/conftest_cluster.py)
from conftest_cluster import two_node_cluster  # noqa: F401
from conftest_execution import executor, ray_executor  # noqa: F401

# ---- end raypress.execution ----------------------------------------------------------
# ---- publishing: temporary projects built with the real CLI ----------------------------
# (owned by the publishing tests; fixtures `project` and `make_project`, helpers in
# tests/conftest_publishing.py)
from conftest_publishing import make_project, project  # noqa: F401

# ---- end publishing ------------------------------------------------------------------
