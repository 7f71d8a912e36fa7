"""`migsched workloads`, `migsched mixes` and `migsched mix`: the template catalogue and job-mix files.

Thin layer over `migsched.workloads`: list templates (rich table or JSON), list the mix generators,
and write a generated mix as a version-1 job file (YAML or JSON by the file's extension; YAML on
stdout without --out). Unknown names raise `UnknownNameError`, which `main()` turns into exit 2.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich import box
from rich.table import Table

from migsched.cli.app import app, console
from migsched.errors import MigschedError, plural
from migsched.limits import MAX_MIX_JOBS
from migsched.workloads import (
    get_template,
    list_mixes,
    list_templates,
    make_mix,
    mix_parameters,
    mix_summary,
    to_job_entry,
)


class OutputFormatError(MigschedError, ValueError):
    """An --out file whose extension names no supported format, or that cannot be written."""


class MixUsageError(MigschedError, ValueError):
    """`migsched mix` without a mix name (and without --list)."""


# Short source labels for the table (the full `source` string is in --json and docs/workloads.md).
_SOURCE_LABELS = {
    "miso": "MISO",
    "njit": "NJIT",
    "spcl": "SPCL",
    "nos": "nos",
    "rodinia": "Rodinia",
    "llm": "HF+guess",
}


def _template_row(t: Any) -> dict[str, Any]:
    return {
        "name": t.name,
        "class": t.job_class,
        "kind": t.kind,
        "family": t.family,
        "peak_gib": t.peak_gib,
        "hint_gib": t.hint_gib,
        "runtime_s": t.runtime_s,
        "speed_1g": t.speed_1g,
        "source": t.source,
        "guess": list(t.guess),
    }


@app.command("workloads")
def workloads_cmd(
    name: Optional[str] = typer.Argument(None, help="Show one template as a job-file entry, with its sources."),
    as_json: bool = typer.Option(False, "--json", help="Print the templates as JSON instead of a table."),
    job_class: Optional[str] = typer.Option(None, "--class", help="Only this class: scientific, ml-train, ml-infer, llm."),
    family: Optional[str] = typer.Option(None, "--family", help="Only this family: rodinia, miso, njit, spcl, nos, llm."),
) -> None:
    """List the workload templates: class, kind, peak memory, 7g run time, 1g speed and source."""
    if name is not None:
        _show_template(name, as_json)
        return
    rows = [_template_row(t) for t in list_templates(job_class=job_class, family=family)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"migsched workload templates ({len(rows)}); full sources: --json",
                  caption="peak/hint in GiB; 7g s = run time on a whole 7g instance; 1g = fraction of 7g speed; "
                          "sources in full: --json, docs/workloads.md",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("name", overflow="fold", min_width=23)
    table.add_column("class", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    for col in ("peak", "hint", "7g s", "1g"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("source", overflow="fold", min_width=8)
    for r in rows:
        hint = "-" if r["hint_gib"] is None else f"{r['hint_gib']:.2f}"
        table.add_row(r["name"], r["class"], r["kind"], f"{r['peak_gib']:.2f}", hint,
                      f"{r['runtime_s']:.0f}", f"{r['speed_1g']:.2f}", _SOURCE_LABELS.get(r["family"], r["family"]))
    console().print(table)  # as wide as needed when piped: no cell is cut


def _show_template(name: str, as_json: bool) -> None:
    t = get_template(name)
    entry = to_job_entry(t)
    info = {"kind": t.kind, "family": t.family, "size": t.size, "source": t.source, "guess": list(t.guess)}
    if t.peak_calc:
        info["peak_calc"] = t.peak_calc
    if t.timing is not None:
        info["timing"] = dict(t.timing)
    if as_json:
        typer.echo(json.dumps({"entry": entry, **info}, indent=2))
        return
    lines = [f"# {k}: {v}" for k, v in info.items()]
    typer.echo("\n".join(lines) + "\n" + yaml.safe_dump(entry, sort_keys=False, default_flow_style=None, width=120),
               nl=False)


@app.command("mixes")
def mixes_cmd(as_json: bool = typer.Option(False, "--json", help="Print the mixes as JSON.")) -> None:
    """List the job-mix generators and their parameters."""
    _print_mixes(as_json)


def _print_mixes(as_json: bool) -> None:
    mixes = [{"name": n, "description": d, "params": mix_parameters(n)} for n, d in list_mixes()]
    if as_json:
        typer.echo(json.dumps(mixes, indent=2))
        return
    table = Table(title="migsched job-mix generators")
    table.add_column("name")
    table.add_column("parameters (defaults)")
    table.add_column("description", overflow="fold")
    for m in mixes:
        params = ", ".join(f"{k}={v}" for k, v in m["params"].items()) or "-"
        table.add_row(m["name"], params, m["description"])
    console().print(table)  # as wide as needed when piped: no cell is cut


def _dump(doc: dict[str, Any], fmt: str, header: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    return f"# {header}\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120)


@app.command("mix")
def mix_cmd(
    name: Optional[str] = typer.Argument(None, help="Mix generator (see `migsched mixes`)."),
    jobs: int = typer.Option(32, "--jobs", "-n", min=1, max=MAX_MIX_JOBS, help=f"Number of jobs (1..{MAX_MIX_JOBS:,})."),
    seed: int = typer.Option(0, "--seed", "-s", help="Seed of the mix's own random generator."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write here (.yaml/.yml or .json); stdout YAML without it."),
    ratio: Optional[str] = typer.Option(None, "--ratio", help='compute:memory-bound ratio, e.g. "3:1" (scientific, mixed, online).'),
    size_ratio: Optional[str] = typer.Option(None, "--size-ratio", help='small:large ratio, e.g. "1:3".'),
    class_ratio: Optional[str] = typer.Option(None, "--class-ratio", help='train:infer (ml) or scientific:ml:llm (mixed, online).'),
    arrival_mean_s: Optional[float] = typer.Option(None, "--arrival-mean-s", help="Mean inter-arrival time, s (online)."),
    list_: bool = typer.Option(False, "--list", help="List the mix generators and exit."),
) -> None:
    """Generate a seeded job mix and write it as a version-1 job file."""
    if list_:
        if name is not None:  # `mix --list ml`: the name would be ignored, so it is refused
            raise MixUsageError(f"--list lists every mix and takes no NAME (got {name!r}); "
                                f"`migsched mix {name}` writes that mix")
        _print_mixes(False)
        return
    if name is None:
        raise MixUsageError("give a mix name (or --list); mixes: " + ", ".join(n for n, _ in list_mixes()))
    given = {"ratio": ratio, "size_ratio": size_ratio, "class_ratio": class_ratio, "arrival_mean_s": arrival_mean_s}
    params = {k: v for k, v in given.items() if v is not None}
    fmt = "yaml"
    if out is not None:
        suffix = out.suffix.lower()
        if suffix == ".json":
            fmt = "json"
        elif suffix not in (".yaml", ".yml"):
            raise OutputFormatError(f"--out {str(out)!r}: the extension must be .yaml, .yml or .json")
    doc = make_mix(name, jobs=jobs, seed=seed, **params)
    flags = " ".join(f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in params.items())
    header = f"generated by: migsched mix {name} --jobs {jobs} --seed {seed}" + (f" {flags}" if flags else "")
    text = _dump(doc, fmt, header)
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputFormatError(f"cannot write {str(out)!r}: {exc.strerror}") from None
    s = mix_summary(doc)
    classes = ", ".join(f"{k} {v}" for k, v in sorted(s["by_class"].items()))
    print(f"wrote {plural('job', s['jobs'])} ({classes}) to {out}; serial 7g run time {s['serial_runtime_s']:.0f} s, "
          f"largest peak {s['max_peak_gib']:.2f} GiB", file=sys.stderr)
