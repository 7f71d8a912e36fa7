"""The job file's `checkpoint:` field: defaults, bounds, and errors that name field, value and choices."""

from __future__ import annotations

import pytest

from migsched.errors import JobFileError
from migsched.jobs import load_jobs_dict
from migsched.jobs.model import CheckpointSpec


def load(checkpoint, **model):
    entry = {"name": "t", "class": "ml-train", "checkpoint": checkpoint}
    if model:
        entry["model"] = {"runtime_s": 10, "peak_gib": 1, **model}
    return load_jobs_dict({"version": 1, "jobs": [entry]})[0]


def test_the_field_reaches_the_spec_with_its_defaults():
    assert load({"signal": "SIGUSR1", "grace_s": 30, "resume_s": 10}).spec.checkpoint == CheckpointSpec("SIGUSR1", 30.0, 10.0)
    assert load({}).spec.checkpoint == CheckpointSpec("SIGTERM", 30.0, 0.0)
    assert load_jobs_dict({"version": 1, "jobs": [{"name": "t", "class": "llm"}]})[0].spec.checkpoint is None


def test_the_save_time_is_ground_truth_in_the_model():
    assert load({}, checkpoint_save_s=4).truth.checkpoint_save_s == 4.0
    assert load({}).truth is None


@pytest.mark.parametrize("checkpoint, fragment", [
    ({"signal": "SIGKILL"}, "field checkpoint.signal: Input should be 'SIGTERM', 'SIGINT', 'SIGUSR1' or 'SIGUSR2' "
                            "(got 'SIGKILL')"),
    ({"grace_s": 0}, "field checkpoint.grace_s: Input should be greater than 0 (got 0)"),
    ({"grace_s": 7200}, "field checkpoint.grace_s: Input should be less than or equal to 3600 (got 7200"),
    ({"resume_s": -1}, "field checkpoint.resume_s: Input should be greater than or equal to 0 (got -1)"),
    ({"resume_s": float("inf")}, "field checkpoint.resume_s"),
    ({"grace": 3}, "field checkpoint.grace: Extra inputs are not permitted"),
])
def test_bad_values_are_refused_with_the_field_the_value_and_the_choices(checkpoint, fragment):
    with pytest.raises(JobFileError, match="job 't'") as err:
        load(checkpoint)
    assert fragment in str(err.value)
