"""migm vs serial, greedy and static (best maximal layout) on 66 runs; tunes migm options.

usage: python bench/tune_migm.py [--quick] [--set key=value ...] [--jobs N] [--cache FILE]

66 runs: make_mix(scientific|ml|llm|mixed|online, jobs=32|64, seed=0..2) on 1 and 2 A100-80GB,
plus scientific/ml/llm, 32 jobs, seed 1 on one A100-40GB and one H100-80GB. --quick: seed 1,
1 GPU (10 runs). Baseline results are cached in --cache (default /tmp/migsched_tune_base.json)
and computed when missing. "W" = migm faster AND lower energy than all three baselines.
--set values are JSON (e.g. --set order='"fifo"' or --set backfill=false); a bare word that is
not JSON is taken as a string (--set order=fifo).
"""
import sys, json, os, time, itertools
from concurrent.futures import ProcessPoolExecutor
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.workloads.mixes import make_mix
from migsched.metrics import lower_bound_s
from migsched.run import simulate
from migsched.compare import best_static_layout
from migsched.policies.registry import create_policy

def configs(which):
    out = []
    if which in ("quick", "main", "full"):
        for mix in ("scientific", "ml", "llm", "mixed", "online"):
            for n in (32, 64):
                for s in ((0, 1, 2) if which != "quick" else (1,)):
                    for g in ((1, 2) if which != "quick" else (1,)):
                        out.append((mix, n, s, "A100-80GB", g))
    if which in ("main", "full"):
        for gpu in ("A100-40GB", "H100-80GB"):
            for mix in ("scientific", "ml", "llm"):
                out.append((mix, 32, 1, gpu, 1))
    return out

def load(mix, n, s):
    return load_jobs_dict(make_mix(mix, jobs=n, seed=s), require_model=True)

def base_one(c):
    mix, n, s, gpu, g = c
    jobs = load(mix, n, s); m = get_model(gpu)
    lb = lower_bound_s(jobs, [m] * g)
    r = {"lb": lb}
    for p in ("serial", "greedy"):
        x = simulate(jobs, m, g, policy=p, record_power=False)
        r[p] = (x.makespan_s, x.energy_j / 3.6e6, x.jobs_completed)
    x, lay, _ = best_static_layout(jobs, m, g)
    r["static"] = (x.makespan_s, x.energy_j / 3.6e6, x.jobs_completed)
    return "|".join(map(str, c)), r

def migm_one(args):
    c, opts = args
    mix, n, s, gpu, g = c
    jobs = load(mix, n, s); m = get_model(gpu)
    t = time.perf_counter()
    x = simulate(jobs, m, g, policy=create_policy("migm", **opts), record_power=False)
    return "|".join(map(str, c)), (x.makespan_s, x.energy_j / 3.6e6, x.jobs_completed, time.perf_counter() - t, x.policy_summary, len(jobs))

def main(argv=None):
    import argparse, statistics
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--cache", default="/tmp/migsched_tune_base.json")
    ap.add_argument("--out", default=None, help="write per-run migm results (JSON) here")
    a = ap.parse_args(argv)
    opts = {}
    for kv in a.set:
        kk, v = kv.split("=", 1)
        try:
            opts[kk] = json.loads(v)
        except json.JSONDecodeError:
            opts[kk] = v
    cfgs = configs("quick" if a.quick else "main")
    bf = a.cache
    B = json.load(open(bf)) if os.path.exists(bf) else {}
    todo = [c for c in cfgs if "|".join(map(str, c)) not in B]
    with ProcessPoolExecutor(a.jobs) as ex:
        if todo:
            for k, r in ex.map(base_one, todo):
                B[k] = r
            json.dump(B, open(bf, "w"))
        res = dict(ex.map(migm_one, [(c, opts) for c in cfgs]))
    wins = tot = 0; ratios = []; maxwall = 0; lost = 0
    print(f"options: {opts}")
    print(f"{'config':32s} {'LB':>7s} {'migm':>6s} {'greedy':>6s} {'static':>6s} {'serial':>6s}  kWh m/g/st/se  tu")
    for c in cfgs:
        k = "|".join(map(str, c)); b = B[k]
        ms, e, done, wall, summ, nj = res[k]
        maxwall = max(maxwall, wall); lost += nj - done
        lb = b["lb"]; r = ms / lb; ratios.append(r)
        win = all(ms < b[p][0] and e < b[p][1] for p in ("serial", "greedy", "static"))
        wins += win; tot += 1
        flag = ("W" if win else "-") + ("" if r <= 1.15 else " >1.15") + ("" if done == nj else f" LOST{nj-done}")
        print(f"{k:32s} {lb:7.0f} {r:6.3f} {b['greedy'][0]/lb:6.3f} {b['static'][0]/lb:6.3f} {b['serial'][0]/lb:6.3f}  "
              f"{e:.3f}/{b['greedy'][1]:.3f}/{b['static'][1]:.3f}/{b['serial'][1]:.3f} {int(summ.get('tail_upgrades',0))} {flag}")
    print(f"wins {wins}/{tot}  mean ratio {statistics.mean(ratios):.4f}  max {max(ratios):.3f}  "
          f"n>1.15: {sum(r>1.15 for r in ratios)}  lost {lost}  maxwall {maxwall:.2f}s")
    if a.out:
        json.dump({k: v[:4] for k, v in res.items()}, open(a.out, "w"))


if __name__ == "__main__":
    main()
