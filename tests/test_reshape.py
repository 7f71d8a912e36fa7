"""Fusion, fission, reclaim options and reconfiguration plans (paper.md §3.4, mig-hardware.md §2.3)."""

from __future__ import annotations

import pytest

from migsched.errors import PlacementError, PlanError
from migsched.hardware import get_model
from migsched.partition import (
    Layout,
    apply_plan,
    fission_options,
    fuse,
    plan,
    reclaim_options,
    split,
)

A40 = get_model("A100-40GB")
A80 = get_model("A100-80GB")


def P(name, model=A40):  # noqa: N802 - short profile lookup for readable tables
    return model.profile(name)


# ---- fusion ---------------------------------------------------------------------------------------
def test_fusion_example_from_paper():
    # paper.md §3.4: idle 1g.5gb at 4, 5, 6 (slot 7 free) become one 3g.20gb at 4.
    lay = Layout.of(A40, [("1g.5gb", 4), ("1g.5gb", 5), ("1g.5gb", 6)])
    assert fuse(lay, [4, 5, 6], P("3g.20gb")).key == (("3g.20gb", 4),)
    assert fuse(lay, [4, 5, 6], P("3g.20gb"), start=4).key == (("3g.20gb", 4),)


def test_fusion_keeps_other_instances():
    lay = Layout.of(A40, [("2g.10gb", 0), ("1g.5gb", 4), ("1g.5gb", 5)]).mark(0, True)
    out = fuse(lay, [4, 5], P("2g.10gb"))
    assert out.key == (("2g.10gb", 0), ("2g.10gb", 4))
    assert out.instance_at(0).busy and not out.instance_at(4).busy


def test_fusion_refuses_busy_instance():
    lay = Layout.of(A40, [("1g.5gb", 4), ("1g.5gb", 5), ("1g.5gb", 6)]).mark(5, True)
    with pytest.raises(PlacementError, match="a job still runs"):
        fuse(lay, [4, 5, 6], P("3g.20gb"))


def test_fusion_needs_two_instances():
    lay = Layout.of(A40, [("1g.5gb", 4)])
    with pytest.raises(PlacementError, match="at least two"):
        fuse(lay, [4], P("2g.10gb"))


def test_fusion_target_must_fit_the_freed_room():
    lay = Layout.of(A40, [("1g.5gb", 4), ("1g.5gb", 5), ("2g.10gb", 0)])
    with pytest.raises(PlacementError, match="leaves no room for 4g.20gb"):
        fuse(lay, [4, 5], P("4g.20gb"))
    # an explicit start outside the freed slots is refused: fusion merges, it does not move
    with pytest.raises(PlacementError, match="legal starts over the freed slots"):
        fuse(Layout.of(A40, [("1g.5gb", 4), ("1g.5gb", 5)]), [4, 5], P("2g.10gb"), start=0)


def test_fusion_of_missing_instance():
    lay = Layout.of(A40, [("1g.5gb", 4), ("1g.5gb", 5)])
    with pytest.raises(PlacementError, match="no GPU instance starts at memory slot 6"):
        fuse(lay, [4, 6], P("2g.10gb"))


# ---- fission --------------------------------------------------------------------------------------
def test_fission_example_from_paper():
    # paper.md §3.4: an idle 3g.20gb at 0 becomes 2g.10gb@0 + 1g.5gb@2 + 1g.5gb@3.
    lay = Layout.of(A40, [("3g.20gb", 0)])
    out = split(lay, 0, [(P("2g.10gb"), 0), (P("1g.5gb"), 2), (P("1g.5gb"), 3)])
    assert out.key == (("2g.10gb", 0), ("1g.5gb", 2), ("1g.5gb", 3))
    assert out.used_compute == 4  # the 3g held 3; the three parts need 4 of the 7


def test_fission_next_to_a_busy_instance():
    lay = Layout.of(A40, [("3g.20gb", 0), ("3g.20gb", 4)]).mark(4, True)
    out = split(lay, 0, [(P("2g.10gb"), 0), (P("1g.5gb"), 2), (P("1g.5gb"), 3)])
    assert out.used_compute == 7 and out.instance_at(4).busy


def test_fission_refuses_busy_instance():
    lay = Layout.of(A40, [("3g.20gb", 0)]).mark(0, True)
    with pytest.raises(PlacementError, match="a job still runs"):
        split(lay, 0, [(P("2g.10gb"), 0)])
    assert fission_options(lay, 0, P("1g.5gb")) == []


def test_fission_part_outside_the_slots():
    lay = Layout.of(A40, [("3g.20gb", 0)])
    with pytest.raises(PlacementError, match=r"outside: 1g.5gb@4"):
        split(lay, 0, [(P("2g.10gb"), 0), (P("1g.5gb"), 4)])


def test_fission_parts_must_keep_the_rules():
    lay = Layout.of(A40, [("3g.20gb", 0)])
    with pytest.raises(PlacementError, match="overlap"):
        split(lay, 0, [(P("2g.10gb"), 0), (P("1g.5gb"), 1)])
    with pytest.raises(PlacementError, match="at least one part"):
        split(lay, 0, [])


def test_fission_options():
    lay = Layout.of(A40, [("3g.20gb", 0), ("3g.20gb", 4)]).mark(4, True)
    assert [s for _, s in fission_options(lay, 0, P("1g.5gb"))] == [0, 1, 2, 3]
    assert [s for _, s in fission_options(lay, 0, P("2g.10gb"))] == [0, 2]
    assert fission_options(lay, 0, P("4g.20gb")) == [(P("4g.20gb"), 0)]


# ---- reclaim --------------------------------------------------------------------------------------
def test_reclaim_fusion_of_idle_1g():
    lay = Layout.of(A40, [("1g.5gb", 4), ("1g.5gb", 5), ("1g.5gb", 6), ("3g.20gb", 0)]).mark(0, True)
    (opt,) = reclaim_options(lay, P("3g.20gb"))
    assert (opt.start, opt.kind) == (4, "fusion")
    assert sorted(i.start for i in opt.destroy) == [4, 5, 6]
    assert opt.cost == (3, 3)


def test_reclaim_fission_of_an_idle_3g():
    lay = Layout.of(A40, [("3g.20gb", 0), ("3g.20gb", 4)]).mark(4, True)
    opts = reclaim_options(lay, P("2g.10gb"))
    assert opts and {o.kind for o in opts} == {"fission"}
    assert {o.start for o in opts} == {0, 2}
    assert all(o.destroy[0].start == 0 for o in opts)


def test_reclaim_never_destroys_busy_instances():
    lay = Layout.of(A40, [("3g.20gb", 0), ("3g.20gb", 4)]).mark(0, True).mark(4, True)
    assert reclaim_options(lay, P("1g.5gb")) == []


def test_reclaim_when_it_already_fits():
    lay = Layout.of(A40, [("3g.20gb", 4)])
    opts = reclaim_options(lay, P("2g.10gb"))
    assert opts[0].kind == "create" and opts[0].destroy == ()


def test_reclaim_for_count_rule():
    # Seven 1g: an eighth 1g-sized instance needs a slot *and* compute, so something must go.
    lay = Layout.of(A40, [("1g.5gb", s) for s in range(7)])
    opts = reclaim_options(lay, P("1g.10gb"))
    assert opts, "a 1g.10gb fits once two 1g.5gb are gone"
    best = opts[0]
    assert best.cost[0] <= 2
    after = lay.without([i.start for i in best.destroy]).with_instance(best.profile, best.start)
    assert after.is_valid()


# ---- plan -----------------------------------------------------------------------------------------
def test_plan_docstring_example():
    cur = Layout.of(A80, [("1g.10gb", 4), ("1g.10gb", 5), ("1g.10gb", 6)])
    ops = plan(cur, Layout.of(A80, [("3g.40gb", 4)]))
    assert [str(op) for op in ops] == [
        "destroy 1g.10gb@4", "destroy 1g.10gb@5", "destroy 1g.10gb@6", "create 3g.40gb@4"]


def test_plan_keeps_common_instances_and_creates_largest_first():
    cur = Layout.of(A80, [("3g.40gb", 4), ("1g.10gb", 0)]).mark(4, True)
    target = Layout.of(A80, [("3g.40gb", 4), ("2g.20gb", 0), ("1g.10gb", 2), ("1g.10gb", 3)])
    ops = plan(cur, target)
    assert [str(op) for op in ops] == [
        "destroy 1g.10gb@0", "create 2g.20gb@0", "create 1g.10gb@2", "create 1g.10gb@3"]
    states = apply_plan(cur, ops)
    assert states[-1].key == target.key
    assert all(s.instance_at(4).busy for s in states)


def test_plan_refuses_to_destroy_busy_instance():
    cur = Layout.of(A80, [("3g.40gb", 0)]).mark(0, True)
    with pytest.raises(PlanError, match="busy instance 3g.40gb@0"):
        plan(cur, Layout.of(A80, [("4g.40gb", 0)]))


def test_plan_refuses_other_models_and_invalid_targets():
    with pytest.raises(PlanError, match="A100-40GB"):
        plan(Layout.empty(A80), Layout.empty(A40))
    from migsched.partition import Instance

    bad = Layout(A80, (Instance(P("3g.40gb", A80), 2),))
    with pytest.raises(PlanError, match="invalid"):
        plan(Layout.empty(A80), bad)


def test_plan_identity_is_empty():
    lay = Layout.of(A80, [("4g.40gb", 0), ("3g.40gb", 4)])
    assert plan(lay, lay) == []
    assert apply_plan(lay, []) == [lay]
