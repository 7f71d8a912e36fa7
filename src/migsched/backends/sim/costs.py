"""Time costs of the simulated machine, each with its source (calibration.md §4).

NVIDIA publishes no reconfiguration timings; these are public measurements and, where marked,
guesses. All can be overridden per run (`SimCosts(...)`).
"""

from __future__ import annotations

from dataclasses import dataclass

from migsched.jobs.truth import compute_boundness, speed_on  # noqa: F401  (re-exported)


@dataclass(frozen=True, slots=True)
class SimCosts:
    """Latencies and noise of the simulated machine.

    Attributes:
        gi_create_s: create one GPU instance plus its default compute instance. SPCL measured
            GI creation on A100-40GB at a median of 0.05 s (one 7g) to 0.13 s (seven 1g), and FAR
            0.13-0.16 s per instance on A30 (calibration.md §4); 0.12 s per instance is used.
        gi_destroy_s: destroy one GPU instance: SPCL 0.12-0.17 s for all GIs, FAR 0.10-0.11 s per
            instance on A30 (calibration.md §4); 0.11 s.
        kill_s: from a kill signal to the process's exit, freeing the instance (guess: 0.5 s).
        sample_interval_s: memory sampling period for policies that want samples (NVML polling
            at 1 Hz is typical; 2 s keeps large simulations fast).
        runtime_jitter: relative standard deviation of run times (0 = deterministic). Each job's
            factor is drawn once from the seeded generator, so a restart repeats the same speed.
        mig_mode_s: turn MIG on or off on one idle GPU (`SetMigMode`). On Ampere the driver
            resets the GPU (mig-hardware.md §4); NVIDIA publishes no time, and the one public data
            point is a failing mig-parted apply that ended about 8 s after it started, reset
            attempt included (calibration.md §4, mig-parted#181). 10 s is assumed.
    """

    gi_create_s: float = 0.12
    gi_destroy_s: float = 0.11
    kill_s: float = 0.5
    sample_interval_s: float = 2.0
    runtime_jitter: float = 0.0
    mig_mode_s: float = 10.0
