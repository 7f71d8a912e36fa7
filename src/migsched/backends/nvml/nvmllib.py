"""A thin facade over `pynvml` for MIG: discovery, geometry, instances, processes, energy.

Everything migsched asks of NVML goes through `Nvml`, and `Nvml` goes through the `pynvml`
module only (any faithful stand-in on the import path can drive it, such as the fake in
tests/fake_nvml). Facts and call semantics: mig-hardware.md §5 (profile ids differ from the
profile enums; placements are in memory slots; destroy compute instances before their GPU
instance; "in use" is reported briefly after a process exits).

NVML's geometry wins over the catalogue: `Nvml.model(i)` starts from the catalogue entry the
NVML name resolves to and replaces each profile's id, memory, maximum count and legal starts by
what NVML reports, logging each difference once.
"""

from __future__ import annotations

import ctypes
from contextlib import suppress as _suppress
import dataclasses
import logging
import re
import time
from dataclasses import dataclass

from migsched.backends.nvml.errors import NvmlError, NvmlUnavailableError, wrap
from migsched.hardware.catalog import GpuModel, Profile, resolve_nvml_name

log = logging.getLogger(__name__)
_PROFILE_COUNT = 0x12   # NVML_GPU_INSTANCE_PROFILE_COUNT (mig-hardware.md §1.1)
_CI_PROFILE_COUNT = 0x9
_NAME_RE = re.compile(r"(\d+g\.\d+gb(?:\+me)?)", re.IGNORECASE)
_warned: set[tuple] = set()


def load_pynvml():
    """Import `pynvml` (the nvidia-ml-py package, or a stand-in first on the path) and init it."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        raise NvmlUnavailableError("the nvml backend needs nvidia-ml-py: pip install 'migsched[nvml]'") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailableError(f"NVML could not start ({exc}): is an NVIDIA driver installed and loaded?") from None
    return pynvml


@dataclass(frozen=True, slots=True)
class NvmlGpu:
    """A discovered GPU."""

    index: int
    uuid: str
    name: str
    mig_current: bool
    mig_pending: bool


@dataclass(frozen=True, slots=True)
class NvmlInstance:
    """A GPU instance: where it sits, its compute instances and the MIG device CUDA sees."""

    gpu: int
    gi_id: int
    profile: str
    start: int
    size: int
    ci_ids: tuple[int, ...]
    mig_uuid: str | None
    pids: tuple[int, ...]


def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


class Nvml:
    """See the module docstring. `nv` is the pynvml module (loaded and initialised if None)."""

    def __init__(self, nv=None) -> None:
        self.nv = nv or load_pynvml()
        self._models: dict[int, GpuModel] = {}
        self._ci_profile: dict[tuple[int, int], int] = {}

    def _h(self, gpu: int):
        return wrap(self.nv, "nvmlDeviceGetHandleByIndex", gpu, gpu)

    # ---- discovery --------------------------------------------------------------------------
    def gpus(self) -> list[NvmlGpu]:
        out = []
        for i in range(wrap(self.nv, "nvmlDeviceGetCount", None)):
            h = self._h(i)
            try:
                cur, pend = wrap(self.nv, "nvmlDeviceGetMigMode", i, h)
            except NvmlError as exc:
                if exc.code != 3:
                    raise
                cur = pend = 0  # not MIG-capable
            out.append(NvmlGpu(i, _text(wrap(self.nv, "nvmlDeviceGetUUID", i, h)),
                               _text(wrap(self.nv, "nvmlDeviceGetName", i, h)), bool(cur), bool(pend)))
        return out

    def model(self, gpu: int) -> GpuModel:
        """The GPU's model with NVML's geometry (profiles, ids, memory, maxima, placements)."""
        if gpu in self._models:
            return self._models[gpu]
        nv, h = self.nv, self._h(gpu)
        name = _text(wrap(nv, "nvmlDeviceGetName", gpu, h))
        mem_mib = int(wrap(nv, "nvmlDeviceGetMemoryInfo", gpu, h).total // (1024 * 1024))
        base = resolve_nvml_name(name, mem_mib)
        if base is None:
            raise NvmlError("nvmlDeviceGetName", gpu, 3, f"{name!r} ({mem_mib} MiB) is not in migsched's catalogue")
        by_enum = {p.nvml_enum: p for p in base.profiles}
        profiles = []
        for enum in range(_PROFILE_COUNT):
            try:
                info = nv.nvmlDeviceGetGpuInstanceProfileInfo(h, enum)
            except nv.NVMLError:
                continue  # NOT_SUPPORTED / INVALID_ARGUMENT: the idiom of mig-parted
            starts = self._placements(gpu, h, int(info.id))
            cat = by_enum.get(enum)
            got = dict(profile_id=int(info.id), memory_mib=int(info.memorySizeMB), max_count=int(info.instanceCount),
                       starts=tuple(s for s, _ in starts))
            if cat is None:
                m = _NAME_RE.search(_text(getattr(info, "name", "")))
                size = starts[0][1] if starts else 1
                cat = Profile(m.group(1).lower() if m else f"profile-{info.id}", enum, int(info.id),
                              int(info.sliceCount), size, got["memory_mib"], int(info.multiprocessorCount),
                              got["max_count"], "+me" in (m.group(1) if m else ""), got["starts"], "NVML", "NVML")
                self._note(gpu, cat.name, "not in the catalogue; using NVML's figures")
            else:
                for k, v in got.items():
                    if getattr(cat, k) != v:
                        self._note(gpu, cat.name, f"{k}: catalogue {getattr(cat, k)}, NVML {v}")
                cat = dataclasses.replace(cat, **got)
            profiles.append(cat)
        if not profiles and base.profiles:  # NVML may describe no profile while MIG is off
            log.warning("GPU %d: NVML described no MIG profile (MIG off?); using the catalogue's", gpu)
            profiles = list(base.profiles)
        model = dataclasses.replace(base, profiles=tuple(sorted(profiles, key=lambda p: (p.memory_mib, p.compute_slices))))
        self._models[gpu] = model
        return model

    def _note(self, gpu: int, profile: str, what: str) -> None:
        key = (gpu, profile, what)
        if key not in _warned:
            _warned.add(key)
            log.warning("GPU %d profile %s: %s (NVML wins)", gpu, profile, what)

    def _placements(self, gpu: int, h, profile_id: int) -> list[tuple[int, int]]:
        nv = self.nv
        count = ctypes.c_uint(0)
        wrap(nv, "nvmlDeviceGetGpuInstancePossiblePlacements", gpu, h, profile_id, None, ctypes.byref(count))
        arr = (nv.c_nvmlGpuInstancePlacement_t * max(count.value, 1))()
        wrap(nv, "nvmlDeviceGetGpuInstancePossiblePlacements", gpu, h, profile_id, arr, ctypes.byref(count))
        return [(int(arr[i].start), int(arr[i].size)) for i in range(count.value)]

    # ---- instances --------------------------------------------------------------------------
    def _gpu_instances(self, gpu: int):
        nv, h = self.nv, self._h(gpu)
        for prof in self.model(gpu).profiles:
            n = max(prof.max_count, 1)
            arr = (nv.c_nvmlGpuInstance_t * n)()
            count = ctypes.c_uint(0)
            wrap(nv, "nvmlDeviceGetGpuInstances", gpu, h, prof.profile_id, arr, ctypes.byref(count))
            for i in range(count.value):
                yield prof, arr[i]

    def _mig_devices(self, gpu: int, pids: bool = True) -> dict[tuple[int, int], tuple[str, tuple[int, ...]]]:
        """(GI id, CI id) -> (MIG UUID, pids running on it; () unless `pids`)."""
        nv, h = self.nv, self._h(gpu)
        out = {}
        for i in range(wrap(nv, "nvmlDeviceGetMaxMigDeviceCount", gpu, h)):
            try:
                mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, i)
            except nv.NVMLError:
                continue  # an empty index
            key = (int(wrap(nv, "nvmlDeviceGetGpuInstanceId", gpu, mh)), int(wrap(nv, "nvmlDeviceGetComputeInstanceId", gpu, mh)))
            running = (tuple(int(p.pid) for p in wrap(nv, "nvmlDeviceGetComputeRunningProcesses", gpu, mh))
                       if pids else ())
            out[key] = (_text(wrap(nv, "nvmlDeviceGetUUID", gpu, mh)), running)
        return out

    def instances(self, gpu: int, pids: bool = True) -> list[NvmlInstance]:
        """Every GPU instance of the GPU, with its compute instances, MIG UUID and (if `pids`) processes."""
        devs = self._mig_devices(gpu, pids)
        out = []
        for prof, gi in self._gpu_instances(gpu):
            info = wrap(self.nv, "nvmlGpuInstanceGetInfo", gpu, gi)
            gi_id = int(info.id)
            cis = sorted(ci for g, ci in devs if g == gi_id)
            uuid = devs[(gi_id, cis[0])][0] if cis else None
            pids = tuple(p for ci in cis for p in devs[(gi_id, ci)][1])
            out.append(NvmlInstance(gpu, gi_id, prof.name, int(info.placement.start), int(info.placement.size),
                                    tuple(cis), uuid, pids))
        return sorted(out, key=lambda i: i.start)

    def _find(self, gpu: int, start: int):
        for prof, gi in self._gpu_instances(gpu):
            if int(wrap(self.nv, "nvmlGpuInstanceGetInfo", gpu, gi).placement.start) == start:
                return prof, gi
        raise NvmlError("nvmlDeviceGetGpuInstances", gpu, 6, f"no GPU instance at memory slot {start}")

    def _full_ci_profile(self, gpu: int, gi, slices: int) -> int:
        key = (gpu, slices)
        if key not in self._ci_profile:
            nv = self.nv
            for enum in range(_CI_PROFILE_COUNT):
                try:
                    info = nv.nvmlGpuInstanceGetComputeInstanceProfileInfo(
                        gi, enum, nv.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
                except nv.NVMLError:
                    continue
                if int(info.sliceCount) == slices:
                    self._ci_profile[key] = int(info.id)
                    break
            else:
                raise NvmlError("nvmlGpuInstanceGetComputeInstanceProfileInfo", gpu, 3,
                                f"no compute-instance profile of {slices} slices")
        return self._ci_profile[key]

    def create(self, gpu: int, profile: Profile, start: int) -> NvmlInstance:
        """Create a GPU instance of `profile` at memory slot `start` (explicit placement) and its
        full-size compute instance; returns it with its MIG UUID."""
        nv, h = self.nv, self._h(gpu)
        placement = nv.c_nvmlGpuInstancePlacement_t(start, profile.memory_slices)
        gi = wrap(nv, "nvmlDeviceCreateGpuInstanceWithPlacement", gpu, h, profile.profile_id, ctypes.byref(placement))
        try:
            ci = wrap(nv, "nvmlGpuInstanceCreateComputeInstance", gpu, gi,
                      self._full_ci_profile(gpu, gi, profile.compute_slices))
        except NvmlError:
            wrap(nv, "nvmlGpuInstanceDestroy", gpu, gi)
            raise
        try:  # the MIG device CUDA sees (no process listing: a flaky one must not undo a good create)
            for inst in self.instances(gpu, pids=False):
                if inst.start == start:
                    return inst
            raise NvmlError("nvmlDeviceGetMigDeviceHandleByIndex", gpu, 6, f"the new instance at {start} is not listed")
        except NvmlError:
            with _suppress(NvmlError):
                wrap(nv, "nvmlComputeInstanceDestroy", gpu, ci)
                wrap(nv, "nvmlGpuInstanceDestroy", gpu, gi)
            raise

    def destroy(self, gpu: int, start: int) -> None:
        """Destroy the instance at `start`: its compute instances first, then the GPU instance.
        Raises NvmlError (`in_use` True while a process or a just-ended job still holds it)."""
        nv = self.nv
        prof, gi = self._find(gpu, start)
        for enum in range(_CI_PROFILE_COUNT):
            try:
                info = nv.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, enum, nv.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
            except nv.NVMLError:
                continue
            arr = (nv.c_nvmlComputeInstance_t * max(int(info.instanceCount), 1))()
            count = ctypes.c_uint(0)
            wrap(nv, "nvmlGpuInstanceGetComputeInstances", gpu, gi, int(info.id), arr, ctypes.byref(count))
            for i in range(count.value):
                wrap(nv, "nvmlComputeInstanceDestroy", gpu, arr[i])
        wrap(nv, "nvmlGpuInstanceDestroy", gpu, gi)

    def destroy_with_retry(self, gpu: int, start: int, *, attempts: int = 6, first_wait_s: float = 0.1) -> None:
        """`destroy`, retrying "in use" with doubling waits (0.1 s ... 3.2 s); then raises."""
        wait = first_wait_s
        for k in range(attempts):
            try:
                return self.destroy(gpu, start)
            except NvmlError as exc:
                if not exc.in_use or k == attempts - 1:
                    raise
            time.sleep(wait)
            wait *= 2

    # ---- measurements -----------------------------------------------------------------------
    def processes(self, mig_uuid: str) -> dict[int, int]:
        """pid -> GPU memory bytes of the processes on the MIG device `mig_uuid`."""
        nv = self.nv
        mh = wrap(nv, "nvmlDeviceGetHandleByUUID", None, mig_uuid)
        return {int(p.pid): int(p.usedGpuMemory or 0) for p in wrap(nv, "nvmlDeviceGetComputeRunningProcesses", None, mh)}

    def energy_mj(self, gpu: int) -> int | None:
        """The GPU's energy counter in mJ since the driver loaded, or None where it is missing."""
        try:
            return int(self.nv.nvmlDeviceGetTotalEnergyConsumption(self._h(gpu)))
        except self.nv.NVMLError:
            return None

    def power_mw(self, gpu: int) -> int | None:
        try:
            return int(self.nv.nvmlDeviceGetPowerUsage(self._h(gpu)))
        except self.nv.NVMLError:
            return None

    def set_mig_mode(self, gpu: int, enabled: bool) -> int:
        """Change MIG mode (only on the user's explicit request; the GPU may reset)."""
        nv = self.nv
        mode = nv.NVML_DEVICE_MIG_ENABLE if enabled else nv.NVML_DEVICE_MIG_DISABLE
        return int(wrap(nv, "nvmlDeviceSetMigMode", gpu, self._h(gpu), mode))
