"""`migm` gives a job a larger instance than the queue leaves spare when the time it saves the job
outweighs what it withholds from the jobs queued behind it (policies/migm/choice.py,
`_contested_upgrade`; docs/migm.md step 4).

Golden run (A100-40GB, SimCosts defaults; tail restarts off). "big-000" (30 GiB: 7g.40gb, 100 s,
linear) runs alone from 0.12 s. "ml-000" (8 GiB: tight 1g.10gb, 700 s on 7g, linear) and six
20-s flat scientific jobs (3 GiB: 1g.5gb) queue behind it; "late-000" arrives at 5,000 s, so jobs
still arrive. At big-000's end (100.12 s) the queue wants 7 slices of 7: none is spare. ml-000
heads the queue; its family is unknown, so its 1-slice time is the learned mean, big's:
T1 = 100 x 7^0.3 = 179.3 s (family "big", no class: DEFAULT_ALPHA). It scales by the ml-train
prior alpha 0.9: T(c) = T1 c^-0.9. Six others wait on a 7-slice cluster, so taking c' slices
instead of 1 costs share_cost x (c' - 1) x T(c') x 6/7 and saves T(1) - T(c'):

    c'   T(c')   saves   cost at 0.5   net      cost at 1.0   net
    2    96.1    83.2    41.2          42.0     82.3          0.9
    3    66.7    112.6   57.2          55.4     114.3         -1.8
    4    51.5    127.8   66.2          61.6     132.4         -4.6
    7    31.1    148.2   80.0          68.2     160.0         -11.8

At 0.5 it reuses big's idle 7g at once (700 s) and the six wait for it; at 1.0 it takes a 2g
(2,450 s) beside the six 1g; with the rule off it takes its tight 1g.10gb (4,900 s).
"""

from __future__ import annotations

import pytest

from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.run import simulate

A40 = get_model("A100-40GB")
FLAT = {"1": 1.0, "7": 1.0}
LINEAR = {"1": 1 / 7, "2": 2 / 7, "3": 3 / 7, "4": 4 / 7, "7": 1.0}


def _job(name, runtime_s, arrival_s, speedup, hint_gib, cls="ml-train"):
    m = {"runtime_s": runtime_s, "peak_gib": hint_gib, "power_w": 100.0, "memory": "constant",
         "startup_s": 0.0, "speedup": speedup}
    return {"name": name, "class": cls, "hint_gib": hint_gib, "arrival_s": arrival_s, "model": m}


def _run(late: bool = True, **opts):
    js = [_job("big-000", 100, 0.0, LINEAR, 30.0), _job("ml-000", 700, 1.0, LINEAR, 8.0)]
    js += [_job(f"s{i}-000", 20, 2.0 + i, FLAT, 3.0, "scientific") for i in range(6)]
    if late:
        js.append(_job("late-000", 20, 5000.0, FLAT, 3.0, "scientific"))
    r = simulate(load_jobs_dict({"version": 1, "jobs": js}, require_model=True), A40, policy="migm",
                 tail_restart=False, **opts)
    return {j.job_id: j.runs for j in r.jobs}


@pytest.mark.parametrize("opts, profile, run_s", [
    ({}, "7g.40gb", 700.0),                                # default share_cost 0.5: the net is best on 7g
    ({"share_cost": 1.0}, "2g.10gb", 2450.0),              # costlier slices: only 2g still pays
    ({"share_cost": 0.0}, "1g.10gb", 4900.0),              # off: the tight profile
    ({"share_min_gain": 0.9}, "1g.10gb", 4900.0),          # no size saves 90 % of its time
])
def test_the_head_takes_the_size_whose_saving_outweighs_the_queues_wait(opts, profile, run_s):
    (a,) = _run(**opts)["ml-000"]
    assert a.profile == profile
    assert a.ended_s - a.launched_s == pytest.approx(run_s)


def test_the_six_short_jobs_wait_for_the_instance_it_took():
    runs = _run()
    assert all(runs[f"s{i}-000"][0].launched_s > runs["ml-000"][0].ended_s for i in range(6))


def test_not_once_no_more_jobs_arrive():
    # Offline the batch's end is what counts, and LPT with tight profiles serves it (docs/migm.md).
    (a,) = _run(late=False)["ml-000"]
    assert a.profile != "7g.40gb" and a.ended_s - a.launched_s > 2000.0


def test_share_cost_and_gain_are_checked():
    from migsched.policies.registry import create_policy
    with pytest.raises(ValueError, match="share_cost"):
        create_policy("migm", share_cost=-1.0)
    with pytest.raises(ValueError, match="share_min_gain"):
        create_policy("migm", share_min_gain=1.0)


def test_compute_upgrade_off_keeps_the_tight_profile():
    (a,) = _run(compute_upgrade=False)["ml-000"]
    assert a.profile == "1g.10gb"


def test_not_under_repartition_min():
    # Two jobs leave an idle 4g.20gb and 3g.20gb at ~100 s; ml-000 and the six arrive at 200 s.
    # "head" fuses both into a 7g for it (neither is a queued job's tier); "repartition-min"
    # reuses the smallest idle instance that holds it, the 3g, and reshapes only when no queued
    # job fits an idle one.
    js = [_job("a-000", 100, 0.0, FLAT, 15.0), _job("b-000", 100, 0.0, FLAT, 15.0),
          _job("ml-000", 700, 200.0, LINEAR, 8.0)]
    js += [_job(f"s{i}-000", 20, 200.0, FLAT, 3.0, "scientific") for i in range(6)]
    js.append(_job("late-000", 20, 5000.0, FLAT, 3.0, "scientific"))
    jobs = load_jobs_dict({"version": 1, "jobs": js}, require_model=True)
    got = {}
    for scheme in ("head", "repartition-min"):
        r = simulate(jobs, A40, policy="migm", tail_restart=False, scheme=scheme)
        got[scheme] = next(j for j in r.jobs if j.job_id == "ml-000").runs[0].profile
    assert got == {"head": "7g.40gb", "repartition-min": "3g.20gb"}


def test_a_lone_queued_job_is_left_to_the_spare_rule():
    # spare_share 0: no spare upgrade while jobs arrive. With nobody queued behind it the cost
    # term is 0, so the rule would give it any larger profile; it is not applied.
    js = [_job("big-000", 100, 0.0, LINEAR, 30.0), _job("ml-000", 700, 1.0, LINEAR, 8.0),
          _job("late-000", 20, 5000.0, FLAT, 3.0, "scientific")]
    r = simulate(load_jobs_dict({"version": 1, "jobs": js}, require_model=True), A40, policy="migm",
                 tail_restart=False, spare_share=0.0, wait_for_more=False)
    (a,) = next(j for j in r.jobs if j.job_id == "ml-000").runs
    assert a.profile == "1g.10gb"


def test_idle_instances_queued_jobs_need_are_not_destroyed_for_it():
    # Seven 50-s jobs leave seven idle 1g.5gb at 50 s; an ml-infer job of a new family (prior
    # alpha 0.9, in truth flat) and six 20-s jobs arrive at 60 s. Fusing the seven 1g into a 7g
    # for it would make the six wait its 700 s run; they start at once on the idle 1g.
    js = [_job(f"w{i}-000", 50, 0.0, FLAT, 3.0, "scientific") for i in range(7)]
    js += [_job("infer-000", 700, 60.0, FLAT, 3.0, "ml-infer")]
    js += [_job(f"s{i}-000", 20, 60.0, FLAT, 3.0, "scientific") for i in range(6)]
    js += [_job("late-000", 20, 5000.0, FLAT, 3.0, "scientific")]
    r = simulate(load_jobs_dict({"version": 1, "jobs": js}, require_model=True), A40, policy="migm")
    by = {j.job_id: j for j in r.jobs}
    assert by["infer-000"].runs[0].profile == "1g.5gb"
    assert all(by[f"s{i}-000"].finished_s - 60.0 < 30.0 for i in range(6))
