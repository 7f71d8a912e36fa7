"""Pinning tests: each migm option and rule, and the baselines' options, fail when ignored.

Each test compares a run with the option against one without it (or checks the rule's visible
effect), so a one-line change that ignores or inverts the option makes it fail. Small batches,
simulated; no wall-clock time is asserted.
"""

from __future__ import annotations

from migsched.core.events import MemorySample
from migsched.core.policy import Changes
from migsched.core.state import ClusterView, JobState, JobView
from migsched.estimators.forecast import MemoryForecaster
from migsched.jobs.model import JobClass, JobSpec
from migsched.policies import create_policy
from migsched.policies.base import Policy
from migsched.policies.migm import ranks as migm_ranks
from migsched.run import simulate

from migm_support import A100, batch, job


def spans(r, name: str):
    """The job spans (runs) of the job named `name`, in start order."""
    return sorted((s for s in r.timeline.jobs if s.label == name), key=lambda s: s.t0_s)


def first_start(r, name: str) -> float:
    return spans(r, name)[0].t0_s


# ---- ordering -------------------------------------------------------------------------------------
def test_order_largest_starts_the_big_job_before_earlier_small_ones():
    smalls = [job(f"small-{i}", runtime=500.0) for i in range(7)]
    jobs = batch(*smalls, job("big", hint=35.0, peak=35.0, runtime=100.0))
    largest = simulate(jobs, A100, policy="migm", order="largest")
    fifo = simulate(jobs, A100, policy="migm", order="fifo")
    assert first_start(largest, "big") < 1.0
    assert first_start(fifo, "big") >= 500.0


def test_backfill_lets_a_later_small_job_pass_a_blocked_big_one():
    jobs = batch(job("first", runtime=1000.0), job("big", hint=70.0, peak=70.0, arrival=1.0),
                 job("late", arrival=2.0))
    # No reservations: big's (the whole GPU) would hold "late" back too.
    on = simulate(jobs, A100, policy="migm", backfill=True, spare_share=0.0, reserve_after_s=1e9)
    off = simulate(jobs, A100, policy="migm", backfill=False, spare_share=0.0, reserve_after_s=1e9)
    assert first_start(on, "late") < 10.0
    assert first_start(off, "late") > first_start(off, "big")


def test_rank_class_starts_training_before_scientific_within_a_tier():
    entries = [job(f"sci-{i}", runtime=50.0) for i in range(7)] + [job("train", cls="ml-train", runtime=50.0)]
    jobs = batch(*entries)
    cls = simulate(jobs, A100, policy="migm", rank="class", tail_restart=False)
    fifo = simulate(jobs, A100, policy="migm", rank="fifo", tail_restart=False)
    assert first_start(cls, "train") < 1.0
    assert first_start(fifo, "train") >= 50.0


def test_requeued_job_keeps_its_fifo_place():
    """liar OOMs on its 1g.10gb at start-up; with strict FIFO it stays ahead of "tail", which
    must wait although the 1g slot liar left is free, until liar is placed when the smalls end."""
    entries = [job("liar", hint=8.0, peak=15.0, runtime=100.0)]
    entries += [job(f"small-{i}", runtime=100.0) for i in range(6)] + [job("tail", runtime=100.0)]
    r = simulate(batch(*entries), A100, policy="migm", backfill=False, rank="fifo", compute_upgrade=False)
    assert spans(r, "liar")[0].outcome == "oom"
    small_end = min(s.t1_s for s in r.timeline.jobs if s.label.startswith("small"))
    assert first_start(r, "tail") >= small_end
    assert spans(r, "liar")[1].t0_s <= small_end + 1.0


# ---- sizing ---------------------------------------------------------------------------------------
def test_unhinted_job_gets_a_slice_not_the_whole_gpu():
    jobs = batch(job("nohint", hint=None, peak=4.0, count=4, runtime=100.0))
    r = simulate(jobs, A100, policy="migm", compute_upgrade=False)
    assert r.jobs_completed == 4
    assert all(s.size == 1 for s in r.timeline.jobs)  # one memory slot each, four at once
    assert max(s.t0_s for s in r.timeline.jobs) < 5.0


def test_unhinted_job_that_needs_more_is_corrected_by_restart():
    jobs = batch(job("big-nohint", hint=None, peak=30.0, runtime=100.0))
    r = simulate(jobs, A100, policy="migm", compute_upgrade=False)
    assert r.jobs_completed == 1
    outs = [s.outcome for s in spans(r, "big-nohint")]
    assert outs[-1] == "ok" and "oom" in outs
    assert spans(r, "big-nohint")[-1].size == 4  # the 40 GB instance


def test_compute_upgrade_off_keeps_the_tight_profile():
    jobs = batch(job("one", runtime=100.0))
    on = simulate(jobs, A100, policy="migm")
    off = simulate(jobs, A100, policy="migm", compute_upgrade=False)
    assert spans(on, "one")[0].compute_slices == 7
    assert spans(off, "one")[0].compute_slices == 1


def test_mid_upgrade_gives_a_same_memory_variant_while_jobs_are_queued():
    entries = [job(f"mid-{i}", hint=15.0, peak=15.0, runtime=100.0) for i in range(10)]
    on = simulate(batch(*entries), A100, policy="migm", mid_upgrade=True, spare_share=0.0)
    off = simulate(batch(*entries), A100, policy="migm", mid_upgrade=False, spare_share=0.0)
    assert spans(on, "mid-0")[0].compute_slices == 2   # 2g.20gb for a 1g.20gb need
    assert spans(off, "mid-0")[0].compute_slices == 1
    none = simulate(batch(*entries), A100, policy="migm", mid_upgrade=True, compute_upgrade=False)
    assert spans(none, "mid-0")[0].compute_slices == 1


def test_spare_share_keeps_a_lone_scaling_job_on_a_whole_gpu_while_jobs_still_arrive():
    jobs = batch(job("train", cls="ml-train", runtime=1000.0, speedup={1: 0.15, 7: 1.0}),
                 job("later", arrival=5000.0))
    on = simulate(jobs, A100, policy="migm", spare_share=1.0)
    off = simulate(jobs, A100, policy="migm", spare_share=0.0)
    assert spans(on, "train")[0].compute_slices == 7
    assert spans(off, "train")[0].compute_slices == 1
    assert sum(j.jct_s for j in on.jobs) < sum(j.jct_s for j in off.jobs)


def test_spare_min_gain_leaves_a_job_that_does_not_scale_on_its_slice():
    """Scientific jobs' prior scaling exponent is 0.1: 7 slices are < 20% faster, so while
    jobs still arrive it stays small; with spare_min_gain=0 it takes the spare compute."""
    jobs = batch(job("kernel", runtime=1000.0, speedup={1: 0.9, 7: 1.0}), job("later", arrival=5000.0))
    strict = simulate(jobs, A100, policy="migm", spare_min_gain=0.2)
    loose = simulate(jobs, A100, policy="migm", spare_min_gain=0.0)
    assert spans(strict, "kernel")[0].compute_slices == 1
    assert spans(loose, "kernel")[0].compute_slices == 7


def test_spare_min_gain_shrinks_when_the_spare_is_many_gpus():
    """The same job on 4 idle GPUs: the spare is worth 4 GPUs, so 1/4 of the gain is asked and
    the job takes a whole GPU (on 1,000 GPUs online this was 4.7x serial's makespan)."""
    jobs = batch(job("kernel", runtime=1000.0, speedup={1: 0.9, 7: 1.0}), job("later", arrival=5000.0))
    one = simulate(jobs, A100, gpus=1, policy="migm", spare_min_gain=0.2)
    four = simulate(jobs, A100, gpus=4, policy="migm", spare_min_gain=0.2)
    assert spans(one, "kernel")[0].compute_slices == 1
    assert spans(four, "kernel")[0].compute_slices == 7


# ---- placement ------------------------------------------------------------------------------------
def test_repartition_min_reshapes_idle_instances_for_bigger_jobs():
    entries = [job(f"small-{i}", runtime=100.0) for i in range(7)]
    entries += [job(f"mid-{i}", hint=35.0, peak=35.0, runtime=100.0, arrival=200.0) for i in range(2)]
    r = simulate(batch(*entries), A100, policy="migm", scheme="repartition-min", compute_upgrade=False)
    assert r.jobs_completed == 9
    assert r.policy_summary.get("repartition", 0) >= 1
    head = simulate(batch(*entries), A100, policy="migm", scheme="head", compute_upgrade=False)
    assert head.policy_summary.get("repartition", 0) == 0


def test_reserve_after_s_delays_reservations():
    entries = [job(f"small-{i}", runtime=100.0) for i in range(14)]
    entries.append(job("big", hint=60.0, peak=60.0, arrival=1.0))
    now = simulate(batch(*entries), A100, policy="migm", reserve_after_s=0.0)
    never = simulate(batch(*entries), A100, policy="migm", reserve_after_s=1e9)
    assert now.policy_summary.get("reservations", 0) >= 1
    assert never.policy_summary.get("reservations", 0) == 0


# ---- restarts -------------------------------------------------------------------------------------
def _tail_batch(short_runtime: float, checkpoint: bool):
    long = job("long-train", cls="ml-train", runtime=1000.0, speedup={1: 0.2, 2: 0.4, 3: 0.6, 4: 0.7, 7: 1.0})
    long["reports_progress"] = True
    if checkpoint:
        long["checkpoint"] = {"signal": "SIGTERM", "grace_s": 30.0, "resume_s": 5.0}
    return batch(long, job("short", count=6, runtime=short_runtime, speedup={1: 1.0}))


def test_a_checkpointing_job_moves_with_its_progress_where_a_restart_would_not_pay():
    """90% done when the slices free up: rerunning from zero does not pay (no tail restart),
    a checkpointed move does, and it finishes the batch sooner."""
    plain = simulate(_tail_batch(4500.0, False), A100, policy="migm", spare_share=0.0)
    moved = simulate(_tail_batch(4500.0, True), A100, policy="migm", spare_share=0.0)
    assert [s.outcome for s in spans(plain, "long-train")] == ["ok"]
    outs = [s.outcome for s in spans(moved, "long-train")]
    assert outs[0] == "killed:move" and outs[-1] == "ok"
    assert moved.policy_summary.get("moves", 0) >= 1
    assert moved.makespan_s < plain.makespan_s - 200.0


class CountingForecaster(MemoryForecaster):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forecast(self, job, samples, *args, **kwargs):
        self.calls += 1
        return super().forecast(job, samples, *args, **kwargs)


def test_forecasts_are_fitted_only_when_they_could_restart_the_job():
    flat = job("flat", count=3, runtime=300.0)
    flat["reports_progress"] = True
    # No progress reports and memory near the limit: only the flatness tells.
    quiet = job("quiet", count=3, hint=8.0, peak=8.0, runtime=300.0)
    fc = CountingForecaster()
    r = simulate(batch(flat, quiet), A100, policy=create_policy("migm", forecaster=fc, compute_upgrade=False))
    assert r.jobs_completed == 6 and fc.calls == 0
    grow = job("gen", cls="llm", hint=8.0, peak=30.0, runtime=300.0, memory="linear", start_gib=8.0)
    grow["reports_progress"] = True
    fc2 = CountingForecaster()
    r2 = simulate(batch(grow), A100, policy=create_policy("migm", forecaster=fc2, compute_upgrade=False))
    assert r2.jobs_completed == 1 and fc2.calls > 0 and r2.early_restarts >= 1
    off = CountingForecaster()
    simulate(batch(grow), A100, policy=create_policy("migm", forecaster=off, compute_upgrade=False,
                                                     early_restart=False))
    assert off.calls == 0


def test_samples_of_a_job_being_killed_do_not_reach_the_policy():
    class Recorder(Policy):
        name = "recorder"

        def __init__(self) -> None:
            self.seen: list[str] = []

        def on_memory_sample(self, view, job, sample):
            self.seen.append(job.job_id)
            return []

    spec = JobSpec("a", "a", JobClass.SCIENTIFIC)
    alive = JobView(spec=spec, state=JobState.RUNNING, gpu=0, start=0)
    dying = JobView(spec=JobSpec("b", "b", JobClass.SCIENTIFIC), state=JobState.RUNNING, gpu=0, start=1,
                    killing="early-restart")
    pol = Recorder()
    view = ClusterView(now_s=1.0, gpus=[], jobs={"a": alive, "b": dying}, queue=[],
                       running={"a": alive, "b": dying})
    pol.decide(view, Changes(now_s=1.0, samples=[(alive, MemorySample(1.0, "a", 10.0, 1.0)),
                                                  (dying, MemorySample(1.0, "b", 10.0, 1.0))]))
    assert pol.seen == ["a"]


# ---- greedy ---------------------------------------------------------------------------------------
def test_greedy_backfill_lets_a_later_job_pass_the_blocked_head():
    jobs = batch(job("first", hint=4.0, runtime=1000.0), job("big", hint=70.0, peak=70.0, arrival=1.0),
                 job("late", hint=4.0, arrival=2.0))
    on = simulate(jobs, A100, policy="greedy", backfill=True)
    off = simulate(jobs, A100, policy="greedy", backfill=False)
    assert first_start(on, "late") < 10.0
    assert first_start(off, "late") >= first_start(off, "big")


# ---- censored LPT ranks ---------------------------------------------------------------------------
def _censored_batch():
    """7 x 1g slots: quick, the first "long" and five "mid" start at once; seven fillers of new
    families, then the second "long", wait. On 1g (speed-up 0.5): quick 10 s, mids and fillers
    200 s, long 1,000 s."""
    entries = [job("quick-000", runtime=5.0), job("long-000", runtime=500.0)]
    entries += [job(f"mid-{c}", runtime=100.0) for c in "abcde"]
    entries += [job(f"fill-{c}", runtime=100.0) for c in "abcdefg"]
    entries.append(job("long-001", runtime=500.0))
    return batch(*entries)


def test_a_family_whose_running_member_outlasts_the_learned_mean_ranks_ahead(monkeypatch):
    """rank="lpt": when the mids end (t ~ 200 s) long-000 has computed longer than every family
    learned so far, so long-001 takes the first free slot ahead of the fillers (new families,
    ranked at the mean). Without the censored rank it waits behind all seven fillers."""
    opts = dict(policy="migm", rank="lpt", tail_restart=False, compute_upgrade=False)
    r = simulate(_censored_batch(), A100, **opts)
    assert 190.0 <= first_start(r, "long-001") <= 215.0
    monkeypatch.setattr(migm_ranks, "FLOOR_OVER_MEAN", float("inf"))
    off = simulate(_censored_batch(), A100, **opts)
    assert first_start(off, "long-001") >= 400.0
    assert r.makespan_s < off.makespan_s


def test_one_long_member_does_not_speak_for_its_family():
    """The floor is the median of the running members' compute, not the longest: at t ~ 200 s
    w-000 has computed 199 s (above the learned mean, ~179 s) but w-001 only 119 s, so w-003
    keeps its FIFO place behind the fillers; it moves ahead at t ~ 400 s, when the median has
    passed the mean too. Ranked by the longest member it would start at t ~ 200 s."""
    entries = [job("quick-000", runtime=40.0), job("w-000", runtime=1000.0)]
    entries += [job(f"pre-{c}", runtime=100.0) for c in "abcde"]
    entries += [job("w-001", runtime=1000.0), job("w-002", runtime=1000.0)]
    entries += [job(f"fill-{c}", runtime=100.0) for c in "abcdefg"]
    entries.append(job("w-003", runtime=1000.0))
    r = simulate(batch(*entries), A100, policy="migm", rank="lpt", tail_restart=False, compute_upgrade=False)
    assert first_start(r, "w-001") < 100.0 and 190.0 <= first_start(r, "w-002") <= 215.0
    assert 390.0 <= first_start(r, "w-003") <= 420.0
