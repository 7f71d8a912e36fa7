"""`ray`: the same scheduler over a Ray cluster, one node agent per GPU node.

* `agent.NodeAgent` — a Ray actor pinned to its node (node-affinity scheduling, not soft), which
  owns that node's GPUs through the `local` or `nvml` backend and hands its events on;
* `cluster.RayBackend` — the core's one backend for the whole cluster: it discovers every node's
  GPUs and layouts, numbers them 0..N-1 for the core (and maps each to (node, local index)),
  routes each action to its node, merges the nodes' events in time order, and turns a node that
  died into `GpuLost` events (its jobs are requeued and finish elsewhere);
* `local_cluster.LocalCluster` — a throw-away multi-node cluster on this machine, for
  `migsched run --backend ray` without `--address` and for the tests.

Ray is optional (`pip install 'migsched[ray]'`); nothing here imports it until a backend is
built, and `require_ray` says how to install it. Deployment: docs/ray.md.
"""

from __future__ import annotations

from types import ModuleType

from migsched.errors import MigschedError

INSTALL_HINT = "--backend ray needs Ray: pip install 'migsched[ray]'"


class RayMissingError(MigschedError):
    """Ray is not installed (the message says how to install it)."""


def require_ray() -> ModuleType:
    """The `ray` module, or a `RayMissingError` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise RayMissingError(INSTALL_HINT) from None
    return ray
