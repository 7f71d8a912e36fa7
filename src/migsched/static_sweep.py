"""The static baseline's layout search: which layout on which GPU, found by simulation.

`static` is the baseline the dynamic policies are measured against, so `compare` tunes it
offline on the exact batch (the strongest static an operator could pick). A cluster may mix
layouts, so the search does not stop at one layout on every GPU:

1. the uniform sweep: every maximal layout of the model on every GPU;
2. on several GPUs, a coordinate descent over mixes: the `top_k` best uniform layouts (one per
   set of instance profiles: the same instances in other places run alike) are the candidates;
   starting from the best uniform layout, each group of GPUs tries each other candidate and
   keeps a change that improves the run, for up to `MIX_MAX_PASSES` passes or until a pass
   changes nothing.

Each GPU is its own group on up to `MIX_MAX_GROUPS` GPUs; more GPUs are split into that many
contiguous groups, so the extra simulations (`mix_runs_bound`) stop growing with the GPU count.
Runs are ranked by (jobs completed desc, makespan asc, energy asc); ties keep the earlier run
(uniform before mixed, `maximal_layouts` order: larger instances first).

The search is policy; the simulating is the caller's (`migsched.compare.best_static_layout`
passes a function that runs `static` with a layout text and reports progress).
"""

from __future__ import annotations

from collections.abc import Callable

from migsched.hardware.catalog import GpuModel
from migsched.partition.search import maximal_layouts
from migsched.partition.per_gpu import format_layouts
from migsched.run import RunResult

#: How many of the best uniform layouts the mixes are made of.
MIX_TOP_K = 3
#: How many groups of GPUs the mix search varies (each GPU alone up to this many GPUs).
MIX_MAX_GROUPS = 4
#: How many passes over the groups the mix search makes at most.
MIX_MAX_PASSES = 2

#: Runs `static` with a `layout=` text on the whole cluster.
SimulateFn = Callable[[str], RunResult]


def mix_runs_bound(gpus: int, top_k: int = MIX_TOP_K) -> int:
    """The most simulations the mix search adds to the uniform sweep on `gpus` GPUs:
    passes × groups × (top_k - 1), which stops growing at `MIX_MAX_GROUPS` groups."""
    if gpus <= 1 or top_k <= 1:
        return 0
    return MIX_MAX_PASSES * min(gpus, MIX_MAX_GROUPS) * (top_k - 1)


def score(res: RunResult) -> tuple[int, float, float]:
    """The search's order, smaller is better: jobs completed desc, makespan asc, energy asc."""
    return (-res.jobs_completed, res.makespan_s, res.energy_j)


def gpu_groups(gpus: int) -> list[range]:
    """The GPUs varied together: each alone on up to `MIX_MAX_GROUPS` GPUs, else
    `MIX_MAX_GROUPS` contiguous groups of nearly equal size."""
    n = min(gpus, MIX_MAX_GROUPS)
    cuts = [gpus * i // n for i in range(n + 1)]
    return [range(cuts[i], cuts[i + 1]) for i in range(n)]


def search_static_layouts(model: GpuModel, gpus: int, sim: SimulateFn,
                          top_k: int = MIX_TOP_K) -> tuple[RunResult, str, int]:
    """The best run found, its layout in `layout=` syntax (`format_layouts`: plain when uniform)
    and the number of simulations (the uniform sweep plus at most `mix_runs_bound(gpus, top_k)`).

    Raises:
        ValueError: `top_k` below 1 (names the value).
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    uniform = [(sim(str(lay)), str(lay), tuple(sorted(i.profile.name for i in lay.instances)))
               for lay in maximal_layouts(model)]
    assert uniform, "every GPU model has at least one maximal layout"
    ranked = sorted(range(len(uniform)), key=lambda i: (score(uniform[i][0]), i))
    candidates: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for i in ranked:
        if uniform[i][2] not in seen and len(candidates) < top_k:
            seen.add(uniform[i][2])
            candidates.append(uniform[i][1])
    best = uniform[ranked[0]][0]
    current = [candidates[0]] * gpus
    tried = len(uniform)
    for _ in range(MIX_MAX_PASSES if gpus > 1 else 0):
        changed = False
        for group in gpu_groups(gpus):
            start = current[group[0]]  # a group always has one layout: it is varied as one
            for cand in candidates:
                if cand == start:
                    continue
                trial = [cand if g in group else current[g] for g in range(gpus)]
                res = sim(format_layouts(trial))
                tried += 1
                if score(res) < score(best):
                    best, current, changed = res, trial, True
        if not changed:
            break
    return best, format_layouts(current), tried
