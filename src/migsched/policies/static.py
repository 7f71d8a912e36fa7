"""`static`: one fixed layout per GPU for the whole batch, FIFO.

The layout comes from `layout=` ("3g.40gb@4,2g.20gb@0,...") or, by default, is chosen among all
maximal layouts. A policy cannot know run times, so its own choice (`choose_layout`) uses hints
only: it picks the maximal layout whose instances can hold the most queued jobs at once, each job
counted against the smallest instance its hint allows. `migsched simulate` goes further for the
comparison and simulates every maximal layout, keeping the best (the strongest static baseline an
operator could tune offline); see `best_static_layout` in `migsched.compare`.

Each job goes to the smallest free instance its hint allows (without a hint, the largest instance
of the layout); after an out-of-memory it needs an instance larger than the one it failed on.
A job no instance of the layout can hold is rejected with that reason.
"""

from __future__ import annotations

from collections import Counter

from migsched.core.events import Action, CreateInstance, DestroyInstance, Launch, Reject
from migsched.core.state import ClusterView, JobView
from migsched.hardware.catalog import GpuModel
from migsched.partition.layout import Layout
from migsched.partition.parse import parse_layout_items
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


@register
class StaticPolicy(Policy):
    """A fixed MIG layout on every GPU.

    Args:
        layout: "PROFILE@START,..." for every GPU; None to choose from the jobs' hints.
    """

    name = "static"
    description = "one fixed layout per GPU (given, or the best maximal one); smallest fitting free instance"

    def __init__(self, layout: str | None = None) -> None:
        self.layout_text = layout
        self.layout: Layout | None = None  # the first model's layout (the only one on one model)
        self.layouts: dict[str, Layout] = {}  # per GPU model name

    def setup(self, view: ClusterView) -> list[Action]:
        """Create the layout on every GPU, chosen per GPU model from the first arrivals' hints if
        not given. On GPUs that already have instances (adopted at discovery, or a resumed run),
        the layout they have is kept when none was given; otherwise idle instances the layout does
        not have are destroyed, busy ones are left alone, and the layout's instances that fit
        beside them are created."""
        acts: list[Action] = []
        for model in view.models:
            if self.layout_text:
                lay = Layout.of(model, parse_layout_items(model, self.layout_text))
            else:
                have = next((g.layout for g in view.gpus if g.model == model and g.layout.instances), None)
                lay = (Layout.of(model, [(i.profile, i.start) for i in have.instances]) if have is not None
                       else choose_layout(model, list(view.queue)))
            self.layouts[model.name] = lay
        self.layout = self.layouts[view.models[0].name] if view.models else None
        for g in view.gpus:
            lay = self.layouts[g.model.name]
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

    def schedule(self, view: ClusterView) -> list[Action]:
        if not view.queue or not self.layouts:
            return []
        job = view.queue[0]
        need = max(hint_mib(job) or 0.0, 0.0)
        sizes = sorted({i.profile.memory_mib for lay in self.layouts.values() for i in lay.instances})
        if hint_mib(job) is None:
            need = float(sizes[-1])
        usable = [m for m in sizes if m >= need and m > job.needs_more_than_mib]
        if not usable:
            want = max(need, job.needs_more_than_mib)
            shown = "; ".join(str(lay) for lay in self.layouts.values())
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
