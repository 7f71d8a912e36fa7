"""Early peak-memory forecast from the first part of a run (paper.md §3.3, §10 item 3).

MIGM profiles a dynamic-memory job during its first part and projects its peak, so a job headed
for an OOM can be restarted early on a larger instance. The paper does not give the model; this
one fits three forms to the samples so far and keeps the one with the lowest AICc (fit quality
with a penalty per parameter, so a straight line is not mistaken for a curve):

* constant:   y = a
* linear:     y = a + b·x
* saturating: y = a + b·(1 − exp(−x/τ)), τ from a coarse-then-fine grid, a and b by least squares

x is the reported progress when the samples carry it (peak = fit at progress 1.0), elapsed time
otherwise (peak = fit at the expected duration when a `horizon_s` is supplied, else the
saturating asymptote; a linear trend with no horizon has no peak to project, so it is reported
with `confident=False`). The peak is never below the most memory already seen.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from migsched.core.events import MemorySample
from migsched.core.state import JobView
from migsched.estimators.base import Forecast

# Expected total elapsed seconds of a job (e.g. from history), by callable or by name/job-id map.
HorizonSource = Callable[[JobView], float | None] | Mapping[str, float]

# Variance floor (MiB²) so a perfect fit does not send log(RSS) to -inf and every form ties there.
_NOISE_FLOOR_MIB2 = 1.0


@dataclass(frozen=True, slots=True)
class _Fit:
    form: str
    k: int
    rss: float
    predict: Callable[[float], float]
    tau: float = math.inf
    asymptote: float = math.nan


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    """When a forecast may be acted on.

    Attributes:
        min_samples: fewest samples for any forecast (below: None).
        confident_samples: fewest samples for `confident=True`.
        min_fraction: least covered fraction of the run (progress, or elapsed / horizon) for
            `confident=True`.
        max_rel_rmse: fit residual above this fraction of mean memory is too noisy to act on.
        saturation_spans: without a horizon, a saturating fit is trusted when the samples span at
            least this many time constants (2: ~86% of the rise already seen).
        tau_grid: number of τ values per grid stage.
    """

    min_samples: int = 3
    confident_samples: int = 5
    min_fraction: float = 0.15
    max_rel_rmse: float = 0.10
    saturation_spans: float = 2.0
    tau_grid: int = 40


class MemoryForecaster:
    """Implements `Forecaster`: predicts a running job's peak from its samples so far."""

    def __init__(
        self, config: ForecastConfig | None = None, horizon_s: HorizonSource | None = None
    ) -> None:
        """`horizon_s`: expected total elapsed seconds per job, used for time-based forecasts."""
        self.config = config or ForecastConfig()
        self.horizon_s = horizon_s

    def forecast(self, job: JobView, samples: Sequence[MemorySample]) -> Forecast | None:
        """A forecast of `job`'s peak, or None with fewer than `min_samples` samples (a sample
        with a non-finite value does not count: a job's own progress report may say anything).

        Plain Python lists up to the saturating fit: on the 5-24 samples a sample plan delivers,
        numpy's per-call cost was most of a forecast (bench/bench_simulator.py --scale)."""
        cfg = self.config
        if not all(math.isfinite(s.used_mib) and math.isfinite(s.elapsed_s) for s in samples):
            samples = [s for s in samples if math.isfinite(s.used_mib) and math.isfinite(s.elapsed_s)]
        latest = {s.progress: s.used_mib for s in samples  # last per progress
                  if s.progress is not None and math.isfinite(s.progress)}
        if len(latest) >= cfg.min_samples:
            basis, horizon = "progress", 1.0
            xs, ys = list(latest), list(latest.values())
        elif len(samples) >= cfg.min_samples:
            basis, horizon = "time", self._horizon(job)
            xs = [s.elapsed_s for s in samples]
            ys = [s.used_mib for s in samples]
        else:
            return None
        n = len(ys)
        seen, y_mean = max(ys), math.fsum(ys) / n
        x_min, x_max = min(xs), max(xs)
        fit = self._best_fit(xs, ys, y_mean, x_min, x_max - x_min)
        rmse = math.sqrt(fit.rss / n)
        enough = n >= cfg.confident_samples and rmse <= cfg.max_rel_rmse * max(y_mean, 1.0)
        if horizon is not None and horizon > 0:
            peak = fit.predict(max(horizon, x_max))
            confident = enough and x_max / horizon >= cfg.min_fraction
        elif fit.form == "constant":
            peak, confident = fit.predict(x_max), enough
        elif fit.form == "saturating":
            peak = fit.asymptote if fit.asymptote > seen else fit.predict(x_max)
            confident = enough and (x_max - x_min) >= cfg.saturation_spans * fit.tau
        else:  # linear growth with no known end: report the trend so far, but do not act on it
            peak, confident = fit.predict(x_max), False
        return Forecast(
            peak_mib=max(float(peak), seen), form=fit.form, fit_rmse_mib=rmse, basis=basis,
            confident=bool(confident),
        )

    def _horizon(self, job: JobView) -> float | None:
        src = self.horizon_s
        if src is None:
            return None
        if isinstance(src, Mapping):
            return src.get(job.spec.name, src.get(job.job_id))
        return src(job)

    def _best_fit(self, xs: list[float], ys: list[float], y_mean: float, x_min: float, span: float) -> _Fit:
        fits = [_constant(ys, y_mean)]
        distinct = len(set(xs)) if span > 0 else 1
        if distinct >= 2:
            fits.append(_linear(xs, ys, y_mean))
            if distinct >= 3:
                fits.append(_saturating(np.array(xs, float), np.array(ys, float), y_mean, x_min, span,
                                        self.config.tau_grid))
        return min(fits, key=lambda f: _aicc(f, len(ys)))


def _aicc(fit: _Fit, n: int) -> float:
    var = max(fit.rss / n, _NOISE_FLOOR_MIB2)
    aic = n * math.log(var) + 2 * fit.k
    if n - fit.k - 1 > 0:
        return aic + 2 * fit.k * (fit.k + 1) / (n - fit.k - 1)
    return math.inf if fit.k > 1 else aic


def _constant(ys: list[float], y_mean: float) -> _Fit:
    return _Fit("constant", 1, math.fsum((y - y_mean) * (y - y_mean) for y in ys), lambda x: y_mean)


def _linear(xs: list[float], ys: list[float], y_mean: float) -> _Fit:
    """Least squares y = a + b·x in closed form (simple regression, in plain Python: on arrays
    this small numpy's per-call cost exceeds the arithmetic)."""
    x_mean = math.fsum(xs) / len(xs)
    xc = [x - x_mean for x in xs]
    yc = [y - y_mean for y in ys]
    sxx = math.fsum(v * v for v in xc)
    sxy = math.fsum(u * v for u, v in zip(xc, yc))
    syy = math.fsum(v * v for v in yc)
    b = sxy / sxx if sxx > 0 else 0.0
    a = y_mean - b * x_mean
    rss = max(syy - b * sxy, 0.0)
    return _Fit("linear", 2, rss, lambda x: a + b * x)


@functools.cache
def _coarse_grid(grid: int) -> np.ndarray:
    """The τ grid in units of the sample span (the same for every fit: built once per size)."""
    out = np.geomspace(0.02, 20.0, grid)
    out.flags.writeable = False
    return out


@functools.cache
def _unit_steps(grid: int) -> np.ndarray:
    """0, 1/(grid-1), ..., 1: the exponents of a geometric grid of `grid` points."""
    out = np.linspace(0.0, 1.0, grid)
    out.flags.writeable = False
    return out


#: Distinct sample spacings kept (`_basis`). Samples come on a grid every job shares
#: (core/sampling.py), so a run of 10,000 jobs fits 4,385 curves on 87 distinct spacings.
BASIS_CACHE = 4096


@functools.lru_cache(maxsize=BASIS_CACHE)
def _basis(dx_bytes: bytes, span: float, grid: int, coarse_i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The τ grid and its centred exponentials for samples at offsets `dx` (as bytes: an exact
    key) spanning `span`: (τ, e − mean(e) per τ, Σ(e − mean(e))² per τ, mean(e) per τ).

    `coarse_i` < 0: the coarse grid; else the fine grid around the coarse grid's `coarse_i`-th
    τ. The exponentials depend on the sample times only, not on the memory values, so one curve
    fit on a spacing seen before costs two small products instead of two grids of `exp`.
    """
    dx = np.frombuffer(dx_bytes)
    taus = span * _coarse_grid(grid)
    if coarse_i >= 0:
        lo, hi = taus[max(coarse_i - 1, 0)], taus[min(coarse_i + 1, grid - 1)]
        taus = lo * (hi / lo) ** _unit_steps(grid)  # np.geomspace, without its per-call overhead
    e = np.exp(np.multiply.outer(-1.0 / taus, dx))
    e_mean = e.sum(axis=1) / len(dx)  # not .mean(): twice its cost on rows this short
    ec = e - e_mean[:, None]
    szz = np.maximum(np.einsum("ij,ij->i", ec, ec), 1e-300)
    for a in (taus, ec, szz, e_mean):
        a.flags.writeable = False
    return taus, ec, szz, e_mean


def _saturating(xs: np.ndarray, ys: np.ndarray, y_mean: float, x0: float, span: float, grid: int) -> _Fit:
    """Best y = a + b·(1 − exp(−(x − x0)/τ)) over a τ grid, refined once around the best τ.

    For a fixed τ the model is linear in (a, b), so every τ of a grid is solved at once in closed
    form (simple regression of y on z = 1 − exp(−(x − x0)/τ); its centred values are those of
    −exp(−(x − x0)/τ), so the exponentials serve directly): cheap enough to run on every sample.
    The exponentials come from `_basis`, kept per sample spacing. `x0` is the smallest x (the
    caller has it: numpy's `min` on each fit's array cost ~1 %).
    """
    key = (xs - x0).tobytes()
    yc = ys - y_mean
    syy = float(yc @ yc)
    _, ec, szz, _ = _basis(key, span, grid, -1)
    sey = ec @ yc  # = −Σ zc·yc
    i = int(np.argmin(np.maximum(syy - sey * sey / szz, 0.0)))
    fine, ec, szz, e_mean = _basis(key, span, grid, i)
    sey = ec @ yc
    rss, slope = np.maximum(syy - sey * sey / szz, 0.0), sey / szz
    j = int(np.argmin(rss))
    b, tau = -float(slope[j]), float(fine[j])
    a = y_mean - b * (1.0 - float(e_mean[j]))
    return _Fit(
        "saturating", 3, float(rss[j]), lambda x: a + b * (1.0 - math.exp(-(x - x0) / tau)),
        tau=tau, asymptote=a + b,
    )


@dataclass(frozen=True, slots=True)
class ForecastErrorSummary:
    """How good past forecasts were.

    Attributes:
        count: forecasts paired with an actual peak.
        mape_pct: mean absolute percentage error, 100·|forecast − actual| / actual.
        bias_pct: mean signed percentage error (positive: forecasts ran high).
        max_abs_pct: the worst absolute percentage error.
    """

    count: int
    mape_pct: float
    bias_pct: float
    max_abs_pct: float


@dataclass(slots=True)
class ForecastLog:
    """Records (job, forecast peak, actual peak) to report forecast error.

    Either `record(job_id, forecast, actual)` at once, or `note(job_id, forecast)` while the job
    runs (the first confident forecast is kept: it is the one an early restart acts on) and
    `close(job_id, actual_peak_mib)` when it ends.
    """

    entries: list[tuple[str, float, float]] = field(default_factory=list)
    _pending: dict[str, float] = field(default_factory=dict)

    def note(self, job_id: str, forecast: Forecast) -> None:
        """Remember the first confident forecast of a running job."""
        if forecast.confident and job_id not in self._pending:
            self._pending[job_id] = forecast.peak_mib

    def close(self, job_id: str, actual_peak_mib: float) -> None:
        """Pair a noted forecast with the run's actual peak (no-op when none was noted)."""
        predicted = self._pending.pop(job_id, None)
        if predicted is not None:
            self.record(job_id, predicted, actual_peak_mib)

    def discard(self, job_id: str) -> None:
        """Drop a noted forecast (e.g. the run was killed before its true peak was seen)."""
        self._pending.pop(job_id, None)

    def record(self, job_id: str, forecast_peak_mib: float, actual_peak_mib: float) -> None:
        """Add one (forecast, actual) pair; ignored when the actual peak is not positive."""
        if actual_peak_mib > 0:
            self.entries.append((job_id, forecast_peak_mib, actual_peak_mib))

    def summary(self) -> ForecastErrorSummary:
        """Error statistics over every recorded pair (zeros when there are none)."""
        if not self.entries:
            return ForecastErrorSummary(0, 0.0, 0.0, 0.0)
        err = np.array([100.0 * (f - a) / a for _, f, a in self.entries])
        return ForecastErrorSummary(
            count=len(err), mape_pct=float(np.abs(err).mean()), bias_pct=float(err.mean()),
            max_abs_pct=float(np.abs(err).max()),
        )
