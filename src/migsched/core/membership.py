"""GPUs that join a run after discovery (`GpuAdded`: a node joined a Ray cluster).

The core's GPUs stay numbered 0..N-1, so a joining GPU takes the next index. Its view is built as
at discovery (`build_gpu_views`: the instances it already has are adopted). A GPU whose MIG mode
does not suit the policy, or that the policy refuses (`Policy.refuse_gpu`: migm plans for one
GPU model), is fenced rather than stopping a run that goes on: one busy instance over every slot,
as a lost GPU is; `GpuView.fenced` says why, and a warning names it. The cluster view is rebuilt
around the longer GPU list (groups, fit indexes and `largest_instance_mib` follow); joins are
rare, so the O(GPUs) cost is fine. After setup, `Policy.on_gpu_added` may lay the GPU out
(static: its layout's creates); before setup, `Policy.setup` sees it with the others.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from migsched.core.discovery import build_gpu_views
from migsched.core.events import Action, GpuAdded
from migsched.core.state import ClusterView, GpuView, fence_layout
from migsched.errors import SchedulingError
from migsched.hardware.catalog import WHOLE_GPU
from migsched.partition.layout import Layout

if TYPE_CHECKING:
    from migsched.core.scheduler import SchedulerCore


def add_gpu(core: SchedulerCore, ev: GpuAdded) -> GpuView:
    """Add the GPU of `ev` to the core's view (and timeline); returns its view."""
    v, info = core.view, ev.info
    if info.index != len(v.gpus):
        raise SchedulingError(f"GpuAdded: a joining GPU must take the next index {len(v.gpus)}, "
                              f"got {info.index} ({info.model.name} {info.uuid})")
    try:
        gpu = build_gpu_views(core.policy, [info], mig_toggle=v.mig_toggle, first=info.index)[0]
        reason = core.policy.refuse_gpu(v, gpu) or ""
    except SchedulingError as exc:  # its MIG mode (or its instances) do not suit the policy
        gpu = GpuView(info.index, info.model, core.policy.mig_enabled, Layout.empty(info.model), uuid=info.uuid)
        reason = str(exc)
    if reason:  # fenced, not fatal: the run goes on without it
        gpu.layout = fence_layout(gpu.model, gpu.mig)
        gpu.fenced = reason
        warnings.warn(f"migsched: GPU {info.index} ({info.model.name} {info.uuid}) joined but is not used: "
                      f"{reason}", stacklevel=2)
    core.view = ClusterView(now_s=v.now_s, gpus=[*v.gpus, gpu], queue=v.queue, running=v.running, jobs=v.jobs,
                            more_arrivals=v.more_arrivals, mig_toggle=v.mig_toggle)
    for inst in gpu.layout.instances:
        label = inst.profile.name if gpu.mig else WHOLE_GPU
        core.timeline.instance_up(ev.time_s, gpu.index, inst.start, inst.profile.size, label, mark=False)
    return gpu


def lay_out_added(core: SchedulerCore, gpus: list[GpuView]) -> list[Action]:
    """The policy's actions for GPUs that joined after setup, applied; not counted as
    reconfigurations (they are the new GPU's setup)."""
    before = core.counters.reconfigurations
    actions = [a for g in gpus for a in core._apply_all(core.policy.on_gpu_added(core.view, g))]
    core.counters.reconfigurations = before
    return actions
