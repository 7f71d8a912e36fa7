"""Figures over a batch or a run: the makespan lower bound, and runs lost by cause.

`lost_runs_by_cause(result)` counts the job runs that ended by running out of memory or by a
kill, per cause, with the GPU·s each cause wasted (run time × the instance's compute share); the
causes sum to the run's `wasted_gpu_s`. Causes are the attempt outcomes: "oom", and for kills
the `KillReason` the policy gave ("early-restart", "preempt": migm's tail upgrades and blocked
restarts, and any reason added later), or "external" for a kill no policy asked for.

The lower bound is computed from the jobs' ground truth:

No schedule of a batch can finish before

    max( max_j (arrival_j + d_j),            the longest job, with d_j its shortest run
         sum_j min_p (d_j(p) * c(p)) / C,     the compute-area bound
         sum_j min_p (d_j(p) * m(p)) / M )    the memory-area bound

where p ranges over the instances that hold the job's peak memory (MIG profiles and the
whole GPU with MIG off), d_j(p) = startup + runtime / speed on p, c(p) and m(p) its compute
slices and memory slots, and C and M the cluster's total compute slices and memory slots. At any
moment the instances of one GPU use at most all its compute slices and memory slots, and a
MIG-off GPU runs one job on all of them, so each bound holds for every policy. Reconfiguration
time and restarts only add to a schedule, so they are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from migsched.hardware.catalog import GpuModel
from migsched.jobs.model import Job
from migsched.jobs.truth import speed_on

if TYPE_CHECKING:
    from migsched.run import RunResult

#: Known causes, in display order, with a short label for tables and legends.
CAUSE_LABELS: dict[str, str] = {
    "oom": "OOM",
    "early-restart": "early",
    "preempt": "upgrade/tail",
    "move": "move",
    "external": "user/other",
}


@dataclass(frozen=True, slots=True)
class LostRuns:
    """Runs that ended by one cause and the GPU·s they used (wasted: the job ran again)."""

    runs: int
    wasted_gpu_s: float


def cause_of(outcome: str) -> str | None:
    """The cause of an attempt's `outcome`, or None for a run that was not lost (ok, failed)."""
    if outcome == "oom":
        return "oom"
    if outcome.startswith("killed"):
        reason = outcome.partition(":")[2]
        return "external" if reason in ("", "killed") else reason
    return None


def retried_outcomes(outcomes: Sequence[str], failed: bool) -> list[str]:
    """The outcomes of a job's attempts that were run again (restarts), in order.

    Every outcome but 'ok' counts, except the last one of a `failed` job: that attempt was not
    retried. The one rule behind the restart counts of `migsched status` (`store.status`) and of
    the live view (`live.progress`), so the two agree.
    """
    kept = outcomes[:-1] if failed and outcomes else outcomes
    return [o for o in kept if o != "ok"]


def cause_label(cause: str) -> str:
    """The short display label of a cause ("upgrade/tail" for "preempt"); unknown ones as they are."""
    return CAUSE_LABELS.get(cause, cause)


def lost_runs_by_cause(result: RunResult) -> dict[str, LostRuns]:
    """Runs ended by OOM or a kill, per cause (known causes first, in `CAUSE_LABELS` order)."""
    runs: dict[str, int] = {}
    wasted: dict[str, float] = {}
    for job in result.jobs:
        for a in job.runs:
            cause = cause_of(a.outcome)
            if cause is None:
                continue
            runs[cause] = runs.get(cause, 0) + 1
            wasted[cause] = wasted.get(cause, 0.0) + max(a.ended_s - a.launched_s, 0.0) * a.compute_share
    order = [c for c in CAUSE_LABELS if c in runs] + sorted(c for c in runs if c not in CAUSE_LABELS)
    return {c: LostRuns(runs[c], wasted[c]) for c in order}


def lower_bound_s(jobs: Sequence[Job], gpus: Sequence[GpuModel]) -> float:
    """The makespan lower bound of the module docstring (0 for an empty batch).

    Jobs that fit on no instance are left out (no schedule completes them).
    """
    if not jobs or not gpus:
        return 0.0
    total_c = sum(g.compute_slices for g in gpus)
    total_m = sum(g.memory_slices for g in gpus)
    longest = area_c = area_m = 0.0
    models = {g.name: g for g in gpus}.values()
    for job in jobs:
        t = job.truth
        assert t is not None, job.job_id
        best_d = best_c = best_m = None
        for model in models:
            for p in (*model.usable_profiles(), model.whole_gpu):
                if p.memory_mib < t.peak_gib * 1024.0:
                    continue
                d = t.startup_s + t.runtime_s / speed_on(t, model, p)
                cs, ms = p.compute_slices, p.memory_slices
                best_d = d if best_d is None else min(best_d, d)
                best_c = d * cs if best_c is None else min(best_c, d * cs)
                best_m = d * ms if best_m is None else min(best_m, d * ms)
        if best_d is None:
            continue
        longest = max(longest, job.spec.arrival_s + best_d)
        area_c += best_c
        area_m += best_m
    return max(longest, area_c / total_c, area_m / total_m)
