"""The estimator a policy uses before launch: history → analytic → hint → class default.

Each source is tried in order of how much it knows about *this* job (paper.md §3.2):

1. history: the peak of earlier runs of the same job name (and command), × `history_margin`;
2. analytic: the job's `describe:` block (DNNMem-spirit), × `analytic_margin`;
3. hint: `hint_gib` × the margin learned for its class (`hint.py`);
4. class default: a fraction of the largest instance per class, or the largest itself.

Whatever the source, the estimate is raised to just above what the job is known to need: the
largest instance it ran out of memory on (`JobView.needs_more_than_mib`) and the peaks of its
OOM'd or killed runs. When that floor decides, the source is "oom".
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from migsched.core.state import JobView
from migsched.estimators.analytic import AnalyticEstimate, AnalyticEstimator
from migsched.estimators.base import Estimate
from migsched.estimators.history import HistoryStore, RunRecord
from migsched.estimators.hint import HintEstimator
from migsched.jobs.model import JobClass

# Largest A100-80GB / H100-80GB instance (7g.80gb); pass the real one of the cluster.
DEFAULT_LARGEST_MIB = 80.0 * 1024.0

# GUESS: share of the largest instance a job of each class gets when nothing else is known.
# None: unknown, give it the largest (an LLM's need spans 1-80 GiB, and an OOM restart of a long
# generation is costlier than a wasted slice). The others start mid-size: an OOM moves them up
# (paper.md §3.2 restarts "on the next larger slice"), and a too-large start wastes the most.
DEFAULT_CLASS_FRACTION: Mapping[JobClass, float | None] = MappingProxyType({
    JobClass.SCIENTIFIC: 0.25,
    JobClass.ML_TRAIN: 0.50,
    JobClass.ML_INFER: 0.25,
    JobClass.LLM: None,
})

# Above a known-insufficient amount by this much (MiB): "needs more than" becomes "at least".
OOM_STEP_MIB = 1.0


class JobMemoryEstimator:
    """Implements `MemoryEstimator` by combining history, analytic, hint and class defaults."""

    def __init__(
        self,
        history: HistoryStore | None = None,
        analytic: AnalyticEstimator | None = None,
        hint: HintEstimator | None = None,
        *,
        largest_mib: float = DEFAULT_LARGEST_MIB,
        class_fraction: Mapping[JobClass, float | None] = DEFAULT_CLASS_FRACTION,
        history_margin: float = 1.05,
        analytic_margin: float = 1.10,
    ) -> None:
        """Build from its sources (defaults: an in-memory history, the stock analytic and hint
        estimators). `largest_mib` is the memory of the largest instance the cluster offers."""
        self.history = history if history is not None else HistoryStore.in_memory()
        self.analytic = analytic or AnalyticEstimator()
        self.hint = hint or HintEstimator()
        self.largest_mib = largest_mib
        self.class_fraction = dict(class_fraction)
        self.history_margin = history_margin
        self.analytic_margin = analytic_margin

    def estimate(self, job: JobView) -> Estimate:
        """The peak-memory estimate for `job`, at least just above what it is known to need."""
        spec = job.spec
        analytic = self.analytic.estimate(spec)
        growing = (
            spec.job_class is JobClass.LLM
            or (analytic is not None and analytic.growing)
            or self.history.grows(spec.name, spec.command)
        )
        mib, source = self._base(job, analytic)
        floor = self.floor_mib(job)
        if floor > 0 and mib < floor + OOM_STEP_MIB:
            mib, source = floor + OOM_STEP_MIB, "oom"
        return Estimate(mib=mib, source=source, growing=growing)

    def observe(self, job: JobView, peak_mib: float, ok: bool) -> None:
        """Feed a finished run to the hint-margin learner and the history store."""
        spec = job.spec
        self.hint.observe(spec, peak_mib)
        profile = job.profile.name if job.profile is not None else ""
        start = job.samples[0].used_mib if job.samples else None
        self.history.record(spec.name, RunRecord(profile, float(peak_mib), ok, start), spec.command)

    @staticmethod
    def floor_mib(job: JobView) -> float:
        """What the job is known to need at least: OOM'd instance sizes and OOM/killed peaks."""
        peaks = (a.peak_mib for a in job.attempts if a.outcome == "oom" or a.outcome.startswith("killed"))
        return max(job.needs_more_than_mib, max(peaks, default=0.0))

    def _base(self, job: JobView, analytic: AnalyticEstimate | None) -> tuple[float, str]:
        spec = job.spec
        past = self.history.peak_mib(spec.name, spec.command)
        if past is not None and past > 0:
            return past * self.history_margin, "history"
        if analytic is not None:
            return analytic.peak_mib * self.analytic_margin, "analytic"
        hinted = self.hint.estimate_mib(spec)
        if hinted is not None:
            return hinted, "hint"
        fraction = self.class_fraction.get(spec.job_class)
        return self.largest_mib * (1.0 if fraction is None else fraction), "class-default"
