"""`greedy`: the dynamic practice of Kubernetes MIG managers (nos, HAMi), FIFO.

For the job at the head of the queue, create the profile its hint asks for (the smallest whose
memory holds the hint; the largest profile when there is no hint) wherever it fits without
touching busy instances, and destroy the instance when the job ends. No estimation; after an
out-of-memory the job asks for the next larger profile. calibration.md §7.1 describes nos/HAMi.
"""

from __future__ import annotations

from migsched.core.events import Action, DestroyInstance, Reject
from migsched.core.state import ClusterView, JobView
from migsched.hardware.catalog import Profile
from migsched.policies.base import Policy
from migsched.policies.common import (
    find_spot,
    gib,
    hint_mib,
    lowest_gpu,
    smallest_fitting,
    start_on,
)
from migsched.policies.registry import register


@register
class GreedyPolicy(Policy):
    """Create the hinted profile where it fits; free it when the job ends.

    Args:
        backfill: let later jobs start when the head job cannot (default False: strict FIFO).
    """

    name = "greedy"
    description = "create the hinted profile wherever it fits, free it at job end (nos/HAMi)"

    def __init__(self, backfill: bool = False) -> None:
        self.backfill = backfill

    def wanted_profiles(self, view: ClusterView, job: JobView) -> list[Profile]:
        """Per GPU model of the cluster, the profile the job asks for now: hint-sized (the
        largest without a hint), above any size it ran out of memory on."""
        out = []
        for model in view.models:
            need = hint_mib(job)
            if need is None:
                need = model.largest.memory_mib
            prof = smallest_fitting(model, need, above_mib=job.needs_more_than_mib)
            if prof is not None:
                out.append(prof)
        return out

    def schedule(self, view: ClusterView) -> list[Action]:
        # Instances are freed when their job ends (the manager deletes unused MIG devices).
        for key, members in view.idle_groups.items():
            for _name, start, busy in key:
                if not busy:
                    return [DestroyInstance(lowest_gpu(members), start)]
        for job in view.queue:
            profs = self.wanted_profiles(view, job)
            if not profs:
                need = max(hint_mib(job) or 0.0, job.needs_more_than_mib)
                return [Reject(job.job_id, f"needs more than {gib(need)}; the largest instance has "
                                           f"{gib(view.largest_instance_mib)}")]
            for prof in profs:
                spot = find_spot(view, prof, reuse=False)
                if spot is not None:
                    return start_on(job, prof, spot)
            if not self.backfill:
                break
        return []
