"""What `migm` learns when a launched attempt ends: run times, memory, forecast error.

`Learning` is the part of `MigmPolicy` that turns an ended attempt into knowledge (docs/migm.md
steps 1, 5 and 8): a completed run teaches its family's run time on that instance size (and,
through `_known`, the LPT ranks and the siblings' estimates) and its peak memory; a run stopped
from zero, sized by memory, is a censored observation of its class's durations; an OOM raises
the family's memory floor.
"""

from __future__ import annotations

from migsched.core.state import JobState, JobView
from migsched.policies.migm.restarts import sized_by_duration


class Learning:
    """Mixin of `MigmPolicy` (uses its `sizing`, `estimator`, `times`, `index`, `rank`, `score`,
    `model`, `siblings`, `_fam_val`, `_known_runs`, `_forget_restart`, `_bump`)."""

    def _left(self, job: JobView) -> None:
        """A launched job left the running set: learn from how its attempt ended."""
        assert self.sizing is not None
        self.sizing.forget(job)
        if job.state in (JobState.DONE, JobState.FAILED):  # ended before a restart's kill landed:
            self._forget_restart(job.job_id)  # else the one-at-a-time rule would wait on it for ever
        if not job.attempts:
            return
        a = job.attempts[-1]
        name = job.family
        assert self.estimator is not None
        by_duration = sized_by_duration(job, len(job.attempts) - 1)  # this run's size chosen by its length
        if a.outcome == "ok":
            assert self.model is not None
            new_family = name not in self.times.compute
            p0 = next((x.saved_progress for x in reversed(job.attempts[:-1]) if x.outcome != "launch-failed"), None)
            self.times.finished(job, name, self._slices(a.profile), a.ended_s - a.launched_s,
                                p0 or 0.0, for_class=not by_duration)
            self._known(name)
            if new_family and self.rank == "lpt":
                self.index.learned(name)
            self.sizing.succeeded(job, a.peak_mib)
            self.score.finished(job.job_id, a.peak_mib)
        elif a.outcome not in ("launch-failed", "failed") and a.saved_progress is None \
                and all(x.saved_progress is None for x in job.attempts[:-1]) \
                and not by_duration:  # a run from zero, sized by memory
            assert self.model is not None
            self.times.stopped(job, name, self._slices(a.profile), a.ended_s - a.launched_s)
        else:
            self.times.forget(job)
        if a.outcome not in ("ok", "oom", "launch-failed", "failed"):  # stopped: its peak is a floor
            self.sizing.saw(job, a.peak_mib)
        if a.outcome == "oom":
            self.sizing.ran_out(job, a.peak_mib, a.memory_mib)
            self._bump("oom_restarts_seen")

    def _slices(self, profile: str) -> int:
        """Compute slices of the instance an attempt ran on (all of them on a MIG-off GPU)."""
        assert self.model is not None
        return self.model.instance_profile(profile).compute_slices

    def _known(self, family: str) -> None:
        """`family`'s run times were learned (a run completed) or recalled: its 1-slice time
        joins the mean unknown families rank at (`_unknown_rank`) and its siblings' estimates."""
        t1 = self.times.compute_s(family, "", 1) or 0.0
        self._fam_learned(family, t1)
        self._known_runs += 1
        if self.siblings is not None:
            self._rerank(self.siblings.learned(family, t1))

    def _rerank(self, families: list[str]) -> None:
        """Re-add the queued jobs of `families` to the index: their LPT rank may have moved."""
        if self.rank == "lpt":
            for fam in families:
                if fam in self.index.queued_by_family:
                    self.index.learned(fam)
