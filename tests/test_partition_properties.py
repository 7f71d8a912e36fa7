"""Property tests: random operation sequences keep every layout legal and never touch busy work.

The legality check here is written out independently of `Layout.violations` (and also calls it),
so that a bug in the engine's own rule check cannot hide a bug elsewhere.
"""

from __future__ import annotations

import functools
from collections import Counter

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from migsched.errors import PlacementError, PlanError
from migsched.hardware import get_model
from migsched.partition import (
    Layout,
    apply_plan,
    best_start,
    enumerate_layouts,
    fission_options,
    fuse,
    plan,
    reclaim_options,
    split,
)

MODELS = ["A100-80GB", "A30-24GB", "H100-94GB"]
OPS = ["place", "place_at", "release", "mark", "fuse", "split", "reclaim"]

SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def assert_legal(lay: Layout) -> None:
    """Every MIG rule of mig-hardware.md §0/§2/§9, checked from first principles."""
    m = lay.model
    taken: set[int] = set()
    for inst in lay:
        assert inst.profile in m.profiles, inst
        assert inst.start in inst.profile.starts, inst
        slots = set(inst.slots)
        assert slots <= set(range(m.memory_slices)), inst
        assert not slots & taken, f"overlap at {inst} in {lay}"
        taken |= slots
    counts = Counter(inst.profile for inst in lay)
    assert all(n <= p.max_count for p, n in counts.items()), lay
    assert len(lay) <= m.max_instances
    assert sum(i.profile.compute_slices for i in lay) <= m.compute_slices
    assert sum(1 for i in lay if i.profile.media) <= 1
    assert [i.start for i in lay] == sorted(i.start for i in lay)
    assert lay.is_valid(), lay.violations()


def busy(lay: Layout) -> set[tuple[str, int]]:
    return {i.key for i in lay if i.busy}


@SETTINGS
@given(st.data())
def test_random_operations_keep_layouts_legal(data):
    m = get_model(data.draw(st.sampled_from(MODELS), label="model"))
    profiles = st.sampled_from(m.profiles)
    lay = Layout.empty(m)
    for _ in range(data.draw(st.integers(1, 20), label="steps")):
        op = data.draw(st.sampled_from(OPS), label="op")
        before = lay
        if op == "place":
            p = data.draw(profiles)
            if lay.can_place(p):
                start = best_start(lay, p)
                lay = lay.place(p, busy=data.draw(st.booleans()))
                assert lay.instance_at(start).profile == p
            else:
                with pytest.raises(PlacementError):
                    lay.place(p)
        elif op == "place_at":
            p = data.draw(profiles)
            s = data.draw(st.integers(-1, m.memory_slices))
            if lay.fits(p, s):
                lay = lay.with_instance(p, s)
            else:
                with pytest.raises(PlacementError):
                    lay.with_instance(p, s)
        elif op == "release" and len(lay):
            inst = data.draw(st.sampled_from(lay.instances))
            if inst.busy:
                with pytest.raises(PlacementError):
                    lay.release(inst.start)
            else:
                lay = lay.release(inst.start)
                assert inst.key not in lay.key
        elif op == "mark" and len(lay):
            inst = data.draw(st.sampled_from(lay.instances))
            lay = lay.mark(inst.start, data.draw(st.booleans()))
        elif op == "fuse" and len(lay) >= 2:
            starts = data.draw(
                st.lists(st.sampled_from([i.start for i in lay]), min_size=2, max_size=4, unique=True)
            )
            p = data.draw(profiles)
            try:
                lay = fuse(lay, starts, p)
            except PlacementError:
                pass
            else:
                freed = {s for st_ in starts for s in before.instance_at(st_).slots}
                (new,) = [i for i in lay if i.key not in before.key or i.start in starts]
                assert new.profile == p and set(new.slots) & freed
                assert not any(before.instance_at(s).busy for s in starts)
        elif op == "split" and len(lay):
            inst = data.draw(st.sampled_from(lay.instances))
            pool = []
            if not inst.busy:
                for p in m.profiles:
                    pool.extend(fission_options(lay, inst.start, p))
            parts = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4)) if pool else [
                (inst.profile, inst.start)]
            try:
                lay = split(lay, inst.start, parts)
            except PlacementError:
                pass
            else:
                assert not inst.busy
                new = [i for i in lay if set(i.slots) & set(inst.slots)]
                assert sorted((i.profile.name, i.start) for i in new) == sorted(
                    (p.name, s) for p, s in parts)
        elif op == "reclaim":
            p = data.draw(profiles)
            opts = reclaim_options(lay, p)
            for o in opts:
                assert all(not d.busy and d in lay.instances for d in o.destroy)
            assert opts == sorted(opts, key=lambda o: o.cost)
            if opts:
                o = data.draw(st.sampled_from(opts))
                target = lay.without([d.start for d in o.destroy]).with_instance(p, o.start)
                states = apply_plan(lay, plan(lay, target))
                for s in states:
                    assert_legal(s)
                    assert busy(lay) <= busy(s)
                assert states[-1].key == target.key
                lay = states[-1]
        event(f"{op}: {'changed' if lay != before else 'unchanged'}")
        assert_legal(lay)
        if op != "mark":
            assert busy(before) <= busy(lay), f"{op} lost busy work: {before} -> {lay}"


@functools.cache
def _layouts(model_name: str) -> tuple[Layout, ...]:
    return tuple(enumerate_layouts(get_model(model_name), media=True))


@SETTINGS
@given(st.data())
def test_plan_reaches_any_valid_target(data):
    name = data.draw(st.sampled_from(MODELS), label="model")
    a = data.draw(st.sampled_from(_layouts(name)), label="current")
    b = data.draw(st.sampled_from(_layouts(name)), label="target")
    common = sorted(set(a.key) & set(b.key))
    for _, start in data.draw(st.lists(st.sampled_from(common), unique=True) if common else st.just([])):
        a = a.mark(start, True)
    ops = plan(a, b)
    states = apply_plan(a, ops)
    assert states[-1].key == b.key
    for s in states:
        assert_legal(s)
        assert busy(a) <= busy(s)
    kinds = [op.op for op in ops]
    assert kinds == sorted(kinds, key=lambda k: k != "destroy"), "destroys come first"
    destroyed = {(op.profile.name, op.start) for op in ops if op.op == "destroy"}
    created = {(op.profile.name, op.start) for op in ops if op.op == "create"}
    assert destroyed == set(a.key) - set(b.key)
    assert created == set(b.key) - set(a.key)


@SETTINGS
@given(st.data())
def test_plan_refuses_to_destroy_busy_work(data):
    name = data.draw(st.sampled_from(MODELS), label="model")
    a = data.draw(st.sampled_from([lay for lay in _layouts(name) if len(lay)]), label="current")
    b = data.draw(st.sampled_from(_layouts(name)), label="target")
    gone = sorted(set(a.key) - set(b.key))
    if not gone:
        return
    _, start = data.draw(st.sampled_from(gone))
    with pytest.raises(PlanError, match="busy"):
        plan(a.mark(start, True), b)
