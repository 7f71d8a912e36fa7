"""MIG layout configs as layouts: explicit placements checked, count maps placed.

`layout_of` validates explicit (profile, start) pairs; `place_counts` turns a mig-parted count
map into explicit placements, deterministically, keeping busy and then other existing instances
where it can; `target_layout` picks between the two for one `GpuSpec`.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping

from migsched.errors import UnknownNameError
from migsched.hardware.catalog import GpuModel, Profile
from migsched.mig.spec import MP_PROFILE_RE, GpuSpec, MigConfigError
from migsched.partition.layout import Instance, Layout


def counts_of(placements: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """A profile -> count map (sorted by name) of (profile, start) pairs."""
    return tuple(sorted(Counter(n for n, _ in placements).items()))


def layout_of(model: GpuModel, items: Iterable[tuple[str, int]], where: str) -> Layout:
    """The layout of explicit (profile name, start) pairs; raises naming `where` if one breaks a rule."""
    try:
        insts = [Instance(model.profile(n), int(s)) for n, s in items]
    except UnknownNameError as exc:
        raise MigConfigError(f"{where}: {exc}") from None
    lay = Layout(model, tuple(sorted(insts, key=lambda i: i.start)))
    bad = lay.violations()
    if bad:
        raise MigConfigError(f"{where}: invalid {model.name} layout {lay}: " + "; ".join(bad))
    return lay


def _room(layout: Layout) -> tuple:
    opens = [(p, s) for p in layout.model.usable_profiles() for s in p.starts if layout.fits(p, s)]
    return max(((p.compute_slices, p.memory_slices) for p, _ in opens), default=(0, 0)), len(opens)


def resolve_counts(model: GpuModel, counts: Mapping[str, int] | Iterable[tuple[str, int]],
                   where: str = "mig-devices") -> Counter[Profile]:
    """A mig-parted count map as profiles of `model` -> count (zero counts dropped, names merged)."""
    want: Counter[Profile] = Counter()
    for name, n in (counts.items() if isinstance(counts, Mapping) else counts):
        m = MP_PROFILE_RE.match(name)
        bare = name.split(".", 1)[1] if m and m["ci"] else name  # "3c.3g.20gb" is the full-size CI
        try:
            p = model.profile(bare)
        except UnknownNameError as exc:
            raise MigConfigError(f"{where}: {exc}") from None
        want[p] += n
    return Counter({p: n for p, n in want.items() if n > 0})


def place_counts(model: GpuModel, counts: Mapping[str, int] | Iterable[tuple[str, int]],
                 current: Layout | None = None, where: str = "mig-devices") -> Layout:
    """A legal layout with exactly `counts` instances of each profile, placed explicitly.

    Among the layouts that realise the counts (all enumerated: at most a few hundred), the chosen
    one keeps, in this order: the most busy instances of `current`, the most instances of
    `current`, the largest profile still placeable and the most open placements (room for later),
    small instances at high starts (as the driver does). The choice is deterministic.

    Raises:
        MigConfigError: a name is no profile of `model`, a count exceeds its maximum, or no legal
            layout holds the counts; the message names `where`.
    """
    want = resolve_counts(model, counts, where)
    for p, n in want.items():
        if n > p.max_count:
            raise MigConfigError(f"{where}: {n} x {p.name} exceeds the {model.name} maximum of {p.max_count}")
    old = {i.key: i.busy for i in (current or ())}
    profs = sorted(want, key=lambda p: (-p.memory_slices, -p.compute_slices, p.name))
    best: tuple[tuple, Layout] | None = None

    def dfs(k: int, lay: Layout) -> None:
        nonlocal best
        if k == len(profs):
            kept = [old[i.key] for i in lay if i.key in old]
            small_high = tuple(i.start for i in sorted(
                lay, key=lambda i: (i.profile.memory_slices, i.profile.compute_slices, i.start)))
            score = (sum(kept), len(kept), _room(lay), small_high)
            if best is None or score > best[0]:
                best = (score, lay)
            return
        p = profs[k]
        for starts in itertools.combinations(lay.legal_starts(p), want[p]):
            nxt = lay
            for s in starts:
                if not nxt.fits(p, s):
                    break
                nxt = nxt.with_instance(p, s)
            else:
                dfs(k + 1, nxt)

    dfs(0, Layout.empty(model))
    if best is None:
        asked = ", ".join(f"{n} x {p.name}" for p, n in want.items())
        raise MigConfigError(f"{where}: no legal {model.name} layout holds {asked}; "
                             f"`migsched layouts {model.name}` lists the combinations that fit")
    return best[1]


def target_layout(spec: GpuSpec, model: GpuModel, current: Layout | None = None) -> Layout | None:
    """The layout `spec` asks of a GPU of `model` now in `current`; None when it wants MIG off."""
    if not spec.mig:
        return None
    if spec.placements is not None:
        return layout_of(model, spec.placements, f"{spec.where}.instances")
    return place_counts(model, spec.counts or (), current, f"{spec.where}.mig-devices")
