"""A scripted fake backend: virtual time, outcomes written by the test, failures on request.

It implements the backend contract (`migsched.core.backend`) with nothing simulated but what the
test scripts: how long each job runs and how it ends, which creates, destroys or launches fail,
which instances exist at discovery. Core tests drive `SchedulerCore` through it, and the
conformance suite runs it beside the simulator and the local backend.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from migsched.core.backend import Backend, Capabilities, GpuInfo, InstanceInfo, RunSettings
from migsched.core.clock import VirtualClock
from migsched.core.events import (
    Action,
    ActionFailed,
    CreateInstance,
    DestroyInstance,
    Event,
    ExitStatus,
    InstanceCreated,
    InstanceDestroyed,
    JobExited,
    JobStarted,
    Kill,
    Launch,
    MemorySample,
)
from migsched.core.events import KillReason
from migsched.core.policy import Policy
from migsched.errors import MigschedError
from migsched.hardware.catalog import GpuModel
from migsched.partition.layout import Layout


@dataclass
class Script:
    """What the fake does.

    Attributes:
        run_s: per job id, how long it runs (default `default_run_s`).
        status: per job id, how it ends (default ok).
        fail_creates: how many of the first creates fail.
        fail_destroys: how many of the first destroys fail.
        fail_launch: job id -> (reason, permanent) for launches that fail (once each).
        instances: per GPU index, instances that exist at discovery.
        samples_mib: per job id, memory reported in each sample.
        save_s: how long a checkpoint (`Kill(checkpoint=True)`) takes to save and exit.
        save_fails: job ids whose save does not end within their grace period (they are
            killed then, without a checkpoint).
    """

    run_s: dict[str, float] = field(default_factory=dict)
    status: dict[str, ExitStatus] = field(default_factory=dict)
    default_run_s: float = 10.0
    fail_creates: int = 0
    fail_destroys: int = 0
    fail_launch: dict[str, tuple[str, bool]] = field(default_factory=dict)
    instances: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    samples_mib: dict[str, float] = field(default_factory=dict)
    create_s: float = 1.0
    save_s: float = 1.0
    save_fails: set[str] = field(default_factory=set)


class ScriptedBackend(Backend):
    """See the module docstring; `executed` records every action it was given."""

    name = "fake"
    capabilities = Capabilities(mig="simulated", energy="modelled", progress=False, clock="virtual")

    def __init__(self, gpus: Sequence[GpuModel], script: Script | None = None) -> None:
        self.models = list(gpus)
        self.script = script or Script()
        self._clock = VirtualClock()
        self._heap: list[tuple[float, int, Event]] = []
        self._n = 0
        self.executed: list[Action] = []
        self.running: dict[str, int] = {}  # job id -> token
        self.settings: RunSettings = RunSettings(True, None)
        self.exists: set[tuple[int, int]] = set()
        self.work: dict[str, tuple[float, float, float]] = {}  # job id -> (work starts, run s, fraction at start)
        self.saved: dict[str, float] = {}  # job id -> fraction its checkpoint holds

    @property
    def clock(self) -> VirtualClock:
        return self._clock

    def open(self, settings: RunSettings) -> list[GpuInfo]:
        self.settings = settings
        self.exists = {(i, s) for i, lst in self.script.instances.items() for _p, s in lst}
        self.layouts = [Layout.of(m, self.script.instances.get(i, [])) for i, m in enumerate(self.models)]
        return [GpuInfo(i, m, f"FAKE-{i}", settings.mig_enabled,
                        tuple(InstanceInfo(p, s) for p, s in self.script.instances.get(i, [])))
                for i, m in enumerate(self.models)]

    def _push(self, t_s: float, ev: Event) -> None:
        self._n += 1
        heapq.heappush(self._heap, (t_s, self._n, ev))

    def execute(self, actions: Sequence[Action]) -> None:
        now = self._clock.now_s()
        sc = self.script
        for a in actions:
            self.executed.append(a)
            if isinstance(a, CreateInstance):
                try:  # the MIG rules hold here too
                    layout = self.layouts[a.gpu].with_instance(self.models[a.gpu].profile(a.profile), a.start)
                except MigschedError as exc:
                    self._push(now, ActionFailed(now, a, f"illegal: {exc}"))
                    continue
                if sc.fail_creates > 0:
                    sc.fail_creates -= 1
                    self._push(now, ActionFailed(now, a, "scripted: create refused"))
                else:
                    self.layouts[a.gpu] = layout
                    self.exists.add((a.gpu, a.start))
                    self._push(now + sc.create_s, InstanceCreated(now + sc.create_s, a.gpu, a.profile, a.start))
            elif isinstance(a, DestroyInstance):
                if sc.fail_destroys > 0:
                    sc.fail_destroys -= 1
                    self._push(now, ActionFailed(now, a, "scripted: destroy refused"))
                elif (a.gpu, a.start) not in self.exists:
                    self._push(now, ActionFailed(now, a, f"no instance at {a.start} of GPU {a.gpu}"))
                else:
                    self.layouts[a.gpu] = self.layouts[a.gpu].release(a.start)
                    self.exists.discard((a.gpu, a.start))
                    self._push(now + sc.create_s, InstanceDestroyed(now + sc.create_s, a.gpu, a.start))
            elif isinstance(a, Launch):
                assert a.spec is not None and a.attempt >= 1, "the core fills in spec and attempt"
                if self.settings.mig_enabled and (a.gpu, a.start) not in self.exists:
                    self._push(now, ActionFailed(now, a, f"no instance at {a.start} of GPU {a.gpu}"))
                    continue
                if a.job_id in sc.fail_launch:
                    reason, permanent = sc.fail_launch.pop(a.job_id)
                    self._push(now, ActionFailed(now, a, reason, permanent))
                    continue
                t0 = now + sc.create_s  # waits for a create issued at the same time
                self._n += 1
                token = self.running[a.job_id] = self._n
                f0 = self.saved.pop(a.job_id, 0.0) if a.resume else 0.0
                self.work[a.job_id] = (t0, sc.run_s.get(a.job_id, sc.default_run_s), f0)
                self._push(t0, JobStarted(t0, a.job_id, a.gpu, a.start))
                if self.settings and self.settings.sample_interval_s and a.job_id in sc.samples_mib:
                    t = t0 + self.settings.sample_interval_s
                    while t < t0 + sc.run_s.get(a.job_id, sc.default_run_s):
                        self._push(t, MemorySample(t, a.job_id, sc.samples_mib[a.job_id], t - t0))
                        t += self.settings.sample_interval_s
                t1 = t0 + (1.0 - f0) * sc.run_s.get(a.job_id, sc.default_run_s)
                self._push(t1, _Exit(t1, a.job_id, token, sc.status.get(a.job_id, ExitStatus.OK)))
            elif isinstance(a, Kill):
                if a.job_id not in self.running or self.running[a.job_id] == -1:
                    self._push(now, ActionFailed(now, a, f"{a.job_id!r} is not running"))
                    continue
                self.running[a.job_id] = -1
                if a.checkpoint and a.job_id in sc.save_fails:
                    self._push(now + 30.0, JobExited(now + 30.0, a.job_id, ExitStatus.KILLED, detail="save too slow"))
                elif a.checkpoint:  # saves the work done so far
                    t0, run_s, f0 = self.work[a.job_id]
                    f = self.saved[a.job_id] = min(1.0, f0 + max(0.0, now - t0) / run_s)
                    t = now + sc.save_s
                    self._push(t, JobExited(t, a.job_id, ExitStatus.KILLED, checkpointed=True, progress=f))
                else:
                    self._push(now + 0.5, JobExited(now + 0.5, a.job_id, ExitStatus.KILLED))

    def poll(self, until_s: float) -> list[Event] | None:
        while self._heap and self._heap[0][0] <= until_s:
            t = self._heap[0][0]
            out: list[Event] = []
            while self._heap and self._heap[0][0] == t:
                _, _, ev = heapq.heappop(self._heap)
                self._clock.advance_to(t)
                if isinstance(ev, _Exit):
                    if self.running.get(ev.job_id) != ev.token:
                        continue
                    del self.running[ev.job_id]
                    ev = JobExited(ev.time_s, ev.job_id, ev.status)
                elif isinstance(ev, (JobStarted, MemorySample)) and ev.job_id not in self.running:
                    continue
                elif isinstance(ev, (JobStarted, MemorySample)) and self.running[ev.job_id] == -1:
                    continue
                out.append(ev)
            if out:
                return out
        if math.isinf(until_s):
            return None
        self._clock.advance_to(until_s)
        return []


@dataclass(frozen=True)
class _Exit:
    time_s: float
    job_id: str
    token: int
    status: ExitStatus


class MovePolicy(Policy):
    """A test policy that moves one job: it runs the queue head on `first` at slot 0 of GPU 0,
    stops it at `at_s` (`Kill(MOVE, checkpoint=...)`) and runs it again on `then` there.

    `view` is the core's view at the latest call, for tests to read the jobs from.
    """

    name = "test-move"

    def __init__(self, first: str, then: str, at_s: float, checkpoint: bool = True) -> None:
        self.first, self.then, self.at_s, self.checkpoint = first, then, at_s, checkpoint
        self.moved = False
        self.view = None

    def schedule(self, view):
        self.view = view
        if view.now_s >= self.at_s and not self.moved:
            for job in view.running.values():
                if job.launched_s is not None and not job.killing:
                    self.moved = True
                    return [Kill(job.job_id, KillReason.MOVE, checkpoint=self.checkpoint)]
        if not view.queue:
            return []
        job = view.queue[0]
        want = self.then if job.attempts else self.first
        inst = next((i for i in view.gpus[0].layout.instances if i.start == 0), None)
        if inst is None:
            return [CreateInstance(0, want, 0)]
        if inst.busy:
            return []
        if inst.profile.name != want:
            return [DestroyInstance(0, 0)]
        return [Launch(job.job_id, 0, 0)]

    def wake_at_s(self, view):
        return None if self.moved else self.at_s
