"""MIG calls of the fake `pynvml`: MIG mode, GPU-instance profiles and placements, GPU and compute
instances, MIG device handles. Signatures and return shapes are those of nvidia-ml-py 13.615.71;
the rules are enforced by `_fake_state.Machine` (through migsched's `Layout`).
"""

from __future__ import annotations

import ctypes

import _fake_state as _st
from _fake_api import api, check_enum, ci_handle, dev, fill, gi_handle, target
from _fake_defs import (
    NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
    NVML_COMPUTE_INSTANCE_PROFILE_COUNT,
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_IN_USE,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_GPU_INSTANCE_PROFILE_COUNT,
    NVML_SUCCESS,
    NVMLError,
    c_nvmlComputeInstanceInfo_t,
    c_nvmlComputeInstancePlacement_t,
    c_nvmlComputeInstanceProfileInfo_t,
    c_nvmlComputeInstanceProfileInfo_v2_t,
    c_nvmlGpuInstanceInfo_t,
    c_nvmlGpuInstancePlacement_t,
    c_nvmlGpuInstanceProfileInfo_t,
    c_nvmlGpuInstanceProfileInfo_v2_t,
)


# ---- MIG mode ----------------------------------------------------------------------------------
@api
def nvmlDeviceGetMigMode(device):
    gpu = _st.M.gpu_of(device)
    return [gpu.mig, gpu.mig]


@api
def nvmlDeviceSetMigMode(device, mode):
    gpu = _st.M.gpu_of(device)
    gpu.set_mig_mode_calls.append(int(mode))
    if mode not in (0, 1):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    if gpu.gis:
        raise NVMLError(NVML_ERROR_IN_USE)
    gpu.mig = int(mode)
    return NVML_SUCCESS  # activationStatus


@api
def nvmlDeviceIsMigDeviceHandle(device):
    return ctypes.c_uint(int(_st.M.lookup(device, "gpu", "mig")[0] == "mig"))  # a c_uint, as in pynvml


# ---- GPU-instance profiles and placements -------------------------------------------------------
def _gi_info(profile, version):
    if version not in (1, 2):
        raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
    info = c_nvmlGpuInstanceProfileInfo_v2_t() if version == 2 else c_nvmlGpuInstanceProfileInfo_t()
    info.id, info.isP2pSupported, info.sliceCount = profile.profile_id, 0, profile.compute_slices
    info.instanceCount, info.multiprocessorCount = profile.max_count, profile.sm_count
    # The catalogue has no engine counts: these are plausible stand-ins (one CE/DEC per slice).
    info.copyEngineCount = info.decoderCount = profile.compute_slices
    info.jpegCount = info.ofaCount = int(profile.media or profile.compute_slices == 7)
    info.encoderCount, info.memorySizeMB = 0, profile.memory_mib
    if version == 2:
        info.name = f"MIG {profile.name}"
    return info


@api
def nvmlDeviceGetGpuInstanceProfileInfo(device, profile, version=2):
    gpu = _st.M.gpu_of(device)
    check_enum(profile, NVML_GPU_INSTANCE_PROFILE_COUNT)
    for p in gpu.model.profiles:
        if p.nvml_enum == profile:
            return _gi_info(p, version)
    raise NVMLError(NVML_ERROR_NOT_SUPPORTED)


@api
def nvmlDeviceGetGpuInstanceProfileInfoById(device, profileId):
    gpu = _st.M.gpu_of(device)
    return _gi_info(_st.M.profile_by_id(gpu, profileId, NVML_ERROR_NOT_SUPPORTED), 2)


nvmlDeviceGetGpuInstanceProfileInfoV = nvmlDeviceGetGpuInstanceProfileInfo
nvmlDeviceGetGpuInstanceProfileInfoByIdV = nvmlDeviceGetGpuInstanceProfileInfoById


@api
def nvmlDeviceGetGpuInstanceRemainingCapacity(device, profileId):
    gpu = _st.M.gpu_of(device)
    profile = _st.M.profile_by_id(gpu, profileId)
    _st.M.require_mig(gpu)
    return _st.M.remaining(gpu, profile)


@api
def nvmlDeviceGetGpuInstancePossiblePlacements(device, profileId, placementsRef, countRef):
    # Every legal placement, occupied or not (mig-hardware.md §2.1). Real pynvml has only this
    # ctypes form (it calls ..._v2); there is no list-returning variant to imitate.
    gpu = _st.M.gpu_of(device)
    p = _st.M.profile_by_id(gpu, profileId)
    return fill(placementsRef, countRef, [(s, p.memory_slices) for s in p.starts], count_is_capacity=True)


# ---- GPU instances -----------------------------------------------------------------------------
@api
def nvmlDeviceCreateGpuInstance(device, profileId):
    gpu = _st.M.gpu_of(device)
    return gi_handle(_st.M.create_gi(gpu, _st.M.profile_by_id(gpu, profileId), None))


@api
def nvmlDeviceCreateGpuInstanceWithPlacement(device, profileId, placement):
    gpu = _st.M.gpu_of(device)
    profile = _st.M.profile_by_id(gpu, profileId)
    p = target(placement)
    if not (hasattr(p, "start") and hasattr(p, "size")):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return gi_handle(_st.M.create_gi(gpu, profile, int(p.start), int(p.size)))


@api
def nvmlGpuInstanceDestroy(gpuInstance):
    _st.M.destroy_gi(_st.M.lookup(gpuInstance, "gi")[1])
    return NVML_SUCCESS


@api
def nvmlDeviceGetGpuInstances(device, profileId, gpuInstancesRef, countRef):
    gpu = _st.M.gpu_of(device)
    _st.M.profile_by_id(gpu, profileId)
    _st.M.require_mig(gpu)
    gis = sorted((g for g in gpu.gis.values() if g.profile.profile_id == profileId), key=lambda g: g.id)
    return fill(gpuInstancesRef, countRef, [gi_handle(g) for g in gis], count_is_capacity=False)


@api
def nvmlDeviceGetGpuInstanceById(device, gpuInstanceId):
    gpu = _st.M.gpu_of(device)
    _st.M.require_mig(gpu)
    if gpuInstanceId not in gpu.gis:
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return gi_handle(gpu.gis[gpuInstanceId])


@api
def nvmlGpuInstanceGetInfo(gpuInstance):
    gi = _st.M.lookup(gpuInstance, "gi")[1]
    info = c_nvmlGpuInstanceInfo_t()
    info.device, info.id, info.profileId = dev(gi.gpu.addr), gi.id, gi.profile.profile_id
    info.placement = c_nvmlGpuInstancePlacement_t(gi.start, gi.profile.memory_slices)
    return info


# ---- compute instances -------------------------------------------------------------------------
@api
def nvmlGpuInstanceGetComputeInstanceProfileInfo(device, profile, engProfile, version=2):
    gi = _st.M.lookup(device, "gi")[1]
    check_enum(profile, NVML_COMPUTE_INSTANCE_PROFILE_COUNT)
    if engProfile != NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    if version not in (1, 2):
        raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
    offers = gi.ci_offers()
    if profile not in offers:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    slices, count = offers[profile]
    gslices = gi.profile.compute_slices
    info = c_nvmlComputeInstanceProfileInfo_v2_t() if version == 2 else c_nvmlComputeInstanceProfileInfo_t()
    info.id, info.sliceCount, info.instanceCount = profile, slices, count
    info.multiprocessorCount = gi.profile.sm_count * slices // gslices
    info.sharedCopyEngineCount = info.sharedDecoderCount = gslices
    if version == 2:
        info.name = f"MIG {gi.profile.name}" if slices == gslices else f"MIG {slices}c.{gi.profile.name}"
    return info


nvmlGpuInstanceGetComputeInstanceProfileInfoV = nvmlGpuInstanceGetComputeInstanceProfileInfo


@api
def nvmlGpuInstanceGetComputeInstanceRemainingCapacity(gpuInstance, profileId):
    return _st.M.ci_capacity(_st.M.lookup(gpuInstance, "gi")[1], profileId)


@api
def nvmlGpuInstanceCreateComputeInstance(gpuInstance, profileId):
    return ci_handle(_st.M.create_ci(_st.M.lookup(gpuInstance, "gi")[1], profileId))


@api
def nvmlComputeInstanceDestroy(computeInstance):
    _st.M.destroy_ci(_st.M.lookup(computeInstance, "ci")[1])
    return NVML_SUCCESS


@api
def nvmlGpuInstanceGetComputeInstances(gpuInstance, profileId, computeInstancesRef, countRef):
    gi = _st.M.lookup(gpuInstance, "gi")[1]
    if profileId not in gi.ci_offers():
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    cis = sorted((c for c in gi.cis.values() if c.profile_id == profileId), key=lambda c: c.id)
    return fill(computeInstancesRef, countRef, [ci_handle(c) for c in cis], count_is_capacity=False)


@api
def nvmlGpuInstanceGetComputeInstanceById(gpuInstance, computeInstanceId):
    gi = _st.M.lookup(gpuInstance, "gi")[1]
    if computeInstanceId not in gi.cis:
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return ci_handle(gi.cis[computeInstanceId])


@api
def nvmlComputeInstanceGetInfo_v2(computeInstance):
    ci = _st.M.lookup(computeInstance, "ci")[1]
    info = c_nvmlComputeInstanceInfo_t()
    info.device, info.gpuInstance = dev(ci.gi.gpu.addr), gi_handle(ci.gi)
    info.id, info.profileId = ci.id, ci.profile_id
    info.placement = c_nvmlComputeInstancePlacement_t(ci.start, ci.slices)
    return info


nvmlComputeInstanceGetInfo = nvmlComputeInstanceGetInfo_v2


# ---- MIG devices -------------------------------------------------------------------------------
@api
def nvmlDeviceGetMaxMigDeviceCount(device):
    gpu = _st.M.gpu_of(device)
    return gpu.model.max_instances if gpu.mig else 0


@api
def nvmlDeviceGetMigDeviceHandleByIndex(device, index):
    gpu = _st.M.gpu_of(device)
    if not gpu.mig or not isinstance(index, int) or not 0 <= index < gpu.model.max_instances:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    for ci in gpu.mig_devices():
        if ci.mig_index == index:
            return dev(ci.mig_addr)
    raise NVMLError(NVML_ERROR_NOT_FOUND)


@api
def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(migDevice):
    return dev(_st.M.lookup(migDevice, "mig")[1].gi.gpu.addr)


@api
def nvmlDeviceGetGpuInstanceId(device):
    return _st.M.lookup(device, "mig")[1].gi.id


@api
def nvmlDeviceGetComputeInstanceId(device):
    return _st.M.lookup(device, "mig")[1].id


__all__ = [name for name in dir() if name.startswith("nvml")]
