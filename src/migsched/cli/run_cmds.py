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

from migsched.cli.app import app
from migsched.cli.simulate_cmds import _console, _show, _write_outputs
from migsched.compare import Comparison, PolicyFigures
from migsched.errors import MigschedError
from migsched.live.progress import LiveView
from migsched.live.session import BACKENDS, RunSetupError, Session, resume_run, start_run
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
    return Comparison(gpu=res.gpu, gpus=res.gpus, jobs=len(res.jobs), lower_bound_s=bound, rows=(row,), notes=notes)


@app.command("run")
def run_cmd(
    jobs_file: Annotated[Path | None, typer.Argument(metavar="JOBS", help="Job file (YAML/JSON, version 1) or task file (one command per line). Optional with --resume.")] = None,
    backend: Annotated[str, typer.Option("--backend", help=f"Where jobs run: {', '.join(BACKENDS)}.")] = "local",
    gpu: Annotated[str, typer.Option("--gpu", help="GPU model to simulate or emulate (see `migsched gpus`).")] = "A100-40GB",
    gpus: Annotated[int, typer.Option("--gpus", min=1, max=4096, help="Number of GPUs to simulate or emulate.")] = 1,
    policy: Annotated[str, typer.Option("--policy", help="Scheduling policy (see `migsched policies`).")] = "migm",
    state: Annotated[Path, typer.Option("--state", help="The run's state file (SQLite); logs go to <state>.d/.")] = DEFAULT_STATE,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run of --state after its scheduler stopped.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the summary as JSON to this file.")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write PNG timeline, power plot and results.md here.")] = None,
    mib_per_gib: Annotated[float, typer.Option("--mib-per-gib", min=0.001, help="local: MiB of RAM a job may use per GiB of its instance.")] = 16.0,
    job_class: Annotated[str, typer.Option("--class", help="Job class of task-file lines: scientific, ml-train, ml-infer, llm.")] = "scientific",
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed (--backend sim).")] = 0,
    sample_s: Annotated[float, typer.Option("--sample-s", min=0.01, help="local: memory-sample period in seconds, when the policy samples.")] = 1.0,
    manage_existing: Annotated[bool, typer.Option("--manage-existing", help="nvml: use and destroy MIG instances migsched did not create.")] = False,
    allow_mig_change: Annotated[bool, typer.Option("--allow-mig-change", help="nvml: change a GPU's MIG mode if the policy needs it (may reset the GPU).")] = False,
) -> None:
    """Run a batch of jobs to the end: real processes (local) or simulated, resumable after a crash."""
    err = Console(file=sys.stderr, highlight=False)
    if resume:
        session = resume_run(state, jobs_file)
        r = session.restored
        assert r is not None
        err.print(f"resumed {state}: {r.adopted} running job(s) adopted, {r.ended_while_down} ended while "
                  f"the scheduler was down, {r.relaunch} never started (queued again)", markup=False)
    else:
        if jobs_file is None:
            raise RunSetupError("JOBS is required (a job file or a task file), unless --resume is given")
        session = start_run(jobs_file, backend=backend, gpu=gpu, gpus=gpus, policy=policy, state=state,
                            mib_per_gib=mib_per_gib, seed=seed, job_class=job_class, sample_interval_s=sample_s,
                            backend_options=({"manage_existing": manage_existing, "allow_mig_change": allow_mig_change}
                                             if backend == "nvml" else None))
    caps = session.backend.capabilities
    title = f"migsched run · {session.core.policy.name} · {session.backend.name} (MIG {caps.mig})"
    view = LiveView(title, enabled=err.is_terminal, console=err)
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
    _show(cmp)
    _write_outputs(cmp, json_out, report)
    res = cmp.rows[0].result
    typer.echo(f"state: {state}  logs: {session.run_dir / 'logs'}")
    if res.jobs_failed:
        raise typer.Exit(1)


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
