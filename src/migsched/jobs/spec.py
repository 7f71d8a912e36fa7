"""The job file (version 1): pydantic validation at the edge, frozen `Job`s inside.

Errors name the job, the field, the bad value and what is allowed, e.g.
`job 'bfs' (jobs[2]) field model.speedup: key 5 is not allowed; keys must be among 1, 2, 3, 4, 7`.
The format is documented in docs/job-file.md.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from migsched.errors import JobFileError
from migsched.jobs.model import (
    DEFAULT_STARTUP_S,
    SPEEDUP_KEYS,
    Describe,
    Job,
    JobClass,
    JobSpec,
    TruthModel,
    interpolate_speedup,
)

MemoryShape = Literal["constant", "ramp", "linear"]


class _Strict(BaseModel):
    # allow_inf_nan=False: an infinite run time or a NaN memory point would hang or silently
    # disable the simulation instead of failing here with the job's name.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelEntry(_Strict):
    """`model:` — the simulator's ground truth for a job (ignored by real runs)."""

    runtime_s: float = Field(gt=0, description="run time on a whole 7g instance")
    speedup: dict[int, float] = Field(default_factory=lambda: {7: 1.0})
    peak_gib: float | None = Field(default=None, gt=0)
    memory: MemoryShape | list[tuple[float, float]] = "constant"
    ramp_fraction: float = Field(default=0.1, ge=0, le=1)
    start_gib: float = Field(default=0.0, ge=0)
    power_w: float = Field(default=100.0, ge=0)
    startup_s: float | None = Field(default=None, ge=0)

    @field_validator("speedup", mode="before")
    @classmethod
    def _keys(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            raise ValueError(f"must be a mapping of compute slices to speed, got {v!r}")
        out = {}
        for k, s in v.items():
            # int keys (YAML) or their decimal strings (JSON); int(1.5) or int(True) would
            # silently turn a wrong key into a legal one.
            if isinstance(k, int) and not isinstance(k, bool):
                key = k
            elif isinstance(k, str) and k.strip().isdigit():
                key = int(k)
            else:
                raise ValueError(f"key {k!r} is not an integer; keys must be among 1, 2, 3, 4, 7")
            if key not in SPEEDUP_KEYS:
                raise ValueError(f"key {key} is not allowed; keys must be among 1, 2, 3, 4, 7")
            if not isinstance(s, (int, float)) or isinstance(s, bool) or not 0 < float(s) <= 2:
                raise ValueError(f"speed {s!r} for key {key} must be a number in (0, 2]")
            out[key] = float(s)
        if 7 in out and abs(out[7] - 1.0) > 1e-9:
            raise ValueError(f"key 7 is 1.0 by definition (speeds are fractions of 7g), got {out[7]}")
        return out

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        if isinstance(v, str) and v not in ("constant", "ramp", "linear"):
            raise ValueError(f"{v!r} is not a memory shape; use constant, ramp, linear or a list of [fraction, gib] points")
        if isinstance(v, list):
            if not v:
                raise ValueError("the memory point list is empty")
            last = -1.0
            for pt in v:
                if not (isinstance(pt, (list, tuple)) and len(pt) == 2):
                    raise ValueError(f"point {pt!r} is not [fraction_of_run, gib]")
                try:
                    f, g = float(pt[0]), float(pt[1])
                except (TypeError, ValueError):
                    raise ValueError(f"point {pt!r} is not [fraction_of_run, gib] numbers") from None
                if not (math.isfinite(f) and math.isfinite(g)):
                    raise ValueError(f"point {pt!r}: fraction and memory must be finite numbers")
                if not 0 <= f <= 1 or f < last:
                    raise ValueError(f"point {pt!r}: fractions must rise from 0 to 1")
                if g < 0:
                    raise ValueError(f"point {pt!r}: memory must be >= 0 GiB")
                last = f
        return v

    @model_validator(mode="after")
    def _peak(self) -> ModelEntry:
        if isinstance(self.memory, str) and self.peak_gib is None:
            raise ValueError(f"peak_gib is required with memory: {self.memory}")
        return self

    def memory_points(self) -> tuple[tuple[float, float], ...]:
        """The memory curve as (fraction, GiB) points covering 0..1."""
        if isinstance(self.memory, list):
            pts = [(float(f), float(g)) for f, g in self.memory]
        else:
            peak = float(self.peak_gib or 0.0)
            start = min(self.start_gib, peak)
            if self.memory == "constant":
                pts = [(0.0, peak), (1.0, peak)]
            elif self.memory == "ramp":
                pts = [(0.0, start), (self.ramp_fraction, peak), (1.0, peak)]
            else:
                pts = [(0.0, start), (1.0, peak)]
        if pts[0][0] > 0:
            pts.insert(0, (0.0, pts[0][1]))
        if pts[-1][0] < 1:
            pts.append((1.0, pts[-1][1]))
        return tuple(pts)


class DescribeEntry(_Strict):
    """`describe:` — what a job says about itself (for analytic estimators)."""

    params_m: float | None = Field(default=None, gt=0)
    dtype: Literal["fp32", "fp16", "bf16", "int8", "int4"] | None = None
    optimizer: Literal["none", "sgd", "momentum", "adam", "adamw"] | None = None
    batch_size: int | None = Field(default=None, gt=0)
    layers: int | None = Field(default=None, gt=0)
    kv_heads: int | None = Field(default=None, gt=0)
    head_dim: int | None = Field(default=None, gt=0)
    context_tokens: int | None = Field(default=None, ge=0)
    generated_tokens: int | None = Field(default=None, ge=0)


class JobEntry(_Strict):
    """One entry of `jobs:`."""

    name: str = Field(min_length=1)
    class_: JobClass = Field(alias="class")
    count: int = Field(default=1, ge=1)
    arrival_s: float = Field(default=0.0, ge=0)
    hint_gib: float | None = Field(default=None, gt=0)
    reports_progress: bool = False
    family: str | None = Field(default=None, min_length=1)
    command: str | list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    describe: DescribeEntry | None = None
    model: ModelEntry | None = None


class JobFile(_Strict):
    """A whole job file: `version: 1` and a list of jobs."""

    version: Literal[1]
    jobs: list[JobEntry] = Field(min_length=1)
    # Unique names are checked in `load_jobs_dict`, which can name the entry (a model validator's
    # error has no location).


def _format_errors(exc: ValidationError, data: Any) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = "file"
        if len(loc) >= 2 and loc[0] == "jobs" and isinstance(loc[1], int):
            idx = loc[1]
            name = None
            try:
                name = data["jobs"][idx].get("name")
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
            where = f"job {name!r} (jobs[{idx}])" if name else f"jobs[{idx}]"
            loc = loc[2:]
        field = ".".join(str(x) for x in loc) or "(entry)"
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {value!r})"
        if err["type"] == "literal_error" and loc == ["version"]:
            msg = "version must be 1"
        lines.append(f"{where} field {field}: {msg}{shown}")
    return "invalid job file: " + "; ".join(lines)


def _argv(e: JobEntry, idx: int) -> tuple[str, ...] | None:
    """`command:` as an argument list: a list as given, a string split shell-style (never run by a shell)."""
    if e.command is None:
        return None
    try:
        argv = tuple(e.command) if isinstance(e.command, list) else tuple(shlex.split(e.command))
    except ValueError as exc:  # unbalanced quotes
        raise JobFileError(f"invalid job file: job {e.name!r} (jobs[{idx}]) field command: {exc} "
                           f"(got {e.command!r}); write it as a list of arguments or balance the quotes") from None
    if not argv or not argv[0].strip():
        raise JobFileError(f"invalid job file: job {e.name!r} (jobs[{idx}]) field command: it names no program "
                           f"(got {e.command!r})")
    return argv


def load_jobs_dict(data: Any, *, require_model: bool = False) -> list[Job]:
    """Validate a parsed job file and expand `count` into individual jobs.

    Args:
        data: the parsed YAML/JSON document.
        require_model: when True (simulation), every job must carry `model:`.

    Raises:
        JobFileError: the document does not validate; the message names job, field, value
            and what is allowed.
    """
    if not isinstance(data, dict):
        raise JobFileError(f"invalid job file: the top level must be a mapping with version and jobs, got {type(data).__name__}")
    try:
        doc = JobFile.model_validate(data)
    except ValidationError as exc:
        raise JobFileError(_format_errors(exc, data)) from None
    first: dict[str, int] = {}
    for idx, e in enumerate(doc.jobs):
        if e.name in first:
            raise JobFileError(f"invalid job file: job {e.name!r} (jobs[{idx}]) field name: {e.name!r} is already "
                               f"the name of jobs[{first[e.name]}]; names must be unique")
        first[e.name] = idx
    jobs: list[Job] = []
    for idx, e in enumerate(doc.jobs):
        if require_model and e.model is None:
            raise JobFileError(f"job {e.name!r} (jobs[{idx}]) field model: required to simulate (runtime_s, speedup, peak_gib, memory, power_w)")
        truth = None
        if e.model is not None:
            truth = TruthModel(
                runtime_s=e.model.runtime_s,
                speedup=interpolate_speedup(e.model.speedup),
                memory_points=e.model.memory_points(),
                power_w=e.model.power_w,
                startup_s=e.model.startup_s if e.model.startup_s is not None else DEFAULT_STARTUP_S[e.class_],
            )
        desc = Describe(**e.describe.model_dump()) if e.describe else Describe()
        for k in range(e.count):
            spec = JobSpec(
                job_id=e.name if e.count == 1 else f"{e.name}#{k}",
                name=e.name,
                job_class=e.class_,
                arrival_s=e.arrival_s,
                hint_gib=e.hint_gib,
                reports_progress=e.reports_progress,
                command=e.command if isinstance(e.command, str) else None,
                argv=_argv(e, idx),
                family=e.family or "",
                env=tuple(sorted(e.env.items())),
                cwd=e.cwd,
                describe=desc,
            )
            jobs.append(Job(spec, truth))
    return jobs


def load_jobs(path: str | Path, *, require_model: bool = False) -> list[Job]:
    """Read a YAML or JSON job file (see `load_jobs_dict`).

    Raises:
        JobFileError: the file is missing, unparsable or invalid.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise JobFileError(f"cannot read job file {str(p)!r}: {exc.strerror}") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise JobFileError(f"job file {str(p)!r} is not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
    return load_jobs_dict(data, require_model=require_model)
