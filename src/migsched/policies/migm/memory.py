"""Memory side of `migm`: which estimator and forecaster it uses, and how it scores forecasts.

`migm` asks two questions (paper.md §3.2-3.3): the peak before launch (`MemoryEstimator`) and the
peak while a job runs (`Forecaster`). The real implementations live in `migsched.estimators`
(`JobMemoryEstimator`, `MemoryForecaster`); `default_estimator`/`default_forecaster` use them
when they are installed and otherwise fall back to the two tiny private ones here, so the policy
runs whatever state that package is in:

* `HintEstimator`: the hint, or the largest instance's memory when there is none.
* `LinearForecaster`: least-squares line of used memory against reported progress over the
  recent half of the samples, evaluated at progress 1. Confident once progress passes
  `min_progress` (so a start-up ramp is over) with enough samples and a tight fit.

`ForecastScore` records each job's first confident forecast and compares it with the peak of the
run that finally succeeds (mean absolute percentage error for `summary()`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from migsched.core.events import MemorySample
from migsched.core.state import JobView
from migsched.estimators.base import Estimate, Forecast, Forecaster, MemoryEstimator
from migsched.estimators.history import HistoryStore
from migsched.jobs.model import JobClass

_GROWING = (JobClass.LLM,)


class HintEstimator:
    """Fallback estimator: the declared hint, else the largest instance's memory."""

    def __init__(self, largest_mib: float) -> None:
        self.largest_mib = largest_mib

    def estimate(self, job: JobView) -> Estimate:
        """The hint in MiB (source "hint"), or the largest memory (source "class-default")."""
        growing = job.spec.job_class in _GROWING
        if job.spec.hint_gib is not None:
            return Estimate(job.spec.hint_gib * 1024.0, "hint", growing)
        return Estimate(self.largest_mib, "class-default", growing)

    def observe(self, job: JobView, peak_mib: float, ok: bool) -> None:
        """Nothing to learn (the policy keeps its own per-name peaks)."""


class LinearForecaster:
    """Fallback forecaster: a straight line of memory against progress, read at progress 1.

    Args:
        min_samples: samples needed in the fitted window before a forecast is confident.
        min_progress: progress the job must have reported before a forecast is confident.
        max_rel_rmse: fit residual, relative to the forecast peak, above which it is not confident.
    """

    def __init__(self, min_samples: int = 4, min_progress: float = 0.05, max_rel_rmse: float = 0.03) -> None:
        self.min_samples = min_samples
        self.min_progress = min_progress
        self.max_rel_rmse = max_rel_rmse

    def forecast(self, job: JobView, samples: Sequence[MemorySample]) -> Forecast | None:
        """A forecast from the samples that carry progress, or None without them."""
        pts = [(s.progress, s.used_mib) for s in samples if s.progress is not None and s.progress > 0]
        if len(pts) < 2:
            return None
        top = pts[-1][0]
        window = [p for p in pts if p[0] >= top / 2] or pts
        if len(window) < 2:
            window = pts[-2:]
        n = len(window)
        mx = sum(x for x, _ in window) / n
        my = sum(y for _, y in window) / n
        sxx = sum((x - mx) ** 2 for x, _ in window)
        slope = 0.0 if sxx <= 0 else sum((x - mx) * (y - my) for x, y in window) / sxx
        slope = max(slope, 0.0)
        icpt = my - slope * mx
        rmse = math.sqrt(sum((y - (icpt + slope * x)) ** 2 for x, y in window) / n)
        seen = max(y for _, y in pts)
        peak = max(seen, icpt + slope * 1.0)
        form = "linear" if slope > 1e-6 * max(peak, 1.0) else "constant"
        confident = n >= self.min_samples and top >= self.min_progress and rmse <= self.max_rel_rmse * peak
        return Forecast(peak, form, rmse, "progress", confident)


def default_estimator(largest_mib: float, history: HistoryStore | None = None) -> MemoryEstimator:
    """The project's `JobMemoryEstimator` (on `history`: its peaks of earlier batches) when it is
    installed, else `HintEstimator`."""
    try:
        from migsched.estimators.combined import JobMemoryEstimator  # type: ignore[import-not-found]
    except ImportError:
        return HintEstimator(largest_mib)
    return JobMemoryEstimator(history, largest_mib=largest_mib)


def default_forecaster() -> Forecaster:
    """The project's `MemoryForecaster` when it is installed, else `LinearForecaster`."""
    try:
        from migsched.estimators.forecast import MemoryForecaster  # type: ignore[import-not-found]
    except ImportError:
        return LinearForecaster()
    return MemoryForecaster()


class ForecastScore:
    """First confident forecast per job against the peak of its successful run (MAPE)."""

    def __init__(self) -> None:
        self._first: dict[str, float] = {}
        self._errors: list[float] = []

    def forecast(self, job_id: str, peak_mib: float) -> None:
        """Remember `peak_mib` if it is the job's first confident forecast."""
        self._first.setdefault(job_id, peak_mib)

    def finished(self, job_id: str, true_peak_mib: float) -> None:
        """The job completed having used `true_peak_mib`; score its forecast, if any."""
        f = self._first.pop(job_id, None)
        if f is not None and true_peak_mib > 0:
            self._errors.append(abs(f - true_peak_mib) / true_peak_mib)

    @property
    def count(self) -> int:
        """Forecasts scored."""
        return len(self._errors)

    @property
    def mape(self) -> float:
        """Mean absolute percentage error of the scored forecasts (0 when none)."""
        return 100.0 * sum(self._errors) / len(self._errors) if self._errors else 0.0
