"""`migm` leaves the only queued job waiting for a larger instance that frees soon enough
(policies/migm/wait.py).

Golden run (A100-40GB, SimCosts defaults: gi_create_s 0.12, gi_destroy_s 0.11; the tail
restart off, so that only this rule can move the job). At 0 "r-000" (speed flat in the slices,
reports progress, 1,000 s) and "jj-000" (linear in the slices: 70 s on 7g) share the GPU: r-000
on 4g.20gb at slots 0-3 until 1,000.12 s, jj-000 on 3g.20gb at slots 4-7 until 163.57 s, which
teaches the family "jj". "jj-001" (700 s on 7g) arrives alone at 950 s. The idle 3g would take
it 700 x 7/3 = 1,633 s; r-000's end in 50 s leaves the whole GPU, where 7g takes 700 s. So it
waits, and once r-000 ends the 3g and the 4g are destroyed (0.11 s each) and a 7g created
(0.12 s): it starts at 1,000.46 and ends at 1,700.46. Without the rule it starts at 950 on the
idle 3g and ends 1,633.3 s later.
"""

from __future__ import annotations

import pytest

from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.run import simulate

A40 = get_model("A100-40GB")
FLAT = {"1": 1.0, "7": 1.0}
LINEAR = {"1": 1 / 7, "2": 2 / 7, "3": 3 / 7, "4": 4 / 7, "7": 1.0}


def _job(name, runtime_s, arrival_s, speedup, progress=False):
    m = {"runtime_s": runtime_s, "peak_gib": 3.0, "power_w": 100.0, "memory": "constant",
         "startup_s": 0.0, "speedup": speedup}
    return {"name": name, "class": "ml-train", "hint_gib": 3.0, "arrival_s": arrival_s,
            "reports_progress": progress, "model": m}


def _run(**opts):
    js = [_job("r-000", 1000, 0.0, FLAT, True), _job("jj-000", 70, 0.0, LINEAR), _job("jj-001", 700, 950.0, LINEAR)]
    r = simulate(load_jobs_dict({"version": 1, "jobs": js}, require_model=True), A40, policy="migm",
                 tail_restart=False, **opts)
    return r, {j.job_id: j.runs for j in r.jobs}


def test_the_lone_job_waits_for_the_larger_instance_a_neighbour_frees():
    r, runs = _run()
    assert [(a.launched_s, a.profile) for a in runs["r-000"]] == [(pytest.approx(0.12), "4g.20gb")]
    assert runs["r-000"][0].ended_s == pytest.approx(1000.12)
    (a,) = runs["jj-001"]
    assert (a.launched_s, a.profile) == (pytest.approx(1000.46), "7g.40gb")
    assert a.ended_s == pytest.approx(a.launched_s + 700.0)
    assert r.policy_summary["waits"] >= 1


def test_without_the_rule_it_starts_at_once_on_the_smaller_instance():
    r, runs = _run(wait_for_more=False)
    (a,) = runs["jj-001"]
    assert (a.launched_s, a.profile) == (pytest.approx(950.0), "3g.20gb")
    assert a.ended_s == pytest.approx(950.0 + 700 * 7 / 3)
    assert "waits" not in r.policy_summary


def test_no_wait_when_the_neighbour_ends_too_late():
    # r-000 runs 3,000 s: its end is 2,050 s away, longer than jj-001 takes on the 3g (1,633 s).
    js = [_job("r-000", 3000, 0.0, FLAT, True), _job("jj-000", 70, 0.0, LINEAR), _job("jj-001", 700, 950.0, LINEAR)]
    r = simulate(load_jobs_dict({"version": 1, "jobs": js}, require_model=True), A40, policy="migm", tail_restart=False)
    (a,) = next(j for j in r.jobs if j.job_id == "jj-001").runs
    assert (a.launched_s, a.profile) == (pytest.approx(950.0), "3g.20gb")


def test_no_wait_with_another_job_queued():
    # Two arrive at 950: the first placed does not wait (the room r-000's end leaves can go to one
    # of them only): it starts on a 2g fissioned from the idle 3g (0.11 + 0.12 s). The second,
    # alone in the queue then, waits for r-000's 4g.
    js = [_job("r-000", 1000, 0.0, FLAT, True), _job("jj-000", 70, 0.0, LINEAR),
          _job("jj-001", 700, 950.0, LINEAR), _job("jj-002", 700, 950.0, LINEAR)]
    r = simulate(load_jobs_dict({"version": 1, "jobs": js}, require_model=True), A40, policy="migm", tail_restart=False)
    starts = sorted(j.runs[0].launched_s for j in r.jobs if j.job_id.startswith("jj-00") and j.job_id != "jj-000")
    assert starts == [pytest.approx(950.23), pytest.approx(1000.12)]


def test_a_wait_ends_at_its_deadline_when_the_neighbour_runs_on(monkeypatch):
    # r-000 runs 1,100 s, but its projection is made to say "10 s left" for ever. jj-000 ran
    # 163.33 s on 3g; with one size known its family scales by the ml-train prior (alpha 0.9),
    # so 7g would take 163.33 * (3/7)^0.9 and waiting pays off for at most 0.9 * 163.33 minus
    # that: jj-001 waits from 950 s until then (a wake-up: no event comes) and starts on the
    # idle 3g, not at r-000's end (1,100.12 s).
    from migsched.policies.migm import wait
    from migsched.policies.migm.restarts import PRIOR_ALPHA, Projection
    monkeypatch.setattr(wait, "project", lambda job, now_s, fam, times: Projection(10.0, 1000.0, now_s))
    js = [_job("r-000", 1100, 0.0, FLAT, True), _job("jj-000", 70, 0.0, LINEAR), _job("jj-001", 700, 950.0, LINEAR)]
    r = simulate(load_jobs_dict({"version": 1, "jobs": js}, require_model=True), A40, policy="migm", tail_restart=False)
    (a,) = next(j for j in r.jobs if j.job_id == "jj-001").runs
    t3 = 163.57333333333335 - 0.24
    deadline = 950 + 0.9 * t3 - t3 * (3 / 7) ** PRIOR_ALPHA["ml-train"]
    assert (a.launched_s, a.profile) == (pytest.approx(deadline), "3g.20gb")


def test_an_arrival_during_a_wait_gives_the_waiting_job_the_profile_it_declined():
    # The golden case plus a 20-s job arriving at 960 s, during jj-001's wait: jj-001 takes the
    # idle 3g it declined (not a 2g split off it, 2,450 s) and ends 10 s later than without the
    # rule; the newcomer waits for r-000's 4g.
    js = [_job("r-000", 1000, 0.0, FLAT, True), _job("jj-000", 70, 0.0, LINEAR), _job("jj-001", 700, 950.0, LINEAR),
          {**_job("s-000", 20, 960.0, FLAT), "class": "ml-infer"}]
    r = simulate(load_jobs_dict({"version": 1, "jobs": js}, require_model=True), A40, policy="migm", tail_restart=False)
    (a,) = next(j for j in r.jobs if j.job_id == "jj-001").runs
    assert (a.launched_s, a.profile) == (pytest.approx(960.0), "3g.20gb")
    assert a.ended_s == pytest.approx(960.0 + 700 * 7 / 3)


def test_a_waiting_job_does_not_turn_an_idle_mig_off_gpu_back_on():
    # Two GPUs: big-000 runs alone on GPU 0 with MIG off (0..~280 s), then GPU 0 idles off.
    # r-000 and jj-000 share GPU 1. jj-001 arrives at 950 and waits for r-000's end on GPU 1;
    # waiting is not being stuck, so no reset is asked for GPU 0 (only big-000's turn-off).
    js = [_job("big-000", 300, 0.0, LINEAR), _job("r-000", 1000, 10.0, FLAT, True),
          _job("jj-000", 70, 10.0, LINEAR), _job("jj-001", 700, 950.0, LINEAR)]
    r = simulate(load_jobs_dict({"version": 1, "jobs": js}, require_model=True), A40, gpus=2, policy="migm",
                 tail_restart=False)
    assert r.mig_mode_changes == 1 and r.policy_summary["waits"] >= 1


def test_a_job_restarted_or_moved_for_a_profile_does_not_wait():
    """A job the tail or blocked restart chose a profile for (`_target`) is placed on it: a wait
    would only give it the same profile later (held-out-style ML batch with checkpoints, tuning
    seed 55: a moved job waited 213 s, then took its 2g anyway). Here jj-001 is given the 3g as
    a restart's target before it arrives: it starts at once, where the golden run waits."""
    from migsched.policies.registry import create_policy
    js = [_job("r-000", 1000, 0.0, FLAT, True), _job("jj-000", 70, 0.0, LINEAR), _job("jj-001", 700, 950.0, LINEAR)]
    pol = create_policy("migm", tail_restart=False)
    pol._target["jj-001"] = A40.profile("3g.20gb")
    r = simulate(load_jobs_dict({"version": 1, "jobs": js}, require_model=True), A40, policy=pol)
    (a,) = next(j for j in r.jobs if j.job_id == "jj-001").runs
    assert (a.launched_s, a.profile) == (pytest.approx(950.0), "3g.20gb")
    assert "waits" not in r.policy_summary


def test_a_resumed_job_weighs_only_the_work_its_checkpoint_left():
    from migsched.core.state import JobView
    from migsched.policies.registry import create_policy
    pol = create_policy("migm")
    jobs = load_jobs_dict({"version": 1, "jobs": [_job("jj-000", 70, 0.0, LINEAR)]}, require_model=True)
    pol.times.finished(JobView(jobs[0].spec), "jj", 7, 70.0)  # 70 s on 7 slices
    view = JobView(jobs[0].spec)
    full = pol._one_slice_s(view)
    view.attempts.append(_saved(0.75))
    assert full > 70.0 and pol._one_slice_s(view) == pytest.approx(0.25 * full)


def _saved(progress: float):
    from migsched.core.state import Attempt
    return Attempt(gpu=0, start=0, profile="1g.5gb", memory_mib=4864, launched_s=0.0, ended_s=10.0,
                   outcome="killed:move", peak_mib=0.0, saved_progress=progress)
