"""The per-attempt supervisor of the local backend.

Usage (the backend starts it with `start_new_session=True`):

    python -m migsched.backends.local.shim --exit-file PATH [--mem-limit-bytes N]
        [--cpus 0,1] [--cgroup DIR] [--cwd DIR] -- PROGRAM ARGS...

Why a shim: the scheduler may be SIGKILLed while jobs run. The shim leads its own session, so it
outlives the scheduler, waits for the job and leaves an exit record that a restarted scheduler
reads (`ExitRecord`). It also applies the emulated instance's limits to the job: the memory cap
(a cgroup v2 attempt cgroup, or RLIMIT_DATA, see `memcap`) and the CPU affinity.

Process groups: the program runs in a process group of its own (pgid = its pid), apart from the
shim's, so the backend can signal the job's tree without hitting the shim (which must survive a
SIGKILL of the job to write the record). A SIGTERM or SIGINT sent to the shim is forwarded to the
job's group. The shim is a child subreaper: processes the job orphans are re-parented to it, and
all that remain when the program ends are killed, as a GPU instance is freed only when every
process on it is gone.

The program is started from an argv list, never through a shell. Its stdout and stderr are the
files the shim inherited (the backend opens them).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from migsched.backends.local import memcap

SPAWN_FAILED_RC = 127
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True, slots=True)
class ExitRecord:
    """What the shim writes when the program ends (JSON, written atomically, mode 0o600).

    Attributes:
        returncode: the program's exit status as `subprocess` reports it: negative when a signal
            ended it (-9 for SIGKILL); 127 when it could not be started.
        signal: the signal that ended it, or None.
        ended_unix: wall-clock time of the end (seconds since the epoch).
        oom_kill: the attempt cgroup's `memory.events` oom_kill count; None without a cgroup.
        spawn_error: why the program could not be started (names the program), else None.
    """

    returncode: int
    signal: int | None
    ended_unix: float
    oom_kill: int | None = None
    spawn_error: str | None = None

    def write(self, path: Path) -> None:
        """Write atomically: a reader sees the old file, no file, or the whole record."""
        payload = {k: v for k, v in asdict(self).items() if k != "spawn_error" or v is not None}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> ExitRecord | None:
        """The record at `path`, or None when it is missing or not a valid record."""
        try:
            data = json.loads(path.read_text())
            ended = data.get("ended_unix")
            return cls(
                returncode=int(data["returncode"]),
                signal=None if data.get("signal") is None else int(data["signal"]),
                ended_unix=float(path.stat().st_mtime if ended is None else ended),
                oom_kill=None if data.get("oom_kill") is None else int(data["oom_kill"]),
                spawn_error=data.get("spawn_error"),
            )
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None


class _Forwarder:
    """Forwards SIGTERM/SIGINT to the job's process group; remembers one that came too early."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.pending: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.child is None:
            self.pending = signum
        elif self.child.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child.pid, signum)


def _parse_cpus(text: str) -> tuple[int, ...]:
    try:
        cpus = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SystemExit(f"--cpus must be comma-separated CPU numbers like 0,1; got {text!r}")
    if not cpus or min(cpus) < 0:
        raise SystemExit(f"--cpus must list CPU numbers >= 0; got {text!r}")
    return cpus


def _parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split `OPTIONS -- PROGRAM ARGS` (no argparse: the program's args must stay untouched)."""
    if "--" not in argv:
        raise SystemExit("usage: shim --exit-file PATH [options] -- PROGRAM ARGS...")
    cut = argv.index("--")
    options, program = argv[:cut], argv[cut + 1 :]
    valid = {"--exit-file", "--mem-limit-bytes", "--cpus", "--cgroup", "--cwd"}
    parsed: dict[str, str] = {}
    if len(options) % 2:
        raise SystemExit(f"every shim option takes one value; got {options!r}")
    for name, value in zip(options[::2], options[1::2]):
        if name not in valid:
            choices = ", ".join(sorted(valid))
            raise SystemExit(f"unknown shim option {name!r}; valid options: {choices}")
        parsed[name] = value
    if "--exit-file" not in parsed or not program:
        raise SystemExit("usage: shim --exit-file PATH [options] -- PROGRAM ARGS...")
    return parsed, program


def _spawn_message(exc: BaseException, program: str, cwd: str | None) -> str:
    """A one-line reason naming the program (or the working directory at fault)."""
    if isinstance(exc, OSError) and cwd is not None and exc.filename == cwd:
        return f"working directory not usable: {cwd!r} ({exc.strerror})"
    if isinstance(exc, FileNotFoundError):
        return f"program not found: {program!r}"
    if isinstance(exc, PermissionError):
        return f"program not executable: {program!r} ({exc.strerror})"
    if isinstance(exc, subprocess.SubprocessError):
        return f"could not apply the instance limits to {program!r}: {exc}"
    return f"could not start {program!r}: {exc}"


def _sweep_leftovers(job_pgid: int) -> None:
    """Kill what the program left behind: its group, and orphans re-parented to the shim."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(job_pgid, signal.SIGKILL)
    try:
        import psutil

        for proc in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                proc.kill()
    except Exception:  # noqa: BLE001 - cleanup must never stop the exit record
        pass
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _finish_cgroup(cgroup: Path) -> int | None:
    """Read the OOM count, kill stragglers and remove the attempt cgroup."""
    oom_kill = memcap.read_oom_kill(cgroup)
    memcap.kill_cgroup(cgroup)
    deadline = time.monotonic() + 2.0
    while not memcap.remove_cgroup(cgroup) and time.monotonic() < deadline:
        time.sleep(0.02)
    return oom_kill


def _exit_code(returncode: int) -> int:
    return returncode if returncode >= 0 else 128 - returncode


def main(argv: list[str] | None = None) -> int:
    """Run one attempt; returns the shim's exit status (the program's, 128+N for signal N)."""
    forward = _Forwarder()
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    options, program = _parse(sys.argv[1:] if argv is None else argv)
    exit_file = Path(options["--exit-file"])
    limit = int(options["--mem-limit-bytes"]) if "--mem-limit-bytes" in options else None
    cpus = _parse_cpus(options["--cpus"]) if "--cpus" in options else None
    cgroup = Path(options["--cgroup"]) if "--cgroup" in options else None
    cwd = options.get("--cwd")

    def fail(message: str) -> int:
        print(f"migsched shim: {message}", file=sys.stderr, flush=True)
        ExitRecord(SPAWN_FAILED_RC, None, time.time(), spawn_error=message).write(exit_file)
        return SPAWN_FAILED_RC

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if cpus is not None and not set(cpus) <= os.sched_getaffinity(0):
        allowed = ",".join(map(str, sorted(os.sched_getaffinity(0))))
        wanted = ",".join(map(str, cpus))
        return fail(f"cpus {wanted} for {program[0]!r} not available here (allowed: {allowed})")
    if cgroup is not None:
        if limit is None:
            return fail(f"--cgroup needs --mem-limit-bytes (program {program[0]!r})")
        try:
            memcap.create_cgroup(cgroup, limit)
        except OSError as exc:
            return fail(f"could not create cgroup {cgroup} for {program[0]!r}: {exc}")

    def limit_child() -> None:
        # Runs in the child between fork and exec.
        if cgroup is not None:
            memcap.join_cgroup(cgroup, os.getpid())
        elif limit is not None:
            memcap.apply_rlimit_data(limit)
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    if forward.pending is not None:
        sig = forward.pending  # stopped before the program started: do not start it
        oom_kill = None if cgroup is None else _finish_cgroup(cgroup)
        ExitRecord(-sig, sig, time.time(), oom_kill).write(exit_file)
        return 128 + sig
    try:
        child = subprocess.Popen(
            program, cwd=cwd, preexec_fn=limit_child, process_group=0, close_fds=True
        )
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        if cgroup is not None:
            _finish_cgroup(cgroup)
        return fail(_spawn_message(exc, program[0], cwd))
    forward.child = child
    if forward.pending is not None:
        forward(forward.pending, None)
    returncode = child.wait()
    _sweep_leftovers(child.pid)
    oom_kill = _finish_cgroup(cgroup) if cgroup is not None else None
    sig = -returncode if returncode < 0 else None
    ExitRecord(returncode, sig, time.time(), oom_kill).write(exit_file)
    return _exit_code(returncode)


if __name__ == "__main__":
    sys.exit(main())
