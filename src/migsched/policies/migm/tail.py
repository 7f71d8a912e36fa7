"""`migm`'s tail and blocked restarts: when to look for a restart, and carrying one out.

`TailRestart` is the part of `MigmPolicy` that decides *when* the restart rule of
`restarts.pick_upgrade` is asked (docs/migm.md steps 7 and 9) and turns its answer into a kill:

* the **tail restart**: nothing queued and nothing more to come, or, on 4 or more GPUs, nothing
  queued while jobs still arrive and `TAIL_ONLINE_GPUS` whole GPUs' compute idles;
* the **blocked restart**: a reserved job has waited `blocked_wait_s`; the restart frees its
  slots, and the restarted job waits for its larger profile (`_sticky`), at most as long as
  the restart was projected to save: past that, waiting has cost more than the restart gains,
  and it takes any instance (a bundled online batch's job waited 5,850 s for a 7g);
* re-checked when the running set changes and every 30 s (paced by the running count), one
  restart in flight at a time (`_target`); `wake_at_s` asks for those re-checks.
"""

from __future__ import annotations

import math

from migsched.core.events import Action, Kill, KillReason
from migsched.core.state import ClusterView
from migsched.policies.migm.restarts import pick_upgrade
from migsched.policies.migm.sizing import spare_compute

#: Up to this many running jobs, the tail restart is re-checked whenever the running set changes.
TAIL_FULL_CHECK = 32
#: While jobs still arrive, the tail restart acts only with this many whole GPUs' compute idle.
TAIL_ONLINE_GPUS = 2


def _check_period_s(view: ClusterView) -> float:
    """The tail check's period: 30 s, stretched by the running count past `TAIL_FULL_CHECK`."""
    return 30.0 * max(1.0, len(view.running) / TAIL_FULL_CHECK)


class TailRestart:
    """Mixin of `MigmPolicy` (uses its options, `times`, `index`, `_resv`, `_target`, `_sticky`,
    `_tail_key`, `_tier_of`, `_bump`)."""

    def _blocked(self, view: ClusterView) -> list[Action]:
        """Blocked restart: free a reserved job's slots by restarting a long running job."""
        if self.blocked_restart and self._resv and (self.blocked_online or not view.more_arrivals):
            jid = next(iter(self._resv))
            blocked = view.jobs.get(jid) if hasattr(view.jobs, "get") else None
            if blocked is not None and view.now_s - blocked.arrived_s >= self.blocked_wait_s:
                return self._tail_restart(view, blocked=True)
        return []

    def _tail_restart(self, view: ClusterView, blocked: bool = False) -> list[Action]:
        """Nothing queued, nothing more to come (or, on many GPUs, `_spare_gpus`): restart the
        job whose tail a larger instance shortens most by at least `tail_margin`
        (restarts.pick_upgrade), one at a time."""
        if not (self.tail_restart and self.compute_upgrade) \
                or (view.more_arrivals and not blocked and len(view.gpus) < 2 * TAIL_ONLINE_GPUS) \
                or (view.queue and not blocked) \
                or self._target \
                or not view.running:
            return []
        # Re-checked every 30 s and when the running set changes; with many jobs running (a
        # check costs O(running)) every 30 s x running / TAIL_FULL_CHECK, or once it shrank by a
        # tenth since the last check, so the cost per simulated second stays flat.
        #  * Offline (the batch's tail, where a restart's timing sets the makespan), periods are
        #    counted from t = 0; as the period moves with the running count, so does its index,
        #    and most starts and ends re-check. A period counted from the last check made the
        #    makespan on 64 GPUs 6.8 % longer (docs/benchmarks.md, round 12).
        #  * While jobs arrive the checks go on for the whole stream: counted from the last
        #    check (20,000 online jobs on 200 GPUs: 28,060 checks of 177 running jobs -> 558).
        n = len(view.running)
        period_s = _check_period_s(view)
        last = self._tail_key
        if n > TAIL_FULL_CHECK and view.more_arrivals:
            if last is not None and last[1] is None and n > 0.9 * last[0] and view.now_s < last[2] + period_s:
                return []
            key: tuple = (n, None, view.now_s)
        else:
            key = (n, int(view.now_s // period_s), view.now_s)
            if last is not None and (key[:2] == last[:2] or (n > TAIL_FULL_CHECK and key[1] == last[1]
                                                               and n > 0.9 * last[0])):
                return []
        self._tail_key = key
        if view.more_arrivals and not blocked and not self._spare_gpus(view):
            return []
        assert self.model is not None
        self.times.refit(view.running.values(), view.now_s)
        up = pick_upgrade(view, self.model, view.running.values(), lambda j: j.family,
                          lambda j: self.model.profile(self._tier_of(j) or j.profile.name).memory_mib,  # type: ignore[union-attr]
                          self.times, self.tail_margin, self.tail_min_gain_s,
                          overshoot=self.tail_overshoot and not blocked)
        if up is None:
            return []
        self._target[up.job_id] = up.profile
        if blocked:  # it waits for its target at most as long as the restart was to save
            self._sticky[up.job_id] = view.now_s + max(up.old_s - up.new_s, 0.0)
        self._bump("blocked_restarts" if blocked else "tail_upgrades")
        job = view.running[up.job_id]
        if job.checkpointable:  # a move that keeps its progress
            self._bump("moves")
            return [Kill(up.job_id, KillReason.MOVE, checkpoint=True)]
        return [Kill(up.job_id, KillReason.PREEMPT)]

    def _spare_gpus(self, view: ClusterView) -> bool:
        """While jobs still arrive: whether the idle compute is worth at least `TAIL_ONLINE_GPUS`
        whole GPUs with nothing queued, so that a restart leaves room for the next arrivals."""
        if view.queue or self.model is None:
            return False
        spare_c, _m = spare_compute(view, self.model, self.index.counts)
        spare_c += len(self._idle_off(view)) * self.model.compute_slices  # idle MIG-off GPUs too (whole.py)
        return spare_c >= TAIL_ONLINE_GPUS * self.model.compute_slices

    def wake_at_s(self, view: ClusterView) -> float | None:
        """Wake-ups for the time-based rules: the blocked restart's wait, then its re-checks, and
        the tail's re-checks (`_check_period_s`), so that when a rule acts does not hang on
        whatever other events happen to come (memory samples, say)."""
        wake = None
        if self.blocked_restart and self._resv and (self.blocked_online or not view.more_arrivals):
            blocked = view.jobs.get(next(iter(self._resv)))
            if blocked is not None:
                wake = blocked.arrived_s + self.blocked_wait_s
                if wake <= view.now_s and self.tail_restart and self.compute_upgrade and not self._target:
                    wake = self._next_check_s(view)  # waited long enough: the restart's next re-check
        if (self.tail_restart and self.compute_upgrade and not view.queue and not self._target and view.running
                and (not view.more_arrivals or len(view.gpus) >= 2 * TAIL_ONLINE_GPUS)):
            t = self._next_check_s(view)
            wake = t if wake is None else min(wake, t)
        return wake if wake is not None and wake > view.now_s else None

    def _next_check_s(self, view: ClusterView) -> float:
        """When the tail check is due again (`_tail_restart`'s pacing): while jobs arrive with
        many running, a period after the last check; else (or if that is past: the check comes
        with the next event) the start of the next period counted from t = 0, never now."""
        period_s = _check_period_s(view)
        last = self._tail_key
        if len(view.running) > TAIL_FULL_CHECK and view.more_arrivals and last is not None and last[1] is None \
                and last[2] + period_s > view.now_s:
            return last[2] + period_s
        k = int(view.now_s // period_s)
        t = (k + 1) * period_s
        return t if int(t // period_s) > k else math.nextafter(t, math.inf)
