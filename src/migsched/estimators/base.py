"""The memory-estimator interface shared by policies (the contract; implementations beside it).

Two questions a policy asks about memory (paper.md §3.2-3.3):
  * before a launch: how much memory will this job need at its peak? -> `MemoryEstimator.estimate`
  * while it runs: given the samples so far, what will its peak be?   -> `Forecaster.forecast`
and one thing it tells: how a job ended -> `MemoryEstimator.observe` (learning margins/history).

Only observable inputs are used: the job's spec (class, hint, describe), its attempts (OOMs),
its memory samples and progress reports. Never the simulator's ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from migsched.core.events import MemorySample
from migsched.core.state import JobView


@dataclass(frozen=True, slots=True)
class Estimate:
    """A peak-memory estimate before launch.

    Attributes:
        mib: the estimated peak, margin included.
        source: what it came from: "history", "analytic", "hint", "class" (peaks of its class
            this run), "class-default" or "oom".
        growing: True when the job's memory is expected to grow during the run (LLM KV cache,
            dynamic training): the policy should watch it with a `Forecaster`.
    """

    mib: float
    source: str
    growing: bool = False


@dataclass(frozen=True, slots=True)
class Forecast:
    """A prediction of a running job's peak memory.

    Attributes:
        peak_mib: predicted peak over the whole run.
        form: the fitted model form: "constant", "linear" or "saturating".
        fit_rmse_mib: root-mean-square residual of the fit on the samples.
        basis: "progress" when fitted against reported progress, "time" otherwise.
        confident: True when there are enough samples and the fit is good enough to act on.
    """

    peak_mib: float
    form: str
    fit_rmse_mib: float
    basis: str
    confident: bool


class MemoryEstimator(Protocol):
    """Estimates a job's peak memory before it runs and learns from how runs end."""

    def estimate(self, job: JobView) -> Estimate:
        """The peak-memory estimate for `job` now (it accounts for past OOMs of the job)."""
        ...

    def observe(self, job: JobView, peak_mib: float, ok: bool) -> None:
        """Record that a run of `job` ended (ok or not) having used `peak_mib` at most."""
        ...


class Forecaster(Protocol):
    """Predicts a running job's peak memory from its samples so far."""

    def forecast(self, job: JobView, samples: Sequence[MemorySample]) -> Forecast | None:
        """A forecast, or None when there is too little to go on."""
        ...
