"""`migsched run` and `migsched status`: run a batch for real (or simulated) with a crash-safe store.

* `run JOBS --backend sim|local [--gpu MODEL] [--gpus N] [--policy P] [--state FILE] [--resume]
  [--json FILE] [--report DIR] [--mib-per-gib X] [--class C]` runs a job file (YAML/JSON) or a
  task file (one command per line) to the end, with a live progress view on a terminal, then
  prints the same summary table as `simulate` and writes the same JSON and report.
* `run --resume --state FILE` continues a run whose scheduler stopped (even SIGKILLed): jobs
  still running are adopted, those that ended meanwhile are taken in, the rest is scheduled.
* `status --state FILE [--json]` shows a run in progress or finished, from its store.

Exit status of `run`: 0 when every job completed; 1 when any job failed or did not finish;
2 for a user mistake (bad file, unknown name, state file in the way), with one line saying why;
130 when interrupted (running jobs keep running; `--resume` picks them up).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from migsched.cli.app import app, job_class_option
from migsched.cli.simulate_cmds import (
    _HISTORY_HELP, _JSON_HELP, _QUIET_HELP, _SCHEDULE_HELP, _WIDE_HELP, Outputs, _console, _show,
    _write_outputs, exit_status, history_note, history_options,
)
from migsched.compare import Comparison, PolicyFigures, mig_change_note
from migsched.core.source import TraceSource
from migsched.errors import MigschedError, UnknownNameError
from migsched.limits import MAX_GPUS, MAX_MIB_PER_GIB, MAX_SAMPLE_S, check_range
from migsched.live.progress import LiveView
from migsched.live.session import BACKENDS, RESUME_FLAGS, RunSetupError, Session, resume_run, start_run
from migsched.report.table import fmt_duration
from migsched.run import drive, result_of

DEFAULT_STATE = Path("migsched-run.db")


def _comparison(session: Session, last_s: float, wall_s: float) -> Comparison:
    res = result_of(session.core, session.backend, last_s, wall_s)
    bound = 0.0
    if session.backend.name == "sim":  # ground truth is known: the same bound as `simulate`
        from migsched.metrics import lower_bound_s
        bound = lower_bound_s(session.jobs, [g.model for g in session.core.view.gpus])
    row = PolicyFigures(res, None, 0, None, None, res.makespan_s / bound if bound > 0 else None)
    notes = (f"backend {res.backend}: MIG {session.backend.capabilities.mig}, energy {res.energy_source}",)
    notes += tuple(getattr(session.backend, "node_notes", tuple)())  # ray: one line per node
    mig = mig_change_note(res)
    if mig:
        notes += (mig,)
    hist = (session.store.meta().get("policy_options") or {}).get("history")
    if hist:  # also on --resume, which keeps the file the run started with
        notes += (history_note(Path(hist)),)
    return Comparison(gpu=res.gpu, gpus=res.gpus, jobs=len(res.jobs), lower_bound_s=bound, rows=(row,), notes=notes)


def _backend_options(backend: str, manage_existing: bool, allow_mig_change: bool, address: str | None, nodes: int,
                     node_backend: str, gpu: str, gpus: int) -> dict | None:
    nvml = {"manage_existing": manage_existing, "allow_mig_change": allow_mig_change}
    if backend == "nvml":
        return nvml
    if backend == "ray":  # --gpu/--gpus: what each node emulates (docs/ray.md)
        return {"address": address, "nodes": nodes, "node_backend": node_backend, "gpu": gpu, "gpus_per_node": gpus,
                **(nvml if node_backend == "nvml" else {})}
    return None


#: What `--node-backend` may be (docs/ray.md).
NODE_BACKENDS = ("local", "nvml")


def _node_backend(value: str) -> str:
    """`--node-backend`, checked even without --backend ray (a typo should not pass silently)."""
    if value not in NODE_BACKENDS:
        raise UnknownNameError("node backend", value, NODE_BACKENDS)
    return value


#: `run_cmd`'s parameter of each flag of `RESUME_FLAGS` that is not the flag's own name.
_PARAM = {"--class": "job_class", "--sample-s": "sample_s"}


def _given_with_resume(ctx: typer.Context) -> dict:
    """The fixed options the user typed beside --resume, flag -> value (defaults left out)."""
    names = {flag: _PARAM.get(flag, flag.lstrip("-").replace("-", "_")) for flag in RESUME_FLAGS}
    # by name: typer may hand back its own copy of click's ParameterSource enum
    return {flag: ctx.params[name] for flag, name in names.items()
            if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    jobs_file: Annotated[Path | None, typer.Argument(metavar="JOBS", help="Job file (YAML/JSON, version 1) or task file (one command per line). Optional with --resume.")] = None,
    backend: Annotated[str, typer.Option("--backend", help=f"Where jobs run: {', '.join(BACKENDS)}.")] = "local",
    gpu: Annotated[str, typer.Option("--gpu", help="GPU model to simulate or emulate (see `migsched gpus`).")] = "A100-40GB",
    gpus: Annotated[int, typer.Option("--gpus", min=1, max=MAX_GPUS, help=f"Number of GPUs to simulate or emulate (at most {MAX_GPUS:,}).")] = 1,
    policy: Annotated[str, typer.Option("--policy", help="Scheduling policy (see `migsched policies`).")] = "migm",
    state: Annotated[Path, typer.Option("--state", help="The run's state file (SQLite); logs go to <state>.d/.")] = DEFAULT_STATE,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run of --state after its scheduler stopped.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", metavar="FILE", help=_JSON_HELP)] = None,
    report: Annotated[Path | None, typer.Option("--report", metavar="DIR", help="Write PNG timeline, cluster view, power plot and results.md here.")] = None,
    schedule: Annotated[Path | None, typer.Option("--schedule", metavar="FILE", help=_SCHEDULE_HELP)] = None,
    wide: Annotated[bool, typer.Option("--wide", help=_WIDE_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=_QUIET_HELP + " No live view.")] = False,
    mib_per_gib: Annotated[float, typer.Option("--mib-per-gib", callback=lambda v: check_range("--mib-per-gib", v, 0.001, MAX_MIB_PER_GIB), help=f"local: MiB of RAM a job may use per GiB of its instance (0.001..{MAX_MIB_PER_GIB:g}).")] = 16.0,
    job_class: Annotated[str, typer.Option("--class", callback=job_class_option, help="Job class of task-file lines: scientific, ml-train, ml-infer, llm.")] = "scientific",
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed (--backend sim).")] = 0,
    sample_s: Annotated[float, typer.Option("--sample-s", callback=lambda v: check_range("--sample-s", v, 0.01, MAX_SAMPLE_S, " s"), help=f"local: memory-sample period in seconds (0.01..{MAX_SAMPLE_S:g}), when the policy samples.")] = 1.0,
    manage_existing: Annotated[bool, typer.Option("--manage-existing", help="nvml: use and destroy MIG instances migsched did not create.")] = False,
    allow_mig_change: Annotated[bool, typer.Option("--allow-mig-change", help="nvml: change a GPU's MIG mode if the policy needs it, at the start and (migm) during the run to give one job a whole GPU; may reset the GPU.")] = False,
    address: Annotated[str | None, typer.Option("--address", help="ray: the Ray cluster to use (e.g. 10.0.0.1:6379); none: start a local one of --nodes nodes.")] = None,
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=64, help="ray: nodes of the local cluster started without --address (each emulates --gpus of --gpu).")] = 2,
    node_backend: Annotated[str, typer.Option("--node-backend", callback=_node_backend, help="ray: what each node runs its GPUs with: local (emulated) or nvml (real MIG).")] = "local",
    history: Annotated[Path | None, typer.Option("--history", metavar="FILE", help=_HISTORY_HELP)] = None,
) -> None:
    """Run a batch of jobs to the end: real processes (local) or simulated, resumable after a crash."""
    err = Console(file=sys.stderr, highlight=False)
    out = Outputs(json_out, report, schedule, wide, quiet)
    out.check()  # before any job starts
    if resume:
        if history is not None:
            raise RunSetupError("--history is fixed when a run starts; a resumed run keeps its own "
                                "(drop --history)")
        session = resume_run(state, jobs_file, given=_given_with_resume(ctx))
        r = session.restored
        assert r is not None
        err.print(f"resumed {state}: {r.adopted} running job(s) adopted, {r.ended_while_down} ended while "
                  f"the scheduler was down, {r.relaunch} never started (queued again)", markup=False)
    else:
        if jobs_file is None:
            raise RunSetupError("JOBS is required (a job file or a task file), unless --resume is given")
        session = start_run(jobs_file, backend=backend, gpu=gpu, gpus=gpus, policy=policy, state=state,
                            mib_per_gib=mib_per_gib, seed=seed, job_class=job_class, sample_interval_s=sample_s,
                            policy_options=history_options(policy, history),
                            backend_options=_backend_options(backend, manage_existing, allow_mig_change, address,
                                                             nodes, node_backend, gpu, gpus))
    caps = session.backend.capabilities
    later = _later_arrivals(session)
    if later and not quiet:
        err.print(later, markup=False)
    title = f"migsched run · {session.core.policy.name} · {session.backend.name} (MIG {caps.mig})"
    view = LiveView(title, enabled=err.is_terminal and not quiet, console=err)
    session.recorder.on_change = view.update
    wall0 = time.perf_counter()
    try:
        with view:
            last_s = drive(session.core, session.backend, session.source, session.recorder,
                           first=session.restored.exits if session.restored else ())
            view.update(session.core, force=True)
    except KeyboardInterrupt:
        session.store.close()
        if session.lock:
            session.lock.release()
        err.print(f"interrupted: running jobs keep running; `migsched run --resume --state {state}` "
                  "picks them up", markup=False)
        raise typer.Exit(130) from None
    session.backend.close()
    cmp = _comparison(session, last_s, time.perf_counter() - wall0)
    session.store.set_meta("finished_unix", time.time())
    session.store.close()
    if session.lock:
        session.lock.release()
    _show(cmp, out)
    _write_outputs(cmp, None, None, out)
    if not quiet:
        typer.echo(f"state: {state}  logs: {session.run_dir / 'logs'}", err=out.json_to_stdout)
    if exit_status(cmp):
        raise typer.Exit(exit_status(cmp))


#: Arrivals further ahead than this are announced when a run starts (`_later_arrivals`).
LATER_S = 60.0


def _later_arrivals(session: Session) -> str:
    """A line on the jobs that arrive later (`arrival_s`), so that a run waiting hours for its
    first arrival does not look hung; '' when none does. Only a simulated run skips the wait."""
    src = session.source
    if not isinstance(src, TraceSource) or session.backend.capabilities.mig == "simulated":
        return ""
    now_s = session.backend.clock.now_s()
    later = src.arrivals_after(now_s + LATER_S)
    if not later:
        return ""
    return (f"{len(later):,} job(s) arrive later (their arrival_s): the first in {fmt_duration(later[0] - now_s)}, "
            f"the last in {fmt_duration(later[-1] - now_s)}; the run waits for them (Ctrl-C stops it, "
            "`--resume` carries on)")


@app.command("status")
def status_cmd(
    state: Annotated[Path, typer.Option("--state", help="The run's state file.")] = DEFAULT_STATE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show a run in progress or finished: jobs by state, instances, restarts, failures."""
    from migsched.store.db import RunStore
    from migsched.store.status import render_status, status_dict
    if not state.exists():
        raise MigschedError(f"no state file {str(state)!r}; name one with --state")
    with RunStore.open(state) as store:
        if as_json:
            typer.echo(json.dumps(status_dict(store), indent=1, default=str))
        else:
            _console().print(render_status(store))
