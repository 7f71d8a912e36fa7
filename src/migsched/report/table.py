"""The comparison as a table: a rich `Table` for the terminal and a Markdown table for reports.

Both are built from the same column definitions (`columns`), so the terminal and `results.md`
always agree. Column meanings are documented in docs/reports.md.

The terminal gets the *compact* set by default (`COMPACT`: fits an 80-column terminal); `wide`
adds every other column, including one per cause of lost runs ("OOM", "early", "upgrade/tail",
...; `migsched.metrics.lost_runs_by_cause`). Cells are never cut: when a table is wider than the
terminal, `fit_table` drops optional columns (last in `COMPACT` first) and, as a last resort,
transposes it. `results.md` always has every column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table

from migsched.compare import Comparison, PolicyFigures
from migsched.errors import plural
from migsched.metrics import cause_label, lost_runs_by_cause

LOWER_BOUND_DEFINITION = (
    "max(longest job from its arrival on its fastest instance, "
    "sum of each job's smallest compute-slice-seconds / cluster compute slices, "
    "sum of each job's smallest memory-slot-seconds / cluster memory slots)"
)


def fmt_duration(seconds: float) -> str:
    """A duration for humans: "42.0 s", "12.5 min", "3.20 h"."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def fmt_gib(gib: float) -> str:
    """A memory size in GiB for a narrow cell: one decimal up to 9,999.9 ("17.0"), then three
    significant digits ("1.68e+10"), so that an estimate at the `describe:` bounds cannot print
    a dozen digits into a table."""
    return f"{gib:.1f}" if abs(gib) < 9999.95 else f"{gib:.3g}"


def _gain(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}×"


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its key, its header (a line break allowed, joined by a space in Markdown),
    its justification and how a row's cell is formatted."""

    key: str
    header: str
    justify: str
    cell: Callable[[PolicyFigures], str]


def policy_label(row: PolicyFigures) -> str:
    """The policy name; a static run is marked with "*" (its layout is listed under the table)."""
    return f"{row.policy}*" if row.layout else row.policy


def _restarts(row: PolicyFigures) -> str:
    return str(sum(c.runs for c in lost_runs_by_cause(row.result).values()))


def _cause_cell(cause: str) -> Callable[[PolicyFigures], str]:
    def cell(row: PolicyFigures) -> str:
        lost = lost_runs_by_cause(row.result).get(cause)
        return "0" if lost is None else f"{lost.runs} / {lost.wasted_gpu_s:.0f}"
    return cell


_ALL: dict[str, Column] = {c.key: c for c in (
    Column("policy", "policy", "left", policy_label),
    Column("makespan", "makespan", "right", lambda r: fmt_duration(r.result.makespan_s)),
    Column("jobs_per_h", "jobs/h", "right", lambda r: f"{r.result.throughput_jobs_per_h:.1f}"),
    Column("energy", "energy\nkJ", "right", lambda r: f"{r.result.energy_j / 1000:.0f}"),
    Column("thr_gain", "thr\ngain", "right", lambda r: _gain(r.throughput_gain)),
    Column("energy_gain", "energy\ngain", "right", lambda r: _gain(r.energy_gain)),
    Column("mean_jct", "mean JCT", "right", lambda r: fmt_duration(r.result.mean_jct_s)),
    Column("slice_util", "slice\nutil", "right", lambda r: f"{r.result.slice_utilisation * 100:.0f}%"),
    Column("reconfigs", "reconfigs", "right", lambda r: str(r.result.reconfigurations)),
    Column("restarts", "restarts", "right", _restarts),
    Column("wasted", "wasted\nGPU·s", "right", lambda r: f"{r.result.wasted_gpu_s:.0f}"),
    Column("done_failed", "done/\nfailed", "right", lambda r: f"{r.result.jobs_completed}/{r.result.jobs_failed}"),
    Column("lower_bound", "× lower\nbound", "right",
           lambda r: "n/a" if r.lower_bound_ratio is None else f"{r.lower_bound_ratio:.2f}"),
)}

#: The compact default, in display order; the last ones are dropped first on narrow terminals.
COMPACT: tuple[str, ...] = ("policy", "makespan", "energy", "thr_gain", "energy_gain", "restarts",
                            "done_failed", "lower_bound", "wasted")
_WIDE_ORDER = ("policy", "makespan", "jobs_per_h", "energy", "thr_gain", "energy_gain", "mean_jct",
               "slice_util", "reconfigs", "restarts", "*causes", "wasted", "done_failed", "lower_bound")
_COMPACT_DISPLAY = ("policy", "makespan", "energy", "thr_gain", "energy_gain", "restarts", "wasted",
                    "done_failed", "lower_bound")


def causes(cmp: Comparison) -> list[str]:
    """Every cause of lost runs that occurs in some row, plus OOM and early (always shown)."""
    seen = ["oom", "early-restart"]
    for row in cmp.rows:
        for c in lost_runs_by_cause(row.result):
            if c not in seen:
                seen.append(c)
    return seen


def columns(cmp: Comparison, wide: bool = False, keep: tuple[str, ...] | None = None) -> list[Column]:
    """The columns to show: `wide` for all (one per cause of lost runs), else the compact set
    (restricted to `keep` when given), in display order."""
    if not wide:
        chosen = set(COMPACT if keep is None else keep)
        return [_ALL[k] for k in _COMPACT_DISPLAY if k in chosen]
    out: list[Column] = []
    for key in _WIDE_ORDER:
        if key == "*causes":
            out += [Column(f"cause:{c}", f"{cause_label(c)}\nruns / GPU·s", "right", _cause_cell(c))
                    for c in causes(cmp)]
        else:
            out.append(_ALL[key])
    return out


def layout_lines(cmp: Comparison) -> list[str]:
    """"* static layout: ..." for every row that ran a fixed layout (sweep winner or given)."""
    out = []
    for row in cmp.rows:
        if row.layout:
            how = f"best of {row.layouts_tried} layouts tried" if row.layouts_tried > 1 else "given"
            out.append(f"* {row.policy} layout ({how}): {row.layout}")
    return out


def table_rows(cmp: Comparison, cols: list[Column] | None = None) -> list[list[str]]:
    """The formatted cells of every row, in the order of `cols` (default: every column)."""
    cols = columns(cmp, wide=True) if cols is None else cols
    return [[c.cell(row) for c in cols] for row in cmp.rows]


def heading(cmp: Comparison) -> str:
    """One line naming the batch and the cluster."""
    return f"{plural('job', cmp.jobs)} on {cmp.gpus}× {cmp.gpu}"


def lower_bound_line(cmp: Comparison) -> str:
    """The lower bound and how it is defined."""
    return f"Lower bound on makespan: {fmt_duration(cmp.lower_bound_s)} ({cmp.lower_bound_s:.1f} s) = {LOWER_BOUND_DEFINITION}."


def failure_lines(cmp: Comparison, first: int = 3) -> list[str]:
    """For each policy with failed jobs, its first `first` failures with their reasons."""
    lines = []
    for row in cmp.rows:
        failed = [j for j in row.result.jobs if j.state != "done"]
        if not failed:
            continue
        lines.append(f"{row.policy}: {len(failed)} job(s) did not complete")
        for j in failed[:first]:
            lines.append(f"  {j.job_id} ({j.state}): {j.failure or 'no reason recorded'}")
        if len(failed) > first:
            lines.append(f"  ... and {len(failed) - first} more")
    return lines


def rich_table(cmp: Comparison, transposed: bool = False, wide: bool = False,
               keep: tuple[str, ...] | None = None) -> Table:
    """The comparison as a rich table (compact unless `wide`; see the module docstring).

    `transposed` puts policies in columns (for very narrow terminals). Cells never wrap.
    """
    cols = columns(cmp, wide, keep)
    rows = table_rows(cmp, cols)
    title = f"Policy comparison: {heading(cmp)}"
    if transposed:
        table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
        table.add_column("", no_wrap=True)
        for cells in rows:
            table.add_column(cells[0], justify="right", no_wrap=True)
        for k, col in enumerate(cols[1:], start=1):
            table.add_row(col.header.replace("\n", " "), *(cells[k] for cells in rows))
        return table
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    for col in cols:
        table.add_column(col.header, justify=col.justify, no_wrap=True)  # type: ignore[arg-type]
    for cells in rows:
        table.add_row(*cells)
    return table


def table_width(console: Console, table: Table) -> int:
    """The width `table` needs on `console` without cutting any cell."""
    return console.measure(table, options=console.options.update(width=100_000)).maximum


def natural_width(table: Table) -> int:
    """The width `table` needs with no cell cut or wrapped (measured on a console that prints
    nowhere): what the CLI compares with the terminal before it drops columns."""
    return table_width(Console(width=100_000, file=_NullFile()), table)


def fit_table(cmp: Comparison, width: int | None, wide: bool = False) -> Table:
    """The widest table of the requested kind that fits `width` columns (None: no limit).

    Compact: optional columns are dropped, last in `COMPACT` first, down to policy, makespan,
    energy and the gains; wide: the compact set is the fallback. If even that does not fit,
    the compact table transposed.
    """
    con = Console(width=100_000, file=_NullFile())
    if width is None:
        return rich_table(cmp, wide=wide)
    if wide:
        table = rich_table(cmp, wide=True)
        if table_width(con, table) <= width:
            return table
    for n in range(len(COMPACT), 4, -1):
        table = rich_table(cmp, keep=COMPACT[:n])
        if table_width(con, table) <= width:
            return table
    return rich_table(cmp, transposed=True)


class _NullFile:
    """A file that discards what is written (for measuring tables)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(cmp: Comparison) -> str:
    """The comparison as a GitHub-flavoured Markdown table, every column (no trailing newline)."""
    cols = columns(cmp, wide=True)
    head = "| " + " | ".join(c.header.replace("\n", " ") for c in cols) + " |"
    rule = "|" + "|".join(":---" if c.justify == "left" else "---:" for c in cols) + "|"
    body = ["| " + " | ".join(_md_escape(c) for c in cells) + " |" for cells in table_rows(cmp, cols)]
    return "\n".join([head, rule, *body])


def markdown_report(cmp: Comparison, images: list[str] | None = None) -> str:
    """`results.md`: heading, table, lower bound, notes, failures and the pictures."""
    parts = [f"# migsched comparison: {heading(cmp)}", "", markdown_table(cmp), "", lower_bound_line(cmp)]
    parts += ["", *(f"{_md_escape(line)}  " for line in layout_lines(cmp))]
    notes = [n for n in cmp.notes if not n.startswith("static:")]
    if notes:
        parts += ["", "Notes:", "", *(f"- {_md_escape(n)}" for n in notes)]
    fails = failure_lines(cmp)
    if fails:
        parts += ["", "Jobs that did not complete (first few per policy):", "", "```", *fails, "```"]
    if images:
        parts += ["", "## Pictures", ""]
        parts += [f"![{name}]({name})" for name in images]
    parts.append("")
    parts.append("Column definitions: see docs/reports.md of migsched.")
    return "\n".join(parts) + "\n"
