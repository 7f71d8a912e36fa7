"""`local`: real child processes on emulated MIG instances (no GPU needed).

Each instance the core creates is *emulated*: it exists in this backend's own layout (the MIG
rules still apply, checked by the partition engine), and a job launched on it gets what the
instance would give it, scaled down so tests stay small:

* memory: a hard cap of `mib_per_gib` MiB of RAM per GiB of the profile's memory (default 16:
  a 1g.10gb instance caps the job at ~152 MiB), enforced by cgroup v2 where the machine has a
  writable cgroup2 hierarchy and by RLIMIT_DATA otherwise (`memcap.py`, docs/running.md);
* CPU: a share of the cores in proportion to the profile's compute slices (at least one core);
* memory samples: RSS of the job's whole process tree (psutil), mapped back to "GPU MiB" by the
  same scale, plus the progress the job reports through `migsched.probe`;
* energy: the simulator's power model with each job at its instance's full share (modelled,
  and labelled so);
* checkpoints (jobs with `checkpoint:`): `Kill(checkpoint=True)` sends the job's signal to its
  process group and waits up to its `grace_s`; an exit before that is `checkpointed`, after it
  the job is SIGKILLed. Every attempt of such a job gets `MIGSCHED_CHECKPOINT_DIR` (one folder
  per job, kept across attempts), `MIGSCHED_CHECKPOINT_SIGNAL` and `MIGSCHED_RESUME` (1 when the
  launch resumes, else 0); docs/checkpoint.md.

Processes run under a supervisor (`shim.py`) in their own session, so a SIGKILLed scheduler
leaves them running; `recover` finds them again by pid *and* start time (or by the attempt's
exit-record path on the shim's command line), or reads the exit record they left.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from migsched.backends.local import memcap
from migsched.backends.local.attempt import Attempt, find_shim, last_progress, read_pidfile, write_pidfile
from migsched.backends.local.process import ExitInfo, ManagedProcess, ProcessSpec, safe_name
from migsched.backends.sim.energy import GpuMeter
from migsched.backends.emulated import EmulatedMig
from migsched.core.backend import Backend, Capabilities, GpuInfo, Recovery, RunSettings
from migsched.core.clock import WallClock
from migsched.core.sampling import SampleCursor, SamplePlan
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
    parse_process_handle,
    process_handle,
)
from migsched.errors import MigschedError
from migsched.hardware.catalog import GpuModel, Profile
from migsched.jobs.model import JobSpec
from migsched.probe import CHECKPOINT_DIR_ENV, CHECKPOINT_SIGNAL_ENV, RESUME_ENV

_MIB = 1024 * 1024


class LocalBackend(Backend):
    """Real processes on emulated MIG instances; see the module docstring.

    Args:
        gpus: the GPU models to emulate, one per GPU.
        run_dir: where logs, exit records and probe files go (created 0o700).
        mib_per_gib: MiB of RAM a job may use per GiB of its instance's memory.
        cpus: the CPU cores jobs may use (default: this process's affinity).
        instances: per GPU, emulated instances that exist already ((profile, start) pairs),
            from the run store when a run resumes.
        mig_off: GPUs an earlier session of a resumed run turned MIG off on (`SetMigMode`).
        origin_unix: when the run began (a resumed run passes the stored value).
        kill_grace_s: SIGTERM, then SIGKILL after this long.
        tick_s: how often running processes are looked at while nothing else is due.
        sample_interval_s: memory-sample period when the policy names none (default 1 s).
    """

    name = "local"
    capabilities = Capabilities(mig="emulated", energy="modelled", progress=True, clock="wall", resume=True,
                                mig_toggle=True)
    default_sample_interval_s = 1.0

    def __init__(self, gpus: Sequence[GpuModel], run_dir: str | Path, *, mib_per_gib: float = 16.0,
                 cpus: Sequence[int] | None = None, instances: Sequence[Sequence[tuple[str, int]]] | None = None,
                 origin_unix: float | None = None, kill_grace_s: float = 5.0, tick_s: float = 0.05,
                 sample_interval_s: float = 1.0, mechanism: memcap.CapMechanism | None = None,
                 mig_off: Sequence[int] = ()) -> None:
        if mib_per_gib <= 0 or not math.isfinite(mib_per_gib):
            raise MigschedError(f"mib_per_gib must be a positive number, got {mib_per_gib!r}")
        self.models = list(gpus)
        self.run_dir = Path(run_dir).resolve()  # absolute: the shim command line names its files
        self.log_dir = self.run_dir / "logs"
        self.mib_per_gib = float(mib_per_gib)
        self.cpus = tuple(cpus) if cpus else tuple(sorted(os.sched_getaffinity(0)))
        self._initial = [list(x) for x in instances] if instances is not None else [[] for _ in self.models]
        self._mig_off = tuple(mig_off)
        self._clock = WallClock(origin_unix)
        self.kill_grace_s = kill_grace_s
        self.tick_s = tick_s
        self.default_sample_interval_s = sample_interval_s
        self.mechanism = mechanism or memcap.current_mechanism()
        self._ready: list[Event] = []
        self._runs: dict[str, Attempt] = {}
        self.sample_interval_s: float | None = None

    @property
    def clock(self) -> WallClock:
        return self._clock

    # ---- Backend --------------------------------------------------------------------------
    def open(self, settings: RunSettings) -> list[GpuInfo]:
        self.mig = settings.mig_enabled
        self.sample_interval_s = settings.sample_interval_s
        self.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.meters = [GpuMeter(m, record=True) for m in self.models]
        now = self._clock.now_s()
        for meter in self.meters:
            meter.advance(now)
            meter.series.append((now, meter.power_w()))
        self._hw = self._make_hw()
        return self._hw.gpu_infos()

    # Hooks a real-MIG backend (nvml) overrides; the defaults emulate the instances.
    def _make_hw(self):
        """The instance manager: create/destroy/profile_at/gpu_infos (EmulatedMig's interface)."""
        return EmulatedMig(self.models, self.mig, self._initial, "EMU", self._mig_off)

    def _memory_limit_bytes(self, profile: Profile) -> int | None:
        """The RAM cap that stands in for the instance's memory (None on real MIG)."""
        return int(profile.memory_mib / 1024.0 * self.mib_per_gib * _MIB)

    def _launch_env(self, gpu: int, start: int) -> dict[str, str]:
        """Extra environment that pins a job to its instance (CUDA_VISIBLE_DEVICES on real MIG)."""
        return {}

    def _used_mib(self, run: Attempt) -> float:
        """Memory the job uses, in the GPU MiB the policy reasons in."""
        return self._gpu_mib(run.proc.memory_bytes())

    def execute(self, actions: Sequence[Action]) -> None:
        for a in actions:
            now = self._clock.now_s()
            if isinstance(a, CreateInstance):
                prof, why = self._hw.create(a.gpu, a.profile, a.start)
                self._ready.append(InstanceCreated(now, a.gpu, prof.name, a.start) if prof is not None
                                   else ActionFailed(now, a, why))
            elif isinstance(a, DestroyInstance):
                busy = any(r.gpu == a.gpu and r.start == a.start for r in self._runs.values())
                why = self._hw.destroy(a.gpu, a.start, busy)
                self._ready.append(ActionFailed(now, a, why) if why else InstanceDestroyed(now, a.gpu, a.start))
            elif isinstance(a, SetMigMode):
                busy = any(r.gpu == a.gpu for r in self._runs.values())
                why = self._hw.set_mode(a.gpu, a.enabled, busy)
                self._ready.append(ActionFailed(now, a, why) if why else MigModeSet(now, a.gpu, a.enabled))
            elif isinstance(a, Launch):
                self._launch(a, now)
            elif isinstance(a, Kill):
                run = self._runs.get(a.job_id)
                if run is None:
                    self._ready.append(ActionFailed(now, a, f"job {a.job_id!r} is not running here"))
                else:
                    self._stop(run, a.checkpoint)
            elif isinstance(a, Reject):
                pass

    def poll(self, until_s: float) -> list[Event] | None:
        while True:
            events, self._ready = self._ready, []
            now = self._clock.now_s()
            events += self._check(now)
            if events:
                return events
            if not self._runs and until_s == math.inf:
                return None
            if now >= until_s:
                return []
            time.sleep(max(0.0, min(self.tick_s, until_s - now)))

    def energy_j(self, until_s: float) -> list[float]:
        return [m.energy_until(until_s) for m in self.meters]

    def power_series(self) -> list[list[tuple[float, float]]]:
        return [m.series for m in self.meters]

    def close(self) -> None:
        """Leave running processes alone: a stopped scheduler resumes them (`--resume`)."""
        self._runs.clear()

    def stop_all(self) -> None:
        """Stop every running job (SIGTERM, grace, SIGKILL) and wait for them."""
        for run in self._runs.values():
            run.proc.terminate(self.kill_grace_s)
        deadline = time.monotonic() + self.kill_grace_s + 5.0
        while self._runs and time.monotonic() < deadline:
            for jid, run in list(self._runs.items()):
                if run.proc.poll() is not None:
                    del self._runs[jid]
            time.sleep(self.tick_s)

    # ---- recovery ----------------------------------------------------------------------------
    def recover(self, spec: JobSpec, attempt: int, gpu: int, start: int, handle: str, *,
                launched_s: float | None = None, stopping: bool = False, checkpoint: bool = False) -> Recovery:
        """Adopt attempt `attempt` of a job a previous scheduler started, or read how it ended.

        `stopping`: the previous scheduler had decided to kill it (early restart, preemption); an
        adopted process is stopped again and a signal exit counts as that kill, not a failure.
        `checkpoint`: that kill asked for a checkpoint; the signal is sent again, and an exit
        other than by SIGKILL counts as checkpointed.
        """
        checkpoint = checkpoint and stopping and spec.checkpoint is not None
        now = self._clock.now_s()
        profile = self._profile_at(gpu, start)
        if profile is None:  # what it was to run on was never made (a create or a MIG-mode change
            return Recovery("absent")  # cut short by the stop), so it never started: run it again
        pspec = self._process_spec(spec, attempt, gpu, start, profile)
        ident = parse_process_handle(handle) or read_pidfile(pspec) or find_shim(pspec)
        proc = ManagedProcess.adopt(pspec, *ident) if ident else None
        if proc is not None:
            run = self._track(proc, spec, attempt, gpu, start, profile, now,
                              launched_s=launched_s if launched_s is not None else now)
            if stopping:
                self._stop(run, checkpoint)
            return Recovery("running", handle=process_handle(proc.pid, proc.create_time))
        info = ManagedProcess.read_exit_record(pspec)
        if info is not None:  # it ended while no scheduler watched: at its own end time
            ended_s = min(now, max(0.0, info.ended_unix - self._clock.origin_unix))
            ev = self._exit_event(ended_s, spec.job_id, info, profile, 0, attempt)
            if stopping and ev.status in (ExitStatus.FAILED, ExitStatus.KILLED):
                saved = checkpoint and info.returncode != -signal.SIGKILL
                ev = JobExited(ev.time_s, ev.job_id, ExitStatus.KILLED, ev.peak_mib, ev.detail, attempt,
                               checkpointed=saved, progress=last_progress(pspec) if saved else None)
            return Recovery("ended", exit=ev)
        if ident is not None:  # it was started and is gone without a record (the machine restarted?)
            return Recovery("ended", exit=JobExited(now, spec.job_id, ExitStatus.KILLED, 0.0,
                                                    "the process ended while the scheduler was down and left "
                                                    "no exit record; it runs again", attempt))
        return Recovery("absent")

    # ---- internals ---------------------------------------------------------------------------
    def _profile_at(self, gpu: int, start: int) -> Profile | None:
        return self._hw.profile_at(gpu, start)

    def _cpus_for(self, gpu: int, start: int, profile: Profile) -> tuple[int, ...]:
        model = self.models[gpu]
        n = len(self.cpus)
        k = max(1, round(n * profile.compute_slices / model.compute_slices))
        first = (start * n) // model.memory_slices
        return tuple(self.cpus[(first + i) % n] for i in range(min(k, n)))

    def _process_spec(self, spec: JobSpec, attempt: int, gpu: int, start: int, profile: Profile,
                      resume: bool = False) -> ProcessSpec:
        assert spec.argv is not None
        probe = self.log_dir / f"{safe_name(spec.job_id)}.{attempt}.probe.json"  # beside ProcessSpec.file_stem's files
        env = {**dict(spec.env), **self._launch_env(gpu, start)}
        if spec.checkpoint is not None:
            env |= {CHECKPOINT_DIR_ENV: str(self.checkpoint_dir(spec.job_id)),
                    CHECKPOINT_SIGNAL_ENV: spec.checkpoint.signal, RESUME_ENV: "1" if resume else "0"}
        return ProcessSpec(spec.job_id, attempt, tuple(spec.argv), env, spec.cwd, self.log_dir,
                           self._memory_limit_bytes(profile), self._cpus_for(gpu, start, profile), probe)

    def _launch(self, a: Launch, now: float) -> None:
        spec = a.spec
        if spec is None or not spec.argv:
            self._ready.append(ActionFailed(now, a, f"job {a.job_id!r} has no command to run", permanent=True))
            return
        if a.job_id in self._runs:
            self._ready.append(ActionFailed(now, a, f"job {a.job_id!r} is already running here"))
            return
        profile = self._profile_at(a.gpu, a.start)
        if profile is None or (a.profile and profile.name != a.profile):
            self._ready.append(ActionFailed(now, a, f"no {a.profile or 'instance'} at slot {a.start} of GPU {a.gpu}"))
            return
        pspec = self._process_spec(spec, a.attempt, a.gpu, a.start, profile, resume=a.resume)
        try:
            if spec.checkpoint is not None:
                self.checkpoint_dir(spec.job_id).mkdir(mode=0o700, parents=True, exist_ok=True)
            proc = ManagedProcess.start(pspec, mechanism=self.mechanism)
        except (OSError, ValueError) as exc:
            self._ready.append(ActionFailed(now, a, f"cannot start {spec.argv[0]!r}: {exc}"))
            return
        write_pidfile(pspec, proc)
        self._track(proc, spec, a.attempt, a.gpu, a.start, profile, now, launched_s=now, samples=a.samples)
        self._ready.append(JobStarted(now, a.job_id, a.gpu, a.start, handle=process_handle(proc.pid, proc.create_time),
                                      attempt=a.attempt))

    def _track(self, proc: ManagedProcess, spec: JobSpec, attempt: int, gpu: int, start: int, profile: Profile,
               now: float, launched_s: float, samples: SamplePlan | None = None) -> Attempt:
        """Watch a started (or adopted) process; `samples` is its attempt's plan (None: a fixed
        period when the run asked for samples, as for an adopted process)."""
        model = self.models[gpu]
        power = (model.max_w - model.idle_w) * min(1.0, profile.sm_count / model.sm_count)
        if samples is None and self.sample_interval_s is not None:
            samples = SamplePlan.periodic()
        cursor = None
        if samples is not None:
            cursor = SampleCursor.start(samples, self.sample_interval_s or self.default_sample_interval_s, now)
        nxt = cursor.next_s if cursor is not None and cursor.next_s is not None else math.inf
        run = self._runs[spec.job_id] = Attempt(proc, gpu, start, profile, launched_s, nxt, power, attempt,
                                                 spec.checkpoint, cursor)
        self.meters[gpu].change(now, power)
        self.meters[gpu].series.append((now, self.meters[gpu].power_w()))
        return run

    def checkpoint_dir(self, job_id: str) -> Path:
        """The folder a checkpointable job saves into, the same for all its attempts."""
        return self.run_dir / "checkpoints" / safe_name(job_id)

    def _stop(self, run: Attempt, checkpoint: bool) -> None:
        """A kill: the checkpoint signal and the job's grace period when asked and possible (a job
        without `checkpoint:` is stopped as any other), else SIGTERM and `kill_grace_s`."""
        if checkpoint and run.checkpoint is not None:
            run.proc.checkpoint(signal.Signals[run.checkpoint.signal], run.checkpoint.grace_s)
        else:
            run.proc.terminate(self.kill_grace_s)

    def _check(self, now: float) -> list[Event]:
        out: list[Event] = []
        for job_id, run in list(self._runs.items()):
            info = run.proc.poll()
            if info is not None:
                del self._runs[job_id]
                self.meters[run.gpu].change(now, -run.power_w)
                self.meters[run.gpu].series.append((now, self.meters[run.gpu].power_w()))
                out.append(self._exit_event(now, job_id, info, run.profile, run.proc.peak_memory_bytes, run.attempt,
                                            last_progress(run.proc.spec)))
            elif now >= run.next_sample_s:
                used_mib = self._used_mib(run)
                reading = run.proc.probe()
                progress = None
                if reading is not None:
                    progress = reading.progress
                    dev = reading.reserved_bytes or reading.allocated_bytes
                    if dev:
                        used_mib = max(used_mib, dev / _MIB)
                assert run.cursor is not None
                nxt = run.cursor.took(now, used_mib)
                run.next_sample_s = nxt if nxt is not None else math.inf
                sample = run.cursor.offer(MemorySample(now, job_id, used_mib, now - run.launched_s, progress))
                if sample is not None:  # else dropped or held (SamplePlan.growth_only, hold_below_mib)
                    out.append(sample)
        return out

    def _gpu_mib(self, rss_bytes: int) -> float:
        """Resident bytes of an emulated job as the GPU MiB they stand for (the cap's scale)."""
        return rss_bytes / _MIB * 1024.0 / self.mib_per_gib

    def _exit_event(self, now: float, job_id: str, info: ExitInfo, profile: Profile, peak_bytes: int,
                    attempt: int, progress: float | None = None) -> JobExited:
        status = ExitStatus(info.status.value)
        peak = float(profile.memory_mib) if status is ExitStatus.OOM else self._gpu_mib(peak_bytes)
        return JobExited(now, job_id, status, peak, info.detail, attempt, checkpointed=info.checkpointed,
                         progress=progress if info.checkpointed else None)
