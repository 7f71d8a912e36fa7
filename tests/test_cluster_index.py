"""The cluster view's room index (`ClusterView.creatable_anywhere`, `creatable`, `lowest_fit`)
stays equal to a brute-force scan of the GPUs' layouts while layouts change.

Placement searches skip the cluster when `creatable_anywhere(name)` says no GPU has room for a
profile (on a busy cluster most searches end there), so a stale count would hide room.
"""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from migsched.core.state import ClusterView, GpuView
from migsched.hardware import get_model
from migsched.partition.layout import Instance, Layout
from migsched.partition.search import enumerate_layouts

A80 = get_model("A100-80GB")
A40 = get_model("A100-40GB")
MODELS = (A80, A80, A40, A80)
LAYOUTS = {m.name: enumerate_layouts(m) for m in (A80, A40)}


def _busy(layout: Layout, flags: list[bool]) -> Layout:
    insts = tuple(Instance(i.profile, i.start, busy=f) for i, f in zip(layout.instances, flags + [False] * 7))
    return Layout(layout.model, insts)


def _brute(view: ClusterView, name: str) -> bool:
    return any(g.mig and any(p.name == name for p in g.model.profiles) and g.layout.can_place(g.model.profile(name))
               for g in view.gpus)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(MODELS) - 1), st.integers(0, 10_000),
                          st.lists(st.booleans(), max_size=7)), max_size=25))
def test_the_room_index_follows_every_layout_change(changes):
    gpus = [GpuView(i, m, True, Layout(m, ())) for i, m in enumerate(MODELS)]
    view = ClusterView(now_s=0.0, gpus=gpus, queue=deque(), running={}, jobs={})
    names = sorted({p.name for m in (A80, A40) for p in m.profiles})
    for gpu, pick, flags in changes:
        model = MODELS[gpu]
        options = LAYOUTS[model.name]
        view.set_layout(gpu, _busy(options[pick % len(options)], flags))
        for name in names:
            assert view.creatable_anywhere(name) == _brute(view, name), (name, [g.layout for g in gpus])
        for p in A80.profiles:
            low = view.lowest_fit(p)
            want = next((g.index for g in gpus if g.mig and p in g.model.profiles and g.layout.can_place(p)), None)
            assert low == want, p.name
