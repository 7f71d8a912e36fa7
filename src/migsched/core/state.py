"""What a policy can see: jobs (spec, attempts, memory samples), GPUs and their layouts.

These objects are owned by the scheduler core and handed to policies by reference (no copies:
with 100,000 queued jobs a snapshot per event would dominate the run time). Policies must treat
them as read-only and change things only by returning actions.

Job states: `queued -> running -> (done | queued again after oom/kill | failed)`;
`queued -> failed` when rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from migsched.core.events import MemorySample
from migsched.hardware.catalog import GpuModel, Profile
from migsched.jobs.model import JobSpec
from migsched.partition.layout import Layout


class JobState(StrEnum):
    """Lifecycle of a job in the core."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a job on an instance and how it ended.

    `peak_mib` is the most memory seen; for an OOM it is at least the instance's memory, so the
    job is known to need more than `memory_mib`.
    """

    gpu: int
    start: int
    profile: str
    memory_mib: int
    launched_s: float
    ended_s: float
    outcome: str  # ok | oom | killed:<reason> | failed
    peak_mib: float


@dataclass(slots=True, eq=False)
class JobView:
    """A job as the core tracks it: its spec plus everything observed so far."""

    spec: JobSpec
    state: JobState = JobState.QUEUED
    seq: int = 0  # FIFO order: arrival order, kept across restarts
    gpu: int | None = None
    start: int | None = None
    profile: Profile | None = None
    launched_s: float | None = None
    samples: list[MemorySample] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    finished_s: float | None = None
    failure: str | None = None
    killing: str = ""  # the kill reason while a Kill is in flight

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.spec.job_id

    @property
    def needs_more_than_mib(self) -> float:
        """A lower bound on the job's memory: the largest instance it ran out of memory on."""
        return max((a.memory_mib for a in self.attempts if a.outcome == "oom"), default=0.0)

    @property
    def observed_peak_mib(self) -> float:
        """The most memory seen in any attempt or sample of the current attempt."""
        seen = max((a.peak_mib for a in self.attempts), default=0.0)
        cur = max((s.used_mib for s in self.samples), default=0.0)
        return max(seen, cur)


@dataclass(slots=True, eq=False)
class GpuView:
    """One GPU: its model, whether MIG is on, and its current layout (busy flags included)."""

    index: int
    model: GpuModel
    mig: bool
    layout: Layout

    def free_whole(self) -> bool:
        """For a MIG-off GPU: True when no job runs on it."""
        return not any(i.busy for i in self.layout.instances)


@dataclass(slots=True, eq=False)
class ClusterView:
    """Everything a policy may look at when it decides.

    Attributes:
        now_s: current time.
        gpus: every GPU, by index.
        queue: queued jobs in FIFO order (arrival order; restarted jobs keep their place).
        running: running jobs by id.
        jobs: every job seen so far, by id.
        more_arrivals: whether the backend may still submit jobs.
        groups: GPU indices grouped by identical layout (busy flags included), kept up to date by
            the core. A policy that checks one GPU per group instead of every GPU stays fast on
            1,000 GPUs; `min(indices)` picks the lowest-numbered GPU of a group.
    """

    now_s: float
    gpus: list[GpuView]
    queue: list[JobView]
    running: dict[str, JobView]
    jobs: dict[str, JobView]
    more_arrivals: bool = True
    groups: dict[tuple, set[int]] = field(default_factory=dict)


def state_key(layout: Layout) -> tuple:
    """A layout's identity including busy flags (the key of `ClusterView.groups`)."""
    return tuple((i.profile.name, i.start, i.busy) for i in layout.instances)
