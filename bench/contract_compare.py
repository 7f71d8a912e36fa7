#!/usr/bin/env python
"""Makespan and energy per policy on the bundled mixes, for the before/after table of a change to
the core/backend contract (docs/contract-before-after.md).

    python bench/contract_compare.py --out after.json
    PYTHONPATH=/path/to/old/checkout/src python bench/contract_compare.py --out before.json
    python bench/contract_compare.py --diff before.json after.json    # the Markdown table

Runs every built-in policy (serial, static with the hint-chosen layout, greedy, migm) on the
scientific, ml, llm, mixed and online mixes (32 jobs, seeds 1 and 2) on one and two A100-80GB,
and one H100-80GB; the same seeds and jitter as `migsched simulate`.
"""

from __future__ import annotations

import argparse
import json
import sys

from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.run import simulate
from migsched.workloads.mixes import make_mix

MIXES = ("scientific", "ml", "llm", "mixed", "online")
POLICIES = ("serial", "static", "greedy", "migm")
CONFIGS = (("A100-80GB", 1), ("A100-80GB", 2), ("H100-80GB", 1))
SEEDS = (1, 2)


def measure() -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for gpu, n in CONFIGS:
        model = get_model(gpu)
        for mix in MIXES:
            for seed in SEEDS:
                jobs = load_jobs_dict(make_mix(mix, jobs=32 * n, seed=seed), require_model=True)
                for pol in POLICIES:
                    r = simulate(jobs, model, gpus=n, policy=pol, seed=seed, record_power=False)
                    key = f"{gpu}x{n}/{mix}/s{seed}/{pol}"
                    out[key] = {"makespan_s": round(r.makespan_s, 3), "energy_j": round(r.energy_j, 1),
                                "done": r.jobs_completed}
                    print(key, out[key], file=sys.stderr)
    return out


def diff(before: dict, after: dict) -> str:
    lines = ["| run | makespan before (s) | after (s) | change | energy before (MJ) | after (MJ) | change |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    same = 0
    for key in before:
        b, a = before[key], after.get(key)
        if a is None:
            continue
        dm = a["makespan_s"] / b["makespan_s"] - 1 if b["makespan_s"] else 0.0
        de = a["energy_j"] / b["energy_j"] - 1 if b["energy_j"] else 0.0
        if abs(dm) < 1e-9 and abs(de) < 1e-9 and a["done"] == b["done"]:
            same += 1
        lines.append(f"| {key} | {b['makespan_s']:.1f} | {a['makespan_s']:.1f} | {dm:+.2%} | "
                     f"{b['energy_j'] / 1e6:.3f} | {a['energy_j'] / 1e6:.3f} | {de:+.2%} |")
    lines.append("")
    lines.append(f"{same} of {len(before)} runs identical (makespan, energy and jobs done).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out")
    ap.add_argument("--diff", nargs=2, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if args.diff:
        with open(args.diff[0]) as f0, open(args.diff[1]) as f1:
            print(diff(json.load(f0), json.load(f1)))
        return
    res = measure()
    text = json.dumps(res, indent=1, sort_keys=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
