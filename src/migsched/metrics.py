"""Reference figures computed from the jobs' ground truth: the makespan lower bound.

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

from migsched.jobs.truth import speed_on
from migsched.hardware.catalog import GpuModel
from migsched.jobs.model import Job


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
