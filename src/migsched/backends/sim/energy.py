"""The simulator's power model (documented in docs/energy-model.md).

NVML reports power only for the whole GPU (mig-hardware.md §7), so the simulator models the
whole GPU too:

    P_gpu(t) = min(max_w, idle_w + sum over computing jobs of P_job)
    P_job    = min(power_w * speed_here / speed_whole, (max_w - idle_w) * sm_here / sm_whole)

`power_w` is the job's dynamic power (above idle) running alone on the whole GPU with MIG off.
A job's dynamic power follows its work rate (so its dynamic energy is about the same on any
instance) but cannot exceed its instance's share of the GPU's dynamic range. While a job starts
(process, CUDA context, loading) it draws no dynamic power. Idle power is paid by every GPU from
time 0 to the end of the batch, so finishing sooner saves energy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migsched.hardware.catalog import GpuModel, Profile


def job_power_w(power_w: float, speed_here: float, speed_whole: float, model: GpuModel, profile: Profile) -> float:
    """Dynamic power of one job on `profile` of `model` (see the module docstring)."""
    cap = (model.max_w - model.idle_w) * min(1.0, profile.sm_count / model.sm_count)
    return min(power_w * speed_here / max(speed_whole, 1e-9), cap)


@dataclass(slots=True)
class GpuMeter:
    """Integrates one GPU's piecewise-constant power over time."""

    model: GpuModel
    record: bool = True
    dynamic_w: float = 0.0
    energy_j: float = 0.0
    last_s: float = 0.0
    series: list[tuple[float, float]] = field(default_factory=list)

    def power_w(self) -> float:
        """Power now."""
        return min(self.model.max_w, self.model.idle_w + self.dynamic_w)

    def advance(self, t_s: float) -> None:
        """Accumulate energy up to `t_s`."""
        if t_s > self.last_s:
            self.energy_j += self.power_w() * (t_s - self.last_s)
            self.last_s = t_s

    def change(self, t_s: float, delta_w: float) -> None:
        """Add `delta_w` of dynamic power from `t_s` on."""
        self.advance(t_s)
        self.dynamic_w = max(0.0, self.dynamic_w + delta_w)
        if abs(self.dynamic_w) < 1e-9:
            self.dynamic_w = 0.0
        if self.record:
            self.series.append((t_s, self.power_w()))

    def energy_until(self, t_s: float) -> float:
        """Energy from 0 to `t_s` (power stays as it is after the last change)."""
        extra = self.power_w() * max(0.0, t_s - self.last_s)
        return self.energy_j + extra
