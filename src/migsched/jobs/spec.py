"""The job file (version 1): pydantic validation at the edge, frozen `Job`s inside.

Errors name the job, the field, the bad value and what is allowed, e.g.
`job 'bfs' (jobs[2]) field model.speedup: key 5 is not allowed; keys must be among 1, 2, 3, 4, 7`.
The format, and the bound of every field (`migsched.limits`), is documented in docs/job-file.md;
the schema itself (the pydantic entries) is in `entries.py`.

Types are strict where a wrong type would pass silently: numbers must be numbers (`"10"` and
`true` are not), whole numbers must be integers (`count: 2.0` is not), `version` is the integer 1
(not `1.0`, `"1"` or `true`), flags are booleans and text is text. Every number is finite and
within its documented bound; nothing is clamped.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from migsched.errors import JobFileError
from migsched.jobs.entries import (  # re-exported: the schema lived here before
    MAX_CHECKPOINT_S,
    CheckpointEntry,
    DescribeEntry,
    JobEntry,
    JobFile,
    ModelEntry,
    max_power_w,
)
from migsched.jobs.model import (
    DEFAULT_STARTUP_S,
    CheckpointSpec,
    Describe,
    Job,
    JobSpec,
    TruthModel,
    interpolate_speedup,
)
from migsched.jobs.yaml_io import parse_document, read_text
from migsched.limits import MAX_JOBS

__all__ = [
    "MAX_CHECKPOINT_S", "CheckpointEntry", "DescribeEntry", "JobEntry", "JobFile", "ModelEntry",
    "load_jobs", "load_jobs_dict", "max_power_w",
]


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
        kind = err["type"]
        hint = ""
        if kind in ("int_type", "float_type", "bool_type") and isinstance(value, str):
            hint = ", a string: write numbers and true/false without quotes"
        elif kind == "int_type" and isinstance(value, float):
            hint = ": write a whole number without a decimal point"
        elif kind == "less_than_equal":
            hint = ": the bound is documented in docs/job-file.md, Limits"
        shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {_short(value)}{hint})"
        lines.append(f"{where} field {field}: {msg}{shown}")
        if len(lines) == _MAX_ERRORS_SHOWN and len(exc.errors()) > _MAX_ERRORS_SHOWN:
            lines.append(f"and {len(exc.errors()) - _MAX_ERRORS_SHOWN} more problems")
            break
    return "invalid job file: " + "; ".join(lines)


_MAX_ERRORS_SHOWN = 20  # a 100,000-job file with one mistake repeated must not print 100,000 lines


def _short(value: Any) -> str:
    """`repr(value)`, cut to 80 characters: a message quotes the bad value, not a whole file."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _what(data: Any) -> str:
    """What a parsed document is, in words: "nothing (the document is empty)", "a list", ..."""
    if data is None:
        return "nothing (the document is empty)"
    names = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}
    return names.get(type(data), f"a {type(data).__name__}")


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
        raise JobFileError(f"invalid job file: the top level must be a mapping with version and jobs, got {_what(data)}")
    try:
        doc = JobFile.model_validate(data)
    except ValidationError as exc:
        raise JobFileError(_format_errors(exc, data)) from None
    total = sum(e.count for e in doc.jobs)  # before expanding: `count: 10**9` must not allocate
    if total > MAX_JOBS:
        biggest = max(range(len(doc.jobs)), key=lambda i: doc.jobs[i].count)
        raise JobFileError(f"invalid job file: the batch expands to {total:,} jobs (count summed over "
                           f"{len(doc.jobs)} entries; the largest is {doc.jobs[biggest].name!r} (jobs[{biggest}]) with "
                           f"count {doc.jobs[biggest].count:,}); the limit is {MAX_JOBS:,} jobs (docs/job-file.md)")
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
                checkpoint_save_s=e.model.checkpoint_save_s,
            )
        desc = Describe(**e.describe.model_dump()) if e.describe else Describe()
        ckpt = CheckpointSpec(**e.checkpoint.model_dump()) if e.checkpoint else None
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
                checkpoint=ckpt,
            )
            jobs.append(Job(spec, truth))
    return jobs


def load_jobs(path: str | Path, *, require_model: bool = False) -> list[Job]:
    """Read a YAML or JSON job file (see `load_jobs_dict`).

    Raises:
        JobFileError: the file is missing, larger than `MAX_FILE_BYTES`, not UTF-8, empty,
            unparsable (or names a key twice) or invalid; the message names the path.
    """
    p = Path(path)
    text = read_text(p, "job file")
    data = parse_document(text, p, "job file") if text.strip() else None
    if data is None:
        raise JobFileError(f"job file {str(p)!r} is empty; it needs `version: 1` and a list of jobs "
                           "(docs/job-file.md)")
    try:
        return load_jobs_dict(data, require_model=require_model)
    except JobFileError as exc:
        msg = str(exc)
        head = "invalid job file: "
        raise JobFileError(f"invalid job file {str(p)!r}: {msg.removeprefix(head)}" if msg.startswith(head)
                           else f"job file {str(p)!r}: {msg}") from None
