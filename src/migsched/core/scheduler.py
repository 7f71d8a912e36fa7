"""The scheduler core: events in, actions out, for any backend.

`SchedulerCore.handle(events)` updates job and GPU state from what a backend reports, asks the
policy what to do, checks every action against the partition engine and the job states, applies
it to its own view and returns the actions for the backend to carry out. There is no notion of
simulation here: the simulator, local processes, NVML and Ray all speak these events and actions.

Mechanism that is the same for every policy lives here, not in policies:
  * a job that runs out of memory on the largest instance any GPU offers fails with a reason
    (no restart can help); otherwise it goes back to the queue at its FIFO place;
  * a killed job goes back to the queue at its FIFO place;
  * when nothing runs, nothing more can arrive and the policy places nothing, the queued jobs
    fail with a reason instead of hanging the run.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from migsched.core.events import (
    Action,
    CreateInstance,
    DestroyInstance,
    Event,
    ExitStatus,
    InstanceCreated,
    InstanceDestroyed,
    JobArrived,
    JobExited,
    JobStarted,
    Kill,
    KillReason,
    Launch,
    MemorySample,
    Reject,
)
from migsched.core.state import Attempt, ClusterView, GpuView, JobState, JobView
from migsched.core.timeline import Timeline
from migsched.errors import MigschedError, SchedulingError
from migsched.hardware.catalog import GpuModel
from migsched.partition.layout import Instance, Layout
from migsched.policies.base import Policy

_MAX_ROUNDS = 1_000_000  # policy calls per handle(): a policy that never settles is a bug


@dataclass(slots=True)
class Counters:
    """Run-wide counts the reports show."""

    oom_restarts: int = 0
    early_restarts: int = 0
    reconfigurations: int = 0  # GPU-instance creates + destroys after setup
    wasted_gpu_s: float = 0.0  # run time lost to OOM and kills, weighted by the instance's compute share


class SchedulerCore:
    """Tracks jobs and layouts, runs the policy, validates and returns its actions."""

    def __init__(self, gpus: Sequence[GpuModel], policy: Policy) -> None:
        self.policy = policy
        views = []
        for idx, model in enumerate(gpus):
            if policy.mig_enabled:
                layout = Layout.empty(model)
            else:  # MIG off: one permanent pseudo-instance covering the whole GPU
                layout = Layout(model, (Instance(model.whole_gpu, 0),))
            views.append(GpuView(idx, model, policy.mig_enabled, layout))
        self.view = ClusterView(now_s=0.0, gpus=views, queue=deque(), running={}, jobs={})  # builds groups
        self.counters = Counters()
        self.timeline = Timeline()
        self._seq = 0
        self._setup_done = False
        self._samples: list[tuple[JobView, MemorySample]] = []
        for g in views:
            if not g.mig:
                self.timeline.instance_up(0.0, g.index, 0, g.model.memory_slices, "whole", mark=False)

    # ---- public ---------------------------------------------------------------------------
    def handle(self, events: Iterable[Event]) -> list[Action]:
        """Absorb simultaneous events, then return the actions the policy decides on.

        The first call also runs `policy.setup` (after the first arrivals, so that a static
        policy can look at the queue); setup actions do not count as reconfigurations.
        """
        for ev in events:
            self.view.now_s = max(self.view.now_s, ev.time_s)
            self._absorb(ev)
        actions: list[Action] = []
        if not self._setup_done:
            actions += self._apply_all(self.policy.setup(self.view))
            self._setup_done = True
        samples, self._samples = self._samples, []
        for job, sample in samples:
            if job.state is JobState.RUNNING and not job.killing:
                actions += self._apply_all(self.policy.on_memory_sample(self.view, job, sample))
        for _ in range(_MAX_ROUNDS):
            batch = self.policy.schedule(self.view)
            if not batch:
                break
            actions += self._apply_all(batch)
        else:
            raise SchedulingError(f"policy {self.policy.name!r} kept returning actions; it never settles")
        return actions

    def stalled(self) -> list[Action]:
        """Called when the backend has nothing left to report: fail what can never run."""
        if self.view.running or not self.view.queue:
            return []
        self.view.more_arrivals = False
        actions = self.handle(())
        if not self.view.running and not actions:
            for job in list(self.view.queue):
                need = job.needs_more_than_mib
                why = (f"needs more than {need / 1024:.1f} GiB" if need else "no instance could be made for it")
                actions += self._apply_all([Reject(job.job_id, f"policy {self.policy.name!r} could not place it ({why})")])
        return actions

    def no_more_arrivals(self) -> None:
        """The backend will submit no further jobs."""
        self.view.more_arrivals = False

    @property
    def done(self) -> bool:
        """True when every submitted job has ended and no more will arrive."""
        return not self.view.more_arrivals and not self.view.queue and not self.view.running

    # ---- events ---------------------------------------------------------------------------
    def _absorb(self, ev: Event) -> None:
        v = self.view
        if isinstance(ev, JobArrived):
            job = JobView(spec=ev.job.spec, seq=self._seq)
            self._seq += 1
            if job.job_id in v.jobs:
                raise MigschedError(f"job id {job.job_id!r} submitted twice")
            v.jobs[job.job_id] = job
            self._enqueue(job)
        elif isinstance(ev, InstanceCreated):
            g = v.gpus[ev.gpu]
            self.timeline.instance_up(ev.time_s, ev.gpu, ev.start, g.model.profile(ev.profile).size, ev.profile)
        elif isinstance(ev, InstanceDestroyed):
            self.timeline.instance_down(ev.time_s, ev.gpu, ev.start)
        elif isinstance(ev, JobStarted):
            job = v.jobs[ev.job_id]
            job.launched_s = ev.time_s
            prof = job.profile
            assert prof is not None, ev
            self.timeline.job_up(ev.time_s, ev.job_id, ev.gpu, ev.start, prof.size, prof.compute_slices)
        elif isinstance(ev, MemorySample):
            job = v.jobs.get(ev.job_id)
            if job is not None and job.state is JobState.RUNNING:
                job.samples.append(ev)
                if self.policy.wants_memory_samples:
                    self._samples.append((job, ev))
        elif isinstance(ev, JobExited):
            self._exited(ev)

    def _exited(self, ev: JobExited) -> None:
        v = self.view
        job = v.jobs[ev.job_id]
        if job.state is not JobState.RUNNING:
            return
        assert job.gpu is not None and job.start is not None and job.profile is not None
        gpu = v.gpus[job.gpu]
        launched = job.launched_s if job.launched_s is not None else ev.time_s
        reason = job.killing
        outcome = ev.status.value if ev.status is not ExitStatus.KILLED else f"killed:{reason or 'killed'}"
        peak = max(ev.peak_mib, max((s.used_mib for s in job.samples), default=0.0))
        job.attempts.append(Attempt(job.gpu, job.start, job.profile.name, job.profile.memory_mib,
                                    launched, ev.time_s, outcome, peak))
        self.timeline.job_down(ev.time_s, job.job_id, outcome)
        self._set_layout(gpu, gpu.layout.mark(job.start, False))
        v.running.pop(job.job_id, None)
        profile = job.profile
        job.gpu = job.start = job.profile = job.launched_s = None
        job.samples = []
        job.killing = ""
        lost_s = (ev.time_s - launched) * profile.compute_slices / gpu.model.compute_slices
        if ev.status is ExitStatus.OK:
            job.state = JobState.DONE
            job.finished_s = ev.time_s
        elif ev.status is ExitStatus.FAILED:
            job.state = JobState.FAILED
            job.finished_s = ev.time_s
            job.failure = ev.detail or "the job's process failed"
        elif ev.status is ExitStatus.OOM:
            self.counters.wasted_gpu_s += lost_s
            if profile.memory_mib >= self.view.largest_instance_mib:
                job.state = JobState.FAILED
                job.finished_s = ev.time_s
                job.failure = (f"out of memory on {profile.name} ({profile.memory_mib / 1024:.1f} GiB), "
                               "the largest instance available")
            else:
                self.counters.oom_restarts += 1
                self._enqueue(job)
        else:  # killed
            self.counters.wasted_gpu_s += lost_s
            if reason == KillReason.EARLY_RESTART.value:
                self.counters.early_restarts += 1
            self._enqueue(job)

    # ---- actions --------------------------------------------------------------------------
    def _apply_all(self, actions: Iterable[Action]) -> list[Action]:
        out = []
        for a in actions:
            self._apply(a)
            out.append(a)
        return out

    def _apply(self, a: Action) -> None:
        v = self.view
        try:
            if isinstance(a, CreateInstance):
                gpu = self._mig_gpu(a.gpu)
                self._set_layout(gpu, gpu.layout.with_instance(gpu.model.profile(a.profile), a.start))
                self._count_reconf()
            elif isinstance(a, DestroyInstance):
                gpu = self._mig_gpu(a.gpu)
                self._set_layout(gpu, gpu.layout.release(a.start))
                self._count_reconf()
            elif isinstance(a, Launch):
                job = v.jobs.get(a.job_id)
                if job is None or job.state is not JobState.QUEUED:
                    raise SchedulingError(f"cannot launch {a.job_id!r}: it is not queued")
                gpu = v.gpus[a.gpu]
                inst = gpu.layout.instance_at(a.start)
                if inst.busy:
                    raise SchedulingError(f"cannot launch {a.job_id!r} on busy {inst} of GPU {a.gpu}")
                self._set_layout(gpu, gpu.layout.mark(a.start, True))
                self._dequeue(job)
                job.state = JobState.RUNNING
                job.gpu, job.start, job.profile = a.gpu, a.start, inst.profile
                v.running[job.job_id] = job
            elif isinstance(a, Kill):
                job = v.running.get(a.job_id)
                if job is None:
                    raise SchedulingError(f"cannot kill {a.job_id!r}: it is not running")
                job.killing = a.reason.value
            elif isinstance(a, Reject):
                job = v.jobs.get(a.job_id)
                if job is None or job.state is not JobState.QUEUED:
                    raise SchedulingError(f"cannot reject {a.job_id!r}: it is not queued")
                self._dequeue(job)
                job.state = JobState.FAILED
                job.failure = a.reason
                job.finished_s = v.now_s
            else:
                raise SchedulingError(f"unknown action {a!r}")
        except SchedulingError:
            raise
        except MigschedError as exc:
            raise SchedulingError(f"policy {self.policy.name!r} action {a} is illegal: {exc}") from exc

    def _mig_gpu(self, index: int) -> GpuView:
        gpu = self.view.gpus[index]
        if not gpu.mig:
            raise SchedulingError(f"GPU {index} runs with MIG off; it has no GPU instances to change")
        return gpu

    def _count_reconf(self) -> None:
        if self._setup_done:
            self.counters.reconfigurations += 1

    def _set_layout(self, gpu: GpuView, layout: Layout) -> None:
        self.view.set_layout(gpu.index, layout)

    def _enqueue(self, job: JobView) -> None:
        job.state = JobState.QUEUED
        q = self.view.queue
        if not q or q[-1].seq < job.seq:
            q.append(job)  # an arrival: the latest seq so far
        else:
            bisect.insort(q, job, key=lambda j: j.seq)  # a restart keeps its FIFO place

    def _dequeue(self, job: JobView) -> None:
        q = self.view.queue
        if q and q[0] is job:
            q.popleft()  # the usual case: FIFO policies start the head job
            return
        i = bisect.bisect_left(q, job.seq, key=lambda j: j.seq)
        if i < len(q) and q[i] is job:
            del q[i]
        else:
            q.remove(job)
