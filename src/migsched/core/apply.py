"""Actions a policy returns, checked and applied to the view the core plans on.

`apply_action(core, action)` is the one place where a policy's action meets the rules: it checks
the action against the partition engine and the job states (raising `SchedulingError` with what is
wrong), updates the view (an instance being created or destroyed, a job placed, a kill under way),
and returns the action the backend gets (a `Launch` filled in with the attempt, the job's spec, its
resume flag and sample plan). The queue's FIFO discipline (`enqueue`/`dequeue`) lives here too.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from migsched.core.events import Action, CreateInstance, DestroyInstance, Kill, Launch, Reject, SetMigMode
from migsched.core.state import ClusterView, GpuView, JobState, JobView
from migsched.errors import MigschedError, SchedulingError

if TYPE_CHECKING:
    from migsched.core.scheduler import SchedulerCore


def apply_action(core: SchedulerCore, a: Action) -> Action:
    """Check `a` against the rules and the view, apply it to the view, return what the backend gets."""
    v = core.view
    try:
        if isinstance(a, CreateInstance):
            gpu = _mig_gpu(core, a.gpu)
            core._set_layout(gpu, gpu.layout.with_instance(gpu.model.profile(a.profile), a.start))
            gpu.creating.add(a.start)
            core._count_reconf()
        elif isinstance(a, DestroyInstance):
            gpu = _mig_gpu(core, a.gpu)
            profile = gpu.layout.instance_at(a.start).profile
            core._set_layout(gpu, gpu.layout.release(a.start))
            gpu.creating.discard(a.start)
            gpu.destroying[a.start] = profile
            core._count_reconf()
        elif isinstance(a, Launch):
            job = v.jobs.get(a.job_id)
            if job is None or job.state is not JobState.QUEUED:
                raise SchedulingError(f"cannot launch {a.job_id!r}: it is not queued")
            gpu = v.gpus[a.gpu]
            inst = gpu.layout.instance_at(a.start)
            if inst.busy:
                raise SchedulingError(f"cannot launch {a.job_id!r} on busy {inst} of GPU {a.gpu}")
            core._set_layout(gpu, gpu.layout.mark(a.start, True), busy_only=True)
            dequeue(v, job)
            job.state = JobState.RUNNING
            job.gpu, job.start, job.profile = a.gpu, a.start, inst.profile
            job.placed_s = v.now_s
            v.running[job.job_id] = job
            gpu.jobs[a.start] = job.job_id
            plan = a.samples if a.samples is not None else core.policy.sample_plan(job)
            return dataclasses.replace(a, attempt=job.attempt, spec=job.spec,
                                       resume=job.saved_progress is not None, samples=plan, profile=inst.profile.name)
        elif isinstance(a, Kill):
            job = v.running.get(a.job_id)
            if job is None:
                raise SchedulingError(f"cannot kill {a.job_id!r}: it is not running")
            if job.killing:
                raise SchedulingError(f"cannot kill {a.job_id!r}: a kill ({job.killing}) is already under way")
            if a.checkpoint and job.spec.checkpoint is None:
                raise SchedulingError(f"cannot checkpoint {a.job_id!r}: its job has no checkpoint: field, so it "
                                      "cannot save its state; check JobView.checkpointable, or Kill it without "
                                      "checkpoint to restart it from zero")
            job.killing, job.checkpointing = a.reason.value, a.checkpoint
        elif isinstance(a, Reject):
            job = v.jobs.get(a.job_id)
            if job is None or job.state is not JobState.QUEUED:
                raise SchedulingError(f"cannot reject {a.job_id!r}: it is not queued")
            dequeue(v, job)
            job.state = JobState.FAILED
            job.failure = a.reason
            job.finished_s = v.now_s
        elif isinstance(a, SetMigMode):
            _set_mig(core, a)
        else:
            raise SchedulingError(f"unknown action {a!r}")
    except SchedulingError:
        raise
    except MigschedError as exc:
        raise SchedulingError(f"policy {core.policy.name!r} action {a} is illegal: {exc}") from exc
    return a


def _mig_gpu(core: SchedulerCore, index: int) -> GpuView:
    gpu = core.view.gpus[index]
    if not gpu.mig:
        raise SchedulingError(f"GPU {index} runs with MIG off; it has no GPU instances to change")
    return gpu


def _set_mig(core: SchedulerCore, a: SetMigMode) -> None:
    """Check a MIG-mode change (the backend can, the GPU is empty) and show its result in the view."""
    v = core.view
    if not 0 <= a.gpu < len(v.gpus):
        raise SchedulingError(f"SetMigMode: no GPU {a.gpu} (GPUs 0..{len(v.gpus) - 1})")
    gpu = v.gpus[a.gpu]
    word = "on" if a.enabled else "off"
    if not v.mig_toggle:
        raise SchedulingError(f"cannot turn MIG {word} on GPU {a.gpu}: this run does not change MIG modes (the "
                              "backend must be able to, Capabilities.mig_toggle, which nvml is only with "
                              "--allow-mig-change, and the policy must declare toggles_mig)")
    if gpu.mig == a.enabled:
        raise SchedulingError(f"cannot turn MIG {word} on GPU {a.gpu}: it is {word} already")
    if gpu.jobs or any(i.busy for i in gpu.layout.instances):
        raise SchedulingError(f"cannot turn MIG {word} on GPU {a.gpu}: a job runs on it")
    if gpu.mig_pending:
        raise SchedulingError(f"cannot turn MIG {word} on GPU {a.gpu}: a MIG-mode change is already under way")
    if gpu.mig and (gpu.layout.instances or gpu.creating):
        raise SchedulingError(f"cannot turn MIG off on GPU {a.gpu}: it has GPU instances "
                              f"({', '.join(str(i) for i in gpu.layout.instances) or 'creates in flight'}); "
                              "destroy them first (destroys in the same batch, before it, will do)")
    v.set_mig(a.gpu, a.enabled)
    gpu.mig_pending = True
    core.counters.mig_mode_changes += 1


def enqueue(v: ClusterView, job: JobView) -> None:
    """Queue `job`: an arrival at the end, a restart at its FIFO place (by arrival sequence)."""
    job.state = JobState.QUEUED
    v.queue.add(job)


def dequeue(v: ClusterView, job: JobView) -> None:
    """Take `job` out of the queue, wherever it is (`JobQueue`: O(log n))."""
    v.queue.remove(job)
