"""Jobs as the scheduler sees them (`JobSpec`) and the simulator's hidden ground truth (`TruthModel`).

A policy only ever receives `JobSpec` (declared class, hints, self-description); the truth — run
time, per-slice speed, memory curve and power — stays inside the simulator backend, as a real
scheduler would never know it in advance.
"""

from __future__ import annotations

import bisect
import re
import shlex
from dataclasses import dataclass, field
from enum import StrEnum
from operator import itemgetter

_x = itemgetter(0)  # a memory point's x (fraction of the run), for bisect

SPEEDUP_KEYS = (1, 2, 3, 4, 7)


class JobClass(StrEnum):
    """The job classes of the paper (paper.md §3.2): each gets its own memory estimator."""

    SCIENTIFIC = "scientific"
    ML_TRAIN = "ml-train"
    ML_INFER = "ml-infer"
    LLM = "llm"


# Process start + CUDA context + model/data load before the job makes progress, when the job
# file gives no `startup_s`. calibration.md §4 says this cost "must be supplied by the target
# hardware"; these defaults are guesses (a CUDA context alone takes ~0.3-1 s; PyTorch import and
# model load several seconds; an LLM loads GBs of weights).
DEFAULT_STARTUP_S = {
    JobClass.SCIENTIFIC: 1.0,
    JobClass.ML_TRAIN: 8.0,
    JobClass.ML_INFER: 6.0,
    JobClass.LLM: 15.0,
}


@dataclass(frozen=True, slots=True)
class Describe:
    """What a job says about itself, for analytic memory estimators (all optional)."""

    params_m: float | None = None
    dtype: str | None = None
    optimizer: str | None = None
    batch_size: int | None = None
    layers: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    context_tokens: int | None = None
    generated_tokens: int | None = None


CHECKPOINT_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2")


@dataclass(frozen=True, slots=True)
class CheckpointSpec:
    """How a job saves its state and resumes from it (the job file's `checkpoint:`, docs/checkpoint.md).

    Attributes:
        signal: the signal that asks the program to save and exit (one of `CHECKPOINT_SIGNALS`).
        grace_s: how long the program may take to save and exit before it is SIGKILLed (and its
            progress counts as lost).
        resume_s: the extra start-up time of a run that loads a checkpoint.
    """

    signal: str = "SIGTERM"
    grace_s: float = 30.0
    resume_s: float = 0.0


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job instance as submitted: everything a real scheduler may know about it.

    Attributes:
        job_id: unique id ("name" or "name#k" when the entry has `count` > 1).
        name: the entry's name; jobs with the same name share history.
        job_class: declared class.
        family: what jobs learn across each other under (run times, memory); the job file's
            `family:`, else the name without a trailing counter ("bert-bs8-002" -> "bert-bs8").
        arrival_s: submission time.
        hint_gib: believed peak memory, possibly wrong; None when not given.
        reports_progress: whether the job reports its progress fraction with memory samples.
        command: the command as one display string (shell-quoted `argv`); the history key.
        argv: the program and its arguments, run without a shell; None for simulation-only jobs.
        env, cwd: extra environment and working directory of a real run.
        describe: self-description for analytic estimators.
        checkpoint: how the job saves and resumes (None: it cannot; a move restarts it from zero).
    """

    job_id: str
    name: str
    job_class: JobClass
    arrival_s: float = 0.0
    hint_gib: float | None = None
    reports_progress: bool = False
    command: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    describe: Describe = field(default_factory=Describe)
    family: str = ""
    argv: tuple[str, ...] | None = None
    checkpoint: CheckpointSpec | None = None

    def __post_init__(self) -> None:
        if not self.family:
            object.__setattr__(self, "family", default_family(self.name))
        if self.argv is None and self.command:
            object.__setattr__(self, "argv", tuple(shlex.split(self.command)))
        elif self.argv is not None and self.command is None:
            object.__setattr__(self, "command", shlex.join(self.argv))


_NUMBERED = re.compile(r"[-_]\d+$")


def default_family(name: str) -> str:
    """The family of a job without an explicit `family:`: its name without a trailing counter.

    "bert-base-bs8-002" -> "bert-base-bs8"; generated batches number their jobs, and a restart
    of one teaches the others of its family.
    """
    return _NUMBERED.sub("", name) or name


@dataclass(frozen=True, slots=True)
class TruthModel:
    """Simulation ground truth for one job.

    Attributes:
        runtime_s: run time on a whole 7g instance (startup excluded).
        speedup: fraction of 7g speed for 1..7 compute slices, interpolated (see `interpolate_speedup`).
        memory_points: the memory curve, (fraction of run, GiB) points, piecewise linear from 0 to 1.
        power_w: dynamic power above idle when running alone on the whole GPU.
        startup_s: process start, CUDA context and load time before progress starts.
        checkpoint_save_s: how long the job takes to save a checkpoint when asked (None: the
            simulator's default, `min(resume_s, grace_s)`; above `grace_s` the save never ends in
            time and the job is killed, docs/checkpoint.md).
    """

    runtime_s: float
    speedup: tuple[float, ...]  # index c-1 for c compute slices, c = 1..7
    memory_points: tuple[tuple[float, float], ...]
    power_w: float
    startup_s: float
    checkpoint_save_s: float | None = None

    @property
    def peak_gib(self) -> float:
        """The highest point of the memory curve."""
        return max(g for _, g in self.memory_points)

    def speed(self, compute_slices: int) -> float:
        """Fraction of 7g speed on an instance with `compute_slices` compute slices."""
        c = max(1, min(compute_slices, len(self.speedup)))
        return self.speedup[c - 1]

    def memory_gib(self, fraction: float) -> float:
        """Memory in use after `fraction` of the run (0..1)."""
        pts = self.memory_points
        f = min(max(fraction, 0.0), 1.0)
        # the first point right of f (bisect_right on the xs; curves have a handful of points,
        # and the simulator asks at every memory sample, so no list of xs is built per call)
        i = bisect.bisect_right(pts, f, key=_x)
        if i == 0:
            return pts[0][1]
        if i >= len(pts):
            return pts[-1][1]
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        return y0 if x1 == x0 else y0 + (y1 - y0) * (f - x0) / (x1 - x0)

    def oom_fraction(self, limit_gib: float) -> float | None:
        """The first fraction of the run at which memory exceeds `limit_gib`, or None if never."""
        pts = self.memory_points
        if pts[0][1] > limit_gib:
            return 0.0
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            if y1 > limit_gib:
                if y1 == y0:
                    return x0
                return x0 + (x1 - x0) * (limit_gib - y0) / (y1 - y0)
        return None


def interpolate_speedup(points: dict[int, float]) -> tuple[float, ...]:
    """Fill speeds for 1..7 compute slices from the given keys.

    Rules (documented in docs/job-file.md): 7 compute slices is 1.0 by definition; between two
    given keys the speed is linear in the number of compute slices; below the smallest given key
    it scales in proportion to the compute slices from (0, 0). So `{7: 1.0}` alone means perfect
    scaling (c/7) and `{1: 1.0, 7: 1.0}` means no slowdown on any slice.
    """
    known = dict(points)
    known.setdefault(7, 1.0)
    xs = sorted(known)
    out = []
    for c in range(1, 8):
        if c in known:
            out.append(known[c])
            continue
        hi = next(x for x in xs if x > c)
        lo_candidates = [x for x in xs if x < c]
        if not lo_candidates:
            out.append(known[hi] * c / hi)
            continue
        lo = lo_candidates[-1]
        out.append(known[lo] + (known[hi] - known[lo]) * (c - lo) / (hi - lo))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Job:
    """A job as loaded from a job file: its spec and, for simulation, its ground truth."""

    spec: JobSpec
    truth: TruthModel | None = None

    @property
    def job_id(self) -> str:
        """Shortcut for `spec.job_id`."""
        return self.spec.job_id
