"""migm variants on online batches built like the held-out ones, on seeds that are never reported.

    python bench/tune_online.py '{"base": {}, "gain0.1": {"spare_min_gain": 0.1}}'

Each variant is a name and `MigmPolicy` options (JSON). The batches are bench/heldout.py's
online mix (27 jobs, A100-80GB, hints dropped or wrong) on seeds 11-66, never the held-out
101/202/303. Per seed: migm's mean and p95 completion time against the best of serial, static
and greedy, and its makespan; per variant, how many seeds it wins on both and the geo-mean of
its mean completion time. Round 8 chose `spare_min_gain` 0.1 here (docs/evaluation.md).
"""
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import HeldOut, heldout_doc  # noqa: E402
from migsched.compare import compare  # noqa: E402
from migsched.hardware import get_model  # noqa: E402
from migsched.jobs.spec import load_jobs_dict  # noqa: E402
from migsched.policies.registry import create_policy  # noqa: E402
from migsched.run import simulate  # noqa: E402

SEEDS = (11, 22, 33, 44, 55, 66)


def stats(r) -> tuple[float, float, float, float]:
    """(makespan s, mean JCT s, p95 JCT s, energy J) of a run."""
    jct = sorted(j.finished_s - j.arrival_s for j in r.jobs)
    return r.makespan_s, sum(jct) / len(jct), jct[int(0.95 * (len(jct) - 1))], r.energy_j


def main(argv: list[str]) -> None:
    variants = json.loads(argv[0]) if argv else {"base": {}}
    m = get_model("A100-80GB")
    out: dict[str, dict[int, tuple]] = {}
    base_rows = {}
    for s in SEEDS:
        jobs = load_jobs_dict(heldout_doc(HeldOut("online", 27, s, "A100-80GB")))
        cmp = compare(jobs, m, 1, ["serial", "static", "greedy"], seed=0)
        base_rows[s] = {r.policy: stats(r.result) for r in cmp.rows}
        for name, opts in variants.items():
            out.setdefault(name, {})[s] = stats(simulate(jobs, m, 1, policy=create_policy("migm", **opts), seed=0))
    for name, rows in out.items():
        line, wins = f"{name:<20}", 0
        for s in SEEDS:
            ms, mj, pj, _ = rows[s]
            bm = min(v[1] for v in base_rows[s].values())
            bp = min(v[2] for v in base_rows[s].values())
            line += f" s{s}: {mj:5.0f}/{bm:5.0f} p95 {pj:5.0f}/{bp:5.0f} ms {ms:5.0f} |"
            wins += mj <= bm and pj <= bp
        gm = math.exp(sum(math.log(rows[s][1]) for s in SEEDS) / len(SEEDS))
        gp = math.exp(sum(math.log(rows[s][2]) for s in SEEDS) / len(SEEDS))
        print(line, "wins", wins, "gm mean JCT", round(gm), "gm p95", round(gp))


if __name__ == "__main__":
    main(sys.argv[1:])
