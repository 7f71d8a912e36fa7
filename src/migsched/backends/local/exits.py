"""How an attempt ended: the exit record plus what the scheduler knows, as ok/oom/failed/killed.

Split out of `process.py` so that the rules that name an exit's cause (an out-of-memory message
in the stderr tail, a SIGKILL near the cap, a checkpoint signal answered within the grace
period) can be read and tested apart from the mechanics of starting and signalling processes.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from migsched.backends.local.shim import ExitRecord
from migsched.core.events import ExitStatus  # the core's own: how an attempt ended, in its terms

STDERR_TAIL_BYTES = 64 * 1024
NEAR_CAP_FRACTION = 0.9
_MIB = 1024 * 1024
# Messages that mean "ran out of memory" (case-insensitive), most specific first: the first
# pattern found names the cause.
OOM_PATTERNS = (
    "torch.cuda.OutOfMemoryError",
    "CUDA out of memory",
    "MemoryError",
    "std::bad_alloc",
    "Cannot allocate memory",
    "Memory allocation still failed",  # OpenBLAS when its buffers do not fit (measured)
    "out of memory",
)
_OOM_RES = tuple(re.compile(re.escape(p), re.IGNORECASE) for p in OOM_PATTERNS)


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """The end of an attempt.

    Attributes:
        status: ok, oom, failed or killed (stopped by the scheduler).
        returncode: the program's exit status; negative for a signal (-9 for SIGKILL).
        detail: a human reason: "exit code 3: ValueError: bad input",
            "program not found: 'nosuchprog'", "out of memory: MemoryError in stderr".
        ended_unix: when it ended (seconds since the epoch).
        checkpointed: it was asked to checkpoint and exited within the grace period.
    """

    status: ExitStatus
    returncode: int
    detail: str
    ended_unix: float
    checkpointed: bool = False


def stderr_tail(path: Path, max_bytes: int = STDERR_TAIL_BYTES) -> str:
    """The last `max_bytes` of a log, decoded leniently ("" when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify_exit(
    record: ExitRecord,
    *,
    stderr_text: str = "",
    terminated: bool = False,
    escalated: bool = False,
    grace_s: float | None = None,
    peak_memory_bytes: int = 0,
    memory_limit_bytes: int | None = None,
    checkpoint_signal: int | None = None,
) -> ExitInfo:
    """Turn an exit record into ok / oom / failed / killed with a reason.

    Order: the program could not start -> failed; the scheduler stopped it -> killed; the cgroup
    OOM killer ran -> oom; exit code 0 -> ok; an out-of-memory message in the stderr tail -> oom;
    SIGKILL while the tree was within 10% of the cap -> oom; anything else -> failed. Stopped
    with `checkpoint_signal`: any exit but the grace period's SIGKILL is killed and checkpointed.
    """

    def info(status: ExitStatus, detail: str) -> ExitInfo:
        return ExitInfo(status, record.returncode, detail, record.ended_unix)

    cap = "" if memory_limit_bytes is None else f" at the {memory_limit_bytes / _MIB:.0f} MiB cap"
    if record.spawn_error is not None:
        return info(ExitStatus.FAILED, record.spawn_error)
    if terminated:
        if escalated and record.signal == signal.SIGKILL:
            after = "" if grace_s is None else f" after the {grace_s:g} s grace period"
            lost = "; the checkpoint was not saved in time" if checkpoint_signal else ""
            return info(ExitStatus.KILLED, f"killed by SIGKILL{after}{lost}")
        if checkpoint_signal:
            how = _signal_name(record.signal) if record.signal else f"exit code {record.returncode}"
            return ExitInfo(ExitStatus.KILLED, record.returncode,
                            f"checkpointed after {_signal_name(checkpoint_signal)} ({how})", record.ended_unix, True)
        how = _signal_name(record.signal) if record.signal else f"exit code {record.returncode}"
        return info(ExitStatus.KILLED, f"stopped by the scheduler ({how})")
    if record.oom_kill:
        count = f"oom_kill {record.oom_kill}"
        return info(ExitStatus.OOM, f"out of memory: the cgroup OOM killer ran{cap} ({count})")
    if record.returncode == 0:
        return info(ExitStatus.OK, "exit code 0")
    match = next((m for m in (rx.search(stderr_text) for rx in _OOM_RES) if m is not None), None)
    if match is not None:
        return info(ExitStatus.OOM, f"out of memory: {match.group(0)} in stderr")
    if (
        record.signal == signal.SIGKILL
        and memory_limit_bytes is not None
        and peak_memory_bytes >= NEAR_CAP_FRACTION * memory_limit_bytes
    ):
        peak = f" (peak {peak_memory_bytes / _MIB:.0f} MiB)"
        return info(ExitStatus.OOM, f"out of memory: killed by signal 9{cap}{peak}")
    if record.signal is not None:
        name = _signal_name(record.signal)
        return info(ExitStatus.FAILED, f"killed by signal {record.signal} ({name})")
    lines = [line for line in stderr_text.splitlines() if line.strip()]
    last = f": {lines[-1].strip()[:200]}" if lines else ""
    return info(ExitStatus.FAILED, f"exit code {record.returncode}{last}")
