"""Adopting discovered GPUs: the core's GPU views from what a backend reports at `open`.

A backend reports each GPU's model, UUID, MIG mode and existing instances (`GpuInfo`); nothing
assumes an empty GPU or one model per cluster. A GPU whose MIG mode does not suit the policy, or
whose instances break a MIG rule, is refused with a message naming it; one the run fenced
before it was stopped (a GPU of another model that joined a migm run) is fenced again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from migsched.core.backend import GpuInfo
from migsched.core.policy import Policy
from migsched.core.state import GpuView, fence_layout
from migsched.errors import MigschedError, SchedulingError
from migsched.partition.layout import Instance, Layout


def build_gpu_views(policy: Policy, gpus: Sequence[GpuInfo], *, mig_toggle: bool = False,
                    first: int = 0, fenced: Mapping[str, str] | None = None) -> list[GpuView]:
    """GPU views from discovered GPUs; raises when a GPU's MIG mode does not suit the policy.

    With `mig_toggle` (the backend carries out `SetMigMode`) a policy that `toggles_mig` takes
    GPUs in either mode: it can change them. `first`: the index of the first of `gpus` (GPUs
    that join a run take the next indexes). `fenced`: UUID -> reason of GPUs the run fenced
    before (a resumed run, docs/ray.md): those are fenced again, whatever their mode or instances.
    """
    views = []
    for pos, info in enumerate(gpus, start=first):
        model = info.model
        if info.index != pos:
            raise SchedulingError(f"discovered GPUs must be numbered {first}..{first + len(gpus) - 1} in order; "
                                  f"position {pos} has index {info.index}")
        reason = (fenced or {}).get(info.uuid) if info.uuid else None
        if reason:
            views.append(GpuView(info.index, model, info.mig_enabled, fence_layout(model, info.mig_enabled),
                                 uuid=info.uuid, fenced=reason))
            continue
        if info.mig_enabled != policy.mig_enabled and not (mig_toggle and policy.toggles_mig):
            want, have = ("on", "off") if policy.mig_enabled else ("off", "on")
            raise SchedulingError(f"GPU {info.index} ({model.name} {info.uuid}) has MIG {have}; policy "
                                  f"{policy.name!r} needs MIG {want}")
        if info.mig_enabled:
            layout = Layout.empty(model)
            try:
                for inst in info.instances:
                    layout = layout.with_instance(model.profile(inst.profile), inst.start, busy=inst.reserved)
            except MigschedError as exc:
                raise SchedulingError(f"GPU {info.index} reports instances that break a MIG rule: {exc}") from exc
        else:  # MIG off: one permanent pseudo-instance covering the whole GPU
            layout = Layout(model, (Instance(model.whole_gpu, 0),))
        views.append(GpuView(info.index, model, info.mig_enabled, layout, uuid=info.uuid))
    return views
