"""Small hand-made batches for the migm tests (tests/test_migm.py, tests/test_migm_pinning.py)."""

from __future__ import annotations

from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict

A100 = get_model("A100-80GB")


def job(name: str, count: int = 1, hint: float | None = 4.0, peak: float = 4.0, runtime: float = 100.0,
        cls: str = "scientific", arrival: float = 0.0, **model) -> dict:
    """One job-file entry with a ground-truth model (speed-up 0.5 on one slice, 1 s startup)."""
    entry = {"name": name, "class": cls, "count": count, "arrival_s": arrival,
             "model": {"runtime_s": runtime, "peak_gib": peak, "speedup": {1: 0.5}, "startup_s": 1.0, **model}}
    if hint is not None:
        entry["hint_gib"] = hint
    return entry


def batch(*entries: dict):
    """The jobs of `entries`, loaded as a job file (every entry needs its model)."""
    return load_jobs_dict({"version": 1, "jobs": list(entries)}, require_model=True)
