"""`StoreRecorder`: the run loop's observer that writes every state change to the run store.

Intent before action: `before_execute` records creates, destroys, launches and rejects before
the backend is told to carry them out, and `after_handle` records what the backend confirmed
(instances up or gone, processes started with their pid and start time, attempts ended and
where their job went). A scheduler SIGKILLed anywhere leaves a store from which `--resume` knows,
for every job, whether it is queued, may be running (launching/running: find the process), or
ended.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from migsched.core.events import (
    Action,
    ActionFailed,
    CreateInstance,
    DestroyInstance,
    Event,
    InstanceCreated,
    InstanceDestroyed,
    JobStarted,
    Kill,
    Launch,
    MigModeSet,
    Reject,
    SetMigMode,
    parse_process_handle,
)
from migsched.core.scheduler import SchedulerCore
from migsched.core.state import LOST_PREFIX, JobState
from migsched.store.codec import spec_to_dict
from migsched.store.db import RunStore
from migsched.store.rows import StoreError


def kill_key(job_id: str) -> str:
    """The store meta key under which a decided kill of `job_id` is remembered."""
    return f"kill/{job_id}"


#: The store meta key of the GPUs the run turned MIG off on (`SetMigMode`), for `--resume`.
MIG_OFF_KEY = "mig_off_gpus"
#: The store meta key of the GPUs fenced when they joined (UUID -> reason, `GpuView.fenced`), so
#: that `--resume` fences them again (a lost GPU is not kept: if it is there again, it is usable).
FENCED_KEY = "fenced_gpus"


def fenced_to_keep(core: SchedulerCore) -> dict[str, str]:
    """The fences a resumed run must set again: every fenced GPU with a UUID but the lost ones."""
    return {g.uuid: g.fenced for g in core.view.gpus
            if g.fenced and g.uuid and not g.fenced.startswith(LOST_PREFIX)}


def parse_handle(handle: str) -> tuple[int, float]:
    """A backend handle as (pid, create_time); (0, 0.0) for backends without processes."""
    return parse_process_handle(handle) or (0, 0.0)


class StoreRecorder:
    """Writes the run's state changes to `store`; `on_change` (the progress view) is told after."""

    def __init__(self, store: RunStore, on_change: Callable[[SchedulerCore], None] | None = None) -> None:
        self.store = store
        self.on_change = on_change
        self._destroying: set[tuple[int, int]] = set()  # destroys written, not yet confirmed

    def after_handle(self, core: SchedulerCore, events: Sequence[Event]) -> None:
        st, ch = self.store, core.last_changes
        known = {j.job_id for j in ch.restored}  # in the store already
        fresh = [j for j in ch.arrived if j.job_id not in known]
        if fresh:
            st.add_jobs([(j.job_id, j.seq, spec_to_dict(dataclasses.replace(j.spec, arrival_s=j.arrived_s)))
                         for j in fresh])
            for j in fresh:
                st.log(j.arrived_s, "arrived", j.job_id)
        if any(g.fenced for g in ch.gpus_added):  # added to those kept (a fenced node may be absent now)
            st.set_meta(FENCED_KEY, {**(st.meta().get(FENCED_KEY) or {}), **fenced_to_keep(core)})
        for ev in events:
            if isinstance(ev, InstanceCreated):
                if (ev.gpu, ev.start) not in self._destroying:  # a create confirmed after its destroy began
                    st.instance_up(ev.gpu, ev.start)
            elif isinstance(ev, InstanceDestroyed):
                if (ev.gpu, ev.start) in self._destroying:
                    self._destroying.discard((ev.gpu, ev.start))
                    st.instance_gone(ev.gpu, ev.start)
            elif isinstance(ev, JobStarted):
                job = core.view.jobs.get(ev.job_id)
                if job is not None and job.placed and job.launched_s == ev.time_s:
                    pid, ct = parse_handle(ev.handle)
                    st.attempt_started(ev.job_id, job.attempt, pid, ct, ev.time_s)
                    st.log(ev.time_s, "started", ev.job_id, f"GPU {ev.gpu} slot {ev.start} pid {pid}")
            elif isinstance(ev, ActionFailed):
                a = ev.action
                if isinstance(a, CreateInstance):
                    st.instance_gone(a.gpu, a.start)
                elif isinstance(a, DestroyInstance) and (a.gpu, a.start) in self._destroying:
                    self._destroying.discard((a.gpu, a.start))
                    st.instance_up(a.gpu, a.start)
                if isinstance(a, SetMigMode):
                    self._mig_off(core)
                st.log(ev.time_s, "action-failed", getattr(a, "job_id", None), f"{a}: {ev.reason}")
            elif isinstance(ev, MigModeSet):
                st.log(ev.time_s, "mig-mode", None, f"GPU {ev.gpu} MIG {'on' if ev.enabled else 'off'}")
        for job in (*ch.ended, *ch.requeued):
            a = job.attempts[-1]
            # where the attempt's end sent the job (the policy may have launched it again since)
            went = job.state.value if job.state in (JobState.DONE, JobState.FAILED) else "queued"
            failure = job.failure if job.state is JobState.FAILED else None
            st.attempt_ended(job.job_id, len(job.attempts), a.outcome, went, a.ended_s, failure, a.peak_mib,
                             a.saved_progress if went == "queued" else None)
            st.log(a.ended_s, a.outcome, job.job_id, failure or f"-> {went}")
        if self.on_change is not None:
            self.on_change(core)

    def before_execute(self, core: SchedulerCore, actions: Sequence[Action]) -> None:
        st, now = self.store, core.view.now_s
        for a in actions:
            if isinstance(a, CreateInstance):
                if (a.gpu, a.start) in self._destroying:
                    # destroy-then-create at one slot in one batch: the backend runs them in that
                    # order, so the old instance is gone when the new one is made
                    st.instance_gone(a.gpu, a.start)
                    self._destroying.discard((a.gpu, a.start))
                st.instance_intent(a.gpu, a.start, a.profile)
            elif isinstance(a, DestroyInstance):
                st.instance_destroying(a.gpu, a.start)
                self._destroying.add((a.gpu, a.start))
            elif isinstance(a, Launch):
                job = core.view.jobs[a.job_id]
                assert job.profile is not None
                if not st.begin_attempt(a.job_id, a.attempt, a.gpu, a.start, job.profile.name, now):
                    raise StoreError(f"attempt {a.attempt} of job {a.job_id!r} was begun already (by another "
                                     "scheduler on this state file?); not launching it again")
            elif isinstance(a, SetMigMode):
                self._mig_off(core)  # the backend changes it when it carries the action out
            elif isinstance(a, Reject):
                st.job_failed(a.job_id, a.reason, now)
                st.log(now, "rejected", a.job_id, a.reason)
            elif isinstance(a, Kill):  # remembered, so that a resumed run finishes the kill (or checkpoint)
                st.set_meta(kill_key(a.job_id), {"attempt": core.view.jobs[a.job_id].attempt, "reason": a.reason.value,
                                                 "checkpoint": a.checkpoint})
                st.log(now, "checkpoint" if a.checkpoint else "kill", a.job_id, a.reason.value)

    def _mig_off(self, core: SchedulerCore) -> None:
        self.store.set_meta(MIG_OFF_KEY, [g.index for g in core.view.gpus if not g.mig])
