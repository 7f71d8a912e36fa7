"""Restart counting: one rule (`metrics.retried_outcomes`) behind `migsched status` and the live view."""

from __future__ import annotations

from types import SimpleNamespace

from migsched.core.state import JobState
from migsched.live.progress import restart_counts
from migsched.metrics import retried_outcomes
from migsched.store.status import restarts

# (final state, outcomes of its ended attempts in order)
HISTORIES = [
    (JobState.DONE, ["oom", "killed:early-restart", "ok"]),
    (JobState.FAILED, ["oom", "oom"]),  # the last oom was not retried
    (JobState.QUEUED, ["launch-failed", "killed:preempt"]),
]


def test_every_outcome_but_ok_is_a_restart():
    assert retried_outcomes(["oom", "killed:preempt", "ok"], failed=False) == ["oom", "killed:preempt"]


def test_the_last_attempt_of_a_failed_job_is_not_a_restart():
    assert retried_outcomes(["oom", "oom"], failed=True) == ["oom"]
    assert retried_outcomes([], failed=True) == []


def fake_core():
    jobs = {str(k): SimpleNamespace(state=state, attempts=[SimpleNamespace(outcome=o) for o in outcomes])
            for k, (state, outcomes) in enumerate(HISTORIES)}
    return SimpleNamespace(view=SimpleNamespace(jobs=jobs))


def test_the_live_view_counts_retried_attempts_by_cause():
    assert dict(restart_counts(fake_core())) == {"oom": 2, "early-restart": 1, "launch-failed": 1, "preempt": 1}


def test_status_and_the_live_view_count_the_same_restarts():
    rows = [SimpleNamespace(state=state.value, outcomes=tuple(outcomes)) for state, outcomes in HISTORIES]
    by_outcome = restarts(rows)
    live = restart_counts(fake_core())
    assert sum(by_outcome.values()) == sum(live.values()) == 5
    assert by_outcome["oom"] == live["oom"] == 2
