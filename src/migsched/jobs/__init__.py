"""Jobs: the version-1 job file (`spec.py`) and the job types (`model.py`).

    >>> from migsched.jobs import load_jobs_dict
    >>> jobs = load_jobs_dict({"version": 1, "jobs": [{"name": "a", "class": "scientific", "count": 2,
    ...     "model": {"runtime_s": 10, "peak_gib": 2}}]})
    >>> [j.job_id for j in jobs]
    ['a#0', 'a#1']
"""

from migsched.jobs.model import (
    DEFAULT_STARTUP_S,
    Describe,
    Job,
    JobClass,
    JobSpec,
    TruthModel,
    interpolate_speedup,
)
from migsched.jobs.spec import load_jobs, load_jobs_dict

__all__ = [
    "DEFAULT_STARTUP_S", "Describe", "Job", "JobClass", "JobSpec", "TruthModel",
    "interpolate_speedup", "load_jobs", "load_jobs_dict",
]
