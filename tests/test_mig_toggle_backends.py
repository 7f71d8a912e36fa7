"""`SetMigMode` on the real backends: `local` (real child processes on an emulated GPU), `nvml`
against the fake NVML (which refuses a change while GPU instances exist, as NVML does), and
what a resumed run keeps of the modes."""

from __future__ import annotations

import sys

import pytest

from migsched.backends.local.backend import LocalBackend
from migsched.core.events import ActionFailed, Launch, MigModeSet, SetMigMode
from migsched.core.scheduler import SchedulerCore
from migsched.core.source import TraceSource
from migsched.errors import SchedulingError
from migsched.hardware import get_model
from migsched.jobs.model import JobClass, JobSpec
from migsched.live.recorder import MIG_OFF_KEY, StoreRecorder
from migsched.live.session import make_backend
from migsched.policies.registry import create_policy
from migsched.run import open_core, run, settings_for
from migsched.store.db import RunStore
from nvml_support import fake_pynvml, nvml_backend

A40 = get_model("A100-40GB")
SHOW = ("import os, time, sys; print(os.environ.get('CUDA_VISIBLE_DEVICES')); sys.stdout.flush(); "
        "time.sleep(float(sys.argv[1]))")


def spec(name="a", seconds=0.3):
    return JobSpec(name, name, JobClass.ML_TRAIN, hint_gib=4.0, argv=(sys.executable, "-c", SHOW, str(seconds)))


def events_until(be, kinds, limit_s=20.0):
    """Poll the backend until an event of one of `kinds` comes; returns every event seen."""
    seen = []
    deadline = be.clock.now_s() + limit_s
    while be.clock.now_s() < deadline:
        evs = be.poll(min(deadline, be.clock.now_s() + 0.2)) or []
        seen += evs
        if any(isinstance(e, kinds) for e in evs):
            return seen
    raise AssertionError(f"no {kinds} in {limit_s} s: {seen}")


def test_local_runs_a_real_job_on_a_gpu_it_turned_mig_off_on(tmp_path):
    be = LocalBackend([A40], tmp_path, sample_interval_s=0.1, kill_grace_s=1.0)
    r = run(TraceSource([spec()]), create_policy("migm"), be)
    assert r.jobs_completed == 1 and r.mig_mode_changes == 1
    assert [x.profile for x in r.jobs[0].runs] == ["whole"]
    assert be._hw.mig_off() == [0]


def test_local_refuses_a_change_while_a_job_runs(tmp_path):
    be = LocalBackend([A40], tmp_path, sample_interval_s=0.1, kill_grace_s=1.0)
    pol = create_policy("migm")
    be.open(settings_for(pol, be))
    be.execute([SetMigMode(0, False), Launch("a", 0, 0, attempt=1, spec=spec(seconds=2.0))])
    seen = events_until(be, (MigModeSet,))
    assert MigModeSet(seen[0].time_s, 0, False) in seen
    be.execute([SetMigMode(0, True)])
    failed = [e for e in events_until(be, (ActionFailed,)) if isinstance(e, ActionFailed)]
    assert "in use" in failed[0].reason
    be.stop_all()


def test_a_resumed_local_run_finds_its_mig_off_gpus_again(tmp_path):
    store = RunStore.create(tmp_path / "run.db", {"backend": "local"})
    pol = create_policy("migm")
    be = LocalBackend([A40, A40], tmp_path / "d", sample_interval_s=0.1)
    core = open_core(pol, be)
    core.view.set_mig(1, False)  # as if SetMigMode(1, False) had been applied
    StoreRecorder(store).before_execute(core, [SetMigMode(1, False)])
    assert store.meta()[MIG_OFF_KEY] == [1]
    again = make_backend("local", [A40, A40], [], tmp_path / "d2", mib_per_gib=16.0, mig_off=store.meta()[MIG_OFF_KEY])
    infos = again.open(settings_for(pol, again))
    assert [g.mig_enabled for g in infos] == [True, False]
    # the core adopts the MIG-off GPU for a policy that toggles MIG, and refuses it for one that does not
    assert [g.mig for g in SchedulerCore(pol, infos, mig_toggle=True).view.gpus] == [True, False]
    with pytest.raises(SchedulingError, match="has MIG off"):
        SchedulerCore(create_policy("greedy"), infos, mig_toggle=True)


@pytest.fixture
def nv(monkeypatch):
    yield from fake_pynvml(monkeypatch, ["A100-40GB"])


def test_nvml_changes_mig_modes_only_when_the_operator_allowed_it(nv, tmp_path):
    be = nvml_backend(nv, tmp_path)
    assert not be.capabilities.mig_toggle
    r = run(TraceSource([spec()]), create_policy("migm"), be)
    assert r.jobs_completed == 1 and r.mig_mode_changes == 0
    assert not nv.fake_state()["gpus"][0]["set_mig_mode_called"]


def test_nvml_runs_a_job_pinned_to_the_whole_gpu_and_restores_mig_at_the_end(nv, tmp_path):
    be = nvml_backend(nv, tmp_path, allow_mig_change=True)
    assert be.capabilities.mig_toggle
    r = run(TraceSource([spec()]), create_policy("migm"), be)
    assert r.jobs_completed == 1 and r.mig_mode_changes == 1 and r.jobs[0].runs[-1].profile == "whole"
    state = nv.fake_state()["gpus"][0]
    out = sorted((tmp_path / "logs").glob("a.*.out"))[-1].read_text().strip()
    assert out == state["uuid"]  # CUDA_VISIBLE_DEVICES=GPU-<uuid>: the whole GPU, no other
    assert state["set_mig_mode_calls"] == [0, 1]  # off for the job, back on at close
    assert state["mig_mode"] == [1, 1] and state["instances"] == []


def test_nvml_refuses_to_turn_mig_off_while_instances_exist(nv, tmp_path):
    from migsched.backends.nvml.backend import NvmlMig
    be = nvml_backend(nv, tmp_path, allow_mig_change=True)
    be.open(settings_for(create_policy("migm"), be))
    hw: NvmlMig = be._hw
    assert hw.create(0, "1g.5gb", 0)[0] is not None
    assert "still has GPU instances" in hw.set_mode(0, False, busy=False)
    nv_calls = nv.fake_state()["gpus"][0]["set_mig_mode_calls"]
    assert nv_calls == []  # refused before NVML was asked
    be.close()


def test_a_resumed_nvml_run_keeps_a_gpu_its_last_session_turned_off_and_restores_it_at_close(nv, tmp_path):
    # GPU 1 was turned MIG off by the run's last session (the store says so): open keeps each
    # GPU's mode for migm (it asks no instances of a MIG-off GPU), the core adopts GPU 1 as one
    # whole GPU, and close turns MIG back on there.
    nv.fake_reset(gpus=["A100-40GB", "A100-40GB"], mig=[True, False])
    be = nvml_backend(nv, tmp_path, allow_mig_change=True, mig_off=[1])
    core = open_core(create_policy("migm"), be)
    assert [g.mig for g in core.view.gpus] == [True, False]
    assert nv.fake_state()["gpus"][1]["set_mig_mode_calls"] == []  # open changed nothing
    be.close()
    assert nv.fake_state()["gpus"][1]["set_mig_mode_calls"] == [1]


def test_nvml_withdraws_a_mig_change_left_pending_and_retries_in_use(nv, tmp_path):
    be = nvml_backend(nv, tmp_path, allow_mig_change=True, retry_waits_s=(0.01, 0.01))
    be.open(settings_for(create_policy("migm"), be))
    calls = []

    def pending(gpu, enabled):  # NVML: accepted, but the activation needs a reset
        calls.append(enabled)
        return 16 if len(calls) == 1 else 0
    be.nvml.set_mig_mode = pending
    why, in_use = be._hw.set_mode_once(0, False, busy=False)
    assert "pending" in why and not in_use and calls == [False, True]  # the request withdrawn
    assert be._hw.modes[0]

    tries = []

    def busy_then_ok(gpu, enabled):  # "in use" a moment after a process exited, then done
        tries.append(enabled)
        if len(tries) < 3:
            raise nv_error(nv, 19)
        return 0
    be.nvml.set_mig_mode = busy_then_ok
    be.execute([SetMigMode(0, False)])
    seen = events_until(be, (MigModeSet, ActionFailed), limit_s=5.0)
    assert any(isinstance(e, MigModeSet) for e in seen) and len(tries) == 3
    be.close()


def nv_error(nv, code):
    from migsched.backends.nvml.errors import NvmlError
    return NvmlError("nvmlDeviceSetMigMode", 0, code, "In use by another client")


def test_recovering_a_launch_whose_instance_was_never_made_finds_it_absent(tmp_path):
    # The store recorded a launch on the whole GPU, but the stop came before MIG went off (or a
    # create before its instance): nothing can have run there, so the job is queued again.
    be = LocalBackend([A40], tmp_path, sample_interval_s=0.1)
    be.open(settings_for(create_policy("migm"), be))
    assert be.recover(spec(), 1, 0, 0, "").state == "absent"
