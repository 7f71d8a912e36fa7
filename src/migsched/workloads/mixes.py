"""Seeded job-mix generators in the style of the MIGM group's workloads (paper.md §5).

The group's earlier schedulers ran 16/32/64/128-job mixes of Rodinia programs with set ratios of
compute-bound to memory-bound jobs (1:0, 1:1, 3:1, 5:3, 7:1, 1:3, 3:5, 1:7) and of big to small
jobs; MIGM adds ML and LLM jobs whose memory spans several MIG profiles. Each generator here draws
templates from the catalogue with its own `random.Random(seed)` (never the global random state), so
a mix is a pure function of (name, jobs, seed, params): the same call gives the same job file.

Counts follow ratios exactly (largest remainder): 32 jobs at compute:memory 3:1 are 24 compute-bound
and 8 memory-bound jobs; the order of the jobs is then shuffled. Job names are the template name plus
the job's position, e.g. "bfs-graph32M-003", so they are unique within a mix.

    >>> doc = make_mix("online", jobs=4, seed=7, arrival_mean_s=30)
    >>> [j["arrival_s"] for j in doc["jobs"]][0]
    0.0
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migsched.errors import InputLimitError, MigschedError, UnknownNameError
from migsched.limits import MAX_MIX_ARRIVAL_MEAN_S, MAX_MIX_JOBS, MAX_TIME_S, check_range
from migsched.workloads.catalog import Template, list_templates, to_job_entry


class MixParameterError(MigschedError, ValueError):
    """A mix parameter with a bad value (a malformed ratio, a non-positive job count, ...)."""


def parse_ratio(value: str | Sequence[int], parts: int = 2, what: str = "ratio") -> tuple[int, ...]:
    """Parse "3:1" (or (3, 1)) into non-negative integer weights with `parts` entries.

    Raises:
        MixParameterError: wrong number of parts, a part that is not a non-negative integer, or
            all parts zero.
    """
    if isinstance(value, str):
        pieces: list[Any] = [p.strip() for p in value.split(":")]
    else:
        pieces = list(value)
    example = ":".join(["1"] * parts)
    if len(pieces) != parts:
        raise MixParameterError(f"{what} {value!r} must have {parts} parts like {example!r}")
    weights = []
    for p in pieces:
        try:
            w = int(p)
        except (TypeError, ValueError):
            raise MixParameterError(f"{what} {value!r}: {p!r} is not a whole number (use e.g. {example!r})") from None
        if isinstance(p, float) and p != w or w < 0:
            raise MixParameterError(f"{what} {value!r}: parts must be whole numbers >= 0")
        weights.append(w)
    if sum(weights) == 0:
        raise MixParameterError(f"{what} {value!r}: at least one part must be > 0")
    return tuple(weights)


def split_counts(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` jobs in proportion to `weights`, exactly (largest remainder, ties to the first).

    >>> split_counts(32, (3, 1)), split_counts(16, (5, 3)), split_counts(31, (1, 1))
    ([24, 8], [10, 6], [16, 15])
    """
    s = sum(weights)
    exact = [total * w / s for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _pick_by_kind_and_size(
    rng: random.Random, pool: Sequence[Template], n: int, ratio: tuple[int, ...], size_ratio: tuple[int, ...]
) -> list[Template]:
    """`n` templates from `pool`: compute:memory by `ratio`, then small:large by `size_ratio` within
    each kind (falling back to the whole kind when a size bucket is empty); uniform inside a bucket."""
    picks: list[Template] = []
    for kind, count in zip(("compute", "memory"), split_counts(n, ratio), strict=True):
        kind_pool = [t for t in pool if t.kind == kind]
        if count and not kind_pool:
            raise MixParameterError(f"the ratio asks for {count} {kind}-bound jobs but no {kind}-bound template exists")
        for size, k in zip(("small", "large"), split_counts(count, size_ratio), strict=True):
            bucket = [t for t in kind_pool if t.size == size] or kind_pool
            picks.extend(rng.choice(bucket) for _ in range(k))
    return picks


def _pick_by_size(rng: random.Random, pool: Sequence[Template], n: int, size_ratio: tuple[int, ...]) -> list[Template]:
    """`n` templates from `pool`, small:large by `size_ratio`, uniform inside a size."""
    picks: list[Template] = []
    for size, k in zip(("small", "large"), split_counts(n, size_ratio), strict=True):
        bucket = [t for t in pool if t.size == size] or list(pool)
        picks.extend(rng.choice(bucket) for _ in range(k))
    return picks


def _ml_pool() -> tuple[list[Template], list[Template]]:
    return list_templates(job_class="ml-train"), list_templates(job_class="ml-infer")


def _ml_picks(rng: random.Random, n: int, class_ratio: tuple[int, ...]) -> list[Template]:
    train, infer = _ml_pool()
    n_train, n_infer = split_counts(n, class_ratio)
    return [rng.choice(train) for _ in range(n_train)] + [rng.choice(infer) for _ in range(n_infer)]


def _build_scientific(rng: random.Random, n: int, ratio: str, size_ratio: str) -> list[Template]:
    pool = list_templates(family="rodinia")
    return _pick_by_kind_and_size(rng, pool, n, parse_ratio(ratio), parse_ratio(size_ratio, what="size_ratio"))


def _build_ml(rng: random.Random, n: int, class_ratio: str) -> list[Template]:
    return _ml_picks(rng, n, parse_ratio(class_ratio, what="class_ratio"))


def _build_llm(rng: random.Random, n: int, size_ratio: str) -> list[Template]:
    return _pick_by_size(rng, list_templates(job_class="llm"), n, parse_ratio(size_ratio, what="size_ratio"))


def _build_mixed(rng: random.Random, n: int, class_ratio: str, ratio: str, size_ratio: str) -> list[Template]:
    n_sci, n_ml, n_llm = split_counts(n, parse_ratio(class_ratio, parts=3, what="class_ratio"))
    sizes = parse_ratio(size_ratio, what="size_ratio")
    picks = _pick_by_kind_and_size(rng, list_templates(job_class="scientific"), n_sci, parse_ratio(ratio), sizes)
    picks += _ml_picks(rng, n_ml, (3, 1))
    picks += _pick_by_size(rng, list_templates(job_class="llm"), n_llm, sizes)
    return picks


def _build_online(
    rng: random.Random, n: int, class_ratio: str, ratio: str, size_ratio: str, arrival_mean_s: float
) -> list[Template]:
    return _build_mixed(rng, n, class_ratio, ratio, size_ratio)


@dataclass(frozen=True)
class _Mix:
    """A named generator: a description, its parameters with defaults, and the builder."""

    name: str
    description: str
    params: Mapping[str, Any]
    build: Callable[..., list[Template]]


_MIXES: dict[str, _Mix] = {
    m.name: m
    for m in (
        _Mix("scientific",
             "Rodinia programs with the MIGM group's inputs; ratio = compute:memory-bound (1:0, 1:1, 3:1, 5:3, "
             "7:1, 1:3, 3:5, 1:7), size_ratio = small:large inputs",
             {"ratio": "1:1", "size_ratio": "1:1"}, _build_scientific),
        _Mix("ml",
             "MISO/NJIT training and SPCL/nos inference jobs (DNNMem-style hints close to the peak); "
             "class_ratio = train:infer",
             {"class_ratio": "3:1"}, _build_ml),
        _Mix("llm",
             "LLM generation jobs (Qwen2.5 0.5B-7B, Llama 8B/13B, fp16) whose KV cache grows; hints are the "
             "initial memory (too low); size_ratio = small (<=3B):large",
             {"size_ratio": "1:1"}, _build_llm),
        _Mix("mixed",
             "all classes in one batch; class_ratio = scientific:ml:llm, ratio = compute:memory for the "
             "scientific part, size_ratio = small:large",
             {"class_ratio": "2:1:1", "ratio": "1:1", "size_ratio": "1:1"}, _build_mixed),
        _Mix("online",
             "like mixed, arriving as a Poisson process (first job at 0 s); arrival_mean_s = mean "
             "inter-arrival time",
             {"class_ratio": "2:1:1", "ratio": "1:1", "size_ratio": "1:1", "arrival_mean_s": 60.0},
             _build_online),
    )
}


def list_mixes() -> list[tuple[str, str]]:
    """(name, description) of every mix generator."""
    return [(m.name, m.description) for m in _MIXES.values()]


def mix_parameters(name: str) -> dict[str, Any]:
    """The parameters a mix accepts, with their defaults.

    Raises:
        UnknownNameError: no mix has that name.
    """
    return dict(_get(name).params)


def _get(name: str) -> _Mix:
    try:
        return _MIXES[name]
    except (KeyError, TypeError):
        raise UnknownNameError("mix", name, list(_MIXES)) from None


def _arrivals(rng: random.Random, n: int, mean_s: float) -> list[float]:
    """Poisson arrivals: the first job at 0 s, then exponential gaps with mean `mean_s`."""
    times, t = [], 0.0
    for i in range(n):
        if i:
            t += rng.expovariate(1.0 / mean_s)
        times.append(round(t, 3))
    return times


def make_mix(name: str, jobs: int, seed: int, **params: Any) -> dict[str, Any]:
    """A complete version-1 job file (a dict) for the mix `name`.

    Args:
        name: one of `list_mixes()`.
        jobs: number of jobs (>= 1); each entry has count 1.
        seed: seed of the mix's own `random.Random`; the same arguments give the same file.
        **params: the mix's parameters (see `mix_parameters`); None means "use the default".

    Raises:
        UnknownNameError: unknown mix or parameter name (the message lists the valid ones).
        MixParameterError: a bad job count, ratio or arrival mean.
    """
    mix = _get(name)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_MIX_JOBS:
        raise MixParameterError(f"jobs must be a whole number in 1..{MAX_MIX_JOBS:,} (docs/job-file.md, Limits), "
                                f"got {jobs!r}")
    for key in params:
        if key not in mix.params:
            raise UnknownNameError(f"{name} mix parameter", key, list(mix.params) or ["(none)"])
    args = {k: (params[k] if params.get(k) is not None else default) for k, default in mix.params.items()}
    if "arrival_mean_s" in args:
        mean = args["arrival_mean_s"]
        try:
            mean = float(mean) if isinstance(mean, str) else mean
        except ValueError:
            raise MixParameterError(f"arrival_mean_s must be a number, got {mean!r}") from None
        try:
            args["arrival_mean_s"] = check_range("arrival_mean_s", mean, 0.0, MAX_MIX_ARRIVAL_MEAN_S, " s")
        except InputLimitError as exc:
            raise MixParameterError(str(exc)) from None
        if not args["arrival_mean_s"] > 0:
            raise MixParameterError(f"arrival_mean_s must be > 0, got {mean!r}")
    rng = random.Random(seed)
    picks = mix.build(rng, jobs, **args)
    rng.shuffle(picks)
    arrivals = _arrivals(rng, jobs, args["arrival_mean_s"]) if "arrival_mean_s" in args else [0.0] * jobs
    if arrivals[-1] > MAX_TIME_S:  # the file must load: arrival_s is bounded (docs/job-file.md)
        raise MixParameterError(f"arrival_mean_s {args['arrival_mean_s']:g} s x {jobs} jobs puts the last arrival at "
                                f"{arrivals[-1]:.0f} s, beyond the {MAX_TIME_S:.0f} s limit on arrival_s; use a "
                                "smaller arrival_mean_s or fewer jobs")
    width = max(3, len(str(jobs - 1)))
    entries = [
        to_job_entry(t, name=f"{t.name}-{i:0{width}d}", arrival_s=arrivals[i])
        for i, t in enumerate(picks)
    ]
    return {"version": 1, "jobs": entries}


def mix_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Totals of a job-file dict: jobs per class, serial 7g run time, largest peak, last arrival."""
    by_class: dict[str, int] = {}
    serial_s = 0.0
    peak = 0.0
    last = 0.0
    n = 0
    for e in doc.get("jobs", []):
        count = int(e.get("count", 1))
        n += count
        by_class[e["class"]] = by_class.get(e["class"], 0) + count
        model = e.get("model") or {}
        serial_s += float(model.get("runtime_s", 0.0)) * count
        peak = max(peak, float(model.get("peak_gib") or 0.0))
        last = max(last, float(e.get("arrival_s", 0.0)))
    return {"jobs": n, "by_class": by_class, "serial_runtime_s": round(serial_s, 1),
            "max_peak_gib": peak, "last_arrival_s": last}
