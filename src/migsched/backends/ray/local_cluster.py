"""A throw-away Ray cluster of several nodes on this machine (no `--address`, and the tests).

Each node is a real raylet of its own (Ray's `cluster_utils.Cluster`), so agents on different
nodes are different processes under different raylets, and removing a node is what a node that
dies looks like to the head. Nodes carry the resources the agents look for: `migsched_agent`,
`migsched_node:node-<i>` (a stable name, so a resumed run finds its node folders again) and,
when given, `migsched_gpu:<MODEL>` (what the node emulates). Memory is kept small: each node
gets an 80 MiB object store, no dashboard.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from migsched.backends.ray import require_ray
from migsched.backends.ray.agent import AGENT_RESOURCE, GPU_RESOURCE_PREFIX, NODE_RESOURCE_PREFIX

OBJECT_STORE_BYTES = 80 * 1024 * 1024  # Ray's minimum is 75 MiB


class LocalCluster:
    """A head (no agent) plus one node per entry of `node_gpus`, started now, stopped by `stop`.

    Args:
        node_gpus: per node, {model: count} of emulated GPUs, or None for the run's default.
        num_cpus: CPUs each node advertises to Ray (the agents ask for none).
    """

    def __init__(self, node_gpus: Sequence[dict[str, int] | None], *, num_cpus: int = 1) -> None:
        ray = require_ray()
        from ray.cluster_utils import Cluster
        self._ray = ray
        self._num_cpus = num_cpus
        self.cluster = Cluster(initialize_head=True, head_node_args=self._node_args(None, None, head=True))
        self.nodes: dict[str, Any] = {}
        try:
            for i, gpus in enumerate(node_gpus):
                self.add(f"node-{i}", gpus)
        except BaseException:
            self.stop()
            raise

    @property
    def address(self) -> str:
        """The head's address, for `ray.init(address=...)` / `--address`."""
        return self.cluster.address

    def _node_args(self, name: str | None, gpus: dict[str, int] | None, head: bool = False) -> dict[str, Any]:
        res: dict[str, float] = {}
        if not head:
            res[AGENT_RESOURCE] = 1
            res[NODE_RESOURCE_PREFIX + str(name)] = 1
            for model, count in (gpus or {}).items():
                res[GPU_RESOURCE_PREFIX + model] = count
        args: dict[str, Any] = {"num_cpus": 0 if head else self._num_cpus, "resources": res,
                                "object_store_memory": OBJECT_STORE_BYTES}
        if head:
            args["include_dashboard"] = False
        return args

    def add(self, name: str, gpus: dict[str, int] | None = None) -> None:
        """Start one more node named `name` (a node that joins)."""
        self.nodes[name] = self.cluster.add_node(wait=True, **self._node_args(name, gpus))

    def remove(self, name: str) -> None:
        """Stop node `name` at once (a node that dies: its raylet and its workers are killed)."""
        node = self.nodes.pop(name)
        self.cluster.remove_node(node, allow_graceful=False)

    def stop(self) -> None:
        """Stop every node (this process's connection to the cluster first)."""
        with contextlib.suppress(Exception):
            if self._ray.is_initialized():
                self._ray.shutdown()
        self.cluster.shutdown()
        self.nodes.clear()
