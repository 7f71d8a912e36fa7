"""Load the workload catalogue (`catalog.yaml`) into frozen templates and turn them into job entries.

A *template* is a named, calibrated job: its simulation ground truth (`model`), what it says about
itself (`describe`), the hint a static estimator would give (`hint_gib`), and where every number
comes from (`source`, plus `guess`, the fields that are guesses). `to_job_entry` turns a template
into one entry of a version-1 job file (docs/job-file.md), as a plain dict ready for YAML/JSON.

The catalogue is package data read through `importlib.resources`, so nothing outside the installed
package is read at run time. Where a number came from is documented in docs/workloads.md.

    >>> from migsched.workloads import get_template, to_job_entry
    >>> t = get_template("bfs-graph32M")
    >>> t.kind, t.peak_gib
    ('memory', 1.62)
    >>> to_job_entry(t, name="bfs-000")["name"]
    'bfs-000'
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

import yaml

from migsched.errors import UnknownNameError

JOB_CLASSES = ("scientific", "ml-train", "ml-infer", "llm")
KINDS = ("compute", "memory")
SIZES = ("small", "large")
SPEEDUP_KEYS = (1, 2, 3, 4, 7)
MEMORY_SHAPES = ("constant", "ramp", "linear")

# Fields of a job entry that `to_job_entry` may override (the job-file format, version 1).
ENTRY_FIELDS = (
    "name", "class", "count", "arrival_s", "hint_gib", "reports_progress", "command", "describe", "model",
)
_MODEL_FIELDS = ("runtime_s", "speedup", "peak_gib", "memory", "ramp_fraction", "start_gib", "power_w", "startup_s")


def _freeze(value: Any) -> Any:
    """Read-only view of nested mappings/lists, so a shared template cannot be changed by accident."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Plain dicts and lists again (what YAML/JSON dumpers and pydantic expect)."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Template:
    """One named workload of the catalogue.

    Attributes:
        name: unique template name, e.g. "bfs-graph32M".
        job_class: scientific | ml-train | ml-infer | llm (the job file's `class`).
        kind: compute (speed scales with the slice) or memory (barely slows down on small slices).
        family: where it comes from: rodinia, miso, njit, spcl, nos, llm.
        size: small | large within its family (used by the mix generators).
        source: where the numbers come from (names in `sources`, calibration.md sections).
        guess: dotted names of the fields whose values are guesses.
        hint_gib: the default hint a static estimator would give (None: no hint).
        reports_progress: the job reports its progress fraction.
        command: shell command for real runs (None where no public harness exists).
        describe: what the job says about itself (params_m, dtype, ...), read-only.
        model: simulation ground truth, complete (runtime_s filled in from `timing`), read-only.
        timing: {step_s, steps} the runtime was computed from, or None.
        peak_calc: how the peak was computed from the input size, or "".
    """

    name: str
    job_class: str
    kind: str
    family: str
    size: str
    source: str
    guess: tuple[str, ...]
    hint_gib: float | None
    reports_progress: bool
    command: str | None
    describe: Mapping[str, Any] = field(hash=False)
    model: Mapping[str, Any] = field(hash=False)
    timing: Mapping[str, float] | None = field(default=None, hash=False)
    peak_calc: str = ""

    @property
    def runtime_s(self) -> float:
        """Run time on a whole 7g instance, seconds."""
        return float(self.model["runtime_s"])

    @property
    def peak_gib(self) -> float:
        """True peak memory demand, GiB."""
        return float(self.model["peak_gib"])

    @property
    def start_gib(self) -> float:
        """Memory at the start of the run (ramp/linear shapes), GiB; the peak for constant ones."""
        if self.model["memory"] == "constant":
            return self.peak_gib
        return float(self.model.get("start_gib", 0.0))

    @property
    def speedup(self) -> dict[int, float]:
        """Fraction of 7g speed per compute-slice count."""
        return {int(k): float(v) for k, v in self.model["speedup"].items()}

    @property
    def power_w(self) -> float:
        """Dynamic power above idle alone on the whole GPU, W."""
        return float(self.model["power_w"])

    @property
    def speed_1g(self) -> float:
        """Fraction of 7g speed on a single compute slice."""
        return self.speedup[1]

    def is_guess(self, dotted: str) -> bool:
        """True when `dotted` (e.g. "model.peak_gib") or a parent of it is listed in `guess`."""
        return any(dotted == g or dotted.startswith(g + ".") for g in self.guess)


def _fail(name: str, msg: str) -> ValueError:
    return ValueError(f"workload catalogue: template {name!r}: {msg}")


def _check_speedup(name: str, speedup: Any) -> dict[int, float]:
    if not isinstance(speedup, Mapping) or not speedup:
        raise _fail(name, "model.speedup must be a non-empty mapping")
    out: dict[int, float] = {}
    for k, v in speedup.items():
        if int(k) not in SPEEDUP_KEYS:
            raise _fail(name, f"model.speedup key {k!r} not among {SPEEDUP_KEYS}")
        if not 0 < float(v) <= 1.2:
            raise _fail(name, f"model.speedup[{k}] = {v!r} is outside (0, 1.2]")
        out[int(k)] = float(v)
    if out.get(7, 1.0) != 1.0:
        raise _fail(name, "model.speedup[7] must be 1.0 (speeds are fractions of 7g)")
    return out


def _build(raw: Mapping[str, Any]) -> Template:
    """Validate one raw YAML template and fill in derived fields (runtime_s from timing)."""
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"workload catalogue: template without a name: {raw!r}")
    job_class = raw.get("class")
    if job_class not in JOB_CLASSES:
        raise _fail(name, f"class {job_class!r} not among {JOB_CLASSES}")
    if raw.get("kind") not in KINDS:
        raise _fail(name, f"kind {raw.get('kind')!r} not among {KINDS}")
    if raw.get("size") not in SIZES:
        raise _fail(name, f"size {raw.get('size')!r} not among {SIZES}")
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise _fail(name, "source is required")
    model = dict(raw.get("model") or {})
    unknown = set(model) - set(_MODEL_FIELDS)
    if unknown:
        raise _fail(name, f"unknown model fields {sorted(unknown)}")
    timing = raw.get("timing")
    if timing is not None:
        if "runtime_s" in model:
            raise _fail(name, "give either timing or model.runtime_s, not both")
        model["runtime_s"] = round(float(timing["step_s"]) * float(timing["steps"]), 1)
    if not float(model.get("runtime_s", 0)) > 0:
        raise _fail(name, "model.runtime_s (or timing) must be > 0")
    model = {"runtime_s": float(model.pop("runtime_s")), **model}  # runtime first, as in the job-file docs
    model["speedup"] = _check_speedup(name, model.get("speedup"))
    if not float(model.get("peak_gib", 0)) > 0:
        raise _fail(name, "model.peak_gib must be > 0")
    if model.get("memory") not in MEMORY_SHAPES:
        raise _fail(name, f"model.memory {model.get('memory')!r} not among {MEMORY_SHAPES}")
    if "start_gib" in model and float(model["start_gib"]) > float(model["peak_gib"]):
        raise _fail(name, "model.start_gib exceeds model.peak_gib")
    hint = raw.get("hint_gib")
    return Template(
        name=name,
        job_class=job_class,
        kind=raw["kind"],
        family=str(raw.get("family", "")),
        size=raw["size"],
        source=source.strip(),
        guess=tuple(str(g) for g in raw.get("guess") or ()),
        hint_gib=None if hint is None else float(hint),
        reports_progress=bool(raw.get("reports_progress", False)),
        command=raw.get("command"),
        describe=_freeze(raw.get("describe") or {}),
        model=_freeze(model),
        timing=None if timing is None else _freeze(dict(timing)),
        peak_calc=str(raw.get("peak_calc", "")),
    )


@functools.cache
def _load() -> tuple[tuple[Template, ...], Mapping[str, Any], Mapping[str, str]]:
    text = resources.files("migsched.workloads").joinpath("catalog.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise ValueError("workload catalogue: catalog.yaml must be a mapping with version: 1")
    templates = tuple(_build(raw) for raw in doc.get("templates") or ())
    names = [t.name for t in templates]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"workload catalogue: duplicate template names {dupes}")
    return templates, _freeze(doc.get("constants") or {}), _freeze(doc.get("sources") or {})


def list_templates(job_class: str | None = None, family: str | None = None) -> list[Template]:
    """All templates in catalogue order, optionally only one class and/or family.

    Raises:
        UnknownNameError: `job_class` or `family` is not known.
    """
    templates = _load()[0]
    if job_class is not None and job_class not in JOB_CLASSES:
        raise UnknownNameError("job class", job_class, JOB_CLASSES)
    families = sorted({t.family for t in templates})
    if family is not None and family not in families:
        raise UnknownNameError("workload family", family, families)
    return [
        t for t in templates
        if (job_class is None or t.job_class == job_class) and (family is None or t.family == family)
    ]


def template_names() -> list[str]:
    """Names of all templates, in catalogue order."""
    return [t.name for t in _load()[0]]


def get_template(name: str) -> Template:
    """Look a template up by name (exact match first, then case-insensitive).

    Raises:
        UnknownNameError: no template has that name; the message lists the valid names.
    """
    templates = _load()[0]
    for t in templates:
        if t.name == name:
            return t
    folded = name.casefold() if isinstance(name, str) else name
    for t in templates:
        if t.name.casefold() == folded:
            return t
    raise UnknownNameError("workload", name, [t.name for t in templates])


def catalog_constants() -> Mapping[str, Any]:
    """The shared constants the catalogue's numbers were computed with (context GiB, idle W, ...)."""
    return _load()[1]


def catalog_sources() -> Mapping[str, str]:
    """The upstream sources the templates cite, by short name (MISO, SPCL, NJIT, ...)."""
    return _load()[2]


def to_job_entry(template: Template | str, **overrides: Any) -> dict[str, Any]:
    """One job-file entry (version 1) for `template`, as a plain dict.

    `overrides` replace top-level fields (name, count, arrival_s, hint_gib, command, ...); a dict
    given for `model` or `describe` is merged into the template's. `None` drops an optional field.

    Raises:
        UnknownNameError: an override names a field the job file does not have, or the template
            name is unknown.
    """
    t = get_template(template) if isinstance(template, str) else template
    for key in overrides:
        if key not in ENTRY_FIELDS:
            raise UnknownNameError("job field", key, ENTRY_FIELDS)
    entry: dict[str, Any] = {
        "name": t.name,
        "class": t.job_class,
        "count": 1,
        "arrival_s": 0.0,
    }
    if t.hint_gib is not None:
        entry["hint_gib"] = t.hint_gib
    entry["reports_progress"] = t.reports_progress
    if t.command:
        entry["command"] = t.command
    if t.describe:
        entry["describe"] = _thaw(t.describe)
    entry["model"] = _thaw(t.model)
    for key, value in overrides.items():
        if key in ("model", "describe") and isinstance(value, Mapping):
            merged = entry.get(key, {})
            merged.update(copy.deepcopy(dict(value)))
            entry[key] = merged
        elif value is None:
            entry.pop(key, None)
        else:
            entry[key] = copy.deepcopy(value)
    return entry
