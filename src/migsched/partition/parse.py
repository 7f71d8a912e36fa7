"""Parse and format layouts in the CLI's text form: "3g.40gb@4,2g.20gb@0,1g.10gb@2"."""

from __future__ import annotations

from migsched.errors import InvalidLayoutError
from migsched.hardware.catalog import GpuModel, Profile


def parse_layout_items(model: GpuModel, text: str) -> list[tuple[Profile, int]]:
    """Parse "PROFILE@START,..." into (profile, start) pairs without checking the MIG rules.

    Raises:
        InvalidLayoutError: an item is not "PROFILE@START" or START is not an integer.
        UnknownNameError: a profile name is not a profile of `model` (lists the valid names).
    """
    items: list[tuple[Profile, int]] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        name, sep, start = part.partition("@")
        if not sep or not start.strip().lstrip("-").isdigit():
            raise InvalidLayoutError(
                f"layout item {part!r} is not PROFILE@START (for example '3g.40gb@4'); "
                f"START is the first memory slot, 0..{model.memory_slices - 1}"
            )
        items.append((model.profile(name.strip()), int(start)))
    return items


def format_layout_items(items: list[tuple[Profile, int]]) -> str:
    """The inverse of `parse_layout_items`."""
    return ",".join(f"{p.name}@{s}" for p, s in items)
