"""The clairvoyant `optimal` reference: CP-SAT plan, replay through the core, and its bounds.

Solver tests skip cleanly when OR-Tools (the `optimal` extra) is not installed.
"""

from __future__ import annotations

import builtins

import pytest

from migsched.errors import MigschedError
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.metrics import lower_bound_s
from migsched.partition.layout import Layout
from migsched.policies import create_policy, policy_names
from migsched.run import simulate

A100 = get_model("A100-80GB")
CREATE_S = 0.12  # SimCosts().gi_create_s
DESTROY_S = 0.11  # SimCosts().gi_destroy_s

try:
    import ortools  # noqa: F401

    has_ortools = True
except ImportError:
    has_ortools = False


@pytest.fixture
def cp():
    return pytest.importorskip("ortools.sat.python.cp_model")


def batch(*entries: dict) -> list:
    return load_jobs_dict({"version": 1, "jobs": list(entries)})


def job(name: str, runtime_s: float, peak_gib: float, count: int = 1, speedup=None, startup_s: float = 0.0,
        arrival_s: float = 0.0, hint_gib: float | None = None) -> dict:
    e = {"name": name, "class": "scientific", "count": count, "arrival_s": arrival_s,
         "model": {"runtime_s": runtime_s, "peak_gib": peak_gib, "speedup": speedup or {7: 1.0},
                   "startup_s": startup_s}}
    if hint_gib is not None:
        e["hint_gib"] = hint_gib
    return e


def small_mix() -> list:
    """Six jobs of different sizes and scalings on one A100-80GB."""
    return batch(
        job("big", 120, 30, speedup={1: 0.2, 7: 1.0}, startup_s=2, hint_gib=30),
        job("mem", 90, 45, speedup={1: 0.9, 7: 1.0}, startup_s=1, hint_gib=45),
        job("small", 60, 4, count=2, speedup={1: 0.6, 7: 1.0}, startup_s=1, hint_gib=4),
        job("mid", 80, 15, speedup={1: 0.3, 3: 0.6, 7: 1.0}, startup_s=1, hint_gib=15),
        job("tiny", 30, 2, speedup={1: 1.0}, startup_s=0.5, hint_gib=2),
    )


def optimal(jobs, **kw):
    from migsched.policies.optimal import OptimalPolicy

    return OptimalPolicy(jobs, **kw)


# ---- registry and errors ----------------------------------------------------------------------
def test_registered_as_clairvoyant_only():
    assert "optimal" not in policy_names()
    assert "optimal" in policy_names(include_clairvoyant=True)


def test_missing_ortools_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("ortools"):
            raise ImportError("No module named 'ortools'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    from migsched.policies.optimal import OptimalUnavailableError

    with pytest.raises(OptimalUnavailableError, match=r"pip install 'migsched\[optimal\]'") as info:
        create_policy("optimal", jobs=small_mix(), time_limit_s=1)
    assert isinstance(info.value, MigschedError)


def test_refuses_large_batches(cp):
    from migsched.policies.optimal import OptimalPolicy, OptimalTooLargeError

    jobs = batch(job("x", 10, 1, count=OptimalPolicy.MAX_JOBS + 1))
    with pytest.raises(OptimalTooLargeError, match="at most 200 jobs"):
        optimal(jobs)
    assert issubclass(OptimalTooLargeError, MigschedError)


def test_needs_ground_truth(cp):
    jobs = load_jobs_dict({"version": 1, "jobs": [{"name": "a", "class": "scientific", "hint_gib": 2}]})
    with pytest.raises(MigschedError, match="ground truth"):
        optimal(jobs)


def test_jobs_not_given_to_the_policy_are_an_error(cp):
    jobs = small_mix()
    with pytest.raises(MigschedError, match="not among the jobs given"):
        simulate(jobs, A100, policy=optimal(jobs[:3], time_limit_s=2))


# ---- hand-computable schedules ----------------------------------------------------------------
def test_seven_1g_jobs_run_all_at_once(cp):
    jobs = batch(job("a", 100, 5, count=7, speedup={1: 1.0}))
    pol = optimal(jobs, time_limit_s=5)
    r = simulate(jobs, A100, policy=pol)
    assert r.jobs_completed == 7 and r.oom_restarts == 0
    # All seven start at once; only the (serialised) instance creations add to 100 s.
    assert 100.0 <= r.makespan_s <= 100.0 + 7 * CREATE_S + 1e-6
    s = r.policy_summary
    assert s["optimal"] == 1.0
    assert s["solver_makespan_s"] == pytest.approx(100.2)  # ceil((0.12 + 100) / 0.1) ticks
    assert s["solver_bound_s"] == pytest.approx(s["solver_makespan_s"])


def test_fourteen_1g_jobs_on_two_gpus(cp):
    jobs = batch(job("a", 50, 5, count=14, speedup={1: 1.0}))
    r = simulate(jobs, A100, gpus=2, policy=optimal(jobs, time_limit_s=5))
    assert r.jobs_completed == 14
    assert 50.0 <= r.makespan_s <= 50.0 + 7 * CREATE_S + 1e-6
    assert r.policy_summary["optimal"] == 1.0


def test_jobs_needing_the_whole_memory_run_one_after_the_other(cp):
    # 45 GiB exceeds every 40 GB instance: each needs 7g.80gb, so they cannot overlap.
    jobs = batch(job("m", 100, 45, count=2))
    r = simulate(jobs, A100, policy=optimal(jobs, time_limit_s=5))
    assert r.jobs_completed == 2
    # The second reuses the idle 7g instance: one create in all.
    assert 200.0 <= r.makespan_s <= 200.0 + CREATE_S + 1e-6
    assert r.policy_summary["solver_makespan_s"] == pytest.approx(2 * 100.2)


def test_picks_the_profile_that_minimises_the_makespan(cp):
    # One perfectly-scaling job alone: the 7g instance (100 s) beats any smaller one.
    jobs = batch(job("solo", 100, 5))
    r = simulate(jobs, A100, policy=optimal(jobs, time_limit_s=5))
    assert r.makespan_s == pytest.approx(100.0 + CREATE_S)
    assert r.timeline.jobs[0].compute_slices == 7


def test_late_arrival_starts_no_earlier_than_it_arrives(cp):
    jobs = batch(job("early", 100, 45), job("late", 10, 45, arrival_s=30))
    r = simulate(jobs, A100, policy=optimal(jobs, time_limit_s=5))
    assert r.jobs_completed == 2
    late = next(j for j in r.jobs if j.name == "late")
    assert late.finished_s is not None and late.finished_s >= 30 + 10
    assert r.makespan_s == pytest.approx(110.0 + CREATE_S, abs=0.5)


def test_unplaceable_job_is_rejected_with_a_reason(cp):
    jobs = batch(job("ok", 10, 5), job("huge", 10, 100))
    r = simulate(jobs, A100, policy=optimal(jobs, time_limit_s=5))
    by_name = {j.name: j for j in r.jobs}
    assert by_name["ok"].state == "done"
    assert by_name["huge"].state == "failed" and "exceeds the largest instance" in by_name["huge"].failure


# ---- against the baselines and the bound ------------------------------------------------------
def test_small_mix_beats_greedy_and_respects_the_lower_bound(cp):
    jobs = small_mix()
    r = simulate(jobs, A100, policy=create_policy("optimal", jobs=jobs, time_limit_s=5))
    greedy = simulate(jobs, A100, policy="greedy")
    assert r.jobs_completed == len(jobs)
    assert r.oom_restarts == 0 and r.jobs_failed == 0
    assert r.makespan_s <= greedy.makespan_s + 1e-6
    assert r.makespan_s >= lower_bound_s(jobs, [A100]) - 1e-6
    s = r.policy_summary
    assert s["solver_bound_s"] <= s["solver_makespan_s"]
    # The replay follows the plan closely (create/destroy latencies only).
    assert r.makespan_s <= s["solver_makespan_s"] + len(jobs) * (CREATE_S + DESTROY_S)


def test_tiny_time_limit_still_gives_a_feasible_plan(cp):
    jobs = small_mix()
    r = simulate(jobs, A100, policy=optimal(jobs, time_limit_s=0.01, workers=1))
    assert r.jobs_completed == len(jobs)
    assert r.policy_summary["solver_makespan_s"] <= r.policy_summary["solver_hint_makespan_s"]


def test_replay_survives_runtime_jitter(cp):
    from migsched.backends.sim.costs import SimCosts

    jobs = small_mix()
    r = simulate(jobs, A100, policy=optimal(jobs, time_limit_s=2), costs=SimCosts(runtime_jitter=0.3), seed=5)
    assert r.jobs_completed == len(jobs) and r.oom_restarts == 0


def test_plan_keeps_every_mig_rule_at_every_moment(cp):
    from migsched.policies.optimal_model import solve

    jobs = small_mix() + batch(job("more", 40, 9, count=4, speedup={1: 0.5, 7: 1.0}, arrival_s=20))
    plan = solve(jobs, [A100, A100], time_limit_s=3, workers=2, seed=0, tick_s=0.1, create_s=CREATE_S)
    assert len(plan.jobs) == len(jobs)
    by_id = {j.job_id: j for j in jobs}
    for p in plan.jobs.values():
        assert p.start_tick * 0.1 >= by_id[p.job_id].spec.arrival_s - 1e-9
        assert p.option.profile.memory_mib >= by_id[p.job_id].truth.peak_gib * 1024
        assert p.end_tick <= plan.makespan_ticks
    for g in (0, 1):
        mine = [p for p in plan.jobs.values() if p.option.gpu == g]
        for t in sorted({p.start_tick for p in mine}):
            live = [p for p in mine if p.start_tick <= t < p.end_tick]
            assert Layout.of(A100, [(p.option.profile, p.option.start) for p in live]).is_valid()


@pytest.mark.skipif(not has_ortools, reason="needs the optimal extra")
def test_summary_keys():
    jobs = small_mix()
    pol = optimal(jobs, time_limit_s=2)
    assert pol.summary() == {}
    simulate(jobs, A100, policy=pol)
    assert {"solver_makespan_s", "solver_bound_s", "optimal"} <= set(pol.summary())
