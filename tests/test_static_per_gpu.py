"""`static` with a layout per GPU, and the static sweep's search over per-GPU mixes."""

from __future__ import annotations

import pytest

from fakes import Script, ScriptedBackend
from migsched.compare import best_static_layout, compare, planned_runs
from migsched.core.events import CreateInstance
from migsched.core.source import TraceSource
from migsched.errors import InvalidLayoutError, MigschedError
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.partition.per_gpu import format_layouts, layouts_for_gpus, split_layouts
from migsched.partition.search import maximal_layouts
from migsched.policies.registry import create_policy
from migsched.run import run, simulate
from migsched.static_sweep import MIX_MAX_GROUPS, MIX_MAX_PASSES, MIX_TOP_K, gpu_groups, mix_runs_bound

A80 = get_model("A100-80GB")
SMALL = "1g.10gb@0,1g.10gb@1,1g.10gb@2,1g.10gb@3,1g.10gb@4,1g.10gb@5,1g.10gb@6"
WHOLE = "7g.80gb@0"


def big_and_small():
    """One long job that only 7g.80gb holds and many short small ones: by design the best
    layouts differ per GPU (7g on one, seven 1g on the other). Every other uniform layout
    rejects the big job; 7g on both GPUs runs the small jobs two at a time."""
    jobs = [
        {"name": "big", "class": "llm", "hint_gib": 70,
         "model": {"runtime_s": 3000, "peak_gib": 68, "speedup": {7: 1.0}, "startup_s": 1}},
        {"name": "small", "class": "scientific", "count": 28, "hint_gib": 4,
         "model": {"runtime_s": 300, "peak_gib": 3, "speedup": {1: 0.9, 7: 1.0}, "startup_s": 1}},
    ]
    return load_jobs_dict({"version": 1, "jobs": jobs}, require_model=True)


# ---- the option ------------------------------------------------------------------------------------
def test_one_layout_per_gpu_parses_in_gpu_order_and_one_layout_means_every_gpu():
    two = layouts_for_gpus([A80, A80], f"3g.40gb@4,4g.40gb@0; {WHOLE}")
    assert [sorted(i.key for i in lay) for lay in two] == [sorted([("3g.40gb", 4), ("4g.40gb", 0)]), [("7g.80gb", 0)]]
    assert [str(lay) for lay in layouts_for_gpus([A80] * 3, WHOLE)] == [WHOLE] * 3
    assert [str(lay) for lay in layouts_for_gpus([A80] * 3, f"2× {WHOLE}; {SMALL}")] == [WHOLE, WHOLE, SMALL]
    assert split_layouts(f"2x {WHOLE}; {SMALL};") == [(2, WHOLE), (1, SMALL)]


@pytest.mark.parametrize("text, given", [(f"{WHOLE}; {WHOLE}", 2), (f"4x {WHOLE}", 4),
                                         (f"{WHOLE}; 2× {SMALL}; {WHOLE}", 4)])
def test_a_count_that_is_neither_one_nor_the_gpu_count_is_refused_naming_both(text, given):
    with pytest.raises(InvalidLayoutError, match=rf"gives {given} GPU layouts for 3 GPUs"):
        layouts_for_gpus([A80] * 3, text)
    assert len(layouts_for_gpus([A80] * 3, f"3x {WHOLE}")) == 3  # the GPU count itself is fine


def test_each_gpu_layout_is_checked_and_the_gpu_named():
    with pytest.raises(InvalidLayoutError, match="GPU 1: .*overlap"):
        layouts_for_gpus([A80, A80], f"{WHOLE}; 3g.40gb@0,4g.40gb@0")
    with pytest.raises(InvalidLayoutError, match="empty"):
        layouts_for_gpus([A80, A80], f"{WHOLE};; {WHOLE}")
    with pytest.raises(InvalidLayoutError, match="at least 1"):
        layouts_for_gpus([A80, A80], f"0x {WHOLE}")


def test_compare_refuses_a_wrong_count_before_any_simulation():
    calls = []
    with pytest.raises(MigschedError, match="gives 2 GPU layouts for 3 GPUs"):
        compare(big_and_small(), A80, 3, ["static"], layout=f"{WHOLE}; {SMALL}",
                progress=lambda label, done: calls.append(label))
    assert calls == []


def test_format_layouts_is_compact_and_reads_back():
    per_gpu = [WHOLE, WHOLE, SMALL]
    text = format_layouts(per_gpu)
    assert text == f"2× {WHOLE}; {SMALL}"
    assert [str(lay) for lay in layouts_for_gpus([A80] * 3, text)] == per_gpu
    assert format_layouts([WHOLE, WHOLE]) == WHOLE


# ---- the policy ------------------------------------------------------------------------------------
def test_static_lays_out_each_gpu_as_told():
    fake = ScriptedBackend([A80, A80], Script())
    jobs = big_and_small()[:3]
    r = run(TraceSource([j.spec for j in jobs]), create_policy("static", layout=f"{SMALL}; {WHOLE}"), fake)
    assert r.jobs_completed == 3
    creates = sorted((a.gpu, a.profile, a.start) for a in fake.executed if isinstance(a, CreateInstance))
    assert creates == sorted([(0, "1g.10gb", s) for s in range(7)] + [(1, "7g.80gb", 0)])


def test_a_per_gpu_layout_runs_the_big_job_on_the_gpu_that_holds_it():
    res = simulate(big_and_small(), A80, 2, policy="static", layout=f"{SMALL}; {WHOLE}")
    assert res.jobs_completed == 29
    big = next(j for j in res.jobs if j.name == "big")
    assert big.state == "done"


# ---- the sweep -------------------------------------------------------------------------------------
def test_the_sweep_finds_a_mix_that_beats_every_uniform_layout():
    jobs = big_and_small()
    uniform = [simulate(jobs, A80, 2, policy="static", layout=str(lay)) for lay in maximal_layouts(A80)]
    best_uniform = min(uniform, key=lambda r: (-r.jobs_completed, r.makespan_s))
    res, text, tried = best_static_layout(jobs, A80, 2)
    assert ";" in text, f"the sweep stayed uniform: {text}"
    assert res.jobs_completed == best_uniform.jobs_completed == 29
    assert res.makespan_s < best_uniform.makespan_s
    assert sorted(str(lay) for lay in layouts_for_gpus([A80, A80], text))[1] == WHOLE
    row = compare(jobs, A80, 2, ["static"]).row("static")
    assert row.layout == text and row.layout_per_gpu == tuple(str(l) for l in layouts_for_gpus([A80, A80], text))


def test_on_one_gpu_the_sweep_is_the_uniform_sweep():
    calls = []
    _, text, tried = best_static_layout(big_and_small(), A80, 1, progress=lambda label, done: calls.append(done))
    assert tried == len(maximal_layouts(A80)) == calls.count(True) == calls.count(False)
    assert ";" not in text


def test_the_extra_simulations_are_bounded_and_do_not_grow_with_the_gpu_count():
    assert mix_runs_bound(1) == 0
    assert mix_runs_bound(2) == MIX_MAX_PASSES * 2 * (MIX_TOP_K - 1)
    assert mix_runs_bound(8) == mix_runs_bound(1000) == MIX_MAX_PASSES * MIX_MAX_GROUPS * (MIX_TOP_K - 1)
    groups = gpu_groups(10)
    assert len(groups) == MIX_MAX_GROUPS and sorted(g for r in groups for g in r) == list(range(10))
    jobs = big_and_small()
    for gpus in (2, 6):
        calls = []
        _, text, tried = best_static_layout(jobs, A80, gpus, progress=lambda label, done: calls.append((label, done)))
        ends = [label for label, done in calls if done]
        assert len(ends) == tried == len([c for c in calls if not c[1]])  # progress sees each simulation
        assert len(maximal_layouts(A80)) < tried <= len(maximal_layouts(A80)) + mix_runs_bound(gpus)
        assert planned_runs(A80, ["static"], None, gpus) == len(maximal_layouts(A80)) + mix_runs_bound(gpus)
