"""The cluster-wide picture (`cluster.png`): busy compute slices, queue length and power over time.

The timelines draw a few GPUs slot by slot; this view sums the whole cluster, so it reads the
same for 1 GPU and for 1,000: one panel per figure, one step line per policy.

* busy slices: compute slices running a job, as a share of all the cluster's slices;
* queue: jobs that arrived and wait (never started, or waiting to run again after an OOM or a
  kill);
* power: all GPUs summed.

The series are computed from the run's records (`busy_series`, `queue_series`), not drawn from
per-GPU detail, so their cost grows with the number of job runs, not with the GPUs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from migsched.compare import Comparison
from migsched.hardware.catalog import get_model
from migsched.errors import MigschedError, plural
from migsched.run import RunResult


def _steps(changes: list[tuple[float, float]], end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """A step function from (time, delta) pairs: (times, value from each time on), 0 at time 0."""
    if not changes:
        return np.array([0.0, end_s]), np.zeros(2)
    arr = np.array(sorted(changes))
    times, idx = np.unique(arr[:, 0], return_index=True)
    sums = np.add.reduceat(arr[:, 1], idx)
    values = np.cumsum(sums)
    if times[0] > 0:
        times, values = np.concatenate([[0.0], times]), np.concatenate([[0.0], values])
    return np.concatenate([times, [end_s]]), np.concatenate([values, [values[-1]]])


def total_slices(result: RunResult) -> int:
    """Compute slices of the whole cluster (from the catalogue; else what the runs used)."""
    try:
        return get_model(result.gpu).compute_slices * result.gpus
    except MigschedError:  # mixed or unknown models: the largest concurrent use is a lower bound
        return max(1, max((s.compute_slices for s in result.timeline.jobs), default=1) * result.gpus)


def busy_series(result: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """Compute slices running a job over time: (times_s, slices)."""
    end_s = result.makespan_s
    changes: list[tuple[float, float]] = []
    for s in result.timeline.jobs:
        t1 = s.t1_s if s.t1_s is not None else end_s
        changes += [(s.t0_s, float(s.compute_slices)), (t1, -float(s.compute_slices))]
    return _steps(changes, end_s)


def queue_series(result: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """Jobs waiting over time: from arrival to first start, and between a lost run and the next."""
    end_s = result.makespan_s
    changes: list[tuple[float, float]] = []

    def wait(t0: float, t1: float) -> None:
        if t1 > t0:
            changes.extend([(t0, 1.0), (t1, -1.0)])

    for job in result.jobs:
        since = job.arrival_s
        for a in job.runs:
            wait(since, a.launched_s)
            since = a.ended_s
        last = job.runs[-1].outcome if job.runs else None
        if job.state == "done" or last in ("ok", "failed") or (last == "oom" and job.state == "failed"):
            continue  # ended on its last run
        wait(since, job.finished_s if job.finished_s is not None else end_s)  # rejected, or still waiting
    return _steps(changes, end_s)


def cluster_png(cmp: Comparison, path: str | Path) -> Path:
    """Draw the cluster view of every policy in `cmp` to `path`."""
    from migsched.report.plots import _save, _summed_power, time_unit

    end_s = max((r.makespan_s for r in cmp.results), default=1.0) or 1.0
    unit, per = time_unit(end_s)
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    ax_busy, ax_queue, ax_power = fig.subplots(3, 1, sharex=True)
    for row in cmp.rows:
        r = row.result
        t, v = busy_series(r)
        ax_busy.step(t / per, 100.0 * v / total_slices(r), where="post", linewidth=1.1, label=row.policy)
        t, v = queue_series(r)
        ax_queue.step(t / per, v, where="post", linewidth=1.1, label=row.policy)
        t, w = _summed_power(r)
        ax_power.step(t / per, w / 1000.0, where="post", linewidth=1.1, label=row.policy)
    ax_busy.set_ylabel("busy compute\nslices (%)")
    ax_busy.set_ylim(0, 105)
    ax_queue.set_ylabel("jobs waiting")
    ax_queue.set_ylim(bottom=0)
    ax_power.set_ylabel("power (kW),\nall GPUs")
    ax_power.set_ylim(bottom=0)
    ax_power.set_xlabel(f"time ({unit})")
    for ax in (ax_busy, ax_queue, ax_power):
        ax.set_xlim(0, end_s / per * 1.01)
        ax.grid(color="#dddddd", linewidth=0.5)
    ax_busy.legend(fontsize=8, loc="lower left", ncol=max(1, len(cmp.rows)))
    fig.suptitle(f"Cluster view: {plural('job', cmp.jobs)} on {cmp.gpus}× {cmp.gpu}", fontsize=10)
    return _save(fig, Path(path))
