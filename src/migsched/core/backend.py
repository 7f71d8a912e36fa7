"""The backend contract: what carries out actions and reports events, for any kind of machine.

Lifecycle (docs/architecture.md):

1. `open(settings)` prepares the machine (MIG on or off where the backend may change it, the
   memory-sample period the policy asked for) and returns the GPUs it *discovered*: model,
   index, UUID, MIG mode and the instances that already exist (with the job using each, if any).
   The core adopts them; nothing assumes an empty GPU or one model per cluster.
2. `execute(actions)` starts carrying out actions and returns at once. Actions of one call run in
   order; on one GPU each waits for the previous one (a launch waits for the instance it needs).
   Each action is later confirmed by an event or answered with `ActionFailed`.
3. `poll(until_s)` returns the next batch of simultaneous events at or before `until_s`, or `[]`
   once `until_s` is reached with nothing to report (the clock then reads `until_s`), or None
   when nothing is in flight and `until_s` is infinite: nothing will ever happen again unless
   the core acts.
4. `close()` releases what the backend holds (real backends leave running jobs alone when the
   scheduler itself is stopping, so that `--resume` can adopt them; see `detach`).

The backend never sees the job source: a job reaches it as the `spec` of a `Launch`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from migsched.core.clock import Clock
from migsched.core.events import Action, Event, JobExited
from migsched.hardware.catalog import GpuModel
from migsched.jobs.model import JobSpec


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend really does, for reports and for refusing what it cannot do.

    Attributes:
        mig: "real" (NVML), "emulated" (local processes with caps) or "simulated".
        energy: "measured" (NVML power readings) or "modelled" (docs/energy-model.md).
        progress: whether jobs' progress reports (`migsched.probe`) reach the policy.
        clock: "virtual" (simulated time) or "wall".
        resume: whether running jobs survive a scheduler restart and can be adopted.
        mig_toggle: whether it carries out `SetMigMode` (MIG on or off per GPU during the run):
            the simulator and `local` always, `nvml` only when the operator allowed MIG changes
            (`--allow-mig-change`: on Ampere the change resets the GPU, mig-hardware.md §4),
            `ray` as its nodes' backend does.
    """

    mig: Literal["real", "emulated", "simulated"]
    energy: Literal["measured", "modelled"]
    progress: bool
    clock: Literal["virtual", "wall"]
    resume: bool = False
    mig_toggle: bool = False


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """A GPU instance that exists when the backend opens: its profile, start slot and user.

    `reserved`: not migsched's to use or destroy (it existed before and the operator did not
    hand it over); the core keeps it busy for the whole run, so no policy touches it.
    """

    profile: str
    start: int
    job_id: str | None = None
    reserved: bool = False


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One discovered GPU."""

    index: int
    model: GpuModel
    uuid: str
    mig_enabled: bool
    instances: tuple[InstanceInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class RunSettings:
    """What the run asks of the backend.

    Attributes:
        mig_enabled: whether the policy runs the GPUs with MIG on (at the start: a policy that
            toggles MIG per GPU, `Policy.toggles_mig`, changes it later with `SetMigMode`).
        sample_interval_s: memory-sample period for policies that want samples, or None for no
            samples at all (no sampling work nobody reads).
        mig_per_gpu: the policy turns MIG on or off per GPU itself (`Policy.toggles_mig`): a
            backend allowed to change modes keeps each GPU's mode at open instead of setting
            `mig_enabled` everywhere (the policy changes a GPU when it needs to).
    """

    mig_enabled: bool
    sample_interval_s: float | None
    mig_per_gpu: bool = False


@dataclass(frozen=True, slots=True)
class Recovery:
    """What `Backend.recover` found.

    Attributes:
        state: "running" (adopted: its events follow), "ended" (it ended while the scheduler was
            down; `exit` says how) or "absent" (it never started: launch it again).
        exit: the exit, for "ended".
        handle: the backend's identity of the adopted process.
    """

    state: Literal["running", "ended", "absent"]
    exit: JobExited | None = None
    handle: str = ""


class Backend(ABC):
    """Carries out actions on GPUs and reports what happens; see the module docstring."""

    name: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities]

    @property
    @abstractmethod
    def clock(self) -> Clock:
        """The run's clock (virtual for the simulator, wall time for real backends)."""

    @abstractmethod
    def open(self, settings: RunSettings) -> list[GpuInfo]:
        """Prepare the machine and report its GPUs (with the instances that already exist)."""

    @abstractmethod
    def execute(self, actions: Sequence[Action]) -> None:
        """Start carrying out `actions`; confirmations and failures come back from `poll`."""

    @abstractmethod
    def poll(self, until_s: float) -> list[Event] | None:
        """The next events at or before `until_s`; [] at `until_s`; None when idle forever."""

    #: Memory-sample period when the policy wants samples but names no period.
    default_sample_interval_s: float = 2.0

    def recover(self, spec: JobSpec, attempt: int, gpu: int, start: int, handle: str, *,
                launched_s: float | None = None, stopping: bool = False, checkpoint: bool = False) -> Recovery:
        """After a scheduler restart: what became of attempt `attempt` of the job `spec`.

        Only backends with `capabilities.resume` implement it; a found process is adopted and
        reports its events from then on (its elapsed time counted from `launched_s`). With
        `stopping`, the previous scheduler had decided to kill it: the backend stops it again,
        and a signal exit is reported as killed (`checkpoint`: that kill asked for a checkpoint,
        so the job's checkpoint signal is sent again and an exit in time is `checkpointed`).
        """
        raise NotImplementedError(f"backend {self.name!r} cannot resume runs")

    def energy_j(self, until_s: float) -> list[float]:
        """Energy per GPU from the start to `until_s` (idle time included)."""
        return []

    def power_series(self) -> list[list[tuple[float, float]]]:
        """Per GPU, (time, watts) steps for the power plot; empty when not recorded."""
        return []

    def close(self) -> None:
        """Release what the backend holds."""


__all__ = ["Backend", "Capabilities", "GpuInfo", "InstanceInfo", "Recovery", "RunSettings"]
