"""Memory estimation for jobs: the interface (`base.py`) and its implementations."""

from migsched.estimators.base import Estimate, Forecast, Forecaster, MemoryEstimator

__all__ = ["Estimate", "Forecast", "Forecaster", "MemoryEstimator"]
