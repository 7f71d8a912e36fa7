"""The run loop: a backend, the scheduler core and a policy, until every job has ended.

    >>> from migsched.jobs import load_jobs_dict
    >>> from migsched.hardware import get_model
    >>> jobs = load_jobs_dict({"version": 1, "jobs": [{"name": "a", "class": "scientific", "count": 2,
    ...     "hint_gib": 4, "model": {"runtime_s": 100, "peak_gib": 4, "speedup": {1: 1.0}, "startup_s": 0}}]})
    >>> r = simulate(jobs, get_model("A100-40GB"), policy="serial")
    >>> r.makespan_s, r.jobs_completed
    (200.0, 2)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from migsched.backends.base import Backend
from migsched.backends.sim.costs import SimCosts
from migsched.backends.sim.simulator import Simulator
from migsched.core.scheduler import SchedulerCore
from migsched.core.state import JobState
from migsched.core.timeline import Timeline
from migsched.hardware.catalog import GpuModel
from migsched.jobs.model import Job
from migsched.policies.base import Policy
from migsched.policies.registry import create_policy


@dataclass(frozen=True, slots=True)
class JobResult:
    """How one job ended."""

    job_id: str
    name: str
    job_class: str
    arrival_s: float
    finished_s: float | None
    state: str
    failure: str | None
    attempts: int
    outcomes: tuple[str, ...]

    @property
    def jct_s(self) -> float | None:
        """Job completion time: from submission to the end of its successful run."""
        return None if self.finished_s is None or self.state != "done" else self.finished_s - self.arrival_s


@dataclass(frozen=True)
class RunResult:
    """Everything a report needs about one policy's run of a batch."""

    policy: str
    gpu: str
    gpus: int
    jobs: tuple[JobResult, ...]
    makespan_s: float
    energy_j: float
    energy_per_gpu_j: tuple[float, ...]
    oom_restarts: int
    early_restarts: int
    reconfigurations: int
    wasted_gpu_s: float
    slice_utilisation: float
    timeline: Timeline
    power_series: list[list[tuple[float, float]]] = field(repr=False)
    policy_summary: dict[str, float]
    events_processed: int
    wall_s: float

    @property
    def jobs_completed(self) -> int:
        """Jobs that finished successfully."""
        return sum(1 for j in self.jobs if j.state == "done")

    @property
    def jobs_failed(self) -> int:
        """Jobs that ended without finishing (rejected, failed, out of memory everywhere)."""
        return sum(1 for j in self.jobs if j.state != "done")

    @property
    def mean_jct_s(self) -> float:
        """Mean completion time of the completed jobs."""
        done = [j.jct_s for j in self.jobs if j.jct_s is not None]
        return sum(done) / len(done) if done else 0.0

    @property
    def throughput_jobs_per_h(self) -> float:
        """Completed jobs per hour of makespan."""
        return self.jobs_completed / self.makespan_s * 3600.0 if self.makespan_s > 0 else 0.0


def run(jobs: Sequence[Job], gpus: Sequence[GpuModel], policy: Policy, backend: Backend) -> RunResult:
    """Run `jobs` on `gpus` under `policy` with `backend` until every job has ended."""
    wall0 = time.perf_counter()
    core = SchedulerCore(gpus, policy)
    backend.start(gpus, policy.mig_enabled, jobs, memory_samples=policy.wants_memory_samples)
    if not backend.arrivals_pending:
        core.no_more_arrivals()
    last_s = 0.0
    while not core.done:
        events = backend.next_events()
        if events is None:
            core.no_more_arrivals()
            actions = core.stalled()
            if not actions:
                break
            backend.execute(actions)
            continue
        last_s = max(last_s, max(e.time_s for e in events))
        if not backend.arrivals_pending:
            core.no_more_arrivals()
        backend.execute(core.handle(events))
    backend.close()
    view = core.view
    ends = [j.finished_s for j in view.jobs.values() if j.finished_s is not None]
    makespan = max(ends, default=last_s)
    core.timeline.close(makespan)
    energies = backend.energy_j(makespan)
    results = tuple(
        JobResult(j.job_id, j.spec.name, j.spec.job_class.value, j.spec.arrival_s, j.finished_s,
                  j.state.value if j.state in (JobState.DONE, JobState.FAILED) else "unfinished",
                  j.failure, len(j.attempts), tuple(a.outcome for a in j.attempts))
        for j in sorted(view.jobs.values(), key=lambda j: j.seq)
    )
    total_slices = sum(g.compute_slices for g in gpus)
    busy = sum((s.t1_s - s.t0_s) * s.compute_slices for s in core.timeline.jobs if s.t1_s is not None)
    util = busy / (makespan * total_slices) if makespan > 0 else 0.0
    return RunResult(
        policy=policy.name, gpu=gpus[0].name if gpus else "", gpus=len(gpus), jobs=results,
        makespan_s=makespan, energy_j=sum(energies), energy_per_gpu_j=tuple(energies),
        oom_restarts=core.counters.oom_restarts, early_restarts=core.counters.early_restarts,
        reconfigurations=core.counters.reconfigurations, wasted_gpu_s=core.counters.wasted_gpu_s,
        slice_utilisation=util, timeline=core.timeline, power_series=backend.power_series(),
        policy_summary=policy.summary(), events_processed=getattr(backend, "events_processed", 0),
        wall_s=time.perf_counter() - wall0,
    )


def simulate(jobs: Sequence[Job], model: GpuModel, gpus: int = 1, policy: str | Policy = "migm",
             seed: int = 0, costs: SimCosts | None = None, record_power: bool = True,
             **policy_options) -> RunResult:
    """Simulate `jobs` on `gpus` GPUs of `model` under a policy (by name or instance)."""
    pol = create_policy(policy, **policy_options) if isinstance(policy, str) else policy
    sim = Simulator(costs=costs, seed=seed, record_power=record_power)
    return run(jobs, [model] * gpus, pol, sim)
