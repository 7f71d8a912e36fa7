"""migm with the history of an earlier batch: how much a second batch of the same workload gains.

    python bench/bench_history.py [--out DIR]
    python bench/bench_history.py --seeds 11,22,33 --out /tmp/tune   # tuning seeds, not reported

For each held-out batch (`bench/heldout.py`: seeds and sizes never tuned on) the history is that
of *another* held-out batch of the same mix and GPU (the next seed of 101 -> 202 -> 303 -> 101):
the same families of jobs, other members, other hints and sizes, as when a user submits
tomorrow's batch of today's workload. migm runs the earlier batch once on an in-memory
`HistoryStore`, then the batch itself from that history (`MigmPolicy(history=...)`: peaks by job
name, durations by family). Reported beside migm without history and the three baselines
(serial, the best static layout, greedy), which have no use for history.

Writes `results-history.json` and `results-history.md` to `--out` (default: bench/) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate import provenance  # noqa: E402
from heldout import HELDOUT_SEEDS, HeldOut, heldout_batches, heldout_doc  # noqa: E402

from migsched.compare import compare  # noqa: E402
from migsched.estimators import HistoryStore  # noqa: E402
from migsched.hardware import get_model  # noqa: E402
from migsched.jobs.spec import load_jobs_dict  # noqa: E402
from migsched.policies.registry import create_policy  # noqa: E402
from migsched.run import simulate  # noqa: E402

BASELINES = ("serial", "static", "greedy")


def earlier(b: HeldOut, seeds: tuple[int, ...] = HELDOUT_SEEDS) -> HeldOut:
    """The batch whose history `b` starts from: the same mix and GPU, the next seed of `seeds`."""
    i = seeds.index(b.seed)
    return HeldOut(b.mix, b.jobs, seeds[(i + 1) % len(seeds)], b.gpu)


def run_batch(b: HeldOut, seeds: tuple[int, ...] = HELDOUT_SEEDS) -> dict[str, Any]:
    """migm cold, migm from the earlier batch's history, and the baselines on batch `b`."""
    model = get_model(b.gpu)
    jobs = load_jobs_dict(heldout_doc(b))
    before = load_jobs_dict(heldout_doc(earlier(b, seeds)))
    store = HistoryStore.in_memory()
    simulate(before, model, 1, policy=create_policy("migm", history=store), seed=0, record_power=False)
    warm = simulate(jobs, model, 1, policy=create_policy("migm", history=store), seed=0)
    cmp = compare(jobs, model, 1, [*BASELINES, "migm"], seed=0)
    rows = {r.policy: r.result for r in cmp.rows}
    cold = rows["migm"]
    base_ms = min(rows[p].makespan_s for p in BASELINES)
    base_e = min(rows[p].energy_j for p in BASELINES)
    return {
        "batch": b.key, "history_from": earlier(b, seeds).key,
        "cold_makespan_s": cold.makespan_s, "cold_energy_j": cold.energy_j,
        "warm_makespan_s": warm.makespan_s, "warm_energy_j": warm.energy_j,
        "cold_mean_jct_s": _mean_jct(cold), "warm_mean_jct_s": _mean_jct(warm),
        "best_baseline_makespan_s": base_ms, "best_baseline_energy_j": base_e,
        "warm_failed": warm.jobs_failed,
    }


def _mean_jct(res) -> float:
    done = [j.finished_s - j.arrival_s for j in res.jobs if j.finished_s is not None]
    return sum(done) / len(done) if done else math.nan


def markdown(rows: list[dict[str, Any]]) -> str:
    out = ["| batch | history from | migm s | + history s | ratio | energy ratio | mean JCT ratio "
           "| best baseline s | beats all (makespan, energy) |",
           "|:---|:---|---:|---:|---:|---:|---:|---:|:---|"]
    for r in rows:
        beats = (r["warm_makespan_s"] < r["best_baseline_makespan_s"], r["warm_energy_j"] < r["best_baseline_energy_j"])
        out.append(f"| {r['batch']} | {r['history_from'].split('/')[3]} | {r['cold_makespan_s']:.0f} "
                   f"| {r['warm_makespan_s']:.0f} | {r['warm_makespan_s'] / r['cold_makespan_s']:.3f} "
                   f"| {r['warm_energy_j'] / r['cold_energy_j']:.3f} | {r['warm_mean_jct_s'] / r['cold_mean_jct_s']:.3f} "
                   f"| {r['best_baseline_makespan_s']:.0f} | {'yes' if beats[0] else 'no'}, {'yes' if beats[1] else 'no'} |")
    gm = math.exp(sum(math.log(r["warm_makespan_s"] / r["cold_makespan_s"]) for r in rows) / len(rows))
    ge = math.exp(sum(math.log(r["warm_energy_j"] / r["cold_energy_j"]) for r in rows) / len(rows))
    out.append(f"\nGeo-mean with history / without: makespan {gm:.3f}, energy {ge:.3f} over {len(rows)} batches.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--seeds", default=",".join(map(str, HELDOUT_SEEDS)),
                    help="the batches' seeds, comma-separated (default: the held-out ones)")
    a = ap.parse_args(argv)
    seeds = tuple(int(x) for x in a.seeds.split(","))
    t0 = time.perf_counter()
    rows = []
    for b in heldout_batches(seeds):
        rows.append(run_batch(b, seeds))
        print(f"  {b.key:<40} {rows[-1]['cold_makespan_s']:>8.0f} -> {rows[-1]['warm_makespan_s']:>8.0f} s", flush=True)
    table = markdown(rows)
    print(table)
    a.out.mkdir(parents=True, exist_ok=True)
    prov = {**provenance([]), "command": " ".join(["python", "bench/bench_history.py", *(argv or sys.argv[1:])])}
    doc = {"provenance": prov, "wall_s": round(time.perf_counter() - t0, 1), "rows": rows}
    (a.out / "results-history.json").write_text(json.dumps(doc, indent=1))
    (a.out / "results-history.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
