"""The policy contract, checked for every registered policy (new ones are picked up by name).

On a small mixed batch every policy must: end every job (done, or failed with a reason), lose none,
start none before its arrival, keep every GPU's layout legal at every moment, never run two jobs
on one instance at once, run jobs only on instances that exist, never see ground truth, and pay at
least idle power for every GPU over the whole run.
"""

from __future__ import annotations

import math
from collections import defaultdict

import pytest

from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.jobs.model import Job, TruthModel
from migsched.partition.layout import Instance, Layout
from migsched.policies.base import Policy
from migsched.policies.registry import create_policy, policy_names
from migsched.run import simulate

A40 = get_model("A100-40GB")
A80 = get_model("A100-80GB")


def _batch():
    def e(name, cls, runtime_s, peak_gib, hint_gib=None, **extra):
        m = {"runtime_s": runtime_s, "peak_gib": peak_gib, "startup_s": extra.pop("startup_s", 1.0),
             "speedup": extra.pop("speedup", {1: 0.4, 3: 0.8}), "memory": extra.pop("memory", "constant")}
        out = {"name": name, "class": cls, "model": m, **extra}
        if hint_gib is not None:
            out["hint_gib"] = hint_gib
        return out

    return load_jobs_dict({"version": 1, "jobs": [
        e("sci", "scientific", 40, 3, 3, count=4),
        e("train", "ml-train", 60, 9, 9, count=2, memory="ramp", reports_progress=True),
        e("infer", "ml-infer", 20, 15, 16, arrival_s=15, count=2),
        e("under", "ml-train", 50, 12, 4, memory="linear", reports_progress=True),   # OOMs first
        e("nohint", "scientific", 30, 6, speedup={7: 1.0}),
        e("llm", "llm", 80, 30, 20, memory=[[0, 10], [0.6, 30]], reports_progress=True, arrival_s=40),
        e("whale", "scientific", 10, 90, 90),                                        # fits nowhere
        e("late", "scientific", 10, 2, 2, arrival_s=300),
    ]}, require_model=True)


def _policy_cases():
    return policy_names()  # clairvoyant references are left out by default


def _watched(name: str):
    """The registered policy wrapped in a subclass that checks what the policy is shown."""
    try:
        inner = create_policy(name)
    except TypeError as exc:  # a policy that cannot run without arguments
        pytest.skip(f"policy {name!r} needs arguments: {exc}")
    inner_cls = type(inner)
    seen: dict[str, int] = {"views": 0, "jobs": 0, "samples": 0}

    def check(view):
        seen["views"] += 1
        for jv in view.jobs.values():
            seen["jobs"] += 1
            for obj in (jv, jv.spec):
                assert not hasattr(obj, "truth"), f"{name}: {type(obj).__name__} exposes ground truth"
                assert not isinstance(obj, (Job, TruthModel))
        for jv in view.queue:
            assert jv.job_id in view.jobs
            assert jv.spec.arrival_s <= view.now_s + 1e-9, f"{name} sees {jv.job_id} before it arrives"

    class Watched(Policy):
        name = inner_cls.name
        mig_enabled = inner_cls.mig_enabled
        wants_memory_samples = inner_cls.wants_memory_samples

        def setup(self, view):
            check(view)
            return inner.setup(view)

        def decide(self, view, changes):
            check(view)
            assert changes.now_s == view.now_s
            for job in changes.arrived:
                assert job.arrived_s <= view.now_s + 1e-9 and job.job_id in view.jobs
            for job, sample in changes.samples:
                seen["samples"] += 1
                assert not hasattr(job, "truth") and not hasattr(job.spec, "truth")
                assert sample.job_id == job.job_id
            return inner.decide(view, changes)

        def summary(self):
            return inner.summary()

    return Watched(), seen


def _layouts_legal(result, model):
    """Rebuild each MIG GPU's layout at every instance-span boundary and validate it."""
    spans = defaultdict(list)
    for s in result.timeline.instances:
        if s.label != "whole":
            spans[s.gpu].append(s)
    for gpu, ss in spans.items():
        moments = sorted({s.t0_s for s in ss} | {s.t1_s for s in ss if s.t1_s is not None})
        for t in moments:
            live = [s for s in ss if s.t0_s <= t < (s.t1_s if s.t1_s is not None else math.inf)]
            insts = tuple(sorted((Instance(model.profile(s.label), s.start) for s in live), key=lambda i: i.start))
            Layout(model, insts).validate()  # raises InvalidLayoutError naming the broken rule


def _jobs_on_existing_instances_without_overlap(result):
    by_inst = defaultdict(list)
    for j in result.timeline.jobs:
        assert j.t1_s is not None and j.t1_s >= j.t0_s
        by_inst[(j.gpu, j.start)].append(j)
    for (gpu, start), runs in by_inst.items():
        runs.sort(key=lambda s: s.t0_s)
        for a, b in zip(runs, runs[1:]):
            assert a.t1_s <= b.t0_s + 1e-9, f"{a.label} and {b.label} overlap on GPU {gpu} slot {start}"
        for r in runs:
            hosts = [s for s in result.timeline.instances if s.gpu == gpu and s.start == start and s.size == r.size
                     and s.t0_s <= r.t0_s + 1e-9 and r.t1_s <= (s.t1_s if s.t1_s is not None else math.inf) + 1e-9]
            assert hosts, f"{r.label} ran on GPU {gpu} slot {start} with no instance of its size alive"


@pytest.mark.parametrize(("model", "gpus"), [(A40, 2), (A80, 1)], ids=["A100-40GB-x2", "A100-80GB-x1"])
@pytest.mark.parametrize("name", _policy_cases())
def test_policy_contract(name, model, gpus):
    batch = _batch()
    policy, seen = _watched(name)
    r = simulate(batch, model, gpus=gpus, policy=policy)

    # every job ends; none is lost; failures carry a reason
    assert sorted(j.job_id for j in r.jobs) == sorted(j.job_id for j in batch)
    for j in r.jobs:
        assert j.state in ("done", "failed"), (name, j)
        if j.state == "failed":
            assert j.failure, (name, j)
        else:
            assert j.outcomes[-1] == "ok"
    results = {j.job_id: j for j in r.jobs}
    assert results["whale"].state == "failed" and "GiB" in results["whale"].failure
    small = [jid for jid in results if jid.startswith(("sci", "late"))]
    assert all(results[jid].state == "done" for jid in small), name

    # no job runs before its arrival; nothing ends after the makespan
    arrival = {j.job_id: j.spec.arrival_s for j in batch}
    for s in r.timeline.jobs:
        assert s.t0_s >= arrival[s.label] - 1e-9, (name, s)
        assert s.t1_s <= r.makespan_s + 1e-9
    assert r.makespan_s >= 300

    _layouts_legal(r, model)
    _jobs_on_existing_instances_without_overlap(r)

    # the policy was consulted, and saw jobs, but never their truth (checked in the wrapper)
    assert seen["views"] > 0 and seen["jobs"] > 0
    if type(policy).wants_memory_samples:
        assert seen["samples"] > 0

    # energy covers at least idle power on every GPU for the whole run
    assert len(r.energy_per_gpu_j) == gpus
    for e in r.energy_per_gpu_j:
        assert e >= model.idle_w * r.makespan_s * (1 - 1e-12)
    assert r.energy_j >= model.idle_w * r.makespan_s * gpus * (1 - 1e-12)
    assert r.energy_j <= model.max_w * r.makespan_s * gpus * (1 + 1e-12)


def test_the_layout_check_can_fail():
    # the checker above is not vacuous: overlapping instance spans are caught
    from types import SimpleNamespace

    from migsched.core.timeline import Span
    from migsched.errors import InvalidLayoutError

    fake = SimpleNamespace(timeline=SimpleNamespace(instances=[
        Span(0, 0, 2, "2g.10gb", 0.0, 5.0), Span(0, 1, 1, "1g.5gb", 4.0, 6.0)]))
    with pytest.raises(InvalidLayoutError, match="overlap"):
        _layouts_legal(fake, A40)


def test_the_overlap_check_can_fail():
    from types import SimpleNamespace

    from migsched.core.timeline import Span

    inst = [Span(0, 0, 1, "1g.5gb", 0.0, 20.0)]
    fake = SimpleNamespace(timeline=SimpleNamespace(instances=inst, jobs=[
        Span(0, 0, 1, "a", 0.0, 10.0), Span(0, 0, 1, "b", 9.0, 15.0)]))
    with pytest.raises(AssertionError, match="overlap"):
        _jobs_on_existing_instances_without_overlap(fake)
