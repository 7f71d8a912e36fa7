"""What a policy can see: jobs (spec, attempts, memory samples), GPUs and their layouts.

These objects are owned by the scheduler core and handed to policies by reference (no copies:
with 100,000 queued jobs a snapshot per event would dominate the run time). Policies must treat
them as read-only and change things only by returning actions.

Job states: `queued -> running -> (done | queued again after oom/kill | failed)`;
`queued -> failed` when rejected. "running" means placed: a `Launch` was decided; `started_s` is
set when the backend confirms that the process started (`JobStarted`), and a launch the backend
could not carry out puts the job back in the queue (or fails it, when retrying cannot help).

Each GPU's `layout` is what the policy plans on: the instances the backend confirmed plus the
creates and destroys in flight (`creating`, `destroying`); a failed create or destroy is undone
in the layout when the backend reports it, so the view never drifts from the hardware.
"""

from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass, field
from enum import StrEnum

from migsched.core.events import MemorySample
from migsched.core.jobqueue import JobQueue
from migsched.hardware.catalog import GpuModel, Profile
from migsched.jobs.model import JobSpec
from migsched.partition.layout import Instance, Layout
from migsched.partition.search import warm


class JobState(StrEnum):
    """Lifecycle of a job in the core."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a job on an instance and how it ended.

    `peak_mib` is the most memory seen; for an OOM it is at least the instance's memory, so the
    job is known to need more than `memory_mib`. `saved_progress` is set when the attempt ended
    with a checkpoint (`Kill(checkpoint=True)` answered in time): the fraction of the job's work
    its saved state holds (0.0 when the backend could not tell); None when it saved nothing.
    """

    gpu: int
    start: int
    profile: str
    memory_mib: int
    launched_s: float
    ended_s: float
    outcome: str  # ok | oom | killed:<reason> | failed | launch-failed (never started; queued again)
    peak_mib: float
    saved_progress: float | None = None


@dataclass(slots=True, eq=False)
class JobView:
    """A job as the core tracks it: its spec plus everything observed so far."""

    spec: JobSpec
    state: JobState = JobState.QUEUED
    seq: int = 0  # FIFO order: arrival order, kept across restarts
    arrived_s: float = 0.0  # when the core saw it arrive (observed, not the trace's)
    gpu: int | None = None
    start: int | None = None
    profile: Profile | None = None
    launched_s: float | None = None  # when its process started (confirmed by the backend)
    placed_s: float | None = None    # when the policy's Launch was accepted
    samples: list[MemorySample] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    finished_s: float | None = None
    failure: str | None = None
    killing: str = ""  # the kill reason while a Kill is in flight
    checkpointing: bool = False  # the Kill in flight asked for a checkpoint

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.spec.job_id

    @property
    def family(self) -> str:
        """What the job learns under across jobs (`JobSpec.family`)."""
        return self.spec.family

    @property
    def placed(self) -> bool:
        """True while a launch of the job is decided or running (state "running")."""
        return self.state is JobState.RUNNING

    @property
    def attempt(self) -> int:
        """The number of the current (or next) attempt, 1 for the first run."""
        return len(self.attempts) + 1

    @property
    def checkpointable(self) -> bool:
        """True when the job can save its state and resume (its spec has `checkpoint`)."""
        return self.spec.checkpoint is not None

    @property
    def saved_progress(self) -> float | None:
        """The fraction of work its next run resumes from, or None when it starts from zero.

        That of the latest attempt that ran (an attempt that never started keeps the checkpoint);
        any run that ended without a checkpoint (OOM, kill, a save past its grace) loses it.
        """
        for a in reversed(self.attempts):
            if a.outcome != "launch-failed":
                return a.saved_progress
        return None

    @property
    def moves(self) -> int:
        """How many of its runs ended with a checkpoint (moves that kept its progress)."""
        return sum(1 for a in self.attempts if a.saved_progress is not None)

    @property
    def needs_more_than_mib(self) -> float:
        """A lower bound on the job's memory: the largest instance it ran out of memory on."""
        return max((a.memory_mib for a in self.attempts if a.outcome == "oom"), default=0.0)

    @property
    def observed_peak_mib(self) -> float:
        """The most memory seen in any attempt or sample of the current attempt."""
        seen = max((a.peak_mib for a in self.attempts), default=0.0)
        cur = max((s.used_mib for s in self.samples), default=0.0)
        return max(seen, cur)


@dataclass(slots=True, eq=False)
class GpuView:
    """One GPU: its model, whether MIG is on, and its current layout (busy flags included)."""

    index: int
    model: GpuModel
    mig: bool
    layout: Layout
    uuid: str = ""
    creating: set[int] = field(default_factory=set)  # starts of creates in flight
    destroying: dict[int, Profile] = field(default_factory=dict)  # starts of destroys in flight
    jobs: dict[int, str] = field(default_factory=dict)  # start -> id of the job placed there (the core's)
    mig_pending: bool = False  # a `SetMigMode` is in flight (the view already shows the new mode)
    # Instances whose destroy failed while a turn-off waited on it: back in the layout when the
    # turn-off fails too (it must: they are still there).
    survivors: dict[int, Profile] = field(default_factory=dict)
    # Why the GPU is never used (it was lost, or the policy refused it when it joined), '' while
    # it is usable. A fenced GPU's layout is one busy instance over every slot (`fence_layout`).
    fenced: str = ""

    def free_whole(self) -> bool:
        """For a MIG-off GPU: True when no job runs on it."""
        return not any(i.busy for i in self.layout.instances)

    @property
    def largest_instance_mib(self) -> int:
        """The most memory one job can get here: the whole GPU with MIG off, else the largest profile."""
        return self.model.largest.memory_mib if self.mig else self.model.whole_gpu.memory_mib


class GpuGroup(set):
    """The indices of the GPUs that share one layout; `lowest` is `min(self)` without the scan.

    Only the core changes a group (through `ClusterView.set_layout`); policies read it.
    """

    __slots__ = ("_lowest",)

    def __init__(self, indices=()) -> None:
        super().__init__(indices)
        self._lowest: int | None = None

    @property
    def lowest(self) -> int:
        """The lowest GPU index of the group (computed again only after it left)."""
        if self._lowest is None:
            self._lowest = min(self)
        return self._lowest

    def add(self, index: int) -> None:
        super().add(index)
        if self._lowest is not None and index < self._lowest:
            self._lowest = index

    def discard(self, index: int) -> None:
        super().discard(index)
        if index == self._lowest:
            self._lowest = None

    def remove(self, index: int) -> None:
        super().remove(index)
        if index == self._lowest:
            self._lowest = None


@dataclass(slots=True, eq=False)
class ClusterView:
    """Everything a policy may look at when it decides.

    Attributes:
        now_s: current time.
        gpus: every GPU, by index.
        queue: queued jobs in FIFO order (arrival order; restarted jobs keep their place), a
            `JobQueue` (a sequence given here is turned into one): starting any one of 100,000
            queued jobs costs O(log n), the head O(1).
        running: running jobs by id.
        jobs: every job seen so far, by id.
        more_arrivals: whether the job source may still submit jobs.
        groups: GPU indices grouped by identical layout (busy flags included), built from `gpus`
            when not given and kept up to date by `set_layout`. A policy that checks one GPU per
            group instead of every GPU stays fast on 1,000 GPUs; `members.lowest` (or
            `min(members)`) is the lowest-numbered GPU of a group.
        idle_groups: the groups whose layout has an idle instance, in the order of `groups`.
        mig_toggle: whether MIG can be turned on or off per GPU in this run (`SetMigMode`): the
            backend can (`Capabilities.mig_toggle`) and the policy does (`Policy.toggles_mig`).
    """

    now_s: float
    gpus: list[GpuView]
    queue: JobQueue
    running: dict[str, JobView]
    jobs: dict[str, JobView]
    more_arrivals: bool = True
    groups: dict[tuple, set[int]] = field(default_factory=dict)
    idle_groups: dict[tuple, set[int]] = field(default_factory=dict)
    mig_toggle: bool = False
    # Per GPU: its state key (in `groups`), its layout's key and the names of the profiles that
    # can be created on it now; per profile asked about: a min-heap of the GPUs where it may fit
    # (checked when they come to the top), the set of GPUs in the heap, and per model name
    # whether the model has that profile.
    _state_keys: list[tuple] = field(default_factory=list, init=False, repr=False)
    _keys: list[tuple] = field(default_factory=list, init=False, repr=False)
    _fits: list[frozenset[str]] = field(default_factory=list, init=False, repr=False)
    _geoms: list[tuple] = field(default_factory=list, init=False, repr=False)
    _fit_heaps: dict[Profile, tuple[list[int], set[int], dict[str, bool]]] = field(
        default_factory=dict, init=False, repr=False)
    # name -> GPUs where it can be created (names with none are dropped)
    _fit_counts: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    # Compute slices and memory slots no job holds (free room plus idle instances), summed over
    # the MIG GPUs, kept by `set_layout` (`idle_room`).
    _idle_c: int = field(default=0, init=False, repr=False)
    _idle_m: int = field(default=0, init=False, repr=False)
    # On the MIG GPUs: idle instances per profile name, and per name the GPUs with an idle
    # instance where that profile fits once their idle instances are destroyed (`_room_of`;
    # names with none are dropped). They let a search for an idle instance, or for idle ones to
    # destroy, end at once when none can exist (`idle_anywhere`, `reclaimable_anywhere`).
    _idle_names: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _reclaimable: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _rooms: list[dict] = field(default_factory=list, init=False, repr=False)  # per GPU: its geometry's `_room_of` table
    #: The distinct GPU models of the cluster (by geometry), in GPU order; those of fenced GPUs
    #: left out when the view is built (all of them when every GPU is fenced).
    models: list[GpuModel] = field(default_factory=list, init=False)
    #: The most memory any one instance (or MIG-off GPU) of the cluster offers, in the modes the
    #: GPUs had when the view was built (a GPU turned MIG off later does not change it: its
    #: 1.9 % more memory than 7g is not worth a reset for a job that ran out of memory on 7g).
    #: Fenced GPUs do not count (`usable_largest_mib`).
    largest_instance_mib: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.queue, JobQueue):
            self.queue = JobQueue(self.queue)
        self.largest_instance_mib = usable_largest_mib(self.gpus)
        self._state_keys = [state_key(g.layout) for g in self.gpus]
        if not self.groups:
            for g in self.gpus:
                self.groups.setdefault(self._state_keys[g.index], GpuGroup()).add(g.index)
        else:
            self.groups = {k: m if isinstance(m, GpuGroup) else GpuGroup(m) for k, m in self.groups.items()}
        self.idle_groups = {k: m for k, m in self.groups.items() if _has_idle(k)}
        self._keys = [g.layout.key for g in self.gpus]
        self._geoms = [geometry(g.model) for g in self.gpus]
        seen: dict[tuple, GpuModel] = {}
        usable = {id(g) for g in usable_gpus(self.gpus)}  # a fenced GPU's model is not planned for
        for g, geo in zip(self.gpus, self._geoms):
            if id(g) in usable:
                seen.setdefault(geo, g.model)
        self.models = list(seen.values())
        for model in self.models:  # the layout search's tables, before the first decision needs them
            warm(model)
        self._fits = [_fitting(geo, k) if g.mig else frozenset()
                      for g, k, geo in zip(self.gpus, self._keys, self._geoms)]
        for fits in self._fits:
            for name in fits:
                self._fit_counts[name] = self._fit_counts.get(name, 0) + 1
        self._rooms = [_room_table(geo) for geo in self._geoms]
        for g, st in zip(self.gpus, self._state_keys):
            if g.mig:
                self._count_room(g.index, st, 1)

    def set_layout(self, index: int, layout: Layout, *, busy_only: bool = False) -> None:
        """Give GPU `index` a new layout, keeping `groups`, `idle_groups` and the fit index.

        `busy_only`: the caller knows that only busy flags changed (a launch or an exit), so the
        room for new instances is the same and the fit index is left alone.
        """
        gpu = self.gpus[index]
        old = self._state_keys[index]
        members = self.groups.get(old)
        if members is not None:
            members.discard(index)
            if not members:
                del self.groups[old]
                self.idle_groups.pop(old, None)
        gpu.layout = layout
        new = self._state_keys[index] = state_key(layout)
        if gpu.mig and new != old:
            self._count_room(index, old, -1)
            self._count_room(index, new, 1)
        members = self.groups.get(new)
        if members is None:
            members = self.groups[new] = GpuGroup()
            if _has_idle(new):
                self.idle_groups[new] = members
        members.add(index)
        if busy_only or not gpu.mig:
            return
        key = layout.key
        if key == self._keys[index]:
            return  # only busy flags changed: the room is the same
        self._keys[index] = key
        self._refit(index, _fitting(self._geoms[index], key))

    def set_mig(self, index: int, enabled: bool) -> None:
        """Turn GPU `index`'s MIG mode in the view: MIG on with no instance, or MIG off with
        the whole GPU as one idle pseudo-instance; groups, the fit index and the idle room
        follow. Only for a GPU that holds no instance (to turn off) or whose whole GPU is idle
        (to turn on): `core.apply` checks that. Either way the MIG layout has no instance, so
        the idle indexes do not change, only the idle room (`_count_room`)."""
        gpu = self.gpus[index]
        if gpu.mig == enabled:
            return
        geo = self._geoms[index]
        if not enabled:  # its room leaves the MIG totals and the fit index
            self._count_room(index, self._state_keys[index], -1)
            self._refit(index, frozenset())
            gpu.mig = False
            self.set_layout(index, Layout(gpu.model, (Instance(gpu.model.whole_gpu, 0),)))  # groups only
            return
        empty = Layout.empty(gpu.model)
        self.set_layout(index, empty)  # still MIG off here: groups only
        gpu.mig = True
        self._count_room(index, state_key(empty), 1)
        self._keys[index] = empty.key
        self._refit(index, _fitting(geo, empty.key))

    def _count_room(self, index: int, state: tuple, sign: int) -> None:
        """Add (`sign` 1) or take away (-1) MIG GPU `index`'s share, in layout state `state`, of
        the idle room (`idle_room`) and the idle indexes (`idle_anywhere`, `reclaimable_anywhere`),
        read from its geometry's table (`_room_of`: one look-up by state per change)."""
        room = self._rooms[index].get(state)
        if room is None:
            room = _room_of(self._geoms[index], self._rooms[index], state)
        c, m, idle, fits = room
        self._idle_c += sign * c
        self._idle_m += sign * m
        for counts, names in ((self._idle_names, idle), (self._reclaimable, fits)):
            for name in names:
                n = counts.get(name, 0) + sign
                if n:
                    counts[name] = n
                else:
                    del counts[name]

    def idle_anywhere(self, name: str) -> bool:
        """Whether some MIG GPU has an idle instance of the profile named `name` (O(1), kept by
        `set_layout`): most searches for one to reuse on a busy cluster end here."""
        return name in self._idle_names

    def reclaimable_anywhere(self, name: str) -> bool:
        """Whether the profile named `name` fits on some MIG GPU once that GPU's idle instances
        are destroyed, on a GPU that has one (O(1), kept by `set_layout`). False means no
        fusion or fission of idle instances can make room for it anywhere."""
        return name in self._reclaimable

    def _refit(self, index: int, fits: frozenset[str]) -> None:
        """GPU `index` can now create the profiles named `fits`: the count of GPUs per name
        follows, and where it gained room it may be the lowest fit of more profiles
        (`lowest_fit`'s heaps)."""
        old = self._fits[index]
        self._fits[index] = fits
        counts = self._fit_counts
        for name in old - fits:
            if counts[name] == 1:
                del counts[name]
            else:
                counts[name] -= 1
        gained = fits - old
        for name in gained:
            counts[name] = counts.get(name, 0) + 1
        if not gained:
            return
        model = self.gpus[index].model
        geo = self._geoms[index]
        for profile, (heap, queued, holds) in self._fit_heaps.items():
            if profile.name in fits and index not in queued:
                if geo not in holds:
                    holds[geo] = profile in model.profiles
                if holds[geo]:
                    heapq.heappush(heap, index)
                    queued.add(index)

    def creatable(self, index: int) -> frozenset[str]:
        """Names of the profiles that can be created on GPU `index` now (none with MIG off).

        Kept up to date by `set_layout`, so a search can skip a GPU without looking at its layout.
        """
        return self._fits[index]

    def creatable_anywhere(self, name: str) -> bool:
        """Whether a profile of this name can be created now on some MIG GPU (an O(1) count kept
        by `set_layout`): on a busy cluster most searches for room end here."""
        return name in self._fit_counts

    def room_anywhere(self) -> bool:
        """Whether some MIG GPU has room to create at least one profile now (O(1), kept by
        `set_layout`). With no idle instance either (`idle_groups` empty), nothing can be placed
        without a job ending first."""
        return bool(self._fit_counts)

    def idle_room(self) -> tuple[int, int]:
        """(compute slices, memory slots) that no job holds on the MIG GPUs: free room plus idle
        instances, an O(1) total kept by `set_layout` (the surplus the queue cannot use is read
        from it on every placement pass)."""
        return self._idle_c, self._idle_m

    def lowest_fit(self, profile: Profile) -> int | None:
        """The lowest-numbered MIG GPU on which `profile` can be created now, or None."""
        entry = self._fit_heaps.get(profile)
        if entry is None:
            heap = [g.index for g in self.gpus if g.mig and profile.name in self._fits[g.index]
                    and profile in g.model.profiles]
            heapq.heapify(heap)
            entry = self._fit_heaps[profile] = (heap, set(heap), {})
        heap, queued, _holds = entry
        while heap and profile.name not in self._fits[heap[0]]:
            queued.discard(heapq.heappop(heap))
        return heap[0] if heap else None


def state_key(layout: Layout) -> tuple:
    """A layout's identity including busy flags (the key of `ClusterView.groups`)."""
    return layout.state


def usable_gpus(gpus: list[GpuView]) -> list[GpuView]:
    """The GPUs a policy plans for: those not fenced; with every GPU fenced (all lost: a node
    may still join), all of them, so that nothing is rejected or refused for want of a GPU."""
    return [g for g in gpus if not g.fenced] or gpus


def usable_largest_mib(gpus: list[GpuView]) -> int:
    """The most memory one instance of the `usable_gpus` offers: a fenced GPU of a larger model
    must not keep a job no usable GPU can hold queued for ever."""
    return max((g.largest_instance_mib for g in usable_gpus(gpus)), default=0)


#: How `GpuView.fenced` begins for a GPU the backend reported lost (`GpuLost`).
LOST_PREFIX = "lost: "


def fence_layout(model: GpuModel, mig: bool) -> Layout:
    """The layout of a GPU that must never be used (`GpuView.fenced`): one busy instance over
    every slot (the largest profile, or the whole GPU with MIG off), so no policy places or
    creates anything there."""
    fence = model.largest if mig else model.whole_gpu
    return Layout(model, (Instance(fence, fence.starts[0], busy=True),))


def _has_idle(key: tuple) -> bool:
    return any(not busy for _name, _start, busy in key)


_GEOMETRY: dict[int, tuple[GpuModel, tuple]] = {}
_BY_GEOMETRY: dict[tuple, GpuModel] = {}


def geometry(model: GpuModel) -> tuple:
    """A model's MIG geometry (slots, and every profile's size, compute and starts) as a key.

    Caches key by geometry, not by name: a GPU model that NVML names differently, or a model
    built in a test, gets its own placement rules rather than another model's.
    """
    hit = _GEOMETRY.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    key = (model.memory_slices, model.compute_slices, model.max_instances,
           tuple((p.name, p.memory_slices, p.compute_slices, p.max_count, p.media, p.starts)
                 for p in model.profiles))
    _GEOMETRY[id(model)] = (model, key)
    _BY_GEOMETRY.setdefault(key, model)
    return key


@functools.cache
def _fitting(geo: tuple, key: tuple[tuple[str, int], ...]) -> frozenset[str]:
    """Names of the profiles of the model of geometry `geo` that can be added to the layout `key`."""
    model = _BY_GEOMETRY[geo]
    layout = Layout(model, tuple(Instance(model.profile(n), s) for n, s in key))
    return frozenset(p.name for p in model.profiles if layout.can_place(p))


_ROOM_TABLES: dict[tuple, dict[tuple, tuple]] = {}


def _room_table(geo: tuple) -> dict[tuple, tuple]:
    """The `_room_of` table of a geometry (shared by every GPU and view of it)."""
    return _ROOM_TABLES.setdefault(geo, {})


def _room_of(geo: tuple, table: dict[tuple, tuple], state: tuple[tuple[str, int, bool], ...]
             ) -> tuple[int, int, tuple[str, ...], frozenset[str]]:
    """For a MIG GPU of geometry `geo` whose layout has the state `state`, stored in `table`:
    the compute slices and memory slots no busy instance holds (`ClusterView.idle_room`), the
    profile names of its idle instances (one per instance), and, if it has any, the names of
    the profiles that fit once they are all destroyed (a superset of what destroying some of
    them makes room for)."""
    model = _BY_GEOMETRY[geo]
    layout = Layout(model, tuple(Instance(model.profile(n), s, busy=b) for n, s, b in state))
    idle_insts = layout.idle()
    c = layout.free_compute + sum(i.profile.compute_slices for i in idle_insts)
    m = len(layout.free_slots) + sum(i.profile.memory_slices for i in idle_insts)
    idle = tuple(n for n, _s, busy in state if not busy)
    fits = _fitting(geo, tuple((n, s) for n, s, busy in state if busy)) if idle else frozenset()
    room = table[state] = (c, m, idle, fits)
    return room
