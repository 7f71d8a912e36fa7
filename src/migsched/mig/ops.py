"""`export`, `assert` and `apply` of MIG layouts through `backends.nvml.Nvml`.

`apply` is a linear sequence of small steps, like mig-parted's `Reconfigure.Run`:
read the GPUs → resolve the config per GPU (explicit placements; count maps placed keeping what
exists) → refuse what would destroy an instance in use or change MIG mode → plan destroys then
creates with explicit placements, every intermediate layout legal (`partition.reshape.plan`) →
execute (destroy with retry, create at the planned start) → read back and verify.

Only the instances that differ are touched; instances in both layouts keep running. MIG mode is
never changed unless the caller passes `allow_mig_change` (mig-hardware.md §4: a mode change
resets an A100/A30 and needs every client of the GPU stopped).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import psutil

from migsched.backends.nvml.backend import MigModeError
from migsched.backends.nvml.nvmllib import Nvml, NvmlGpu
from migsched.errors import MigschedError, PlanError
from migsched.hardware.catalog import GpuModel, get_model
from migsched.mig.config import (
    MIGSCHED,
    GpuSpec,
    MigConfig,
    MigConfigError,
    layout_of,
    resolve_counts,
    target_layout,
)
from migsched.partition.layout import Instance, Layout
from migsched.partition.reshape import Operation, apply_plan, plan


class ApplyError(MigschedError):
    """A step of `apply` failed on the hardware; the message says which and what was done before."""


@dataclass(frozen=True, slots=True)
class GpuState:
    """One GPU as NVML reports it: MIG mode, model, instances (busy when a process uses them)."""

    index: int
    name: str
    uuid: str
    mig: bool
    mig_pending: bool
    model: GpuModel | None  # None: not in the catalogue (only possible with MIG off)
    layout: Layout | None  # None when MIG is off
    pids: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (start, pids) of the instances in use

    def pids_at(self, start: int) -> tuple[int, ...]:
        return dict(self.pids).get(start, ())


def _gpu_state(nvml: Nvml, g: NvmlGpu) -> GpuState:
    try:
        model = nvml.model(g.index)
    except MigschedError:
        if g.mig_current:
            raise
        model = None
    if not g.mig_current or model is None:
        return GpuState(g.index, g.name, g.uuid, g.mig_current, g.mig_pending, model, None)
    insts = nvml.instances(g.index)
    layout = Layout(model, tuple(Instance(model.profile(i.profile), i.start, bool(i.pids))
                                 for i in sorted(insts, key=lambda i: i.start)))
    return GpuState(g.index, g.name, g.uuid, True, g.mig_pending, model, layout,
                    tuple((i.start, i.pids) for i in insts if i.pids))


def read_state(nvml: Nvml) -> list[GpuState]:
    """Every GPU's state (see `GpuState`)."""
    return [_gpu_state(nvml, g) for g in nvml.gpus()]


def _who(pids: tuple[int, ...]) -> str:
    """"pid 4242 (python3), pid 4243": the processes, named where psutil can see them."""
    out = []
    for pid in pids:
        try:
            out.append(f"pid {pid} ({psutil.Process(pid).name()})")
        except (psutil.Error, OSError):  # gone, or not ours to inspect: the pid alone still names it
            out.append(f"pid {pid}")
    return ", ".join(out)


def _word(on: bool) -> str:
    return "enabled" if on else "disabled"


# ---- export and assert ------------------------------------------------------------------------
def export_layouts(nvml: Nvml) -> MigConfig:
    """The GPUs as a migsched config: MIG mode, instances with placements, pids of those in use."""
    specs = []
    for k, st in enumerate(read_state(nvml)):
        items = tuple(i.key for i in st.layout) if st.layout is not None else ()
        in_use = tuple((f"{st.layout.instance_at(s).profile.name}@{s}", p) for s, p in st.pids) if st.layout else ()
        specs.append(GpuSpec((st.index,), st.mig, items, None, st.model.name if st.model else None,
                             None, in_use, f"gpus[{k}]"))
    return MigConfig(MIGSCHED, tuple(specs))


def _model_mismatch(st: GpuState, spec: GpuSpec) -> str | None:
    if spec.model is None or st.model is None or get_model(spec.model).name == st.model.name:
        return None
    return f"GPU {st.index} is a {st.model.name} ({st.name}), but {spec.where} is for {get_model(spec.model).name}"


def _missing_gpus(config: MigConfig, states: list[GpuState]) -> list[str]:
    if config.format != MIGSCHED:  # mig-parted skips indices a node does not have
        return []
    have = {st.index for st in states}
    return [f"{s.where}: there is no GPU {d} (GPUs: {', '.join(map(str, sorted(have))) or 'none'})"
            for s in config.specs for d in s.devices or () if d not in have]


def _diff(st: GpuState, spec: GpuSpec) -> list[str]:
    g = f"GPU {st.index}"
    bad = _model_mismatch(st, spec)
    if bad:
        return [bad]
    if st.mig != spec.mig:
        return [f"{g}: MIG is {_word(st.mig)}; {spec.where} wants it {_word(spec.mig)}"]
    if not spec.mig or st.layout is None or st.model is None:
        return []
    out = []
    if spec.placements is not None:
        want = layout_of(st.model, spec.placements, f"{spec.where}.instances")
        have_keys, want_keys = set(st.layout.key), set(want.key)
        for i in want:
            if i.key not in have_keys:
                out.append(f"{g}: {i} is missing")
        for i in st.layout:
            if i.key not in want_keys:
                busy = f" (in use by {_who(st.pids_at(i.start))})" if i.busy else ""
                out.append(f"{g}: {i.profile.name}@{i.start} is not in {spec.where}{busy}")
        return out
    want_n = resolve_counts(st.model, spec.counts or (), f"{spec.where}.mig-devices")
    have_n = Counter(i.profile for i in st.layout)
    for p in sorted(set(want_n) | set(have_n), key=lambda p: (p.memory_slices, p.compute_slices, p.name)):
        if want_n[p] != have_n[p]:
            out.append(f"{g}: {have_n[p]} x {p.name}; {spec.where} wants {want_n[p]}")
    return out


def check(nvml: Nvml, config: MigConfig) -> list[str]:
    """The differences between the GPUs and `config`, one line each (empty: they match).

    Explicit placements must match exactly; a mig-parted count map is matched by counts (like
    mig-parted's `assert`). GPUs the config does not select are not compared.
    """
    states = read_state(nvml)
    out = _missing_gpus(config, states)
    selected = [(st, spec) for st in states if (spec := config.spec_for(st.index, st.model)) is not None]
    if not selected:
        out.append(f"the config selects none of the GPUs ({', '.join(str(st.index) for st in states) or 'none found'})")
    for st, spec in selected:
        out.extend(_diff(st, spec))
    return out


# ---- plan and apply ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GpuPlan:
    """What `apply` does to one GPU: an optional MIG mode change and explicit destroy/create steps.

    With `mig_to` True the mode is enabled before the steps; with False it is disabled after
    them (the steps then destroy every instance).
    """

    index: int
    name: str
    current: Layout | None
    target: Layout | None
    ops: tuple[Operation, ...] = ()
    mig_to: bool | None = None
    forced: tuple[str, ...] = ()  # instances in use that --force lets the plan destroy

    @property
    def changes(self) -> bool:
        return bool(self.ops) or self.mig_to is not None

    def describe(self) -> list[str]:
        """The plan as text: a heading, then one line per step."""
        model = (self.target or self.current).model.name if (self.target or self.current) else self.name
        cur = str(self.current) if self.current is not None else "MIG disabled"
        tgt = str(self.target) if self.target is not None else "MIG disabled"
        if not self.changes:
            return [f"GPU {self.index} ({model}): already {cur}"]
        lines = [f"GPU {self.index} ({model}): {cur} -> {tgt}"]
        if self.mig_to is True:
            lines.append(f"  enable MIG (nvidia-smi -i {self.index} -mig 1)")
        lines += [f"  {op}" + (" (in use; --force)" if op.op == "destroy" and any(
            f.startswith(f"{op.profile.name}@{op.start} ") for f in self.forced) else "") for op in self.ops]
        if self.mig_to is False:
            lines.append(f"  disable MIG (nvidia-smi -i {self.index} -mig 0)")
        return lines


@dataclass(frozen=True, slots=True)
class Plan:
    """Per selected GPU, what `apply` will do."""

    gpus: tuple[GpuPlan, ...]
    force: bool = False

    @property
    def changes(self) -> bool:
        return any(g.changes for g in self.gpus)

    def describe(self) -> list[str]:
        return [line for g in self.gpus for line in g.describe()] or ["the config selects none of the GPUs"]


def _mode_refusal(st: GpuState, spec: GpuSpec) -> str:
    want, word = spec.mig, "enable" if spec.mig else "disable"
    lost = f" and destroys its {len(st.layout)} instances" if st.layout else ""
    pending = (f" (a change to {_word(want)} is already pending: reset the GPU with `sudo nvidia-smi -i {st.index} -r` "
               "or reboot)" if st.mig_pending == want else "")
    return (f"GPU {st.index} ({st.name}) has MIG {_word(st.mig)}; {spec.where} wants it {_word(want)}{pending}. "
            f"migsched never changes MIG mode on its own: run `sudo nvidia-smi -i {st.index} -mig {int(want)}` "
            f"(this {word}s MIG for every user of the GPU{lost}; on A100/A30 it resets the GPU, so every process "
            "using it must stop first, including nvidia-persistenced and monitoring agents; on H100 and later no "
            "reset, but the mode lasts only until the driver reloads), or pass --allow-mig-change")


def _plan_gpu(st: GpuState, spec: GpuSpec, force: bool, allow_mig_change: bool, refusals: list[str],
              mode_refusals: list[str]) -> GpuPlan | None:
    bad = _model_mismatch(st, spec)
    if bad:
        raise MigConfigError(bad)
    mig_to = None
    if spec.mig != st.mig:
        if not allow_mig_change:
            mode_refusals.append(_mode_refusal(st, spec))
            return None
        mig_to = spec.mig
    if st.model is None:
        if spec.mig:
            raise MigConfigError(f"{spec.where}: GPU {st.index} ({st.name}) is not a MIG GPU migsched knows")
        return GpuPlan(st.index, st.name, None, None)
    current = st.layout if st.layout is not None else (Layout.empty(st.model) if spec.mig else None)
    target = target_layout(spec, st.model, current)
    if current is None:  # MIG off and wanted off
        return GpuPlan(st.index, st.name, None, None)
    keep = set(target.key) if target is not None else set()
    busy = [i for i in current if i.busy and i.key not in keep]
    if busy and not force:
        refusals.extend(f"GPU {st.index}: {spec.where} would destroy {i.profile.name}@{i.start}, which is in use by "
                        f"{_who(st.pids_at(i.start))}; stop it first, or pass --force to try anyway (NVML refuses "
                        "while a process holds it; migsched never kills processes)" for i in busy)
        return None
    free = Layout(st.model, tuple(Instance(i.profile, i.start) for i in current))  # --force: busy no more
    ops = plan(free, target if target is not None else Layout.empty(st.model))
    # Instances in use go first: if NVML refuses one, nothing else has changed yet.
    ops.sort(key=lambda op: (op.op != "destroy", op.op == "destroy" and all(op.start != i.start for i in busy)))
    apply_plan(free, ops)  # every intermediate layout is checked legal
    forced = tuple(f"{i.profile.name}@{i.start} ({_who(st.pids_at(i.start))})" for i in busy)
    return GpuPlan(st.index, st.name, current if st.layout is not None else None, target, tuple(ops), mig_to, forced)


def plan_apply(nvml: Nvml, config: MigConfig, force: bool = False, allow_mig_change: bool = False) -> Plan:
    """Plan the steps that bring every GPU `config` selects into its layout.

    Nothing is planned for any GPU unless every selected GPU can be planned.

    Raises:
        MigConfigError: the config does not fit these GPUs (no such GPU, other model, an
            unplaceable count map, an invalid layout).
        PlanError: an instance in use would be destroyed (without `force`); names its processes.
        MigModeError: the config asks for another MIG mode (without `allow_mig_change`); says
            the `nvidia-smi` command and what it costs.
    """
    states = read_state(nvml)
    missing = _missing_gpus(config, states)
    if missing:
        raise MigConfigError("; ".join(missing))
    refusals: list[str] = []
    mode_refusals: list[str] = []
    plans = []
    for st in states:
        spec = config.spec_for(st.index, st.model)
        if spec is not None:
            gp = _plan_gpu(st, spec, force, allow_mig_change, refusals, mode_refusals)
            if gp is not None:
                plans.append(gp)
    if refusals or mode_refusals:
        raise (PlanError if refusals else MigModeError)("; ".join(refusals + mode_refusals))
    return Plan(tuple(plans), force)


def _set_mode(nvml: Nvml, gp: GpuPlan, on: bool) -> None:
    nvml.set_mig_mode(gp.index, on)
    now = next(g for g in nvml.gpus() if g.index == gp.index)
    if now.mig_current != on:
        raise ApplyError(f"GPU {gp.index}: MIG mode is now pending {_word(on)}; reset the GPU "
                         f"(`sudo nvidia-smi -i {gp.index} -r`, every process using it stopped) or reboot, "
                         "then run apply again")


def _recheck(nvml: Nvml, gp: GpuPlan, force: bool) -> None:
    """Refuse when the GPU changed since the plan, or an instance to destroy became busy."""
    st = _gpu_state(nvml, next(g for g in nvml.gpus() if g.index == gp.index))
    if gp.current is not None and (st.layout is None or st.layout.key != gp.current.key):
        raise ApplyError(f"GPU {gp.index} changed since the plan was made (planned from {gp.current}, now "
                         f"{st.layout or 'MIG disabled'}); nothing was done to it: run apply again")
    doomed = {op.start for op in gp.ops if op.op == "destroy"}
    busy = [s for s, _ in st.pids if s in doomed]
    if busy and not force:
        assert st.layout is not None  # busy instances exist only with MIG on
        raise PlanError("; ".join(f"GPU {gp.index}: {st.layout.instance_at(s).profile.name}@{s} is now in use by "
                                  f"{_who(st.pids_at(s))}; stop it first, or pass --force" for s in busy))


def apply(nvml: Nvml, plan_: Plan) -> list[str]:
    """Execute `plan_` GPU by GPU; returns the steps done ("GPU 0: destroy 1g.5gb@0", ...).

    Destroys go through `Nvml.destroy_with_retry` (NVML reports "in use" briefly after a process
    ends); creates use the planned explicit placement. Each GPU is read back and verified.

    Raises:
        ApplyError: a step failed (the message lists the steps already done), the GPU changed
            since the plan, or the result is not the target.
        PlanError: an instance to destroy became busy since the plan (without --force).
    """
    done: list[str] = []
    for gp in plan_.gpus:
        if not gp.changes:
            continue
        _recheck(nvml, gp, plan_.force)
        if gp.mig_to is True:
            _set_mode(nvml, gp, True)
            done.append(f"GPU {gp.index}: enable MIG")
        for op in gp.ops:
            try:
                if op.op == "destroy":
                    nvml.destroy_with_retry(gp.index, op.start)
                else:
                    nvml.create(gp.index, op.profile, op.start)
            except MigschedError as exc:
                raise ApplyError(f"GPU {gp.index}: {op} failed: {exc}; steps done before it: "
                                 f"{', '.join(done) or 'none'}") from None
            done.append(f"GPU {gp.index}: {op}")
        if gp.mig_to is False:
            _set_mode(nvml, gp, False)
            done.append(f"GPU {gp.index}: disable MIG")
        if gp.target is not None:
            st = _gpu_state(nvml, next(g for g in nvml.gpus() if g.index == gp.index))
            if st.layout is None or set(st.layout.key) != set(gp.target.key):
                raise ApplyError(f"GPU {gp.index}: after the steps it holds {st.layout or 'MIG disabled'}, "
                                 f"not the target {gp.target}")
    return done
