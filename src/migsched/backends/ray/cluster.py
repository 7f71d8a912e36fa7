"""`RayBackend`: one backend for the core over every GPU node of a Ray cluster.

Discovery: every alive node that carries the `migsched_agent` resource (every alive node when
none does) gets a `NodeAgent` pinned to it; the agents' GPUs are numbered for the core in node
order (by node name), GPU by GPU, and each global index maps to (node, local index). The map is
kept in `<run_dir>/ray-gpus.json`, so a resumed run numbers the GPUs as before: a node that is
gone keeps its indices (reported lost at once), a node that joined since gets new ones.

Routing: an action goes to the node that holds its GPU (a kill to the node its job runs on),
with the GPU index made local; the agent's answers come back with the index made global again.
Each call of `execute` hands every node its share and waits until each node has started them
(Ray keeps no order between calls to a threaded actor, so the next batch must not overtake).

Events: each agent has one long poll outstanding (`next_events`); `poll` waits on all of them
with `ray.wait`, and returns what arrived sorted by time (the nodes share the run's clock origin).

Faults: a node whose agent cannot be reached (the node died or left) is lost: `GpuLost` for each
of its GPUs, so the core requeues its jobs (they finish elsewhere) and no policy uses it again.
An agent that died on a node that is still alive is started again and reconciles: it adopts the
instances the core knows of and asks its node backend what became of each job (`recover`: still
running -> adopted; ended -> its exit; never started -> requeued).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from migsched.backends.ray import require_ray
from migsched.backends.ray.agent import AGENT_RESOURCE, AgentConfig, NodeAgent
from migsched.backends.ray.joining import JOIN_POLL_S, NodeWatch
from migsched.core.backend import Backend, Capabilities, GpuInfo, Recovery, RunSettings
from migsched.core.clock import WallClock
from migsched.core.events import (
    Action, ActionFailed, CreateInstance, DestroyInstance, Event, ExitStatus, GpuLost, InstanceCreated,
    InstanceDestroyed, JobExited, JobStarted, Kill, Launch, MemorySample, MigModeSet, Reject, SetMigMode,
)
from migsched.errors import MigschedError
from migsched.hardware.catalog import get_model
from migsched.jobs.model import JobSpec

LONG_POLL_S = 0.5  # one agent wait; bounded so that a lost node is noticed within it
MAP_FILE = "ray-gpus.json"
# The agent's worker process must not take the job supervisors with it when it exits: Ray 2.x
# kills a worker's direct children when the worker exits (`ray.kill`, the driver's end), which
# would orphan the jobs without an exit record (and a requeued job would then run twice).
# Measured with Ray 2.60: with this off, supervisors outlive `ray.kill` of the agent and the
# scheduler's SIGKILL; a SIGKILLed worker never killed them. Raylet-level
# `RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper` (default off) must stay off.
AGENT_ENV = {"RAY_kill_child_processes_on_worker_exit": "false"}


@dataclass(slots=True)
class _Node:
    """One node: its agent, its GPUs (global indices) and what is in flight there."""

    name: str
    node_id: str
    resources: dict[str, float]
    agent: Any = None
    gpus: list[int] = field(default_factory=list)
    jobs: dict[str, Launch] = field(default_factory=dict)       # launched, not yet exited
    # instance and MIG-mode actions sent and not answered: (kind, gpu, start or on) -> the action
    pending: dict[tuple[str, int, int], Action] = field(default_factory=dict)
    poll_ref: Any = None
    lost: str = ""  # why, once the node is lost
    restarts: int = 0
    ready: bool = True  # False while a joining node's agent starts


class RayBackend(NodeWatch, Backend):
    """The core's backend over a Ray cluster; see the module docstring.

    Args:
        config: how each node's agent builds its node backend.
        address: the cluster to connect to; None starts a `LocalCluster` of `nodes` nodes here
            (stopped again by `close`).
        nodes: nodes of that local cluster.
        instances: per global GPU, emulated instances that exist already (a resumed run).
        agent_restarts: how often an agent that died on a live node is started again.
    """

    name = "ray"
    default_sample_interval_s = 1.0

    def __init__(self, config: AgentConfig, *, address: str | None = None, nodes: int = 2,
                 instances: Sequence[Sequence[tuple[str, int]]] | None = None, agent_restarts: int = 3,
                 mig_off: Sequence[int] = ()) -> None:
        self._ray = require_ray()
        if address is None and nodes < 1:
            raise MigschedError(f"--nodes must be at least 1 for a local Ray cluster, got {nodes}")
        self.config = config
        self.address = address
        self.nodes_wanted = nodes
        self._instances = [list(x) for x in instances] if instances is not None else None
        self.agent_restarts = agent_restarts
        mig = "real" if config.node_backend == "nvml" else "emulated"
        energy = "measured" if config.node_backend == "nvml" else "modelled"
        # MIG per GPU during the run: local nodes emulate it; nvml nodes only where MIG changes are allowed
        toggle = config.node_backend != "nvml" or bool(config.nvml_options.get("allow_mig_change"))
        self.capabilities = Capabilities(mig=mig, energy=energy, progress=True, clock="wall", resume=True,
                                         mig_toggle=toggle)
        self._off: set[int] = set(mig_off)  # global GPUs with MIG off (a resumed run's, then as changed)
        self._clock = WallClock(config.origin_unix)
        self.local_cluster = None
        self._nodes: dict[str, _Node] = {}
        self._where: list[tuple[str, int]] = []  # global GPU -> (node name, local index)
        self._models: list[str] = []  # global GPU -> model name
        self._known: list[dict[int, str]] = []  # global GPU -> confirmed instances {start: profile}
        self._ready: list[Event] = []
        self._settings: RunSettings | None = None
        self.events_processed = 0
        self.job_energy_j: dict[str, float] = {}
        # at close: (time, energy per GPU, power series per GPU), so figures outlive the cluster
        self._energy: tuple[float, list[float], list[list[tuple[float, float]]]] | None = None
        self._closed = False
        self._joining: dict[Any, str] = {}  # agent `open` in flight -> name of the joining node
        self._next_node_check_s = 0.0
        self._agent_tag = False  # whether only nodes with the agent resource get an agent

    @property
    def clock(self) -> WallClock:
        return self._clock

    # ---- discovery ---------------------------------------------------------------------------
    def open(self, settings: RunSettings) -> list[GpuInfo]:
        ray = self._ray
        self._settings = settings
        if self.address is None:
            from migsched.backends.ray.local_cluster import LocalCluster
            self.local_cluster = LocalCluster([None] * self.nodes_wanted)
            address = self.local_cluster.address
        else:
            address = self.address
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        alive = [n for n in ray.nodes() if n.get("Alive")]
        tagged = [n for n in alive if AGENT_RESOURCE in n.get("Resources", {})]
        self._agent_tag = bool(tagged)
        for n in tagged or alive:
            self._new_node(n)
        self._next_node_check_s = time.monotonic() + JOIN_POLL_S
        if not self._nodes:
            raise MigschedError(f"the Ray cluster at {address!r} has no alive node to run an agent on")
        infos = self._discover()
        self._write_map()
        return infos

    def _discover(self) -> list[GpuInfo]:
        """Start the agents, number their GPUs (the stored order first), report every GPU."""
        found: dict[str, list[GpuInfo]] = {}
        refs = {name: self._start_agent(node, self._initial_for(name), self._off_for(name))
                for name, node in sorted(self._nodes.items())}
        for name, ref in refs.items():
            try:
                found[name] = self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:
                self._nodes[name].lost = f"its agent did not start: {_short(exc)}"
        order = self._read_map()
        known = {(n, i) for n, i, _m in order}
        for name in sorted(found):
            order += [(name, g.index, g.model.name) for g in found[name] if (name, g.index) not in known]
        infos: list[GpuInfo] = []
        for index, (name, local, model) in enumerate(order):
            self._where.append((name, local))
            self._models.append(model)
            self._known.append({})
            node = self._nodes.get(name)
            info = next((g for g in found.get(name, []) if g.index == local), None)
            if node is None or info is None:  # gone since the run began: lost at once
                infos.append(GpuInfo(index, get_model(model), f"LOST-{name}-{local}",
                                     self._settings.mig_enabled if self._settings else True))
                self._ready.append(GpuLost(self._clock.now_s(), index, f"node {name} is gone"))
                continue
            node.gpus.append(index)
            self._known[index] = {i.start: i.profile for i in info.instances}
            (self._off.discard if info.mig_enabled else self._off.add)(index)
            infos.append(replace(info, index=index, uuid=f"{name}/{info.uuid}"))
        return infos

    def _start_agent(self, node: _Node, instances: list[list[tuple[str, int]]] | None, mig_off: Sequence[int] = ()):
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        actor = ray.remote(NodeAgent).options(
            num_cpus=0, max_concurrency=2, max_restarts=0, runtime_env={"env_vars": dict(AGENT_ENV)},
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False))
        node.agent = actor.remote(self.config, node.name, node.resources, instances, tuple(mig_off))
        return node.agent.open.remote(self._settings)

    def _initial_for(self, name: str) -> list[list[tuple[str, int]]] | None:
        """The instances a resumed run hands node `name` (by local index), from the stored map."""
        if self._instances is None:
            return None
        per: dict[int, list[tuple[str, int]]] = {}
        for index, (n, local, _m) in enumerate(self._read_map()):
            if n == name and index < len(self._instances):
                per[local] = self._instances[index]
        return [per.get(i, []) for i in range(max(per, default=-1) + 1)]

    def _off_for(self, name: str) -> list[int]:
        """The local GPUs of node `name` that a resumed run's earlier session turned MIG off on."""
        return [local for index, (n, local, _m) in enumerate(self._read_map()) if n == name and index in self._off]

    def _map_path(self) -> Path:
        return Path(self.config.run_dir) / MAP_FILE

    def _read_map(self) -> list[tuple[str, int, str]]:
        try:
            return [(e["node"], int(e["local"]), e["model"]) for e in json.loads(self._map_path().read_text())]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def _write_map(self) -> None:
        path = self._map_path()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        rows = [{"node": n, "local": i, "model": self._models[g],
                 "node_id": self._nodes[n].node_id if n in self._nodes else self._stored_names_r().get(n, "")}
                for g, (n, i) in enumerate(self._where)]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        tmp.replace(path)

    def _stored_names(self) -> dict[str, str]:
        """Ray node id -> node name, from the stored map (a resumed run names its nodes as before)."""
        try:
            return {e["node_id"]: e["node"] for e in json.loads(self._map_path().read_text()) if e.get("node_id")}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def _stored_names_r(self) -> dict[str, str]:
        return {name: nid for nid, name in self._stored_names().items()}

    # ---- actions -----------------------------------------------------------------------------
    def execute(self, actions: Sequence[Action]) -> None:
        now = self._clock.now_s()
        share: dict[str, list[Action]] = {}
        for a in actions:
            if isinstance(a, Reject):
                continue
            node, local = self._route(a)
            if node is None or node.lost:
                why = node.lost if node is not None else "no node holds it"
                if isinstance(a, Kill):
                    continue  # its node is lost: the core has its exit already (GpuLost)
                self._ready.append(ActionFailed(now, a, f"its node is lost: {why}"))
                continue
            if isinstance(a, Launch):
                node.jobs[a.job_id] = a
            elif isinstance(a, (CreateInstance, DestroyInstance)):
                node.pending[(type(a).__name__, a.gpu, a.start)] = a
            elif isinstance(a, SetMigMode):
                node.pending[("SetMigMode", a.gpu, a.enabled)] = a
            share.setdefault(node.name, []).append(a if local is None else replace(a, gpu=local))
        refs = {name: self._nodes[name].agent.execute.remote(acts) for name, acts in share.items()}
        for name, ref in refs.items():
            try:
                self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:
                self._agent_failed(self._nodes[name], exc)

    def _route(self, a: Action) -> tuple[_Node | None, int | None]:
        if isinstance(a, Kill):
            return next((n for n in self._nodes.values() if a.job_id in n.jobs), None), None
        gpu = a.gpu  # type: ignore[union-attr]
        if not 0 <= gpu < len(self._where):
            return None, None
        name, local = self._where[gpu]
        return self._nodes.get(name), local

    # ---- events ------------------------------------------------------------------------------
    def poll(self, until_s: float) -> list[Event] | None:
        ray = self._ray
        while True:
            self._watch_nodes()
            if self._ready:
                out, self._ready = sorted(self._ready, key=lambda e: e.time_s), []
                self.events_processed += len(out)
                return out
            live = [n for n in self._nodes.values() if not n.lost and n.ready]
            if until_s == math.inf and not any(n.jobs or n.pending for n in live):
                return None
            now = self._clock.now_s()
            if now >= until_s:
                return []
            for n in live:
                if n.poll_ref is None:
                    n.poll_ref = n.agent.next_events.remote(LONG_POLL_S)
            by_ref = {n.poll_ref: n for n in live}
            if not by_ref:  # every node is lost: nothing more can happen but the deadline
                if until_s == math.inf:
                    return None
                time.sleep(min(0.1, max(0.0, until_s - now)))
                continue
            wait_s = min(LONG_POLL_S * 2, max(0.0, until_s - now))
            done, _ = ray.wait(list(by_ref), num_returns=1, timeout=wait_s)
            if done:
                more, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
                done = list(dict.fromkeys([*done, *more]))
            for ref in done:
                node = by_ref[ref]
                node.poll_ref = None
                try:
                    events = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    self._agent_failed(node, exc)
                    continue
                self._ready += [self._globalise(node, ev) for ev in events]

    def _globalise(self, node: _Node, ev: Event) -> Event:
        """An agent's event with the node's GPU index made global; settles what it confirms."""
        if isinstance(ev, ActionFailed):
            a = ev.action
            if isinstance(a, Launch):
                node.jobs.pop(a.job_id, None)
            if isinstance(a, (CreateInstance, DestroyInstance, Launch)):
                a = replace(a, gpu=node.gpus[a.gpu])
                node.pending.pop((type(a).__name__, a.gpu, a.start), None)
            elif isinstance(a, SetMigMode):
                a = replace(a, gpu=node.gpus[a.gpu])
                node.pending.pop(("SetMigMode", a.gpu, a.enabled), None)
            return replace(ev, action=a)
        if isinstance(ev, JobExited):
            node.jobs.pop(ev.job_id, None)
            return ev
        if isinstance(ev, MemorySample):
            return ev
        assert isinstance(ev, (InstanceCreated, InstanceDestroyed, JobStarted, MigModeSet)), ev
        g = node.gpus[ev.gpu]
        if isinstance(ev, MigModeSet):
            node.pending.pop(("SetMigMode", g, ev.enabled), None)
            (self._off.discard if ev.enabled else self._off.add)(g)
        if isinstance(ev, InstanceCreated):
            node.pending.pop(("CreateInstance", g, ev.start), None)
            self._known[g][ev.start] = ev.profile
        elif isinstance(ev, InstanceDestroyed):
            node.pending.pop(("DestroyInstance", g, ev.start), None)
            self._known[g].pop(ev.start, None)
        return replace(ev, gpu=g)

    # ---- faults ------------------------------------------------------------------------------
    def _agent_failed(self, node: _Node, exc: BaseException) -> None:
        """The agent of `node` cannot be reached: start it again if the node lives, else lose it."""
        if node.lost:
            return
        node.poll_ref = None
        alive = {n["NodeID"] for n in self._ray.nodes() if n.get("Alive")}
        if node.node_id in alive and node.restarts < self.agent_restarts:
            node.restarts += 1
            if self._restart_agent(node):
                return
        node.lost = f"node {node.name} was lost ({_short(exc)})"
        now = self._clock.now_s()
        node.jobs.clear()
        node.pending.clear()
        self._ready += [GpuLost(now, g, node.lost) for g in node.gpus]

    def _restart_agent(self, node: _Node) -> bool:
        """A fresh agent on a node that lives: adopt the known instances, reconcile the jobs."""
        instances = [[(p, s) for s, p in sorted(self._known[g].items())] for g in node.gpus]
        off = [local for local, g in enumerate(node.gpus) if g in self._off]
        try:
            self._ray.get(self._start_agent(node, instances, off))
        except self._ray.exceptions.RayError:
            return False
        now = self._clock.now_s()
        # Answers that died with the old agent: the new one came up with the instances and modes
        # confirmed so far (`_known`, `_off`), so each unanswered action failed. Destroys and
        # creates first: a MIG-mode change sent after them waited on them.
        for key in sorted(node.pending, key=lambda k: k[0] == "SetMigMode"):
            self._ready.append(ActionFailed(now, node.pending[key], "its node agent restarted before it answered"))
        node.pending.clear()
        for job_id, launch in list(node.jobs.items()):
            assert launch.spec is not None
            local = node.gpus.index(launch.gpu)
            try:
                rec: Recovery = self._ray.get(node.agent.recover.remote(
                    launch.spec, launch.attempt, local, launch.start, "", None, False))
            except (self._ray.exceptions.RayError, MigschedError) as exc:
                rec = Recovery("ended", exit=JobExited(now, job_id, ExitStatus.KILLED, 0.0,
                                                      f"its agent restarted and could not find it: {_short(exc)}",
                                                      launch.attempt))
            if rec.state == "absent":
                node.jobs.pop(job_id)
                self._ready.append(ActionFailed(now, launch, "its node agent restarted before it started"))
            elif rec.state == "ended":
                node.jobs.pop(job_id)
                assert rec.exit is not None
                self._ready.append(rec.exit)
        return True

    # ---- resume ------------------------------------------------------------------------------
    def recover(self, spec: JobSpec, attempt: int, gpu: int, start: int, handle: str, *,
                launched_s: float | None = None, stopping: bool = False) -> Recovery:
        node, local = self._route(Launch(spec.job_id, gpu, start))
        now = self._clock.now_s()
        if node is None or node.lost or local is None:
            return Recovery("ended", exit=JobExited(now, spec.job_id, ExitStatus.KILLED, 0.0,
                                                    "its node left the cluster while the scheduler was down", attempt))
        rec = self._ray.get(node.agent.recover.remote(spec, attempt, local, start, handle, launched_s, stopping))
        if rec.state == "running":
            node.jobs[spec.job_id] = Launch(spec.job_id, gpu, start, attempt, spec)
        return rec

    # ---- figures -----------------------------------------------------------------------------
    def _collect_energy(self, until_s: float) -> tuple[list[float], list[list[tuple[float, float]]]]:
        energy = [0.0] * len(self._where)
        series: list[list[tuple[float, float]]] = [[] for _ in self._where]
        for node in self._nodes.values():
            if node.lost or node.agent is None or not node.ready:
                continue
            try:
                e, s, per_job = self._ray.get(node.agent.energy.remote(until_s))
            except self._ray.exceptions.RayError:
                continue
            for local, g in enumerate(node.gpus):
                energy[g], series[g] = e[local], s[local]
            self.job_energy_j.update(per_job)
        return energy, series

    def energy_j(self, until_s: float) -> list[float]:
        if self._energy is None:  # still connected: ask the nodes
            return self._collect_energy(until_s)[0]
        # closed: the figures fetched at close, less the power drawn after `until_s`
        t_close, energy, series = self._energy
        return [e - _energy_between(s, until_s, t_close) for e, s in zip(energy, series)]

    def power_series(self) -> list[list[tuple[float, float]]]:
        return self._energy[2] if self._energy is not None else self._collect_energy(self._clock.now_s())[1]

    def node_notes(self) -> tuple[str, ...]:
        """One line per node for the summary: its GPUs and what became of it."""
        out = []
        for node in sorted(self._nodes.values(), key=lambda n: n.name):
            gpus = ", ".join(f"{g}" for g in node.gpus) or "none"
            out.append(f"ray node {node.name}: GPUs {gpus}" + (f"; {node.lost}" if node.lost else ""))
        return tuple(out)

    def gpu_nodes(self) -> list[str]:
        """Per global GPU, the name of the node that holds it."""
        return [n for n, _ in self._where]

    def close(self) -> None:
        """Disconnect; stop the local cluster if this backend started one (its jobs end with it)."""
        if self._closed:
            return
        self._closed = True
        # a local cluster dies with this run, so its jobs are stopped first; on a real cluster
        # they keep running for `--resume`
        if self._energy is None and self._where:
            t_close = self._clock.now_s()
            self._energy = (t_close, *self._collect_energy(t_close))
        how = "stop_all" if self.local_cluster is not None else "close"
        for node in self._nodes.values():
            if node.agent is not None and not node.lost:
                try:
                    self._ray.get(getattr(node.agent, how).remote(), timeout=30)
                except Exception:  # noqa: BLE001 - closing: a node that is gone has nothing to release
                    pass
        if self.local_cluster is not None:
            self.local_cluster.stop()
            self.local_cluster = None
        elif self._ray.is_initialized():
            self._ray.shutdown()


def _energy_between(series: Sequence[tuple[float, float]], t0_s: float, t1_s: float) -> float:
    """Joules a power series of (time, watts) steps draws between `t0_s` and `t1_s`."""
    total = 0.0
    for i, (t, w) in enumerate(series):
        t_next = series[i + 1][0] if i + 1 < len(series) else math.inf
        lo, hi = max(t, t0_s), min(t_next, t1_s)
        if hi > lo:
            total += w * (hi - lo)
    return total


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:100] if str(exc).strip() else type(exc).__name__
