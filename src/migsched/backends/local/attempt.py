"""An attempt of a local (or nvml) job as the backend tracks it, and how it is found again.

`Attempt` is what a backend keeps per running job. A restarted scheduler finds an attempt's
supervisor by the pid file written at launch (`<stem>.pid.json`: pid and psutil create time) or,
when the scheduler died before writing it, by the attempt's exit-record path on the shim's
command line (`find_shim`). Split out of `backend.py`, which maps these onto events.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

from migsched.backends.local.process import ManagedProcess, ProcessSpec
from migsched.core.sampling import SampleCursor
from migsched.hardware.catalog import Profile
from migsched.jobs.model import CheckpointSpec
from migsched.probe import read_probe


@dataclass(slots=True)
class Attempt:
    """One running attempt as a backend tracks it: its process, instance, sampling and power.

    Public because the nvml backend (which reuses the local process machinery) reads it.
    """

    proc: ManagedProcess
    gpu: int
    start: int
    profile: Profile
    launched_s: float
    next_sample_s: float
    power_w: float
    attempt: int
    checkpoint: CheckpointSpec | None = None
    cursor: SampleCursor | None = None  # its memory samples (core.sampling); None: not sampled


def last_progress(pspec: ProcessSpec) -> float | None:
    """The job's last progress report (what a checkpoint it saved on exit holds), if any."""
    reading = read_probe(pspec.probe_path)
    return None if reading is None else reading.progress


def pidfile_path(pspec: ProcessSpec) -> Path:
    """Where the pid and create time of an attempt's supervisor are written at launch."""
    return pspec.log_dir / f"{pspec.file_stem}.pid.json"


def write_pidfile(pspec: ProcessSpec, proc: ManagedProcess) -> None:
    """Record the supervisor's pid and create time atomically (mode 0o600) for `recover`."""
    path = pidfile_path(pspec)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"pid": proc.pid, "create_time": proc.create_time}, fh)
    os.replace(tmp, path)


def read_pidfile(pspec: ProcessSpec) -> tuple[int, float] | None:
    """The (pid, create time) `write_pidfile` left; None when missing or unreadable."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads(pidfile_path(pspec).read_text())
        return int(data["pid"]), float(data["create_time"])
    return None


def find_shim(pspec: ProcessSpec) -> tuple[int, float] | None:
    """A supervisor of this very attempt (its exit-record path is on its command line): covers a
    scheduler killed between starting the process and writing down its pid."""
    target = str(pspec.exit_path)
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        with contextlib.suppress(psutil.Error, TypeError):
            cmd = proc.info["cmdline"] or []
            if "migsched.backends.local.shim" in cmd and target in cmd:
                return proc.pid, proc.info["create_time"]
    return None
