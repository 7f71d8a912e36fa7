"""`optimal`: the clairvoyant reference — a CP-SAT schedule from ground truth, replayed.

With every job's true peak memory, speed per profile, startup and arrival known in advance, the
batch is solved once with OR-Tools CP-SAT for the makespan (the model is in `optimal_model.py`
and docs/optimal.md), then replayed through the normal scheduler core like any policy:

  * per GPU, planned jobs are taken in planned start order; a job starts as soon as it has
    arrived, no busy instance overlaps its planned memory slots, and starting it leaves room
    (slots, compute slices, instance counts) for every job planned *earlier* on that GPU that
    has not started yet (list-schedule semantics: robust to small timing differences, and a
    later job never delays an earlier one);
  * to start, idle instances in the way are destroyed, the planned instance is created at its
    planned start slot (an identical idle instance is reused) and the job is launched.

The policy reads ground truth, so it is `clairvoyant`: never run by default, never offered for
real runs. It sizes every instance by the true peak and so never runs out of memory. Needs the
`optimal` extra (`pip install 'migsched[optimal]'`).

    policy = OptimalPolicy(jobs, time_limit_s=30)
    result = simulate(jobs, get_model("A100-80GB"), policy=policy)
    result.policy_summary   # solver_makespan_s, solver_bound_s, optimal (1 if proven)
"""

from __future__ import annotations

from collections.abc import Sequence

from migsched.backends.sim.costs import SimCosts
from migsched.core.events import Action, CreateInstance, DestroyInstance, Launch, Reject
from migsched.core.state import ClusterView, JobState
from migsched.errors import MigschedError
from migsched.jobs.model import Job
from migsched.policies.base import Policy
from migsched.policies.optimal_model import (
    INSTALL_HINT,
    OptimalTooLargeError,
    OptimalUnavailableError,
    Plan,
    Planned,
    load_cp_model,
    solve,
)
from migsched.policies.registry import register

__all__ = ["INSTALL_HINT", "OptimalPolicy", "OptimalTooLargeError", "OptimalUnavailableError"]


@register
class OptimalPolicy(Policy):
    """Solve the batch for the makespan with CP-SAT from ground truth, then replay the plan.

    Args:
        jobs: the batch, with its ground truth (`Job.truth`); the same jobs the run submits.
        time_limit_s: CP-SAT's time limit (the best plan found by then is used).
        workers: CP-SAT search workers.
        seed: CP-SAT random seed.
        tick_s: the model's time unit in seconds (durations are rounded up to whole ticks).
        create_s: GPU-instance creation time charged to every job (the simulator's default).

    Raises:
        OptimalUnavailableError: OR-Tools is not installed.
        OptimalTooLargeError: more than `MAX_JOBS` jobs.
        MigschedError: a job has no ground truth.
    """

    name = "optimal"
    clairvoyant = True
    description = "clairvoyant reference: CP-SAT makespan schedule from ground truth, replayed (needs ortools)"
    MAX_JOBS = 200

    def __init__(self, jobs: Sequence[Job], time_limit_s: float = 30.0, workers: int = 2, seed: int = 0, *,
                 tick_s: float = 0.1, create_s: float = SimCosts().gi_create_s) -> None:
        load_cp_model()  # fail now, not after the simulation has started
        jobs = list(jobs)
        if len(jobs) > self.MAX_JOBS:
            raise OptimalTooLargeError(
                f"the 'optimal' policy solves an exact model and accepts at most {self.MAX_JOBS} jobs; "
                f"this batch has {len(jobs)} (use a smaller batch, or compare against metrics.lower_bound_s)")
        for job in jobs:
            if job.truth is None:
                raise MigschedError(f"job {job.job_id!r} has no model: the 'optimal' policy needs its ground "
                                    "truth (runtime_s, speedup, peak_gib)")
        if time_limit_s <= 0:
            raise MigschedError(f"time_limit_s must be > 0, got {time_limit_s}")
        if tick_s <= 0:
            raise MigschedError(f"tick_s must be > 0, got {tick_s}")
        self.jobs = jobs
        self.time_limit_s = float(time_limit_s)
        self.workers = int(workers)
        self.seed = int(seed)
        self.tick_s = float(tick_s)
        self.create_s = float(create_s)
        self.plan: Plan | None = None
        self._order: list[list[Planned]] = []  # per GPU, in planned start order

    # ---- solving ------------------------------------------------------------------------------
    def setup(self, view: ClusterView) -> list[Action]:
        self._solve(view)
        return []

    def _solve(self, view: ClusterView) -> None:
        if self.plan is not None:
            return
        if any(not g.mig for g in view.gpus):
            raise MigschedError("the 'optimal' policy needs every GPU in MIG mode")
        models = [g.model for g in view.gpus]
        self.plan = solve(self.jobs, models, time_limit_s=self.time_limit_s, workers=self.workers,
                          seed=self.seed, tick_s=self.tick_s, create_s=self.create_s)
        self._order = [[] for _ in models]
        for p in sorted(self.plan.jobs.values(), key=lambda p: (p.start_tick, p.index)):
            self._order[p.option.gpu].append(p)

    def summary(self) -> dict[str, float]:
        if self.plan is None:
            return {}
        p = self.plan
        return {
            "solver_makespan_s": p.makespan_ticks * p.tick_s,
            "solver_bound_s": p.bound_ticks * p.tick_s,
            "optimal": 1.0 if p.status == "optimal" else 0.0,
            "solver_hint_makespan_s": p.heuristic_ticks * p.tick_s,
            "solver_wall_s": p.wall_s,
        }

    # ---- replay -------------------------------------------------------------------------------
    def schedule(self, view: ClusterView) -> list[Action]:
        self._solve(view)
        plan = self.plan
        assert plan is not None
        for job in view.queue:
            if job.job_id in plan.unplaceable:
                return [Reject(job.job_id, plan.unplaceable[job.job_id])]
            if job.job_id not in plan.jobs:
                raise MigschedError(f"job {job.job_id!r} was not among the jobs given to OptimalPolicy; "
                                    "build the policy with the batch it will run")
        for g, order in enumerate(self._order):
            acts = self._next_on(view, g, order)
            if acts:
                return acts
        return []

    def _next_on(self, view: ClusterView, g: int, order: list[Planned]) -> list[Action]:
        """The actions that start the first startable planned job on GPU `g`, if any."""
        gpu = view.gpus[g]
        model = gpu.model
        busy = [i for i in gpu.layout.instances if i.busy]
        busy_slots = {s for i in busy for s in i.slots}
        reserved: list[Planned] = []  # earlier planned jobs that have not started
        for p in order:
            job = view.jobs.get(p.job_id)
            if job is not None and job.state is not JobState.QUEUED:
                continue  # started (or ended)
            if job is not None and self._room(model, busy, busy_slots, reserved, p):
                return self._start(gpu.layout, g, p)
            reserved.append(p)
        return []

    @staticmethod
    def _room(model, busy, busy_slots, reserved, p: Planned) -> bool:  # noqa: ANN001
        """Whether `p` can start now without taking what an earlier unstarted job needs."""
        opt = p.option
        slots = set(opt.slots)
        if slots & busy_slots:
            return False
        if any(slots.intersection(r.option.slots) for r in reserved):
            return False
        held = [i.profile for i in busy] + [r.option.profile for r in reserved] + [opt.profile]
        if sum(q.compute_slices for q in held) > model.compute_slices or len(held) > model.max_instances:
            return False
        return sum(1 for q in held if q == opt.profile) <= opt.profile.max_count

    @staticmethod
    def _start(layout, g: int, p: Planned) -> list[Action]:  # noqa: ANN001
        """Destroy idle instances in the way, create the planned instance, launch."""
        opt = p.option
        for inst in layout.instances:
            if inst.start == opt.start and inst.profile == opt.profile and not inst.busy:
                return [Launch(p.job_id, g, opt.start)]
        acts: list[Action] = []
        slots = set(opt.slots)
        # Idle instances on the planned slots first, then other idle ones while the MIG rules
        # (compute slices, instance counts) still refuse the new instance, largest first.
        idle = sorted((i for i in layout.instances if not i.busy),
                      key=lambda i: (not slots.intersection(i.slots), -i.profile.compute_slices, i.start))
        for inst in idle:
            if not slots.intersection(inst.slots) and layout.fits(opt.profile, opt.start):
                break
            layout = layout.release(inst.start)
            acts.append(DestroyInstance(g, inst.start))
        if not layout.fits(opt.profile, opt.start):  # pragma: no cover - _room checked the busy ones
            return []
        return [*acts, CreateInstance(g, opt.profile.name, opt.start), Launch(p.job_id, g, opt.start)]
