"""Cluster scenarios for tests/test_ray_cluster.py, run inside a private namespace (netns.py).

Usage: python scenario.py kill-node WORKDIR

`kill-node`: a local cluster of three nodes, two emulated GPUs each (node-2 emulates A100-80GB,
the others A100-40GB: nodes may differ), a batch of marker jobs under serial (one job per GPU, so every node runs some); once jobs run on
node-1, node-1 dies the way a machine does (its raylet, its agent and its job processes are
killed at once). Writes WORKDIR/result.json: each job's state and attempts, the nodes' notes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil

from migsched.backends.ray.local_cluster import LocalCluster
from migsched.live.session import start_run
from migsched.run import drive, result_of

HERE = Path(__file__).resolve().parent
JOBS = 10
JOB_S = 3.0


def kill_node(cluster: LocalCluster, name: str, run_dir: Path) -> int:
    """Node `name` dies as a machine does: its raylet and everything under it (agent, supervisors,
    jobs) are SIGKILLed at once, then Ray is told the node is gone; no process of it survives to
    report an exit or write a marker."""
    raylet = cluster.nodes[name].all_processes["raylet"][0].process.pid
    mark = str(run_dir / "nodes" / name)
    victims = []
    for root in [psutil.Process(raylet)]:
        victims += [root, *root.children(recursive=True)]
    for proc in psutil.process_iter(["cmdline"]):  # supervisors whose parent already went
        try:
            if any(mark in part for part in proc.info["cmdline"] or []):
                victims += [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
    for proc in victims:
        try:
            proc.kill()
        except psutil.Error:
            pass
    cluster.remove(name)
    return len(victims)


class KillWhenBusy:
    """Observer: kills node-1 as soon as jobs have started on both of its GPUs."""

    def __init__(self, cluster: LocalCluster, backend, run_dir: Path) -> None:
        self.cluster, self.backend, self.run_dir = cluster, backend, run_dir
        self.killed_s: float | None = None
        self.victims = 0
        self.on_node: list[str] = []

    def after_handle(self, core, events) -> None:
        if self.killed_s is not None:
            return
        nodes = self.backend.gpu_nodes()
        here = [j for j in core.view.running.values() if j.launched_s is not None and nodes[j.gpu] == "node-1"]
        if len(here) >= 2:
            self.on_node = sorted(j.job_id for j in here)
            self.victims = kill_node(self.cluster, "node-1", self.run_dir)
            self.killed_s = core.view.now_s

    def before_execute(self, core, actions) -> None:
        pass


def kill_node_scenario(work: Path) -> dict:
    markers = work / "markers"
    markers.mkdir(parents=True)
    tasks = work / "tasks.txt"
    tasks.write_text("".join(f"{sys.executable} {HERE / 'job.py'} {markers} j{i:02d} {JOB_S}\n" for i in range(JOBS)))
    t0 = time.monotonic()
    cluster = LocalCluster([{"A100-40GB": 2}, {"A100-40GB": 2}, {"A100-80GB": 2}])
    try:
        started_s = time.monotonic() - t0
        session = start_run(tasks, backend="ray", gpu="A100-40GB", gpus=2, policy="serial", state=work / "run.db",
                            backend_options={"address": cluster.address, "node_backend": "local"})
        obs = KillWhenBusy(cluster, session.backend, session.run_dir)
        last_s = drive(session.core, session.backend, session.source, _Both(session.recorder, obs))
        res = result_of(session.core, session.backend, last_s, time.monotonic() - t0)
        notes = session.backend.node_notes()
        gpus = [(g.index, g.model.name, g.uuid) for g in session.core.view.gpus]
        session.backend.close()
        session.store.close()
    finally:
        cluster.stop()
    done = {}
    for f in markers.glob("*.done"):
        done.setdefault(f.name.split(".")[0], []).append(f.name)
    return {"cluster_start_s": started_s, "killed_s": obs.killed_s, "victims": obs.victims, "on_node": obs.on_node,
            "jobs": {j.job_id: {"state": j.state, "outcomes": list(j.outcomes)} for j in res.jobs},
            "done_markers": done, "notes": list(notes), "gpus": gpus, "energy_per_gpu_j": list(res.energy_per_gpu_j)}


class _Both:
    def __init__(self, *observers) -> None:
        self.observers = observers

    def after_handle(self, core, events) -> None:
        for o in self.observers:
            o.after_handle(core, events)

    def before_execute(self, core, actions) -> None:
        for o in self.observers:
            o.before_execute(core, actions)


if __name__ == "__main__":
    mode, workdir = sys.argv[1], Path(sys.argv[2])
    if mode != "kill-node":
        raise SystemExit(f"unknown scenario {mode!r}; valid: kill-node")
    out = kill_node_scenario(workdir)
    (workdir / "result.json").write_text(json.dumps(out, indent=1, default=str))
