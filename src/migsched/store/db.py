"""`RunStore`: the crash-safe record of one `migsched run --state FILE`, on SQLite.

Every write method runs in its own short `BEGIN IMMEDIATE ... COMMIT` transaction and returns
only after the commit is on disk (WAL, synchronous=FULL; see `migsched.store.schema`). So the
scheduler writes an intent (`begin_attempt`, `instance_intent`), then acts; if it is killed at
any point, reopening the file shows either the whole write or none of it, and never loses one
that returned. The job and instance state machines are in `migsched.store.rows`.

Stale calls: an attempt call for an older attempt than the job's latest, or one repeating a
transition that is already recorded (a replay after resume), changes nothing and returns False.
A call that skips ahead or does not fit the recorded state (ending an attempt never begun,
beginning one for a running job) raises `AttemptError`. Instance calls follow the same rule.

One writer per store: the file may be read (`migsched status`) while a run writes it, but two
runs must not write the same file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from migsched.store import schema
from migsched.store.rows import (
    END_STATES,
    JOB_STATES,
    AttemptError,
    AttemptRow,
    EventRow,
    InstanceRow,
    JobRow,
    StoreError,
    check_outcome,
)

_RESERVED = ("schema_version",)


def _json(where: str, value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where}: {value!r} cannot be stored as JSON ({exc})") from None


class RunStore:
    """One run's durable state: meta, jobs and their attempts, GPU instances, an event log."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        """Use `RunStore.create` or `RunStore.open`."""
        self._conn: sqlite3.Connection | None = conn
        self.path = path

    # ---- opening and closing ---------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, meta: dict[str, Any]) -> RunStore:
        """Create a new store at `path` holding `meta` (run settings, JSON-safe values).

        Raises:
            StoreError: the file exists, cannot be created, or `meta` is not JSON-safe.
        """
        p = Path(path)
        rows = {}
        for key, value in meta.items():
            if not isinstance(key, str) or key in _RESERVED:
                raise StoreError(f"meta key {key!r} is not allowed; keys are strings other than {', '.join(_RESERVED)}")
            rows[key] = _json(f"meta {key!r}", value)
        return cls(schema.create_file(p, rows), p)

    @classmethod
    def open(cls, path: str | Path) -> RunStore:
        """Open an existing store (to resume it or to show its status).

        Raises:
            StoreError: missing, unreadable or not a migsched store.
            SchemaVersionError: written with another schema version.
        """
        p = Path(path)
        return cls(schema.open_file(p), p)

    def close(self) -> None:
        """Close the file (idempotent); every write has already been committed."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"run store {str(self.path)!r} is closed")
        return self._conn

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One durable transaction: all of it or nothing, committed before the caller goes on."""
        conn = self._live()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"run store {str(self.path)!r}: {what} failed: {exc}") from None
            raise

    @contextmanager
    def snapshot(self) -> Iterator[RunStore]:
        """Read several things from one consistent state (a read transaction), e.g. for status."""
        conn = self._live()
        if conn.in_transaction:
            yield self
            return
        conn.execute("BEGIN")
        try:
            yield self
        finally:
            conn.execute("COMMIT")

    # ---- meta ------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """The run settings given to `create` and `set_meta`, plus `schema_version`."""
        rows = self._live().execute("SELECT key, value FROM meta ORDER BY key").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def set_meta(self, key: str, value: Any) -> None:
        """Set (or replace) one run setting; `value` must be JSON-safe."""
        if not isinstance(key, str) or key in _RESERVED:
            raise StoreError(f"meta key {key!r} is not allowed; keys are strings other than {', '.join(_RESERVED)}")
        text = _json(f"meta {key!r}", value)
        with self._write(f"set_meta({key!r})") as c:
            c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                      (key, text))

    # ---- jobs ------------------------------------------------------------------------------
    def add_jobs(self, rows: Iterable[tuple[str, int, dict[str, Any]]]) -> None:
        """Add jobs as (job_id, seq, spec dict), all 'queued', in one transaction.

        Raises:
            StoreError: a job id or seq already in the store (or twice in `rows`); nothing is added.
        """
        items = [(job_id, seq, _json(f"spec of job {job_id!r}", spec)) for job_id, seq, spec in rows]
        with self._write(f"add_jobs ({len(items)} jobs)") as c:
            for job_id, seq, text in items:
                clash = c.execute("SELECT job_id FROM jobs WHERE job_id = ? OR seq = ?", (job_id, seq)).fetchone()
                if clash is not None:
                    what = f"job id {job_id!r}" if clash[0] == job_id else f"seq {seq} (of job {clash[0]!r})"
                    raise StoreError(f"add_jobs: {what} is already in the store; job ids and seqs must be unique")
                c.execute("INSERT INTO jobs (job_id, seq, spec, state) VALUES (?, ?, ?, 'queued')", (job_id, seq, text))

    def jobs(self) -> list[JobRow]:
        """Every job, in seq order."""
        with self.snapshot():
            conn = self._live()
            outcomes: dict[str, list[str]] = {}
            for job_id, outcome in conn.execute(
                    "SELECT job_id, outcome FROM attempts WHERE outcome IS NOT NULL ORDER BY job_id, attempt"):
                outcomes.setdefault(job_id, []).append(outcome)
            rows = conn.execute(
                "SELECT job_id, seq, spec, state, attempt, gpu, start, profile, pid, pid_create_time, launched_s, "
                "finished_s, failure, peak_mib, begun_s FROM jobs ORDER BY seq").fetchall()
        return [JobRow(job_id=r[0], seq=r[1], spec=json.loads(r[2]), state=r[3], attempt=r[4], gpu=r[5], start=r[6],
                       profile=r[7], pid=r[8], pid_create_time=r[9], launched_s=r[10], finished_s=r[11],
                       failure=r[12], outcomes=tuple(outcomes.get(r[0], ())), peak_mib=r[13], begun_s=r[14])
                for r in rows]

    def attempts(self, job_id: str) -> list[AttemptRow]:
        """The attempts of one job, oldest first (empty for an unknown job or one never launched)."""
        rows = self._live().execute(
            "SELECT job_id, attempt, gpu, start, profile, begun_s, pid, pid_create_time, started_s, ended_s, outcome, "
            "failure, peak_mib, saved_progress FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,)).fetchall()
        return [AttemptRow(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        """The number of jobs in each state (every state present, zeros included)."""
        out = dict.fromkeys(JOB_STATES, 0)
        out.update(self._live().execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        return out

    def _job(self, c: sqlite3.Connection, job_id: str, attempt: int) -> tuple[str, int]:
        row = c.execute("SELECT state, attempt FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise AttemptError(f"job {job_id!r} is not in the store; add it with add_jobs first")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise AttemptError(f"attempt {attempt!r} of job {job_id!r} is not valid; attempts count from 1")
        return row[0], row[1]

    # ---- the attempt lifecycle -------------------------------------------------------------
    def begin_attempt(self, job_id: str, attempt: int, gpu: int, start: int, profile: str, time_s: float) -> bool:
        """Record the intent to launch attempt `attempt` on (gpu, start) as `profile`: 'queued' -> 'launching'.

        `attempt` must be the job's attempt count + 1. Returns False (and changes nothing) for a
        stale call: an attempt already begun.

        Raises:
            AttemptError: unknown job, an attempt that skips ahead, or a job that is not queued.
        """
        with self._write(f"begin_attempt({job_id!r}, {attempt})") as c:
            state, current = self._job(c, job_id, attempt)
            if attempt <= current:
                return False
            if attempt > current + 1:
                raise AttemptError(f"begin_attempt: job {job_id!r} has begun {current} attempts; the next one is "
                                   f"{current + 1}, not {attempt}")
            if state != "queued":
                raise AttemptError(f"begin_attempt: job {job_id!r} is {state}, not queued; only a queued job can "
                                   "begin an attempt")
            c.execute("INSERT INTO attempts (job_id, attempt, gpu, start, profile, begun_s) VALUES (?, ?, ?, ?, ?, ?)",
                      (job_id, attempt, gpu, start, profile, time_s))
            c.execute("UPDATE jobs SET state = 'launching', attempt = ?, gpu = ?, start = ?, profile = ?, pid = NULL, "
                      "pid_create_time = NULL, begun_s = ?, launched_s = NULL WHERE job_id = ?",
                      (attempt, gpu, start, profile, time_s, job_id))
        return True

    def attempt_started(self, job_id: str, attempt: int, pid: int, create_time: float, time_s: float) -> bool:
        """Record that the attempt's process runs as `pid` (created at `create_time`): -> 'running'.

        Returns False (and changes nothing) for a stale call: an older attempt, or one already
        started or ended.

        Raises:
            AttemptError: unknown job, or an attempt that was never begun.
        """
        with self._write(f"attempt_started({job_id!r}, {attempt})") as c:
            state, current = self._job(c, job_id, attempt)
            if attempt > current:
                raise AttemptError(f"attempt_started: attempt {attempt} of job {job_id!r} was never begun "
                                   f"(its latest is {current}); call begin_attempt first")
            if attempt < current or state != "launching":
                return False
            c.execute("UPDATE attempts SET pid = ?, pid_create_time = ?, started_s = ? WHERE job_id = ? AND attempt = ?",
                      (pid, create_time, time_s, job_id, attempt))
            c.execute("UPDATE jobs SET state = 'running', pid = ?, pid_create_time = ?, launched_s = ? WHERE job_id = ?",
                      (pid, create_time, time_s, job_id))
        return True

    def attempt_ended(self, job_id: str, attempt: int, outcome: str, new_state: str, time_s: float,
                      failure: str | None = None, peak_mib: float = 0.0, saved_progress: float | None = None) -> bool:
        """Record how an attempt ended and where the job goes: 'queued' (retry), 'done' or 'failed'.

        `outcome` is 'ok', 'oom', 'failed' or 'killed:<reason>'; 'done' goes with 'ok' and only
        with it. A launching attempt may end too (its launch failed). `saved_progress` (0..1) is
        set when the attempt ended with a checkpoint, which only a kill (`killed:<reason>`) that
        requeues the job can. Returns False (and changes nothing) for a stale call: an older
        attempt, or one already ended.

        Raises:
            AttemptError: unknown job, an attempt never begun, or a bad outcome/new_state.
        """
        check_outcome(outcome)
        if new_state not in END_STATES:
            raise AttemptError(f"new_state {new_state!r} is not valid; use one of {', '.join(END_STATES)}")
        if (new_state == "done") != (outcome == "ok"):
            raise AttemptError(f"attempt_ended: outcome {outcome!r} with new_state {new_state!r}: a job is done "
                               "exactly when its attempt ended 'ok'")
        if saved_progress is not None and not (outcome.startswith("killed:") and new_state == "queued"
                                               and 0.0 <= saved_progress <= 1.0):
            raise AttemptError(f"attempt_ended: saved_progress {saved_progress!r} with outcome {outcome!r} and "
                               f"new_state {new_state!r}: only a kill that requeues the job saves a checkpoint, "
                               "and its progress is a fraction from 0 to 1")
        with self._write(f"attempt_ended({job_id!r}, {attempt})") as c:
            state, current = self._job(c, job_id, attempt)
            if attempt > current:
                raise AttemptError(f"attempt_ended: attempt {attempt} of job {job_id!r} was never begun "
                                   f"(its latest is {current})")
            if attempt < current or state not in ("launching", "running"):
                return False
            c.execute("UPDATE attempts SET ended_s = ?, outcome = ?, failure = ?, peak_mib = ?, saved_progress = ? "
                      "WHERE job_id = ? AND attempt = ?",
                      (time_s, outcome, failure, peak_mib, saved_progress, job_id, attempt))
            if new_state == "queued":  # back in the queue: it holds no instance and no process
                c.execute("UPDATE jobs SET state = 'queued', gpu = NULL, start = NULL, profile = NULL, pid = NULL, "
                          "pid_create_time = NULL, begun_s = NULL, launched_s = NULL, "
                          "peak_mib = max(peak_mib, ?) WHERE job_id = ?", (peak_mib, job_id))
            else:
                c.execute("UPDATE jobs SET state = ?, finished_s = ?, failure = ?, peak_mib = max(peak_mib, ?) "
                          "WHERE job_id = ?",
                          (new_state, time_s, failure if new_state == "failed" else None, peak_mib, job_id))
        return True

    def job_failed(self, job_id: str, reason: str, time_s: float) -> bool:
        """Fail a queued job that will never run (e.g. no instance is large enough): -> 'failed'.

        Returns False if the job has already failed.

        Raises:
            AttemptError: unknown job, or a job that is launching, running or done (end its
                attempt with `attempt_ended(..., new_state='failed')` instead).
        """
        with self._write(f"job_failed({job_id!r})") as c:
            row = c.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise AttemptError(f"job {job_id!r} is not in the store; add it with add_jobs first")
            if row[0] == "failed":
                return False
            if row[0] != "queued":
                raise AttemptError(f"job_failed: job {job_id!r} is {row[0]}; only a queued job can be failed this "
                                   "way (end a running attempt with attempt_ended(..., new_state='failed'))")
            c.execute("UPDATE jobs SET state = 'failed', failure = ?, finished_s = ? WHERE job_id = ?",
                      (reason, time_s, job_id))
        return True

    # ---- instances -------------------------------------------------------------------------
    def _instance(self, c: sqlite3.Connection, gpu: int, start: int) -> str | None:
        row = c.execute("SELECT state FROM instances WHERE gpu = ? AND start = ?", (gpu, start)).fetchone()
        return None if row is None else row[0]

    def instance_intent(self, gpu: int, start: int, profile: str) -> bool:
        """Record the intent to create `profile` at (gpu, start): state 'creating'.

        Returns False if that very instance is already recorded as creating (a replay).

        Raises:
            StoreError: another instance (or this one, past creating) is recorded at (gpu, start).
        """
        with self._write(f"instance_intent({gpu}, {start})") as c:
            row = c.execute("SELECT profile, state FROM instances WHERE gpu = ? AND start = ?", (gpu, start)).fetchone()
            if row == (profile, "creating"):
                return False
            if row is not None:
                raise StoreError(f"instance_intent: gpu {gpu} slot {start} already holds {row[0]} ({row[1]}); "
                                 "record it gone first")
            c.execute("INSERT INTO instances (gpu, start, profile, state) VALUES (?, ?, ?, 'creating')",
                      (gpu, start, profile))
        return True

    def _move(self, gpu: int, start: int, to: str, allowed: tuple[str, ...]) -> bool:
        with self._write(f"instance {to} ({gpu}, {start})") as c:
            state = self._instance(c, gpu, start)
            if state == to:
                return False
            if state not in allowed:
                raise StoreError(f"instance at gpu {gpu} slot {start} is {state or 'not recorded'}; it can become "
                                 f"{to} only from {' or '.join(allowed)}")
            c.execute("UPDATE instances SET state = ? WHERE gpu = ? AND start = ?", (to, gpu, start))
        return True

    def instance_up(self, gpu: int, start: int) -> bool:
        """The instance at (gpu, start) exists: 'creating' -> 'up'. False if already up."""
        return self._move(gpu, start, "up", ("creating",))

    def instance_destroying(self, gpu: int, start: int) -> bool:
        """Record the intent to destroy it: 'up' or 'creating' -> 'destroying'. False if already so."""
        return self._move(gpu, start, "destroying", ("up", "creating"))

    def instance_gone(self, gpu: int, start: int) -> bool:
        """The instance no longer exists: its row is deleted. False if there was none."""
        with self._write(f"instance_gone({gpu}, {start})") as c:
            return c.execute("DELETE FROM instances WHERE gpu = ? AND start = ?", (gpu, start)).rowcount > 0

    def instances(self) -> list[InstanceRow]:
        """Every recorded instance, by gpu then start slot."""
        rows = self._live().execute("SELECT gpu, start, profile, state FROM instances ORDER BY gpu, start").fetchall()
        return [InstanceRow(*r) for r in rows]

    # ---- the event log ---------------------------------------------------------------------
    def log(self, time_s: float, kind: str, job_id: str | None = None, detail: str = "") -> None:
        """Append one event (for `migsched status`); the lifecycle calls above do not log by themselves."""
        with self._write(f"log({kind!r})") as c:
            c.execute("INSERT INTO events (time_s, kind, job_id, detail) VALUES (?, ?, ?, ?)",
                      (time_s, kind, job_id, detail))

    def recent(self, n: int) -> list[EventRow]:
        """The last `n` events, oldest first."""
        rows = self._live().execute(
            "SELECT seq, time_s, kind, job_id, detail FROM events ORDER BY seq DESC LIMIT ?", (max(0, n),)).fetchall()
        return [EventRow(*r) for r in reversed(rows)]
