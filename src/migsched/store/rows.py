"""What the run store hands out: frozen rows, the state names and the store's errors.

Job states and their transitions (each one a `RunStore` call, durable when it returns):

    queued ──begin_attempt──► launching ──attempt_started──► running
      ▲                           │                             │
      └──── attempt_ended(new_state='queued') ◄─────────────────┘
    launching | running ──attempt_ended──► done (outcome 'ok') | failed
    queued ──job_failed──► failed            (rejected before it ever ran)

Instance states: creating ──instance_up──► up ──instance_destroying──► destroying
──instance_gone──► (row deleted); a `creating` instance may also go to `destroying` (a creation
abandoned on resume).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from migsched.errors import MigschedError

JOB_STATES = ("queued", "launching", "running", "done", "failed")
END_STATES = ("queued", "done", "failed")  # what `attempt_ended` may move a job to
INSTANCE_STATES = ("creating", "up", "destroying")
OUTCOMES = ("ok", "oom", "failed", "launch-failed")


class StoreError(MigschedError):
    """The run store file cannot be created, opened or written, or a call breaks its contract."""


class SchemaVersionError(StoreError):
    """The store was written with a schema version this migsched does not read."""


class AttemptError(StoreError, ValueError):
    """An attempt call that makes no sense for the job's recorded state (not merely stale).

    Stale calls (an older attempt, or a transition already recorded) return False instead; see
    `RunStore.begin_attempt`.
    """


def check_outcome(outcome: str) -> None:
    """Raise `AttemptError` unless `outcome` is 'ok', 'oom', 'failed', 'launch-failed' (the backend
    could not start it; it is queued again) or 'killed:<reason>'."""
    if outcome in OUTCOMES:
        return
    if isinstance(outcome, str) and outcome.startswith("killed:") and len(outcome) > len("killed:"):
        return
    raise AttemptError(f"outcome {outcome!r} is not valid; use one of 'ok', 'oom', 'failed', "
                       "'launch-failed' or 'killed:<reason>' (e.g. 'killed:early-restart')")


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job as the store knows it.

    Attributes:
        job_id, seq: the job's id and its submission order (jobs() is sorted by seq).
        spec: the `JobSpec` as a JSON-safe dict (see `migsched.store.codec`).
        state: one of JOB_STATES.
        attempt: the number of attempts begun (0 before the first launch; attempts count from 1).
        gpu, start, profile: where the current attempt runs; for a done or failed job, where its
            last attempt ran; None while queued (a queued job holds no instance).
        pid, pid_create_time: the current attempt's process (the create time tells a reused pid
            apart on resume); None until `attempt_started` and while queued.
        begun_s: when the current attempt was begun (the launch intent); None while queued.
        launched_s: when the current attempt's process started; None until then and while queued.
        finished_s: when the job reached done or failed.
        failure: why the job failed; None unless state is 'failed'.
        outcomes: one per ended attempt, in order: 'ok' | 'oom' | 'killed:<reason>' | 'failed'.
        peak_mib: the highest memory peak any attempt reported (0.0 when none did).
    """

    job_id: str
    seq: int
    spec: dict[str, Any]
    state: str
    attempt: int
    gpu: int | None
    start: int | None
    profile: str | None
    pid: int | None
    pid_create_time: float | None
    launched_s: float | None
    finished_s: float | None
    failure: str | None
    outcomes: tuple[str, ...]
    peak_mib: float
    begun_s: float | None = None


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One attempt of one job (the history behind `JobRow.outcomes`).

    `saved_progress`: the fraction of work the checkpoint this attempt saved holds (it ended with
    a checkpoint, docs/checkpoint.md); None when it saved none.
    """

    job_id: str
    attempt: int
    gpu: int
    start: int
    profile: str
    begun_s: float
    pid: int | None
    pid_create_time: float | None
    started_s: float | None
    ended_s: float | None
    outcome: str | None
    failure: str | None
    peak_mib: float
    saved_progress: float | None = None


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """A GPU instance the run created or means to create, identified by (gpu, start slot)."""

    gpu: int
    start: int
    profile: str
    state: str


@dataclass(frozen=True, slots=True)
class EventRow:
    """One entry of the append-only event log (`seq` rises by one per entry)."""

    seq: int
    time_s: float
    kind: str
    job_id: str | None
    detail: str
