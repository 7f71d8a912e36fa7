"""The scheduling model behind the clairvoyant `optimal` reference (docs/optimal.md).

Every job picks one *option*: a GPU, a MIG profile that holds its true peak memory and a legal
start memory slot, and a start time. Time is counted in integer ticks of `tick_s` (0.1 s by
default). A job's duration on an option is

    ceil((gi_create_s + startup_s + runtime_s / speed_on(profile)) / tick_s)   ticks,

so the creation of its GPU instance is charged to every job; destroying instances, the
serialisation of creates and destroys on one GPU and the reuse of an identical idle instance are
ignored. On each GPU:

  * jobs whose memory slots overlap never run at the same time (a NoOverlap per memory slot over
    optional intervals, the MIG rule that instances never share memory slots);
  * the compute slices of the jobs running at one time fit the GPU (a cumulative);
  * at most `max_instances` instances run at once, and at most `max_count` of one profile
    (cumulatives, only where they can bind);
  * a redundant cumulative over memory slots helps propagation.

A job starts no earlier than its arrival (rounded up to a tick). The objective is the makespan.
A greedy list schedule of the same model gives the solver a complete hint and an upper bound,
so a feasible plan exists whatever the time limit; `Plan.status` says how the solve ended.

Nothing here touches the scheduler core: `solve` returns a `Plan` that `OptimalPolicy` replays.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from migsched.jobs.truth import speed_on
from migsched.errors import MigschedError
from migsched.hardware.catalog import GpuModel, Profile
from migsched.jobs.model import Job

INSTALL_HINT = "pip install 'migsched[optimal]'"


class OptimalUnavailableError(MigschedError, ImportError):
    """OR-Tools, which the `optimal` reference needs, is not installed."""

    def __init__(self) -> None:
        super().__init__(f"the 'optimal' policy needs OR-Tools CP-SAT (ortools>=9.10); install it with {INSTALL_HINT}")


class OptimalTooLargeError(MigschedError, ValueError):
    """The batch is too large for the exact model to be worth solving."""


def load_cp_model():  # noqa: ANN201 - the ortools module
    """Import OR-Tools' CP-SAT module, or raise `OptimalUnavailableError`."""
    try:
        from ortools.sat.python import cp_model
    except ImportError as exc:
        raise OptimalUnavailableError() from exc
    return cp_model


@dataclass(frozen=True, slots=True)
class Option:
    """One way to run a job: on `gpu`, as `profile` at memory slot `start`, for `ticks` ticks."""

    gpu: int
    profile: Profile
    start: int
    ticks: int

    @property
    def slots(self) -> range:
        """Memory slots of the instance."""
        return self.profile.slots(self.start)


@dataclass(frozen=True, slots=True)
class Planned:
    """A job's place in the plan: its option and start tick."""

    job_id: str
    index: int  # position in the batch (ties of the start order)
    option: Option
    start_tick: int

    @property
    def end_tick(self) -> int:
        """Planned end, in ticks."""
        return self.start_tick + self.option.ticks


@dataclass(frozen=True, slots=True)
class Plan:
    """A solved schedule.

    Attributes:
        jobs: planned jobs by id (jobs no profile can hold are absent).
        unplaceable: jobs whose true peak exceeds every instance, with the reason.
        makespan_ticks: the plan's makespan in ticks.
        bound_ticks: the best proven lower bound on the model's makespan, in ticks.
        status: "optimal", "feasible" (time limit hit) or "heuristic" (solver found nothing better
            than the greedy hint, or was not run).
        heuristic_ticks: makespan of the greedy list schedule used as the hint.
        tick_s: seconds per tick.
        wall_s: time spent building and solving.
    """

    jobs: dict[str, Planned]
    unplaceable: dict[str, str]
    makespan_ticks: int
    bound_ticks: int
    status: str
    heuristic_ticks: int
    tick_s: float
    wall_s: float


def job_options(job: Job, gpus: Sequence[GpuModel], tick_s: float, create_s: float) -> list[Option]:
    """Every option of `job` on `gpus`, less options another option of the same GPU dominates.

    Option q dominates p when q's profile is no slower, uses no more compute slices, and for
    every legal start of p has a legal start whose memory slots lie inside p's (so any schedule
    using p stays feasible with q). Only applied where per-profile counts cannot bind.
    """
    t = job.truth
    if t is None:
        raise MigschedError(f"job {job.job_id!r} has no model: the 'optimal' policy needs its ground truth "
                            "(runtime_s, speedup, peak_gib)")
    peak_mib = t.peak_gib * 1024.0
    out: list[Option] = []
    for g, model in enumerate(gpus):
        fitting = [p for p in model.usable_profiles() if p.memory_mib >= peak_mib]
        ticks = {p: max(1, math.ceil((create_s + t.startup_s + t.runtime_s / speed_on(t, model, p)) / tick_s - 1e-9))
                 for p in fitting}
        keep = [p for p in fitting if not any(_dominates(q, p, ticks) for q in fitting if q is not p)]
        out += [Option(g, p, s, ticks[p]) for p in keep for s in p.starts]
    return out


def _dominates(q: Profile, p: Profile, ticks: dict[Profile, int]) -> bool:
    if q.max_count < len(q.starts) or p.max_count < len(p.starts):
        return False
    if ticks[q] > ticks[p] or q.compute_slices > p.compute_slices:
        return False
    inside = all(any(set(q.slots(b)) <= set(p.slots(a)) for b in q.starts) for a in p.starts)
    if not inside:
        return False
    strictly = (ticks[q] < ticks[p] or q.compute_slices < p.compute_slices or q.memory_slices < p.memory_slices)
    # Identical profiles in every respect: keep the first by name so exactly one survives.
    return strictly or q.name < p.name


# ---- greedy list schedule (the hint) ------------------------------------------------------------
class _GpuPlan:
    """Intervals placed on one GPU, for the list schedule."""

    def __init__(self, model: GpuModel) -> None:
        self.model = model
        self.items: list[tuple[int, int, Option]] = []  # (start, end, option)

    def earliest(self, opt: Option, ready: int, cutoff: int) -> int | None:
        """The earliest start >= ready at which `opt` fits, if it ends before `cutoff`."""
        times = sorted({ready, *(e for _, e, _ in self.items if e > ready)})
        slots = set(opt.slots)
        for t in times:
            if t + opt.ticks >= cutoff:
                return None
            if self._fits(opt, slots, t, t + opt.ticks):
                return t
        return None

    def _fits(self, opt: Option, slots: set[int], t0: int, t1: int) -> bool:
        live = [(s, e, o) for s, e, o in self.items if s < t1 and e > t0]
        for _, _, o in live:
            if slots.intersection(o.slots):
                return False
        m = self.model
        p = opt.profile
        for x in {t0, *(s for s, _, _ in live if s > t0)}:
            here = [o for s, e, o in live if s <= x < e]
            if sum(o.profile.compute_slices for o in here) + p.compute_slices > m.compute_slices:
                return False
            if len(here) + 1 > m.max_instances:
                return False
            if sum(1 for o in here if o.profile == p) + 1 > p.max_count:
                return False
        return True


def list_schedule(order: Sequence[int], options: Sequence[Sequence[Option]], ready: Sequence[int],
                  gpus: Sequence[GpuModel]) -> tuple[int, list[tuple[Option, int]]]:
    """Place jobs in `order`, each on the option that ends first; returns (makespan, placements)."""
    plans = [_GpuPlan(m) for m in gpus]
    placed: list[tuple[Option, int] | None] = [None] * len(options)
    makespan = 0
    for j in order:
        best: tuple[int, int, int, Option] | None = None  # (end, area, start, option)
        for opt in options[j]:
            cutoff = best[0] + 1 if best is not None else math.inf
            t = plans[opt.gpu].earliest(opt, ready[j], cutoff)  # type: ignore[arg-type]
            if t is None:
                continue
            key = (t + opt.ticks, opt.ticks * opt.profile.compute_slices, t, opt)
            if best is None or key[:3] < best[:3]:
                best = key
        assert best is not None  # an empty GPU always fits eventually
        end, _, t, opt = best
        plans[opt.gpu].items.append((t, end, opt))
        placed[j] = (opt, t)
        makespan = max(makespan, end)
    return makespan, placed  # type: ignore[return-value]


def lower_bound_ticks(options: Sequence[Sequence[Option]], ready: Sequence[int], gpus: Sequence[GpuModel]) -> int:
    """Longest job and compute/memory area bounds of the model (cf. `migsched.metrics`)."""
    if not options:
        return 0
    longest = max(r + min(o.ticks for o in opts) for r, opts in zip(ready, options))
    area_c = sum(min(o.ticks * o.profile.compute_slices for o in opts) for opts in options)
    area_m = sum(min(o.ticks * o.profile.memory_slices for o in opts) for opts in options)
    cap_c = sum(m.compute_slices for m in gpus)
    cap_m = sum(m.memory_slices for m in gpus)
    return max(longest, -(-area_c // cap_c), -(-area_m // cap_m))


# ---- the CP-SAT model --------------------------------------------------------------------------
def solve(jobs: Sequence[Job], gpus: Sequence[GpuModel], *, time_limit_s: float, workers: int, seed: int,
          tick_s: float, create_s: float) -> Plan:
    """Build and solve the model of the module docstring for `jobs` on `gpus`."""
    wall0 = time.perf_counter()
    cp_model = load_cp_model()
    ids: list[str] = []
    options: list[list[Option]] = []
    ready: list[int] = []
    index: dict[str, int] = {}
    unplaceable: dict[str, str] = {}
    for k, job in enumerate(jobs):
        index[job.job_id] = k
        opts = job_options(job, gpus, tick_s, create_s)
        if not opts:
            big = max(m.largest.memory_mib for m in gpus) / 1024.0
            unplaceable[job.job_id] = (f"its true peak of {job.truth.peak_gib:.1f} GiB exceeds the largest "  # type: ignore[union-attr]
                                       f"instance ({big:.1f} GiB)")
            continue
        ids.append(job.job_id)
        options.append(opts)
        ready.append(max(0, math.ceil(job.spec.arrival_s / tick_s - 1e-9)))
    n = len(ids)
    if n == 0:
        return Plan({}, unplaceable, 0, 0, "optimal", 0, tick_s, time.perf_counter() - wall0)

    # Hint: the best of a few greedy orders (arrival first, then longest / largest / batch order).
    def shortest(j: int) -> int:
        return min(o.ticks for o in options[j])

    def area(j: int) -> int:
        return min(o.ticks * o.profile.compute_slices for o in options[j])

    orders = [
        sorted(range(n), key=lambda j: (ready[j], -shortest(j), j)),
        sorted(range(n), key=lambda j: (ready[j], -area(j), j)),
        sorted(range(n), key=lambda j: (ready[j], j)),
        sorted(range(n), key=lambda j: (ready[j], -max(o.profile.memory_slices for o in options[j]) * shortest(j), j)),
    ]
    heur_ms, heur = min((list_schedule(o, options, ready, gpus) for o in orders), key=lambda r: r[0])
    lb = lower_bound_ticks(options, ready, gpus)

    m = cp_model.CpModel()
    horizon = heur_ms
    makespan = m.new_int_var(lb, horizon, "makespan")
    starts = []
    pick: list[list] = []
    per_gpu: list[list[tuple[object, Option]]] = [[] for _ in gpus]
    for j in range(n):
        s = m.new_int_var(ready[j], horizon, f"s{j}")
        starts.append(s)
        xs = []
        for k, opt in enumerate(options[j]):
            x = m.new_bool_var(f"x{j}_{k}")
            iv = m.new_optional_fixed_size_interval_var(s, opt.ticks, x, f"i{j}_{k}")
            xs.append(x)
            per_gpu[opt.gpu].append((iv, opt))
        m.add_exactly_one(xs)
        pick.append(xs)
        m.add(makespan >= s + sum(o.ticks * x for o, x in zip(options[j], xs)))
    for g, model in enumerate(gpus):
        items = per_gpu[g]
        if not items:
            continue
        for slot in range(model.memory_slices):
            ivs = [iv for iv, o in items if slot in o.slots]
            if len(ivs) > 1:
                m.add_no_overlap(ivs)
        m.add_cumulative([iv for iv, _ in items], [o.profile.compute_slices for _, o in items], model.compute_slices)
        m.add_cumulative([iv for iv, _ in items], [o.profile.memory_slices for _, o in items], model.memory_slices)
        if model.max_instances < model.memory_slices:
            m.add_cumulative([iv for iv, _ in items], [1] * len(items), model.max_instances)
        for p in dict.fromkeys(o.profile for _, o in items):  # in order: a set's moves with the hash seed
            if p.max_count < len(p.starts):
                mine = [iv for iv, o in items if o.profile == p]
                m.add_cumulative(mine, [1] * len(mine), p.max_count)
    if _break_gpu_symmetry(m, pick, options, gpus):
        heur = _relabel_gpus(heur)

    for j, (opt, t) in enumerate(heur):
        m.add_hint(starts[j], t)
        for o, x in zip(options[j], pick[j]):
            m.add_hint(x, o == opt)
    m.add_hint(makespan, heur_ms)
    m.minimize(makespan)

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.1, float(time_limit_s) - (time.perf_counter() - wall0))
    solver.parameters.num_workers = max(1, int(workers))
    solver.parameters.random_seed = int(seed)
    status = solver.solve(m)

    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        chosen = []
        for j in range(n):
            k = next(k for k, x in enumerate(pick[j]) if solver.boolean_value(x))
            chosen.append((options[j][k], int(solver.value(starts[j]))))
        ms = int(solver.value(makespan))
        bound = max(lb, int(math.ceil(solver.best_objective_bound - 1e-9)))
        kind = "optimal" if status == cp_model.OPTIMAL else "feasible"
    else:  # no solution within the limit: the hint stands
        chosen, ms, bound, kind = list(heur), heur_ms, lb, "heuristic"
    if ms > heur_ms:  # cannot happen (horizon), kept as a guard
        chosen, ms, kind = list(heur), heur_ms, "heuristic"
    if kind != "optimal" and bound >= ms:
        kind = "optimal"
    planned = {ids[j]: Planned(ids[j], index[ids[j]], opt, t) for j, (opt, t) in enumerate(chosen)}
    return Plan(planned, unplaceable, ms, min(bound, ms), kind, heur_ms, tick_s, time.perf_counter() - wall0)


def _relabel_gpus(placed: list[tuple[Option, int]]) -> list[tuple[Option, int]]:
    """Renumber identical GPUs in the order jobs (in batch order) first use them."""
    order: dict[int, int] = {}
    for opt, _ in placed:
        order.setdefault(opt.gpu, len(order))
    return [(replace(opt, gpu=order[opt.gpu]), t) for opt, t in placed]


def _break_gpu_symmetry(m, pick, options, gpus) -> bool:  # noqa: ANN001
    """Identical GPUs are interchangeable: job k uses GPU i only if an earlier job uses GPU i-1.

    Returns whether the constraints were added (the hint must then be relabelled).
    """
    if len(gpus) < 2 or len({g.name for g in gpus}) != 1:
        return False
    ng = len(gpus)
    on = []  # on[j][g]: job j runs on GPU g
    for j, xs in enumerate(pick):
        row = []
        for g in range(ng):
            row.append(sum(x for o, x in zip(options[j], xs) if o.gpu == g))
        on.append(row)
    # used[j][g]: some job among 0..j runs on GPU g (monotone in j).
    prev = None
    for j in range(len(pick)):
        cur = []
        for g in range(ng):
            u = m.new_bool_var(f"u{j}_{g}")
            m.add(u >= on[j][g])
            if prev is not None:
                m.add(u >= prev[g])
                m.add(u <= prev[g] + on[j][g])
            else:
                m.add(u <= on[j][g])
            cur.append(u)
        for g in range(1, ng):
            # job j may open GPU g only if GPU g-1 was used by an earlier job
            m.add(on[j][g] <= (prev[g - 1] if prev is not None else 0) + (prev[g] if prev is not None else 0))
        prev = cur
    return True
