"""`migsched simulate`, `migsched demo` and `migsched policies`: compare policies on a batch.

* `simulate JOBS --gpu MODEL [--gpus N] [--policy P]... [--layout L] [--seed S]
  [--json FILE|-] [--report DIR] [--schedule FILE.json|.csv] [--optimal | --optimal-s SECONDS]
  [--wide] [--quiet]` simulates the job file under every registered policy (or those named),
  prints one comparison table and optionally writes the JSON document, a report folder (PNGs +
  results.md) and the per-job schedule;
* `demo [--report DIR] [--gpus N] [--schedule FILE] [--wide] [--quiet]` does the same for a
  bundled job mix on A100-80GB;
* `policies` lists the registered policies.

`--optimal` takes no value (Typer cannot give an option an optional value): it runs the
clairvoyant `optimal` reference with a 30 s solver limit; `--optimal-s SECONDS` sets another limit
and implies `--optimal`.

Before any simulation: output paths are checked, jobs that fit no instance are listed on stderr,
and option mistakes raise. `--json -` writes the JSON to stdout; the human output then goes to
stderr, so stdout is pure JSON. The progress bar (stderr, terminals only) shows the simulations
done and, for the current one, the jobs ended and the simulated time.

Exit status (`EXIT_*`): 0 when every job completed under every policy; 1 when some job did not
complete; 2 for a user mistake (unknown model or policy, bad job file, layout or output path),
printed as one line by `migsched.cli.main`; 130 when interrupted.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from migsched.cli.app import PIPE_WIDTH, app, console
from migsched.compare import Comparison, compare, planned_runs, resolve_policies, unplaceable_jobs
from migsched.hardware.catalog import GpuModel, get_model
from migsched.jobs import Job, load_jobs, load_jobs_dict
from migsched.limits import MAX_DEMO_GPUS, MAX_GPUS, MAX_SOLVER_S, MIN_SOLVER_S, check_range
from migsched.errors import MigschedError
from migsched.estimators.history import HistoryStore
from migsched.policies.registry import get_policy_class, history_policies, policy_names, takes_option
from migsched.report import (
    OutputError,
    check_file,
    check_folder,
    failure_lines,
    fit_table,
    layout_lines,
    lower_bound_line,
    rich_table,
    schedule_format,
    write_json,
    write_report,
    write_schedule,
)
from migsched.report.table import fmt_gib, natural_width

__all__ = ["EXIT_FAILED_JOBS", "EXIT_OK", "OutputError", "Outputs"]

DEFAULT_OPTIMAL_S = 30.0
DEMO_GPU = "A100-80GB"
# 32 jobs per GPU: the batch size per GPU of the paper's group (paper.md §5.1: 16-128-job mixes).
# With fewer jobs per GPU the batch is short and one long job's tail decides the makespan.
DEMO_JOBS_PER_GPU = 32
DEMO_SEED = 1
EXIT_OK = 0
EXIT_FAILED_JOBS = 1
#: Jobs named in the up-front warning about jobs that fit no instance.
WARN_FIRST = 5
#: Width prose lines (lower bound, notes) are wrapped to when the output is not a terminal.
PROSE_WIDTH = 80


@dataclass(frozen=True, slots=True)
class Outputs:
    """What a command writes besides the table, and how it talks.

    Attributes:
        json_path: `--json` (a file, or "-" for stdout); None for none.
        report_dir: `--report` folder; None for none.
        schedule_path: `--schedule` file (.json or .csv); None for none.
        wide: `--wide`: every column of the table.
        quiet: `--quiet`: no progress, table or "wrote" lines; warnings and errors still go to stderr.
    """

    json_path: Path | None = None
    report_dir: Path | None = None
    schedule_path: Path | None = None
    wide: bool = False
    quiet: bool = False

    @property
    def json_to_stdout(self) -> bool:
        """Whether stdout carries the JSON document (the human output then goes to stderr)."""
        return self.json_path is not None and str(self.json_path) == "-"

    def check(self) -> None:
        """Check every output path before any work (`OutputError` names the option and path)."""
        if self.json_path is not None:
            check_file(self.json_path, "--json", allow_stdout=True)
        if self.schedule_path is not None:
            schedule_format(self.schedule_path)
            check_file(self.schedule_path, "--schedule")
        if self.report_dir is not None:
            check_folder(self.report_dir, "--report")
        if self.json_path is not None and self.schedule_path is not None and not self.json_to_stdout \
                and self.json_path.resolve() == self.schedule_path.resolve():
            raise OutputError(f"--json and --schedule name the same file {str(self.json_path)!r}; "
                              "give each its own (one would overwrite the other)")

    def human(self) -> Console:
        """Where the table and messages go: stdout, or stderr when stdout carries the JSON."""
        return console(stderr=self.json_to_stdout, adapt=True)


def _console(stderr: bool = False) -> Console:
    """A console on stdout or stderr (kept for the other command modules)."""
    return console(stderr=stderr)


def warn_unplaceable(jobs: Sequence[Job], model: GpuModel) -> int:
    """Print on stderr, before any run, the jobs no instance of `model` can hold; how many."""
    bad = unplaceable_jobs(jobs, model)
    if bad:
        shown = ", ".join(f"{u.job_id} ({u.source} {fmt_gib(u.need_gib)} GiB)" for u in bad[:WARN_FIRST])
        more = f" and {len(bad) - WARN_FIRST} more" if len(bad) > WARN_FIRST else ""
        typer.echo(f"warning: {len(bad)} job(s) fit no instance of {model.name} (largest "
                   f"{bad[0].largest_gib:.0f} GiB) and will fail: {shown}{more}", err=True)
    return len(bad)


def _run_with_progress(jobs: Sequence[Job], model: GpuModel, gpus: int, policies: list[str] | None,
                       layout: str | None, seed: int, optimal_s: float | None,
                       quiet: bool = False, history: Path | None = None) -> Comparison:
    """`compare` with a progress bar on stderr: the simulations done (static layouts included)
    and, for the one running, the jobs ended and the simulated time. `history`: the file the
    policies that keep one start from and extend (`history_options`)."""
    cmp = _compare_with_progress(jobs, model, gpus, policies, layout, seed, optimal_s, quiet, history)
    return cmp if history is None else dataclasses.replace(cmp, notes=(*cmp.notes, history_note(history)))


def history_note(path: Path) -> str:
    """One line on what the history file holds after the run (`--history`)."""
    store = HistoryStore(path, autosave=False)
    return (f"history {path}: run times of {len(store.families()):,} job families and memory peaks of "
            f"{len(store.peak_entries()):,} job names, this run included (`migsched history {path}`)")


def _compare_with_progress(jobs: Sequence[Job], model: GpuModel, gpus: int, policies: list[str] | None,
                           layout: str | None, seed: int, optimal_s: float | None,
                           quiet: bool, history: Path | None) -> Comparison:
    names = resolve_policies(policies, optimal_s)  # unknown names fail here, before any work
    opts = {n: history_options(n, history) for n in names if history is not None and takes_option(n, "history")}
    if history is not None and not opts:
        raise MigschedError(f"--history {str(history)!r}: none of the policies to run ({', '.join(names)}) "
                            f"keeps a history; policies that do: {', '.join(history_policies())}")
    total = planned_runs(model, names, layout, gpus)  # at most: the static mix search may stop early
    err = console(stderr=True)
    if quiet or not err.is_terminal:
        return compare(jobs, model, gpus, names, seed=seed, optimal_s=optimal_s, layout=layout,
                       policy_options=opts)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[extra]}"), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        runs = bar.add_task("simulations", total=total, extra="")
        done = bar.add_task("  jobs ended", total=len(jobs), extra="")

        def step(label: str, finished: bool) -> None:
            if finished:
                bar.update(runs, advance=1)
            else:
                bar.update(runs, description=f"simulating {label[:40]}")
                bar.update(done, completed=0, extra="")

        def jobs_ended(n: int, of: int, now_s: float) -> None:
            bar.update(done, completed=n, extra=f"t={now_s:,.0f} s")

        return compare(jobs, model, gpus, names, seed=seed, optimal_s=optimal_s, layout=layout,
                       progress=step, on_jobs=jobs_ended, policy_options=opts)


def _show(cmp: Comparison, out: Outputs | None = None) -> None:
    """Print the table, the lower bound, the static layouts, notes and the first failures."""
    out = out or Outputs()
    if out.quiet:
        return
    con = out.human()
    width = con.width if con.is_terminal or con.width < PIPE_WIDTH else None  # a terminal, or COLUMNS
    table = fit_table(cmp, width, wide=out.wide)
    con.print(table)
    if out.wide and width is not None and natural_width(rich_table(cmp, wide=True)) > width:  # fit_table fell back
        con.print(f"note: the --wide table does not fit {width} columns, so the compact one is shown; a wider "
                  "terminal (or COLUMNS), or --json, gives every column", markup=False)

    def say(line: str) -> None:  # prose wraps at the terminal, or at PROSE_WIDTH when piped
        lines = [line] if con.is_terminal else textwrap.wrap(line, PROSE_WIDTH, subsequent_indent="  ") or [""]
        for text in lines:
            con.print(text, markup=False)

    for line in [lower_bound_line(cmp) if cmp.lower_bound_s > 0 else "", *layout_lines(cmp)]:
        if line:
            say(line)
    for note in cmp.notes:
        if not note.startswith("static:"):
            say(f"note: {note}")
    fails = failure_lines(cmp)
    if fails:
        say("Jobs that did not complete (first few per policy):")
        for line in fails:
            con.print(line, markup=False)  # job ids and reasons: never broken


def _write_outputs(cmp: Comparison, json_path: Path | None, report_dir: Path | None,
                   out: Outputs | None = None) -> None:
    """Write the JSON, the report and the schedule that were asked for (paths checked before)."""
    out = out or Outputs(json_path, report_dir)
    say = (lambda text: None) if out.quiet else (lambda text: typer.echo(text, err=out.json_to_stdout))
    target: Path | None = None
    try:
        if out.json_path is not None:
            target = out.json_path
            p = write_json(cmp, out.json_path)
            if not out.json_to_stdout:
                say(f"wrote {p}")
        if out.schedule_path is not None:
            target = out.schedule_path
            say(f"wrote {write_schedule(cmp, out.schedule_path)}")
        if out.report_dir is not None:
            target = out.report_dir
            paths = write_report(cmp, out.report_dir)
            say(f"wrote {len(paths)} files to {out.report_dir} (results.md, "
                f"{sum(p.suffix == '.png' for p in paths)} PNGs)")
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write {str(exc.filename or target)!r}: {exc.strerror or exc}") from None


def exit_status(cmp: Comparison) -> int:
    """`EXIT_FAILED_JOBS` when some policy left a job incomplete, else `EXIT_OK`."""
    return EXIT_FAILED_JOBS if any(r.jobs_failed for r in cmp.results) else EXIT_OK


_JSON_HELP = "Write the comparison as JSON to this file ('-': stdout; the table then goes to stderr)."
_REPORT_HELP = "Write PNG timelines, cluster view, power plot and results.md into this folder."
_SCHEDULE_HELP = "Write every job's attempts (instance, start, end, outcome, why) to FILE.json or FILE.csv."
_WIDE_HELP = "Show every column of the table (restarts by cause, utilisation, ...)."
_QUIET_HELP = "Print no progress, table or file list (warnings and errors still go to stderr)."
_HISTORY_HELP = ("History file (JSON) of earlier batches that migm starts from (peaks by job name, run "
                 "times by family) and adds this run to; created if missing.")


def history_options(policy: str, history: Path | None) -> dict[str, str]:
    """The policy options of `--history FILE` for `policy` (none without it); a policy that keeps
    no history is an error naming the ones that do."""
    if history is None:
        return {}
    if not takes_option(policy, "history"):
        raise MigschedError(f"--history {str(history)!r}: policy {policy!r} keeps no history; policies "
                            f"that do: {', '.join(history_policies())}")
    if history.is_dir():
        raise MigschedError(f"--history {str(history)!r} is a directory; name a file (e.g. {history / 'history.json'})")
    path = history.resolve()
    if path.exists():  # rewritten through a temporary file beside it: the folder must be writable too
        if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            raise MigschedError(f"--history {str(history)!r} cannot be written (it or its folder is not "
                                "writable); name a file in a folder you can write")
        return {"history": str(path)}
    folder = next((p for p in path.parents if p.exists()), None)  # the missing ones are created
    if folder is not None and not folder.is_dir():
        raise MigschedError(f"--history {str(history)!r}: {str(folder)!r} is a file, not a folder")
    if folder is None or not os.access(folder, os.W_OK):
        raise MigschedError(f"--history {str(history)!r} cannot be written (the folder {str(folder)!r} is "
                            "not writable); name a file in a folder you can write")
    return {"history": str(path)}


# ---- simulate -------------------------------------------------------------------------------------
def _solver_s(value: float | None) -> float | None:
    """--optimal-s: a finite number of seconds within the documented bound (nan and inf are not)."""
    return None if value is None else check_range("--optimal-s", value, MIN_SOLVER_S, MAX_SOLVER_S, " s")


@app.command("simulate")
def simulate_cmd(
    jobs_file: Annotated[Path, typer.Argument(metavar="JOBS", help="Job file (YAML or JSON, version 1) with model: entries.")],
    gpu: Annotated[str, typer.Option("--gpu", metavar="MODEL", help="GPU model, e.g. A100-80GB (see `migsched gpus`).")],
    gpus: Annotated[int, typer.Option("--gpus", min=1, max=MAX_GPUS, help=f"Number of GPUs (at most {MAX_GPUS:,}).")] = 1,
    policy: Annotated[list[str] | None, typer.Option("--policy", help="Policy to run (repeatable); default: every registered one.")] = None,
    layout: Annotated[str | None, typer.Option("--layout", help="Fixed layout for `static` instead of the sweep: PROFILE@START,... for every GPU, or one per GPU separated by ';' ('2× L1; L2' repeats L1 on two GPUs).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", metavar="FILE", help=_JSON_HELP)] = None,
    report: Annotated[Path | None, typer.Option("--report", metavar="DIR", help=_REPORT_HELP)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed (the same for every policy).")] = 0,
    optimal: Annotated[bool, typer.Option("--optimal", help=f"Also run the clairvoyant optimal reference ({DEFAULT_OPTIMAL_S:.0f} s solver limit).")] = False,
    optimal_s: Annotated[float | None, typer.Option("--optimal-s", callback=_solver_s, help=f"Solver time limit for optimal in seconds, {MIN_SOLVER_S:g}..{MAX_SOLVER_S:g} (implies --optimal).")] = None,
    schedule: Annotated[Path | None, typer.Option("--schedule", metavar="FILE", help=_SCHEDULE_HELP)] = None,
    wide: Annotated[bool, typer.Option("--wide", help=_WIDE_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=_QUIET_HELP)] = False,
    history: Annotated[Path | None, typer.Option("--history", metavar="FILE", help=_HISTORY_HELP)] = None,
) -> int:
    """Simulate a job file under each policy and compare makespan, energy and gains against serial.

    Exits 0 when every job completed under every policy, 1 when some did not, 2 on a mistake.
    """
    model = get_model(gpu)
    jobs = load_jobs(jobs_file, require_model=True)
    out = Outputs(json_out, report, schedule, wide, quiet)
    out.check()
    warn_unplaceable(jobs, model)
    limit = optimal_s if optimal_s is not None else (DEFAULT_OPTIMAL_S if optimal else None)
    cmp = _run_with_progress(jobs, model, gpus, policy or None, layout, seed, limit, quiet, history)
    _show(cmp, out)
    _write_outputs(cmp, None, None, out)
    return exit_status(cmp)


# ---- demo -----------------------------------------------------------------------------------------
def demo_jobs(gpus: int) -> tuple[list[Job], str]:
    """The demo batch, 32 jobs per GPU of the `mixed` workload mix, and a line saying so."""
    from migsched.workloads.mixes import make_mix

    n = DEMO_JOBS_PER_GPU * gpus
    doc = make_mix("mixed", jobs=n, seed=DEMO_SEED)
    return load_jobs_dict(doc, require_model=True), f"workload mix 'mixed' ({n} jobs, seed {DEMO_SEED})"


@app.command("demo")
def demo_cmd(
    report: Annotated[Path, typer.Option("--report", metavar="DIR", help="Folder for the PNGs and results.md.")] = Path("migsched-report"),
    gpus: Annotated[int, typer.Option("--gpus", min=1, max=MAX_DEMO_GPUS, help=f"Number of A100-80GB GPUs (at most {MAX_DEMO_GPUS}).")] = 2,
    schedule: Annotated[Path | None, typer.Option("--schedule", metavar="FILE", help=_SCHEDULE_HELP)] = None,
    wide: Annotated[bool, typer.Option("--wide", help=_WIDE_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=_QUIET_HELP)] = False,
) -> int:
    """Compare every policy on a bundled job mix on A100-80GB and write a report."""
    out = Outputs(None, report, schedule, wide, quiet)
    out.check()
    jobs, source = demo_jobs(gpus)
    if not quiet:
        typer.echo(f"demo: {len(jobs)} jobs from {source} on {gpus}× {DEMO_GPU}")
    cmp = _run_with_progress(jobs, get_model(DEMO_GPU), gpus, None, None, 0, None, quiet)
    _show(cmp, out)
    _write_outputs(cmp, None, None, out)
    return exit_status(cmp)


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
        mig = ("on" if cls.mig_enabled else "off") + (", off per GPU" if cls.toggles_mig else "")
        table.add_row(name, mig, "yes" if cls.clairvoyant else "",
                      cls.description or (cls.__doc__ or "").strip().splitlines()[0])
    _console().print(table)
