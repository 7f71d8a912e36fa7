"""Memory samples on demand (`migsched.core.sampling`): the plan, the core, the simulator, local.

A policy says per attempt when it wants samples; the backend samples only then, and the number
of samples of an attempt is bounded whatever its run time.
"""

from __future__ import annotations

import math
import sys

import pytest

from migsched.backends.local.backend import LocalBackend
from migsched.backends.sim import Simulator
from migsched.core.backend import RunSettings
from migsched.core.events import CreateInstance, JobExited, Launch, MemorySample
from migsched.core.sampling import DEFAULT_PLAN, NO_SAMPLES, SampleCursor, SamplePlan
from migsched.core.source import TraceSource
from migsched.errors import MigschedError
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.jobs.model import JobClass, JobSpec
from migsched.policies.greedy import GreedyPolicy
from migsched.policies.registry import create_policy
from migsched.run import run, simulate

A40 = get_model("A100-40GB")


def jobs(*entries):
    return load_jobs_dict({"version": 1, "jobs": list(entries)}, require_model=True)


def job(name, runtime_s, *, memory="constant", peak_gib=4.0, hint_gib=9.0, count=1, reports_progress=False):
    return {"name": name, "class": "scientific", "count": count, "hint_gib": hint_gib,
            "reports_progress": reports_progress,
            "model": {"runtime_s": runtime_s, "peak_gib": peak_gib, "memory": memory, "startup_s": 1,
                      "speedup": {1: 1.0}}}


class Recording(GreedyPolicy):
    """Greedy that wants samples, records them, and asks for `plans[job name]` (else the default)."""

    wants_memory_samples = True

    def __init__(self, plans=None) -> None:
        super().__init__()
        self.plans = plans or {}
        self.seen: list[tuple[str, float]] = []

    def sample_plan(self, job):
        return self.plans.get(job.spec.name, super().sample_plan(job))

    def on_memory_sample(self, view, job, sample):
        self.seen.append((sample.job_id, sample.time_s))
        return []


# ---- the plan itself ----------------------------------------------------------------------
def test_the_default_plan_is_dense_early_then_geometric_and_capped():
    offs = DEFAULT_PLAN.offsets_s(2.0)
    assert offs[:8] == pytest.approx([2.0 * k for k in range(1, 9)])  # every 2 s for 16 s
    gaps = [b - a for a, b in zip(offs, offs[1:])]
    assert gaps[7:10] == pytest.approx([4.0, 8.0, 16.0])  # then each gap twice the one before
    assert len(offs) == DEFAULT_PLAN.max_samples == 24
    # the count grows with the log of the run time, and stops at the cap
    assert len(DEFAULT_PLAN.offsets_s(2.0, 100.0)) < len(DEFAULT_PLAN.offsets_s(2.0, 10_000.0)) < 24
    assert len(DEFAULT_PLAN.offsets_s(2.0, 1e7)) == 24


def test_a_periodic_plan_keeps_its_period_and_an_explicit_interval_wins_over_the_base():
    assert SamplePlan.periodic(max_samples=5).offsets_s(3.0) == pytest.approx([3, 6, 9, 12, 15])
    assert SamplePlan(interval_s=0.5, dense=2, growth=2.0, max_samples=4).offsets_s(9.0) == \
        pytest.approx([0.5, 1.0, 2.0, 4.0])
    assert SamplePlan(dense=0, growth=2.0, max_gap_s=5.0, max_samples=5).offsets_s(1.0) == \
        pytest.approx([2.0, 6.0, 11.0, 16.0, 21.0])


@pytest.mark.parametrize(("field", "value"), [("interval_s", 0.0), ("interval_s", float("inf")), ("dense", -1),
                                              ("growth", 0.5), ("max_samples", -1), ("max_gap_s", 0.0),
                                              ("stop_when_flat", 0)])
def test_a_bad_plan_is_refused_naming_the_field_and_the_value(field, value):
    with pytest.raises(MigschedError, match=rf"SamplePlan\.{field} must be .*got {value!r}"):
        SamplePlan(**{field: value})


def test_the_cursor_stops_at_the_cap_and_when_memory_stays_flat():
    cur = SampleCursor.start(SamplePlan.periodic(max_samples=2), 1.0, 10.0)
    assert cur.next_s == 11.0 and cur.took(11.0, 5.0) == 12.0 and cur.took(12.0, 6.0) is None
    flat = SampleCursor.start(SamplePlan(stop_when_flat=2), 1.0, 0.0)
    assert flat.took(1.0, 5.0) is not None and flat.took(2.0, 5.0) is not None  # first flat
    assert flat.took(3.0, 5.0) is None  # second flat in a row: the peak is known
    assert SampleCursor.start(NO_SAMPLES, 1.0, 0.0).next_s is None


def test_a_growth_only_plan_reports_new_peaks_and_progress_and_drops_the_rest():
    cur = SampleCursor.start(SamplePlan(growth_only=True), 1.0, 0.0)
    wanted = []
    for used, progress in ((5.0, False), (5.0, False), (6.0, False), (6.0, True), (5.5, False), (7.0, False)):
        cur.took(0.0, used)
        wanted.append(cur.wanted(progress))
    assert wanted == [True, False, True, True, False, True]
    every = SampleCursor.start(SamplePlan(), 1.0, 0.0)
    every.took(0.0, 5.0)
    every.took(1.0, 5.0)
    assert every.wanted(False)  # the default plan reports every sample


def test_a_plan_that_holds_low_samples_hands_them_over_with_the_next_reported_one():
    cur = SampleCursor.start(SamplePlan(hold_below_mib=100.0), 1.0, 0.0)
    out = []
    for t, used, progress in ((1.0, 40.0, None), (2.0, 60.0, None), (3.0, 80.0, 0.5), (4.0, 120.0, None),
                              (5.0, 50.0, None), (6.0, 130.0, None)):
        cur.took(t, used)
        out.append(cur.offer(MemorySample(t, "j", used, t, progress)))
    assert out[0] is None and out[1] is None  # below 100 MiB, no progress: held
    assert out[2] is not None and [s.time_s for s in out[2].held] == [1.0, 2.0]  # progress: never held
    assert out[3] is not None and out[3].held == ()
    assert out[4] is None and [s.time_s for s in out[5].held] == [5.0]
    assert not cur.held


def test_holding_applies_after_the_growth_filter_and_rejects_nonsense():
    cur = SampleCursor.start(SamplePlan(growth_only=True, hold_below_mib=100.0), 1.0, 0.0)
    got = []
    for t, used in ((1.0, 40.0), (2.0, 40.0), (3.0, 60.0), (4.0, 150.0)):
        cur.took(t, used)
        got.append(cur.offer(MemorySample(t, "j", used, t)))
    assert got[:3] == [None, None, None]
    assert [s.time_s for s in got[3].held] == [1.0, 3.0]  # the flat one at 2 s was dropped, not held
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(MigschedError, match="hold_below_mib"):
            SamplePlan(hold_below_mib=bad)


# ---- the core and the simulator -----------------------------------------------------------------
def _samples_of(runtime_s: float, policy=None) -> tuple[int, int]:
    pol = policy or Recording()
    r = simulate(jobs(job("s", runtime_s)), A40, policy=pol, record_power=False)
    assert r.jobs_completed == 1
    return len(pol.seen), r.events_processed


def test_samples_per_attempt_are_bounded_whatever_the_run_time():
    short_n, short_events = _samples_of(100.0)
    long_n, long_events = _samples_of(1e7)
    assert short_n >= 8 and long_n == DEFAULT_PLAN.max_samples
    assert long_events - short_events <= DEFAULT_PLAN.max_samples  # 1e7 s costs about what 100 s does
    # the contract before plans (one sample every 2 s): 5,000 samples for 10^4 s, 5 million for 10^7 s
    assert _samples_of(1e4, Recording({"s": SamplePlan.periodic()}))[0] in (4_999, 5_000)


def test_migm_on_a_very_long_job_costs_about_what_a_short_one_does():
    # (tail_restart off: its 30 s re-check wakes the policy every 30 s of the tail, a cost in
    # simulated time of the policy's own that this test does not measure)
    events = {}
    for runtime_s in (100.0, 1e7):
        r = simulate(jobs(job("s", runtime_s, count=3)), A40, policy=create_policy("migm", tail_restart=False),
                     record_power=False)
        assert r.jobs_completed == 3
        events[runtime_s] = r.events_processed
    assert events[1e7] <= events[100.0] + 3 * DEFAULT_PLAN.max_samples
    assert events[1e7] < 300


def test_each_attempt_is_sampled_as_its_plan_says():
    pol = Recording({"quiet": NO_SAMPLES, "few": SamplePlan.periodic(max_samples=3)})
    simulate(jobs(job("quiet", 100.0), job("few", 100.0), job("dflt", 100.0)), A40, policy=pol,
             record_power=False)
    counts = {jid: sum(1 for j, _ in pol.seen if j == jid) for jid in ("quiet", "few", "dflt")}
    assert counts["quiet"] == 0 and counts["few"] == 3 and counts["dflt"] > 8


def test_the_simulator_reports_only_growth_under_a_growth_only_plan_unless_progress_comes_with_it():
    plan = SamplePlan.periodic(max_samples=10)
    growth = SamplePlan(dense=10, growth=1.0, max_samples=10, growth_only=True)
    pol = Recording({"flat": growth, "ramp": growth, "every": plan, "told": growth})
    simulate(jobs(job("flat", 100.0), job("ramp", 100.0, memory="linear"), job("every", 100.0),
                  job("told", 100.0, reports_progress=True)), A40, policy=pol, record_power=False)
    counts = {jid: sum(1 for j, _ in pol.seen if j == jid) for jid in ("flat", "ramp", "every", "told")}
    assert counts == {"flat": 1, "ramp": 10, "every": 10, "told": 10}


def test_the_simulator_takes_unreported_samples_without_events_and_reports_what_firing_would():
    """A ramp then a plateau: under growth_only the reported samples are exactly the new peaks of
    the full plan, and the dropped ones cost no simulator event."""
    full = SamplePlan(dense=10, growth=1.0, max_samples=10)
    grow = SamplePlan(dense=10, growth=1.0, max_samples=10, growth_only=True)

    class Values(Recording):
        def on_memory_sample(self, view, job, sample):
            self.seen.append((sample.time_s, sample.used_mib))
            return []

    entry = job("r", 100.0, memory="ramp")
    every, peaks = Values({"r": full}), Values({"r": grow})
    r_every = simulate(jobs(entry), A40, policy=every, record_power=False)
    r_peaks = simulate(jobs(entry), A40, policy=peaks, record_power=False)
    top, want = -1.0, []
    for t, used in every.seen:
        if used > top * 1.001 + 1e-9:
            want.append((t, used))
        top = max(top, used)
    assert peaks.seen == want and 1 < len(want) < len(every.seen)
    assert r_every.events_processed - r_peaks.events_processed == len(every.seen) - len(want)


def test_the_simulator_holds_low_samples_and_the_core_puts_them_back_in_the_history():
    """A linear ramp to 4 GiB under a plan that holds everything below 2 GiB: the policy is
    called only for the samples from 2 GiB on, and at the first of them the job's history is
    every sample the full plan would have shown up to then, in order."""
    full = SamplePlan(dense=10, growth=1.0, max_samples=10)
    held = SamplePlan(dense=10, growth=1.0, max_samples=10, hold_below_mib=2048.0)

    class History(Recording):
        def on_memory_sample(self, view, job, sample):
            self.seen.append((sample.time_s, sample.used_mib, [s.time_s for s in job.samples]))
            return []

    entry = job("r", 30.0, memory="linear")
    every, low = History({"r": full}), History({"r": held})
    r_every = simulate(jobs(entry), A40, policy=every, record_power=False)
    r_low = simulate(jobs(entry), A40, policy=low, record_power=False)
    want = [(t, used) for t, used, _h in every.seen if used >= 2048.0]
    assert [(t, used) for t, used, _h in low.seen] == want and 0 < len(want) < len(every.seen)
    assert low.seen[0][2] == [t for t, _u, _h in every.seen if t <= want[0][0]]
    assert r_every.events_processed - r_low.events_processed == len(every.seen) - len(want)


def test_the_simulator_stops_taking_samples_that_nothing_could_report(monkeypatch):
    """Flat memory under growth_only: after the first sample every later one would be dropped,
    so the simulator takes no more (the plan's cap is 24); likewise a curve that stays below
    `hold_below_mib` is never sampled at all."""
    taken = []
    orig = SampleCursor.took

    def took(self, at_s, used_mib):
        taken.append(at_s)
        return orig(self, at_s, used_mib)

    monkeypatch.setattr(SampleCursor, "took", took)
    pol = Recording({"flat": SamplePlan(growth_only=True)})
    simulate(jobs(job("flat", 5000.0)), A40, policy=pol, record_power=False)
    assert len(pol.seen) == 1 and len(taken) == 1
    taken.clear()
    pol = Recording({"low": SamplePlan(hold_below_mib=8192.0)})
    simulate(jobs(job("low", 5000.0, memory="linear")), A40, policy=pol, record_power=False)
    assert pol.seen == [] and taken == []


def test_a_policy_without_samples_gets_none_and_its_launches_carry_no_plan():
    pol = GreedyPolicy()
    launches = []
    inner = pol.decide

    def decide(view, changes):
        d = inner(view, changes)
        launches.extend(a for a in d.actions if isinstance(a, Launch))
        return d

    pol.decide = decide
    r = simulate(jobs(job("s", 1e5)), A40, policy=pol, record_power=False)
    assert r.events_processed < 10 and pol.sample_plan(None) is NO_SAMPLES  # type: ignore[arg-type]


def test_flat_memory_stops_sampling_when_the_plan_says_the_peak_is_known():
    pol = Recording({"flat": SamplePlan(stop_when_flat=3), "grow": SamplePlan(stop_when_flat=3)})
    simulate(jobs(job("flat", 1000.0), job("grow", 1000.0, memory="linear")), A40, policy=pol,
             record_power=False)
    assert sum(1 for j, _ in pol.seen if j == "flat") == 4  # the first, then three without growth
    assert sum(1 for j, _ in pol.seen if j == "grow") > 8


def test_samples_of_different_jobs_come_in_one_batch_and_at_most_a_grid_step_late():
    # two long jobs that start 0.12 s apart: their dense samples share the base-period grid (one
    # batch per tick, not one per job), and so do their late sparse ones
    pol = Recording()
    simulate(jobs(job("a", 5000.0), job("b", 5000.0, hint_gib=4.5)), A40, policy=pol, record_power=False)
    times = {jid: [t for j, t in pol.seen if j == jid] for jid in ("a", "b")}
    assert len(set(times["a"][:8]) & set(times["b"][:8])) >= 7
    assert len(set(times["a"][-4:]) & set(times["b"][-4:])) >= 2
    for ts in times.values():
        assert all(t == pytest.approx(round(t / 2.0) * 2.0) for t in ts[:8])  # on the 2 s grid
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        assert all(1.9 < g < 4.1 for g in gaps[:7])  # one period apart, one period late at most


def test_the_sample_grid_delays_a_sample_by_less_than_one_step():
    from migsched.backends.sim.simulator import _sample_at

    for t in (0.0, 0.12, 1.99, 2.0, 2.01, 17.3, 1234.5):
        dense = _sample_at(t, 2.0, 2.0)
        assert t - 1e-6 <= dense < t + 2.0 and dense / 2.0 == pytest.approx(round(dense / 2.0))
        sparse = _sample_at(t, 64.0, 2.0)  # gap 64 s: an 8 s grid
        assert t - 1e-6 <= sparse < t + 8.0 and sparse / 8.0 == pytest.approx(round(sparse / 8.0))


def test_the_core_fills_in_the_plan_of_each_launch():
    pol = Recording({"few": SamplePlan.periodic(max_samples=3)})
    seen = []

    class Observer:
        def after_handle(self, core, events):
            pass

        def before_execute(self, core, actions):
            seen.extend(a for a in actions if isinstance(a, Launch))

    sim = Simulator([A40], {j.job_id: j.truth for j in jobs(job("few", 10.0), job("dflt", 10.0))})
    run(TraceSource(j.spec for j in jobs(job("few", 10.0), job("dflt", 10.0))), pol, sim, Observer())
    plans = {a.job_id: a.samples for a in seen}
    assert plans == {"few": SamplePlan.periodic(max_samples=3), "dflt": DEFAULT_PLAN}


# ---- the local backend ----------------------------------------------------------------------------
def _local_samples(tmp_path, interval_s: float, sleep_s: float, plan: SamplePlan) -> list[MemorySample]:
    """The memory samples the local backend reports for one sleeping job run under `plan`."""
    be = LocalBackend([A40], tmp_path, sample_interval_s=interval_s, tick_s=0.01)
    try:
        be.open(RunSettings(True, interval_s))
        spec = JobSpec("j", "j", JobClass.SCIENTIFIC, hint_gib=1.0,
                       argv=(sys.executable, "-c", f"import time; time.sleep({sleep_s})"))
        be.execute([CreateInstance(0, "1g.5gb", 0), Launch("j", 0, 0, 1, spec, samples=plan)])
        samples, ended = [], False
        while not ended:
            batch = be.poll(be.clock.now_s() + 5.0)
            assert batch, "the job did not end in time"
            samples += [e for e in batch if isinstance(e, MemorySample)]
            ended = any(isinstance(e, JobExited) for e in batch)
        return samples
    finally:
        be.stop_all()
        be.close()


def test_the_local_backend_honours_the_plan(tmp_path):
    assert len(_local_samples(tmp_path, 0.05, 1.0, SamplePlan.periodic(max_samples=3))) == 3


def test_the_local_backend_drops_flat_samples_under_a_growth_only_plan(tmp_path):
    plan = SamplePlan(dense=4, growth=1.0, max_samples=4, growth_only=True)
    samples = _local_samples(tmp_path, 0.2, 1.5, plan)
    assert 1 <= len(samples) < 4  # a sleeping process's memory stays flat: not every sample


def test_the_local_backend_holds_samples_below_the_plans_level(tmp_path):
    plan = SamplePlan(dense=4, growth=1.0, max_samples=4)
    assert len(_local_samples(tmp_path / "a", 0.2, 1.5, plan)) == 4
    held = SamplePlan(dense=4, growth=1.0, max_samples=4, hold_below_mib=1e9)
    assert _local_samples(tmp_path / "b", 0.2, 1.5, held) == []  # every one held, none reported


# ---- the run loop's garbage collection ---------------------------------------------------------
def _freeze_counts():
    """An observer that records the collector's frozen-object count after every handled batch."""
    import gc

    frozen: list[int] = []

    class Observer:
        def after_handle(self, core, events):
            frozen.append(gc.get_freeze_count())

        def before_execute(self, core, actions):
            pass

    return frozen, Observer()


def test_the_run_keeps_its_jobs_out_of_full_collections_and_gives_them_back_at_the_end():
    import gc

    frozen, observer = _freeze_counts()
    batch = jobs(job("s", 50.0, count=20))
    sim = Simulator([A40], {j.job_id: j.truth for j in batch})
    run(TraceSource(j.spec for j in batch), Recording(), sim, observer)
    assert frozen and min(frozen) > 0  # the jobs and the set-up were frozen during the run
    assert gc.get_freeze_count() == 0  # and unfrozen after it


def test_the_run_freezes_what_it_adds_as_it_goes_and_its_results_are_read_before_the_thaw(monkeypatch):
    """What the run adds (attempts, records) is frozen again every `REFREEZE_BATCHES` batches,
    so no full collection scans it; `run` reads its results before it unfreezes (a full
    collection over 100,000 jobs' state cost ~1 s when the results were built after the thaw)."""
    import gc

    import migsched.run as run_mod

    monkeypatch.setattr(run_mod, "REFREEZE_BATCHES", 4)
    frozen, observer = _freeze_counts()
    order = []
    real_result_of, real_unfreeze = run_mod.result_of, gc.unfreeze
    monkeypatch.setattr(run_mod, "result_of", lambda *a: (order.append(("results", gc.get_freeze_count() > 0)),
                                                          real_result_of(*a))[1])
    monkeypatch.setattr(gc, "unfreeze", lambda: (order.append(("thaw", None)), real_unfreeze())[1])
    batch = jobs(job("s", 50.0, count=40))
    sim = Simulator([A40], {j.job_id: j.truth for j in batch})
    run(TraceSource(j.spec for j in batch), Recording(), sim, observer)
    assert len(frozen) > 12 and frozen[-1] > frozen[4]  # frozen again while the run went on
    assert order == [("results", True), ("thaw", None)] and gc.get_freeze_count() == 0
