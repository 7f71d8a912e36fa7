"""`static`: one fixed layout per GPU for the whole batch, FIFO.

The layout comes from `layout=` or, by default, is chosen among all maximal layouts. `layout=` is
one layout for every GPU ("3g.40gb@4,4g.40gb@0") or one per GPU, separated by ";" in GPU order
("3g.40gb@4,4g.40gb@0; 7g.80gb@0"); "N× LAYOUT" (or "Nx LAYOUT") stands for N GPUs in a row
with that layout ("2× 7g.80gb@0; 3g.40gb@4,4g.40gb@0" is three GPUs). The number of GPUs given
must be 1 or the cluster's (`migsched.partition.per_gpu` parses and writes this syntax).

A policy cannot know run times, so its own choice (`choose_layout`) uses hints only: it picks the
maximal layout whose instances can hold the most queued jobs at once, each job counted against
the smallest instance its hint allows. `migsched simulate` goes further for the comparison and
simulates layouts, keeping the best (the strongest static baseline an operator could tune
offline); see `best_static_layout` in `migsched.compare`.

Each job goes to the smallest free instance its hint allows (without a hint, the largest instance
of the layout); after an out-of-memory it needs an instance larger than the one it failed on.
A job no instance of the layout can hold is rejected with that reason.
"""

from __future__ import annotations

from collections import Counter

from migsched.core.events import Action, CreateInstance, DestroyInstance, Launch, Reject
from migsched.core.state import ClusterView, GpuView, JobView
from migsched.hardware.catalog import GpuModel
from migsched.partition.layout import Layout
from migsched.partition.per_gpu import format_layouts, layouts_for_gpus
from migsched.partition.search import maximal_layouts
from migsched.policies.base import Policy
from migsched.policies.common import gib, hint_mib, lowest_gpu
from migsched.policies.registry import register

def choose_layout(model: GpuModel, jobs: list[JobView]) -> Layout:
    """The maximal layout that serves the most of `jobs` at once, judged by hints alone.

    Each job needs the smallest instance whose memory holds its hint (the largest without one);
    a layout scores the number of jobs that can run concurrently when each instance takes one job
    that fits, matched smallest-first; ties go to more compute used, then more instances.
    """
    needs = sorted((hint_mib(j) if hint_mib(j) is not None else float(model.largest.memory_mib)) for j in jobs)
    best, best_score = None, None
    for lay in maximal_layouts(model):
        free = sorted(i.profile.memory_mib for i in lay.instances)
        served = 0
        pool = Counter(free)
        for need in needs:
            fit = next((m for m in sorted(pool) if m >= need and pool[m] > 0), None)
            if fit is not None:
                pool[fit] -= 1
                served += 1
        score = (served, lay.used_compute, len(lay))
        if best_score is None or score > best_score:
            best, best_score = lay, score
    assert best is not None
    return best


def _lay_out(g: GpuView, lay: Layout) -> list[Action]:
    """Turn GPU `g` into `lay`: destroy its idle instances `lay` lacks, create what fits beside the rest."""
    acts: list[Action] = []
    want = {(i.profile.name, i.start) for i in lay.instances}
    after = g.layout
    for inst in g.layout.instances:
        if (inst.profile.name, inst.start) not in want and not inst.busy:
            acts.append(DestroyInstance(g.index, inst.start))
            after = after.release(inst.start)
    have = {(i.profile.name, i.start) for i in after.instances}
    for i in lay.instances:
        if (i.profile.name, i.start) not in have and after.fits(i.profile, i.start):
            acts.append(CreateInstance(g.index, i.profile.name, i.start))
            after = after.with_instance(i.profile, i.start)
    return acts


@register
class StaticPolicy(Policy):
    """A fixed MIG layout on every GPU, the same one or one per GPU.

    Args:
        layout: "PROFILE@START,..." for every GPU, or one such layout per GPU separated by ";"
            (module doc); None to choose one per GPU model from the jobs' hints.
    """

    name = "static"
    description = "one fixed layout per GPU (given, or the best maximal one); smallest fitting free instance"

    def __init__(self, layout: str | None = None) -> None:
        self.layout_text = layout
        self.layout: Layout | None = None  # GPU 0's layout (the only one when every GPU has the same)
        self.layouts: dict[str, Layout] = {}  # per GPU model name: the first GPU of that model's
        self.gpu_layouts: dict[int, Layout] = {}  # per GPU index

    def setup(self, view: ClusterView) -> list[Action]:
        """Create each GPU's layout, chosen per GPU model from the first arrivals' hints if not
        given. On GPUs that already have instances (adopted at discovery, or a resumed run), the
        layout they have is kept when none was given; otherwise idle instances the layout does not
        have are destroyed, busy ones are left alone, and the layout's instances that fit beside
        them are created."""
        acts: list[Action] = []
        if self.layout_text:
            given = layouts_for_gpus([g.model for g in view.gpus], self.layout_text)
            self.gpu_layouts = {g.index: lay for g, lay in zip(view.gpus, given)}
        else:
            per_model: dict[str, Layout] = {}
            for model in view.models:
                have = next((g.layout for g in view.gpus if g.model == model and g.layout.instances), None)
                per_model[model.name] = (Layout.of(model, [(i.profile, i.start) for i in have.instances])
                                         if have is not None else choose_layout(model, list(view.queue)))
            self.gpu_layouts = {g.index: per_model[g.model.name] for g in view.gpus}
        for g in view.gpus:
            self.layouts.setdefault(g.model.name, self.gpu_layouts[g.index])
        self.layout = self.gpu_layouts[view.gpus[0].index] if view.gpus else None
        for g in view.gpus:
            acts += _lay_out(g, self.gpu_layouts[g.index])
        return acts

    def on_gpu_added(self, view: ClusterView, gpu: GpuView) -> list[Action]:
        """A GPU that joined: the layout of its model (as set up), else the one it has, else one
        chosen from the queue's hints; created as at setup."""
        lay = self.layouts.get(gpu.model.name)
        if lay is None:
            lay = (Layout.of(gpu.model, [(i.profile, i.start) for i in gpu.layout.instances])
                   if gpu.layout.instances else choose_layout(gpu.model, list(view.queue)))
            self.layouts[gpu.model.name] = lay
        self.gpu_layouts[gpu.index] = lay
        return _lay_out(gpu, lay)

    def schedule(self, view: ClusterView) -> list[Action]:
        if not view.queue or not self.gpu_layouts:
            return []
        job = view.queue[0]
        need = max(hint_mib(job) or 0.0, 0.0)
        sizes = sorted({i.profile.memory_mib for lay in self.gpu_layouts.values() for i in lay.instances})
        if hint_mib(job) is None:
            need = float(sizes[-1])
        usable = [m for m in sizes if m >= need and m > job.needs_more_than_mib]
        if not usable:
            want = max(need, job.needs_more_than_mib)
            shown = format_layouts([str(self.gpu_layouts[i]) for i in sorted(self.gpu_layouts)])
            return [Reject(job.job_id, f"needs {'more than ' if job.needs_more_than_mib else ''}{gib(want)}; "
                                       f"the largest instance of layout {shown} has {gib(sizes[-1])}")]
        best = None
        for key, members in view.idle_groups.items():
            gpu = lowest_gpu(members)
            for name, start, busy in key:
                if busy:
                    continue
                mem = view.gpus[gpu].model.profile(name).memory_mib
                if mem in usable:
                    cand = (mem, gpu, start)
                    if best is None or cand < best:
                        best = cand
        if best is None:
            return []
        return [Launch(job.job_id, best[1], best[2])]
