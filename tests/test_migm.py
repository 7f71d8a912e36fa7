"""migm: OOM restart, early restart, fusion, fission, and a win over serial (small, fast cases)."""

from __future__ import annotations

import pytest

from migsched.policies import create_policy
from migsched.run import simulate

from migm_support import A100, batch, job


def test_registered_with_samples():
    pol = create_policy("migm")
    assert pol.name == "migm" and pol.wants_memory_samples


def test_rejects_unknown_options():
    with pytest.raises(ValueError):
        create_policy("migm", scheme="nope")


def test_oom_job_is_restarted_and_completes():
    jobs = batch(job("liar", hint=8.0, peak=15.0))
    # compute_upgrade=False: on an otherwise empty GPU the tail upgrade would give it 7g at once.
    r = simulate(jobs, A100, policy="migm", compute_upgrade=False)
    assert r.jobs_completed == 1
    assert r.oom_restarts == 1
    assert r.jobs[0].outcomes == ("oom", "ok")


def test_growing_job_restarted_early_wastes_less():
    llm = job("gen", cls="llm", hint=8.0, peak=30.0, runtime=300.0, memory="linear", start_gib=8.0)
    llm["reports_progress"] = True
    jobs = batch(llm)
    early = simulate(jobs, A100, policy="migm", compute_upgrade=False)
    late = simulate(jobs, A100, policy="migm", compute_upgrade=False, early_restart=False)
    assert early.jobs_completed == late.jobs_completed == 1
    assert early.early_restarts >= 1 and late.early_restarts == 0
    assert early.policy_summary["early_restarts_decided"] >= 1
    assert early.wasted_gpu_s < late.wasted_gpu_s


def test_fusion_of_idle_small_instances_for_a_big_job():
    # Seven 1g jobs fill the GPU; the 7g job arriving later needs the seven idle 1g instances fused
    # (with MIG off allowed it would run on the whole GPU instead: step 10, tests/test_mig_toggle.py).
    jobs = batch(job("small", count=7, hint=4.0, peak=4.0), job("big", hint=60.0, peak=60.0, arrival=1.0))
    r = simulate(jobs, A100, policy="migm", backfill=False, mig_off=False)
    assert r.jobs_completed == 8
    assert r.policy_summary["fusion"] >= 1
    assert r.reconfigurations >= 8  # seven destroys and one create at least


def test_fission_of_an_idle_large_instance_for_small_jobs():
    jobs = batch(job("big", hint=60.0, peak=60.0), job("small", count=3, hint=4.0, peak=4.0, arrival=500.0))
    r = simulate(jobs, A100, policy="migm")
    assert r.jobs_completed == 4
    assert r.policy_summary["fission"] >= 1


def test_beats_serial_on_small_jobs():
    jobs = batch(job("small", count=14, hint=4.0, peak=4.0))
    serial = simulate(jobs, A100, policy="serial")
    migm = simulate(jobs, A100, policy="migm")
    assert migm.jobs_completed == serial.jobs_completed == 14
    assert migm.makespan_s < serial.makespan_s / 2
    assert migm.energy_j < serial.energy_j


@pytest.mark.parametrize("scheme", ["head", "repartition-min"])
@pytest.mark.parametrize("backfill", [True, False])
def test_every_variant_completes_a_mixed_batch(scheme, backfill):
    jobs = batch(job("small", count=6), job("mid", count=2, hint=15.0, peak=15.0),
                 job("big", hint=35.0, peak=35.0), job("liar", hint=8.0, peak=15.0))
    r = simulate(jobs, A100, policy="migm", scheme=scheme, backfill=backfill)
    assert r.jobs_completed == len(jobs)


def test_job_larger_than_the_gpu_is_rejected():
    jobs = batch(job("huge", hint=200.0, peak=200.0), job("ok"))
    r = simulate(jobs, A100, policy="migm")
    assert r.jobs_completed == 1 and r.jobs_failed == 1


# ---- tail restart -----------------------------------------------------------------------------
def _tail_batch(short_runtime: float):
    """Six 1-slice jobs and a long progress-reporting one fill the seven 1g slices of an A100."""
    long = job("long-train", cls="ml-train", runtime=1000.0, speedup={1: 0.2, 2: 0.4, 3: 0.6, 4: 0.7, 7: 1.0})
    long["reports_progress"] = True
    short = job("short", count=6, runtime=short_runtime, speedup={1: 1.0})
    return batch(long, short)


def test_tail_restart_moves_a_long_job_off_its_1g_slice():
    jobs = _tail_batch(50.0)
    on = simulate(jobs, A100, policy="migm")
    off = simulate(jobs, A100, policy="migm", tail_restart=False)
    assert on.jobs_completed == off.jobs_completed == 7
    long_on = next(j for j in on.jobs if j.name == "long-train")
    assert long_on.outcomes == ("killed:preempt", "ok")
    assert on.policy_summary["tail_upgrades"] == 1
    assert off.policy_summary.get("tail_upgrades", 0) == 0
    # 5,000 s on the 1g slice without the restart; about 1,000 s on the 7g after it.
    assert on.makespan_s < 0.5 * off.makespan_s
    assert on.energy_j < off.energy_j


def test_tail_restart_leaves_a_nearly_done_job_alone():
    jobs = _tail_batch(4500.0)  # the slices free up when the long job is 90% done
    r = simulate(jobs, A100, policy="migm")
    long_r = next(j for j in r.jobs if j.name == "long-train")
    assert long_r.outcomes == ("ok",)
    assert r.policy_summary.get("tail_upgrades", 0) == 0
    assert r.jobs_completed == 7


def test_rank_option_validated_and_runs():
    with pytest.raises(ValueError):
        create_policy("migm", rank="nope")
    r = simulate(_tail_batch(50.0), A100, policy="migm", rank="class")
    assert r.jobs_completed == 7


def test_lpt_rank_starts_a_family_learned_long_before_short_ones():
    """rank="lpt" (default): once train-000 finished, the other train-* jobs jump the short ones."""
    entries = [job("train-000", runtime=60.0, speedup={1: 1.0}), job("cut", count=60, runtime=10.0, speedup={1: 1.0})]
    entries += [job(f"train-{i:03d}", runtime=60.0, speedup={1: 1.0}) for i in range(1, 5)]
    jobs = batch(*entries)
    lpt = simulate(jobs, A100, policy="migm", rank="lpt", tail_restart=False)
    fifo = simulate(jobs, A100, policy="migm", rank="fifo", tail_restart=False)
    assert lpt.jobs_completed == fifo.jobs_completed == 65
    assert lpt.makespan_s < fifo.makespan_s


def test_new_options_validated_and_run():
    assert create_policy("migm").rank == "lpt"
    for opts in ({"mid_upgrade": False}, {"reserve_after_s": 600.0}, {"alpha_prior": {"scientific": 0.3}},
                 {"blocked_online": True}):
        r = simulate(_tail_batch(50.0), A100, policy="migm", **opts)
        assert r.jobs_completed == 7


def test_blocked_restart_frees_a_gpu_a_long_small_job_holds():
    """A whole-GPU job waits behind a long job on a 1g slice: restart the long job (bigger, later)."""
    long = job("long-train", cls="ml-train", runtime=1000.0, speedup={1: 0.2, 2: 0.4, 3: 0.6, 4: 0.7, 7: 1.0})
    long["reports_progress"] = True
    big = job("big", hint=70.0, peak=70.0, runtime=100.0, speedup={1: 1.0}, arrival=1.0)
    jobs = batch(long, big)
    # spare_share=0: while "big" is still to come, "long-train" stays on its tight 1g slice.
    on = simulate(jobs, A100, policy="migm", blocked_wait_s=0.0, spare_share=0.0)
    off = simulate(jobs, A100, policy="migm", blocked_restart=False, spare_share=0.0)
    assert on.jobs_completed == off.jobs_completed == 2
    assert on.policy_summary.get("blocked_restarts", 0) == 1
    assert off.policy_summary.get("blocked_restarts", 0) == 0
    assert on.makespan_s < off.makespan_s


def test_a_queued_sibling_is_sized_by_the_memory_a_running_member_was_seen_using():
    """tr-b (no hint) is queued while tr-a (same family) is seen at 14.9 GiB: it used to get
    the class prior (a 1g.10gb on A100-80GB) and run out of memory there; the family's seen
    memory is now a floor for its queued members (`MemorySizing.saw`), from a running member's
    samples and from the peak of one that was stopped."""
    from migsched.core.events import (CreateInstance, ExitStatus, InstanceCreated, JobArrived, JobExited, JobStarted,
                                      Launch, MemorySample)
    from migsched.core.scheduler import SchedulerCore
    from migsched.core.backend import GpuInfo
    from migsched.jobs.model import JobClass, JobSpec
    from migsched.policies.registry import create_policy
    from migm_support import A100

    def spec(name, hint):
        return JobSpec(job_id=name, name=name, family="tr", job_class=JobClass.ML_TRAIN, hint_gib=hint,
                       command="true", argv=("true",), reports_progress=True)

    pol = create_policy("migm")
    core = SchedulerCore(pol, [GpuInfo(0, A100, "u0", True)])
    acts = core.handle([JobArrived(0.0, spec("tr-a", 15.0))], 0.0)
    core.handle([InstanceCreated(0.0, a.gpu, a.profile, a.start) for a in acts if isinstance(a, CreateInstance)]
                + [JobStarted(0.0, a.job_id, a.gpu, a.start, attempt=a.attempt) for a in acts if isinstance(a, Launch)], 0.0)
    core.handle([JobArrived(1.0, spec("tr-b", None))], 1.0)
    b = core.view.jobs["tr-b"]
    before = pol.need_mib(b)
    assert before < 10 * 1024  # the class prior: 12 % of the largest instance
    core.handle([MemorySample(5.0, "tr-a", 14.9 * 1024, 5.0, 0.01)], 5.0)
    assert pol.need_mib(b) >= 14.9 * 1024
    assert A100.profile(pol._tier_of(b)).memory_mib >= 14.9 * 1024
    # a member stopped before it ended (no sample reached the policy): its peak is the floor
    a = core.view.jobs["tr-a"]
    core.handle([JobExited(9.0, "tr-a", ExitStatus.KILLED, 30.0 * 1024, "stopped", a.attempt)], 9.0)
    assert pol.need_mib(b) >= 30.0 * 1024


def test_a_sample_that_is_not_a_number_does_not_become_a_family_floor():
    """`MemorySizing.saw` took a NaN as the family floor; no OOM could raise it after that."""
    from migsched.estimators import JobMemoryEstimator
    from migsched.jobs.model import JobClass, JobSpec
    from migsched.core.state import JobView
    from migsched.policies.migm.sizing import MemorySizing
    from migm_support import A100

    sizing = MemorySizing(A100, JobMemoryEstimator())
    a = JobView(spec=JobSpec("tr-a", "tr-a", JobClass.ML_TRAIN, family="tr"))
    b = JobView(spec=JobSpec("tr-b", "tr-b", JobClass.ML_TRAIN, family="tr"))
    sizing.saw(a, float("nan"))
    sizing.ran_out(a, 9.0 * 1024, 10.0 * 1024)
    assert sizing.need_mib(b) > 10.0 * 1024
