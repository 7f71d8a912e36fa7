"""The backend contract, checked the same way on every backend: the simulator, `local` (real
processes) and the scripted fake. Each check drives the backend directly with actions and reads
its events, as the run loop would (migsched.core.backend documents the contract)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import pytest

from fakes import Script, ScriptedBackend
from migsched.backends.local.backend import LocalBackend
from migsched.backends.sim.simulator import Simulator
from migsched.core.backend import Backend, RunSettings
from migsched.core.events import (
    ActionFailed,
    CreateInstance,
    DestroyInstance,
    Event,
    ExitStatus,
    InstanceCreated,
    InstanceDestroyed,
    JobExited,
    JobStarted,
    Kill,
    KillReason,
    Launch,
    MemorySample,
)
from migsched.hardware import get_model
from migsched.jobs.model import JobClass, JobSpec, TruthModel

A40 = get_model("A100-40GB")
RUN_S = {"quick": 0.3, "long": 30.0}


def _spec(job_id: str) -> JobSpec:
    return JobSpec(job_id, job_id, JobClass.SCIENTIFIC, hint_gib=1.0,
                   argv=(sys.executable, "-c", f"import time; time.sleep({RUN_S[job_id]})"))


def _sim(tmp_path) -> Backend:
    truth = {j: TruthModel(s, (1.0,) * 7, ((0.0, 1.0), (1.0, 1.0)), 100.0, 0.0) for j, s in RUN_S.items()}
    return Simulator([A40, A40], truth)


def _local(tmp_path) -> Backend:
    return LocalBackend([A40, A40], tmp_path, sample_interval_s=0.1, kill_grace_s=1.0)


def _fake(tmp_path) -> Backend:
    return ScriptedBackend([A40, A40], Script(run_s=dict(RUN_S), samples_mib={"quick": 10.0, "long": 10.0}))


BACKENDS: dict[str, Callable] = {"sim": _sim, "local": _local, "fake": _fake}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, tmp_path):
    be = BACKENDS[request.param](tmp_path)
    yield be
    if isinstance(be, LocalBackend):
        be.stop_all()
    be.close()


def collect(be: Backend, until_s: float, stop: Callable[[list[Event]], bool] | None = None) -> list[Event]:
    """Events up to `until_s` (or until `stop` says enough), checking time order and the clock."""
    out: list[Event] = []
    last = -math.inf
    while True:
        batch = be.poll(until_s)
        if batch is None or batch == []:
            return out
        times = {e.time_s for e in batch}
        assert len(times) == 1 or be.capabilities.clock == "wall", "a batch is simultaneous"
        assert min(times) >= last - 1e-9, "events come in time order"
        assert max(times) <= be.clock.now_s() + 1e-9, "no event from the future"
        last = max(times)
        out += batch
        if stop is not None and stop(out):
            return out


def horizon(be: Backend, seconds: float) -> float:
    return be.clock.now_s() + seconds


def test_discovery_reports_every_gpu_with_its_model_and_mode(backend):
    gpus = backend.open(RunSettings(True, None))
    assert [g.index for g in gpus] == [0, 1] and all(g.model == A40 and g.mig_enabled for g in gpus)
    assert len({g.uuid for g in gpus}) == 2 and all(g.instances == () for g in gpus)


def test_idle_forever_is_none_and_a_deadline_is_reached(backend):
    backend.open(RunSettings(True, None))
    t = horizon(backend, 0.2)
    assert backend.poll(t) == []
    assert backend.clock.now_s() >= t - 1e-9
    assert backend.poll(math.inf) is None


def test_creates_and_destroys_are_confirmed_and_illegal_ones_refused(backend):
    backend.open(RunSettings(True, None))
    backend.execute([CreateInstance(0, "3g.20gb", 4), CreateInstance(0, "7g.40gb", 0),
                     CreateInstance(1, "7g.40gb", 0)])
    ev = collect(backend, horizon(backend, 5.0), lambda out: len(out) >= 3)
    created = {(e.gpu, e.start) for e in ev if isinstance(e, InstanceCreated)}
    failed = [e for e in ev if isinstance(e, ActionFailed)]
    assert created == {(0, 4), (1, 0)}
    assert len(failed) == 1 and failed[0].action == CreateInstance(0, "7g.40gb", 0) and failed[0].reason
    backend.execute([DestroyInstance(1, 0), DestroyInstance(1, 0)])
    ev = collect(backend, horizon(backend, 5.0), lambda out: len(out) >= 2)
    assert [type(e) for e in ev] in ([InstanceDestroyed, ActionFailed], [ActionFailed, InstanceDestroyed])


def test_a_launch_runs_the_job_to_its_end_and_a_launch_without_instance_fails(backend):
    backend.open(RunSettings(True, None))
    backend.execute([CreateInstance(0, "1g.5gb", 0), Launch("quick", 0, 0, 1, _spec("quick")),
                     Launch("long", 1, 0, 1, _spec("long"))])
    ev = collect(backend, horizon(backend, 20.0), lambda out: any(isinstance(e, JobExited) for e in out))
    kinds = [type(e) for e in ev]
    assert kinds.index(InstanceCreated) < kinds.index(JobStarted) < kinds.index(JobExited)
    started = next(e for e in ev if isinstance(e, JobStarted))
    assert (started.job_id, started.gpu, started.start) == ("quick", 0, 0)
    exited = next(e for e in ev if isinstance(e, JobExited))
    assert exited.job_id == "quick" and exited.status is ExitStatus.OK
    bad = [e for e in ev if isinstance(e, ActionFailed)]
    assert len(bad) == 1 and isinstance(bad[0].action, Launch) and bad[0].action.job_id == "long"
    assert not any(isinstance(e, MemorySample) for e in ev), "no samples when none were asked for"


def test_a_kill_ends_the_job_as_killed_and_samples_come_when_asked(backend):
    backend.open(RunSettings(True, 0.1))
    backend.execute([CreateInstance(0, "1g.5gb", 0), Launch("long", 0, 0, 1, _spec("long"))])
    ev = collect(backend, horizon(backend, 10.0),
                 lambda out: sum(isinstance(e, MemorySample) for e in out) >= 2)
    samples = [e for e in ev if isinstance(e, MemorySample)]
    assert len(samples) >= 2 and all(s.job_id == "long" and s.used_mib >= 0 for s in samples)
    assert samples[1].elapsed_s > samples[0].elapsed_s
    backend.execute([Kill("long", KillReason.PREEMPT)])
    ev = collect(backend, horizon(backend, 10.0), lambda out: any(isinstance(e, JobExited) for e in out))
    exits = [e for e in ev if isinstance(e, JobExited)]
    assert len(exits) == 1 and exits[0].status is ExitStatus.KILLED
    backend.execute([Kill("long", KillReason.PREEMPT)])
    ev = collect(backend, horizon(backend, 1.0), lambda out: bool(out))
    assert [type(e) for e in ev] == [ActionFailed]


def test_mig_off_runs_jobs_on_the_whole_gpu(backend):
    gpus = backend.open(RunSettings(False, None))
    assert not any(g.mig_enabled for g in gpus)
    backend.execute([Launch("quick", 1, 0, 1, _spec("quick"))])
    ev = collect(backend, horizon(backend, 20.0), lambda out: any(isinstance(e, JobExited) for e in out))
    assert [e.status for e in ev if isinstance(e, JobExited)] == [ExitStatus.OK]
