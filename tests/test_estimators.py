"""Memory estimators: forecasts on synthetic curves, margins, analytic numbers, history, order."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from migsched.core.events import MemorySample
from migsched.core.state import Attempt, JobView
from migsched.estimators import (
    AnalyticEstimator,
    Estimate,
    Forecaster,
    ForecastLog,
    HintEstimator,
    HistoryStore,
    JobMemoryEstimator,
    MarginLearner,
    MemoryEstimator,
    MemoryForecaster,
    RunRecord,
    default_history_path,
)
from migsched.estimators.base import Forecast
from migsched.jobs.model import Describe, JobClass, JobSpec

GIB = 1024.0


def view(job_class=JobClass.ML_TRAIN, name="j", hint_gib=None, describe=None, attempts=(),
         command=None) -> JobView:
    spec = JobSpec(job_id=name, name=name, job_class=job_class, hint_gib=hint_gib,
                   describe=describe or Describe(), command=command)
    return JobView(spec=spec, attempts=list(attempts))


def samples(curve, until: float, n: int = 12, progress: bool = True, duration_s: float = 1000.0):
    """n samples of `curve(fraction)` (GiB) over fractions (0, until]."""
    out = []
    for f in np.linspace(until / n, until, n):
        out.append(MemorySample(time_s=f * duration_s, job_id="j", used_mib=curve(f) * GIB,
                                elapsed_s=f * duration_s, progress=f if progress else None))
    return out


def oom(memory_mib: int, peak_mib: float | None = None, outcome="oom") -> Attempt:
    return Attempt(gpu=0, start=0, profile="1g.10gb", memory_mib=memory_mib, launched_s=0.0,
                   ended_s=1.0, outcome=outcome, peak_mib=peak_mib or memory_mib)


# ---- forecast ----------------------------------------------------------------------------------
def test_protocols_are_satisfied():
    est: MemoryEstimator = JobMemoryEstimator()
    fc: Forecaster = MemoryForecaster()
    assert callable(est.estimate) and callable(est.observe) and callable(fc.forecast)


@pytest.mark.parametrize("until", [0.2, 0.25, 0.3])
def test_linear_growth_caught_before_peak(until):
    ramp = lambda f: 2.0 + 28.0 * f  # noqa: E731  2 -> 30 GiB
    f = MemoryForecaster().forecast(view(), samples(ramp, until))
    assert f is not None and f.basis == "progress" and f.confident
    assert f.form == "linear"
    assert f.peak_mib == pytest.approx(30 * GIB, rel=0.10)


def test_linear_growth_with_noise():
    rng = np.random.default_rng(0)
    ramp = lambda f: 2.0 + 28.0 * f + rng.normal(0, 0.05)  # noqa: E731
    f = MemoryForecaster().forecast(view(), samples(ramp, 0.3, n=20))
    assert f is not None and f.confident
    assert f.peak_mib == pytest.approx(30 * GIB, rel=0.10)


def test_constant_predicts_constant():
    f = MemoryForecaster().forecast(view(), samples(lambda f: 7.5, 0.2))
    assert f is not None and f.form == "constant" and f.confident
    assert f.peak_mib == pytest.approx(7.5 * GIB, rel=1e-6)


def test_saturating_predicts_near_asymptote():
    curve = lambda f: 4.0 + 16.0 * (1 - math.exp(-f / 0.08))  # noqa: E731  -> 20 GiB
    f = MemoryForecaster().forecast(view(), samples(curve, 0.3, n=15))
    assert f is not None and f.form == "saturating" and f.confident
    assert f.peak_mib == pytest.approx(20 * GIB, rel=0.03)


def test_saturating_without_progress_or_horizon_reports_asymptote():
    curve = lambda f: 4.0 + 16.0 * (1 - math.exp(-f / 0.05))  # noqa: E731
    f = MemoryForecaster().forecast(view(), samples(curve, 0.3, n=15, progress=False))
    assert f is not None and f.basis == "time" and f.form == "saturating" and f.confident
    assert f.peak_mib == pytest.approx(20 * GIB, rel=0.03)


def test_time_based_with_horizon():
    ramp = lambda f: 2.0 + 28.0 * f  # noqa: E731
    ss = samples(ramp, 0.25, progress=False, duration_s=800.0)
    for horizon in ({"j": 800.0}, lambda job: 800.0):
        f = MemoryForecaster(horizon_s=horizon).forecast(view(), ss)
        assert f is not None and f.basis == "time" and f.confident
        assert f.peak_mib == pytest.approx(30 * GIB, rel=0.10)


def test_linear_without_horizon_is_not_confident():
    ramp = lambda f: 2.0 + 28.0 * f  # noqa: E731
    f = MemoryForecaster().forecast(view(), samples(ramp, 0.25, progress=False))
    assert f is not None and f.form == "linear" and not f.confident
    assert f.peak_mib >= ramp(0.25) * GIB - 1


def test_too_few_samples_or_too_little_coverage():
    ramp = lambda f: 2.0 + 28.0 * f  # noqa: E731
    assert MemoryForecaster().forecast(view(), samples(ramp, 0.2, n=2)) is None
    f = MemoryForecaster().forecast(view(), samples(ramp, 0.05, n=8))
    assert f is not None and not f.confident


def test_forecast_log_mape():
    log = ForecastLog()
    log.record("a", 110.0, 100.0)
    log.note("b", Forecast(90.0, "linear", 0.0, "progress", confident=True))
    log.note("b", Forecast(500.0, "linear", 0.0, "progress", confident=True))  # first one kept
    log.close("b", 100.0)
    s = log.summary()
    assert s.count == 2 and s.mape_pct == pytest.approx(10.0) and s.bias_pct == pytest.approx(0.0)
    assert ForecastLog().summary().count == 0


# ---- hint margin -------------------------------------------------------------------------------
def test_margin_starts_at_default_and_rises_after_under_hinted_runs():
    learner = MarginLearner()
    hint = HintEstimator(learner)
    spec = view(JobClass.SCIENTIFIC, hint_gib=10.0).spec
    assert hint.estimate_mib(spec) == pytest.approx(10 * GIB * 1.10)
    for _ in range(5):
        hint.observe(spec, 14 * GIB)  # the job really needs 1.4x its hint
    assert hint.margin(JobClass.SCIENTIFIC) >= 1.4
    assert hint.estimate_mib(spec) >= 14 * GIB
    assert learner.margin(JobClass.LLM) == pytest.approx(1.10)  # per class
    assert hint.estimate_mib(view(JobClass.SCIENTIFIC).spec) is None


def test_margin_only_drops_after_enough_runs_and_is_bounded():
    learner = MarginLearner()
    learner.observe(JobClass.ML_INFER, 10.0, 5.0)
    assert learner.margin(JobClass.ML_INFER) == pytest.approx(1.10)
    for _ in range(10):
        learner.observe(JobClass.ML_INFER, 10.0, 5.0)
    assert 0.6 <= learner.margin(JobClass.ML_INFER) < 1.0
    for _ in range(300):
        learner.observe(JobClass.ML_TRAIN, 1.0, 100.0)
    assert learner.margin(JobClass.ML_TRAIN) == pytest.approx(3.0)


# ---- analytic ----------------------------------------------------------------------------------
def test_llm_7b_fp16():
    d = Describe(params_m=7000, dtype="fp16", layers=32, kv_heads=32, head_dim=128,
                 context_tokens=2048, generated_tokens=2048, batch_size=1)
    est = AnalyticEstimator().estimate(view(JobClass.LLM, describe=d).spec)
    assert est is not None and est.growing
    parts = dict(est.parts)
    assert 13.0 * GIB <= parts["weights"] <= 14.0 * GIB
    # Llama-2-7B: 0.5 MiB of KV per token in fp16 -> 4096 tokens = 2 GiB
    assert parts["kv-cache"] == pytest.approx(2 * GIB)
    assert est.initial_mib == pytest.approx(parts["weights"] + parts["cuda-context"])
    assert est.peak_mib == pytest.approx(sum(parts.values()))


def test_llm_without_kv_shape_has_initial_but_no_peak():
    spec = view(JobClass.LLM, describe=Describe(params_m=7000, dtype="fp16")).spec
    a = AnalyticEstimator()
    assert a.estimate(spec) is None
    assert a.initial_mib(spec) == pytest.approx(7000e6 * 2 / 2**20 + 768.0)


def test_training_adam_mixed_precision_is_16_bytes_per_param_plus_activations():
    d = Describe(params_m=100, dtype="bf16", optimizer="adamw", batch_size=8)
    est = AnalyticEstimator().estimate(view(JobClass.ML_TRAIN, describe=d).spec)
    assert est is not None and not est.growing
    parts = dict(est.parts)
    per_param = sum(parts[k] for k in ("weights", "gradients", "optimizer", "master-weights"))
    assert per_param == pytest.approx(100e6 * 16 / 2**20)
    assert parts["activations (guess)"] == pytest.approx(8 * parts["weights"])


def test_sgd_fp32_and_inference():
    sgd = AnalyticEstimator().estimate(
        view(describe=Describe(params_m=25, optimizer="sgd", batch_size=1)).spec)
    assert sgd is not None and dict(sgd.parts)["optimizer"] == 0.0
    inf = AnalyticEstimator().estimate(view(JobClass.ML_INFER, describe=Describe(params_m=25)).spec)
    assert inf is not None and inf.peak_mib < sgd.peak_mib


def test_insufficient_description_gives_none():
    a = AnalyticEstimator()
    assert a.estimate(view().spec) is None
    assert a.estimate(view(describe=Describe(params_m=10, dtype="fp13")).spec) is None
    assert a.estimate(view(describe=Describe(params_m=10, optimizer="magic")).spec) is None


# ---- history -----------------------------------------------------------------------------------
def test_history_round_trip(tmp_path):
    path = tmp_path / "sub" / "history.json"
    h = HistoryStore(path)
    h.record("train", RunRecord("2g.20gb", 15000.0, True, 3000.0))
    h.record("train", RunRecord("1g.10gb", 9856.0, False, 3000.0))
    h.record("train", RunRecord("3g.40gb", 1.0, True), command="python other.py")
    again = HistoryStore(path)
    assert again.peak_mib("train") == 15000.0
    assert again.runs("train")[1] == RunRecord("1g.10gb", 9856.0, False, 3000.0)
    assert again.grows("train")
    assert again.peak_mib("train", "python other.py") == 1.0
    assert again.peak_mib("missing") is None
    assert not list(tmp_path.glob("sub/.history-*"))  # no temp files left


def test_history_corrupt_or_missing_file_starts_empty(tmp_path):
    bad = tmp_path / "history.json"
    bad.write_text("{not json")
    with pytest.warns(UserWarning, match="starting empty"):
        h = HistoryStore(bad)
    assert list(h.keys()) == []
    h.record("x", RunRecord("", 10.0, True))
    assert json.loads(bad.read_text())["jobs"]["x"][0]["peak_mib"] == 10.0
    assert HistoryStore(tmp_path / "none.json").peak_mib("x") is None


def test_history_in_memory_and_default_path(tmp_path, monkeypatch):
    h = HistoryStore.in_memory(max_runs=2)
    for p in (1.0, 2.0, 3.0):
        h.record("x", RunRecord("", p, True))
    assert [r.peak_mib for r in h.runs("x")] == [2.0, 3.0]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_history_path() == tmp_path / "migsched" / "history.json"


# ---- combined ----------------------------------------------------------------------------------
def test_combined_order_history_analytic_hint_default():
    est = JobMemoryEstimator(largest_mib=80 * GIB)
    d = Describe(params_m=25, optimizer="sgd", batch_size=1)
    assert est.estimate(view(describe=d, name="a0")).source == "analytic"
    # 25M fp32 parameters with SGD pin down ~1.1 GiB (weights, gradients, momentum, context);
    # a 0.5 GiB hint is below that, certainly low: the analytic figure decides
    assert est.estimate(view(describe=d, hint_gib=0.5, name="a1")).source == "analytic"
    both = view(describe=d, hint_gib=3.0, name="a")
    assert est.estimate(both).source == "hint"  # consistent with it: the activation guess yields
    assert est.estimate(view(hint_gib=3.0, name="b")).source == "hint"
    assert est.estimate(view(hint_gib=3.0, name="b")).mib == pytest.approx(3 * GIB * 1.10)
    default = est.estimate(view(name="c"))
    assert default == Estimate(mib=0.12 * 80 * GIB, source="class-default", growing=False)
    llm = est.estimate(view(JobClass.LLM, name="d"))
    assert llm.mib == pytest.approx(0.24 * 80 * GIB) and llm.growing
    est.observe(both, 5000.0, ok=True)
    e = est.estimate(both)
    assert e.source == "history" and e.mib == pytest.approx(5000.0 * 1.05)


def test_a_hint_outranks_the_analytic_activation_guess_only_when_it_holds_the_certain_part():
    """ResNet-50 (23.5M parameters, fp32, SGD) at batch 512: the activation guess (per-sample
    activations ~ the weight bytes, fitted to 224 px images) says ~50 GiB; the parts the
    description pins down are ~1.1 GiB. A 4.6 GiB hint (CIFAR's 32 px: the job peaks at 4.5)
    holds them and decides; without the guess term the analytic figure stands."""
    est = JobMemoryEstimator(largest_mib=80 * GIB)
    d = Describe(params_m=23.5, dtype="fp32", optimizer="sgd", batch_size=512)
    a = est.analytic.estimate(view(describe=d).spec)
    assert a is not None and a.certain_mib < 1.5 * GIB < 40 * GIB < a.peak_mib
    e = est.estimate(view(describe=d, hint_gib=4.6, name="r"))
    assert e.source == "hint" and e.mib < 8 * GIB
    assert est.estimate(view(describe=d, name="r2")).mib > 40 * GIB  # no hint: the analytic figure


def test_second_batch_starts_from_history(tmp_path):
    path = tmp_path / "h.json"
    first = JobMemoryEstimator(HistoryStore(path))
    job = view(name="sim", hint_gib=4.0)
    job.samples.append(MemorySample(0.0, "sim", 1000.0, 0.0))
    first.observe(job, 6000.0, ok=True)
    second = JobMemoryEstimator(HistoryStore(path))
    e = second.estimate(view(name="sim", hint_gib=4.0))
    assert e.source == "history" and e.growing  # 1000 -> 6000 MiB: it grew
    assert e.mib == pytest.approx(6300.0)


def test_oom_floor():
    est = JobMemoryEstimator()
    job = view(hint_gib=4.0, attempts=[oom(9856)])
    e = est.estimate(job)
    assert e.source == "oom" and e.mib > 9856
    assert e.mib < 9856 + 2
    killed = view(hint_gib=4.0, attempts=[oom(19968, peak_mib=15000.0, outcome="killed:early-restart")])
    assert est.estimate(killed).mib > 15000.0
    big = view(hint_gib=30.0, attempts=[oom(9856)])
    assert est.estimate(big).source == "hint"  # the floor only raises


def test_observe_feeds_hint_learner():
    est = JobMemoryEstimator()
    for i in range(5):
        est.observe(view(JobClass.SCIENTIFIC, name=f"s{i}", hint_gib=2.0), 2 * GIB * 1.5, ok=True)
    e = est.estimate(view(JobClass.SCIENTIFIC, name="new", hint_gib=2.0))
    assert e.source == "hint" and e.mib >= 3 * GIB


def test_startup_samples_at_progress_zero_do_not_bend_the_fit():
    ramp = lambda f: 14.0 + 16.0 * f  # noqa: E731  weights loaded, then KV grows to 30 GiB
    loading = [MemorySample(t, "j", m * GIB, t, 0.0) for t, m in ((1, 0.5), (2, 6.0), (3, 14.0))]
    f = MemoryForecaster().forecast(view(JobClass.LLM), loading + samples(ramp, 0.25, n=6))
    assert f is not None and f.confident and f.form == "linear"
    assert f.peak_mib == pytest.approx(30 * GIB, rel=0.05)


def test_falling_memory_never_forecasts_below_what_was_seen():
    f = MemoryForecaster().forecast(view(), samples(lambda f: 10.0 - 20.0 * f, 0.3))
    assert f is not None and f.peak_mib >= (10.0 - 20.0 * 0.3 / 12) * GIB - 1


def test_no_hint_means_a_small_prior_never_the_whole_gpu():
    est = JobMemoryEstimator(largest_mib=80 * GIB)
    for cls in JobClass:
        e = est.estimate(view(cls, name=f"unknown-{cls.value}"))
        assert e.source == "class-default"
        assert e.mib <= 0.25 * 80 * GIB  # at most two memory slices of eight


def test_unknown_jobs_learn_from_their_class_peaks():
    """After CLASS_MIN_RUNS completed runs of a class, an unhinted job of it gets the class's
    CLASS_QUANTILE peak x class_margin; other classes keep the prior; failed runs do not count."""
    from migsched.estimators.combined import CLASS_MIN_RUNS
    est = JobMemoryEstimator(largest_mib=80 * GIB, class_margin=1.10)
    peaks = [2 * GIB, 3 * GIB, 30 * GIB, 4 * GIB]
    est.observe(view(name="failed-0"), 60 * GIB, ok=False)
    for i, p in enumerate(peaks[:CLASS_MIN_RUNS - 1]):
        est.observe(view(name=f"seen-{i}"), p, ok=True)
    assert est.estimate(view(name="fresh")).source == "class-default"
    for i, p in enumerate(peaks[CLASS_MIN_RUNS - 1:]):
        est.observe(view(name=f"more-{i}"), p, ok=True)
    e = est.estimate(view(name="fresh"))
    assert e.source == "class" and e.mib == pytest.approx(30 * GIB * 1.10)  # q0.75 of 4 = 3rd largest+
    assert est.estimate(view(JobClass.LLM, name="other")).source == "class-default"


def test_the_hint_margin_quantile_is_numpys_linear_quantile_bit_for_bit():
    """`hint.linear_quantile` replaced `np.quantile` (whose first call costs ~10 ms of set-up
    inside a placing decision); the margins, and so every decision, must not move."""
    import random

    import numpy as np

    from migsched.estimators.hint import linear_quantile
    rng = random.Random(5)
    for _ in range(2000):
        vals = [rng.uniform(0.2, 3.0) for _ in range(rng.randint(1, 250))]
        q = rng.choice([0.5, 0.9, 0.95, rng.random()])
        assert linear_quantile(vals, q) == float(np.quantile(np.array(vals), q))


def test_a_sample_with_a_value_that_is_not_finite_does_not_count():
    """A job's own progress report may say anything; the forecast ignores such samples rather
    than fail (a crash here would stop the scheduler)."""
    good = samples(lambda f: 2.0 + 4.0 * f, until=0.5)
    bad = [dataclasses.replace(good[3], progress=math.inf), dataclasses.replace(good[4], used_mib=math.nan),
           dataclasses.replace(good[5], progress=math.nan)]
    fc = MemoryForecaster().forecast(None, [*good, *bad])
    assert fc is not None and fc == MemoryForecaster().forecast(None, good)


def test_curve_fits_on_one_sample_spacing_share_their_exponentials_bit_for_bit():
    """Samples come on a grid every job shares, so the saturating fit keeps its τ grid's
    exponentials per spacing (`_basis`). A fit that reuses them must equal one made afresh, and
    a fit on another spacing of the same span must not reuse them."""
    from migsched.estimators import forecast as fc

    grid = np.array([0.0, 2.0, 4.0, 6.0, 8.0, 12.0, 18.0])
    other = np.array([0.0, 1.0, 3.0, 7.0, 9.0, 15.0, 18.0])
    cases = [(xs, np.array([1000.0 + 900.0 * (1 - math.exp(-x / k)) for x in xs]))
             for xs, k in ((grid, 3.0), (grid, 7.0), (other, 3.0))]

    def fit(xs, ys):
        f = fc._saturating(xs, ys, float(ys.mean()), 0.0, 18.0, 40)
        return f.rss, f.tau, f.asymptote, f.predict(30.0)

    fresh = []
    for xs, ys in cases:
        fc._basis.cache_clear()
        fresh.append(fit(xs, ys))
    fc._basis.cache_clear()
    shared = [fit(xs, ys) for xs, ys in cases]
    assert fc._basis.cache_info().hits >= 1  # the second curve reused the first one's grid
    assert shared == fresh
    assert abs(shared[0][2] - 1900.0) < 5.0 and abs(shared[2][2] - 1900.0) < 5.0
