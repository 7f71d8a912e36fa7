"""Time costs of the simulated machine, each with its source (calibration.md §4).

NVIDIA publishes no reconfiguration timings; these are public measurements and, where marked,
guesses. All can be overridden per run (`SimCosts(...)`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from migsched.hardware.catalog import GpuModel, Profile
from migsched.jobs.model import TruthModel


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
    """

    gi_create_s: float = 0.12
    gi_destroy_s: float = 0.11
    kill_s: float = 0.5
    sample_interval_s: float = 2.0
    runtime_jitter: float = 0.0


def compute_boundness(truth: TruthModel) -> float:
    """How strongly a job's speed follows its compute: the log-log slope of speed over slices.

    alpha = ln(s7 / s1) / ln 7, clipped to [0, 1]: 1 for perfect scaling, 0 for a job that runs
    as fast on one slice as on seven (latency- or memory-bound).
    """
    s1 = truth.speed(1)
    return min(1.0, max(0.0, math.log(truth.speed(7) / s1) / math.log(7)))


def speed_on(truth: TruthModel, model: GpuModel, profile: Profile) -> float:
    """Fraction of 7g speed of a job on an instance (or on the whole GPU with MIG off).

    MIG off gives the job every SM: 108 on A100 against 98 for a 7g instance (mig-hardware.md §0,
    CERN). The job gains (108 / 98) ** alpha, alpha its compute-boundness: about 10% for a
    compute-bound kernel, nothing for a latency-bound one. On Hopper 7g keeps all 132 SMs.
    """
    if profile.name == "whole":
        sm_7g = model.largest.sm_count
        return truth.speed(7) * (model.sm_count / sm_7g) ** compute_boundness(truth)
    return truth.speed(profile.compute_slices)
