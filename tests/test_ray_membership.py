"""GPUs that join a run (`GpuAdded`, a node that joins a Ray cluster): the core's side, no cluster."""

from __future__ import annotations

import pytest

from migsched.core.backend import GpuInfo, InstanceInfo
from migsched.core.events import CreateInstance, GpuAdded, GpuLost, InstanceCreated, JobArrived, JobStarted, Launch
from migsched.core.scheduler import SchedulerCore
from migsched.errors import SchedulingError
from migsched.hardware import get_model
from migsched.jobs.model import JobClass, JobSpec
from migsched.policies.registry import create_policy


def _spec(i: int, hint_gib: float = 4.0) -> JobSpec:
    return JobSpec(job_id=f"j{i}", name=f"j{i}", job_class=JobClass.SCIENTIFIC, hint_gib=hint_gib, command="true",
                   argv=("true",))


def _settle(core: SchedulerCore, actions, t: float) -> None:
    """Confirm every create and launch until the core asks for nothing more."""
    for _ in range(50):
        events = [InstanceCreated(t, a.gpu, a.profile, a.start) if isinstance(a, CreateInstance)
                  else JobStarted(t, a.job_id, a.gpu, a.start, attempt=a.attempt)
                  for a in actions if isinstance(a, (CreateInstance, Launch))]
        if not events:
            return
        actions = core.handle(events, t)


@pytest.mark.parametrize("policy", ["serial", "greedy"])
def test_a_gpu_that_joins_mid_run_takes_queued_jobs(policy: str) -> None:
    model = get_model("A100-40GB")
    pol = create_policy(policy)
    core = SchedulerCore(pol, [GpuInfo(0, model, "u0", pol.mig_enabled)])
    hint = 30.0 if pol.mig_enabled else 4.0  # one job per GPU either way
    _settle(core, core.handle([JobArrived(0.0, _spec(i, hint)) for i in range(3)], 0.0), 1.0)
    assert len(core.view.running) == 1 and len(core.view.queue) == 2
    actions = core.handle([GpuAdded(2.0, GpuInfo(1, get_model("A100-80GB"), "u1", pol.mig_enabled))], 2.0)
    assert [g.model.name for g in core.view.gpus] == ["A100-40GB", "A100-80GB"]
    assert [g.index for g in core.last_changes.gpus_added] == [1]  # the policy was told
    assert core.view.largest_instance_mib == core.view.gpus[1].largest_instance_mib > 40 * 1024
    _settle(core, actions, 2.0)
    assert {j.gpu for j in core.view.running.values()} == {0, 1}  # the new GPU is used at once


def test_static_lays_out_a_joining_gpu_and_that_is_no_reconfiguration() -> None:
    model = get_model("A100-40GB")
    pol = create_policy("static", layout="3g.20gb@4,4g.20gb@0")
    core = SchedulerCore(pol, [GpuInfo(0, model, "u0", True)])
    _settle(core, core.handle([JobArrived(0.0, _spec(0))], 0.0), 1.0)
    actions = core.handle([GpuAdded(2.0, GpuInfo(1, model, "u1", True))], 2.0)
    creates = sorted((a.profile, a.start) for a in actions if isinstance(a, CreateInstance) and a.gpu == 1)
    assert creates == [("3g.20gb", 4), ("4g.20gb", 0)]
    assert core.counters.reconfigurations == 0


def test_a_joining_gpu_keeps_the_instances_it_has() -> None:
    model = get_model("A100-40GB")
    pol = create_policy("static")  # no layout given: a new model's GPU keeps the layout it has
    core = SchedulerCore(pol, [GpuInfo(0, model, "u0", True)])
    core.handle([], 0.0)
    big = get_model("A100-80GB")
    actions = core.handle([GpuAdded(1.0, GpuInfo(1, big, "u1", True, (InstanceInfo("7g.80gb", 0),)))], 1.0)
    assert not [a for a in actions if getattr(a, "gpu", 0) == 1], actions
    assert [(i.profile.name, i.start) for i in core.view.gpus[1].layout.instances] == [("7g.80gb", 0)]


def test_a_joining_gpu_whose_mig_mode_does_not_suit_is_fenced_not_fatal() -> None:
    model = get_model("A100-40GB")
    pol = create_policy("greedy")  # MIG on
    core = SchedulerCore(pol, [GpuInfo(0, model, "u0", True)])
    core.handle([], 0.0)
    with pytest.warns(UserWarning, match=r"GPU 1 \(A100-40GB u1\) joined but is not used: GPU 1 .*has MIG off"):
        core.handle([GpuAdded(1.0, GpuInfo(1, model, "u1", False))], 1.0)
    assert all(i.busy for i in core.view.gpus[1].layout.instances)
    assert "needs MIG on" in core.view.gpus[1].fenced
    actions = core.handle([JobArrived(2.0, _spec(0))], 2.0)
    assert all(getattr(a, "gpu", 0) == 0 for a in actions), actions


def test_a_joining_gpu_must_take_the_next_index() -> None:
    model = get_model("A100-40GB")
    core = SchedulerCore(create_policy("greedy"), [GpuInfo(0, model, "u0", True)])
    with pytest.raises(SchedulingError, match="next index 1"):
        core.handle([GpuAdded(1.0, GpuInfo(5, model, "u5", True))], 1.0)


def test_a_lost_gpu_stays_fenced_when_others_join() -> None:
    model = get_model("A100-40GB")
    pol = create_policy("greedy")
    core = SchedulerCore(pol, [GpuInfo(0, model, "u0", True)])
    core.handle([GpuLost(0.5, 0, "gone")], 0.5)
    actions = core.handle([GpuAdded(1.0, GpuInfo(1, model, "u1", True)), JobArrived(1.0, _spec(0))], 1.0)
    assert all(i.busy for i in core.view.gpus[0].layout.instances)
    assert actions and all(getattr(a, "gpu", 1) == 1 for a in actions), actions


def test_migm_uses_a_joining_gpu_of_its_own_model() -> None:
    model = get_model("A100-40GB")
    pol = create_policy("migm")
    core = SchedulerCore(pol, [GpuInfo(0, model, "u0", True)])
    _settle(core, core.handle([JobArrived(0.0, _spec(i, 30.0)) for i in range(3)], 0.0), 1.0)
    assert len(core.view.running) == 1
    _settle(core, core.handle([GpuAdded(2.0, GpuInfo(1, model, "u1", True))], 2.0), 2.0)
    assert not core.view.gpus[1].fenced
    assert {j.gpu for j in core.view.running.values()} == {0, 1}


@pytest.mark.parametrize("other", ["A100-80GB", "H100-80GB"])
def test_migm_fences_a_joining_gpu_of_another_model_and_goes_on(other: str) -> None:
    """migm plans for one model: a node of another model that joins is fenced with a warning,
    never used, and the run goes on. H100-80GB lays out exactly as A100-80GB does (the same
    profile names and starts) but its profiles differ, so it is refused too."""
    base = "A100-40GB" if other == "A100-80GB" else "A100-80GB"
    pol = create_policy("migm")
    core = SchedulerCore(pol, [GpuInfo(0, get_model(base), "u0", True)])
    _settle(core, core.handle([JobArrived(0.0, _spec(i, 30.0)) for i in range(3)], 0.0), 1.0)
    with pytest.warns(UserWarning, match=rf"GPU 1 \({other} u1\) joined but is not used: policy 'migm' "
                                         rf"plans for one GPU model per cluster and this one has {base}"):
        actions = core.handle([GpuAdded(2.0, GpuInfo(1, get_model(other), "u1", True))], 2.0)
    assert "one GPU model" in core.view.gpus[1].fenced
    assert all(i.busy for i in core.view.gpus[1].layout.instances)
    for t in (3.0, 4.0):
        actions += core.handle([JobArrived(t, _spec(int(t) * 10 + i, h)) for i, h in enumerate((4.0, 8.0, 60.0))], t)
        _settle(core, actions, t)
    assert all(getattr(a, "gpu", 0) == 0 for a in actions), actions
    assert all(j.gpu == 0 for j in core.view.running.values())


def test_migm_refuses_a_cluster_of_two_models_that_lay_out_alike() -> None:
    pol = create_policy("migm")
    core = SchedulerCore(pol, [GpuInfo(0, get_model("A100-80GB"), "u0", True),
                               GpuInfo(1, get_model("H100-80GB"), "u1", True)])
    with pytest.raises(SchedulingError, match="one GPU model per cluster; this one has A100-80GB, H100-80GB"):
        core.handle([JobArrived(0.0, _spec(0))], 0.0)


def test_a_lost_gpu_says_why_it_is_fenced() -> None:
    model = get_model("A100-40GB")
    core = SchedulerCore(create_policy("migm"), [GpuInfo(0, model, "u0", True), GpuInfo(1, model, "u1", True)])
    core.handle([GpuLost(0.5, 0, "node down")], 0.5)
    assert core.view.gpus[0].fenced == "lost: node down" and not core.view.gpus[1].fenced
    _settle(core, core.handle([JobArrived(1.0, _spec(i)) for i in range(3)], 1.0), 1.0)
    assert {j.gpu for j in core.view.running.values()} == {1}  # migm plans over the GPUs left


def test_migm_fences_another_model_that_joins_before_its_first_decision() -> None:
    pol = create_policy("migm")
    core = SchedulerCore(pol, [GpuInfo(0, get_model("A100-40GB"), "u0", True)])
    with pytest.warns(UserWarning, match="GPU 1 .*joined but is not used"):
        actions = core.handle([GpuAdded(0.0, GpuInfo(1, get_model("A100-80GB"), "u1", True)),
                               *(JobArrived(0.0, _spec(i)) for i in range(3))], 0.0)
    assert actions and all(getattr(a, "gpu", 0) == 0 for a in actions), actions
    assert pol.model is not None and pol.model.name == "A100-40GB"


def test_a_fenced_larger_gpu_does_not_keep_a_job_queued_that_no_usable_gpu_holds():
    """A100-80GB joins a greedy run with MIG off (greedy needs it on): fenced. A 60 GiB job fits
    only that GPU, so it is rejected at once, not queued for a GPU that will never take it."""
    pol = create_policy("greedy")
    core = SchedulerCore(pol, [GpuInfo(0, get_model("A100-40GB"), "u0", True)])
    core.handle([], 0.0)
    with pytest.warns(UserWarning, match="joined but is not used"):
        core.handle([GpuAdded(1.0, GpuInfo(1, get_model("A100-80GB"), "u1", False))], 1.0)
    assert core.view.largest_instance_mib == core.view.gpus[0].largest_instance_mib
    _settle(core, core.handle([JobArrived(2.0, _spec(0, 60.0))], 2.0), 2.0)
    assert core.view.jobs["j0"].state.value == "failed" and not core.view.queue


def test_migm_waits_for_a_node_when_every_gpu_is_lost_before_its_first_decision():
    model = get_model("A100-40GB")
    core = SchedulerCore(create_policy("migm"), [GpuInfo(0, model, "u0", True)])
    core.handle([GpuLost(0.5, 0, "node down"), JobArrived(0.5, _spec(0))], 0.5)  # no usable GPU: no error
    assert len(core.view.queue) == 1
    _settle(core, core.handle([GpuAdded(1.0, GpuInfo(1, model, "u1", True))], 1.0), 1.0)
    assert {j.gpu for j in core.view.running.values()} == {1}


def test_a_resumed_run_fences_again_the_gpus_it_had_fenced(tmp_path) -> None:
    """A fence used to live in memory only: after --resume the refused node was discovered
    with the others, and migm refused the cluster of two models at its first decision. The
    recorder keeps the fences by UUID (not the lost GPUs'), and the core fences them again at
    discovery, whatever their MIG mode."""
    from migsched.live.recorder import FENCED_KEY, StoreRecorder
    from migsched.store.db import RunStore

    store = RunStore.create(tmp_path / "r.db", {"policy": "migm"})
    rec = StoreRecorder(store)
    a40, a80 = get_model("A100-40GB"), get_model("A100-80GB")
    core = SchedulerCore(create_policy("migm"), [GpuInfo(0, a40, "n0/u0", True), GpuInfo(1, a40, "n0/u1", True)])
    core.handle([GpuLost(0.5, 1, "node down")], 0.5)
    rec.after_handle(core, [])
    assert FENCED_KEY not in store.meta()  # nothing joined: nothing to keep
    with pytest.warns(UserWarning, match="joined but is not used"):
        events = [GpuAdded(1.0, GpuInfo(2, a80, "n1/u0", True))]
        core.handle(events, 1.0)
    rec.after_handle(core, events)
    kept = store.meta()[FENCED_KEY]
    assert list(kept) == ["n1/u0"] and "one GPU model" in kept["n1/u0"]  # the lost GPU is not kept
    store.close()

    again = [GpuInfo(0, a40, "n0/u0", True), GpuInfo(1, a80, "n1/u0", False)]  # MIG off there now
    with pytest.raises(SchedulingError):
        SchedulerCore(create_policy("migm"), again).handle([JobArrived(0.0, _spec(0))], 0.0)
    core = SchedulerCore(create_policy("migm"), again, fenced=kept)
    assert core.view.gpus[1].fenced == kept["n1/u0"] and not core.view.gpus[0].fenced
    assert all(i.busy for i in core.view.gpus[1].layout.instances)
    _settle(core, core.handle([JobArrived(0.0, _spec(i, 30.0)) for i in range(3)], 0.0), 0.0)
    assert core.view.running and {j.gpu for j in core.view.running.values()} == {0}
