"""MIG layout configs written back: migsched's layout file and mig-parted's `version: v1`.

`dump_config` needs explicit placements; `to_mig_parted` turns a config into count maps, merging
GPUs with equal ones as mig-parted's own `export` does; `dump_mig_parted` writes the fields in
mig-parted's order with device lists inline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from migsched.mig.placement import counts_of
from migsched.mig.spec import MIG_PARTED, GpuSpec, MigConfig, MigConfigError


class _Flow(list):
    """A list YAML writes inline ([0, 1]), as mig-parted does for devices and device-filter."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def dump_config(cfg: MigConfig) -> str:
    """`cfg` as a migsched layout file; it needs placements (a count map has none: apply it, then export)."""
    gpus = []
    for s in cfg.specs:
        if s.mig and s.placements is None:
            raise MigConfigError(f"{s.where or 'an entry'} gives counts, not placements; apply it and "
                                 "`migsched export` the result to get a migsched layout file")
        for idx in (("all",) if s.devices is None else s.devices):
            entry: dict[str, Any] = {"index": idx}
            if s.model:
                entry["model"] = s.model
            entry["mig"] = s.mig
            if s.mig:
                entry["instances"] = [f"{n}@{st}" for n, st in s.placements or ()]
            if s.in_use:
                entry["in_use"] = {k: list(p) for k, p in s.in_use}
            gpus.append(entry)
    return _dump({"version": 1, "gpus": gpus})


def to_mig_parted(cfg: MigConfig, name: str = "current") -> MigConfig:
    """`cfg` as one mig-parted config: count maps, GPUs with equal ones merged, `all` where it fits.

    mig-parted's own `export` merges the same way (cmd/nvidia-mig-parted/export/config.go).
    """
    if cfg.format == MIG_PARTED:
        return cfg
    groups: dict[tuple, set[int] | None] = {}
    for s in sorted(cfg.specs, key=lambda s: s.devices is not None):  # `all` first: the last match wins
        key = (s.mig, counts_of(s.placements or ()))
        if s.devices is None:
            groups[key] = None
        elif key not in groups:
            groups[key] = set(s.devices)
        elif (devs := groups[key]) is not None:
            devs.update(s.devices)
    every = {d for s in cfg.specs for d in s.devices or ()}
    specs = tuple(GpuSpec(None if devs is None or devs == every else tuple(sorted(devs)), mig, None, counts,
                          where=f"mig-configs.{name}[{k}]")
                  for k, ((mig, counts), devs) in enumerate(groups.items()))
    return MigConfig(MIG_PARTED, specs, name)


def dump_mig_parted(configs: Mapping[str, MigConfig]) -> str:
    """Named configs as a mig-parted file (`version: v1`), fields in mig-parted's order."""
    out: dict[str, Any] = {}
    for name, cfg in configs.items():
        groups = []
        for s in to_mig_parted(cfg, name).specs:
            g: dict[str, Any] = {}
            if s.device_filter is not None:
                g["device-filter"] = s.device_filter if isinstance(s.device_filter, str) else _Flow(s.device_filter)
            g["devices"] = "all" if s.devices is None else _Flow(s.devices)
            g["mig-enabled"] = s.mig
            if s.counts is not None:
                g["mig-devices"] = dict(s.counts)
            groups.append(g)
        out[name] = groups
    return _dump({"version": "v1", "mig-configs": out})
