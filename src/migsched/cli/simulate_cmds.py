"""`migsched simulate`, `migsched demo` and `migsched policies`: compare policies on a batch.

* `simulate JOBS --gpu MODEL [--gpus N] [--policy P]... [--layout L] [--seed S]
  [--json FILE] [--report DIR] [--optimal | --optimal-s SECONDS]` simulates the job file under
  every registered policy (or those named), prints one comparison table and optionally writes
  the JSON document and a report folder (PNGs + results.md);
* `demo [--report DIR] [--gpus N]` does the same for a bundled job mix on A100-80GB;
* `policies` lists the registered policies.

`--optimal` takes no value (Typer cannot give an option an optional value): it runs the
clairvoyant `optimal` reference with a 30 s solver limit; `--optimal-s SECONDS` sets another limit
and implies `--optimal`.

The progress bar goes to stderr and disappears when done. User mistakes (unknown
model or policy, bad job file or layout, unwritable output) raise `MigschedError`, which
`migsched.cli.main` prints as one line with exit status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from migsched.cli.app import app
from migsched.compare import Comparison, compare, planned_runs, resolve_policies
from migsched.errors import MigschedError
from migsched.hardware.catalog import GpuModel, get_model
from migsched.jobs import Job, load_jobs, load_jobs_dict
from migsched.policies.registry import get_policy_class, policy_names
from migsched.report.table import WIDE_TABLE_MIN_WIDTH
from migsched.report import (
    failure_lines,
    layout_lines,
    lower_bound_line,
    rich_table,
    write_json,
    write_report,
)

DEFAULT_OPTIMAL_S = 30.0
DEMO_GPU = "A100-80GB"
# 32 jobs per GPU: the batch size per GPU of the paper's group (paper.md §5.1: 16-128-job mixes).
# With fewer jobs per GPU the batch is short and one long job's tail decides the makespan.
DEMO_JOBS_PER_GPU = 32
DEMO_SEED = 1


class OutputError(MigschedError, OSError):
    """A report or JSON file that cannot be written (the message names the path)."""


def _console(stderr: bool = False) -> Console:
    # Per call, so that tests capturing sys.stdout see the output; wide when not a terminal.
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 200, highlight=False)


def _run_with_progress(jobs: Sequence[Job], model: GpuModel, gpus: int, policies: list[str] | None,
                       layout: str | None, seed: int, optimal_s: float | None) -> Comparison:
    """`compare` with a progress bar on stderr: one step per simulation (static layouts included)."""
    names = resolve_policies(policies, optimal_s)  # unknown names fail here, before any work
    total = planned_runs(model, names, layout)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task("simulating", total=total)

        def step(label: str, finished: bool) -> None:
            if finished:
                bar.update(task, advance=1)
            else:
                bar.update(task, description=f"simulating {label[:60]}")

        return compare(jobs, model, gpus, names, seed=seed, optimal_s=optimal_s, layout=layout, progress=step)


def _show(cmp: Comparison) -> None:
    """Print the table, the lower bound, the static layouts, notes and the first failures."""
    con = _console()
    con.print(rich_table(cmp, transposed=con.width < WIDE_TABLE_MIN_WIDTH))
    for line in [lower_bound_line(cmp) if cmp.lower_bound_s > 0 else "", *layout_lines(cmp)]:
        if not line:
            continue
        con.print(line, markup=False)
    for note in cmp.notes:
        if not note.startswith("static:"):
            con.print(f"note: {note}", markup=False)
    fails = failure_lines(cmp)
    if fails:
        con.print("Jobs that did not complete (first few per policy):", markup=False)
        for line in fails:
            con.print(line, markup=False)


def _write_outputs(cmp: Comparison, json_path: Path | None, report_dir: Path | None) -> None:
    try:
        if json_path is not None:
            typer.echo(f"wrote {write_json(cmp, json_path)}")
        if report_dir is not None:
            paths = write_report(cmp, report_dir)
            typer.echo(f"wrote {len(paths)} files to {report_dir} (results.md, "
                       f"{sum(p.suffix == '.png' for p in paths)} PNGs)")
    except OSError as exc:
        target = exc.filename or json_path or report_dir
        raise OutputError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None


# ---- simulate -------------------------------------------------------------------------------------
@app.command("simulate")
def simulate_cmd(
    jobs_file: Annotated[Path, typer.Argument(metavar="JOBS", help="Job file (YAML or JSON, version 1) with model: entries.")],
    gpu: Annotated[str, typer.Option("--gpu", help="GPU model, e.g. A100-80GB (see `migsched gpus`).")],
    gpus: Annotated[int, typer.Option("--gpus", min=1, help="Number of GPUs.")] = 1,
    policy: Annotated[list[str] | None, typer.Option("--policy", help="Policy to run (repeatable); default: every registered one.")] = None,
    layout: Annotated[str | None, typer.Option("--layout", help="Fixed layout for `static` (PROFILE@START,...) instead of the best maximal one.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the comparison as JSON to this file.")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write PNG timelines, power plot and results.md into this folder.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed (the same for every policy).")] = 0,
    optimal: Annotated[bool, typer.Option("--optimal", help=f"Also run the clairvoyant optimal reference ({DEFAULT_OPTIMAL_S:.0f} s solver limit).")] = False,
    optimal_s: Annotated[float | None, typer.Option("--optimal-s", min=0.1, help="Solver time limit for optimal in seconds (implies --optimal).")] = None,
) -> None:
    """Simulate a job file under each policy and compare makespan, energy and gains against serial."""
    model = get_model(gpu)
    jobs = load_jobs(jobs_file, require_model=True)
    limit = optimal_s if optimal_s is not None else (DEFAULT_OPTIMAL_S if optimal else None)
    cmp = _run_with_progress(jobs, model, gpus, policy or None, layout, seed, limit)
    _show(cmp)
    _write_outputs(cmp, json_out, report)


# ---- demo -----------------------------------------------------------------------------------------
def demo_jobs(gpus: int) -> tuple[list[Job], str]:
    """The demo batch, 32 jobs per GPU of the `mixed` workload mix, and a line saying so."""
    from migsched.workloads.mixes import make_mix

    n = DEMO_JOBS_PER_GPU * gpus
    doc = make_mix("mixed", jobs=n, seed=DEMO_SEED)
    return load_jobs_dict(doc, require_model=True), f"workload mix 'mixed' ({n} jobs, seed {DEMO_SEED})"


@app.command("demo")
def demo_cmd(
    report: Annotated[Path, typer.Option("--report", help="Folder for the PNGs and results.md.")] = Path("migsched-report"),
    gpus: Annotated[int, typer.Option("--gpus", min=1, help="Number of A100-80GB GPUs.")] = 2,
) -> None:
    """Compare every policy on a bundled job mix on A100-80GB and write a report."""
    jobs, source = demo_jobs(gpus)
    typer.echo(f"demo: {len(jobs)} jobs from {source} on {gpus}× {DEMO_GPU}")
    cmp = _run_with_progress(jobs, get_model(DEMO_GPU), gpus, None, None, 0, None)
    _show(cmp)
    _write_outputs(cmp, None, report)


# ---- policies -------------------------------------------------------------------------------------
@app.command("policies")
def policies_cmd() -> None:
    """List the registered scheduling policies."""
    from rich.table import Table

    table = Table()
    for col in ("policy", "MIG", "clairvoyant", "description"):
        table.add_column(col)
    for name in policy_names(include_clairvoyant=True):
        cls = get_policy_class(name)
        table.add_row(name, "on" if cls.mig_enabled else "off", "yes" if cls.clairvoyant else "",
                      cls.description or (cls.__doc__ or "").strip().splitlines()[0])
    _console().print(table)
