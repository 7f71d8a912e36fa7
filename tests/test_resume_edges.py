"""Resume and confirmation edge cases found in review: each names what went wrong before."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from fakes import Script, ScriptedBackend
from migsched.backends.local.backend import LocalBackend
from migsched.backends.local.process import ManagedProcess, ProcessSpec
from migsched.core.backend import RunSettings
from migsched.core.events import (ActionFailed, CreateInstance, ExitStatus, JobArrived, JobExited, JobStarted,
                                  Launch)
from migsched.core.scheduler import SchedulerCore
from migsched.core.source import TraceSource
from migsched.core.state import JobState
from migsched.hardware import get_model
from migsched.jobs.model import JobClass, JobSpec
from migsched.live.recorder import StoreRecorder
from migsched.live.session import RunSetupError, _surviving_instances, resume_run, start_run
from migsched.policies.registry import create_policy
from migsched.run import drive, settings_for
from migsched.store.db import RunStore

A40 = get_model("A100-40GB")


def spec(job_id: str, seconds: float = 0.2) -> JobSpec:
    return JobSpec(job_id, job_id, JobClass.SCIENTIFIC, hint_gib=1.0,
                   argv=(sys.executable, "-c", f"import time; time.sleep({seconds})"))


def _core(policy: str, fake: ScriptedBackend) -> SchedulerCore:
    pol = create_policy(policy)
    return SchedulerCore(pol, fake.open(settings_for(pol, fake)))


@pytest.mark.parametrize("policy", ["migm", "greedy", "static"])
def test_queued_jobs_restored_on_resume_are_scheduled(policy):
    """migm fed its queue index only from arrivals, so restored queued jobs were rejected."""
    fake = ScriptedBackend([A40])
    core = _core(policy, fake)
    for i in range(3):
        core.restore_job(spec(f"j{i}"), seq=i, arrived_s=0.0, state=JobState.QUEUED)
    drive(core, fake, TraceSource([]))
    assert {j.job_id: j.state for j in core.view.jobs.values()} == {f"j{i}": JobState.DONE for i in range(3)}


def test_static_on_resume_keeps_the_layout_it_has_and_never_destroys_a_busy_instance():
    """static re-chose a layout from the remaining queue and tried to destroy busy instances."""
    fake = ScriptedBackend([A40], Script(instances={0: [("1g.5gb", 2), ("3g.20gb", 4)]}))
    core = _core("static", fake)
    core.restore_job(spec("running"), seq=0, arrived_s=0.0, state=JobState.RUNNING, gpu=0, start=2, launched_s=0.0)
    core.restore_job(spec("big"), seq=1, arrived_s=0.0, state=JobState.QUEUED)
    acts = core.handle([], 0.0)
    assert not [a for a in acts if type(a).__name__ == "DestroyInstance"]
    assert [(i.profile.name, i.start) for i in core.policy.layout.instances] == [("1g.5gb", 2), ("3g.20gb", 4)]


def test_a_stale_launch_failure_does_not_undo_the_current_attempt():
    """A late ActionFailed for attempt 1 used to requeue attempt 2 (two copies could run)."""
    fake = ScriptedBackend([A40])
    core = _core("greedy", fake)
    acts = core.handle([JobArrived(0.0, spec("a"))], 0.0)
    launch1 = next(a for a in acts if isinstance(a, Launch))
    core.handle([ActionFailed(0.0, launch1, "busy")], 0.0)  # attempt 1 failed: requeued and relaunched
    job = core.view.jobs["a"]
    assert job.placed and job.attempt == 2
    core.handle([ActionFailed(0.1, launch1, "busy, again")], 0.1)  # stale: about attempt 1
    assert job.placed and job.attempt == 2
    core.handle([JobStarted(0.2, "a", job.gpu, job.start, attempt=1)], 0.2)  # stale start
    assert job.launched_s is None


def test_a_create_confirmed_after_its_destroy_began_is_recorded_without_error(tmp_path):
    """The store refused 'destroying -> up' and stopped the scheduler."""
    fake = ScriptedBackend([A40], Script(fail_launch={"a": ("no such program", True)}))
    pol = create_policy("greedy")
    core = SchedulerCore(pol, fake.open(settings_for(pol, fake)))
    store = RunStore.create(tmp_path / "s.db", {"backend": "fake"})
    drive(core, fake, TraceSource([spec("a")]), StoreRecorder(store))
    assert core.view.jobs["a"].state is JobState.FAILED
    assert store.instances() == []  # created, then destroyed: nothing left


def test_overlapping_instance_rows_left_by_a_crash_do_not_block_the_resume(tmp_path):
    """A destroy 7g@0 and a create 3g@4 written in one batch made every resume fail."""
    store = RunStore.create(tmp_path / "s.db", {"backend": "local"})
    store.instance_intent(0, 0, "7g.40gb")
    store.instance_up(0, 0)
    store.instance_destroying(0, 0)
    # the crash came after the destroy was written and before it was confirmed: 7g@0 is
    # 'destroying'; the create of 3g@4 in the same batch cannot be written on top of it in the
    # store's own checks, so put the two rows in as a crashed batch leaves them
    store._conn.execute("INSERT INTO instances (gpu, start, profile, state) VALUES (0, 4, '3g.20gb', 'creating')")
    store._conn.commit()
    assert _surviving_instances(store, [A40]) == [[("3g.20gb", 4)]]
    assert [(r.start, r.profile) for r in store.instances()] == [(4, "3g.20gb")]


def test_a_second_scheduler_on_the_same_state_file_is_refused(tmp_path):
    """Nothing stopped a --resume while the first scheduler ran: a job ran twice at once."""
    jobs = tmp_path / "tasks.txt"
    jobs.write_text(f"{sys.executable} -c pass\n")
    first = start_run(jobs, backend="local", gpu="A100-40GB", gpus=1, policy="greedy", state=tmp_path / "r.db")
    try:
        with pytest.raises(RunSetupError, match=f"in use by another migsched run \\(pid {os.getpid()}\\)"):
            resume_run(tmp_path / "r.db")
    finally:
        first.store.close()
        first.lock.release()
    resume_run(tmp_path / "r.db").lock.release()  # free again once the first one let go


def test_the_run_folder_is_absolute_even_for_a_relative_state_path(tmp_path, monkeypatch):
    """A relative --exit-file on the shim's command line hid it from the resume's search."""
    monkeypatch.chdir(tmp_path)
    jobs = tmp_path / "tasks.txt"
    jobs.write_text(f"{sys.executable} -c pass\n")
    s = start_run(Path("tasks.txt"), backend="local", gpu="A100-40GB", gpus=1, policy="greedy", state=Path("r.db"))
    try:
        assert s.backend.run_dir.is_absolute() and Path(s.store.meta()["run_dir"]).is_absolute()
    finally:
        s.store.close()
        s.lock.release()


def _wait_exit(path: Path, timeout_s: float = 10.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert time.monotonic() - t0 < timeout_s, "no exit record"
        time.sleep(0.02)


def test_a_kill_in_flight_at_the_crash_ends_as_killed_not_failed(tmp_path):
    """The scheduler decided a kill, sent SIGTERM and died: the resume called it a failure."""
    be = LocalBackend([A40], tmp_path)
    be.open(RunSettings(True, None))
    be.execute([CreateInstance(0, "1g.5gb", 0), Launch("j", 0, 0, 1, spec("j", 30.0))])
    started = next(e for e in be.poll(time.time() + 5) if isinstance(e, JobStarted))
    pid = int(started.handle.split(":")[0])
    time.sleep(0.3)
    for child in psutil.Process(pid).children():
        os.killpg(child.pid, signal.SIGTERM)  # what terminate() had sent before the crash
    _wait_exit(tmp_path / "logs" / "j.1.exit.json")
    shim = psutil.Process(pid)
    t0 = time.monotonic()
    while shim.is_running() and shim.status() != psutil.STATUS_ZOMBIE:  # the supervisor finishes
        assert time.monotonic() - t0 < 10
        time.sleep(0.02)
    fresh = LocalBackend([A40], tmp_path, instances=[[("1g.5gb", 0)]])
    fresh.open(RunSettings(True, None))
    plain = fresh.recover(spec("j"), 1, 0, 0, started.handle)
    stopping = fresh.recover(spec("j"), 1, 0, 0, started.handle, stopping=True)
    assert plain.state == stopping.state == "ended"
    assert plain.exit.status is ExitStatus.FAILED and stopping.exit.status is ExitStatus.KILLED


def test_a_job_that_ended_before_the_kill_reached_it_is_ok(tmp_path):
    """terminate() after the job had exited 0 made a finished job 'killed' (and run again)."""
    ps = ProcessSpec("q", 1, (sys.executable, "-c", "pass"), {}, None, tmp_path, None, None, tmp_path / "p")
    proc = ManagedProcess.start(ps)
    _wait_exit(ps.exit_path)
    time.sleep(0.05)
    proc.terminate(1.0)
    t0 = time.monotonic()
    while (info := proc.poll()) is None:
        assert time.monotonic() - t0 < 10
        time.sleep(0.02)
    assert info.status == "ok"


@pytest.mark.parametrize("ends_in_first_call", [False, True])
def test_migm_learns_from_a_restored_running_job_when_it_ends(ends_in_first_call):
    """A resumed run's running jobs never entered migm's running set (only launches did), so
    their completion taught neither their family's run time nor the queue's ranks."""
    fake = ScriptedBackend([A40], Script(instances={0: [("3g.20gb", 4)]}))
    core = _core("migm", fake)
    core.restore_job(spec("nw-1"), seq=0, arrived_s=0.0, state=JobState.RUNNING, gpu=0, start=4, launched_s=0.0)
    exit_ = JobExited(40.0, "nw-1", ExitStatus.OK, peak_mib=512.0)
    if ends_in_first_call:  # the exit happened while the scheduler was down: told with the restore
        core.handle([exit_], 40.0)
    else:
        core.handle([], 0.0)
        core.handle([exit_], 40.0)
    assert core.view.jobs["nw-1"].state is JobState.DONE
    assert core.policy.times.compute["nw"] == {3: pytest.approx(40.0)}  # family "nw", on 3 slices
    assert "nw-1" not in core.policy.index.running


def test_status_counts_the_jobs_that_have_not_arrived(tmp_path):
    """`status` read only the store, which holds a job from its arrival on: a run whose jobs
    arrive hours later showed 'total 0'. The job file's count is kept, and a resume that adds
    jobs raises it."""
    from rich.console import Console

    from migsched.store.status import render_status, status_dict

    def entries(n: int) -> str:
        return yaml.safe_dump({"version": 1, "jobs": [
            {"name": f"j{i}", "class": "scientific", "command": [sys.executable, "-c", "pass"],
             "arrival_s": 100_000 + i} for i in range(n)]})

    jobs = tmp_path / "late.yaml"
    jobs.write_text(entries(2))
    s = start_run(jobs, backend="local", gpu="A100-40GB", gpus=1, policy="greedy", state=tmp_path / "r.db")
    try:
        st = status_dict(s.store)
        assert st["not_arrived"] == 2 and sum(st["counts"].values()) == 0
        console = Console(width=100, record=True, file=open(os.devnull, "w"))
        console.print(render_status(s.store))
        text = console.export_text()
        assert "not arrived 2" in text and "total 2" in text and "jobs_total" not in text
    finally:
        s.store.close()
        s.lock.release()
    jobs.write_text(entries(3))
    r = resume_run(tmp_path / "r.db")
    try:
        assert status_dict(r.store)["not_arrived"] == 3
    finally:
        r.store.close()
        r.lock.release()


def test_a_resumed_run_fences_the_gpus_its_state_file_names(tmp_path):
    """The fences kept in the state file (`fenced_gpus`, by UUID) reach the resumed core."""
    from migsched.live.recorder import FENCED_KEY

    jobs = tmp_path / "tasks.txt"
    jobs.write_text(f"{sys.executable} -c pass\n")
    s = start_run(jobs, backend="local", gpu="A100-40GB", gpus=2, policy="greedy", state=tmp_path / "r.db")
    try:
        uuid = s.core.view.gpus[1].uuid
        assert uuid and not s.core.view.gpus[1].fenced
        s.store.set_meta(FENCED_KEY, {uuid: "refused when it joined"})
    finally:
        s.store.close()
        s.lock.release()
    r = resume_run(tmp_path / "r.db")
    try:
        assert r.core.view.gpus[1].fenced == "refused when it joined" and not r.core.view.gpus[0].fenced
    finally:
        r.store.close()
        r.lock.release()
