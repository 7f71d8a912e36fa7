"""The fake `pynvml` in tests/fake_nvml behaves like nvidia-ml-py on a MIG GPU (mig-hardware.md §1-5)."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

FAKE_DIR = Path(__file__).parent / "fake_nvml"
_FAKE_MODULES = ("pynvml", "_fake_defs", "_fake_state", "_fake_api", "_fake_mig")

# mig-hardware.md §2.1 / §2.2: profile id -> (legal starts, size in memory slices).
PLACEMENTS_8_SLOT = {19: (range(7), 1), 20: (range(7), 1), 15: ((0, 2, 4, 6), 2), 14: ((0, 2, 4), 2),
                     9: ((0, 4), 4), 5: ((0,), 4), 0: ((0,), 8)}
PLACEMENTS_A30 = {14: (range(4), 1), 21: (range(4), 1), 5: ((0, 2), 2), 6: ((0, 2), 2), 0: ((0,), 4)}


@pytest.fixture
def nv(monkeypatch):
    """The fake imported fresh as `pynvml`, one A100-40GB in MIG mode, initialised; removed afterwards."""
    saved = {k: sys.modules.pop(k) for k in _FAKE_MODULES if k in sys.modules}
    monkeypatch.syspath_prepend(str(FAKE_DIR))
    mod = importlib.import_module("pynvml")
    assert Path(mod.__file__).parent == FAKE_DIR
    mod.fake_reset()
    mod.nvmlInit()
    yield mod
    for k in _FAKE_MODULES:
        sys.modules.pop(k, None)
    sys.modules.update(saved)


def _placement(nv, start, size):
    return ctypes.byref(nv.c_nvmlGpuInstancePlacement_t(start, size))


def _create(nv, h, profile_id, start, size):
    gi = nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, profile_id, _placement(nv, start, size))
    ci = nv.nvmlGpuInstanceCreateComputeInstance(gi, _full_ci(nv, gi))
    return gi, ci


def _full_ci(nv, gi):
    """The id of the compute-instance profile that spans the whole GPU instance."""
    gi_info = nv.nvmlGpuInstanceGetInfo(gi)
    slices = nv.nvmlDeviceGetGpuInstanceProfileInfoById(gi_info.device, gi_info.profileId).sliceCount
    for enum in range(nv.NVML_COMPUTE_INSTANCE_PROFILE_COUNT):
        try:
            info = nv.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, enum, nv.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
        except nv.NVMLError:
            continue
        if info.sliceCount == slices:
            return info.id
    raise AssertionError("no full-size CI profile")


def _mig_uuid(nv, ci):
    info = nv.nvmlComputeInstanceGetInfo(ci)
    gi_id = nv.nvmlGpuInstanceGetInfo(info.gpuInstance).id
    h = info.device
    for i in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):
        try:
            m = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, i)
        except nv.NVMLError_NotFound:
            continue
        if (nv.nvmlDeviceGetGpuInstanceId(m), nv.nvmlDeviceGetComputeInstanceId(m)) == (gi_id, info.id):
            return nv.nvmlDeviceGetUUID(m)
    raise AssertionError("MIG device not found")


@contextlib.contextmanager
def _pinned_process(uuid):
    """A real child process with CUDA_VISIBLE_DEVICES=uuid, alive inside the block."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": uuid}, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_errors_are_pynvml_subclasses_with_codes(nv):
    codes = {"InUse": 19, "InsufficientResources": 23, "NotFound": 6, "NotSupported": 3, "InvalidArgument": 2,
             "NoPermission": 4, "Uninitialized": 1, "Unknown": 999, "ResetRequired": 16}
    for name, code in codes.items():
        cls = getattr(nv, f"NVMLError_{name}")
        assert issubclass(cls, nv.NVMLError) and cls().value == code == getattr(nv, f"NVML_ERROR_{_upper(name)}")
        assert type(nv.NVMLError(code)) is cls
    nv.nvmlShutdown()
    with pytest.raises(nv.NVMLError_Uninitialized):
        nv.nvmlDeviceGetCount()


def _upper(camel):
    return "".join("_" + c if c.isupper() else c for c in camel).lstrip("_").upper()


def test_profile_id_differs_from_enum(nv):
    h = nv.nvmlDeviceGetHandleByIndex(0)
    info = nv.nvmlDeviceGetGpuInstanceProfileInfo(h, nv.NVML_GPU_INSTANCE_PROFILE_1_SLICE)
    assert (info.id, info.sliceCount, info.instanceCount, info.memorySizeMB, info.name) == (19, 1, 7, 4864, "MIG 1g.5gb")
    assert nv.nvmlDeviceGetGpuInstanceProfileInfo(h, nv.NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2).id == 15
    assert nv.nvmlDeviceGetGpuInstanceProfileInfoById(h, 19).sliceCount == 1
    with pytest.raises(nv.NVMLError_NotSupported):
        nv.nvmlDeviceGetGpuInstanceProfileInfo(h, nv.NVML_GPU_INSTANCE_PROFILE_8_SLICE)
    with pytest.raises(nv.NVMLError_InvalidArgument):
        nv.nvmlDeviceGetGpuInstanceProfileInfo(h, nv.NVML_GPU_INSTANCE_PROFILE_COUNT)
    found = set()
    for enum in range(nv.NVML_GPU_INSTANCE_PROFILE_COUNT):  # mig-parted's enumeration idiom
        with contextlib.suppress(nv.NVMLError_NotSupported):
            found.add(nv.nvmlDeviceGetGpuInstanceProfileInfo(h, enum).id)
    assert found == set(PLACEMENTS_8_SLOT)


@pytest.mark.parametrize("model, table", [("A100-40GB", PLACEMENTS_8_SLOT), ("H100-80GB", PLACEMENTS_8_SLOT),
                                          ("A30-24GB", PLACEMENTS_A30)])
def test_possible_placements_match_mig_hardware_tables(nv, model, table):
    nv.fake_reset([model], instances=[[]])
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    for profile_id, (starts, size) in table.items():
        count = ctypes.c_uint(0)
        nv.nvmlDeviceGetGpuInstancePossiblePlacements(h, profile_id, None, ctypes.byref(count))
        arr = (nv.c_nvmlGpuInstancePlacement_t * count.value)()
        assert nv.nvmlDeviceGetGpuInstancePossiblePlacements(h, profile_id, arr, ctypes.byref(count)) == nv.NVML_SUCCESS
        assert [(p.start, p.size) for p in arr] == [(s, size) for s in starts], profile_id
    small, count = (nv.c_nvmlGpuInstancePlacement_t * 1)(), ctypes.c_uint(1)
    with pytest.raises(nv.NVMLError_InsufficientSize):
        nv.nvmlDeviceGetGpuInstancePossiblePlacements(h, 19 if model != "A30-24GB" else 14, small, ctypes.byref(count))


def test_overlapping_or_illegal_placement_is_refused(nv):
    h = nv.nvmlDeviceGetHandleByIndex(0)
    gi = nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 9, _placement(nv, 0, 4))  # 3g.20gb at 0
    assert nv.nvmlGpuInstanceGetInfo(gi).placement.start == 0
    with pytest.raises(nv.NVMLError_InsufficientResources):
        nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 5, _placement(nv, 0, 4))  # 4g over the 3g
    with pytest.raises(nv.NVMLError_InsufficientResources):
        nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 14, nv.c_nvmlGpuInstancePlacement_t(2, 2))  # by value too
    with pytest.raises(nv.NVMLError_InvalidArgument):
        nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 14, _placement(nv, 5, 2))  # 2g never starts at 5
    with pytest.raises(nv.NVMLError_InvalidArgument):
        nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 19, _placement(nv, 7, 1))
    gi2 = nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 14, ctypes.pointer(nv.c_nvmlGpuInstancePlacement_t(4, 2)))
    assert nv.nvmlGpuInstanceGetInfo(gi2).placement.start == 4
    assert [(i["profile"], i["start"]) for i in nv.fake_state()["gpus"][0]["instances"]] == [("3g.20gb", 0), ("2g.10gb", 4)]


def test_driver_placement_is_first_fit(nv):
    h = nv.nvmlDeviceGetHandleByIndex(0)
    gi = nv.nvmlDeviceCreateGpuInstance(h, 9)  # 3g lands at 0 ...
    assert nv.nvmlGpuInstanceGetInfo(gi).placement.start == 0
    with pytest.raises(nv.NVMLError_InsufficientResources):
        nv.nvmlDeviceCreateGpuInstance(h, 5)  # ... so a 4g no longer fits (mig-hardware.md §2.3)


def test_per_profile_maxima_and_remaining_capacity(nv):
    h = nv.nvmlDeviceGetHandleByIndex(0)
    assert nv.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 19) == 7
    nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 20, _placement(nv, 0, 1))  # 1g.5gb+me: at most one
    with pytest.raises(nv.NVMLError_InsufficientResources):
        nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 20, _placement(nv, 1, 1))
    assert nv.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 20) == 0
    nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 9, _placement(nv, 4, 4))
    assert [nv.nvmlDeviceGetGpuInstanceRemainingCapacity(h, p) for p in (19, 15, 14, 9, 5, 0)] == [3, 1, 1, 0, 0, 0]
    arr, count = (nv.c_nvmlGpuInstance_t * 2)(), ctypes.c_uint(0)
    nv.nvmlDeviceGetGpuInstances(h, 9, arr, ctypes.byref(count))
    assert count.value == 1 and nv.nvmlGpuInstanceGetInfo(arr[0]).placement.start == 4


def test_gpu_instance_with_a_compute_instance_is_in_use(nv):
    h = nv.nvmlDeviceGetHandleByIndex(0)
    gi, ci = _create(nv, h, 14, 0, 2)
    with pytest.raises(nv.NVMLError_InUse):
        nv.nvmlGpuInstanceDestroy(gi)
    nv.nvmlComputeInstanceDestroy(ci)
    nv.nvmlGpuInstanceDestroy(gi)
    with pytest.raises(nv.NVMLError_InvalidArgument):  # the handle is stale now
        nv.nvmlGpuInstanceGetInfo(gi)
    assert nv.fake_state()["gpus"][0]["instances"] == []


def test_compute_instance_in_use_while_a_pinned_process_runs(nv):
    h = nv.nvmlDeviceGetHandleByIndex(0)
    gi, ci = _create(nv, h, 9, 4, 4)
    uuid = _mig_uuid(nv, ci)
    mig = nv.nvmlDeviceGetHandleByUUID(uuid)
    with _pinned_process(uuid) as proc:
        procs = nv.nvmlDeviceGetComputeRunningProcesses(mig)
        assert [p.pid for p in procs] == [proc.pid] and procs[0].usedGpuMemory > 0
        assert (procs[0].gpuInstanceId, procs[0].computeInstanceId) == (nv.nvmlGpuInstanceGetInfo(gi).id, 0)
        assert nv.nvmlDeviceGetMemoryInfo(mig).used >= procs[0].usedGpuMemory // 2  # RSS stands in
        with pytest.raises(nv.NVMLError_InUse):
            nv.nvmlComputeInstanceDestroy(ci)
    assert nv.nvmlDeviceGetComputeRunningProcesses(mig) == []
    nv.nvmlComputeInstanceDestroy(ci)
    nv.nvmlGpuInstanceDestroy(gi)


def test_in_use_for_the_configured_grace_after_exit(nv):
    nv.fake_reset(instances=[[("2g.10gb", 0)]])
    nv.nvmlInit()
    nv.fake_in_use_after_exit(0.3)
    h = nv.nvmlDeviceGetHandleByIndex(0)
    gi = nv.nvmlDeviceGetGpuInstanceById(h, nv.fake_state()["gpus"][0]["instances"][0]["gi_id"])
    ci = nv.nvmlGpuInstanceGetComputeInstanceById(gi, 0)
    with _pinned_process(_mig_uuid(nv, ci)):
        with pytest.raises(nv.NVMLError_InUse):
            nv.nvmlComputeInstanceDestroy(ci)
    with pytest.raises(nv.NVMLError_InUse):  # the process is gone, but the driver still says "in use"
        nv.nvmlComputeInstanceDestroy(ci)
    time.sleep(0.35)
    nv.nvmlComputeInstanceDestroy(ci)
    nv.nvmlGpuInstanceDestroy(gi)


def test_mig_device_enumeration_and_uuid_round_trip(nv):
    nv.fake_reset(instances=[[("3g.20gb", 4), ("1g.5gb", 0), ("1g.5gb", 1)]])
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    gpu_uuid = nv.nvmlDeviceGetUUID(h)
    assert gpu_uuid.startswith("GPU-") and not nv.nvmlDeviceIsMigDeviceHandle(h)
    seen = {}
    for i in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):
        try:
            m = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, i)
        except nv.NVMLError_NotFound:
            continue
        uuid = nv.nvmlDeviceGetUUID(m)
        back = nv.nvmlDeviceGetHandleByUUID(uuid)
        assert uuid.startswith("MIG-") and nv.nvmlDeviceIsMigDeviceHandle(back) and nv.nvmlDeviceGetUUID(back) == uuid
        assert nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(back)) == gpu_uuid
        gi = nv.nvmlDeviceGetGpuInstanceById(h, nv.nvmlDeviceGetGpuInstanceId(back))
        start = nv.nvmlGpuInstanceGetInfo(gi).placement.start
        seen[start] = i
        assert nv.nvmlDeviceGetMemoryInfo(back).total == {4: 19968, 0: 4864, 1: 4864}[start] * 1024 * 1024
    assert sorted(seen) == [0, 1, 4]
    nv.fake_destroy_behind_back(0, 0)
    with pytest.raises(nv.NVMLError_NotFound):  # an emptied index is skipped, the others keep theirs
        nv.nvmlDeviceGetMigDeviceHandleByIndex(h, seen[0])
    assert nv.nvmlDeviceGetMigDeviceHandleByIndex(h, seen[4])
    with pytest.raises(nv.NVMLError_NotFound):
        nv.nvmlDeviceGetHandleByUUID("MIG-00000000-0000-0000-0000-000000000000")


def test_destroyed_behind_back_instance_disappears(nv):
    nv.fake_reset(instances=[[("4g.20gb", 0), ("3g.20gb", 4)]])
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    arr, count = (nv.c_nvmlGpuInstance_t * 1)(), ctypes.c_uint(0)
    nv.nvmlDeviceGetGpuInstances(h, 9, arr, ctypes.byref(count))
    gi = arr[0]
    nv.fake_destroy_behind_back(0, 4)
    nv.nvmlDeviceGetGpuInstances(h, 9, arr, ctypes.byref(count))
    assert count.value == 0
    with pytest.raises(nv.NVMLError_InvalidArgument):
        nv.nvmlGpuInstanceDestroy(gi)
    state = nv.fake_state()
    assert [i["start"] for i in state["gpus"][0]["instances"]] == [0]
    assert state["log"][-2]["call"] == "fake_destroy_behind_back"


def test_energy_counter_grows_and_power_follows_busy_instances(nv):
    nv.fake_reset(instances=[[("3g.20gb", 0)]])
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    idle_mw = nv.nvmlDeviceGetPowerUsage(h)
    assert idle_mw == 55_000  # the catalogue's idle_w for A100-40GB
    e0 = nv.nvmlDeviceGetTotalEnergyConsumption(h)
    time.sleep(0.05)
    e1 = nv.nvmlDeviceGetTotalEnergyConsumption(h)
    assert e1 - e0 >= 55 * 0.05 * 1000 * 0.9  # mJ at idle power
    uuid = nv.fake_state()["gpus"][0]["instances"][0]["uuid"]
    with _pinned_process(uuid):
        assert nv.nvmlDeviceGetPowerUsage(h) > idle_mw
        assert nv.nvmlDeviceGetTotalEnergyConsumption(h) > e1
    with pytest.raises(nv.NVMLError_NotSupported):  # NVML has no per-instance power
        nv.nvmlDeviceGetTotalEnergyConsumption(nv.nvmlDeviceGetHandleByUUID(uuid))


def test_faults_fire_the_given_number_of_times(nv):
    h = nv.nvmlDeviceGetHandleByIndex(0)
    nv.fake_fail_next("nvmlDeviceCreateGpuInstanceWithPlacement", nv.NVMLError_Unknown, times=2)
    for _ in range(2):
        with pytest.raises(nv.NVMLError_Unknown) as exc:
            nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 19, _placement(nv, 0, 1))
        assert exc.value.value == 999
    nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 19, _placement(nv, 0, 1))
    nv.fake_fail_next("nvmlDeviceGetCount", nv.NVML_ERROR_NO_PERMISSION)
    with pytest.raises(nv.NVMLError_NoPermission):
        nv.nvmlDeviceGetCount()
    assert nv.nvmlDeviceGetCount() == 1
    log = nv.fake_state()["log"]
    assert [(e["result"], e.get("injected", False)) for e in log] == [
        ("NVMLError_Unknown", True), ("NVMLError_Unknown", True), ("ok", False)]
    assert log[-1]["args"][1:] == [19, {"start": 0, "size": 1}]
    with pytest.raises(ValueError, match="unknown NVML call"):
        nv.fake_fail_next("nvmlDeviceCreateGpuInstanceTypo", nv.NVMLError_Unknown)


def test_set_mig_mode_is_recorded_and_refused_with_instances(nv):
    nv.fake_reset(instances=[[("7g.40gb", 0)]])
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    assert nv.nvmlDeviceGetMigMode(h) == [1, 1]
    assert nv.fake_state()["gpus"][0]["set_mig_mode_called"] is False
    with pytest.raises(nv.NVMLError_InUse):
        nv.nvmlDeviceSetMigMode(h, nv.NVML_DEVICE_MIG_DISABLE)
    state = nv.fake_state()
    assert state["gpus"][0]["set_mig_mode_called"] is True
    assert state["log"][-1] == {"call": "nvmlDeviceSetMigMode", "args": [{"gpu": 0}, 0], "result": "NVMLError_InUse"}
    nv.fake_reset(mig=False)
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    assert nv.nvmlDeviceGetMaxMigDeviceCount(h) == 0
    with pytest.raises(nv.NVMLError_NotSupported):
        nv.nvmlDeviceCreateGpuInstance(h, 19)
    assert nv.nvmlDeviceSetMigMode(h, nv.NVML_DEVICE_MIG_ENABLE) == nv.NVML_SUCCESS
    assert nv.nvmlDeviceGetMigMode(h) == [1, 1] and nv.fake_state()["gpus"][0]["set_mig_mode_calls"] == [1]


def test_compute_instance_profiles_of_a_gpu_instance(nv):
    h = nv.nvmlDeviceGetHandleByIndex(0)
    gi = nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, 0, _placement(nv, 0, 8))  # 7g.40gb
    shared = nv.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED
    full = nv.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, nv.NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE, shared)
    assert (full.id, full.sliceCount, full.instanceCount, full.multiprocessorCount) == (4, 7, 1, 98)
    assert nv.nvmlGpuInstanceGetComputeInstanceRemainingCapacity(gi, nv.NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE) == 2
    ci = nv.nvmlGpuInstanceCreateComputeInstance(gi, nv.NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE)
    info = nv.nvmlComputeInstanceGetInfo(ci)
    assert (info.id, info.profileId, info.placement.start, info.placement.size) == (0, 2, 0, 3)
    with pytest.raises(nv.NVMLError_InsufficientResources):  # 3 of 7 slices taken: no full-size CI any more
        nv.nvmlGpuInstanceCreateComputeInstance(gi, nv.NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE)
    arr, count = (nv.c_nvmlComputeInstance_t * 2)(), ctypes.c_uint(0)
    nv.nvmlGpuInstanceGetComputeInstances(gi, 2, arr, ctypes.byref(count))
    assert count.value == 1 and nv.nvmlComputeInstanceGetInfo(arr[0]).id == 0
    with pytest.raises(nv.NVMLError_NotFound):
        nv.nvmlGpuInstanceGetComputeInstanceById(gi, 1)


def test_fake_reset_validates_and_state_is_json(nv):
    with pytest.raises(ValueError, match="overlap"):
        nv.fake_reset(instances=[[("4g.20gb", 0), ("3g.20gb", 0)]])
    nv.fake_reset(["A100-80GB", "H100-80GB"], instances={1: [("3g.40gb", 4)]})
    nv.nvmlInit()
    h1 = nv.nvmlDeviceGetHandleByIndex(1)
    assert nv.nvmlDeviceGetName(h1) == "NVIDIA H100 80GB HBM3" and nv.nvmlDeviceGetIndex(h1) == 1
    assert nv.nvmlDeviceGetPciInfo(h1).pciDeviceId == 0x233010DE
    state = json.loads(json.dumps(nv.fake_state()))
    inst = state["gpus"][1]["instances"][0]
    assert (inst["profile"], inst["start"], inst["size"], inst["ci_ids"]) == ("3g.40gb", 4, 4, [0])
    assert inst["uuid"].startswith("MIG-") and state["gpus"][0]["instances"] == []
