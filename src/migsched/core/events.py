"""Events a backend reports to the scheduler core, and actions the core asks a backend to do.

The same types flow for the simulator, local processes, NVML and Ray: the core never knows
which backend produced an event. Every action is confirmed by an event (`InstanceCreated`,
`InstanceDestroyed`, `JobStarted`, `JobExited`, `MigModeSet`) or answered by `ActionFailed` with the reason;
the core's view of the hardware changes only through these (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from typing import TYPE_CHECKING

from migsched.core.sampling import SamplePlan
from migsched.jobs.model import JobSpec

if TYPE_CHECKING:  # core.backend imports this module
    from migsched.core.backend import GpuInfo


# ---- events (job source or backend -> core) ----------------------------------------------------
@dataclass(frozen=True, slots=True)
class JobArrived:
    """A job was submitted (by the job source; the backend never sees submissions)."""

    time_s: float
    spec: JobSpec


@dataclass(frozen=True, slots=True)
class InstanceCreated:
    """A GPU instance (and its default compute instance) now exists."""

    time_s: float
    gpu: int
    profile: str
    start: int


@dataclass(frozen=True, slots=True)
class InstanceDestroyed:
    """A GPU instance is gone."""

    time_s: float
    gpu: int
    start: int


@dataclass(frozen=True, slots=True)
class JobStarted:
    """The job's process runs on its instance (startup may still be in progress).

    `handle` is the backend's own identity of the process ("pid:create_time" for local
    processes), stored so that a resumed scheduler can find the process again. `attempt` is the
    `Launch.attempt` it answers (0: not given); the core ignores an answer to an older attempt.
    """

    time_s: float
    job_id: str
    gpu: int
    start: int
    handle: str = ""
    attempt: int = 0


def process_handle(pid: int, create_time: float) -> str:
    """`JobStarted.handle` of a local process: "pid:create_time" (a reused pid has another time)."""
    return f"{pid}:{create_time!r}"


def parse_process_handle(handle: str) -> tuple[int, float] | None:
    """(pid, create_time) from a `process_handle`, or None when `handle` is not one."""
    try:
        pid, ct = handle.split(":", 1)
        return int(pid), float(ct)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class MemorySample:
    """Memory the job uses now; `progress` is its own report of the fraction done, if any.

    `held`: earlier samples of the same attempt that the backend took and held back under the
    plan's `hold_below_mib` (oldest first); the core adds them to the job's history before this
    one, and the policy is called for this one only.
    """

    time_s: float
    job_id: str
    used_mib: float
    elapsed_s: float
    progress: float | None = None
    held: tuple[MemorySample, ...] = ()


class ExitStatus(StrEnum):
    """How a job's process ended."""

    OK = "ok"
    OOM = "oom"
    KILLED = "killed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobExited:
    """The job's process ended; `peak_mib` is the most memory it was seen to use.

    `attempt` is the `Launch.attempt` that started it (0: not given); an exit of an older
    attempt than the job's current one is ignored. `checkpointed` answers a `Kill` with
    `checkpoint=True`: the program exited after the checkpoint signal, within its grace period
    (status KILLED), so its state is saved; `progress` is the fraction of its work that state
    holds, when the backend knows it (docs/checkpoint.md).
    """

    time_s: float
    job_id: str
    status: ExitStatus
    peak_mib: float = 0.0
    detail: str = ""
    attempt: int = 0
    checkpointed: bool = False
    progress: float | None = None


@dataclass(frozen=True, slots=True)
class ActionFailed:
    """The backend could not carry out `action`; `reason` says why (NVML's error, a missing program).

    `permanent` means trying the same again cannot help (the program does not exist): a failed
    launch then fails the job; otherwise the job goes back to the queue.
    """

    time_s: float
    action: Action
    reason: str
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class GpuLost:
    """A GPU is gone for the rest of the run (its node died or left a cluster: the `ray` backend).

    The core requeues the jobs placed on it (as killed, or as not started) and fences it: its
    layout becomes one busy instance covering every slot, so no policy places anything there.
    """

    time_s: float
    gpu: int
    reason: str


@dataclass(frozen=True, slots=True)
class GpuAdded:
    """A GPU joined the run after discovery (a node joined a cluster: the `ray` backend).

    `info.index` is the next index (the core's GPUs stay numbered 0..N-1); `info.instances` are
    the instances it already has. The core adds a GPU view and tells the policy
    (`Changes.gpus_added`, `Policy.on_gpu_added`).
    """

    time_s: float
    info: GpuInfo


@dataclass(frozen=True, slots=True)
class MigModeSet:
    """A GPU's MIG mode changed (answers `SetMigMode`): with MIG off it is one whole-GPU
    pseudo-instance at slot 0; with MIG on it has no instance yet."""

    time_s: float
    gpu: int
    enabled: bool


Event = (JobArrived | InstanceCreated | InstanceDestroyed | JobStarted | MemorySample | JobExited
         | ActionFailed | GpuLost | GpuAdded | MigModeSet)


# ---- actions (core -> backend) ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CreateInstance:
    """Create a GPU instance of `profile` at memory slot `start` (plus its full-size CI)."""

    gpu: int
    profile: str
    start: int


@dataclass(frozen=True, slots=True)
class DestroyInstance:
    """Destroy the idle GPU instance at `start` (its CIs first)."""

    gpu: int
    start: int


@dataclass(frozen=True, slots=True)
class Launch:
    """Start `job_id` on the instance at (`gpu`, `start`).

    Policies give the first three fields; the core fills in `attempt` (1 for the first run),
    `spec`, the job's launch description (command, env, cwd), which is all a backend learns of a
    job and only when it launches it, and `resume`: True when the job's latest run saved a
    checkpoint, so this run continues from it (the program is told so, docs/checkpoint.md).
    `samples` (filled in by the core from `Policy.sample_plan`) says when to sample this
    attempt's memory (`core.sampling`); None: not given, the backend's `RunSettings` decide.
    `profile` (filled in by the core) is the instance the core planned the job on ("whole" with
    MIG off): a backend refuses the launch when what it has at (`gpu`, `start`) is another, as
    after a create or a MIG-mode change it waited for failed ("": not checked).
    """

    job_id: str
    gpu: int
    start: int
    attempt: int = 0
    spec: JobSpec | None = field(default=None, compare=False, repr=False)
    resume: bool = False
    samples: SamplePlan | None = field(default=None, compare=False, repr=False)
    profile: str = field(default="", compare=False)


class KillReason(StrEnum):
    """Why a policy kills a running job."""

    EARLY_RESTART = "early-restart"
    PREEMPT = "preempt"
    MOVE = "move"  # to run it again on another instance (with `checkpoint`: keeping its progress)


@dataclass(frozen=True, slots=True)
class Kill:
    """Stop a running job; the backend answers with `JobExited(status=KILLED)`.

    `checkpoint=True` (only for a job whose spec has `checkpoint`) asks the program to save its
    state first: the backend sends the job's checkpoint signal and waits up to its `grace_s`.
    An exit within the grace period comes back `checkpointed` and the job is queued again with
    its progress; otherwise it is SIGKILLed and restarts from zero. A checkpoint is a stop,
    so it shares the kill's bookkeeping (in flight, resumed after a scheduler restart), and a
    backend that cannot checkpoint degrades to a plain kill that says so (docs/checkpoint.md).
    """

    job_id: str
    reason: KillReason = KillReason.EARLY_RESTART
    checkpoint: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    """Give up on a queued job (it can fit nowhere); it ends as failed with `reason`."""

    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class SetMigMode:
    """Turn MIG on or off on one GPU that holds no instance and runs no job.

    Only for backends whose `Capabilities.mig_toggle` is True (the core refuses it otherwise).
    With MIG off a job gets every SM of the GPU: on an A100, 108 against a 7g instance's 98
    (mig-hardware.md §0); on Hopper 7g keeps all SMs, so there is nothing to gain. On Ampere the
    change resets the GPU (mig-hardware.md §4), so the simulator charges `SimCosts.mig_mode_s`.
    Like a create, it waits for the actions before it on the GPU, and those after it (a launch
    on the whole GPU, the creates of a new layout) wait for it (docs/architecture.md).
    """

    gpu: int
    enabled: bool


Action = CreateInstance | DestroyInstance | Launch | Kill | Reject | SetMigMode
