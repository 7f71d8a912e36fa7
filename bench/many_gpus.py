#!/usr/bin/env python
"""1,000 jobs of bench_simulator's generator on 8 and 64 A100-80GB GPUs, offline and online.

    python bench/many_gpus.py SEED [POLICY]     # default policy: migm

One line per (GPUs, arrivals): makespan, energy, mean completion time and simulator events,
for the "1,000 jobs on 8, 64 GPUs" rows of docs/evaluation.md (seed 0 is tuned on, others not).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_simulator import DEFAULT_LAYOUT, make_jobs  # noqa: E402

from migsched.hardware import get_model  # noqa: E402
from migsched.run import simulate  # noqa: E402


def main() -> None:
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    policy = sys.argv[2] if len(sys.argv) > 2 else "migm"
    opts = {"layout": DEFAULT_LAYOUT} if policy == "static" else {}
    for gpus in (8, 64):
        for online in (False, True):
            jobs = make_jobs(1000, seed, online=online, gpus=gpus)
            r = simulate(jobs, get_model("A100-80GB"), gpus=gpus, policy=policy, seed=seed, **opts)
            print(f"seed {seed} {policy} {gpus} GPUs {'online ' if online else 'offline'}: makespan "
                  f"{r.makespan_s:10.1f} s, {r.energy_j / 1e6:7.2f} MJ, mean JCT {r.mean_jct_s:9.1f} s, "
                  f"{r.events_processed} events")


if __name__ == "__main__":
    main()
