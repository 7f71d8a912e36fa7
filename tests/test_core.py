"""The scheduler core with the simulator: OOM restarts and failures, jobs that fit nowhere, online
arrivals, several GPUs, illegal actions and determinism."""

from __future__ import annotations

import pytest

from migsched.backends.sim import SimCosts
from migsched.core.events import CreateInstance, DestroyInstance, Kill, Launch, Reject
from migsched.errors import SchedulingError
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.policies.base import Policy
from migsched.run import simulate

A40 = get_model("A100-40GB")
A80 = get_model("A100-80GB")


def jobs(*entries):
    return load_jobs_dict({"version": 1, "jobs": list(entries)}, require_model=True)


def job(name, runtime_s=10.0, *, peak_gib=4.0, hint_gib=None, arrival_s=0.0, count=1, memory="constant",
        speedup=None, startup_s=0.0):
    m = {"runtime_s": runtime_s, "peak_gib": peak_gib, "memory": memory, "startup_s": startup_s,
         "speedup": speedup or {1: 1.0}}
    e = {"name": name, "class": "scientific", "count": count, "arrival_s": arrival_s, "model": m}
    if hint_gib is not None:
        e["hint_gib"] = hint_gib
    return e


def by_id(result):
    return {j.job_id: j for j in result.jobs}


# ---- out of memory: restart on a larger instance ---------------------------------------------
# The job believes it needs 4 GiB but grows to 8 GiB: it OOMs on a 1g.5gb (4.75 GiB).
UNDER_HINTED = job("grow", 20, memory="linear", peak_gib=8, hint_gib=4)
FRIENDS = job("ok", 10, peak_gib=3, hint_gib=3, count=2)


@pytest.mark.parametrize(("policy", "options"), [
    ("greedy", {}),
    ("static", {"layout": "1g.5gb@0,1g.5gb@1,1g.5gb@2,1g.5gb@3,3g.20gb@4"}),
])
def test_oom_restart_on_a_larger_profile(policy, options):
    r = simulate(jobs(UNDER_HINTED, FRIENDS), A40, policy=policy, **options)
    grow = by_id(r)["grow"]
    assert grow.state == "done" and grow.outcomes == ("oom", "ok")
    assert r.jobs_completed == 3 and r.oom_restarts == 1 and r.wasted_gpu_s > 0
    runs = [s for s in r.timeline.jobs if s.label == "grow"]
    assert runs[0].size == 1 and runs[0].outcome == "oom"
    assert runs[1].size > runs[0].size and runs[1].outcome == "ok"
    # the first run died where the curve crossed 4.75 GiB: 4864/8192 of the 20 s of work
    assert runs[0].t1_s - runs[0].t0_s == pytest.approx(20 * 4864 / 8192)


def test_greedy_oom_walks_up_until_it_fits():
    # peak 25 GiB, hint 4: 1g.5gb -> 1g.10gb -> 3g.20gb (19.5 GiB) -> 7g.40gb.
    r = simulate(jobs(job("big", 10, memory="linear", peak_gib=25, hint_gib=4)), A40, policy="greedy")
    big = by_id(r)["big"]
    assert big.state == "done" and big.outcomes == ("oom", "oom", "oom", "ok")
    assert r.oom_restarts == 3
    sizes = [s.size for s in r.timeline.jobs]
    assert sizes == [1, 2, 4, 8]


@pytest.mark.parametrize(("policy", "options"), [
    ("greedy", {}), ("serial", {}), ("static", {"layout": "7g.40gb@0"}),
])
def test_oom_on_the_largest_instance_fails_and_the_rest_completes(policy, options):
    r = simulate(jobs(job("huge", 10, peak_gib=45, hint_gib=30), job("small", 10, peak_gib=3, hint_gib=3, count=2)),
                 A40, policy=policy, **options)
    huge = by_id(r)["huge"]
    assert huge.state == "failed" and "out of memory" in huge.failure and "largest" in huge.failure
    assert huge.outcomes == ("oom",)
    assert r.jobs_completed == 2 and r.jobs_failed == 1
    assert r.oom_restarts == 0 and r.wasted_gpu_s == 0  # instant OOM: constant 45 GiB from the start


@pytest.mark.parametrize(("policy", "options"), [
    ("greedy", {}), ("greedy", {"backfill": True}), ("serial", {}), ("static", {}),
    ("static", {"layout": "3g.20gb@0,3g.20gb@4"}),
])
def test_job_that_fits_nowhere_fails_with_a_clear_reason(policy, options):
    r = simulate(jobs(job("a", 10, hint_gib=3), job("whale", 10, peak_gib=60, hint_gib=60), job("b", 10, hint_gib=3)),
                 A40, policy=policy, **options)
    whale = by_id(r)["whale"]
    assert whale.state == "failed" and whale.attempts == 0
    assert "60.0 GiB" in whale.failure
    assert r.jobs_completed == 2


def test_a_policy_that_places_nothing_cannot_hang_the_run():
    class Idle(Policy):
        name = "idle"

        def schedule(self, view):
            return []

    r = simulate(jobs(job("a"), job("b", arrival_s=5)), A40, policy=Idle())
    assert [j.state for j in r.jobs] == ["failed", "failed"]
    assert all("could not place" in j.failure for j in r.jobs)


# ---- online arrivals -------------------------------------------------------------------------
@pytest.mark.parametrize(("policy", "options"), [
    ("serial", {}), ("greedy", {}),
    # static chooses its layout from the jobs queued at setup (here only 'a'), so give it one that
    # holds the later 15 GiB job too
    ("static", {"layout": "1g.5gb@0,1g.5gb@1,1g.5gb@2,1g.5gb@3,3g.20gb@4"}),
])
def test_online_arrivals(policy, options):
    batch = jobs(job("a", 30, hint_gib=3), job("b", 10, hint_gib=3, arrival_s=5),
                 job("c", 10, hint_gib=15, arrival_s=12.5), job("late", 5, hint_gib=3, arrival_s=200))
    r = simulate(batch, A40, policy=policy, **options)
    arrival = {j.job_id: j.spec.arrival_s for j in batch}
    assert r.jobs_completed == 4
    for span in r.timeline.jobs:
        assert span.t0_s >= arrival[span.label]
    assert r.makespan_s >= 200 + 5
    assert by_id(r)["late"].jct_s >= 5


def test_static_auto_layout_rejects_a_later_job_it_cannot_hold():
    # the layout is chosen from the first arrivals' hints: a later, larger job fails with the reason
    r = simulate(jobs(job("a", 30, hint_gib=3), job("c", 10, hint_gib=15, arrival_s=12.5)), A40, policy="static")
    c = by_id(r)["c"]
    assert c.state == "failed" and "15.0 GiB" in c.failure and "largest instance of layout" in c.failure
    assert by_id(r)["a"].state == "done"


# ---- several GPUs ----------------------------------------------------------------------------
def test_serial_spreads_jobs_over_gpus_and_every_gpu_pays_idle():
    # two 10 s jobs on three GPUs: both start at 0 on GPUs 0 and 1; GPU 2 stays idle.
    # makespan 10; GPU 0 and 1: 55 * 10 + 100 * 10 = 1550 J; GPU 2: 55 * 10 = 550 J.
    r = simulate(jobs(job("a", count=2)), A40, gpus=3, policy="serial")
    assert sorted((s.gpu, s.t0_s) for s in r.timeline.jobs) == [(0, 0.0), (1, 0.0)]
    assert r.makespan_s == pytest.approx(10.0)
    assert r.energy_per_gpu_j == pytest.approx((1550.0, 1550.0, 550.0))
    assert r.energy_j == pytest.approx(3650.0)


@pytest.mark.parametrize("policy", ["greedy", "static"])
def test_mig_policies_use_every_gpu(policy):
    # four jobs needing a 7g instance each on two A100-80GB: two run at a time, one per GPU.
    r = simulate(jobs(job("w", 10, peak_gib=60, hint_gib=60, count=4)), A80, gpus=2, policy=policy)
    assert r.jobs_completed == 4
    assert {s.gpu for s in r.timeline.jobs} == {0, 1}
    assert len(r.energy_per_gpu_j) == 2
    for e in r.energy_per_gpu_j:
        assert e >= A80.idle_w * r.makespan_s
    assert r.makespan_s < 4 * 10  # not serialised on one GPU


# ---- illegal actions -------------------------------------------------------------------------
class Scripted(Policy):
    """Returns one fixed list of actions on its first schedule call, then nothing."""

    name = "scripted"

    def __init__(self, actions, mig=True):
        self.actions = list(actions)
        self.mig = mig

    @property
    def mig_enabled(self):  # type: ignore[override]
        return self.mig

    def schedule(self, view):
        out, self.actions = self.actions, []
        return out


ILLEGAL = [
    ("launch-on-busy", [CreateInstance(0, "1g.5gb", 0), Launch("a", 0, 0), Launch("b", 0, 0)], "busy"),
    ("destroy-busy", [CreateInstance(0, "1g.5gb", 0), Launch("a", 0, 0), DestroyInstance(0, 0)], "still runs"),
    ("create-overlapping", [CreateInstance(0, "1g.5gb", 0), CreateInstance(0, "2g.10gb", 0)], "overlap"),
    ("create-illegal-start", [CreateInstance(0, "3g.20gb", 2)], "cannot start"),
    ("create-unknown-profile", [CreateInstance(0, "5g.30gb", 0)], "5g.30gb"),
    ("launch-nowhere", [Launch("a", 0, 3)], "no GPU instance starts at memory slot 3"),
    ("launch-twice", [CreateInstance(0, "1g.5gb", 0), CreateInstance(0, "1g.5gb", 1), Launch("a", 0, 0),
                      Launch("a", 0, 1)], "not queued"),
    ("launch-unknown-job", [CreateInstance(0, "1g.5gb", 0), Launch("zzz", 0, 0)], "not queued"),
    ("kill-not-running", [Kill("a")], "not running"),
    ("reject-running", [CreateInstance(0, "1g.5gb", 0), Launch("a", 0, 0), Reject("a", "no")], "not queued"),
    ("destroy-missing", [DestroyInstance(0, 4)], "no GPU instance starts"),
]


@pytest.mark.parametrize(("actions", "words"), [c[1:] for c in ILLEGAL], ids=[c[0] for c in ILLEGAL])
def test_core_rejects_illegal_actions(actions, words):
    with pytest.raises(SchedulingError, match=words):
        simulate(jobs(job("a"), job("b")), A40, policy=Scripted(actions))


def test_core_rejects_instance_changes_with_mig_off():
    with pytest.raises(SchedulingError, match="MIG off"):
        simulate(jobs(job("a")), A40, policy=Scripted([CreateInstance(0, "1g.5gb", 0)], mig=False))


def test_a_legal_script_runs():
    # the counterpart of the illegal scripts: the same policy does run a correct script
    r = simulate(jobs(job("a"), job("b")), A40,
                 policy=Scripted([CreateInstance(0, "1g.5gb", 0), CreateInstance(0, "1g.5gb", 1),
                                  Launch("a", 0, 0), Launch("b", 0, 1)]))
    assert r.jobs_completed == 2 and r.makespan_s == pytest.approx(0.24 + 10)


# ---- determinism -----------------------------------------------------------------------------
def _mixed():
    return jobs(job("a", 30, hint_gib=3, count=3), job("b", 50, memory="linear", peak_gib=12, hint_gib=4, count=2),
                job("c", 20, hint_gib=15, arrival_s=7), job("d", 40, speedup={7: 1.0}, hint_gib=8, count=2))


def _fingerprint(r):
    return (r.makespan_s, r.energy_j, r.energy_per_gpu_j, r.oom_restarts, r.wasted_gpu_s,
            [(j.job_id, j.finished_s, j.outcomes) for j in r.jobs],
            [(s.gpu, s.start, s.label, s.t0_s, s.t1_s, s.outcome) for s in r.timeline.jobs],
            r.timeline.reconfigurations)


@pytest.mark.parametrize("policy", ["serial", "greedy", "static"])
def test_same_seed_same_result(policy):
    costs = SimCosts(runtime_jitter=0.2)
    one = simulate(_mixed(), A40, gpus=2, policy=policy, seed=7, costs=costs)
    two = simulate(_mixed(), A40, gpus=2, policy=policy, seed=7, costs=costs)
    assert _fingerprint(one) == _fingerprint(two)


def test_jitter_with_different_seeds_differs():
    costs = SimCosts(runtime_jitter=0.2)
    a = simulate(_mixed(), A40, policy="greedy", seed=1, costs=costs)
    b = simulate(_mixed(), A40, policy="greedy", seed=2, costs=costs)
    assert a.makespan_s != b.makespan_s
    assert _fingerprint(a) != _fingerprint(b)


def test_without_jitter_the_seed_does_not_matter():
    a = simulate(_mixed(), A40, policy="greedy", seed=1)
    b = simulate(_mixed(), A40, policy="greedy", seed=2)
    assert _fingerprint(a) == _fingerprint(b)


def test_each_gpu_view_names_the_jobs_placed_on_it_while_they_are_placed():
    """`GpuView.jobs` (start -> job id) is the core's: set when a launch is accepted, cleared when
    the job leaves its instance, so a policy finds what runs on a GPU without scanning every job."""
    seen: list[dict[int, str]] = []

    from migsched.policies.static import StaticPolicy

    class WatchStatic(StaticPolicy):
        def schedule(self, view):
            seen.append(dict(view.gpus[0].jobs))
            return super().schedule(view)

    r = simulate(jobs(job("a", 10.0), job("b", 30.0)), A40, policy=WatchStatic(layout="3g.20gb@0,3g.20gb@4"),
                 record_power=False)
    assert r.jobs_completed == 2
    assert {0: "a", 4: "b"} in seen or {4: "a", 0: "b"} in seen   # both placed at once
    assert any(len(s) == 1 for s in seen) and seen[-1] == {}    # "a" left first; none at the end
