"""Helpers every policy shares: memory needs from what is observable, profile choice, placement.

Nothing here reads ground truth: needs come from hints and from out-of-memory history.
"""

from __future__ import annotations

from dataclasses import dataclass

from migsched.core.events import Action, CreateInstance, Launch
from migsched.core.state import ClusterView, GpuGroup, JobView
from migsched.hardware.catalog import GpuModel, Profile
from migsched.partition.search import best_start


def hint_mib(job: JobView) -> float | None:
    """The job's declared peak memory in MiB, or None."""
    return None if job.spec.hint_gib is None else job.spec.hint_gib * 1024.0


# id(model) -> (model, its profiles_by_size): greedy asks on every schedule() call.
_BY_SIZE: dict[int, tuple[GpuModel, tuple[Profile, ...]]] = {}


def profiles_by_size(model: GpuModel) -> tuple[Profile, ...]:
    """Profiles a scheduler uses (no `+me`), smallest memory first, then fewest compute slices."""
    cached = _BY_SIZE.get(id(model))
    if cached is None or cached[0] is not model:  # computed once per model object
        cached = _BY_SIZE[id(model)] = (
            model, tuple(sorted(model.usable_profiles(), key=lambda p: (p.memory_mib, p.compute_slices))))
    return cached[1]


def smallest_fitting(model: GpuModel, need_mib: float, above_mib: float = 0.0) -> Profile | None:
    """The smallest profile with at least `need_mib` and strictly more than `above_mib`, or None."""
    for p in profiles_by_size(model):
        if p.memory_mib >= need_mib and p.memory_mib > above_mib:
            return p
    return None


@dataclass(frozen=True, slots=True)
class Spot:
    """Where a profile can run: reuse the idle instance at `start`, or create one there."""

    gpu: int
    start: int
    create: bool


def find_spot(view: ClusterView, profile: Profile, reuse: bool = True, create: bool = True) -> Spot | None:
    """The lowest-numbered GPU with an idle `profile` instance, else with room to create one.

    Reusing an idle instance of exactly that profile beats creating one (no reconfiguration);
    a new instance goes to the start `best_start` picks. Idle instances are looked for one GPU
    per group of identical layouts, and room through `ClusterView.lowest_fit`, so the cost does
    not grow with the number of GPUs (first fit).
    """
    if reuse:
        best: Spot | None = None
        for members in view.idle_groups.values():
            gpu = lowest_gpu(members)
            if best is not None and gpu > best.gpu:
                continue
            g = view.gpus[gpu]
            if not g.mig or profile not in g.model.profiles:
                continue
            for inst in g.layout.instances:
                if not inst.busy and inst.profile == profile:
                    best = Spot(gpu, inst.start, False)
                    break
        if best is not None:
            return best
    if create:
        gpu = view.lowest_fit(profile)
        if gpu is not None:
            start = best_start(view.gpus[gpu].layout, profile)
            assert start is not None
            return Spot(gpu, start, True)
    return None


def lowest_gpu(members: set[int]) -> int:
    """The lowest GPU index of a group (cached for the core's `GpuGroup`s)."""
    return members.lowest if isinstance(members, GpuGroup) else min(members)


def start_on(job: JobView, profile: Profile, spot: Spot) -> list[Action]:
    """Actions to run `job` at `spot`: create the instance if needed, then launch."""
    acts: list[Action] = []
    if spot.create:
        acts.append(CreateInstance(spot.gpu, profile.name, spot.start))
    acts.append(Launch(job.job_id, spot.gpu, spot.start))
    return acts


def gib(mib: float) -> str:
    """Human form of a memory amount given in MiB."""
    return f"{mib / 1024:.1f} GiB"
