"""`JobSpec` <-> JSON-safe dict, for the run store (and anything else that writes specs as JSON).

The dict holds every field of the spec, so `spec_from_dict(spec_to_dict(s)) == s`; tuples become
lists (`env` a list of [name, value] pairs, keeping its order) and the class its string value.
Decoding is the edge where a file's contents come back in, so it is validated (pydantic, unknown
keys rejected) and errors name the field and the value.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from migsched.jobs.model import CheckpointSpec, Describe, JobClass, JobSpec
from migsched.store.rows import StoreError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class _DescribeDoc(_Strict):
    params_m: float | None = None
    dtype: str | None = None
    optimizer: str | None = None
    batch_size: int | None = None
    layers: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    context_tokens: int | None = None
    generated_tokens: int | None = None


class _CheckpointDoc(_Strict):
    signal: str
    grace_s: float
    resume_s: float


class _SpecDoc(_Strict):
    job_id: str
    name: str
    class_: JobClass = Field(alias="class", strict=False)  # its string value from JSON
    family: str
    arrival_s: float = 0.0
    hint_gib: float | None = None
    reports_progress: bool = False
    command: str | None = None
    argv: list[str] | None = None
    env: list[tuple[str, str]] = Field(default_factory=list)
    cwd: str | None = None
    describe: _DescribeDoc = Field(default_factory=_DescribeDoc)
    checkpoint: _CheckpointDoc | None = None  # absent in stores written before checkpoints


def _finite(where: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise StoreError(f"job spec field {where}: {value!r} cannot be stored; it must be a finite number")


def spec_to_dict(spec: JobSpec) -> dict[str, Any]:
    """The spec as a dict of JSON types only (str, int, float, bool, None, list, dict).

    Raises:
        StoreError: a number field is NaN or infinite (JSON has no such numbers).
    """
    _finite("arrival_s", spec.arrival_s)
    _finite("hint_gib", spec.hint_gib)
    describe = {k: v for k, v in asdict(spec.describe).items() if v is not None}
    _finite("describe.params_m", describe.get("params_m"))
    return {
        "job_id": spec.job_id,
        "name": spec.name,
        "class": spec.job_class.value,
        "family": spec.family,
        "arrival_s": spec.arrival_s,
        "hint_gib": spec.hint_gib,
        "reports_progress": spec.reports_progress,
        "command": spec.command,
        "argv": None if spec.argv is None else list(spec.argv),
        "env": [[k, v] for k, v in spec.env],
        "cwd": spec.cwd,
        "describe": describe,
        "checkpoint": None if spec.checkpoint is None else asdict(spec.checkpoint),
    }


def spec_from_dict(data: Any) -> JobSpec:
    """The `JobSpec` that `spec_to_dict` wrote (also after a JSON round trip).

    Raises:
        StoreError: `data` is not such a dict; the message names the field and the bad value.
    """
    if isinstance(data, dict) and isinstance(data.get("env"), list):
        # JSON has no tuples: accept [name, value] lists for the pairs (strict mode would not)
        data = {**data, "env": [tuple(p) if isinstance(p, list) else p for p in data["env"]]}
    try:
        doc = _SpecDoc.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(x) for x in err["loc"]) or "(spec)"
            problems.append(f"field {field}: {err['msg']} (got {err.get('input')!r})")
        raise StoreError("stored job spec does not decode: " + "; ".join(problems)) from None
    return JobSpec(
        job_id=doc.job_id,
        name=doc.name,
        job_class=doc.class_,
        family=doc.family,
        arrival_s=doc.arrival_s,
        hint_gib=doc.hint_gib,
        reports_progress=doc.reports_progress,
        command=doc.command,
        argv=None if doc.argv is None else tuple(doc.argv),
        env=tuple((k, v) for k, v in doc.env),
        cwd=doc.cwd,
        describe=Describe(**doc.describe.model_dump()),
        checkpoint=None if doc.checkpoint is None else CheckpointSpec(**doc.checkpoint.model_dump()),
    )
