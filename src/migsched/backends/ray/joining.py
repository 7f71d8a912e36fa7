"""Nodes that join a running cluster: `RayBackend`'s watch for new nodes (a mixin).

At most every `JOIN_POLL_S` the backend lists the cluster's nodes (`ray.nodes()`); an alive node
it does not know (by Ray node id) that may carry an agent (the `migsched_agent` resource, when
the run's nodes had it) gets one, started without waiting. Once the agent has opened its node,
its GPUs take the next global indices, the map file is rewritten (so `--resume` numbers them the
same way) and the core is told with one `GpuAdded` per GPU; from then on the node is polled and
routed to like the others.

A node that comes back after it was lost is a new Ray node (a new node id): it joins as a new
node, named `<name>-<first 8 hex of its node id>` when its name is taken, with new GPU numbers;
the lost node's GPUs stay fenced (their jobs were requeued when it was lost).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from migsched.backends.ray.agent import AGENT_RESOURCE, node_name
from migsched.core.events import GpuAdded

JOIN_POLL_S = 2.0  # how often the cluster's node list is read while a run goes on


class NodeWatch:
    """The join watch; mixed into `RayBackend` (uses its `_nodes`, `_where`, `_ready`, ...)."""

    _ray: Any
    _joining: dict[Any, str]
    _next_node_check_s: float
    _agent_tag: bool

    def _new_node(self, n: dict[str, Any]):
        """A `_Node` for Ray node `n`: its stored name (same node id), else its own, made unique."""
        from migsched.backends.ray.cluster import _Node
        res = dict(n.get("Resources", {}))
        name = self._stored_names().get(n["NodeID"]) or node_name(res, n.get("NodeManagerAddress", ""), n["NodeID"])
        if name in self._nodes:
            name = f"{name}-{n['NodeID'][:8]}"
        node = self._nodes[name] = _Node(name, n["NodeID"], res)
        return node

    def _watch_nodes(self) -> None:
        """Adopt joined nodes whose agent is up; at most every `JOIN_POLL_S`, look for new ones."""
        ray = self._ray
        if self._joining:
            ready, _ = ray.wait(list(self._joining), num_returns=len(self._joining), timeout=0)
            for ref in ready:
                self._joined(self._nodes[self._joining.pop(ref)], ref)
        now = time.monotonic()
        if now < self._next_node_check_s:
            return
        self._next_node_check_s = now + JOIN_POLL_S
        known = {n.node_id for n in self._nodes.values()}
        for n in ray.nodes():
            if not n.get("Alive") or n["NodeID"] in known:
                continue
            if self._agent_tag and AGENT_RESOURCE not in n.get("Resources", {}):
                continue
            node = self._new_node(n)
            node.ready = False
            self._joining[self._start_agent(node, None)] = node.name

    def _joined(self, node, ref) -> None:
        """The agent of a joining node answered `open`: number its GPUs and tell the core."""
        try:
            infos = self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:
            from migsched.backends.ray.cluster import _short
            node.lost = f"node {node.name} joined, but its agent did not start ({_short(exc)})"
            return
        now = self._clock.now_s()
        for info in sorted(infos, key=lambda g: g.index):
            index = len(self._where)
            self._where.append((node.name, info.index))
            self._models.append(info.model.name)
            self._known.append({i.start: i.profile for i in info.instances})
            node.gpus.append(index)
            self._ready.append(GpuAdded(now, replace(info, index=index, uuid=f"{node.name}/{info.uuid}")))
        node.ready = True
        self._write_map()

    def joining(self) -> list[str]:
        """Names of the nodes whose agent is starting (joined, not yet in use)."""
        return sorted(self._joining.values())


