"""Fusion, fission and room-making on idle GPU instances, and safe reconfiguration plans.

* **Fusion** replaces idle neighbouring instances by one larger legal instance (paper.md §3.4):
  idle 1g instances at 4, 5, 6 become one 3g at 4.
* **Fission** replaces one idle instance by smaller legal instances inside its memory slots:
  an idle 3g at 0 becomes 2g@0 + 1g@2 + 1g@3 if the GPU has the compute slices for them.
* `reclaim_options` lists, for a profile that does not fit, which idle instances would have to be
  destroyed to place it, cheapest first; fusion is the case of several small ones, fission the
  case of one large one whose leftover room stays free for later.
* `plan` turns a current layout into a target with explicit destroy and create operations.

None of these touches a busy instance; every layout they return keeps the MIG rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from migsched.errors import PlacementError, PlanError
from migsched.hardware.catalog import Profile
from migsched.partition.layout import Instance, Layout


def fuse(layout: Layout, starts: Sequence[int], profile: Profile, start: int | None = None) -> Layout:
    """Destroy the idle instances at `starts` and create one `profile` in their place.

    The new instance must lie inside the memory slots freed by the fused instances (plus slots
    that were already free), so that fusion merges neighbours rather than moving work.
    With `start=None` the best legal start (see `search.placement_score`) is used.

    Raises:
        PlacementError: an instance is busy or missing, fewer than two instances are given, or
            `profile` does not fit in the freed room.
    """
    if len(starts) < 2:
        raise PlacementError(f"fusion needs at least two idle instances, got starts {list(starts)}")
    freed = set()
    for s in starts:
        freed |= set(layout.instance_at(s).slots)
    room = layout.without(starts)
    options = [s for s in room.legal_starts(profile) if set(profile.slots(s)) & freed]
    if start is not None:
        if start not in options:
            raise PlacementError(
                f"cannot fuse {sorted(starts)} into {profile.name}@{start}; "
                f"legal starts over the freed slots: {options or 'none'}")
        return room.with_instance(profile, start)
    if not options:
        raise PlacementError(
            f"fusing instances at {sorted(starts)} of {layout} leaves no room for {profile.name}")
    from migsched.partition.search import placement_score

    best = max(options, key=lambda s: placement_score(room, profile, s))
    return room.with_instance(profile, best)


def split(layout: Layout, start: int, parts: Sequence[tuple[Profile, int]]) -> Layout:
    """Fission: destroy the idle instance at `start` and create `parts` inside its memory slots.

    Raises:
        PlacementError: the instance is busy, a part lies outside its slots, or the parts break
            a MIG rule (overlap, counts, compute); the message names the conflict.
    """
    if not parts:
        raise PlacementError("fission needs at least one part")
    old = layout.instance_at(start)
    outside = [f"{p.name}@{s}" for p, s in parts if not set(p.slots(s)) <= set(old.slots)]
    if outside:
        raise PlacementError(
            f"fission of {old} must stay inside its memory slots {list(old.slots)}; "
            f"outside: {', '.join(outside)}")
    out = layout.release(start)
    for p, s in sorted(parts, key=lambda ps: (-ps[0].memory_slices, ps[1])):
        out = out.with_instance(p, s)
    return out


def fission_options(layout: Layout, start: int, profile: Profile) -> list[tuple[Profile, int]]:
    """The starts of `profile` that fit inside the idle instance at `start` once it is destroyed."""
    old = layout.instance_at(start)
    if old.busy:
        return []
    room = layout.release(start)
    return [(profile, s) for s in room.legal_starts(profile) if set(profile.slots(s)) <= set(old.slots)]


@dataclass(frozen=True, slots=True)
class Reclaim:
    """Destroying the idle instances `destroy` lets `profile` be created at `start`."""

    profile: Profile
    start: int
    destroy: tuple[Instance, ...]

    @property
    def kind(self) -> str:
        """How the room is made.

        "create": nothing to destroy; "fission": one larger instance is cut down; "fusion":
        several instances (or one plus free slots) merge into a larger one; "replace": one
        instance of the same size gives way to another profile.
        """
        if not self.destroy:
            return "create"
        if len(self.destroy) > 1:
            return "fusion"
        old = self.destroy[0].profile
        if old.memory_slices > self.profile.memory_slices:
            return "fission"
        if old.memory_slices < self.profile.memory_slices:
            return "fusion"
        return "replace"

    @property
    def cost(self) -> tuple[int, int]:
        """(compute slices destroyed, instances destroyed): less is cheaper."""
        return (sum(i.profile.compute_slices for i in self.destroy), len(self.destroy))


def reclaim_options(layout: Layout, profile: Profile) -> list[Reclaim]:
    """Every way to place `profile` by destroying only idle instances, cheapest first.

    For each legal start of the profile, the instances overlapping its slots must go; if the
    GPU's compute, the per-profile count or the instance count still does not allow it, the
    smallest further idle instances (preferring ones of the same profile for the count rule) go
    too. Options that would need a busy instance destroyed are left out.
    """
    from migsched.partition.search import placement_score

    out: list[Reclaim] = []
    for s in profile.starts:
        slots = set(profile.slots(s))
        clash = [i for i in layout.instances if set(i.slots) & slots]
        if any(i.busy for i in clash):
            continue
        room = layout.without([i.start for i in clash])
        extra: list[Instance] = []
        spare = sorted(room.idle(), key=lambda i: (i.profile != profile, i.profile.compute_slices, -i.start))
        while not room.fits(profile, s) and spare:
            victim = spare.pop(0)
            extra.append(victim)
            room = room.release(victim.start)
        if room.fits(profile, s):
            out.append(Reclaim(profile, s, tuple(clash + extra)))

    def order(r: Reclaim) -> tuple:
        room = layout.without([i.start for i in r.destroy])
        return (r.cost, _negated(placement_score(room, profile, r.start)))

    return sorted(out, key=order)


def _negated(score: tuple) -> tuple:
    """Flatten and negate a placement score so that sorting ascending puts the best first."""
    flat: list[int] = []
    for x in score:
        if isinstance(x, tuple):
            flat.extend(-y for y in x)
        else:
            flat.append(-x)
    return tuple(flat)


@dataclass(frozen=True, slots=True)
class Operation:
    """One step of a plan: create or destroy `profile` at `start` (explicit placement)."""

    op: str  # "create" | "destroy"
    profile: Profile
    start: int

    def __str__(self) -> str:
        return f"{self.op} {self.profile.name}@{self.start}"


def plan(current: Layout, target: Layout) -> list[Operation]:
    """The ordered destroy/create operations that turn `current` into `target`.

    Instances present in both (same profile, same start) are kept. Destroys come first, then
    creates, largest first, each with an explicit placement: every intermediate layout is then a
    subset of `current` or of `target`, both legal, so every step is legal whatever the driver's
    auto-placement would do (mig-hardware.md §2.3). Busy instances are never destroyed.

    Raises:
        PlanError: a busy instance of `current` is not in `target`, or the models differ, or
            `target` breaks a MIG rule.
    """
    if current.model != target.model:
        raise PlanError(f"cannot plan from a {current.model.name} layout to a {target.model.name} one")
    bad = target.violations()
    if bad:
        raise PlanError(f"target layout {target} is invalid: " + "; ".join(bad))
    keep = set(current.key) & set(target.key)
    ops: list[Operation] = []
    for inst in current.instances:
        if inst.key not in keep:
            if inst.busy:
                raise PlanError(f"plan would destroy busy instance {inst}; drain its job first")
            ops.append(Operation("destroy", inst.profile, inst.start))
    creates = [i for i in target.instances if i.key not in keep]
    for inst in sorted(creates, key=lambda i: (-i.profile.memory_slices, -i.profile.compute_slices, i.start)):
        ops.append(Operation("create", inst.profile, inst.start))
    return ops


def apply_plan(layout: Layout, ops: Sequence[Operation]) -> list[Layout]:
    """Apply `ops` step by step; return every intermediate layout (each one checked legal)."""
    states = [layout]
    for op in ops:
        cur = states[-1]
        nxt = cur.release(op.start) if op.op == "destroy" else cur.with_instance(op.profile, op.start)
        nxt.validate()
        states.append(nxt)
    return states
