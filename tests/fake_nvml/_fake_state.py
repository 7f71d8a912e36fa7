"""The machine behind the fake `pynvml`: GPUs, GPU/compute instances, processes, energy, faults.

The MIG rules come from migsched's catalogue through `migsched.partition.layout.Layout` (one
source of truth): a GPU's GPU instances are mirrored in a `Layout`, and every create goes through
`Layout.with_instance`, whose refusal becomes NVML_ERROR_INSUFFICIENT_RESOURCES.

Processes are real: a process is "on" a MIG device while it lives and its environment has
CUDA_VISIBLE_DEVICES equal to that device's MIG UUID (or, with MIG off, to the GPU's UUID).
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from ctypes import c_void_p, cast
from dataclasses import dataclass, field

import psutil
from _fake_defs import (
    NVML_ERROR_IN_USE,
    NVML_ERROR_INSUFFICIENT_RESOURCES,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_NOT_SUPPORTED,
    NVMLError,
    c_nvmlDevice_t,
)

from migsched.errors import PlacementError
from migsched.hardware.catalog import GpuModel, Profile, get_model
from migsched.partition.layout import Layout

LOCK = threading.RLock()
MIB = 1024 * 1024
# CI profile enum <-> compute slices (NVML_COMPUTE_INSTANCE_PROFILE_*; CI ids equal the enums).
CI_ENUM_SLICES = {0x0: 1, 0x1: 2, 0x2: 3, 0x3: 4, 0x4: 7, 0x5: 8, 0x6: 6}
_YOUNG_S = 1.0  # environments of younger processes are re-read: they may not have exec'd yet


def fail(code: int):
    """Raise the NVMLError subclass for `code`."""
    raise NVMLError(code)


@dataclass(eq=False)
class Gpu:
    index: int
    model: GpuModel
    uuid: str
    addr: int
    mig: int
    layout: Layout
    gis: dict[int, Gi] = field(default_factory=dict)  # GI id -> Gi
    set_mig_mode_calls: list[int] = field(default_factory=list)
    energy_mj: float = 0.0
    energy_t: float = field(default_factory=time.monotonic)
    pids: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.model.nvml_names[0]

    def mig_devices(self) -> list[Ci]:
        return [ci for gi in self.gis.values() for ci in gi.cis.values()]


@dataclass(eq=False)
class Gi:
    gpu: Gpu
    id: int
    profile: Profile
    start: int
    addr: int
    cis: dict[int, Ci] = field(default_factory=dict)  # CI id -> Ci
    last_exit: float | None = None

    def ci_offers(self) -> dict[int, tuple[int, int]]:
        """CI profile id -> (slices, count) this GI offers (catalogue `compute_instance_profiles`)."""
        offers = {s: c for s, c in ((p.slices, p.count) for p in self.gpu.model.ci_profiles_for(self.profile))}
        return {e: (s, offers[s]) for e, s in CI_ENUM_SLICES.items() if s in offers}


@dataclass(eq=False)
class Ci:
    gi: Gi
    id: int
    profile_id: int
    slices: int
    start: int
    uuid: str
    mig_index: int
    addr: int
    mig_addr: int
    pids: set[int] = field(default_factory=set)
    last_exit: float | None = None

    @property
    def name(self) -> str:
        g = self.gi.profile.name
        return g if self.slices == self.gi.profile.compute_slices else f"{self.slices}c.{g}"


def ci_starts(slices: int, gi_slices: int) -> list[int]:
    """Compute-slice starts of a CI inside a GI: aligned to the next power of two (go-nvml H100 mock)."""
    if slices >= gi_slices:
        return [0] if slices == gi_slices else []
    step = 1 << (slices - 1).bit_length()
    return [s for s in range(0, gi_slices - slices + 1, step)]


class Machine:
    """One fake host. `handles` maps a handle's address to ("gpu" | "gi" | "ci" | "mig", object)."""

    def __init__(self, gpus: list[str], mig) -> None:
        self.refcount = 0
        self.handles: dict[int, tuple[str, object]] = {}
        self.faults: dict[str, list[list]] = {}
        self.grace_s = 0.0
        self.log: list[dict] = []
        self._next_addr = 0x7F00_0000_1000
        self._env: dict[tuple[int, float], str | None] = {}
        mig_list = list(mig) if isinstance(mig, (list, tuple)) else [mig] * len(gpus)
        self.gpus = []
        for i, name in enumerate(gpus):
            model = get_model(name)
            gpu = Gpu(i, model, f"GPU-{uuidlib.uuid4()}", 0, int(bool(mig_list[i])), Layout.empty(model),
                      energy_mj=float(1_000_000 * (i + 1)))
            gpu.addr = self._register("gpu", gpu)
            self.gpus.append(gpu)

    # ---- handles --------------------------------------------------------------------------
    def _register(self, kind: str, obj) -> int:
        self._next_addr += 0x100
        self.handles[self._next_addr] = (kind, obj)
        return self._next_addr

    @staticmethod
    def handle(addr: int, ptr_type=c_nvmlDevice_t):
        return cast(c_void_p(addr), ptr_type)

    def lookup(self, h, *kinds: str):
        """The object behind handle `h`, which must be one of `kinds` (else INVALID_ARGUMENT)."""
        try:
            addr = cast(h, c_void_p).value
        except Exception:  # noqa: BLE001 - not a ctypes pointer at all
            fail(NVML_ERROR_INVALID_ARGUMENT)
        kind, obj = self.handles.get(addr, (None, None))
        if kind not in kinds:
            fail(NVML_ERROR_INVALID_ARGUMENT)
        return kind, obj

    def gpu_of(self, h) -> Gpu:
        return self.lookup(h, "gpu")[1]

    def label(self, h) -> object:
        """A JSON-able description of a handle or argument, for the call log."""
        try:
            kind, obj = self.handles.get(cast(h, c_void_p).value, (None, None))
        except Exception:  # noqa: BLE001
            kind = obj = None
        if kind == "gpu":
            return {"gpu": obj.index}
        if kind == "gi":
            return {"gpu": obj.gpu.index, "gi_id": obj.id, "profile": obj.profile.name, "start": obj.start}
        if kind in ("ci", "mig"):
            gi = obj.gi
            return {"gpu": gi.gpu.index, "gi_id": gi.id, "ci_id": obj.id, "start": gi.start, "uuid": obj.uuid}
        target = getattr(h, "_obj", h)  # a byref()
        if hasattr(target, "start") and hasattr(target, "size"):
            return {"start": int(target.start), "size": int(target.size)}
        return h if isinstance(h, (int, float, str, type(None))) else repr(h)

    # ---- GPU instances ----------------------------------------------------------------------
    def require_mig(self, gpu: Gpu) -> None:
        if not gpu.mig:
            fail(NVML_ERROR_NOT_SUPPORTED)

    def profile_by_id(self, gpu: Gpu, profile_id: int, code: int = NVML_ERROR_INVALID_ARGUMENT) -> Profile:
        for p in gpu.model.profiles:
            if p.profile_id == profile_id:
                return p
        fail(code)

    def remaining(self, gpu: Gpu, profile: Profile) -> int:
        """How many more `profile` GIs fit now (the Free column of `nvidia-smi mig -lgip`)."""
        layout, n = gpu.layout, 0
        while (starts := layout.legal_starts(profile)):
            layout, n = layout.with_instance(profile, starts[0]), n + 1
        return n

    def create_gi(self, gpu: Gpu, profile: Profile, start: int | None, size: int | None = None) -> Gi:
        self.require_mig(gpu)
        if start is None:
            starts = gpu.layout.legal_starts(profile)  # the driver's choice here: first fit
            if not starts:
                fail(NVML_ERROR_INSUFFICIENT_RESOURCES)
            start = starts[0]
        elif start not in profile.starts or (size is not None and size != profile.memory_slices):
            fail(NVML_ERROR_INVALID_ARGUMENT)
        try:
            gpu.layout = gpu.layout.with_instance(profile, start)
        except PlacementError:
            fail(NVML_ERROR_INSUFFICIENT_RESOURCES)
        gi_id = min(set(range(1, len(gpu.gis) + 2)) - set(gpu.gis))
        gi = Gi(gpu, gi_id, profile, start, 0)
        gi.addr = self._register("gi", gi)
        gpu.gis[gi_id] = gi
        return gi

    def destroy_gi(self, gi: Gi, force: bool = False) -> None:
        if not force:
            self.scan()
            if gi.cis or self._in_grace(gi.last_exit):
                fail(NVML_ERROR_IN_USE)
        for ci in list(gi.cis.values()):
            self.destroy_ci(ci, force=True)
        gi.gpu.layout = gi.gpu.layout.release(gi.start)
        del gi.gpu.gis[gi.id]
        self.handles.pop(gi.addr, None)

    # ---- compute instances ------------------------------------------------------------------
    def ci_remaining(self, gi: Gi, profile_id: int, extra: tuple[tuple[int, int], ...] = ()) -> list[int]:
        """Free compute-slice starts for a CI of `profile_id` in `gi`, with `extra` (start, slices)
        CIs of that profile assumed present too (empty when none fits)."""
        offers = gi.ci_offers()
        if profile_id not in offers:
            fail(NVML_ERROR_INVALID_ARGUMENT)
        slices, count = offers[profile_id]
        if sum(1 for c in gi.cis.values() if c.profile_id == profile_id) + len(extra) >= count:
            return []
        taken = [(c.start, c.slices) for c in gi.cis.values()] + list(extra)
        used = {s for start, n in taken for s in range(start, start + n)}
        return [s for s in ci_starts(slices, gi.profile.compute_slices)
                if not used & set(range(s, s + slices))]

    def ci_capacity(self, gi: Gi, profile_id: int) -> int:
        """How many more CIs of `profile_id` fit in `gi` now."""
        extra: tuple[tuple[int, int], ...] = ()
        while (starts := self.ci_remaining(gi, profile_id, extra)):
            extra += ((starts[0], CI_ENUM_SLICES[profile_id]),)
        return len(extra)

    def create_ci(self, gi: Gi, profile_id: int) -> Ci:
        starts = self.ci_remaining(gi, profile_id)
        gpu = gi.gpu
        free_idx = sorted(set(range(gpu.model.max_instances)) - {c.mig_index for c in gpu.mig_devices()})
        if not starts or not free_idx:
            fail(NVML_ERROR_INSUFFICIENT_RESOURCES)
        ci_id = min(set(range(len(gi.cis) + 1)) - set(gi.cis))
        ci = Ci(gi, ci_id, profile_id, CI_ENUM_SLICES[profile_id], starts[0], f"MIG-{uuidlib.uuid4()}",
                free_idx[0], 0, 0)
        ci.addr = self._register("ci", ci)
        ci.mig_addr = self._register("mig", ci)
        gi.cis[ci_id] = ci
        return ci

    def destroy_ci(self, ci: Ci, force: bool = False) -> None:
        if not force:
            self.scan()
            if ci.pids or self._in_grace(ci.last_exit):
                fail(NVML_ERROR_IN_USE)
        del ci.gi.cis[ci.id]
        self.handles.pop(ci.addr, None)
        self.handles.pop(ci.mig_addr, None)

    def _in_grace(self, last_exit: float | None) -> bool:
        return last_exit is not None and time.monotonic() - last_exit < self.grace_s

    # ---- processes --------------------------------------------------------------------------
    def scan(self) -> dict[str, list[tuple[int, int]]]:
        """UUID -> [(pid, rss bytes)] of the live processes pinned to it; updates busy/exit times."""
        by_uuid: dict[str, list[tuple[int, int]]] = {}
        now, cache = time.time(), {}
        for p in psutil.process_iter():
            try:
                key = (p.pid, p.create_time())  # (pid, start time): a reused pid is a new entry
                if key in self._env:
                    vis = self._env[key]
                else:
                    try:
                        vis = (p.environ().get("CUDA_VISIBLE_DEVICES") or "").strip() or None
                    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
                        vis = None  # a process we cannot read is skipped
                if now - key[1] > _YOUNG_S:
                    cache[key] = vis
                if vis and p.status() != psutil.STATUS_ZOMBIE:
                    by_uuid.setdefault(vis, []).append((p.pid, p.memory_info().rss))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self._env = cache  # entries of processes that are gone drop out
        mono = time.monotonic()
        for gpu in self.gpus:
            for ci in gpu.mig_devices():
                pids = {pid for pid, _ in by_uuid.get(ci.uuid, ())}
                if ci.pids - pids:  # some process seen before has exited
                    ci.last_exit = ci.gi.last_exit = mono
                ci.pids = pids
            gpu.pids = {pid for pid, _ in by_uuid.get(gpu.uuid, ())}
        return by_uuid

    # ---- power and energy -------------------------------------------------------------------
    def power_w(self, gpu: Gpu) -> float:
        """Idle power plus (max - idle) x the compute share of the busy instances (whole GPU if MIG off)."""
        m = gpu.model
        self.scan()
        if gpu.mig:
            busy = sum(gi.profile.compute_slices for gi in gpu.gis.values()
                       if any(ci.pids for ci in gi.cis.values()))
        else:
            busy = m.compute_slices if gpu.pids else 0
        return m.idle_w + (m.max_w - m.idle_w) * min(1.0, busy / m.compute_slices)

    def energy(self, gpu: Gpu) -> tuple[float, float]:
        """(energy counter mJ, power W): integrates the current power over the time since the last read."""
        now = time.monotonic()
        watts = self.power_w(gpu)
        gpu.energy_mj += watts * (now - gpu.energy_t) * 1000.0
        gpu.energy_t = now
        return gpu.energy_mj, watts

    # ---- faults and the state view ----------------------------------------------------------
    def take_fault(self, call: str):
        """The error class to raise for this call, if a fault is queued for it."""
        queue = self.faults.get(call)
        if not queue:
            return None
        entry = queue[0]
        entry[1] -= 1
        if entry[1] <= 0:
            queue.pop(0)
        return entry[0]

    def state(self) -> dict:
        gpus = []
        for g in self.gpus:
            insts = []
            for gi in sorted(g.gis.values(), key=lambda x: x.start):
                cis = sorted(gi.cis.values(), key=lambda c: c.id)
                insts.append({"profile": gi.profile.name, "profile_id": gi.profile.profile_id, "start": gi.start,
                              "size": gi.profile.memory_slices, "gi_id": gi.id, "ci_ids": [c.id for c in cis],
                              "uuid": cis[0].uuid if cis else None, "mig_uuids": [c.uuid for c in cis],
                              "mig_indices": [c.mig_index for c in cis]})
            gpus.append({"index": g.index, "model": g.model.name, "name": g.name, "uuid": g.uuid,
                         "mig_mode": [g.mig, g.mig], "set_mig_mode_called": bool(g.set_mig_mode_calls),
                         "set_mig_mode_calls": list(g.set_mig_mode_calls), "instances": insts})
        return {"initialized": self.refcount > 0, "gpus": gpus, "log": [dict(e) for e in self.log],
                "in_use_after_exit_s": self.grace_s}


M: Machine  # the current machine; `fake_reset` (in _fake_api) replaces it
