"""Memory estimation for jobs: the interface (`base.py`) and its implementations.

```python
from migsched.estimators import JobMemoryEstimator, MemoryForecaster, HistoryStore

est = JobMemoryEstimator(HistoryStore.in_memory(), largest_mib=81920)
e = est.estimate(job_view)            # Estimate(mib, source, growing)
fc = MemoryForecaster(horizon_s={"gen": 600.0})
f = fc.forecast(job_view, job_view.samples)   # Forecast | None
est.observe(job_view, peak_mib, ok=True)      # learn margins and history
```
"""

from migsched.estimators.analytic import AnalyticEstimate, AnalyticEstimator
from migsched.estimators.base import Estimate, Forecast, Forecaster, MemoryEstimator
from migsched.estimators.combined import DEFAULT_CLASS_FRACTION, JobMemoryEstimator
from migsched.estimators.forecast import (
    ForecastConfig,
    ForecastErrorSummary,
    ForecastLog,
    HorizonSource,
    MemoryForecaster,
)
from migsched.estimators.hint import HintEstimator, MarginConfig, MarginLearner
from migsched.estimators.history import DurationRecord, HistoryStore, RunRecord, default_history_path

__all__ = [
    "DEFAULT_CLASS_FRACTION",
    "AnalyticEstimate",
    "AnalyticEstimator",
    "DurationRecord",
    "Estimate",
    "Forecast",
    "ForecastConfig",
    "ForecastErrorSummary",
    "ForecastLog",
    "Forecaster",
    "HintEstimator",
    "HistoryStore",
    "HorizonSource",
    "JobMemoryEstimator",
    "MarginConfig",
    "MarginLearner",
    "MemoryEstimator",
    "MemoryForecaster",
    "RunRecord",
    "default_history_path",
]
