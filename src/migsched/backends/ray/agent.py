"""The node agent: one per GPU node, owning that node's GPUs through the `local` or `nvml` backend.

`NodeAgent` is a plain class; the cluster backend turns it into a Ray actor pinned to its node
(`NodeAffinitySchedulingStrategy(node_id, soft=False)`), with two threads: one carries out
actions and answers questions (`execute`, `recover`, `energy`), the other waits for the node's
events (`next_events`, a long poll). A lock keeps the node backend single-threaded, and the wait
happens outside it, so an action never waits for a poll to time out.

The agent speaks the node backend's own language: GPU indices are the node's (0..k-1); the
cluster backend maps them to the core's global indices and back.

What the node emulates (`local`): the GPU models named by the node's Ray resources
`migsched_gpu:<MODEL>` (count = GPUs of that model), else `default_gpus` of the cluster's
`--gpu` model. With `nvml` the node's real GPUs are discovered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migsched.core.backend import Backend, GpuInfo, Recovery, RunSettings
from migsched.core.events import Action, Event
from migsched.errors import MigschedError
from migsched.hardware.catalog import GpuModel, get_model
from migsched.jobs.model import JobSpec

NODE_BACKENDS = ("local", "nvml")
GPU_RESOURCE_PREFIX = "migsched_gpu:"
NODE_RESOURCE_PREFIX = "migsched_node:"
AGENT_RESOURCE = "migsched_agent"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """How an agent builds its node backend (the same for every node of a run).

    Attributes:
        node_backend: "local" (emulated instances) or "nvml" (real MIG).
        run_dir: the run folder; each node keeps its logs and exit records in
            `<run_dir>/nodes/<node name>/` on its own disk.
        origin_unix: when the run began, so that every node's clock reads run time alike.
        default_model: the model a `local` node emulates when its resources name none.
        default_gpus: how many GPUs such a node emulates.
        mib_per_gib: `local`: MiB of RAM per GiB of instance memory.
        sample_interval_s: memory-sample period when the policy names none.
        nvml_options: `nvml`: manage_existing, allow_mig_change.
    """

    node_backend: str
    run_dir: str
    origin_unix: float
    default_model: str = "A100-40GB"
    default_gpus: int = 2
    mib_per_gib: float = 16.0
    sample_interval_s: float = 1.0
    nvml_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.node_backend not in NODE_BACKENDS:
            raise MigschedError(f"node_backend {self.node_backend!r} is not known; valid: {', '.join(NODE_BACKENDS)}")
        if self.default_gpus < 1:
            raise MigschedError(f"default_gpus must be at least 1, got {self.default_gpus}")


def emulated_models(resources: dict[str, float], default_model: str, default_gpus: int) -> list[GpuModel]:
    """The GPUs a `local` node emulates: from its `migsched_gpu:<MODEL>` resources, else the default."""
    named = sorted((k[len(GPU_RESOURCE_PREFIX):], int(v)) for k, v in resources.items()
                   if k.startswith(GPU_RESOURCE_PREFIX))
    if not named:
        return [get_model(default_model)] * default_gpus
    return [get_model(name) for name, count in named for _ in range(count)]


def node_name(resources: dict[str, float], ip: str, node_id: str) -> str:
    """A node's stable name: its `migsched_node:<name>` resource, else its IP (one node per host)."""
    for key in sorted(resources):
        if key.startswith(NODE_RESOURCE_PREFIX):
            return key[len(NODE_RESOURCE_PREFIX):]
    return ip or node_id[:12]


class NodeAgent:
    """Owns one node's GPUs through its node backend; see the module docstring.

    Args:
        config: the run's agent configuration.
        name: the node's name (its folder under `<run_dir>/nodes/`).
        resources: the node's Ray resources (what it emulates, for `local`).
        instances: per local GPU, emulated instances that exist already (a resumed run).
    """

    def __init__(self, config: AgentConfig, name: str, resources: dict[str, float],
                 instances: Sequence[Sequence[tuple[str, int]]] | None = None, mig_off: Sequence[int] = ()) -> None:
        self.config = config
        self.name = name
        self.node_dir = Path(config.run_dir) / "nodes" / name
        self._lock = threading.Lock()
        self._backend = self._make_backend(resources, instances, mig_off)

    def _make_backend(self, resources: dict[str, float], instances, mig_off: Sequence[int] = ()) -> Backend:
        """The node's backend; `mig_off`: local GPUs an earlier agent turned MIG off on (a `local`
        node emulates them so; an `nvml` node reads the mode from its GPUs)."""
        c = self.config
        if c.node_backend == "nvml":
            from migsched.backends.nvml.backend import NvmlBackend
            owned = {(g, s) for g, lst in enumerate(instances or []) for _p, s in lst}
            return NvmlBackend(self.node_dir, owned=owned, origin_unix=c.origin_unix,
                               sample_interval_s=c.sample_interval_s, **c.nvml_options)
        from migsched.backends.local.backend import LocalBackend
        models = emulated_models(resources, c.default_model, c.default_gpus)
        return LocalBackend(models, self.node_dir, mib_per_gib=c.mib_per_gib, instances=instances,
                            origin_unix=c.origin_unix, sample_interval_s=c.sample_interval_s, mig_off=mig_off)

    def open(self, settings: RunSettings) -> list[GpuInfo]:
        """Prepare the node and report its GPUs (local indices)."""
        with self._lock:
            return self._backend.open(settings)

    def execute(self, actions: Sequence[Action]) -> None:
        """Carry out actions on this node (local GPU indices); answers come from `next_events`."""
        with self._lock:
            self._backend.execute(actions)

    def next_events(self, wait_s: float) -> list[Event]:
        """The node's events as soon as there are any, or [] after `wait_s` (a long poll)."""
        deadline = time.monotonic() + wait_s
        tick_s = getattr(self._backend, "tick_s", 0.05)
        while True:
            with self._lock:
                events = self._backend.poll(self._backend.clock.now_s())
            if events:
                return events
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            time.sleep(min(tick_s, left))

    def recover(self, spec: JobSpec, attempt: int, gpu: int, start: int, handle: str, launched_s: float | None,
                stopping: bool) -> Recovery:
        """`Backend.recover` on this node (an agent that restarted, or a resumed run)."""
        with self._lock:
            return self._backend.recover(spec, attempt, gpu, start, handle, launched_s=launched_s, stopping=stopping)

    def energy(self, until_s: float) -> tuple[list[float], list[list[tuple[float, float]]], dict[str, float]]:
        """Per local GPU: energy to `until_s` and the power series; energy per job where measured."""
        with self._lock:
            be = self._backend
            return be.energy_j(until_s), be.power_series(), dict(getattr(be, "job_energy_j", {}) or {})

    def stop_all(self) -> None:
        """Stop every job of this node (used by tests and when a run is abandoned)."""
        with self._lock:
            stop = getattr(self._backend, "stop_all", None)
            if stop is not None:
                stop()

    def close(self) -> None:
        """Release the node backend; running jobs keep running (a resumed run adopts them)."""
        with self._lock:
            self._backend.close()

    def ping(self) -> str:
        """The node's name (a liveness check)."""
        return self.name

