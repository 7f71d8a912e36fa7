"""What happened, when: instances, job runs and reconfigurations, recorded from events alone.

The core records the timeline from the events every backend reports, so the same reports work
for simulated and real runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Span:
    """An interval on one GPU's memory slots: an instance's life or a job's run."""

    gpu: int
    start: int          # first memory slot
    size: int           # memory slots
    label: str          # profile name or job id
    t0_s: float
    t1_s: float | None = None
    outcome: str = ""   # for job spans: ok | oom | killed:<reason> | failed
    compute_slices: int = 0  # for job spans: compute slices of the instance


@dataclass(slots=True)
class Timeline:
    """Instance spans, job spans and reconfiguration marks of a run."""

    instances: list[Span] = field(default_factory=list)
    jobs: list[Span] = field(default_factory=list)
    reconfigurations: list[tuple[float, int, str]] = field(default_factory=list)  # (t, gpu, "create 3g@4")
    _open_inst: dict[tuple[int, int], Span] = field(default_factory=dict)
    _open_job: dict[str, Span] = field(default_factory=dict)

    def instance_up(self, t_s: float, gpu: int, start: int, size: int, profile: str, mark: bool = True) -> None:
        """An instance appeared at `t_s`."""
        span = Span(gpu, start, size, profile, t_s)
        self.instances.append(span)
        self._open_inst[(gpu, start)] = span
        if mark:
            self.reconfigurations.append((t_s, gpu, f"create {profile}@{start}"))

    def instance_down(self, t_s: float, gpu: int, start: int) -> None:
        """An instance disappeared at `t_s`."""
        span = self._open_inst.pop((gpu, start), None)
        if span is not None:
            span.t1_s = t_s
            self.reconfigurations.append((t_s, gpu, f"destroy {span.label}@{start}"))

    def job_up(self, t_s: float, job_id: str, gpu: int, start: int, size: int, compute_slices: int) -> None:
        """A job started running at `t_s` on an instance of `size` memory slots."""
        span = Span(gpu, start, size, job_id, t_s, compute_slices=compute_slices)
        self.jobs.append(span)
        self._open_job[job_id] = span

    def job_down(self, t_s: float, job_id: str, outcome: str) -> None:
        """A job's run ended at `t_s` with `outcome`."""
        span = self._open_job.pop(job_id, None)
        if span is not None:
            span.t1_s = t_s
            span.outcome = outcome

    def close(self, t_s: float) -> None:
        """End every open span at `t_s` (the end of the run)."""
        for span in self._open_inst.values():
            span.t1_s = t_s
        for span in self._open_job.values():
            span.t1_s = t_s
            span.outcome = span.outcome or "unfinished"
        self._open_inst.clear()
        self._open_job.clear()
