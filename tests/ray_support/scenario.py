"""Cluster scenarios for tests/test_ray_cluster.py, run inside a private namespace (netns.py).

Usage: python scenario.py kill-node|kill-agent|resume WORKDIR

`kill-node`: a local cluster of three nodes, two emulated GPUs each (node-2 emulates A100-80GB,
the others A100-40GB: nodes may differ), a batch of marker jobs under serial (one job per GPU, so every node runs some); once jobs run on
node-1, node-1 dies the way a machine does (its raylet, its agent and its job processes are
killed at once). Writes WORKDIR/result.json: each job's state and attempts, the nodes' notes.
"""

from __future__ import annotations

import json
import sys
import threading
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


def marker_batch(work: Path, n: int) -> tuple[Path, Path]:
    """A task file of `n` marker jobs (job.py, JOB_S each) and the folder their markers go to."""
    markers = work / "markers"
    markers.mkdir(parents=True)
    tasks = work / "tasks.txt"
    tasks.write_text("".join(f"{sys.executable} {HERE / 'job.py'} {markers} j{i:02d} {JOB_S}\n" for i in range(n)))
    return markers, tasks


def running_on(core, backend, node: str) -> list:
    """The launched jobs running on `node`'s GPUs."""
    nodes = backend.gpu_nodes()
    return [j for j in core.view.running.values() if j.launched_s is not None and nodes[j.gpu] == node]


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
        here = running_on(core, self.backend, "node-1")
        if len(here) >= 2:
            self.on_node = sorted(j.job_id for j in here)
            self.victims = kill_node(self.cluster, "node-1", self.run_dir)
            self.killed_s = core.view.now_s

    def before_execute(self, core, actions) -> None:
        pass


def kill_node_scenario(work: Path) -> dict:
    markers, tasks = marker_batch(work, JOBS)
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


class KillAgentWhenBusy:
    """Observer: once the run goes, node-2 joins the cluster (in a thread: a node takes seconds to
    start); once jobs run on both of node-1's GPUs, node-1's agent actor is killed (`ray.kill`;
    the node stays). The backend must use node-2 live and start a new agent on node-1 that
    adopts its jobs."""

    def __init__(self, cluster: LocalCluster, backend) -> None:
        self.cluster, self.backend = cluster, backend
        self.killed_s: float | None = None
        self.on_node: list[str] = []
        self.joiner: threading.Thread | None = None
        self.gpus_added: list[int] = []

    def after_handle(self, core, events) -> None:
        if self.joiner is None:
            self.joiner = threading.Thread(target=self.cluster.add, args=("node-2", {"A100-80GB": 2}), daemon=True)
            self.joiner.start()
        self.gpus_added += [g.index for g in core.last_changes.gpus_added]
        if self.killed_s is not None:
            return
        here = running_on(core, self.backend, "node-1")
        if len(here) >= 2:
            import ray
            self.on_node = sorted(j.job_id for j in here)
            ray.kill(self.backend._nodes["node-1"].agent, no_restart=True)
            self.killed_s = core.view.now_s

    def before_execute(self, core, actions) -> None:
        pass


def kill_agent_scenario(work: Path) -> dict:
    markers, tasks = marker_batch(work, 12)
    cluster = LocalCluster([{"A100-40GB": 2}, {"A100-40GB": 2}])
    try:
        session = start_run(tasks, backend="ray", gpu="A100-40GB", gpus=2, policy="serial", state=work / "run.db",
                            backend_options={"address": cluster.address, "node_backend": "local"})
        obs = KillAgentWhenBusy(cluster, session.backend)
        last_s = drive(session.core, session.backend, session.source, _Both(session.recorder, obs))
        res = result_of(session.core, session.backend, last_s, 0.0)
        node = session.backend._nodes["node-1"]
        restarts, lost = node.restarts, node.lost
        notes = session.backend.node_notes()
        gpus = [(g.index, g.model.name, g.uuid) for g in session.core.view.gpus]
        session.backend.close()
        session.store.close()
    finally:
        cluster.stop()
    used = sorted({p.parent.parent.name for p in (work / "run.d" / "nodes").glob("*/logs/*.exit.json")})
    return {"killed_s": obs.killed_s, "on_node": obs.on_node, "restarts": restarts, "lost": lost,
            "gpus_added": obs.gpus_added, "gpus": gpus, "notes": list(notes), "nodes_used": used,
            "map": json.loads((work / "run.d" / "ray-gpus.json").read_text()),
            "jobs": {j.job_id: {"state": j.state, "outcomes": list(j.outcomes)} for j in res.jobs},
            "runs": marker_runs(markers)}


def marker_runs(markers: Path) -> dict[str, list[list[float | None]]]:
    """Per job, each process that ran it: [start, done] wall times (done None: it never finished)."""
    runs: dict[str, list[list[float | None]]] = {}
    for f in sorted(markers.glob("*.start")):
        name, pid = f.name.split(".")[:2]
        done = markers / f"{name}.{pid}.done"
        runs.setdefault(name, []).append([float(f.read_text()), float(done.read_text()) if done.exists() else None])
    return runs


def resume_scenario(work: Path) -> dict:
    """`migsched run --backend ray --address` is SIGKILLed mid-batch; `run --resume` finishes it."""
    import signal
    import subprocess
    markers, tasks = marker_batch(work, 6)
    state = work / "run.db"
    cli = [sys.executable, "-m", "migsched.cli.main", "run"]
    cluster = LocalCluster([None, None])
    try:
        first = subprocess.Popen([*cli, str(tasks), "--backend", "ray", "--address", cluster.address, "--gpus", "1",
                                  "--policy", "serial", "--state", str(state)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while len(list(markers.glob("*.start"))) < 2 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        running_at_kill = sorted(f.name.split(".")[0] for f in markers.glob("*.start"))
        first.send_signal(signal.SIGKILL)
        out1, _ = first.communicate()
        second = subprocess.run([*cli, "--resume", "--state", str(state), "--json", str(work / "out.json")],
                                capture_output=True, text=True, timeout=90)
    finally:
        cluster.stop()
    data = json.loads((work / "out.json").read_text()) if (work / "out.json").exists() else {}
    return {"running_at_kill": running_at_kill, "first_rc": first.returncode, "first_out": out1[-2000:],
            "resume_rc": second.returncode, "resume_out": (second.stdout + second.stderr)[-3000:],
            "jobs": {j["job_id"]: {"state": j["state"], "outcomes": j["outcomes"]} for row in data.get("results", []) for j in row.get("jobs", [])},
            "runs": marker_runs(markers)}


SCENARIOS = {"kill-node": kill_node_scenario, "kill-agent": kill_agent_scenario, "resume": resume_scenario}

if __name__ == "__main__":
    mode, workdir = sys.argv[1], Path(sys.argv[2])
    if mode not in SCENARIOS:
        raise SystemExit(f"unknown scenario {mode!r}; valid: {', '.join(SCENARIOS)}")
    out = SCENARIOS[mode](workdir)
    (workdir / "result.json").write_text(json.dumps(out, indent=1, default=str))
