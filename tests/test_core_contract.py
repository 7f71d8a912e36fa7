"""The scheduler core driven through a scripted fake backend: confirmations, failed actions,
discovery and adoption, mixed clusters, wake-ups, and what the backend learns of a job."""

from __future__ import annotations

import pytest

from fakes import Script, ScriptedBackend
from migsched.backends.sim import SimCosts
from migsched.core.backend import GpuInfo, InstanceInfo
from migsched.core.events import CreateInstance, DestroyInstance, Launch
from migsched.core.policy import Decision, Policy
from migsched.core.discovery import build_gpu_views
from migsched.core.scheduler import SchedulerCore
from migsched.core.source import SubmitQueue, TraceSource
from migsched.errors import SchedulingError
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.jobs.model import JobClass, JobSpec
from migsched.policies.registry import create_policy
from migsched.run import run, simulate

A40 = get_model("A100-40GB")
A80 = get_model("A100-80GB")


def specs(*entries):
    return [j.spec for j in load_jobs_dict({"version": 1, "jobs": list(entries)})]


def e(name, hint_gib=4.0, **kw):
    return {"name": name, "class": "scientific", "hint_gib": hint_gib, "command": f"run {name}", **kw}


def by_id(r):
    return {j.job_id: j for j in r.jobs}


def test_a_failed_create_requeues_the_job_and_the_view_forgets_the_instance():
    seen = []

    class Spy(type(create_policy("greedy"))):
        def decide(self, view, changes):
            seen.extend(changes.failed)
            return super().decide(view, changes)

    fake = ScriptedBackend([A40], Script(fail_creates=1))
    r = run(TraceSource(specs(e("a"))), Spy(), fake)
    # the create failed, and so did the launch that waited for it
    assert by_id(r)["a"].state == "done" and r.failed_actions == 2
    assert [type(f.action) for f in seen] == [CreateInstance, Launch] and "refused" in seen[0].reason
    creates = [a for a in fake.executed if isinstance(a, CreateInstance)]
    assert len(creates) == 2  # tried again after the failure
    launches = [a for a in fake.executed if isinstance(a, Launch)]
    assert [a.attempt for a in launches] == [1, 2]  # the failed placement counts as an attempt
    assert by_id(r)["a"].outcomes == ("launch-failed", "ok")


def test_a_failed_destroy_puts_the_instance_back():
    fake = ScriptedBackend([A40], Script(fail_destroys=1))
    policy = create_policy("greedy")
    core = SchedulerCore(policy, fake.open(_settings(policy)))
    fake.execute(core.handle([], 0.0))
    src = TraceSource(specs(e("a")))
    from migsched.run import drive
    drive(core, fake, src)
    g = core.view.gpus[0]
    # greedy destroys the idle instance after the job; the destroy failed, the instance came back
    # into the view, and greedy destroyed it again (without the undo the hardware would keep it)
    destroys = [a for a in fake.executed if isinstance(a, DestroyInstance)]
    assert len(destroys) == 2 and destroys[0] == destroys[1]
    assert g.layout.instances == () and not g.destroying and core.counters.failed_actions == 1


def test_a_permanent_launch_failure_fails_the_job_with_the_reason_and_the_rest_runs():
    fake = ScriptedBackend([A40], Script(fail_launch={"bad": ("program not found: 'nosuch'", True),
                                                     "flaky": ("busy, try again", False)}))
    r = run(TraceSource(specs(e("bad"), e("flaky"), e("good"))), create_policy("greedy"), fake)
    res = by_id(r)
    assert res["bad"].state == "failed" and res["bad"].failure == "program not found: 'nosuch'"
    assert res["flaky"].state == "done" and res["good"].state == "done"
    assert res["flaky"].outcomes == ("launch-failed", "ok")


def test_the_backend_learns_a_job_only_from_its_launch():
    fake = ScriptedBackend([A40])
    run(TraceSource(specs(e("a", env={"X": "1"}, cwd="/tmp"))), create_policy("greedy"), fake)
    launch = next(a for a in fake.executed if isinstance(a, Launch))
    assert launch.spec.argv == ("run", "a") and dict(launch.spec.env) == {"X": "1"} and launch.spec.cwd == "/tmp"


def test_in_flight_creates_are_marked_until_confirmed():
    fake = ScriptedBackend([A40])
    policy = create_policy("greedy")
    core = SchedulerCore(policy, fake.open(_settings(policy)))
    from migsched.core.events import JobArrived
    acts = core.handle([JobArrived(0.0, specs(e("a"))[0])], 0.0)
    assert isinstance(acts[0], CreateInstance)
    assert core.view.gpus[0].creating == {acts[0].start}
    fake.execute(acts)
    core.handle(fake.poll(10.0), fake.clock.now_s())
    assert core.view.gpus[0].creating == set()


def test_existing_instances_are_adopted_and_a_static_layout_reuses_them():
    layout = "3g.20gb@4,2g.10gb@0,1g.5gb@2,1g.5gb@3"
    fake = ScriptedBackend([A40], Script(instances={0: [("3g.20gb", 4), ("2g.10gb", 0), ("7g.40gb", 0)][:2]}))
    r = run(TraceSource(specs(e("a"), e("b", hint_gib=15))), create_policy("static", layout=layout), fake)
    assert r.jobs_completed == 2
    creates = [(a.profile, a.start) for a in fake.executed if isinstance(a, CreateInstance)]
    assert sorted(creates) == [("1g.5gb", 2), ("1g.5gb", 3)]  # the two that existed were kept
    assert not [a for a in fake.executed if isinstance(a, DestroyInstance)]


def test_instances_that_break_a_mig_rule_are_refused_at_discovery():
    bad = GpuInfo(0, A40, "X", True, (InstanceInfo("3g.20gb", 4), InstanceInfo("4g.20gb", 0), InstanceInfo("1g.5gb", 0)))
    with pytest.raises(SchedulingError, match="break a MIG rule"):
        build_gpu_views(create_policy("greedy"), [bad])


def test_a_gpu_in_the_wrong_mig_mode_is_named():
    with pytest.raises(SchedulingError, match=r"GPU 0 \(A100-40GB X\) has MIG off; policy 'greedy' needs MIG on"):
        build_gpu_views(create_policy("greedy"), [GpuInfo(0, A40, "X", False)])


def test_a_mixed_cluster_places_a_big_job_on_the_gpu_that_can_hold_it():
    fake = ScriptedBackend([A40, A80])
    r = run(TraceSource(specs(e("small"), e("big", hint_gib=60))), create_policy("greedy"), fake)
    assert r.jobs_completed == 2 and r.gpu == "A100-40GB+A100-80GB"
    big = next(a for a in fake.executed if isinstance(a, Launch) and a.job_id == "big")
    assert big.gpu == 1


def test_a_mixed_cluster_runs_static_with_a_layout_per_model():
    r = simulate(load_jobs_dict({"version": 1, "jobs": [
        {"name": "j", "class": "scientific", "hint_gib": 4, "count": 4,
         "model": {"runtime_s": 10, "peak_gib": 4}}]}), [A40, A80], policy="static")
    assert r.jobs_completed == 4


def test_a_wake_up_calls_the_policy_at_the_time_it_asked_for_without_any_event():
    calls = []

    class Sleeper(Policy):
        name = "sleeper"

        def decide(self, view, changes):
            calls.append((view.now_s, changes.woke))
            if view.queue and view.now_s >= 50.0:
                return Decision([CreateInstance(0, "1g.5gb", 0), Launch(view.queue[0].job_id, 0, 0)])
            return Decision((), 50.0 if view.queue else None)

    r = run(TraceSource(specs(e("a"))), Sleeper(), ScriptedBackend([A40]))
    assert (50.0, True) in calls and r.jobs_completed == 1
    assert by_id(r)["a"].finished_s == pytest.approx(50.0 + 1.0 + 10.0)


@pytest.mark.parametrize("sample_s", [2.0, 100.0])
def test_migm_blocked_restart_fires_at_its_wait_whatever_the_sample_interval(sample_s):
    """Before wake-ups the 300 s wait fired at the first event after it (the sample at 400 s
    with samples every 100 s); now the policy asks to be woken and it fires at 1 + 300 s.
    (It needs one progress report first: with samples every 600 s it cannot judge before 600 s.)"""
    jobs = load_jobs_dict({"version": 1, "jobs": [
        {"name": "long-train", "class": "ml-train", "reports_progress": True,
         "model": {"runtime_s": 1000.0, "peak_gib": 4.0, "startup_s": 0.0,
                   "speedup": {1: 0.2, 2: 0.4, 3: 0.6, 4: 0.7, 7: 1.0}}, "hint_gib": 4.0},
        {"name": "big", "class": "scientific", "hint_gib": 70.0, "arrival_s": 1.0,
         "model": {"runtime_s": 100.0, "peak_gib": 70.0, "speedup": {1: 1.0}, "startup_s": 0.0}}]})
    r = simulate(jobs, A80, policy="migm", spare_share=0.0, costs=SimCosts(sample_interval_s=sample_s))
    killed = [s for s in r.timeline.jobs if s.label == "long-train" and s.outcome.startswith("killed")]
    assert r.policy_summary.get("blocked_restarts") == 1 and len(killed) == 1
    assert killed[0].t1_s == pytest.approx(301.0 + SimCosts().kill_s)


def test_a_live_submit_queue_feeds_the_same_loop():
    q = SubmitQueue()
    for s in specs(e("a"), e("b")):
        q.submit(s)
    q.close()
    assert not q.exhausted
    r = run(q, create_policy("greedy"), ScriptedBackend([A40]))
    assert r.jobs_completed == 2
    with pytest.raises(RuntimeError):
        q.submit(JobSpec("c", "c", JobClass.SCIENTIFIC))


def _settings(policy):
    from migsched.run import settings_for
    return settings_for(policy, ScriptedBackend([A40]))


def test_a_create_that_keeps_failing_fails_the_job_after_ten_tries_instead_of_spinning():
    fake = ScriptedBackend([A40], Script(fail_creates=100))
    r = run(TraceSource(specs(e("a"))), create_policy("greedy"), fake)
    a = by_id(r)["a"]
    assert a.state == "failed" and a.outcomes == ("launch-failed",) * 10
    assert a.failure.startswith("the backend could not start it 10 times; last: its instance 1g.5gb")
    assert "scripted: create refused" in a.failure


def test_actions_given_as_a_generator_over_the_queue_start_every_job_they_name():
    """The core takes the whole decision before applying any of it: a policy that launches by
    walking `view.queue` lazily must not see the queue shrink under it (the queue is a sorted
    list now; walking it while launches remove jobs skipped every other one)."""

    class Eager(Policy):
        name = "eager"

        def decide(self, view, changes):
            if not view.queue:
                return Decision(())
            if not view.gpus[0].layout.instances:
                return Decision([CreateInstance(0, "1g.5gb", s) for s in range(4)])
            return Decision(Launch(j.job_id, 0, s) for s, j in zip(range(4), view.queue))

    r = run(TraceSource(specs(e("a"), e("b"), e("c"), e("d"))), Eager(), ScriptedBackend([A40]))
    assert r.jobs_completed == 4
    assert len({by_id(r)[j].runs[0].launched_s for j in "abcd"}) == 1  # all four in one decision
