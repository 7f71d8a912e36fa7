"""The ray backend's parts that need no cluster: GpuLost in the core, discovery helpers, no-Ray errors."""

from __future__ import annotations

import sys

import pytest

from migsched.backends.ray import INSTALL_HINT, RayMissingError, require_ray
from migsched.backends.ray.agent import AgentConfig, emulated_models, node_name
from migsched.backends.ray.cluster import _energy_between
from migsched.cli.main import main
from migsched.core.backend import GpuInfo
from migsched.core.events import CreateInstance, GpuLost, InstanceCreated, JobArrived, JobStarted, Launch
from migsched.core.scheduler import SchedulerCore
from migsched.errors import MigschedError
from migsched.hardware import get_model
from migsched.jobs.model import JobClass, JobSpec
from migsched.policies.registry import create_policy


def _spec(i: int) -> JobSpec:
    return JobSpec(job_id=f"j{i}", name=f"j{i}", job_class=JobClass.SCIENTIFIC, hint_gib=4.0, command="true",
                   argv=("true",))


def _confirm(core: SchedulerCore, actions, t: float) -> list:
    events = []
    for a in actions:
        if isinstance(a, CreateInstance):
            events.append(InstanceCreated(t, a.gpu, a.profile, a.start))
        elif isinstance(a, Launch):
            events.append(JobStarted(t, a.job_id, a.gpu, a.start, attempt=a.attempt))
    return events


@pytest.mark.parametrize("policy", ["greedy", "serial"])
def test_lost_gpu_requeues_its_jobs_and_is_never_used_again(policy: str) -> None:
    model = get_model("A100-40GB")
    pol = create_policy(policy)
    core = SchedulerCore(pol, [GpuInfo(i, model, f"u{i}", pol.mig_enabled) for i in range(2)])
    actions = core.handle([JobArrived(0.0, _spec(i)) for i in range(2)], 0.0)
    while True:  # confirm until every job runs
        events = _confirm(core, actions, 1.0)
        if not events:
            break
        actions = core.handle(events, 1.0)
    on_gpu0 = [j for j in core.view.running.values() if j.gpu == 0]
    assert on_gpu0, "the test needs a job on GPU 0"
    actions = core.handle([GpuLost(2.0, 0, "node n0 was lost")], 2.0)
    for job in on_gpu0:
        assert job.attempts[-1].outcome.startswith("killed"), job.attempts
    assert all(getattr(a, "gpu", 1) == 1 for a in actions), actions
    for _ in range(3):  # however the policy goes on, GPU 0 is never planned on
        events = _confirm(core, actions, 3.0)
        actions = core.handle(events, 3.0)
        assert all(getattr(a, "gpu", 1) == 1 for a in actions), actions
    assert all(i.busy for i in core.view.gpus[0].layout.instances)
    assert all(j.gpu == 1 for j in core.view.running.values())


def test_lost_gpu_requeues_a_launch_not_yet_started() -> None:
    model = get_model("A100-40GB")
    pol = create_policy("serial")
    core = SchedulerCore(pol, [GpuInfo(i, model, f"u{i}", False) for i in range(2)])
    actions = core.handle([JobArrived(0.0, _spec(0))], 0.0)
    launch = next(a for a in actions if isinstance(a, Launch))
    actions = core.handle([GpuLost(1.0, launch.gpu, "gone")], 1.0)
    job = core.view.jobs["j0"]
    assert job.attempts[-1].outcome == "launch-failed"
    relaunch = [a for a in actions if isinstance(a, Launch)]
    assert relaunch and relaunch[0].gpu != launch.gpu


def test_emulated_models_from_node_resources_else_the_default() -> None:
    res = {"CPU": 1.0, "migsched_gpu:A100-80GB": 2.0, "migsched_gpu:H100-80GB": 1.0}
    assert [m.name for m in emulated_models(res, "A100-40GB", 3)] == ["A100-80GB", "A100-80GB", "H100-80GB"]
    assert [m.name for m in emulated_models({"CPU": 4.0}, "A100-40GB", 3)] == ["A100-40GB"] * 3


def test_node_name_from_its_resource_else_its_address() -> None:
    assert node_name({"migsched_node:gpu-a": 1.0}, "10.0.0.5", "abcdef" * 8) == "gpu-a"
    assert node_name({}, "10.0.0.5", "abcdef" * 8) == "10.0.0.5"


def test_agent_config_names_the_valid_node_backends() -> None:
    with pytest.raises(MigschedError, match="valid: local, nvml"):
        AgentConfig(node_backend="sim", run_dir="/tmp/x", origin_unix=0.0)


def test_energy_between_integrates_power_steps() -> None:
    series = [(0.0, 100.0), (10.0, 300.0)]
    assert _energy_between(series, 5.0, 20.0) == pytest.approx(5 * 100 + 10 * 300)
    assert _energy_between(series, 30.0, 20.0) == 0.0


def test_without_ray_the_backend_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RayMissingError, match=r"pip install 'migsched\[ray\]'"):
        require_ray()
    tasks = tmp_path / "t.txt"
    tasks.write_text("true\n")
    rc = main(["run", str(tasks), "--backend", "ray", "--state", str(tmp_path / "run.db")])
    assert rc == 2
    err = capsys.readouterr().err
    assert INSTALL_HINT in err and err.count("\n") == 1
