"""Checkpoints in the run store and across `--resume`: a checkpointed attempt and the requeue
with its progress survive a scheduler restart, and a checkpoint in flight is asked again."""

from __future__ import annotations

import json
import sqlite3

import pytest

from fakes import MovePolicy, Script, ScriptedBackend
from migsched.core.backend import Recovery
from migsched.core.events import ExitStatus, JobExited, Launch
from migsched.core.source import TraceSource
from migsched.hardware import get_model
from migsched.jobs import load_jobs_dict
from migsched.live.recorder import StoreRecorder
from migsched.live.restore import restore_core
from migsched.run import open_core, run
from migsched.store.codec import spec_from_dict, spec_to_dict
from migsched.store.db import RunStore
from migsched.store.rows import AttemptError
from migsched.store.schema import SCHEMA_VERSION

A40 = get_model("A100-40GB")


def spec():
    entry = {"name": "a", "class": "ml-train", "command": "train",
             "checkpoint": {"signal": "SIGUSR2", "grace_s": 12, "resume_s": 3}}
    return load_jobs_dict({"version": 1, "jobs": [entry]})[0].spec


def test_the_checkpoint_field_survives_the_codec():
    s = spec()
    assert spec_from_dict(json.loads(json.dumps(spec_to_dict(s)))) == s
    old = {k: v for k, v in spec_to_dict(s).items() if k != "checkpoint"}  # written before checkpoints
    assert spec_from_dict(old).checkpoint is None


def test_the_recorder_stores_a_checkpointed_attempt_and_a_resumed_run_launches_from_it(tmp_path):
    with RunStore.create(tmp_path / "run.db", {"backend": "fake"}) as st:
        fake = ScriptedBackend([A40], Script(default_run_s=100.0, save_s=2.0))
        run(TraceSource([spec()]), MovePolicy("1g.5gb", "7g.40gb", at_s=41.0), fake, StoreRecorder(st))
        first, second = st.attempts("a")
        assert first.outcome == "killed:move" and first.saved_progress == pytest.approx(0.4)
        assert second.outcome == "ok" and second.saved_progress is None
        assert st.meta()["kill/a"] == {"attempt": 1, "reason": "move", "checkpoint": True}


def test_a_job_requeued_with_its_progress_resumes_after_a_scheduler_restart(tmp_path):
    with RunStore.create(tmp_path / "run.db", {"backend": "fake"}) as st:
        st.add_jobs([("a", 0, spec_to_dict(spec()))])
        st.begin_attempt("a", 1, 0, 0, "1g.5gb", 0.0)
        st.attempt_started("a", 1, 123, 1.0, 1.0)
        st.attempt_ended("a", 1, "killed:move", "queued", 43.0, peak_mib=10.0, saved_progress=0.4)
    with RunStore.open(tmp_path / "run.db") as st:  # the next session
        fake = ScriptedBackend([A40])
        policy = MovePolicy("1g.5gb", "7g.40gb", at_s=1e9)
        core = open_core(policy, fake)
        restore_core(core, fake, st)
        job = core.view.jobs["a"]
        assert job.saved_progress == 0.4 and job.moves == 1 and job.checkpointable
        launch = next(a for a in core.handle([], 0.0) if isinstance(a, Launch))
        assert launch.resume and launch.attempt == 2


class _Recovering(ScriptedBackend):
    """A fake whose process ended while the scheduler was down, after its checkpoint signal."""

    def recover(self, spec, attempt, gpu, start, handle, *, launched_s=None, stopping=False, checkpoint=False):
        self.asked = (stopping, checkpoint)
        return Recovery("ended", exit=JobExited(50.0, spec.job_id, ExitStatus.KILLED, attempt=attempt,
                                                checkpointed=checkpoint, progress=0.6 if checkpoint else None))


def test_a_checkpoint_in_flight_when_the_scheduler_stopped_is_asked_again_and_kept(tmp_path):
    with RunStore.create(tmp_path / "run.db", {"backend": "fake"}) as st:
        st.add_jobs([("a", 0, spec_to_dict(spec()))])
        st.begin_attempt("a", 1, 0, 0, "1g.5gb", 0.0)
        st.attempt_started("a", 1, 123, 1.0, 1.0)
        st.set_meta("kill/a", {"attempt": 1, "reason": "move", "checkpoint": True})
    with RunStore.open(tmp_path / "run.db") as st:
        fake = _Recovering([A40], Script(instances={0: [("1g.5gb", 0)]}))
        core = open_core(MovePolicy("1g.5gb", "7g.40gb", at_s=1e9), fake)
        restored = restore_core(core, fake, st)
        assert fake.asked == (True, True)
        core.handle(list(restored.exits), 50.0)
        assert core.view.jobs["a"].attempts[-1].saved_progress == 0.6


def test_only_a_kill_that_requeues_can_save_progress_and_it_is_a_fraction(tmp_path):
    with RunStore.create(tmp_path / "run.db", {"backend": "fake"}) as st:
        st.add_jobs([("a", 0, {"job_id": "a"})])
        st.begin_attempt("a", 1, 0, 0, "1g.5gb", 0.0)
        with pytest.raises(AttemptError, match="saved_progress 0.5 with outcome 'oom'"):
            st.attempt_ended("a", 1, "oom", "queued", 1.0, saved_progress=0.5)
        with pytest.raises(AttemptError, match="fraction from 0 to 1"):
            st.attempt_ended("a", 1, "killed:move", "queued", 1.0, saved_progress=1.5)


def test_a_version_1_store_is_migrated_when_opened(tmp_path):
    path = tmp_path / "run.db"
    with RunStore.create(path, {"backend": "fake"}) as st:
        st.add_jobs([("a", 0, {"job_id": "a"})])
        st.begin_attempt("a", 1, 0, 0, "1g.5gb", 0.0)
    conn = sqlite3.connect(path)  # make it what a version-1 migsched wrote
    conn.execute("ALTER TABLE attempts DROP COLUMN saved_progress")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with RunStore.open(path) as st:
        assert st.meta()["schema_version"] == SCHEMA_VERSION == 2
        st.attempt_ended("a", 1, "killed:move", "queued", 5.0, saved_progress=0.25)
        assert st.attempts("a")[0].saved_progress == 0.25
