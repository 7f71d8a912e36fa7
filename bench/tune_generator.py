"""Tuning batches drawn from the held-out *generator* with tuning seeds (never the held-out ones).

    python bench/tune_generator.py --mix online --seeds 11-16 --baselines
    python bench/tune_generator.py --mix ml --seeds 11-16 --set easy_backfill=false

Each batch is `bench/heldout.py`'s `heldout_doc` (the bundled mix at the held-out size, hints
dropped or wrong, `describe:` dropped) for a seed outside `HELDOUT_SEEDS`: the same kind of
batch as the held-out set, so a change can be judged on it before the held-out set is looked at.
Prints per seed, for migm (and with --baselines serial, greedy and the oracle static layout):
mean / p95 completion time and makespan, in seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heldout import HELDOUT_JOBS, HELDOUT_SEEDS, HeldOut, heldout_doc  # noqa: E402

from migsched.compare import best_static_layout  # noqa: E402
from migsched.hardware import get_model  # noqa: E402
from migsched.jobs import load_jobs_dict  # noqa: E402
from migsched.policies.registry import create_policy  # noqa: E402
from migsched.run import RunResult, simulate  # noqa: E402


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    bad = sorted(set(out) & set(HELDOUT_SEEDS))
    if bad:
        raise SystemExit(f"--seeds must not include the held-out seeds {HELDOUT_SEEDS}; got {bad}")
    return out


def _figures(r: RunResult) -> str:
    jct = sorted(j.jct_s for j in r.jobs if j.jct_s is not None)
    p95 = jct[min(len(jct) - 1, int(0.95 * len(jct)))] if jct else float("nan")
    return f"{statistics.mean(jct) if jct else float('nan'):.0f}/{p95:.0f}/{r.makespan_s:.0f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mix", choices=sorted(HELDOUT_JOBS), default="online")
    ap.add_argument("--seeds", default="11-16", help="e.g. 11-16 or 11,13,20 (not 101/202/303)")
    ap.add_argument("--gpu", default="A100-80GB")
    ap.add_argument("--baselines", action="store_true", help="also serial, greedy, oracle static")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="a migm option")
    a = ap.parse_args(argv)
    opts = {}
    for kv in a.set:
        k, _, v = kv.partition("=")
        try:
            opts[k] = json.loads(v)
        except json.JSONDecodeError:
            opts[k] = v
    model = get_model(a.gpu)
    print("seed  policy: mean JCT / p95 JCT / makespan (s)")
    for seed in _seeds(a.seeds):
        jobs = load_jobs_dict(heldout_doc(HeldOut(a.mix, HELDOUT_JOBS[a.mix], seed, a.gpu)), require_model=True)
        row = []
        if a.baselines:
            for p in ("serial", "greedy"):
                row.append(f"{p} {_figures(simulate(jobs, model, 1, policy=p, record_power=False))}")
            row.append(f"static {_figures(best_static_layout(jobs, model, 1)[0])}")
        r = simulate(jobs, model, 1, policy=create_policy("migm", **opts), record_power=False)
        row.append(f"migm {_figures(r)}")
        print(seed, "  ".join(row), flush=True)


if __name__ == "__main__":
    main()
