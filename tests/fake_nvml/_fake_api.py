"""Plumbing of the fake `pynvml`: the call wrapper, ctypes argument helpers and the `fake_*` API.

`api` wraps every NVML call the fake implements: it takes the machine lock, refuses calls before
`nvmlInit` (NVML_ERROR_UNINITIALIZED, as the real library does), fires faults queued by
`fake_fail_next` and records every create/destroy/SetMigMode call in the log `fake_state` shows.
"""

from __future__ import annotations

import ctypes
import functools

import _fake_state as _st
from _fake_defs import (
    NVML_ERROR_INSUFFICIENT_SIZE,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_UNINITIALIZED,
    NVML_SUCCESS,
    NVMLError,
    c_nvmlComputeInstance_t,
    c_nvmlDevice_t,
    c_nvmlGpuInstance_t,
)

API: set[str] = set()
LOGGED = {"nvmlDeviceCreateGpuInstance", "nvmlDeviceCreateGpuInstanceWithPlacement", "nvmlGpuInstanceDestroy",
          "nvmlGpuInstanceCreateComputeInstance", "nvmlComputeInstanceDestroy", "nvmlDeviceSetMigMode"}


def api(fn):
    """Wrap an NVML call: lock, require nvmlInit, fire queued faults, log creates/destroys."""
    name = fn.__name__
    API.add(name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _st.LOCK:
            m = _st.M
            entry = None
            if name in LOGGED:
                entry = {"call": name, "args": [m.label(a) for a in args], "result": "ok"}
                m.log.append(entry)
            try:
                if m.refcount <= 0 and name not in ("nvmlInit", "nvmlInitWithFlags"):
                    raise NVMLError(NVML_ERROR_UNINITIALIZED)
                err = m.take_fault(name)
                if err is not None:
                    if entry is not None:
                        entry["injected"] = True
                    raise err() if isinstance(err, type) else NVMLError(err)
                result = fn(*args, **kwargs)
            except NVMLError as exc:
                if entry is not None:
                    entry["result"] = type(exc).__name__
                raise
            if entry is not None and isinstance(result, ctypes._Pointer):
                entry["created"] = m.label(result)
            return result

    return wrapper


# ---- ctypes argument helpers ---------------------------------------------------------------------
def target(ref):
    """What a ctypes argument refers to: byref(x) -> x, pointer(x) -> x, x -> x."""
    ref = getattr(ref, "_obj", ref)
    return ref.contents if isinstance(ref, ctypes._Pointer) and not isinstance(ref, HANDLE_TYPES) else ref


HANDLE_TYPES = (c_nvmlDevice_t, c_nvmlGpuInstance_t, c_nvmlComputeInstance_t)


def fill(arrayRef, countRef, items, count_is_capacity: bool) -> int:
    """Write `items` into the caller's array and their number into `countRef` (NVML's two-call idiom)."""
    count = target(countRef)
    if count is None or not hasattr(count, "value"):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    arr = getattr(arrayRef, "_obj", arrayRef)
    if arr is None:
        if not count_is_capacity:  # Get*Instances take no NULL array (mig-hardware.md §5)
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        count.value = len(items)
        return NVML_SUCCESS
    capacity = len(arr) if isinstance(arr, ctypes.Array) else None
    if count_is_capacity:
        capacity = count.value if capacity is None else min(capacity, count.value)
    if capacity is not None and capacity < len(items):
        count.value = len(items)
        raise NVMLError(NVML_ERROR_INSUFFICIENT_SIZE)
    for i, item in enumerate(items):
        if isinstance(item, tuple):
            arr[i].start, arr[i].size = item
        else:
            arr[i] = item
    count.value = len(items)
    return NVML_SUCCESS


def dev(addr):
    return _st.Machine.handle(addr, c_nvmlDevice_t)


def gi_handle(gi):
    return _st.Machine.handle(gi.addr, c_nvmlGpuInstance_t)


def ci_handle(ci):
    return _st.Machine.handle(ci.addr, c_nvmlComputeInstance_t)


def check_enum(value, count):
    if not isinstance(value, int) or not 0 <= value < count:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)


# ---- configuration for tests (not in the real pynvml) -------------------------------------------
def fake_reset(gpus=("A100-40GB",), mig=True, instances=None) -> None:
    """A fresh machine: `gpus` catalogue names; `mig` a bool or one per GPU; `instances` per GPU a
    list of (profile name, start) that exist already, each with its full-size compute instance.
    NVML starts uninitialised (call nvmlInit); faults, grace period and the call log are cleared."""
    with _st.LOCK:
        m = _st.Machine(list(gpus), mig)
        items = instances.items() if isinstance(instances, dict) else enumerate(instances or [])
        for i, insts in items:
            gpu = m.gpus[i]
            for name, start in insts:
                if not gpu.mig:
                    raise ValueError(f"GPU {i} has MIG off; it cannot hold {name}@{start}")
                profile = gpu.model.profile(name)
                gpu.layout.with_instance(profile, start)  # raises a PlacementError naming the broken rule
                gi = m.create_gi(gpu, profile, start)
                full = [e for e, (s, _) in gi.ci_offers().items() if s == profile.compute_slices]
                m.create_ci(gi, full[0])
        _st.M = m


def fake_fail_next(call_name: str, error_class, times: int = 1) -> None:
    """Make the next `times` calls of `call_name` raise `error_class` (an NVMLError subclass or a code)."""
    if call_name not in API:
        raise ValueError(f"unknown NVML call {call_name!r}; fakeable calls: {', '.join(sorted(API))}")
    if not (isinstance(error_class, int) or (isinstance(error_class, type) and issubclass(error_class, NVMLError))):
        raise TypeError(f"error_class must be an NVMLError subclass or an NVML_ERROR_* code, not {error_class!r}")
    if times < 1:
        raise ValueError(f"times must be at least 1, not {times}")
    with _st.LOCK:
        _st.M.faults.setdefault(call_name, []).append([error_class, times])


def fake_in_use_after_exit(seconds: float) -> None:
    """GIs and CIs keep reporting IN_USE for `seconds` after the fake notices their last process exit."""
    with _st.LOCK:
        _st.M.grace_s = float(seconds)


def fake_destroy_behind_back(gpu_index: int, start: int) -> None:
    """Remove the GPU instance at memory slot `start` (and its CIs) as if someone else did; its handles go stale."""
    with _st.LOCK:
        gpu = _st.M.gpus[gpu_index]
        gis = [g for g in gpu.gis.values() if g.start == start]
        if not gis:
            raise ValueError(f"no GPU instance starts at memory slot {start} on GPU {gpu_index}: {gpu.layout}")
        _st.M.log.append({"call": "fake_destroy_behind_back", "args": [_st.M.label(gi_handle(gis[0]))], "result": "ok"})
        _st.M.destroy_gi(gis[0], force=True)


def fake_state() -> dict:
    """A JSON-able view: per GPU the instances, MIG mode, SetMigMode calls; the create/destroy call log."""
    with _st.LOCK:
        return _st.M.state()


