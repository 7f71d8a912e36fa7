"""Reports of a policy comparison: terminal/Markdown tables, the JSON document and PNG pictures.

* `table`: `rich_table`, `markdown_table`, `lower_bound_line`, `failure_lines`;
* `json_out`: `comparison_dict`, `write_json` (the `--json FILE` document);
* `plots`: timelines, power over time and a summary chart (matplotlib, imported only when a
  report folder is written, since it takes a second to import); `cluster_plot`: the
  cluster-wide view (busy slices, queue, power over time);
* `schedule`: the per-job schedule (`--schedule FILE`, JSON or CSV);
* `outputs`: output paths checked before any work, stale report files removed;
* `write_report(cmp, folder)`: the PNGs plus `results.md`, removing pictures a previous report
  left in the folder.
"""

from __future__ import annotations

from pathlib import Path

from migsched.compare import Comparison
from migsched.report.json_out import comparison_dict, write_json
from migsched.report.outputs import OutputError, check_file, check_folder, clean_report_folder
from migsched.report.schedule import schedule_format, write_schedule
from migsched.report.table import (
    failure_lines,
    layout_lines,
    lower_bound_line,
    markdown_report,
    fit_table,
    markdown_table,
    rich_table,
)

__all__ = [
    "OutputError", "check_file", "check_folder", "comparison_dict", "failure_lines", "fit_table",
    "layout_lines", "lower_bound_line", "markdown_report", "markdown_table", "rich_table",
    "schedule_format", "write_json", "write_report", "write_schedule",
]


def write_report(cmp: Comparison, folder: str | Path) -> list[Path]:
    """Write every PNG and `results.md` into `folder` (created); the paths written.

    Raises:
        OSError: the folder or a file cannot be written.
    """
    from migsched.report.plots import write_pngs  # matplotlib: only when a report is asked for

    out = Path(folder)
    pngs = write_pngs(cmp, out)
    md = out / "results.md"
    md.write_text(markdown_report(cmp, [p.name for p in pngs]), encoding="utf-8")
    clean_report_folder(out, {p.name for p in [*pngs, md]})
    return [*pngs, md]
