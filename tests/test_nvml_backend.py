"""The `nvml` backend end to end against the fake NVML (tests/fake_nvml): real child processes,
each on its own MIG device, explicit placements, teardown after each job, faults survived, MIG
mode never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migsched.core.source import TraceSource
from migsched.jobs.model import JobClass, JobSpec
from migsched.policies.registry import create_policy
from migsched.run import run
from nvml_support import FAKE, fake_pynvml, nvml_backend

WORK = str(Path(__file__).parent / "jobs" / "work.py")
SHOW = ("import os, time, sys; print(os.environ.get('CUDA_VISIBLE_DEVICES')); sys.stdout.flush(); "
        "time.sleep(float(sys.argv[1]))")


@pytest.fixture
def nv(monkeypatch):
    yield from fake_pynvml(monkeypatch, ["A100-40GB"])


def specs(n, seconds=0.4, hint=4.0):
    return [JobSpec(f"j{i}", f"j{i}", JobClass.SCIENTIFIC, hint_gib=hint, argv=(sys.executable, "-c", SHOW, str(seconds)))
            for i in range(n)]


def outs(tmp_path, job_id):
    return sorted((tmp_path / "logs").glob(f"{job_id}.*.out"))


def creates(nv):
    return [e for e in nv.fake_state()["log"] if e["call"].startswith("nvmlDeviceCreateGpuInstance")]


def test_a_batch_runs_each_job_on_its_own_mig_device_and_tears_instances_down(nv, tmp_path):
    be = nvml_backend(nv, tmp_path)
    r = run(TraceSource(specs(5)), create_policy("greedy"), be)
    assert r.jobs_completed == 5 and r.backend == "nvml" and r.energy_source == "measured"
    seen = [outs(tmp_path, f"j{i}")[-1].read_text().strip() for i in range(5)]
    assert all(s.startswith("MIG-") for s in seen) and len(set(seen)) == 5  # one device each
    made = creates(nv)
    assert made and all(e["call"] == "nvmlDeviceCreateGpuInstanceWithPlacement" and e["result"] == "ok" for e in made)
    state = nv.fake_state()
    assert state["gpus"][0]["instances"] == []  # torn down after the jobs
    assert not state["gpus"][0]["set_mig_mode_called"]
    assert r.energy_j > 0
    # every job got a share of the measured energy, and the shares do not exceed the total
    assert set(r.job_energy_j) == {f"j{i}" for i in range(5)} and all(e > 0 for e in r.job_energy_j.values())
    assert sum(r.job_energy_j.values()) <= r.energy_j * 1.001


def test_migm_runs_a_batch_with_memory_samples_from_the_mig_devices(nv, tmp_path):
    be = nvml_backend(nv, tmp_path)
    jobs = [JobSpec(f"w{i}", f"w{i}", JobClass.ML_TRAIN, hint_gib=2.0,
                    argv=(sys.executable, WORK, "--name", f"w{i}", "--seconds", "0.6", "--grow-mib", "20"))
            for i in range(3)]
    r = run(TraceSource(jobs), create_policy("migm"), be)
    assert r.jobs_completed == 3
    assert not nv.fake_state()["gpus"][0]["set_mig_mode_called"]


def test_faults_are_survived_create_refused_in_use_after_exit_transient_errors(nv, tmp_path):
    nv.fake_fail_next("nvmlDeviceCreateGpuInstanceWithPlacement", nv.NVMLError_InsufficientResources, times=1)
    nv.fake_fail_next("nvmlDeviceGetComputeRunningProcesses_v3", nv.NVMLError_Unknown, times=2)
    nv.fake_in_use_after_exit(0.3)
    be = nvml_backend(nv, tmp_path)
    r = run(TraceSource(specs(3, seconds=0.5)), create_policy("migm"), be)  # migm samples: NVML sees the processes
    assert r.jobs_completed == 3 and r.failed_actions >= 1
    destroys = [e for e in nv.fake_state()["log"] if e["call"] == "nvmlGpuInstanceDestroy"]
    assert any(e["result"] != "ok" for e in destroys) or any(
        e["call"] == "nvmlComputeInstanceDestroy" and e["result"] != "ok" for e in nv.fake_state()["log"])
    assert nv.fake_state()["gpus"][0]["instances"] == []


def test_instances_it_did_not_create_are_reserved_and_kept(nv, tmp_path):
    nv.fake_reset(gpus=["A100-40GB"], instances=[[("3g.20gb", 4)]])
    be = nvml_backend(nv, tmp_path)
    r = run(TraceSource(specs(2, hint=15.0)), create_policy("greedy"), be)
    assert r.jobs_completed == 2
    inst = nv.fake_state()["gpus"][0]["instances"]
    assert [(i["profile"], i["start"]) for i in inst] == [("3g.20gb", 4)]  # never destroyed
    assert not any(e.get("args") and e["call"] == "nvmlGpuInstanceDestroy" and e["args"][0].get("start") == 4
                   for e in nv.fake_state()["log"])


def test_with_manage_existing_an_instance_destroyed_behind_its_back_counts_as_destroyed(nv, tmp_path):
    nv.fake_reset(gpus=["A100-40GB"], instances=[[("1g.5gb", 0)]])
    be = nvml_backend(nv, tmp_path, manage_existing=True)
    be.open(__import__("migsched.core.backend", fromlist=["RunSettings"]).RunSettings(True, None))
    nv.fake_destroy_behind_back(0, 0)
    from migsched.core.events import DestroyInstance, InstanceDestroyed
    be.execute([DestroyInstance(0, 0)])
    assert [type(e) for e in be.poll(be.clock.now_s() + 1.0)] == [InstanceDestroyed]


def test_mig_mode_is_never_changed_without_the_flag(nv, tmp_path):
    nv.fake_reset(gpus=["A100-40GB"], mig=False)
    be = nvml_backend(nv, tmp_path)
    from migsched.backends.nvml.backend import MigModeError
    with pytest.raises(MigModeError, match=r"nvidia-smi -i 0 -mig 1.*resets the GPU"):
        run(TraceSource(specs(1)), create_policy("greedy"), be)
    assert not nv.fake_state()["gpus"][0]["set_mig_mode_called"]


def test_the_cli_runs_a_batch_on_the_fake_through_pythonpath(tmp_path):
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("".join(f"{sys.executable} -c \"print('t{i}')\"\n" for i in range(3)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKE), os.environ.get("PYTHONPATH", "")]),
           "FAKE_NVML_GPUS": "A100-80GB"}
    rc = subprocess.run([sys.executable, "-m", "migsched.cli.main", "run", str(tasks), "--backend", "nvml",
                         "--policy", "greedy", "--state", str(tmp_path / "r.db"), "--json", str(tmp_path / "o.json")],
                        env=env, capture_output=True, text=True, timeout=120)
    assert rc.returncode == 0, rc.stderr
    res = json.loads((tmp_path / "o.json").read_text())["results"][0]
    assert res["backend"] == "nvml" and res["jobs_completed"] == 3 and res["energy_source"] == "measured"
