"""The simulator's model of checkpoint-aware moves (docs/checkpoint.md), apart from its event loop.

A job with `checkpoint:` that is asked to checkpoint (`Kill(checkpoint=True)`) stops making
progress at once, saves for `checkpoint_save_s` (its ground truth; by default as long as loading
it back, `min(resume_s, grace_s)`) and exits, keeping the fraction of work done. A save longer
than `grace_s` never ends in time: the job is SIGKILLed at `grace_s` and its progress is lost.
A launch with `resume` then starts up (`startup_s`), loads the checkpoint (`resume_s`) and goes
on from the saved fraction at the new instance's speed.
"""

from __future__ import annotations

from migsched.jobs.model import CheckpointSpec, TruthModel


def checkpoint_save_s(truth: TruthModel, checkpoint: CheckpointSpec) -> float:
    """How long the job takes to save when asked (see the module docstring)."""
    if truth.checkpoint_save_s is not None:
        return truth.checkpoint_save_s
    return min(checkpoint.resume_s, checkpoint.grace_s)


def resume_point(saved: dict[str, float], job_id: str, resume: bool,
                 checkpoint: CheckpointSpec | None) -> tuple[float, float]:
    """(fraction done, extra load time) of a launch; takes the job's saved state out of `saved`.

    A launch without `resume` starts from zero whatever was saved; one with `resume` but no saved
    state (the previous run never got to save) finds no checkpoint and starts from zero at no
    extra cost.
    """
    fraction = saved.pop(job_id, None)
    if not resume or checkpoint is None or fraction is None:
        return 0.0, 0.0
    return fraction, checkpoint.resume_s


def oom_fraction_from(truth: TruthModel, limit_gib: float, fraction: float) -> float | None:
    """The first fraction at or after `fraction` at which memory exceeds `limit_gib`, or None."""
    if fraction <= 0.0:
        return truth.oom_fraction(limit_gib)
    if truth.memory_gib(fraction) > limit_gib:
        return fraction
    pts = [(fraction, truth.memory_gib(fraction))] + [p for p in truth.memory_points if p[0] > fraction]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if y1 > limit_gib:
            return x0 if y1 == y0 else x0 + (x1 - x0) * (limit_gib - y0) / (y1 - y0)
    return None
