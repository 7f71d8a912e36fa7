"""The comparison as a table: a rich `Table` for the terminal and a Markdown table for reports.

Both are built from the same formatted cells (`table_rows`), so the terminal and `results.md`
always agree. Column meanings are documented in docs/reports.md.
"""

from __future__ import annotations

from rich.table import Table

from migsched.compare import Comparison, PolicyFigures

#: (header, justify) of every column, in order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("policy", "left"),
    ("makespan", "right"),
    ("jobs/h", "right"),
    ("energy kJ", "right"),
    ("thr gain", "right"),
    ("energy gain", "right"),
    ("mean JCT", "right"),
    ("slice util", "right"),
    ("reconfigs", "right"),
    ("OOM restarts", "right"),
    ("early restarts", "right"),
    ("wasted GPU·s", "right"),
    ("done/failed", "right"),
    ("× lower bound", "right"),
)

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


def _gain(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}×"


def policy_label(row: PolicyFigures) -> str:
    """The policy name; a static run is marked with "*" (its layout is listed under the table)."""
    return f"{row.policy}*" if row.layout else row.policy


def layout_lines(cmp: Comparison) -> list[str]:
    """"* static layout: ..." for every row that ran a fixed layout (sweep winner or given)."""
    out = []
    for row in cmp.rows:
        if row.layout:
            how = f"best of {row.layouts_tried} maximal layouts" if row.layouts_tried > 1 else "given"
            out.append(f"* {row.policy} layout ({how}): {row.layout}")
    return out


def table_rows(cmp: Comparison) -> list[list[str]]:
    """The formatted cells of every row, in `COLUMNS` order."""
    out = []
    for row in cmp.rows:
        r = row.result
        out.append([
            policy_label(row),
            fmt_duration(r.makespan_s),
            f"{r.throughput_jobs_per_h:.1f}",
            f"{r.energy_j / 1000:.0f}",
            _gain(row.throughput_gain),
            _gain(row.energy_gain),
            fmt_duration(r.mean_jct_s),
            f"{r.slice_utilisation * 100:.0f}%",
            str(r.reconfigurations),
            str(r.oom_restarts),
            str(r.early_restarts),
            f"{r.wasted_gpu_s:.0f}",
            f"{r.jobs_completed}/{r.jobs_failed}",
            "n/a" if row.lower_bound_ratio is None else f"{row.lower_bound_ratio:.2f}",
        ])
    return out


def heading(cmp: Comparison) -> str:
    """One line naming the batch and the cluster."""
    return f"{cmp.jobs} jobs on {cmp.gpus}× {cmp.gpu}"


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


def rich_table(cmp: Comparison, transposed: bool = False) -> Table:
    """The comparison as a rich table; `transposed` puts policies in columns (for narrow terminals)."""
    rows = table_rows(cmp)
    if transposed:
        table = Table(title=f"Policy comparison: {heading(cmp)}")
        table.add_column("")
        for cells in rows:
            table.add_column(cells[0], justify="right", no_wrap=True)
        for k, (name, _) in enumerate(COLUMNS[1:], start=1):
            table.add_row(name, *(cells[k] for cells in rows))
        return table
    table = Table(title=f"Policy comparison: {heading(cmp)}")
    for name, justify in COLUMNS:
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for cells in rows:
        table.add_row(*cells)
    return table


#: Terminal width below which `migsched simulate` prints the transposed table.
WIDE_TABLE_MIN_WIDTH = 180


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(cmp: Comparison) -> str:
    """The comparison as a GitHub-flavoured Markdown table (no trailing newline)."""
    head = "| " + " | ".join(n for n, _ in COLUMNS) + " |"
    rule = "|" + "|".join(":---" if j == "left" else "---:" for _, j in COLUMNS) + "|"
    body = ["| " + " | ".join(_md_escape(c) for c in cells) + " |" for cells in table_rows(cmp)]
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
