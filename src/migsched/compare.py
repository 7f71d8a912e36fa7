"""Run several policies on the same batch and derive the figures `migsched simulate` reports.

Every policy gets a fresh policy object and a fresh simulator with the same seed, so the runs
differ only by the policy. Two policies get special treatment:

* `static` without a user layout is simulated on every maximal layout of the GPU model (the same
  layout on every GPU), then, on several GPUs, on mixes of the best few (`best_static_layout`),
  and the best run is kept, by (jobs completed desc, makespan asc, energy asc): the strongest
  static baseline an operator could tune offline. Its own hint-based choice (`choose_layout`) is
  weaker, and comparing against a weak baseline would flatter the dynamic policies.
* `optimal` (a clairvoyant reference, `migsched.policies.optimal`) runs only on request with a
  time limit; if it is not installed or not importable, it is skipped with a note. It is built
  before any simulation runs, so a batch it refuses (over its job limit) fails at once; when its
  solver stops at the time limit, a note says the plan is feasible, not proven optimal.

Mistakes are found before the first simulation: unknown policies, an invalid `layout`, a
`layout` when `static` is not among the policies, an `optimal` that refuses the batch.
`unplaceable_jobs` lists the jobs no instance of the model can hold (the CLI warns up front).

Gains are measured against `serial` (MIG off, one job per GPU), the paper's baseline:

    throughput_gain = serial makespan / policy makespan
    energy_gain     = serial energy   / policy energy

Both are None when serial was not run, or when the policy completed a different number of jobs
than serial (a policy that rejects work would otherwise look faster and cheaper).
`lower_bound_ratio` = policy makespan / `metrics.lower_bound_s` (>= 1 for a run that completes
every job that fits somewhere).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migsched.backends.sim.costs import SimCosts
from migsched.core.events import Event, JobExited
from migsched.core.scheduler import SchedulerCore
from migsched.core.state import JobState
from migsched.errors import MigschedError, UnknownNameError, plural
from migsched.hardware.catalog import WHOLE_GPU, GpuModel
from migsched.jobs.model import Job
from migsched.metrics import lower_bound_s
from migsched.partition.layout import Layout
from migsched.partition.search import maximal_layouts
from migsched.policies.registry import create_policy, get_policy_class, policy_names
from migsched.policies.base import Policy
from migsched.partition.per_gpu import layouts_for_gpus
from migsched.run import RunResult, simulate
from migsched.static_sweep import MIX_TOP_K, mix_runs_bound, search_static_layouts

#: Called twice per simulation with a short label ("greedy", "static 3g.40gb@0,..."): with
#: finished=False when it starts and finished=True when it has ended.
ProgressFn = Callable[[str, bool], None]

#: Called during a simulation, after every batch of events in which a job ended:
#: (jobs ended so far, jobs in the batch, simulated time in seconds).
JobsProgressFn = Callable[[int, int, float], None]

OPTIMAL = "optimal"
BASELINE = "serial"


@dataclass(frozen=True, slots=True)
class PolicyFigures:
    """One policy's run plus the figures derived from the whole comparison.

    Attributes:
        result: the run itself (for `static` without a user layout: the best layout's run).
        layout: the static layout used (user-given or the sweep's winner), in `layout=` syntax
            (per GPU: "3g.40gb@4,4g.40gb@0; 7g.80gb@0"); None for others.
        layouts_tried: how many layouts the static sweep simulated (1 for a given layout, 0 else).
        layout_per_gpu: GPU i's layout for static (as `layout`, expanded); () for others.
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
    layout_per_gpu: tuple[str, ...] = ()

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


def planned_runs(model: GpuModel, names: Sequence[str], layout: str | None, gpus: int = 1) -> int:
    """How many simulations `compare` will do for `names` at most (for a progress bar's total):
    the static sweep's local search may stop before its bound."""
    sweep = 1 if layout else len(maximal_layouts(model)) + mix_runs_bound(gpus)
    return sum(sweep if n == "static" else 1 for n in names)


def check_layout(model: GpuModel, layout: str, gpus: int = 1) -> Layout:
    """Parse and validate a user layout (one for every GPU, or one per GPU) before any simulation
    starts; GPU 0's layout.

    Raises:
        MigschedError: unparsable text, a layout that breaks a MIG rule, or a number of GPU
            layouts that is neither 1 nor `gpus`.
    """
    return layouts_for_gpus([model] * gpus, layout)[0]


@dataclass(frozen=True, slots=True)
class Unplaceable:
    """A job that no instance of the cluster's model can hold.

    Attributes:
        job_id: the job.
        need_gib: the memory it needs: its declared hint, or its model's true peak when larger
            (known only to the simulator).
        source: "hint" or "peak", whichever `need_gib` came from.
        largest_gib: the largest instance of the model (the whole GPU with MIG off).
    """

    job_id: str
    need_gib: float
    source: str
    largest_gib: float


def unplaceable_jobs(jobs: Sequence[Job], model: GpuModel) -> list[Unplaceable]:
    """The jobs whose declared (hint) or true peak memory exceeds every instance of `model`.

    Such a job is simulated, fails and makes the run exit non-zero; the CLI lists them before it
    starts. (The input checker may reuse this.)
    """
    largest_mib = max([p.memory_mib for p in model.usable_profiles()] + [model.whole_gpu.memory_mib])
    out = []
    for job in jobs:
        hint = job.spec.hint_gib or 0.0
        peak = job.truth.peak_gib if job.truth is not None else 0.0
        need, source = (peak, "peak") if peak > hint else (hint, "hint")
        if need * 1024.0 > largest_mib:
            out.append(Unplaceable(job.job_id, need, source, largest_mib / 1024.0))
    return out


class _JobsEnded:
    """A run observer that counts jobs as they end and tells a `JobsProgressFn`."""

    def __init__(self, fn: JobsProgressFn, total: int) -> None:
        self.fn, self.total, self.ended = fn, total, 0

    def after_handle(self, core: SchedulerCore, events: Sequence[Event]) -> None:
        ended = 0
        for ev in events:
            if isinstance(ev, JobExited):
                job = core.view.jobs.get(ev.job_id)
                if job is not None and job.state in (JobState.DONE, JobState.FAILED):
                    ended += 1
        if ended:
            self.ended += ended
            self.fn(self.ended, self.total, core.view.now_s)

    def before_execute(self, core: SchedulerCore, actions) -> None:  # noqa: ANN001 - RunObserver
        return None


def mig_change_note(res: RunResult, cost: str = "") -> str | None:
    """The report's line on the GPUs a policy turned MIG on or off (`SetMigMode`), or None."""
    if not res.mig_mode_changes:
        return None
    n = res.mig_mode_changes
    whole = sum(1 for j in res.jobs if any(a.profile == WHOLE_GPU for a in j.runs))  # jobs, not runs
    what = f"{cost}, docs/migm.md step 10" if cost else "docs/migm.md step 10"
    return (f"{res.policy}: turned MIG on or off {plural('time', n)}, to run {plural('job', whole)} "
            f"on a whole GPU with MIG off ({what})")


def _sim(jobs: Sequence[Job], model: GpuModel, gpus: int, policy: Policy, seed: int,
         on_jobs: JobsProgressFn | None) -> RunResult:
    observer = _JobsEnded(on_jobs, len(jobs)) if on_jobs is not None else None
    return simulate(jobs, model, gpus, policy=policy, seed=seed, observer=observer)


def best_static_layout(jobs: Sequence[Job], model: GpuModel, gpus: int, seed: int = 0,
                       progress: ProgressFn | None = None,
                       on_jobs: JobsProgressFn | None = None, *,
                       top_k: int = MIX_TOP_K) -> tuple[RunResult, str, int]:
    """The best `static` layout per GPU found by simulation: its run, its layout text in
    `layout=` syntax ("7g.80gb@0" when uniform, else per GPU) and the number of simulations.

    The uniform sweep over maximal layouts, then on several GPUs a bounded search over mixes of
    the best few (`migsched.static_sweep.search_static_layouts`: at most `mix_runs_bound(gpus,
    top_k)` extra runs); best is (jobs completed desc, makespan asc, energy asc). `progress`
    sees every simulation.
    """
    def run(text: str) -> RunResult:
        if progress is not None:
            progress(f"static {text}", False)
        res = _sim(jobs, model, gpus, create_policy("static", layout=text), seed, on_jobs)
        if progress is not None:
            progress(f"static {text}", True)
        return res

    return search_static_layouts(model, gpus, run, top_k=top_k)


def _optimal_policy(jobs: Sequence[Job], optimal_s: float) -> tuple[Policy | None, str | None]:
    """The optimal reference's policy (solving happens in its setup), or None and why it is skipped.

    Raises:
        MigschedError: optimal refuses the batch (more jobs than its limit, a job without a model).
    """
    try:
        return create_policy(OPTIMAL, jobs=list(jobs), time_limit_s=optimal_s), None
    except (UnknownNameError, ImportError) as exc:
        return None, f"optimal skipped: not available ({exc})"


def _optimal_note(res: RunResult, optimal_s: float) -> str | None:
    """A note when the solver stopped at its limit: the row is then a feasible plan, no optimum."""
    summary = res.policy_summary
    if not summary or summary.get("optimal", 0.0) >= 1.0:
        return None
    bound = summary.get("solver_bound_s", 0.0)
    plan = summary.get("solver_makespan_s", 0.0)
    gap = f", {plan / bound - 1:.0%} above the solver's bound" if bound > 0 else ""
    return (f"optimal: the solver stopped at its {optimal_s:g} s limit{gap}; its row is a feasible "
            "plan, not a proven optimum (raise --optimal-s)")


def compare(jobs: Sequence[Job], model: GpuModel, gpus: int = 1, policies: Sequence[str] | None = None,
            seed: int = 0, optimal_s: float | None = None, layout: str | None = None,
            progress: ProgressFn | None = None, on_jobs: JobsProgressFn | None = None,
            policy_options: Mapping[str, Mapping[str, Any]] | None = None) -> Comparison:
    """Simulate `jobs` on `gpus` GPUs of `model` under each policy and derive the gains.

    Args:
        policies: names to run; None for every registered non-clairvoyant policy.
        seed: the simulator seed, the same for every run.
        optimal_s: when given, also run the clairvoyant `optimal` reference with this time limit
            (skipped with a note if it is unavailable). Naming `optimal` in `policies` without
            it uses 30 s.
        layout: a fixed layout for `static` (one for every GPU, or one per GPU separated by ";")
            instead of the sweep.
        progress: called as every simulation starts and ends (see `ProgressFn`).
        on_jobs: called during every simulation as jobs end (see `JobsProgressFn`).
        policy_options: constructor options per policy name (e.g. migm's `history`).

    Raises:
        UnknownNameError: an unknown policy name.
        MigschedError: an invalid `layout`, a `layout` without `static` among the policies, or a
            batch `optimal` refuses; all before any simulation runs.
    """
    names = resolve_policies(policies, optimal_s)
    if layout:
        check_layout(model, layout, gpus)
        if "static" not in names:
            raise MigschedError(f"--layout {layout!r} sets the layout of the 'static' policy, which is not "
                                f"among the policies to run ({', '.join(names)}); add --policy static or "
                                "drop --layout")
    limit_s = optimal_s if optimal_s is not None else 30.0
    notes: list[str] = []
    optimal_policy: Policy | None = None
    if OPTIMAL in names:
        optimal_policy, note = _optimal_policy(jobs, limit_s)
        if note:
            notes.append(note)
    runs: list[tuple[RunResult, str | None, int]] = []
    for name in names:
        if name == OPTIMAL:
            if optimal_policy is None:
                continue
            if progress is not None:
                progress(OPTIMAL, False)
            try:
                res: RunResult | None = _sim(jobs, model, gpus, optimal_policy, seed, on_jobs)
            except MigschedError as exc:  # e.g. a GPU not in MIG mode
                res = None
                notes.append(f"optimal skipped: {exc}")
            if progress is not None:
                progress(OPTIMAL, True)
            if res is not None:
                runs.append((res, None, 0))
                note = _optimal_note(res, limit_s)
                if note:
                    notes.append(note)
        elif name == "static" and not layout:
            res, text, tried = best_static_layout(jobs, model, gpus, seed, progress, on_jobs)
            runs.append((res, text, tried))
            uniform = len(maximal_layouts(model))
            mixes = f" and {tried - uniform} per-GPU mixes" if tried > uniform else ""
            notes.append(f"static: best of {uniform} maximal layouts{mixes} is {text}")
        else:
            options = {**({"layout": layout} if name == "static" else {}), **(policy_options or {}).get(name, {})}
            if progress is not None:
                progress(name, False)
            res = _sim(jobs, model, gpus, create_policy(name, **options), seed, on_jobs)
            if progress is not None:
                progress(name, True)
            runs.append((res, layout if name == "static" else None, 1 if name == "static" else 0))
    for res, _lay, _tried in runs:
        note = mig_change_note(res, f"a {SimCosts().mig_mode_s:g} s reset each")
        if note:
            notes.append(note)
    bound = lower_bound_s(jobs, [model] * gpus)
    base = next((r for r, _, _ in runs if r.policy == BASELINE), None)
    rows = tuple(_figures(res, lay, tried, base, bound, model, gpus) for res, lay, tried in runs)
    return Comparison(gpu=model.name, gpus=gpus, jobs=len(jobs), lower_bound_s=bound, rows=rows,
                      notes=tuple(notes))


def _figures(res: RunResult, layout: str | None, tried: int, base: RunResult | None,
             bound: float, model: GpuModel, gpus: int) -> PolicyFigures:
    comparable = base is not None and base.jobs_completed == res.jobs_completed
    thr = base.makespan_s / res.makespan_s if comparable and res.makespan_s > 0 else None  # type: ignore[union-attr]
    energy = base.energy_j / res.energy_j if comparable and res.energy_j > 0 else None  # type: ignore[union-attr]
    ratio = res.makespan_s / bound if bound > 0 else None
    per_gpu = tuple(str(lay) for lay in layouts_for_gpus([model] * gpus, layout)) if layout else ()
    return PolicyFigures(res, layout, tried, thr, energy, ratio, per_gpu)
