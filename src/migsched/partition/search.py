"""Search over the layouts of one GPU: enumeration, maximal layouts, fragmentation, best placement.

One GPU has at most 18 (profile, start) placements on the 8-slot family, so exhaustive search is
cheap; results are cached per (model, layout) so that a simulator calling `best_start` millions of
times pays for each distinct layout once.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass

from migsched.errors import UnknownNameError
from migsched.hardware.catalog import GpuModel, Profile, get_model
from migsched.partition.layout import Instance, Layout

Placed = tuple[tuple[str, int], ...]  # sorted (profile name, start) pairs: a layout's key


def _placements(model: GpuModel, media: bool) -> list[tuple[Profile, int]]:
    return [(p, s) for p in model.usable_profiles(media) for s in p.starts]


def _layout(model: GpuModel, key: Placed) -> Layout:
    return Layout(model, tuple(Instance(model.profile(n), s) for n, s in key))


def enumerate_layouts(model: GpuModel, media: bool = False) -> list[Layout]:
    """Every valid layout of `model` (the empty one included), `+me` profiles only if `media`."""
    return [_layout(model, k) for k in _all_keys(model.name, media)]


@functools.cache
def _all_keys(model_name: str, media: bool) -> tuple[Placed, ...]:
    """Every valid layout's key, sorted: the extensions of the empty layout."""
    return tuple(sorted(set(_extension_keys(model_name, (), media))))


def combination_of(layout: Layout) -> tuple[tuple[str, int], ...]:
    """The layout's profile multiset as sorted (name, count) pairs (placement forgotten)."""
    return tuple(sorted(Counter(i.profile.name for i in layout.instances).items()))


def placeable_combinations(model: GpuModel, media: bool = False) -> dict[tuple, Layout]:
    """Every non-empty placeable profile multiset, each with one canonical layout that places it.

    The canonical layout is the lexicographically smallest key among those that realise the
    multiset, which is deterministic across runs.
    """
    out: dict[tuple, Layout] = {}
    for key in _all_keys(model.name, media):
        if not key:
            continue
        lay = _layout(model, key)
        combo = combination_of(lay)
        if combo not in out or _rank(lay, media) < _rank(out[combo], media):
            out[combo] = lay
    return out


def _rank(layout: Layout, media: bool) -> tuple:
    # Prefer canonical layouts that are themselves placement-maximal (no single placement can be
    # added), then the lexicographically smallest key.
    can_grow = any(layout.fits(p, s) for p, s in _placements(layout.model, media))
    return (can_grow, layout.key)


def maximal_combinations(model: GpuModel, media: bool = False) -> dict[tuple, Layout]:
    """Placeable multisets to which no further instance can be added in any placement."""
    combos = placeable_combinations(model, media)
    names = [p.name for p in model.usable_profiles(media)]
    result = {}
    for combo, lay in combos.items():
        counts = Counter(dict(combo))
        bigger = False
        for n in names:
            c2 = counts.copy()
            c2[n] += 1
            if tuple(sorted(c2.items())) in combos:
                bigger = True
                break
        if not bigger:
            result[combo] = lay
    return result


def maximal_layouts(model: GpuModel, media: bool = False) -> list[Layout]:
    """One layout per maximal multiset, ordered by descending largest instance (what `layouts` prints)."""
    lays = list(maximal_combinations(model, media).values())
    return sorted(lays, key=lambda l: tuple(sorted(
        (-(i.profile.compute_slices * 10 + i.profile.memory_slices) for i in l.instances))))


@functools.cache
def _extension_keys(model_name: str, key: Placed, media: bool) -> tuple[Placed, ...]:
    """Every valid layout that contains the layout `key` (itself first)."""
    model = get_model(model_name)
    base = _layout(model, key)
    cands = [(p, s) for p, s in _placements(model, media) if (p.name, s) not in key]
    out: list[Placed] = []

    def dfs(idx: int, layout: Layout) -> None:
        out.append(layout.key)
        for j in range(idx, len(cands)):
            p, s = cands[j]
            if layout.fits(p, s):
                dfs(j + 1, layout.with_instance(p, s))

    dfs(0, base)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Fragmentation:
    """How much of a GPU a layout still leaves usable.

    Attributes:
        placeable: profiles that can still be added now.
        free_compute: compute slices not in any instance.
        free_memory_slots: memory slots not in any instance.
        stranded_compute: free compute slices no sequence of additions can ever use.
        stranded_memory_slots: free memory slots no single addition can use.
        stranded_memory_mib: memory of those stranded slots (whole-GPU memory / slot count each).
    """

    placeable: tuple[str, ...]
    free_compute: int
    free_memory_slots: int
    stranded_compute: int
    stranded_memory_slots: int
    stranded_memory_mib: int


def fragmentation(layout: Layout, media: bool = False) -> Fragmentation:
    """Measure what a layout strands (see `Fragmentation`)."""
    st = _stats(layout.model.name, layout.key, media)
    m = layout.model
    free_slots = len(layout.free_slots)
    stranded_slots = free_slots - st.reachable_slots
    return Fragmentation(
        placeable=st.placeable,
        free_compute=layout.free_compute,
        free_memory_slots=free_slots,
        stranded_compute=layout.free_compute - st.max_extra_compute,
        stranded_memory_slots=stranded_slots,
        stranded_memory_mib=stranded_slots * (m.memory_mib // m.memory_slices),
    )


# (name, start, slot bitmask, compute slices, max count, media) of every placement of a model.
_Row = tuple[str, int, int, int, int, bool]


@functools.cache
def _table(model_name: str, media: bool) -> tuple[_Row, ...]:
    """The model's placements as plain ints, built once: `_max_extra` tests millions of them."""
    return tuple((p.name, s, ((1 << p.memory_slices) - 1) << s, p.compute_slices, p.max_count, p.media)
                 for p, s in _placements(get_model(model_name), media))


# (model name, media) -> layout key -> most compute further instances can add to that layout.
_EXTRA: dict[tuple[str, bool], dict[Placed, int]] = {}


def _max_extra(model: GpuModel, base: Layout, media: bool) -> int:
    """The most compute slices that instances added to `base` can still use.

    The same figure as the maximum over `_extension_keys(base)` of their compute, but found by a
    memoised recursion over "add one more placement" on bitmasks: every layout is solved once per
    model, whichever layout the search came from, so a layout never seen before costs a few
    dictionary look-ups instead of a search through all its extensions (a valid layout's subsets
    are valid, so every extension is reachable one placement at a time, in any order).
    """
    memo = _EXTRA.setdefault((model.name, media), {})
    hit = memo.get(base.key)
    if hit is not None:
        return hit
    table = _table(model.name, media)
    cap_compute, cap_n = model.compute_slices, model.max_instances

    def go(key: Placed, mask: int, compute: int, counts: dict[str, int], has_media: bool) -> int:
        best = memo.get(key)
        if best is not None:
            return best
        best = 0
        if len(key) < cap_n:
            for name, s, m, c, cap, med in table:
                if mask & m or compute + c > cap_compute or counts.get(name, 0) >= cap or (med and has_media):
                    continue
                more = dict(counts)
                more[name] = more.get(name, 0) + 1
                k2 = tuple(sorted((*key, (name, s)), key=lambda x: x[1]))
                best = max(best, c + go(k2, mask | m, compute + c, more, has_media or med))
        memo[key] = best
        return best

    counts = dict(Counter(i.profile.name for i in base.instances))
    return go(base.key, base._used_mask, base.used_compute, counts,
              any(i.profile.media for i in base.instances))


def warm(model: GpuModel) -> None:
    """Solve every layout of `model` once (about 10 ms on the 8-slot family), at start-up, so that
    no placing decision pays for the first look at a layout (issue 9: a decision's max <= 10 ms).
    Solutions are kept per model name for the process, so only the first call per model costs;
    a model the catalogue does not name (built in a test) is skipped: the search looks it up."""
    try:
        get_model(model.name)
    except UnknownNameError:
        return
    for media in (False, True):
        _max_extra(model, Layout.empty(model), media)


@dataclass(frozen=True, slots=True)
class _Stats:
    placeable: tuple[str, ...]
    max_extra_compute: int
    reachable_slots: int
    largest_placeable: tuple[int, int]
    open_placements: int


@functools.cache
def _stats(model_name: str, key: Placed, media: bool) -> _Stats:
    model = get_model(model_name)
    base = _layout(model, key)
    max_extra = _max_extra(model, base, media)
    opens = [(p, s) for p, s in _placements(model, media) if base.fits(p, s)]
    reach = {slot for p, s in opens for slot in p.slots(s)}
    placeable = tuple(dict.fromkeys(p.name for p, _ in opens))
    largest = max(((p.compute_slices, p.memory_slices) for p, _ in opens), default=(0, 0))
    return _Stats(placeable, max_extra, len(reach), largest, len(opens))


def placement_score(layout: Layout, profile: Profile, start: int) -> tuple:
    """Score of adding `profile` at `start`: higher keeps more room for what may come.

    Compared lexicographically, after the placement:
      1. the largest profile still placeable (keeps slot 0 free for 4g/7g as long as possible);
      2. the most compute that further instances could still use (avoids stranding compute);
      3. the free memory slots that some single instance could still use (avoids stranding memory);
      4. the number of (profile, start) placements still open (keeps choice for small jobs);
      5. the higher start (fills small instances from the high end, as `nvidia-smi` users do).
    """
    after = layout.with_instance(profile, start)
    st = _stats(layout.model.name, after.key, profile.media)
    return (st.largest_placeable, st.max_extra_compute, st.reachable_slots, st.open_placements, start)


def best_start(layout: Layout, profile: Profile) -> int | None:
    """The legal start of `profile` with the highest `placement_score`, or None if none fits."""
    return _best_start_cached(layout.model.name, layout.key, profile.name)


@functools.cache
def _best_start_cached(model_name: str, key: Placed, profile_name: str) -> int | None:
    model = get_model(model_name)
    lay = _layout(model, key)
    prof = model.profile(profile_name)
    starts = lay.legal_starts(prof)
    if not starts:
        return None
    return max(starts, key=lambda s: placement_score(lay, prof, s))
