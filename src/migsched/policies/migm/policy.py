"""`migm`: tightest-fit MIG scheduling with fusion/fission, OOM restart and early restart.

Re-implementation of MIGM (paper.md §3; arXiv 2508.18556), documented in docs/migm.md.

* **Tightest fit.** Each job's tier is the smallest profile whose memory holds its estimated
  peak (the `MemoryEstimator`, raised by what restarts and jobs of the same name taught) and is
  larger than any instance it ran out of memory on or was early-restarted from.
* **Where.** Scheme "head" (paper.md §3.5 scheme 2): reuse an idle instance of the tier (or of a
  same-memory variant with more compute) > create one in free room > fusion/fission of idle
  instances (`reclaim_options`, cheapest first) > wait. Scheme "repartition-min" (scheme 1):
  reuse any idle instance that holds the job > create in free room > reshape one GPU's idle part
  into the maximal layout whose instances hold the most queued jobs.
* **Which job.** `backfill=False`: strict FIFO head. `backfill=True`: bucket heads in `order`
  ("largest": largest tier first, FIFO within a tier; "fifo"), with the first blocked job holding
  a reservation of the slots it waits for so that it cannot starve.
* **Compute upgrades.** Same-memory variant with more compute (2g.20gb for a 1g.20gb job, 4g for
  a 3g) when the GPU keeps at least one compute slice per free memory slot but one; and, once no
  more jobs arrive and the queued jobs' tiers need less than the idle capacity (the batch's tail),
  a larger profile using the surplus.
* **Restarts.** The core requeues an OOM'd job; its tier then lies above the failed instance.
  `on_memory_sample` kills a job whose confident forecast exceeds `safety` x its memory and
  remembers the forecast, so the restart lands on a profile that holds it (early restart).
"""

from __future__ import annotations

from pathlib import Path

from migsched.core.events import Action, Kill, Launch, Reject, SetMigMode
from migsched.core.sampling import SamplePlan
from migsched.core.state import ClusterView, GpuView, JobState, JobView, usable_gpus
from migsched.estimators.base import Forecaster, MemoryEstimator
from migsched.estimators.history import HistoryStore
from migsched.hardware.catalog import GpuModel, Profile
from migsched.errors import SchedulingError
from migsched.policies.base import Changes, Decision, Policy
from migsched.policies.common import gib, profiles_by_size
from migsched.policies.migm.backfill import BackfillPass, known_ends
from migsched.policies.migm.choice import PlacementChoice
from migsched.policies.migm.early import EarlyRestart
from migsched.policies.migm.memory import ForecastScore, default_estimator, default_forecaster
from migsched.policies.migm.placement import Placement, Reservation, choose_reservation
from migsched.policies.migm.ranks import ExactSum, LptRanks
from migsched.policies.migm.ordering import QueueIndex
from migsched.policies.migm.learning import Learning
from migsched.policies.migm.restarts import RunTimes
from migsched.policies.migm.siblings import Siblings
from migsched.policies.migm.sizing import MemorySizing
from migsched.policies.migm.tail import TailRestart
from migsched.policies.migm.whole import WholeGpu
from migsched.policies.migm.wait import WaitForMore
from migsched.policies.registry import register

SCHEMES = ("head", "repartition-min")
#: A history file is rewritten at most this often while a run goes on (and at its end, `close`).
HISTORY_SAVE_S = 5.0
ORDERS = ("largest", "fifo")
RANKS = ("fifo", "class", "lpt")
#: With rank="class", longer-running classes start first within a tier (LPT by class).
CLASS_RANK = {"ml-train": 0, "ml-infer": 1, "llm": 2, "scientific": 3}


@register
class MigmPolicy(Learning, EarlyRestart, PlacementChoice, TailRestart, LptRanks, WholeGpu, WaitForMore, Policy):
    """MIGM: tightest MIG instance per job, reshaped on demand, restarted before it runs out.

    Args:
        scheme: "head" (reconfigure for the job being placed) or "repartition-min" (reuse idle
            instances, reshape a GPU only when no queued job fits an idle instance).
        backfill: let jobs start past a blocked one (default True).
        order: with backfill, which bucket goes first: "largest" tier or "fifo".
        early_restart: kill a job as soon as its forecast peak will not fit (default True).
        safety: fraction of an instance's memory a forecast peak may use (paper.md §10.3).
        compute_upgrade: allow same-memory variants with more compute and tail upgrades.
        rank: order within a tier: "lpt" (family-learned longest first), "fifo" or "class".
        tail_restart, tail_margin, tail_min_gain_s: restart a long tail job bigger (docs/migm.md 7).
        tail_overshoot: a job known only by its class may also qualify by how much less it
            would overrun the other jobs' projected end (the batch's makespan), not only its mean.
        mid_upgrade: same-memory compute variants also while other jobs are queued.
        reserve_after_s: reserve slots only for a job that has waited this long.
        alpha_prior: per-class speed exponent priors (overrides restarts.PRIOR_ALPHA).
        blocked_restart, blocked_wait_s, blocked_online: restart a long running job so that a
            reserved job waiting >= blocked_wait_s gets its slots (docs/migm.md step 9).
        spare_share, spare_min_gain: while jobs still arrive, a job may take this share of the
            compute the queue cannot use, if it runs at least spare_min_gain faster there.
        easy_backfill: a job may start on slots reserved for a blocked one when it is projected
            to end before they drain (`backfill.py`).
        history: a history file (or `HistoryStore`) of earlier batches: peaks by job name
            and durations by family, read before the first run of a family completes and
            extended with this batch's runs (written when the run ends, `close`). A path is
            opened with saves at most every `HISTORY_SAVE_S`; a `HistoryStore` is used as
            given (its own `save_interval_s`: 0 rewrites the file after every record). None:
            this batch only. Ignored for memory when `estimator` is given.
        mig_off: run a job that would get all of a GPU on the whole GPU with MIG off, while
            every queued job can have a GPU of its own, where the backend can change MIG modes
            (`whole.py`; on A100 108 SMs against 7g's 98, on Hopper nothing to gain).
        siblings: rank a family with no completed run by its learned *siblings*, the families
            whose names differ from it in one number, scaled by that number (`siblings.py`).
        wait_for_more: leave the only queued job waiting when a running neighbour's end frees a
            larger instance soon enough that it ends sooner there (`wait.py`).
        share_cost, share_min_gain: while jobs still arrive, a job may take a larger instance than
            the queue leaves spare when that saves it at least share_min_gain of its run time and
            more than share_cost x the slices it takes x its run there x queued / cluster slices
            (`choice.py`, `_contested_upgrade`; 0 turns it off).
        estimator, forecaster: override the memory estimator / forecaster.
    """

    name = "migm"
    wants_memory_samples = True
    toggles_mig = True
    description = "MIGM: tightest fit, fusion/fission, OOM and early restart, two schemes"

    def __init__(self, scheme: str = "head", backfill: bool = True, order: str = "largest",
                 early_restart: bool = True, safety: float = 0.95, compute_upgrade: bool = True,
                 rank: str = "lpt", tail_restart: bool = True, tail_margin: float = 0.25, tail_min_gain_s: float = 30.0,
                 tail_overshoot: bool = True,
                 mid_upgrade: bool = True, reserve_after_s: float = 0.0,
                 alpha_prior: dict[str, float] | None = None, blocked_restart: bool = True,
                 blocked_wait_s: float = 300.0, blocked_online: bool = False,
                 spare_share: float = 1.0, spare_min_gain: float = 0.1, easy_backfill: bool = True,
                 history: str | Path | HistoryStore | None = None, mig_off: bool = True, siblings: bool = True,
                 wait_for_more: bool = True, share_cost: float = 0.5, share_min_gain: float = 0.3,
                 estimator: MemoryEstimator | None = None, forecaster: Forecaster | None = None) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if not 0 < safety <= 1:
            raise ValueError(f"safety must be in (0, 1], got {safety}")
        self.scheme, self.backfill, self.order = scheme, backfill, order
        self.early_restart, self.safety, self.compute_upgrade = early_restart, safety, compute_upgrade
        if rank not in RANKS:
            raise ValueError(f"rank must be one of {RANKS}, got {rank!r}")
        if not 0 <= tail_margin < 1:
            raise ValueError(f"tail_margin must be in [0, 1), got {tail_margin}")
        self.tail_restart, self.tail_margin, self.tail_min_gain_s = tail_restart, tail_margin, tail_min_gain_s
        self.tail_overshoot = tail_overshoot
        self.mid_upgrade, self.reserve_after_s = mid_upgrade, reserve_after_s
        self.blocked_restart, self.blocked_wait_s, self.blocked_online = blocked_restart, blocked_wait_s, blocked_online
        if not 0 <= spare_share <= 1:
            raise ValueError(f"spare_share must be in [0, 1], got {spare_share}")
        if not 0 <= spare_min_gain < 1:
            raise ValueError(f"spare_min_gain must be in [0, 1), got {spare_min_gain}")
        self.spare_share, self.spare_min_gain = spare_share, spare_min_gain
        self.easy_backfill = easy_backfill
        self.mig_off = mig_off
        self.siblings = Siblings() if siblings else None  # run times of new families (siblings.py)
        self.wait_for_more = wait_for_more
        if not share_cost >= 0:  # NaN too
            raise ValueError(f"share_cost must be >= 0, got {share_cost}")
        if not 0 <= share_min_gain < 1:
            raise ValueError(f"share_min_gain must be in [0, 1), got {share_min_gain}")
        self.share_cost = share_cost
        self.share_min_gain = share_min_gain
        self._waits: dict[str, tuple[float, Profile]] = {}  # job -> (deadline s, declined profile) (wait.py)
        self._no_toggle: set[int] = set()         # GPUs whose MIG-mode change failed (whole.py)
        self.estimator, self.forecaster = estimator, forecaster
        self.history = history if isinstance(history, HistoryStore) or history is None else \
            HistoryStore(history, save_interval_s=HISTORY_SAVE_S)
        self.times = RunTimes(alpha_prior, self.history)
        self._target: dict[str, Profile] = {}     # job -> profile its tail restart is for
        self._tail_key: tuple | None = None       # state at the last tail-restart search
        self._sticky: dict[str, float] = {}       # blocked-restarted job -> until when only its target will do (`_unstick`)
        self.model: GpuModel | None = None
        self.rank = rank
        self._known_runs = 0  # durations known (runs completed here or recalled): `_unknown_rank`'s version
        self._lpt_mean: tuple[int, float] = (-1, 0.0)
        self.index = QueueIndex(self._tier_of, self._left,
                                (lambda j: CLASS_RANK.get(j.spec.job_class.value, 9)) if rank == "class"
                                else self._lpt_rank if rank == "lpt" else None,
                                self._unknown_rank)
        self._fam_val: dict[str, float] = {}      # family -> its 1-slice compute time (or 0.0), as times learned
        self._fam_sum = ExactSum()                # the sum of _fam_val's values (ranks._fam_learned)
        self._floor: dict[str, float] = {}        # family -> 1-slice seconds a running member computed (_floors)
        self._watch: dict[str, dict[str, JobView]] = {}  # family -> its running members (_floors)
        self._floor_at: float | None = None
        self.sizing: MemorySizing | None = None  # set once the GPU model is known (_init)
        self._resv: dict[str, tuple[str, Reservation]] = {}  # job -> (its tier, reservation)
        self._checked: dict[str, tuple[int, float, float]] = {}  # job -> (attempt, memory, peak) at last forecast
        self._held_plans: dict[float, SamplePlan] = {}  # instance MiB -> its sample plan (EarlyRestart._held_plan)
        self.score = ForecastScore()
        self.counts: dict[str, int] = {}
        # Placement memo: layouts change only through this policy's actions or a job leaving the
        # running set, so an unchanged key (action epoch, queue/running sizes, heads, reservations,
        # targets, counts) means the placement loop would find nothing again.
        self._epoch = 0
        self._miss: tuple | None = None
        self._quiet: tuple | None = None  # state in which the last pass placed nothing (fast path)
        self._changes: list[Changes] = []  # arrivals/ends/requeues not yet in the queue index
        self._bf_memo: dict[tuple, tuple[int, float, float | None]] = {}  # class projections (backfill.py)
        self._bf_pass: BackfillPass | None = None
        self._bf_drains: dict[tuple, tuple[float, object, float | None]] = {}  # drain times (backfill.py)
        self._burst: tuple | None = None                  # (time, reservations) of the current burst
        self._no_place: set[tuple[str, str]] = set()      # (job, tier) that found no place in it

    # ---- memory -----------------------------------------------------------------------------
    def _init(self, view: ClusterView) -> GpuModel:
        models = _models(view)
        if len(models) != 1:
            raise SchedulingError(
                f"policy 'migm' plans for one GPU model per cluster; this one has "
                f"{', '.join(m.name for m in models) or 'no usable GPU'} (use greedy or static for mixed clusters)")
        model = models[0]
        self.model = model
        self.times.gpu = model.name
        self._profiles = profiles_by_size(model)
        self._variants_memo = {}
        self._largest = max(p.memory_mib for p in self._profiles)
        if self.estimator is None:
            self.estimator = default_estimator(self._largest, self.history)
        self.sizing = MemorySizing(model, self.estimator)
        if self.forecaster is None:
            self.forecaster = default_forecaster()
        self._forecast_from = self._min_samples()
        return model

    def refuse_gpu(self, view: ClusterView, gpu: GpuView) -> str | None:
        """A GPU of another model than the cluster's is refused (fenced: migm's sizes, learned
        speeds and layouts are one model's), so a Ray node of another model that joins a run does
        not stop it. Models are told apart by value, not by geometry: an A100-80GB and an
        H100-80GB lay out alike but their profiles differ (memory, SMs)."""
        have = [self.model] if self.model is not None else _models(view)
        if not have or gpu.model in have:
            return None
        return (f"policy 'migm' plans for one GPU model per cluster and this one has {have[0].name} "
                f"(use greedy or static for mixed clusters)")

    def need_mib(self, job: JobView) -> float:
        """The peak memory the job is planned for (`sizing.MemorySizing.need_mib`)."""
        assert self.sizing is not None
        return self.sizing.need_mib(job)

    def _tier_of(self, job: JobView) -> str | None:
        assert self.sizing is not None
        return self.sizing.tier_of(job)

    # ---- scheduling ---------------------------------------------------------------------------
    def schedule(self, view: ClusterView) -> list[Action]:
        acts = self._schedule(view)
        if acts:
            self._epoch += 1
        return acts

    def _schedule(self, view: ClusterView) -> list[Action]:
        model = self.model or self._init(view)
        if self._sticky:
            self._unstick(view)
        # Fast path (most calls follow a memory sample): nothing this pass reads has changed since
        # a pass that placed nothing; heads, tiers and reservations are the same, so only the
        # time-dependent blocked restart needs a look.
        quiet = self._quiet_key(view)
        if quiet == self._quiet and self.reserve_after_s <= 0:
            return self._blocked(view)
        self._quiet = None
        self._sync()
        self._floors(view)
        dead = self.index.head("")
        if dead is not None:
            need = max(self.need_mib(dead), dead.needs_more_than_mib)
            self.index.launched(dead, view, delta=(-1, 0))
            return [Reject(dead.job_id, f"needs more than {gib(need)}; the largest instance has "
                                        f"{gib(self._largest)}")]
        heads = [(t, j) for t, j in self.index.heads() if t]
        if not heads:
            return self._tail_restart(view)
        on = self._whole_back_on(view)  # jobs must share GPUs again: idle MIG-off GPUs back on
        if on:
            return on
        if not self.backfill:
            heads = [min(heads, key=lambda tj: tj[1].seq)]
        elif self.order == "largest":
            heads.sort(key=lambda tj: (-model.profile(tj[0]).memory_mib, tj[1].seq))
        else:
            heads.sort(key=lambda tj: tj[1].seq)
        # A reservation lasts while its job heads its bucket in the same tier; with nothing
        # running, nothing can drain for it, so none applies.
        current = {j.job_id: t for t, j in heads}
        self._resv = {j: r for j, r in self._resv.items() if current.get(j) == r[0]}
        key = (self._epoch, len(view.jobs), len(view.queue), len(view.running), view.more_arrivals,
               tuple((t, j.job_id, view.now_s - j.arrived_s >= self.reserve_after_s) for t, j in heads),
               tuple(self._resv.items()), tuple(self._target.items()), frozenset(self._sticky),
               tuple(self.index.counts.items()), self._waits_due(view))
        if key != self._miss:
            acts = self._place_heads(view, model, heads)
            if acts:
                return acts
            # Nothing placed: the same state finds nothing again. A reservation made in this pass
            # is part of that state; a rerun with it finds nothing either (heads before the
            # reserving one failed with fewer slots barred, those after it already saw it, and
            # no second reservation is made while one stands).
            key = key[:6] + (tuple(self._resv.items()),) + key[7:]
            self._miss = key
        if key == self._miss:
            self._quiet = self._quiet_key(view)
        return self._blocked(view)

    def _unstick(self, view: ClusterView) -> None:
        """A blocked-restarted job that has waited for its target as long as the restart was to
        save takes any instance from now on (docs/migm.md step 9). Done before the memo keys
        are read: both hold the sticky jobs, so the pass that follows searches afresh."""
        for jid in [j for j, until in self._sticky.items() if until <= view.now_s]:
            self._forget_restart(jid)

    def _forget_restart(self, job_id: str) -> None:
        """The tail or blocked restart of `job_id` is over (placed, given up, its kill failed or
        the job ended first): its target and wait go, and the next restart may be looked for."""
        self._target.pop(job_id, None)
        self._sticky.pop(job_id, None)

    def _quiet_key(self, view: ClusterView) -> tuple:
        """What a pass that placed nothing depends on, besides the clock's rules (`_blocked`)."""
        assert self.sizing is not None
        return (self._epoch, len(view.jobs), len(view.queue), len(view.running), view.more_arrivals,
                self.sizing.version, len(self._resv), len(self._target), self._waits_due(view))

    def _place_heads(self, view: ClusterView, model: GpuModel, heads: list[tuple[str, JobView]]) -> list[Action]:
        """Launch the first head that can be placed, or reserve slots for the first blocked one."""
        self._spare_memo = None
        self._bf_pass = None  # the cluster does not change within a pass (BackfillPass)
        # Within one burst (the calls that follow this policy's own actions at one instant, with
        # the same reservations) resources only shrink: a launch or create takes room and frees
        # none, so a head that found no place finds none again (`decide` resets it on events).
        burst = (view.now_s, tuple(self._resv.items()))
        if burst != self._burst:
            self._burst, self._no_place = burst, set()
        waited = False
        for tier, job in heads:
            if (job.job_id, tier) in self._no_place:
                pl = None
            else:
                pl = self._try_place(view, model, job, tier)
                if pl is None:
                    self._no_place.add((job.job_id, tier))
            if pl is not None and self._better_soon(view, job, pl):
                self._bump("waits")  # a larger instance frees soon enough (wait.py): no reservation
                waited = True
                continue
            if pl is not None:
                whole = self._whole_instead(view, job, pl)
                self._resv.pop(job.job_id, None)
                self._bump("whole_gpu" if whole else pl.kind)
                if pl.profile.name != tier:
                    self._bump("compute_upgrades")
                self._forget_restart(job.job_id)
                self._waits.pop(job.job_id, None)  # a restarted attempt may wait afresh
                self.index.launched(job, view, delta=(-1, 1))
                self._watch_family(job)
                return whole or pl.actions(job.job_id)
            if self.backfill and not self._resv and view.now_s - job.arrived_s >= self.reserve_after_s:
                r = choose_reservation(view, model.profile(tier), (), ends=lambda gpu: known_ends(view, gpu, self.times))
                if r is not None:
                    self._resv[job.job_id] = (tier, r)
                    self._bump("reservations")
        # No head fits the MIG GPUs (one that chose to wait is not stuck):
        on = self._whole_back_on(view, stuck=heads[0][1]) if heads and not waited else []
        if on:
            self._burst = None  # the room it makes is new to this burst
            if isinstance(on[0], Launch):
                self.index.launched(view.jobs[on[0].job_id], view, delta=(-1, 1))
                self._bump("whole_gpu")
        return on

    def _try_place(self, view: ClusterView, model: GpuModel, job: JobView, tier: str) -> Placement | None:
        """`_place` outside the reserved slots, then, with `easy_backfill` and no room outside
        them, in those the backfill rule opens (`backfill.py`)."""
        reserved = [r[1] for j, r in self._resv.items() if j != job.job_id] if view.running else []
        pl = self._place(view, job, model.profile(tier), reserved)
        if pl is None and reserved and self.easy_backfill:
            if self._bf_pass is None:
                self._bf_pass = BackfillPass(view, self.times, self._bf_memo, self._bf_drains)
            open_to = [r for r in reserved if not self._bf_pass.allows(job, model.profile(tier), r)]
            if len(open_to) < len(reserved):
                pl = self._place(view, job, model.profile(tier), open_to)
        return pl

    # ---- the contract -------------------------------------------------------------------------
    def wake_at_s(self, view: ClusterView) -> float | None:
        """The tail and blocked restarts' re-checks (`tail.py`), the end of a wait (`wait.py`)
        and of a blocked-restarted job's wait for its target (`_unstick`)."""
        times = [t for t in (TailRestart.wake_at_s(self, view), self.wait_wake_s(view)) if t is not None]
        times += [t for t in self._sticky.values() if t > view.now_s]  # a blocked restart's wait ends
        return min(times) if times else None

    def decide(self, view: ClusterView, changes: Changes) -> Decision:
        """Keep what changed for the queue index (absorbed where the placement pass runs)."""
        if changes.arrived or changes.ended or changes.requeued or changes.restored:
            self._changes.append(changes)
        if changes.first:  # events may have freed room: a new burst
            self._burst = None
        if changes.gpus_added:  # new room: a pass that placed nothing may place now
            self._epoch += 1
        for f in changes.failed:
            if isinstance(f.action, Kill):  # the restart it was for will not happen
                self._forget_restart(f.action.job_id)
            elif isinstance(f.action, SetMigMode):  # this GPU's mode stays as it is
                self._no_toggle.add(f.action.gpu)
        return super().decide(view, changes)

    def _sync(self) -> None:
        pending, self._changes = self._changes, []
        for ch in pending:
            if self.siblings is not None:
                for job in (*ch.arrived, *ch.restored):  # restored: a resumed run's running jobs too
                    # a group that proves a counter withdraws its estimates
                    self._rerank(self.siblings.seen(job.family, job.spec.job_class.value))
            if self.history is not None:
                for job in ch.arrived:  # ranked by what earlier batches taught, from the start
                    if self.times.recall(job.family):
                        self._known(job.family)
            if ch.restored:  # a resumed run's running jobs: their end teaches like a launch's
                ended = {j.job_id for j in ch.ended}
                for job in ch.restored:
                    if job.state is JobState.RUNNING or job.job_id in ended:
                        self.index.running[job.job_id] = job
            self.index.absorb(ch.arrived, ch.ended, ch.requeued)

    def close(self) -> None:
        """Write the history file, if any (what this batch taught the next one)."""
        if self.history is not None:
            self.history.flush()

    # ---- report -------------------------------------------------------------------------------
    def _bump(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def summary(self) -> dict[str, float]:
        """Placements by kind (reuse, create, fusion, fission, repartition), restarts, forecast error."""
        out = {k: float(v) for k, v in sorted(self.counts.items())}
        out.setdefault("fusion", 0.0)
        out.setdefault("fission", 0.0)
        out.setdefault("early_restarts_decided", 0.0)
        out["forecasts_scored"] = float(self.score.count)
        out["forecast_mape_pct"] = self.score.mape
        return out


def _models(view: ClusterView) -> list[GpuModel]:
    """The distinct models of the `usable_gpus` (with every GPU lost before the first decision,
    all of them: the run waits for a node to join), in GPU order, told apart by value."""
    out: list[GpuModel] = []
    for g in usable_gpus(view.gpus):
        if g.model not in out:
            out.append(g.model)
    return out
