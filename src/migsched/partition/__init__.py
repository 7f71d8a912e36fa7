"""The partition engine: pure code over the MIG rules of one GPU, no I/O, no NVML.

* `Layout` / `Instance`: an immutable set of GPU instances and the MIG rules (`layout.py`);
* `Layout.place` / `release` / `can_place`; `fuse`, `split`, `reclaim_options`, `plan` (`reshape.py`);
* `enumerate_layouts`, `maximal_layouts`, `fragmentation`, `placement_score` (`search.py`);
* `parse_layout_items` for the CLI's "3g.40gb@4,2g.20gb@0" form (`parse.py`).

    >>> from migsched.hardware import get_model
    >>> from migsched.partition import Layout, plan
    >>> m = get_model("A100-80GB")
    >>> cur = Layout.of(m, [("1g.10gb", 4), ("1g.10gb", 5), ("1g.10gb", 6)])
    >>> [str(op) for op in plan(cur, Layout.of(m, [("3g.40gb", 4)]))]
    ['destroy 1g.10gb@4', 'destroy 1g.10gb@5', 'destroy 1g.10gb@6', 'create 3g.40gb@4']
"""

from migsched.partition.layout import Instance, Layout
from migsched.partition.parse import format_layout_items, parse_layout_items
from migsched.partition.reshape import (
    Operation,
    Reclaim,
    apply_plan,
    fission_options,
    fuse,
    plan,
    reclaim_options,
    split,
)
from migsched.partition.search import (
    Fragmentation,
    best_start,
    enumerate_layouts,
    fragmentation,
    maximal_combinations,
    maximal_layouts,
    placeable_combinations,
    placement_score,
)

__all__ = [
    "Fragmentation", "Instance", "Layout", "Operation", "Reclaim", "apply_plan", "best_start",
    "enumerate_layouts", "fission_options", "format_layout_items", "fragmentation", "fuse",
    "maximal_combinations", "maximal_layouts", "parse_layout_items", "placeable_combinations",
    "placement_score", "plan", "reclaim_options", "split",
]
