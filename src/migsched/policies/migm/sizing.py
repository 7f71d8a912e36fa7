"""How much a job needs: its memory (the tier) and, where compute would idle, more compute.

**Memory.** A job's need is the largest of: the estimator's answer (`JobMemoryEstimator`:
history of its name, analytic `describe:`, hint x learned margin, else what completed jobs of
its class peaked at, else a small class prior — never "the whole GPU" by default), the declared
hint (a floor: an analytic estimate below it caused OOMs), what its *family* taught (the peak of
a successful run; a floor above an instance a member ran out of memory on or was restarted
early from; the most memory a member was seen using, running or stopped) and the forecast
remembered at its own early restart. The tier is the smallest
profile holding that need and strictly larger than any instance the job failed on.

A job started on a guess is corrected by the restart rules: an OOM raises its floor (the next
larger profile), a confident forecast above the instance restarts it early (`policy.py`).

**Compute.** `spare_profiles` lists the larger profiles a job may take when the idle compute of
the cluster exceeds what the queued jobs' tiers need: the compute would otherwise idle, and a
job that scales finishes sooner on it. Used at dispatch, while jobs still arrive too (option
`spare_upgrade`), which keeps whole GPUs whole when the queue is shorter than the free capacity.
"""

from __future__ import annotations

import math

from migsched.core.state import ClusterView, JobView
from migsched.estimators.base import MemoryEstimator
from migsched.hardware.catalog import GpuModel, Profile
from migsched.policies.common import profiles_by_size, smallest_fitting


class MemorySizing:
    """Memory needs and tiers of jobs, and what finished and failed runs taught about them.

    `version` grows whenever something learned may change a queued job's tier; the tier cache
    is keyed by the job's attempt count and its family's own version (what a family taught
    changes only its members' tiers), so learning about one family never recomputes the others.
    """

    def __init__(self, model: GpuModel, estimator: MemoryEstimator) -> None:
        self.model = model
        self.estimator = estimator
        self.profiles = profiles_by_size(model)
        self.largest_mib = float(max(p.memory_mib for p in self.profiles))
        self.version = 0
        self._job_need: dict[str, float] = {}    # forecast-based need after an early restart
        self._above: dict[str, float] = {}       # memory of the instance a job was early-restarted from
        self._name_floor: dict[str, float] = {}  # a family needs at least this (restarts)
        self._name_peak: dict[str, float] = {}   # peak of a successful run of the family
        self._cache: dict[str, tuple[int, int, str | None]] = {}
        self._fam_version: dict[str, int] = {}

    def _learned(self, family: str) -> None:
        self.version += 1
        self._fam_version[family] = self.version

    def need_mib(self, job: JobView) -> float:
        """The peak memory the job is planned for (module doc)."""
        fam = job.family
        base = self._name_peak.get(fam)
        if base is None:
            base = max(self.estimator.estimate(job).mib, (job.spec.hint_gib or 0.0) * 1024.0)
        return max(base, self._name_floor.get(fam, 0.0), self._job_need.get(job.job_id, 0.0))

    def tier_of(self, job: JobView) -> str | None:
        """The name of the tightest profile for the job now, or None when nothing holds it."""
        key = (len(job.attempts), self._fam_version.get(job.family, 0))
        hit = self._cache.get(job.job_id)
        if hit is not None and hit[:2] == key:
            return hit[2]
        above = max(job.needs_more_than_mib, self._above.get(job.job_id, 0.0))
        prof = smallest_fitting(self.model, min(self.need_mib(job), self.largest_mib), above_mib=above)
        tier = prof.name if prof is not None else None
        self._cache[job.job_id] = (*key, tier)
        return tier

    # ---- learning -----------------------------------------------------------------------------
    def succeeded(self, job: JobView, peak_mib: float) -> None:
        """A run of `job` completed having used `peak_mib`."""
        self._cache.pop(job.job_id, None)
        self.estimator.observe(job, peak_mib, True)
        if peak_mib > self._name_peak.get(job.family, 0.0):
            self._name_peak[job.family] = peak_mib
            self._learned(job.family)
        self._job_need.pop(job.job_id, None)
        self._above.pop(job.job_id, None)

    def ran_out(self, job: JobView, peak_mib: float, instance_mib: float) -> None:
        """A run of `job` ran out of memory on an instance of `instance_mib`."""
        self._cache.pop(job.job_id, None)
        self.estimator.observe(job, peak_mib, False)
        if instance_mib + 1.0 > self._name_floor.get(job.family, 0.0):
            self._name_floor[job.family] = instance_mib + 1.0
            self._learned(job.family)

    def restarted_early(self, job: JobView, need_mib: float, instance_mib: float) -> None:
        """`job` is restarted early because its forecast needs `need_mib` (> its instance)."""
        self._job_need[job.job_id] = max(self._job_need.get(job.job_id, 0.0), need_mib)
        self._above[job.job_id] = max(self._above.get(job.job_id, 0.0), instance_mib)
        self._name_floor[job.family] = max(self._name_floor.get(job.family, 0.0), need_mib)
        self._learned(job.family)
        self._cache.pop(job.job_id, None)

    def saw(self, job: JobView, used_mib: float) -> None:
        """A member of `job`'s family was seen using `used_mib` (a memory sample of a running
        member, or the peak of one that was stopped before it ended): every member needs at
        least that much. A queued sibling of a job seen at 14.9 GiB no longer starts on a
        1g.10gb and runs out of memory there. Members' tiers are recomputed only when the floor
        moves to another profile (a ramping job reports many new peaks)."""
        fam = job.family
        old = self._name_floor.get(fam, 0.0)
        if not math.isfinite(used_mib) or used_mib <= old:  # a NaN would stick as the floor
            return
        self._name_floor[fam] = used_mib
        was = smallest_fitting(self.model, min(old, self.largest_mib))
        now = smallest_fitting(self.model, min(used_mib, self.largest_mib))
        if was is not now:
            self._learned(fam)

    def forget(self, job: JobView) -> None:
        """Drop the job's cached tier (it left the running set)."""
        self._cache.pop(job.job_id, None)


def spare_compute(view: ClusterView, model: GpuModel, queued_tiers: dict[str, int]) -> tuple[int, int]:
    """(compute slices, memory slots) idle in the cluster beyond what the queued jobs' tiers need.

    Idle = free room plus idle instances, on MIG-enabled GPUs; demand = each queued job's tier.
    The idle room is the view's running total (`ClusterView.idle_room`). When the demand alone
    exceeds what could be idle at most (every compute slice of the cluster minus one per running
    job) the compute surplus is that negative bound and the memory one 0.
    """
    dem_c = dem_m = 0
    for t, n in queued_tiers.items():
        p = model.profile(t)
        dem_c += n * p.compute_slices
        dem_m += n * p.memory_slices
    most_c = len(view.gpus) * model.compute_slices - len(view.running)
    if dem_c >= most_c:
        return most_c - dem_c, 0
    cap_c, cap_m = view.idle_room()
    return cap_c - dem_c, cap_m - dem_m


def spare_profiles(profiles: tuple[Profile, ...], tight: Profile, spare_c: int, spare_m: int) -> list[Profile]:
    """Profiles holding `tight`'s memory with more compute that the spare capacity can give,
    most compute first (then fewer memory slots)."""
    if spare_c <= 0:
        return []
    bigger = [p for p in profiles if p.memory_mib >= tight.memory_mib
              and p.compute_slices > tight.compute_slices
              and p.compute_slices - tight.compute_slices <= spare_c
              and p.memory_slices - tight.memory_slices <= max(spare_m, 0)]
    return sorted(bigger, key=lambda p: (-p.compute_slices, p.memory_slices))
