"""Benchmark of the cluster scheduler (docs/benchmarks.md, "Ray cluster backend").

Two parts:

* `decisions`: how many scheduling decisions per second the one scheduler core makes for 10 to
  1,000 GPUs. No processes and no Ray: the GPUs are simulated (the core, the policy and the
  action checks are the same code whichever backend carries the actions out), jobs arrive at
  once; a decision is one placement (a `Launch` the core accepted, with the creates it needed).
  Figures: decisions/s = placements / wall s of the whole run (events handled included).
* `overhead`: what Ray adds to each launch and each event. The same jobs (`true`, MIG off, one
  GPU) are launched one at a time through the `local` backend in this process and through the
  `ray` backend on a local two-node cluster; per job, launch latency is `execute(Launch)` until
  `JobStarted` comes out of `poll`, exit latency is `JobStarted` until `JobExited` comes out of
  `poll`. The difference of the medians is Ray's cost per launch and per event.

    python bench/bench_ray.py decisions --gpus 10 100 1000 --jobs-per-gpu 20
    python bench/bench_ray.py overhead --launches 30
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from migsched.core.backend import RunSettings
from migsched.core.events import JobExited, JobStarted, Launch
from migsched.jobs.model import JobClass, JobSpec


def decisions(gpus_list: list[int], jobs_per_gpu: int, policy: str, nodes: int) -> list[dict]:
    from migsched.backends.sim.simulator import Simulator
    from migsched.core.source import TraceSource
    from migsched.hardware import get_model
    from migsched.jobs import load_jobs_dict
    from migsched.policies.registry import create_policy
    from migsched.run import drive, open_core

    rows = []
    for n in gpus_list:
        jobs = load_jobs_dict({"version": 1, "jobs": [{
            "name": "b", "class": "scientific", "count": n * jobs_per_gpu, "hint_gib": 8,
            "model": {"runtime_s": 100, "peak_gib": 6, "speedup": {1: 1.0}, "startup_s": 0}}]})
        sim = Simulator([get_model("A100-40GB")] * n, {j.job_id: j.truth for j in jobs}, record_power=False)
        core = open_core(create_policy(policy), sim)
        calls = 0
        handle = core.handle

        def counted(*a, **k):
            nonlocal calls
            actions = handle(*a, **k)
            calls += sum(1 for x in actions if isinstance(x, Launch))
            return actions

        core.handle = counted  # type: ignore[method-assign]
        t0 = time.perf_counter()
        drive(core, sim, TraceSource(j.spec for j in jobs))
        wall = time.perf_counter() - t0
        done = sum(1 for j in core.view.jobs.values() if j.state.value == "done")
        rows.append({"gpus": n, "nodes": nodes, "gpus_per_node": n / nodes, "jobs": len(jobs), "done": done,
                     "decisions": calls, "wall_s": wall, "decisions_per_s": calls / wall})
        print(f"{n:5d} GPUs  {len(jobs):6d} jobs  {calls:7d} decisions  {wall:7.2f} s  {calls / wall:9.0f} /s",
              flush=True)
    return rows


def _spec(i: int) -> JobSpec:
    return JobSpec(job_id=f"b{i:04d}", name=f"b{i:04d}", job_class=JobClass.SCIENTIFIC, command="true", argv=("true",))


def _latencies(backend, launches: int) -> tuple[list[float], list[float]]:
    backend.open(RunSettings(mig_enabled=False, sample_interval_s=None))
    up, down = [], []
    for i in range(launches):
        t0 = time.perf_counter()
        backend.execute([Launch(f"b{i:04d}", 0, 0, 1, _spec(i))])
        started = ended = None
        while ended is None:
            for ev in backend.poll(backend.clock.now_s() + 5.0) or []:
                if isinstance(ev, JobStarted):
                    started = time.perf_counter()
                elif isinstance(ev, JobExited):
                    ended = time.perf_counter()
        assert started is not None
        up.append(started - t0)
        down.append(ended - started)
    return up, down


def overhead(launches: int) -> dict:
    from migsched.backends.local.backend import LocalBackend
    from migsched.backends.ray.factory import ray_backend
    from migsched.hardware import get_model

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        local = LocalBackend([get_model("A100-40GB")], Path(tmp) / "local")
        out["local"] = _latencies(local, launches)
        ray = ray_backend([], Path(tmp) / "ray", mib_per_gib=16.0, origin_unix=None, sample_interval_s=1.0,
                          options={"nodes": 2, "gpus_per_node": 1})
        try:
            t0 = time.perf_counter()
            out["ray"] = _latencies(ray, launches)
            out["ray_open_s"] = time.perf_counter() - t0 - sum(map(sum, out["ray"]))
            agent = next(iter(ray._nodes.values())).agent
            rtt = []
            for _ in range(50):  # the floor of any event's trip: one call to an agent and back
                t1 = time.perf_counter()
                ray._ray.get(agent.ping.remote())
                rtt.append(time.perf_counter() - t1)
            out["ray_call_ms"] = statistics.median(rtt) * 1e3
        finally:
            ray.close()
    med = {k: (statistics.median(v[0]) * 1e3, statistics.median(v[1]) * 1e3) for k, v in out.items() if k in ("local", "ray")}
    for k, (u, d) in med.items():
        print(f"{k:6s} launch -> JobStarted median {u:7.1f} ms   JobStarted -> JobExited median {d:7.1f} ms")
    print(f"ray adds {med['ray'][0] - med['local'][0]:.1f} ms per launch, {med['ray'][1] - med['local'][1]:.1f} ms "
          f"per event; one agent call {out['ray_call_ms']:.2f} ms; cluster start + discovery {out['ray_open_s']:.1f} s")
    return {"median_ms": med, "launches": launches, "call_ms": out["ray_call_ms"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="part", required=True)
    d = sub.add_parser("decisions")
    d.add_argument("--gpus", type=int, nargs="+", default=[10, 100, 1000])
    d.add_argument("--jobs-per-gpu", type=int, default=20)
    d.add_argument("--policy", default="greedy")
    d.add_argument("--nodes", type=int, default=8, help="nodes the GPUs are spread over (reported only)")
    o = sub.add_parser("overhead")
    o.add_argument("--launches", type=int, default=30)
    args = ap.parse_args()
    if args.part == "decisions":
        decisions(args.gpus, args.jobs_per_gpu, args.policy, args.nodes)
    else:
        overhead(args.launches)


if __name__ == "__main__":
    main()
