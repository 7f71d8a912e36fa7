"""`migsched history FILE [--json]`: what a history file (`--history FILE`) holds.

Per job family: the completed runs recorded and, per GPU model and instance size, the median
compute time and start-up, which is what migm recalls for the family in the next batch on that
model (docs/migm.md step 8).
Then the job names with memory peaks, largest first. The text lists `MAX_ROWS_SHOWN` rows of
each, then a count; `--json` lists everything.

Exit status: 0; 2 when FILE does not exist, is a directory or is not a readable history file
(the reason is named; nothing is written: a run with `--history FILE` would warn, set the file
aside as FILE.unreadable and start empty).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text  # job names are plain text: "exp[lr=0.1]" is not markup

from migsched.cli.app import app, console
from migsched.errors import MigschedError
from migsched.estimators.history import HistoryStore

MAX_ROWS_SHOWN = 50


def history_doc(store: HistoryStore) -> dict[str, Any]:
    """The store as a JSON-able dict: families with their durations by size, and memory peaks."""
    families: dict[str, Any] = {}
    for fam in store.families():
        runs = store.duration_runs(fam)
        counts = Counter((r.gpu, r.compute_slices) for r in runs)
        families[fam] = {"runs": len(runs), "by_gpu": {  # the medians migm recalls on each model
            gpu or "unknown": {str(c): {"runs": counts[gpu, c], "median_work_s": work_s, "median_startup_s": startup_s}
                               for c, (work_s, startup_s) in sorted(store.durations(fam, gpu).items())}
            for gpu in sorted({r.gpu for r in runs})}}
    peaks = [{"name": name, "command": command, "runs": len(runs), "ok_runs": sum(r.ok for r in runs),
              "peak_mib": max(r.peak_mib for r in runs)} for name, command, runs in store.peak_entries() if runs]
    peaks.sort(key=lambda e: (-e["peak_mib"], e["name"]))
    return {"path": str(store.path), "families": families, "peaks": peaks}


@app.command("history")
def history_cmd(
    history_file: Annotated[Path, typer.Argument(metavar="FILE", help="A history file written by `--history FILE`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (every family and peak) instead of tables.")] = False,
) -> None:
    """Show what a history file holds: run times per job family and memory peaks per job name."""
    if history_file.is_dir():
        raise MigschedError(f"FILE {str(history_file)!r} is a directory; name a history file")
    if not history_file.exists():
        raise MigschedError(f"no history file {str(history_file)!r} (a run with --history FILE creates it)")
    doc = history_doc(HistoryStore(history_file, autosave=False, strict=True))  # a viewer writes nothing
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    out = console()
    fams = doc["families"]
    table = Table(title=f"run times by family ({len(fams)})")
    for col in ("family", "runs", "GPU: median compute s by compute slices (runs)", "start-up s"):
        table.add_column(col)
    for fam, d in list(fams.items())[:MAX_ROWS_SHOWN]:
        per_gpu = d["by_gpu"]
        table.add_row(Text(fam), str(d["runs"]), Text("; ".join(
            f"{gpu} " + ", ".join(f"{c}: {v['median_work_s']:,.1f} ({v['runs']})" for c, v in sizes.items())
            for gpu, sizes in per_gpu.items())),
            ", ".join(sorted({f"{v['median_startup_s']:.1f}" for sizes in per_gpu.values() for v in sizes.values()})))
    out.print(table)
    if len(fams) > MAX_ROWS_SHOWN:
        out.print(f"... and {len(fams) - MAX_ROWS_SHOWN:,} more families (--json lists all)")
    peaks = doc["peaks"]
    table = Table(title=f"memory peaks by job name ({len(peaks)}), largest first")
    for col in ("job", "runs", "ok", "peak GiB"):
        table.add_column(col)
    for e in peaks[:MAX_ROWS_SHOWN]:
        table.add_row(Text(e["name"]), str(e["runs"]), str(e["ok_runs"]), f"{e['peak_mib'] / 1024:.2f}")
    out.print(table)
    if len(peaks) > MAX_ROWS_SHOWN:
        out.print(f"... and {len(peaks) - MAX_ROWS_SHOWN:,} more job names (--json lists all)")
