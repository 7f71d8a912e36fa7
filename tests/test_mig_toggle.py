"""MIG on or off per GPU during a run (`SetMigMode`): the core's rules, the simulator's cost,
migm's rule (policies/migm/whole.py), and the view's indices after a change.

Figures (A100-40GB, SimCosts defaults): 108 SMs with MIG off, 98 on 7g; gi_create_s 0.12;
mig_mode_s 10; idle 55 W. A job with speedup {7: 1.0} scales as c/7 (alpha 1), so MIG off runs
it 108/98 faster: 1,080 s of 7g work take 980 s.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import Script, ScriptedBackend
from migsched.backends.emulated import EmulatedMig
from migsched.backends.sim import SimCosts
from migsched.core.events import CreateInstance, Launch, SetMigMode
from migsched.core.policy import Decision, Policy
from migsched.core.source import TraceSource
from migsched.core.state import ClusterView, GpuView
from migsched.errors import SchedulingError
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.jobs.model import JobClass, JobSpec
from migsched.partition.layout import Instance, Layout
from migsched.policies.registry import create_policy
from migsched.run import run, simulate

A40 = get_model("A100-40GB")
H100 = get_model("H100-80GB")
REL = 1e-9


def jobs(*entries):
    return load_jobs_dict({"version": 1, "jobs": list(entries)}, require_model=True)


def job(name, runtime_s, *, arrival_s=0.0, peak_gib=4.0, hint_gib=4.0, speedup=None):
    m = {"runtime_s": runtime_s, "peak_gib": peak_gib, "power_w": 100.0, "memory": "constant", "startup_s": 0.0}
    if speedup is not None:
        m["speedup"] = speedup
    return {"name": name, "class": "ml-train", "arrival_s": arrival_s, "hint_gib": hint_gib, "model": m}


def starts(r):
    return {j.job_id: j.runs[-1].launched_s for j in r.jobs}


# ---- migm's rule, golden ------------------------------------------------------------------------
def test_migm_runs_a_lone_compute_bound_job_on_the_whole_gpu():
    # One job, offline: the queue (1) fits the free GPUs (1), so its 7g instance becomes the whole
    # GPU: reset 10 s, then 1080 * 98/108 = 980 s. Energy: idle 55 W * 990 s + 100 W * 980 s.
    r = simulate(jobs(job("cb", 1080)), A40, policy="migm")
    assert r.makespan_s == pytest.approx(990.0, rel=REL)
    assert r.energy_j == pytest.approx(55 * 990 + 100 * 980, rel=REL)
    assert r.mig_mode_changes == 1 and r.policy_summary["whole_gpu"] == 1
    assert [a.profile for a in r.jobs[0].runs] == ["whole"]
    assert [(s.label, s.t0_s) for s in r.timeline.instances] == [("whole", 10.0)]
    from migsched.compare import mig_change_note
    assert mig_change_note(r) == ("migm: turned MIG on or off 1 time, to run 1 job on a whole GPU with MIG off "
                                  "(docs/migm.md step 10)")


def test_mig_off_false_keeps_the_7g_instance():
    # The same job with the rule off: create 0.12 s, then 1080 s on 7g.
    r = simulate(jobs(job("cb", 1080)), A40, policy="migm", mig_off=False)
    assert r.makespan_s == pytest.approx(1080.12, rel=REL)
    assert r.mig_mode_changes == 0 and [a.profile for a in r.jobs[0].runs] == ["7g.40gb"]


def test_the_reset_cost_is_the_simulators():
    r = simulate(jobs(job("cb", 1080)), A40, policy="migm", costs=SimCosts(mig_mode_s=2.0))
    assert r.makespan_s == pytest.approx(982.0, rel=REL)


def test_hopper_keeps_mig_on_since_7g_has_every_sm():
    r = simulate(jobs(job("cb", 1080)), H100, policy="migm")
    assert r.mig_mode_changes == 0 and r.jobs[0].runs[-1].profile.startswith("7g")


def test_online_one_gpu_keeps_mig_on_while_jobs_still_arrive():
    # While jobs may still arrive, one free GPU must be left over: with one GPU, never.
    # ("b", the last arrival, may then have it: nothing more comes.)
    r = simulate(jobs(job("a", 1080), job("b", 50, arrival_s=5000.0)), A40, policy="migm")
    assert next(j for j in r.jobs if j.job_id == "a").runs[-1].profile == "7g.40gb"


def test_gpus_are_turned_off_only_while_every_queued_job_has_one():
    # Three jobs on two GPUs: the queue (3) is longer than the free GPUs (2), so they share.
    three = simulate(jobs(*(job(f"j{i}", 1080) for i in range(3))), A40, gpus=2, policy="migm")
    assert three.policy_summary.get("whole_gpu", 0) < 3
    two = simulate(jobs(*(job(f"j{i}", 1080) for i in range(2))), A40, gpus=2, policy="migm")
    assert two.mig_mode_changes == 2 and two.makespan_s == pytest.approx(990.0, rel=REL)


def test_an_idle_mig_off_gpu_is_turned_on_again_when_jobs_must_share():
    # Two GPUs. "big" arrives alone at 0: queue 1 + one spare for arrivals <= 2 free GPUs, so it
    # runs on the whole GPU 0 (0..990 s). At 100 s four 3g-sized jobs arrive; GPU 1 holds two,
    # two wait. At 990 s GPU 0 is idle with MIG off and the queue (2) is longer than the free
    # GPUs (1): MIG goes back on (10 s) and both start on instances of GPU 0 at 1000 s.
    js = jobs(job("big", 1080), *(job(f"s{i}", 2000, arrival_s=100.0, hint_gib=15.0, peak_gib=15.0)
                                 for i in range(4)))
    r = simulate(js, A40, gpus=2, policy="migm")
    late = sorted((j.runs[-1].launched_s, j.runs[-1].gpu, j.runs[-1].profile) for j in r.jobs if j.job_id != "big")[2:]
    assert r.mig_mode_changes == 2
    assert [(g, p != "whole") for _t, g, p in late] == [(0, True), (0, True)]
    assert all(1000.0 <= t < 1001.0 for t, _g, _p in late)


# ---- the core's rules -----------------------------------------------------------------------------
class Scripted(Policy):
    """Returns the given action lists, one per call, then nothing."""

    name = "scripted"
    toggles_mig = True

    def __init__(self, *steps):
        self.steps = list(steps)

    def decide(self, view, changes):
        return Decision(self.steps.pop(0) if self.steps else [])


def test_the_core_refuses_a_change_the_backend_cannot_make():
    fake = ScriptedBackend([A40], Script())  # Capabilities.mig_toggle is False by default
    spec = JobSpec("a", "a", JobClass.SCIENTIFIC, hint_gib=4.0, argv=("true",))
    with pytest.raises(SchedulingError, match="does not change MIG modes"):
        run(TraceSource([spec]), Scripted([SetMigMode(0, False)]), fake)


def test_the_core_refuses_a_change_from_a_policy_that_does_not_declare_it():
    class Quiet(Scripted):
        toggles_mig = False
    with pytest.raises(SchedulingError, match="does not change MIG modes"):
        simulate(jobs(job("a", 10)), A40, policy=Quiet([SetMigMode(0, False)]))


@pytest.mark.parametrize("steps, match", [
    ([[CreateInstance(0, "1g.5gb", 0), SetMigMode(0, False)]], "has GPU instances"),
    ([[SetMigMode(0, True)]], "it is on already"),
    ([[SetMigMode(0, False), SetMigMode(0, True)]], "already under way"),
    ([[SetMigMode(3, False)]], "no GPU 3"),
])
def test_the_core_refuses_a_change_that_breaks_a_rule(steps, match):
    with pytest.raises(SchedulingError, match=match):
        simulate(jobs(job("a", 10)), A40, policy=Scripted(*steps))


def test_a_change_is_refused_while_a_job_runs_on_the_gpu():
    steps = [[SetMigMode(0, False), Launch("a", 0, 0)], [SetMigMode(0, True)]]
    with pytest.raises(SchedulingError, match="a job runs on it"):
        simulate(jobs(job("a", 10)), A40, policy=Scripted(*steps))


def test_a_failed_change_requeues_what_waited_for_it_and_migm_stops_asking(monkeypatch):
    monkeypatch.setattr(EmulatedMig, "set_mode", lambda self, gpu, enabled, busy: "refused by the driver")
    pol = create_policy("migm")
    r = simulate(jobs(job("cb", 1080)), A40, policy=pol)
    assert r.jobs[0].state == "done" and r.jobs[0].outcomes == ("launch-failed", "ok")
    assert r.jobs[0].runs[-1].profile == "7g.40gb" and pol._no_toggle == {0}
    assert r.makespan_s == pytest.approx(1080.12, rel=REL)


# ---- the view's indices after changes (property) -------------------------------------------------
OPS = st.lists(st.tuples(st.sampled_from(["create", "destroy", "off", "on"]), st.integers(0, 2),
                         st.sampled_from(["1g.5gb", "2g.10gb", "3g.20gb", "7g.40gb"]), st.integers(0, 7)),
               max_size=25)


def _fresh(view: ClusterView) -> ClusterView:
    gpus = [GpuView(g.index, g.model, g.mig, g.layout) for g in view.gpus]
    return ClusterView(0.0, gpus, [], {}, {})


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_the_fit_index_and_idle_room_follow_mig_changes(ops):
    view = _fresh(ClusterView(0.0, [GpuView(i, A40, True, Layout.empty(A40)) for i in range(3)], [], {}, {}))
    probes = [A40.profile(n) for n in ("1g.5gb", "3g.20gb", "7g.40gb")]
    for p in probes:
        view.lowest_fit(p)  # heaps exist before the changes, as in a run
    for op, g, name, start in ops:
        gpu = view.gpus[g]
        if op == "create" and gpu.mig:
            prof = A40.profile(name)
            if gpu.layout.can_place(prof, start):
                view.set_layout(g, gpu.layout.with_instance(prof, start))
        elif op == "destroy" and gpu.mig and gpu.layout.instances:
            view.set_layout(g, gpu.layout.release(gpu.layout.instances[0].start))
        elif op == "off" and gpu.mig and not gpu.layout.instances:
            view.set_mig(g, False)
        elif op == "on" and not gpu.mig:
            view.set_mig(g, True)
        ref = _fresh(view)
        assert view.idle_room() == ref.idle_room()
        assert view.room_anywhere() == ref.room_anywhere()
        assert [view.creatable(i) for i in range(3)] == [ref.creatable(i) for i in range(3)]
        assert {k: set(v) for k, v in view.groups.items()} == {k: set(v) for k, v in ref.groups.items()}
        assert set(view.idle_groups) == set(ref.idle_groups)
        for p in probes:
            assert view.lowest_fit(p) == ref.lowest_fit(p)
            assert view.creatable_anywhere(p.name) == ref.creatable_anywhere(p.name)


def test_a_mig_off_gpu_is_one_idle_whole_gpu_in_the_view():
    view = ClusterView(0.0, [GpuView(0, A40, True, Layout.empty(A40))], [], {}, {})
    view.set_mig(0, False)
    g = view.gpus[0]
    assert not g.mig and g.layout.instances == (Instance(A40.whole_gpu, 0),)
    assert view.creatable(0) == frozenset() and view.idle_room() == (0, 0) and not view.room_anywhere()
    view.set_mig(0, True)
    assert g.mig and g.layout.instances == () and view.idle_room() == (7, 8)


# ---- emulated hardware ----------------------------------------------------------------------------
def test_emulated_mig_refuses_what_nvml_refuses():
    hw = EmulatedMig([A40, A40], True, [[("1g.5gb", 0)], []], "EMU")
    assert "GPU instances" in hw.set_mode(0, False, busy=False)
    assert "in use" in hw.set_mode(1, False, busy=True)
    assert hw.set_mode(1, False, busy=False) == "" and hw.mig_off() == [1]
    assert hw.profile_at(1, 0) == A40.whole_gpu and hw.profile_at(1, 2) is None
    assert "MIG is off" in hw.create(1, "1g.5gb", 0)[1]
    assert [g.mig_enabled for g in hw.gpu_infos()] == [True, False]
    resumed = EmulatedMig([A40, A40], True, [[], []], "EMU", mig_off=[1])
    assert [g.mig_enabled for g in resumed.gpu_infos()] == [True, False]


# ---- what the review of round 9 found (docs/evaluation.md round 9) ----------------------------------
def _core_with_change(enabled):
    from migsched.core.backend import GpuInfo
    from migsched.core.scheduler import SchedulerCore
    pol = Scripted()
    core = SchedulerCore(pol, [GpuInfo(0, A40, "u0", not enabled), GpuInfo(1, A40, "u1", True)], mig_toggle=True)
    from migsched.core.apply import apply_action
    apply_action(core, SetMigMode(0, enabled))
    return core


@pytest.mark.parametrize("enabled", [False, True])
def test_a_lost_gpu_stays_fenced_when_its_mig_change_fails_afterwards(enabled):
    from migsched.core.events import ActionFailed, GpuLost
    core = _core_with_change(enabled)
    core.handle([GpuLost(1.0, 0, "node gone")], 1.0)
    core.handle([ActionFailed(1.0, SetMigMode(0, enabled), "agent gone")], 1.0)  # late: stale
    g = core.view.gpus[0]
    assert all(i.busy for i in g.layout.instances) and core.view.creatable(0) == frozenset()
    assert not core.in_flight


def test_a_gpu_that_joins_keeps_the_run_able_to_change_mig_modes():
    from migsched.core.backend import GpuInfo
    from migsched.core.events import GpuAdded
    from migsched.core.scheduler import SchedulerCore
    core = SchedulerCore(Scripted(), [GpuInfo(0, A40, "u0", True)], mig_toggle=True)
    core.handle([], 0.0)
    core.handle([GpuAdded(1.0, GpuInfo(1, A40, "u1", False))], 1.0)
    assert core.view.mig_toggle
    g = core.view.gpus[1]
    assert not g.mig and not any(i.busy for i in g.layout.instances)  # adopted as a whole GPU, not fenced


def test_a_mig_off_gpu_that_cannot_be_turned_on_still_runs_queued_jobs_whole(monkeypatch):
    # As in the back-on test above, but turning MIG on again fails: s2 and s3 wait no longer
    # than it takes; they run one after the other on GPU 0 with MIG off, and none fails.
    orig = EmulatedMig.set_mode
    monkeypatch.setattr(EmulatedMig, "set_mode", lambda self, gpu, enabled, busy:
                        "in use by another client" if enabled else orig(self, gpu, enabled, busy))
    js = jobs(job("big", 1080), *(job(f"s{i}", 2000, arrival_s=100.0, hint_gib=15.0, peak_gib=15.0)
                                 for i in range(4)))
    r = simulate(js, A40, gpus=2, policy="migm")
    assert all(j.state == "done" for j in r.jobs)
    late = sorted((j.runs[-1].launched_s, j.runs[-1].gpu, j.runs[-1].profile) for j in r.jobs if j.job_id != "big")[2:]
    assert [(g, p) for _t, g, p in late] == [(0, "whole"), (0, "whole")]
    assert late[0][0] == pytest.approx(990.0)
    # the launch planned on the instance that was never made failed in the backend: at most once each
    assert all(j.outcomes.count("launch-failed") <= 1 for j in r.jobs)


def test_idle_mig_off_gpus_are_turned_on_one_at_a_time():
    # A long queue and two idle MIG-off GPUs: while an empty MIG GPU is left for the queue, none
    # is turned on; without one, exactly one (each change pays a reset).
    from migsched.core.state import JobView
    pol = create_policy("migm")
    pol.model = A40
    pol.sizing = None
    queue = [JobView(spec=JobSpec(f"q{i}", f"q{i}", JobClass.SCIENTIFIC, hint_gib=4.0)) for i in range(5)]
    gpus = [GpuView(i, A40, True, Layout.empty(A40)) for i in range(3)]
    view = ClusterView(0.0, gpus, queue, {}, {}, more_arrivals=False, mig_toggle=True)
    view.set_mig(0, False)
    view.set_mig(1, False)
    assert pol._whole_back_on(view) == []  # GPU 2 is empty and MIG on
    view.set_layout(2, Layout.empty(A40).with_instance(A40.profile("1g.5gb"), 0, busy=True))
    assert pol._whole_back_on(view) == [SetMigMode(0, True)]


def test_a_gpu_holding_only_idle_instances_counts_as_free_and_is_cleared_for_a_whole_job():
    # "a" runs alone while "b" is still to come (no spare GPU: it keeps 7g), ends at 50 s. "b"
    # arrives at 100 s, the last job: the GPU holds only a's idle 7g instance, so that goes
    # (0.11 s), MIG goes off (10 s) and b runs whole: 1080 * 98/108 = 980 s, ending at 1090.11.
    r = simulate(jobs(job("a", 50), job("b", 1080, arrival_s=100.0)), A40, policy="migm")
    b = next(j for j in r.jobs if j.job_id == "b").runs[-1]
    assert b.profile == "whole" and b.launched_s == pytest.approx(110.11, rel=REL)
    assert r.makespan_s == pytest.approx(1090.11, rel=REL)


def test_a_destroy_that_fails_before_a_turn_off_leaves_the_instance_in_the_view(monkeypatch):
    # As above, but the destroy of a's idle 7g fails: the turn-off behind it fails too (the
    # instance is still there), b's launch on the whole GPU with it, and the view gets the
    # instance back. migm asks that GPU no more; b reuses the 7g instance.
    orig = EmulatedMig.destroy
    calls = []

    def flaky(self, gpu, start, busy):
        calls.append(start)
        return "in use" if len(calls) == 1 else orig(self, gpu, start, busy)
    monkeypatch.setattr(EmulatedMig, "destroy", flaky)
    r = simulate(jobs(job("a", 50), job("b", 1080, arrival_s=100.0)), A40, policy="migm")
    b = next(j for j in r.jobs if j.job_id == "b")
    assert b.state == "done" and b.outcomes == ("launch-failed", "ok") and b.runs[-1].profile == "7g.40gb"
    assert r.mig_mode_changes == 1 and r.failed_actions == 3  # destroy, turn-off, launch


def test_a_job_known_to_be_short_is_not_worth_a_reset():
    # "s-001" (30 s, alone, with "s-002" still to come) keeps 7g and teaches its family's run
    # time. "s-002", the last job, finds the GPU holding only the idle 7g: 30 s at a 8 % saving
    # is not worth a 10-s reset, so it reuses the 7g. A long family ("l", 1080 s) is.
    short = simulate(jobs(job("s-001", 30), job("s-002", 30, arrival_s=100.0)), A40, policy="migm")
    assert [j.runs[-1].profile for j in short.jobs] == ["7g.40gb", "7g.40gb"] and short.mig_mode_changes == 0
    long = simulate(jobs(job("l-001", 1080), job("l-002", 1080, arrival_s=2000.0)), A40, policy="migm")
    assert [j.runs[-1].profile for j in long.jobs] == ["7g.40gb", "whole"]
