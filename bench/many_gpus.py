#!/usr/bin/env python
"""1,000 jobs of bench_simulator's generator on 8 and 64 A100-80GB GPUs, offline and online.

    python bench/many_gpus.py SEED [POLICY] [--gpus 8,64,1000] [--options JSON]

POLICY defaults to migm; `--options` are its options (e.g. '{"mig_off": false}'). One line per
(GPUs, arrivals): makespan, energy, mean completion time and simulator events, for the
"1,000 jobs on 8, 64 and 1,000 GPUs" rows of docs/evaluation.md (seed 0 is tuned on, others not).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_simulator import DEFAULT_LAYOUT, make_jobs  # noqa: E402

from migsched.hardware import get_model  # noqa: E402
from migsched.run import simulate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seed", type=int, nargs="?", default=0)
    ap.add_argument("policy", nargs="?", default="migm")
    ap.add_argument("--gpus", default="8,64", help="comma-separated GPU counts (default 8,64)")
    ap.add_argument("--options", default="{}", help="the policy's options as JSON")
    a = ap.parse_args()
    seed, policy = a.seed, a.policy
    opts = {"layout": DEFAULT_LAYOUT} if policy == "static" else {}
    opts.update(json.loads(a.options))
    for gpus in (int(x) for x in a.gpus.split(",")):
        for online in (False, True):
            jobs = make_jobs(1000, seed, online=online, gpus=gpus)
            r = simulate(jobs, get_model("A100-80GB"), gpus=gpus, policy=policy, seed=seed,
                         record_power=gpus <= 64, **opts)
            print(f"seed {seed} {policy} {gpus} GPUs {'online ' if online else 'offline'}: makespan "
                  f"{r.makespan_s:10.1f} s, {r.energy_j / 1e6:7.2f} MJ, mean JCT {r.mean_jct_s:9.1f} s, "
                  f"{r.events_processed} events")


if __name__ == "__main__":
    main()
