"""migm's EASY backfill (policies/migm/backfill.py): a job may start on slots reserved for a
blocked one only when it is projected to end before they drain.

Hand-built: one A100-40GB; a 1g job that runs ~2,000 s blocks a whole-GPU (39 GiB) job that
holds a reservation; a job of a family that has run before (20 s) arrives meanwhile.
"""

from __future__ import annotations

from collections import deque

import pytest

from migsched.core.events import MemorySample
from migsched.core.state import ClusterView, GpuView, JobState, JobView
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.jobs.model import JobClass, JobSpec
from migsched.partition.layout import Instance, Layout
from migsched.policies.migm import backfill
from migsched.policies.migm.placement import choose_reservation
from migsched.policies.migm.restarts import RunTimes
from migsched.policies.migm.survival import ClassDurations
from migsched.run import simulate

A40 = get_model("A100-40GB")


def _job(name, hint_gib, runtime_s, arrival_s):
    return {"name": name, "class": "ml-train", "hint_gib": hint_gib, "arrival_s": arrival_s,
            "reports_progress": True,
            "model": {"runtime_s": runtime_s, "peak_gib": hint_gib * 0.9, "memory": "constant", "startup_s": 1,
                      "speedup": {1: 1.0}}}


def _batch(quick_runtime_s: float):
    return load_jobs_dict({"version": 1, "jobs": [
        _job("quick-000", 4.0, 20.0, 0.0),          # teaches the family "quick" its run time
        _job("long", 4.0, 2000.0, 0.0),             # the 1g job in the whole-GPU job's way
        _job("big", 39.0, 100.0, 60.0),             # 7g.40gb: reserves the GPU, waits for "long"
        _job("quick-001", 4.0, quick_runtime_s, 120.0),
    ]}, require_model=True)


def _start(r, job_id):
    return next(j for j in r.jobs if j.job_id == job_id).runs[0].launched_s


def test_a_short_job_of_a_known_family_runs_in_the_reserved_slots_and_the_head_is_not_delayed():
    opts = {"spare_share": 0.0}  # keep "long" on its 1g slice (no spare compute while jobs arrive)
    on = simulate(_batch(20.0), A40, policy="migm", record_power=False, **opts)
    off = simulate(_batch(20.0), A40, policy="migm", record_power=False, easy_backfill=False, **opts)
    assert on.policy_summary.get("reservations", 0) >= 1
    assert _start(on, "quick-001") < 200.0                  # backfilled at once
    assert _start(off, "quick-001") >= _start(off, "big")   # without backfill: behind the head
    assert _start(on, "big") == pytest.approx(_start(off, "big"), abs=5.0)  # the head waits no longer


def test_a_job_whose_family_ran_long_does_not_backfill():
    # its family ran 1,500 s; "long" has ~2,300 s left when it arrives: it would end in time
    # by the family's figure, but not with the margin (2x) that run times of a family need
    batch = load_jobs_dict({"version": 1, "jobs": [
        _job("slow-000", 4.0, 1500.0, 0.0), _job("long", 4.0, 4000.0, 0.0),
        _job("big", 39.0, 100.0, 1600.0), _job("slow-001", 4.0, 1500.0, 1700.0)]}, require_model=True)
    r = simulate(batch, A40, policy="migm", record_power=False, spare_share=0.0)
    assert _start(r, "slow-001") >= _start(r, "big")


# ---- the estimates ----------------------------------------------------------------------------
def _running(job_id, slot_profile, launched_s, progress=None, now_s=1000.0):
    j = JobView(spec=JobSpec(job_id, job_id, JobClass.ML_TRAIN), state=JobState.RUNNING, gpu=0,
                start=slot_profile.starts[0], profile=slot_profile, launched_s=launched_s)
    if progress is not None:
        j.samples.append(MemorySample(now_s, job_id, 1024.0, now_s - launched_s, progress))
    return j


def _view(*jobs, now_s=1000.0):
    lay = Layout(A40, tuple(Instance(j.profile, j.start, busy=True) for j in jobs))
    gpu = GpuView(0, A40, True, lay, jobs={j.start: j.job_id for j in jobs})
    return ClusterView(now_s=now_s, gpus=[gpu], queue=deque(),
                       running={j.job_id: j for j in jobs}, jobs={j.job_id: j for j in jobs})


def test_the_drain_time_is_the_latest_projected_end_in_the_way_else_a_share_of_the_elapsed_time():
    one = A40.profile("1g.5gb")
    whole = frozenset(range(A40.memory_slices))
    half = _running("half", one, 0.0, progress=0.5)  # 1,000 s for half the work: 1,000 s left
    assert backfill.drain_s(_view(half), (0, whole), RunTimes()) == pytest.approx(1000.0, rel=0.01)
    blind = _running("blind", one, 200.0)  # no progress, no family, no class model: 800 s run
    assert backfill.drain_s(_view(blind), (0, whole), RunTimes()) == pytest.approx(backfill.LINDY_SHARE * 800.0)
    other = frozenset(s for s in whole if s not in set(one.slots(one.starts[0])))
    assert backfill.drain_s(_view(blind), (0, other), RunTimes()) == 0.0  # nothing in the way
    assert backfill.drain_s(_view(half), (1, whole), RunTimes()) is None  # a GPU the view lacks


def test_the_class_quantile_counts_running_jobs_as_censored():
    d = ClassDurations()
    for t in (100.0, 110.0, 120.0, 130.0):
        d.finished("ml-train", 1, t)
    naive = d.run_quantile_s("ml-train", 1, 0.8, 0.9)
    assert naive == pytest.approx(130.0)
    # four more still running past 1,000 s: the 80 % quantile is beyond what is known
    assert d.run_quantile_s("ml-train", 1, 0.8, 0.9, [(1, 1000.0)] * 4) is None
    # one censored early (at 105 s) leaves fewer at risk: the quantile moves up, not down
    assert d.run_quantile_s("ml-train", 1, 0.5, 0.9, [(1, 105.0)]) >= d.run_quantile_s("ml-train", 1, 0.5, 0.9)
    # scaled to 7 slices by 7^-0.9
    assert d.run_quantile_s("ml-train", 7, 0.8, 0.9) == pytest.approx(130.0 * 7 ** -0.9)
    assert ClassDurations().run_quantile_s("ml-train", 1, 0.8, 0.9) is None  # no runs


def test_a_queued_job_is_projected_from_its_family_else_its_class_else_not_at_all():
    times = RunTimes()
    one = A40.profile("1g.5gb")
    fam = JobView(spec=JobSpec("f-001", "f-001", JobClass.ML_TRAIN))
    view = _view()
    assert backfill.run_s(view, fam, one, times) is None
    for k in range(3):
        times.classes.finished("ml-train", 1, 200.0 + k)
    assert backfill.run_s(view, fam, one, times) == pytest.approx(202.0)  # the class's runs
    times.compute["f"] = {1: 50.0}
    assert backfill.run_s(view, fam, one, times) == pytest.approx(50.0)   # its family's


@pytest.mark.parametrize("room_outside", [True, False])
def test_the_backfill_rule_is_asked_only_when_no_room_is_left_outside_the_reserved_slots(monkeypatch, room_outside):
    """A head that fits outside the reserved slots starts there: the reservation's slots stay
    draining and no drain time is projected (at 100,000 jobs on 1,000 GPUs those projections
    were 13 % of the run). Only when nothing outside fits may the rule open reserved slots."""
    from migsched.policies.migm.placement import Placement
    from migsched.policies.registry import create_policy
    pol = create_policy("migm")
    view = _view(_running("long", A40.profile("1g.5gb"), 0.0, progress=0.5))
    pol._init(view)
    res = (0, frozenset(range(A40.memory_slices)))
    pol._resv = {"big": ("7g.40gb", res)}
    asked, tried = [], []
    monkeypatch.setattr(backfill.BackfillPass, "allows", lambda self, j, p, r: asked.append(r) or True)

    def place(view, job, tight, reserved):
        tried.append(list(reserved))
        return Placement(0, 1, tight, "create") if room_outside or not reserved else None

    monkeypatch.setattr(pol, "_place", place)
    head = JobView(spec=JobSpec("quick", "quick", JobClass.ML_TRAIN))
    acts = pol._place_heads(view, A40, [("1g.5gb", head)])
    assert acts and acts[-1].job_id == "quick"
    if room_outside:
        assert asked == [] and tried == [[res]]
    else:
        assert asked == [res] and tried == [[res], []]


def test_a_head_that_found_no_place_is_not_searched_again_until_an_event(monkeypatch):
    """Within one burst (the calls after the policy's own actions at one instant) room only
    shrinks, so a failed head is not searched again; the next events start a new burst.
    (backfill=False: no reservation is made, which would start a new burst too.)"""
    from migsched.core.policy import Changes
    from migsched.policies.registry import create_policy
    pol = create_policy("migm", backfill=False)
    view = _view(_running("long", A40.profile("1g.5gb"), 0.0, progress=0.5))
    pol._init(view)
    tried = []
    monkeypatch.setattr(pol, "_try_place", lambda view, model, job, tier: tried.append(job.job_id))
    heads = [("7g.40gb", JobView(spec=JobSpec("big", "big", JobClass.ML_TRAIN)))]
    assert pol._place_heads(view, A40, heads) == [] and tried == ["big"]
    pol.decide(view, Changes(view.now_s, first=False))   # after its own actions: same burst
    pol._place_heads(view, A40, heads)
    assert tried == ["big"]
    pol.decide(view, Changes(view.now_s))                # events (first call): room may be freed
    pol._place_heads(view, A40, heads)
    assert tried == ["big", "big"]


def test_a_drain_time_is_kept_across_passes_while_the_jobs_in_the_way_and_the_class_model_stay(monkeypatch):
    """The kept drain time counts down with the clock; new jobs in the way, a refitted class
    model or `REFIT_S` later, it is projected again."""
    from migsched.policies.migm.restarts import REFIT_S
    calls = []
    monkeypatch.setattr(backfill, "drain_s", lambda view, res, times: calls.append(view.now_s) or 1000.0)
    one = A40.profile("1g.5gb")
    res = (0, frozenset(range(A40.memory_slices)))
    times, drains = RunTimes(), {}

    def drain_at(now_s, *jobs):
        return backfill.BackfillPass(_view(*jobs, now_s=now_s), times, {}, drains)._drain_s(res)

    a = _running("a", one, 0.0)
    assert drain_at(100.0, a) == 1000.0 and calls == [100.0]
    assert drain_at(150.0, a) == pytest.approx(950.0) and calls == [100.0]     # kept, counted down
    b = _running("b", A40.profile("2g.10gb"), 0.0)
    b.start = 2
    assert drain_at(160.0, a, b) == 1000.0 and calls == [100.0, 160.0]         # another job in the way
    times.class_fit = {}                                                        # a refit
    assert drain_at(170.0, a) == 1000.0 and calls[-1] == 170.0
    assert drain_at(170.0 + REFIT_S, a) == 1000.0 and calls[-1] == 170.0 + REFIT_S


def _on(job_id, profile, start, progress=None, now_s=1000.0):
    j = JobView(spec=JobSpec(job_id, job_id, JobClass.ML_TRAIN), state=JobState.RUNNING, gpu=0,
                start=start, profile=profile, launched_s=0.0)
    if progress is not None:
        j.samples.append(MemorySample(now_s, job_id, 1024.0, now_s, progress))
    return j


def _view80(jobs, now_s=1000.0):
    lay = Layout(A80, tuple(Instance(j.profile, j.start, busy=True) for j in jobs))
    gpu = GpuView(0, A80, True, lay, jobs={j.start: j.job_id for j in jobs})
    return ClusterView(now_s=now_s, gpus=[gpu], queue=deque(),
                       running={j.job_id: j for j in jobs}, jobs={j.job_id: j for j in jobs})


A80 = get_model("A100-80GB")


@pytest.mark.parametrize("long_reports", [True, False])
def test_a_reservation_waits_where_the_jobs_in_the_way_end_first(long_reports):
    """A 1g.20gb blocked by one long 1g.20gb job (one compute slice in the way) and by pairs of
    1g jobs (two): by compute in the way it waits for the long one; with projected drains it
    waits for the pair that ends first (held-out generator, ML tuning seed 66: bert-base waited
    for a transformer's 1g.20gb while two 1g jobs beside it ended 238 s earlier). A job known
    only by its class has no known end here (`known_ends`), so it is not waited for on a guess."""
    one, two = A80.profile("1g.10gb"), A80.profile("1g.20gb")
    left = {0: 0.5, 1: 0.5, 2: 0.9, 3: 0.9, 4: 0.5, 5: 0.5}  # progress at t = 1,000 s
    jobs = [_on(f"j{s}", one, s, p) for s, p in left.items()]
    jobs.append(_on("long", two, 6, 0.1 if long_reports else None))
    view = _view80(jobs)
    times = RunTimes()
    assert choose_reservation(view, two, ()) == (0, frozenset({6, 7}))  # the least compute in the way
    known = backfill.known_ends(view, 0, times)
    assert known[2] == known[3] == pytest.approx(1000 / 0.9 - 1000, rel=0.01)
    assert (known[6] is None) is not long_reports
    assert backfill.drain_s(view, (0, frozenset({6, 7})), times) is not None  # the backfill's bound: a share of e
    got = choose_reservation(view, two, (), ends=lambda g: backfill.known_ends(view, g, times))
    assert got == (0, frozenset({2, 3}))
    assert choose_reservation(view, two, (), ends=lambda g: {}) == (0, frozenset({6, 7}))  # nothing known


def test_migm_reserves_where_the_jobs_in_the_way_are_projected_to_end_first():
    """The policy passes its projections to `choose_reservation` (the unit above)."""
    from migsched.core.jobqueue import JobQueue
    from migsched.core.policy import Changes
    from migsched.policies.registry import create_policy

    one, two = A80.profile("1g.10gb"), A80.profile("1g.20gb")
    left = {0: 0.5, 1: 0.5, 2: 0.9, 3: 0.9, 4: 0.5, 5: 0.5}
    jobs = [_on(f"j{s}", one, s, p) for s, p in left.items()] + [_on("long", two, 6, 0.1)]
    view = _view80(jobs)
    blocked = JobView(spec=JobSpec("blocked", "blocked", JobClass.ML_TRAIN, hint_gib=15.0), arrived_s=0.0)
    view.queue = JobQueue([blocked])
    view.jobs["blocked"] = blocked
    pol = create_policy("migm")
    assert pol.decide(view, Changes(1000.0, arrived=[blocked])).actions == []
    assert pol._resv["blocked"] == ("1g.20gb", (0, frozenset({2, 3})))


def test_each_gpu_of_a_layout_group_is_ranked_by_its_own_jobs():
    """GPUs with the same layout form one group, but their jobs end at different times: the
    reservation goes to the GPU whose jobs in the way end first, not to the group's lowest."""
    one = A80.profile("1g.10gb")
    jobs = [_on(f"a{s}", one, s, 0.05) for s in range(7)] + [_on(f"b{s}", one, s, 0.95) for s in range(7)]
    for j in jobs[7:]:
        j.gpu = 1
    lay = Layout(A80, tuple(Instance(one, s, busy=True) for s in range(7)))
    gpus = [GpuView(g, A80, True, lay, jobs={s: f"{'ab'[g]}{s}" for s in range(7)}) for g in (0, 1)]
    view = ClusterView(now_s=1000.0, gpus=gpus, queue=deque(), running={j.job_id: j for j in jobs},
                       jobs={j.job_id: j for j in jobs})
    assert len(view.groups) == 1
    two, times = A80.profile("1g.20gb"), RunTimes()
    assert choose_reservation(view, two, ())[0] == 0
    assert choose_reservation(view, two, (), ends=lambda g: backfill.known_ends(view, g, times))[0] == 1
