"""Property tests: no policy ever loses a job, runs one twice at once, or overlaps instances.

Hypothesis generates small batches (arrivals, right, wrong and missing hints, jobs that run out
of memory or fit nowhere, memory curves, 1-3 GPUs of three models) and every registered policy
runs them in the simulator. Whatever the batch:

* every submitted job ends, done or failed with a reason, exactly once (none lost, none added);
* no job has two attempts running at once, and no instance runs two jobs at once;
* at no moment do two instances of one GPU share a memory slot;
* the core's queue is always in FIFO order (arrival order; a restarted job keeps its place),
  and a strict-FIFO policy (serial; greedy without backfill) only ever starts the queue's head.

The checks read the run's timeline and an observer of the core, never the policies' internals.
"""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migsched.backends.sim import Simulator
from migsched.core.events import Launch
from migsched.core.source import TraceSource
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.policies.registry import create_policy, policy_names
from migsched.run import run

MODELS = ["A100-40GB", "A100-80GB", "H100-80GB"]
FIFO_POLICIES = {"serial", "greedy"}  # start only the queue's head (greedy: backfill off by default)
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_memory = st.one_of(st.sampled_from(["constant", "ramp", "linear"]),
                    st.just("points"))


@st.composite
def batches(draw):
    """A job file's `jobs:` list: 1-6 entries of 1-3 jobs each."""
    entries = []
    for k in range(draw(st.integers(1, 6))):
        peak = draw(st.sampled_from([1.5, 3.0, 7.0, 12.0, 25.0, 45.0, 70.0, 100.0]))
        hint = draw(st.sampled_from(["right", "low", "high", "missing"]))
        model = {"runtime_s": draw(st.sampled_from([5.0, 20.0, 60.0, 150.0])), "peak_gib": peak,
                 "startup_s": draw(st.sampled_from([0.0, 1.0, 4.0])),
                 "speedup": draw(st.sampled_from([{1: 1.0}, {1: 0.3, 3: 0.7}, {7: 1.0}]))}
        mem = draw(_memory)
        model["memory"] = [[0.0, peak * 0.3], [0.5, peak]] if mem == "points" else mem
        e = {"name": f"e{k}", "class": draw(st.sampled_from(["scientific", "ml-train", "llm"])),
             "count": draw(st.integers(1, 3)), "arrival_s": draw(st.sampled_from([0.0, 0.0, 10.0, 45.0])),
             "reports_progress": draw(st.booleans()), "model": model}
        if hint == "right":
            e["hint_gib"] = peak
        elif hint == "low":
            e["hint_gib"] = round(peak * 0.4, 2)
        elif hint == "high":
            e["hint_gib"] = min(peak * 2.0, 200.0)
        entries.append(e)
    return entries


class Watch:
    """An observer of the run: the queue's order and who each decision started."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def after_handle(self, core, events) -> None:
        seqs = [j.seq for j in core.view.queue]
        if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
            self.problems.append(f"queue out of FIFO order at {core.view.now_s}: {seqs}")

    def before_execute(self, core, actions) -> None:
        pass


def _watch_fifo(policy, watch: Watch):
    """Wrap `policy.decide` to check that each Launch it returns starts the queue's head."""
    inner = policy.decide

    def decide(view, changes):
        heads = [j.job_id for j in view.queue]
        decision = inner(view, changes)
        launched = [a.job_id for a in decision.actions if isinstance(a, Launch)]
        if launched and launched != heads[:len(launched)]:
            watch.problems.append(f"{policy.name} started {launched} with {heads[:3]} at the head")
        return decision

    policy.decide = decide


def _check(result, jobs, model_name: str) -> None:
    ids = sorted(j.job_id for j in jobs)
    assert sorted(j.job_id for j in result.jobs) == ids, "a job was lost or added"
    for j in result.jobs:
        assert j.state in ("done", "failed"), j
        if j.state == "failed":
            assert j.failure, j
        else:
            assert j.outcomes and j.outcomes[-1] == "ok", j
    arrival = {j.job_id: j.spec.arrival_s for j in jobs}
    runs = defaultdict(list)
    on_inst = defaultdict(list)
    for s in result.timeline.jobs:
        assert s.t1_s is not None and s.t1_s >= s.t0_s and s.t0_s >= arrival[s.label] - 1e-9, s
        runs[s.label].append(s)
        on_inst[(s.gpu, s.start)].append(s)
    for spans in (*runs.values(), *on_inst.values()):
        spans.sort(key=lambda s: s.t0_s)
        for a, b in zip(spans, spans[1:]):
            assert a.t1_s <= b.t0_s + 1e-9, f"{a} and {b} run at once"
    done = {j.job_id for j in result.jobs if j.state == "done"}
    for jid in done:
        assert sum(1 for s in runs[jid] if s.outcome == "ok") == 1, f"{jid} completed more than once"
    insts = defaultdict(list)
    for s in result.timeline.instances:
        insts[s.gpu].append(s)
    for gpu, spans in insts.items():
        for i, a in enumerate(spans):
            for b in spans[i + 1:]:
                a1 = a.t1_s if a.t1_s is not None else math.inf
                b1 = b.t1_s if b.t1_s is not None else math.inf
                if a.t0_s < b1 - 1e-9 and b.t0_s < a1 - 1e-9:  # alive together
                    assert a.start + a.size <= b.start or b.start + b.size <= a.start, \
                        f"GPU {gpu}: {a.label}@{a.start} and {b.label}@{b.start} overlap in time and slots"
    assert result.failed_actions == 0, "the simulator refused an action (a double launch, a busy instance)"


def _policies():
    return [n for n in policy_names() if n in ("serial", "static", "greedy", "migm")]


@pytest.mark.parametrize("name", _policies())
@SETTINGS
@given(entries=batches(), gpus=st.integers(1, 3), model_name=st.sampled_from(MODELS))
def test_no_policy_loses_a_job_or_runs_one_twice(name, entries, gpus, model_name):
    jobs = load_jobs_dict({"version": 1, "jobs": entries}, require_model=True)
    policy = create_policy(name)
    watch = Watch()
    if name in FIFO_POLICIES:
        _watch_fifo(policy, watch)
    model = get_model(model_name)
    sim = Simulator([model] * gpus, {j.job_id: j.truth for j in jobs})
    result = run(TraceSource(j.spec for j in jobs), policy, sim, watch)
    _check(result, jobs, model_name)
    assert not watch.problems, watch.problems[:3]


def test_the_checks_can_fail():
    """The checks above are not vacuous: a lost job, a double run and an overlap are caught."""
    from types import SimpleNamespace

    from migsched.core.timeline import Span

    jobs = load_jobs_dict({"version": 1, "jobs": [
        {"name": "a", "class": "scientific", "model": {"runtime_s": 5, "peak_gib": 1}}]}, require_model=True)

    def result(job_spans, inst_spans, states=("done",)):
        rs = [SimpleNamespace(job_id=jobs[0].job_id, state=s, failure=None, outcomes=("ok",)) for s in states]
        return SimpleNamespace(jobs=rs, failed_actions=0,
                               timeline=SimpleNamespace(jobs=job_spans, instances=inst_spans))

    ok_span = Span(0, 0, 1, jobs[0].job_id, 0.0, 5.0, "ok")
    _check(result([ok_span], [Span(0, 0, 1, "1g.5gb", 0.0, 5.0)]), jobs, "A100-40GB")
    with pytest.raises(AssertionError, match="lost"):
        _check(result([ok_span], [], states=()), jobs, "A100-40GB")
    with pytest.raises(AssertionError, match="at once"):
        _check(result([Span(0, 0, 1, jobs[0].job_id, 0.0, 5.0, "killed:x"), Span(1, 0, 1, jobs[0].job_id, 4.0, 9.0, "ok")],
                      []), jobs, "A100-40GB")
    with pytest.raises(AssertionError, match="overlap"):
        _check(result([ok_span], [Span(0, 0, 2, "2g.10gb", 0.0, 5.0), Span(0, 1, 1, "1g.5gb", 1.0, 2.0)]),
               jobs, "A100-40GB")
