"""Rebuild a run's scheduler core from its store after the scheduler stopped (`--resume`).

For every job the store knows:

* done or failed: restored as it ended;
* queued: back in the queue at its place (its sequence number);
* launching or running: the backend is asked what became of that attempt (`Backend.recover`,
  told whether the previous session had decided to kill it, so that the kill is finished):
  still running -> adopted on its instance (no second copy is started); ended while the
  scheduler was down -> restored as running and its exit handed to the core first, so an OOM
  or failure is treated as if it had been seen live; never started -> the attempt ends as
  "launch-failed" and the job is queued again.

Checkpoints survive too: an attempt that ended with one keeps its `saved_progress`, so the
requeued job's next launch resumes; a checkpoint the previous session had asked for and not seen
end is asked again (`recover(checkpoint=True)`).

Instances the store lists are the backend's to report (the emulated ones are passed to the
`local` backend); those no restored job owns are idle, free for the policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from migsched.core.backend import Backend
from migsched.core.events import JobExited, process_handle
from migsched.core.scheduler import SchedulerCore
from migsched.core.state import Attempt, JobState
from migsched.hardware.catalog import WHOLE_GPU
from migsched.live.recorder import kill_key, parse_handle
from migsched.store.codec import spec_from_dict
from migsched.store.db import RunStore
from migsched.store.rows import AttemptRow

_STATES = {"queued": JobState.QUEUED, "done": JobState.DONE, "failed": JobState.FAILED}


@dataclass(frozen=True, slots=True)
class Restored:
    """What a resume found: counts for the operator, and exits to hand the core first."""

    adopted: int
    ended_while_down: int
    relaunch: int
    exits: tuple[JobExited, ...]



def _attempts(core: SchedulerCore, rows: list[AttemptRow]) -> list[Attempt]:
    out = []
    for r in rows:
        if r.outcome is None:
            continue
        prof = core.view.gpus[r.gpu].model.instance_profile(r.profile)
        launched = r.started_s if r.started_s is not None else r.begun_s
        out.append(Attempt(r.gpu, r.start, prof.name, prof.memory_mib, launched, r.ended_s or launched,
                           r.outcome, r.peak_mib, r.saved_progress))
    return out


def restore_core(core: SchedulerCore, backend: Backend, store: RunStore) -> Restored:
    """Put every job of `store` into `core` (freshly built on the backend's GPUs); see the module doc."""
    adopted = ended = relaunch = 0
    exits: list[JobExited] = []
    now = backend.clock.now_s()
    meta = store.meta()
    for row in store.jobs():
        spec = spec_from_dict(row.spec)
        attempts = _attempts(core, store.attempts(row.job_id))
        if row.state in _STATES:
            core.restore_job(spec, seq=row.seq, arrived_s=spec.arrival_s, state=_STATES[row.state],
                             attempts=attempts, failure=row.failure, finished_s=row.finished_s)
            continue
        assert row.gpu is not None and row.start is not None
        handle = process_handle(row.pid, row.pid_create_time or 0.0) if row.pid else ""
        kill = meta.get(kill_key(row.job_id))
        killing = kill["reason"] if isinstance(kill, dict) and kill.get("attempt") == row.attempt else ""
        checkpointing = bool(killing) and bool(kill.get("checkpoint"))
        extra = {"checkpoint": True} if checkpointing else {}  # only then: backends without checkpoints work on
        rec = backend.recover(spec, row.attempt, row.gpu, row.start, handle, launched_s=row.launched_s,
                              stopping=bool(killing), **extra)
        if rec.state == "absent":
            store.attempt_ended(row.job_id, row.attempt, "launch-failed", "queued", now)
            store.log(now, "resume", row.job_id, "never started: queued again")
            prof = core.view.gpus[row.gpu].model.instance_profile(row.profile or WHOLE_GPU)
            attempts.append(Attempt(row.gpu, row.start, prof.name, prof.memory_mib, row.begun_s or now, now,
                                    "launch-failed", 0.0))
            core.restore_job(spec, seq=row.seq, arrived_s=spec.arrival_s, state=JobState.QUEUED, attempts=attempts)
            relaunch += 1
            continue
        launched = row.launched_s if row.launched_s is not None else (row.begun_s or now)
        core.restore_job(spec, seq=row.seq, arrived_s=spec.arrival_s, state=JobState.RUNNING, attempts=attempts,
                         gpu=row.gpu, start=row.start, launched_s=launched, killing=killing,
                         checkpointing=checkpointing)
        if row.state == "launching":
            pid, ct = parse_handle(rec.handle)
            store.attempt_started(row.job_id, row.attempt, pid, ct, launched)
        if rec.state == "running":
            adopted += 1
            store.log(now, "resume", row.job_id, f"adopted the running process ({rec.handle})")
        else:
            assert rec.exit is not None
            ended += 1
            exits.append(rec.exit)
            store.log(now, "resume", row.job_id, f"ended while the scheduler was down: {rec.exit.status.value}")
    return Restored(adopted, ended, relaunch, tuple(exits))
