"""Layouts per GPU in the CLI's text form: "3g.40gb@4,4g.40gb@0; 7g.80gb@0".

One layout (no ";") is the layout of every GPU; otherwise one layout per GPU in GPU order,
separated by ";". "N× LAYOUT" (or "Nx LAYOUT", "N*LAYOUT") stands for N GPUs in a row with that
layout: "2× 7g.80gb@0; 3g.40gb@4,4g.40gb@0" is three GPUs. Each layout is parsed by
`migsched.partition.parse.parse_layout_items` and checked against the MIG rules. `format_layouts`
writes the same syntax compactly, so a layout printed under the comparison table can be passed
back to `--layout`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from migsched.errors import InvalidLayoutError
from migsched.hardware.catalog import GpuModel
from migsched.partition.layout import Layout
from migsched.partition.parse import parse_layout_items

#: "N× LAYOUT": N GPUs in a row with LAYOUT (× or x or *); no profile name is digits then x.
_REPEAT = re.compile(r"([0-9]{1,6})\s*[×xX*]\s*(.*)", re.DOTALL)
#: Separates the GPUs' layouts in `layout=`.
GPU_SEPARATOR = ";"


def split_layouts(text: str) -> list[tuple[int, str]]:
    """The (GPU count, layout text) runs of `layout=`, each layout still unparsed ("N× " read,
    not expanded, so a huge N costs nothing).

    One item (no ";") is the layout of every GPU. An empty item between separators is an error
    (";;" is a typo, not an empty GPU); one trailing ";" is allowed.

    Raises:
        InvalidLayoutError: an empty item, or a repeat count of 0.
    """
    parts = text.split(GPU_SEPARATOR)
    if len(parts) > 1 and not parts[-1].strip():
        parts.pop()
    out: list[tuple[int, str]] = []
    for n, raw in enumerate(parts, start=1):
        part = raw.strip()
        m = _REPEAT.fullmatch(part)
        count, item = (int(m.group(1)), m.group(2).strip()) if m else (1, part)
        if len(parts) > 1 and not item:
            raise InvalidLayoutError(f"GPU layout {n} of {text.strip()[:60]!r} is empty; separate the GPUs' "
                                     "layouts with one ';', e.g. '3g.40gb@4,4g.40gb@0; 7g.80gb@0'")
        if count < 1:
            raise InvalidLayoutError(f"GPU layout {part[:40]!r} repeats a layout {count} times; the count "
                                     "before × must be at least 1")
        out.append((count, item))
    return out


def layouts_for_gpus(models: Sequence[GpuModel], text: str) -> list[Layout]:
    """The layout of each GPU (models[i] is GPU i's model) from `layout=` text, validated.

    Raises:
        InvalidLayoutError: a number of GPU layouts that is neither 1 nor len(models) (both
            named), no instance on any GPU, or a layout that `parse_layout_items` or the MIG rules
            refuse (the GPU named when the layouts differ).
        UnknownNameError: a profile that is not one of the GPU's model.
    """
    runs = split_layouts(text)
    given = sum(n for n, _ in runs)
    if given not in (1, len(models)):
        raise InvalidLayoutError(f"layout gives {given} GPU layouts for {len(models)} GPUs; give one layout "
                                 f"for all of them, or exactly {len(models)} separated by '{GPU_SEPARATOR}'")
    items = [item for n, item in runs for _ in range(n)] if given > 1 else [runs[0][1]] * len(models)
    if not any(item.strip() for _n, item in runs):
        raise InvalidLayoutError(f"layout {text.strip()[:60]!r} has no instance on any GPU; give at least one "
                                 "PROFILE@START, e.g. '7g.80gb@0' or '3g.40gb@4,4g.40gb@0'")
    out: list[Layout] = []
    cache: dict[tuple[str, str], Layout] = {}  # many GPUs share a few layouts: parse each once
    for gpu, (model, item) in enumerate(zip(models, items)):
        key = (model.name, item)
        if key not in cache:
            try:
                cache[key] = Layout.of(model, parse_layout_items(model, item))
            except InvalidLayoutError as exc:
                if len(runs) == 1:
                    raise
                raise type(exc)(f"GPU {gpu}: {exc}") from None
        out.append(cache[key])
    return out


def format_layouts(texts: Sequence[str]) -> str:
    """Per-GPU layout texts in `layout=` syntax, runs of equal layouts written "N× LAYOUT";
    one layout on every GPU is written plainly ("7g.80gb@0")."""
    if len(set(texts)) <= 1:
        return texts[0] if texts else ""
    runs: list[list] = []
    for t in texts:
        if runs and runs[-1][1] == t:
            runs[-1][0] += 1
        else:
            runs.append([1, t])
    return f"{GPU_SEPARATOR} ".join(t if n == 1 else f"{n}× {t}" for n, t in runs)
