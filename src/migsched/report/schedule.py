"""The per-job schedule (`--schedule FILE`): every job and attempt, where and when it ran, how it ended.

One row per attempt (a job that never ran gets one row with no instance), for every policy of
the comparison:

    policy, job_id, name, class, attempt, arrival_s, gpu, profile, slot, start_s, end_s,
    outcome, why, job_state

`slot` is the instance's first memory slot (with `gpu` and `profile` it names the instance:
`profile@slot` on that GPU); `start_s` and `end_s` are when the run started and ended;
`outcome` is ok | oom | killed:<reason> | failed | launch-failed, or, for a job that never ran,
its final state; `why` says it in words, with the job's failure reason on its last row;
`job_state` is how the job ended (done | failed | unfinished).

The format comes from the file's suffix: `.json` (`{"version": 1, "gpu", "gpus", "rows": [...]}`)
or `.csv` (a header line, then the rows; empty cells for missing values).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from migsched.compare import Comparison
from migsched.report.outputs import OutputError
from migsched.run import AttemptRecord, JobResult

FIELDS = ("policy", "job_id", "name", "class", "attempt", "arrival_s", "gpu", "profile", "slot",
          "start_s", "end_s", "outcome", "why", "job_state")
FORMATS = {".json": "json", ".csv": "csv"}

_KILL_WHY = {
    "early-restart": "killed by the policy: its memory forecast outgrew the instance (early restart)",
    "preempt": "killed by the policy to rerun on a larger instance (tail upgrade or blocked restart)",
    "move": "moved by the policy to another instance",
    "killed": "killed from outside the scheduler",
    "": "killed from outside the scheduler",
}


def schedule_format(path: Path) -> str:
    """"json" or "csv" from the suffix of `path`.

    Raises:
        OutputError: any other suffix (the message lists the valid ones).
    """
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"cannot write --schedule {str(path)!r}: unknown format "
                          f"{path.suffix or '(no suffix)'!r}; the file name must end in {' or '.join(FORMATS)}")
    return fmt


def _why(a: AttemptRecord, job: JobResult, last: bool) -> str:
    if a.outcome == "ok":
        return "completed"
    if last and job.failure and job.state != "done":
        return job.failure
    if a.outcome == "oom":
        return f"out of memory on {a.profile} (peak {a.peak_mib / 1024:.1f} GiB); restarted on a larger instance"
    if a.outcome.startswith("killed"):
        reason = a.outcome.partition(":")[2]
        return _KILL_WHY.get(reason, f"killed by the policy ({reason})")
    if a.outcome == "launch-failed":
        return "the backend could not start it; queued again"
    return job.failure or a.outcome


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 3)


def schedule_rows(cmp: Comparison) -> list[dict[str, Any]]:
    """Every row of the schedule (see the module docstring), policies in comparison order."""
    rows: list[dict[str, Any]] = []
    for fig in cmp.rows:
        for job in fig.result.jobs:
            base = {"policy": fig.policy, "job_id": job.job_id, "name": job.name, "class": job.job_class,
                    "arrival_s": _num(job.arrival_s), "job_state": job.state}
            if not job.runs:
                rows.append({**base, "attempt": 0, "gpu": None, "profile": None, "slot": None,
                             "start_s": None, "end_s": None, "outcome": job.state,
                             "why": job.failure or ("never started" if job.state != "done" else "")})
                continue
            for k, a in enumerate(job.runs, start=1):
                rows.append({**base, "attempt": k, "gpu": a.gpu, "profile": a.profile, "slot": a.start,
                             "start_s": _num(a.launched_s), "end_s": _num(a.ended_s), "outcome": a.outcome,
                             "why": _why(a, job, k == len(job.runs))})
    return [{f: r[f] for f in FIELDS} for r in rows]


def schedule_text(cmp: Comparison, fmt: str) -> str:
    """The schedule as JSON or CSV text."""
    rows = schedule_rows(cmp)
    if fmt == "json":
        return json.dumps({"version": 1, "gpu": cmp.gpu, "gpus": cmp.gpus, "fields": list(FIELDS),
                           "rows": rows}, indent=1) + "\n"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def write_schedule(cmp: Comparison, path: str | Path) -> Path:
    """Write the schedule to `path` in the format of its suffix; OSError if it cannot be written."""
    p = Path(path)
    p.write_text(schedule_text(cmp, schedule_format(p)), encoding="utf-8")
    return p
