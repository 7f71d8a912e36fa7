"""The frozen model of a MIG layout config: `MigConfig`, its `GpuSpec` entries and its error.

Both file formats (migsched's `version: 1`, mig-parted's `version: v1`) are read into these
(`config.py`), written back from them (`render.py`) and turned into layouts (`placement.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from migsched.errors import MigschedError
from migsched.hardware.catalog import GpuModel

MIGSCHED, MIG_PARTED = "migsched", "mig-parted"
# mig-parted's profile names (pkg/types/mig_profile.go): [<c>c.]<g>g.<gb>gb[+me]
MP_PROFILE_RE = re.compile(r"^(?:(?P<ci>\d+)c\.)?(?P<g>\d+)g\.\d+gb(?:\+me(?:\.all)?)?$", re.IGNORECASE)


class MigConfigError(MigschedError, ValueError):
    """A layout config that does not validate; the message names the field, the value and what is allowed."""


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """What one entry of a config asks of the GPUs it selects.

    Attributes:
        devices: GPU indices, or None for every GPU (`index: all` / `devices: all`).
        mig: the MIG mode wanted.
        placements: (profile name, start) pairs (migsched files), else None.
        counts: (profile name, count) pairs as written (mig-parted files; None when the group
            has no `mig-devices` key), else None.
        model: the GPU model the entry is for (checked against NVML; migsched files).
        device_filter: mig-parted's `device-filter` as written (a PCI id string or a tuple).
        in_use: ("PROFILE@START", pids) of instances processes used at export (informational).
        where: the entry's place in its file, for messages ("gpus[1]", "mig-configs.x[0]").
    """

    devices: tuple[int, ...] | None
    mig: bool
    placements: tuple[tuple[str, int], ...] | None = None
    counts: tuple[tuple[str, int], ...] | None = None
    model: str | None = None
    device_filter: str | tuple[str, ...] | None = None
    in_use: tuple[tuple[str, tuple[int, ...]], ...] = ()
    where: str = field(default="", compare=False)

    def selects(self, index: int, model: GpuModel | None) -> bool:
        """True when GPU `index` (of `model`, None if unknown) is in `devices` and passes the filter."""
        if self.devices is not None and index not in self.devices:
            return False
        if not self.device_filter:
            return True
        ids = {int(p, 16) for p in model.pci_device_ids} if model is not None else set()
        for f in (self.device_filter,) if isinstance(self.device_filter, str) else self.device_filter:
            v = int(f, 16)  # checked when read
            # mig-parted writes device and vendor ("0x20B210DE"); a bare device id is accepted too
            if (v >> 16 if v > 0xFFFF else v) in ids:
                return True
        return False


@dataclass(frozen=True, slots=True)
class MigConfig:
    """A whole config: its format, its entries and (mig-parted) the selected config's name."""

    format: str  # MIGSCHED | MIG_PARTED
    specs: tuple[GpuSpec, ...]
    name: str | None = None

    def spec_for(self, index: int, model: GpuModel | None) -> GpuSpec | None:
        """The entry that applies to GPU `index`, or None when the config leaves it alone.

        migsched: the entry naming the index, else the `index: all` entry. mig-parted: the last
        matching group (mig-parted applies every matching group in order, so the last one wins).
        """
        hits = [s for s in self.specs if s.selects(index, model)]
        if not hits:
            return None
        if self.format == MIGSCHED:
            return next((s for s in hits if s.devices is not None), hits[0])
        return hits[-1]
