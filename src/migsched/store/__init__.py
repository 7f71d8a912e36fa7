"""The run store: a crash-safe SQLite record of one `migsched run --state FILE [--resume]`.

The scheduler writes each intent (an attempt begun, an instance about to be created) and each
fact, every one committed to disk before it acts on it; after a crash (even SIGKILL) `--resume`
reopens the file and finds every write that returned, whole. `migsched status --state FILE`
reads it while the run goes on (`migsched.store.status`).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.db"
    >>> with RunStore.create(path, {"policy": "migm"}) as store:
    ...     store.add_jobs([("a", 0, {"job_id": "a"})])
    ...     store.begin_attempt("a", 1, gpu=0, start=0, profile="1g.10gb", time_s=0.0)
    ...     store.counts()["launching"]
    True
    1
"""

from migsched.store.codec import spec_from_dict, spec_to_dict
from migsched.store.db import RunStore
from migsched.store.rows import (
    END_STATES,
    INSTANCE_STATES,
    JOB_STATES,
    AttemptError,
    AttemptRow,
    EventRow,
    InstanceRow,
    JobRow,
    SchemaVersionError,
    StoreError,
)
from migsched.store.schema import SCHEMA_VERSION

__all__ = [
    "END_STATES", "INSTANCE_STATES", "JOB_STATES", "SCHEMA_VERSION", "AttemptError", "AttemptRow", "EventRow",
    "InstanceRow", "JobRow", "RunStore", "SchemaVersionError", "StoreError", "spec_from_dict", "spec_to_dict",
]
