"""How long a job of a class runs, when nothing about the job itself is known yet.

A job whose family has never completed a run, and that reports no progress, has no projection
of its own: the tail restart (`restarts.pick_upgrade`) could not act on it, and on many GPUs
such jobs, started on 1g slices while the queue was long, set the makespan (docs/evaluation.md,
round 2: 64 GPUs at 1.56x serial). What *is* known is its class, the profile it runs on and how
long it has run so far.

`ClassDurations` fits, per job class, an accelerated-failure-time model

    log(compute seconds) = b0 - alpha * log(compute slices) + sigma * eps,   eps ~ N(0, 1)

to the class's completed runs **and** to its running jobs as right-censored observations (a job
that has run e seconds lasts longer than e). Counting the running jobs is what matters: while a
restart still pays, the long jobs of a class are the ones still running, so the completed runs
alone are the short ones and say "almost done" for every long job (the Kaplan-Meier argument; the
hedge tried in round 2 without censoring never fired). The fit is EM for censored normal
regression (the censored values replaced by their conditional means under the current fit).

From the fit, a running job's expected total compute time given that it has already run e is
the log-normal's conditional mean E[T | T > e], and alpha is the class's speed scaling.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: A class is fitted once it has this many completed runs on at least two compute sizes.
MIN_RUNS = 20
MIN_PER_SIZE = 5
#: Completed runs kept per class (the latest ones): bounds the cost of a fit on 100,000-job batches.
KEEP_RUNS = 4000
EM_ROUNDS = 25
MAX_Z = 6.0  # beyond 6 sigma the ratio of normal tails is replaced by its asymptote


def _norm_sf(z: np.ndarray) -> np.ndarray:
    """P(N(0,1) > z), by erfc's rational approximation (Numerical Recipes erfcc, |error| < 1.2e-7)."""
    x = z / math.sqrt(2.0)
    ax = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * ax)
    poly = (-ax * ax - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277)))))))))
    erfc = t * np.exp(poly)
    erfc = np.where(x >= 0, erfc, 2.0 - erfc)
    return 0.5 * erfc


def _norm_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True, slots=True)
class DurationFit:
    """One class's fitted model: log T = b0 - alpha log(slices) + sigma eps."""

    b0: float
    alpha: float
    sigma: float
    runs: int       # completed runs it was fitted on
    censored: int   # running jobs counted as censored

    def quantile_s(self, compute_slices: int, z: float) -> float:
        """The run time on `compute_slices` that a share Phi(z) of the class stays under."""
        return math.exp(self.b0 - self.alpha * math.log(compute_slices) + z * max(self.sigma, 0.0))

    def _log_params(self, compute_slices: int) -> tuple[float, float]:
        """(mu, sigma) of log T on `compute_slices`."""
        return self.b0 - self.alpha * math.log(compute_slices), max(self.sigma, 1e-6)

    def expected_total_s(self, compute_slices: int, elapsed_s: float) -> float:
        """E[T | T > elapsed] on `compute_slices` (log-normal conditional mean)."""
        mu, s = self._log_params(compute_slices)
        if elapsed_s <= 0:
            return math.exp(mu + s * s / 2.0)
        z = (math.log(elapsed_s) - mu) / s
        if z > MAX_Z:  # far in the tail: log T - log e given log T > log e is about sigma / z
            return elapsed_s * math.exp(s / z)
        num = _sf(z - s)
        den = _sf(z)
        return max(elapsed_s, math.exp(mu + s * s / 2.0) * num / max(den, 1e-300))

    def expected_excess_s(self, compute_slices: int, elapsed_s: float, threshold_s: float) -> float:
        """E[(T - threshold)+ | T > elapsed] on `compute_slices`: how far, on average, a job that
        has run `elapsed_s` overruns `threshold_s` (the tail restart's overshoot, restarts.py)."""
        mu, s = self._log_params(compute_slices)
        e = max(elapsed_s, 1e-9)
        lo = max(threshold_s, e)  # T > elapsed anyway: below it the excess is T - threshold
        z_e, z_lo = (math.log(e) - mu) / s, (math.log(lo) - mu) / s
        if z_e > MAX_Z:  # far in the tail: exponential-like above e, with E[T | T > e]'s mean
            scale = self.expected_total_s(compute_slices, e) - e
            return scale * math.exp(-(lo - e) / max(scale, 1e-9)) + (lo - threshold_s)
        part_mean = math.exp(mu + s * s / 2.0) * _sf(z_lo - s)
        part_cnt = threshold_s * _sf(z_lo)
        return max(part_mean - part_cnt, 0.0) / max(_sf(z_e), 1e-300)


def _sf(z: float) -> float:
    """P(N(0,1) > z) for one value (`_norm_sf` is the array form, for the fit)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


class ClassDurations:
    """Completed runs per class, and the censored fit over them and the running jobs (module doc)."""

    def __init__(self) -> None:
        self._runs: dict[str, deque[tuple[float, float]]] = {}  # class -> (log slices, log compute s)
        self._stopped: dict[str, deque[tuple[int, float]]] = {}  # class -> (slices, compute s before the kill)
        self._total = 0

    def finished(self, job_class: str, compute_slices: int, compute_s: float) -> None:
        """A run of the class did its whole work in `compute_s` on `compute_slices`."""
        runs = self._runs.setdefault(job_class, deque(maxlen=KEEP_RUNS))
        runs.append((math.log(compute_slices), math.log(max(compute_s, 1e-3))))
        self._total += 1

    def stopped(self, job_class: str, compute_slices: int, compute_s: float) -> None:
        """A run of the class was stopped after computing `compute_s` on `compute_slices`: its
        whole work would have taken longer (censored, like a running job, from now on)."""
        self._stopped.setdefault(job_class, deque(maxlen=KEEP_RUNS)).append((compute_slices, compute_s))

    def censored(self, job_class: str, running: Iterable[tuple[int, float]]) -> list[tuple[int, float]]:
        """The class's censored observations: `running` (compute slices, compute seconds so far)
        and the stopped runs."""
        return [*running, *self._stopped.get(job_class, ())]

    def run_quantile_s(self, job_class: str, compute_slices: int, q: float, alpha: float,
                       running: Iterable[tuple[int, float]] = (), min_runs: int = 3) -> float | None:
        """The `q` quantile of the class's compute time on `compute_slices` (Kaplan-Meier: the
        completed runs as events, `running` = (compute slices, compute seconds so far) and the
        stopped runs as censored; every time scaled to `compute_slices` by slices^-alpha). None with fewer than
        `min_runs` completed runs, or while the censored jobs leave the quantile unresolved:
        completed runs alone are the short side of a class whose long jobs still run."""
        runs = self._runs.get(job_class)
        if runs is None or len(runs) < min_runs:
            return None
        lc = math.log(compute_slices)
        obs = [(y + alpha * (x - lc), 1) for x, y in runs]
        obs += [(math.log(max(e, 1e-3)) + alpha * (math.log(c) - lc), 0) for c, e in self.censored(job_class, running)]
        obs.sort(key=lambda o: (o[0], -o[1]))  # at a tie an event comes before a censoring
        at_risk, surv = len(obs), 1.0
        for y, event in obs:
            if event:
                surv *= 1.0 - 1.0 / at_risk
                if surv <= 1.0 - q:
                    return math.exp(y)
            at_risk -= 1
        return None

    def count(self) -> int:
        """Completed runs recorded, over all classes (kept ones and those aged out)."""
        return self._total

    def fit(self, job_class: str, running: Iterable[tuple[int, float]]) -> DurationFit | None:
        """The class's fit with `running` = (compute slices, compute seconds so far) and the
        stopped runs as censored observations; None until MIN_RUNS completed runs cover two sizes with MIN_PER_SIZE each."""
        runs = self._runs.get(job_class)
        if runs is None or len(runs) < MIN_RUNS:
            return None
        done = np.array(runs, dtype=float)
        sizes, counts = np.unique(done[:, 0], return_counts=True)
        if (counts >= MIN_PER_SIZE).sum() < 2:
            return None
        cens = np.array([(math.log(c), math.log(e)) for c, e in self.censored(job_class, running) if e > 1e-3],
                        dtype=float).reshape(-1, 2)
        x = np.concatenate([done[:, 0], cens[:, 0]])
        y_done, low = done[:, 1], cens[:, 1]
        design = np.column_stack([np.ones_like(x), -x])
        beta, *_ = np.linalg.lstsq(design[: len(y_done)], y_done, rcond=None)
        sigma = max(float(np.std(y_done - design[: len(y_done)] @ beta)), 0.05)
        n_done = len(y_done)
        for _ in range(EM_ROUNDS if len(low) else 1):
            mu_c = design[n_done:] @ beta
            z = np.minimum((low - mu_c) / sigma, MAX_Z)
            lam = _norm_pdf(z) / np.maximum(_norm_sf(z), 1e-300)
            y_c = mu_c + sigma * lam                      # E[y | y > low]
            var_c = sigma * sigma * np.maximum(1.0 + z * lam - lam * lam, 0.0)
            y = np.concatenate([y_done, y_c])
            beta, *_ = np.linalg.lstsq(design, y, rcond=None)
            resid = y - design @ beta
            sigma = max(math.sqrt(float((resid @ resid + var_c.sum()) / len(y))), 0.05)
        return DurationFit(float(beta[0]), min(max(float(beta[1]), 0.0), 1.0), sigma, n_done, len(low))
