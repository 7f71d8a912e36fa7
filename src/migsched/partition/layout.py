"""GPU-instance layouts of one GPU and the MIG rules they must keep.

A `Layout` is an immutable set of GPU instances (profile, start memory slot, busy flag) on one
GPU model. Because memory slots of GPU instances never overlap, the start slot identifies an
instance on its GPU; the scheduler, the simulator and the NVML backend all use it as the key.

The rules (mig-hardware.md §0, §2, §9):
  1. each instance starts at one of its profile's legal starts and its memory slots lie on the GPU;
  2. memory slots of two instances never overlap (the only conflict NVML itself checks);
  3. at most `max_count` instances of a profile, at most `max_instances` in all;
  4. at most one `+me` instance (one media-engine set per GPU);
  5. the compute slices of all instances add up to at most the GPU's compute slices.

Every operation returns a new layout; nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from migsched.errors import InvalidLayoutError, PlacementError
from migsched.hardware.catalog import GpuModel, Profile


@dataclass(frozen=True, slots=True)
class Instance:
    """One GPU instance: a profile placed at a start memory slot; busy while a job runs on it."""

    profile: Profile
    start: int
    busy: bool = False

    @property
    def slots(self) -> range:
        """The memory slots this instance occupies."""
        return self.profile.slots(self.start)

    @property
    def key(self) -> tuple[str, int]:
        """(profile name, start): what identifies the instance regardless of its state."""
        return (self.profile.name, self.start)

    def __str__(self) -> str:
        return f"{self.profile.name}@{self.start}" + (" (busy)" if self.busy else "")


@dataclass(frozen=True, slots=True)
class Layout:
    """The GPU instances of one GPU, sorted by start slot. Build with `empty` or `of`."""

    model: GpuModel
    instances: tuple[Instance, ...] = ()
    # Derived once per layout: the bitmask of used memory slots and the compute slices in use.
    # `fits` runs on every placement decision, so it must not rebuild sets each call.
    _used_mask: int = field(default=0, init=False, repr=False, compare=False, hash=False)
    _used_compute: int = field(default=0, init=False, repr=False, compare=False, hash=False)
    # `key` and `state`, built on first use: the core and the searches ask for them many times.
    _key: tuple | None = field(default=None, init=False, repr=False, compare=False, hash=False)
    _state: tuple | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        mask = compute = 0
        for i in self.instances:
            if i.start >= 0:
                mask |= ((1 << i.profile.memory_slices) - 1) << i.start
            else:  # an illegal start, kept so that `violations` can name it
                mask |= ((1 << max(0, i.profile.memory_slices + i.start)) - 1)
            compute += i.profile.compute_slices
        object.__setattr__(self, "_used_mask", mask)
        object.__setattr__(self, "_used_compute", compute)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls, model: GpuModel) -> Layout:
        """A GPU in MIG mode with no instances."""
        return cls(model, ())

    @classmethod
    def of(cls, model: GpuModel, items: Iterable[Instance | tuple[Profile | str, int]]) -> Layout:
        """A layout from instances or (profile or name, start) pairs; raises if it breaks a rule."""
        insts = []
        for item in items:
            if isinstance(item, Instance):
                insts.append(item)
            else:
                prof, start = item
                p = model.profile(prof) if isinstance(prof, str) else prof
                insts.append(Instance(p, int(start)))
        layout = cls(model, tuple(sorted(insts, key=lambda i: i.start)))
        layout.validate()
        return layout

    # ---- queries ------------------------------------------------------------------------
    def __iter__(self):
        return iter(self.instances)

    def __len__(self) -> int:
        return len(self.instances)

    def __str__(self) -> str:
        return ",".join(f"{i.profile.name}@{i.start}" for i in self.instances) or "(empty)"

    @property
    def key(self) -> tuple[tuple[str, int], ...]:
        """The layout without busy flags: a hashable identity for caches and comparisons."""
        k = self._key
        if k is None:
            k = tuple((i.profile.name, i.start) for i in self.instances)
            object.__setattr__(self, "_key", k)
        return k

    @property
    def state(self) -> tuple[tuple[str, int, bool], ...]:
        """The layout with busy flags, (profile name, start, busy) per instance (see `key`)."""
        k = self._state
        if k is None:
            k = tuple((i.profile.name, i.start, i.busy) for i in self.instances)
            object.__setattr__(self, "_state", k)
        return k

    @property
    def used_slots(self) -> frozenset[int]:
        """Memory slots taken by some instance."""
        return frozenset(s for s in range(self.model.memory_slices) if self._used_mask >> s & 1)

    @property
    def free_slots(self) -> frozenset[int]:
        """Memory slots no instance takes."""
        return frozenset(range(self.model.memory_slices)) - self.used_slots

    @property
    def used_compute(self) -> int:
        """Compute slices taken by the instances."""
        return self._used_compute

    @property
    def free_compute(self) -> int:
        """Compute slices not yet given to an instance."""
        return self.model.compute_slices - self.used_compute

    def instance_at(self, start: int) -> Instance:
        """The instance that starts at `start`.

        Raises:
            PlacementError: no instance starts there; the message lists the instances.
        """
        for i in self.instances:
            if i.start == start:
                return i
        raise PlacementError(f"no GPU instance starts at memory slot {start}; instances: {self}")

    def idle(self) -> tuple[Instance, ...]:
        """Instances no job runs on."""
        return tuple(i for i in self.instances if not i.busy)

    def violations(self) -> list[str]:
        """Every broken MIG rule, each naming the instances involved (empty when legal)."""
        m = self.model
        out: list[str] = []
        for i in self.instances:
            if i.profile not in m.profiles:
                out.append(f"{i}: profile {i.profile.name} is not a {m.name} profile")
            elif i.start not in i.profile.starts:
                out.append(
                    f"{i}: {i.profile.name} cannot start at memory slot {i.start}; "
                    f"legal starts: {', '.join(map(str, i.profile.starts))}"
                )
        for a_idx, a in enumerate(self.instances):
            for b in self.instances[a_idx + 1 :]:
                common = set(a.slots) & set(b.slots)
                if common:
                    out.append(f"{a.profile.name}@{a.start} and {b.profile.name}@{b.start} overlap "
                               f"on memory slots {sorted(common)}")
        # Count by Profile, not by name: a foreign profile (already reported above) must not
        # make the name lookup raise.
        counts = Counter(i.profile for i in self.instances)
        for p, n in counts.items():
            if n > p.max_count:
                out.append(f"{n} x {p.name} exceeds the maximum of {p.max_count} on {m.name}")
        if len(self.instances) > m.max_instances:
            out.append(f"{len(self.instances)} instances exceed the maximum of {m.max_instances}")
        media = [str(i) for i in self.instances if i.profile.media]
        if len(media) > 1:
            out.append(f"only one +me instance per GPU, found {', '.join(media)}")
        if self.used_compute > m.compute_slices:
            out.append(f"instances use {self.used_compute} compute slices; {m.name} has "
                       f"{m.compute_slices} ({self})")
        return out

    def is_valid(self) -> bool:
        """True when the layout keeps every MIG rule."""
        return not self.violations()

    def validate(self) -> None:
        """Raise `InvalidLayoutError` naming every broken rule."""
        v = self.violations()
        if v:
            raise InvalidLayoutError(f"invalid {self.model.name} layout {self}: " + "; ".join(v))

    def fits(self, profile: Profile, start: int) -> bool:
        """True when `profile` can be added at `start` without breaking a rule."""
        m = self.model
        if start not in profile.starts or start < 0:
            return False
        if self._used_mask & (((1 << profile.memory_slices) - 1) << start):
            return False
        if len(self.instances) >= m.max_instances or self.free_compute < profile.compute_slices:
            return False
        # Names first: comparing two different `Profile`s field by field is the slow part.
        name = profile.name
        if sum(1 for i in self.instances if i.profile.name == name and i.profile == profile) >= profile.max_count:
            return False
        if profile.media and any(i.profile.media for i in self.instances):
            return False
        return True

    def legal_starts(self, profile: Profile) -> tuple[int, ...]:
        """The start slots where `profile` can be added now."""
        return tuple(s for s in profile.starts if self.fits(profile, s))

    def can_place(self, profile: Profile, start: int | None = None) -> bool:
        """True when `profile` can be added (at `start`, or anywhere when None)."""
        return bool(self.legal_starts(profile)) if start is None else self.fits(profile, start)

    # ---- transitions --------------------------------------------------------------------
    def with_instance(self, profile: Profile, start: int, busy: bool = False) -> Layout:
        """Add `profile` at an explicit `start`.

        Raises:
            PlacementError: the placement breaks a rule; the message names the conflict.
        """
        if not self.fits(profile, start):
            trial = Layout(self.model, (*self.instances, Instance(profile, start)))
            reasons = trial.violations() or [f"{profile.name} does not fit at {start}"]
            raise PlacementError(
                f"cannot place {profile.name} at memory slot {start} on {self}: "
                + "; ".join(reasons)
                + f" (legal free starts now: {list(self.legal_starts(profile)) or 'none'})"
            )
        insts = sorted((*self.instances, Instance(profile, start, busy)), key=lambda i: i.start)
        return Layout(self.model, tuple(insts))

    def place(self, profile: Profile, start: int | None = None, busy: bool = False) -> Layout:
        """Add `profile` at `start`, or with no start at the placement that keeps most room.

        The placement score is documented in `migsched.partition.search.placement_score`.
        """
        if start is None:
            from migsched.partition.search import best_start

            start = best_start(self, profile)
            if start is None:
                raise PlacementError(
                    f"no room for {profile.name} on {self.model.name} layout {self} "
                    f"(free slots {sorted(self.free_slots)}, free compute {self.free_compute})"
                )
        return self.with_instance(profile, start, busy)

    def release(self, start: int) -> Layout:
        """Destroy the instance at `start`.

        Raises:
            PlacementError: no instance there, or it is busy (a job still runs on it).
        """
        inst = self.instance_at(start)
        if inst.busy:
            raise PlacementError(f"cannot destroy {inst}: a job still runs on it")
        return Layout(self.model, tuple(i for i in self.instances if i.start != start))

    def mark(self, start: int, busy: bool) -> Layout:
        """Set the busy flag of the instance at `start`."""
        inst = self.instance_at(start)
        repl = Instance(inst.profile, inst.start, busy)
        return Layout(self.model, tuple(repl if i.start == start else i for i in self.instances))

    def without(self, starts: Sequence[int]) -> Layout:
        """Destroy several idle instances at once (see `release`)."""
        out = self
        for s in starts:
            out = out.release(s)
        return out
