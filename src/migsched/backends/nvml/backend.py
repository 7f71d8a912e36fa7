"""`nvml`: real MIG through NVML, with jobs run by the `local` process machinery.

What changes against `local` (everything else, logs, supervisor, kills, resume, is the same):

* GPUs, their models and their geometry are discovered through NVML (`Nvml.model`: NVML wins
  over the catalogue); instances that exist already are adopted. Instances migsched did not
  create are *reserved* (kept busy, never used or destroyed) unless `manage_existing`.
* `CreateInstance` creates the GPU instance with its explicit placement
  (`nvmlDeviceCreateGpuInstanceWithPlacement`) and its full-size compute instance; a job is
  pinned to it with `CUDA_VISIBLE_DEVICES=MIG-<uuid>`. No RAM cap: the instance's memory is real.
* `DestroyInstance` destroys the compute instances, then the GPU instance; NVML's "in use"
  (reported briefly after a process exits) is retried with doubling waits (0.1 s to 3.2 s,
  about 6 s in all) while the loop goes on, then reported as a failed action.
* Memory samples: GPU memory of the processes on the job's MIG device
  (`nvmlDeviceGetComputeRunningProcesses` on the MIG handle; on the GPU's handle with MIG off,
  where a job is pinned with `CUDA_VISIBLE_DEVICES=GPU-<uuid>`), or the probe's CUDA allocator
  figures when larger.
* Energy: the whole-GPU energy counter (`nvmlDeviceGetTotalEnergyConsumption`), read at open
  and at the end, marked measured; where the counter is missing, power readings integrated over
  the loop's ticks.
* MIG mode is never changed unless `allow_mig_change`; without it a GPU in the wrong mode is
  refused with the command that changes it and what that costs. With it, the backend also
  carries out `SetMigMode` during the run (`Capabilities.mig_toggle`): on an idle GPU with no
  instance, through `nvmlDeviceSetMigMode`; an activation that stays pending (a reset this
  platform cannot do) is a failed action. A GPU still in use at open keeps its mode (a resumed
  run's job runs on a GPU the last session turned off), for a policy that toggles MIG.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from migsched.backends.local.attempt import Attempt
from migsched.backends.local.backend import LocalBackend
from migsched.backends.nvml.errors import NvmlError
from migsched.backends.nvml.nvmllib import Nvml
from migsched.core.backend import Capabilities, GpuInfo, InstanceInfo, RunSettings
from migsched.core.events import Action, ActionFailed, DestroyInstance, Event, InstanceDestroyed, MigModeSet, SetMigMode
from migsched.errors import MigschedError
from migsched.hardware.catalog import Profile

_MIB = 1024 * 1024
log = logging.getLogger(__name__)


class MigModeError(MigschedError):
    """A GPU's MIG mode is not what the policy needs, and changing it was not allowed."""


class NvmlMig:
    """The instance manager of `NvmlBackend` (the interface of `backends.emulated.EmulatedMig`)."""

    def __init__(self, nvml: Nvml, models, gpus, owned: set[tuple[int, int]] | None) -> None:
        """`gpus`: NVML's GPUs (`Nvml.gpus`). `owned`: (gpu, start) of existing instances that are
        migsched's to use and destroy (an earlier session created them); the others are reserved.
        None: every existing instance is (`manage_existing`)."""
        self.nvml, self.models = nvml, list(models)
        self.reserved: set[tuple[int, int]] = set()
        self.whole = [m.whole_gpu for m in self.models]
        self.modes: list[bool] = []  # MIG on, per GPU (as NVML reports it, then as changed)
        self.turned_off: set[int] = set()  # GPUs this run turned MIG off on (`close` turns them back)
        self.profiles: dict[tuple[int, int], Profile] = {}
        self.uuids: dict[tuple[int, int], str] = {}
        self._infos: list[GpuInfo] = []
        for g, gpu in enumerate(gpus):
            self.modes.append(gpu.mig_current)
            insts = []
            for inst in (nvml.instances(g) if gpu.mig_current else []):  # a MIG-off GPU has none to ask about
                prof = self.models[g].profile(inst.profile)
                self.profiles[(g, inst.start)] = prof
                if inst.mig_uuid:
                    self.uuids[(g, inst.start)] = inst.mig_uuid
                if owned is not None and (g, inst.start) not in owned:
                    self.reserved.add((g, inst.start))
                insts.append(InstanceInfo(prof.name, inst.start, reserved=(g, inst.start) in self.reserved))
            self._infos.append(GpuInfo(g, self.models[g], gpu.uuid, gpu.mig_current, tuple(insts)))

    def gpu_infos(self) -> list[GpuInfo]:
        return self._infos

    def create(self, gpu: int, profile: str, start: int) -> tuple[Profile | None, str]:
        try:
            prof = self.models[gpu].profile(profile)
            inst = self.nvml.create(gpu, prof, start)
        except MigschedError as exc:
            return None, str(exc)
        self.profiles[(gpu, start)] = prof
        if inst.mig_uuid:
            self.uuids[(gpu, start)] = inst.mig_uuid
        return prof, ""

    def destroy_once(self, gpu: int, start: int) -> NvmlError | None:
        """One attempt; None when gone, else the error (`in_use` to retry)."""
        if (gpu, start) in self.reserved:
            return NvmlError("nvmlGpuInstanceDestroy", gpu, 4, f"the instance at {start} is not migsched's to destroy")
        try:
            self.nvml.destroy(gpu, start)
        except NvmlError as exc:
            if exc.code == 6:  # already gone (destroyed behind our back): that is what was asked
                self._forget(gpu, start)
                return None
            return exc
        self._forget(gpu, start)
        return None

    def _forget(self, gpu: int, start: int) -> None:
        self.profiles.pop((gpu, start), None)
        self.uuids.pop((gpu, start), None)

    def set_mode(self, gpu: int, enabled: bool, busy: bool) -> str:
        """`SetMigMode` through NVML, once; "" or why not (`set_mode_once`)."""
        return self.set_mode_once(gpu, enabled, busy)[0]

    def set_mode_once(self, gpu: int, enabled: bool, busy: bool) -> tuple[str, bool]:
        """One try of `SetMigMode`: ("", False) when done, else (why not, whether NVML said "in
        use", which passes a moment after a process exits and is worth retrying). A job running
        there or instances left are refused before NVML is asked. An activation NVML leaves
        pending (a reset the platform cannot do) is withdrawn, so that no later reset flips the
        mode behind the run's back."""
        if busy:
            return f"GPU {gpu} is in use: a job runs on it", False
        left = [s for (g, s) in self.profiles if g == gpu]
        if self.modes[gpu] and left:
            return f"GPU {gpu} still has GPU instances at slots {sorted(left)}", False
        try:
            status = self.nvml.set_mig_mode(gpu, enabled)
        except NvmlError as exc:
            return str(exc), exc.in_use
        except MigschedError as exc:
            return str(exc), False
        if status:
            try:
                self.nvml.set_mig_mode(gpu, self.modes[gpu])  # withdraw the pending request
            except MigschedError as exc:
                log.warning("GPU %d: could not withdraw a pending MIG-mode change: %s", gpu, exc)
            return (f"NVML left MIG {'on' if enabled else 'off'} pending on GPU {gpu} (activation status {status}: "
                    "a reset or reboot is needed, mig-hardware.md §4); withdrawn"), False
        self.modes[gpu] = enabled
        (self.turned_off.discard if enabled else self.turned_off.add)(gpu)
        return "", False

    def device_uuid(self, gpu: int, start: int) -> str | None:
        """What pins a job at (gpu, start): the MIG device's UUID, or the GPU's with MIG off."""
        if 0 <= gpu < len(self.modes) and not self.modes[gpu]:
            return self._infos[gpu].uuid if start == 0 else None
        return self.uuids.get((gpu, start))

    def profile_at(self, gpu: int, start: int) -> Profile | None:
        if 0 <= gpu < len(self.modes) and not self.modes[gpu]:
            return self.whole[gpu] if start == 0 else None
        return self.profiles.get((gpu, start))


class NvmlBackend(LocalBackend):
    """Real MIG through NVML; see the module docstring.

    Args:
        run_dir: logs, exit records and probe files.
        nvml: the NVML facade (default: `Nvml()`, loading pynvml).
        owned: (gpu, start) of instances an earlier session of this run created (from the store).
        manage_existing: use and destroy instances migsched did not create.
        allow_mig_change: change a GPU's MIG mode when the policy needs the other one.
    """

    name = "nvml"
    capabilities = Capabilities(mig="real", energy="measured", progress=True, clock="wall", resume=True)

    def __init__(self, run_dir: str | Path, *, nvml: Nvml | None = None, owned: set[tuple[int, int]] | None = None,
                 manage_existing: bool = False, allow_mig_change: bool = False, retry_waits_s: Sequence[float] =
                 (0.1, 0.2, 0.4, 0.8, 1.6, 3.2), mig_off: Sequence[int] = (), **kw) -> None:
        self._nvml = nvml
        self.owned = set(owned or ())
        self.manage_existing = manage_existing
        self.allow_mig_change = allow_mig_change
        # MIG per GPU during the run only where the operator allowed MIG changes at all
        self.capabilities = dataclasses.replace(type(self).capabilities, mig_toggle=allow_mig_change)
        self.retry_waits_s = tuple(retry_waits_s)
        self._retries: list[tuple[float, int, Action]] = []  # (due monotonic, tries, destroy or SetMigMode)
        self._waiting: dict[int, list[Action]] = {}  # per GPU, actions behind one being retried
        self._ran_off = set(mig_off)  # GPUs an earlier session of this run turned MIG off (the store's)
        super().__init__([], run_dir, **kw)

    def open(self, settings: RunSettings) -> list[GpuInfo]:
        nvml = self.nvml = self._nvml or Nvml()
        gpus = nvml.gpus()
        keep = settings.mig_per_gpu and self.allow_mig_change  # the policy changes modes itself, when it needs to
        for g in gpus:
            if g.mig_current != settings.mig_enabled and not keep:
                self._mig_mode(g, settings.mig_enabled)
        self.models = [nvml.model(g.index) for g in gpus]
        self._energy0 = [nvml.energy_mj(g.index) for g in gpus]
        self._power_j = [0.0] * len(gpus)
        self._power_t = time.monotonic()
        self._last_mj = list(self._energy0)
        self.job_energy_j: dict[str, float] = {}
        return super().open(settings)

    def _mig_mode(self, gpu, want: bool) -> None:
        word = "enable" if want else "disable"
        if not self.allow_mig_change:
            raise MigModeError(
                f"GPU {gpu.index} ({gpu.name}, {gpu.uuid}) has MIG {'disabled' if want else 'enabled'}; the policy needs "
                f"it {word}d. {word.capitalize()} it with `sudo nvidia-smi -i {gpu.index} -mig {int(want)}` (on A100/A30 "
                "this resets the GPU: every process using it must stop first, including nvidia-persistenced and "
                "monitoring agents), or pass --allow-mig-change to let migsched do it")
        self.nvml.set_mig_mode(gpu.index, want)

    def _make_hw(self):
        gpus = self.nvml.gpus()
        hw = NvmlMig(self.nvml, self.models, gpus, None if self.manage_existing else self.owned)
        # MIG off now because this run turned it off (an earlier session's): turned back on at close
        hw.turned_off |= {g for g in self._ran_off if g < len(gpus) and not gpus[g].mig_current}
        return hw

    # ---- differences from local -------------------------------------------------------------
    def _memory_limit_bytes(self, profile: Profile) -> int | None:
        return None  # the instance's memory is real

    def _launch_env(self, gpu: int, start: int) -> dict[str, str]:
        uuid = self._hw.device_uuid(gpu, start)
        return {"CUDA_VISIBLE_DEVICES": uuid} if uuid else {}

    def _used_mib(self, run: Attempt) -> float:
        uuid = self._hw.device_uuid(run.gpu, run.start)
        if uuid is None:
            return 0.0
        try:
            return sum(self.nvml.processes(uuid).values()) / _MIB
        except NvmlError:
            return 0.0

    def execute(self, actions: Sequence[Action]) -> None:
        """Actions of one GPU in order: while a destroy waits out NVML's "in use", the actions
        after it on that GPU (a create in its slots, a launch there) wait too (the contract)."""
        for a in actions:
            gpu = getattr(a, "gpu", None)
            if gpu is not None and gpu in self._waiting:
                self._waiting[gpu].append(a)
            elif isinstance(a, (DestroyInstance, SetMigMode)):
                self._try(a, 0)
            else:
                super().execute([a])

    def _try(self, a: DestroyInstance | SetMigMode, tries: int) -> None:
        """One try of a destroy or a MIG-mode change. NVML's "in use" (reported a moment after
        a process exits) is tried again after the next of `retry_waits_s` while the loop goes on,
        the GPU's later actions waiting behind it; else the answer is reported and they run."""
        answer, in_use = self._destroy_once(a) if isinstance(a, DestroyInstance) else self._set_mode_once(a)
        if in_use and tries < len(self.retry_waits_s):
            self._retries.append((time.monotonic() + self.retry_waits_s[tries], tries + 1, a))
            self._waiting.setdefault(a.gpu, [])
            return
        self._ready.append(answer)
        queued = self._waiting.pop(a.gpu, None)
        if queued:
            self.execute(queued)

    def _destroy_once(self, a: DestroyInstance) -> tuple[Event, bool]:
        """(the answer if no retry follows, whether NVML said "in use" of an instance no job uses)."""
        now = self._clock.now_s()
        if any(r.gpu == a.gpu and r.start == a.start for r in self._runs.values()):
            busy = NvmlError("nvmlGpuInstanceDestroy", a.gpu, 19, "a job still runs on it")
            return ActionFailed(now, a, str(busy)), False
        err = self._hw.destroy_once(a.gpu, a.start)
        if err is None:
            return InstanceDestroyed(now, a.gpu, a.start), False
        return ActionFailed(now, a, str(err)), err.in_use

    def _set_mode_once(self, a: SetMigMode) -> tuple[Event, bool]:
        """(the answer if no retry follows, whether NVML said "in use")."""
        now = self._clock.now_s()
        busy = any(r.gpu == a.gpu for r in self._runs.values())
        why, in_use = self._hw.set_mode_once(a.gpu, a.enabled, busy)
        return (ActionFailed(now, a, why) if why else MigModeSet(now, a.gpu, a.enabled)), in_use

    def poll(self, until_s: float) -> list[Event] | None:
        while True:
            now_m = time.monotonic()
            due = [r for r in self._retries if r[0] <= now_m]
            self._retries = [r for r in self._retries if r[0] > now_m]
            for _t, tries, a in due:
                self._try(a, tries)  # type: ignore[arg-type]
            self._sample_power()
            limit = min(until_s, self._clock.now_s() + self.tick_s) if self._retries else until_s
            events = super().poll(limit)
            if events:
                return events
            if events is None and not self._retries:
                return None  # nothing runs, nothing to retry
            if self._clock.now_s() >= until_s:
                return []

    def _sample_power(self) -> None:
        """Integrate power where the counter is missing, and attribute each interval's energy to
        jobs: the model's idle power shared equally among the GPU's instances (an idle
        instance's share goes to nobody), the rest among running jobs by compute slices."""
        now = time.monotonic()
        dt, self._power_t = now - self._power_t, now
        for g, e0 in enumerate(self._energy0):
            if e0 is None:
                mw = self.nvml.power_mw(g)
                delta = mw / 1000.0 * dt if mw is not None else 0.0
                self._power_j[g] += delta
            else:
                mj = self.nvml.energy_mj(g)
                if mj is None or self._last_mj[g] is None:
                    continue
                delta, self._last_mj[g] = max(0.0, (mj - self._last_mj[g]) / 1000.0), mj
            self._attribute(g, delta, dt)

    def _attribute(self, gpu: int, delta_j: float, dt_s: float) -> None:
        runs = [(jid, r) for jid, r in self._runs.items() if r.gpu == gpu]
        if not runs or delta_j <= 0:
            return
        n_inst = max(1, sum(1 for (g, _s) in self._hw.profiles if g == gpu)) if self._hw.modes[gpu] else 1
        idle_j = min(delta_j, self.models[gpu].idle_w * dt_s)
        slices = sum(r.profile.compute_slices for _j, r in runs)
        for jid, r in runs:
            share = idle_j / n_inst + (delta_j - idle_j) * r.profile.compute_slices / slices
            self.job_energy_j[jid] = self.job_energy_j.get(jid, 0.0) + share

    def energy_j(self, until_s: float) -> list[float]:
        out = []
        for g, e0 in enumerate(self._energy0):
            e1 = self.nvml.energy_mj(g) if e0 is not None else None
            out.append((e1 - e0) / 1000.0 if e0 is not None and e1 is not None else self._power_j[g])
        return out

    def close(self) -> None:
        """Tear down the idle instances this run created (reserved ones and busy ones stay), and
        turn MIG back on where this run turned it off and no job runs (the operator's mode)."""
        busy = {(r.gpu, r.start) for r in self._runs.values()}
        if getattr(self, "_hw", None) is not None:
            for gpu in sorted(self._hw.turned_off - {g for g, _s in busy}):
                try:
                    status = self.nvml.set_mig_mode(gpu, True)
                except NvmlError as exc:
                    log.warning("left MIG off on GPU %d: %s", gpu, exc)
                    continue
                if status:
                    log.warning("MIG on GPU %d is enabled only after a reset (activation status %d)", gpu, status)
            for gpu, start in sorted(set(self._hw.profiles) - self._hw.reserved - busy):
                try:
                    self.nvml.destroy_with_retry(gpu, start)
                    self._hw._forget(gpu, start)
                except NvmlError as exc:
                    log.warning("left the instance at slot %d of GPU %d: %s", start, gpu, exc)
        super().close()

    def power_series(self) -> list[list[tuple[float, float]]]:
        return [[] for _ in self.models]


__all__ = ["MigModeError", "NvmlBackend"]
