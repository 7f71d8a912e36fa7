"""`migm`'s EASY backfill: let a short job use slots reserved for a blocked one, if it is done in time.

A reservation (docs/migm.md, "which job") keeps a blocked head's slots draining: no other job
may start on them, so the head cannot starve. On one GPU a whole-GPU head then holds every later
arrival behind the last long job in its way, while the rest of the GPU idles (the held-out
generator's online mix at tuning seed 15: a 7g job waited 1,650 s behind one 1g job, and the
seven jobs that arrived meanwhile with it). EASY backfilling (Lifka 1995; the default of Slurm's
and most HPC schedulers' backfill) lets a job start on reserved slots when it is expected to end
before the reservation would be met anyway, so the head is not delayed:

* **drain time**: the latest projected end of the running jobs whose instances overlap the
  reserved slots (`restarts.remaining`: progress reports, else the family's completed runs,
  else the class's censored duration model); for a job with none of these, `LINDY_SHARE` of
  the time it has run so far (under heavy-tailed run times a job that has run e seconds is
  likely to run a good part of e more: the held-out generator's run times are log-uniform, and
  for e = 1,300 s in 30-3,000 s the chance that it runs another 110 s is 0.9);
* **the candidate's run**: its family's learned compute time on its tight profile (scaled by the
  family's speed exponent) plus its family's start-up; for a family with no completed run, the
  `CLASS_Z` quantile (80 %) of its class's censored duration model (a class mean does not bound
  a heavy-tailed job; a high quantile does, mostly), or before the class has that model the
  Kaplan-Meier `CLASS_Q` quantile of its completed runs with its running jobs censored
  (`ClassDurations.run_quantile_s`); unknown without either. Times `MARGIN`.

It backfills only when both are known and the candidate ends first: a misestimate costs the
head the overrun, never its place. The rule is asked only for a job that finds no room outside
the reserved slots (policy.py), and a drain time is kept across passes while the same jobs are
in the way (`BackfillPass._drain_s`: at 100,000 jobs on 1,000 GPUs the drain projections were
the largest cost that grew with the cluster). The projections move with the clock, and the policy's
placement memo does not re-ask between events: a job that becomes short enough is backfilled
at the next arrival or exit, not at the instant.
"""

from __future__ import annotations

from migsched.core.state import ClusterView, JobView
from migsched.hardware.catalog import Profile
from migsched.policies.migm.placement import Reservation
from migsched.policies.migm.restarts import REFIT_RUNS, REFIT_S, RunTimes, last_progress, project, remaining

#: A backfilled job's projected run is stretched by this factor before it is compared with the
#: drain time (run times of a family vary with its inputs and with its neighbours on the GPU).
MARGIN = 2.0
#: The class quantile (in standard deviations of log run time) taken for a family never seen.
CLASS_Z = 0.8416  # 80 %
#: Before the class has a fitted model: this quantile of its completed runs.
CLASS_Q = 0.8
#: GUESS: the remaining time of a running job with no projection, as a share of its elapsed time.
LINDY_SHARE = 0.5


def drain_s(view: ClusterView, res: Reservation, times: RunTimes) -> float | None:
    """Seconds until the running jobs in the way of reservation `res` are projected to end (0.0
    when none is in the way), or None when one of them has no projection and has not started."""
    gpu, slots = res
    if gpu >= len(view.gpus):
        return None
    latest = 0.0
    for start, job_id in view.gpus[gpu].jobs.items():
        job = view.running.get(job_id)
        prof = job.profile if job is not None else None
        if prof is None or slots.isdisjoint(prof.slots(start)):
            continue
        rem = remaining(job, view.now_s, job.family, times)  # type: ignore[arg-type]
        if rem is not None:
            latest = max(latest, rem[0])
        elif job.launched_s is not None:  # type: ignore[union-attr]
            latest = max(latest, LINDY_SHARE * (view.now_s - job.launched_s))  # type: ignore[union-attr]
        else:
            return None
    return latest


def known_ends(view: ClusterView, gpu: int, times: RunTimes) -> dict[int, float | None]:
    """Start slot -> projected remaining seconds of the job there, for the running jobs of GPU
    `gpu`, from what is known of the jobs themselves (their progress reports, their family's
    completed runs); None for a job known by its class's duration model at most. Those bound a
    backfill well enough (`drain_s`), but ranking where to wait by them put reservations behind
    the jobs that had just started (1,000 jobs on 8 GPUs, online, seed 1: +2 % makespan)."""
    out: dict[int, float | None] = {}
    if gpu >= len(view.gpus):
        return out
    for start, job_id in view.gpus[gpu].jobs.items():
        job = view.running.get(job_id)
        if job is None or job.profile is None:
            continue
        if job.family not in times.compute and last_progress(job) is None:
            out[start] = None  # two look-ups, before a projection's cost
            continue
        proj = project(job, view.now_s, job.family, times)
        out[start] = None if proj is None or proj.fit is not None else proj.remaining_s
    return out


def run_s(view: ClusterView, job: JobView, profile: Profile, times: RunTimes) -> float | None:
    """The projected run of queued `job` on `profile` (start-up included, before `MARGIN`), or
    None when neither its family nor its class has a model."""
    cls = job.spec.job_class.value
    compute = times.compute_s(job.family, cls, profile.compute_slices)
    if compute is None:
        fit = times.class_fit.get(cls)
        if fit is not None:
            compute = fit.quantile_s(profile.compute_slices, CLASS_Z)
        else:
            cens = times.censored(view.running.values(), view.now_s).get(cls, [])
            compute = times.classes.run_quantile_s(cls, profile.compute_slices, CLASS_Q,
                                                   times.alpha(job.family, cls), cens)
        if compute is None:
            return None
    return times.fam_startup.get(job.family, 0.0) + compute


class BackfillPass:
    """The backfill rule over one placement pass: the cluster does not change within a pass, so
    each reservation's drain time and each projection is worked out once (a pass may ask for many
    queue heads against the same reservation). `memo` (owned by the policy, kept across passes)
    holds the class projections, reused as `RunTimes.refit` paces the class model (`REFIT_RUNS`
    more completed runs or `REFIT_S` seconds): each is a sort over the class's runs and a scan of
    the running jobs."""

    def __init__(self, view: ClusterView, times: RunTimes,
                 memo: dict[tuple, tuple[int, float, float | None]] | None = None,
                 drains: dict[tuple, tuple[float, object, float | None]] | None = None) -> None:
        self.view, self.times = view, times
        self.memo = memo if memo is not None else {}
        self.drains = drains if drains is not None else {}
        self._drain: dict[Reservation, float | None] = {}
        self._run: dict[tuple[str, str, int], float | None] = {}

    def allows(self, job: JobView, profile: Profile, res: Reservation) -> bool:
        """Whether `job`, run on `profile`, is projected to end before reservation `res` drains."""
        if res not in self._drain:
            self._drain[res] = self._drain_s(res)
        drain = self._drain[res]
        if not drain:
            return False
        key = (job.family, job.spec.job_class.value, profile.compute_slices)
        if key not in self._run:
            self._run[key] = self._project(job, profile)
        run = self._run[key]
        return run is not None and MARGIN * run <= drain

    def _drain_s(self, res: Reservation) -> float | None:
        """`drain_s`, kept across passes (`drains`, owned by the policy) while the same jobs are
        in the way, the class model was not refitted and less than `REFIT_S` passed: then the
        drain time is the kept one minus the time since. Projected ends that move later as a job
        runs on (class model, `LINDY_SHARE`) are so taken a little early: the backfill only
        grows more cautious, the reserved job is not delayed."""
        gpu = res[0]
        if gpu >= len(self.view.gpus):
            return None
        now, fit = self.view.now_s, self.times.class_fit
        key = (res, tuple(self.view.gpus[gpu].jobs.items()))
        hit = self.drains.get(key)
        if hit is not None and hit[1] is fit and now - hit[0] < REFIT_S:
            return None if hit[2] is None else max(hit[2] - (now - hit[0]), 0.0)
        val = drain_s(self.view, res, self.times)
        if len(self.drains) > 256:
            self.drains.clear()
        self.drains[key] = (now, fit, val)
        return val

    def _project(self, job: JobView, profile: Profile) -> float | None:
        cls = job.spec.job_class.value
        if job.family in self.times.compute or cls in self.times.class_fit:
            return run_s(self.view, job, profile, self.times)  # no class quantile, no scan
        ckey = (cls, profile.compute_slices)  # a family never seen: its class's alpha, no start-up
        runs, now = self.times.classes.count(), self.view.now_s
        hit = self.memo.get(ckey)
        if hit is not None and runs < REFIT_RUNS * max(hit[0], 1) and now - hit[1] < REFIT_S:
            return hit[2]
        val = run_s(self.view, job, profile, self.times)
        if len(self.memo) > 256:
            self.memo.clear()
        self.memo[ckey] = (runs, now, val)
        return val
