"""`migm`'s tail upgrade: restart a long job that holds a small instance on a larger one.

At the end of a batch (no more arrivals, nothing queued) the last long jobs often sit on 1g
slices while the rest of the GPU idles. `pick_upgrade` projects, for each running job, its
remaining time where it is and its finish after a restart on the best larger instance that the
idle room (free slots, idle instances and the job's own instance) can hold, and proposes the
restart whose projected remaining time shrinks the most, only when it shrinks by at least
`margin` (and `min_gain_s`). Killed work is lost, so the projection charges the whole run again.

A job projected by its class (below) has a distribution of totals, and a batch's makespan is set
by the tail of such distributions, not their means: with `overshoot`, such a job also qualifies
when the restart does not lengthen its expected remaining time and cuts its expected overrun of
the others' latest projected end, E[(finish - end)+], by `margin` and `min_gain_s`.

Durations (no ground truth is read):

* **Compute time on the current instance** T: from the job's own progress reports
  (T = compute elapsed / progress) or, without them, from completed runs of its family on any
  profile, scaled to this one; without either, from its class's duration model fitted to the
  class's completed runs and, as censored observations, its running jobs (`survival.py`): the
  expected total given how long the job has run so far.
* **Speed scaling** between profiles: compute time ~ compute_slices^-alpha. alpha is fitted from
  a family's completed runs on two profiles with different compute; for a family never seen,
  its class's fitted alpha once the class has one (`survival.py`); otherwise a conservative
  prior per job class (`PRIOR_ALPHA`: the bundled templates' exponents range 0.01-0.98 for
  scientific kernels, 0.18-1.09 for ML training, 0.41-0.94 for LLM generation; a low prior only
  forgoes gains, a high one kills jobs that do not speed up).
* **Startup**: measured from launch to the job's first progress: the job's progress reports,
  extrapolated back to progress 0 from its first two reports; else the family's, else 0 (a job
  that reports no progress has no observable end of startup).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from migsched.core.events import KillReason, MemorySample
from migsched.core.state import ClusterView, GpuView, JobView
from migsched.estimators.history import DurationRecord, HistoryStore
from migsched.hardware.catalog import GpuModel, Profile
from migsched.partition.layout import Layout
from migsched.policies.migm.placement import mig_groups
from migsched.policies.migm.survival import ClassDurations, DurationFit

#: Speed-scaling exponent assumed when a family has not run on two compute sizes.
PRIOR_ALPHA = {"scientific": 0.1, "ml-train": 0.9, "ml-infer": 0.9, "llm": 0.8}
DEFAULT_ALPHA = 0.3
MIN_PROGRESS = 0.02  # progress below this says too little about the rate
#: The class duration model is refitted once the completed runs grew by this factor or this
#: many seconds passed (`RunTimes.refit`); what is derived from it is paced the same way.
REFIT_RUNS = 1.02
REFIT_S = 300.0
#: The tail check looks for room only for this many of the longest-remaining jobs (the room
#: search is O(GPUs) per job; the longest ones are those a restart can shorten the batch by).
TAIL_CANDIDATES = 16


#: Attempt outcomes of kills made for a job's duration (a tail or blocked restart, a move).
DURATION_KILLS = (f"killed:{KillReason.PREEMPT.value}", f"killed:{KillReason.MOVE.value}")


def sized_by_duration(job: JobView, upto: int | None = None) -> bool:
    """Whether a kill for the job's duration came before its attempt number `upto` (default:
    its current run): that run's size was chosen because the job ran long, so it is a biased
    sample of the class's run time on that size and the class model leaves it out."""
    return any(a.outcome in DURATION_KILLS for a in job.attempts[:upto])


@dataclass(frozen=True, slots=True)
class Upgrade:
    """Restart `job_id` on `profile`: remaining `old_s` where it is, `new_s` after the restart."""

    job_id: str
    profile: Profile
    old_s: float
    new_s: float


class RunTimes:
    """What runs taught about durations: startups and compute time per family and profile size."""

    def __init__(self, prior: dict[str, float] | None = None, history: HistoryStore | None = None) -> None:
        self.prior = {**PRIOR_ALPHA, **(prior or {})}  # job class -> alpha before any fit
        self.history = history  # durations of earlier batches' runs, by family (recall)
        self.gpu = ""  # the GPU model runs are recorded and recalled for (set by the policy)
        self.startup: dict[str, float] = {}        # job id -> startup of its current attempt
        self.fam_startup: dict[str, float] = {}    # family -> startup of a run
        self.compute: dict[str, dict[int, float]] = {}  # family -> compute slices -> compute s (last)
        self.classes = ClassDurations()             # per class, for jobs of families not seen yet
        self.class_fit: dict[str, DurationFit] = {}  # class -> its latest censored fit (refit())
        self._fit_at: tuple[int, float] | None = None  # (completed runs, time) of the last refit

    def on_sample(self, job: JobView) -> None:
        """Measure the startup of the job's attempt: where its first two progress reports
        extrapolate to progress 0 (launch to first progress)."""
        if job.job_id in self.startup or len(job.samples) > 8:
            return  # measured, or past the first eight samples that the measure reads
        p0 = job.saved_progress or 0.0  # a resumed run starts from its checkpoint
        first = [s for s in job.samples[:8] if s.progress is not None and s.progress > p0][:2]
        if len(first) == 2 and first[1].progress > first[0].progress:  # type: ignore[operator]
            a, b = first
            rate = (b.progress - a.progress) / max(b.elapsed_s - a.elapsed_s, 1e-9)  # type: ignore[operator]
            self.startup[job.job_id] = max(0.0, a.elapsed_s - (a.progress - p0) / rate)  # type: ignore[operator]

    def startup_of(self, job: JobView, fam: str) -> float:
        return self.startup.get(job.job_id, self.fam_startup.get(fam, 0.0))

    def finished(self, job: JobView, fam: str, compute_slices: int, run_s: float, from_progress: float = 0.0,
                 for_class: bool = True) -> None:
        """A run of `job` on a profile with `compute_slices` took `run_s` from launch to exit,
        doing the work from `from_progress` (its checkpoint; 0: from the start) to the end.
        `for_class=False`: the run's size was chosen by its duration (a tail restart), so the
        class's model of run time per size does not take it (it would be a biased sample)."""
        st = self.startup.pop(job.job_id, None)
        if st is not None:
            self.fam_startup[fam] = st
        else:
            st = self.fam_startup.get(fam, 0.0)
        work_s = max(run_s - st, 1e-3) / max(1.0 - from_progress, 0.01)
        self.compute.setdefault(fam, {})[compute_slices] = work_s
        if for_class:
            self.classes.finished(job.spec.job_class.value, compute_slices, work_s)
        if self.history is not None:
            self.history.record_duration(fam, DurationRecord(compute_slices, work_s, st, self.gpu))

    def recall(self, fam: str) -> bool:
        """Before any run of `fam` completed in this batch, take its durations from the history
        of earlier batches (median per instance size): its compute times and start-up, as if
        those runs had completed here (runs on this GPU model only). True when something was
        recalled."""
        if self.history is None or fam in self.compute:
            return False
        known = self.history.durations(fam, self.gpu)
        if not known:
            return False
        self.compute[fam] = {c: w for c, (w, _) in known.items()}
        self.fam_startup[fam] = statistics.median(st for _, st in known.values())
        return True

    def stopped(self, job: JobView, fam: str, compute_slices: int, run_s: float) -> None:
        """A first attempt of `job` was stopped (killed or out of memory) after `run_s` from
        launch: its class learns that such a run lasts longer than what it computed (a
        right-censored observation, kept after the job left the running set: the restarts pick
        the longest runners, so dropping them would teach the class that its jobs are short)."""
        compute_s = run_s - self.startup_of(job, fam)
        if compute_s > 0:
            self.classes.stopped(job.spec.job_class.value, compute_slices, compute_s)
        self.forget(job)

    def refit(self, running: Iterable[JobView], now_s: float) -> None:
        """Refit each class's duration model with its running jobs as censored observations
        (`survival.ClassDurations`); a class without enough completed runs has no fit."""
        # A fit moves little between checks: refit once the completed runs grew by REFIT_RUNS
        # or REFIT_S passed (the censored times grow with the clock), else keep the last one.
        runs = self.classes.count()
        if self._fit_at is not None and runs < REFIT_RUNS * self._fit_at[0] and now_s < self._fit_at[1] + REFIT_S:
            return
        self._fit_at = (runs, now_s)
        self.class_fit = {}
        for cls, obs in self.censored(running, now_s).items():
            fit = self.classes.fit(cls, obs)
            if fit is not None:
                self.class_fit[cls] = fit

    def censored(self, running: Iterable[JobView], now_s: float) -> dict[str, list[tuple[int, float]]]:
        """Per job class, (compute slices, compute seconds so far) of the running jobs (resumed
        runs and runs sized by their duration left out): the right-censored observations of the
        class duration models."""
        by_class: dict[str, list[tuple[int, float]]] = {}
        for j in running:
            if j.profile is None or j.launched_s is None or j.saved_progress or sized_by_duration(j):
                continue
            elapsed = now_s - j.launched_s - self.startup_of(j, j.family)
            by_class.setdefault(j.spec.job_class.value, []).append((j.profile.compute_slices, elapsed))
        return by_class

    def forget(self, job: JobView) -> None:
        self.startup.pop(job.job_id, None)

    def alpha(self, fam: str, job_class: str) -> float:
        """Compute time ~ slices^-alpha: fitted from the family's two most different sizes, else prior."""
        runs = self.compute.get(fam)
        if runs and len(runs) >= 2:
            lo, hi = min(runs), max(runs)
            a = math.log(runs[lo] / runs[hi]) / math.log(hi / lo)
            return min(max(a, 0.0), 1.0)
        fit = self.class_fit.get(job_class) if not runs else None
        if fit is not None:  # a family never seen: its class's fitted scaling
            return fit.alpha
        return self.prior.get(job_class, DEFAULT_ALPHA)

    def compute_s(self, fam: str, job_class: str, compute_slices: int) -> float | None:
        """The family's compute time on `compute_slices`, scaled from its nearest known size."""
        runs = self.compute.get(fam)
        if not runs:
            return None
        c = min(runs, key=lambda k: (abs(math.log(k / compute_slices)), k))
        return runs[c] * (c / compute_slices) ** self.alpha(fam, job_class)


def last_progress(job: JobView) -> MemorySample | None:
    """The job's latest sample that carries a progress report, if any."""
    for s in reversed(job.samples[-4:]):
        if s.progress is not None:
            return s
    return None


def remaining(job: JobView, now_s: float, fam: str, times: RunTimes) -> tuple[float, float] | None:
    """(remaining seconds on the current instance, compute seconds of the whole job there), or
    None if unknown. A resumed run (`JobView.saved_progress`) counts from its checkpoint."""
    proj = project(job, now_s, fam, times)
    return None if proj is None else (proj.remaining_s, proj.total_s)


@dataclass(frozen=True, slots=True)
class Projection:
    """A running job's projection: remaining and total compute seconds on its instance, its
    compute seconds so far, and the class fit they come from when nothing about the job itself
    is known (then the total is a distribution, not a point: `DurationFit`)."""

    remaining_s: float
    total_s: float
    elapsed_s: float
    fit: DurationFit | None = None


def project(job: JobView, now_s: float, fam: str, times: RunTimes) -> Projection | None:
    """The job's `Projection` (progress, else its family's runs, else its class fit), or None."""
    prof = job.profile
    if prof is None or job.launched_s is None:
        return None
    st = times.startup_of(job, fam)
    p0 = job.saved_progress or 0.0
    elapsed = max(now_s - job.launched_s - st, 0.0)
    s = last_progress(job)
    if s is not None and s.progress is not None and s.progress - p0 >= MIN_PROGRESS:
        done_s = max(s.elapsed_s - st, 1e-3)
        total = done_s / (min(s.progress, 1.0) - p0)
        return Projection(max(total * (1.0 - p0) - elapsed, 0.0), total, elapsed)
    total = times.compute_s(fam, job.spec.job_class.value, prof.compute_slices)
    fit = None
    if total is None:
        fit = times.class_fit.get(job.spec.job_class.value) if not p0 else None
        if fit is None:
            return None
        total = fit.expected_total_s(prof.compute_slices, elapsed)  # a long-runner's mean, given e
    return Projection(max(total * (1.0 - p0) - elapsed, 0.0), total, elapsed, fit)


def idle_dropped(g: GpuView, skip_start: int | None = None) -> Layout:
    """`g`'s layout with its idle instances (and the one at `skip_start`) destroyed."""
    lay = g.layout
    keep = tuple(i for i in lay.instances if i.busy and i.start != skip_start)
    return lay if len(keep) == len(lay.instances) else Layout(lay.model, keep)


def shared_room(view: ClusterView, profiles: Iterable[Profile]) -> set[Profile]:
    """Those of `profiles` that fit on some MIG GPU once its idle instances are destroyed.

    One GPU per layout group stands for all of its group (the same layout, the same room); the
    result holds for every job, so a tail check computes it once, not once per candidate."""
    cands = list(profiles)
    fits: set[Profile] = set()
    for g, _members in mig_groups(view):
        lay = idle_dropped(g)
        for p in cands:
            if p not in fits and lay.can_place(p):
                fits.add(p)
        if len(fits) == len(cands):
            break
    return fits


def room_for(view: ClusterView, job: JobView, profiles: Iterable[Profile],
             shared: set[Profile] | None = None) -> list[Profile]:
    """Those of `profiles` that fit somewhere once idle instances and `job`'s own are destroyed.

    `shared` is `shared_room(view, ...)` over at least `profiles`, if the caller has it."""
    cands = list(profiles)
    if shared is None:
        shared = shared_room(view, cands)
    fits = {p for p in cands if p in shared}
    if job.gpu is not None and len(fits) < len(cands) and view.gpus[job.gpu].mig:
        own = idle_dropped(view.gpus[job.gpu], job.start)
        fits.update(p for p in cands if p not in fits and own.can_place(p))
    return [p for p in cands if p in fits]


def _best_upgrade(view: ClusterView, model: GpuModel, job: JobView, fam: str, proj: Projection,
                  min_memory: float, times: RunTimes, margin: float, min_gain_s: float,
                  reconf_s: float, shared: set[Profile] | None = None,
                  horizon_s: float | None = None) -> Upgrade | None:
    """The job's best restart, given its `proj`ection, if it shortens its remaining time by at
    least `margin` and `min_gain_s`, or (with `horizon_s`, the others' latest projected end from
    now, and a class-fit projection) its expected overshoot of that end by as much (module doc;
    `shared`: as for `room_for`)."""
    cur = job.profile
    assert cur is not None
    old_s, total = proj.remaining_s, proj.total_s
    bigger = [p for p in model.profiles if p.compute_slices > cur.compute_slices and p.memory_mib >= min_memory]
    if not bigger:
        return None
    alpha = times.alpha(fam, job.spec.job_class.value)
    st = times.startup_of(job, fam)
    fit = proj.fit if horizon_s is not None else None  # the overshoot rule's distribution
    end_s = horizon_s or 0.0
    old_over = fit.expected_excess_s(cur.compute_slices, proj.elapsed_s, proj.elapsed_s + end_s) \
        if fit is not None else 0.0
    best: tuple[tuple[float, ...], Upgrade, float] | None = None
    # A job that can checkpoint moves with its progress (a resume, then the rest of the work);
    # any other restarts from zero and does the whole work again.
    ckpt = job.spec.checkpoint
    work, extra, done = (old_s, ckpt.resume_s, proj.elapsed_s) if ckpt is not None else (total, 0.0, 0.0)
    fixed = reconf_s + st + extra
    for p in room_for(view, job, bigger, shared):
        ratio = (cur.compute_slices / p.compute_slices) ** alpha
        new_s = fixed + work * ratio
        new_over = 0.0
        if fit is not None:  # after: fixed + ratio (T - done) > end
            new_over = ratio * fit.expected_excess_s(cur.compute_slices, proj.elapsed_s,
                                                     done + (end_s - fixed) / ratio)
        key = (new_over, new_s, p.compute_slices, p.memory_slices)
        if best is None or key < best[0]:
            best = (key, Upgrade(job.job_id, p, old_s, new_s), new_over)
    if best is None:
        return None
    _key, cand, new_over = best
    by_mean = cand.new_s <= (1.0 - margin) * old_s and old_s - cand.new_s >= min_gain_s
    by_end = fit is not None and cand.new_s <= old_s and new_over <= (1.0 - margin) * old_over \
        and old_over - new_over >= min_gain_s
    return cand if by_mean or by_end else None


def pick_upgrade(view: ClusterView, model: GpuModel, jobs: Iterable[JobView], family: Callable[[JobView], str],
                 min_memory: Callable[[JobView], float], times: RunTimes, margin: float,
                 min_gain_s: float, reconf_s: float = 0.5, overshoot: bool = True) -> Upgrade | None:
    """The restart of the job with the longest projected remaining time that qualifies, among
    the `TAIL_CANDIDATES` longest, or None (module doc). With `overshoot`, a job projected by
    its class may also qualify by how much less it would overrun the others' latest end."""
    cands = []
    top = model.compute_slices
    ends: list[float] = []  # projected remaining seconds of every running job with a projection
    for job in jobs:
        if job.profile is None or job.killing:
            continue
        can_grow = job.profile.compute_slices < top  # else nothing larger to restart on
        if not (can_grow or overshoot):
            continue  # projected only for the others' latest end
        fam = family(job)
        proj = project(job, view.now_s, fam, times)
        if proj is None:
            continue
        ends.append(proj.remaining_s)
        if can_grow:
            cands.append((proj, fam, job))
    cands.sort(key=lambda c: -c[0].remaining_s)
    first, second = _top_two(ends)
    shared: set[Profile] | None = None
    for proj, fam, job in cands[:TAIL_CANDIDATES]:
        if shared is None:
            shared = shared_room(view, model.profiles)
        # the latest end of the others (this job may be the latest itself)
        horizon = (second if proj.remaining_s >= first else first) if overshoot else None
        up = _best_upgrade(view, model, job, fam, proj, min_memory(job), times, margin, min_gain_s, reconf_s,
                           shared, horizon)
        if up is not None:
            return up
    return None


def _top_two(values: list[float]) -> tuple[float, float]:
    """The largest and second largest of `values` (0 where there are fewer)."""
    first = second = 0.0
    for v in values:
        if v > first:
            first, second = v, first
        elif v > second:
            second = v
    return first, second
