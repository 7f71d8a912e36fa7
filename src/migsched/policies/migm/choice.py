"""`migm`'s placement choice: which profile a job gets and where it comes from, per scheme.

`PlacementChoice` is the part of `MigmPolicy` that, for one job and its tight profile, walks
the scheme's order of preference (docs/migm.md step 3-4): a remembered restart target; a larger
profile from compute the queue cannot use (`sizing.spare_compute`); the tight profile or a
same-memory variant with more compute, reused or created; then fusion/fission (scheme "head")
or a whole-layout reshape (scheme "repartition-min"). The searches are in `placement.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

from migsched.core.state import ClusterView, JobView
from migsched.hardware.catalog import Profile
from migsched.policies.migm.placement import (
    Placement,
    Reservation,
    best_target,
    find_anywhere,
    find_create,
    find_reclaim,
    find_reuse,
    repartition,
)
from migsched.policies.migm.sizing import spare_compute, spare_profiles

#: `_contested_upgrade` acts with at most this many jobs queued (a bound on its cost, O(profiles x
#: layout groups) per placement; with that many queued per GPU the cost term forbids it anyway).
SHARE_QUEUE = 64


class PlacementChoice:
    """Mixin of `MigmPolicy` (uses its options, `index`, `times`, `_target`, `_sticky`).

    `_spare_memo` holds `spare_compute` for the current pass over the queue heads (the policy
    clears it at the start of each pass: the cluster and the queue do not change within one).
    """

    _spare_memo: tuple[int, int] | None = None
    _variants_memo: dict[str, list[Profile]]

    def _place(self, view: ClusterView, job: JobView, tight: Profile, reserved: Sequence[Reservation]
               ) -> Placement | None:
        """Where to run `job`, in this scheme's order of preference, or None to wait."""
        if self.scheme == "head" and not view.idle_groups and not view.room_anywhere():
            return None  # every search below reuses an idle instance, fills room or destroys an idle one
        target = self._target.get(job.job_id)
        if target is not None:
            pl = find_anywhere(view, target, reserved)
            if pl is not None:
                return pl
            if job.job_id in self._sticky:  # until its deadline (`MigmPolicy._unstick`)
                return None  # restarted for a bigger instance: wait for it, not the old slot
        pl = self._declined_room(view, job, reserved)  # type: ignore[attr-defined]
        if pl is not None:
            return pl
        up = self._spare_upgrade(view, job, tight, reserved)
        if up is None and self.share_cost > 0 and self.compute_upgrade and self.scheme == "head":
            up = self._contested_upgrade(view, job, tight, reserved)
        if up is not None:
            return up
        variants = self._variants(tight)
        if not self.mid_upgrade and (view.more_arrivals or len(view.queue) > 1):
            variants = variants[:1]
        if self.scheme == "head":
            pl = find_reuse(view, variants, reserved)
        else:
            holds = [p for p in self._profiles if p.memory_mib >= tight.memory_mib]
            pl = find_reuse(view, sorted(holds, key=lambda p: (p.memory_slices, p.compute_slices)), reserved)
        if pl is None:
            pl = self._create(view, variants, reserved)
        if pl is None and self.scheme == "head":
            pl = find_reclaim(view, tight, reserved)
        if pl is None and self.scheme == "repartition-min":
            needs: dict[float, int] = {}
            for t, n in self.index.counts.items():
                m = float(self.model.profile(t).memory_mib)  # type: ignore[union-attr]
                needs[m] = needs.get(m, 0) + n
            tgt = best_target(view, needs, reserved, tight.memory_mib)
            if tgt is not None:
                pl = repartition(view, tgt[0], tgt[1], tight.memory_mib)
        return pl

    def _variants(self, tight: Profile) -> list[Profile]:
        """The tight profile, then same-memory profiles with more compute (if upgrades are on).
        Worked out once per profile name (`_variants_memo`, emptied when the policy meets its GPU
        model); the list returned is the memo's: callers slice it, never change it."""
        out = self._variants_memo.get(tight.name)
        if out is None:
            out = self._variants_memo[tight.name] = self._variants_of(tight)
        return out

    def _variants_of(self, tight: Profile) -> list[Profile]:
        if not self.compute_upgrade:
            return [tight]
        same = [p for p in self._profiles
                if p.memory_slices == tight.memory_slices and p.memory_mib >= tight.memory_mib and p != tight]
        return [tight, *sorted(same, key=lambda p: p.compute_slices)]

    def _create(self, view: ClusterView, variants: list[Profile], reserved: Sequence[Reservation]
                ) -> Placement | None:
        """Create the richest variant that leaves the GPU a compute slice per free slot but one."""
        tight = variants[0]
        for p in reversed(variants):
            pl = find_create(view, p, reserved)
            if pl is None:
                continue
            if p == tight:
                return pl
            after = view.gpus[pl.gpu].layout.with_instance(p, pl.start)
            if after.free_compute >= len(after.free_slots) - 1:
                return pl
        return None

    def _spare_upgrade(self, view: ClusterView, job: JobView, tight: Profile,
                       reserved: Sequence[Reservation]) -> Placement | None:
        """A larger profile from compute the queued jobs cannot use (`sizing.spare_compute`).

        Once no more jobs can arrive, the job may take all of the surplus. While jobs still
        arrive (`spare_share` > 0), it may take that share of the surplus, and only when its
        speed scaling (`RunTimes.alpha`) makes it at least `spare_min_gain` faster there.
        """
        if not self.compute_upgrade or self.model is None:
            return None
        online = view.more_arrivals
        if online and self.spare_share <= 0:
            return None
        spare = self._spare_memo  # one pass over the heads sees one cluster: computed once
        if spare is None:
            spare = self._spare_memo = spare_compute(view, self.model, self.index.counts)
        spare_c, spare_m = spare
        pool_c = spare_c
        if online:
            spare_c = int(spare_c * self.spare_share)
        cands = spare_profiles(self._profiles, tight, spare_c, spare_m)
        if online and cands:
            # The gain asked for shrinks with the size of the spare pool: with one GPU's worth or
            # less, a later arrival likely wants those slices back; with the spare worth N whole
            # GPUs, it will find others, so 1/N of the gain is asked.
            alpha = self.times.alpha(job.family, job.spec.job_class.value)
            min_gain = self.spare_min_gain * min(1.0, self.model.compute_slices / pool_c)
            cands = [p for p in cands if (tight.compute_slices / p.compute_slices) ** alpha <= 1.0 - min_gain]
        for p in cands:
            pl = find_anywhere(view, p, reserved)
            if pl is not None:
                return pl
        return None

    def _contested_upgrade(self, view: ClusterView, job: JobView, tight: Profile,
                           reserved: Sequence[Reservation]) -> Placement | None:
        """A larger profile than the queue leaves spare (`share_cost`, online only), when the time
        it saves this job outweighs what withholding those slices costs the jobs queued behind it.

        Why: under a burst every queued job got its tight slice, and a long job that scales with
        compute stayed on a 1g for its whole run (no move without a checkpoint): on the online
        tuning batches cyclegan ran 2,994 s on a 1g against 681 s whole, bert-base 4,133 s
        against 1,265 s on a 3g, and set the p95 completion time.
        What: with T(c) = T1 c^-alpha (alpha `RunTimes.alpha`: the family's fit, else its
        class's, else the class prior), the profile with the largest T(c_tight) - T(c') -
        share_cost x (c' - c_tight) x T(c') x queued / cluster slices > 0 that saves at least
        `share_min_gain` of T(c_tight). The cost term is the delay that taking those slices for
        T(c') spreads over the queued jobs. Both sides scale with the job's 1-slice time T1, so
        the choice depends on alpha, the sizes and the queue only. Never by destroying idle
        instances another queued job fits (`_holds_queued`): those would wait for this job's
        whole run on what may be only a prior. With no other job queued the spare rule decides;
        offline the batch's end is the aim and LPT with tight profiles serves it: not applied.
        """
        others = len(view.queue) - 1
        if self.model is None or not view.more_arrivals or not 1 <= others <= SHARE_QUEUE:
            return None
        a = self.times.alpha(job.family, job.spec.job_class.value)
        c = tight.compute_slices
        t_now = c ** -a  # in units of the job's 1-slice time, which both sides scale by
        cap = len(view.gpus) * self.model.compute_slices
        best, best_net = None, 0.0
        for p in self._profiles:
            if p.compute_slices <= c or p.memory_mib < tight.memory_mib:
                continue
            t_up = p.compute_slices ** -a
            net = (t_now - t_up) - self.share_cost * (p.compute_slices - c) * t_up * others / cap
            if net > best_net and t_now - t_up >= self.share_min_gain * t_now:
                pl = find_anywhere(view, p, reserved)
                if pl is not None and pl.destroy and self._holds_queued(view, pl, tight):
                    pl = None
                if pl is not None:
                    best, best_net = pl, net
        return best

    def _holds_queued(self, view: ClusterView, pl: Placement, tight: Profile) -> bool:
        """Whether `pl` would destroy an idle instance of a profile another queued job needs (its
        tier): that job would have started on it now, and waits for this job's run instead."""
        layout = view.gpus[pl.gpu].layout
        counts = self.index.counts
        return any(counts.get(n := layout.instance_at(s).profile.name, 0) > (n == tight.name) for s in pl.destroy)
