"""The partition engine's fast paths give the same answers as the plain searches they replace.

`search._max_extra` (memoised recursion on bitmasks) must equal the maximum compute over every
extension layout (`_extension_keys`, the DFS); `warm` must leave every layout solved, so that a
placing decision never solves one; `Layout.fits` compares profiles by name first but must still
count a same-named foreign profile apart. `choose_reservation`'s per-layout memo must pick what
a scan of every start picks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import pytest

from migsched.core.state import ClusterView, GpuView
from migsched.hardware import get_model
from migsched.partition import search
from migsched.partition.layout import Instance, Layout
from migsched.policies.migm.placement import choose_reservation

MODELS = ("A100-80GB", "A30-24GB")


def _dfs_extra(model, key, media) -> int:
    base = search._layout(model, key)
    exts = search._extension_keys(model.name, key, media)
    return max(sum(model.profile(n).compute_slices for n, _ in e) for e in exts) - base.used_compute


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("media", [False, True])
def test_max_extra_equals_the_search_over_all_extensions(name: str, media: bool) -> None:
    model = get_model(name)
    search._EXTRA.pop((model.name, media), None)  # solve from scratch, from each layout
    for key in search._all_keys(model.name, media):
        assert search._max_extra(model, search._layout(model, key), media) == _dfs_extra(model, key, media), key


def test_warm_solves_every_layout_before_any_decision() -> None:
    model = get_model("A100-80GB")
    search._EXTRA.pop((model.name, False), None)
    search.warm(model)
    solved = search._EXTRA[(model.name, False)]
    assert set(search._all_keys(model.name, False)) <= set(solved)


def test_building_a_cluster_view_warms_its_model() -> None:
    model = get_model("A100-80GB")
    search._EXTRA.pop((model.name, False), None)
    ClusterView(now_s=0.0, gpus=[GpuView(0, model, True, Layout.empty(model))], queue=deque(),
                running={}, jobs={})
    assert (model.name, False) in search._EXTRA


def test_fits_counts_a_same_named_foreign_profile_apart() -> None:
    model = get_model("A100-80GB")
    p = model.profile("1g.10gb")
    foreign = replace(p, max_count=1)  # same name, different profile
    one = Layout(model, (Instance(p, 0),))
    assert one.fits(foreign, 1)  # the instance at 0 is not `foreign`: its count is 0 < 1
    assert not Layout(model, (Instance(foreign, 0),)).fits(foreign, 1)


def _scan_reservation(view: ClusterView, profile):
    best = None
    for members in view.groups.values():
        g = view.gpus[min(members)]
        for s in profile.starts:
            slots = set(profile.slots(s))
            in_way = sum(i.profile.compute_slices for i in g.layout.instances if i.busy and set(i.slots) & slots)
            cand = (in_way, min(members), s)
            if best is None or cand < best:
                best = cand
    return best[1], frozenset(profile.slots(best[2]))


def test_reservation_memo_picks_what_a_full_scan_picks() -> None:
    model = get_model("A100-80GB")
    p1, p2, p3 = (model.profile(n) for n in ("1g.10gb", "2g.20gb", "3g.40gb"))
    layouts = [
        Layout(model, (Instance(p3, 0, True), Instance(p2, 4, False), Instance(p1, 6, True))),
        Layout(model, (Instance(p3, 4, True), Instance(p1, 0, True))),
        Layout(model, (Instance(p3, 0, False), Instance(p3, 4, True))),
    ]
    gpus = [GpuView(i, model, True, lay) for i, lay in enumerate(layouts * 2)]
    view = ClusterView(now_s=0.0, gpus=gpus, queue=deque(), running={}, jobs={})
    for name in ("4g.40gb", "7g.80gb", "3g.40gb", "2g.20gb"):
        prof = model.profile(name)
        assert choose_reservation(view, prof, ()) == _scan_reservation(view, prof)
        assert choose_reservation(view, prof, ()) == _scan_reservation(view, prof)  # memo hit
