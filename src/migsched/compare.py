"""Run several policies on the same batch and derive the figures `migsched simulate` reports.

Every policy gets a fresh policy object and a fresh simulator with the same seed, so the runs
differ only by the policy. Two policies get special treatment:

* `static` without a user layout is simulated on every maximal layout of the GPU model and the
  best run is kept, by (jobs completed desc, makespan asc): the strongest static baseline an
  operator could tune offline. Its own hint-based choice (`choose_layout`) is weaker, and
  comparing against a weak baseline would flatter the dynamic policies.
* `optimal` (a clairvoyant reference, `migsched.policies.optimal`) runs only on request with a
  time limit; if it is not installed or not importable, it is skipped with a note.

Gains are measured against `serial` (MIG off, one job per GPU), the paper's baseline:

    throughput_gain = serial makespan / policy makespan
    energy_gain     = serial energy   / policy energy

Both are None when serial was not run, or when the policy completed a different number of jobs
than serial (a policy that rejects work would otherwise look faster and cheaper).
`lower_bound_ratio` = policy makespan / `metrics.lower_bound_s` (>= 1 for a run that completes
every job that fits somewhere).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from migsched.errors import MigschedError, UnknownNameError
from migsched.hardware.catalog import GpuModel
from migsched.jobs.model import Job
from migsched.metrics import lower_bound_s
from migsched.partition.layout import Layout
from migsched.partition.parse import parse_layout_items
from migsched.partition.search import maximal_layouts
from migsched.policies.registry import create_policy, get_policy_class, policy_names
from migsched.run import RunResult, simulate

#: Called twice per simulation with a short label ("greedy", "static 3g.40gb@0,..."): with
#: finished=False when it starts and finished=True when it has ended.
ProgressFn = Callable[[str, bool], None]

OPTIMAL = "optimal"
BASELINE = "serial"


@dataclass(frozen=True, slots=True)
class PolicyFigures:
    """One policy's run plus the figures derived from the whole comparison.

    Attributes:
        result: the run itself (for `static` without a user layout: the best layout's run).
        layout: the static layout used (user-given or the sweep's winner); None for others.
        layouts_tried: how many layouts the static sweep simulated (1 for a given layout, 0 else).
        throughput_gain: serial makespan / this makespan; None if not comparable (module doc).
        energy_gain: serial energy / this energy; None if not comparable.
        lower_bound_ratio: makespan / lower bound; None when the bound is 0.
    """

    result: RunResult
    layout: str | None
    layouts_tried: int
    throughput_gain: float | None
    energy_gain: float | None
    lower_bound_ratio: float | None

    @property
    def policy(self) -> str:
        """The policy's registry name."""
        return self.result.policy


@dataclass(frozen=True, slots=True)
class Comparison:
    """Every policy's run of one batch on one cluster, with the makespan lower bound.

    Attributes:
        gpu: the GPU model name.
        gpus: number of GPUs.
        jobs: number of jobs in the batch.
        lower_bound_s: `metrics.lower_bound_s` of the batch on the cluster.
        rows: one entry per policy run, in run order (serial first when it runs).
        notes: things the reader should know (e.g. "optimal skipped: ...").
    """

    gpu: str
    gpus: int
    jobs: int
    lower_bound_s: float
    rows: tuple[PolicyFigures, ...]
    notes: tuple[str, ...] = ()

    @property
    def results(self) -> tuple[RunResult, ...]:
        """The runs, in the order of `rows`."""
        return tuple(r.result for r in self.rows)

    def row(self, policy: str) -> PolicyFigures:
        """The row of `policy` (KeyError if it did not run)."""
        for r in self.rows:
            if r.policy == policy:
                return r
        raise KeyError(policy)


def resolve_policies(policies: Sequence[str] | None, optimal_s: float | None = None) -> list[str]:
    """The policy names to run, validated and deduplicated, in the order given.

    None means every registered non-clairvoyant policy. `optimal` is never part of the default
    set (it needs the jobs and a time limit); it is appended when `optimal_s` is given.

    Raises:
        UnknownNameError: a name that is not registered (except `optimal`, which may be missing
            and is then skipped by `compare` with a note).
    """
    names = [n for n in policy_names() if n != OPTIMAL] if policies is None else list(policies)
    out: list[str] = []
    for name in names:
        key = name.strip().lower()
        if key != OPTIMAL:
            key = get_policy_class(key).name
        if key not in out:
            out.append(key)
    if optimal_s is not None and OPTIMAL not in out:
        out.append(OPTIMAL)
    return out


def planned_runs(model: GpuModel, names: Sequence[str], layout: str | None) -> int:
    """How many simulations `compare` will do for `names` (for a progress bar's total)."""
    sweep = 1 if layout else len(maximal_layouts(model))
    return sum(sweep if n == "static" else 1 for n in names)


def check_layout(model: GpuModel, layout: str) -> Layout:
    """Parse and validate a user layout before any simulation starts.

    Raises:
        MigschedError: unparsable text or a layout that breaks a MIG rule.
    """
    return Layout.of(model, parse_layout_items(model, layout))


def best_static_layout(jobs: Sequence[Job], model: GpuModel, gpus: int, seed: int = 0,
                       progress: ProgressFn | None = None) -> tuple[RunResult, str, int]:
    """Simulate `static` on every maximal layout; the best run, its layout and the count tried.

    Best is (jobs completed desc, makespan asc); ties keep the earlier layout in
    `maximal_layouts` order (larger instances first).
    """
    best: tuple[RunResult, str] | None = None
    layouts = maximal_layouts(model)
    for lay in layouts:
        text = str(lay)
        if progress is not None:
            progress(f"static {text}", False)
        res = simulate(jobs, model, gpus, policy=create_policy("static", layout=text), seed=seed)
        if progress is not None:
            progress(f"static {text}", True)
        if best is None or (-res.jobs_completed, res.makespan_s) < (-best[0].jobs_completed, best[0].makespan_s):
            best = (res, text)
    assert best is not None, "every GPU model has at least one maximal layout"
    return best[0], best[1], len(layouts)


def _run_optimal(jobs: Sequence[Job], model: GpuModel, gpus: int, seed: int,
                 optimal_s: float) -> tuple[RunResult | None, str | None]:
    """The optimal reference's run, or None and the reason it was skipped."""
    try:
        policy = create_policy(OPTIMAL, jobs=list(jobs), time_limit_s=optimal_s)
    except (UnknownNameError, ImportError) as exc:
        return None, f"optimal skipped: not available ({exc})"
    try:
        return simulate(jobs, model, gpus, policy=policy, seed=seed), None
    except MigschedError as exc:
        return None, f"optimal skipped: {exc}"


def compare(jobs: Sequence[Job], model: GpuModel, gpus: int = 1, policies: Sequence[str] | None = None,
            seed: int = 0, optimal_s: float | None = None, layout: str | None = None,
            progress: ProgressFn | None = None) -> Comparison:
    """Simulate `jobs` on `gpus` GPUs of `model` under each policy and derive the gains.

    Args:
        policies: names to run; None for every registered non-clairvoyant policy.
        seed: the simulator seed, the same for every run.
        optimal_s: when given, also run the clairvoyant `optimal` reference with this time limit
            (skipped with a note if it is unavailable). Naming `optimal` in `policies` without
            it uses 30 s.
        layout: a fixed layout for `static` instead of the sweep over maximal layouts.
        progress: called as every simulation starts and ends (see `ProgressFn`).

    Raises:
        UnknownNameError: an unknown policy name.
        MigschedError: an invalid `layout`.
    """
    names = resolve_policies(policies, optimal_s)
    if layout:
        check_layout(model, layout)
    notes: list[str] = []
    runs: list[tuple[RunResult, str | None, int]] = []
    for name in names:
        if name == OPTIMAL:
            if progress is not None:
                progress(OPTIMAL, False)
            res, note = _run_optimal(jobs, model, gpus, seed, optimal_s if optimal_s is not None else 30.0)
            if progress is not None:
                progress(OPTIMAL, True)
            if res is None:
                notes.append(note or "optimal skipped")
            else:
                runs.append((res, None, 0))
        elif name == "static" and not layout:
            res, text, tried = best_static_layout(jobs, model, gpus, seed, progress)
            runs.append((res, text, tried))
            notes.append(f"static: best of {tried} maximal layouts is {text}")
        else:
            options = {"layout": layout} if name == "static" else {}
            if progress is not None:
                progress(name, False)
            res = simulate(jobs, model, gpus, policy=create_policy(name, **options), seed=seed)
            if progress is not None:
                progress(name, True)
            runs.append((res, layout if name == "static" else None, 1 if name == "static" else 0))
    bound = lower_bound_s(jobs, [model] * gpus)
    base = next((r for r, _, _ in runs if r.policy == BASELINE), None)
    rows = tuple(_figures(res, lay, tried, base, bound) for res, lay, tried in runs)
    return Comparison(gpu=model.name, gpus=gpus, jobs=len(jobs), lower_bound_s=bound, rows=rows,
                      notes=tuple(notes))


def _figures(res: RunResult, layout: str | None, tried: int, base: RunResult | None,
             bound: float) -> PolicyFigures:
    comparable = base is not None and base.jobs_completed == res.jobs_completed
    thr = base.makespan_s / res.makespan_s if comparable and res.makespan_s > 0 else None  # type: ignore[union-attr]
    energy = base.energy_j / res.energy_j if comparable and res.energy_j > 0 else None  # type: ignore[union-attr]
    ratio = res.makespan_s / bound if bound > 0 else None
    return PolicyFigures(res, layout, tried, thr, energy, ratio)
