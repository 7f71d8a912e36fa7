"""The policy contract: what a scheduling policy sees and what it may return.

A policy is called by the scheduler core after every batch of simultaneous events with a
`ClusterView` and returns actions (create/destroy instances, launch, kill, reject). It sees only
what a real scheduler could see: declared job class and hints, memory samples, exit statuses,
elapsed time; never the simulator's ground truth. The core checks every action against the
partition engine and the job states and raises `SchedulingError` on a broken contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from migsched.core.events import Action, MemorySample
from migsched.core.state import ClusterView, JobView


class Policy(ABC):
    """Base class of scheduling policies.

    Class attributes:
        name: the registry name (`--policy NAME`).
        mig_enabled: False for policies that run GPUs with MIG off (the serial baseline).
        wants_memory_samples: True to receive `on_memory_sample` calls (costs simulator time).
        clairvoyant: True for references that read ground truth (never offered for real runs).
    """

    name: ClassVar[str] = ""
    mig_enabled: ClassVar[bool] = True
    wants_memory_samples: ClassVar[bool] = False
    clairvoyant: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def setup(self, view: ClusterView) -> list[Action]:
        """Actions before any job arrives (e.g. a static layout). Default: none."""
        return []

    @abstractmethod
    def schedule(self, view: ClusterView) -> list[Action]:
        """Decide what to do now; called after every batch of events at one time."""

    def on_memory_sample(self, view: ClusterView, job: JobView, sample: MemorySample) -> list[Action]:
        """React to a running job's memory sample (e.g. early restart). Default: nothing."""
        return []

    def summary(self) -> dict[str, float]:
        """Policy-specific figures for the report (e.g. forecast error). Default: none."""
        return {}
