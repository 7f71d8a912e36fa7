"""`migm`'s early restart: forecast a running job's peak and stop it before it runs out.

`EarlyRestart` is the part of `MigmPolicy` that reads memory samples (paper.md §3.3, §10.3):
on a due sample it asks the `Forecaster`; a confident forecast above `safety` x the instance's
memory (and not a flat curve that fits) kills the job with `EARLY_RESTART` and remembers the
need, so the restart lands on a profile that holds it and its family starts there too.

Forecasts are fitted only when one could change a decision (`_due`): not for a job on the
largest instance, not while memory is flat below the limit, not while linear growth along the
reported progress stays below it, and without progress reports not before memory passes
`FORECAST_FROM` of the limit; after a confident forecast that fits, not again until memory
proves it low or grows by a tenth.
"""

from __future__ import annotations

import dataclasses

from migsched.core.events import Action, Kill, KillReason, MemorySample
from migsched.core.sampling import DEFAULT_PLAN, SamplePlan
from migsched.core.state import ClusterView, JobView

#: Without progress reports, forecasts start once memory passes this share of safety x instance.
FORECAST_FROM = 0.5
#: An attempt that early restart can move to more memory: dense while the run is young. (Four
#: dense samples instead of eight cut ~25 % of the samples at no cost on the bundled batches,
#: but a 4 s job on the local backend then ran out of memory before its forecast was confident:
#: tests/test_run_local.py; kept at the default.)
GROWTH_PLAN = DEFAULT_PLAN
#: The same for a job that reports no progress: only the samples that set a new peak reach the
#: policy (a forecast reads the growth; flat memory below the limit is never fitted, `_due`).
GROWTH_ONLY_PLAN = dataclasses.replace(DEFAULT_PLAN, growth_only=True)
#: An attempt no early restart can act on, whose progress still feeds the tail's estimates
#: (restarts.remaining reads the latest progress report): a doubling grid from the first sample.
PROGRESS_PLAN = SamplePlan(dense=2, growth=2.0, max_samples=16)
#: An attempt no sample can change a decision for: two samples measure its start-up for its
#: family (RunTimes.on_sample), then none.
STARTUP_PLAN = SamplePlan(dense=2, max_samples=2)


class EarlyRestart:
    """Mixin of `MigmPolicy` (uses its `forecaster`, `sizing`, `times`, `score`, `safety`)."""

    _forecast_from = 3  # samples before a forecast is fitted (`_min_samples`, set by `_init`)

    def sample_plan(self, job: JobView) -> SamplePlan:
        """Samples only where one can change a decision (issue 9: samples when the policy wants
        them). A job that early restart can move to more memory: `DEFAULT_PLAN`, reporting only
        new peaks when the job reports no progress (`GROWTH_ONLY_PLAN`). On the largest
        memory (or with early restart off) no forecast can act; if the tail restart can still
        give it more compute, `PROGRESS_PLAN` keeps its progress known, else `STARTUP_PLAN`.
        """
        prof = job.profile
        if prof is None or self.model is None or (self.early_restart and prof.memory_mib < self._largest):
            if job.spec.reports_progress:
                return GROWTH_PLAN
            if prof is None:
                return GROWTH_ONLY_PLAN
            return self._held_plan(prof.memory_mib)
        if self.tail_restart and self.compute_upgrade and prof.compute_slices < self.model.compute_slices:
            return PROGRESS_PLAN
        return STARTUP_PLAN

    def _held_plan(self, memory_mib: float) -> SamplePlan:
        """`GROWTH_ONLY_PLAN` that holds back the samples below `FORECAST_FROM` x the limit on an
        instance of `memory_mib`: without progress reports `_due` fits nothing there, so the
        backend hands them over with the first sample above it (`SamplePlan.hold_below_mib`)
        and the policy is not called for each. One plan per instance size."""
        plan = self._held_plans.get(memory_mib)
        if plan is None:
            plan = self._held_plans[memory_mib] = dataclasses.replace(
                GROWTH_ONLY_PLAN, hold_below_mib=FORECAST_FROM * self.safety * memory_mib)
        return plan

    def on_memory_sample(self, view: ClusterView, job: JobView, sample: MemorySample) -> list[Action]:
        """Kill a job whose confident forecast peak exceeds `safety` x its instance's memory."""
        acts = self._on_sample(view, job, sample)
        if acts:
            self._epoch += 1
        return acts

    def _on_sample(self, view: ClusterView, job: JobView, sample: MemorySample) -> list[Action]:
        if self.model is None:
            self._init(view)
        assert self.forecaster is not None
        self.times.on_sample(job)
        assert self.sizing is not None
        self.sizing.saw(job, sample.used_mib)  # its queued siblings need as much
        prof = job.profile
        if prof is None or not self._due(job, sample):
            return []
        fc = self.forecaster.forecast(job, job.samples)
        if fc is None or not fc.confident:
            return []
        self._checked[job.job_id] = (len(job.attempts), sample.used_mib, fc.peak_mib)
        self.score.forecast(job.job_id, fc.peak_mib)
        if not self.early_restart or fc.peak_mib <= self.safety * prof.memory_mib:
            return []
        if fc.form == "constant" and fc.peak_mib <= prof.memory_mib:
            return []  # flat memory that fits now will fit to the end: the margin is for growth
        if prof.memory_mib >= self._largest:
            return []  # nothing larger to restart on
        need = min(fc.peak_mib / self.safety, float(self._largest))
        assert self.sizing is not None
        self.sizing.restarted_early(job, need, float(prof.memory_mib))
        self._bump("early_restarts_decided")
        return [Kill(job.job_id, KillReason.EARLY_RESTART)]

    def _min_samples(self) -> int:
        """Samples before a forecast can be confident (the default forecaster's
        `confident_samples`: an unconfident forecast changes nothing), at least 3. Read once,
        when the policy meets its GPU model (`_forecast_from`), not on every sample."""
        cfg = getattr(self.forecaster, "config", None)
        return max(3, int(getattr(cfg, "confident_samples", 3)))

    def _due(self, job: JobView, sample: MemorySample) -> bool:
        """Whether a forecast now could change a decision, and is due.

        Due from the forecaster's `confident_samples`-th sample (5 by default: a forecast on
        fewer is never confident, so it could not act) to the 8th, then on every n/8-th (about 8
        fits per doubling), and only when memory grew since the last confident forecast of this
        attempt. Skipped (no fit at all) when no outcome of it could restart the job: early restart off, the job already on the
        largest instance, memory flat since the first sample while below `safety` x the
        instance, or, with progress reports, growth so far that extrapolated linearly to the
        end stays below `safety` x the instance (the forecast forms are at most linear);
        without progress reports, memory still below `FORECAST_FROM` x that limit.
        """
        n = len(job.samples)
        if n < self._forecast_from or (n > 8 and n % (n // 8)):
            return False
        prof = job.profile
        if not self.early_restart or prof is None or prof.memory_mib >= self._largest:
            return False
        limit = self.safety * prof.memory_mib
        first = job.samples[0]
        grown = sample.used_mib - first.used_mib
        if grown <= 1e-6 * max(sample.used_mib, 1.0) and sample.used_mib <= limit:
            return False
        if sample.progress is not None and first.progress is not None and sample.progress > first.progress:
            rate = grown / (sample.progress - first.progress)
            if sample.used_mib + max(rate, 0.0) * (1.0 - sample.progress) <= limit:
                return False
        if sample.used_mib < FORECAST_FROM * limit and (sample.progress is None or first.progress is None):
            return False  # no progress to extrapolate along: wait until memory nears the limit
        last = self._checked.get(job.job_id)
        # After a confident forecast that fits, fit again only once memory proves it low or
        # grows by a tenth: a steady ramp would otherwise refit on every due sample.
        return (last is None or last[0] != len(job.attempts) or sample.used_mib > last[2]
                or sample.used_mib > last[1] * 1.10)
