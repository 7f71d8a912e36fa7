"""`migm` leaves a lone queued job waiting when a larger instance frees soon enough to end it sooner.

Online, with one job queued and the GPU partly busy, placement takes whatever the free slices
allow: a compute-bound job that arrives beside running jobs may get a 2g instance and run
nearly twice as long as on the 4g the GPU gives once a neighbour ends a minute later
(held-out-style online batch, tuning seed 11: bert-squad-infer on 2g.20gb for 1,610 s; it
now waits 36 s and runs 889 s on 4g.40gb; serial gives it the whole GPU for 587 s). So
before launching the only queued job on `pl`, migm asks, for each job running on that GPU,
whether its end would leave room for a profile with more compute that holds the job (that
GPU's busy instances without it), and whether

    remaining(running job) + T1 * c_then ** -alpha  <  (1 - WAIT_GAIN) * T1 * c_now ** -alpha

where T1 is the job's expected compute time on one slice (its family's, else its class model's
median, else the mean over the learned families: an unknown job is as long as a typical one),
alpha its speed exponent (`RunTimes.alpha`), and the remaining time the running job's
projection (`restarts.project`: progress, family, or class model). If so, it waits: nothing is
reserved; the job's end is an event, and the next pass places the job on the larger room
(the spare-compute upgrade gives a lone job all of it). With more than one job queued, other
jobs would take the room first, so the rule does not apply.

A job waits at most as long as waiting could pay off when it first waited (the slack
`(1 - WAIT_GAIN) * T(c_now) - T(c_then)`): a projection that keeps saying "soon" (a job whose
progress reports run ahead of its real progress) cannot keep it queued, and the policy asks to
be woken at that deadline (`wait_wake_s`) so that it does not hang on the next event. If
another job is queued meanwhile, the waiting one takes the profile it declined, where it can
(`_declined_room`): a second job would otherwise leave it less than it had.
"""

from __future__ import annotations

from collections.abc import Sequence

from migsched.core.state import ClusterView, JobState, JobView
from migsched.hardware.catalog import GpuModel, Profile
from migsched.policies.migm.placement import Placement, Reservation, find_anywhere
from migsched.policies.migm.restarts import RunTimes, idle_dropped, project

#: Wait only when that ends the job at least this share sooner than starting now.
WAIT_GAIN = 0.1


class WaitForMore:
    """Mixin of `MigmPolicy` (uses its `wait_for_more` and `compute_upgrade` options, `times`,
    `model`, `_profiles`, `_waits`, `need_mib`, `_unknown_rank`)."""

    wait_for_more: bool
    compute_upgrade: bool
    times: RunTimes
    model: GpuModel | None
    _profiles: tuple[Profile, ...]
    _waits: dict[str, tuple[float, Profile]]  # job -> (deadline s, the profile it declined)

    def _one_slice_s(self, job: JobView) -> float | None:
        """The job's expected compute seconds on one slice (module doc), or None; for a job that
        resumes from a checkpoint, only the work its checkpoint has not done."""
        cls = job.spec.job_class.value
        t1 = self.times.compute_s(job.family, cls, 1)
        if t1 is None:
            fit = self.times.class_fit.get(cls)
            t1 = fit.quantile_s(1, 0.0) if fit is not None else -self._unknown_rank()  # type: ignore[attr-defined]
        t1 *= 1.0 - (job.saved_progress or 0.0)
        return t1 if t1 > 0 else None

    def _better_soon(self, view: ClusterView, job: JobView, pl: Placement) -> bool:
        """Whether the only queued job, `job`, ends sooner waiting for a running neighbour on
        `pl`'s GPU to end and taking the larger room its end leaves (module doc)."""
        if not (self.wait_for_more and self.compute_upgrade) or len(view.queue) != 1:
            return False
        if job.job_id in self._target:  # type: ignore[attr-defined]
            return False  # restarted or moved for this profile: waiting would only give it the same
        waiting = self._waits.get(job.job_id)
        if waiting is not None and view.now_s >= waiting[0]:
            return False  # waited as long as it could pay off
        t1 = self._one_slice_s(job)
        if t1 is None:
            return False
        alpha = self.times.alpha(job.family, job.spec.job_class.value)
        c_now = pl.profile.compute_slices
        start_now_s = t1 * c_now ** -alpha
        need = self.need_mib(job)  # type: ignore[attr-defined]
        g = view.gpus[pl.gpu]
        for start, jid in g.jobs.items():
            r = view.jobs.get(jid)
            if r is None or r.profile is None:
                continue
            proj = project(r, view.now_s, r.family, self.times)
            if proj is None or proj.remaining_s <= 0:
                continue  # unknown, or overdue: its end is no nearer for having been expected
            then = idle_dropped(g, start)
            c_then = max((p.compute_slices for p in self._profiles
                          if p.memory_mib >= need and then.can_place(p)), default=0)
            slack_s = (1.0 - WAIT_GAIN) * start_now_s - t1 * c_then ** -alpha
            if proj.remaining_s < slack_s:  # so c_then > c_now
                if waiting is None:
                    self._waits[job.job_id] = (view.now_s + slack_s, pl.profile)
                return True
        return False

    def _waits_due(self, view: ClusterView) -> int:
        """How many waits have reached their deadline (part of the placement memo's key: a job
        whose wait just ended must be placed, though nothing else changed)."""
        if not self._waits:
            return 0
        return sum(t <= view.now_s for t, _p in self._waits.values())

    def wait_wake_s(self, view: ClusterView) -> float | None:
        """The earliest deadline of a queued job's wait still ahead, if any (module doc)."""
        if not self._waits:
            return None
        for jid in [j for j in self._waits if _gone(view, j)]:
            del self._waits[jid]
        return min((t for t, _p in self._waits.values() if t > view.now_s), default=None)

    def _declined_room(self, view: ClusterView, job: JobView, reserved: Sequence[Reservation]) -> Placement | None:
        """Once another job is queued beside a waiting one, the room it waited for may go to
        either, and placement for two queued jobs would give it less than it declined: the
        profile it declined comes first (reused, created or reclaimed), as it was to begin with."""
        waiting = self._waits.get(job.job_id)
        if waiting is None or len(view.queue) == 1:
            return None
        return find_anywhere(view, waiting[1], reserved)


def _gone(view: ClusterView, job_id: str) -> bool:
    """Whether `job_id` is no longer queued (launched, rejected or ended)."""
    job = view.jobs.get(job_id)
    return job is None or job.state is not JobState.QUEUED
