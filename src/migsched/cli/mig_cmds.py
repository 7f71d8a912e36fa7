"""`migsched export`, `migsched apply` and `migsched assert`: declarative MIG layouts on real GPUs.

* `export [--format migsched|mig-parted] [--out FILE]` prints (or writes) the GPUs' MIG mode and
  instances with their placements (migsched) or as mig-parted's count maps;
* `apply CONFIG [-c NAME] [--force] [--dry-run] [--allow-mig-change]` brings the GPUs into the
  layout of CONFIG (a migsched `version: 1` file or a mig-parted `version: v1` file; "-" reads
  standard input), destroying and creating only the instances that differ, with explicit
  placements; it refuses to destroy an instance in use (naming its processes) unless --force,
  and to change MIG mode unless --allow-mig-change;
* `assert CONFIG [-c NAME]` checks the GPUs against CONFIG and changes nothing.

Exit status: 0 on success (`assert`: the GPUs are in that layout); 1 when `assert` finds
differences (each printed); 2 for a user mistake or a refusal (bad config, a busy instance, a MIG
mode change, no NVML), printed as one line by `migsched.cli.main`. See docs/mig-ops.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from migsched.backends.nvml.nvmllib import Nvml
from migsched.cli.app import app
from migsched.errors import UnknownNameError
from migsched.mig.config import dump_config, dump_mig_parted, load_config
from migsched.mig.ops import apply as apply_plan
from migsched.mig.ops import check, export_layouts, plan_apply

_FORMATS = ("migsched", "mig-parted")
ConfigArg = Annotated[str, typer.Argument(
    metavar="CONFIG", help='Layout file: migsched (version: 1) or mig-parted (version: v1); "-" for stdin.')]
NameOpt = Annotated[str | None, typer.Option(
    "--config", "-c", metavar="NAME", help="The mig-parted config to use (needed when the file has several).")]


@app.command("export")
def export(
    fmt: Annotated[str, typer.Option(
        "--format", metavar="FORMAT",
        help="migsched (explicit placements, pids in use) or mig-parted (counts).")] = "migsched",
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="FILE", help="Write to FILE instead of standard output.")] = None,
) -> None:
    """Print the GPUs' MIG mode and instances as a layout config."""
    if fmt not in _FORMATS:
        raise UnknownNameError("export format", fmt, _FORMATS)
    cfg = export_layouts(Nvml())
    text = dump_config(cfg) if fmt == "migsched" else dump_mig_parted({"current": cfg})
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}", err=True)


@app.command("apply")
def apply(
    config: ConfigArg,
    name: NameOpt = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Plan destroys of instances in use too (NVML still refuses while a process holds one; "
        "nothing is killed).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and change nothing.")] = False,
    allow_mig_change: Annotated[bool, typer.Option(
        "--allow-mig-change", help="Let migsched change MIG mode (resets A100/A30 GPUs).")] = False,
) -> None:
    """Bring the GPUs into CONFIG's layout: only differing instances change, with explicit placements."""
    cfg = load_config(config, name)
    nvml = Nvml()
    plan = plan_apply(nvml, cfg, force=force, allow_mig_change=allow_mig_change)
    for line in plan.describe():
        typer.echo(line)
    if dry_run:
        typer.echo("dry run: nothing changed")
    elif not plan.changes:
        typer.echo("nothing to do")
    else:
        done = apply_plan(nvml, plan)
        typer.echo(f"applied: {len(done)} step(s)")


@app.command("assert")
def assert_(config: ConfigArg, name: NameOpt = None) -> None:
    """Exit 0 when the GPUs are in CONFIG's layout, 1 (listing the differences) when not."""
    cfg = load_config(config, name)
    diffs = check(Nvml(), cfg)
    if not diffs:
        typer.echo(f"the GPUs match {config}")
        return
    typer.echo(f"the GPUs differ from {config}:")
    for d in diffs:
        typer.echo(f"  - {d}")
    # `main` runs the app with standalone_mode=False; SystemExit carries the status to the process.
    raise SystemExit(1)
