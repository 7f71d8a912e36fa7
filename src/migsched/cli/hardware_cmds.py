"""`migsched gpus`, `migsched layouts` and `migsched check-layout`: the hardware catalogue verbs.

* `gpus [MODEL] [--json]` lists the catalogued GPU models and their GPU-instance profiles;
* `layouts MODEL [--json] [--media]` lists one layout per maximal profile combination;
* `check-layout MODEL "3g.40gb@4,2g.20gb@0"` checks a layout against the MIG rules and measures
  what it strands.

Exit status: 0 on success (a valid layout), 1 when `check-layout` finds the layout invalid, 2 for
a user mistake (unknown model or profile, unparsable layout text; raised as `MigschedError` and
printed by `migsched.cli.main`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from migsched.cli.app import app, console
from migsched.hardware.catalog import GpuModel, Profile, all_models, get_model
from migsched.partition.layout import Instance, Layout
from migsched.partition.parse import parse_layout_items
from migsched.partition.search import (
    fragmentation,
    maximal_layouts,
    placeable_combinations,
)
from migsched.report.table import natural_width

# `NVML_GPU_INSTANCE_PROFILE_*` constant suffixes by value (mig-hardware.md §1.1).
_NVML_ENUM_NAMES = {
    0x0: "1_SLICE",
    0x1: "2_SLICE",
    0x2: "3_SLICE",
    0x3: "4_SLICE",
    0x4: "7_SLICE",
    0x5: "8_SLICE",
    0x6: "6_SLICE",
    0x7: "1_SLICE_REV1",
    0x8: "2_SLICE_REV1",
    0x9: "1_SLICE_REV2",
}


def _console() -> Console:
    # Created per call so that it writes to the current sys.stdout (tests capture it); piped, it
    # is COLUMNS wide where the user set it, else wide enough that tables do not wrap.
    return console(adapt=True)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


# ---- gpus -----------------------------------------------------------------------------------
def _profile_json(p: Profile) -> dict[str, Any]:
    return {
        "name": p.name,
        "id": p.profile_id,
        "nvml_enum": p.nvml_enum,
        "compute_slices": p.compute_slices,
        "memory_slices": p.memory_slices,
        "memory_mib": p.memory_mib,
        "sm_count": p.sm_count,
        "max_count": p.max_count,
        "media": p.media,
        "starts": list(p.starts),
        "status": p.status,
        "source": p.source,
    }


def _model_json(m: GpuModel) -> dict[str, Any]:
    return {
        "name": m.name,
        "nvml_names": list(m.nvml_names),
        "pci_device_ids": list(m.pci_device_ids),
        "compute_slices": m.compute_slices,
        "memory_slices": m.memory_slices,
        "max_instances": m.max_instances,
        "memory_mib": m.memory_mib,
        "sm_count": m.sm_count,
        "idle_w": m.idle_w,
        "max_w": m.max_w,
        "status": m.status,
        "source": m.source,
        "profiles": [_profile_json(p) for p in m.profiles],
    }


def _model_heading(m: GpuModel) -> str:
    return (
        f"{m.name}: {m.compute_slices} compute x {m.memory_slices} memory slices, "
        f"{m.memory_mib} MiB, {m.sm_count} SMs, at most {m.max_instances} instances, "
        f"status {m.status}\n  NVML names: {', '.join(m.nvml_names)}"
    )


#: Columns of `_model_table` dropped, in this order, until the table fits the terminal: the
#: NVML enum name is the widest and says least to a reader; `--json` keeps every field.
_OPTIONAL_COLUMNS = ("nvml enum", "status", "id")


def _model_table(m: GpuModel, width: int | None = None) -> Table:
    """The profiles of `m`; narrower than `width` columns by dropping `_OPTIONAL_COLUMNS` (then
    wrapping cells, never cutting them with "…")."""
    drop: list[str] = []
    while True:
        table = _profile_table(m, set(drop))
        if width is None or len(drop) == len(_OPTIONAL_COLUMNS) or natural_width(table) <= width:
            return table
        drop.append(_OPTIONAL_COLUMNS[len(drop)])


def _profile_table(m: GpuModel, drop: set[str]) -> Table:
    cols = (("profile", "left"), ("id", "right"), ("nvml enum", "left"), ("compute", "right"),
            ("memory", "right"), ("MiB", "right"), ("SMs", "right"), ("max", "right"),
            ("+me", "center"), ("starts", "left"), ("status", "left"))
    keep = [i for i, (col, _j) in enumerate(cols) if col not in drop]
    table = Table()
    for i in keep:
        col, justify = cols[i]
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for p in m.profiles:
        enum = _NVML_ENUM_NAMES.get(p.nvml_enum, "?")
        cells = (p.name, str(p.profile_id), f"{enum} ({p.nvml_enum:#x})", f"{p.compute_slices}/{m.compute_slices}",
                 f"{p.memory_slices}/{m.memory_slices}", str(p.memory_mib), str(p.sm_count), str(p.max_count),
                 "yes" if p.media else "", ",".join(map(str, p.starts)), p.status)
        table.add_row(*(cells[i] for i in keep))
    return table


@app.command("gpus")
def gpus(
    model: Annotated[
        str | None,
        typer.Argument(metavar="MODEL", help="Show only this GPU model (case-insensitive)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of models with their profiles.")
    ] = False,
) -> None:
    """List the catalogued GPU models and their MIG GPU-instance profiles."""
    models = [get_model(model)] if model is not None else all_models()
    if as_json:
        _echo_json([_model_json(m) for m in models])
        return
    console = _console()
    for m in models:
        console.print(_model_heading(m), markup=False, highlight=False)
        console.print(_model_table(m, console.width))
        console.print()
    console.print(
        "Status: V verified, C single community report, D derived, UNVERIFIED hypothesis "
        "(see docs/hardware.md). Real values are discovered through NVML at runtime.",
        markup=False,
    )


# ---- layouts --------------------------------------------------------------------------------
_SLOT_WIDTH = 5  # characters per memory slot in `draw`: fits "1g+me" and "2g.20gb" in two slots


def _label(profile: Profile, span: int) -> str:
    # The full name when it fits its cells, else the compute part ("1g", "1g+me"): only
    # one-slot profiles are shortened, and those are always "1g" (mig-hardware.md §2.1, §2.2).
    if len(profile.name) <= span:
        return profile.name
    short = f"{profile.compute_slices}g" + ("+me" if profile.media else "")
    return short[:span]


def draw(layout: Layout) -> str:
    """Draw the memory slots of `layout` left to right, e.g. `|4g.40gb----...|3g.40gb----...|`.

    Every memory slot is a cell of `_SLOT_WIDTH` characters; an instance spans its cells and the
    separators between them, shows its profile name (shortened to "1g" / "1g+me" when it does not
    fit one cell) padded with '-'; a free slot is a cell of '.'.
    """
    m = layout.model
    by_start = {i.start: i for i in layout.instances}
    cells: list[str] = []
    slot = 0
    while slot < m.memory_slices:
        inst = by_start.get(slot)
        if inst is None:
            cells.append("." * _SLOT_WIDTH)
            slot += 1
            continue
        k = inst.profile.memory_slices
        span = k * _SLOT_WIDTH + k - 1
        cells.append(_label(inst.profile, span).ljust(span, "-"))
        slot += k
    return "|" + "|".join(cells) + "|"


def _layout_json(layout: Layout) -> list[dict[str, Any]]:
    return [{"profile": i.profile.name, "start": i.start} for i in layout.instances]


@app.command("layouts")
def layouts(
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="GPU model, e.g. A100-80GB (case-insensitive).")
    ],
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print one JSON array of layouts of {"profile", "start"}.'),
    ] = False,
    media: Annotated[
        bool, typer.Option("--media", help="Include the +me (media-engine) profiles.")
    ] = False,
) -> None:
    """List one layout for every maximal profile combination of a GPU model.

    A combination is maximal when no further instance can be added in any placement; the
    layout shown is one legal placement of it.
    """
    m = get_model(model)
    lays = maximal_layouts(m, media=media)
    if as_json:
        _echo_json([_layout_json(lay) for lay in lays])
        return
    n_placeable = len(placeable_combinations(m, media=media))
    console = _console()
    console.print(
        f"{m.name}: {len(lays)} maximal layouts ({n_placeable} placeable non-empty profile "
        f"combinations{', +me profiles included' if media else ''}); memory slots "
        f"0..{m.memory_slices - 1} left to right, '.' = free slot",
        markup=False,
    )
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("layout (profile@start)", overflow="fold")  # wrapped, never cut with "…"
    table.add_column("memory slots", overflow="fold")
    table.add_column("compute", justify="right")
    table.add_column("memory", justify="right")
    for n, lay in enumerate(lays, 1):
        used_mem = len(lay.used_slots)
        table.add_row(
            str(n),
            str(lay),
            draw(lay),
            f"{lay.used_compute}/{m.compute_slices}",
            f"{used_mem}/{m.memory_slices}",
        )
    console.print(table)


# ---- check-layout ---------------------------------------------------------------------------
# The text output names at most this many violations, then a count: 64 items of one profile at one
# slot break the overlap rule 2,016 times (one line per pair), which helps nobody read.
MAX_VIOLATIONS_SHOWN = 20


@app.command("check-layout")
def check_layout(
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="GPU model, e.g. A100-80GB (case-insensitive).")
    ],
    layout_text: Annotated[
        str,
        typer.Argument(
            metavar="LAYOUT",
            help='Instances as PROFILE@START, comma separated, e.g. "3g.40gb@4,2g.20gb@0".',
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    media: Annotated[
        bool,
        typer.Option("--media", help="Count +me profiles among what could still be placed."),
    ] = False,
) -> None:
    """Check a layout against the MIG rules and measure the room it strands.

    Exits 0 when the layout is valid, 1 when it breaks a rule (the first 20 violations are printed,
    then a count; --json lists all), 2 when the text is not a layout of MODEL (a start that is not
    a memory slot, an empty item, more than 64 items).
    """
    m = get_model(model)
    items = parse_layout_items(m, layout_text)
    lay = Layout(m, tuple(sorted((Instance(p, s) for p, s in items), key=lambda i: i.start)))
    problems = lay.violations()
    frag = None
    if not problems:
        frag = fragmentation(lay, media=media or any(i.profile.media for i in lay))
    if as_json:
        out: dict[str, Any] = {
            "model": m.name,
            "layout": _layout_json(lay),
            "valid": not problems,
            "violations": problems,
            "fragmentation": None,
        }
        if frag is not None:
            out["fragmentation"] = {
                "placeable": list(frag.placeable),
                "free_compute": frag.free_compute,
                "free_memory_slots": frag.free_memory_slots,
                "stranded_compute": frag.stranded_compute,
                "stranded_memory_slots": frag.stranded_memory_slots,
                "stranded_memory_mib": frag.stranded_memory_mib,
            }
        _echo_json(out)
    else:
        console = _console()
        if problems:
            console.print(f"INVALID {m.name} layout {lay}:", markup=False)
            for p in problems[:MAX_VIOLATIONS_SHOWN]:
                console.print(f"  - {p}", markup=False)
            if len(problems) > MAX_VIOLATIONS_SHOWN:
                console.print(f"  ... and {len(problems) - MAX_VIOLATIONS_SHOWN} more violations "
                              "(--json lists them all)", markup=False)
        else:
            assert frag is not None
            console.print(f"valid {m.name} layout {lay}", markup=False)
            console.print(f"  {draw(lay)}", markup=False)
            console.print(
                f"  compute used {lay.used_compute}/{m.compute_slices}, "
                f"memory slots used {len(lay.used_slots)}/{m.memory_slices}"
            )
            console.print("fragmentation:")
            console.print(
                f"  placeable now: {', '.join(frag.placeable) or 'nothing'}", markup=False
            )
            console.print(
                f"  free: {frag.free_compute} compute slices, {frag.free_memory_slots} memory slots"
            )
            console.print(
                f"  stranded: {frag.stranded_compute} compute slices, "
                f"{frag.stranded_memory_slots} memory slots ({frag.stranded_memory_mib} MiB)"
            )
    if problems:
        # `migsched.cli.main` runs the app with standalone_mode=False, which swallows the code of
        # a `typer.Exit`; SystemExit carries the status past click to the process.
        raise SystemExit(1)
