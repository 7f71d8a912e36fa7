"""The policy contract: what a scheduling policy is told, what it sees, what it may return.

After every batch of events the core calls `policy.decide(view, changes)`. `changes` says what
happened since the last call (arrivals, starts, ends, memory samples, failed actions) and the
current time; the policy returns a `Decision`: actions and, optionally, a time to be called again
even if nothing happens (a wake-up: "the reserved job has waited 300 s at 412.5 s"). The core
applies the actions to its view, checks them against the partition engine and the job states, and
calls `decide` again with empty changes until the policy returns no action, so a policy may place
one job per call and always sees a consistent view.

A policy sees only what a real scheduler could see: declared job class and hints, the observed
arrival, memory samples, exit statuses, elapsed time; never the simulator's ground truth. The core
raises `SchedulingError` on a broken contract.

Simple policies subclass `Policy` and implement `schedule(view)` (and `on_memory_sample` if they
want samples); `Policy.decide` calls them. Policies that keep their own indexes read `changes`.

Memory samples come on demand (`core.sampling`): a policy with `wants_memory_samples` is asked
`sample_plan(job)` at every launch, and the backend samples that attempt only as the plan says.
The default plan follows `sample_interval_s`: dense early, geometrically sparser later, capped.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from migsched.core.events import Action, ActionFailed, MemorySample
from migsched.core.sampling import DEFAULT_PLAN, NO_SAMPLES, SamplePlan
from migsched.core.state import ClusterView, GpuView, JobView


@dataclass(frozen=True, slots=True)
class Changes:
    """What happened since the policy was last called.

    Attributes:
        now_s: the current time.
        arrived: jobs submitted (now queued).
        started: jobs whose process started (`JobStarted`).
        ended: jobs whose attempt ended (ok, oom, killed, failed); their state says whether they
            are queued again, done or failed, their last `Attempt` how it ended.
        requeued: jobs put back in the queue because the backend could not start them (their
            launch or their instance's create failed; the attempt ends as "launch-failed").
        samples: memory samples of running jobs, for policies with `wants_memory_samples`.
        failed: actions the backend could not carry out, with the reason.
        restored: jobs known from a previous session of the run (`--resume`), told once on the
            first call; the queued ones are in `arrived` too, the running ones in `started`.
        gpus_added: GPUs that joined the run (`GpuAdded`: a node joined a cluster), already in
            the view; `Policy.on_gpu_added` was called for each.
        woke: True when the call is the wake-up the policy asked for.
        first: True for the first call after the events; False for the calls that follow the
            policy's own actions.
    """

    now_s: float
    arrived: Sequence[JobView] = ()
    started: Sequence[JobView] = ()
    ended: Sequence[JobView] = ()
    requeued: Sequence[JobView] = ()
    samples: Sequence[tuple[JobView, MemorySample]] = ()
    failed: Sequence[ActionFailed] = ()
    restored: Sequence[JobView] = ()
    gpus_added: Sequence[GpuView] = ()
    woke: bool = False
    first: bool = True

    @property
    def empty(self) -> bool:
        """True when nothing happened (the policy's own follow-up call)."""
        return not (self.arrived or self.started or self.ended or self.requeued or self.samples
                    or self.failed or self.gpus_added or self.woke)


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer: actions now, and when to be called again at the latest (None: no need)."""

    actions: Sequence[Action] = ()
    wake_at_s: float | None = None




class Policy(ABC):
    """Base class of scheduling policies.

    Class attributes:
        name: the registry name (`--policy NAME`).
        mig_enabled: False for policies that run GPUs with MIG off (the serial baseline).
        toggles_mig: True for policies that may turn MIG on or off per GPU (`SetMigMode`) where
            the backend can (`ClusterView.mig_toggle`); the core then adopts GPUs found in
            either mode (a resumed run's MIG-off GPUs) instead of refusing them.
        wants_memory_samples: True to receive memory samples (they cost simulator events and
            real sampling); `sample_interval_s` is the base period asked for (None: the
            backend's); `sample_plan` says per attempt when (default: `DEFAULT_PLAN`).
        clairvoyant: True for references that read ground truth (never offered for real runs).
    """

    name: ClassVar[str] = ""
    mig_enabled: ClassVar[bool] = True
    toggles_mig: ClassVar[bool] = False
    wants_memory_samples: ClassVar[bool] = False
    sample_interval_s: ClassVar[float | None] = None
    clairvoyant: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def setup(self, view: ClusterView) -> list[Action]:
        """Actions once the GPUs are known and the first jobs arrived (e.g. a static layout)."""
        return []

    def on_gpu_added(self, view: ClusterView, gpu: GpuView) -> list[Action]:
        """Actions for a GPU that joined after setup (already in `view`; e.g. its static layout).

        Default: nothing (a policy that plans per decision sees it in `view.gpus`). Like setup's,
        these actions do not count as reconfigurations.
        """
        return []

    def refuse_gpu(self, view: ClusterView, gpu: GpuView) -> str | None:
        """Why this policy cannot use `gpu`, a GPU joining the run (`view` is the cluster before
        it joins); None when it can. A refused GPU is fenced, not fatal (`core.membership`).

        Default: None (every policy that plans per GPU model can use any model).
        """
        return None

    def decide(self, view: ClusterView, changes: Changes) -> Decision:
        """React to `changes`; the default feeds samples to `on_memory_sample`, then `schedule`."""
        actions: list[Action] = []
        for job, sample in changes.samples:
            if job.placed and not job.killing:
                actions += self.on_memory_sample(view, job, sample)
        if actions:
            return Decision(actions, self.wake_at_s(view))
        return Decision(self.schedule(view), self.wake_at_s(view))

    def schedule(self, view: ClusterView) -> list[Action]:
        """Decide what to do now (one step; called again until it returns nothing)."""
        return []

    def on_memory_sample(self, view: ClusterView, job: JobView, sample: MemorySample) -> list[Action]:
        """React to a running job's memory sample (e.g. early restart). Default: nothing."""
        return []

    def sample_plan(self, job: JobView) -> SamplePlan:
        """When to sample the attempt of `job` that is being launched (`NO_SAMPLES`: never).

        Default: nothing without `wants_memory_samples`; else `DEFAULT_PLAN` on the base period
        (`sample_interval_s`, which reaches the backend as `RunSettings.sample_interval_s`):
        the first 8 samples one period apart, then each gap twice the previous one, at most 24.
        Override to sample a job more (a forecast is close to its instance's memory) or less (its
        family's peak is known).
        """
        return DEFAULT_PLAN if self.wants_memory_samples else NO_SAMPLES

    def wake_at_s(self, view: ClusterView) -> float | None:
        """When to be called again even without events (None: only on events)."""
        return None

    def close(self) -> None:
        """The run is over, or its scheduler stops (a crash, an interrupt): write out what the
        policy keeps across runs (e.g. migm's history file). Default: nothing."""

    def summary(self) -> dict[str, float]:
        """Policy-specific figures for the report (e.g. forecast error). Default: none."""
        return {}


__all__ = ["Changes", "Decision", "Policy", "SamplePlan"]
