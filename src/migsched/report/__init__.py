"""Reports of a policy comparison: terminal/Markdown tables, the JSON document and PNG pictures.

* `table`: `rich_table`, `markdown_table`, `lower_bound_line`, `failure_lines`;
* `json_out`: `comparison_dict`, `write_json` (the `--json FILE` document);
* `plots`: timelines, power over time and a summary chart (matplotlib, imported only when a
  report folder is written, since it takes a second to import);
* `write_report(cmp, folder)`: the PNGs plus `results.md`.
"""

from __future__ import annotations

from pathlib import Path

from migsched.compare import Comparison
from migsched.report.json_out import comparison_dict, write_json
from migsched.report.table import (
    failure_lines,
    layout_lines,
    lower_bound_line,
    markdown_report,
    markdown_table,
    rich_table,
)

__all__ = [
    "comparison_dict", "failure_lines", "layout_lines", "lower_bound_line", "markdown_report",
    "markdown_table", "rich_table", "write_json", "write_report",
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
    return [*pngs, md]
