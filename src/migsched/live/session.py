"""Set up a live run (`migsched run`) or pick one up again (`migsched run --resume`).

A run is a state file (the SQLite store, `--state`) and a run folder beside it (`<state>.d/`:
per-job logs, exit records, probe files), both readable by the owner only. The store's meta
holds everything needed to resume: backend, GPU models, policy and its options, the job file,
the memory scale and when the run began.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from migsched.backends.sim.simulator import Simulator
from migsched.core.backend import Backend
from migsched.core.policy import Policy
from migsched.core.scheduler import SchedulerCore
from migsched.core.source import TraceSource
from migsched.errors import MigschedError
from migsched.hardware.catalog import GpuModel, get_model
from migsched.jobs.model import Job
from migsched.jobs.taskfile import load_job_source
from migsched.live.recorder import FENCED_KEY, MIG_OFF_KEY, StoreRecorder
from migsched.live.restore import Restored, restore_core
from migsched.partition.layout import Layout
from migsched.policies.registry import create_policy, get_policy_class
from migsched.report.outputs import check_file
from migsched.run import open_core
from migsched.store.db import RunStore
from migsched.store.status import JOBS_TOTAL_KEY

BACKENDS = ("sim", "local", "nvml", "ray")


class RunSetupError(MigschedError):
    """A run that cannot start or resume as asked (the message says why and what to do)."""


@dataclass
class Session:
    """Everything the run loop needs, opened and ready."""

    core: SchedulerCore
    backend: Backend
    source: TraceSource
    store: RunStore
    recorder: StoreRecorder
    run_dir: Path
    restored: Restored | None = None
    lock: RunLock | None = None
    jobs: list[Job] = field(default_factory=list)  # the jobs as loaded (ground truth for `sim`)


class RunLock:
    """An exclusive lock on `<state>.lock`, held while a scheduler works on a state file.

    Two schedulers on one state file would each launch the queued jobs: one writer per store is
    what makes "never twice at the same time" hold, so a second `run` or `--resume` is refused
    while the first one lives. The kernel drops the lock when the holder dies (even SIGKILL).
    """

    def __init__(self, state: Path) -> None:
        self.path = state.with_name(state.name + ".lock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunSetupError(f"state file {str(state)!r} is in use by another migsched run (pid {holder}); "
                                "wait for it to end or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def run_dir_for(state: Path) -> Path:
    """The run folder that goes with a state file: `run.db` -> `run.d/`."""
    return state.with_name(state.stem + ".d")


def make_backend(name: str, models: list[GpuModel], jobs: list[Job], run_dir: Path, *, mib_per_gib: float,
                 seed: int = 0, instances=None, origin_unix: float | None = None,
                 sample_interval_s: float = 1.0, backend_options: dict[str, Any] | None = None,
                 mig_off: Sequence[int] = ()) -> Backend:
    """The backend named `name` over `models` (`sim` needs every job's model: entry).

    `mig_off`: GPUs a resumed run's earlier session turned MIG off on (`local` and `ray`'s local
    nodes emulate them so; `nvml` reads the real mode from the GPU)."""
    if name == "sim":
        missing = [j.job_id for j in jobs if j.truth is None]
        if missing:
            raise RunSetupError(f"--backend sim needs a model: entry (runtime_s, peak_gib, ...) on every job; "
                                f"{_jobs_named(missing)} {_have(missing)} none; use --backend local to run their commands")
        return Simulator(models, {j.job_id: j.truth for j in jobs}, seed=seed)  # type: ignore[misc]
    if name == "local":
        from migsched.backends.local.backend import LocalBackend
        no_cmd = [j.job_id for j in jobs if not j.spec.argv]
        if no_cmd:
            raise RunSetupError(f"--backend local runs each job's command; {_jobs_named(no_cmd)} {_have(no_cmd)} no "
                                "command: add one to the job file")
        return LocalBackend(models, run_dir, mib_per_gib=mib_per_gib, instances=instances, origin_unix=origin_unix,
                            sample_interval_s=sample_interval_s, mig_off=mig_off)
    if name == "nvml":
        from migsched.backends.nvml.backend import NvmlBackend
        no_cmd = [j.job_id for j in jobs if not j.spec.argv]
        if no_cmd:
            raise RunSetupError(f"--backend nvml runs each job's command; {_jobs_named(no_cmd)} {_have(no_cmd)} no "
                                "command: add one to the job file")
        owned = {(g, s) for g, lst in enumerate(instances or []) for _p, s in lst}
        return NvmlBackend(run_dir, owned=owned, origin_unix=origin_unix, sample_interval_s=sample_interval_s,
                           mig_off=mig_off, **(backend_options or {}))
    if name == "ray":  # a cluster of nodes, each through local or nvml (backends/ray, docs/ray.md)
        from migsched.backends.ray.factory import ray_backend
        return ray_backend(jobs, run_dir, mib_per_gib=mib_per_gib, origin_unix=origin_unix,
                           sample_interval_s=sample_interval_s, instances=instances, options=backend_options,
                           mig_off=mig_off)
    raise RunSetupError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")


def _jobs_named(ids: list[str], shown: int = 5) -> str:
    """"job 'a'", "jobs 'a', 'b'" or "jobs 'a', ... and 59 more": the ids an error is about."""
    names = ", ".join(repr(i) for i in ids[:shown])
    more = f" and {len(ids) - shown:,} more" if len(ids) > shown else ""
    return f"{'job' if len(ids) == 1 else 'jobs'} {names}{more}"


def _have(ids: list[str]) -> str:
    return "has" if len(ids) == 1 else "have"


def make_policy(name: str, options: dict[str, Any], backend: Backend) -> Policy:
    cls = get_policy_class(name)
    if cls.clairvoyant:  # it plans the whole batch from the job file's ground truth before it starts
        raise RunSetupError(f"policy {name!r} plans the whole batch from ground truth, not run by run; it can "
                            f"only be simulated: `migsched simulate JOBS --policy {name}`")
    return create_policy(name, **options)


def start_run(jobs_path: Path, *, backend: str, gpu: str, gpus: int, policy: str, state: Path,
              mib_per_gib: float = 16.0, seed: int = 0, job_class: str = "scientific",
              policy_options: dict[str, Any] | None = None, sample_interval_s: float = 1.0,
              backend_options: dict[str, Any] | None = None) -> Session:
    """A new run of the jobs in `jobs_path`; refuses a state file that exists already."""
    state = state.resolve()
    if state.exists():
        raise RunSetupError(f"state file {str(state)!r} exists already: add --resume to continue that run, "
                            "or name another --state")
    check_file(state, "--state")  # its folder exists and takes files (never created behind the user's back)
    if gpus < 1:
        raise RunSetupError(f"--gpus must be at least 1, got {gpus}")
    model = get_model(gpu)
    jobs = load_job_source(jobs_path, require_model=False, job_class=job_class)
    run_dir = run_dir_for(state)
    origin = time.time()
    be = make_backend(backend, [model] * gpus, jobs, run_dir, mib_per_gib=mib_per_gib, seed=seed,
                      origin_unix=origin, sample_interval_s=sample_interval_s, backend_options=backend_options)
    pol = make_policy(policy, policy_options or {}, be)
    lock = RunLock(state)
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = RunStore.create(state, {
        "backend": backend, "gpus": [model.name] * gpus, "policy": policy, "policy_options": policy_options or {},
        "jobs_path": str(jobs_path.resolve()), "job_class": job_class, "run_dir": str(run_dir.resolve()),
        "origin_unix": origin, "mib_per_gib": mib_per_gib, "seed": seed, "pid": os.getpid(),
        "sample_interval_s": sample_interval_s, "backend_options": backend_options or {},
        JOBS_TOTAL_KEY: len(jobs),
    })
    core = open_core(pol, be)
    store.set_meta("gpus", [g.model.name for g in core.view.gpus])  # as discovered (nvml)
    return Session(core, be, TraceSource(j.spec for j in jobs), store, StoreRecorder(store), run_dir, lock=lock,
                   jobs=jobs)


def resume_run(state: Path, jobs_path: Path | None = None, given: dict[str, Any] | None = None) -> Session:
    """Continue the run of `state`: adopt what still runs, take in what ended, queue the rest.

    `given`: options the user named with --resume (flag -> value); a run keeps the options it
    started with, so one that differs from them is refused rather than silently ignored.
    """
    state = state.resolve()
    if not state.exists():
        raise RunSetupError(f"no state file {str(state)!r} to resume; start the run without --resume")
    lock = RunLock(state)
    store = RunStore.open(state)
    meta = store.meta()
    clash = _clashes(meta, given or {})
    if clash:
        _give_up(store, lock, f"a resumed run keeps the options it started with: {'; '.join(clash)} "
                              "(drop them, or start a new run with another --state)")
    if meta.get("backend") == "sim":
        _give_up(store, lock, "a simulated run cannot be resumed (its clock died with it); run it again")
    path = jobs_path or Path(meta["jobs_path"])
    known = {row.job_id for row in store.jobs()}
    try:
        jobs = load_job_source(path, job_class=meta.get("job_class", "scientific"))
    except MigschedError:
        if known:
            jobs = []  # the file is gone: carry on with the jobs the store holds
        else:
            raise
    if meta.get("finished_unix") is not None and not any(j.job_id not in known for j in jobs):
        counts = store.counts()
        if counts["done"] + counts["failed"] == sum(counts.values()):  # nothing left to do
            _give_up(store, lock, f"the run of {str(state)!r} has finished ({counts['done']} done, "
                                  f"{counts['failed']} failed) and its job file adds no job: nothing to resume "
                                  "(its figures would only grow by the idle time since). `migsched status "
                                  f"--state {state} [--json]` shows its jobs; --json, --report and --schedule "
                                  "are written when a run ends")
    models = [get_model(n) for n in meta["gpus"]]
    instances = _surviving_instances(store, models)
    run_dir = Path(meta["run_dir"])
    be = make_backend(meta["backend"], models, jobs, run_dir, mib_per_gib=float(meta["mib_per_gib"]),
                      instances=instances, origin_unix=float(meta["origin_unix"]),
                      sample_interval_s=float(meta.get("sample_interval_s", 1.0)),
                      backend_options=meta.get("backend_options") or {},
                      mig_off=[int(g) for g in meta.get(MIG_OFF_KEY) or ()])
    pol = make_policy(meta["policy"], meta.get("policy_options") or {}, be)
    core = open_core(pol, be, fenced=meta.get(FENCED_KEY) or {})
    restored = restore_core(core, be, store)
    fresh = [j.spec for j in jobs if j.job_id not in known]
    store.set_meta(JOBS_TOTAL_KEY, len(known) + len(fresh))  # a job file may add jobs on resume
    return Session(core, be, TraceSource(fresh), store, StoreRecorder(store), run_dir, restored, lock, jobs)


def _give_up(store: RunStore, lock: RunLock, message: str) -> NoReturn:
    """Refuse to resume: the store closed and the lock let go first, so that nothing holds them."""
    store.close()
    lock.release()
    raise RunSetupError(message)


#: Options of `migsched run` a run fixes when it starts, and the meta key that holds each (one
#: place: `cli.run_cmds` passes what the user typed beside --resume, `_clashes` checks it).
_META = {"--backend": "backend", "--policy": "policy", "--mib-per-gib": "mib_per_gib", "--class": "job_class",
         "--seed": "seed", "--sample-s": "sample_interval_s"}
#: Options kept in `backend_options`, and the backends they apply to (docs/ray.md, docs/nvml.md).
_BACKEND = {"--address": ("address", ("ray",)), "--nodes": ("nodes", ("ray",)),
            "--node-backend": ("node_backend", ("ray",)),
            "--manage-existing": ("manage_existing", ("nvml", "ray")),
            "--allow-mig-change": ("allow_mig_change", ("nvml", "ray"))}
RESUME_FLAGS = (*_META, "--gpu", "--gpus", *_BACKEND)


def _clashes(meta: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """The options in `given` (flag -> value, flags of `RESUME_FLAGS`) that differ from the
    run's, each with both values. Those that do not apply to the run's backend are ignored, as
    they were when it started, so that the run's own command line can be typed again."""
    out = []
    backend = meta.get("backend")
    opts = meta.get("backend_options") or {}
    gpus = list(meta.get("gpus") or [])
    for flag, value in given.items():
        if flag in _META:
            have = meta.get(_META[flag])
            same = have == value or (isinstance(value, float) and have is not None and float(have) == value)
        elif flag in ("--gpu", "--gpus") and backend == "nvml":
            continue  # ignored at the start too: an nvml run's GPUs are discovered
        elif flag in ("--gpu", "--gpus") and backend == "ray":  # what each node emulates
            have = opts.get("gpu" if flag == "--gpu" else "gpus_per_node")
            same = have == value
        elif flag == "--gpus":
            have, same = len(gpus), value == len(gpus)
        elif flag == "--gpu":
            have, same = ", ".join(sorted(set(gpus))), set(gpus) == {value}
        else:
            key, backends = _BACKEND[flag]
            if backend not in backends:
                continue  # ignored at the start too: the run's own command line may be typed again
            have = opts.get(key)
            same = have == value
        if not same:
            out.append(f"{flag} {value} was given, the run has {have}")
    return out


def _surviving_instances(store: RunStore, models: list[GpuModel]) -> list[list[tuple[str, int]]]:
    """The emulated instances a resumed run starts with, from the store's rows.

    A destroy that was written down was decided before any create in its slots (the backend
    runs them in that order), so 'destroying' rows are taken as gone first; then 'up' rows, then
    'creating' ones, each kept only if it fits the MIG rules beside those kept before it (rows
    that cannot all exist at once are left from a batch the crash cut short) and recorded gone
    otherwise.
    """
    rows = store.instances()
    layouts = [Layout.empty(m) for m in models]
    out: list[list[tuple[str, int]]] = [[] for _ in models]
    order = {"up": 0, "creating": 1}
    for row in sorted(rows, key=lambda r: (order.get(r.state, 2), r.gpu, r.start)):
        if row.state not in order or row.gpu >= len(models):
            store.instance_gone(row.gpu, row.start)
            continue
        try:
            layouts[row.gpu] = layouts[row.gpu].with_instance(models[row.gpu].profile(row.profile), row.start)
        except MigschedError:
            store.instance_gone(row.gpu, row.start)
            continue
        out[row.gpu].append((row.profile, row.start))
    return out
