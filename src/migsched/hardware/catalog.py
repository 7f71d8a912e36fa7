"""Load the MIG hardware catalogue (`gpus.yaml`) into frozen value types and look entries up.

Names are case-insensitive. Profiles are matched by *geometry* (compute slices, memory slices,
media engines), then by the nearest memory size, because drivers print slightly different
names for the same profile ("3g.39gb" for "3g.40gb", "7g.79gb" for "7g.80gb"; mig-hardware.md
§1.4, ISS-mp31, NOS-geo).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from importlib import resources

import yaml

from migsched.errors import UnknownNameError

#: The name of `GpuModel.whole_gpu`, the pseudo-profile of a GPU with MIG off.
WHOLE_GPU = "whole"

_PROFILE_RE = re.compile(
    r"^(?:mig\s+)?(?:(?P<ci>\d+)c\.)?(?P<g>\d+)g\.(?P<gb>\d+)gb(?P<media>\+me(?:\.all)?)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ComputeInstanceProfile:
    """A compute-instance profile inside a GI: `count` CIs of `slices` compute slices fit."""

    slices: int
    count: int


@dataclass(frozen=True, slots=True)
class Profile:
    """A GPU-instance profile of one GPU model.

    Attributes:
        name: canonical name, e.g. "3g.40gb".
        nvml_enum: the `NVML_GPU_INSTANCE_PROFILE_*` constant.
        profile_id: the id `nvidia-smi mig -lgip` prints and the create calls expect.
        compute_slices: compute (SM) slices, out of the model's `compute_slices`.
        memory_slices: memory slices = the placement size in memory slots.
        memory_mib: memory of the instance as NVML reports it (`memorySizeMB`).
        sm_count: streaming multiprocessors of the instance.
        max_count: the most instances of this profile on one GPU.
        media: True for `+me` profiles (at most one per GPU).
        starts: legal start memory slots.
        status: V, C, D or UNVERIFIED (see gpus.yaml).
        source: where the numbers come from.
    """

    name: str
    nvml_enum: int
    profile_id: int
    compute_slices: int
    memory_slices: int
    memory_mib: int
    sm_count: int
    max_count: int
    media: bool
    starts: tuple[int, ...]
    status: str
    source: str

    @property
    def size(self) -> int:
        """Placement size in memory slots (equal to `memory_slices`)."""
        return self.memory_slices

    @property
    def memory_gib(self) -> float:
        """Instance memory in GiB."""
        return self.memory_mib / 1024.0

    def slots(self, start: int) -> range:
        """The memory slots an instance of this profile occupies when placed at `start`."""
        return range(start, start + self.memory_slices)


@dataclass(frozen=True, slots=True)
class GpuModel:
    """One GPU model: its slice counts, whole-GPU figures and every GPU-instance profile."""

    name: str
    nvml_names: tuple[str, ...]
    pci_device_ids: tuple[str, ...]
    compute_slices: int
    memory_slices: int
    max_instances: int
    memory_mib: int
    sm_count: int
    idle_w: float
    max_w: float
    status: str
    source: str
    profiles: tuple[Profile, ...]
    ci_profiles: dict[int, tuple[ComputeInstanceProfile, ...]] = field(hash=False, compare=False)
    #: Lookups already answered (`profile`, `usable_profiles`, `largest`): schedulers ask for
    #: the same few names millions of times in a 100,000-job simulation.
    _memo: dict = field(default_factory=dict, hash=False, compare=False, repr=False)

    def profile_names(self, media: bool = True) -> list[str]:
        """Profile names, smallest first; `+me` profiles only when `media`."""
        return [p.name for p in self.profiles if media or not p.media]

    def usable_profiles(self, media: bool = False) -> tuple[Profile, ...]:
        """Profiles a scheduler may create, smallest memory first (no `+me` unless asked)."""
        return self._cached(("usable", media), lambda: tuple(p for p in self.profiles if media or not p.media))

    def _cached(self, key: object, compute: Callable[[], Any]) -> Any:
        """`compute()`'s answer for `key`, worked out once per model (`_memo`)."""
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = compute()
        return hit

    def profile(self, name: str | int) -> Profile:
        """Look a profile up by name (geometry-matched, case-insensitive) or by profile id.

        Raises:
            UnknownNameError: no profile of this model matches; the message lists the valid names.
        """
        hit = self._memo.get(name)  # inline, not `_cached`: the hottest look-up of a simulation
        if hit is None:
            hit = self._memo[name] = self._lookup(name)
        return hit

    def _lookup(self, name: str | int) -> Profile:
        if isinstance(name, int) or (isinstance(name, str) and name.strip().isdigit()):
            pid = int(name)
            for p in self.profiles:
                if p.profile_id == pid:
                    return p
            raise UnknownNameError(f"{self.name} profile", name, self.profile_names())
        text = name.strip().lower()
        for p in self.profiles:
            if p.name == text:
                return p
        m = _PROFILE_RE.match(text)
        # "+me.all" (all media engines) is a different NVML profile from "+me"; none is catalogued.
        if m and (m["media"] or "+me") == "+me":
            g, gb, media = int(m["g"]), int(m["gb"]), bool(m["media"])
            candidates = [p for p in self.profiles if p.compute_slices == g and p.media == media]
            if candidates:
                best = min(candidates, key=lambda p: abs(_nominal_gb(p.name) - gb))
                if abs(_nominal_gb(best.name) - gb) <= max(2, 0.1 * gb):
                    return best
        raise UnknownNameError(f"{self.name} profile", name, self.profile_names())

    def ci_profiles_for(self, profile: Profile) -> tuple[ComputeInstanceProfile, ...]:
        """Compute-instance profiles an empty GI of `profile` offers."""
        return self.ci_profiles.get(profile.compute_slices, ())

    @property
    def largest(self) -> Profile:
        """The whole-GPU MIG profile (7g, or 4g on A30)."""
        return self._cached(("largest",), lambda: max(self.usable_profiles(),
                                                      key=lambda p: (p.compute_slices, p.memory_slices)))

    def instance_profile(self, name: str) -> Profile:
        """The profile of an instance a job ran on, by name: `whole_gpu` for "whole" (MIG off),
        else `profile`."""
        return self.whole_gpu if name == WHOLE_GPU else self.profile(name)

    @property
    def whole_gpu(self) -> Profile:
        """A pseudo-profile for the GPU with MIG off: all SMs and all memory, no placement rules."""
        big = self.largest
        return Profile(
            name=WHOLE_GPU,
            nvml_enum=-1,
            profile_id=-1,
            compute_slices=self.compute_slices,
            memory_slices=self.memory_slices,
            memory_mib=self.memory_mib,
            sm_count=self.sm_count,
            max_count=1,
            media=False,
            starts=(0,),
            status=big.status,
            source="MIG off: whole GPU (" + self.source + ")",
        )


def _nominal_gb(profile_name: str) -> int:
    m = _PROFILE_RE.match(profile_name)
    assert m, profile_name
    return int(m["gb"])


@functools.cache
def _load() -> dict[str, GpuModel]:
    text = resources.files("migsched.hardware").joinpath("gpus.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    ci = {
        int(k): tuple(ComputeInstanceProfile(int(s), int(c)) for s, c in v)
        for k, v in data["compute_instance_profiles"].items()
    }
    models: dict[str, GpuModel] = {}
    for m in data["models"]:
        profiles = tuple(
            sorted(
                (
                    Profile(
                        name=p["name"],
                        nvml_enum=int(p["nvml_enum"]),
                        profile_id=int(p["id"]),
                        compute_slices=int(p["compute"]),
                        memory_slices=int(p["memory"]),
                        memory_mib=int(p["memory_mib"]),
                        sm_count=int(p["sm"]),
                        max_count=int(p["max"]),
                        media=bool(p["media"]),
                        starts=tuple(int(s) for s in p["starts"]),
                        status=str(p["status"]),
                        source=str(p["source"]),
                    )
                    for p in m["profiles"]
                ),
                key=lambda p: (p.memory_slices, p.compute_slices, p.media),
            )
        )
        models[m["name"].lower()] = GpuModel(
            name=m["name"],
            nvml_names=tuple(m["nvml_names"]),
            pci_device_ids=tuple(m["pci_device_ids"]),
            compute_slices=int(m["compute_slices"]),
            memory_slices=int(m["memory_slices"]),
            max_instances=int(m["max_instances"]),
            memory_mib=int(m["memory_mib"]),
            sm_count=int(m["sm_count"]),
            idle_w=float(m["idle_w"]),
            max_w=float(m["max_w"]),
            status=str(m["status"]),
            source=str(m["source"]),
            profiles=profiles,
            ci_profiles=ci,
        )
    return models


def all_models() -> list[GpuModel]:
    """Every catalogued GPU model, in catalogue order."""
    return list(_load().values())


def model_names() -> list[str]:
    """The catalogue's model names (what every command takes, case-insensitive)."""
    return [m.name for m in _load().values()]


def get_model(name: str) -> GpuModel:
    """Look a GPU model up by catalogue name or by the name NVML reports.

    Raises:
        UnknownNameError: the name matches nothing; the message lists the valid names.
    """
    key = name.strip().lower()
    models = _load()
    if key in models:
        return models[key]
    resolved = resolve_nvml_name(name)
    if resolved is not None:
        return resolved
    raise UnknownNameError("GPU model", name, model_names())


def resolve_nvml_name(nvml_name: str, memory_mib: int | None = None) -> GpuModel | None:
    """Map the name NVML reports ("NVIDIA A100-SXM4-80GB") to a catalogue entry, or None.

    An exact (case-insensitive) match of a listed NVML name wins. Otherwise the name's family
    (A30, A100, H100, H200, GH200, B200) and the memory size — from `memory_mib` when given,
    else from a "<N>GB" in the name — pick the entry with the nearest total memory, provided it
    is within 10% (otherwise None).
    """
    text = nvml_name.strip().lower()
    models = all_models()
    for m in models:
        if text in (n.lower() for n in m.nvml_names):
            return m
    family = None
    for fam in ("gh200", "h200", "h100", "a100", "a30", "b200"):
        if fam in text:
            family = fam
            break
    if family is None:
        return None
    cands = [m for m in models if m.name.lower().split("-")[0] == family]
    if not cands:
        return None
    if memory_mib is None:
        gb = re.search(r"(\d+)\s*g(?:b)?\b", text)
        memory_mib = int(gb.group(1)) * 1024 if gb else None
    if memory_mib is None:
        return cands[0] if len(cands) == 1 else None
    best = min(cands, key=lambda m: abs(m.memory_mib - memory_mib))
    # Only a near match counts: "A100-160GB" is no A100-80GB.
    return best if abs(best.memory_mib - memory_mib) <= 0.1 * best.memory_mib else None
