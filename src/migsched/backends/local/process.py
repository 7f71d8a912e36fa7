"""One attempt of one job as a real child process: start, adopt, poll, measure, stop.

`ManagedProcess.start` launches the shim (`shim.py`) in a new session; the shim runs the program
in its own process group under the emulated instance's memory cap and CPU set and writes an exit
record when it ends. The scheduler identifies a running attempt by the shim's pid *and* its
psutil create time, so a restarted scheduler can `adopt` it, and a pid the kernel has since
reused is never mistaken for it.

Signals: `terminate` sends SIGTERM to the job's process group (not to the shim, which must live
to write the exit record) and `poll` escalates to SIGKILL of every process group in the job's
tree once the grace period has passed. A process the scheduler stopped ends as `killed`.
`checkpoint` is the same with the job's checkpoint signal: an exit before the SIGKILL is
`checkpointed` (the program saved its state, docs/checkpoint.md).

The mechanics only: the backend maps these onto events and actions; how an exit is classified
lives in `exits.py` (re-exported here).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from migsched.backends.local import memcap
from migsched.backends.local.exits import (  # ExitStatus, classify_exit: re-exported
    ExitInfo,
    ExitStatus,
    classify_exit,
    stderr_tail,
)
from migsched.backends.local.shim import SPAWN_FAILED_RC, ExitRecord
from migsched.probe import PROBE_ENV, ProbeReading, read_probe

__all__ = [
    "CREATE_TIME_TOLERANCE_S", "ExitInfo", "ExitStatus", "ManagedProcess", "ProcessSpec",
    "classify_exit", "safe_name", "stderr_tail",
]

CREATE_TIME_TOLERANCE_S = 0.01
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(job_id: str) -> str:
    """A file name for a job id that may hold '#', '/', spaces or dots.

    Unsafe characters become '_'; when anything was changed a short hash of the original id is
    appended, so "a#b" and "a/b" (and "a_b") still get different files.
    """
    cleaned = _UNSAFE.sub("_", job_id)[:80]
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    if cleaned == job_id and cleaned:
        return cleaned
    digest = hashlib.sha256(job_id.encode()).hexdigest()[:8]
    return f"{cleaned or 'job'}-{digest}"


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """Everything needed to run one attempt of one job.

    Attributes:
        job_id: the job's id (any string; files use `safe_name(job_id)`).
        attempt: 0 for the first run, then 1, 2, ... after restarts.
        argv: the program and its arguments, run without a shell.
        env: extra environment variables, merged over the scheduler's environment.
        cwd: the job's working directory (None: the scheduler's).
        log_dir: where `<safe id>.<attempt>.out/.err/.exit.json` go.
        memory_limit_bytes: the emulated instance's memory; None for no cap.
        cpus: CPU numbers the job may run on; None for all.
        probe_path: the progress file, exported to the job as `MIGSCHED_PROBE_FILE`.
    """

    job_id: str
    attempt: int
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None
    log_dir: Path
    memory_limit_bytes: int | None
    cpus: tuple[int, ...] | None
    probe_path: Path

    def __post_init__(self) -> None:
        if not isinstance(self.job_id, str) or not self.job_id:
            raise ValueError(f"ProcessSpec.job_id must be a non-empty string; got {self.job_id!r}")
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or self.attempt < 0:
            raise ValueError(f"ProcessSpec.attempt must be an int >= 0; got {self.attempt!r}")
        argv_ok = isinstance(self.argv, tuple) and all(isinstance(a, str) for a in self.argv)
        if not argv_ok or not self.argv:
            raise ValueError(f"ProcessSpec.argv must be a non-empty tuple of strings; got {self.argv!r}")
        bad_env = [k for k, v in self.env.items() if not (isinstance(k, str) and isinstance(v, str))]
        if bad_env:
            raise ValueError(f"ProcessSpec.env must map strings to strings; bad keys: {bad_env!r}")
        if self.memory_limit_bytes is not None and self.memory_limit_bytes <= 0:
            raise ValueError(
                f"ProcessSpec.memory_limit_bytes must be > 0 or None; got {self.memory_limit_bytes!r}"
            )
        if self.cpus is not None and (not self.cpus or any(c < 0 for c in self.cpus)):
            raise ValueError(f"ProcessSpec.cpus must be None or CPU numbers >= 0; got {self.cpus!r}")

    @property
    def file_stem(self) -> str:
        """`<safe job id>.<attempt>`: the stem of this attempt's files and cgroup."""
        return f"{safe_name(self.job_id)}.{self.attempt}"

    @property
    def stdout_path(self) -> Path:
        """The job's stdout log."""
        return self.log_dir / f"{self.file_stem}.out"

    @property
    def stderr_path(self) -> Path:
        """The job's stderr log (its tail is searched for OOM messages)."""
        return self.log_dir / f"{self.file_stem}.err"

    @property
    def exit_path(self) -> Path:
        """The shim's exit record."""
        return self.log_dir / f"{self.file_stem}.exit.json"


def _open_log(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    return fd


class ManagedProcess:
    """A handle on one running (or finished) attempt; see the module docstring.

    Not thread-safe; one handle per attempt. Obtain it with `start` or `adopt`.
    """

    def __init__(
        self,
        spec: ProcessSpec,
        pid: int,
        create_time: float,
        proc: psutil.Process,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.spec = spec
        self.pid = pid
        self.create_time = create_time
        self._proc = proc
        self._popen = popen
        self._exit: ExitInfo | None = None
        self._peak_bytes = 0
        self._terminated = False
        self._terminated_unix = float("inf")  # when the scheduler first signalled it
        self._escalated = False
        self._grace_s: float | None = None
        self._kill_at: float | None = None
        self._checkpoint_signal: int | None = None

    @classmethod
    def start(
        cls, spec: ProcessSpec, *, mechanism: memcap.CapMechanism | None = None
    ) -> ManagedProcess:
        """Open the attempt's logs (mode 0o600) and launch the shim in a new session.

        `mechanism` overrides the machine's detected memory-cap mechanism (tests pass a fake
        cgroup tree). Files a previous run of the same attempt left (exit record, probe) are
        removed first so they cannot be mistaken for this run's.
        """
        spec.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in (spec.exit_path, spec.probe_path):
            stale.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "migsched.backends.local.shim"]
        cmd += ["--exit-file", str(spec.exit_path)]
        if spec.memory_limit_bytes is not None:
            cmd += ["--mem-limit-bytes", str(spec.memory_limit_bytes)]
            mechanism = mechanism or memcap.current_mechanism()
            if mechanism.kind is memcap.CapKind.CGROUP_V2:
                cmd += ["--cgroup", str(memcap.attempt_cgroup(mechanism, spec.file_stem))]
        if spec.cpus is not None:
            cmd += ["--cpus", ",".join(str(c) for c in spec.cpus)]
        if spec.cwd is not None:
            cmd += ["--cwd", spec.cwd]
        cmd += ["--", *spec.argv]
        env = {**os.environ, **spec.env, PROBE_ENV: str(spec.probe_path)}
        out_fd, err_fd = _open_log(spec.stdout_path), _open_log(spec.stderr_path)
        try:
            popen = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out_fd, stderr=err_fd, env=env,
                start_new_session=True, close_fds=True,
            )
        finally:
            os.close(out_fd)
            os.close(err_fd)
        proc = psutil.Process(popen.pid)  # not reaped yet, so the pid is still ours
        return cls(spec, popen.pid, proc.create_time(), proc, popen)

    @classmethod
    def adopt(cls, spec: ProcessSpec, pid: int, create_time: float) -> ManagedProcess | None:
        """A handle on an attempt a previous scheduler started, or None if it is no longer alive.

        The process must have this pid *and* this create time (within 0.01 s, psutil's
        resolution): a pid reused by an unrelated process is not adopted.
        """
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE_S:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            return None
        return cls(spec, pid, create_time, proc)

    @staticmethod
    def read_exit_record(spec: ProcessSpec) -> ExitInfo | None:
        """How an attempt ended while no scheduler watched it; None without a (valid) record."""
        record = ExitRecord.read(spec.exit_path)
        if record is None:
            return None
        tail = stderr_tail(spec.stderr_path)
        return classify_exit(record, stderr_text=tail, memory_limit_bytes=spec.memory_limit_bytes)

    @property
    def peak_memory_bytes(self) -> int:
        """The largest `memory_bytes()` seen so far."""
        return self._peak_bytes

    def _shim_alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        try:
            return self._proc.is_running() and self._proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def poll(self) -> ExitInfo | None:
        """None while the attempt runs (escalating a due SIGKILL), then how it ended (cached)."""
        if self._exit is not None:
            return self._exit
        if self._shim_alive():
            due = self._kill_at is not None and time.monotonic() >= self._kill_at
            if due and not self._escalated:
                self._signal_tree(signal.SIGKILL)
            return None
        record = ExitRecord.read(self.spec.exit_path)
        if record is None:
            shim_rc = None if self._popen is None else self._popen.returncode
            detail = f"the shim (pid {self.pid}) ended without an exit record (status {shim_rc})"
            if shim_rc == SPAWN_FAILED_RC:
                detail += f"; see {self.spec.stderr_path}"
            status = ExitStatus.KILLED if self._terminated else ExitStatus.FAILED
            self._exit = ExitInfo(status, -1 if shim_rc is None else shim_rc, detail, time.time())
        else:
            self._exit = classify_exit(
                record,
                stderr_text=stderr_tail(self.spec.stderr_path),
                # a job that had already ended when the first signal went out was not stopped
                terminated=self._terminated and record.ended_unix >= self._terminated_unix,
                escalated=self._escalated,
                grace_s=self._grace_s,
                peak_memory_bytes=self._peak_bytes,
                memory_limit_bytes=self.spec.memory_limit_bytes,
                checkpoint_signal=self._checkpoint_signal,
            )
        return self._exit

    def _tree(self) -> list[psutil.Process]:
        """The job's processes: the shim's descendants, not the shim itself ([] once it is gone)."""
        try:
            if not self._proc.is_running():  # also false when the pid was reused
                return []
            return self._proc.children(recursive=True)
        except psutil.Error:
            return []

    def memory_bytes(self) -> int:
        """Resident memory of the job's whole process tree, in bytes (0 when nothing runs).

        Sums RSS, so pages shared between the job's processes count once per process.
        """
        total = 0
        for child in self._tree():
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        self._peak_bytes = max(self._peak_bytes, total)
        return total

    def probe(self) -> ProbeReading | None:
        """The latest progress reading the job wrote, if any."""
        return read_probe(self.spec.probe_path)

    def _signal_tree(self, signum: int) -> None:
        """SIGTERM: the groups of the shim's direct children; SIGKILL: every group in the tree.

        With no job process yet (the shim is still starting), the shim itself is signalled: it
        forwards a SIGTERM, or does not start the program at all.
        """
        processes = self._tree() if signum == signal.SIGKILL else self._direct_children()
        groups = set()
        for child in processes:
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(child.pid))
        groups.discard(self.pid)  # the shim's own group: it must survive to write the record
        if signum == signal.SIGKILL:
            self._escalated = True
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signum)
        if not groups and self._shim_alive():
            # the shim forwards (or acts on) SIGTERM and SIGINT only; another signal would kill it
            to_shim = signum if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL) else signal.SIGTERM
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, to_shim)

    def _direct_children(self) -> list[psutil.Process]:
        try:
            return self._proc.children() if self._proc.is_running() else []
        except psutil.Error:
            return []

    def terminate(self, grace_s: float = 5.0) -> None:
        """Ask the job to stop (SIGTERM to its process group); `poll` SIGKILLs it after `grace_s`."""
        self._stop(signal.SIGTERM, grace_s)

    def checkpoint(self, signum: int, grace_s: float) -> None:
        """Ask the job to save its state and exit (`signum` to its process group); `poll` SIGKILLs
        it after `grace_s`, and only an exit before that counts as checkpointed."""
        if self._exit is None and not self._escalated:
            self._checkpoint_signal = signum
        self._stop(signum, grace_s)

    def _stop(self, signum: int, grace_s: float) -> None:
        if grace_s < 0:
            raise ValueError(f"grace_s must be >= 0; got {grace_s}")
        if self._exit is not None or self._escalated:
            return
        self._terminated = True
        self._terminated_unix = min(self._terminated_unix, time.time())
        kill_at = time.monotonic() + grace_s
        if self._kill_at is None or kill_at < self._kill_at:
            self._kill_at, self._grace_s = kill_at, grace_s
        self._signal_tree(signum)
        if grace_s == 0:
            self._signal_tree(signal.SIGKILL)

    def kill_now(self) -> None:
        """SIGKILL every process of the job at once (the shim stays to write the record)."""
        if self._exit is not None:
            return
        self._terminated = True
        self._terminated_unix = min(self._terminated_unix, time.time())
        self._signal_tree(signal.SIGKILL)
