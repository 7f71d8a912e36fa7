"""The run loop: a job source, a backend, the scheduler core and a policy, until every job ended.

    >>> from migsched.jobs import load_jobs_dict
    >>> from migsched.hardware import get_model
    >>> jobs = load_jobs_dict({"version": 1, "jobs": [{"name": "a", "class": "scientific", "count": 2,
    ...     "hint_gib": 4, "model": {"runtime_s": 100, "peak_gib": 4, "speedup": {1: 1.0}, "startup_s": 0}}]})
    >>> r = simulate(jobs, get_model("A100-40GB"), policy="serial")
    >>> r.makespan_s, r.jobs_completed
    (200.0, 2)

`drive` is the loop itself, the same for simulated and real time: it polls the backend up to the
next deadline (the next submission, the policy's wake-up), hands the events and the submissions
due to the core, and passes the core's actions to the backend, telling an optional observer (the
crash-safe store, the live progress view) about both *before* the backend acts.
"""

from __future__ import annotations

import gc
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from migsched.backends.sim.costs import SimCosts
from migsched.backends.sim.simulator import Simulator
from migsched.core.backend import Backend, RunSettings
from migsched.core.events import Action, Event, JobArrived
from migsched.core.policy import Policy
from migsched.core.scheduler import SchedulerCore
from migsched.core.source import JobSource, TraceSource
from migsched.core.state import JobState
from migsched.core.timeline import Timeline
from migsched.hardware.catalog import GpuModel
from migsched.jobs.model import Job
from migsched.policies.registry import create_policy

#: The run loop moves what survived into the collector's permanent generation every this many
#: batches (`drive`): often enough that no full collection scans the run's growing state, rarely
#: enough that short-lived garbage in reference cycles is still collected young.
REFREEZE_BATCHES = 256


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One run of a job as reports show it: where, when, how it ended.

    `compute_share` is the instance's compute slices / its GPU's (1.0 with MIG off), so
    `(ended_s - launched_s) * compute_share` is the GPU·s the run used.
    """

    gpu: int
    start: int
    profile: str
    launched_s: float
    ended_s: float
    outcome: str  # ok | oom | killed:<reason> | failed | launch-failed
    compute_share: float
    peak_mib: float


@dataclass(frozen=True, slots=True)
class JobResult:
    """How one job ended; `runs` are its attempts in order (empty when it never started)."""

    job_id: str
    name: str
    job_class: str
    arrival_s: float
    finished_s: float | None
    state: str
    failure: str | None
    attempts: int
    outcomes: tuple[str, ...]
    runs: tuple[AttemptRecord, ...] = ()

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
    backend: str = "sim"
    energy_source: str = "modelled"
    failed_actions: int = 0
    job_energy_j: dict[str, float] = field(default_factory=dict)  # attributed per job (nvml), else empty
    mig_mode_changes: int = 0  # GPUs turned MIG on or off during the run (`SetMigMode`)

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


class RunObserver(Protocol):
    """Told what the loop does; `before_execute` runs before the backend acts on `actions`."""

    def after_handle(self, core: SchedulerCore, events: Sequence[Event]) -> None: ...

    def before_execute(self, core: SchedulerCore, actions: Sequence[Action]) -> None: ...


def settings_for(policy: Policy, backend: Backend) -> RunSettings:
    """What the policy asks of the backend: MIG mode, and memory samples only when it reads them."""
    interval = None
    if policy.wants_memory_samples:
        interval = policy.sample_interval_s or backend.default_sample_interval_s
    return RunSettings(policy.mig_enabled, interval, mig_per_gpu=policy.toggles_mig)


def open_core(policy: Policy, backend: Backend, *, fenced: Mapping[str, str] | None = None) -> SchedulerCore:
    """Open the backend and build the core on the GPUs it discovered (`fenced`: UUID -> reason
    of GPUs a resumed run fences again, `SchedulerCore`)."""
    return SchedulerCore(policy, backend.open(settings_for(policy, backend)),
                         mig_toggle=backend.capabilities.mig_toggle, fenced=fenced)


def drive(core: SchedulerCore, backend: Backend, source: JobSource, observer: RunObserver | None = None,
          *, first: Sequence[Event] = (), keep_frozen: bool = False) -> float:
    """Run until every job has ended; returns the time of the last event. See the module docstring.

    `first` are events to hand the core before anything else (jobs that ended while a resumed
    scheduler was down). `keep_frozen`: leave the collector's frozen objects frozen on return;
    the caller unfreezes them (`gc.unfreeze`) once it has read the run's results, so that no
    full collection over every job's state runs in between (~1 s at 100,000 jobs).
    """
    clock = backend.clock
    poll_s = getattr(source, "poll_s", None)
    if source.exhausted:
        core.no_more_arrivals()
    last_s = 0.0
    pending: list[Event] = list(first)
    # What lives as long as the run (the jobs, the GPUs, the policy's set-up, and what the run
    # adds to them: attempts, timeline records, learned figures) is kept out of the collector's
    # passes: frozen now, after the first batch (the first arrivals) and every `REFREEZE_BATCHES`
    # batches, unfrozen when the run ends. Full collections over 100,000 jobs paused the loop
    # ~100 ms each; without the re-freeze, 23 of them (and 4,400 younger ones) took 10 % of a
    # 100k-job run. Garbage in reference cycles that was frozen is collected after the run.
    gc.freeze()
    batches = 0
    try:
        while not core.done or pending or core.in_flight:
            if pending:
                events: list[Event] | None = pending
                pending = []
            else:
                deadline = math.inf
                t = source.next_arrival_s()
                if t is not None and t < deadline:
                    deadline = t
                t = core.wake_at_s
                if t is not None and t < deadline:
                    deadline = t
                now_s = clock.now_s()
                if poll_s is not None and not source.exhausted and now_s + poll_s < deadline:
                    deadline = now_s + poll_s
                events = backend.poll(deadline if deadline > now_s else now_s)
            now_s = clock.now_s()
            if events is None:  # nothing in flight, nothing due: fail what can never run
                core.no_more_arrivals()
                actions = core.stalled()
                if not actions:
                    break
                _execute(core, backend, observer, (), actions)
                continue
            due = source.due(now_s)
            batch = [*events, *(JobArrived(now_s, spec) for spec in due)] if due else list(events)
            woke = core.wake_at_s is not None and now_s >= core.wake_at_s
            if not batch and not woke:
                continue
            if batch and now_s > last_s:
                last_s = now_s
            if source.exhausted:
                core.no_more_arrivals()
            _execute(core, backend, observer, batch, core.handle(batch, now_s, woke=woke))
            batches += 1
            if batches == 1 or batches % REFREEZE_BATCHES == 0:
                gc.freeze()
    finally:
        try:
            core.policy.close()  # e.g. migm's history file, also when the loop is interrupted
        except Exception as exc:  # noqa: BLE001 - what the policy keeps must not hide the run's own error
            warnings.warn(f"migsched: policy {core.policy.name!r} could not close: {exc}", stacklevel=2)
        finally:
            if not keep_frozen:
                gc.unfreeze()
    return last_s


def _execute(core: SchedulerCore, backend: Backend, observer: RunObserver | None,
             events: Sequence[Event], actions: Sequence[Action]) -> None:
    if observer is not None:
        observer.after_handle(core, events)
        observer.before_execute(core, actions)
    if actions:
        backend.execute(actions)


def result_of(core: SchedulerCore, backend: Backend, last_s: float, wall_s: float) -> RunResult:
    """The run's figures once `drive` returned."""
    view = core.view
    ends = [j.finished_s for j in view.jobs.values() if j.finished_s is not None]
    makespan = max(ends, default=last_s)
    core.timeline.close(makespan)
    energies = backend.energy_j(makespan)
    results = tuple(
        JobResult(j.job_id, j.spec.name, j.spec.job_class.value, j.arrived_s, j.finished_s,
                  j.state.value if j.state in (JobState.DONE, JobState.FAILED) else "unfinished",
                  j.failure, len(j.attempts), tuple(a.outcome for a in j.attempts),
                  tuple(_record(view, a) for a in j.attempts))
        for j in sorted(view.jobs.values(), key=lambda j: j.seq)
    )
    total_slices = sum(g.model.compute_slices for g in view.gpus)
    busy = sum((s.t1_s - s.t0_s) * s.compute_slices for s in core.timeline.jobs if s.t1_s is not None)
    util = busy / (makespan * total_slices) if makespan > 0 and total_slices else 0.0
    names = sorted({g.model.name for g in view.gpus})
    policy = core.policy
    return RunResult(
        policy=policy.name, gpu="+".join(names), gpus=len(view.gpus), jobs=results,
        makespan_s=makespan, energy_j=sum(energies), energy_per_gpu_j=tuple(energies),
        oom_restarts=core.counters.oom_restarts, early_restarts=core.counters.early_restarts,
        reconfigurations=core.counters.reconfigurations, wasted_gpu_s=core.counters.wasted_gpu_s,
        slice_utilisation=util, timeline=core.timeline, power_series=backend.power_series(),
        policy_summary=policy.summary(), events_processed=getattr(backend, "events_processed", 0),
        wall_s=wall_s, backend=backend.name, energy_source=backend.capabilities.energy,
        failed_actions=core.counters.failed_actions,
        job_energy_j=dict(getattr(backend, "job_energy_j", {}) or {}),
        mig_mode_changes=core.counters.mig_mode_changes,
    )


def _record(view, a) -> AttemptRecord:
    """The report's view of one core `Attempt` (its compute share from the GPU's model)."""
    model = view.gpus[a.gpu].model
    prof = model.instance_profile(a.profile)
    share = prof.compute_slices / model.compute_slices
    return AttemptRecord(a.gpu, a.start, a.profile, a.launched_s, a.ended_s, a.outcome, share, a.peak_mib)


def run(source: JobSource | Sequence[Job], policy: Policy, backend: Backend,
        observer: RunObserver | None = None) -> RunResult:
    """Run the jobs of `source` (a job source, or jobs replayed at their arrival times) to the end."""
    wall0 = time.perf_counter()
    if not hasattr(source, "due"):
        source = TraceSource(j.spec for j in source)  # type: ignore[union-attr]
    core = open_core(policy, backend)
    try:
        try:
            last_s = drive(core, backend, source, observer, keep_frozen=True)  # type: ignore[arg-type]
        finally:
            backend.close()
        return result_of(core, backend, last_s, time.perf_counter() - wall0)
    finally:
        gc.unfreeze()


def simulate(jobs: Sequence[Job], model: GpuModel | Sequence[GpuModel], gpus: int = 1,
             policy: str | Policy = "migm", seed: int = 0, costs: SimCosts | None = None,
             record_power: bool = True, observer: RunObserver | None = None, **policy_options) -> RunResult:
    """Simulate `jobs` on `gpus` GPUs of `model` (or on the given list of models) under a policy.

    `observer` is told about every handled batch (a progress bar reads the core's jobs there).
    """
    pol = create_policy(policy, **policy_options) if isinstance(policy, str) else policy
    models = [model] * gpus if isinstance(model, GpuModel) else list(model)
    truth = {}
    for j in jobs:
        if j.truth is None:
            from migsched.errors import MigschedError
            raise MigschedError(f"job {j.job_id!r} has no model: the simulator needs runtime_s, speedup, peak_gib")
        truth[j.job_id] = j.truth
    sim = Simulator(models, truth, costs=costs, seed=seed, record_power=record_power)
    return run(TraceSource(j.spec for j in jobs), pol, sim, observer)
