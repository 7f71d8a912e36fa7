"""`serial`: MIG off, one job at a time per whole GPU, FIFO — what most shops do today.

The baseline the paper's gains are measured against (paper.md §6). A job whose hint exceeds the
whole GPU's memory is rejected with that reason; a job that runs out of memory on the whole GPU
fails in the core (nothing larger exists).
"""

from __future__ import annotations

from migsched.core.events import Action, Launch, Reject
from migsched.core.state import ClusterView
from migsched.policies.base import Policy
from migsched.policies.common import gib, hint_mib, lowest_gpu
from migsched.policies.registry import register


@register
class SerialPolicy(Policy):
    """One job per whole GPU (MIG off), in arrival order."""

    name = "serial"
    mig_enabled = False
    description = "MIG off: one job at a time per whole GPU, FIFO"

    def schedule(self, view: ClusterView) -> list[Action]:
        if not view.queue:
            return []
        job = view.queue[0]
        need = hint_mib(job)
        biggest = view.largest_instance_mib  # MIG off: the whole GPU's memory
        if need is not None and need > biggest:
            return [Reject(job.job_id, f"hint {gib(need)} exceeds the largest GPU ({gib(biggest)})")]
        for members in view.idle_groups.values():  # a busy GPU is not free_whole()
            gpu = lowest_gpu(members)
            g = view.gpus[gpu]
            if g.free_whole() and (need is None or need <= g.model.memory_mib):
                return [Launch(job.job_id, gpu, 0)]
        return []
