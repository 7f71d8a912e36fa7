"""`migm`'s run-time estimate for a family never seen, from its siblings (policies/migm/siblings.py).

Golden run (A100-40GB, SimCosts defaults: gi_create_s 0.12): 7 jobs fill the seven 1g slices at
0.12 s. "nw-100-000" (50 s of 1-slice work) ends at 50.12 and frees one slice; "other-000" (FIFO
first, 700 s on 1g) and "nw-400-001" (1,400 s on 1g) wait for it. Nothing else is learned by
then, so the mean rank of unknown families is nw-100's 50 s. With siblings, a scientific
nw-400 is expected at 50 x 400/100 = 200 s and goes first; without them (or as an ML job,
whose prior exponent is 0, so 50 s: a tie, FIFO) "other" does.
"""

from __future__ import annotations

import math

import pytest

from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.policies.migm.siblings import MAX_GROUP, Siblings, groups_of
from migsched.run import simulate

A40 = get_model("A100-40GB")


def _job(name, work_1g_s, cls):
    m = {"runtime_s": work_1g_s / 7, "peak_gib": 3.0, "power_w": 100.0, "memory": "constant",
         "startup_s": 0.0, "speedup": {"1": 1 / 7, "7": 1.0}}
    return {"name": name, "class": cls, "hint_gib": 3.0, "model": m}


def _batch(cls):
    js = [_job("nw-100-000", 50, cls)] + [_job(f"long-{i:03d}", 7000, cls) for i in range(6)]
    js += [_job("other-000", 700, cls), _job("nw-400-001", 1400, cls)]
    return load_jobs_dict({"version": 1, "jobs": js}, require_model=True)


def _starts(r):
    return {j.job_id: round(j.runs[0].launched_s, 6) for j in r.jobs}


@pytest.mark.parametrize("cls, siblings, first", [
    ("scientific", True, "nw-400-001"),
    ("scientific", False, "other-000"),
    ("ml-train", True, "other-000"),
])
def test_a_larger_sibling_of_a_learned_family_ranks_by_its_size(cls, siblings, first):
    r = simulate(_batch(cls), A40, policy="migm", siblings=siblings)
    s = _starts(r)
    second = "other-000" if first == "nw-400-001" else "nw-400-001"
    assert s[first] == pytest.approx(50.12)
    assert s[second] == pytest.approx(50.12 + (1400 if first == "nw-400-001" else 700))


def test_siblings_differ_in_exactly_one_number():
    (k1, v1), = groups_of("nw-16384")
    (k2, v2), = groups_of("nw-32768")
    assert k1 == k2 and (v1, v2) == (16384.0, 32768.0)
    a, b = groups_of("srad_v1-11000"), groups_of("srad_v2-16384")
    assert not {k for k, _ in a} & {k for k, _ in b}  # two numbers differ: different programs
    assert {k for k, _ in groups_of("srad_v1-11000")} & {k for k, _ in groups_of("srad_v1-15000")}
    q = {k for k, _ in groups_of("qwen2.5-0.5b-gen")} & {k for k, _ in groups_of("qwen2.5-7b-gen")}
    assert len(q) == 1  # the model size; the shared "2.5" is part of the name
    assert not {k for k, _ in groups_of("qwen2.5-7b-gen")} & {k for k, _ in groups_of("qwen2.5-7b-qlora")}
    assert groups_of("bert-squad-infer") == []


def test_the_estimate_scales_the_nearest_learned_sibling_by_the_prior_then_the_fitted_exponent():
    s = Siblings()
    for f in ("backprop-8M", "backprop-16M", "backprop-64M", "resnet-bs64", "resnet-bs512"):
        s.seen(f, "scientific" if f.startswith("backprop") else "ml-train")
    assert s.estimate_s("backprop-64M") is None  # nothing learned
    assert set(s.learned("backprop-8M", 15.0)) == {"backprop-16M", "backprop-64M"}
    assert s.estimate_s("backprop-64M") == pytest.approx(15.0 * 8)  # prior: linear in size
    list(s.learned("backprop-16M", 60.0))  # fitted: 4x per 2x, exponent 2
    assert s.estimate_s("backprop-64M") == pytest.approx(60.0 * 4 ** 2)
    list(s.learned("backprop-16M", 30.0))  # learned again: the time moves, exponent 1
    assert s.estimate_s("backprop-64M") == pytest.approx(30.0 * 4)
    list(s.learned("resnet-bs64", 560.0))
    assert s.estimate_s("resnet-bs512") == pytest.approx(560.0)  # ML prior exponent 0


def test_a_fitted_exponent_is_bounded():
    s = Siblings()
    for f in ("x-1", "x-2", "x-4"):
        s.seen(f, "scientific")
    list(s.learned("x-1", 1.0))
    list(s.learned("x-2", 1000.0))  # two noisy points: exponent ~10, kept at 3
    assert s.estimate_s("x-4") == pytest.approx(1000.0 * 2 ** 3)


def test_a_number_with_more_values_than_a_size_would_have_is_a_counter_and_not_used():
    s = Siblings()
    for i in range(MAX_GROUP + 1):
        s.seen(f"j{i}", "scientific")
    assert list(s.learned("j0", 10.0)) == []
    assert s.estimate_s("j1") is None
    few = Siblings()
    for i in range(1, MAX_GROUP + 1):
        few.seen(f"j{i}", "scientific")
    assert len(list(few.learned("j1", 10.0))) == MAX_GROUP - 1
    assert few.estimate_s("j2") == pytest.approx(20.0) and math.isfinite(few.estimate_s("j32"))


def test_a_group_that_turns_out_to_be_a_counter_stops_estimating():
    s = Siblings()
    s.seen("j1", "scientific")
    s.seen("j2", "scientific")
    list(s.learned("j1", 10.0))
    assert s.estimate_s("j2") == pytest.approx(20.0)
    for i in range(3, MAX_GROUP + 3):  # online: more values arrive later
        s.seen(f"j{i}", "scientific")
    assert s.estimate_s("j2") is None


def test_the_nearest_learned_sibling_in_log_size_is_scaled():
    import numpy as np
    s = Siblings()
    pts = {1: 10.0, 2: 40.0, 100: 1000.0}
    for v in (*pts, 90):
        s.seen(f"x-{v}", "scientific")
    for v, t in pts.items():
        list(s.learned(f"x-{v}", t))
    e = np.polyfit(np.log(list(pts)), np.log(list(pts.values())), 1)[0]
    assert s.estimate_s("x-90") == pytest.approx(1000.0 * 0.9 ** e)  # from x-100, not x-2


def test_a_group_that_becomes_a_counter_hands_back_the_families_it_had_ranked():
    s = Siblings()
    for i in (1, 2, 3):
        s.seen(f"j{i}", "scientific")
    s.learned("j1", 10.0)
    dropped = []
    for i in range(4, MAX_GROUP + 3):
        dropped += s.seen(f"j{i}", "scientific")
    assert set(dropped) >= {"j2", "j3"} and s.estimate_s("j2") is None


def test_siblings_are_re_ranked_when_a_time_moves_not_on_every_run():
    s = Siblings()
    for f in ("x-1", "x-2"):
        s.seen(f, "scientific")
    assert s.learned("x-1", 10.0) == ["x-2"]   # new to the group
    assert s.learned("x-1", 10.5) == []        # another run, 5 % off: no re-rank
    assert s.learned("x-1", 20.0) == ["x-2"]   # moved by more than RERANK_MOVE
    assert s.estimate_s("x-2") == pytest.approx(40.0)


def test_two_names_with_the_same_value_keep_their_own_times():
    s = Siblings()
    for f in ("x-7", "x-007", "x-14"):
        s.seen(f, "ml-train")
    s.learned("x-7", 10.0)
    s.learned("x-007", 100.0)
    s.learned("x-7", 50.0)
    (key, _), = groups_of("x-14")
    assert s._groups[key].known == {"x-7": (math.log(7), 50.0), "x-007": (math.log(7), 100.0)}


def test_a_number_too_large_for_a_float_is_no_size():
    assert groups_of("y-" + "9" * 400) == []


def test_a_resumed_runs_running_jobs_join_their_sibling_groups():
    # On --resume the running jobs come only in `restored`: their families must be known to the
    # sibling index, or their completion would teach no sibling.
    from migsched.core.policy import Changes
    from migsched.core.state import ClusterView, GpuView, JobState, JobView
    from migsched.jobs.model import JobClass, JobSpec
    from migsched.partition.layout import Layout
    from migsched.policies.registry import create_policy
    pol = create_policy("migm")
    running = JobView(spec=JobSpec("nw-16384-000", "nw-16384-000", JobClass.SCIENTIFIC, hint_gib=2.0))
    running.state = JobState.RUNNING
    gpus = [GpuView(0, A40, True, Layout.empty(A40))]
    view = ClusterView(0.0, gpus, [], {running.job_id: running}, {running.job_id: running}, more_arrivals=False)
    pol.decide(view, Changes(0.0, restored=[running], started=[running]))
    assert pol.siblings._of["nw-16384"]
