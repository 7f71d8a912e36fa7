"""The discrete-event simulator: a virtual clock over a heap of (time, priority, seq, event).

Events at the same time are returned together, in a fixed priority order with insertion order
breaking ties, so a run is deterministic for a seed (the SimPy pattern, style.md §1.5).

What is simulated (costs in `costs.py`, power in `energy.py`, documented in docs/simulator.md):
  * GPU-instance creates and destroys take time and are serialised per GPU;
  * a launched job waits for its instance, starts up (`startup_s`), then computes at the speed
    of its instance; its memory follows its curve over the fraction of work done, and it fails
    with out-of-memory at the moment the curve crosses the instance's memory;
  * a kill ends the process after `kill_s`; work done is lost (restarts begin from scratch);
  * a checkpoint (`Kill(checkpoint=True)`) ends it after its save time, keeping the work done,
    and a `Launch(resume=True)` pays `resume_s` and goes on from there (`checkpoint.py`);
  * memory samples when the attempt's `SamplePlan` (`Launch.samples`) asks, on the base period
    `sample_interval_s`, with the job's progress when the job reports it, on a time grid that
    all jobs share (the base period, coarser for late sparse samples) so that the samples of many
    jobs come in one batch (`_sample_at`);
  * the hardware's own layout per GPU: an action the MIG rules forbid (or a launch on an
    instance that does not exist) is answered with `ActionFailed`, as NVML would refuse it.

The simulator is the only place ground truth reaches: it gets each job's `TruthModel` by id at
construction; jobs themselves arrive through the job source and reach it as `Launch.spec`.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from migsched.backends.sim.checkpoint import checkpoint_save_s, oom_fraction_from, resume_point
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
    MigModeSet,
    Reject,
    SetMigMode,
)
from migsched.core.sampling import SampleCursor, SamplePlan
from migsched.hardware.catalog import GpuModel, Profile
from migsched.jobs.model import JobSpec, TruthModel
from migsched.jobs.truth import speed_on

# Priority of simultaneous internal events: state changes first, then samples. (Arrivals come
# from the job source; the driver adds them after the simulator's events of the same time.)
_PRIO = {"failed": 0, "destroyed": 0, "mig": 0, "created": 1, "exit": 2, "started": 3, "compute": 4, "sample": 6}


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
    from_fraction: float = 0.0  # the work a resumed run starts with (its checkpoint)
    cursor: SampleCursor | None = None  # where its samples stand (None: not sampled)


class Simulator(Backend):
    """Simulated GPUs with MIG; see the module docstring.

    Args:
        gpus: the GPU models, one per GPU (mixed clusters allowed).
        truth: every job's ground truth by job id (the order seeds the run-time jitter).
        instances: per GPU, instances that exist before the run ((profile, start) pairs), to
            exercise adoption; MIG GPUs start empty otherwise.
    """

    name = "sim"
    capabilities = Capabilities(mig="simulated", energy="modelled", progress=True, clock="virtual", mig_toggle=True)

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
        self._saved: dict[str, float] = {}  # job id -> fraction of work its checkpoint holds
        self._suffix_peaks: dict[str, tuple[list[float], list[float]]] = {}  # job id -> _peaks_after
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
            elif isinstance(a, SetMigMode):
                busy = any(g == a.gpu for g, _s in self._occupied)
                why = self._hw.set_mode(a.gpu, a.enabled, busy)
                if why:
                    self._push(self.now_s, "failed", (a, why))
                    continue
                t1 = max(self.now_s, self._gpu_ready_s[a.gpu]) + self.costs.mig_mode_s
                self._gpu_ready_s[a.gpu] = t1
                if not a.enabled:
                    self._inst_ready_s[(a.gpu, 0)] = t1  # the whole GPU: a launch there waits for it
                self._push(t1, "mig", (a.gpu, a.enabled))
            elif isinstance(a, Launch):
                self._launch(a)
            elif isinstance(a, Kill):
                self._kill(a)
            elif isinstance(a, Reject):
                pass  # nothing to undo: the job never ran

    def poll(self, until_s: float) -> list[Event] | None:
        heap, pop, fire = self._heap, heapq.heappop, self._fire
        while heap and heap[0][0] <= until_s:
            t = heap[0][0]
            self._clock.advance_to(t)
            out: list[Event] = []
            n = 0
            while heap and heap[0][0] == t:
                _, _, _, kind, payload = pop(heap)
                n += 1
                ev = fire(kind, payload)
                if ev is not None:
                    out.append(ev)
            self.events_processed += n
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
        if profile is None or (a.profile and profile.name != a.profile):
            self._push(self.now_s, "failed", (a, f"no {a.profile or 'instance'} at slot {a.start} of GPU {a.gpu}"))
            return
        t_launch = max(self.now_s, self._inst_ready_s.get((a.gpu, a.start), 0.0))
        speed = speed_on(truth, model, profile)
        work_s = truth.runtime_s * self._jitter[job.job_id] / speed
        f0, resume_s = resume_point(self._saved, job.job_id, a.resume, job.checkpoint)
        power_s = t_launch + truth.startup_s  # loading a checkpoint draws power, starting up does not
        compute_s = power_s + resume_s
        oom_at = oom_fraction_from(truth, profile.memory_mib / 1024.0, f0)
        end_s = compute_s + ((1.0 if oom_at is None else oom_at) - f0) * work_s
        p = job_power_w(truth.power_w, speed, speed_on(truth, model, self._hw.whole[a.gpu]), model, profile)
        self._token += 1
        run = _Run(job, truth, a.gpu, a.start, profile, self._token, t_launch, compute_s, work_s, end_s,
                   oom_at is not None, p)
        run.attempt = a.attempt
        run.from_fraction = f0
        self._runs[job.job_id] = run
        self._occupied.add((a.gpu, a.start))
        self._push(t_launch, "started", run)
        self._push(power_s, "compute", run)
        status = ExitStatus.OOM if run.oom else ExitStatus.OK
        peak_mib = profile.memory_mib if run.oom else truth.peak_gib * 1024.0
        self._push(end_s, "exit", (run, run.token, status, float(peak_mib)))
        plan = a.samples if a.samples is not None else (
            SamplePlan.periodic() if self.sample_interval_s is not None else None)
        if plan is not None and plan.max_samples > 0:
            run.cursor = SampleCursor.start(plan, self.sample_interval_s or self.costs.sample_interval_s, compute_s)
            self._schedule_sample(run)

    def _schedule_sample(self, run: _Run) -> None:
        """Queue the attempt's next reported sample. For a job that reports no progress, the
        samples are taken here, in order and at their own times (the curve is known): those the
        cursor drops (`growth_only`) or holds (`hold_below_mib`) cost no event, and the one it
        reports is queued ready-made; what the core sees is the same as if each had fired."""
        cur = run.cursor
        assert cur is not None
        plan = cur.plan
        ahead = (plan.growth_only or plan.hold_below_mib is not None) and not run.job.reports_progress
        while cur.next_s is not None:
            t = _sample_at(cur.next_s, plan.gap_s(cur.taken, cur.base_s), cur.base_s)
            if t >= run.end_s:
                return
            sample = None
            if ahead:
                f = self._progress(run, t)
                used = run.truth.memory_gib(f) * 1024.0
                if self._nothing_to_report(run, f, used):
                    return  # every later sample would be dropped or held for good
                cur.took(t, used)
                sample = cur.offer(MemorySample(t, run.job.job_id, used, t - run.launch_s))
                if sample is None:
                    continue  # dropped or held: no event
            self._push(t, "sample", (run, run.token, sample))  # None: taken when it fires
            return

    def _nothing_to_report(self, run: _Run, f: float, used_mib: float) -> bool:
        """Whether no sample from progress `f` on (where the job uses `used_mib`) can be
        reported: the most memory the rest of the curve reaches neither sets a new peak
        (`growth_only`) nor reaches `hold_below_mib`. Then taking them changes nothing the core
        could see, so none is taken (a flat curve costs one sample, not one per tick up to the
        plan's cap)."""
        cur = run.cursor
        assert cur is not None
        xs, after = self._peaks_after(run)
        i = bisect.bisect_right(xs, f)  # the first curve point past f
        rest_mib = max(used_mib, after[i] * 1024.0) if i < len(xs) else used_mib
        plan = cur.plan
        if plan.growth_only and not cur.grows(rest_mib):
            return True
        return plan.hold_below_mib is not None and rest_mib < plan.hold_below_mib

    def _peaks_after(self, run: _Run) -> tuple[list[float], list[float]]:
        """The job's memory curve's xs and, per point, the most memory from that point on
        (`_nothing_to_report` asks at every sample it considers; built once per job)."""
        hit = self._suffix_peaks.get(run.job.job_id)
        if hit is None:
            pts = run.truth.memory_points
            after = [y for _, y in pts]
            for k in range(len(after) - 2, -1, -1):
                after[k] = max(after[k], after[k + 1])
            hit = self._suffix_peaks[run.job.job_id] = ([x for x, _ in pts], after)
        return hit

    def _used_mib(self, run: _Run, t_s: float) -> float:
        """The attempt's memory at `t_s` from its truth curve."""
        return run.truth.memory_gib(self._progress(run, t_s)) * 1024.0

    def _kill(self, a: Kill) -> None:
        run = self._runs.get(a.job_id)
        if run is None or run.token < 0:
            self._push(self.now_s, "failed", (a, f"job {a.job_id!r} is not running in the simulator"))
            return
        if a.checkpoint and run.job.checkpoint is not None:
            self._checkpoint(run)
            return
        if run.computing:
            self.meters[run.gpu].change(self.now_s, -run.power_w)
            run.computing = False
        peak_mib = self._used_mib(run, self.now_s)
        run.token = -1  # cancels its pending compute/exit/sample events
        self._push(self.now_s + self.costs.kill_s, "exit", (run, -1, ExitStatus.KILLED, peak_mib))

    def _checkpoint(self, run: _Run) -> None:
        """Stop progress now, save, exit: in time keeps the work done, past `grace_s` loses it."""
        ckpt = run.job.checkpoint
        assert ckpt is not None
        f = self._progress(run, self.now_s)
        peak_mib = run.truth.memory_gib(f) * 1024.0
        run.token = -1  # cancels its pending compute/exit/sample events; power runs until the exit
        save_s = checkpoint_save_s(run.truth, ckpt)
        if save_s <= ckpt.grace_s:
            self._saved[run.job.job_id] = f
            self._push(self.now_s + save_s, "exit", (run, -1, ExitStatus.KILLED, peak_mib, f,
                                                     f"checkpointed at {f:.1%} after {ckpt.signal}"))
        else:
            self._push(self.now_s + ckpt.grace_s, "exit", (run, -1, ExitStatus.KILLED, peak_mib, None,
                                                           f"killed by SIGKILL after the {ckpt.grace_s:g} s grace "
                                                           f"period: the checkpoint was not saved in time"))

    def _progress(self, run: _Run, t_s: float) -> float:
        if t_s <= run.compute_s:
            return run.from_fraction
        return min(1.0, run.from_fraction + (t_s - run.compute_s) / run.work_s)

    def _fire(self, kind: str, payload: object) -> Event | None:
        t = self._clock.now_s()
        if kind == "sample":  # first: the most frequent kind
            run, token, sample = payload  # type: ignore[misc]
            if token != run.token or self._runs.get(run.job.job_id) is not run:
                return None
            assert run.cursor is not None
            if sample is None:  # taken now (_schedule_sample took the ready-made ones already)
                f = self._progress(run, t)
                used = run.truth.memory_gib(f) * 1024.0
                run.cursor.took(t, used)
                progress = f if run.job.reports_progress else None
                # offered before the next ones are taken: None when dropped or held (SamplePlan)
                sample = run.cursor.offer(MemorySample(t, run.job.job_id, used, t - run.launch_s, progress))
            self._schedule_sample(run)
            return sample
        if kind == "failed":
            action, reason, *perm = payload  # type: ignore[misc]
            return ActionFailed(t, action, reason, bool(perm and perm[0]))
        if kind == "created":
            gpu, profile, start = payload  # type: ignore[misc]
            return InstanceCreated(t, gpu, profile, start)
        if kind == "destroyed":
            gpu, start = payload  # type: ignore[misc]
            return InstanceDestroyed(t, gpu, start)
        if kind == "mig":
            gpu, enabled = payload  # type: ignore[misc]
            return MigModeSet(t, gpu, enabled)
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
        if kind == "exit":
            run, token, status, peak_mib, *ckpt = payload  # type: ignore[misc]
            if token != run.token or self._runs.get(run.job.job_id) is not run:
                return None
            del self._runs[run.job.job_id]
            self._occupied.discard((run.gpu, run.start))
            if run.computing:
                self.meters[run.gpu].change(t, -run.power_w)
                run.computing = False
            if ckpt:  # the answer to a checkpoint: (saved fraction or None, detail)
                return JobExited(t, run.job.job_id, status, peak_mib, ckpt[1], run.attempt,
                                 checkpointed=ckpt[0] is not None, progress=ckpt[0])
            return JobExited(t, run.job.job_id, status, peak_mib, attempt=run.attempt)
        raise AssertionError(kind)


def _sample_at(t_s: float, gap_s: float, base_s: float) -> float:
    """When a sample due at `t_s` after a gap of `gap_s` is taken: on a grid that every running
    job shares, so that the samples of many jobs fall on the same instants and reach the core as
    one batch (a real backend reads every process at one tick, too). While gaps are short (under
    8 base periods) the grid is the base period (at most one period late); then the next multiple
    of a power of two at most an eighth of the gap (at most 12.5% late)."""
    q = base_s if gap_s < 8.0 * base_s else 2.0 ** math.floor(math.log2(gap_s / 8.0))
    return math.ceil(t_s / q - 1e-9) * q
