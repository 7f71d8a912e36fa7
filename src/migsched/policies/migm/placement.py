"""Where `migm` puts an instance: reuse, create, reclaim (fusion/fission) and whole-layout targets.

Every search looks at one GPU per group of identical layouts (`ClusterView.groups`), so its cost
grows with the number of distinct layouts, not with the number of GPUs. Busy instances are never
touched: reclaiming goes through `partition.reshape.reclaim_options`, which only destroys idle
instances, and layout targets through `plan`, which refuses to destroy a busy one.

A *reservation* (gpu, memory slots) keeps backfilled jobs off the slots a blocked larger job is
waiting for, so that those slots drain and the large job does not starve.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from migsched.core.events import Action, CreateInstance, DestroyInstance, Launch
from migsched.core.state import ClusterView, GpuView, state_key
from migsched.hardware.catalog import GpuModel, Profile
from migsched.partition.layout import Layout
from migsched.partition.reshape import Reclaim, plan, reclaim_options
from migsched.partition.search import best_start, enumerate_layouts
from migsched.policies.common import lowest_gpu

T = TypeVar("T")
Reservation = tuple[int, frozenset[int]]  # (gpu, memory slots kept free for a blocked job)


@dataclass(frozen=True, slots=True)
class Placement:
    """How to get an idle `profile` instance at (`gpu`, `start`): `kind` says what it costs."""

    gpu: int
    start: int
    profile: Profile
    kind: str  # "reuse" | "create" | "fusion" | "fission" | "replace" | "repartition"
    destroy: tuple[int, ...] = ()
    create: tuple[tuple[Profile, int], ...] = ()

    def actions(self, job_id: str) -> list[Action]:
        """Destroys, creates, then the launch of `job_id` on the instance."""
        acts: list[Action] = [DestroyInstance(self.gpu, s) for s in self.destroy]
        acts += [CreateInstance(self.gpu, p.name, s) for p, s in self.create]
        acts.append(Launch(job_id, self.gpu, self.start))
        return acts


def _pick(members: set[int], reserved: Sequence[Reservation]) -> tuple[int, frozenset[int]]:
    """A GPU of the group, avoiding reserved GPUs; with the slots still blocked on it.

    O(1) without a reservation in the group (its cached lowest GPU); O(members) only with one.
    """
    if not reserved or not any(g in members for g, _s in reserved):
        return lowest_gpu(members), frozenset()
    blocked = {g: s for g, s in reserved}
    free = [g for g in members if g not in blocked]
    if free:
        return min(free), frozenset()
    g = min(members)
    return g, blocked[g]


def _clear(profile: Profile, start: int, blocked: frozenset[int]) -> bool:
    return not blocked or not (set(profile.slots(start)) & blocked)


def mig_groups(view: ClusterView) -> Iterable[tuple[GpuView, set[int]]]:
    """(representative GPU, members) for every group of MIG-enabled GPUs."""
    for members in view.groups.values():
        g = view.gpus[lowest_gpu(members)]
        if g.mig:
            yield g, members


def idle_mig_groups(view: ClusterView) -> Iterable[tuple[GpuView, set[int]]]:
    """(representative GPU, members) for the groups of MIG-enabled GPUs with an idle instance.

    The searches that need an idle instance look only here: with a busy cluster most groups
    have none, and scanning every group made each decision grow with the cluster.
    """
    for members in view.idle_groups.values():
        g = view.gpus[lowest_gpu(members)]
        if g.mig:
            yield g, members


def find_reuse(view: ClusterView, profiles: Sequence[Profile], reserved: Sequence[Reservation]) -> Placement | None:
    """An idle instance of one of `profiles` (earlier in the list preferred), lowest GPU first.

    Looks only at the groups with an idle instance (`ClusterView.idle_groups`) and, in each, at
    the idle instances of the wanted profiles (`_idle_starts`, one table per layout state),
    and not at all when the cluster has no idle instance of any (`ClusterView.idle_anywhere`).
    """
    if not any(view.idle_anywhere(p.name) for p in profiles):
        return None
    rank = {p.name: i for i, p in enumerate(profiles)}
    best: tuple | None = None
    for state, members in view.idle_groups.items():
        idle = _idle_starts(state)
        hits = [n for n in rank if n in idle]
        if not hits:
            continue
        g = view.gpus[lowest_gpu(members)]
        if not g.mig:
            continue
        gpu, blocked = _pick(members, reserved)
        for name in hits:
            prof = g.model.profile(name)
            for start in idle[name]:
                if not _clear(prof, start, blocked):
                    continue
                cand = (rank[name], gpu, start, prof)
                if best is None or cand[:3] < best[:3]:
                    best = cand
    if best is None:
        return None
    return Placement(best[1], best[2], best[3], "reuse")


@functools.lru_cache(maxsize=65_536)
def _idle_starts(state: tuple[tuple[str, int, bool], ...]) -> dict[str, tuple[int, ...]]:
    """Profile name -> starts of the idle instances of that profile, for a layout state
    (`Layout.state`): every GPU of a group shares it. Read-only."""
    out: dict[str, list[int]] = {}
    for name, start, busy in state:
        if not busy:
            out.setdefault(name, []).append(start)
    return {n: tuple(v) for n, v in out.items()}


def find_create(view: ClusterView, profile: Profile, reserved: Sequence[Reservation]) -> Placement | None:
    """Create `profile` in free room without destroying anything; best fit (fullest GPU) first."""
    name = profile.name
    if not view.creatable_anywhere(name):
        return None
    best: tuple | None = None
    for g, members in mig_groups(view):
        if name not in view.creatable(g.index):
            continue  # no room for it on this group's layout
        lay = g.layout
        gpu, blocked = _pick(members, reserved)
        if blocked:
            starts = [s for s in lay.legal_starts(profile) if _clear(profile, s, blocked)]
            start = starts[0] if starts else None
        else:
            start = best_start(lay, profile)
        if start is None:
            continue
        cand = (lay.free_compute, gpu, start)
        if best is None or cand < best:
            best = cand
    if best is None:
        return None
    return Placement(best[1], best[2], profile, "create", create=((profile, best[2]),))


def find_reclaim(view: ClusterView, profile: Profile, reserved: Sequence[Reservation]) -> Placement | None:
    """Make room for `profile` by destroying idle instances only (fusion/fission), cheapest first.

    Ends at once when no GPU with an idle instance would hold `profile` even with all of them
    destroyed (`ClusterView.reclaimable_anywhere`): most such searches on a busy cluster."""
    if not view.reclaimable_anywhere(profile.name):
        return None
    best: tuple | None = None
    for g, members in idle_mig_groups(view):
        options = _reclaims(g.layout, profile)
        if not options:
            continue  # most groups: no idle instance whose removal makes room (no GPU to pick)
        gpu, blocked = _pick(members, reserved)
        for r in options:
            if not r.destroy or not _clear(profile, r.start, blocked):
                continue
            cand = (r.cost, g.layout.free_compute, gpu, r)
            if best is None or cand[:3] < best[:3]:
                best = cand
            break  # options come cheapest first
    if best is None:
        return None
    r: Reclaim = best[3]
    return Placement(best[2], r.start, profile, r.kind, destroy=tuple(i.start for i in r.destroy),
                     create=((profile, r.start),))


#: Entries a state-keyed memo holds before it is cleared (state keys of many models and layouts
#: in one process).
_MEMO_MAX = 100_000


def find_anywhere(view: ClusterView, profile: Profile, reserved: Sequence[Reservation]) -> Placement | None:
    """`profile` from wherever it can come, in order of cost: an idle instance reused, free room
    created in, idle instances reclaimed (a restart target, a spare upgrade, a declined profile)."""
    return find_reuse(view, [profile], reserved) or find_create(view, profile, reserved) \
        or find_reclaim(view, profile, reserved)


def _memoised(table: dict, key: tuple, owner: object, compute: Callable[[], T]) -> T:
    """`table[key]`'s value if it was stored for this very `owner` (the object whose `id` is in
    the key: an id can be reused once its object is gone), else `compute()`, stored."""
    hit = table.get(key)
    if hit is not None and hit[0] is owner:
        return hit[1]
    value = compute()
    if len(table) > _MEMO_MAX:
        table.clear()
    table[key] = (owner, value)
    return value


# (id(model), layout state, profile name) -> (model, reclaim options): every GPU of a group
# shares the state, so each is worked out once. Keyed by the layout's precomputed `state`, not
# the `Layout` itself: hashing a frozen `Layout` hashes its model and every instance each call.
_RECLAIMS: dict[tuple[int, tuple, str], tuple[GpuModel, tuple[Reclaim, ...]]] = {}


def _reclaims(layout: Layout, profile: Profile) -> tuple[Reclaim, ...]:
    return _memoised(_RECLAIMS, (id(layout.model), layout.state, profile.name), layout.model,
                     lambda: tuple(reclaim_options(layout, profile)))


#: With projected ends (`choose_reservation`'s `ends`), how many GPUs' starts are compared: the
#: GPUs of the groups with the least busy compute in the way, lowest first.
DRAIN_GPUS = 8


def choose_reservation(view: ClusterView, profile: Profile, taken: Iterable[int],
                       ends: Callable[[int], Mapping[int, float | None]] | None = None) -> Reservation | None:
    """The GPU and start where `profile` is blocked by the least busy compute: keep it draining.

    With `ends` (GPU index -> start slot -> projected remaining seconds of the busy instance
    there, None when unknown), the start whose jobs in the way end first wins among the first
    `DRAIN_GPUS` GPUs of the groups with the least compute in the way, compute in the way
    breaking ties: a 1g.20gb blocked by one long 1g.20gb job and by two 1g jobs that end in an
    hour waits for the two (a held-out generator's ML batch, tuning seed 66, waited 238 s longer
    for the one). GPUs of one layout group lay out alike but run different jobs, so each is
    looked at. A start with an unknown job in the way is not ranked; with none ranked, or
    nothing known on the lowest GPU where the least compute is in the way (1,000 GPUs of jobs
    known by their class only: one look-up per reservation), the least compute in the way, as
    without `ends`.
    """
    if not profile.starts:
        return None
    skip = set(taken)
    groups: list[tuple[int, int, int, set[int]]] = []
    for members in view.groups.values():
        g = view.gpus[lowest_gpu(members)]
        if not g.mig:
            continue
        if skip and any(m in members for m in skip):
            free = [m for m in members if m not in skip]
            if not free:
                continue
            low = min(free)
        else:
            low = lowest_gpu(members)
        in_way, s = _least_in_way(g.layout, profile)
        groups.append((in_way, low, s, members))
    if not groups:
        return None
    # The best start of a group does not depend on which of its GPUs is picked, so the
    # lexicographic minimum over (in_way, gpu, start) is taken over groups' best starts.
    in_way, low, s, _ = min(groups, key=lambda c: c[:3])
    if ends is not None:
        best = _by_known_ends(view, profile, groups, skip, ends)
        if best is not None:
            return best
    return low, frozenset(profile.slots(s))


def _by_known_ends(view: ClusterView, profile: Profile, groups: list[tuple[int, int, int, set[int]]],
                   skip: set[int], ends: Callable[[int], Mapping[int, float | None]]) -> Reservation | None:
    """`choose_reservation`'s ranking by the known ends of the jobs in the way (its doc)."""
    ranked = heapq.nsmallest(DRAIN_GPUS, groups, key=lambda c: c[:3])
    first = ends(ranked[0][1])
    if not _knows(first):
        return None  # nothing known where the least compute is in the way
    best: tuple | None = None
    seen = 0
    for _, low, _, members in ranked:
        others = heapq.nsmallest(DRAIN_GPUS - seen - 1, (m for m in members if m != low and m not in skip))
        for gpu in (low, *others):
            seen += 1
            left = first if gpu == ranked[0][1] else ends(gpu)
            cand = _earliest_start(profile, view.gpus[gpu].layout, left, gpu) if _knows(left) else None
            if cand is not None and (best is None or cand < best):
                best = cand
        if seen >= DRAIN_GPUS:
            break
    return None if best is None else (best[2], frozenset(profile.slots(best[3])))


def _knows(left: Mapping[int, float | None]) -> bool:
    """Whether a GPU's `ends` know the end of at least one of its jobs."""
    return any(v is not None for v in left.values())


def _earliest_start(profile: Profile, layout: Layout, left: Mapping[int, float | None],
                    gpu: int) -> tuple | None:
    """(latest known end in the way, busy compute in the way, gpu, start) of `profile`'s start on
    `layout` whose jobs in the way end first, or None when every start has an unknown one."""
    busy = [(frozenset(i.profile.slots(i.start)), i.profile.compute_slices, left.get(i.start))
            for i in layout.instances if i.busy]
    best: tuple | None = None
    for start in profile.starts:
        slots = frozenset(profile.slots(start))
        way = [(c, rem) for sl, c, rem in busy if not slots.isdisjoint(sl)]
        if any(rem is None for _, rem in way):
            continue
        cand = (max((rem for _, rem in way), default=0.0), sum(c for c, _ in way), gpu, start)
        if best is None or cand < best:
            best = cand
    return best


# (id(profile), state key) -> (profile, (busy compute in the way, start)): every GPU of a group
# shares the state key, and a cluster has few distinct ones, so each is worked out once.
_IN_WAY: dict[tuple[int, tuple], tuple[Profile, tuple[int, int]]] = {}


def _least_in_way(layout: Layout, profile: Profile) -> tuple[int, int]:
    """The least busy compute over `profile`'s starts on `layout` and the lowest start with it."""
    def least() -> tuple[int, int]:
        busy = [(i.profile.slots(i.start), i.profile.compute_slices) for i in layout.instances if i.busy]
        return min((sum(c for sl, c in busy if set(sl) & set(profile.slots(s))), s) for s in profile.starts)

    return _memoised(_IN_WAY, (id(profile), state_key(layout)), profile, least)


# ---- whole-layout targets (scheme "repartition-min") ---------------------------------------
@functools.lru_cache(maxsize=1024)
def _targets(model: GpuModel, busy_key: tuple[tuple[str, int], ...]) -> tuple[Layout, ...]:
    """Legal layouts that keep every busy instance and to which no instance can be added."""
    busy = set(busy_key)
    sup = [lay for lay in enumerate_layouts(model) if busy <= set(lay.key)]
    keys = [set(lay.key) for lay in sup]
    return tuple(lay for lay, k in zip(sup, keys) if not any(k < o for o in keys))


def cover(mems: Sequence[int], needs: dict[float, int]) -> tuple[int, int]:
    """How many queued jobs instances of memory `mems` could hold at once, and their total memory.

    Optimal count for "job fits instance iff need <= memory": match the smallest jobs first to the
    smallest instance that holds each.
    """
    pool = sorted(mems)
    n = used = 0
    i = 0
    for need in sorted(needs):
        k = needs[need]
        while k > 0 and i < len(pool):
            if pool[i] >= need:
                n += 1
                used += pool[i]
                k -= 1
            i += 1
    return n, used


def best_target(view: ClusterView, needs: dict[float, int], reserved: Sequence[Reservation],
                need_mib: float) -> tuple[int, Layout, int] | None:
    """The GPU and target layout whose idle instances would hold the most queued jobs.

    Considers one GPU per group with idle instances or free room; ties go to fewer destroyed
    instances, then to less memory handed out. Only targets with a new idle instance of at least
    `need_mib` (the job being placed) count. Returns (gpu, target, jobs covered) or None.
    """
    best: tuple | None = None
    for g, members in mig_groups(view):
        gpu, blocked = _pick(members, reserved)
        if blocked:
            continue
        busy_key = tuple(i.key for i in g.layout.instances if i.busy)
        current = {i.key for i in g.layout.instances}
        for tgt in _targets(g.model, busy_key):
            free = [i.profile.memory_mib for i in tgt.instances if i.key not in set(busy_key)]
            if not free or max(free) < need_mib:
                continue
            n, used = cover(free, needs)
            if n == 0:
                continue
            destroys = len(current - set(tgt.key))
            cand = (-n, destroys, used, gpu)
            if best is None or cand < best[0]:
                best = (cand, gpu, tgt, n)
    if best is None:
        return None
    return best[1], best[2], best[3]


def repartition(view: ClusterView, gpu: int, target: Layout, need_mib: float) -> Placement | None:
    """Reshape `gpu` into `target` and pick, for a job needing `need_mib`, the tightest new instance."""
    cur = view.gpus[gpu].layout
    ops = plan(cur, target)
    if not ops:
        return None
    idle = [i for i in target.instances if not any(b.key == i.key and b.busy for b in cur.instances)]
    fit = sorted((i for i in idle if i.profile.memory_mib >= need_mib),
                 key=lambda i: (i.profile.memory_mib, i.profile.compute_slices))
    if not fit:
        return None
    inst = fit[0]
    return Placement(gpu, inst.start, inst.profile, "repartition",
                     destroy=tuple(o.start for o in ops if o.op == "destroy"),
                     create=tuple((o.profile, o.start) for o in ops if o.op == "create"))
