"""Hint-based estimate: the user's hint times a safety margin learned per job class.

Users' hints are often wrong (paper.md §3.2 relies on better sources where they exist), but for
opaque jobs they are all there is. Rather than trusting a fixed factor, `MarginLearner` watches
how far real peaks land from the hints of finished runs (the ratio peak / hint) and sets the
margin of each job class to a high quantile of those ratios, within bounds. Until enough runs are
seen it only ever *raises* the default margin, so a few lucky runs cannot make it reckless.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from migsched.jobs.model import JobClass, JobSpec

MIB_PER_GIB = 1024.0


@dataclass(frozen=True, slots=True)
class MarginConfig:
    """How the hint margin is learned.

    Attributes:
        default: margin before anything is learned (1.10: hints are "about right" plus 10%).
        quantile: which quantile of observed peak/hint ratios the margin tracks (0.9: nine runs in
            ten fit).
        headroom: extra factor on top of the quantile (allocator rounding, run-to-run jitter).
        min_margin, max_margin: bounds on the learned margin. Below 1 is allowed so consistent
            over-hinting frees memory; the upper bound keeps one wild run from asking for a GPU.
        min_runs: runs of a class before the margin may drop below `default`.
        window: only the last `window` ratios of a class are kept (hints drift with users).
    """

    default: float = 1.10
    quantile: float = 0.90
    headroom: float = 1.03
    min_margin: float = 0.60
    max_margin: float = 3.00
    min_runs: int = 5
    window: int = 200

    def __post_init__(self) -> None:
        if not 0.0 < self.quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {self.quantile}")
        if not 0.0 < self.min_margin <= self.default <= self.max_margin:
            raise ValueError("need 0 < min_margin <= default <= max_margin")
        if self.min_runs < 1 or self.window < 1:
            raise ValueError("min_runs and window must be at least 1")


class MarginLearner:
    """Learns, per job class, the factor to multiply hints by from observed peak/hint ratios."""

    def __init__(self, config: MarginConfig | None = None) -> None:
        self.config = config or MarginConfig()
        self._ratios: dict[JobClass, deque[float]] = defaultdict(
            lambda: deque(maxlen=self.config.window)
        )
        self._margin: dict[JobClass, float] = {}  # computed margins, dropped when a ratio arrives

    def observe(self, job_class: JobClass, hint_mib: float, peak_mib: float) -> None:
        """Record one finished run's peak against its hint (ignored when either is not positive).

        An OOM or killed run's peak is only a lower bound on its need, which makes its ratio a
        lower bound too; it is still recorded, since it can only pull the margin up correctly.
        """
        if hint_mib > 0 and peak_mib > 0:
            self._ratios[job_class].append(peak_mib / hint_mib)
            self._margin.pop(job_class, None)

    def runs(self, job_class: JobClass) -> int:
        """How many ratios are held for `job_class`."""
        return len(self._ratios.get(job_class, ()))

    def margin(self, job_class: JobClass) -> float:
        """The margin for `job_class` now (recomputed only after a new ratio of the class)."""
        hit = self._margin.get(job_class)
        if hit is None:
            hit = self._margin[job_class] = self._compute(job_class)
        return hit

    def _compute(self, job_class: JobClass) -> float:
        cfg = self.config
        ratios = self._ratios.get(job_class)
        if not ratios:
            return cfg.default
        learned = linear_quantile(ratios, cfg.quantile) * cfg.headroom
        if len(ratios) < cfg.min_runs:
            learned = max(learned, cfg.default)
        return min(max(learned, cfg.min_margin), cfg.max_margin)


def linear_quantile(values: Iterable[float], q: float) -> float:
    """`np.quantile(values, q)` (its default "linear" method, bit for bit) in plain Python.

    The window is at most a few hundred ratios; numpy's first `quantile` call in a process also
    costs ~10 ms of lazy set-up, which was the slowest placing decision of bench_decisions.py."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    t = pos - lo
    a, b = xs[lo], xs[hi]
    d = b - a
    return b - d * (1.0 - t) if t >= 0.5 else a + d * t  # numpy's _lerp, both branches


class HintEstimator:
    """`hint_gib` × the learned margin of the job's class, in MiB; None when there is no hint."""

    def __init__(self, learner: MarginLearner | None = None) -> None:
        self.learner = learner or MarginLearner()

    def hint_mib(self, spec: JobSpec) -> float | None:
        """The raw hint in MiB, or None."""
        if spec.hint_gib is None or spec.hint_gib <= 0:
            return None
        return spec.hint_gib * MIB_PER_GIB

    def margin(self, job_class: JobClass) -> float:
        """The current margin of `job_class`."""
        return self.learner.margin(job_class)

    def estimate_mib(self, spec: JobSpec) -> float | None:
        """The hint with its margin, or None when the job gives no hint."""
        hint = self.hint_mib(spec)
        return None if hint is None else hint * self.learner.margin(spec.job_class)

    def observe(self, spec: JobSpec, peak_mib: float) -> None:
        """Learn from a finished run of `spec` that peaked at `peak_mib` (no-op without a hint)."""
        hint = self.hint_mib(spec)
        if hint is not None:
            self.learner.observe(spec.job_class, hint, peak_mib)
