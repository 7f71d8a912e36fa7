"""Emulated MIG hardware: the GPU instances a backend without real MIG keeps itself.

The simulator and the `local` backend both keep the instances of their GPUs here, under the same
rules NVML enforces (the partition engine checks every create), so an illegal create or a destroy
of a missing or busy instance is refused with a reason, as real hardware would refuse it, and
answered to the core as `ActionFailed`.
"""

from __future__ import annotations

from collections.abc import Sequence

from migsched.core.backend import GpuInfo, InstanceInfo
from migsched.errors import MigschedError
from migsched.hardware.catalog import GpuModel, Profile
from migsched.partition.layout import Layout


class EmulatedMig:
    """Per GPU, the instances that exist (MIG on) or the whole GPU as one pseudo-instance (off).

    Args:
        models: one model per GPU.
        mig: whether MIG is on (on every GPU, unless `mig_off` names some).
        initial: per GPU, (profile, start) pairs that exist before the run (MIG on only).
        uuid_prefix: how the backend names its GPUs ("SIM", "EMU").
        mig_off: GPUs that start with MIG off although `mig` is True (a resumed run's GPUs that
            an earlier session turned off with `SetMigMode`).
    """

    def __init__(self, models: Sequence[GpuModel], mig: bool, initial: Sequence[Sequence[tuple[str, int]]],
                 uuid_prefix: str, mig_off: Sequence[int] = ()) -> None:
        self.models = list(models)
        self.modes = [mig and i not in set(mig_off) for i in range(len(self.models))]  # MIG on, per GPU
        self.uuid_prefix = uuid_prefix
        self.whole = [m.whole_gpu for m in self.models]  # built once: whole_gpu makes a new Profile
        self.layouts = [Layout.empty(m) for m in self.models]
        self.profiles: dict[tuple[int, int], Profile] = {}
        for idx, items in enumerate(initial):
            if self.modes[idx]:
                for name, start in items:
                    prof = self.models[idx].profile(name)
                    self.layouts[idx] = self.layouts[idx].with_instance(prof, start)
                    self.profiles[(idx, start)] = prof

    def gpu_infos(self) -> list[GpuInfo]:
        """What discovery reports: every GPU with the instances that exist."""
        out = []
        for idx, model in enumerate(self.models):
            insts = tuple(InstanceInfo(i.profile.name, i.start) for i in self.layouts[idx].instances)
            out.append(GpuInfo(idx, model, f"{self.uuid_prefix}-{model.name}-{idx}", self.modes[idx], insts))
        return out

    def create(self, gpu: int, profile: str, start: int) -> tuple[Profile | None, str]:
        """Create an instance; returns (its profile, "") or (None, why it cannot be made)."""
        try:
            if not self.modes[gpu]:
                return None, f"cannot create {profile}@{start} on GPU {gpu}: MIG is off there"
            prof = self.models[gpu].profile(profile)
            self.layouts[gpu] = self.layouts[gpu].with_instance(prof, start)
        except (MigschedError, IndexError) as exc:
            return None, f"cannot create {profile}@{start} on GPU {gpu}: {exc}"
        self.profiles[(gpu, start)] = prof
        return prof, ""

    def destroy(self, gpu: int, start: int, busy: bool) -> str:
        """Destroy the instance at `start` unless a job uses it; returns "" or why not."""
        if (gpu, start) not in self.profiles:
            return f"no instance at slot {start} of GPU {gpu}"
        if busy:
            return f"the instance at slot {start} of GPU {gpu} is in use"
        self.layouts[gpu] = self.layouts[gpu].release(start)
        del self.profiles[(gpu, start)]
        return ""

    def set_mode(self, gpu: int, enabled: bool, busy: bool) -> str:
        """Turn MIG on or off on `gpu` (`SetMigMode`); returns "" or why it cannot be done: a job
        runs there, or (to turn it off) GPU instances exist, as NVML refuses it (in use)."""
        if not 0 <= gpu < len(self.models):
            return f"no GPU {gpu}"
        if busy:
            return f"GPU {gpu} is in use: a job runs on it"
        if self.modes[gpu] and self.layouts[gpu].instances:
            return f"GPU {gpu} still has GPU instances ({', '.join(map(str, self.layouts[gpu].instances))})"
        self.modes[gpu] = enabled
        return ""

    def mig_off(self) -> list[int]:
        """The GPUs with MIG off now."""
        return [i for i, on in enumerate(self.modes) if not on]

    def profile_at(self, gpu: int, start: int) -> Profile | None:
        """The instance a job launched at (gpu, start) runs on, or None if there is none."""
        if 0 <= gpu < len(self.modes) and not self.modes[gpu]:
            return self.whole[gpu] if start == 0 else None
        return self.profiles.get((gpu, start))
