"""`migsched validate JOBS [--gpu MODEL]... [--json]`: check a job or task file before running it.

Loads the file exactly as `simulate` and `run` would (every bound and type of docs/job-file.md is
checked) and says what would be run: the jobs per entry, and for each GPU model the memory each
entry is taken to need and the smallest GPU instance that holds it. The need is the entry's
`model:` peak when it has one (what the simulator runs out of memory against), else the estimate
migm starts from on that GPU (`JobMemoryEstimator` with no history: analytic `describe:`, then
the hint with its class margin, then the class default). An entry that fits no instance of any
model considered (those named with `--gpu`, else every catalogued one) fits nowhere.

Exit status: 0 when every entry fits somewhere, 1 when an entry fits nowhere (each is named),
2 when the file is invalid or a name unknown (one line saying why, from `migsched.cli.main`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from migsched.cli.app import app, console, job_class_option
from migsched.core.state import JobView
from migsched.errors import plural
from migsched.estimators import JobMemoryEstimator
from migsched.hardware.catalog import GpuModel, Profile, all_models, get_model
from migsched.jobs import Job
from migsched.jobs.taskfile import load_job_source
from migsched.report.table import fmt_gib, natural_width

# The text output lists this many entries (and names this many that fit nowhere), then a count;
# --json lists all of them. A 100,000-task file must not print 100,000 rows.
MAX_ROWS_SHOWN = 50


@dataclass(frozen=True, slots=True)
class Fit:
    """One entry on one GPU model: the GiB it is taken to need and the smallest instance holding it."""

    need_gib: float
    profile: Profile | None


@dataclass(frozen=True, slots=True)
class EntryReport:
    """One job-file entry (or task line): its jobs, what its need comes from, and its fit per model."""

    name: str
    job_class: str
    count: int
    first_arrival_s: float
    hint_gib: float | None
    peak_gib: float | None
    source: str
    command: str | None
    fits: dict[str, Fit]

    @property
    def fits_nowhere(self) -> bool:
        """True when no instance of any model considered holds the entry."""
        return all(f.profile is None for f in self.fits.values())


def smallest_fit(model: GpuModel, need_gib: float) -> Profile | None:
    """The smallest instance of `model` (memory, then compute) with at least `need_gib` (equal fits)."""
    ok = [p for p in model.usable_profiles() if p.memory_mib / 1024.0 >= need_gib]
    return min(ok, key=lambda p: (p.memory_mib, p.compute_slices)) if ok else None


def _entries(jobs: Sequence[Job]) -> dict[str, list[Job]]:
    by_name: dict[str, list[Job]] = {}
    for job in jobs:
        by_name.setdefault(job.spec.name, []).append(job)
    return by_name


def analyse(jobs: Sequence[Job], models: Sequence[GpuModel]) -> list[EntryReport]:
    """An `EntryReport` per entry of `jobs` (in file order) on each of `models`."""
    estimators = {m.name: JobMemoryEstimator(largest_mib=float(m.largest.memory_mib)) for m in models}
    out = []
    for name, group in _entries(jobs).items():
        spec, truth = group[0].spec, group[0].truth
        fits: dict[str, Fit] = {}
        source = "model peak"
        for m in models:
            if truth is not None:
                need = truth.peak_gib
            else:
                est = estimators[m.name].estimate(JobView(spec))
                need, source = est.mib / 1024.0, est.source
            fits[m.name] = Fit(need, smallest_fit(m, need))
        out.append(EntryReport(name, spec.job_class.value, len(group), min(j.spec.arrival_s for j in group),
                               spec.hint_gib, truth.peak_gib if truth else None, source, spec.command, fits))
    return out


def power_notes(jobs: Sequence[Job], models: Sequence[GpuModel]) -> list[str]:
    """Entries whose `power_w` is above a model's dynamic range (the simulator caps it there)."""
    notes = []
    for name, group in _entries(jobs).items():
        truth = group[0].truth
        if truth is None:
            continue
        for m in models:
            top = m.max_w - m.idle_w
            if truth.power_w > top:
                notes.append(f"{name!r}: power_w {truth.power_w:g} W is above the {m.name}'s dynamic range "
                             f"({m.max_w:g} W - {m.idle_w:g} W idle = {top:g} W); the simulator caps it there")
    return notes


def _json(path: Path, reports: list[EntryReport], models: Sequence[GpuModel], notes: list[str]) -> dict[str, Any]:
    return {
        "file": str(path),
        "jobs": sum(r.count for r in reports),
        "models": [m.name for m in models],
        "entries": [{
            "name": r.name, "class": r.job_class, "count": r.count, "first_arrival_s": r.first_arrival_s,
            "hint_gib": r.hint_gib, "peak_gib": r.peak_gib, "need_source": r.source, "command": r.command,
            "fits": {m: {"need_gib": round(f.need_gib, 3), "profile": f.profile.name if f.profile else None}
                     for m, f in r.fits.items()},
        } for r in reports],
        "fits_nowhere": [r.name for r in reports if r.fits_nowhere],
        "notes": notes,
    }


def _summary(path: Path, reports: list[EntryReport]) -> str:
    classes: dict[str, int] = {}
    for r in reports:
        classes[r.job_class] = classes.get(r.job_class, 0) + r.count
    n = sum(r.count for r in reports)
    by_class = ", ".join(f"{k} {v}" for k, v in sorted(classes.items()))
    simulatable = sum(r.peak_gib is not None for r in reports)
    last = max(r.first_arrival_s for r in reports)
    return (f"{path}: {plural('job', n)} in {plural('entry', len(reports))} ({by_class}); "
            f"model: on {simulatable} of {len(reports)} (simulate needs it on every one); "
            f"arrivals 0..{last:g} s")


def _table(reports: list[EntryReport], models: Sequence[GpuModel]) -> Table:
    table = Table(caption="per GPU: the smallest instance that holds the entry (GiB it is taken to need); "
                          "- : no instance is large enough")
    for col in ("entry", "class", "jobs", "need from"):  # wrapped, never cut with "…"
        table.add_column(col, justify="right" if col == "jobs" else "left", overflow="fold")
    for m in models:
        table.add_column(m.name, overflow="fold")
    for r in reports[:MAX_ROWS_SHOWN]:
        fits = [r.fits[m.name] for m in models]  # the columns shown, not every model analysed
        cells = [f"{f.profile.name if f.profile else '-'} ({fmt_gib(f.need_gib)})" for f in fits]
        table.add_row(r.name, r.job_class, str(r.count), r.source, *cells)
    return table


@app.command("validate")
def validate_cmd(
    jobs_file: Annotated[Path, typer.Argument(metavar="JOBS", help="Job file (YAML/JSON, version 1) or task file (one command per line).")],
    gpu: Annotated[list[str] | None, typer.Option("--gpu", help="GPU model to check the fit on (repeatable); default: every catalogued model.")] = None,
    job_class: Annotated[str, typer.Option("--class", callback=job_class_option, help="Job class of task-file lines: scientific, ml-train, ml-infer, llm.")] = "scientific",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a job or task file: what would run, each entry's memory need and smallest fitting instance.

    Exits 0 when every entry fits an instance of some model considered, 1 when one fits nowhere,
    2 when the file is invalid.
    """
    models = [get_model(g) for g in dict.fromkeys(gpu)] if gpu else all_models()
    jobs = load_job_source(jobs_file, job_class=job_class)
    reports = analyse(jobs, models)
    notes = power_notes(jobs, models)
    nowhere = [r for r in reports if r.fits_nowhere]
    if as_json:
        typer.echo(json.dumps(_json(jobs_file, reports, models, notes), indent=2))
    else:
        con = console(adapt=True)
        con.print(_summary(jobs_file, reports), markup=False)
        shown = list(models)  # as many GPU models as fit the terminal: 9 columns of 2 characters say nothing
        table = _table(reports, shown)
        while len(shown) > 1 and natural_width(table) > con.width:
            shown.pop()
            table = _table(reports, shown)
        con.print(table)
        if len(shown) < len(models):
            con.print(f"note: {len(models) - len(shown)} more GPU models ({', '.join(m.name for m in models[len(shown):])}) "
                      f"do not fit {con.width} columns: name the ones you want with --gpu, or use --json", markup=False)
        if len(reports) > MAX_ROWS_SHOWN:
            con.print(f"... and {len(reports) - MAX_ROWS_SHOWN} more {plural('entry')} (--json lists all)", markup=False)
        for note in notes[:MAX_ROWS_SHOWN]:
            con.print(f"note: {note}", markup=False)
        where = ", ".join(m.name for m in models) if gpu else "any catalogued GPU"
        if nowhere:
            names = ", ".join(repr(r.name) for r in nowhere[:MAX_ROWS_SHOWN])
            more = f" and {len(nowhere) - MAX_ROWS_SHOWN} more" if len(nowhere) > MAX_ROWS_SHOWN else ""
            con.print(f"fits nowhere on {where}: {names}{more}", markup=False)
        else:
            con.print(f"ok: every entry fits an instance of {where}", markup=False)
    if nowhere:
        raise typer.Exit(1)
