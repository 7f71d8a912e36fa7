"""Memory samples on demand: when a policy wants a running job's memory read, per attempt.

A policy says, per job, when it wants samples with a `SamplePlan` (`Policy.sample_plan`); the
core hands the plan to the backend with the `Launch` that starts the attempt, and the backend
takes samples only then. Sampling costs simulator events, policy calls and real NVML/RSS reads,
so the default plan is dense while a run is young (when memory ramps and early restart pays the
most) and geometrically sparser later, with a cap per attempt: the number of samples of an attempt
is bounded whatever its run time, so a job of `runtime_s: 1e7` costs about what one of 100 s does.

Times are counted from when the backend begins to watch the attempt (the simulator: when its
start-up ends and work begins; real backends: when the process starts). With the defaults and
a base period of 2 s the samples come at 2, 4, ..., 16 s, then each gap doubles (20, 28, 44, 76,
140 s, ...), at most 24 in all: 100 s of run time holds 12 samples, 10,000 s 19, 10^7 s 24.
(The simulator takes each on a time grid that all jobs share, docs/simulator.md.)
(Measured on 600 jobs of `bench/bench_simulator.py`'s mix on 8 GPUs under migm, against one
sample every 2 s: the same OOM restarts, makespan within 0.1%, 11,000 instead of 398,861
simulator events, 7x less CPU; docs/benchmarks.md.)

`SampleCursor` is the backend's side: one attempt's position in its plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from migsched.errors import MigschedError

if TYPE_CHECKING:  # core.events imports this module (Launch.samples)
    from migsched.core.events import MemorySample


@dataclass(frozen=True, slots=True)
class SamplePlan:
    """When to sample one attempt's memory (see the module docstring).

    Attributes:
        interval_s: the gap between the first `dense` samples; None: the backend's period
            (`RunSettings.sample_interval_s`, else its `default_sample_interval_s`).
        dense: samples taken at `interval_s` before the gaps start to grow.
        growth: each later gap is `growth` times the previous one (1.0: a fixed period).
        max_samples: samples per attempt at most; the bound that makes the cost of an attempt
            independent of how long it runs (0: no samples for this attempt, `NO_SAMPLES`).
        max_gap_s: gaps grow no longer than this (None: no limit); with a limit the count still
            stops at `max_samples`.
        stop_when_flat: stop once this many samples in a row showed no growth (the peak is
            known as far as sampling can tell); None: never stop early.
        growth_only: deliver only the samples that set a new memory peak (the first always) or
            carry a progress report; the others are still taken (they count for the cap and
            the flat rule) but not reported, for a policy that reads only growth (a flat
            curve then costs it one sample instead of one per tick).
        hold_below_mib: a sample without a progress report that would be reported but uses
            less memory than this is *held*, not reported: the next reported sample of the
            attempt carries it (`MemorySample.held`), so the job's history is whole when the
            policy next reads it, and the policy is not called for samples that cannot change
            its decision (migm forecasts nothing below half its limit: policies/migm/early.py).
            Samples still held when the attempt ends are never reported. None: hold nothing.
    """

    interval_s: float | None = None
    dense: int = 8
    growth: float = 2.0
    max_samples: int = 24
    max_gap_s: float | None = None
    stop_when_flat: int | None = None
    growth_only: bool = False
    hold_below_mib: float | None = None

    def __post_init__(self) -> None:
        if self.interval_s is not None and not (self.interval_s > 0 and math.isfinite(self.interval_s)):
            raise MigschedError(f"SamplePlan.interval_s must be a positive number of seconds or None, "
                                f"got {self.interval_s!r}")
        if self.dense < 0:
            raise MigschedError(f"SamplePlan.dense must be >= 0, got {self.dense!r}")
        if not (self.growth >= 1.0 and math.isfinite(self.growth)):
            raise MigschedError(f"SamplePlan.growth must be a finite number >= 1, got {self.growth!r}")
        if self.max_samples < 0:
            raise MigschedError(f"SamplePlan.max_samples must be >= 0, got {self.max_samples!r}")
        if self.max_gap_s is not None and not self.max_gap_s > 0:
            raise MigschedError(f"SamplePlan.max_gap_s must be positive or None, got {self.max_gap_s!r}")
        if self.stop_when_flat is not None and self.stop_when_flat < 1:
            raise MigschedError(f"SamplePlan.stop_when_flat must be >= 1 or None, got {self.stop_when_flat!r}")
        if self.hold_below_mib is not None and not (self.hold_below_mib >= 0 and math.isfinite(self.hold_below_mib)):
            raise MigschedError(f"SamplePlan.hold_below_mib must be a finite number of MiB >= 0 or None, "
                                f"got {self.hold_below_mib!r}")

    @classmethod
    def periodic(cls, interval_s: float | None = None, max_samples: int = 10_000) -> SamplePlan:
        """A fixed period (the contract before plans), still capped at `max_samples`."""
        return cls(interval_s=interval_s, dense=max_samples, growth=1.0, max_samples=max_samples)

    def gap_s(self, taken: int, base_s: float) -> float:
        """Seconds from sample number `taken` (0: from the start of watching) to the next one."""
        interval = self.interval_s or base_s
        if taken < self.dense or self.growth == 1.0:
            gap = interval
        else:
            gap = interval * self.growth ** min(taken - self.dense + 1, 4096)
        return min(gap, self.max_gap_s) if self.max_gap_s is not None else gap

    def offsets_s(self, base_s: float, until_s: float = math.inf) -> list[float]:
        """Every sample time of an attempt that runs `until_s` (for tests and the docs)."""
        out: list[float] = []
        t = 0.0
        while len(out) < self.max_samples:
            t += self.gap_s(len(out), base_s)
            if t >= until_s:
                break
            out.append(t)
        return out


#: The plan of a policy that wants samples and names no plan of its own.
DEFAULT_PLAN = SamplePlan()
#: No samples for this attempt.
NO_SAMPLES = SamplePlan(max_samples=0)


@dataclass(slots=True)
class SampleCursor:
    """A backend's record of one attempt's sampling: how many taken, and when the next is due.

    `next_s` is None once the plan is spent (cap reached, or memory flat long enough); `held`
    the samples taken and held back (`SamplePlan.hold_below_mib`) since the last reported one.
    """

    plan: SamplePlan
    base_s: float
    next_s: float | None
    taken: int = 0
    flat: int = 0
    last_mib: float = -1.0
    held: list[MemorySample] = field(default_factory=list)

    @classmethod
    def start(cls, plan: SamplePlan, base_s: float, watch_s: float) -> SampleCursor:
        """Begin sampling an attempt watched from `watch_s`."""
        return cls(plan, base_s, watch_s + plan.gap_s(0, base_s) if plan.max_samples > 0 else None)

    def took(self, at_s: float, used_mib: float) -> float | None:
        """Record a sample taken at `at_s`; returns when the next one is due (None: no more)."""
        self.taken += 1
        if self.grows(used_mib):
            self.flat = 0
        else:
            self.flat += 1
        self.last_mib = max(self.last_mib, used_mib)
        p = self.plan
        if self.taken >= p.max_samples or (p.stop_when_flat is not None and self.flat >= p.stop_when_flat):
            self.next_s = None
        else:
            self.next_s = at_s + p.gap_s(self.taken, self.base_s)
        return self.next_s

    def grows(self, used_mib: float) -> bool:
        """Whether a sample of `used_mib` would set a new peak (above the last by 0.1 %)."""
        return used_mib > self.last_mib * 1.001 + 1e-9

    def wanted(self, has_progress: bool) -> bool:
        """Whether the sample just recorded (`took`) passes `SamplePlan.growth_only` (it is
        then reported or, under `hold_below_mib`, held: `offer`)."""
        return not self.plan.growth_only or self.flat == 0 or has_progress

    def holds(self, used_mib: float, has_progress: bool) -> bool:
        """Whether a sample of `used_mib` that passes `wanted` is held (`SamplePlan.hold_below_mib`)."""
        below = self.plan.hold_below_mib
        return below is not None and not has_progress and used_mib < below

    def offer(self, sample: MemorySample) -> MemorySample | None:
        """The sample just recorded (`took`) as the backend reports it: None when dropped
        (`growth_only`) or held (`hold_below_mib`), else with the held ones attached."""
        has_progress = sample.progress is not None
        if not self.wanted(has_progress):
            return None
        if self.holds(sample.used_mib, has_progress):
            self.held.append(sample)
            return None
        if self.held:
            sample = replace(sample, held=tuple(self.held))
            self.held = []
        return sample


__all__ = ["DEFAULT_PLAN", "NO_SAMPLES", "SampleCursor", "SamplePlan"]
