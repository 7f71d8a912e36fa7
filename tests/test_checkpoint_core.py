"""The checkpoint contract in the core, driven through the scripted fake backend: what a policy
may ask, what it sees afterwards, and what the next launch tells the backend."""

from __future__ import annotations

import pytest

from fakes import MovePolicy, Script, ScriptedBackend
from migsched.core.events import (
    CreateInstance,
    ExitStatus,
    InstanceCreated,
    JobArrived,
    JobExited,
    JobStarted,
    Kill,
    KillReason,
    Launch,
    MemorySample,
)
from migsched.core.source import TraceSource
from migsched.core.state import Attempt, JobView
from migsched.errors import SchedulingError
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.jobs.model import CheckpointSpec, JobClass, JobSpec
from migsched.run import open_core, run

A40 = get_model("A100-40GB")


def specs(checkpoint=True):
    entry = {"name": "a", "class": "ml-train", "command": "train"}
    if checkpoint:
        entry["checkpoint"] = {"signal": "SIGUSR1", "grace_s": 30, "resume_s": 2}
    return [j.spec for j in load_jobs_dict({"version": 1, "jobs": [entry]})]


def launches(fake):
    return [a for a in fake.executed if isinstance(a, Launch)]


def test_a_checkpointed_job_is_requeued_with_its_progress_and_the_next_launch_resumes():
    fake = ScriptedBackend([A40], Script(default_run_s=100.0, save_s=2.0))
    policy = MovePolicy("1g.5gb", "7g.40gb", at_s=41.0)  # started at 1 (create 1 s): 40% done at 41
    r = run(TraceSource(specs()), policy, fake)
    job = policy.view.jobs["a"]
    assert r.jobs[0].state == "done" and r.jobs[0].outcomes == ("killed:move", "ok")
    assert [(a.attempt, a.resume) for a in launches(fake)] == [(1, False), (2, True)]
    assert job.attempts[0].saved_progress == pytest.approx(0.4) and job.moves == 1
    assert job.checkpointable
    kill = next(a for a in fake.executed if isinstance(a, Kill))
    assert kill.checkpoint and kill.reason is KillReason.MOVE
    assert r.wasted_gpu_s == 0.0  # its work was kept


def test_a_checkpoint_that_does_not_finish_in_time_loses_the_progress():
    fake = ScriptedBackend([A40], Script(default_run_s=100.0, save_fails={"a"}))
    policy = MovePolicy("1g.5gb", "7g.40gb", at_s=41.0)
    r = run(TraceSource(specs()), policy, fake)
    job = policy.view.jobs["a"]
    assert [a.resume for a in launches(fake)] == [False, False]
    assert job.saved_progress is None and job.moves == 0 and r.wasted_gpu_s > 0


def test_asking_to_checkpoint_a_job_without_the_field_is_an_error_that_says_what_to_do():
    fake = ScriptedBackend([A40], Script(default_run_s=100.0))
    with pytest.raises(SchedulingError, match=r"cannot checkpoint 'a'.*no checkpoint: field.*checkpointable"):
        run(TraceSource(specs(checkpoint=False)), MovePolicy("1g.5gb", "7g.40gb", at_s=41.0), fake)


def test_without_a_backend_figure_the_saved_progress_is_the_last_reported_one():
    core = open_core(MovePolicy("1g.5gb", "7g.40gb", at_s=6.0), ScriptedBackend([A40]))
    assert [type(a) for a in core.handle([JobArrived(0.0, specs()[0])])] == [CreateInstance, Launch]
    core.handle([InstanceCreated(1.0, 0, "1g.5gb", 0), JobStarted(1.0, "a", 0, 0, attempt=1)])
    core.handle([MemorySample(5.0, "a", 100.0, 4.0, progress=0.3)])
    assert core.handle([], 6.0, woke=True) == [Kill("a", KillReason.MOVE, checkpoint=True)]
    core.handle([JobExited(8.0, "a", ExitStatus.KILLED, attempt=1, checkpointed=True)])
    job = core.view.jobs["a"]
    assert job.attempts[0].saved_progress == 0.3 and core.counters.checkpoints == 1


def test_an_exit_marked_checkpointed_counts_only_when_a_checkpoint_was_asked():
    core = open_core(MovePolicy("1g.5gb", "7g.40gb", at_s=6.0, checkpoint=False), ScriptedBackend([A40]))
    core.handle([JobArrived(0.0, specs()[0])])
    core.handle([InstanceCreated(1.0, 0, "1g.5gb", 0), JobStarted(1.0, "a", 0, 0, attempt=1)])
    core.handle([], 6.0, woke=True)
    core.handle([JobExited(8.0, "a", ExitStatus.KILLED, attempt=1, checkpointed=True, progress=0.5)])
    assert core.view.jobs["a"].saved_progress is None


def attempt(outcome, saved=None):
    return Attempt(0, 0, "1g.5gb", 4864, 0.0, 1.0, outcome, 0.0, saved)


def test_the_saved_progress_is_that_of_the_latest_run_and_a_launch_that_never_started_keeps_it():
    job = JobView(spec=JobSpec("a", "a", JobClass.ML_TRAIN, checkpoint=CheckpointSpec()))
    job.attempts = [attempt("killed:move", 0.3), attempt("launch-failed")]
    assert job.saved_progress == 0.3 and job.moves == 1
    job.attempts.append(attempt("oom"))  # a run that ended without a checkpoint loses it
    assert job.saved_progress is None and job.moves == 1
