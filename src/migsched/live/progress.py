"""The live progress view of `migsched run`: jobs by state, instances per GPU, restarts by cause.

Drawn with rich on stderr while the run goes on (only when stderr is a terminal), refreshed at
most every `min_interval_s`; the same figures are what `migsched status` reads from the store.
"""

from __future__ import annotations

import time
from collections import Counter

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from migsched.core.scheduler import SchedulerCore
from migsched.core.state import JobState
from migsched.metrics import cause_label, retried_outcomes


def restart_counts(core: SchedulerCore) -> Counter:
    """Retried attempts by cause: oom, early-restart, preempt, launch-failed.

    Which attempts count is `metrics.retried_outcomes` (as for `migsched status`): the last
    attempt of a failed job was not retried and is not a restart.
    """
    c: Counter = Counter()
    for job in core.view.jobs.values():
        outcomes = [a.outcome for a in job.attempts]
        for outcome in retried_outcomes(outcomes, job.state is JobState.FAILED):
            if outcome == "oom" or outcome == "launch-failed":
                c[outcome] += 1
            elif outcome.startswith("killed:"):
                c[outcome.removeprefix("killed:")] += 1
    return c


def progress_renderable(core: SchedulerCore, title: str, max_gpus: int = 8):
    """One screen of progress: a header line, counts, and a row per GPU (first `max_gpus`)."""
    v = core.view
    states = Counter(j.state for j in v.jobs.values())
    more = " (more to come)" if v.more_arrivals else ""
    head = Text(f"{title}  t={v.now_s:,.1f} s", style="bold")
    counts = Text(f"queued {states[JobState.QUEUED]}{more} · running {states[JobState.RUNNING]} · "
                  f"done {states[JobState.DONE]} · failed {states[JobState.FAILED]}")
    r = restart_counts(core)
    restarts = Text("restarts: " + (" · ".join(f"{cause_label(k)} {n}" for k, n in sorted(r.items())) or "none"))
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("GPU", no_wrap=True)
    table.add_column("instances (job)", overflow="fold")
    owner = {(j.gpu, j.start): j.job_id for j in v.running.values()}
    for g in v.gpus[:max_gpus]:
        cells = []
        for inst in g.layout.instances:
            who = owner.get((g.index, inst.start), "idle")
            cells.append(f"{inst.profile.name}@{inst.start}[{who}]")
        table.add_row(Text(f"{g.index} {g.model.name}"), Text(" ".join(cells) or "(no instances)"))
    if len(v.gpus) > max_gpus:
        table.add_row(Text("…"), Text(f"{len(v.gpus) - max_gpus} more GPUs"))
    return Group(head, counts, restarts, table)


class LiveView:
    """Refreshes a rich `Live` display from the core; a no-op when `enabled` is False."""

    def __init__(self, title: str, enabled: bool, console=None, min_interval_s: float = 0.25) -> None:
        self.title = title
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._live = Live(console=console, transient=False, auto_refresh=False) if enabled else None

    def __enter__(self) -> LiveView:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, core: SchedulerCore, force: bool = False) -> None:
        if self._live is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.min_interval_s:
            self._last = now
            self._live.update(progress_renderable(core, self.title), refresh=True)
