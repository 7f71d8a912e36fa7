"""The discrete-event simulator: a virtual clock over a heap of (time, priority, seq, event).

Events at the same time are returned together, in a fixed priority order with insertion order
breaking ties, so a run is deterministic for a seed (the SimPy pattern, style.md §1.5).

What is simulated (costs in `costs.py`, power in `energy.py`, documented in docs/simulator.md):
  * GPU-instance creates and destroys take time and are serialised per GPU;
  * a launched job waits for its instance, starts up (`startup_s`), then computes at the speed
    of its instance; its memory follows its curve over the fraction of work done, and it fails
    with out-of-memory at the moment the curve crosses the instance's memory;
  * a kill ends the process after `kill_s`; work done is lost (restarts begin from scratch);
  * memory samples every `sample_interval_s` for policies that ask for them, with the job's
    progress when the job reports it;
  * the hardware's own layout per GPU: an action the MIG rules forbid (or a launch on an
    instance that does not exist) is answered with `ActionFailed`, as NVML would refuse it.

The simulator is the only place ground truth reaches: it gets each job's `TruthModel` by id at
construction; jobs themselves arrive through the job source and reach it as `Launch.spec`.
"""

from __future__ import annotations

import heapq
import random
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from migsched.backends.sim.costs import SimCosts
from migsched.backends.sim.energy import GpuMeter, job_power_w
from migsched.backends.emulated import EmulatedMig
from migsched.core.backend import Backend, Capabilities, GpuInfo, RunSettings
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
    Reject,
)
from migsched.hardware.catalog import GpuModel, Profile
from migsched.jobs.model import JobSpec, TruthModel
from migsched.jobs.truth import speed_on

# Priority of simultaneous internal events: state changes first, then samples. (Arrivals come
# from the job source; the driver adds them after the simulator's events of the same time.)
_PRIO = {"failed": 0, "destroyed": 0, "created": 1, "exit": 2, "started": 3, "compute": 4, "sample": 6}


@dataclass(slots=True)
class _Run:
    job: JobSpec
    truth: TruthModel
    gpu: int
    start: int
    profile: Profile
    token: int
    launch_s: float
    compute_s: float      # when startup ends and work begins
    work_s: float         # duration of the work at this instance's speed
    end_s: float          # exit time (finish or OOM)
    oom: bool
    power_w: float
    computing: bool = False
    attempt: int = 0


class Simulator(Backend):
    """Simulated GPUs with MIG; see the module docstring.

    Args:
        gpus: the GPU models, one per GPU (mixed clusters allowed).
        truth: every job's ground truth by job id (the order seeds the run-time jitter).
        instances: per GPU, instances that exist before the run ((profile, start) pairs), to
            exercise adoption; MIG GPUs start empty otherwise.
    """

    name = "sim"
    capabilities = Capabilities(mig="simulated", energy="modelled", progress=True, clock="virtual")

    def __init__(self, gpus: Sequence[GpuModel], truth: Mapping[str, TruthModel], costs: SimCosts | None = None,
                 seed: int = 0, record_power: bool = True,
                 instances: Sequence[Sequence[tuple[str, int]]] | None = None) -> None:
        self.costs = costs or SimCosts()
        self.seed = seed
        self.record_power = record_power
        self.gpus = list(gpus)
        self.truth = dict(truth)
        self._initial = [list(x) for x in instances] if instances is not None else [[] for _ in self.gpus]
        self._clock = VirtualClock()
        self._heap: list[tuple[float, int, int, str, object]] = []
        self._seq = 0
        self._runs: dict[str, _Run] = {}
        self._token = 0
        self._occupied: set[tuple[int, int]] = set()
        self.events_processed = 0
        rng = random.Random(self.seed)
        self._jitter: dict[str, float] = {}
        j = self.costs.runtime_jitter
        for job_id in self.truth:
            self._jitter[job_id] = max(0.05, rng.gauss(1.0, j)) if j > 0 else 1.0

    @property
    def now_s(self) -> float:
        """The simulated time."""
        return self._clock.now_s()

    @property
    def clock(self) -> VirtualClock:
        return self._clock

    @property
    def default_sample_interval_s(self) -> float:  # type: ignore[override]
        return self.costs.sample_interval_s

    # ---- Backend --------------------------------------------------------------------------
    def open(self, settings: RunSettings) -> list[GpuInfo]:
        self.mig = settings.mig_enabled
        self.sample_interval_s = settings.sample_interval_s
        self.meters = [GpuMeter(m, record=self.record_power) for m in self.gpus]
        if self.record_power:
            for meter in self.meters:
                meter.series.append((0.0, meter.power_w()))
        self._gpu_ready_s = [0.0] * len(self.gpus)
        self._inst_ready_s: dict[tuple[int, int], float] = {}
        self._hw = EmulatedMig(self.gpus, self.mig, self._initial, "SIM")
        return self._hw.gpu_infos()

    def execute(self, actions: Sequence[Action]) -> None:
        for a in actions:
            if isinstance(a, CreateInstance):
                prof, why = self._hw.create(a.gpu, a.profile, a.start)
                if prof is None:
                    self._push(self.now_s, "failed", (a, why))
                    continue
                t1 = max(self.now_s, self._gpu_ready_s[a.gpu]) + self.costs.gi_create_s
                self._gpu_ready_s[a.gpu] = t1
                self._inst_ready_s[(a.gpu, a.start)] = t1
                self._push(t1, "created", (a.gpu, a.profile, a.start))
            elif isinstance(a, DestroyInstance):
                why = self._hw.destroy(a.gpu, a.start, busy=(a.gpu, a.start) in self._occupied)
                if why:
                    self._push(self.now_s, "failed", (a, why))
                    continue
                t1 = max(self.now_s, self._gpu_ready_s[a.gpu]) + self.costs.gi_destroy_s
                self._gpu_ready_s[a.gpu] = t1
                self._push(t1, "destroyed", (a.gpu, a.start))
            elif isinstance(a, Launch):
                self._launch(a)
            elif isinstance(a, Kill):
                self._kill(a)
            elif isinstance(a, Reject):
                pass  # nothing to undo: the job never ran

    def poll(self, until_s: float) -> list[Event] | None:
        while self._heap and self._heap[0][0] <= until_s:
            t = self._heap[0][0]
            out: list[Event] = []
            while self._heap and self._heap[0][0] == t:
                _, _, _, kind, payload = heapq.heappop(self._heap)
                self._clock.advance_to(t)
                self.events_processed += 1
                ev = self._fire(kind, payload)
                if ev is not None:
                    out.append(ev)
            if out:
                return out
        if math.isinf(until_s):
            return None
        self._clock.advance_to(until_s)
        return []

    def energy_j(self, until_s: float) -> list[float]:
        return [m.energy_until(until_s) for m in self.meters]

    def power_series(self) -> list[list[tuple[float, float]]]:
        return [m.series for m in self.meters]

    # ---- internals ------------------------------------------------------------------------
    def _push(self, t_s: float, kind: str, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t_s, _PRIO[kind], self._seq, kind, payload))

    def _launch(self, a: Launch) -> None:
        truth = self.truth.get(a.job_id)
        if truth is None or a.spec is None:
            self._push(self.now_s, "failed", (a, f"job {a.job_id!r} has no model: the simulator needs "
                                                  "runtime_s, speedup and peak_gib", True))
            return
        if a.job_id in self._runs:
            self._push(self.now_s, "failed", (a, f"job {a.job_id!r} is already running in the simulator"))
            return
        job = a.spec
        model = self.gpus[a.gpu]
        profile = self._hw.profile_at(a.gpu, a.start)
        if profile is None:
            self._push(self.now_s, "failed", (a, f"no instance at slot {a.start} of GPU {a.gpu}"))
            return
        t_launch = max(self.now_s, self._inst_ready_s.get((a.gpu, a.start), 0.0))
        speed = speed_on(truth, model, profile)
        work_s = truth.runtime_s * self._jitter[job.job_id] / speed
        compute_s = t_launch + truth.startup_s
        oom_at = truth.oom_fraction(profile.memory_mib / 1024.0)
        end_s = compute_s + (work_s if oom_at is None else oom_at * work_s)
        p = job_power_w(truth.power_w, speed, speed_on(truth, model, self._hw.whole[a.gpu]), model, profile)
        self._token += 1
        run = _Run(job, truth, a.gpu, a.start, profile, self._token, t_launch, compute_s, work_s, end_s,
                   oom_at is not None, p)
        run.attempt = a.attempt
        self._runs[job.job_id] = run
        self._occupied.add((a.gpu, a.start))
        self._push(t_launch, "started", run)
        self._push(compute_s, "compute", run)
        status = ExitStatus.OOM if run.oom else ExitStatus.OK
        peak_mib = profile.memory_mib if run.oom else truth.peak_gib * 1024.0
        self._push(end_s, "exit", (run, run.token, status, float(peak_mib)))
        if self.sample_interval_s is not None:
            self._schedule_sample(run, compute_s)

    def _schedule_sample(self, run: _Run, after_s: float) -> None:
        assert self.sample_interval_s is not None
        t = after_s + self.sample_interval_s
        if t < run.end_s:
            self._push(t, "sample", (run, run.token))

    def _kill(self, a: Kill) -> None:
        run = self._runs.get(a.job_id)
        if run is None or run.token < 0:
            self._push(self.now_s, "failed", (a, f"job {a.job_id!r} is not running in the simulator"))
            return
        if run.computing:
            self.meters[run.gpu].change(self.now_s, -run.power_w)
            run.computing = False
        peak_mib = run.truth.memory_gib(self._progress(run, self.now_s)) * 1024.0
        run.token = -1  # cancels its pending compute/exit/sample events
        self._push(self.now_s + self.costs.kill_s, "exit", (run, -1, ExitStatus.KILLED, peak_mib))

    def _progress(self, run: _Run, t_s: float) -> float:
        if t_s <= run.compute_s:
            return 0.0
        return min(1.0, (t_s - run.compute_s) / run.work_s)

    def _fire(self, kind: str, payload: object) -> Event | None:
        t = self.now_s
        if kind == "failed":
            action, reason, *perm = payload  # type: ignore[misc]
            return ActionFailed(t, action, reason, bool(perm and perm[0]))
        if kind == "created":
            gpu, profile, start = payload  # type: ignore[misc]
            return InstanceCreated(t, gpu, profile, start)
        if kind == "destroyed":
            gpu, start = payload  # type: ignore[misc]
            return InstanceDestroyed(t, gpu, start)
        if kind == "started":
            run: _Run = payload  # type: ignore[assignment]
            if run.token < 0 or self._runs.get(run.job.job_id) is not run:
                return None  # killed before it started
            return JobStarted(t, run.job.job_id, run.gpu, run.start, attempt=run.attempt)
        if kind == "compute":
            run = payload  # type: ignore[assignment]
            if run.token >= 0 and self._runs.get(run.job.job_id) is run:
                run.computing = True
                self.meters[run.gpu].change(t, run.power_w)
            return None
        if kind == "sample":
            run, token = payload  # type: ignore[misc]
            if token != run.token or self._runs.get(run.job.job_id) is not run:
                return None
            f = self._progress(run, t)
            used = run.truth.memory_gib(f) * 1024.0
            self._schedule_sample(run, t)
            progress = f if run.job.reports_progress else None
            return MemorySample(t, run.job.job_id, used, t - run.launch_s, progress)
        if kind == "exit":
            run, token, status, peak_mib = payload  # type: ignore[misc]
            if token != run.token or self._runs.get(run.job.job_id) is not run:
                return None
            del self._runs[run.job.job_id]
            self._occupied.discard((run.gpu, run.start))
            if run.computing:
                self.meters[run.gpu].change(t, -run.power_w)
                run.computing = False
            return JobExited(t, run.job.job_id, status, peak_mib, attempt=run.attempt)
        raise AssertionError(kind)
