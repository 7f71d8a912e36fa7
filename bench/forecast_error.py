"""Forecast error after a fixed fraction of a run (issue 9, deliverable 2).

For every job of the held-out batches (bench/heldout.py: seeds never tuned on), eight memory
samples are taken from its ground-truth memory curve, evenly spread over the first F of its run
(F = 5, 10, 25, 50 %), exactly as the simulator reports them (used MiB at an elapsed time, with
the job's progress fraction when it reports progress). The project's `MemoryForecaster` then
predicts the peak from those samples alone, and the prediction is compared with the curve's
true peak. "Seen so far" is the peak of the samples themselves: what a scheduler that waits for
the out-of-memory error knows at that point.

    python bench/forecast_error.py                # markdown table on stdout
    python bench/forecast_error.py --json out.json

Reported per mix and fraction: jobs, jobs whose memory still grows after F, mean absolute
percentage error (MAPE) of every forecast and of the confident ones (those migm acts on), the
share of confident forecasts more than 10 % below the peak (an early restart that would still
run out of memory), and the MAPE of "seen so far".
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import random
import sys
from pathlib import Path

from migsched.core.events import MemorySample
from migsched.estimators.forecast import ForecastLog, MemoryForecaster
from migsched.jobs import load_jobs_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import heldout_batches, heldout_doc  # noqa: E402

FRACTIONS = (0.05, 0.10, 0.25, 0.50)
SAMPLES = 8
#: Relative sample noise: 0 (the curves as the simulator reports them) and 3 % (allocator and
#: sampling jitter of a real job, seeded per job), so that an exact fit of a noise-free curve
#: is not the only figure.
NOISES = (0.0, 0.03)


def samples_until(job, fraction: float, noise: float = 0.0) -> list[MemorySample]:
    """SAMPLES samples of `job`'s true memory curve, evenly over the first `fraction` of its run,
    each off by a seeded relative `noise` (standard deviation)."""
    rng = random.Random(job.spec.job_id)
    truth = job.truth
    run_s = truth.runtime_s
    out = []
    for k in range(1, SAMPLES + 1):
        f = fraction * k / SAMPLES
        out.append(MemorySample(time_s=f * run_s, job_id=job.spec.job_id, used_mib=truth.memory_gib(f) * 1024.0 * (1.0 + rng.gauss(0.0, noise)),
                                elapsed_s=truth.startup_s + f * run_s,
                                progress=f if job.spec.reports_progress else None))
    return out


def held_out_jobs() -> list[tuple[str, list]]:
    """(mix, jobs) of every held-out batch."""
    return [(b.mix, load_jobs_dict(heldout_doc(b), require_model=True)) for b in heldout_batches()]


def measure(batches: list[tuple[str, list]], noise: float) -> list[dict]:
    fc = MemoryForecaster()
    rows: dict[tuple[str, float], dict] = {}
    for mix, jobs in batches:
        for job in jobs:
            jid, peak_mib = job.spec.job_id, job.truth.peak_gib * 1024.0
            for f in FRACTIONS:
                s = samples_until(job, f, noise)
                r = rows.setdefault((mix, f), {"mix": mix, "fraction": f, "jobs": 0, "growing": 0, "low_conf": 0,
                                               "all": ForecastLog(), "conf": ForecastLog(), "seen": ForecastLog()})
                r["jobs"] += 1
                seen = max(x.used_mib for x in s)
                if seen < peak_mib * 0.999:
                    r["growing"] += 1
                r["seen"].record(jid, seen, peak_mib)
                pred = fc.forecast(None, s)  # type: ignore[arg-type]  # no horizon: the job is not read
                if pred is None:
                    continue
                r["all"].record(jid, pred.peak_mib, peak_mib)
                if pred.confident:
                    r["conf"].record(jid, pred.peak_mib, peak_mib)
                    if pred.peak_mib < 0.9 * peak_mib:
                        r["low_conf"] += 1
    out = []
    for r in rows.values():
        every, conf = r["all"].summary(), r["conf"].summary()
        out.append({
            "mix": r["mix"], "noise": noise, "fraction": r["fraction"], "jobs": r["jobs"], "growing": r["growing"],
            "mape_pct": every.mape_pct if every.count else None,
            "confident": conf.count,
            "mape_confident_pct": conf.mape_pct if conf.count else None,
            "confident_low_pct": 100 * r["low_conf"] / conf.count if conf.count else None,
            "mape_seen_pct": r["seen"].summary().mape_pct,
        })
    return sorted(out, key=lambda x: (x["mix"], x["fraction"]))


def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def table(rows: list[dict]) -> str:
    lines = ["| mix | noise | after | jobs | still growing | MAPE all % | confident | MAPE confident % "
             "| confident > 10 % low | MAPE seen so far % |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mix']} | {r['noise']:.0%} | {r['fraction']:.0%} | {r['jobs']} | {r['growing']} | {_f(r['mape_pct'])} "
                     f"| {r['confident']} | {_f(r['mape_confident_pct'])} | {_f(r['confident_low_pct'])} % "
                     f"| {_f(r['mape_seen_pct'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the rows and provenance here")
    args = ap.parse_args()
    batches = held_out_jobs()
    rows = [r for noise in NOISES for r in measure(batches, noise)]
    print(table(rows))
    if args.json:
        doc = {"command": "python bench/forecast_error.py", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(),
               "machine": platform.platform(), "rows": rows}
        args.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
