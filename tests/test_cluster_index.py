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
        assert view.room_anywhere() == any(_brute(view, name) for name in names)
        for p in A80.profiles:
            low = view.lowest_fit(p)
            want = next((g.index for g in gpus if g.mig and p in g.model.profiles and g.layout.can_place(p)), None)
            assert low == want, p.name


def _brute_idle(view: ClusterView) -> tuple[int, int]:
    c = m = 0
    for g in view.gpus:
        if g.mig:
            idle = g.layout.idle()
            c += g.layout.free_compute + sum(i.profile.compute_slices for i in idle)
            m += len(g.layout.free_slots) + sum(i.profile.memory_slices for i in idle)
    return c, m


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=4, max_size=4),
       st.lists(st.tuples(st.integers(0, len(MODELS) - 1), st.integers(0, 10_000),
                          st.lists(st.booleans(), max_size=7)), max_size=25))
def test_the_idle_room_total_follows_every_layout_change(mig, changes):
    """`idle_room` (what `spare_compute` reads on each placement pass) equals the sum over the
    MIG GPUs of free room plus idle instances, busy flags included, MIG-off GPUs left out."""
    gpus = [GpuView(i, m, on, Layout(m, ())) for i, (m, on) in enumerate(zip(MODELS, mig))]
    view = ClusterView(now_s=0.0, gpus=gpus, queue=deque(), running={}, jobs={})
    assert view.idle_room() == _brute_idle(view)
    for gpu, pick, flags in changes:  # MIG-off GPUs too: their layouts must not count
        options = LAYOUTS[MODELS[gpu].name]
        view.set_layout(gpu, _busy(options[pick % len(options)], flags))
        assert view.idle_room() == _brute_idle(view), [g.layout for g in gpus]


def _split(model) -> tuple[list[Layout], list[Layout]]:
    """(layouts with no room for any profile, layouts with room for some), of `model`."""
    full = [lay for lay in LAYOUTS[model.name] if not any(lay.can_place(p) for p in model.profiles)]
    return full, [lay for lay in LAYOUTS[model.name] if any(lay.can_place(p) for p in model.profiles)]


SPLIT = {m.name: _split(m) for m in (A80, A40)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.booleans(), st.integers(0, 10_000)), max_size=30))
def test_room_anywhere_turns_off_when_every_gpu_is_full_and_back_on(changes):
    """`room_anywhere` (which ends a placement pass at once when no idle instance exists either)
    is False exactly while both GPUs hold layouts with no room, and True again once one has."""
    models = (A80, A40)
    gpus = [GpuView(i, m, True, Layout(m, ())) for i, m in enumerate(models)]
    view = ClusterView(now_s=0.0, gpus=gpus, queue=deque(), running={}, jobs={})
    assert view.room_anywhere()
    for gpu, full, pick in changes:
        model = models[gpu]
        options = SPLIT[model.name][0 if full else 1]
        view.set_layout(gpu, options[pick % len(options)])
        want = any(g.layout.can_place(p) for g in gpus for p in g.model.profiles)
        assert view.room_anywhere() == want, [g.layout for g in gpus]


def _brute_idle_names(view: ClusterView) -> set[str]:
    return {i.profile.name for g in view.gpus if g.mig for i in g.layout.idle()}


def _brute_reclaimable(view: ClusterView) -> set[str]:
    """Profiles that fit on some MIG GPU with an idle instance once its idle instances go."""
    out: set[str] = set()
    for g in view.gpus:
        if g.mig and g.layout.idle():
            busy = Layout(g.model, tuple(i for i in g.layout.instances if i.busy))
            out |= {p.name for p in g.model.profiles if busy.can_place(p)}
    return out


@settings(max_examples=80, deadline=None)
@given(st.lists(st.booleans(), min_size=4, max_size=4),
       st.lists(st.tuples(st.integers(0, 10_000), st.lists(st.booleans(), max_size=7)), min_size=4, max_size=4),
       st.lists(st.tuples(st.integers(0, len(MODELS) - 1), st.integers(0, 10_000),
                          st.lists(st.booleans(), max_size=7), st.booleans()), max_size=30))
def test_the_idle_indexes_follow_every_layout_and_mig_mode_change(mig, start, changes):
    """`idle_anywhere` and `reclaimable_anywhere` (which end reuse and fusion/fission searches at
    once) equal a scan of the MIG GPUs from the first layouts on, after every layout change and
    every MIG-mode change."""
    gpus = [GpuView(i, m, on, _busy(LAYOUTS[m.name][pick % len(LAYOUTS[m.name])], flags) if on else Layout(m, ()))
            for i, (m, on, (pick, flags)) in enumerate(zip(MODELS, mig, start))]
    view = ClusterView(now_s=0.0, gpus=gpus, queue=deque(), running={}, jobs={})
    names = sorted({p.name for m in (A80, A40) for p in m.profiles})

    def check() -> None:
        idle, recl = _brute_idle_names(view), _brute_reclaimable(view)
        for name in names:
            assert view.idle_anywhere(name) == (name in idle), (name, [g.layout for g in gpus])
            assert view.reclaimable_anywhere(name) == (name in recl), (name, [g.layout for g in gpus])

    check()
    for gpu, pick, flags, toggle in changes:
        g = gpus[gpu]
        if toggle:  # MIG off needs no instance left; MIG on needs the whole GPU idle
            if g.mig:
                view.set_layout(gpu, Layout(g.model, ()))
                view.set_mig(gpu, False)
            elif not any(i.busy for i in g.layout.instances):
                view.set_mig(gpu, True)
        elif g.mig:
            options = LAYOUTS[MODELS[gpu].name]
            view.set_layout(gpu, _busy(options[pick % len(options)], flags))
        check()
