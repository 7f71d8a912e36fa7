"""The backend contract shared by the simulator and the real backends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from migsched.core.events import Action, Event
from migsched.hardware.catalog import GpuModel
from migsched.jobs.model import Job


class Backend(ABC):
    """Carries out actions on GPUs and reports what happens, in time order.

    Lifecycle: `start` once, then alternately `next_events` and `execute`, then `close`.
    Actions of one `execute` call run in order; on one GPU each waits for the previous one
    (a launch waits for the instance it needs to exist).
    """

    name: ClassVar[str] = ""

    @abstractmethod
    def start(self, gpus: Sequence[GpuModel], mig_enabled: bool, jobs: Sequence[Job], *,
              memory_samples: bool) -> None:
        """Prepare the GPUs (MIG on or off) and submit `jobs` at their arrival times."""

    @abstractmethod
    def execute(self, actions: Sequence[Action]) -> None:
        """Carry out actions (create/destroy instances, launch, kill)."""

    @abstractmethod
    def next_events(self) -> list[Event] | None:
        """The next batch of simultaneous events, or None when nothing more will ever happen."""

    @property
    @abstractmethod
    def arrivals_pending(self) -> bool:
        """Whether jobs may still be submitted."""

    @abstractmethod
    def energy_j(self, until_s: float) -> list[float]:
        """Energy per GPU from the start to `until_s` (idle time included)."""

    def power_series(self) -> list[list[tuple[float, float]]]:
        """Per GPU, (time, watts) steps for the power plot; empty when not recorded."""
        return []

    def close(self) -> None:
        """Release whatever the backend holds."""
