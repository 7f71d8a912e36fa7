"""The scheduler core: events in, actions out, for any backend.

`SchedulerCore(policy, gpus)` adopts the GPUs a backend discovered (each with its own model and
the instances that already exist). `handle(events, now_s)` updates job and GPU state from what
the backend and the job source report, tells the policy what changed (`Changes`), checks every
action it returns against the partition engine and the job states, applies it to the view it
plans on and returns the actions for the backend. There is no notion of simulation here.

The view is what the policy plans on: confirmed state plus actions in flight. Confirmations
(`InstanceCreated`, `InstanceDestroyed`, `JobStarted`) settle in-flight actions; `ActionFailed`
undoes them (a failed create removes the instance and requeues the job placed on it, a failed
destroy puts the instance back, a failed launch requeues the job or, when retrying cannot help,
fails it with the backend's reason), so the view never drifts from the hardware.

Mechanism that is the same for every policy lives here, not in policies:
  * a job that runs out of memory on the largest instance any GPU offers fails with a reason
    (no restart can help); otherwise it goes back to the queue at its FIFO place;
  * a killed job goes back to the queue at its FIFO place;
  * when nothing runs, nothing more can arrive and the policy places nothing, the queued jobs
    fail with a reason instead of hanging the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from migsched.core.apply import apply_action, enqueue
from migsched.core.backend import GpuInfo
from migsched.core.discovery import build_gpu_views
from migsched.core.jobqueue import JobQueue
from migsched.core.events import (
    Action, ActionFailed, CreateInstance, DestroyInstance, Event, ExitStatus, GpuAdded, GpuLost, InstanceCreated,
    InstanceDestroyed, JobArrived, JobExited, JobStarted, Kill, KillReason, Launch, MemorySample, MigModeSet, Reject,
    SetMigMode,
)
from migsched.core.membership import add_gpu, lay_out_added
from migsched.core.policy import Changes, Policy
from migsched.core.state import (LOST_PREFIX, Attempt, ClusterView, GpuView, JobState, JobView, fence_layout,
                                  usable_largest_mib)
from migsched.core.timeline import Timeline
from migsched.errors import MigschedError, SchedulingError
from migsched.hardware.catalog import WHOLE_GPU
from migsched.jobs.model import JobSpec
from migsched.partition.layout import Layout

_MAX_ROUNDS = 1_000_000  # policy calls per handle(): a policy that never settles is a bug
MAX_LAUNCH_FAILURES = 10  # launches of one job the backend could not carry out before it fails


@dataclass(slots=True)
class Counters:
    """Run-wide counts the reports show."""

    oom_restarts: int = 0
    early_restarts: int = 0
    reconfigurations: int = 0  # GPU-instance creates + destroys after setup
    wasted_gpu_s: float = 0.0  # run time lost to OOM and kills, weighted by the instance's compute share
    failed_actions: int = 0    # actions the backend could not carry out
    checkpoints: int = 0       # kills that saved the job's state (moves that kept its progress)
    mig_mode_changes: int = 0  # `SetMigMode` actions (MIG turned on or off on one GPU)


@dataclass(slots=True)
class _Log:
    arrived: list[JobView] = field(default_factory=list)
    started: list[JobView] = field(default_factory=list)
    ended: list[JobView] = field(default_factory=list)
    requeued: list[JobView] = field(default_factory=list)
    samples: list[tuple[JobView, MemorySample]] = field(default_factory=list)
    failed: list[ActionFailed] = field(default_factory=list)
    restored: list[JobView] = field(default_factory=list)
    gpus_added: list[GpuView] = field(default_factory=list)


class SchedulerCore:
    """Tracks jobs and layouts, runs the policy, validates and returns its actions."""

    def __init__(self, policy: Policy, gpus: Sequence[GpuInfo], *, mig_toggle: bool = False,
                 fenced: Mapping[str, str] | None = None) -> None:
        """`fenced`: UUID -> reason of GPUs to fence from the start (those a resumed run had
        fenced when they joined: `build_gpu_views`)."""
        self.policy = policy
        views = build_gpu_views(policy, gpus, mig_toggle=mig_toggle, fenced=fenced)
        self.view = ClusterView(now_s=0.0, gpus=views, queue=JobQueue(), running={}, jobs={},
                                mig_toggle=mig_toggle and policy.toggles_mig)  # builds groups
        self.counters = Counters()
        self.timeline = Timeline()
        self.wake_at_s: float | None = None
        self.last_changes = Changes(0.0)  # what the latest handle() told the policy (for observers)
        self._seq = 0
        self._setup_done = False
        self._pending = _Log()  # restored jobs, told to the policy on the first handle()
        for g in views:
            for inst in g.layout.instances:
                label = inst.profile.name if g.mig else WHOLE_GPU
                self.timeline.instance_up(0.0, g.index, inst.start, inst.profile.size, label, mark=False)

    # ---- public ---------------------------------------------------------------------------
    def handle(self, events: Iterable[Event], now_s: float | None = None, *, woke: bool = False) -> list[Action]:
        """Absorb simultaneous events, tell the policy what changed, return its actions.

        `now_s` is the clock's time (at least the latest event's). The first call also runs
        `policy.setup` (after the first arrivals, so that a static policy can look at the
        queue); setup actions do not count as reconfigurations.
        """
        log, self._pending = self._pending, _Log()
        for ev in events:
            self.view.now_s = max(self.view.now_s, ev.time_s)
            self._absorb(ev, log)
        if now_s is not None:
            self.view.now_s = max(self.view.now_s, now_s)
        actions: list[Action] = lay_out_added(self, log.gpus_added) if self._setup_done else []
        if not self._setup_done:
            actions += self._apply_all(self.policy.setup(self.view))
            self._setup_done = True
        changes = Changes(self.view.now_s, log.arrived, log.started, log.ended, log.requeued,
                          log.samples, log.failed, log.restored, log.gpus_added, woke=woke)
        self.last_changes = changes
        for _ in range(_MAX_ROUNDS):
            decision = self.policy.decide(self.view, changes)
            self.wake_at_s = decision.wake_at_s
            if not decision.actions:
                break
            actions += self._apply_all(decision.actions)
            changes = Changes(self.view.now_s, first=False)
        else:
            raise SchedulingError(f"policy {self.policy.name!r} kept returning actions; it never settles")
        if self.wake_at_s is not None and self.wake_at_s <= self.view.now_s:
            self.wake_at_s = None  # a wake-up in the past would spin; the policy runs on events
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
        """The job source will submit no further jobs."""
        self.view.more_arrivals = False

    @property
    def done(self) -> bool:
        """True when every submitted job has ended and no more will arrive."""
        return not self.view.more_arrivals and not self.view.queue and not self.view.running

    @property
    def in_flight(self) -> bool:
        """True while instance creates or destroys (or MIG-mode changes) wait for the backend's answer."""
        return any(g.creating or g.destroying or g.mig_pending for g in self.view.gpus)

    def restore_job(self, spec: JobSpec, *, seq: int, arrived_s: float, state: JobState,
                    attempts: Sequence[Attempt] = (), gpu: int | None = None, start: int | None = None,
                    launched_s: float | None = None, failure: str | None = None,
                    finished_s: float | None = None, killing: str = "", checkpointing: bool = False) -> JobView:
        """Re-create a job known from a previous session of the run (`--resume`).

        A running job must sit on an instance the backend reported; the instance becomes busy;
        `killing` is the reason of a kill the previous session had decided and not seen end
        (`checkpointing`: that kill asked for a checkpoint).
        Instances no restored job owns stay idle: they are free for the policy to use or destroy.
        """
        v = self.view
        if spec.job_id in v.jobs:
            raise MigschedError(f"job id {spec.job_id!r} restored twice")
        job = JobView(spec=spec, seq=seq, arrived_s=arrived_s, attempts=list(attempts))
        self._seq = max(self._seq, seq + 1)
        v.jobs[job.job_id] = job
        self._pending.restored.append(job)
        if state is JobState.RUNNING:
            if gpu is None or start is None:
                raise MigschedError(f"running job {spec.job_id!r} restored without its instance")
            g = v.gpus[gpu]
            inst = g.layout.instance_at(start)
            if inst.busy:
                raise SchedulingError(f"cannot restore {spec.job_id!r} on busy {inst} of GPU {gpu}")
            v.set_layout(gpu, g.layout.mark(start, True))
            job.state = JobState.RUNNING
            job.gpu, job.start, job.profile = gpu, start, inst.profile
            job.launched_s = job.placed_s = launched_s
            job.killing, job.checkpointing = killing, checkpointing and bool(killing)
            v.running[job.job_id] = job
            g.jobs[start] = job.job_id
            self.timeline.job_up(launched_s or v.now_s, job.job_id, gpu, start, inst.profile.size,
                                 inst.profile.compute_slices)
            self._pending.started.append(job)
        elif state is JobState.QUEUED:
            self._enqueue(job)
            self._pending.arrived.append(job)
        else:
            job.state, job.failure, job.finished_s = state, failure, finished_s
        return job

    # ---- events ---------------------------------------------------------------------------
    def _absorb(self, ev: Event, log: _Log) -> None:
        v = self.view
        if isinstance(ev, MemorySample):  # first: the most frequent kind
            job = v.jobs.get(ev.job_id)
            if job is not None and job.state is JobState.RUNNING:
                if ev.held:  # taken earlier, held back by the plan (SamplePlan.hold_below_mib)
                    job.samples.extend(ev.held)
                job.samples.append(ev)
                if self.policy.wants_memory_samples:
                    log.samples.append((job, ev))
        elif isinstance(ev, JobArrived):
            job = JobView(spec=ev.spec, seq=self._seq, arrived_s=ev.time_s)
            self._seq += 1
            if job.job_id in v.jobs:
                raise MigschedError(f"job id {job.job_id!r} submitted twice")
            v.jobs[job.job_id] = job
            self._enqueue(job)
            log.arrived.append(job)
        elif isinstance(ev, InstanceCreated):
            g = v.gpus[ev.gpu]
            g.creating.discard(ev.start)
            self.timeline.instance_up(ev.time_s, ev.gpu, ev.start, g.model.profile(ev.profile).size, ev.profile)
        elif isinstance(ev, InstanceDestroyed):
            v.gpus[ev.gpu].destroying.pop(ev.start, None)
            self.timeline.instance_down(ev.time_s, ev.gpu, ev.start)
        elif isinstance(ev, JobStarted):
            job = v.jobs[ev.job_id]
            if not job.placed or (job.gpu, job.start) != (ev.gpu, ev.start) or (ev.attempt and ev.attempt != job.attempt):
                return  # a start the core no longer waits for (stale)
            job.launched_s = ev.time_s
            prof = job.profile
            assert prof is not None, ev
            self.timeline.job_up(ev.time_s, ev.job_id, ev.gpu, ev.start, prof.size, prof.compute_slices)
            log.started.append(job)
        elif isinstance(ev, JobExited):
            if self._exited(ev):
                log.ended.append(v.jobs[ev.job_id])
        elif isinstance(ev, ActionFailed):
            self.counters.failed_actions += 1
            log.failed.append(ev)
            self._failed(ev, log)
        elif isinstance(ev, MigModeSet):
            g = v.gpus[ev.gpu]
            g.mig_pending = False
            g.survivors.clear()
            whole = g.model.whole_gpu
            if ev.enabled:
                self.timeline.instance_down(ev.time_s, ev.gpu, 0)
            else:
                self.timeline.instance_up(ev.time_s, ev.gpu, 0, whole.size, whole.name)
        elif isinstance(ev, GpuLost):
            self._gpu_lost(ev, log)
        elif isinstance(ev, GpuAdded):
            log.gpus_added.append(add_gpu(self, ev))

    def _gpu_lost(self, ev: GpuLost, log: _Log) -> None:
        """A GPU that is gone (`GpuLost`): requeue what was placed on it, then fence it with one
        busy instance over every slot, so that no policy places or creates anything there."""
        v = self.view
        g = v.gpus[ev.gpu]
        for job in [j for j in v.running.values() if j.gpu == ev.gpu]:
            if job.launched_s is None:
                self._not_started(job, f"GPU {ev.gpu} was lost: {ev.reason}", False, log)
            elif self._exited(JobExited(ev.time_s, job.job_id, ExitStatus.KILLED, 0.0, ev.reason, job.attempt)):
                log.ended.append(job)
        for inst in g.layout.instances:
            self.timeline.instance_down(ev.time_s, g.index, inst.start)
        g.creating.clear()
        g.destroying.clear()
        g.mig_pending = False  # a late answer to a MIG-mode change there is stale (`_undo_mig`)
        g.survivors.clear()
        g.fenced = f"{LOST_PREFIX}{ev.reason}"
        self._set_layout(g, fence_layout(g.model, g.mig))
        v.largest_instance_mib = usable_largest_mib(v.gpus)

    def _exited(self, ev: JobExited) -> bool:
        v = self.view
        job = v.jobs[ev.job_id]
        if job.state is not JobState.RUNNING or (ev.attempt and ev.attempt != job.attempt):
            return False  # not running, or the exit of an older attempt (stale)
        assert job.gpu is not None and job.start is not None and job.profile is not None
        gpu = v.gpus[job.gpu]
        launched = job.launched_s if job.launched_s is not None else ev.time_s
        reason = job.killing
        outcome = ev.status.value if ev.status is not ExitStatus.KILLED else f"killed:{reason or 'killed'}"
        peak = max(ev.peak_mib, max((s.used_mib for s in job.samples), default=0.0))
        saved = _saved_progress(job, ev)
        job.attempts.append(Attempt(job.gpu, job.start, job.profile.name, job.profile.memory_mib,
                                    launched, ev.time_s, outcome, peak, saved))
        self.timeline.job_down(ev.time_s, job.job_id, outcome)
        profile = self._unplace(job)
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
                               "the largest instance available" + (f": {ev.detail}" if ev.detail else ""))
            else:
                self.counters.oom_restarts += 1
                self._enqueue(job)
        else:  # killed (with a checkpoint: its work is kept, `JobView.saved_progress`)
            if saved is not None:
                self.counters.checkpoints += 1
            else:
                self.counters.wasted_gpu_s += lost_s
            if reason == KillReason.EARLY_RESTART.value:
                self.counters.early_restarts += 1
            self._enqueue(job)
        return True

    def _unplace(self, job: JobView):
        """Take a placed job off its instance (which becomes idle); returns the instance's profile."""
        v = self.view
        assert job.gpu is not None and job.start is not None and job.profile is not None
        gpu = v.gpus[job.gpu]
        self._set_layout(gpu, gpu.layout.mark(job.start, False), busy_only=True)
        v.running.pop(job.job_id, None)
        if gpu.jobs.get(job.start) == job.job_id:
            del gpu.jobs[job.start]
        profile = job.profile
        job.gpu = job.start = job.profile = job.launched_s = job.placed_s = None
        job.samples = []
        job.killing = ""
        job.checkpointing = False
        return profile

    def _failed(self, ev: ActionFailed, log: _Log) -> None:
        a, v = ev.action, self.view
        if isinstance(a, CreateInstance):
            self._undo_create(v.gpus[a.gpu], a.start, log, ev.reason)
        elif isinstance(a, DestroyInstance):
            g = v.gpus[a.gpu]
            profile = g.destroying.pop(a.start, None)
            if profile is None:
                return
            if not g.mig and g.mig_pending:  # a turn-off waits on it, and fails too: back then (`_undo_mig`)
                g.survivors[a.start] = profile
                return
            for other in list(g.creating):  # creates planned in its slots cannot happen either
                inst = g.layout.instance_at(other)
                if set(inst.slots) & set(profile.slots(a.start)):
                    self._undo_create(g, other, log, f"the destroy it waited for failed: {ev.reason}")
            self._set_layout(g, g.layout.with_instance(profile, a.start))
        elif isinstance(a, Launch):
            job = v.jobs.get(a.job_id)
            if (job is None or not job.placed or (job.gpu, job.start) != (a.gpu, a.start)
                    or job.launched_s is not None or (a.attempt and a.attempt != job.attempt)):
                return  # already requeued (its instance's create failed) or a stale answer
            self._not_started(job, ev.reason, ev.permanent, log)
        elif isinstance(a, Kill):
            job = v.jobs.get(a.job_id)
            if job is not None:
                job.killing, job.checkpointing = "", False
        elif isinstance(a, SetMigMode):
            self._undo_mig(v.gpus[a.gpu], a, log, ev.reason)

    def _undo_mig(self, g: GpuView, a: SetMigMode, log: _Log, reason: str) -> None:
        """A MIG-mode change the backend could not make: what was planned on the new mode cannot
        happen (jobs placed there go back to the queue, creates are dropped); the GPU is back in
        its old mode, empty."""
        if not g.mig_pending or g.mig != a.enabled:
            return  # not the change in flight (stale)
        why = f"MIG could not be turned {'on' if a.enabled else 'off'} on GPU {g.index}: {reason}"
        for start in sorted(g.creating):
            self._undo_create(g, start, log, why)
        for job in [j for j in self.view.running.values() if j.gpu == g.index and j.launched_s is None]:
            self._not_started(job, why, False, log)
        if g.mig:  # idle instances created (and confirmed) after the change cannot exist either
            for inst in g.layout.instances:
                self._set_layout(g, g.layout.release(inst.start))
        g.destroying.clear()
        g.mig_pending = False
        self.view.set_mig(g.index, not a.enabled)
        for start, profile in sorted(g.survivors.items()):  # destroys that failed before the turn-off
            self._set_layout(g, g.layout.with_instance(profile, start))
        g.survivors.clear()

    def _undo_create(self, g: GpuView, start: int, log: _Log, reason: str) -> None:
        if start not in g.creating:
            return
        g.creating.discard(start)
        for job in list(self.view.running.values()):
            if job.gpu == g.index and job.start == start and job.launched_s is None:
                assert job.profile is not None
                self._not_started(job, f"its instance {job.profile.name} at slot {start} of GPU {g.index} could "
                                       f"not be created: {reason}", False, log)
        self._set_layout(g, g.layout.release(start))

    def _not_started(self, job: JobView, reason: str, permanent: bool, log: _Log) -> None:
        """A placed job the backend could not start: the attempt ends as "launch-failed" (or
        "failed" when retrying cannot help) and the job is queued again, or fails once that
        happened `MAX_LAUNCH_FAILURES` times (a launch that keeps failing must not spin forever)."""
        v = self.view
        gpu, start, profile = job.gpu, job.start, job.profile
        assert gpu is not None and start is not None and profile is not None
        placed_s = job.placed_s if job.placed_s is not None else v.now_s
        self._unplace(job)
        job.attempts.append(Attempt(gpu, start, profile.name, profile.memory_mib, placed_s, v.now_s,
                                    "failed" if permanent else "launch-failed", 0.0))
        tries = sum(1 for x in job.attempts if x.outcome == "launch-failed")
        if permanent or tries >= MAX_LAUNCH_FAILURES:
            job.state, job.finished_s = JobState.FAILED, v.now_s
            job.failure = reason if permanent else f"the backend could not start it {tries} times; last: {reason}"
            log.ended.append(job)
        else:
            self._enqueue(job)
            log.requeued.append(job)

    # ---- actions --------------------------------------------------------------------------
    def _apply_all(self, actions: Iterable[Action]) -> list[Action]:
        # The whole decision first: a policy may hand over a generator that walks `view.queue`,
        # which the launches below change (the deque raised on that, the JobQueue would skip).
        return [apply_action(self, a) for a in tuple(actions)]

    def _count_reconf(self) -> None:
        if self._setup_done:
            self.counters.reconfigurations += 1

    def _set_layout(self, gpu: GpuView, layout: Layout, *, busy_only: bool = False) -> None:
        self.view.set_layout(gpu.index, layout, busy_only=busy_only)

    def _enqueue(self, job: JobView) -> None:
        enqueue(self.view, job)


def _saved_progress(job: JobView, ev: JobExited) -> float | None:
    """What a checkpointed exit saved: the backend's figure, else the job's last progress report,
    else where this run began; None unless the exit answers a checkpoint (docs/checkpoint.md)."""
    if not (ev.status is ExitStatus.KILLED and ev.checkpointed and job.checkpointing):
        return None
    if ev.progress is not None:
        return ev.progress
    reported = next((s.progress for s in reversed(job.samples) if s.progress is not None), None)
    return reported if reported is not None else (job.saved_progress or 0.0)
