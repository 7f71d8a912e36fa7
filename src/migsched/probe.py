"""Job-side progress probe: a job tells the scheduler how far it is and how much memory it holds.

In a job (cheap no-op unless the scheduler exported `MIGSCHED_PROBE_FILE`):

    from migsched import probe
    for step in range(total):
        train_step()
        probe.report(step + 1, total)

For a program that cannot be changed, wrap it and parse its stdout:

    python -m migsched.probe --progress-regex 'step (\\d+)/(\\d+)' -- PROGRAM ARGS...

Why a file: the job and the scheduler share nothing else, the scheduler may restart while the job
runs, and one small JSON file, replaced atomically, is all a reader needs (the latest reading;
history is the scheduler's business). Readings are rate-limited (at most one write per
`MIN_INTERVAL_S`, but the final step is always written) so a tight training loop pays nothing.

This module imports only the standard library and never imports torch: if the job already
imported torch and CUDA is available, `report` fills in the CUDA allocator's numbers itself.

Checkpoints (jobs with `checkpoint:` in the job file, docs/checkpoint.md): `checkpoint_dir()` is
where to save (it persists across the job's attempts), `resuming()` says whether to load from it,
and `checkpoint_requested()` turns True once the scheduler sent the job's checkpoint signal:

    if probe.resuming():
        step = load(probe.checkpoint_dir())
    while step < total:
        train_step(); step += 1
        if probe.checkpoint_requested():
            save(probe.checkpoint_dir(), step)
            sys.exit(0)
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROBE_ENV = "MIGSCHED_PROBE_FILE"
RESUME_ENV = "MIGSCHED_RESUME"  # "1": load the checkpoint; "0": start from zero
CHECKPOINT_DIR_ENV = "MIGSCHED_CHECKPOINT_DIR"  # the job's checkpoint folder, kept across attempts
CHECKPOINT_SIGNAL_ENV = "MIGSCHED_CHECKPOINT_SIGNAL"  # the signal's name, e.g. "SIGTERM"
MIN_INTERVAL_S = 0.2
_last_write_s = -float("inf")
_warned = False
_checkpoint_asked = False
_watched: int | None = None


@dataclass(frozen=True, slots=True)
class ProbeReading:
    """The latest reading a job wrote.

    Attributes:
        unix_s: when it was written (seconds since the epoch).
        step: the job's own step counter.
        total: the number of steps, if the job knows it.
        progress: step / total clipped to 0..1, or None without a total.
        allocated_bytes: memory the job's allocator hands out (torch: memory_allocated).
        reserved_bytes: memory the allocator holds from the device (torch: memory_reserved).
    """

    unix_s: float
    step: float
    total: float | None
    progress: float | None
    allocated_bytes: int | None
    reserved_bytes: int | None


def _progress(step: float, total: float | None) -> float | None:
    if total is None or total <= 0:
        return None
    return min(1.0, max(0.0, step / total))


def _torch_memory() -> tuple[int | None, int | None]:
    """CUDA allocator numbers if the job already imported torch and has CUDA; never imports it."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None, None
    try:
        if not torch.cuda.is_available():
            return None, None
        return int(torch.cuda.memory_allocated()), int(torch.cuda.memory_reserved())
    except Exception:  # noqa: BLE001 - a probe must never break the job
        return None, None


def report(
    step: float,
    total: float | None = None,
    *,
    allocated_bytes: int | None = None,
    reserved_bytes: int | None = None,
) -> bool:
    """Record the job's progress; returns True when a reading was written.

    A no-op (False) when `MIGSCHED_PROBE_FILE` is unset, and when the last write was less than
    `MIN_INTERVAL_S` ago unless this is the final step (`step >= total`). Write errors are
    reported once on stderr and otherwise ignored: progress reporting must not fail a job.
    """
    global _last_write_s
    path = os.environ.get(PROBE_ENV)
    if not path:
        return False
    now_s = time.monotonic()
    final = total is not None and step >= total
    if not final and now_s - _last_write_s < MIN_INTERVAL_S:
        return False
    if allocated_bytes is None or reserved_bytes is None:
        torch_alloc, torch_reserved = _torch_memory()
        allocated_bytes = torch_alloc if allocated_bytes is None else allocated_bytes
        reserved_bytes = torch_reserved if reserved_bytes is None else reserved_bytes
    reading = {
        "unix": time.time(),
        "step": step,
        "total": total,
        "progress": _progress(step, total),
        "allocated_bytes": allocated_bytes,
        "reserved_bytes": reserved_bytes,
    }
    if not _write(Path(path), reading):
        return False
    _last_write_s = now_s
    return True


def _write(path: Path, reading: dict[str, object]) -> bool:
    global _warned
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(reading, handle)
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError) as exc:
        if not _warned:
            _warned = True
            print(f"migsched.probe: cannot write {path}: {exc}", file=sys.stderr)
        return False
    return True


def checkpoint_dir() -> Path | None:
    """Where the job saves its checkpoint (the same folder in every attempt); None outside a
    checkpointable job run by migsched."""
    path = os.environ.get(CHECKPOINT_DIR_ENV)
    return Path(path) if path else None


def resuming() -> bool:
    """True when this run should continue from the checkpoint in `checkpoint_dir()`: the previous
    attempt exited after the checkpoint signal. (If it left no checkpoint there, start from zero.)"""
    return os.environ.get(RESUME_ENV) == "1"


def watch_checkpoint() -> int:
    """Install the handler that `checkpoint_requested` reads (idempotent); returns the signal number.

    The signal is the job's `checkpoint.signal` (exported as `MIGSCHED_CHECKPOINT_SIGNAL`;
    SIGTERM outside migsched). Call it early: a signal that comes before the handler is installed
    ends the program with the signal's default action (and its progress is lost).
    """
    import signal

    global _watched
    if _watched is None:
        name = os.environ.get(CHECKPOINT_SIGNAL_ENV) or "SIGTERM"
        signum = getattr(signal, name, None)
        if not isinstance(signum, signal.Signals):
            raise ValueError(f"{CHECKPOINT_SIGNAL_ENV}={name!r} is not a signal; "
                             "use SIGTERM, SIGINT, SIGUSR1 or SIGUSR2")

        def asked(number: int, frame: object) -> None:
            global _checkpoint_asked
            _checkpoint_asked = True

        signal.signal(signum, asked)
        _watched = int(signum)
    return _watched


def checkpoint_requested() -> bool:
    """True once the scheduler asked the job to save and exit (installs the handler on first use)."""
    watch_checkpoint()
    return _checkpoint_asked


def _number(value: object, *, integer: bool = False) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    if not math.isfinite(value):  # json reads NaN and Infinity; no step or byte count is either
        raise ValueError(value)
    return int(value) if integer else value


def read_probe(path: Path) -> ProbeReading | None:
    """The latest reading at `path`, or None when it is missing, partial or malformed."""
    try:
        data = json.loads(Path(path).read_text())
        step = _number(data["step"])
        if step is None:
            return None
        return ProbeReading(
            unix_s=float(data["unix"]),
            step=step,
            total=_number(data.get("total")),
            progress=_number(data.get("progress")),
            allocated_bytes=_number(data.get("allocated_bytes"), integer=True),
            reserved_bytes=_number(data.get("reserved_bytes"), integer=True),
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError, OverflowError):
        return None


def _parse_number(text: str) -> float | int:
    return int(text) if text.lstrip("+-").isdigit() else float(text)


def main(argv: list[str] | None = None) -> int:
    """The wrapper: run PROGRAM, pass its stdout through, report progress from matching lines."""
    import argparse
    import re
    import signal
    import subprocess

    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        usage = "usage: python -m migsched.probe --progress-regex REGEX -- PROGRAM ARGS..."
        print(usage, file=sys.stderr)
        return 2
    cut = args.index("--")
    parser = argparse.ArgumentParser(prog="python -m migsched.probe")
    parser.add_argument(
        "--progress-regex",
        required=True,
        help="regex searched in each stdout line; group 1 (or the group named 'step') is the "
        "step, group 2 (or 'total') the total",
    )
    options = parser.parse_args(args[:cut])
    program = args[cut + 1 :]
    if not program:
        parser.error("a PROGRAM is needed after --")
    try:
        pattern = re.compile(options.progress_regex)
    except re.error as exc:
        parser.error(f"--progress-regex {options.progress_regex!r} is not a valid regex: {exc}")
    if pattern.groups < 1:
        parser.error(f"--progress-regex {options.progress_regex!r} needs a group for the step")

    try:
        # Own process group: a SIGTERM for the job reaches the wrapper once and the program once
        # (forwarded), not twice.
        child = subprocess.Popen(program, stdout=subprocess.PIPE, process_group=0)
    except OSError as exc:
        print(f"migsched.probe: cannot start {program[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127

    def forward(signum: int, frame: object) -> None:
        try:
            os.killpg(child.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):  # checkpoint signals too
        signal.signal(signum, forward)
    named = pattern.groupindex
    last: tuple[float | int, float | int | None] | None = None
    written = True
    assert child.stdout is not None
    out = sys.stdout.buffer
    for raw in child.stdout:
        out.write(raw)
        out.flush()
        match = pattern.search(raw.decode("utf-8", errors="replace"))
        if match is None:
            continue
        try:
            if "step" in named:  # named groups: by name only
                step_text, total_text = match.group("step"), match.groupdict().get("total")
            else:
                step_text = match.group(1)
                total_text = match.group(2) if pattern.groups >= 2 else None
            step = _parse_number(step_text)
            total = None if total_text is None else _parse_number(total_text)
        except (ValueError, IndexError):
            continue
        last = (step, total)
        written = report(step, total)
    returncode = child.wait()
    if last is not None and not written and os.environ.get(PROBE_ENV):
        # The last matching line was rate-limited away: write it now so the file ends current.
        step, total = last
        reading = {"unix": time.time(), "step": step, "total": total}
        reading |= {"progress": _progress(step, total), "allocated_bytes": None, "reserved_bytes": None}
        _write(Path(os.environ[PROBE_ENV]), reading)
    return returncode if returncode >= 0 else 128 - returncode


if __name__ == "__main__":
    sys.exit(main())
