"""The comparison as a JSON document (`migsched simulate --json FILE`).

    {"gpu": "A100-80GB", "gpus": 2, "jobs": 32, "lower_bound_s": 1234.5,
     "notes": [...],
     "results": [{"policy": "serial", "makespan_s": ..., "energy_j": ..., "throughput_gain": ...,
                  "energy_gain": ..., "mean_jct_s": ..., "jobs_completed": ..., "jobs_failed": ...,
                  "oom_restarts": ..., "early_restarts": ..., "restarts": ..., "reconfigurations": ...,
                  "mig_mode_changes": ...,
                  "lost_runs_by_cause": {"oom": {"runs": ..., "wasted_gpu_s": ...}, ...},
                  "wasted_gpu_s": ..., "throughput_jobs_per_h": ..., "slice_utilisation": ...,
                  "lower_bound_ratio": ..., "layout": ..., "layouts_tried": ...,
                  "layout_per_gpu": [...], "policy_summary": {...}, "failures": [{"job_id": ..., "state": ..., "reason": ...}],
                  "jobs": [{"job_id": ..., "state": ..., "outcomes": [...], "runs": [{"gpu": ..., "start": ...,
                            "profile": ..., "launched_s": ..., "ended_s": ..., "outcome": ...}], ...}]}]}

Gains and the ratio are null when not comparable (see `migsched.compare`). Units are in the key
names (_s seconds, _j joules); fractions are in [0, 1]. `restarts` counts the runs lost to OOM or
a kill; `lost_runs_by_cause` breaks them down (`migsched.metrics.lost_runs_by_cause`), and its
`wasted_gpu_s` sum to the row's `wasted_gpu_s`. A job's `runs` say where each attempt ran
(`profile` "whole": a GPU with MIG off); `mig_mode_changes` counts the GPUs turned MIG on or off.

`write_json(cmp, "-")` writes the document to standard output.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from migsched.compare import Comparison, PolicyFigures
from migsched.metrics import lost_runs_by_cause


def _num(x: float | None) -> float | None:
    # JSON has no NaN or infinity; a figure that is not finite is reported as null.
    return None if x is None or not math.isfinite(x) else x


def result_dict(row: PolicyFigures) -> dict[str, Any]:
    """One entry of `results`."""
    r = row.result
    lost = lost_runs_by_cause(r)
    return {
        "policy": r.policy,
        "makespan_s": _num(r.makespan_s),
        "energy_j": _num(r.energy_j),
        "throughput_gain": _num(row.throughput_gain),
        "energy_gain": _num(row.energy_gain),
        "mean_jct_s": _num(r.mean_jct_s),
        "jobs_completed": r.jobs_completed,
        "jobs_failed": r.jobs_failed,
        "oom_restarts": r.oom_restarts,
        "early_restarts": r.early_restarts,
        "restarts": sum(c.runs for c in lost.values()),
        "lost_runs_by_cause": {c: {"runs": v.runs, "wasted_gpu_s": _num(v.wasted_gpu_s)} for c, v in lost.items()},
        "reconfigurations": r.reconfigurations,
        "mig_mode_changes": r.mig_mode_changes,
        "wasted_gpu_s": _num(r.wasted_gpu_s),
        "throughput_jobs_per_h": _num(r.throughput_jobs_per_h),
        "slice_utilisation": _num(r.slice_utilisation),
        "lower_bound_ratio": _num(row.lower_bound_ratio),
        "energy_per_gpu_j": [_num(e) for e in r.energy_per_gpu_j],
        "layout": row.layout,
        "layouts_tried": row.layouts_tried,
        "layout_per_gpu": list(row.layout_per_gpu),
        "policy_summary": {k: _num(float(v)) for k, v in r.policy_summary.items()},
        "failures": [{"job_id": j.job_id, "state": j.state, "reason": j.failure}
                     for j in r.jobs if j.state != "done"],
        "backend": r.backend,
        "energy_source": r.energy_source,
        "failed_actions": r.failed_actions,
        "jobs": [{"job_id": j.job_id, "name": j.name, "class": j.job_class, "state": j.state,
                  "arrival_s": _num(j.arrival_s), "finished_s": _num(j.finished_s), "failure": j.failure,
                  "outcomes": list(j.outcomes), "energy_j": _num(r.job_energy_j.get(j.job_id)),
                  "runs": [{"gpu": a.gpu, "start": a.start, "profile": a.profile, "launched_s": _num(a.launched_s),
                            "ended_s": _num(a.ended_s), "outcome": a.outcome} for a in j.runs]}
                 for j in r.jobs],
    }


def comparison_dict(cmp: Comparison) -> dict[str, Any]:
    """The whole document (see the module docstring)."""
    return {
        "gpu": cmp.gpu,
        "gpus": cmp.gpus,
        "jobs": cmp.jobs,
        "lower_bound_s": _num(cmp.lower_bound_s),
        "notes": list(cmp.notes),
        "results": [result_dict(row) for row in cmp.rows],
    }


def write_json(cmp: Comparison, path: str | Path) -> Path:
    """Write the document to `path`, or to standard output when it is "-".

    The folder must exist (it is not created). Raises OSError if the file cannot be written.
    """
    text = json.dumps(comparison_dict(cmp), indent=2) + "\n"
    p = Path(path)
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return p
    p.write_text(text, encoding="utf-8")
    return p
