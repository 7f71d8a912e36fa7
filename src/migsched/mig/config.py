"""MIG layout configs: migsched's own file (`version: 1`) and mig-parted's (`version: v1`).

migsched's file gives every GPU its instances with explicit placements
(`{index: 0, model: A100-40GB, mig: true, instances: ["3g.20gb@4", "2g.10gb@0"]}`, or `index: all`);
mig-parted's (https://github.com/NVIDIA/mig-parted, `api/spec/v1`; mig-hardware.md §6.3) names
configs, each a list of device groups with a profile -> count map. Both are read here into one frozen
`MigConfig` (`spec.py`; pydantic only validates the files), written back unchanged by
`render.py` (`dump_config`, `dump_mig_parted`), and turned into layouts by `placement.py`
(`place_counts` turns a count map into explicit placements, deterministically, keeping busy and
then other existing instances where it can). Those names are re-exported here. Errors name the
field, the value and what is allowed. The formats are documented in docs/mig-ops.md.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator, model_validator

from migsched.errors import UnknownNameError
from migsched.hardware.catalog import get_model
from migsched.mig.placement import counts_of, layout_of, place_counts, resolve_counts, target_layout
from migsched.mig.render import dump_config, dump_mig_parted, to_mig_parted
from migsched.mig.spec import MIG_PARTED, MIGSCHED, MP_PROFILE_RE, GpuSpec, MigConfig, MigConfigError

__all__ = [
    "MIGSCHED", "MIG_PARTED", "GpuSpec", "MigConfig", "MigConfigError",
    "counts_of", "dump_config", "dump_mig_parted", "layout_of", "load_config", "parse_config",
    "parse_item", "parse_mig_parted", "place_counts", "read_yaml", "resolve_counts", "target_layout",
    "to_mig_parted",
]

_ITEM_RE = re.compile(r"^\s*(?P<name>[^@\s]+)\s*@\s*(?P<start>\d+)\s*$")
_PCI_ID_RE = re.compile(r"^0x[0-9a-f]{4}(?:[0-9a-f]{4})?$", re.IGNORECASE)


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
                m = MP_PROFILE_RE.match(prof)
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
