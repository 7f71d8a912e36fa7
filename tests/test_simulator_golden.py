"""Golden simulations, small enough to compute by hand (docs/simulator.md, docs/energy-model.md).

Figures used throughout, from gpus.yaml (A100-40GB) and SimCosts' defaults:
    idle_w = 55, max_w = 400, dynamic range 345 W; 108 SMs with MIG off, 98 on 7g, 14 on 1g;
    gi_create_s = 0.12, gi_destroy_s = 0.11 (serialised per GPU), kill_s = 0.5,
    sample_interval_s = 2.
Power: P_job = min(power_w * speed_here / speed_whole, 345 * sm_here / 108), idle paid by every GPU
from 0 to the makespan, no dynamic power during startup.
"""

from __future__ import annotations

import math

import pytest

from migsched.backends.sim import SimCosts
from migsched.backends.sim.costs import compute_boundness, speed_on
from migsched.backends.sim.energy import job_power_w
from migsched.core.events import Kill, KillReason
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.policies.greedy import GreedyPolicy
from migsched.run import simulate

A40 = get_model("A100-40GB")
REL = 1e-9
CAP_1G = 345 * 14 / 108  # 44.7222... W: a 1g instance's share of the dynamic range


def jobs(*entries):
    return load_jobs_dict({"version": 1, "jobs": list(entries)}, require_model=True)


def job(name, runtime_s, *, speedup=None, startup_s=0.0, power_w=100.0, peak_gib=4.0, hint_gib=None,
        arrival_s=0.0, count=1, memory="constant", cls="scientific", reports_progress=False):
    m = {"runtime_s": runtime_s, "peak_gib": peak_gib, "power_w": power_w, "memory": memory}
    if speedup is not None:
        m["speedup"] = speedup
    if startup_s is not None:
        m["startup_s"] = startup_s
    e = {"name": name, "class": cls, "count": count, "arrival_s": arrival_s, "model": m,
         "reports_progress": reports_progress}
    if hint_gib is not None:
        e["hint_gib"] = hint_gib
    return e


def ends(result):
    return {j.job_id: j.finished_s for j in result.jobs}


# ---- serial (MIG off) ------------------------------------------------------------------------
def test_serial_two_constant_jobs():
    # speedup {1: 1.0}: alpha = ln(1/1)/ln 7 = 0, so MIG off runs at speed 1.0 (no SM gain).
    # a: launched 0, startup 2, computes 100 s -> ends 102.
    # b: launched 102, startup 2, computes 50 s -> ends 154.
    # energy = 55 W * 154 s + 100 W * (100 + 50) s = 8470 + 15000 = 23470 J
    # (P_job = min(100 * 1/1, 345 * 108/108) = 100: the cap does not bind).
    r = simulate(jobs(job("a", 100, speedup={1: 1.0}, startup_s=2), job("b", 50, speedup={1: 1.0}, startup_s=2)),
                 A40, policy="serial")
    assert ends(r) == {"a": pytest.approx(102.0, rel=REL), "b": pytest.approx(154.0, rel=REL)}
    assert r.makespan_s == pytest.approx(154.0, rel=REL)
    assert r.energy_j == pytest.approx(23470.0, rel=REL)
    assert [(s.label, s.t0_s) for s in r.timeline.jobs] == [("a", 0.0), ("b", 102.0)]
    assert r.reconfigurations == 0 and r.oom_restarts == 0 and r.wasted_gpu_s == 0


def test_serial_power_cap_binds():
    # power_w 500 on the whole GPU: P_job = min(500, 345) = 345, so the GPU draws 400 W = max_w.
    # ends at 2 + 100 = 102; energy = 55 * 102 + 345 * 100 = 5610 + 34500 = 40110 J.
    r = simulate(jobs(job("hot", 100, speedup={1: 1.0}, startup_s=2, power_w=500)), A40, policy="serial")
    assert r.makespan_s == pytest.approx(102.0, rel=REL)
    assert r.energy_j == pytest.approx(40110.0, rel=REL)
    assert max(w for _, w in r.power_series[0]) == pytest.approx(400.0, rel=REL)


def test_compute_bound_job_is_108_over_98_faster_with_mig_off():
    # speedup {7: 1.0} alone means c/7: alpha = ln(1 / (1/7)) / ln 7 = 1.
    # MIG off: speed (108/98)^1, so 108 s of 7g work take 108 * 98/108 = 98 s.
    # energy = 55 * 98 + 100 * 98 = 15190 J (P_job = power_w on the whole GPU).
    jb = jobs(job("cb", 108, startup_s=0))
    assert compute_boundness(jb[0].truth) == pytest.approx(1.0)
    serial = simulate(jb, A40, policy="serial")
    assert serial.makespan_s == pytest.approx(98.0, rel=REL)
    assert serial.energy_j == pytest.approx(15190.0, rel=REL)
    # The same job on a 7g instance (greedy, no hint -> largest profile): create 0.12 s + 108 s.
    # P_job = 100 * 1 / (108/98) = 90.74 W (cap 345 * 98/108 = 313 W does not bind), for 108 s:
    # 9800 J, the same dynamic energy as with MIG off. energy = 55 * 108.12 + 9800 = 15746.6 J.
    mig = simulate(jb, A40, policy="greedy")
    assert mig.makespan_s == pytest.approx(108.12, rel=REL)
    assert mig.energy_j == pytest.approx(55 * 108.12 + 9800.0, rel=REL)


def test_latency_bound_job_gains_nothing_with_mig_off():
    # {1: 1.0}: alpha = 0, (108/98)^0 = 1: 100 s on the whole GPU as on 7g.
    r = simulate(jobs(job("lb", 100, speedup={1: 1.0})), A40, policy="serial")
    assert r.makespan_s == pytest.approx(100.0, rel=REL)


def test_partly_compute_bound_job_gains_a_fraction():
    # {1: 0.5}: alpha = ln(1/0.5)/ln 7 = ln 2/ln 7 = 0.3562; MIG-off speed (108/98)^0.3562 = 1.0352.
    jb = jobs(job("mid", 100, speedup={1: 0.5}))
    alpha = math.log(2) / math.log(7)
    assert compute_boundness(jb[0].truth) == pytest.approx(alpha)
    r = simulate(jb, A40, policy="serial")
    assert r.makespan_s == pytest.approx(100 / (108 / 98) ** alpha, rel=REL)
    assert r.makespan_s == pytest.approx(96.6, abs=0.05)


def test_default_startup_comes_from_the_class():
    # no startup_s: ml-train starts in 8 s (DEFAULT_STARTUP_S), then 10 s of work.
    r = simulate(jobs(job("t", 10, speedup={1: 1.0}, startup_s=None, cls="ml-train")), A40, policy="serial")
    assert r.makespan_s == pytest.approx(18.0, rel=REL)


def test_serial_online_arrival_leaves_the_gpu_idle():
    # a: 0..10. b arrives at 50 and runs 50..60. energy = 55 * 60 + 100 * (10 + 10) = 5300 J.
    r = simulate(jobs(job("a", 10, speedup={1: 1.0}), job("b", 10, speedup={1: 1.0}, arrival_s=50)), A40,
                 policy="serial")
    assert ends(r) == {"a": pytest.approx(10.0), "b": pytest.approx(60.0)}
    assert r.energy_j == pytest.approx(5300.0, rel=REL)
    assert r.jobs[1].jct_s == pytest.approx(10.0)


# ---- greedy on 1g instances: GI creation latency, serialised per GPU ---------------------------
def test_greedy_two_jobs_on_1g_cap_binds():
    # hint 4 GiB -> 1g.5gb (4864 MiB). Both arrive at 0; creates are serialised on the GPU:
    # instance 1 ready at 0.12, instance 2 at 0.24. Startup 2, work 100 (speed 1 on 1g):
    # ends 102.12 and 102.24. Destroys: 102.12 + 0.11 = 102.23, then max(102.24, 102.23) + 0.11.
    # P_job = min(100 * 1/1, 345 * 14/108 = 44.72) = 44.72 W: the cap binds.
    # energy = 55 * 102.24 + 2 * 44.72 * 100 = 5623.2 + 8944.44 = 14567.64 J
    r = simulate(jobs(job("a", 100, speedup={1: 1.0}, startup_s=2, hint_gib=4, count=2)), A40, policy="greedy")
    assert ends(r) == {"a#0": pytest.approx(102.12, rel=REL), "a#1": pytest.approx(102.24, rel=REL)}
    assert r.makespan_s == pytest.approx(102.24, rel=REL)
    assert r.energy_j == pytest.approx(55 * 102.24 + 2 * CAP_1G * 100, rel=REL)
    insts = sorted((s.t0_s, s.label) for s in r.timeline.instances)
    assert insts == [(pytest.approx(0.12), "1g.5gb"), (pytest.approx(0.24), "1g.5gb")]
    destroy_1 = next(s for s in r.timeline.instances if s.t0_s == pytest.approx(0.12))
    assert destroy_1.t1_s == pytest.approx(102.23, rel=REL)
    assert r.reconfigurations == 4  # two creates, two destroys


def test_greedy_three_perfectly_scaling_jobs_on_1g_cap_does_not_bind():
    # {7: 1} -> speed 1/7 on 1g: 10 s of 7g work take 70 s. Ready at 0.12, 0.24, 0.36 (serialised
    # creates), so ends 70.12, 70.24, 70.36.
    # P_job = 100 * (1/7) / (108/98) = 12.96 W < 44.72 W; per job 12.96 * 70 = 907.41 J
    # (= 100 * 10 * 98/108). energy = 55 * 70.36 + 3 * 907.41 = 3869.8 + 2722.22 = 6592.02 J
    r = simulate(jobs(job("p", 10, hint_gib=4, count=3)), A40, policy="greedy")
    assert sorted(ends(r).values()) == pytest.approx([70.12, 70.24, 70.36], rel=REL)
    assert r.energy_j == pytest.approx(55 * 70.36 + 3 * 100 * 10 * 98 / 108, rel=REL)
    assert r.energy_j == pytest.approx(6592.02, abs=0.01)


def test_job_power_formula_directly():
    t = jobs(job("p", 10))[0].truth
    one_g = A40.profile("1g.5gb")
    whole = speed_on(t, A40, A40.whole_gpu)
    assert whole == pytest.approx(108 / 98)
    assert job_power_w(100, speed_on(t, A40, one_g), whole, A40, one_g) == pytest.approx(100 / 7 * 98 / 108)
    assert job_power_w(1000, 1.0, 1.0, A40, one_g) == pytest.approx(CAP_1G)
    assert job_power_w(1000, 1.0, 1.0, A40, A40.whole_gpu) == pytest.approx(345.0)


def test_greedy_oom_then_next_larger_profile():
    # linear memory 0 -> 8 GiB, hint 4 -> 1g.5gb (4864 MiB = 4.75 GiB): OOM at fraction 4.75/8
    # = 0.59375, i.e. at 0.12 + 59.375 = 59.495 (speed 1, no startup).
    # Then destroy (59.495 + 0.11 = 59.605), create 1g.10gb (59.605 + 0.12 = 59.725), 100 s -> 159.725.
    # wasted = 59.375 s * 1/7 of the GPU = 8.482 GPU-s.
    # energy = 55 * 159.725 + 44.72 * (59.375 + 100) = 8784.875 + 7127.60 = 15912.48 J
    r = simulate(jobs(job("m", 100, speedup={1: 1.0}, memory="linear", peak_gib=8, hint_gib=4)), A40,
                 policy="greedy")
    spans = [(s.label, s.size, s.t0_s, s.t1_s, s.outcome) for s in r.timeline.jobs]
    assert spans == [("m", 1, pytest.approx(0.12), pytest.approx(59.495, rel=REL), "oom"),
                     ("m", 2, pytest.approx(59.725, rel=REL), pytest.approx(159.725, rel=REL), "ok")]
    assert r.makespan_s == pytest.approx(159.725, rel=REL)
    assert r.oom_restarts == 1 and r.wasted_gpu_s == pytest.approx(59.375 / 7, rel=REL)
    assert r.energy_j == pytest.approx(55 * 159.725 + CAP_1G * 159.375, rel=REL)


# ---- static: setup creates take time too -----------------------------------------------------
def test_static_fixed_layout_three_jobs_two_instances():
    # layout 1g.5gb@0, 1g.5gb@1: setup creates ready at 0.12 and 0.24.
    # a on @0: 0.12..10.12; b on @1: 0.24..10.24; c reuses @0 when a ends: 10.12..20.12.
    # energy = 55 * 20.12 + 3 * 44.72 * 10 = 1106.6 + 1341.67 = 2448.27 J
    r = simulate(jobs(job("s", 10, speedup={1: 1.0}, hint_gib=4, count=3)), A40, policy="static",
                 layout="1g.5gb@0,1g.5gb@1")
    assert ends(r) == {"s#0": pytest.approx(10.12), "s#1": pytest.approx(10.24), "s#2": pytest.approx(20.12)}
    assert r.energy_j == pytest.approx(55 * 20.12 + 3 * CAP_1G * 10, rel=REL)
    assert r.reconfigurations == 0  # setup does not count


def test_gi_costs_can_be_overridden():
    # create 1 s each: ready at 1 and 2; work 10 s -> ends 11 and 12.
    r = simulate(jobs(job("a", 10, speedup={1: 1.0}, hint_gib=4, count=2)), A40, policy="greedy",
                 costs=SimCosts(gi_create_s=1.0, gi_destroy_s=1.0))
    assert sorted(ends(r).values()) == pytest.approx([11.0, 12.0], rel=REL)


# ---- memory samples and kills ----------------------------------------------------------------
class _SampleThenKillOnce(GreedyPolicy):
    """Greedy that records memory samples and kills each job at its first sample, once."""

    wants_memory_samples = True

    def __init__(self, kill: bool) -> None:
        super().__init__()
        self.kill = kill
        self.seen: list[tuple[float, str, float, float, float | None]] = []
        self.killed: set[str] = set()

    def on_memory_sample(self, view, job, sample):
        self.seen.append((sample.time_s, sample.job_id, sample.used_mib, sample.elapsed_s, sample.progress))
        if self.kill and job.job_id not in self.killed:
            self.killed.add(job.job_id)
            return [Kill(job.job_id, KillReason.EARLY_RESTART)]
        return []


def test_memory_samples_follow_the_curve():
    # hint 9 -> 1g.10gb, ready 0.12, startup 1 -> computes 1.12..11.12 (speed 1, 10 s).
    # Samples every 2 s after compute starts, on the 2 s grid that all jobs share, strictly before
    # the end: due 3.12 -> taken at 4, then 6, 8, 10 (12 is past the end).
    # Linear 0 -> 8 GiB: at 4 the job is 2.88/10 done -> 0.288 * 8192 MiB; elapsed since launch 3.88.
    pol = _SampleThenKillOnce(kill=False)
    r = simulate(jobs(job("s", 10, speedup={1: 1.0}, startup_s=1, memory="linear", peak_gib=8, hint_gib=9,
                          reports_progress=True)), A40, policy=pol)
    assert r.makespan_s == pytest.approx(11.12, rel=REL)
    assert [t for t, *_ in pol.seen] == pytest.approx([4.0, 6.0, 8.0, 10.0])
    assert [u for _, _, u, _, _ in pol.seen] == pytest.approx([0.288 * 8192, 0.488 * 8192, 0.688 * 8192, 0.888 * 8192])
    assert [e for *_, e, _ in pol.seen] == pytest.approx([3.88, 5.88, 7.88, 9.88])
    assert [p for *_, p in pol.seen] == pytest.approx([0.288, 0.488, 0.688, 0.888])


def test_kill_loses_the_work_and_restarts_from_scratch():
    # As above, killed at the first sample (4.0): the process exits kill_s = 0.5 later, at 4.5.
    # Greedy destroys the instance (4.5 + 0.11 = 4.61) and creates a new one (4.61 + 0.12 = 4.73);
    # the job starts again from zero: startup to 5.73, work to 15.73.
    # wasted = (4.5 - 0.12) * 1/7 = 0.6257 GPU-s.
    # Dynamic power only while computing: 1.12..4.0 (2.88 s) and 5.73..15.73 (10 s), 44.72 W (cap).
    # energy = 55 * 15.73 + 44.72 * 12.88 = 865.15 + 576.0 = 1441.15 J
    pol = _SampleThenKillOnce(kill=True)
    r = simulate(jobs(job("s", 10, speedup={1: 1.0}, startup_s=1, memory="linear", peak_gib=8, hint_gib=9)),
                 A40, policy=pol)
    spans = [(s.t0_s, s.t1_s, s.outcome) for s in r.timeline.jobs]
    assert spans == [(pytest.approx(0.12), pytest.approx(4.5, rel=REL), "killed:early-restart"),
                     (pytest.approx(4.73, rel=REL), pytest.approx(15.73, rel=REL), "ok")]
    assert r.makespan_s == pytest.approx(15.73, rel=REL)
    assert r.early_restarts == 1 and r.oom_restarts == 0
    assert r.wasted_gpu_s == pytest.approx(4.38 / 7, rel=REL)
    assert r.energy_j == pytest.approx(55 * 15.73 + CAP_1G * 12.88, rel=REL)
    assert r.jobs[0].outcomes == ("killed:early-restart", "ok")
