#!/usr/bin/env python
"""Simulator speed: jobs/s, events/s, wall seconds and peak RSS per (jobs, GPUs, policy, arrivals).

    python bench/bench_simulator.py                      # 1k/10k/100k jobs x 1/8/1,000 GPUs
    python bench/bench_simulator.py --quick              # skip 100k jobs on 1 and 8 GPUs
    python bench/bench_simulator.py --jobs 10000 --gpus 1000 --policies greedy
    python bench/bench_simulator.py --scale --policies greedy migm --arrivals offline
                                       # 1k on 10, 10k on 100, 100k on 1,000 GPUs: linearity, migm/greedy

Each configuration runs in a fresh child process (this script with `--one`), so that its peak
RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) is its own and not the largest run so far.
Job generation is not timed; `wall_s` is the `simulate(..., record_power=False)` call alone and
`cpu_s` its process CPU time (steadier than wall time on a shared machine).

`--scale` runs jobs and GPUs in proportion (`SCALE_STEPS`: 1,000 jobs on 10 GPUs, 10,000 on 100,
100,000 on 1,000) instead of every (jobs, GPUs) pair, and adds a table of CPU microseconds per job
(flat when cost grows linearly with jobs) and of each policy's CPU time over the first policy's
at the same size (e.g. migm / greedy, both measured in the same invocation).

The workload is a seeded synthetic mix of small scientific-like jobs (`make_jobs`): peaks of
2-70 GiB, mostly small, run times of 30-3,000 s, varied scaling over compute slices, a hint
for each job and a few hints that are too low (out-of-memory restarts). `offline` submits every
job at t=0; `online` submits them as a Poisson stream that keeps a serial cluster about 90% busy.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import random
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

from migsched.hardware import get_model
from migsched.jobs.model import Job, JobClass, JobSpec, TruthModel, interpolate_speedup
from migsched.run import simulate

JOB_COUNTS = (1_000, 10_000, 100_000)
GPU_COUNTS = (1, 8, 1_000)
QUICK_SKIP = {(100_000, 1), (100_000, 8)}
SCALE_STEPS = ((1_000, 10), (10_000, 100), (100_000, 1_000))
DEFAULT_MODEL = "A100-80GB"
DEFAULT_LAYOUT = "3g.40gb@4,2g.20gb@2,1g.10gb@0,1g.10gb@1"  # 4 instances, all 7 compute slices
LOW_HINT_FRACTION = 0.03  # jobs whose hint is too low for their peak (OOM, then a larger instance)


# ---- workload -----------------------------------------------------------------------------------
def _peak_gib(rng: random.Random) -> float:
    r = rng.random()
    if r < 0.70:
        lo, hi = 2.0, 10.0
    elif r < 0.90:
        lo, hi = 10.0, 20.0
    elif r < 0.97:
        lo, hi = 20.0, 40.0
    else:
        lo, hi = 40.0, 70.0
    return round(math.exp(rng.uniform(math.log(lo), math.log(hi))), 2)


def make_jobs(n: int, seed: int = 0, *, online: bool = False, gpus: int = 1) -> list[Job]:
    """`n` seeded synthetic jobs; with `online`, Poisson arrivals sized for `gpus` GPUs.

    Run times are log-uniform in 30-3,000 s on a 7g instance; scaling goes from perfect
    (speed = slices / 7) to none (as fast on 1 slice as on 7); memory is constant or ramps up.
    Hints are the peak rounded up to the next GiB, except for `LOW_HINT_FRACTION` of the jobs
    whose hint is 40-70% of their peak.
    """
    rng = random.Random(seed)
    # Run times average about 650 s on 7g; the serial baseline measures about 630 s of GPU time
    # per job, so one arrival per 700 s per GPU keeps the cluster about 90% busy under it.
    mean_interarrival = 700.0 / gpus
    t = 0.0
    jobs = []
    for k in range(n):
        peak = _peak_gib(rng)
        runtime = round(math.exp(rng.uniform(math.log(30.0), math.log(3000.0))), 1)
        s1 = rng.uniform(1.0 / 7.0, 1.0)  # speed on one slice, as a fraction of 7g
        speedup = interpolate_speedup({1: s1, 7: 1.0})
        if rng.random() < 0.5:
            points = ((0.0, peak), (1.0, peak))
        else:
            ramp = rng.uniform(0.05, 0.3)
            points = ((0.0, round(peak * 0.2, 2)), (ramp, peak), (1.0, peak))
        if rng.random() < LOW_HINT_FRACTION:
            hint = round(peak * rng.uniform(0.4, 0.7), 2)
        else:
            hint = float(math.ceil(peak))
        if online:
            t += rng.expovariate(1.0 / mean_interarrival)
        spec = JobSpec(job_id=f"j{k}", name=f"j{k}", job_class=JobClass.SCIENTIFIC,
                       arrival_s=round(t, 3), hint_gib=hint)
        truth = TruthModel(runtime_s=runtime, speedup=speedup, memory_points=points,
                           power_w=round(rng.uniform(50.0, 250.0), 1), startup_s=1.0)
        jobs.append(Job(spec, truth))
    return jobs


# ---- one run --------------------------------------------------------------------------------------
def run_one(jobs_n: int, gpus: int, policy: str, arrivals: str, seed: int = 0,
            model_name: str = DEFAULT_MODEL, layout: str = DEFAULT_LAYOUT) -> dict:
    """Generate the workload, simulate it once and return the figures (a JSON-able dict)."""
    model = get_model(model_name)
    jobs = make_jobs(jobs_n, seed, online=arrivals == "online", gpus=gpus)
    rss0 = _rss_mib()
    opts = {"layout": layout} if policy == "static" else {}
    t0, c0 = time.perf_counter(), time.process_time()
    r = simulate(jobs, model, gpus=gpus, policy=policy, seed=seed, record_power=False, **opts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "jobs": jobs_n, "gpus": gpus, "policy": policy, "arrivals": arrivals,
        "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        "jobs_per_s": round(jobs_n / wall, 1) if wall > 0 else None,
        "events": r.events_processed,
        "events_per_s": round(r.events_processed / wall, 1) if wall > 0 else None,
        "rss_before_mib": round(rss0, 1), "peak_rss_mib": round(_rss_mib(), 1),
        "completed": r.jobs_completed, "failed": r.jobs_failed, "oom_restarts": r.oom_restarts,
        "reconfigurations": r.reconfigurations, "makespan_s": round(r.makespan_s, 3),
    }


def _rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / 1024.0 if sys.platform != "darwin" else kib / 2**20


# ---- report -----------------------------------------------------------------------------------------
def machine() -> dict:
    """Platform, CPU model, cores and Python version."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version()}


def markdown(rows: list[dict]) -> str:
    """The results as a Markdown table."""
    head = ("| policy | arrivals | jobs | GPUs | wall s | CPU s | jobs/s | events | events/s | peak RSS MiB "
            "| done | failed | OOM restarts |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "skipped" in r:
            out.append(f"| {r['policy']} | {r['arrivals']} | {r['jobs']:,} | {r['gpus']:,} | "
                       f"skipped ({r['skipped']}) | | | | | | | | |")
            continue
        out.append(
            f"| {r['policy']} | {r['arrivals']} | {r['jobs']:,} | {r['gpus']:,} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
            f"{r['jobs_per_s']:,.0f} | {r['events']:,} | {r['events_per_s']:,.0f} | {r['peak_rss_mib']:.0f} | "
            f"{r['completed']:,} | {r['failed']:,} | {r['oom_restarts']:,} |"
        )
    return "\n".join(out)


def scale_markdown(rows: list[dict]) -> str:
    """Per policy and size: CPU us per job, and CPU time relative to the first policy's."""
    done = [r for r in rows if "skipped" not in r]
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    sizes = list(dict.fromkeys((r["jobs"], r["gpus"], r["arrivals"]) for r in rows))
    by = {(r["policy"], r["jobs"], r["gpus"], r["arrivals"]): r for r in done}
    head = "| arrivals | jobs | GPUs | " + " | ".join(f"{p} CPU us/job" for p in policies)
    head += "".join(f" | {p} / {policies[0]}" for p in policies[1:]) + " |"
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for n, g, arr in sizes:
        cells = [f"{by[(p, n, g, arr)]['cpu_s'] / n * 1e6:,.0f}" if (p, n, g, arr) in by else "-" for p in policies]
        base = by.get((policies[0], n, g, arr))
        ratios = [f"{by[(p, n, g, arr)]['cpu_s'] / base['cpu_s']:.2f}" if base and (p, n, g, arr) in by else "-"
                  for p in policies[1:]]
        out.append(f"| {arr} | {n:,} | {g:,} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(out)


def _write_json(path: Path, doc: dict) -> None:
    """Write the results so far (after every run, so an interrupted sweep keeps what it measured)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def _available_policies(wanted: list[str] | None) -> list[str]:
    from migsched.policies import policy_names

    names = policy_names()
    if wanted:
        return wanted
    # greedy, serial and static first, then whatever else is registered (e.g. migm).
    order = [p for p in ("greedy", "serial", "static") if p in names]
    return order + [p for p in names if p not in order]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, nargs="+", default=list(JOB_COUNTS))
    ap.add_argument("--gpus", type=int, nargs="+", default=list(GPU_COUNTS))
    ap.add_argument("--policies", nargs="+", help="default: greedy, serial, static and every other registered policy")
    ap.add_argument("--arrivals", nargs="+", choices=("offline", "online"), default=["offline", "online"])
    ap.add_argument("--layout", default=DEFAULT_LAYOUT, help="the static policy's layout (default %(default)s)")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="skip 100k jobs on 1 and 8 GPUs (reported as skipped)")
    ap.add_argument("--scale", action="store_true",
                    help="jobs and GPUs in proportion (1k/10, 10k/100, 100k/1,000) plus a linearity table")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run before it is reported as timed out")
    ap.add_argument("--json", type=Path, default=Path("bench/results.json"))
    ap.add_argument("--md", type=Path, help="also write the Markdown table here")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child mode: one run, JSON out
    a = ap.parse_args(argv)

    if a.one:
        print(json.dumps(run_one(a.jobs[0], a.gpus[0], a.policies[0], a.arrivals[0], a.seed, a.model, a.layout)))
        return 0

    command = "python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    mach = machine()
    print(f"command: {command}\ndate: {date}\nmachine: {mach['platform']}; {mach['cpu']}; "
          f"{mach['cores']} cores; Python {mach['python']}", flush=True)
    rows: list[dict] = []
    for policy in _available_policies(a.policies):
        for arrivals in a.arrivals:
            pairs = SCALE_STEPS if a.scale else [(n, g) for n in a.jobs for g in a.gpus]
            for n, g in pairs:
                base = {"jobs": n, "gpus": g, "policy": policy, "arrivals": arrivals}
                if a.quick and (n, g) in QUICK_SKIP:
                    rows.append({**base, "skipped": "--quick"})
                    print(f"{policy} {arrivals} {n} jobs {g} GPUs: skipped (--quick)", flush=True)
                    continue
                cmd = [sys.executable, os.path.abspath(__file__), "--one", "--jobs", str(n), "--gpus", str(g),
                       "--policies", policy, "--arrivals", arrivals, "--seed", str(a.seed),
                       "--model", a.model, "--layout", a.layout]
                try:
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
                except subprocess.TimeoutExpired:
                    rows.append({**base, "skipped": f"timed out after {a.timeout:.0f} s"})
                    print(f"{policy} {arrivals} {n} jobs {g} GPUs: timed out", flush=True)
                    continue
                if p.returncode != 0:
                    err = (p.stderr.strip().splitlines() or ["?"])[-1]
                    rows.append({**base, "skipped": f"error: {err}"})
                    print(f"{policy} {arrivals} {n} jobs {g} GPUs: error: {err}", flush=True)
                    continue
                r = json.loads(p.stdout.strip().splitlines()[-1])
                rows.append(r)
                _write_json(a.json, {"command": command, "date": date, "machine": mach, "results": rows})
                print(f"{policy} {arrivals} {n} jobs {g} GPUs: {r['wall_s']:.2f} s ({r['cpu_s']:.2f} s CPU), "
                      f"{r['jobs_per_s']:,.0f} jobs/s, {r['events_per_s']:,.0f} events/s, "
                      f"{r['peak_rss_mib']:.0f} MiB", flush=True)
    table = markdown(rows)
    if a.scale:
        table += "\n\n" + scale_markdown(rows)
    print()
    print(table)
    _write_json(a.json, {"command": command, "date": date, "machine": mach, "results": rows})
    if a.md:
        a.md.write_text(f"command: `{command}`  \ndate: {date}  \nmachine: {mach['platform']}; {mach['cpu']}; "
                        f"{mach['cores']} cores; Python {mach['python']}\n\n{table}\n")
    print(f"\nJSON: {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
