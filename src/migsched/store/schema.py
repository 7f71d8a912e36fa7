"""The run store's file: schema, version check, owner-only permissions, connection settings.

Why these settings: WAL journal mode lets `migsched status` read while the run writes, and with
`synchronous=FULL` every COMMIT is fsynced to the WAL before it returns, so a write the scheduler
has seen succeed survives a crash of the process or the machine. The file holds commands and
environments (which may carry tokens), so it and its `-wal`/`-shm` siblings are owner-only.
WAL needs shared memory between processes on one host: keep the store on a local file system,
not NFS.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migsched.store.rows import INSTANCE_STATES, JOB_STATES, SchemaVersionError, StoreError

SCHEMA_VERSION = 2  # 2: attempts.saved_progress (checkpoints); a version-1 store is migrated on open
APPLICATION_ID = 0x6D696773  # b"migs": tells a migsched store from any other SQLite file
FILE_MODE = 0o600
SIBLINGS = ("-wal", "-shm", "-journal")


def _states(states: tuple[str, ...]) -> str:
    return ", ".join(f"'{s}'" for s in states)


# STRICT tables: a float where an integer belongs is an error, not a silent conversion.
DDL = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({_states(JOB_STATES)})),
    attempt INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    gpu INTEGER, start INTEGER, profile TEXT,
    pid INTEGER, pid_create_time REAL,
    begun_s REAL, launched_s REAL, finished_s REAL,
    failure TEXT,
    peak_mib REAL NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX jobs_state ON jobs (state);
CREATE TABLE attempts (
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
    attempt INTEGER NOT NULL CHECK (attempt >= 1),
    gpu INTEGER NOT NULL, start INTEGER NOT NULL, profile TEXT NOT NULL,
    begun_s REAL NOT NULL,
    pid INTEGER, pid_create_time REAL, started_s REAL,
    ended_s REAL, outcome TEXT, failure TEXT,
    peak_mib REAL NOT NULL DEFAULT 0,
    saved_progress REAL CHECK (saved_progress BETWEEN 0 AND 1),
    PRIMARY KEY (job_id, attempt)
) STRICT, WITHOUT ROWID;
CREATE TABLE instances (
    gpu INTEGER NOT NULL, start INTEGER NOT NULL, profile TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({_states(INSTANCE_STATES)})),
    PRIMARY KEY (gpu, start)
) STRICT, WITHOUT ROWID;
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    time_s REAL NOT NULL, kind TEXT NOT NULL, job_id TEXT, detail TEXT NOT NULL
) STRICT;
"""


@contextmanager
def owner_only_umask() -> Iterator[None]:
    """Create files as owner-only while inside (os.umask is process-wide: not for threads)."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def tighten(path: Path) -> None:
    """chmod the database and whichever siblings exist to 0o600 (skipped where not the owner)."""
    for p in [path, *(Path(str(path) + s) for s in SIBLINGS)]:
        try:
            os.chmod(p, FILE_MODE)
        except FileNotFoundError:
            pass
        except PermissionError:
            pass  # someone else's store opened through group access: not ours to change


def _settings(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"run store {str(path)!r}: the file system does not support SQLite's WAL mode "
                         f"(got journal_mode {mode!r}); put the store on a local disk")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")


def create_file(path: Path, meta: dict[str, str]) -> sqlite3.Connection:
    """Create a new store at `path` with the schema and `meta` (JSON texts), in one transaction.

    Raises:
        StoreError: the file (or a leftover -wal/-shm sibling) exists or cannot be created.
    """
    for s in SIBLINGS:
        leftover = Path(str(path) + s)
        if leftover.exists():
            # SQLite would replay an old WAL onto the new database: refuse instead.
            raise StoreError(f"cannot create run store {str(path)!r}: a leftover {str(leftover)!r} from an "
                             "earlier store exists; remove it or choose another file")
    with owner_only_umask():
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
        except FileExistsError:
            raise StoreError(f"cannot create run store {str(path)!r}: the file exists; resume it "
                             "(RunStore.open / --resume) or choose another file") from None
        except OSError as exc:
            raise StoreError(f"cannot create run store {str(path)!r}: {exc.strerror}") from None
        os.close(fd)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            _settings(conn, path)
            rows = [("schema_version", json.dumps(SCHEMA_VERSION)), *meta.items()]
            conn.execute("BEGIN IMMEDIATE")
            for statement in DDL.split(";"):  # not executescript: it would COMMIT the open transaction
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
    tighten(path)
    return conn


def open_file(path: Path) -> sqlite3.Connection:
    """Open an existing store, check that it is one and that its schema version is ours.

    Raises:
        StoreError: missing, unreadable or not a migsched store.
        SchemaVersionError: a schema version other than SCHEMA_VERSION.
    """
    shown = repr(str(path))
    if not path.is_file():
        raise StoreError(f"no run store at {shown}: " + ("it is not a file" if path.exists() else "no such file"))
    with owner_only_umask():
        try:
            # mode=rw: never create a database where none is
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open run store {shown}: {exc}") from None
        try:
            _check(conn, path)
            _settings(conn, path)
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
    tighten(path)
    return conn


def _check(conn: sqlite3.Connection, path: Path) -> None:
    shown = repr(str(path))
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{shown} is not a migsched run store (not an SQLite database: {exc})") from None
    if app_id != APPLICATION_ID:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        hint = (" (an empty database: a `create` that was interrupted leaves one; delete it and start again)"
                if app_id == 0 and tables == 0
                else f" (an SQLite database of another program, application_id {app_id}, {tables} schema objects)")
        raise StoreError(f"{shown} is not a migsched run store{hint}")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{shown} is not a migsched run store (no meta table: {exc})") from None
    found = json.loads(row[0]) if row else None
    if found != SCHEMA_VERSION and not (isinstance(found, int) and found in MIGRATIONS):
        if isinstance(found, int) and found > SCHEMA_VERSION:
            why = "it was written by a newer migsched; upgrade migsched to read it"
        else:
            why = "this migsched does not migrate it; finish that run with the migsched that started it"
        raise SchemaVersionError(f"run store {shown} has schema version {found!r}, but this migsched "
                                 f"supports version {SCHEMA_VERSION} only; {why}")


# Per older schema version, the statements that bring it to the next one (in one transaction).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE attempts ADD COLUMN saved_progress REAL CHECK (saved_progress BETWEEN 0 AND 1)",),
}


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a store of an older schema version (one `_check` let through) up to SCHEMA_VERSION."""
    found = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    while found != SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[found]:
                conn.execute(statement)
            found += 1
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (json.dumps(found),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
