#!/usr/bin/env python
"""Placing-decision latency: how long one `Policy.decide` call that places a job takes.

    python bench/bench_decisions.py                       # greedy and migm, 8 GPUs, 1,000 queued
    python bench/bench_decisions.py --policies migm --gpus 8 --queued 1000 --json out.json

The cluster is `--gpus` A100-80GB; `2 x --queued` jobs of `bench_simulator.make_jobs` arrive
at t=0, and every `decide` call that returns a `Launch` while at least `--queued` jobs wait is
timed (`time.perf_counter_ns` around the call, the core's own validation not included), in wall
time and in the thread's CPU time (`time.thread_time_ns`: what the call cost, without the time
the OS gave another process on a shared machine). The run is the ordinary simulation (the
garbage collector on, as in any run); the figures are the p50, p99 and maximum of those calls,
how many there were, and the largest gen-2 GC pause inside a `decide` call (`gc.callbacks`).
"CPU max, no arrivals in the call" leaves out the calls that also took in new jobs: at t=0
one call absorbs all `2 x --queued` arrivals (sizing each job is O(arrivals)), which is
admission work rather than the cost of choosing a placement.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_simulator import DEFAULT_MODEL, machine, make_jobs  # noqa: E402

from migsched.core.events import Launch  # noqa: E402
from migsched.hardware import get_model  # noqa: E402
from migsched.policies.registry import create_policy  # noqa: E402
from migsched.run import simulate  # noqa: E402


def _percentile(xs: list[float], q: float) -> float:
    """The `q`-quantile (0..1) by the nearest-rank method."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))
    return s[k]


def measure(policy_name: str, gpus: int = 8, queued: int = 1_000, seed: int = 0) -> dict:
    """Run the workload under `policy_name` and time its placing decisions (module docstring)."""
    policy = create_policy(policy_name)
    times_ms: list[float] = []
    cpu_ms: list[float] = []
    cpu_steady_ms: list[float] = []  # placing calls that absorbed no arrivals
    inner = policy.decide

    inside = [False]

    def timed(view, changes):
        inside[0] = True
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        decision = inner(view, changes)
        dt, dc = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
        inside[0] = False
        if len(view.queue) >= queued - 1 and any(isinstance(a, Launch) for a in decision.actions):
            times_ms.append(dt / 1e6)
            cpu_ms.append(dc / 1e6)
            if not changes.arrived:
                cpu_steady_ms.append(dc / 1e6)
        return decision

    policy.decide = timed  # type: ignore[method-assign]
    pauses_ms: list[float] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict) -> None:
        if info.get("generation") != 2 or not inside[0]:
            return
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses_ms.append((time.perf_counter() - started.pop()) * 1e3)

    jobs = make_jobs(2 * queued, seed)
    gc.callbacks.append(on_gc)
    try:
        t0 = time.perf_counter()
        r = simulate(jobs, get_model(DEFAULT_MODEL), gpus=gpus, policy=policy, seed=seed, record_power=False)
        wall = time.perf_counter() - t0
    finally:
        gc.callbacks.remove(on_gc)
    return {
        "policy": policy_name, "gpus": gpus, "queued": queued, "placing_calls": len(times_ms),
        "p50_ms": round(_percentile(times_ms, 0.50), 4), "p99_ms": round(_percentile(times_ms, 0.99), 4),
        "max_ms": round(max(times_ms, default=float("nan")), 4),
        "cpu_p50_ms": round(_percentile(cpu_ms, 0.50), 4), "cpu_p99_ms": round(_percentile(cpu_ms, 0.99), 4),
        "cpu_max_ms": round(max(cpu_ms, default=float("nan")), 4),
        "cpu_max_ms_no_arrivals": round(max(cpu_steady_ms, default=float("nan")), 4),
        "gc2_max_ms": round(max(pauses_ms, default=0.0), 2), "gc2_in_decide": len(pauses_ms),
        "run_wall_s": round(wall, 2), "completed": r.jobs_completed,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policies", nargs="+", default=["greedy", "migm"])
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--queued", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    mach = machine()
    print(f"command: python {' '.join(sys.argv)}\ndate: {date}\nmachine: {mach['platform']}; {mach['cpu']}; "
          f"{mach['cores']} cores; Python {mach['python']}\n")
    print("| policy | GPUs | queued | placing calls | p50 ms | p99 ms | max ms | CPU p50 ms | CPU p99 ms "
          "| CPU max ms | CPU max ms, no arrivals in the call | largest gen-2 GC pause in a decide ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name in a.policies:
        r = measure(name, a.gpus, a.queued, a.seed)
        rows.append(r)
        print(f"| {name} | {r['gpus']} | {r['queued']:,} | {r['placing_calls']:,} | {r['p50_ms']:.3f} | "
              f"{r['p99_ms']:.3f} | {r['max_ms']:.3f} | {r['cpu_p50_ms']:.3f} | {r['cpu_p99_ms']:.3f} | "
              f"{r['cpu_max_ms']:.3f} | {r['cpu_max_ms_no_arrivals']:.3f} | {r['gc2_max_ms']:.1f} |", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"date": date, "machine": mach, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
