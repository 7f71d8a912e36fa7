#!/usr/bin/env python
"""migm with checkpoint-aware moves on the held-out batches, the ability MISO has (peers-measured).

    python bench/checkpoint_moves.py [--mixes ml,online,mixed] [--seeds 101,202,303] [--optimal-s 20]

Each held-out batch (`bench/heldout.py`: hints dropped or wrong, seeds never tuned on) is run
twice under migm: as it is, and with a `checkpoint:` block on every training job (class
`ml-train`): `{signal: SIGTERM, grace_s: 30, resume_s: 30}`, MISO's 30-s migration cost
(calibration.md: "migration (checkpoint/restart) overhead 30 s"), saving taking as long by
default (docs/checkpoint.md). The baselines never move a job, so they are run once. With
`--optimal-s` > 0, the CP-SAT plan of the batch as it is (no moves: the reference of
docs/evaluation.md) is computed too and every makespan is given as a multiple of it.

Per batch: makespan, mean and p95 completion time, energy, and the moves and restarts migm made.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import HELDOUT_JOBS, HELDOUT_SEEDS, HeldOut, heldout_doc  # noqa: E402

from migsched.compare import compare  # noqa: E402
from migsched.hardware import get_model  # noqa: E402
from migsched.jobs.spec import load_jobs_dict  # noqa: E402
from migsched.run import simulate  # noqa: E402

#: The checkpoint block given to every training job (MISO's 30-s migration; calibration.md).
CHECKPOINT = {"signal": "SIGTERM", "grace_s": 30.0, "resume_s": 30.0}


def with_checkpoints(doc: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A copy of job-file dict `doc` with `CHECKPOINT` on every `ml-train` entry, and how many."""
    out = copy.deepcopy(doc)
    n = 0
    for entry in out["jobs"]:
        if entry.get("class") == "ml-train":
            entry["checkpoint"] = dict(CHECKPOINT)
            n += 1
    return out, n


def figures(r) -> dict[str, float]:
    """A run's row: makespan, mean and p95 completion time, energy, and migm's moves and restarts."""
    jct = sorted(j.finished_s - j.arrival_s for j in r.jobs)
    s = r.policy_summary or {}
    return {"makespan_s": r.makespan_s, "mean_jct_s": sum(jct) / len(jct),
            "p95_jct_s": jct[int(0.95 * (len(jct) - 1))], "energy_mj": r.energy_j / 1e6,
            "moves": s.get("moves", 0.0), "tail": s.get("tail_upgrades", 0.0),
            "restarts": float(r.oom_restarts + r.early_restarts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixes", default="ml,online,mixed")
    ap.add_argument("--seeds", default=",".join(str(s) for s in HELDOUT_SEEDS))
    ap.add_argument("--optimal-s", type=float, default=0.0, help="CP-SAT seconds per batch (0: skip)")
    a = ap.parse_args()
    print("| batch | ckpt jobs | policy | makespan s | x opt | mean JCT s | p95 JCT s | energy MJ | moves | tail restarts |")
    print("|:---|---:|:---|---:|---:|---:|---:|---:|---:|---:|")
    for mix in a.mixes.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            gpu = "H100-80GB" if mix == "llm" else "A100-80GB"
            b = HeldOut(mix, HELDOUT_JOBS[mix], seed, gpu)
            doc = heldout_doc(b)
            ck_doc, n = with_checkpoints(doc)
            model = get_model(gpu)
            jobs = load_jobs_dict(doc)
            cmp = compare(jobs, model, 1, ["serial", "static", "greedy"], seed=0,
                          optimal_s=a.optimal_s if a.optimal_s > 0 else None)
            opt = next((r.result.makespan_s for r in cmp.rows if r.policy == "optimal"), None)
            rows = [(r.policy, figures(r.result)) for r in cmp.rows if r.policy != "optimal"]
            rows.append(("migm", figures(simulate(jobs, model, 1, policy="migm", seed=0))))
            rows.append(("migm + checkpoints", figures(simulate(load_jobs_dict(ck_doc), model, 1,
                                                                 policy="migm", seed=0))))
            for name, f in rows:
                x = f"{f['makespan_s'] / opt:.3f}" if opt else "-"
                mv = f"{f['moves']:.0f}" if name.startswith("migm") else ""
                tl = f"{f['tail']:.0f}" if name.startswith("migm") else ""
                print(f"| {mix} s{seed} | {n} | {name} | {f['makespan_s']:,.0f} | {x} | {f['mean_jct_s']:,.0f} "
                      f"| {f['p95_jct_s']:,.0f} | {f['energy_mj']:.2f} | {mv} | {tl} |", flush=True)


if __name__ == "__main__":
    main()
