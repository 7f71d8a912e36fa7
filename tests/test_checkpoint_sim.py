"""Golden simulations of checkpoint-aware moves, computed by hand (docs/checkpoint.md).

Costs: creates and destroys 1 s each, no jitter. The job: 100 s on 7g, speed 0.25 on one compute
slice and linear up to 1.0 on seven (so 0.5 on three), startup 2 s, 4 GiB, dynamic power 100 W;
`checkpoint: {grace_s: 30, resume_s: 5}`. The policy (`fakes.MovePolicy`) starts it on one
instance at slot 0 and, at `at_s`, checkpoints it and runs it again on another.
"""

from __future__ import annotations

import math

import pytest

from fakes import MovePolicy
from migsched.backends.sim import SimCosts
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.run import simulate

A40 = get_model("A100-40GB")  # idle 55 W, max 400 W, 108 SMs (98 on 7g, 42 on 3g, 14 on 1g)
COSTS = SimCosts(gi_create_s=1.0, gi_destroy_s=1.0, kill_s=0.5, runtime_jitter=0.0)


def job(save_s=None, checkpoint=True):
    model = {"runtime_s": 100, "speedup": {1: 0.25}, "startup_s": 2, "peak_gib": 4, "power_w": 100}
    if save_s is not None:
        model["checkpoint_save_s"] = save_s
    entry = {"name": "a", "class": "ml-train", "model": model}
    if checkpoint:
        entry["checkpoint"] = {"grace_s": 30, "resume_s": 5}
    return load_jobs_dict({"version": 1, "jobs": [entry]})


def power_w(compute_slices, sm_count):
    """docs/energy-model.md: min(power_w * speed_here / speed_whole, (max - idle) * sm_here / sm_whole)."""
    alpha = math.log(1.0 / 0.25) / math.log(7)  # compute-boundness
    speed_whole = (108 / 98) ** alpha  # MIG off: all 108 SMs
    speed = 0.25 + 0.75 * (compute_slices - 1) / 6
    return min(100 * speed / speed_whole, (400 - 55) * sm_count / 108)


P1, P3, P7 = power_w(1, 14), power_w(3, 42), power_w(7, 98)


def test_a_move_to_a_larger_instance_keeps_the_work_done_and_pays_save_and_resume():
    policy = MovePolicy("1g.5gb", "7g.40gb", at_s=103)
    r = simulate(job(save_s=3), A40, policy=policy, costs=COSTS)
    # 1g ready at 1, startup to 3, 400 s of work at 0.25; at 103 a quarter is done; saved by 106.
    # destroy 106->107, create 7g 107->108, startup to 110, resume to 115, 75 s left at 1.0 -> 190.
    assert r.makespan_s == pytest.approx(190.0)
    assert r.jobs[0].outcomes == ("killed:move", "ok")
    a = policy.view.jobs["a"]
    assert a.attempts[0].saved_progress == pytest.approx(0.25) and a.moves == 1
    # power: 1g from 3 to the exit at 106 (the save computes), 7g from 110 (the resume) to 190
    assert r.energy_j == pytest.approx(55 * 190 + P1 * 103 + P7 * 80)
    assert r.wasted_gpu_s == 0.0


def test_a_move_to_a_smaller_instance_continues_at_the_smaller_speed():
    policy = MovePolicy("7g.40gb", "3g.20gb", at_s=43)
    r = simulate(job(), A40, policy=policy, costs=COSTS)  # save: min(resume_s, grace_s) = 5 s
    # 7g ready at 1, work from 3; at 43 40% is done; saved by 48. destroy 48->49, create 3g
    # 49->50, startup to 52, resume to 57, 60 s of work left at 0.5 = 120 s -> 177.
    assert r.makespan_s == pytest.approx(177.0)
    assert policy.view.jobs["a"].attempts[0].saved_progress == pytest.approx(0.4)
    assert r.energy_j == pytest.approx(55 * 177 + P7 * 45 + P3 * 125)


def test_a_save_longer_than_the_grace_period_is_killed_and_restarts_from_zero():
    policy = MovePolicy("1g.5gb", "7g.40gb", at_s=103)
    r = simulate(job(save_s=40), A40, policy=policy, costs=COSTS)
    # SIGKILL at 103 + 30 = 133, nothing saved: destroy to 134, create to 135, startup to 137,
    # the whole 100 s again (no resume cost) -> 237.
    assert r.makespan_s == pytest.approx(237.0)
    a = policy.view.jobs["a"]
    assert a.attempts[0].saved_progress is None and a.saved_progress is None and a.moves == 0
    assert r.energy_j == pytest.approx(55 * 237 + P1 * 130 + P7 * 100)
    assert r.wasted_gpu_s == pytest.approx((133 - 1) * 1 / 7)


def test_a_plain_kill_of_a_checkpointable_job_restarts_it_from_zero():
    policy = MovePolicy("1g.5gb", "7g.40gb", at_s=103, checkpoint=False)
    r = simulate(job(save_s=3), A40, policy=policy, costs=COSTS)
    # killed at 103 + 0.5: destroy to 104.5, create to 105.5, startup to 107.5, 100 s -> 207.5
    assert r.makespan_s == pytest.approx(207.5)
