"""The class duration model (policies/migm/survival.py) and its use by the tail restart.

Synthetic runs drawn from the model itself (log T = b0 - alpha log c + sigma eps) with a seed:
the fit must recover the parameters, and with heavy right-censoring it must still recover them
when the running jobs are passed as censored, while the completed runs alone are biased short.
"""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest

from migsched.hardware import get_model
from migsched.policies.migm import survival
from migsched.policies.migm.restarts import RunTimes, remaining
from migsched.policies.migm.survival import ClassDurations, DurationFit

B0, ALPHA, SIGMA = 7.0, 0.4, 0.8
SIZES = (1, 2, 3, 7)


def draws(n: int, seed: int = 7) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        c = rng.choice(SIZES)
        out.append((c, math.exp(B0 - ALPHA * math.log(c) + SIGMA * rng.gauss(0.0, 1.0))))
    return out


def test_fit_recovers_the_model_from_completed_runs():
    d = ClassDurations()
    for c, t in draws(800):
        d.finished("scientific", c, t)
    fit = d.fit("scientific", [])
    assert fit is not None and fit.censored == 0
    assert fit.b0 == pytest.approx(B0, abs=0.12)
    assert fit.alpha == pytest.approx(ALPHA, abs=0.08)
    assert fit.sigma == pytest.approx(SIGMA, abs=0.08)


def test_running_jobs_count_as_censored_and_remove_the_short_bias():
    """Observed at t = 1,200 s: the runs that ended are the short ones. Without the running jobs
    the fit says the class is short; with them as censored it recovers the model."""
    cut_s = 1200.0  # about the median of the 1-slice runs: half of them are still running
    d = ClassDurations()
    running = []
    for c, t in draws(1500):
        if t <= cut_s:
            d.finished("scientific", c, t)
        else:
            running.append((c, cut_s))
    naive = d.fit("scientific", [])
    fit = d.fit("scientific", running)
    assert naive is not None and fit is not None and fit.censored == len(running) > 300
    assert naive.b0 < B0 - 0.5                      # biased short
    assert fit.b0 == pytest.approx(B0, abs=0.15)    # censoring handled
    assert fit.alpha == pytest.approx(ALPHA, abs=0.1)
    assert fit.sigma == pytest.approx(SIGMA, abs=0.1)


def test_no_fit_until_enough_runs_on_two_sizes():
    d = ClassDurations()
    for _ in range(survival.MIN_RUNS * 2):
        d.finished("ml-train", 1, 100.0)
    assert d.fit("ml-train", []) is None       # one size: no scaling to fit
    for _ in range(survival.MIN_PER_SIZE):
        d.finished("ml-train", 7, 40.0)
    assert d.fit("ml-train", []) is not None
    assert d.fit("llm", []) is None            # nothing about this class


def test_expected_total_is_the_lognormal_conditional_mean():
    f = DurationFit(b0=6.0, alpha=0.5, sigma=1.0, runs=100, censored=0)
    assert f.expected_total_s(1, 0.0) == pytest.approx(math.exp(6.0 + 0.5))
    assert f.expected_total_s(4, 0.0) == pytest.approx(math.exp(6.0 - 0.5 * math.log(4) + 0.5))
    totals = [f.expected_total_s(1, e) for e in (10.0, 300.0, 1000.0, 5000.0, 1e6)]
    assert all(t > e for t, e in zip(totals, (10.0, 300.0, 1000.0, 5000.0, 1e6)))
    assert totals == sorted(totals)
    # A Monte-Carlo check of E[T | T > 1000] on one slice.
    rng = random.Random(3)
    xs = [math.exp(6.0 + rng.gauss(0.0, 1.0)) for _ in range(200_000)]
    tail = [x for x in xs if x > 1000.0]
    assert f.expected_total_s(1, 1000.0) == pytest.approx(sum(tail) / len(tail), rel=0.03)


def _running_job(job_id: str, profile, launched_s: float):
    spec = SimpleNamespace(job_class=SimpleNamespace(value="scientific"), checkpoint=None)
    return SimpleNamespace(job_id=job_id, family=job_id, profile=profile, launched_s=launched_s,
                           saved_progress=None, samples=(), spec=spec, killing=False, attempts=[])


def test_a_job_of_an_unseen_family_gets_a_projection_from_its_class():
    """remaining() had nothing for a job whose family never finished and that reports no
    progress; once its class has a fit, it projects E[T | T > elapsed] on its profile."""
    model = get_model("A100-80GB")
    one_g = model.profile("1g.10gb")
    times = RunTimes()
    job = _running_job("lone", one_g, launched_s=0.0)
    assert remaining(job, 500.0, "lone", times) is None
    for k, (c, t) in enumerate(draws(200)):
        done = SimpleNamespace(job_id=f"done-{k}", spec=job.spec)
        times.finished(done, f"done-{k}", c, t)
    assert remaining(job, 500.0, "lone", times) is None   # fitted only by refit()
    times.refit([job], 500.0)
    fit = times.class_fit["scientific"]
    left_s, total_s = remaining(job, 500.0, "lone", times)
    assert total_s == pytest.approx(fit.expected_total_s(1, 500.0))
    assert left_s == pytest.approx(total_s - 500.0)
    assert times.alpha("lone", "scientific") == pytest.approx(fit.alpha)   # not the 0.1 prior
    assert times.alpha("lone", "scientific") != pytest.approx(times.prior["scientific"])


def test_a_fitted_class_quantile_follows_its_log_normal():
    fit = DurationFit(b0=B0, alpha=ALPHA, sigma=SIGMA, runs=100, censored=0)
    assert fit.quantile_s(1, 0.0) == pytest.approx(math.exp(B0))                    # the median
    assert fit.quantile_s(7, 0.8416) == pytest.approx(math.exp(B0 - ALPHA * math.log(7) + 0.8416 * SIGMA))
