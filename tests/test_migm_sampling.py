"""migm asks for memory samples only where one can change a decision, and its tail check looks
only at jobs a restart can make faster.

Issue 9 asks that the backend deliver samples when the policy wants them: early restart needs a
job's memory curve only while a larger instance exists for it; the tail restart needs its
progress only while more compute exists for it.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from migsched.core.events import Launch, MemorySample
from migsched.core.sampling import DEFAULT_PLAN
from migsched.core.source import TraceSource
from migsched.core.state import ClusterView, GpuView, JobState, JobView
from migsched.backends.sim import Simulator
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.jobs.model import JobClass, JobSpec
from migsched.partition.layout import Instance, Layout
from migsched.policies.migm.early import FORECAST_FROM, PROGRESS_PLAN, STARTUP_PLAN
from migsched.policies.migm.restarts import RunTimes, pick_upgrade
from migsched.policies.registry import create_policy
from migsched.run import run

A40 = get_model("A100-40GB")
A80 = get_model("A100-80GB")


def _jobs(*entries):
    return load_jobs_dict({"version": 1, "jobs": list(entries)}, require_model=True)


def _job(name, hint_gib, runtime_s=200.0):
    return {"name": name, "class": "ml-train", "hint_gib": hint_gib, "reports_progress": True,
            "model": {"runtime_s": runtime_s, "peak_gib": hint_gib * 0.9, "memory": "constant", "startup_s": 1,
                      "speedup": {1: 1.0}}}


def _plans_at_launch(pol, batch) -> dict[str, object]:
    """Simulate `batch` under `pol`; each job's sample plan as its (last) launch carried it."""
    seen: dict[str, object] = {}

    class Observer:
        def after_handle(self, core, events):
            pass

        def before_execute(self, core, actions):
            seen.update((a.job_id, a.samples) for a in actions if isinstance(a, Launch))

    sim = Simulator([A40], {j.job_id: j.truth for j in batch})
    run(TraceSource(j.spec for j in batch), pol, sim, Observer())
    return seen


def _launch_plans_and_samples(**opts):
    """Simulate a 4 GiB job (1g.5gb, with six more that keep the other slices busy so that no
    spare compute comes its way) and a 39 GiB one (7g.40gb, the largest) under migm; return each
    job's plan at launch and how many samples reached the policy."""
    pol = create_policy("migm", **opts)
    counts: dict[str, int] = {}
    orig = pol.on_memory_sample

    def on_sample(view, job, sample):
        counts[job.job_id] = counts.get(job.job_id, 0) + 1
        return orig(view, job, sample)

    pol.on_memory_sample = on_sample  # type: ignore[method-assign]
    batch = _jobs(_job("small", 4.0), *(_job(f"fill{i}", 4.0) for i in range(6)), _job("whole", 39.0))
    plans = _plans_at_launch(pol, batch)
    return {j: p for j, p in plans.items() if not j.startswith("fill")}, counts


def test_migm_samples_densely_only_the_jobs_early_restart_can_move():
    plans, counts = _launch_plans_and_samples()
    assert plans == {"small": DEFAULT_PLAN, "whole": STARTUP_PLAN}
    assert counts["whole"] == STARTUP_PLAN.max_samples == 2  # its start-up, then nothing
    assert counts["small"] > 8


def test_a_job_that_reports_no_progress_reports_only_its_growth_to_migm():
    from migsched.policies.migm.early import GROWTH_ONLY_PLAN
    quiet = dict(_job("quiet", 4.0), reports_progress=False)
    batch = _jobs(_job("told", 4.0), quiet, *(_job(f"fill{i}", 4.0) for i in range(5)))
    seen = _plans_at_launch(create_policy("migm"), batch)
    quiet_plan = seen["quiet"]
    assert seen["told"] == DEFAULT_PLAN and quiet_plan.growth_only and GROWTH_ONLY_PLAN.growth_only
    # held below FORECAST_FROM x safety x the instance's memory (1g.5gb), where _due fits nothing
    assert quiet_plan == dataclasses.replace(GROWTH_ONLY_PLAN,
                                             hold_below_mib=FORECAST_FROM * 0.95 * A40.profile("1g.5gb").memory_mib)


def _ramps(pol):
    """Four jobs that report no progress, hinted at 4 GiB (1g.5gb), whose memory rises steeply,
    then ever slower, to 4.6 GiB: above 0.95 x the instance, so early restart moves those whose
    forecast sees it to more memory. Returns (result, memory samples the policy was called for)."""
    from migsched.run import simulate

    calls = []
    orig = pol.on_memory_sample

    def on_sample(view, job, sample):
        calls.append((job.job_id, sample.time_s, len(job.samples)))
        return orig(view, job, sample)

    pol.on_memory_sample = on_sample  # type: ignore[method-assign]
    entry = {"name": "ramp", "class": "scientific", "hint_gib": 4.0, "count": 4,
             "model": {"runtime_s": 400.0, "peak_gib": 4.6, "startup_s": 1, "speedup": {1: 1.0},
                       "memory": [[0, 1.0], [0.05, 3.0], [0.1, 4.0], [0.2, 4.5], [0.4, 4.6], [1, 4.6]]}}
    r = simulate(_jobs(entry), A40, policy=pol, record_power=False)
    return r, calls


def test_holding_samples_below_the_forecast_level_changes_no_decision_and_calls_the_policy_less():
    from migsched.policies.migm import early

    held_r, held_calls = _ramps(create_policy("migm"))
    plain = create_policy("migm")
    plain._held_plan = lambda memory_mib: early.GROWTH_ONLY_PLAN  # every growing sample reported
    plain_r, plain_calls = _ramps(plain)
    assert held_r.policy_summary["early_restarts_decided"] >= 3
    assert held_r.makespan_s == plain_r.makespan_s and held_r.policy_summary == plain_r.policy_summary
    assert len(held_calls) < len(plain_calls)
    # at each call that both saw, the job's history was the same length: nothing was lost
    both = set((j, t) for j, t, _n in held_calls) & set((j, t) for j, t, _n in plain_calls)
    assert both and {(j, t, n) for j, t, n in held_calls if (j, t) in both} \
        == {(j, t, n) for j, t, n in plain_calls if (j, t) in both}


def test_without_early_restart_migm_samples_for_progress_only_and_without_tail_not_at_all():
    plans, _ = _launch_plans_and_samples(early_restart=False)
    assert plans == {"small": PROGRESS_PLAN, "whole": STARTUP_PLAN}
    plans, _ = _launch_plans_and_samples(early_restart=False, tail_restart=False)
    assert plans == {"small": STARTUP_PLAN, "whole": STARTUP_PLAN}


def _running(job_id, gpu, profile, progress, now_s=1000.0):
    spec = JobSpec(job_id, job_id, JobClass.ML_TRAIN)
    j = JobView(spec=spec, state=JobState.RUNNING, gpu=gpu, start=profile.starts[0], profile=profile,
                launched_s=0.0)
    j.samples.append(MemorySample(now_s - 1.0, job_id, 1024.0, now_s - 1.0, progress))
    return j


def test_the_tail_check_skips_jobs_on_the_largest_compute_which_no_restart_speeds_up():
    """Sixteen whole-GPU jobs with long remaining times must not hide the 1g job behind them:
    the check looks at the `TAIL_CANDIDATES` (16) longest-remaining jobs that could grow."""
    whole, small = A80.profile("7g.80gb"), A80.profile("1g.10gb")
    gpus, running = [], {}
    for g in range(16):  # 1,000 s run, 5 % done: ~19,000 s left each
        j = _running(f"w{g}", g, whole, 0.05)
        running[j.job_id] = j
        gpus.append(GpuView(g, A80, True, Layout(A80, (Instance(whole, 0, busy=True),))))
    tail = _running("tail", 16, small, 0.5)  # 1,000 s left on 1g; a 7g rerun takes far less
    running["tail"] = tail
    gpus.append(GpuView(16, A80, True, Layout(A80, (Instance(small, small.starts[0], busy=True),))))
    view = ClusterView(now_s=1000.0, gpus=gpus, queue=deque(), running=running, jobs=dict(running))
    up = pick_upgrade(view, A80, running.values(), lambda j: j.family, lambda j: 0.0, RunTimes(), 0.25, 30.0)
    assert up is not None and up.job_id == "tail" and up.profile.compute_slices > 1


def test_a_start_up_ending_does_not_rerun_a_placement_pass_that_found_nothing():
    """A `JobStarted` changes nothing a placement reads: after a pass that placed nothing (also
    one that made a reservation for a blocked head), the next pass is skipped (the `_miss`
    memo), so a start costs no search of the cluster."""
    pol = create_policy("migm")
    passes = {"after_start": 0, "reserved": 0}
    orig_decide, orig_place = pol.decide, pol._place_heads
    only_started = [False]

    def decide(view, changes):
        only_started[0] = bool(changes.first and changes.started) and not (
            changes.arrived or changes.ended or changes.requeued or changes.samples or changes.failed)
        return orig_decide(view, changes)

    def place(view, model, heads):
        if only_started[0]:
            passes["after_start"] += 1
        return orig_place(view, model, heads)

    pol.decide, pol._place_heads = decide, place  # type: ignore[method-assign]
    # seven 1g jobs fill the GPU; the 39 GiB job waits with a reservation while more 1g jobs queue
    batch = _jobs(*(_job(f"a{i}", 4.0, 100.0 + 10 * i) for i in range(7)), _job("big", 39.0),
                  *(_job(f"b{i}", 4.0) for i in range(7)))
    sim = Simulator([A40], {j.job_id: j.truth for j in batch})
    r = run(TraceSource(j.spec for j in batch), pol, sim)
    assert pol.counts.get("reservations", 0) >= 1 and r.jobs_completed == len(batch)
    assert passes["after_start"] == 0


def test_no_forecast_is_fitted_before_it_could_be_confident():
    """A forecast on fewer than the forecaster's `confident_samples` (5) samples is never
    confident and so never acts: it is not fitted. A job whose memory climbs toward its 1g
    slice's limit is first due on its fifth sample."""
    pol = create_policy("migm")
    one = A80.profile("1g.10gb")
    job = JobView(spec=JobSpec("ramp", "ramp", JobClass.SCIENTIFIC), state=JobState.RUNNING, gpu=0,
                  start=one.starts[0], profile=one, launched_s=0.0)
    view = ClusterView(now_s=10.0, gpus=[GpuView(0, A80, True, Layout(A80, (Instance(one, one.starts[0], busy=True),)))],
                       queue=deque(), running={"ramp": job}, jobs={"ramp": job})
    pol._init(view)
    due = []
    for k in range(1, 7):
        s = MemorySample(float(k), "ramp", 1024.0 * (4 + k), float(k), None)  # 5..10 GiB of 10
        job.samples.append(s)
        due.append(pol._due(job, s))
    assert due == [False, False, False, False, True, True]


def _bench_jobs(n: int, seed: int, gpus: int):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_simulator.py"
    spec = importlib.util.spec_from_file_location("bench_simulator_jobs", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.make_jobs(n, seed, gpus=gpus)


def test_migm_decides_the_same_whatever_memory_samples_come_between_its_decisions():
    """The blocked and tail restarts are re-checked on a clock of their own (`wake_at_s`), not
    on whatever events come: holding back samples (fewer events) must not move a decision.
    Before the blocked restart's re-checks had wake-ups, these two batches diverged (200 jobs
    on 2 GPUs: 36,512 s against 34,212 s; on 4 GPUs: 20,056 against 20,172)."""
    from migsched.policies.migm import early
    from migsched.run import simulate

    for n, gpus in ((200, 2), (200, 4)):
        batch = _bench_jobs(n, 0, gpus)
        held = simulate(batch, A80, gpus=gpus, policy=create_policy("migm"), record_power=False)
        plain = create_policy("migm")
        plain._held_plan = lambda memory_mib: early.GROWTH_ONLY_PLAN
        every = simulate(batch, A80, gpus=gpus, policy=plain, record_power=False)
        assert held.policy_summary.get("blocked_restarts", 0) >= 1
        assert held.events_processed < every.events_processed
        assert (held.makespan_s, held.policy_summary) == (every.makespan_s, every.policy_summary), (n, gpus)
