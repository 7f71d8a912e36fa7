"""`migm` turns MIG off on a GPU that one job would get all of anyway (docs/migm.md step 10).

With MIG on, the largest instance of an A100 has 98 SMs; with MIG off the one job has all 108
(mig-hardware.md §0, CERN), about 10 % more speed for a compute-bound program (`jobs.truth`).
On Hopper 7g keeps all 132 SMs, so there is nothing to gain and the rule never fires there.

The rule, where the backend can change MIG modes (`ClusterView.mig_toggle`; nvml only with
`--allow-mig-change`, since on Ampere the change resets the GPU, mig-hardware.md §4):

* **Off.** A job that placement gives all of a GPU's compute (a 7g instance) runs on the whole
  GPU instead, when every queued job can have a free GPU of its own (the queue is no longer
  than the GPUs with nothing on them) and, while jobs still arrive, one free GPU is left over
  for the next arrival: on a GPU already off and idle (no switch), else on the GPU the 7g
  instance would have been created on or reused on, when nothing else is there: its idle
  instances destroyed, then turned off (`SetMigMode`, which costs a reset: `SimCosts.mig_mode_s`).
  The spare GPU is what keeps a change from paying off only once: on one GPU online, every
  arrival that finds the GPU off would pay a second reset to share it.
* **Back on.** An idle MIG-off GPU is turned on again, one at a time, as soon as that condition
  fails (jobs must share GPUs again) and no empty MIG GPU is left, or a queued job finds no room
  on the MIG GPUs.
* A GPU whose change failed (NVML refused it, or it needs a reset the platform cannot do) is
  never asked again; while it stays off and idle, a queued job that finds no room elsewhere runs
  on it whole.
"""

from __future__ import annotations

from migsched.core.events import Action, DestroyInstance, Launch, SetMigMode
from migsched.core.state import ClusterView, JobView
from migsched.hardware.catalog import WHOLE_GPU, GpuModel
from migsched.policies.common import lowest_gpu
from migsched.policies.migm.placement import Placement

_EMPTY: tuple = ()  # the state key of a MIG GPU with no instance
_IDLE_WHOLE = ((WHOLE_GPU, 0, False),)  # the state key of an idle GPU with MIG off
#: What the policy assumes one MIG-mode change costs (the simulator's `SimCosts.mig_mode_s`: no
#: NVIDIA figure exists, calibration.md §4): a job known to save less than this stays on 7g.
RESET_S = 10.0


class WholeGpu:
    """Mixin of `MigmPolicy` (uses its `mig_off` option, `model` and `_no_toggle`)."""

    mig_off: bool
    model: GpuModel | None
    _no_toggle: set[int]

    def _worth_a_reset(self, job: JobView) -> bool:
        """Whether the time the whole GPU saves `job` is worth a reset (`RESET_S`): its family's
        compute time on 7g times the share MIG off saves at its speed exponent, (98/108)^alpha on
        A100. Unknown run times count as worth it (a job with no history may be long)."""
        m = self.model
        assert m is not None
        cls = job.spec.job_class.value
        t7 = self.times.compute_s(job.family, cls, m.compute_slices)  # type: ignore[attr-defined]
        if t7 is None:
            return True
        alpha = self.times.alpha(job.family, cls)  # type: ignore[attr-defined]
        saved = 1.0 - (m.largest.sm_count / m.sm_count) ** alpha
        return t7 * saved > RESET_S

    def _fits_whole(self, job: JobView) -> bool:
        """Whether `job`'s planned memory fits a whole GPU (`need_mib` of the policy)."""
        assert self.model is not None
        return self.need_mib(job) <= self.model.whole_gpu.memory_mib  # type: ignore[attr-defined]

    def _whole_gains(self, view: ClusterView) -> bool:
        """Whether turning MIG off can help here: allowed, possible, and more SMs without MIG."""
        m = self.model
        return (self.mig_off and view.mig_toggle and m is not None
                and m.sm_count > m.largest.sm_count)

    @staticmethod
    def _idle_off(view: ClusterView) -> set[int]:
        """The idle MIG-off GPUs, from the layout groups in O(1)."""
        return view.groups.get(_IDLE_WHOLE, set())

    def _room_for_all(self, view: ClusterView) -> bool:
        """True when every queued job can have a free GPU of its own (one where nothing runs:
        empty, MIG off and idle, or holding idle instances only), and while jobs still arrive,
        one more is free for the next arrival. Counted over the layout groups, not the GPUs."""
        free = len(view.groups.get(_EMPTY, ()))
        for key, members in view.idle_groups.items():
            if not any(busy for _n, _s, busy in key):
                free += len(members)
        return len(view.queue) + (1 if view.more_arrivals else 0) <= free

    def _whole_instead(self, view: ClusterView, job: JobView, pl: Placement) -> list[Action] | None:
        """The actions that run `job` on a whole MIG-off GPU instead of `pl`, or None to keep `pl`."""
        m = self.model
        if m is None or pl.profile.compute_slices < m.compute_slices or not self._whole_gains(view):
            return None
        if not self._room_for_all(view):
            return None
        idle_off = self._idle_off(view)
        if idle_off:
            return [Launch(job.job_id, lowest_gpu(idle_off), 0)]
        g = view.gpus[pl.gpu]
        if pl.gpu in self._no_toggle or g.creating or g.destroying or g.mig_pending:
            return None
        if not self._worth_a_reset(job):
            return None
        # Only where the placement would leave nothing else on the GPU: its idle instances (the
        # one reused, those a fusion or fission destroys) go first, in the same batch.
        gone = set(pl.destroy) | ({pl.start} if pl.kind == "reuse" else set())
        if any(i.start not in gone for i in g.layout.instances):
            return None
        drop: list[Action] = [DestroyInstance(pl.gpu, i.start) for i in g.layout.instances]
        return [*drop, SetMigMode(pl.gpu, False), Launch(job.job_id, pl.gpu, 0)]

    def _whole_back_on(self, view: ClusterView, *, stuck: JobView | None = None) -> list[Action]:
        """Turn an idle MIG-off GPU on again when jobs must share GPUs and no empty MIG GPU is
        left for them, or when a queued job (`stuck`) found no room on the MIG GPUs; [] when
        none needs it. One at a time: turning one on leaves the condition as it was, so asking
        for every idle one at once would pay a reset each where one GPU may do. A GPU that
        cannot be turned on (its change failed) still runs the stuck job whole, if it fits."""
        idle_off = self._idle_off(view)  # first: on most calls there is none
        if not idle_off:
            return []
        empty = view.groups.get(_EMPTY)
        if stuck is None and (empty or self._room_for_all(view)):
            return []
        for g in sorted(idle_off):
            if view.mig_toggle and g not in self._no_toggle and not view.gpus[g].mig_pending:
                return [SetMigMode(g, True)]
        if stuck is not None and self._fits_whole(stuck):
            return [Launch(stuck.job_id, lowest_gpu(idle_off), 0)]
        return []
