"""Parse and format layouts in the CLI's text form: "3g.40gb@4,2g.20gb@0,1g.10gb@2"."""

from __future__ import annotations

import re

from migsched.errors import InvalidLayoutError
from migsched.hardware.catalog import GpuModel, Profile
from migsched.limits import MAX_LAYOUT_ITEMS

_START = re.compile(r"[0-9]+")  # ASCII digits only: "²".isdigit() is True but int("²") raises


def parse_layout_items(model: GpuModel, text: str) -> list[tuple[Profile, int]]:
    """Parse "PROFILE@START,..." into (profile, start) pairs without checking the MIG rules.

    An empty (or blank) text is the empty layout; one trailing comma is allowed, an empty item
    anywhere else (",,", a leading comma) is an error. Every START is checked to be a memory slot of
    `model` (0..memory_slices-1) before anything is sized by it, and at most `MAX_LAYOUT_ITEMS`
    items are read: `1g.10gb@10000000000` or a thousand items cannot allocate or print without
    bound.

    Raises:
        InvalidLayoutError: an item is empty (",,"), not "PROFILE@START", START is not a memory
            slot of `model`, or there are more than `MAX_LAYOUT_ITEMS` items.
        UnknownNameError: a profile name is not a profile of `model` (lists the valid names).
    """
    slots = f"0..{model.memory_slices - 1}"
    if not text.strip():
        return []
    parts = text.split(",")
    if len(parts) > 1 and not parts[-1].strip():
        parts.pop()  # one trailing comma is harmless ("a@0,b@4,"); an empty item elsewhere is a typo
    if len(parts) > MAX_LAYOUT_ITEMS:
        raise InvalidLayoutError(f"layout has {len(parts)} items; at most {MAX_LAYOUT_ITEMS} are read (one "
                                 f"{model.name} holds at most {model.max_instances} instances)")
    items: list[tuple[Profile, int]] = []
    for n, raw in enumerate(parts, start=1):
        part = raw.strip()
        if not part:
            raise InvalidLayoutError(f"layout item {n} of {text.strip()[:60]!r} is empty; separate items with one "
                                     "comma, e.g. '3g.40gb@4,2g.20gb@0'")
        shown = repr(part) if len(part) <= 40 else repr(part[:37] + "...")
        name, sep, start = part.partition("@")
        if not sep or not _START.fullmatch(start.strip()):
            raise InvalidLayoutError(
                f"layout item {shown} is not PROFILE@START (for example '3g.40gb@4'); "
                f"START is the first memory slot, {slots}"
            )
        digits = start.strip().lstrip("0") or "0"
        slot = int(digits) if len(digits) <= 9 else model.memory_slices  # never convert a huge number
        if slot >= model.memory_slices:
            raise InvalidLayoutError(f"layout item {shown}: START {start.strip()[:20]} is not a memory slot of "
                                     f"{model.name}; memory slots are {slots}")
        items.append((model.profile(name.strip()), slot))
    return items


def format_layout_items(items: list[tuple[Profile, int]]) -> str:
    """The inverse of `parse_layout_items`."""
    return ",".join(f"{p.name}@{s}" for p, s in items)
