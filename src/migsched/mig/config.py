"""MIG layout configs: migsched's own file (`version: 1`) and mig-parted's (`version: v1`).

migsched's file gives every GPU its instances with explicit placements
(`{index: 0, model: A100-40GB, mig: true, instances: ["3g.20gb@4", "2g.10gb@0"]}`, or `index: all`);
mig-parted's (https://github.com/NVIDIA/mig-parted, `api/spec/v1`; mig-hardware.md §6.3) names
configs, each a list of device groups with a profile -> count map. Both are read into one frozen
`MigConfig` (pydantic only validates the files) and written back unchanged (`dump_config`,
`dump_mig_parted`); `place_counts` turns a count map into explicit placements, deterministically,
keeping busy and then other existing instances where it can. Errors name the field, the value and
what is allowed. The formats are documented in docs/mig-ops.md.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator, model_validator

from migsched.errors import MigschedError, UnknownNameError
from migsched.hardware.catalog import GpuModel, Profile, get_model
from migsched.partition.layout import Instance, Layout

MIGSCHED, MIG_PARTED = "migsched", "mig-parted"
_ITEM_RE = re.compile(r"^\s*(?P<name>[^@\s]+)\s*@\s*(?P<start>\d+)\s*$")
# mig-parted's profile names (pkg/types/mig_profile.go): [<c>c.]<g>g.<gb>gb[+me]
_PCI_ID_RE = re.compile(r"^0x[0-9a-f]{4}(?:[0-9a-f]{4})?$", re.IGNORECASE)
_MP_PROFILE_RE = re.compile(r"^(?:(?P<ci>\d+)c\.)?(?P<g>\d+)g\.\d+gb(?:\+me(?:\.all)?)?$", re.IGNORECASE)


class MigConfigError(MigschedError, ValueError):
    """A layout config that does not validate; the message names the field, the value and what is allowed."""


# ---- the frozen model ------------------------------------------------------------------------
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


# ---- file validation (pydantic at the edge) ---------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _is_index(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


class _GpuEntry(_Strict):
    index: int | str
    model: str | None = None
    mig: StrictBool = True
    instances: list[str] = Field(default_factory=list)
    in_use: dict[str, list[Annotated[StrictInt, Field(ge=0)]]] = Field(default_factory=dict)

    @field_validator("index", mode="before")
    @classmethod
    def _idx(cls, v: Any) -> Any:
        if v == "all" or _is_index(v):
            return v
        raise ValueError("must be a GPU index (0, 1, ...) or 'all'")

    @field_validator("instances", mode="before")
    @classmethod
    def _items(cls, v: Any) -> Any:
        if isinstance(v, str):  # the CLI's "3g.20gb@4,2g.10gb@0" form
            return [x for x in (p.strip() for p in v.split(",")) if x]
        return v


class _MigschedFile(_Strict):
    version: Literal[1]
    gpus: list[_GpuEntry] = Field(min_length=1)


class _MpGroup(_Strict):
    device_filter: str | list[str] | None = Field(default=None, alias="device-filter")
    devices: str | list[int]
    mig_enabled: StrictBool = Field(alias="mig-enabled")
    mig_devices: dict[str, Annotated[StrictInt, Field(ge=0)]] | None = Field(default=None, alias="mig-devices")

    @field_validator("devices", mode="before")
    @classmethod
    def _devs(cls, v: Any) -> Any:
        if v == "all" or isinstance(v, list) and all(map(_is_index, v)):
            return v
        raise ValueError("must be 'all' or a list of GPU indices, e.g. [0, 1]")

    @model_validator(mode="after")
    def _devices_match_mode(self) -> _MpGroup:
        if self.mig_enabled and self.mig_devices is None:
            raise ValueError("mig-devices is required when mig-enabled is true ({} for no instances)")
        if not self.mig_enabled and self.mig_devices:
            raise ValueError("mig-devices must be empty when mig-enabled is false")
        return self


class _MpFile(_Strict):
    version: Literal["v1"]
    mig_configs: dict[str, Annotated[list[_MpGroup], Field(min_length=1)]] = Field(alias="mig-configs", min_length=1)


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            out += " key"
        else:
            out += f"[{part}]" if type(part) is int else (f".{part}" if out else str(part))
    return out or "(top level)"


def _errors(exc: ValidationError, source: str) -> MigConfigError:
    msgs = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        got = "" if isinstance(value, (dict, list)) or value is None or err["type"] == "missing" else f" (got {value!r})"
        if isinstance(value, bool) and err["loc"][-1] == "[key]":
            got += "; quote names such as on, off, yes and no: YAML reads them as booleans"
        msgs.append(f"{_path(err['loc'])}: {msg}{got}")
    return MigConfigError(f"invalid layout config {source}: " + "; ".join(msgs))


def _bad(source: str, where: str, msg: str) -> MigConfigError:
    return MigConfigError(f"invalid layout config {source}: {where}: {msg}")


# ---- reading ----------------------------------------------------------------------------------
def parse_item(text: str) -> tuple[str, int]:
    """"3g.20gb@4" -> ("3g.20gb", 4); raises ValueError saying what the form is."""
    m = _ITEM_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not PROFILE@START (for example '3g.20gb@4'; START is the first memory slot)")
    return m["name"], int(m["start"])


def _migsched(data: dict, source: str) -> MigConfig:
    try:
        doc = _MigschedFile.model_validate(data)
    except ValidationError as exc:
        raise _errors(exc, source) from None
    specs, seen = [], {}
    for k, e in enumerate(doc.gpus):
        where = f"gpus[{k}]"
        if e.index in seen:
            raise _bad(source, f"{where}.index",
                       f"{e.index!r} is already the index of {seen[e.index]}; each GPU (and 'all') once")
        seen[e.index] = where
        if not e.mig and e.instances:
            raise _bad(source, f"{where}.instances", f"mig is false, so no instances may be listed (got {e.instances})")
        items = []
        for j, text in enumerate(e.instances):
            try:
                items.append(parse_item(text))
            except ValueError as exc:
                raise _bad(source, f"{where}.instances[{j}]", str(exc)) from None
        model = None
        if e.model is not None:
            try:
                model = get_model(e.model)
            except UnknownNameError as exc:
                raise _bad(source, f"{where}.model", str(exc)) from None
            try:
                layout_of(model, items, f"{where}.instances")
            except MigConfigError as exc:
                raise MigConfigError(f"invalid layout config {source}: {exc}") from None
        specs.append(GpuSpec(None if e.index == "all" else (int(e.index),), e.mig, tuple(items), None, e.model,
                             None, tuple((k2, tuple(v)) for k2, v in e.in_use.items()), where))
    return MigConfig(MIGSCHED, tuple(specs))


def parse_mig_parted(data: Any, source: str = "<config>") -> dict[str, MigConfig]:
    """Every named config of a mig-parted document (`version: v1`)."""
    try:
        doc = _MpFile.model_validate(data)
    except ValidationError as exc:
        raise _errors(exc, source) from None
    out = {}
    for name, groups in doc.mig_configs.items():
        specs = []
        for k, g in enumerate(groups):
            where = f"mig-configs.{name}[{k}]"
            flt = g.device_filter
            for f in ([flt] if isinstance(flt, str) else flt or []):
                if not _PCI_ID_RE.match(f):
                    raise _bad(source, f"{where}.device-filter", f"{f!r} is not a PCI device id such as '0x20B210DE'")
            for prof, _n in (g.mig_devices or {}).items():
                m = _MP_PROFILE_RE.match(prof)
                if not m:
                    raise _bad(source, f"{where}.mig-devices",
                               f"{prof!r} is not a MIG profile name such as '1g.10gb' or '1g.10gb+me'")
                if m["ci"] and m["ci"] != m["g"]:
                    raise _bad(source, f"{where}.mig-devices", f"{prof!r} asks for {m['ci']}-slice compute instances; migsched "
                               f"creates one full-size compute instance per GPU instance (write '{prof.split('.', 1)[1]}')")
            specs.append(GpuSpec(None if g.devices == "all" else tuple(g.devices), g.mig_enabled, None,
                                 None if g.mig_devices is None else tuple(g.mig_devices.items()), None,
                                 tuple(flt) if isinstance(flt, list) else flt, (), where))
        out[name] = MigConfig(MIG_PARTED, tuple(specs), name)
    return out


def parse_config(data: Any, name: str | None = None, source: str = "<config>") -> MigConfig:
    """A parsed YAML document as a `MigConfig`: migsched's (`version: 1`) or mig-parted's (`version: v1`).

    Args:
        name: the mig-parted config to select (`-c NAME`); may be omitted when there is only one.
    """
    if not isinstance(data, dict):
        raise MigConfigError(f"invalid layout config {source}: the top level must be a mapping with a version, "
                             f"got {type(data).__name__}")
    version = data.get("version")
    if version == 1 and not isinstance(version, bool):
        if name is not None:
            raise MigConfigError(f"-c {name!r} selects a mig-parted config, but {source} is a migsched layout file "
                                 "(version: 1), which has no named configs")
        return _migsched(data, source)
    if version == "v1":
        configs = parse_mig_parted(data, source)
        if name is None:
            if len(configs) == 1:
                return next(iter(configs.values()))
            raise MigConfigError(f"{source} has {len(configs)} mig-configs ({', '.join(configs)}); choose one with -c NAME")
        if name not in configs:
            raise UnknownNameError(f"mig-config of {source}", name, configs)
        return configs[name]
    raise _bad(source, "version", f"{version!r} is not a known version; valid: 1 (a migsched layout file) "
               "or v1 (a mig-parted file)")


def read_yaml(path: str | Path) -> tuple[Any, str]:
    """The parsed document at `path` ("-" reads standard input) and a name for messages."""
    source = "<stdin>" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if source == "<stdin>" else Path(path).read_text(encoding="utf-8")
        return yaml.safe_load(text), source
    except OSError as exc:
        raise MigConfigError(f"cannot read layout config {source}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise MigConfigError(f"invalid layout config {source}: not valid YAML: " + " ".join(str(exc).split())) from None


def load_config(path: str | Path, name: str | None = None) -> MigConfig:
    """Read and validate a layout config file of either format (see `parse_config`)."""
    data, source = read_yaml(path)
    return parse_config(data, name, source)


# ---- writing ----------------------------------------------------------------------------------
class _Flow(list):
    """A list YAML writes inline ([0, 1]), as mig-parted does for devices and device-filter."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def counts_of(placements: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """A profile -> count map (sorted by name) of (profile, start) pairs."""
    return tuple(sorted(Counter(n for n, _ in placements).items()))


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


# ---- placements -------------------------------------------------------------------------------
def layout_of(model: GpuModel, items: Iterable[tuple[str, int]], where: str) -> Layout:
    """The layout of explicit (profile name, start) pairs; raises naming `where` if one breaks a rule."""
    try:
        insts = [Instance(model.profile(n), int(s)) for n, s in items]
    except UnknownNameError as exc:
        raise MigConfigError(f"{where}: {exc}") from None
    lay = Layout(model, tuple(sorted(insts, key=lambda i: i.start)))
    bad = lay.violations()
    if bad:
        raise MigConfigError(f"{where}: invalid {model.name} layout {lay}: " + "; ".join(bad))
    return lay


def _room(layout: Layout) -> tuple:
    opens = [(p, s) for p in layout.model.usable_profiles() for s in p.starts if layout.fits(p, s)]
    return max(((p.compute_slices, p.memory_slices) for p, _ in opens), default=(0, 0)), len(opens)


def resolve_counts(model: GpuModel, counts: Mapping[str, int] | Iterable[tuple[str, int]],
                   where: str = "mig-devices") -> Counter[Profile]:
    """A mig-parted count map as profiles of `model` -> count (zero counts dropped, names merged)."""
    want: Counter[Profile] = Counter()
    for name, n in (counts.items() if isinstance(counts, Mapping) else counts):
        m = _MP_PROFILE_RE.match(name)
        bare = name.split(".", 1)[1] if m and m["ci"] else name  # "3c.3g.20gb" is the full-size CI
        try:
            p = model.profile(bare)
        except UnknownNameError as exc:
            raise MigConfigError(f"{where}: {exc}") from None
        want[p] += n
    return Counter({p: n for p, n in want.items() if n > 0})


def place_counts(model: GpuModel, counts: Mapping[str, int] | Iterable[tuple[str, int]],
                 current: Layout | None = None, where: str = "mig-devices") -> Layout:
    """A legal layout with exactly `counts` instances of each profile, placed explicitly.

    Among the layouts that realise the counts (all enumerated: at most a few hundred), the chosen
    one keeps, in this order: the most busy instances of `current`, the most instances of
    `current`, the largest profile still placeable and the most open placements (room for later),
    small instances at high starts (as the driver does). The choice is deterministic.

    Raises:
        MigConfigError: a name is no profile of `model`, a count exceeds its maximum, or no legal
            layout holds the counts; the message names `where`.
    """
    want = resolve_counts(model, counts, where)
    for p, n in want.items():
        if n > p.max_count:
            raise MigConfigError(f"{where}: {n} x {p.name} exceeds the {model.name} maximum of {p.max_count}")
    old = {i.key: i.busy for i in (current or ())}
    profs = sorted(want, key=lambda p: (-p.memory_slices, -p.compute_slices, p.name))
    best: tuple[tuple, Layout] | None = None

    def dfs(k: int, lay: Layout) -> None:
        nonlocal best
        if k == len(profs):
            kept = [old[i.key] for i in lay if i.key in old]
            small_high = tuple(i.start for i in sorted(
                lay, key=lambda i: (i.profile.memory_slices, i.profile.compute_slices, i.start)))
            score = (sum(kept), len(kept), _room(lay), small_high)
            if best is None or score > best[0]:
                best = (score, lay)
            return
        p = profs[k]
        for starts in itertools.combinations(lay.legal_starts(p), want[p]):
            nxt = lay
            for s in starts:
                if not nxt.fits(p, s):
                    break
                nxt = nxt.with_instance(p, s)
            else:
                dfs(k + 1, nxt)

    dfs(0, Layout.empty(model))
    if best is None:
        asked = ", ".join(f"{n} x {p.name}" for p, n in want.items())
        raise MigConfigError(f"{where}: no legal {model.name} layout holds {asked}; "
                             f"`migsched layouts {model.name}` lists the combinations that fit")
    return best[1]


def target_layout(spec: GpuSpec, model: GpuModel, current: Layout | None = None) -> Layout | None:
    """The layout `spec` asks of a GPU of `model` now in `current`; None when it wants MIG off."""
    if not spec.mig:
        return None
    if spec.placements is not None:
        return layout_of(model, spec.placements, f"{spec.where}.instances")
    return place_counts(model, spec.counts or (), current, f"{spec.where}.mig-devices")
