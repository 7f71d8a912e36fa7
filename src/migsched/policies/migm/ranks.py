"""`migm`'s LPT ranks within a tier (rank="lpt", docs/migm.md step 8): longest expected first.

A queued job's rank is minus its family's learned compute time on one slice (`RunTimes`, from
completed runs). A family with no completed run yet ranks by the estimate its learned siblings
give (`siblings.py`: "nw-32768" from "nw-16384"), else at the mean of the learned ones
(`_unknown_rank`); and when its running members have already computed longer than that mean,
the median of what they computed so far is a floor on its length (`_floors`, the censored
ranks): the larger of floor and sibling estimate ranks it. The ranks feed `QueueIndex`
(ordering.py), which re-adds a family's queued members when its rank changes.
"""

from __future__ import annotations

import math

from migsched.core.state import ClusterView, JobView

#: A family's censored rank is renewed when its floor grew this much.
FLOOR_STEP = 1.5
#: ... and it applies once the floor exceeds this many times the learned families' mean.
FLOOR_OVER_MEAN = 1.0
#: ... checked at most every this fraction of that mean, over a family's first running members.
FLOOR_CHECK = 0.1
FLOOR_MEMBERS = 8


class LptRanks:
    """Mixin of `MigmPolicy` (uses its `times`, `index`, `_fam_val`, `_fam_sum`, `_known_runs`, `_lpt_mean`,
    `_floor`, `_floor_at`, `_watch`)."""

    def _lpt_rank(self, job: JobView) -> float | None:
        """rank="lpt": longest expected first: minus the family's learned 1-slice compute time;
        before a run of the family completed, minus the larger of its siblings' estimate and
        the time a running member has already computed (`_floors`, once that exceeds the
        learned mean); else None (it then ranks as `_unknown_rank`)."""
        if job.family not in self.times.compute:
            floor = self._floor.get(job.family)
            est = self.siblings.estimate_s(job.family) if self.siblings is not None else None
            if est is not None and (floor is None or est > floor):
                return -est
            return None if floor is None else -floor
        return -(self.times.compute_s(job.family, job.spec.job_class.value, 1) or 0.0)

    def _floors(self, view: ClusterView) -> None:
        """Censored LPT ranks: a family with queued members and none completed, whose running
        members have already computed (the median of its `FLOOR_MEMBERS` earliest, in 1-slice
        seconds by `RunTimes.alpha`; the median, so that one long member does not speak for the
        family) longer than the learned families' mean, is at least that long: its queued
        members are re-ranked by it (`QueueIndex.learned`), again each time it grew by
        `FLOOR_STEP`. Without it, the second member of a long family waits behind short jobs
        while the first is still running, and the batch's end waits for it.

        Checked every `FLOOR_CHECK` x the mean at most, over the watched families only
        (`_watch`: launched while others of the family were queued) and their `FLOOR_MEMBERS`
        earliest running members: O(watched) per check, not O(running)."""
        if not self._watch:
            return
        mean = -self._unknown_rank()
        if mean <= 0.0:
            return  # nothing learned yet: there is no "longer than the others"
        if self._floor_at is not None and view.now_s < self._floor_at + FLOOR_CHECK * mean:
            return
        self._floor_at = view.now_s
        for fam in list(self._watch):
            jobs = self._watch[fam]
            if fam in self.times.compute or not self.index.queued_by_family.get(fam):
                del self._watch[fam]
                continue
            done, seen, gone = [], 0, []
            for jid, j in jobs.items():  # launch order: the earliest have computed longest
                if jid not in self.index.running:  # ended or requeued: no longer computing
                    gone.append(jid)
                    continue
                if j.launched_s is None or j.profile is None:
                    continue  # not confirmed started yet
                seen += 1
                if seen > FLOOR_MEMBERS:
                    break
                done_s = view.now_s - j.launched_s - self.times.startup_of(j, fam)
                a = self.times.alpha(fam, j.spec.job_class.value)
                done.append(done_s * j.profile.compute_slices ** a)
            for jid in gone:
                del jobs[jid]
            if not done:
                continue
            done.sort()
            best = done[(len(done) - 1) // 2]  # the median (lower): one long member is not the family
            if best > FLOOR_OVER_MEAN * mean and best >= FLOOR_STEP * self._floor.get(fam, 0.0):
                self._floor[fam] = best
                self.index.learned(fam)

    def _unknown_rank(self) -> float:
        """The rank of jobs of families not learned yet: minus the mean over the learned ones, so
        unknown jobs sit among them (FIFO when nothing is learned)."""
        if not self._fam_val:
            return 0.0
        if self._lpt_mean[0] != self._known_runs:  # O(1): the sum is kept as families are learned
            self._lpt_mean = (self._known_runs, self._fam_sum.value() / len(self._fam_val))
        return -self._lpt_mean[1]

    def _fam_learned(self, family: str, t1_s: float) -> None:
        """`family`'s 1-slice time is `t1_s` now (`_fam_val`, and the sum `_unknown_rank` divides)."""
        old = self._fam_val.get(family)
        if old is not None:
            self._fam_sum.add(-old)
        self._fam_val[family] = t1_s
        self._fam_sum.add(t1_s)

    def _watch_family(self, job: JobView) -> None:
        """`job` was just launched: watch its family for a censored rank while others of it
        are queued and none of it completed."""
        fam = job.family
        if self.rank == "lpt" and self.index.queued_by_family.get(fam) and fam not in self.times.compute:
            self._watch.setdefault(fam, {})[job.job_id] = job


class ExactSum:
    """A running sum of floats that stays exact as values are added and taken back (the partials
    of Shewchuk's algorithm, which `math.fsum` uses). `_unknown_rank` once summed every learned
    family on each change: O(families) per completed run, 36 % of a 50,000-job online run."""

    __slots__ = ("_partials",)

    def __init__(self) -> None:
        self._partials: list[float] = []

    def add(self, x: float) -> None:
        """Add `x` (a negative one takes a value back out exactly)."""
        partials = self._partials
        i = 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                partials[i] = lo
                i += 1
            x = hi
        partials[i:] = [x]

    def value(self) -> float:
        """The sum, correctly rounded."""
        return math.fsum(self._partials)
