"""The job file's entries as pydantic models: what every field may hold, and its bound.

Split out of `spec.py` (which formats the errors and turns a validated file into frozen
`Job`s) so the schema can be read on its own. Bounds come from `migsched.limits` and are
documented in docs/job-file.md; numbers are strict (no strings or booleans) and finite.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from migsched.jobs.model import CHECKPOINT_SIGNALS, SPEEDUP_KEYS, JobClass
from migsched.limits import (
    MAX_DESCRIBE_COUNT,
    MAX_ENV_VARS,
    MAX_JOBS,
    MAX_MEMORY_GIB,
    MAX_MEMORY_POINTS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    MAX_TIME_S,
)

MemoryShape = Literal["constant", "ramp", "linear"]

# Strict numbers with their bounds (docs/job-file.md, Limits). `strict`: no strings or booleans.
Seconds = Annotated[float, Field(strict=True, ge=0, le=MAX_TIME_S)]
Gib = Annotated[float, Field(strict=True, gt=0, le=MAX_MEMORY_GIB)]
Count = Annotated[int, Field(strict=True, gt=0, le=MAX_DESCRIBE_COUNT)]
Text = Annotated[str, Field(strict=True, max_length=MAX_TEXT_CHARS)]
Name = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_NAME_CHARS)]


@lru_cache(maxsize=1)
def max_power_w() -> tuple[float, str]:
    """The largest dynamic power (max_w - idle_w) of any catalogued GPU, and which GPU it is."""
    from migsched.hardware.catalog import all_models

    best = max(all_models(), key=lambda m: m.max_w - m.idle_w)
    return float(best.max_w - best.idle_w), f"{best.name}: {best.max_w:g} W board limit - {best.idle_w:g} W idle"


def _number(v: Any) -> bool:
    """True for an int or float that is not a bool (YAML `true` is no number)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Strict(BaseModel):
    # allow_inf_nan=False: an infinite run time or a NaN memory point would hang or silently
    # disable the simulation instead of failing here with the job's name.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelEntry(_Strict):
    """`model:` — the simulator's ground truth for a job (ignored by real runs)."""

    runtime_s: float = Field(strict=True, gt=0, le=MAX_TIME_S, description="run time on a whole 7g instance")
    speedup: dict[int, float] = Field(default_factory=lambda: {7: 1.0})
    peak_gib: Gib | None = None
    memory: MemoryShape | list[tuple[float, float]] = "constant"
    ramp_fraction: float = Field(default=0.1, strict=True, ge=0, le=1)
    start_gib: float = Field(default=0.0, strict=True, ge=0, le=MAX_MEMORY_GIB)
    power_w: float = Field(default=100.0, strict=True, ge=0)
    startup_s: Seconds | None = None

    @field_validator("power_w")
    @classmethod
    def _power(cls, v: float) -> float:
        top, which = max_power_w()
        if v > top:
            raise ValueError(f"{v:g} W is more dynamic power than any catalogued GPU has ({top:g} W, {which}); "
                             f"valid range 0..{top:g} W")
        return v
    checkpoint_save_s: float | None = Field(default=None, ge=0, le=24 * 3600)

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
            if key in out:
                raise ValueError(f"key {key} is given twice (as {k!r} and an earlier spelling)")
            if not _number(s) or not 0 < s <= 2:  # compared as given: float(10**400) would raise
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
            if len(v) > MAX_MEMORY_POINTS:
                raise ValueError(f"{len(v)} points are more than the limit of {MAX_MEMORY_POINTS}")
            last = -1.0
            for pt in v:
                if not (isinstance(pt, (list, tuple)) and len(pt) == 2):
                    raise ValueError(f"point {pt!r} is not [fraction_of_run, gib]")
                if not (_number(pt[0]) and _number(pt[1])):
                    raise ValueError(f"point {pt!r} is not [fraction_of_run, gib] numbers")
                if not (math.isfinite(pt[0]) and math.isfinite(pt[1])):
                    raise ValueError(f"point {pt!r}: fraction and memory must be finite numbers")
                f, g = pt
                if not 0 <= f <= 1 or f < last:
                    raise ValueError(f"point {pt!r}: fractions must rise from 0 to 1")
                if not 0 <= g <= MAX_MEMORY_GIB:
                    raise ValueError(f"point {pt!r}: memory must be in 0..{MAX_MEMORY_GIB:g} GiB")
                last = float(f)
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

    params_m: Annotated[float, Field(strict=True, gt=0, le=MAX_DESCRIBE_COUNT)] | None = None
    dtype: Literal["fp32", "fp16", "bf16", "int8", "int4"] | None = None
    optimizer: Literal["none", "sgd", "momentum", "adam", "adamw"] | None = None
    batch_size: Count | None = None
    layers: Count | None = None
    kv_heads: Count | None = None
    head_dim: Count | None = None
    context_tokens: Annotated[int, Field(strict=True, ge=0, le=MAX_DESCRIBE_COUNT)] | None = None
    generated_tokens: Annotated[int, Field(strict=True, ge=0, le=MAX_DESCRIBE_COUNT)] | None = None


MAX_CHECKPOINT_S = 3600.0  # an hour to save or to load a checkpoint is a mistake, not a plan


class CheckpointEntry(_Strict):
    """`checkpoint:` — the program saves its state on `signal` and resumes from it (docs/checkpoint.md)."""

    signal: Literal[CHECKPOINT_SIGNALS] = "SIGTERM"  # type: ignore[valid-type]
    grace_s: float = Field(default=30.0, gt=0, le=MAX_CHECKPOINT_S)
    resume_s: float = Field(default=0.0, ge=0, le=MAX_CHECKPOINT_S)


class JobEntry(_Strict):
    """One entry of `jobs:`."""

    name: Name
    class_: JobClass = Field(alias="class")
    count: int = Field(default=1, strict=True, ge=1, le=MAX_JOBS)
    arrival_s: Seconds = 0.0
    hint_gib: Gib | None = None
    reports_progress: StrictBool = False
    family: Name | None = None
    command: Text | list[Text] | None = None
    env: dict[Annotated[str, Field(strict=True, min_length=1, max_length=MAX_NAME_CHARS)], Text] = Field(
        default_factory=dict, max_length=MAX_ENV_VARS)
    cwd: Text | None = None
    describe: DescribeEntry | None = None
    model: ModelEntry | None = None
    checkpoint: CheckpointEntry | None = None

    @field_validator("class_", mode="before")
    @classmethod
    def _class(cls, v: Any) -> Any:
        if not isinstance(v, str):  # JobClass(True) or JobClass(3) must not be tried
            raise ValueError(f"must be one of {', '.join(c.value for c in JobClass)}")
        return v

    @field_validator("command")
    @classmethod
    def _command_size(cls, v: str | list[str] | None) -> str | list[str] | None:
        total = len(v) if isinstance(v, str) else sum(len(a) + 1 for a in v or ())
        if total > MAX_TEXT_CHARS:
            raise ValueError(f"the command is {total} characters long; the limit is {MAX_TEXT_CHARS}")
        if any("\0" in a for a in ([v] if isinstance(v, str) else v or ())):
            raise ValueError("the command holds a NUL character, which no program can be given")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        # What the OS refuses at launch (execve): caught here, not after ten failed starts.
        for name, value in v.items():
            if "=" in name or "\0" in name:
                raise ValueError(f"environment variable name {name[:40]!r} holds '=' or a NUL character; "
                                 "a name is the part before '=' (e.g. CUDA_VISIBLE_DEVICES)")
            if "\0" in value:
                raise ValueError(f"the value of environment variable {name[:40]!r} holds a NUL character")
        return v

    @field_validator("cwd")
    @classmethod
    def _cwd(cls, v: str | None) -> str | None:
        if v is not None and "\0" in v:
            raise ValueError("the working directory holds a NUL character")
        return v


class JobFile(_Strict):
    """A whole job file: `version: 1` and a list of jobs."""

    version: int = Field(strict=True)
    jobs: list[JobEntry] = Field(min_length=1, max_length=MAX_JOBS)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        # The integer 1 only: `1.0`, `"1"` and `true` (== 1 in Python) are other types.
        if type(v) is not int or v != 1:
            raise ValueError("version must be 1, the integer (not 1.0, \"1\" or true)")
        return v
    # Unique names are checked in `load_jobs_dict`, which can name the entry (a model validator's
    # error has no location).
