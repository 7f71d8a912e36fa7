"""A fake `pynvml` (nvidia-ml-py 13.615.71) for tests: MIG GPUs that keep the real MIG rules.

Put `tests/fake_nvml` first on `sys.path` (or PYTHONPATH) and `import pynvml` gets this module.
The calls it implements take the same arguments and return the same shapes as the real ones
(ctypes handles and structs, `[current, pending]` lists, `NVMLError_*` exceptions with `.value`);
see README.md next to this file for the list, the `fake_*` configuration API and what is left out.
The machine itself (instances, processes, energy, faults) lives in `_fake_state`.
"""

from __future__ import annotations

import os

import _fake_state as _st
from _fake_api import api, dev
from _fake_api import fake_destroy_behind_back, fake_fail_next, fake_in_use_after_exit, fake_reset, fake_state  # noqa: F401
from _fake_defs import *  # noqa: F403 - the real module's constants, errors and structs
from _fake_defs import (
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_COMPUTE_INSTANCE_ID_ANY,
    NVML_GPU_INSTANCE_ID_ANY,
    NVMLError,
    c_nvmlMemory_t,
    c_nvmlMemory_v2_t,
    c_nvmlProcessInfo_v3_t,
    nvmlPciInfo_t,
    nvmlStructToFriendlyObject,
)
from _fake_mig import *  # noqa: F403 - MIG mode, GPU/compute instances, MIG device handles

DRIVER_VERSION = "550.90.07"


# ---- library and system ------------------------------------------------------------------------
@api
def nvmlInitWithFlags(flags):
    _st.M.refcount += 1


@api
def nvmlInit():
    _st.M.refcount += 1


@api
def nvmlShutdown():
    _st.M.refcount -= 1


@api
def nvmlSystemGetDriverVersion():
    return DRIVER_VERSION


# ---- devices -----------------------------------------------------------------------------------
@api
def nvmlDeviceGetCount():
    return len(_st.M.gpus)


@api
def nvmlDeviceGetHandleByIndex(index):
    if not isinstance(index, int) or not 0 <= index < len(_st.M.gpus):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return dev(_st.M.gpus[index].addr)


@api
def nvmlDeviceGetHandleByUUID(uuid):
    text = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
    for gpu in _st.M.gpus:
        if gpu.uuid == text:
            return dev(gpu.addr)
        for ci in gpu.mig_devices():
            if ci.uuid == text:
                return dev(ci.mig_addr)
    raise NVMLError(NVML_ERROR_NOT_FOUND)


@api
def nvmlDeviceGetName(handle):
    kind, obj = _st.M.lookup(handle, "gpu", "mig")
    return obj.name if kind == "gpu" else f"{obj.gi.gpu.name} MIG {obj.name}"


@api
def nvmlDeviceGetUUID(handle):
    return _st.M.lookup(handle, "gpu", "mig")[1].uuid


@api
def nvmlDeviceGetIndex(handle):
    return _st.M.gpu_of(handle).index


@api
def nvmlDeviceGetPciInfo_v3(handle):
    kind, obj = _st.M.lookup(handle, "gpu", "mig")
    gpu = obj if kind == "gpu" else obj.gi.gpu
    bus = 0x07 + 0x10 * gpu.index
    info = nvmlPciInfo_t()
    info.domain, info.bus, info.device = 0, bus, 0
    info.pciDeviceId = (int(gpu.model.pci_device_ids[0], 16) << 16) | 0x10DE
    info.pciSubSystemId = 0x147F10DE
    info.busId = f"00000000:{bus:02X}:00.0"
    info.busIdLegacy = f"0000:{bus:02X}:00.0"
    return info


nvmlDeviceGetPciInfo = nvmlDeviceGetPciInfo_v3


def _processes(kind, obj, whole_gi=False):
    """[(pid, rss, gi id, ci id)] on a MIG device (or on all CIs of its GI when `whole_gi`), or on a
    GPU: all its MIG devices, or with MIG off the processes pinned to the GPU's own UUID."""
    by_uuid = _st.M.scan()
    if kind == "mig":
        cis = list(obj.gi.cis.values()) if whole_gi else [obj]
    elif obj.mig:
        cis = obj.mig_devices()
    else:
        return [(pid, rss, NVML_GPU_INSTANCE_ID_ANY, NVML_COMPUTE_INSTANCE_ID_ANY)
                for pid, rss in by_uuid.get(obj.uuid, ())]
    return [(pid, rss, ci.gi.id, ci.id) for ci in cis for pid, rss in by_uuid.get(ci.uuid, ())]


@api
def nvmlDeviceGetMemoryInfo(handle, version=None):
    # A MIG handle reports its GPU instance's memory (shared by the GI's compute instances); the
    # processes' RSS stands in for the GPU memory they use.
    kind, obj = _st.M.lookup(handle, "gpu", "mig")
    total = (obj.gi.profile.memory_mib if kind == "mig" else obj.model.memory_mib) * _st.MIB
    used = min(total, sum(p[1] for p in _processes(kind, obj, whole_gi=True)))
    mem = c_nvmlMemory_v2_t() if version else c_nvmlMemory_t()
    if version:
        mem.version, mem.reserved = version, 0
    mem.total, mem.used, mem.free = total, used, total - used
    return mem


@api
def nvmlDeviceGetComputeRunningProcesses_v3(handle):
    kind, obj = _st.M.lookup(handle, "gpu", "mig")
    out = []
    for pid, rss, gi_id, ci_id in _processes(kind, obj):
        info = c_nvmlProcessInfo_v3_t()
        info.pid, info.usedGpuMemory, info.gpuInstanceId, info.computeInstanceId = pid, rss, gi_id, ci_id
        out.append(nvmlStructToFriendlyObject(info))
    return out


nvmlDeviceGetComputeRunningProcesses = nvmlDeviceGetComputeRunningProcesses_v3
nvmlDeviceGetComputeRunningProcesses_v2 = nvmlDeviceGetComputeRunningProcesses_v3


def _parent_only(handle):
    # NVML documents power and energy for "this GPU" only, none per instance (mig-hardware.md §7):
    # a MIG handle is refused, so callers must read the parent GPU.
    kind, obj = _st.M.lookup(handle, "gpu", "mig")
    if kind == "mig":
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return _st.M.energy(obj)


@api
def nvmlDeviceGetPowerUsage(handle):
    return int(round(_parent_only(handle)[1] * 1000))


@api
def nvmlDeviceGetTotalEnergyConsumption(handle):
    return int(_parent_only(handle)[0])


fake_reset([g for g in os.environ.get("FAKE_NVML_GPUS", "").split(",") if g.strip()] or ["A100-40GB"])
