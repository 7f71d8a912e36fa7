"""The estimator a policy uses before launch: history → analytic → hint → class default.

Each source is tried in order of how much it knows about *this* job (paper.md §3.2):

1. history: the peak of earlier runs of the same job name (and command), × `history_margin`;
2. analytic: the job's `describe:` block (DNNMem-spirit), × `analytic_margin`, unless the job
   also has a hint that holds the parts of it that are not guesses (`certain_mib`): then the
   hint decides, since the rest is the activation guess (docs/estimators.md);
3. hint: `hint_gib` × the margin learned for its class (`hint.py`);
4. class: what completed jobs of the same class peaked at in this run (`ClassPeaks`, a high
   quantile × `class_margin`), else a small prior share of the largest instance per class.
   Never "the whole GPU" by default: a job that needs more runs out of memory early (constant
   memory is allocated at start-up) or is caught by the forecaster, and restarts one size up,
   which wastes far less than a whole GPU held by a job that needs a slice (docs/estimators.md).

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

# GUESS: share of the largest instance a job of each class gets when nothing at all is known
# (no history, description, hint or finished job of its class). Small on purpose: the smallest
# instance (1g.10gb is 12% of 80 GiB) for most classes, two memory slices for LLMs (weights of a
# 7B fp16 model are 13 GiB). An OOM moves a job up one size (paper.md §3.2, "the next larger
# slice"), cheaply since constant memory is allocated at start-up; a too-large start holds
# compute other jobs could use for the whole run. None: the largest instance (opt-in).
DEFAULT_CLASS_FRACTION: Mapping[JobClass, float | None] = MappingProxyType({
    JobClass.SCIENTIFIC: 0.12,
    JobClass.ML_TRAIN: 0.12,
    JobClass.ML_INFER: 0.12,
    JobClass.LLM: 0.24,
})
#: Completed runs of a class before its learned peak replaces the prior.
CLASS_MIN_RUNS = 3
#: Quantile of a class's observed peaks used for a job nothing else is known about.
CLASS_QUANTILE = 0.75


class ClassPeaks:
    """Peaks of completed runs per job class (the last `keep`), for jobs nothing else describes."""

    def __init__(self, keep: int = 200) -> None:
        self.keep = keep
        self._peaks: dict[JobClass, list[float]] = {}

    def record(self, job_class: JobClass, peak_mib: float) -> None:
        """A run of `job_class` completed having used `peak_mib`."""
        runs = self._peaks.setdefault(job_class, [])
        runs.append(float(peak_mib))
        if len(runs) > self.keep:
            del runs[0]

    def quantile_mib(self, job_class: JobClass, q: float = CLASS_QUANTILE,
                     min_runs: int = CLASS_MIN_RUNS) -> float | None:
        """The `q` quantile of the class's recorded peaks (nearest rank), or None with fewer
        than `min_runs`."""
        runs = self._peaks.get(job_class)
        if not runs or len(runs) < min_runs:
            return None
        ordered = sorted(runs)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

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
        class_margin: float = 1.10,
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
        self.class_margin = class_margin
        self.classes = ClassPeaks()

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
        if ok:
            self.classes.record(spec.job_class, peak_mib)
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
        hinted = self.hint.estimate_mib(spec)
        if analytic is not None:
            # A hint at least as large as what the description pins down is consistent with it;
            # the rest of the analytic figure is the activation guess (ResNet-50 at 224 px: 4.5
            # GiB at CIFAR's 32 px was estimated at 50 GiB), so the user's number decides. A hint
            # below the certain part is certainly low: the analytic figure decides.
            if hinted is not None and analytic.certain_mib < analytic.peak_mib and hinted >= analytic.certain_mib:
                return hinted, "hint"
            return analytic.peak_mib * self.analytic_margin, "analytic"
        if hinted is not None:
            return hinted, "hint"
        learned = self.classes.quantile_mib(spec.job_class)
        if learned is not None:
            return min(learned * self.class_margin, self.largest_mib), "class"
        fraction = self.class_fraction.get(spec.job_class)
        return self.largest_mib * (1.0 if fraction is None else fraction), "class-default"
