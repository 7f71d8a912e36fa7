"""Layouts and the MIG rules; enumeration of combinations; placement score; fragmentation."""

from __future__ import annotations

from collections import Counter

import pytest

from migsched.errors import InvalidLayoutError, MigschedError, PlacementError
from migsched.hardware import get_model
from migsched.partition import (
    Instance,
    Layout,
    enumerate_layouts,
    format_layout_items,
    fragmentation,
    maximal_combinations,
    maximal_layouts,
    parse_layout_items,
    placeable_combinations,
)

EIGHT_SLOT_MODELS = [
    "A100-40GB", "A100-80GB", "H100-80GB", "H100-94GB", "H100-96GB", "H200-141GB",
    "GH200-144GB", "B200-180GB",
]

# mig-hardware.md §2.4: the 28 maximal GI combinations of the 8-slot family, ignoring +me,
# copied row by row. "1g" = the one-memory-slice 1g, "1g.20gb" = the two-memory-slice 1g
# (named for the A100-80GB/H100-80GB family; matched to other models by geometry).
MAXIMAL_28 = [
    # Σ compute = 7 (17 combinations)
    "7g", "4g + 3g", "4g + 2g + 1g", "4g + 2g + 1g.20gb", "4g + 1g.20gb + 2×1g", "4g + 3×1g",
    "3g + 2g + 2g", "3g + 2g + 2×1g", "3g + 4×1g", "3×2g + 1g", "3×2g + 1g.20gb",
    "2×2g + 1g.20gb + 2×1g", "2×2g + 3×1g", "2g + 1g.20gb + 4×1g", "2g + 5×1g",
    "1g.20gb + 6×1g", "7×1g",
    # Σ compute < 7, maximal because memory is exhausted (11 combinations)
    "3g + 3g", "4g + 2×1g.20gb", "2g + 2g + 2×1g.20gb", "3g + 2g + 1g.20gb",
    "3g + 1g.20gb + 2×1g", "2g + 2×1g.20gb + 2×1g", "4×1g + 2×1g.20gb", "3g + 2×1g.20gb",
    "2g + 3×1g.20gb", "3×1g.20gb + 2×1g", "4×1g.20gb",
]
# label -> (compute slices, memory slices)
_GEOMETRY = {"7g": (7, 8), "4g": (4, 4), "3g": (3, 4), "2g": (2, 2), "1g": (1, 1),
             "1g.20gb": (1, 2)}

# mig-hardware.md §2.2 (nos, NOS-known-go): the four full A30 geometries.
A30_FULL = ["4g", "2×2g", "2g + 2×1g", "4×1g"]
_A30_GEOMETRY = {"4g": (4, 4), "2g": (2, 2), "1g": (1, 1)}


def _geometry_multiset(text: str, geometry: dict[str, tuple[int, int]]) -> Counter:
    out: Counter = Counter()
    for term in text.split(" + "):
        count, _, label = term.rpartition("×")
        out[geometry[label]] += int(count or 1)
    return out


def _combo_geometry(model, combo) -> Counter:
    out: Counter = Counter()
    for name, n in combo:
        p = model.profile(name)
        out[(p.compute_slices, p.memory_slices)] += n
    return out


def _freeze(c: Counter) -> frozenset:
    return frozenset(c.items())


# ---- the rules ----------------------------------------------------------------------------------
def test_of_builds_a_sorted_valid_layout():
    m = get_model("A100-80GB")
    lay = Layout.of(m, [("3g.40gb", 4), ("2g.20gb", 0), ("1g.10gb", 2)])
    assert str(lay) == "2g.20gb@0,1g.10gb@2,3g.40gb@4"
    assert lay.key == (("2g.20gb", 0), ("1g.10gb", 2), ("3g.40gb", 4))
    assert lay.used_slots == frozenset({0, 1, 2, 4, 5, 6, 7})
    assert lay.free_slots == frozenset({3})
    assert (lay.used_compute, lay.free_compute) == (6, 1)
    assert lay.is_valid() and lay.violations() == []


def test_real_dcgm_layout_is_valid():
    # mig-hardware.md §2.1: a real `-lgi` on A100-80GB shows 2g@0, 1g@2, 1g@3, 3g@4 (ISS-dcgm138).
    m = get_model("A100-80GB")
    lay = Layout.of(m, [("2g.20gb", 0), ("1g.10gb", 2), ("1g.10gb", 3), ("3g.40gb", 4)])
    assert lay.used_compute == 7 and lay.free_slots == frozenset()


def test_overlap_names_both_placements():
    m = get_model("A100-80GB")
    with pytest.raises(InvalidLayoutError) as err:
        Layout.of(m, [("3g.40gb", 4), ("2g.20gb", 4)])
    assert "2g.20gb@4" in str(err.value) and "3g.40gb@4" in str(err.value)
    assert "overlap" in str(err.value)


def test_illegal_start_lists_legal_starts():
    m = get_model("A100-80GB")
    bad = Layout(m, (Instance(m.profile("3g.40gb"), 2),))
    (msg,) = bad.violations()
    assert "3g.40gb@2" in msg and "0, 4" in msg


def test_counts_instances_and_compute_are_checked():
    # Eight 1g at 0..7: slot 7 is no legal start, 8 > max 7 of the profile, 8 > 7 instances,
    # 8 > 7 compute slices. Built without validation to see every rule fire.
    m = get_model("A100-80GB")
    p = m.profile("1g.10gb")
    bad = Layout(m, tuple(Instance(p, s) for s in range(8)))
    v = bad.violations()
    assert any("1g.10gb@7" in x and "cannot start" in x for x in v)
    assert any("exceeds the maximum of 7" in x for x in v)
    assert any("instances exceed the maximum of 7" in x for x in v)
    assert any("compute slices" in x for x in v)
    with pytest.raises(InvalidLayoutError):
        bad.validate()


def test_only_one_media_instance():
    m = get_model("A100-80GB")
    me = m.profile("1g.10gb+me")
    lay = Layout.of(m, [(me, 0)])
    assert not lay.fits(me, 1)
    assert not lay.can_place(me)
    bad = Layout(m, (Instance(me, 0), Instance(me, 1)))
    assert any("+me" in x for x in bad.violations())


def test_profile_of_another_model_is_rejected():
    m80, m40 = get_model("A100-80GB"), get_model("A100-40GB")
    bad = Layout(m80, (Instance(m40.profile("3g.20gb"), 0),))
    assert any("not a A100-80GB profile" in x for x in bad.violations())


def test_3g_at_0_blocks_4g_but_3g_at_4_does_not():
    # mig-hardware.md §2.3: "A 3g at 0 makes any 4g impossible; 4g + 3g = 4g@0 + 3g@4".
    m = get_model("A100-80GB")
    g4 = m.profile("4g.40gb")
    assert not Layout.of(m, [("3g.40gb", 0)]).can_place(g4)
    assert Layout.of(m, [("3g.40gb", 4)]).legal_starts(g4) == (0,)


def test_with_instance_error_names_the_conflict():
    m = get_model("A100-80GB")
    lay = Layout.of(m, [("3g.40gb", 4)])
    with pytest.raises(PlacementError) as err:
        lay.with_instance(m.profile("2g.20gb"), 4)
    assert "3g.40gb@4" in str(err.value) and "legal free starts now: [0, 2]" in str(err.value)


def test_release_mark_and_busy():
    m = get_model("A100-80GB")
    lay = Layout.of(m, [("3g.40gb", 4), ("2g.20gb", 0)]).mark(4, True)
    assert lay.instance_at(4).busy and [i.start for i in lay.idle()] == [0]
    with pytest.raises(PlacementError, match="a job still runs"):
        lay.release(4)
    assert str(lay.release(0)) == "3g.40gb@4"
    with pytest.raises(PlacementError, match="no GPU instance starts at memory slot 2"):
        lay.release(2)
    assert not lay.mark(4, False).instance_at(4).busy
    assert lay.key == lay.mark(4, False).key  # busy flags are not part of the key


def test_place_raises_when_nothing_fits():
    m = get_model("A100-80GB")
    full = Layout.of(m, [("7g.80gb", 0)])
    with pytest.raises(PlacementError, match="no room for 1g.10gb"):
        full.place(m.profile("1g.10gb"))


# ---- placement score ----------------------------------------------------------------------------
def test_place_3g_on_empty_goes_to_4():
    # mig-hardware.md §9 row 3: place 3g at 4 and keep 0..3 free while a 4g may still be wanted.
    m = get_model("A100-80GB")
    lay = Layout.empty(m).place(m.profile("3g.40gb"))
    assert lay.key == (("3g.40gb", 4),)
    assert lay.can_place(m.profile("4g.40gb"))


def test_place_2g_keeps_4g_placeable():
    m = get_model("A100-80GB")
    lay = Layout.empty(m).place(m.profile("2g.20gb"))
    assert lay.instances[0].start >= 4
    assert lay.can_place(m.profile("4g.40gb"))


def test_first_1g_leaves_slot_0_free_and_4g_placeable():
    m = get_model("A100-80GB")
    lay = Layout.empty(m).place(m.profile("1g.10gb"))
    assert 0 in lay.free_slots and lay.instances[0].start >= 4
    assert lay.can_place(m.profile("4g.40gb"))


def test_3g_then_4g_succeeds_where_first_fit_fails():
    # mig-hardware.md §2.3 (ISS-testinfra886): first-fit puts the 3g at 0 and the 4g then fails.
    for name in EIGHT_SLOT_MODELS:
        m = get_model(name)
        by_compute = {p.compute_slices: p for p in m.usable_profiles() if p.memory_slices >= 2}
        lay = Layout.empty(m).place(by_compute[3]).place(by_compute[4])
        assert lay.key == ((by_compute[4].name, 0), (by_compute[3].name, 4))


def test_seven_1g_fill_0_to_6():
    m = get_model("A100-80GB")
    lay = Layout.empty(m)
    for _ in range(7):
        lay = lay.place(m.profile("1g.10gb"))
    assert sorted(i.start for i in lay) == list(range(7))


def test_place_with_explicit_start():
    m = get_model("A100-80GB")
    assert Layout.empty(m).place(m.profile("3g.40gb"), start=0).key == (("3g.40gb", 0),)


# ---- fragmentation ------------------------------------------------------------------------------
def test_fragmentation_of_empty_gpu():
    m = get_model("A100-80GB")
    f = fragmentation(Layout.empty(m))
    assert set(f.placeable) == set(m.profile_names(media=False))
    assert (f.free_compute, f.free_memory_slots) == (7, 8)
    assert (f.stranded_compute, f.stranded_memory_slots, f.stranded_memory_mib) == (0, 0, 0)


def test_fragmentation_3g_plus_3g_strands_one_compute_slice():
    # mig-hardware.md §2.3: 3g + 3g uses all 8 memory slices and strands 1 compute slice.
    m = get_model("A100-80GB")
    f = fragmentation(Layout.of(m, [("3g.40gb", 0), ("3g.40gb", 4)]))
    assert f.placeable == ()
    assert (f.free_compute, f.stranded_compute) == (1, 1)
    assert (f.free_memory_slots, f.stranded_memory_slots) == (0, 0)


def test_fragmentation_7x1g_strands_slot_7():
    # mig-hardware.md §2.3: in 7 x 1g.10gb, memory slot 7 is unused.
    m = get_model("A100-80GB")
    f = fragmentation(Layout.of(m, [("1g.10gb", s) for s in range(7)]))
    assert (f.free_memory_slots, f.stranded_memory_slots) == (1, 1)
    assert f.stranded_memory_mib == m.memory_mib // 8
    assert f.stranded_compute == 0


def test_fragmentation_after_non_contiguous_releases():
    # mig-hardware.md §2.3 (ISS-dra933): 1g left at 0, 1 and 5 block every larger profile.
    m = get_model("A100-80GB")
    f = fragmentation(Layout.of(m, [("1g.10gb", 0), ("1g.10gb", 1), ("1g.10gb", 5)]))
    assert "4g.40gb" not in f.placeable and "3g.40gb" not in f.placeable
    assert "2g.20gb" in f.placeable


def test_fragmentation_strands_compute_when_only_memory_is_left():
    # 4g@0 + 1g.20gb@4 + 1g.20gb@6 leaves 1 compute slice and no memory slot.
    m = get_model("A100-80GB")
    f = fragmentation(Layout.of(m, [("4g.40gb", 0), ("1g.20gb", 4), ("1g.20gb", 6)]))
    assert (f.free_compute, f.stranded_compute, f.free_memory_slots) == (1, 1, 0)


# ---- enumeration --------------------------------------------------------------------------------
@pytest.mark.parametrize("model", EIGHT_SLOT_MODELS)
def test_77_placeable_and_28_maximal_combinations(model):
    # mig-hardware.md §2.4: 77 non-empty placeable multisets, 28 of them maximal.
    m = get_model(model)
    combos = placeable_combinations(m)
    maximal = maximal_combinations(m)
    assert len(combos) == 77
    assert len(maximal) == 28
    expected = {_freeze(_geometry_multiset(row, _GEOMETRY)) for row in MAXIMAL_28}
    assert len(expected) == 28
    assert {_freeze(_combo_geometry(m, c)) for c in maximal} == expected
    for combo, lay in combos.items():
        assert lay.is_valid()
        assert tuple(sorted(Counter(i.profile.name for i in lay).items())) == combo


def test_maximal_layouts_are_legal_and_cannot_grow():
    m = get_model("A100-80GB")
    lays = maximal_layouts(m)
    assert len(lays) == 28
    assert lays[0].key == (("7g.80gb", 0),)
    for lay in lays:
        assert lay.is_valid()
        for p in m.usable_profiles():
            assert not lay.can_place(p), (str(lay), p.name)


def test_a30_full_geometries():
    # mig-hardware.md §2.2: {4g}; {2g x 2}; {2g, 1g x 2}; {1g x 4}.
    m = get_model("A30-24GB")
    maximal = maximal_combinations(m)
    expected = {_freeze(_geometry_multiset(row, _A30_GEOMETRY)) for row in A30_FULL}
    assert {_freeze(_combo_geometry(m, c)) for c in maximal} == expected
    for lay in maximal_layouts(m):
        assert lay.used_compute == 4 and not lay.free_slots


def test_media_combinations_swap_at_most_one_1g_for_its_plus_me():
    # With +me, every maximal combination is a §2.4 one, or a §2.4 one with one one-slot 1g (or
    # one A30 2g) replaced by the +me variant (only one +me per GPU, §1.9).
    for name in ("A100-80GB", "A30-24GB"):
        m = get_model(name)
        plain = set(maximal_combinations(m))
        with_media = maximal_combinations(m, media=True)
        for combo, lay in with_media.items():
            assert lay.is_valid()
            counts = Counter(dict(combo))
            media = [n for n in counts if m.profile(n).media]
            assert len(media) <= 1 and all(counts[n] == 1 for n in media)
            if media:
                counts[media[0]] -= 1
                counts[media[0].removesuffix("+me")] += 1
                counts = +counts
            assert tuple(sorted(counts.items())) in plain, combo
        assert plain <= set(with_media)


def test_enumerate_layouts_are_all_valid_and_distinct():
    for name in ("A100-80GB", "A30-24GB"):
        m = get_model(name)
        lays = enumerate_layouts(m)
        keys = [lay.key for lay in lays]
        assert len(keys) == len(set(keys))
        assert () in keys
        assert all(lay.is_valid() for lay in lays)
        # every placeable combination appears among the enumerated layouts
        seen = {tuple(sorted(Counter(i.profile.name for i in lay).items())) for lay in lays}
        assert set(placeable_combinations(m)) <= seen


# ---- text form ----------------------------------------------------------------------------------
def test_parse_and_format_round_trip():
    m = get_model("A100-80GB")
    items = parse_layout_items(m, " 3g.40gb@4, 2g.20gb@0 ,1g.10gb@2,")
    assert [(p.name, s) for p, s in items] == [("3g.40gb", 4), ("2g.20gb", 0), ("1g.10gb", 2)]
    assert format_layout_items(items) == "3g.40gb@4,2g.20gb@0,1g.10gb@2"


@pytest.mark.parametrize("text", ["3g.40gb", "3g.40gb@x", "3g.40gb@", "@4"])
def test_parse_rejects_malformed_items(text):
    m = get_model("A100-80GB")
    with pytest.raises(MigschedError):  # InvalidLayoutError, or UnknownNameError for "@4"
        parse_layout_items(m, text)
