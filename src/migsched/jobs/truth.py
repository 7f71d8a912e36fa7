"""Helpers over ground truth (`TruthModel`): speed on an instance, compute-boundness.

Ground truth is read by the simulator, the lower bound (`migsched.metrics`) and the clairvoyant
`optimal` reference, never by a policy; it lives with the job types, not inside a backend.
"""

from __future__ import annotations

import math

from migsched.hardware.catalog import WHOLE_GPU, GpuModel, Profile
from migsched.jobs.model import TruthModel


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
    if profile.name == WHOLE_GPU:
        sm_7g = model.largest.sm_count
        return truth.speed(7) * (model.sm_count / sm_7g) ** compute_boundness(truth)
    return truth.speed(profile.compute_slices)
